#include <gtest/gtest.h>

#include <random>
#include <set>

#include "actors/stock_book.hpp"
#include "protocols/errc.hpp"

using namespace shop;

namespace {

stock_book book_with(int64_t stock, int64_t sale_quantity, int64_t limit) {
  stock_book b;
  b.set_product({"p1", "Phone", "", 1000, stock});
  b.add_sale({"s1", "p1", 500, sale_quantity, limit, 0, 1'000'000});
  return b;
}

ledger_entry entry(const std::string& order, const std::string& user, int64_t qty,
                   millis expires = 500) {
  return {order, user, "s1", qty, 500, 10, expires, reservation_state::reserved};
}

errc check(const stock_book& b, const std::string& user, int64_t qty, millis now = 100) {
  auto err = b.check_purchase(*b.find_sale("s1"), user, qty, now);
  return err ? describe(err).code : errc::internal;
}

constexpr errc allowed = errc::internal; // check() maps "no error" to this

} // namespace

TEST(StockBook, test_window_limit_and_stock_are_checked_in_order) {
  auto b = book_with(10, 3, 2);
  EXPECT_EQ(check(b, "u", 1, -1), errc::sale_not_active);
  EXPECT_EQ(check(b, "u", 1, 1'000'000), errc::sale_not_active);
  EXPECT_EQ(check(b, "u", 3), errc::limit_exceeded);
  EXPECT_EQ(check(b, "u", 2), allowed);
  b.reserve(entry("o1", "u", 2));
  EXPECT_EQ(check(b, "u", 1), errc::limit_exceeded);
  EXPECT_EQ(check(b, "v", 1), allowed);
  b.reserve(entry("o2", "v", 1));
  EXPECT_EQ(check(b, "w", 1), errc::sold_out); // the sale's quantity is used up
  EXPECT_EQ(b.inventory().available, 7);
}

TEST(StockBook, test_the_skus_own_stock_caps_a_sale) {
  auto b = book_with(2, 5, 5);
  b.reserve(entry("o1", "u", 2));
  EXPECT_EQ(check(b, "v", 1), errc::sold_out);
  EXPECT_EQ(b.remaining(*b.find_sale("s1")), 0);
}

TEST(StockBook, test_release_returns_units_once) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 3));
  EXPECT_EQ(b.reserved(), 3);
  EXPECT_TRUE(b.release("o1"));
  EXPECT_FALSE(b.release("o1"));
  EXPECT_FALSE(b.mark_sold("o1"));
  EXPECT_EQ(b.reserved(), 0);
  EXPECT_EQ(b.available(), 5);
  EXPECT_EQ(b.units_of("s1", "u"), 0);
  EXPECT_EQ(b.open_reservations(), 0u);
}

// Settled entries leave memory when the owner says their state is durable,
// and stored ones are counted at recovery without being kept: memory follows
// the open reservations, while the counts still cover every entry.
TEST(StockBook, test_settled_entries_are_counted_but_not_kept_in_memory) {
  auto b = book_with(10, 10, 5);
  b.reserve(entry("o1", "u", 2));
  b.reserve(entry("o2", "u", 1));
  EXPECT_TRUE(b.mark_sold("o1"));
  EXPECT_NE(b.find_entry("o1"), nullptr); // until its new state is durable
  b.forget_settled("o1");
  b.forget_settled("o2"); // still reserved: stays
  EXPECT_EQ(b.find_entry("o1"), nullptr);
  ASSERT_NE(b.find_entry("o2"), nullptr);
  EXPECT_EQ(b.entries_in_memory(), 1u);
  EXPECT_EQ(b.sold(), 2);
  EXPECT_EQ(b.units_of("s1", "u"), 3);
  EXPECT_EQ(check(b, "u", 3), errc::limit_exceeded); // the sold units still count

  // Recovery: the same state read back from storage (the settled entries as
  // the tally and the buyer's sold units, the released one not at all).
  auto r = book_with(10, 10, 5);
  ASSERT_TRUE(r.restore_tally(sku_tally{2, {{"s1", 2}}}));
  r.restore_buyer("s1", "u", 2);
  r.restore(entry("o2", "u", 1, 700));
  r.restore(entry("o4", "v", 1, 600));
  r.finish_restore();
  EXPECT_EQ(r.entries_in_memory(), 2u);
  EXPECT_EQ(*r.next_check(), 600); // the restored reservations are queued for expiry
  EXPECT_TRUE(r.release("o4"));
  r.forget_settled("o4");
  EXPECT_EQ(*r.next_check(), 700);
  EXPECT_EQ(r.entries_in_memory(), 1u);
  EXPECT_EQ(r.find_entry("o1"), nullptr);
  EXPECT_EQ(r.sold(), 2);
  EXPECT_EQ(r.reserved(), 1);
  EXPECT_EQ(r.available(), 7);
  EXPECT_EQ(r.units_of("s1", "u"), 3);
  EXPECT_EQ(r.remaining(*r.find_sale("s1")), 7);
  // A released entry reserved anew (a checkout's orphan) is open again.
  auto again = entry("o3", "u", 1);
  r.reserve(again);
  EXPECT_EQ(r.open_reservations(), 2u);
  r.forget_settled("o3");
  EXPECT_NE(r.find_entry("o3"), nullptr);
}

