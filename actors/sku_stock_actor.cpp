// sku_stock: one actor per SKU. See entities.hpp and stock_book.hpp.

#include <map>
#include <optional>

#include <caf/all.hpp>

#include "actors/entities.hpp"
#include "protocols/crypto.hpp"
#include "protocols/record_codec.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

using sku_actor = caf::stateful_actor<sku_stock_state>;

order_record order_of(const ledger_entry& e, const std::string& sku) {
  order_record o;
  o.order_id = e.order_id;
  o.user_id = e.user_id;
  o.status = order_status::pending_payment;
  o.items.push_back(order_line{sku, e.quantity, e.unit_price_cents});
  o.total_cents = e.quantity * e.unit_price_cents;
  o.created_at = e.created_at;
  o.expires_at = e.expires_at;
  o.updated_at = e.created_at;
  o.flash_sale_id = e.sale_id;
  return o;
}

/// The keys of one SKU's records (self-contained: copied into handlers).
struct sku_keys {
  std::string sku;
  uint32_t shard_count;
  std::string product = keys::entity(keys::product, sku, shard_count);
  std::string open = keys::entity(keys::open_skus, sku, shard_count);
  std::string tally = keys::entity(keys::tally, sku, shard_count);
  std::string receipt = keys::child(keys::receipt, sku, keys::product, shard_count);
  /// A keyed restock's receipt. The key may hold '/' (any printable ASCII):
  /// it is hashed, with the requester, into the key's last part.
  std::string restock_receipt(const std::string& requester, const std::string& key) const {
    return receipt + "/restock/" + to_hex(hmac_sha256("restock-receipt", requester + '\n' + key));
  }
  std::string ledger(const std::string& order_id) const {
    return keys::child(keys::ledger, sku, order_id, shard_count);
  }
  std::string settled(const std::string& order_id) const {
    return keys::child(keys::settled, sku, order_id, shard_count);
  }
  /// The prefix of one sale's buyer records.
  std::string buyers(const std::string& sale_id) const {
    return keys::children_prefix(keys::sale_buyer, sku, shard_count) + sale_id + "/";
  }
  std::string buyer(const std::string& sale_id, const std::string& user_id) const {
    return buyers(sale_id) + user_id;
  }
  std::string sale(const std::string& sale_id) const {
    return keys::child(keys::sku_sale, sku, sale_id, shard_count);
  }
};

/// Adds or drops the SKU's "open reservations" marker when the count of
/// reserved entries crossed zero since `open_before`.
void mark_open_reservations(write_batch& ops, const sku_keys& k, size_t open_before,
                            size_t open_now) {
  if (open_before == 0 && open_now > 0)
    ops.push_back(put_op(k.open, {}));
  else if (open_before > 0 && open_now == 0)
    ops.push_back(erase_op(k.open));
}

/// Stores the published sales' current figures (after each commit).
void refresh_published(sku_stock_state& st) {
  for (auto& [sale_id, gauge] : st.published) {
    if (auto* terms = st.book.find_sale(sale_id)) {
      gauge->remaining.store(st.book.remaining(*terms), std::memory_order_relaxed);
      gauge->purchased.store(st.book.taken(sale_id), std::memory_order_relaxed);
    }
  }
}

/// Puts a stored sale of this SKU on /metrics (shop_flash_sale_*).
void publish_sale(sku_actor* self, const sale_terms& t) {
  auto& st = self->state;
  if (!st.core.ctx->metrics)
    return;
  st.published.emplace_back(t.id, st.core.ctx->metrics->sales.track(t.id, st.core.id, t.ends_at));
  refresh_published(st);
}

/// Writes an entry's new state (and the open-reservations marker).
void persist_entry(sku_actor* self, const sku_keys& k, const ledger_entry& e, size_t open_before) {
  write_batch ops;
  ops.push_back(put_op(k.ledger(e.order_id), encode(e)));
  mark_open_reservations(ops, k, open_before, self->state.book.open_reservations());
  self->state.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
}

