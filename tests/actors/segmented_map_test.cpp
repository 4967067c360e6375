// segmented_map: the same answers as std::unordered_map before, during and
// after its split into segments, and segments that stay balanced, so no
// single rehash has to move more than a small share of a big map.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <string>

#include "actors/segmented_map.hpp"

using shop::segmented_map;

namespace {

template <class Map>
void expect_same(const Map& m, const std::map<std::string, int>& ref) {
  ASSERT_EQ(m.size(), ref.size());
  for (auto& [k, v] : ref) {
    auto found = m.find(k);
    ASSERT_NE(found, nullptr) << k;
    ASSERT_EQ(*found, v) << k;
  }
  std::map<std::string, int> seen;
  m.for_each([&](const std::string& k, int v) { EXPECT_TRUE(seen.emplace(k, v).second) << k; });
  EXPECT_EQ(seen, ref);
}

} // namespace

TEST(SegmentedMap, test_answers_as_a_map_does_across_its_split) {
  segmented_map<std::string, int, std::hash<std::string>, 8, 64> m; // splits at 64
  std::map<std::string, int> ref;
  std::mt19937 rng{42};
  for (int round = 0; round < 20'000; ++round) {
    auto key = "k" + std::to_string(rng() % 500);
    switch (rng() % 4) {
      case 0:
      case 1:
        m[key] += round;
        ref[key] += round;
        break;
      case 2:
        if (rng() % 2 == 0) {
          EXPECT_EQ(m.erase(key), ref.erase(key) == 1) << key;
        } else if (auto taken = m.take(key)) {
          EXPECT_EQ(*taken, ref.at(key)) << key;
          ref.erase(key);
        } else {
          EXPECT_EQ(ref.count(key), 0u) << key;
        }
        break;
      default:
        if (auto found = m.find(key)) {
          EXPECT_EQ(*found, ref.at(key)) << key;
        } else {
          EXPECT_EQ(ref.count(key), 0u) << key;
        }
    }
    if (round % 1000 == 0) {
      ASSERT_NO_FATAL_FAILURE(expect_same(m, ref));
    }
  }
  EXPECT_TRUE(m.is_split());
  ASSERT_NO_FATAL_FAILURE(expect_same(m, ref));
  EXPECT_EQ(m.find("absent"), nullptr);
  EXPECT_FALSE(m.erase("absent"));
  EXPECT_FALSE(m.take("absent"));
  m.clear();
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(m.is_split());
  EXPECT_EQ(m.find("k1"), nullptr);
}

TEST(SegmentedMap, test_a_big_map_spreads_evenly_over_its_segments) {
  // Order ids as the stock ledger keys them (new_order_id): 12 hex digits of
  // time, shared by the ids of one millisecond, then 24 random ones.
  segmented_map<std::string, int> m;
  std::mt19937_64 rng{7};
  constexpr size_t n = 200'000;
  constexpr unsigned long long start_ms = 1'790'000'000'000;
  char id[37];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(id, sizeof(id), "%012llx%016llx%08llx", start_ms + i / 50,
                  static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng() & 0xffffffff));
    m[id] = static_cast<int>(i);
  }
  EXPECT_EQ(m.size(), n);
  EXPECT_TRUE(m.is_split());
  // Even spread: the largest segment within 1.5x of the mean. A rehash then
  // moves at most ~1/170 of the map instead of all of it.
  EXPECT_LT(m.largest_segment(), n / decltype(m)::segments * 3 / 2);
  EXPECT_GT(m.largest_segment(), 0u);
}

// Callers keep a reference to a value across later inserts (the region's
// entity entries): the split moves nodes, not values.
TEST(SegmentedMap, test_references_stay_valid_across_growth_and_the_split) {
  segmented_map<std::string, int, std::hash<std::string>, 8, 64> m;
  int& first = m["first"];
  first = 7;
  for (int i = 0; i < 1000; ++i)
    m["k" + std::to_string(i)] = i;
  ASSERT_TRUE(m.is_split());
  EXPECT_EQ(&first, m.find("first"));
  EXPECT_EQ(first, 7);
}

// std::hash of an integer (and of a caf::actor_addr: its id) is the identity;
// sequential keys still spread over every segment.
TEST(SegmentedMap, test_sequential_integer_keys_spread_evenly_too) {
  segmented_map<uint64_t, int> m;
  constexpr size_t n = 100'000;
  for (uint64_t i = 1; i <= n; ++i)
    m[i] = 1;
  EXPECT_EQ(m.size(), n);
  EXPECT_LT(m.largest_segment(), n / decltype(m)::segments * 3 / 2);
}

TEST(SegmentedMap, test_a_small_map_stays_one_segment) {
  segmented_map<std::string, int> m;
  for (int i = 0; i < 1000; ++i)
    m["user" + std::to_string(i)] = i;
  EXPECT_FALSE(m.is_split());
  EXPECT_EQ(m.largest_segment(), 1000u);
}
