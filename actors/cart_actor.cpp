// cart: one actor per user. It stores SKUs and quantities only; a cart is
// shown with each product's current price (asked of the SKUs in parallel),
// and checkout fixes the prices when it reserves the stock.

#include <algorithm>
#include <optional>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/entities.hpp"
#include "protocols/json.hpp"
#include "protocols/record_codec.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

using cart_self = caf::stateful_actor<cart_state>;
using cart_promise = caf::typed_response_promise<cart_view>;

/// The product as stored, for a SKU that does not answer (quarantined after
/// crashes, or not in time): its price and its existence are durable state,
/// so one SKU in trouble does not take every cart that holds it down.
std::optional<product_record> stored_product(const entity_context& ctx, const std::string& sku) {
  std::string raw;
  auto found = ctx.db->get(keys::entity(keys::product, sku, ctx.shard_count), raw);
  product_record p;
  if (!found || !*found || !decode(raw, p))
    return std::nullopt;
  return p;
}

/// Answers `rp` with `lines` priced by their SKUs (a SKU that does not answer:
/// the price it stored), once every change applied so far is durable. A line
/// priced neither way answers the SKU's error.
void reply_priced(cart_self* self, cart_promise rp, std::vector<order_line> lines) {
  auto& core = self->state.core;
  if (lines.empty()) {
    deliver_durable(core, rp, cart_view{});
    return;
  }
  struct join {
    cart_view view;
    caf::error failure;
    size_t pending = 0;
  };
  auto j = std::make_shared<join>();
  j->view.items = std::move(lines);
  j->pending = j->view.items.size();
  auto ticket = core.hold([rp](const caf::error& err) mutable { rp.deliver(err); });
  auto done = [self, rp, j, ticket]() mutable {
    auto& core = self->state.core;
    core.unhold(ticket);
    if (j->failure) {
      reject_when_durable(core, rp, std::move(j->failure));
      return;
    }
    for (auto& line : j->view.items)
      j->view.total_cents += line.quantity * line.price_cents;
    deliver_durable(core, rp, std::move(j->view));
  };
  auto ctx = core.ctx;
  for (size_t i = 0; i < j->view.items.size(); ++i)
    self->request(ctx->region, ctx->ask_timeout, get_product{j->view.items[i].sku})
      .then(
        [j, i, done](product_view& p) mutable {
          j->view.items[i].price_cents = p.product.price_cents;
          if (--j->pending == 0)
            done();
        },
        [j, i, done, ctx](caf::error& err) mutable {
          if (auto p = stored_product(*ctx, j->view.items[i].sku))
            j->view.items[i].price_cents = p->price_cents;
          else if (!j->failure)
            j->failure = std::move(err);
          if (--j->pending == 0)
            done();
        });
}

std::vector<cart_line>::iterator find_line(cart_record& cart, const std::string& sku) {
  return std::find_if(cart.items.begin(), cart.items.end(),
                      [&](const cart_line& l) { return l.sku == sku; });
}

/// Takes out of `cart` the lines an order took: each only where the cart
/// still holds the ordered quantity, not set since `ordered_at` (0: whenever
/// it was set). True if a line left.
bool take_out(cart_record& cart, const std::vector<order_line>& ordered, millis ordered_at) {
  auto before = cart.items.size();
  for (auto& line : ordered) {
    auto i = find_line(cart, line.sku);
    if (i != cart.items.end() && i->quantity == line.quantity
        && (ordered_at == 0 || i->changed_at <= ordered_at))
      cart.items.erase(i);
  }
  return cart.items.size() != before;
}

/// The cart's lines as the cart shows them and checkouts take them (unpriced).
std::vector<order_line> lines_of(const cart_record& cart) {
  std::vector<order_line> out;
  out.reserve(cart.items.size());
  for (auto& line : cart.items)
    out.push_back(order_line{line.sku, line.quantity, 0});
  return out;
}

