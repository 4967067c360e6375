#pragma once
// The rules of one SKU's stock, without actors or I/O: the product, its
// flash sales and the ledger of purchases (reservations). One per SKU, held
// by that SKU's `sku_stock` actor. Everything else is derived from the ledger
// (its settled entries summed up in the tally, see restore_tally):
//   reserved  = units of entries in state `reserved`
//   sold      = units of entries in state `sold`
//   available = stocked - reserved - sold
//   a sale's taken units and each user's units in a sale = its reserved + sold entries
// so `available + reserved + sold == stocked` holds by construction, and a
// check that passes here can never oversell.

#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/error.hpp>

#include "actors/segmented_map.hpp"
#include "protocols/types.hpp"

namespace shop {

class stock_book {
public:
  bool exists() const noexcept { return exists_; }
  const product_record& product() const noexcept { return product_; }
  /// Creates or replaces the product (its `stocked` included).
  void set_product(product_record p);

  int64_t reserved() const noexcept { return reserved_; }
  int64_t sold() const noexcept { return sold_; }
  int64_t available() const noexcept { return product_.stocked - reserved_ - sold_; }
  inventory_view inventory() const;

  // -- sales ------------------------------------------------------------------

  const sale_terms* find_sale(const std::string& sale_id) const;
  /// Adds a sale (terms are immutable). Precondition: not present.
  void add_sale(sale_terms terms);
  /// Units the sale can still sell: quantity - taken, capped by the SKU's available stock.
  int64_t remaining(const sale_terms& terms) const;
  /// Units the sale's buyers hold, reserved or sold (its `taken`).
  int64_t taken(const std::string& sale_id) const;
  /// scheduled | active | sold_out | ended
  const char* status(const sale_terms& terms, millis now) const;
  sale_view view(const sale_terms& terms, millis now) const;
  /// Units `user_id` holds in the sale (reserved or sold).
  int64_t units_of(const std::string& sale_id, const std::string& user_id) const;
  /// Marks a sale that had ended when the SKU was activated: its buyers' units
  /// were not loaded, so it refuses every purchase whatever the clock says later.
  void close_sale(const std::string& sale_id);

  // -- purchases --------------------------------------------------------------

  /// Checks, in this order: the sale window (sale_not_active), the user's
  /// limit (limit_exceeded), the sale's and the SKU's remaining units
  /// (sold_out). An empty error means the purchase may be reserved.
  caf::error check_purchase(const sale_terms& terms, const std::string& user_id, int64_t quantity,
                            millis now) const;

  // The ledger in memory holds the reserved entries, and settled ones (sold,
  // released) only until the owner calls forget_settled, once their new state
  // is durable: a long-selling SKU's memory stays proportional to its open
  // reservations, not to every order it ever took. Settled entries are counted
  // (sold, a sale's taken units, each user's units) all the same.

  /// The entry of `order_id` if it is in memory (see above), else nullptr.
  const ledger_entry* find_entry(const std::string& order_id) const;

  /// Drops a settled entry from memory (a reserved one stays).
  void forget_settled(const std::string& order_id);

  /// Number of entries in memory.
  size_t entries_in_memory() const noexcept { return ledger_.size(); }

  /// Records a reservation. Precondition: check_purchase passed and the order
  /// id is new, or its entry was released.
  void reserve(ledger_entry entry);

  /// Returns a reserved entry's units to available; false if it was not reserved.
  bool release(const std::string& order_id);

  /// Turns a reserved entry into sold; false if it was not reserved.
  bool mark_sold(const std::string& order_id);

  /// Moves a reserved entry's expiry; false if it was not reserved.
  bool set_expiry(const std::string& order_id, millis expires_at);

  // -- storage of settled entries -----------------------------------------------
  // The owner stores a settled entry outside the ledger's key range, so that
  // activation reads only the open reservations; what the settled entries add
  // up to is stored as the SKU's tally (units sold, in all and per sale) and,
  // for each sale, each buyer's sold units. The book keeps both current: the
  // owner writes them in the same batch as the settled entry.

  /// The units sold by entries settled this way.
  sku_tally tally() const;
  /// The units `user_id` bought in the sale through entries settled this way;
  /// nullopt for an entry-less sale, or a buyer of a sale closed at activation
  /// whose count was not loaded (see needs_closed_buyer).
  std::optional<int64_t> settled_units_of(const std::string& sale_id,
                                          const std::string& user_id) const;
  /// A sale closed at activation did not load its buyers. Its reservations can
  /// still be paid, and each buyer's stored count must then grow (should the
  /// clock step back before the sale's end, a later activation would load the
  /// sale's buyers again): before mark_sold of such an entry, the owner reads
  /// the buyer's stored count and hands it to load_closed_buyer.
  bool needs_closed_buyer(const std::string& order_id) const;
  void load_closed_buyer(const std::string& sale_id, const std::string& user_id,
                         int64_t sold_units);

