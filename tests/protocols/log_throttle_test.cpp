// One warning line per interval, with the count of the lines held back.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "protocols/log_throttle.hpp"

using namespace shop;
using namespace std::chrono_literals;

TEST(LogThrottle, test_one_line_per_interval_says_how_many_it_held_back) {
  log_throttle throttle{1s};
  auto t0 = log_throttle::clock::now();
  uint64_t held = 99;
  ASSERT_TRUE(throttle.allow(held, t0)); // the first line goes out at once
  EXPECT_EQ(held, 0u);
  EXPECT_FALSE(throttle.allow(held, t0 + 100ms));
  EXPECT_FALSE(throttle.allow(held, t0 + 999ms));
  ASSERT_TRUE(throttle.allow(held, t0 + 1s));
  EXPECT_EQ(held, 2u);
  EXPECT_FALSE(throttle.allow(held, t0 + 1500ms));
  ASSERT_TRUE(throttle.allow(held, t0 + 5s)); // counted from the last line, not the first
  EXPECT_EQ(held, 1u);
  ASSERT_TRUE(throttle.allow(held, t0 + 7s));
  EXPECT_EQ(held, 0u);
}

TEST(LogThrottle, test_threads_that_warn_at_once_get_one_line_and_every_other_is_counted) {
  log_throttle throttle{1h};
  auto t0 = log_throttle::clock::now();
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        uint64_t held = 0;
        if (throttle.allow(held, t0))
          ++allowed;
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(allowed.load(), 1);
  uint64_t held = 0;
  ASSERT_TRUE(throttle.allow(held, t0 + 1h));
  EXPECT_EQ(held, 3999u);
}
