#include "actors/stock_book.hpp"

#include <algorithm>

#include "protocols/errc.hpp"

namespace shop {

void stock_book::set_product(product_record p) {
  product_ = std::move(p);
  exists_ = true;
}

inventory_view stock_book::inventory() const {
  return inventory_view{product_.sku, available(), reserved_, sold_};
}

const sale_terms* stock_book::find_sale(const std::string& sale_id) const {
  auto i = sales_.find(sale_id);
  return i == sales_.end() ? nullptr : &i->second.terms;
}

void stock_book::add_sale(sale_terms terms) {
  auto id = terms.id;
  sales_[id].terms = std::move(terms);
}

int64_t stock_book::remaining(const sale_terms& terms) const {
  return std::max<int64_t>(0, std::min(terms.quantity - taken(terms.id), available()));
}

int64_t stock_book::taken(const std::string& sale_id) const {
  auto i = sales_.find(sale_id);
  return i == sales_.end() ? 0 : i->second.taken;
}

const char* stock_book::status(const sale_terms& terms, millis now) const {
  if (auto i = sales_.find(terms.id); i != sales_.end() && i->second.closed)
    return "ended";
  if (now < terms.starts_at)
    return "scheduled";
  if (now >= terms.ends_at)
    return "ended";
  if (remaining(terms) == 0)
    return "sold_out";
  return "active";
}

sale_view stock_book::view(const sale_terms& terms, millis now) const {
  return sale_view{terms, remaining(terms), status(terms, now)};
}

int64_t stock_book::units_of(const std::string& sale_id, const std::string& user_id) const {
  auto i = sales_.find(sale_id);
  if (i == sales_.end())
    return 0;
  auto units = i->second.per_user.find(user_id);
  return units ? *units : 0;
}

void stock_book::close_sale(const std::string& sale_id) {
  if (auto i = sales_.find(sale_id); i != sales_.end())
    i->second.closed = true;
}

caf::error stock_book::check_purchase(const sale_terms& terms, const std::string& user_id,
                                      int64_t quantity, millis now) const {
  if (quantity <= 0)
    return make_error(errc::validation_failed, "quantity must be positive");
  if (now < terms.starts_at)
    return make_error(errc::sale_not_active, "the sale has not started yet");
  auto sale = sales_.find(terms.id);
  if (now >= terms.ends_at || (sale != sales_.end() && sale->second.closed))
    return make_error(errc::sale_not_active, "the sale has ended");
  auto held = units_of(terms.id, user_id);
  if (held + quantity > terms.per_user_limit)
    return make_error(errc::limit_exceeded,
                      "the limit is " + std::to_string(terms.per_user_limit)
                        + " per user and you hold " + std::to_string(held));
  auto left = remaining(terms);
  if (left < quantity)
    return make_error(errc::sold_out, left == 0 ? "sold out"
                                                : "only " + std::to_string(left) + " left");
  return caf::none;
}

const ledger_entry* stock_book::find_entry(const std::string& order_id) const {
  auto h = ledger_.find(order_id);
  return h ? &h->entry : nullptr;
}

void stock_book::count(const ledger_entry& e, int64_t sign) {
  if (e.state == reservation_state::released)
    return;
  (e.state == reservation_state::reserved ? reserved_ : sold_) += sign * e.quantity;
  auto i = sales_.find(e.sale_id);
  if (i != sales_.end()) {
    i->second.taken += sign * e.quantity;
    auto& units = i->second.per_user[e.user_id];
    units += sign * e.quantity;
    if (units == 0)
      i->second.per_user.erase(e.user_id);
  }
}

void stock_book::queue_check(held& h, millis at) {
  if (h.check != handed_out_mark)
    queue_.erase({h.check, h.entry.order_id});
  h.check = at;
  queue_.emplace_hint(queue_.end(), at, h.entry.order_id);
}

void stock_book::forget_check(held& h) {
  if (h.check != handed_out_mark)
    queue_.erase({h.check, h.entry.order_id});
  h.check = handed_out_mark;
  --open_;
}

stock_book::held& stock_book::add_reserved(ledger_entry entry) {
  count(entry, +1);
  auto id = entry.order_id;
  auto& h = ledger_[id];
  h.entry = std::move(entry);
  h.check = h.entry.expires_at;
  ++open_;
  return h;
}

void stock_book::reserve(ledger_entry entry) {
  entry.state = reservation_state::reserved;
  auto& h = add_reserved(std::move(entry));
  // New reservations nearly always expire last: the hint makes that insert
  // O(1) instead of a walk down the tree (it stays correct when they do not).
  queue_.emplace_hint(queue_.end(), h.check, h.entry.order_id);
}

void stock_book::forget_settled(const std::string& order_id) {
  auto h = ledger_.find(order_id);
  if (h && h->entry.state != reservation_state::reserved)
    ledger_.erase(order_id);
}

sku_tally stock_book::tally() const {
  sku_tally t;
  t.sold = settled_sold_;
  for (auto& [id, sale] : sales_)
    if (sale.settled_sold != 0)
      t.sales.emplace_back(id, sale.settled_sold);
  std::sort(t.sales.begin(), t.sales.end()); // the same tally, the same bytes
  return t;
}

std::optional<int64_t> stock_book::settled_units_of(const std::string& sale_id,
                                                    const std::string& user_id) const {
  auto i = sales_.find(sale_id);
  if (i == sales_.end())
    return std::nullopt;
  auto units = i->second.settled_per_user.find(user_id);
  if (i->second.closed && !units)
    return std::nullopt; // not loaded: its stored count is unknown here
  return units ? *units : 0;
}

bool stock_book::needs_closed_buyer(const std::string& order_id) const {
  auto h = ledger_.find(order_id);
  if (!h || h->entry.state != reservation_state::reserved)
    return false;
  auto s = sales_.find(h->entry.sale_id);
  return s != sales_.end() && s->second.closed
         && !s->second.settled_per_user.find(h->entry.user_id);
}

void stock_book::load_closed_buyer(const std::string& sale_id, const std::string& user_id,
                                   int64_t sold_units) {
  auto i = sales_.find(sale_id);
  if (i != sales_.end() && i->second.closed)
    i->second.settled_per_user[user_id] = sold_units; // kept even at 0: now known
}

bool stock_book::restore_tally(const sku_tally& tally) {
  for (auto& [id, units] : tally.sales)
    if (sales_.find(id) == sales_.end())
      return false;
  settled_sold_ = tally.sold;
  sold_ += tally.sold;
  for (auto& [id, units] : tally.sales) {
    auto& sale = sales_.find(id)->second;
    sale.settled_sold = units;
    sale.taken += units;
  }
  return true;
}

void stock_book::restore_buyer(const std::string& sale_id, const std::string& user_id,
                               int64_t sold_units) {
  auto i = sales_.find(sale_id);
  if (i == sales_.end() || sold_units <= 0)
    return;
  i->second.settled_per_user[user_id] = sold_units;
  i->second.per_user[user_id] += sold_units; // the sale's `taken` has them from the tally
}

void stock_book::restore(ledger_entry entry) {
  entry.state = reservation_state::reserved;
  auto& h = add_reserved(std::move(entry));
  restored_.emplace_back(h.check, h.entry.order_id);
}

void stock_book::finish_restore() {
  std::sort(restored_.begin(), restored_.end());
  for (auto& item : restored_)
    queue_.emplace_hint(queue_.end(), std::move(item));
  restored_.clear();
  restored_.shrink_to_fit();
}

bool stock_book::release(const std::string& order_id) {
  auto h = ledger_.find(order_id);
  if (!h || h->entry.state != reservation_state::reserved)
    return false;
  count(h->entry, -1);
  forget_check(*h);
  h->entry.state = reservation_state::released;
  return true;
}

bool stock_book::mark_sold(const std::string& order_id) {
  auto h = ledger_.find(order_id);
  if (!h || h->entry.state != reservation_state::reserved)
    return false;
  auto& e = h->entry;
  count(e, -1);
  forget_check(*h);
  e.state = reservation_state::sold;
  count(e, +1);
  settled_sold_ += e.quantity;
  if (auto s = sales_.find(e.sale_id); s != sales_.end()) {
    s->second.settled_sold += e.quantity;
    // A closed sale's buyer counts only once loaded; the owner loads it first.
    if (!s->second.closed || s->second.settled_per_user.find(e.user_id))
      s->second.settled_per_user[e.user_id] += e.quantity;
  }
  return true;
}

bool stock_book::set_expiry(const std::string& order_id, millis expires_at) {
  auto h = ledger_.find(order_id);
  if (!h || h->entry.state != reservation_state::reserved)
    return false;
  h->entry.expires_at = expires_at;
  queue_check(*h, expires_at); // also when it was handed out
  return true;
}

std::vector<std::string> stock_book::take_due(millis now, size_t max) {
  std::vector<std::string> out;
  while (out.size() < max && !queue_.empty() && queue_.begin()->first <= now) {
    auto node = queue_.extract(queue_.begin());
    ledger_.find(node.value().second)->check = handed_out_mark;
    out.push_back(std::move(node.value().second));
  }
  return out;
}

void stock_book::ask_again(const std::string& order_id, millis now, bool unanswered) {
  auto h = ledger_.find(order_id);
  if (!h || h->entry.state != reservation_state::reserved || h->check != handed_out_mark)
    return; // settled meanwhile, or not handed out
  queue_check(*h, unanswered ? now + ask_again_after
                             : std::max(now + ask_again_after, h->entry.expires_at));
}

bool stock_book::can_check_sooner(const std::string& order_id, millis at) const {
  auto h = ledger_.find(order_id);
  return h && h->entry.state == reservation_state::reserved && h->check != handed_out_mark
         && h->check > at;
}

bool stock_book::check_sooner(const std::string& order_id, millis at) {
  if (!can_check_sooner(order_id, at))
    return false;
  queue_check(*ledger_.find(order_id), at);
  return true;
}

std::optional<millis> stock_book::next_check() const {
  if (queue_.empty())
    return std::nullopt;
  return queue_.begin()->first;
}

} // namespace shop
