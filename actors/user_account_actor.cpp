// user_account: one actor per username, so registering a name is decided once.

#include <caf/all.hpp>

#include <argon2.h>

#include "actors/entities.hpp"
#include "protocols/crypto.hpp"
#include "protocols/record_codec.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

user_view view_of(const user_record& u) {
  return user_view{u.user_id, u.username, u.role, u.created_at};
}

using account_actor = caf::stateful_actor<user_account_state>;
using account_promise = caf::typed_response_promise<user_view>;

/// When a request to a hasher that is sent now and times out after `timeout`
/// is given up by its sender: the hasher does not start it after that.
int64_t hasher_deadline(std::chrono::milliseconds timeout) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           (std::chrono::steady_clock::now() + timeout).time_since_epoch())
    .count();
}

/// Checks `password` against the argon2 hash `encoded` (empty: the hasher's
/// decoy) on a lent hasher, then `decide(ok, rp)` answers. Refuses at once
/// (503) when the hashers have more work than they can finish in time.
template <class Decide>
caf::result<user_view> check_password(account_actor* self, const context_ptr& ctx,
                                      const std::string& encoded, const std::string& password,
                                      Decide decide) {
  auto hasher = ctx->hashers->lend();
  if (!hasher)
    return reject_durable<user_view>(self, std::move(hasher.error()));
  auto rp = self->make_response_promise<user_view>();
  auto ticket = self->state.core.hold([rp](const caf::error& err) mutable { rp.deliver(err); });
  self->request(hasher->worker, ctx->ask_timeout, verify_atom::value, encoded, password,
                hasher_deadline(ctx->ask_timeout))
    .then(
      [self, rp, ticket, decide, lease = hasher->lease](bool ok) mutable {
        self->state.core.unhold(ticket);
        decide(ok, rp);
      },
      [self, rp, ticket, lease = hasher->lease](caf::error& err) mutable {
        self->state.core.unhold(ticket);
        rp.deliver(std::move(err));
      });
  return rp;
}

/// A registration of a name that exists: a retry of the registration that
/// made it (the same Idempotency-Key and password) gets that one's answer;
/// anything else is told the name is taken.
caf::result<user_view> replay_registration(account_actor* self, const context_ptr& ctx,
                                           const std::string& receipt_key,
                                           const register_user& c) {
  auto& st = self->state;
  auto taken = [] { return make_error(errc::conflict, "the username is taken"); };
  auto first = st.receipt.first_answer(*ctx->db, receipt_key, c.idempotency_key, {});
  if (!first)
    return reject_durable<user_view>(self, std::move(first.error()));
  if (first->empty())
    return reject_durable<user_view>(self, taken());
  user_view answer;
  if (!decode(*first, answer))
    return reject_durable<user_view>(
      self, make_error(errc::internal, "corrupt creation receipt of " + st.user.username));
  // Only the account's owner may see the first answer: check the password.
  return check_password(self, ctx, st.user.password_hash, c.password,
                        [self, taken, answer](bool ok, account_promise& rp) {
                          auto& core = self->state.core;
                          if (ok)
                            deliver_durable(core, rp, answer);
                          else
                            reject_when_durable(core, rp, taken());
                        });
}

} // namespace

caf::behavior user_account_actor(account_actor* self, context_ptr ctx,
                                 std::string username) {
  auto key = keys::entity(keys::user, username, ctx->shard_count);
  auto receipt_key = keys::child(keys::receipt, username, keys::user, ctx->shard_count);
  auto load = [self, ctx, key]() -> caf::error {
    std::string raw;
    auto found = ctx->db->get(key, raw);
    if (!found)
      return found.error();
    if (*found) {
      if (!decode(raw, self->state.user))
        return make_error(errc::internal, "corrupt user record");
      self->state.exists = true;
    }
    return caf::none;
  };
  auto running = [self, ctx, key, receipt_key]() -> caf::message_handler {
    return {
      [=](register_user& c) -> caf::result<user_view> {
        auto& st = self->state;
        st.core.touch();
        if (st.exists && !c.upsert)
          return replay_registration(self, ctx, receipt_key, c);
        auto hasher = ctx->hashers->lend();
        if (!hasher)
          return reject_durable<user_view>(self, std::move(hasher.error()));
        auto rp = self->make_response_promise<user_view>();
        auto ticket = st.core.hold([rp](const caf::error& err) mutable { rp.deliver(err); });
        // `await`: a second registration of this name waits for this one.
        self->request(hasher->worker, ctx->ask_timeout, hash_atom::value, c.password,
                      hasher_deadline(ctx->ask_timeout))
          .await(
            [self, rp, key, receipt_key, c, ticket,
             lease = hasher->lease](std::string& hash) mutable {
              auto& st = self->state;
              st.core.unhold(ticket);
              write_batch ops;
              if (!st.exists) {
                st.user.user_id = random_hex(12);
                st.user.username = c.username;
                st.user.created_at = now_millis();
                st.exists = true;
                st.user.role = c.role;
                st.receipt.keep(ops, receipt_key,
                                {c.idempotency_key, {}, encode(view_of(st.user))});
              }
              st.user.password_hash = std::move(hash);
              st.user.role = c.role;
              ops.push_back(put_op(key, encode(st.user)));
              st.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
              deliver_durable(st.core, rp, view_of(st.user));
            },
            [self, rp, ticket, lease = hasher->lease](caf::error& err) mutable {
              self->state.core.unhold(ticket);
              rp.deliver(std::move(err));
            });
        return rp;
      },
      [=](const login_user& c) -> caf::result<user_view> {
        auto& st = self->state;
        st.core.touch();
        // An unknown name costs a password check too (against the hasher's
        // decoy hash), so neither the time to answer nor a 503 under load
        // tells whether a username exists.
        return check_password(self, ctx, st.exists ? st.user.password_hash : std::string{},
                              c.password, [self](bool ok, account_promise& rp) {
                                auto& st = self->state;
                                if (!ok || !st.exists)
                                  rp.deliver(
                                    make_error(errc::unauthorized, "wrong username or password"));
                                else // a token only for an account (or password) that is durable
                                  deliver_durable(st.core, rp, view_of(st.user));
                              });
      },
      [=](const get_user& c) -> caf::result<user_view> {
        auto& st = self->state;
        st.core.touch();
        if (!st.exists || (!c.user_id.empty() && c.user_id != st.user.user_id))
          return reject_durable<user_view>(self, make_error(errc::not_found, "no such user"));
        return reply_durable(self, view_of(st.user));
      },
    };
  };
  return activate_entity(self, ctx, entity_kind::user, std::move(username), load, running,
                         [] { return true; });
}

