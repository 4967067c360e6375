#include <gtest/gtest.h>

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <thread>

#include "cluster/node.hpp"

// `--workers 0` sizes CAF's scheduler by the CPUs shopd may run on: pinned to
// a few CPUs of a big machine (taskset, a cpuset), it must not start a worker
// per CPU of the machine.
TEST(Node, test_usable_cores_follow_the_cpu_affinity_not_the_machine) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  EXPECT_EQ(shop::usable_cores(), static_cast<size_t>(CPU_COUNT(&all)));
  int first = 0;
  while (!CPU_ISSET(first, &all))
    ++first;
  size_t pinned = 0;
  std::thread t{[&] { // pins only this thread; the test's own stays as it is
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof(one), &one) == 0)
      pinned = shop::usable_cores();
  }};
  t.join();
  EXPECT_EQ(pinned, 1u);
}

// Storage's descriptors come first: whatever the limit, what the edge may hold
// (the connections it serves, the room to refuse in, at least 16 or 1/16 of
// them, as http_server does) plus storage's share and the spare fit in it.
TEST(Node, test_file_descriptors_go_to_storage_first_and_clients_get_the_rest) {
  for (uint64_t limit : {400ull, 1024ull, 4096ull, 20'000ull, 65'536ull, 524'288ull, 1ull << 20}) {
    auto plan = shop::divide_file_descriptors(limit);
    SCOPED_TRACE("limit " + std::to_string(limit));
    auto storage = static_cast<uint64_t>(plan.storage_open_files) + 128;
    EXPECT_GE(storage, 256u);
    EXPECT_LE(storage, 16'384u);
    EXPECT_GT(plan.connections, 0u);
    auto refusing = std::max<uint64_t>(16, plan.connections / 16);
    EXPECT_LE(plan.connections + refusing + storage + 32, limit);
  }
  // A login shell's 1,024: a few hundred clients at most, RocksDB's files safe.
  auto shell = shop::divide_file_descriptors(1024);
  EXPECT_EQ(shell.storage_open_files, 128);
  EXPECT_EQ(shell.connections, 677u);
  // Too few for a node at all: no connections, and shopd refuses to start.
  EXPECT_EQ(shop::divide_file_descriptors(256).connections, 0u);
}

// A login shell's soft limit (1,024) is not the limit a node runs with: it
// raises its soft limit to the hard one.
TEST(Node, test_the_soft_open_file_limit_is_raised_to_the_hard_one) {
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  if (before.rlim_max != RLIM_INFINITY && before.rlim_max < 2048)
    GTEST_SKIP() << "the hard limit (" << before.rlim_max << ") leaves nothing to raise";
  rlimit low = before;
  low.rlim_cur = 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto plan = shop::plan_file_descriptors();
  rlimit after{};
  ::getrlimit(RLIMIT_NOFILE, &after);
  ::setrlimit(RLIMIT_NOFILE, &before); // this test's process, as it was
  EXPECT_EQ(plan.found, 1024u);
  EXPECT_GT(plan.limit, 1024u);
  EXPECT_EQ(plan.limit, static_cast<uint64_t>(after.rlim_cur));
  EXPECT_EQ(after.rlim_cur, std::min<rlim_t>(before.rlim_max, 1u << 20));
  EXPECT_EQ(plan.connections,
            shop::divide_file_descriptors(std::min<uint64_t>(plan.limit, 1u << 20)).connections);
}
