// order: one actor per order; the single arbiter of the order's status, so a
// cancel, an expiry and a payment that race are decided here, once.
//
// Flash-sale orders are created by their SKU (in the same write as the
// reservation). Checkout orders are placed here, as a saga over their SKUs:
//   1. (from_cart) take the user's cart's lines (take_cart): another
//      checkout of the cart waits until this one ends, so a double click
//      orders the lines once;
//   2. ask every SKU to reserve its line for this order id (in parallel);
//   3. all reserved: write the order, take its lines out of the cart (which
//      ends the checkout), answer 201 once both are durable; any refused:
//      release every line, end the checkout and answer the refusal
//      (all-or-nothing).
// A crash of this entity during 2 or 3, or a failed write of the order, leaves
// reservations without an order: this entity asks their SKUs to check them
// now (recheck_reservation), a crash of the node makes them check when they
// load again (after a restart), and in any case they ask when the
// reservations fall due. The entity, loaded from storage, answers `expired`
// for an order that does not exist and is not being placed; the units return.
// A retry with the same Idempotency-Key lands here again and reuses the
// reservations that are left. A cart whose lines an attempt still holds past
// its time limit, or held when the cart restarted, asks the order how that
// attempt stands (checkout_under_way): still placing, placed (the cart takes
// the lines out), or over.

#include <algorithm>
#include <memory>
#include <utility>

#include <caf/all.hpp>

#include "actors/entities.hpp"
#include "protocols/log_throttle.hpp"
#include "protocols/record_codec.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

using order_self = caf::stateful_actor<order_state>;

/// Warnings that every order would log while a cart or a SKU is quarantined
/// (thousands a second under load): one line a second for the whole node.
log_throttle unconfirmed_clear_log{std::chrono::seconds{1}};
log_throttle unconfirmed_release_log{std::chrono::seconds{1}};


bool visible_to(const order_state& st, const std::string& requester, bool admin) {
  return st.exists && (admin || st.order.user_id == requester);
}

bool has_line(const order_record& o, const std::string& sku) {
  return std::any_of(o.items.begin(), o.items.end(),
                     [&](const order_line& l) { return l.sku == sku; });
}

int64_t amount_due(const order_record& o) {
  return o.total_cents - o.discount_cents;
}

/// The order as its placement answered it. A retry gets that first answer
/// (API.md: same status, same body), not the order's later state; only the
/// status, the payment and the update time change after placement.
order_record as_placed(order_record o) {
  o.status = order_status::pending_payment;
  o.updated_at = o.created_at;
  o.payment_id.clear();
  o.payment_method.clear();
  o.paid_at = 0;
  return o;
}

/// The answer to a placement request once the order exists: the order as
/// placed (replayed) if the request is the same one, else a conflict.
caf::expected<purchase_result> replay(const order_record& order, const checkout& req) {
  auto reused = make_error(errc::conflict,
                           "this Idempotency-Key was already used for a different request");
  if (req.user_id != order.user_id || !order.flash_sale_id.empty())
    return reused;
  if (order.source != order_source::unknown
      && (order.source == order_source::cart) != req.from_cart)
    return reused; // the lines came as a list, the retry names the cart, or the reverse
  if (!req.from_cart) {
    if (req.items.size() != order.items.size())
      return reused;
    for (auto& line : req.items) {
      auto same = std::find_if(order.items.begin(), order.items.end(), [&](const order_line& o) {
        return o.sku == line.sku && o.quantity == line.quantity;
      });
      if (same == order.items.end())
        return reused;
    }
  }
  return purchase_result{as_placed(order), true};
}

/// Whether the lines of `o` are still to leave its buyer's cart: an order
/// placed from the cart, unpaid and not yet due (an expiring order's lines
/// stay in the cart).
bool takes_cart_lines(const order_record& o) {
  return o.source == order_source::cart && o.status == order_status::pending_payment
         && now_millis() < o.expires_at;
}

/// Takes the lines of an order placed from the cart out of it, without
/// waiting: when the order is loaded from storage, in case a crash came
/// between the order's write and the cart's. The cart takes out only lines
/// not set since the order was placed, so asking again takes out nothing the
/// user put in since.
void clear_ordered_lines(const context_ptr& ctx, const order_record& o) {
  if (takes_cart_lines(o))
    caf::anon_send(ctx->region, clear_cart{o.user_id, o.items, o.created_at, o.order_id});
}

