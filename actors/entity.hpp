#pragma once
// What every persistent entity (virtual actor) shares: the node context it is
// spawned with, and `entity_core`, which implements persist-then-reply.
//
// Persist, then reply: a handler applies a command to in-memory state at
// once (mailbox order), hands the resulting writes to the journal and keeps
// the reply until the journal reports that batch durable. Any reply, also a
// read or a rejection, is held until every change applied before it is
// durable, so no answer ever reveals state that could still be lost. The
// entity never blocks: it keeps serving its mailbox meanwhile.

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/result.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/atoms.hpp"
#include "protocols/errc.hpp"
#include "protocols/types.hpp"
#include "storage/journal.hpp"
#include "storage/store.hpp"

namespace shop {

enum class entity_kind : uint8_t { sku = 1, sale = 2, order = 3, user = 4, cart = 5 };

const char* to_string(entity_kind k) noexcept;

/// One flash sale's figures as its SKU last saw them (stores by the SKU's
/// actor, loads by /metrics).
struct sale_gauge {
  millis ends_at = 0;
  std::atomic<int64_t> remaining{0}; ///< units the sale can still sell
  std::atomic<int64_t> purchased{0}; ///< units held by its buyers (reserved or paid)
};

/// The flash sales not yet ended whose SKU has been active since the node started.
/// Thread-safe; one per node.
class sale_gauges {
public:
  /// The gauge of a sale of `sku` (a new one, replacing any: a restarted SKU starts over).
  std::shared_ptr<sale_gauge> track(const std::string& sale_id, const std::string& sku,
                                    millis ends_at);
  /// Drops every gauge of `sku` (its SKU is activated and publishes anew).
  void forget_sku(const std::string& sku);
  /// Appends shop_flash_sale_remaining and shop_flash_sale_purchased_units;
  /// drops the sales that have ended by `now`.
  void write(std::string& out, millis now);

private:
  std::mutex mtx_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<sale_gauge>> gauges_; // (sale, sku)
};

/// Counters of the entity population, one per node (read by /metrics).
struct entity_metrics {
  std::atomic<int64_t> active{0};
  std::atomic<uint64_t> activations{0};
  std::atomic<uint64_t> passivations{0};
  std::atomic<uint64_t> crashes{0};
  std::atomic<uint64_t> restarts{0};
  /// Orders answered without their cart's confirmation that the ordered
  /// lines left it (they leave when the order is loaded again).
  std::atomic<uint64_t> unconfirmed_cart_clears{0};
  /// Releases of reserved units an order did not see confirmed in time
  /// (cancels, refused checkouts): the SKU's expiry timer releases them.
  std::atomic<uint64_t> unconfirmed_releases{0};
  sale_gauges sales;
};

/// Handles of the password hasher actors (argon2 on their own threads), lent
/// round-robin. One per node, thread-safe, always held by a shared_ptr (a
/// loan keeps its pool alive). After close() it lends nothing, so the detached
/// hasher threads can end (they hold on until no handle to them is left).
class hasher_pool : public std::enable_shared_from_this<hasher_pool> {
public:
  /// A hasher lent for one hash or verify: the pool counts it as queued until
  /// the last copy of `lease` is gone (the answer handled, or the asking actor
  /// gone with its handlers).
  struct loan {
    caf::actor worker;
    std::shared_ptr<void> lease;
  };

  /// Lends a hasher only while the work already lent would be done within
  /// `queue_budget` (judged by the hashers' recent hash times; before the
  /// first is known, one request per hasher), and always at least one request
  /// per hasher. Cheap hashes (tests) are never refused; at argon2's default
  /// cost (~100 ms) a few requests per hasher are.
  explicit hasher_pool(std::chrono::milliseconds queue_budget = std::chrono::seconds{1});