  /// Recovery, in this order: add_sale for every sale, restore_tally,
  /// restore_buyer for each buyer of each sale that has not ended (close_sale
  /// for the others), restore for every reserved entry, finish_restore.
  /// False if the tally names a sale the book does not have (corrupt storage).
  [[nodiscard]] bool restore_tally(const sku_tally& tally);
  void restore_buyer(const std::string& sale_id, const std::string& user_id, int64_t sold_units);

  /// Re-applies a stored reservation (its state must be reserved). Call
  /// finish_restore() after the last one.
  void restore(ledger_entry entry);
  /// Queues the restored reservations for expiry, all at once (sorting them
  /// once costs a fraction of inserting them one by one in key order).
  void finish_restore();

  // -- expiry -----------------------------------------------------------------
  // Every reserved entry is either queued, due at a check time (its expiry, or
  // later when a check has to be repeated), or handed out to the expiry process
  // while its order entity decides its fate. Each operation below costs
  // O(log n), so a sale whose thousands of unpaid orders fall due together
  // settles them in O(n log n), and the SKU keeps answering meanwhile.

  /// Hands out up to `max` queued entries whose check time is at or before
  /// `now`, earliest first. A handed-out entry is not due again until
  /// `ask_again` queues it again or it leaves the reserved state.
  std::vector<std::string> take_due(millis now, size_t max);
  /// How long a due entry waits before its order is asked again.
  static constexpr millis ask_again_after = 1000;
  /// Queues a handed-out entry that is still reserved again, after its order
  /// gave no final answer at `now`: `ask_again_after` later if it is due or
  /// its order did not answer at all (`unanswered`: its entity restarting,
  /// say); one asked before it was due (check_sooner) whose order answered
  /// "not yet" at its expiry, as if it had not been asked.
  void ask_again(const std::string& order_id, millis now, bool unanswered = false);
  /// Whether check_sooner(order_id, at) would move the entry: it is queued
  /// (reserved, not handed out) and not due by `at` anyway.
  bool can_check_sooner(const std::string& order_id, millis at) const;
  /// Moves a queued entry's check to `at` if that is sooner; false if the
  /// entry is not queued (settled, or handed out) or due by then anyway.
  bool check_sooner(const std::string& order_id, millis at);
  /// The earliest check time of a queued entry, if any.
  std::optional<millis> next_check() const;
  /// Number of reserved entries (a SKU with open reservations must stay active for its timers).
  size_t open_reservations() const noexcept { return open_; }
  /// Number of reserved entries handed out by take_due and not settled yet.
  size_t handed_out() const noexcept { return open_ - queue_.size(); }

private:
  struct sale_book {
    sale_terms terms;
    int64_t taken = 0;
    segmented_map<std::string, int64_t> per_user;
    /// Closed at activation (see close_sale); then `settled_per_user` holds
    /// only the buyers loaded since (load_closed_buyer).
    bool closed = false;
    /// Units sold through entries settled outside the ledger's range: in all, and per buyer.
    int64_t settled_sold = 0;
    segmented_map<std::string, int64_t> settled_per_user;
  };

  /// A ledger entry and, while it is reserved, its place in the expiry queue
  /// (kept here rather than in a second map: one lookup, and one rehash less
  /// when a huge ledger grows).
  struct held {
    ledger_entry entry;
    millis check = 0; ///< the check time it is queued at, or handed_out_mark
  };
  static constexpr millis handed_out_mark = -1;

  void count(const ledger_entry& e, int64_t sign);
  /// Counts a reserved entry and keeps it, its check time at its expiry (not queued).
  held& add_reserved(ledger_entry entry);
  /// Queues a reserved entry at `at` (first leaving the queue if it was in it).
  void queue_check(held& h, millis at);
  /// Takes a reserved entry that leaves that state out of the expiry queue.
  void forget_check(held& h);

  bool exists_ = false;
  product_record product_;
  int64_t reserved_ = 0;
  int64_t sold_ = 0;
  /// Units sold through entries settled outside the ledger's range (the tally's `sold`).
  int64_t settled_sold_ = 0;
  std::unordered_map<std::string, sale_book> sales_;
  /// Open reservations, and settled entries until forget_settled. Segmented:
  /// a big sale's ledger grows without rehashing it all at once.
  segmented_map<std::string, held> ledger_;
  /// Queued entries by check time.
  std::set<std::pair<millis, std::string>> queue_;
  /// Number of reserved entries (queued or handed out).
  size_t open_ = 0;
  /// Restored reservations not queued yet (see finish_restore).
  std::vector<std::pair<millis, std::string>> restored_;
};

} // namespace shop
