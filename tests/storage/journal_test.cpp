#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "storage/journal.hpp"
#include "storage/keys.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop;

TEST(Keys, test_an_entitys_keys_share_its_shard_prefix) {
  auto k = keys::entity(keys::product, "phone-1", 64);
  auto l = keys::child(keys::ledger, "phone-1", "order1", 64);
  auto shard = keys::shard_of("phone-1", 64);
  EXPECT_EQ(k.rfind(keys::shard_prefix(keys::product, shard), 0), 0u);
  EXPECT_EQ(l.rfind(keys::shard_prefix(keys::ledger, shard), 0), 0u);
  EXPECT_EQ(l.rfind(keys::children_prefix(keys::ledger, "phone-1", 64), 0), 0u);
  // The hash is part of the storage format: it must never change.
  EXPECT_EQ(keys::stable_hash("phone-1"), keys::stable_hash(std::string{"phone-1"}));
  EXPECT_EQ(keys::stable_hash(""), 14695981039346656037ull);
  // So is the key layout: kind, four hex digits of shard, id.
  EXPECT_EQ(keys::shard_prefix(keys::order, 0xbeef), "ord/beef/");
  EXPECT_EQ(keys::entity(keys::order, "o1", 1), "ord/0000/o1");
}

TEST(Store, test_scan_stops_at_the_prefix_boundary) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  ASSERT_FALSE((*db)->write({put_op("led/0001/a/1", "x"), put_op("led/0001/a/2", "y"),
                             put_op("led/0001/ab/1", "z"), put_op("led/0001/b/1", "w")},
                            true));
  std::vector<std::string> seen;
  ASSERT_FALSE((*db)->scan("led/0001/a/", [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
    return true;
  }));
  EXPECT_EQ(seen, (std::vector<std::string>{"led/0001/a/1", "led/0001/a/2"}));
}

TEST(Journal, test_concurrent_submissions_are_grouped_and_all_durable) {
  test::temp_dir dir;
  constexpr int threads = 8, per_thread = 200;
  {
    auto db = store::open({dir.path()});
    ASSERT_TRUE(db);
    journal j{*db, durability::sync};
    std::atomic<int> ok{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i)
          j.submit({put_op("k/" + std::to_string(t) + "/" + std::to_string(i), "v")},
                   [&](bool success) { ok += success ? 1 : 0; });
      });
    for (auto& t : pool)
      t.join();
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    j.barrier([&](bool) {
      std::lock_guard<std::mutex> g{m};
      done = true;
      cv.notify_one();
    });
    std::unique_lock<std::mutex> g{m};
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds{30}, [&] { return done; }));
    EXPECT_EQ(ok.load(), threads * per_thread); // the barrier ran after every earlier batch
    EXPECT_EQ(j.batches(), static_cast<uint64_t>(threads * per_thread));
    EXPECT_LT(j.groups(), j.batches()); // group commit: fewer syncs than batches
  }
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  int found = 0;
  ASSERT_FALSE((*db)->scan("k/", [&](std::string_view, std::string_view) {
    ++found;
    return true;
  }));
  EXPECT_EQ(found, threads * per_thread);
}

TEST(Journal, test_submissions_after_stop_fail_instead_of_hanging) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  journal j{*db, durability::async};
  j.stop();
  bool called = false, result = true;
  j.submit({put_op("a", "b")}, [&](bool ok) {
    called = true;
    result = ok;
  });
  EXPECT_TRUE(called);
  EXPECT_FALSE(result);
}
