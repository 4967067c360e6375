// The shard region: one per node. It is the only way to reach an entity.
//
// - Activation: the first command for (kind, id) spawns the entity actor,
//   which loads its state; later commands are delegated to it, so the
//   entity's answer goes straight to the original requester.
// - Passivation: an idle entity asks to stop, naming how many commands it
//   has handled; the region agrees only if that equals how many it delivered,
//   so no command is ever in flight to a stopping actor.
// - Supervision: the region monitors its entities. A crashed entity is
//   restarted from durable state at once (its timers must run); more than
//   `max_restarts` crashes within `restart_window` quarantine it with
//   exponential backoff, during which its commands fail fast with 503. An
//   entity that has not crashed for `crash_memory` is forgiven: its record
//   goes, and its next quarantine is the shortest again.

#include <caf/all.hpp>

#include <spdlog/spdlog.h>

#include "actors/entities.hpp"
#include "actors/segmented_map.hpp"
#include "protocols/crypto.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

constexpr size_t max_restarts = 5;
constexpr auto restart_window = std::chrono::seconds{10};
constexpr auto max_backoff = std::chrono::seconds{30};

using steady = std::chrono::steady_clock;

struct region_state {
  struct entry {
    caf::actor handle;
    uint64_t delivered = 0;
  };
  struct health {
    std::deque<steady::time_point> crashes; // within restart_window
    steady::time_point last_crash{};
    steady::time_point quarantined_until{};
    int backoff_exponent = 0;
  };
  context_ptr ctx;
  /// The live activations, by region key. Segmented (as is by_addr): a
  /// burst that activates 100,000 users or orders grows them without one
  /// rehash of everything that stalls the whole node's worker.
  segmented_map<std::string, entry> entities;
  /// Who each live activation is: (kind, id).
  segmented_map<caf::actor_addr, std::pair<entity_kind, std::string>> by_addr;
  std::unordered_map<std::string, health> health_by_key;
  /// When health_by_key was last swept of forgiven entities.
  steady::time_point health_swept{};
  /// Sale id -> SKU, learned from flash_sale entities; lets purchases skip the sale's actor.
  std::unordered_map<std::string, std::string> sale_skus;
  /// Answers GET /products; monitored, restarted if it dies.
  caf::actor catalog;
  static inline const char* name = "shard_region";
};

using region_actor = caf::stateful_actor<region_state>;

std::string region_key(entity_kind kind, const std::string& id) {
  std::string key{to_string(kind)};
  key.push_back('/');
  key.append(id);
  return key;
}

region_state::entry& spawn_entity(region_actor* self, entity_kind kind, const std::string& id,
                                  const std::string& key) {
  auto& st = self->state;
  caf::actor handle;
  switch (kind) {
    case entity_kind::sku: handle = self->spawn<caf::monitored>(sku_stock_actor, st.ctx, id); break;
    case entity_kind::sale:
      handle = self->spawn<caf::monitored>(flash_sale_actor, st.ctx, id);
      break;
    case entity_kind::order: handle = self->spawn<caf::monitored>(order_actor, st.ctx, id); break;
    case entity_kind::user:
      handle = self->spawn<caf::monitored>(user_account_actor, st.ctx, id);
      break;
    case entity_kind::cart: handle = self->spawn<caf::monitored>(cart_actor, st.ctx, id); break;
  }
  st.by_addr[handle.address()] = {kind, id};
  st.ctx->metrics->active.fetch_add(1);
  st.ctx->metrics->activations.fetch_add(1);
  auto& e = st.entities[key];
  e = region_state::entry{std::move(handle), 0};
  return e;
}

template <class Command>
void route(region_actor* self, entity_kind kind, const std::string& id, Command&& cmd) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  auto key = region_key(kind, id);
  if (auto h = st.health_by_key.find(key);
      h != st.health_by_key.end() && steady::now() < h->second.quarantined_until) {
    rp.deliver(make_error(errc::unavailable, "the entity is restarting after repeated crashes"));
    return;
  }
  auto found = st.entities.find(key);
  auto& e = found ? *found : spawn_entity(self, kind, id, key);
  ++e.delivered;
  rp.delegate(e.handle, std::forward<Command>(cmd));
}