/// Tells the cart of `user_id` that this attempt to place `order_id` ended
/// its checkout without taking the lines out: the cart's next checkout may go on.
void end_cart_checkout_of(order_self* self, const std::string& user_id,
                          const std::string& order_id) {
  caf::anon_send(self->state.core.ctx->region, end_cart_checkout{user_id, order_id, self->id()});
}

/// How often an order asks a cart again whose write failed (it restarts
/// from storage, and the new one is asked): enough for a failed commit or
/// two, and a quarantined cart (answered at once) is not asked in a loop.
constexpr int clear_retries = 3;

/// Asks the cart to take the lines of `o` out, until `deadline`; `retries`
/// more times after an error that is not a timeout.
template <class Done>
void ask_cart_to_clear(order_self* self, const order_record& o,
                       std::chrono::steady_clock::time_point deadline, int retries, Done done) {
  auto ctx = self->state.core.ctx;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    deadline - std::chrono::steady_clock::now());
  self->request(ctx->region, std::max(left, std::chrono::milliseconds{1}),
                clear_cart{o.user_id, o.items, o.created_at, o.order_id})
    .then([done](cart_view&) mutable { done(); },
          [self, o, deadline, retries, done, ctx](caf::error& err) mutable {
            if (retries > 0 && err != caf::sec::request_timeout
                && std::chrono::steady_clock::now() < deadline) {
              ask_cart_to_clear(self, o, deadline, retries - 1, std::move(done));
              return;
            }
            if (ctx->metrics)
              ctx->metrics->unconfirmed_cart_clears.fetch_add(1, std::memory_order_relaxed);
            uint64_t held_back = 0;
            if (unconfirmed_clear_log.allow(held_back))
              spdlog::warn("order {}: the cart of {} did not confirm that the ordered lines left "
                           "it ({}); they leave when the order is loaded again{}",
                           o.order_id, o.user_id, describe(err).message,
                           log_throttle::held_back_note(held_back));
            done();
          });
}

/// Takes the lines of `o` out of the cart and calls `done` once the cart has
/// stored that (at once for an order that takes none). The 201 of an order
/// placed from the cart waits for it: a client that has its 201 must not find
/// the ordered lines in its cart after a crash, free to be ordered twice. A
/// cart whose write fails restarts from storage and is asked again. One that
/// does not confirm within `follow_up_wait` (restarting, quarantined) is
/// logged and `done` still runs; the order asks again whenever it is loaded.
template <class Done>
void clear_ordered_lines_then(order_self* self, const order_record& o, Done done) {
  if (!takes_cart_lines(o)) {
    done();
    return;
  }
  auto ctx = self->state.core.ctx;
  auto wait = std::min(ctx->ask_timeout, ctx->follow_up_wait);
  ask_cart_to_clear(self, o, std::chrono::steady_clock::now() + wait, clear_retries,
                    std::move(done));
}

/// Sends `release_reservation` for every line (idempotent at the SKU).
void release_lines(const context_ptr& ctx, const std::string& order_id,
                   const std::vector<order_line>& lines) {
  for (auto& line : lines) // anonymous: the SKUs' acknowledgements have nowhere to go
    caf::anon_send(ctx->region, release_reservation{line.sku, order_id});
}

/// Asks every line's SKU to release its units and calls `done` once each has
/// answered: a SKU answers once the release is durable. A SKU that does not
/// answer within `follow_up_wait` (restarting, quarantined, far behind)
/// releases the units when its expiry timer asks this order; that is logged,
/// and `done` still runs.
template <class Done>
void release_lines_then(order_self* self, const std::string& order_id,
                        const std::vector<order_line>& lines, Done done) {
  auto ctx = self->state.core.ctx;
  auto wait = std::min(ctx->ask_timeout, ctx->follow_up_wait);
  auto left = std::make_shared<size_t>(lines.size());
  auto one_answered = [left, done]() mutable {
    if (--*left == 0)
      done();
  };
  if (lines.empty()) {
    done();
    return;
  }
  for (auto& line : lines)
    self->request(ctx->region, wait, release_reservation{line.sku, order_id})
      .then([one_answered](bool) mutable { one_answered(); },
            [one_answered, ctx, order_id, sku = line.sku](caf::error& err) mutable {
              if (ctx->metrics)
                ctx->metrics->unconfirmed_releases.fetch_add(1, std::memory_order_relaxed);
              uint64_t held_back = 0;
              if (unconfirmed_release_log.allow(held_back))
                spdlog::warn("order {}: sku {} did not confirm the release ({}); its expiry "
                             "timer releases the units{}",
                             order_id, sku, describe(err).message,
                             log_throttle::held_back_note(held_back));
              one_answered();
            });
}