  void add(caf::actor worker);
  /// A hasher, or `unavailable` when the pool is closed or its queue is full
  /// (see above). Refusing at once (503, Retry-After) keeps a login storm from
  /// queueing work that would only run after its client gave up, which would
  /// starve every later login too.
  caf::expected<loan> lend();
  /// A hasher reports how long one hash or verify took.
  void observe(std::chrono::microseconds took);
  /// Forgets every hasher and returns them (to send them an exit).
  std::vector<caf::actor> close();
  /// Requests lent and not yet answered.
  size_t lent() const;

private:
  mutable std::mutex mtx_;
  std::vector<caf::actor> workers_;
  size_t next_ = 0;
  size_t lent_ = 0;
  std::chrono::microseconds queue_budget_;
  /// Moving average of the hash times reported by observe() (0: none yet).
  std::chrono::microseconds service_time_{0};
};

/// Everything an entity needs from its node. One per node, shared read-only.
struct entity_context {
  store_ptr db;
  std::shared_ptr<shop::journal> journal;
  /// Fixed per deployment; part of every key.
  uint32_t shard_count = 64;
  /// Server secret for order ids derived from idempotency keys.
  std::string order_secret;
  /// How long an order waits for payment. Default: 900 s.
  std::chrono::milliseconds payment_timeout{900'000};
  /// How long an entity stays active without messages. Default: 120 s.
  std::chrono::milliseconds passivate_after{120'000};
  /// Timeout of requests between entities. Default: 5 s.
  std::chrono::milliseconds ask_timeout{5'000};
  /// How long an order's answer waits for other entities to store what
  /// follows from its stored change (the cart's lines taken out after a
  /// checkout from the cart, the SKUs' units released after a cancel): well
  /// inside the edge's request timeout (5 s by default), since the order's
  /// own change is durable and must not be answered with a 503. Capped by
  /// `ask_timeout`. Default: 1 s.
  std::chrono::milliseconds follow_up_wait{1'000};
  /// How long a crashed entity waits for the journal to write what it
  /// submitted before it answers the requests still waiting (its worker
  /// thread is blocked meanwhile). Default: 30 s.
  std::chrono::milliseconds crash_settle_timeout{30'000};
  /// How long the region remembers an entity's crashes: one that has not
  /// crashed for this long starts again with a clean record (its next
  /// quarantine, if any, is the shortest). Default: 10 min.
  std::chrono::milliseconds crash_memory{600'000};
  /// The node's shard region: entities reach each other through it.
  caf::actor region;
  std::shared_ptr<hasher_pool> hashers;
  std::shared_ptr<entity_metrics> metrics;
};

using context_ptr = std::shared_ptr<const entity_context>;

/// Wall-clock milliseconds since the epoch.
millis now_millis();

/// Fault injection: crash the named entity (the region routes it).
struct crash_entity {
  entity_kind kind = entity_kind::sku;
  std::string id;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, crash_entity& x) {
  return f(caf::meta::type_name("shop::crash_entity"), x.kind, x.id);
}

/// The region's figures.
struct region_stats {
  int64_t active = 0;
  uint64_t activations = 0;
  uint64_t passivations = 0;
  uint64_t crashes = 0;
  uint64_t restarts = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, region_stats& x) {
  return f(caf::meta::type_name("shop::region_stats"), x.active, x.activations, x.passivations,
           x.crashes, x.restarts);
}

/// The persist-then-reply machinery and lifecycle bookkeeping of one entity.
/// Lives in the entity's state; used only from the entity's own thread of control.
class entity_core {
public:
  /// Called once with nullptr when the awaited changes are durable, or with the error.
  using waiter = std::function<void(const caf::error*)>;

  context_ptr ctx;
  entity_kind kind = entity_kind::sku;
  std::string id;

  /// True when every submitted change is durable.
  bool quiescent() const noexcept { return submitted_ == committed_; }

  /// Counts one command delivered by the region (the passivation handshake
  /// compares this with the region's count) and marks activity.
  void touch() noexcept {
    ++processed_;
    last_active_ = std::chrono::steady_clock::now();
  }
  uint64_t processed() const noexcept { return processed_; }
  std::chrono::steady_clock::duration idle_for() const {
    return std::chrono::steady_clock::now() - last_active_;
  }

  /// Submits `ops` to the journal; `self` receives (committed_atom, seq, ok).
  void persist(const caf::actor& self, write_batch ops);

  /// Runs `fn` once every change submitted so far is durable (at once if none is pending).
  void after_commit(waiter fn);

  /// Every batch up to `seq` is durable: completes the waiters up to it.
  void on_committed(uint64_t seq);

  /// Handles a (committed_atom) wake-up: re-arms notification, calls
  /// `on_durable` if set, then completes every waiter whose batch is durable
  /// by now.
  void on_commit_notice();
  /// Called after each commit notice (at most once per group commit that
  /// carried a batch of this entity: notices are merged), e.g. to publish figures.
  std::function<void()> on_durable;

  /// Answers every held request with `err` (after a failed commit).
  void fail_all(const caf::error& err);

  /// After a failed batch (the caller then stops the entity): answers every
  /// request whose batch is durable with success, every other held request
  /// and every hold with an error.
  void settle_after_failure();

  /// Registers the failure path of a request whose answer waits on another
  /// actor (a `.then`/`.await` continuation): if the entity crashes first,
  /// `fail` answers it. Returns a ticket for `unhold` (call it when answered).
  uint64_t hold(std::function<void(const caf::error&)> fail);
  void unhold(uint64_t ticket);
  /// True while a request waits on another actor (the entity must not passivate).
  bool holding() const noexcept { return !holds_.empty(); }

  /// True once a batch of this entity failed: its in-memory state is ahead of
  /// storage, so nothing more may be acknowledged or written.
  bool poisoned() const noexcept { return poisoned_->load(); }

  /// Before a crashed entity dies: waits (blocking, one group commit) until
  /// the journal has written every batch this entity submitted, then answers
  /// each held request with its real outcome: success if its batch is
  /// durable, else an error. A crash thus never turns a durable change into
  /// an error reply, nor an error into a lost change. If storage takes longer
  /// than `crash_settle_timeout`, the requests whose batches are durable by
  /// then still get success, and the others an error that says their change
  /// may yet be stored: the restarted entity waits for the journal before it
  /// loads, so a retry sees it if it was.
  void settle_before_crash();

  /// True once settle_before_crash gave up waiting for storage: a change this
  /// entity answered with an error may still be stored. Whoever acts on
  /// those errors (an order freeing its cart's lines) must not take them as
  /// "not stored"; the restarted entity, which loads after the journal, knows.
  bool outcome_in_doubt() const noexcept { return in_doubt_; }

private:
  /// Highest sequence number the journal reported durable; written on the
  /// journal's thread, read by settle_before_crash.
  std::shared_ptr<std::atomic<uint64_t>> durable_ = std::make_shared<std::atomic<uint64_t>>(0);
  /// True while a commit notice is on its way to the entity: the journal
  /// sends one notice per entity however many of its batches a group holds.
  std::shared_ptr<std::atomic<bool>> notice_pending_ = std::make_shared<std::atomic<bool>>(false);
  /// Set by the journal's thread when a batch of this entity fails, after
  /// `first_failed_` (the lowest failed sequence number).
  std::shared_ptr<std::atomic<bool>> poisoned_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<uint64_t>> first_failed_ =
    std::make_shared<std::atomic<uint64_t>>(UINT64_MAX);

  /// The highest sequence number known durable with no failed batch at or below it.
  uint64_t durable_prefix() const;
  /// Answers every hold with `err`.
  void fail_holds(const caf::error& err);
  std::unordered_map<uint64_t, std::function<void(const caf::error&)>> holds_;
  uint64_t next_hold_ = 0;
  bool in_doubt_ = false;
  uint64_t submitted_ = 0;
  uint64_t committed_ = 0;
  uint64_t processed_ = 0;
  std::chrono::steady_clock::time_point last_active_ = std::chrono::steady_clock::now();
  std::deque<std::pair<uint64_t, waiter>> waiting_;
};

/// An entity's creation receipt (see creation_receipt), read from storage at
/// most once per activation: kept when this activation made it, else read
/// when a keyed creation finds the entity already there.
class receipt_cache {
public:
  /// The first creation's answer (encoded) if it carried Idempotency-Key
  /// `key` from `requester`; empty if it did not, or if `key` is empty (the
  /// creation is then refused as a conflict).
  caf::expected<std::string> first_answer(const store& db, const std::string& storage_key,
                                          const std::string& key, const std::string& requester);
  /// Keeps the receipt of a creation made now (if it carried a key) and adds
  /// its write to the creation's batch.
  void keep(write_batch& ops, const std::string& storage_key, creation_receipt r);

private:
  bool known_ = false;
  std::optional<creation_receipt> value_;
};

/// The refusal of a creation whose Idempotency-Key was first used for a
/// different request.
caf::error reused_key();

/// Delivers `value` through `rp` once every change applied so far is durable
/// (or the error if a commit fails).
template <class Promise, class T>
void deliver_durable(entity_core& core, Promise rp, T value) {
  core.after_commit([rp, v = std::move(value)](const caf::error* err) mutable {
    if (err)
      rp.deliver(*err);
    else
      rp.deliver(std::move(v));
  });
}

/// Delivers the error `err` through `rp` once every change applied so far is
/// durable: a refusal may reveal state too (or the commit's error if it fails).
template <class Promise>
void reject_when_durable(entity_core& core, Promise rp, caf::error err) {
  core.after_commit([rp, e = std::move(err)](const caf::error* failure) mutable {
    rp.deliver(failure ? *failure : e);
  });
}

/// Returns `value` to the requester once every change applied so far is durable.
template <class T, class State>
caf::result<T> reply_durable(caf::stateful_actor<State>* self, T value) {
  auto& core = self->state.core;
  if (core.quiescent())
    return value;
  auto rp = self->template make_response_promise<T>();
  deliver_durable(core, rp, std::move(value));
  return rp;
}

/// Returns the error `err` once every change applied so far is durable.
template <class T, class State>
caf::result<T> reject_durable(caf::stateful_actor<State>* self, caf::error err) {
  auto& core = self->state.core;
  if (core.quiescent())
    return err;
  auto rp = self->template make_response_promise<T>();
  reject_when_durable(core, rp, std::move(err));
  return rp;
}

/// Common lifecycle of an entity actor. `load` reads durable state (returning
/// an error stops the entity); `running` makes the behavior that serves
/// commands; `can_passivate` says whether the entity holds work that must
/// keep it alive (e.g. reservation timers).
///
/// Activation waits for a journal barrier before loading, so that a restart
/// after a crash never reads storage while the crashed incarnation's last
/// batches are still in flight. Messages that arrive meanwhile wait (skip).
template <class State>
caf::behavior
activate_entity(caf::stateful_actor<State>* self, context_ptr ctx, entity_kind kind,
                std::string id, std::function<caf::error()> load,
                std::function<caf::message_handler()> running, std::function<bool()> can_passivate);

} // namespace shop

#include "actors/entity_impl.hpp"