// The owner stores settled entries outside the ledger's range and keeps the
// tally and each buyer's sold units instead; a book restored from those and
// the open reservations answers like the one that wrote them.
TEST(StockBook, test_a_book_restored_from_its_tally_and_open_entries_counts_the_same) {
  auto b = book_with(20, 10, 3);
  b.reserve(entry("o1", "u", 2));
  b.reserve(entry("o2", "u", 1));
  b.reserve(entry("o3", "v", 1));
  ASSERT_TRUE(b.mark_sold("o1"));
  ASSERT_TRUE(b.release("o2"));
  EXPECT_EQ(b.tally().sold, 2);
  EXPECT_EQ(b.tally().sales, (std::vector<std::pair<std::string, int64_t>>{{"s1", 2}}));
  EXPECT_EQ(b.settled_units_of("s1", "u"), 2);
  EXPECT_EQ(b.settled_units_of("s1", "v"), 0);

  auto r = book_with(20, 10, 3);
  ASSERT_TRUE(r.restore_tally(b.tally()));
  r.restore_buyer("s1", "u", *b.settled_units_of("s1", "u"));
  r.restore(*b.find_entry("o3"));
  r.finish_restore();
  EXPECT_EQ(r.inventory().available, b.inventory().available);
  EXPECT_EQ(r.reserved(), 1);
  EXPECT_EQ(r.sold(), 2);
  EXPECT_EQ(r.remaining(*r.find_sale("s1")), 7);
  EXPECT_EQ(check(r, "u", 2), errc::limit_exceeded);
  EXPECT_EQ(check(r, "u", 1), allowed);
  // Selling the open entry keeps the tally and its buyer's units going.
  ASSERT_TRUE(r.mark_sold("o3"));
  EXPECT_EQ(r.tally().sold, 3);
  EXPECT_EQ(r.settled_units_of("s1", "v"), 1);

  // A tally naming a sale the SKU does not have is corrupt storage.
  stock_book other;
  other.set_product({"p1", "Phone", "", 1000, 5});
  EXPECT_FALSE(other.restore_tally(sku_tally{1, {{"nope", 1}}}));
}

TEST(StockBook, test_a_sale_closed_at_activation_sells_nothing_whatever_the_clock_says) {
  auto b = book_with(20, 10, 3);
  b.reserve(entry("o1", "u", 1));
  b.close_sale("s1"); // it had ended when the SKU was loaded: buyers not loaded
  EXPECT_EQ(check(b, "w", 1, 100), errc::sale_not_active); // the clock went back into the window
  EXPECT_STREQ(b.status(*b.find_sale("s1"), 100), "ended");
  EXPECT_EQ(b.settled_units_of("s1", "u"), std::nullopt); // its buyers were not loaded
  // A reservation paid after the end still sells, and its buyer's stored
  // count must grow: the owner loads it first (should the clock step back
  // before the end, a later activation loads this sale's buyers again).
  EXPECT_TRUE(b.needs_closed_buyer("o1"));
  b.load_closed_buyer("s1", "u", 2); // two units bought and paid earlier
  EXPECT_FALSE(b.needs_closed_buyer("o1"));
  ASSERT_TRUE(b.mark_sold("o1"));
  EXPECT_EQ(b.settled_units_of("s1", "u"), 3); // what the owner writes back
  EXPECT_EQ(b.settled_units_of("s1", "w"), std::nullopt);
  EXPECT_FALSE(b.needs_closed_buyer("o1")); // settled: nothing more to sell
  EXPECT_EQ(b.sold(), 1);
  EXPECT_EQ(b.tally().sold, 1);
  // A buyer with nothing stored yet is loaded at 0 and counted from there.
  b.reserve(entry("o2", "w", 1));
  EXPECT_TRUE(b.needs_closed_buyer("o2"));
  b.load_closed_buyer("s1", "w", 0);
  ASSERT_TRUE(b.mark_sold("o2"));
  EXPECT_EQ(b.settled_units_of("s1", "w"), 1);
  // Sales that were open at activation never need it.
  auto open = book_with(20, 10, 3);
  open.reserve(entry("o3", "u", 1));
  EXPECT_FALSE(open.needs_closed_buyer("o3"));
}