void on_down(region_actor* self, const caf::down_msg& dm) {
  auto& st = self->state;
  if (st.catalog && dm.source == st.catalog.address()) {
    spdlog::warn("region: the catalog died ({}); restarting it", caf::to_string(dm.reason));
    st.catalog = self->spawn<caf::monitored + caf::detached>(catalog_actor, st.ctx);
    return;
  }
  auto who = st.by_addr.take(dm.source);
  if (!who)
    return; // passivated (already forgotten) or unknown
  auto [kind, id] = std::move(*who);
  auto key = region_key(kind, id);
  if (auto e = st.entities.find(key); e && e->handle.address() == dm.source)
    st.entities.erase(key);
  st.ctx->metrics->active.fetch_sub(1);
  if (!dm.reason)
    return;
  st.ctx->metrics->crashes.fetch_add(1);
  auto now = steady::now();
  // An entity well for crash_memory is forgiven: its old trouble does not
  // lengthen a quarantine weeks later. The records of the others forgiven go
  // in a sweep, at most every eighth of crash_memory (a burst of crashes of
  // many entities does not scan them all per crash): the records stay few.
  auto forgiven = [&](const region_state::health& h) {
    return now - h.last_crash >= st.ctx->crash_memory && now >= h.quarantined_until;
  };
  if (now - st.health_swept >= st.ctx->crash_memory / 8) {
    st.health_swept = now;
    for (auto i = st.health_by_key.begin(); i != st.health_by_key.end();)
      i = forgiven(i->second) ? st.health_by_key.erase(i) : std::next(i);
  }
  auto& h = st.health_by_key[key];
  if (forgiven(h))
    h = region_state::health{};
  h.last_crash = now;
  h.crashes.push_back(now);
  while (!h.crashes.empty() && now - h.crashes.front() > restart_window)
    h.crashes.pop_front();
  if (h.crashes.size() > max_restarts) {
    auto backoff = std::min<std::chrono::milliseconds>(
      std::chrono::milliseconds{1000} * (1 << std::min(h.backoff_exponent, 5)), max_backoff);
    ++h.backoff_exponent;
    h.quarantined_until = now + backoff;
    spdlog::error("region: {} crashed {} times in {}s; quarantined for {} ms: {}", key,
                  h.crashes.size(), restart_window.count(), backoff.count(),
                  caf::to_string(dm.reason));
    self->delayed_send(self, backoff, restart_atom::value, static_cast<uint8_t>(kind), id);
    return;
  }
  spdlog::warn("region: {} crashed ({}); restarting from durable state", key,
               caf::to_string(dm.reason));
  st.ctx->metrics->restarts.fetch_add(1);
  spawn_entity(self, kind, id, key);
}

/// Activates every SKU that holds open reservations, so their expiry timers
/// run after a restart even if nobody sends them a command.
void activate_open_skus(region_actor* self) {
  auto& st = self->state;
  for (uint32_t shard = 0; shard < st.ctx->shard_count; ++shard) {
    auto prefix = keys::shard_prefix(keys::open_skus, shard);
    auto err = st.ctx->db->scan(prefix, [&](std::string_view k, std::string_view) {
      std::string id{k.substr(prefix.size())};
      auto key = region_key(entity_kind::sku, id);
      if (!st.entities.find(key))
        spawn_entity(self, entity_kind::sku, id, key);
      return true;
    });
    if (err)
      spdlog::error("region: cannot scan open reservations: {}", describe(err).message);
  }
}

