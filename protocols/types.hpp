#pragma once
// Domain records (what is stored) and command/reply messages (what travels
// between the edge and the entities). Every type has a CAF `inspect`, so it
// can cross a node boundary once the cluster routes remotely. Times are
// milliseconds since the Unix epoch (UTC); money is integer cents.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace shop {

using millis = int64_t;

/// The version of every message that may cross the network.
constexpr uint8_t protocol_version = 1;

// -- records ------------------------------------------------------------------

/// A catalog product and its total stocked units. One per SKU, owned by the
/// SKU's `sku_stock` entity. reserved/sold are derived from the ledger.
struct product_record {
  std::string sku;
  std::string name;
  std::string description;
  int64_t price_cents = 0;
  int64_t stocked = 0;
};

/// The terms of a flash sale. Immutable after creation.
struct sale_terms {
  std::string id;
  std::string sku;
  int64_t price_cents = 0;
  int64_t quantity = 0;
  int64_t per_user_limit = 0;
  millis starts_at = 0;
  millis ends_at = 0;
};

enum class reservation_state : uint8_t { reserved = 0, released = 1, sold = 2 };

/// One purchase as the SKU's stock ledger sees it. The ledger (its settled
/// entries summed up in the SKU's tally, see sku_tally) is the single source
/// of the SKU's reserved and sold counts, of each sale's remaining units and
/// of each user's units in a sale: one purchase writes one entry.
struct ledger_entry {
  std::string order_id;
  std::string user_id;
  std::string sale_id;
  int64_t quantity = 0;
  int64_t unit_price_cents = 0;
  millis created_at = 0;
  millis expires_at = 0;
  reservation_state state = reservation_state::reserved;
};

/// What a SKU's sold entries add up to. A settled entry leaves the ledger's
/// key range (so activation reads only open reservations); this tally, stored
/// beside it and rewritten with each sale of units, keeps the counts.
struct sku_tally {
  int64_t sold = 0;
  /// Units sold per flash sale (sale id, units).
  std::vector<std::pair<std::string, int64_t>> sales;
};

enum class order_status : uint8_t {
  pending_payment = 0,
  paid = 1,
  shipped = 2,
  cancelled = 3,
  expired = 4,
  refunded = 5,
};

const char* to_string(order_status s) noexcept;

struct order_line {
  std::string sku;
  int64_t quantity = 0;
  int64_t price_cents = 0;
};

/// How a checkout gave its order's lines: as a list, or as the user's cart.
/// Kept so that a retry with the same Idempotency-Key in the other form is a
/// different request. `unknown`: a flash-sale order, or one stored before the
/// source was kept.
enum class order_source : uint8_t { unknown = 0, items = 1, cart = 2 };

/// An order. Created by the SKU actor (in the same write as its reservation),
/// then owned by its `order` entity.
struct order_record {
  std::string order_id;
  std::string user_id;
  order_status status = order_status::pending_payment;
  std::vector<order_line> items;
  int64_t total_cents = 0;
  int64_t discount_cents = 0;
  millis created_at = 0;
  millis expires_at = 0;
  millis updated_at = 0;
  std::string flash_sale_id;
  /// Set by POST /orders/{id}/pay: one payment per order (a failed payment may be retried).
  std::string payment_id;
  std::string payment_method;
  millis paid_at = 0;
  order_source source = order_source::unknown;
};

/// A line of a user's cart (prices are looked up when the cart is shown and
/// fixed at checkout).
struct cart_line {
  std::string sku;
  int64_t quantity = 0;
  /// When the line was added or its quantity last set (ms since the epoch;
  /// 0 for lines stored before this was kept): an order takes a line out of
  /// the cart only if the line has not changed since the order was placed.
  millis changed_at = 0;
};

/// A user's cart: SKUs and quantities, and the checkout that has taken its
/// lines (take_cart) and not yet ended, if any. The hold is stored with the
/// lines so that a cart that restarts (after a crash or a failed write) keeps
/// them held: another checkout taking them meanwhile would order them twice.
struct cart_record {
  std::vector<cart_line> items; // in SKU order
  std::string checkout_order;   // empty: not held
  uint64_t checkout_attempt = 0;
};