/// Moves a settled entry out of the ledger's range (activation reads only
/// open reservations), with the tally and the buyer's units when it sold;
/// once that is durable, the entry leaves memory too (storage answers for it
/// from then on, see find_any_entry).
void persist_settled(sku_actor* self, const sku_keys& k, const std::string& order_id,
                     size_t open_before) {
  auto& book = self->state.book;
  const auto& e = *book.find_entry(order_id);
  write_batch ops;
  ops.push_back(erase_op(k.ledger(order_id)));
  ops.push_back(put_op(k.settled(order_id), encode(e)));
  if (e.state == reservation_state::sold) {
    ops.push_back(put_op(k.tally, encode(book.tally())));
    if (auto units = book.settled_units_of(e.sale_id, e.user_id))
      ops.push_back(put_op(k.buyer(e.sale_id, e.user_id), encode_count(*units)));
  }
  mark_open_reservations(ops, k, open_before, book.open_reservations());
  self->state.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
  self->state.core.after_commit([self, order_id](const caf::error* err) {
    if (!err)
      self->state.book.forget_settled(order_id);
  });
}

/// The record stored under `key`, decoded; none if there is none. A record
/// that does not decode is an internal error naming `what` and `id`.
template <class T>
caf::expected<std::optional<T>> read_stored(const store& db, const std::string& key,
                                            const char* what, const std::string& id) {
  std::string raw;
  auto found = db.get(key, raw);
  if (!found)
    return found.error();
  if (!*found)
    return std::optional<T>{};
  T x;
  if (!decode(raw, x))
    return make_error(errc::internal, "corrupt " + std::string{what} + id);
  return std::optional<T>{std::move(x)};
}

/// The ledger entry of `order_id` in any state: from memory (reserved, or
/// settled and not yet durable) or else from storage (settled).
caf::expected<std::optional<ledger_entry>> find_any_entry(sku_actor* self, const sku_keys& k,
                                                          const std::string& order_id) {
  auto& book = self->state.book;
  if (auto e = book.find_entry(order_id))
    return std::optional<ledger_entry>{*e};
  return read_stored<ledger_entry>(*self->state.core.ctx->db, k.settled(order_id),
                                   "ledger entry for order ", order_id);
}

/// A keyed restock's receipt: from memory while its batch is on its way to
/// storage, else from storage.
caf::expected<std::optional<restock_receipt>> find_restock_receipt(sku_actor* self,
                                                                   const std::string& key) {
  auto& st = self->state;
  if (auto i = st.restocks_in_flight.find(key); i != st.restocks_in_flight.end())
    return std::optional<restock_receipt>{i->second};
  return read_stored<restock_receipt>(*st.core.ctx->db, key, "restock receipt ", key);
}

/// Expiry requests one SKU has in flight at most. A sale whose thousands of
/// unpaid orders fall due together settles them in waves of this size, and
/// the SKU answers purchases and reads between the replies.
constexpr size_t max_expiries_in_flight = 256;

/// Arms the expiry timer for the earliest queued reservation, unless the
/// expiry requests in flight are at their limit (each reply arms it again).
void arm_timer(sku_actor* self) {
  auto& st = self->state;
  auto next = st.book.next_check();
  if (!next || (st.timer_at != 0 && st.timer_at <= *next)
      || st.book.handed_out() >= max_expiries_in_flight)
    return;
  st.timer_at = *next;
  auto delay = std::max<millis>(0, *next - now_millis());
  self->delayed_send(self, std::chrono::milliseconds{delay}, expiry_atom::value);
}