caf::behavior region(region_actor* self, entity_context base) {
  base.region = caf::actor_cast<caf::actor>(self);
  self->state.ctx = std::make_shared<const entity_context>(std::move(base));
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  // On shutdown, take the entities down with us (they hold our handle).
  self->set_exit_handler([self](caf::exit_msg& em) {
    self->state.entities.for_each(
      [&](const std::string&, const region_state::entry& e) { self->send_exit(e.handle, em.reason); });
    self->send_exit(self->state.catalog, em.reason);
    self->state.catalog = nullptr;
    self->state.entities.clear();
    self->state.by_addr.clear();
    self->quit(em.reason);
  });
  activate_open_skus(self);
  self->state.catalog = self->spawn<caf::monitored + caf::detached>(catalog_actor, self->state.ctx);
  using k = entity_kind;
  return {
    [=](create_product& c) { route(self, k::sku, c.product.sku, std::move(c)); },
    [=](get_product& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](update_product& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](restock& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](get_inventory& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](register_sale& c) { route(self, k::sku, c.terms.sku, std::move(c)); },
    [=](get_sale_stock& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](purchase_at_sku& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](release_reservation& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](recheck_reservation& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](reserve_stock& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](confirm_sale& c) { route(self, k::sku, c.sku, std::move(c)); },
    [=](list_products& c) {
      self->make_response_promise().delegate(self->state.catalog, std::move(c));
    },
    [=](get_cart& c) { route(self, k::cart, c.user_id, std::move(c)); },
    [=](set_cart_item& c) { route(self, k::cart, c.user_id, std::move(c)); },
    [=](clear_cart& c) { route(self, k::cart, c.user_id, std::move(c)); },
    [=](take_cart& c) { route(self, k::cart, c.user_id, std::move(c)); },
    [=](end_cart_checkout& c) { route(self, k::cart, c.user_id, std::move(c)); },
    [=](checkout& c) {
      // The order id: a keyed hash of (user, key) for a retry-safe request,
      // else a new time-ordered one. The empty sale id keeps these apart from flash-sale orders.
      auto id = c.idempotency_key.empty()
                  ? new_order_id()
                  : derive_order_id(self->state.ctx->order_secret, c.user_id, {},
                                    c.idempotency_key);
      route(self, k::order, id, place_order{id, std::move(c)});
    },
    [=](place_order& c) { route(self, k::order, c.order_id, std::move(c)); },
    [=](checkout_under_way& c) { route(self, k::order, c.order_id, std::move(c)); },
    [=](pay_order& c) { route(self, k::order, c.order_id, std::move(c)); },
    [=](payment_callback& c) { route(self, k::order, c.order_id, std::move(c)); },
    [=](create_sale& c) { route(self, k::sale, c.terms.id, std::move(c)); },
    [=](get_sale& c) {
      auto i = self->state.sale_skus.find(c.sale_id);
      if (i != self->state.sale_skus.end())
        route(self, k::sku, i->second, get_sale_stock{i->second, c.sale_id});
      else
        route(self, k::sale, c.sale_id, std::move(c));
    },
    [=](purchase& c) {
      auto i = self->state.sale_skus.find(c.sale_id);
      if (i != self->state.sale_skus.end())
        route(self, k::sku, i->second, purchase_at_sku{i->second, std::move(c)});
      else
        route(self, k::sale, c.sale_id, std::move(c));
    },
    [=](sale_route_atom, const std::string& sale_id, const std::string& sku) {
      self->state.sale_skus[sale_id] = sku;
    },
    [=](get_order& c) { route(self, k::order, c.order_id, std::move(c)); },
    [=](cancel_order& c) { route(self, k::order, c.order_id, std::move(c)); },
    [=](expire_order& c) { route(self, k::order, c.order_id, std::move(c)); },
    [=](register_user& c) { route(self, k::user, c.username, std::move(c)); },
    [=](login_user& c) { route(self, k::user, c.username, std::move(c)); },
    [=](get_user& c) { route(self, k::user, c.username, std::move(c)); },
    [=](crash_entity& c) { route(self, c.kind, c.id, std::move(c)); },
    [=](passivate_atom, uint8_t kind, const std::string& id, uint64_t processed) -> bool {
      auto& st = self->state;
      auto key = region_key(static_cast<entity_kind>(kind), id);
      auto e = st.entities.find(key);
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      // An activation the region no longer knows was granted before, but the
      // grant came after the entity's ask had timed out: nothing is routed to
      // it any more, so it may go (else it would live on, unreachable).
      if (!st.by_addr.find(sender))
        return true;
      if (!e || e->handle.address() != sender || e->delivered != processed)
        return false;
      st.entities.erase(key);
      st.by_addr.erase(sender);
      st.ctx->metrics->active.fetch_sub(1);
      st.ctx->metrics->passivations.fetch_add(1);
      return true;
    },
    [=](restart_atom, uint8_t kind, const std::string& id) {
      auto key = region_key(static_cast<entity_kind>(kind), id);
      if (!self->state.entities.find(key)) {
        self->state.ctx->metrics->restarts.fetch_add(1);
        spawn_entity(self, static_cast<entity_kind>(kind), id, key);
      }
    },
    [=](stats_atom) -> region_stats {
      auto& m = *self->state.ctx->metrics;
      return region_stats{m.active.load(), m.activations.load(), m.passivations.load(),
                          m.crashes.load(), m.restarts.load()};
    },
  };
}

} // namespace

caf::actor spawn_region(caf::actor_system& sys, entity_context base) {
  return sys.spawn(region, std::move(base));
}

} // namespace shop