/// How long one checkout may hold the cart's lines before the cart looks at
/// its order: its reservations (each answered within ask_timeout), then its
/// order's write and the cart's clear, or the releases of a refusal (each
/// within follow_up_wait). A hold whose order still runs (a slow disk) lasts
/// another such period. (One whose order's entity stopped without ending it
/// is asked about at once, and again at this limit while it gets no answer.)
std::chrono::milliseconds checkout_limit(const entity_context& ctx) {
  return 2 * ctx.ask_timeout + ctx.follow_up_wait;
}

/// Stores the cart: its lines and the checkout holding them. An empty cart's
/// record is erased, hold and all: a hold over no lines keeps nothing from
/// being ordered twice.
void store_cart(cart_self* self) {
  auto& st = self->state;
  auto key = keys::entity(keys::cart, st.core.id, st.core.ctx->shard_count);
  write_batch ops;
  if (st.cart.items.empty())
    ops.push_back(erase_op(key));
  else
    ops.push_back(put_op(key, encode(st.cart)));
  st.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
}

/// The hold's time limit starts (again); an earlier one goes stale.
void arm_limit(cart_self* self) {
  auto& st = self->state;
  self->delayed_send(self, checkout_limit(*st.core.ctx), checkout_atom::value,
                     ++st.checkout_number);
}

/// Answers `c`, sent by `order`, with the cart's lines, which its checkout
/// then holds until it ends. The hold is stored before the lines are handed
/// out, so a cart that restarts meanwhile keeps them held. An empty cart is
/// not held: that checkout ends with its refusal.
void grant_take(cart_self* self, const take_cart& c, const caf::actor_addr& order,
                cart_promise rp) {
  auto& st = self->state;
  auto lines = lines_of(st.cart);
  if (!lines.empty()) {
    st.cart.checkout_order = c.order_id;
    st.cart.checkout_attempt = c.attempt;
    st.checkout_entity = order;
    st.checkout_entity_gone = false;
    if (order)
      self->monitor(order);
    arm_limit(self);
    store_cart(self);
  }
  deliver_durable(st.core, rp, cart_view{std::move(lines), 0});
}

/// Ends the hold, if any, in memory (the caller stores the cart; the next
/// take is not yet granted).
void release_hold(cart_self* self) {
  auto& st = self->state;
  if (st.checkout_entity)
    self->demonitor(st.checkout_entity);
  st.cart.checkout_order.clear();
  st.cart.checkout_attempt = 0;
  st.checkout_entity = nullptr;
  st.checkout_entity_gone = false;
  st.unanswered_asks = 0;
}

/// While nobody holds the lines, the first waiting take gets them.
void grant_waiting(cart_self* self) {
  auto& st = self->state;
  while (st.cart.checkout_order.empty() && !st.waiting_takes.empty()) {
    auto next = std::move(st.waiting_takes.front());
    st.waiting_takes.pop_front();
    st.core.unhold(next.ticket);
    grant_take(self, next.cmd, next.order, next.rp);
  }
}

/// The checkout that held the lines has ended: the cart is stored without
/// the hold, then the first waiting take gets the lines (answered once that
/// is stored).
void free_lines(cart_self* self) {
  release_hold(self);
  store_cart(self);
  grant_waiting(self);
}

/// How many questions in a row to the holding order may go unanswered (each
/// within ask_timeout, a time limit apart) before the hold ends anyway.
constexpr int max_unanswered_asks = 3;