/// Answers every request waiting on the placement and ends it: with `err`,
/// or with the order as it was created (a cancel may already have followed).
/// A checkout from the cart that failed frees the cart's lines for the next,
/// unless the entity crashed while storage held the order's write: it may
/// still land, and a second checkout must not order the same lines meanwhile.
/// The cart keeps them held and asks this order's next entity, which loads
/// once that write is done (and, if it landed, takes them out on load).
void answer_placement(order_self* self, const caf::error* err, const order_record* created) {
  auto& st = self->state;
  if (err && !st.placement.empty() && st.placement.front().first.from_cart
      && !st.core.outcome_in_doubt())
    end_cart_checkout_of(self, st.placement.front().first.user_id, st.core.id);
  // Failed with reservations made or asked for (the entity crashed, or the
  // order's write failed): their SKUs ask this order now, not at their
  // expiry. Its entity, loaded from storage, answers `expired` unless the
  // order was stored after all, and the units return. (Each question reaches
  // its SKU behind the reservation it is about.)
  auto reserving = std::exchange(st.reserving, {});
  if (err)
    for (auto& line : reserving)
      caf::anon_send(st.core.ctx->region, recheck_reservation{line.sku, st.core.id});
  auto waiting = std::move(st.placement);
  st.placement.clear();
  st.placing = false;
  st.placed.reset();
  bool first = true;
  for (auto& [req, rp] : waiting) {
    if (err) {
      rp.deliver(*err);
    } else if (first) {
      rp.deliver(purchase_result{*created, false});
    } else if (auto r = replay(*created, req)) {
      rp.deliver(std::move(*r));
    } else {
      rp.deliver(r.error());
    }
    first = false;
  }
}

/// answer_placement, and the placement's hold ends.
void finish_placement(order_self* self, uint64_t ticket, const caf::error* err,
                      const order_record* created = nullptr) {
  self->state.core.unhold(ticket);
  answer_placement(self, err, created);
}

