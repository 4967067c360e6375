#include <gtest/gtest.h>

#include "edge/rate_limiter.hpp"

using namespace shop::edge;
using namespace std::chrono_literals;

namespace {

const rate_limiter::clock::time_point t0{std::chrono::hours{1}};

} // namespace

TEST(RateLimiter, test_a_key_gets_its_burst_then_waits_for_the_rate) {
  rate_limiter limiter{{2, 3}}; // 2 a second, 3 at once
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(limiter.take("alice", t0), 0ms) << i;
  // Empty: the next token comes in half a second.
  EXPECT_EQ(limiter.take("alice", t0), 500ms);
  EXPECT_EQ(limiter.take("alice", t0 + 100ms), 400ms); // a refusal takes nothing
  EXPECT_EQ(limiter.take("alice", t0 + 500ms), 0ms);
  EXPECT_EQ(limiter.take("alice", t0 + 500ms), 500ms);
  // Others have buckets of their own.
  EXPECT_EQ(limiter.take("bob", t0 + 500ms), 0ms);
  // A long pause refills the bucket to its burst, no further.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(limiter.take("alice", t0 + 1h), 0ms) << i;
  EXPECT_GT(limiter.take("alice", t0 + 1h), 0ms);
}

// The edge's bridges take from the users' limit in the order they run: a
// request that arrived earlier may come after a later one.
TEST(RateLimiter, test_a_request_taken_late_does_not_turn_the_bucket_back) {
  rate_limiter limiter{{1, 1}}; // 1 a second, 1 at once
  EXPECT_EQ(limiter.take("k", t0), 0ms);
  EXPECT_EQ(limiter.take("k", t0 + 1s), 0ms);
  EXPECT_GT(limiter.take("k", t0 + 200ms), 0ms); // arrived before the last one
  // 200 ms after the last token was taken: 0.2 of a token, not 1.
  EXPECT_EQ(limiter.take("k", t0 + 1200ms), 800ms);
  EXPECT_EQ(limiter.take("k", t0 + 2s), 0ms);
}

TEST(RateLimiter, test_the_average_rate_holds_over_time) {
  rate_limiter limiter{{10, 1}};
  int granted = 0;
  for (int ms = 0; ms < 10'000; ++ms) // a request every millisecond for 10 s
    granted += limiter.take("k", t0 + std::chrono::milliseconds{ms}).count() == 0 ? 1 : 0;
  EXPECT_GE(granted, 99);
  EXPECT_LE(granted, 101);
}

TEST(RateLimiter, test_a_limit_of_zero_is_off) {
  rate_limiter limiter{{0, 1}};
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(limiter.take("k", t0), 0ms);
  EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(RateLimiter, test_full_buckets_are_forgotten_and_memory_is_bounded) {
  rate_limiter limiter{{1, 2}, 3}; // refills in 2 s; at most 3 keys tracked
  EXPECT_EQ(limiter.take("a", t0), 0ms);
  EXPECT_EQ(limiter.take("b", t0), 0ms);
  EXPECT_EQ(limiter.take("c", t0), 0ms);
  EXPECT_EQ(limiter.tracked(), 3u);
  // A fourth key while three are tracked: let through, not tracked.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(limiter.take("d", t0 + 10ms), 0ms);
  EXPECT_EQ(limiter.untracked(), 5u);
  EXPECT_EQ(limiter.tracked(), 3u);
  // Once their buckets have refilled, sweeping (a little on every call)
  // forgets them, and "d" is tracked, and limited, again.
  for (int i = 0; i < 100; ++i)
    limiter.take("d", t0 + 3s);
  EXPECT_EQ(limiter.tracked(), 1u);
  EXPECT_GT(limiter.take("d", t0 + 3s), 0ms);
}

TEST(RateLimiter, test_clients_are_keyed_by_ipv4_address_or_ipv6_64_prefix) {
  EXPECT_EQ(client_key("203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(client_key("::ffff:203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(client_key("2001:db8:1:2:aaaa::1"), "2001:0db8:0001:0002::/64");
  EXPECT_EQ(client_key("2001:db8:1:2:bbbb::9"), client_key("2001:db8:1:2::1"));
  EXPECT_NE(client_key("2001:db8:1:3::1"), client_key("2001:db8:1:2::1"));
  EXPECT_EQ(client_key("::1"), "0000:0000:0000:0000::/64");
  EXPECT_EQ(client_key(""), "");
}

TEST(RateLimiter, test_the_wait_is_at_most_a_day_whatever_the_rate) {
  rate_limiter limiter{{1e-12, 1}};
  EXPECT_EQ(limiter.take("k", t0), 0ms);
  EXPECT_EQ(limiter.take("k", t0), std::chrono::milliseconds{86'400'000});
}
