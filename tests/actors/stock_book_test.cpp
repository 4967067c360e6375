#include <gtest/gtest.h>

#include <random>

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

TEST(StockBook, test_due_lists_expired_reservations_only) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 100));
  b.reserve(entry("o2", "v", 1, 200));
  EXPECT_EQ(b.due(150), std::vector<std::string>{"o1"});
  EXPECT_EQ(*b.next_expiry(), 100);
  EXPECT_EQ(*b.next_expiry({"o1"}), 200);
  EXPECT_TRUE(b.mark_sold("o1"));
  EXPECT_TRUE(b.due(150).empty());
  EXPECT_EQ(b.sold(), 1);
}

TEST(StockBook, test_a_moved_expiry_is_due_at_its_new_time_only) {
  auto b = book_with(5, 5, 5);
  b.reserve(entry("o1", "u", 1, 100));
  EXPECT_TRUE(b.set_expiry("o1", 300));
  EXPECT_TRUE(b.due(150).empty());
  EXPECT_EQ(*b.next_expiry(), 300);
  EXPECT_EQ(b.due(300), std::vector<std::string>{"o1"});
  EXPECT_EQ(b.open_reservations(), 1u);
  EXPECT_TRUE(b.release("o1"));
  EXPECT_FALSE(b.set_expiry("o1", 400)); // only a reserved entry has an expiry
  EXPECT_FALSE(b.next_expiry());
}

// Random operations never break available + reserved + sold == stocked, the
// sale's cap or any user's limit.
TEST(StockBook, test_invariants_hold_under_random_operations) {
  std::mt19937 rng{42};
  auto b = book_with(100, 60, 3);
  std::vector<std::string> orders;
  for (int step = 0; step < 20000; ++step) {
    auto op = rng() % 10;
    if (op < 6) {
      auto user = "u" + std::to_string(rng() % 40);
      int64_t qty = 1 + rng() % 3;
      if (!b.check_purchase(*b.find_sale("s1"), user, qty, 100)) {
        auto id = "o" + std::to_string(step);
        b.reserve(entry(id, user, qty));
        orders.push_back(id);
      }
    } else if (!orders.empty()) {
      auto& id = orders[rng() % orders.size()];
      if (op < 8)
        b.release(id);
      else
        b.mark_sold(id);
    }
    ASSERT_EQ(b.available() + b.reserved() + b.sold(), 100);
    ASSERT_GE(b.available(), 0);
    ASSERT_LE(b.reserved() + b.sold(), 60);
    for (int u = 0; u < 40; ++u)
      ASSERT_LE(b.units_of("s1", "u" + std::to_string(u)), 3);
  }
}