/// Step 2 and 3 of the saga, for `lines` (sorted by SKU, each SKU once).
/// `started`: when the lines were given (for a checkout from the cart, when
/// the cart's answer came, after it read them); it is the order's
/// `created_at`, so cart lines set after that are not taken out.
void reserve_lines(order_self* self, uint64_t ticket, const checkout& req,
                   std::vector<order_line> lines, millis started) {
  auto& st = self->state;
  auto ctx = st.core.ctx;
  struct join {
    std::vector<order_line> lines;
    caf::error refusal;
    size_t pending = 0;
    millis created_at = 0;
    millis expires_at = 0;
  };
  auto j = std::make_shared<join>();
  j->lines = std::move(lines);
  j->pending = j->lines.size();
  st.reserving = j->lines;
  j->created_at = started;
  j->expires_at = j->created_at + ctx->payment_timeout.count();
  auto on_done = [self, ticket, j, ctx, user = req.user_id, from_cart = req.from_cart] {
    auto& st = self->state;
    const auto& order_id = st.core.id;
    if (st.placement.empty()) // the entity failed meanwhile and answered every request
      return;
    if (j->refusal) {
      // Answered once the lines already reserved are released (durably, at
      // their SKUs): a client that retries at once finds the units back.
      self->state.reserving.clear(); // released here, durably
      release_lines_then(self, order_id, j->lines, [self, ticket, j] {
        if (!self->state.placement.empty()) // else the entity failed and answered meanwhile
          finish_placement(self, ticket, &j->refusal);
      });
      return;
    }
    auto& o = st.order;
    o = order_record{};
    o.order_id = order_id;
    o.user_id = user;
    o.status = order_status::pending_payment;
    o.items = j->lines;
    for (auto& line : o.items)
      o.total_cents += line.quantity * line.price_cents;
    o.created_at = j->created_at;
    o.updated_at = j->created_at;
    o.expires_at = j->expires_at;
    o.source = from_cart ? order_source::cart : order_source::items;
    st.exists = true;
    write_batch ops;
    ops.push_back(put_op(keys::entity(keys::order, order_id, ctx->shard_count), encode(o)));
    st.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
    st.core.after_commit([self, ticket, created = o](const caf::error* err) {
      if (err) {
        finish_placement(self, ticket, err, &created);
        return;
      }
      self->state.placed = created;
      if (created.source == order_source::cart && !takes_cart_lines(created))
        end_cart_checkout_of(self, created.user_id, created.order_id); // due already: the lines stay
      clear_ordered_lines_then(self, created, [self, ticket, created] {
        if (!self->state.placement.empty()) // else the entity failed and answered meanwhile
          finish_placement(self, ticket, nullptr, &created);
      });
    });
  };
  for (size_t i = 0; i < j->lines.size(); ++i) {
    auto& line = j->lines[i];
    reserve_stock cmd{line.sku, st.core.id, req.user_id, line.quantity, j->expires_at};
    self->request(ctx->region, ctx->ask_timeout, std::move(cmd))
      .then(
        [j, i, on_done](order_line& reserved) {
          j->lines[i].price_cents = reserved.price_cents;
          if (--j->pending == 0)
            on_done();
        },
        [j, on_done](caf::error& err) {
          // Prefer the refusal a client can act on (insufficient stock) over others.
          if (!j->refusal || describe(err).code == errc::insufficient_stock)
            j->refusal = std::move(err);
          if (--j->pending == 0)
            on_done();
        });
  }
}

/// Starts placing the order for `req` (the first request for this order id).
void place(order_self* self, const checkout& req) {
  auto& st = self->state;
  auto ctx = st.core.ctx;
  st.placing = true;
  // The entity crashed or failed before the placement was answered: with the
  // order if it is stored (the answer was waiting for the cart), else `err`.
  auto ticket = st.core.hold([self](const caf::error& err) {
    if (auto placed = std::move(self->state.placed))
      answer_placement(self, nullptr, &*placed);
    else
      answer_placement(self, &err, nullptr);
  });
  auto start = [self, ticket, req](std::vector<order_line> lines, millis started) {
    if (lines.empty()) {
      auto err = make_error(errc::validation_failed, "the cart is empty");
      finish_placement(self, ticket, &err);
      return;
    }
    std::sort(lines.begin(), lines.end(),
              [](const order_line& a, const order_line& b) { return a.sku < b.sku; });
    reserve_lines(self, ticket, req, std::move(lines), started);
  };
  if (!req.from_cart) {
    start(req.items, now_millis());
    return;
  }
  // (The cart may have waited for another checkout of it to end first.)
  self->request(ctx->region, ctx->ask_timeout, take_cart{req.user_id, st.core.id, self->id()})
    .then([start](cart_view& cart) { start(std::move(cart.items), now_millis()); },
          [self, ticket](caf::error& err) { finish_placement(self, ticket, &err); });
}

} // namespace