enum class user_role : uint8_t { user = 0, admin = 1 };

const char* to_string(user_role r) noexcept;

/// A user account, keyed by username (which makes registration a single
/// serialized decision in one actor).
struct user_record {
  std::string user_id;
  std::string username;
  std::string password_hash; // argon2id encoded string: algorithm, cost and salt included
  user_role role = user_role::user;
  millis created_at = 0;
};

/// What a creation (a user, a product, a flash sale) that carried an
/// Idempotency-Key leaves beside the entity it created, written in the same
/// batch: a retry with the same key from the same requester gets `answer`
/// again, the first answer (an encoded product_view, sale_view or user_view).
struct creation_receipt {
  std::string idempotency_key;
  /// The creator's user id (empty for a registration, which has none yet).
  std::string requester;
  std::string answer;
};

// -- replies ------------------------------------------------------------------

struct inventory_view {
  std::string sku;
  int64_t available = 0;
  int64_t reserved = 0;
  int64_t sold = 0;
};

/// What a restock that carried an Idempotency-Key leaves beside its SKU, in
/// the restock's batch: a retry with the same key from the same requester
/// gets `answer` again instead of adding the units a second time.
struct restock_receipt {
  std::string idempotency_key;
  std::string requester;
  int64_t quantity = 0;
  inventory_view answer;
};

struct product_view {
  product_record product;
  inventory_view inventory;
};

struct sale_view {
  sale_terms terms;
  int64_t remaining = 0;
  std::string status; // scheduled | active | sold_out | ended
};

struct user_view {
  std::string user_id;
  std::string username;
  user_role role = user_role::user;
  millis created_at = 0;
};

struct cart_view {
  /// Lines in SKU order, each with the product's current unit price.
  std::vector<order_line> items;
  int64_t total_cents = 0;
};

/// One product of a catalog page.
struct catalog_item {
  product_view view;
  /// False when its SKU did not tell its live stock (quarantined after
  /// crashes, or not in time): the product as stored is listed, its stock
  /// counts are unknown.
  bool stock_known = true;
};

/// One page of GET /products.
struct product_page {
  std::vector<catalog_item> items;
  /// Opaque; empty on the last page.
  std::string next_cursor;
};

/// The answer to POST /orders/{id}/pay.
struct payment_view {
  std::string payment_id;
  std::string order_id;
  int64_t amount_cents = 0;
  std::string method;
};

/// A purchase's answer: the order as created. `replayed` is true when an
/// Idempotency-Key retry returned an earlier result.
struct purchase_result {
  order_record order;
  bool replayed = false;
};

// -- commands -----------------------------------------------------------------