/// Whether the order of a reservation should be asked now rather than at the
/// reservation's expiry: its stored order has left `pending_payment`
/// (cancelled, expired, paid, ...), or none is stored: the orphan of a
/// checkout whose placement died with the node (or its entity) before it
/// wrote the order, or one whose placement is under way, which its entity
/// answers "still pending" (the order's entity decides, as at any expiry).
/// Unreadable: no.
bool worth_asking_sooner(const entity_context& ctx, const std::string& order_id) {
  auto o = read_stored<order_record>(*ctx.db, keys::entity(keys::order, order_id, ctx.shard_count),
                                     "order ", order_id);
  return o && (!*o || (*o)->status != order_status::pending_payment);
}

/// Orders looked at per recheck message: the SKU answers purchases and reads
/// between them.
constexpr size_t recheck_chunk = 512;

/// A kill -9 between an order's cancel (or payment) and its SKU's release
/// (or sale) leaves the order ended in storage and its reservation open; one
/// during a checkout leaves reservations whose order was never written. A
/// SKU loaded again looks at the stored order of each reservation it
/// restored, a chunk per message (the SKU serves meanwhile, and the load
/// itself reads no more than before), and asks the orders that moved on or
/// do not exist at once instead of at the reservation's expiry, up to a
/// payment timeout later, with the units and the buyer's count against a
/// limit held until then. The order's entity decides, as at any expiry.
void recheck_restored(sku_actor* self) {
  auto& st = self->state;
  auto started = std::chrono::steady_clock::now();
  auto now = now_millis();
  bool sooner = false;
  for (size_t n = 0; n < recheck_chunk && !st.recheck.empty(); ++n) {
    const auto& id = st.recheck.back();
    // Only a queued reservation not due yet: a due one's order is asked anyway.
    if (st.book.can_check_sooner(id, now) && worth_asking_sooner(*st.core.ctx, id)
        && st.book.check_sooner(id, now)) {
      sooner = true;
      ++st.recheck_moved;
    }
    st.recheck.pop_back();
  }
  st.recheck_time += std::chrono::steady_clock::now() - started;
  if (!st.recheck.empty()) {
    self->send(self, recheck_atom::value);
  } else {
    std::vector<std::string>{}.swap(st.recheck);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(st.recheck_time).count();
    if (st.recheck_moved > 0 || ms >= 100)
      spdlog::info("sku {}: looked at the stored orders of its restored reservations in {} ms; "
                   "{} had left pending_payment or were never stored (asked at once)",
                   st.core.id, ms, st.recheck_moved);
  }
  if (sooner)
    arm_timer(self);
}

/// Sells a reserved entry's units. The buyer's stored count in a sale closed
/// at activation is read first (stock_book::needs_closed_buyer); if it cannot
/// be read, the entry stays reserved and its expiry timer tries again.
bool sell(sku_actor* self, const sku_keys& k, const std::string& order_id) {
  auto& book = self->state.book;
  if (book.needs_closed_buyer(order_id)) {
    const auto& e = *book.find_entry(order_id);
    std::string raw;
    int64_t units = 0;
    auto found = self->state.core.ctx->db->get(k.buyer(e.sale_id, e.user_id), raw);
    if (!found || (*found && !decode_count(raw, units))) {
      spdlog::error("sku {}: cannot read the sold units of buyer {} in sale {}; order {} stays "
                    "reserved for now",
                    k.sku, e.user_id, e.sale_id, order_id);
      return false;
    }
    book.load_closed_buyer(e.sale_id, e.user_id, units);
  }
  return book.mark_sold(order_id);
}

/// The order entity decided the order's fate: release or sell its units.
/// False if the entry stays reserved and must be asked about again later
/// (not due yet, or its sale could not be recorded now).
bool settle(sku_actor* self, const sku_keys& k, const std::string& order_id,
            order_status status) {
  auto& book = self->state.book;
  auto open_before = book.open_reservations();
  bool changed = false;
  switch (status) {
    case order_status::cancelled:
    case order_status::expired:
    case order_status::refunded: changed = book.release(order_id); break;
    case order_status::paid:
    case order_status::shipped: changed = sell(self, k, order_id); break;
    case order_status::pending_payment: return false; // not expired yet
  }
  if (changed) {
    persist_settled(self, k, order_id, open_before);
    return true;
  }
  auto e = book.find_entry(order_id); // unchanged: settled before, or a failed sale
  return !e || e->state != reservation_state::reserved;
}