caf::behavior order_actor(order_self* self, context_ptr ctx, std::string order_id) {
  auto key = keys::entity(keys::order, order_id, ctx->shard_count);
  auto load = [self, ctx, key]() -> caf::error {
    std::string raw;
    auto found = ctx->db->get(key, raw);
    if (!found)
      return found.error();
    if (*found) {
      if (!decode(raw, self->state.order))
        return make_error(errc::internal, "corrupt order record");
      self->state.exists = true;
      clear_ordered_lines(ctx, self->state.order);
    }
    return caf::none;
  };
  auto save = [self, ctx, key] {
    auto& st = self->state;
    st.order.updated_at = now_millis();
    write_batch ops;
    ops.push_back(put_op(key, encode(st.order)));
    st.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
  };
  /// Expires an unpaid order: once that is durable, its units are released,
  /// without waiting for the SKUs (nobody waits for an expiry's answer but the
  /// SKU that asked, which releases its own line on it). A lost release is
  /// redone when the SKU's expiry timer asks us. (A cancel waits for the
  /// releases: see cancel_order.)
  auto end_unpaid = [self, ctx, save](order_status s) {
    auto& st = self->state;
    st.order.status = s;
    save();
    st.core.after_commit([ctx, id = st.order.order_id, lines = st.order.items](const caf::error* err) {
      if (!err)
        release_lines(ctx, id, lines);
    });
  };
  auto running = [self, ctx, save, end_unpaid]() -> caf::message_handler {
    return {
      [=](const get_order& c) -> caf::result<order_record> {
        auto& st = self->state;
        st.core.touch();
        // Another user's order answers 404, so ids cannot be probed.
        if (!visible_to(st, c.requester, c.requester_is_admin))
          return reject_durable<order_record>(self, make_error(errc::not_found, "no such order"));
        return reply_durable(self, st.order);
      },
      [=](const place_order& c) -> caf::result<purchase_result> {
        auto& st = self->state;
        st.core.touch();
        if (st.exists) {
          auto r = replay(st.order, c.request);
          if (!r)
            return reject_durable<purchase_result>(self, r.error());
          auto rp = self->make_response_promise<purchase_result>();
          if (st.placing) { // written, the cart not yet cleared: answered with the placement
            st.placement.emplace_back(c.request, rp);
            return rp;
          }
          // A retry may follow a crash between the order's write and the
          // cart's: its 201 too waits until the lines left the cart. The
          // order is stored: a crash or failure meanwhile answers with it.
          auto answered = std::make_shared<bool>(false);
          auto ticket = st.core.hold([rp, answered, placed = *r](const caf::error&) mutable {
            if (!std::exchange(*answered, true))
              rp.deliver(std::move(placed));
          });
          // The answer is the order as placed, which is stored: it does not
          // wait for later changes of this order (a payment being written).
          clear_ordered_lines_then(self, st.order,
                                   [self, rp, answered, ticket, r = std::move(*r)]() mutable {
                                     self->state.core.unhold(ticket);
                                     if (!std::exchange(*answered, true))
                                       rp.deliver(std::move(r));
                                   });
          return rp;
        }
        auto rp = self->make_response_promise<purchase_result>();
        st.placement.emplace_back(c.request, rp);
        if (!st.placing) // else: a concurrent retry, answered with the first request
          place(self, c.request);
        return rp;
      },
      [=](const checkout_under_way& c) -> caf::result<checkout_progress> {
        auto& st = self->state;
        st.core.touch();
        // An attempt is this entity's placement: a placement of an earlier
        // entity of this order ended when that entity stopped. Answered
        // once the state it reports is stored (a cancel being written could
        // still fail, and the order take its lines after all).
        checkout_progress out;
        out.under_way = st.placing && c.attempt == self->id();
        if (!out.under_way && st.exists && takes_cart_lines(st.order)) {
          out.ordered = st.order.items;
          out.ordered_at = st.order.created_at;
        }
        return reply_durable(self, std::move(out));
      },
      [=](const cancel_order& c) -> caf::result<order_record> {
        auto& st = self->state;
        st.core.touch();
        if (!visible_to(st, c.requester, c.requester_is_admin))
          return reject_durable<order_record>(self, make_error(errc::not_found, "no such order"));
        if (st.order.status != order_status::pending_payment)
          return reject_durable<order_record>(
            self, make_error(errc::conflict,
                             std::string{"the order is "} + to_string(st.order.status)));
        // The answer says the stock is released, so it waits for that too:
        // the order's own commit, then every SKU's durable release (which a
        // crash in between could otherwise lose until the SKU's timer fires).
        st.order.status = order_status::cancelled;
        save();
        auto rp = self->make_response_promise<order_record>();
        // Once the cancel is durable it is answered with the order, also if
        // this entity fails while the releases are under way.
        auto cancelled = std::make_shared<bool>(false);
        auto ticket = st.core.hold([rp, cancelled, order = st.order](const caf::error& err) mutable {
          if (*cancelled)
            rp.deliver(order);
          else
            rp.deliver(err);
        });
        st.core.after_commit([self, rp, ticket, cancelled, order = st.order](const caf::error* err) mutable {
          if (err) {
            self->state.core.unhold(ticket);
            rp.deliver(*err);
            return;
          }
          *cancelled = true;
          release_lines_then(self, order.order_id, order.items, [self, rp, ticket, order]() mutable {
            self->state.core.unhold(ticket);
            rp.deliver(order);
          });
        });
        return rp;
      },
      [=](const expire_order& c) -> caf::result<uint8_t> {
        auto& st = self->state;
        st.core.touch();
        auto answer = [&](order_status s) { return reply_durable(self, static_cast<uint8_t>(s)); };
        if (st.placing) // its reservations are still being made: not yet
          return answer(order_status::pending_payment);
        // No order, or an order without this SKU: the reservation is an
        // orphan of a placement that never completed. Let the SKU release it.
        if (!st.exists || !has_line(st.order, c.sku))
          return answer(order_status::expired);
        if (st.order.status == order_status::pending_payment) {
          if (now_millis() < st.order.expires_at) // not yet: the SKU asks again
            return answer(order_status::pending_payment);
          end_unpaid(order_status::expired);
        }
        return answer(st.order.status);
      },
      [=](const pay_order& c) -> caf::result<payment_view> {
        auto& st = self->state;
        st.core.touch();
        if (!visible_to(st, c.requester, false))
          return reject_durable<payment_view>(self, make_error(errc::not_found, "no such order"));
        if (st.order.status == order_status::pending_payment && now_millis() > st.order.expires_at)
          end_unpaid(order_status::expired); // its timer has not fired yet
        if (st.order.status != order_status::pending_payment)
          return reject_durable<payment_view>(
            self, make_error(errc::conflict,
                             std::string{"the order is "} + to_string(st.order.status)));
        if (st.order.payment_id.empty() || st.order.payment_method != c.method) {
          // One payment per order; retrying with another method re-labels it.
          st.order.payment_id = "pay_" + st.order.order_id;
          st.order.payment_method = c.method;
          save();
        }
        return reply_durable(self, payment_view{st.order.payment_id, st.order.order_id,
                                                amount_due(st.order), st.order.payment_method});
      },
      [=](const payment_callback& c) -> caf::result<order_record> {
        auto& st = self->state;
        st.core.touch();
        if (!st.exists)
          return reject_durable<order_record>(self, make_error(errc::not_found, "no such order"));
        if (st.order.payment_id.empty() || c.payment_id != st.order.payment_id)
          return reject_durable<order_record>(
            self, make_error(errc::not_found, "no payment " + c.payment_id + " for this order"));
        if (c.amount_cents != amount_due(st.order))
          return reject_durable<order_record>(
            self, make_error(errc::validation_failed,
                             "amount_cents " + std::to_string(c.amount_cents)
                               + " does not match the order's "
                               + std::to_string(amount_due(st.order))));
        if (!c.succeeded) // the buyer may pay again until the order expires
          return reply_durable(self, st.order);
        switch (st.order.status) {
          case order_status::paid:
          case order_status::shipped:
          case order_status::refunded: return reply_durable(self, st.order); // a repeated callback
          case order_status::cancelled:
          case order_status::expired:
            // The buyer paid for an order that had already ended: the money
            // is owed back, never kept and never lost (API.md). Its stock
            // was released when it ended.
            st.order.status = order_status::refunded;
            st.order.paid_at = now_millis();
            save();
            return reply_durable(self, st.order);
          case order_status::pending_payment: break;
        }
        st.order.status = order_status::paid;
        st.order.paid_at = now_millis();
        save();
        // Once `paid` is durable, the reserved units become sold. If a
        // confirmation is lost, the SKU's expiry timer asks us and learns it.
        st.core.after_commit([ctx, id = st.order.order_id, lines = st.order.items](
                               const caf::error* err) {
          if (!err)
            for (auto& line : lines)
              caf::anon_send(ctx->region, confirm_sale{line.sku, id});
        });
        return reply_durable(self, st.order);
      },
    };
  };
  return activate_entity(self, ctx, entity_kind::order, std::move(order_id), load, running,
                         [] { return true; });
}

} // namespace shop
