// hasher_pool admission: it lends hashers only while the work already lent
// would be done within its queue budget.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "actors/entity.hpp"
#include "protocols/errc.hpp"

using namespace shop;
using namespace std::chrono_literals;

TEST(HasherPool, test_lends_while_the_backlog_fits_the_budget_and_refuses_beyond) {
  auto pool = std::make_shared<hasher_pool>(1000ms);
  pool->add(caf::actor{});
  pool->add(caf::actor{});
  std::vector<hasher_pool::loan> loans;
  // No hash time known yet (none finished since the start): one
  // request per hasher, not a storm queued on a guess of zero.
  for (int i = 0; i < 2; ++i) {
    auto loan = pool->lend();
    ASSERT_TRUE(loan) << i;
    loans.push_back(*loan);
  }
  EXPECT_FALSE(pool->lend());
  loans.clear();
  EXPECT_EQ(pool->lent(), 0u); // a loan ends with its last copy
  pool->observe(250ms); // two hashers finish 8 hashes of 250 ms within 1 s
  for (int i = 0; i < 8; ++i) {
    auto loan = pool->lend();
    ASSERT_TRUE(loan) << i;
    loans.push_back(*loan);
  }
  auto refused = pool->lend();
  ASSERT_FALSE(refused);
  EXPECT_EQ(describe(refused.error()).code, errc::unavailable);
  loans.pop_back(); // one answered: room for one more
  EXPECT_TRUE(pool->lend());
  pool->close();
  EXPECT_FALSE(pool->lend());
}

TEST(HasherPool, test_each_hasher_takes_one_request_however_slow_it_is) {
  auto pool = std::make_shared<hasher_pool>(1000ms);
  pool->add(caf::actor{});
  pool->add(caf::actor{});
  pool->observe(10s);
  auto first = pool->lend(), second = pool->lend();
  EXPECT_TRUE(first);
  EXPECT_TRUE(second);
  EXPECT_FALSE(pool->lend());
}