void on_expiry(sku_actor* self, const sku_keys& k) {
  auto& st = self->state;
  st.timer_at = 0;
  auto ctx = st.core.ctx;
  auto room = max_expiries_in_flight - std::min(max_expiries_in_flight, st.book.handed_out());
  for (auto& order_id : st.book.take_due(now_millis(), room)) {
    // Ask again in a second when the order is still being placed or not
    // yet due, or when its entity did not answer (restarting after a crash,
    // say); at the reservation's expiry when it was asked early
    // (recheck_restored) and answered "not yet".
    auto later = [self, order_id](bool unanswered = false) {
      self->state.book.ask_again(order_id, now_millis(), unanswered);
      arm_timer(self);
    };
    self->request(ctx->region, ctx->ask_timeout, expire_order{order_id, k.sku})
      .then(
        [self, k, order_id, later](uint8_t status) {
          if (!settle(self, k, order_id, static_cast<order_status>(status)))
            return later();
          arm_timer(self);
        },
        [later](caf::error&) { later(true); });
  }
  arm_timer(self);
}

} // namespace

caf::expected<size_t> upgrade_stock_ledgers(store& db, uint32_t shard_count) {
  struct sku_counts {
    int64_t sold = 0;
    std::map<std::string, int64_t> sales;
    std::map<std::pair<std::string, std::string>, int64_t> buyers; // (sale, user)
    void add(const ledger_entry& e) {
      if (e.state != reservation_state::sold)
        return;
      sold += e.quantity;
      if (!e.sale_id.empty()) {
        sales[e.sale_id] += e.quantity;
        buyers[{e.sale_id, e.user_id}] += e.quantity;
      }
    }
  };
  std::map<std::string, sku_counts> by_sku;
  // `<kind>/<shard>/<sku>/<order id>`; both kinds have three letters.
  const auto shard_part = keys::shard_prefix(keys::ledger, 0).size();
  auto sku_of = [shard_part](std::string_view key) {
    auto rest = key.substr(shard_part);
    return std::string{rest.substr(0, rest.find('/'))};
  };
  const auto ledger_prefix = std::string{keys::ledger} + "/";
  const auto settled_prefix = std::string{keys::settled} + "/";
  bool corrupt = false;
  // Entries an interrupted upgrade already moved.
  auto err = db.scan(settled_prefix, [&](std::string_view key, std::string_view v) {
    ledger_entry e;
    if (!decode(v, e))
      return !(corrupt = true);
    by_sku[sku_of(key)].add(e);
    return true;
  });
  size_t moved = 0;
  write_batch ops;
  caf::error write_err;
  if (!err && !corrupt)
    err = db.scan(ledger_prefix, [&](std::string_view key, std::string_view v) {
      ledger_entry e;
      if (!decode(v, e))
        return !(corrupt = true);
      if (e.state == reservation_state::reserved)
        return true;
      by_sku[sku_of(key)].add(e);
      ops.push_back(erase_op(std::string{key}));
      // Same shard, SKU and order id under the settled kind.
      ops.push_back(put_op(settled_prefix + std::string{key.substr(ledger_prefix.size())},
                           std::string{v}));
      ++moved;
      if (ops.size() >= 4096) {
        if ((write_err = db.write(ops, false)))
          return false;
        ops.clear();
      }
      return true;
    });
  if (err)
    return err;
  if (write_err)
    return write_err;
  if (corrupt)
    return make_error(errc::internal, "corrupt stock ledger entry; storage upgrade stopped");
  for (auto& [sku, counts] : by_sku) {
    sku_keys k{sku, shard_count};
    sku_tally tally{counts.sold, {counts.sales.begin(), counts.sales.end()}};
    ops.push_back(put_op(k.tally, encode(tally)));
    for (auto& [buyer, units] : counts.buyers)
      ops.push_back(put_op(k.buyer(buyer.first, buyer.second), encode_count(units)));
  }
  if (auto e = db.write(ops, true))
    return e;
  return moved;
}