/// The creations below accept an Idempotency-Key (`idempotency_key`, may be
/// empty), scoped to the requester and the created entity's id.
struct create_product {
  product_record product;
  std::string idempotency_key;
  std::string requester; // user id
};
struct get_product {
  std::string sku;
};
/// PATCH: only the fields whose `has_*` flag is set change.
struct update_product {
  std::string sku;
  bool has_name = false;
  std::string name;
  bool has_description = false;
  std::string description;
  bool has_price = false;
  int64_t price_cents = 0;
};
struct restock {
  std::string sku;
  int64_t quantity = 0;
  std::string idempotency_key; // optional
  std::string requester;       // the admin's user id
};
struct get_inventory {
  std::string sku;
};
struct create_sale {
  sale_terms terms;
  std::string idempotency_key;
  std::string requester; // user id
};
struct get_sale {
  std::string sale_id;
};
/// A buyer's purchase in a flash sale. `idempotency_key` may be empty.
struct purchase {
  uint8_t version = protocol_version;
  std::string sale_id;
  std::string user_id;
  int64_t quantity = 1;
  std::string idempotency_key;
  std::string trace_id;
};
/// Sent by a `flash_sale` entity to the SKU that holds its stock.
struct register_sale {
  sale_terms terms;
};
struct get_sale_stock {
  std::string sku;
  std::string sale_id;
};
struct purchase_at_sku {
  std::string sku;
  purchase request;
};
struct get_order {
  std::string order_id;
  std::string requester; // user id
  bool requester_is_admin = false;
};
struct cancel_order {
  std::string order_id;
  std::string requester;
  bool requester_is_admin = false;
};
/// From a SKU's reservation timer: expire the order if it is still unpaid and
/// its time is up. The reply is the fate of `sku`'s reservation: the order's
/// status after the command, or `expired` if the order has no line of `sku`
/// (a reservation left by an earlier, unfinished placement of the order).
struct expire_order {
  std::string order_id;
  std::string sku;
};
/// From an order that ended unpaid: release its reservation (idempotent).
struct release_reservation {
  std::string sku;
  std::string order_id;
};
/// From an order whose placement failed once its reservations were asked
/// for: ask the order about this reservation now, not at its expiry (the
/// order's entity, loaded from storage, says whether the order exists).
struct recheck_reservation {
  std::string sku;
  std::string order_id;
};
/// GET /products: a page of products whose names match every word of `query`.
struct list_products {
  std::string query;
  int64_t limit = 20;
  std::string cursor;
};
struct get_cart {
  std::string user_id;
};
/// Sets a line's quantity; 0 removes the line.
struct set_cart_item {
  std::string user_id;
  std::string sku;
  int64_t quantity = 0;
};
/// Empties the cart; with `ordered`, removes only those lines, and only
/// where the cart still holds the ordered quantity, unchanged since
/// `ordered_at` (a checkout from the cart must not drop what the user
/// changed or added meanwhile, nor, asking again after a crash, what the
/// user put back since).
struct clear_cart {
  std::string user_id;
  std::vector<order_line> ordered;
  millis ordered_at = 0; // 0: whenever the lines were set
  std::string order_id;  // the checkout this ends (see take_cart); empty: none
};
/// From an order being placed from the cart: the cart's lines, unpriced. The
/// order holds them until its checkout ends (a clear_cart naming the order,
/// or an end_cart_checkout naming the attempt): another order's take_cart
/// waits until then, so two checkouts of one cart run as if one came after
/// the other.
struct take_cart {
  std::string user_id;
  std::string order_id;
  uint64_t attempt = 0; // this placement of the order (its entity's actor id)
};
/// From an order whose checkout from the cart ended without taking the lines
/// (refused, failed, or placed after its payment was due): the cart's next
/// checkout may go on. Only the attempt that took the lines ends its hold: a
/// late message of an earlier attempt does not end a retry's.
struct end_cart_checkout {
  std::string user_id;
  std::string order_id;
  uint64_t attempt = 0;
};
/// From a cart whose lines a checkout holds past its time limit with the
/// order's entity gone, or since before the cart restarted (the hold loaded
/// from storage): how that attempt of the order stands (checkout_progress).
struct checkout_under_way {
  std::string order_id;
  uint64_t attempt = 0;
};
/// The answer to checkout_under_way. Under way: the hold stays. Else the hold
/// ends; if the order is stored, placed from the cart, unpaid and not yet
/// due, the cart first takes its lines out (as its clear_cart would: the
/// order may have been written just before a crash that lost the clear).
struct checkout_progress {
  bool under_way = false;
  std::vector<order_line> ordered;
  millis ordered_at = 0;
};
/// POST /orders: explicit items, or the user's cart (`from_cart`).
struct checkout {
  uint8_t version = protocol_version;
  std::string user_id;
  std::vector<order_line> items; // prices ignored: the SKUs' prices at reservation apply
  bool from_cart = false;
  std::string idempotency_key;
  std::string trace_id;
};
/// A checkout routed to the order entity that will hold it.
struct place_order {
  std::string order_id;
  checkout request;
};
/// From an order being placed: reserve `quantity` units of `sku` for it until
/// `expires_at`. Idempotent per order id. The reply is the line with its unit price.
struct reserve_stock {
  std::string sku;
  std::string order_id;
  std::string user_id;
  int64_t quantity = 0;
  millis expires_at = 0;
};
/// From an order that was paid: its reserved units become sold (idempotent).
struct confirm_sale {
  std::string sku;
  std::string order_id;
};
struct pay_order {
  std::string order_id;
  std::string requester;
  std::string method;
};
/// A verified payment gateway callback.
struct payment_callback {
  std::string payment_id;
  std::string order_id;
  bool succeeded = false;
  int64_t amount_cents = 0;
};
struct register_user {
  std::string username;
  std::string password;
  user_role role = user_role::user;
  /// Bootstrap only: if the user exists, set this password and role instead of failing.
  bool upsert = false;
  std::string idempotency_key;
};
struct login_user {
  std::string username;
  std::string password;
};
struct get_user {
  std::string username;
  /// When set, the account must have this id, or it answers not_found: a token
  /// names its account by id (`sub`), and a name may since have been taken
  /// by another account (a data dir restored or reset under the same secret).
  std::string user_id;
};

