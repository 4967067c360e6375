// hasher_pool admission: it lends hashers only while the work already lent
// would be done within its queue budget; the hasher skips requests whose
// sender gave up.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include <caf/all.hpp>

#include "actors/entities.hpp"
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

namespace {

int64_t steady_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

} // namespace

// A request whose sender gave up (its timeout passed while it waited in the
// hasher's queue, as in a login storm) is answered without a hash: the
// hashers spend their time on requests someone still waits for.
TEST(PasswordHasher, test_a_request_its_sender_gave_up_on_is_not_hashed) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto pool = std::make_shared<hasher_pool>(1000ms);
  auto hasher =
    sys.spawn<caf::detached>(password_hasher, 10, std::weak_ptr<hasher_pool>{pool});
  caf::scoped_actor self{sys};
  auto later = [] { return steady_ns(std::chrono::steady_clock::now() + 10s); };
  std::string hash;
  self->request(hasher, 10s, hash_atom::value, std::string{"correct horse"}, later())
    .receive([&](std::string& h) { hash = std::move(h); },
             [&](caf::error& e) { ADD_FAILURE() << describe(e).message; });
  ASSERT_FALSE(hash.empty());

  caf::error refused;
  auto gave_up = steady_ns(std::chrono::steady_clock::now() - 1ms);
  self->request(hasher, 10s, verify_atom::value, hash, std::string{"correct horse"}, gave_up)
    .receive([&](bool) { ADD_FAILURE() << "checked for a sender that gave up"; },
             [&](caf::error& e) { refused = std::move(e); });
  ASSERT_TRUE(refused);
  EXPECT_EQ(describe(refused).code, errc::unavailable);

  // A sender still waiting gets its check.
  bool ok = false;
  self->request(hasher, 10s, verify_atom::value, hash, std::string{"correct horse"}, later())
    .receive([&](bool matched) { ok = matched; },
             [&](caf::error& e) { ADD_FAILURE() << describe(e).message; });
  EXPECT_TRUE(ok);
  caf::anon_send_exit(hasher, caf::exit_reason::user_shutdown);
}