namespace {

/// An argon2 result other than success or a mismatch: out of memory is worth
/// a retry (503), anything else is a fault (500).
caf::error argon2_failure(int rc) {
  return make_error(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? errc::unavailable : errc::internal,
                    std::string{"argon2: "} + argon2_error_message(rc));
}

/// An argon2id hash of `password` with a fresh salt, encoded, or an error text.
caf::expected<std::string> hash_password(const std::string& password, uint32_t t_cost,
                                         uint32_t m_cost) {
  unsigned char salt[16];
  auto salt_hex = random_hex(sizeof(salt));
  for (size_t i = 0; i < sizeof(salt); ++i)
    salt[i] = static_cast<unsigned char>(std::stoi(salt_hex.substr(i * 2, 2), nullptr, 16));
  const size_t hash_len = 32;
  std::string encoded(argon2_encodedlen(t_cost, m_cost, 1, sizeof(salt), hash_len, Argon2_id),
                      '\0');
  auto rc = argon2id_hash_encoded(t_cost, m_cost, 1, password.data(), password.size(), salt,
                                  sizeof(salt), hash_len, encoded.data(), encoded.size());
  if (rc != ARGON2_OK)
    return argon2_failure(rc);
  encoded.resize(std::strlen(encoded.c_str()));
  return encoded;
}

} // namespace

caf::behavior password_hasher(caf::event_based_actor* self, uint32_t cost,
                              std::weak_ptr<hasher_pool> pool) {
  const uint32_t t_cost = 2;
  const uint32_t m_cost = 1u << std::clamp<uint32_t>(cost, 3, 22);
  // A decoy hash, checked for logins of unknown names; made on the first
  // one (a start does not pay for it, nor wait on it).
  auto decoy_hash = std::make_shared<std::string>();
  // How long this hasher's last hash or check took.
  auto last_took = std::make_shared<std::chrono::nanoseconds>(0);
  // A request whose sender will have given up (its `deadline`, in
  // steady-clock nanoseconds) before a hash could finish is not started: its
  // answer would be dropped. Requests queued in a storm, each past its
  // sender's timeout, thus cost next to nothing, and those behind them start
  // in time. Not reported to the pool: its estimate is of real hashes.
  auto too_late = [last_took](int64_t deadline) -> caf::error {
    auto finish = std::chrono::steady_clock::now() + *last_took;
    if (std::chrono::duration_cast<std::chrono::nanoseconds>(finish.time_since_epoch()).count()
        <= deadline)
      return caf::none;
    return make_error(errc::unavailable, "the password check waited past its request's timeout");
  };
  // Reports how long each message took, once it is handled.
  struct timer {
    std::weak_ptr<hasher_pool> pool;
    std::shared_ptr<std::chrono::nanoseconds> last_took;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    ~timer() {
      *last_took = std::chrono::steady_clock::now() - start;
      if (auto p = pool.lock())
        p->observe(std::chrono::duration_cast<std::chrono::microseconds>(*last_took));
    }
  };
  return {
    [=](hash_atom, const std::string& password, int64_t deadline) -> caf::result<std::string> {
      if (auto late = too_late(deadline))
        return late;
      timer timed{pool, last_took};
      auto encoded = hash_password(password, t_cost, m_cost);
      if (!encoded)
        return std::move(encoded.error());
      return std::move(*encoded);
    },
    // An empty `encoded` (an unknown user) is checked against the decoy and
    // answers false, at the cost of a real check. A check that fails for
    // another reason than a wrong password (memory) is an error, not "wrong
    // password", for known and unknown names alike.
    [=](verify_atom, const std::string& encoded, const std::string& password,
        int64_t deadline) -> caf::result<bool> {
      if (auto late = too_late(deadline))
        return late;
      timer timed{pool, last_took};
      if (encoded.empty() && decoy_hash->empty()) {
        auto made = hash_password(random_hex(16), t_cost, m_cost);
        if (!made)
          return std::move(made.error());
        *decoy_hash = std::move(*made);
      }
      const auto& against = encoded.empty() ? *decoy_hash : encoded;
      auto rc = argon2id_verify(against.c_str(), password.data(), password.size());
      if (rc == ARGON2_OK)
        return !encoded.empty();
      if (rc == ARGON2_VERIFY_MISMATCH)
        return false;
      return argon2_failure(rc);
    },
  };
}

} // namespace shop