TEST(StockBook, test_take_due_hands_out_expired_reservations_once) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 100));
  b.reserve(entry("o2", "v", 1, 200));
  EXPECT_EQ(*b.next_check(), 100);
  EXPECT_EQ(b.take_due(150, 10), std::vector<std::string>{"o1"});
  EXPECT_TRUE(b.take_due(150, 10).empty()); // handed out: not due again
  EXPECT_EQ(*b.next_check(), 200);
  EXPECT_EQ(b.handed_out(), 1u);
  EXPECT_EQ(b.open_reservations(), 2u);
  EXPECT_TRUE(b.mark_sold("o1"));
  EXPECT_EQ(b.handed_out(), 0u);
  EXPECT_EQ(b.open_reservations(), 1u);
  EXPECT_EQ(b.sold(), 1);
  b.ask_again("o1", 300); // settled meanwhile: nothing to queue
  EXPECT_EQ(b.open_reservations(), 1u);
  EXPECT_EQ(*b.next_check(), 200);
}

TEST(StockBook, test_take_due_hands_out_at_most_max_earliest_first) {
  auto b = book_with(10, 10, 10);
  for (int i = 0; i < 5; ++i)
    b.reserve(entry("o" + std::to_string(i), "u", 1, 500 - i * 100));
  EXPECT_EQ(b.take_due(1000, 2), (std::vector<std::string>{"o4", "o3"}));
  EXPECT_EQ(b.take_due(1000, 2), (std::vector<std::string>{"o2", "o1"}));
  EXPECT_EQ(b.handed_out(), 4u);
  EXPECT_EQ(b.take_due(1000, 2), std::vector<std::string>{"o0"});
  EXPECT_FALSE(b.next_check());
}

TEST(StockBook, test_a_check_put_back_is_due_again_at_its_new_time) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 100));
  EXPECT_EQ(b.take_due(100, 10), std::vector<std::string>{"o1"});
  b.ask_again("o1", 100); // its order was still being placed: in a second
  EXPECT_EQ(b.handed_out(), 0u);
  EXPECT_TRUE(b.take_due(1000, 10).empty());
  EXPECT_EQ(*b.next_check(), 1100);
  EXPECT_EQ(b.take_due(1100, 10), std::vector<std::string>{"o1"});
  EXPECT_TRUE(b.release("o1"));
  EXPECT_FALSE(b.next_check());
  EXPECT_EQ(b.open_reservations(), 0u);
}

// A reservation asked before its expiry (after a restart, its order not
// stored) whose order says "not yet" (its placement under way) is asked again
// at its expiry, not every second until then.
TEST(StockBook, test_an_entry_asked_early_without_a_final_answer_is_asked_again_at_its_expiry) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 900'000));
  EXPECT_TRUE(b.check_sooner("o1", 200));
  EXPECT_EQ(b.take_due(200, 10), std::vector<std::string>{"o1"});
  b.ask_again("o1", 250);
  EXPECT_EQ(*b.next_check(), 900'000);
  EXPECT_TRUE(b.take_due(1250, 10).empty());
  EXPECT_EQ(b.take_due(900'000, 10), std::vector<std::string>{"o1"});
  b.ask_again("o1", 900'010); // due now: asked again in a second
  EXPECT_EQ(*b.next_check(), 901'010);
}

// One asked early whose order did not answer at all (its entity restarting
// after the same crash) is asked again in a second: the early ask is what
// returns the units of an order that ended before the crash.
TEST(StockBook, test_an_entry_asked_early_whose_order_did_not_answer_is_asked_again_in_a_second) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 900'000));
  EXPECT_TRUE(b.check_sooner("o1", 200));
  EXPECT_EQ(b.take_due(200, 10), std::vector<std::string>{"o1"});
  b.ask_again("o1", 250, true);
  EXPECT_EQ(*b.next_check(), 1250);
  EXPECT_EQ(b.take_due(1250, 10), std::vector<std::string>{"o1"});
  b.ask_again("o1", 1300); // now it answered "not yet": at its expiry
  EXPECT_EQ(*b.next_check(), 900'000);
}

TEST(StockBook, test_a_check_moved_sooner_is_due_then_and_only_a_queued_one_moves) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 900));
  b.reserve(entry("o2", "v", 1, 800));
  b.reserve(entry("o3", "w", 1, 100));
  EXPECT_TRUE(b.check_sooner("o1", 200)); // its order ended before a crash
  EXPECT_EQ(b.take_due(150, 10), std::vector<std::string>{"o3"});
  EXPECT_FALSE(b.check_sooner("o3", 50)); // handed out: its order is being asked
  EXPECT_FALSE(b.check_sooner("o2", 900)); // not sooner
  EXPECT_FALSE(b.check_sooner("o9", 50));  // no such entry
  EXPECT_EQ(*b.next_check(), 200);
  EXPECT_EQ(b.take_due(200, 10), std::vector<std::string>{"o1"});
  EXPECT_EQ(b.handed_out(), 2u);
  EXPECT_EQ(b.open_reservations(), 3u);
  EXPECT_TRUE(b.release("o1"));
  EXPECT_FALSE(b.check_sooner("o1", 100)); // settled
  EXPECT_EQ(*b.next_check(), 800);
  EXPECT_EQ(b.take_due(800, 10), std::vector<std::string>{"o2"});
}

TEST(StockBook, test_a_moved_expiry_is_due_at_its_new_time_only) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 100));
  EXPECT_TRUE(b.set_expiry("o1", 300));
  EXPECT_TRUE(b.take_due(150, 10).empty());
  EXPECT_EQ(*b.next_check(), 300);
  EXPECT_EQ(b.take_due(300, 10), std::vector<std::string>{"o1"});
  EXPECT_TRUE(b.set_expiry("o1", 500)); // a handed-out entry is queued anew
  EXPECT_EQ(b.handed_out(), 0u);
  EXPECT_EQ(*b.next_check(), 500);
  EXPECT_EQ(b.open_reservations(), 1u);
  EXPECT_TRUE(b.release("o1"));
  EXPECT_FALSE(b.set_expiry("o1", 400)); // only a reserved entry has an expiry
  EXPECT_FALSE(b.next_check());
}

