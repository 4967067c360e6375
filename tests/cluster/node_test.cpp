#include <gtest/gtest.h>

#include <sched.h>

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