/// Asks the order holding the lines how that attempt stands: for a hold whose
/// order's entity the cart does not watch (loaded from storage after the cart
/// restarted) or that stopped without ending the checkout. Still placing, or
/// no answer: the cart asks again at the hold's next limit (after
/// `max_unanswered_asks` unanswered questions the hold ends). Else the hold
/// ends, the lines the order took out of the cart first if it is stored (its
/// entity, loading, waited for every write in flight): a crash between the
/// order's write and the cart's clear must not leave them to be ordered again.
void ask_holder(cart_self* self) {
  auto& st = self->state;
  auto ctx = st.core.ctx;
  auto number = st.checkout_number;
  self->request(ctx->region, ctx->ask_timeout,
                checkout_under_way{st.cart.checkout_order, st.cart.checkout_attempt})
    .then(
      [self, number](checkout_progress& p) {
        auto& st = self->state;
        if (number != st.checkout_number || st.cart.checkout_order.empty())
          return; // ended, or taken again, meanwhile
        st.unanswered_asks = 0;
        if (p.under_way) {
          arm_limit(self);
          return;
        }
        bool ordered = take_out(st.cart, p.ordered, p.ordered_at);
        if (st.checkout_entity) // it stopped without ending the checkout (a crash)
          spdlog::warn("cart of {}: order {} stopped without ending its checkout{}; the cart's "
                       "next checkout goes on",
                       st.core.id, st.cart.checkout_order,
                       ordered ? " (the lines it ordered left the cart)" : "");
        else
          spdlog::info("cart of {}: order {} is no longer taking the cart's lines{}; the cart's "
                       "next checkout goes on",
                       st.core.id, st.cart.checkout_order,
                       ordered ? " (the lines it ordered left the cart)" : "");
        free_lines(self);
      },
      [self, number](caf::error& err) {
        auto& st = self->state;
        if (number != st.checkout_number || st.cart.checkout_order.empty())
          return;
        if (++st.unanswered_asks < max_unanswered_asks) {
          arm_limit(self);
          return;
        }
        spdlog::error("cart of {}: order {} did not say how its checkout stands, asked {} "
                      "times ({}); the cart's next checkout goes on",
                      st.core.id, st.cart.checkout_order, st.unanswered_asks,
                      describe(err).message);
        free_lines(self);
      });
}

} // namespace