// -- comparison ---------------------------------------------------------------

inline bool operator==(const product_record& a, const product_record& b) {
  return a.sku == b.sku && a.name == b.name && a.description == b.description
         && a.price_cents == b.price_cents && a.stocked == b.stocked;
}
inline bool operator!=(const product_record& a, const product_record& b) { return !(a == b); }

inline bool operator==(const sale_terms& a, const sale_terms& b) {
  return a.id == b.id && a.sku == b.sku && a.price_cents == b.price_cents
         && a.quantity == b.quantity && a.per_user_limit == b.per_user_limit
         && a.starts_at == b.starts_at && a.ends_at == b.ends_at;
}
inline bool operator!=(const sale_terms& a, const sale_terms& b) { return !(a == b); }

// -- inspect ------------------------------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product_record& x) {
  return f(caf::meta::type_name("shop::product_record"), x.sku, x.name, x.description,
           x.price_cents, x.stocked);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sale_terms& x) {
  return f(caf::meta::type_name("shop::sale_terms"), x.id, x.sku, x.price_cents, x.quantity,
           x.per_user_limit, x.starts_at, x.ends_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_line& x) {
  return f(caf::meta::type_name("shop::order_line"), x.sku, x.quantity, x.price_cents);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_record& x) {
  return f(caf::meta::type_name("shop::order_record"), x.order_id, x.user_id, x.status, x.items,
           x.total_cents, x.discount_cents, x.created_at, x.expires_at, x.updated_at,
           x.flash_sale_id, x.payment_id, x.payment_method, x.paid_at, x.source);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_line& x) {
  return f(caf::meta::type_name("shop::cart_line"), x.sku, x.quantity, x.changed_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_record& x) {
  return f(caf::meta::type_name("shop::cart_record"), x.items, x.checkout_order,
           x.checkout_attempt);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_view& x) {
  return f(caf::meta::type_name("shop::cart_view"), x.items, x.total_cents);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, catalog_item& x) {
  return f(caf::meta::type_name("shop::catalog_item"), x.view, x.stock_known);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product_page& x) {
  return f(caf::meta::type_name("shop::product_page"), x.items, x.next_cursor);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_view& x) {
  return f(caf::meta::type_name("shop::payment_view"), x.payment_id, x.order_id, x.amount_cents,
           x.method);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, list_products& x) {
  return f(caf::meta::type_name("shop::list_products"), x.query, x.limit, x.cursor);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, get_cart& x) {
  return f(caf::meta::type_name("shop::get_cart"), x.user_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, set_cart_item& x) {
  return f(caf::meta::type_name("shop::set_cart_item"), x.user_id, x.sku, x.quantity);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, clear_cart& x) {
  return f(caf::meta::type_name("shop::clear_cart"), x.user_id, x.ordered, x.ordered_at,
           x.order_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, take_cart& x) {
  return f(caf::meta::type_name("shop::take_cart"), x.user_id, x.order_id, x.attempt);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, end_cart_checkout& x) {
  return f(caf::meta::type_name("shop::end_cart_checkout"), x.user_id, x.order_id, x.attempt);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checkout_under_way& x) {
  return f(caf::meta::type_name("shop::checkout_under_way"), x.order_id, x.attempt);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checkout_progress& x) {
  return f(caf::meta::type_name("shop::checkout_progress"), x.under_way, x.ordered, x.ordered_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checkout& x) {
  return f(caf::meta::type_name("shop::checkout"), x.version, x.user_id, x.items, x.from_cart,
           x.idempotency_key, x.trace_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, place_order& x) {
  return f(caf::meta::type_name("shop::place_order"), x.order_id, x.request);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reserve_stock& x) {
  return f(caf::meta::type_name("shop::reserve_stock"), x.sku, x.order_id, x.user_id, x.quantity,
           x.expires_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, confirm_sale& x) {
  return f(caf::meta::type_name("shop::confirm_sale"), x.sku, x.order_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pay_order& x) {
  return f(caf::meta::type_name("shop::pay_order"), x.order_id, x.requester, x.method);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_callback& x) {
  return f(caf::meta::type_name("shop::payment_callback"), x.payment_id, x.order_id, x.succeeded,
           x.amount_cents);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_view& x) {
  return f(caf::meta::type_name("shop::inventory_view"), x.sku, x.available, x.reserved, x.sold);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product_view& x) {
  return f(caf::meta::type_name("shop::product_view"), x.product, x.inventory);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sale_view& x) {
  return f(caf::meta::type_name("shop::sale_view"), x.terms, x.remaining, x.status);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_view& x) {
  return f(caf::meta::type_name("shop::user_view"), x.user_id, x.username, x.role, x.created_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, purchase_result& x) {
  return f(caf::meta::type_name("shop::purchase_result"), x.order, x.replayed);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, create_product& x) {
  return f(caf::meta::type_name("shop::create_product"), x.product, x.idempotency_key,
           x.requester);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, get_product& x) {
  return f(caf::meta::type_name("shop::get_product"), x.sku);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, update_product& x) {
  return f(caf::meta::type_name("shop::update_product"), x.sku, x.has_name, x.name,
           x.has_description, x.description, x.has_price, x.price_cents);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, restock& x) {
  return f(caf::meta::type_name("shop::restock"), x.sku, x.quantity, x.idempotency_key,
           x.requester);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, get_inventory& x) {
  return f(caf::meta::type_name("shop::get_inventory"), x.sku);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, create_sale& x) {
  return f(caf::meta::type_name("shop::create_sale"), x.terms, x.idempotency_key, x.requester);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, get_sale& x) {
  return f(caf::meta::type_name("shop::get_sale"), x.sale_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, purchase& x) {
  return f(caf::meta::type_name("shop::purchase"), x.version, x.sale_id, x.user_id, x.quantity,
           x.idempotency_key, x.trace_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, register_sale& x) {
  return f(caf::meta::type_name("shop::register_sale"), x.terms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, get_sale_stock& x) {
  return f(caf::meta::type_name("shop::get_sale_stock"), x.sku, x.sale_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, purchase_at_sku& x) {
  return f(caf::meta::type_name("shop::purchase_at_sku"), x.sku, x.request);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, get_order& x) {
  return f(caf::meta::type_name("shop::get_order"), x.order_id, x.requester,
           x.requester_is_admin);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cancel_order& x) {
  return f(caf::meta::type_name("shop::cancel_order"), x.order_id, x.requester,
           x.requester_is_admin);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, expire_order& x) {
  return f(caf::meta::type_name("shop::expire_order"), x.order_id, x.sku);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, release_reservation& x) {
  return f(caf::meta::type_name("shop::release_reservation"), x.sku, x.order_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, recheck_reservation& x) {
  return f(caf::meta::type_name("shop::recheck_reservation"), x.sku, x.order_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, register_user& x) {
  return f(caf::meta::type_name("shop::register_user"), x.username, x.password, x.role, x.upsert,
           x.idempotency_key);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, login_user& x) {
  return f(caf::meta::type_name("shop::login_user"), x.username, x.password);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, get_user& x) {
  return f(caf::meta::type_name("shop::get_user"), x.username, x.user_id);
}

} // namespace shop