// A big sale's unpaid orders falling due together: every one is handed out
// once and settled, in waves, without any reservation lost or counted twice.
TEST(StockBook, test_fifty_thousand_reservations_due_together_settle_in_waves) {
  constexpr int n = 50'000;
  auto b = book_with(n, n, 1);
  for (int i = 0; i < n; ++i)
    b.reserve(entry("o" + std::to_string(i), "u" + std::to_string(i), 1, 1000 + i % 3000));
  EXPECT_EQ(b.available(), 0);
  std::set<std::string> seen;
  int waves = 0;
  size_t kept = 0;
  for (;;) {
    auto wave = b.take_due(10'000, 256);
    if (wave.empty())
      break;
    ++waves;
    EXPECT_LE(wave.size(), 256u);
    for (size_t j = 0; j < wave.size(); ++j) {
      EXPECT_TRUE(seen.insert(wave[j]).second) << wave[j] << " handed out twice";
      if (j % 10 == 0) {
        b.ask_again(wave[j], 19'000); // still being placed: asked again at 20,000
        ++kept;
      } else {
        EXPECT_TRUE(b.release(wave[j]));
      }
    }
  }
  EXPECT_EQ(waves, (n + 255) / 256);
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));
  EXPECT_EQ(b.handed_out(), 0u);
  EXPECT_EQ(b.open_reservations(), kept);
  EXPECT_EQ(b.reserved(), static_cast<int64_t>(kept));
  EXPECT_EQ(b.available(), n - static_cast<int64_t>(kept));
  EXPECT_EQ(*b.next_check(), 20'000);
}

// Random operations never break available + reserved + sold == stocked, the
// sale's cap or any user's limit.
TEST(StockBook, test_invariants_hold_under_random_operations) {
  std::mt19937 rng{42};
  auto b = book_with(100, 60, 3);
  std::vector<std::string> orders, handed;
  for (int step = 0; step < 20000; ++step) {
    auto op = rng() % 10;
    if (op < 6) {
      auto user = "u" + std::to_string(rng() % 40);
      int64_t qty = 1 + rng() % 3;
      if (!b.check_purchase(*b.find_sale("s1"), user, qty, 100)) {
        auto id = "o" + std::to_string(step);
        b.reserve(entry(id, user, qty, rng() % 1000));
        orders.push_back(id);
      }
    } else if (op == 6) { // the expiry process at work
      for (auto& id : b.take_due(rng() % 1000, 1 + rng() % 5))
        handed.push_back(id);
    } else if (op == 7 && !handed.empty()) {
      b.ask_again(handed[rng() % handed.size()], rng() % 1000);
    } else if (!orders.empty()) {
      auto& id = orders[rng() % orders.size()];
      if (op == 8)
        b.release(id);
      else if (rng() % 2)
        b.mark_sold(id);
      else
        b.set_expiry(id, rng() % 1000);
    }
    if (step % 100 == 0) { // every reserved entry is queued or handed out, once
      size_t reserved = 0;
      for (auto& id : orders)
        reserved += b.find_entry(id)->state == reservation_state::reserved;
      ASSERT_EQ(b.open_reservations(), reserved);
      ASSERT_LE(b.handed_out(), reserved);
    }
    ASSERT_EQ(b.available() + b.reserved() + b.sold(), 100);
    ASSERT_GE(b.available(), 0);
    ASSERT_LE(b.reserved() + b.sold(), 60);
    for (int u = 0; u < 40; ++u)
      ASSERT_LE(b.units_of("s1", "u" + std::to_string(u)), 3);
  }
}