caf::behavior cart_actor(cart_self* self, context_ptr ctx, std::string user_id) {
  auto key = keys::entity(keys::cart, user_id, ctx->shard_count);
  auto load = [self, ctx, key]() -> caf::error {
    std::string raw;
    auto found = ctx->db->get(key, raw);
    if (!found)
      return found.error();
    if (*found && !decode(raw, self->state.cart))
      return make_error(errc::internal, "corrupt cart record");
    // Lines held by a checkout when this cart stopped (it crashed, a write
    // failed, the node restarted): they stay held until the order says its
    // attempt is over, asked at once.
    if (!self->state.cart.checkout_order.empty())
      self->send(self, checkout_atom::value, ++self->state.checkout_number);
    return caf::none;
  };
  auto running = [self, ctx]() -> caf::message_handler {
    return {
      [=](const get_cart&) -> caf::result<cart_view> {
        self->state.core.touch();
        auto rp = self->make_response_promise<cart_view>();
        reply_priced(self, rp, lines_of(self->state.cart));
        return rp;
      },
      [=](const set_cart_item& c) -> caf::result<cart_view> {
        auto& st = self->state;
        st.core.touch();
        auto line = find_line(st.cart, c.sku);
        if (c.quantity != 0 && line == st.cart.items.end()
            && st.cart.items.size() >= static_cast<size_t>(max_order_lines))
          return reject_durable<cart_view>(
            self, make_error(errc::validation_failed, "a cart holds at most "
                                                        + std::to_string(max_order_lines)
                                                        + " different items"));
        auto rp = self->make_response_promise<cart_view>();
        if (c.quantity == 0 || line != st.cart.items.end()) {
          if (c.quantity == 0 && line != st.cart.items.end()) {
            st.cart.items.erase(line);
            store_cart(self);
          } else if (c.quantity != 0 && line->quantity != c.quantity) {
            line->quantity = c.quantity;
            line->changed_at = now_millis();
            store_cart(self);
          }
          reply_priced(self, rp, lines_of(st.cart));
          return rp;
        }
        // A new line: only for a product that exists (as its SKU says, or
        // as stored when the SKU does not answer). `await` keeps the cart's
        // later commands waiting, so they apply in arrival order.
        auto ticket = st.core.hold([rp](const caf::error& err) mutable { rp.deliver(err); });
        auto add = [=]() mutable {
          auto& st = self->state;
          st.core.unhold(ticket);
          st.cart.items.push_back(cart_line{c.sku, c.quantity, now_millis()});
          std::sort(st.cart.items.begin(), st.cart.items.end(),
                    [](const cart_line& a, const cart_line& b) { return a.sku < b.sku; });
          store_cart(self);
          reply_priced(self, rp, lines_of(st.cart));
        };
        self->request(ctx->region, ctx->ask_timeout, get_product{c.sku})
          .await([=](product_view&) mutable { add(); },
                 [=](caf::error& err) mutable {
                   if (describe(err).code != errc::not_found && stored_product(*ctx, c.sku)) {
                     add();
                     return;
                   }
                   self->state.core.unhold(ticket);
                   reject_when_durable(self->state.core, rp, std::move(err));
                 });
        return rp;
      },
      [=](const clear_cart& c) -> caf::result<cart_view> {
        auto& st = self->state;
        st.core.touch();
        bool changed = !st.cart.items.empty() && c.ordered.empty();
        if (c.ordered.empty())
          st.cart.items.clear();
        else // only what the order took: the same quantity, not set again since
          changed = take_out(st.cart, c.ordered, c.ordered_at);
        bool ends = !c.order_id.empty() && c.order_id == st.cart.checkout_order;
        if (ends)
          release_hold(self);
        if (ends || changed)
          store_cart(self);
        auto answer = reply_durable(self, cart_view{lines_of(st.cart), 0}); // unpriced
        if (ends)
          grant_waiting(self); // the next checkout sees the lines gone
        return answer;
      },
      [=](const take_cart& c) -> caf::result<cart_view> {
        auto& st = self->state;
        st.core.touch();
        // The order's entity: the region delegates, so it is the sender
        // (read first: making the promise takes the sender out of the message).
        auto order = caf::actor_cast<caf::actor_addr>(self->current_sender());
        auto rp = self->make_response_promise<cart_view>();
        if (st.cart.checkout_order.empty() || st.cart.checkout_order == c.order_id) {
          release_hold(self); // (a new attempt of the order that holds the lines)
          grant_take(self, c, order, rp);
          grant_waiting(self); // (if the cart is empty now, nobody holds it)
          return rp;
        }
        auto ticket = st.core.hold([rp](const caf::error& err) mutable { rp.deliver(err); });
        st.waiting_takes.push_back({c, order, rp, ticket});
        return rp;
      },
      [=](const end_cart_checkout& c) {
        auto& st = self->state;
        st.core.touch();
        // A take still waiting: its order gave up (its request timed out).
        for (auto i = st.waiting_takes.begin(); i != st.waiting_takes.end();) {
          if (i->cmd.order_id != c.order_id || i->cmd.attempt != c.attempt) {
            ++i;
            continue;
          }
          st.core.unhold(i->ticket);
          i->rp.deliver(make_error(errc::unavailable, "the checkout ended before the cart was free"));
          i = st.waiting_takes.erase(i);
        }
        if (c.order_id == st.cart.checkout_order && c.attempt == st.cart.checkout_attempt)
          free_lines(self);
      },
      [=](checkout_atom, uint64_t number) {
        auto& st = self->state;
        if (number != st.checkout_number || st.cart.checkout_order.empty())
          return;
        if (st.checkout_entity && !st.checkout_entity_gone) { // still under way (a slow disk)
          arm_limit(self);
          return;
        }
        ask_holder(self); // its entity stopped, or the hold was loaded from storage
      },
    };
  };
  // The order entity holding the lines stopped. If it ended the checkout,
  // that message may still be on its way (through the region); if not (it
  // crashed while its order's write was held by the disk), nothing else will
  // end it. Either way the cart asks the order now: its next entity answers
  // once that write is done, stored or not.
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source != st.checkout_entity || st.cart.checkout_order.empty())
      return;
    st.checkout_entity_gone = true;
    self->send(self, checkout_atom::value, ++st.checkout_number);
  });
  return activate_entity(self, ctx, entity_kind::cart, std::move(user_id), load, running,
                         [self] { return self->state.cart.checkout_order.empty(); });
}

} // namespace shop