caf::behavior sku_stock_actor(sku_actor* self, context_ptr ctx, std::string sku) {
  sku_keys k{sku, ctx->shard_count};
  auto load = [self, ctx, k]() -> caf::error {
    auto& st = self->state;
    std::string raw;
    auto found = ctx->db->get(k.product, raw);
    if (!found)
      return found.error();
    if (*found) {
      product_record p;
      if (!decode(raw, p))
        return make_error(errc::internal, "corrupt product record for " + k.sku);
      st.book.set_product(std::move(p));
    }
    bool corrupt = false;
    std::vector<std::string> sale_ids;
    auto err = ctx->db->scan(keys::children_prefix(keys::sku_sale, k.sku, k.shard_count),
                             [&](std::string_view, std::string_view v) {
                               sale_terms t;
                               if (!decode(v, t))
                                 return !(corrupt = true);
                               sale_ids.push_back(t.id);
                               st.book.add_sale(std::move(t));
                               return true;
                             });
    if (!err && !corrupt) {
      found = ctx->db->get(k.tally, raw);
      if (!found)
        return found.error();
      sku_tally tally;
      if (*found && (!decode(raw, tally) || !st.book.restore_tally(tally)))
        return make_error(errc::internal, "corrupt sales tally for " + k.sku);
    }
    // Each buyer's units in the sales that have not ended; an ended sale never
    // sells again, so its buyers stay in storage.
    auto now = now_millis();
    for (auto& sale_id : sale_ids) {
      if (err || corrupt)
        break;
      if (st.book.find_sale(sale_id)->ends_at <= now) {
        st.book.close_sale(sale_id);
        continue;
      }
      auto prefix = k.buyers(sale_id);
      err = ctx->db->scan(prefix, [&](std::string_view key, std::string_view v) {
        int64_t units = 0;
        if (!decode_count(v, units))
          return !(corrupt = true);
        st.book.restore_buyer(sale_id, std::string{key.substr(prefix.size())}, units);
        return true;
      });
    }
    // The open reservations, if the marker says there are any: a SKU that has
    // none (an idle catalog SKU coming back) need not walk its ledger's range,
    // where RocksDB may still hold the deletions of every entry that settled.
    bool open = false;
    if (!err && !corrupt) {
      auto marked = ctx->db->get(k.open, raw);
      if (!marked)
        return marked.error();
      open = *marked;
    }
    if (open)
      err = ctx->db->scan(keys::children_prefix(keys::ledger, k.sku, k.shard_count),
                          [&](std::string_view, std::string_view v) {
                            ledger_entry e;
                            if (!decode(v, e) || e.state != reservation_state::reserved)
                              return !(corrupt = true);
                            st.recheck.push_back(e.order_id);
                            st.book.restore(std::move(e));
                            return true;
                          });
    if (err)
      return err;
    if (corrupt)
      return make_error(errc::internal, "corrupt stock records for " + k.sku);
    st.book.finish_restore();
    if (st.book.open_reservations() > 0)
      arm_timer(self);
    if (!st.recheck.empty())
      self->send(self, recheck_atom::value);
    // Running sales go on /metrics (anew: what an earlier activation put
    // there may be gone from storage); an ended one's counts were not all loaded.
    if (ctx->metrics)
      ctx->metrics->sales.forget_sku(k.sku);
    for (auto& sale_id : sale_ids)
      if (auto* terms = st.book.find_sale(sale_id); terms->ends_at > now)
        publish_sale(self, *terms);
    st.core.on_durable = [self] { refresh_published(self->state); };
    return caf::none;
  };
  auto running = [self, ctx, k]() -> caf::message_handler {
    auto handle = [self] { return caf::actor_cast<caf::actor>(self); };
    const auto sku = k.sku;
    return {
      [=](const create_product& c) -> caf::result<product_view> {
        auto& st = self->state;
        st.core.touch();
        if (st.book.exists()) {
          // A retry of the creation gets its first answer.
          auto first = st.receipt.first_answer(*ctx->db, k.receipt, c.idempotency_key,
                                               c.requester);
          if (!first)
            return reject_durable<product_view>(self, std::move(first.error()));
          if (first->empty())
            return reject_durable<product_view>(
              self, make_error(errc::conflict, "a product with sku '" + sku + "' exists"));
          product_view answer;
          if (!decode(*first, answer))
            return reject_durable<product_view>(
              self, make_error(errc::internal, "corrupt creation receipt of " + sku));
          if (answer.product != c.product)
            return reject_durable<product_view>(self, reused_key());
          return reply_durable(self, std::move(answer));
        }
        st.book.set_product(c.product);
        product_view answer{st.book.product(), st.book.inventory()};
        write_batch ops;
        ops.push_back(put_op(k.product, encode(st.book.product())));
        st.receipt.keep(ops, k.receipt, {c.idempotency_key, c.requester, encode(answer)});
        st.core.persist(handle(), std::move(ops));
        return reply_durable(self, std::move(answer));
      },
      [=](const get_product&) -> caf::result<product_view> {
        auto& st = self->state;
        st.core.touch();
        if (!st.book.exists())
          return reject_durable<product_view>(self, make_error(errc::not_found, "no such product"));
        return reply_durable(self, product_view{st.book.product(), st.book.inventory()});
      },
      [=](const update_product& c) -> caf::result<product_view> {
        auto& st = self->state;
        st.core.touch();
        if (!st.book.exists())
          return reject_durable<product_view>(self, make_error(errc::not_found, "no such product"));
        auto p = st.book.product();
        if (c.has_name)
          p.name = c.name;
        if (c.has_description)
          p.description = c.description;
        if (c.has_price)
          p.price_cents = c.price_cents;
        st.book.set_product(std::move(p));
        write_batch ops;
        ops.push_back(put_op(k.product, encode(st.book.product())));
        st.core.persist(handle(), std::move(ops));
        return reply_durable(self, product_view{st.book.product(), st.book.inventory()});
      },
      [=](const restock& c) -> caf::result<inventory_view> {
        auto& st = self->state;
        st.core.touch();
        if (!st.book.exists())
          return reject_durable<inventory_view>(self,
                                                make_error(errc::not_found, "no such product"));
        std::string receipt_key;
        if (!c.idempotency_key.empty()) {
          receipt_key = k.restock_receipt(c.requester, c.idempotency_key);
          auto first = find_restock_receipt(self, receipt_key);
          if (!first)
            return reject_durable<inventory_view>(self, std::move(first.error()));
          if (auto& r = *first) {
            // A retry: the first answer again, also after a restart; the
            // units are not added twice.
            if (r->quantity != c.quantity || r->idempotency_key != c.idempotency_key
                || r->requester != c.requester)
              return reject_durable<inventory_view>(self, reused_key());
            return reply_durable(self, r->answer);
          }
        }
        constexpr int64_t max_total = 1'000'000'000'000;
        auto p = st.book.product();
        if (c.quantity <= 0 || p.stocked + c.quantity > max_total)
          return reject_durable<inventory_view>(
            self, make_error(errc::validation_failed, "restock would exceed the stock limit"));
        p.stocked += c.quantity;
        st.book.set_product(std::move(p));
        auto answer = st.book.inventory();
        write_batch ops;
        ops.push_back(put_op(k.product, encode(st.book.product())));
        if (!receipt_key.empty()) {
          restock_receipt r{c.idempotency_key, c.requester, c.quantity, answer};
          ops.push_back(put_op(receipt_key, encode(r)));
          st.restocks_in_flight.insert_or_assign(receipt_key, std::move(r));
        }
        st.core.persist(handle(), std::move(ops));
        if (!receipt_key.empty())
          st.core.after_commit([self, receipt_key](const caf::error* err) {
            if (!err) // stored: storage answers for it from now on
              self->state.restocks_in_flight.erase(receipt_key);
          });
        return reply_durable(self, std::move(answer));
      },
      [=](const get_inventory&) -> caf::result<inventory_view> {
        auto& st = self->state;
        st.core.touch();
        if (!st.book.exists())
          return reject_durable<inventory_view>(self,
                                                make_error(errc::not_found, "no such product"));
        return reply_durable(self, st.book.inventory());
      },
      [=](const register_sale& c) -> caf::result<sale_view> {
        auto& st = self->state;
        st.core.touch();
        if (!st.book.exists())
          return reject_durable<sale_view>(
            self, make_error(errc::not_found, "no product with sku '" + sku + "'"));
        if (auto existing = st.book.find_sale(c.terms.id)) {
          if (*existing == c.terms) // a retried creation
            return reply_durable(self, st.book.view(*existing, now_millis()));
          return reject_durable<sale_view>(
            self, make_error(errc::conflict, "a flash sale with this id exists"));
        }
        if (c.terms.quantity > st.book.available())
          return reject_durable<sale_view>(
            self, make_error(errc::insufficient_stock,
                             "sku '" + sku + "' has only " + std::to_string(st.book.available())
                               + " units available"));
        st.book.add_sale(c.terms);
        write_batch ops;
        ops.push_back(put_op(k.sale(c.terms.id), encode(c.terms)));
        st.core.persist(handle(), std::move(ops));
        // On /metrics once stored, before the answer (registered first).
        st.core.after_commit([self, terms = c.terms](const caf::error* err) {
          if (!err)
            publish_sale(self, terms);
        });
        return reply_durable(self, st.book.view(c.terms, now_millis()));
      },
      [=](const get_sale_stock& c) -> caf::result<sale_view> {
        auto& st = self->state;
        st.core.touch();
        auto terms = st.book.find_sale(c.sale_id);
        if (!terms)
          return reject_durable<sale_view>(self, make_error(errc::not_found, "no such flash sale"));
        return reply_durable(self, st.book.view(*terms, now_millis()));
      },
      [=](const purchase_at_sku& c) -> caf::result<purchase_result> {
        auto& st = self->state;
        st.core.touch();
        const auto& req = c.request;
        auto terms = st.book.find_sale(req.sale_id);
        if (!st.book.exists() || !terms)
          return reject_durable<purchase_result>(self,
                                                 make_error(errc::not_found, "no such flash sale"));
        std::string order_id;
        if (!req.idempotency_key.empty()) {
          order_id =
            derive_order_id(ctx->order_secret, req.user_id, req.sale_id, req.idempotency_key);
          auto e = find_any_entry(self, k, order_id);
          if (!e)
            return reject_durable<purchase_result>(self, std::move(e.error()));
          if (auto& found = *e) {
            // A retry: the first answer again, also after expiry or a restart.
            if (found->quantity == req.quantity)
              return reply_durable(self, purchase_result{order_of(*found, sku), true});
            return reject_durable<purchase_result>(
              self, make_error(errc::conflict,
                               "this Idempotency-Key was already used for a different request"));
          }
        } else {
          order_id = new_order_id();
        }
        auto now = now_millis();
        if (auto err = st.book.check_purchase(*terms, req.user_id, req.quantity, now))
          return reject_durable<purchase_result>(self, std::move(err));
        ledger_entry e{order_id, req.user_id, req.sale_id, req.quantity, terms->price_cents, now,
                       now + ctx->payment_timeout.count(), reservation_state::reserved};
        auto open_before = st.book.open_reservations();
        st.book.reserve(e);
        auto order = order_of(e, sku);
        // One write: the reservation and the order it belongs to, atomically.
        write_batch ops;
        ops.push_back(put_op(k.ledger(order_id), encode(e)));
        ops.push_back(put_op(keys::entity(keys::order, order_id, ctx->shard_count), encode(order)));
        mark_open_reservations(ops, k, open_before, st.book.open_reservations());
        st.core.persist(handle(), std::move(ops));
        arm_timer(self);
        return reply_durable(self, purchase_result{std::move(order), false});
      },
      [=](const reserve_stock& c) -> caf::result<order_line> {
        auto& st = self->state;
        st.core.touch();
        if (!st.book.exists())
          return reject_durable<order_line>(
            self, make_error(errc::not_found, "no product with sku '" + sku + "'"));
        auto stored = find_any_entry(self, k, c.order_id);
        if (!stored)
          return reject_durable<order_line>(self, std::move(stored.error()));
        if (auto& e = *stored; e && e->state != reservation_state::released) {
          // A retried placement of the same order: the reservation it made,
          // held as long as the new attempt's order will wait for payment.
          if (e->quantity == c.quantity && e->user_id == c.user_id && e->sale_id.empty()) {
            if (e->state == reservation_state::reserved && e->expires_at != c.expires_at) {
              auto open_before = st.book.open_reservations();
              st.book.set_expiry(c.order_id, c.expires_at);
              persist_entry(self, k, *st.book.find_entry(c.order_id), open_before);
              arm_timer(self);
            }
            return reply_durable(self, order_line{sku, e->quantity, e->unit_price_cents});
          }
          return reject_durable<order_line>(
            self, make_error(errc::conflict, "order " + c.order_id + " already holds sku '"
                                               + sku + "' on different terms"));
        }
        // (A released entry is the orphan of a placement that never completed:
        // its order does not exist, so it is reserved anew.)
        if (c.quantity <= 0 || c.quantity > st.book.available())
          return reject_durable<order_line>(
            self, make_error(errc::insufficient_stock,
                             "sku '" + sku + "' has only " + std::to_string(st.book.available())
                               + " units available"));
        auto price = st.book.product().price_cents;
        ledger_entry e{c.order_id, c.user_id, {}, c.quantity, price, now_millis(), c.expires_at,
                       reservation_state::reserved};
        auto open_before = st.book.open_reservations();
        st.book.reserve(e);
        persist_entry(self, k, e, open_before);
        arm_timer(self);
        return reply_durable(self, order_line{sku, c.quantity, price});
      },
      [=](const confirm_sale& c) -> caf::result<bool> {
        auto& st = self->state;
        st.core.touch();
        auto open_before = st.book.open_reservations();
        if (sell(self, k, c.order_id))
          persist_settled(self, k, c.order_id, open_before);
        return reply_durable(self, true); // idempotent, like release
      },
      [=](const release_reservation& c) -> caf::result<bool> {
        auto& st = self->state;
        st.core.touch();
        auto open_before = st.book.open_reservations();
        if (st.book.release(c.order_id))
          persist_settled(self, k, c.order_id, open_before);
        return reply_durable(self, true); // idempotent: releasing twice changes nothing
      },
      [=](const recheck_reservation& c) {
        auto& st = self->state;
        st.core.touch();
        if (st.book.check_sooner(c.order_id, now_millis())) // (a queued reservation only)
          arm_timer(self);
      },
      [=](expiry_atom) { on_expiry(self, k); },
      [=](recheck_atom) { recheck_restored(self); },
    };
  };
  auto can_passivate = [self] {
    return self->state.book.open_reservations() == 0;
  };
  return activate_entity(self, ctx, entity_kind::sku, std::move(sku), load, running,
                         can_passivate);
}

} // namespace shop
