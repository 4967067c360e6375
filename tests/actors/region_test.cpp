// The shard region with real RocksDB and the real journal, in process:
// supervision, passivation and persist-then-reply.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include <caf/all.hpp>

#include "actors/entities.hpp"
#include "protocols/record_codec.hpp"
#include "storage/keys.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop;
using namespace std::chrono_literals;

namespace {

struct test_config : caf::actor_system_config {
  test_config() {
    register_shop_types(*this);
    set("scheduler.max-threads", 2);
  }
};

/// A checkout of everything in `user`'s cart.
checkout from_cart_of(const std::string& user) {
  checkout c;
  c.user_id = user;
  c.from_cart = true;
  return c;
}

class RegionTest : public ::testing::Test {
protected:
  void start(std::chrono::milliseconds passivate_after = 120s,
             std::chrono::milliseconds ask_timeout = 5s) {
    auto db = store::open({dir.path()});
    ASSERT_TRUE(db);
    db_ = *db;
    journal_ = std::make_shared<journal>(db_, durability::sync);
    entity_context ctx;
    ctx.db = db_;
    ctx.journal = journal_;
    ctx.order_secret = "test-secret";
    ctx.passivate_after = passivate_after;
    ctx.ask_timeout = ask_timeout;
    ctx.crash_settle_timeout = crash_settle_timeout;
    ctx.crash_memory = crash_memory;
    ctx.follow_up_wait = follow_up_wait;
    ctx.metrics = metrics;
    ctx.hashers = hashers;
    ctx.hashers->add(
      sys->spawn<caf::detached>(password_hasher, 3, std::weak_ptr<hasher_pool>{hashers}));
    region = spawn_region(*sys, std::move(ctx));
  }

  void TearDown() override {
    caf::anon_send_exit(region, caf::exit_reason::user_shutdown);
    for (auto& h : hashers->close())
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    self_holder.reset();
  }

  template <class Reply, class Command>
  caf::expected<Reply> ask(Command cmd) {
    caf::expected<Reply> out{caf::sec::request_timeout};
    self->request(region, 5s, std::move(cmd))
      .receive([&](Reply& r) { out = std::move(r); }, [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  /// ask(), again while the answer is 503 (at most 1 s): a request that
  /// reaches a crashed activation before the region saw it stop gets 503,
  /// and a client retries it.
  template <class Reply, class Command>
  caf::expected<Reply> ask_retrying(Command cmd) {
    auto out = ask<Reply>(cmd);
    for (int retries = 0; !out && describe(out.error()).code == errc::unavailable && retries < 50;
         ++retries) {
      std::this_thread::sleep_for(20ms);
      out = ask<Reply>(cmd);
    }
    return out;
  }

  /// Sends `cmd` from a client of its own and returns once it is sent (so it
  /// reaches the region before anything sent after); the answer comes in the
  /// future (an error after 10 s without one).
  template <class Reply, class Command>
  std::future<caf::expected<Reply>> ask_async(Command cmd) {
    auto sent = std::make_shared<std::promise<void>>();
    auto answer = std::async(std::launch::async, [this, sent, cmd = std::move(cmd)] {
      caf::scoped_actor client{*sys};
      caf::expected<Reply> out{caf::sec::request_timeout};
      auto pending = client->request(region, 10s, cmd);
      sent->set_value();
      pending.receive([&](Reply& r) { out = std::move(r); },
                      [&](caf::error& e) { out = std::move(e); });
      return out;
    });
    sent->get_future().wait();
    return answer;
  }

  /// The inventory of `sku` once its `reserved` is `units` (asked again for up
  /// to 10 s, also while the SKU restarts), else the last answer.
  caf::expected<inventory_view> inventory_once_reserved(const std::string& sku, int64_t units) {
    caf::expected<inventory_view> inv{caf::sec::request_timeout};
    test::eventually(10s, [&] {
      inv = ask_retrying<inventory_view>(get_inventory{sku});
      return inv && inv->reserved == units;
    });
    return inv;
  }

  /// Crashes `kind`/`id` once and waits (up to 3 s) until the region saw it
  /// go; false if it did not crash (its commands were refused: quarantined).
  bool crash_once(entity_kind kind, const std::string& id) {
    auto before = metrics->crashes.load();
    self->send(region, crash_entity{kind, id});
    auto deadline = std::chrono::steady_clock::now() + 3s;
    while (metrics->crashes.load() == before && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    return metrics->crashes.load() > before;
  }

  /// Products "a" and "b" (10 in stock each), then order "o1" of `lines`
  /// being placed for "u1" with B's reservation held 2 s by a stalled disk
  /// (A's waits behind it or with it): returns the placement's answer to
  /// come, once the placement is under way (still reserving).
  std::future<caf::expected<purchase_result>>
  place_while_b_is_held(std::vector<order_line> lines) {
    EXPECT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
    EXPECT_TRUE((ask<product_view>(create_product{{"b", "B", "", 100, 10}, {}, {}})));
    const auto shards = entity_context{}.shard_count;
    journal_->stall_group_writing(keys::child(keys::ledger, "b", "o1", shards), 2s);
    checkout order;
    order.user_id = "u1";
    order.items = std::move(lines);
    auto placed = ask_async<purchase_result>(place_order{"o1", order});
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(placed.wait_for(0s), std::future_status::timeout); // still reserving
    return placed;
  }

  /// Order "o1" placed from the cart of "u1" (2 of product "a", 10 in
  /// stock), then what a crash between the order's write and the cart's
  /// leaves: the cart stored as it was before the order (`cart_before`),
  /// its entity started again from that.
  void place_from_the_cart_and_lose_the_clear(std::string& cart_before) {
    ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
    ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
    const auto cart_key = keys::entity(keys::cart, "u1", entity_context{}.shard_count);
    ASSERT_TRUE(*db_->get(cart_key, cart_before));
    ASSERT_TRUE((ask<purchase_result>(place_order{"o1", from_cart_of("u1")})));
    ASSERT_FALSE(db_->write({put_op(cart_key, cart_before)}, true));
    ASSERT_TRUE(crash_once(entity_kind::cart, "u1"));
  }

  /// Places `order_id` from the cart of "u1" (which holds product "a"), with
  /// the disk holding the order's write for `stall`, and crashes the order's
  /// entity while it is held; `then_fail`: that write fails once the disk lets
  /// it go. The placement must be answered 503 "may still be stored" (call with
  /// a short crash_settle_timeout, so that the answer comes before the write
  /// is done).
  void place_from_the_cart_and_crash_while_the_order_is_written(const std::string& order_id,
                                                                std::chrono::milliseconds stall,
                                                                bool then_fail) {
    const auto shards = entity_context{}.shard_count;
    journal_->stall_group_writing(keys::entity(keys::order, order_id, shards), stall);
    auto placed = ask_async<purchase_result>(place_order{order_id, from_cart_of("u1")});
    // The reservation is stored; the order's write follows it at once.
    std::string reserved;
    const auto ledger_key = keys::child(keys::ledger, "a", order_id, shards);
    EXPECT_TRUE(test::eventually(5s, [&] { return *db_->get(ledger_key, reserved); }));
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(placed.wait_for(0s), std::future_status::timeout); // the order's write is held
    EXPECT_TRUE(crash_once(entity_kind::order, order_id));
    if (then_fail)
      journal_->fail_next_groups(1); // (armed while the disk still holds the order's group)
    auto answer = placed.get();
    ASSERT_FALSE(answer);
    EXPECT_NE(describe(answer.error()).message.find("may still be stored"), std::string::npos)
      << describe(answer.error()).message;
  }

  std::chrono::milliseconds crash_settle_timeout = 30s;
  std::chrono::milliseconds crash_memory = 600s;
  std::chrono::milliseconds follow_up_wait = 1s;
  test::temp_dir dir;
  std::shared_ptr<entity_metrics> metrics = std::make_shared<entity_metrics>();
  std::shared_ptr<hasher_pool> hashers = std::make_shared<hasher_pool>();
  test_config cfg;
  std::unique_ptr<caf::actor_system> sys = std::make_unique<caf::actor_system>(cfg);
  std::unique_ptr<caf::scoped_actor> self_holder = std::make_unique<caf::scoped_actor>(*sys);
  caf::scoped_actor& self = *self_holder;
  store_ptr db_;
  std::shared_ptr<journal> journal_;
  caf::actor region;
};

} // namespace

TEST_F(RegionTest, test_a_crashed_entity_restarts_from_durable_state) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"p1", "One", "", 100, 50}, {}, {}})));
  ASSERT_TRUE((ask<product_view>(create_product{{"p2", "Two", "", 100, 7}, {}, {}})));
  ASSERT_TRUE((ask<inventory_view>(restock{"p1", 25, {}, {}})));
  // Many requests in flight, then a crash in the middle of them.
  int answered = 0, failed = 0;
  for (int i = 0; i < 200; ++i) {
    if (i == 100)
      self->send(region, crash_entity{entity_kind::sku, "p1"});
    self->request(region, 5s, get_inventory{"p1"})
      .receive([&](inventory_view& v) {
        ++answered;
        EXPECT_EQ(v.available, 75);
      },
               [&](caf::error& e) {
                 ++failed;
                 EXPECT_EQ(describe(e).code, errc::unavailable);
               });
    // The other entity is not affected.
    auto other = ask<inventory_view>(get_inventory{"p2"});
    ASSERT_TRUE(other);
    EXPECT_EQ(other->available, 7);
  }
  EXPECT_EQ(answered + failed, 200); // none hangs
  auto after = ask<inventory_view>(get_inventory{"p1"});
  ASSERT_TRUE(after);
  EXPECT_EQ(after->available, 75); // the restock survived the crash
  EXPECT_EQ(metrics->crashes.load(), 1u);
  EXPECT_EQ(metrics->restarts.load(), 1u);
}

TEST_F(RegionTest, test_requests_held_for_a_commit_get_their_real_outcome_when_the_entity_crashes) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"p1", "One", "", 100, 50}, {}, {}})));
  // Writers on several threads and a crash among them: every request is
  // answered, and the answer is the truth: acknowledged changes are stored,
  // failed ones are not.
  constexpr int threads = 8, per_thread = 25;
  std::atomic<int> acked{0}, answered{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      caf::scoped_actor client{*sys};
      for (int i = 0; i < per_thread; ++i)
        client->request(region, 5s, restock{"p1", 1, {}, {}})
          .receive([&](inventory_view&) { ++acked; ++answered; },
                   [&](caf::error&) { ++answered; });
    });
  std::this_thread::sleep_for(5ms);
  self->send(region, crash_entity{entity_kind::sku, "p1"});
  for (auto& t : pool)
    t.join();
  EXPECT_EQ(answered.load(), threads * per_thread);
  auto after = ask_retrying<inventory_view>(get_inventory{"p1"});
  ASSERT_TRUE(after) << describe(after.error()).message;
  EXPECT_EQ(after->available, 50 + acked.load());
  EXPECT_EQ(metrics->crashes.load(), 1u);
}

TEST_F(RegionTest, test_a_change_still_being_written_when_its_entity_crashes_is_answered_as_maybe_stored) {
  crash_settle_timeout = 200ms;
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"p1", "One", "", 100, 50}, {}, {}})));
  // The disk stalls with the restock's batch in the group being written, and
  // the SKU crashes meanwhile. It may not wait longer for storage, and must
  // not say "not stored" of a change that the journal may still store.
  journal_->stall_next_group(3s);
  auto pending = self->request(region, 10s, restock{"p1", 5, {}, {}});
  self->send(region, crash_entity{entity_kind::sku, "p1"});
  auto started = std::chrono::steady_clock::now();
  caf::error err;
  pending.receive([&](inventory_view&) { ADD_FAILURE() << "answered before the write"; },
                  [&](caf::error& e) { err = std::move(e); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2500ms); // not held for the stall
  ASSERT_TRUE(err);
  EXPECT_EQ(describe(err).code, errc::unavailable);
  EXPECT_NE(describe(err).message.find("may still be stored"), std::string::npos)
    << describe(err).message;
  // The stall ends and the change is stored; the restarted SKU shows it.
  auto after = ask_retrying<inventory_view>(get_inventory{"p1"});
  ASSERT_TRUE(after) << describe(after.error()).message;
  EXPECT_EQ(after->available, 55);
  EXPECT_EQ(metrics->crashes.load(), 1u);
}

TEST_F(RegionTest, test_a_keyed_restock_retried_while_its_batch_is_written_adds_its_units_once) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"p1", "One", "", 100, 50}, {}, {}})));
  // The disk holds the first attempt's batch, so storage has no receipt yet
  // when the retries queued behind it arrive: they find it in memory.
  journal_->stall_next_group(500ms);
  auto first = self->request(region, 10s, restock{"p1", 5, "delivery-1", "admin-1"});
  auto retry = self->request(region, 10s, restock{"p1", 5, "delivery-1", "admin-1"});
  auto other = self->request(region, 10s, restock{"p1", 6, "delivery-1", "admin-1"});
  std::vector<int64_t> available;
  auto keep = [&](inventory_view& v) { available.push_back(v.available); };
  auto fail = [&](caf::error& e) { ADD_FAILURE() << describe(e).message; };
  first.receive(keep, fail);
  retry.receive(keep, fail);
  caf::error err;
  other.receive([&](inventory_view&) { ADD_FAILURE() << "the key added units twice"; },
                [&](caf::error& e) { err = std::move(e); });
  EXPECT_EQ(available, (std::vector<int64_t>{55, 55}));
  EXPECT_EQ(describe(err).code, errc::conflict);
  // The same key from another admin is another restock.
  auto v = ask<inventory_view>(restock{"p1", 5, "delivery-1", "admin-2"});
  ASSERT_TRUE(v);
  EXPECT_EQ(v->available, 60);
  v = ask<inventory_view>(get_inventory{"p1"});
  ASSERT_TRUE(v);
  EXPECT_EQ(v->available, 60);
}

TEST_F(RegionTest, test_idle_entities_passivate_and_come_back_intact) {
  start(300ms);
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE((ask<product_view>(
      create_product{{"p" + std::to_string(i), "Item", "", 100, static_cast<int64_t>(i)}, {}, {}})));
  // (Not `active`: with slow fsyncs the first ones may be idle long enough
  // to have gone already.)
  EXPECT_GE(metrics->activations.load(), 20u);
  EXPECT_TRUE(test::eventually(10s, [&] { return metrics->active.load() == 0; }))
    << metrics->active.load() << " entities still active";
  EXPECT_GE(metrics->passivations.load(), 20u);
  for (int i = 0; i < 20; ++i) {
    auto v = ask<inventory_view>(get_inventory{"p" + std::to_string(i)});
    ASSERT_TRUE(v);
    EXPECT_EQ(v->available, i);
  }
}

// An entity asks the region to passivate it with a timeout. If the region
// is so far behind that the grant comes after the timeout, the region has
// forgotten the activation while the entity lives on: its next ask must
// still let it go, or it stays alive, unreachable, for good.
TEST_F(RegionTest, test_an_entity_whose_passivation_was_granted_late_still_stops) {
  start(300ms, 2ms);
  // Every actor but the SKUs: the region, its catalog, the hasher, ...
  // counted right after the first SKU is made, which cannot have passivated
  // yet (later ones may have by the end of the loop, with slow fsyncs).
  size_t baseline = 0;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE((ask<product_view>(
      create_product{{"p" + std::to_string(i), "Item", "", 100, static_cast<int64_t>(i)}, {}, {}})));
    if (i == 0)
      baseline = sys->registry().running() - 1;
  }
  // Keep the region's mailbox far behind while the entities ask (every 250 ms
  // once idle), so their asks time out before the region grants them.
  auto flood_until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < flood_until) {
    for (int i = 0; i < 20'000; ++i)
      caf::anon_send(region, stats_atom::value);
    std::this_thread::sleep_for(20ms);
  }
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (sys->registry().running() > baseline && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(sys->registry().running(), baseline);
  EXPECT_EQ(metrics->active.load(), 0);
  EXPECT_GE(metrics->passivations.load(), 20u);
  for (int i = 0; i < 20; ++i) { // and they come back intact
    auto v = ask<inventory_view>(get_inventory{"p" + std::to_string(i)});
    ASSERT_TRUE(v);
    EXPECT_EQ(v->available, i);
  }
}

TEST_F(RegionTest, test_an_entity_that_keeps_crashing_is_quarantined_then_restarted) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"p1", "One", "", 100, 5}, {}, {}})));
  ASSERT_TRUE((ask<product_view>(create_product{{"p2", "Two", "", 100, 6}, {}, {}})));
  // Six crashes in quick succession exceed the budget (5 in 10 s).
  for (int i = 0; i < 6; ++i) {
    self->send(region, crash_entity{entity_kind::sku, "p1"});
    // Wait until the region restarted it (or quarantined it) before the next crash.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (metrics->crashes.load() < static_cast<uint64_t>(i + 1)
           && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(metrics->crashes.load(), 6u);
  // Quarantined: fails fast with 503 instead of crash-looping.
  auto during = ask<inventory_view>(get_inventory{"p1"});
  ASSERT_FALSE(during);
  EXPECT_EQ(describe(during.error()).code, errc::unavailable);
  // Other entities are served meanwhile.
  auto other = ask<inventory_view>(get_inventory{"p2"});
  ASSERT_TRUE(other);
  EXPECT_EQ(other->available, 6);
  // After the backoff (1 s for a first quarantine) it is back, state intact.
  std::this_thread::sleep_for(1200ms);
  auto after = ask<inventory_view>(get_inventory{"p1"});
  ASSERT_TRUE(after) << caf::to_string(after.error());
  EXPECT_EQ(after->available, 5);
}

// What an order cannot get confirmed by a quarantined entity (its SKU's
// release after a cancel, its cart's clear after a checkout) holds up its
// answer no longer than follow_up_wait, and is counted for /metrics.
TEST_F(RegionTest, test_follow_ups_a_quarantined_entity_cannot_confirm_are_answered_and_counted) {
  follow_up_wait = 300ms;
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  const auto cart_key = keys::entity(keys::cart, "u1", entity_context{}.shard_count);
  std::string cart_before_the_order;
  ASSERT_TRUE(*db_->get(cart_key, cart_before_the_order));
  const auto from_cart = from_cart_of("u1");
  ASSERT_TRUE((ask<purchase_result>(place_order{"o1", from_cart})));
  checkout items;
  items.user_id = "u1";
  items.items = {{"a", 1, 0}};
  ASSERT_TRUE((ask<purchase_result>(place_order{"o2", items})));
  auto quarantine = [&](entity_kind kind, const std::string& id) {
    for (int i = 0; i < 6; ++i) // over the budget of 5 crashes in 10 s
      ASSERT_TRUE(crash_once(kind, id)) << i;
  };

  quarantine(entity_kind::sku, "a");
  auto cancelled = ask<order_record>(cancel_order{"o2", "u1", false});
  ASSERT_TRUE(cancelled) << describe(cancelled.error()).message;
  EXPECT_EQ(cancelled->status, order_status::cancelled);
  EXPECT_EQ(metrics->unconfirmed_releases.load(), 1u);
  EXPECT_EQ(metrics->unconfirmed_cart_clears.load(), 0u);

  // A crash lost the cart's clear, and the cart is quarantined when the
  // checkout is retried with its key.
  ASSERT_FALSE(db_->write({put_op(cart_key, cart_before_the_order)}, true));
  quarantine(entity_kind::cart, "u1");
  auto replayed = ask<purchase_result>(place_order{"o1", from_cart});
  ASSERT_TRUE(replayed) << describe(replayed.error()).message;
  EXPECT_TRUE(replayed->replayed);
  EXPECT_EQ(metrics->unconfirmed_cart_clears.load(), 1u);
}

// Each quarantine of an entity that keeps crashing is twice as long as the
// last; one that has stayed well for the region's crash memory is forgiven,
// and its next quarantine is the shortest again (not, weeks later, 30 s).
TEST_F(RegionTest, test_an_entity_that_stayed_well_is_forgiven_its_old_crashes) {
  crash_memory = 2s;
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"p1", "One", "", 100, 5}, {}, {}})));
  auto quarantined = [&] {
    auto r = ask<inventory_view>(get_inventory{"p1"});
    return !r && describe(r.error()).code == errc::unavailable;
  };
  // Six crashes: quarantined for 1 s.
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(crash_once(entity_kind::sku, "p1")) << i;
  EXPECT_TRUE(quarantined());
  std::this_thread::sleep_for(1200ms);
  ASSERT_FALSE(quarantined());
  // One more crash within the crash memory: over the budget still, and the
  // quarantine doubles to 2 s.
  ASSERT_TRUE(crash_once(entity_kind::sku, "p1"));
  auto second = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1200ms);
  EXPECT_TRUE(quarantined());
  std::this_thread::sleep_until(second + 2200ms);
  ASSERT_FALSE(quarantined());
  // Well for the crash memory (2 s since the last crash): a clean record. One
  // crash is restarted at once, and six quarantine it for 1 s, not 4.
  std::this_thread::sleep_until(second + 2500ms);
  ASSERT_TRUE(crash_once(entity_kind::sku, "p1"));
  auto r = ask_retrying<inventory_view>(get_inventory{"p1"});
  ASSERT_TRUE(r) << caf::to_string(r.error());
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(crash_once(entity_kind::sku, "p1")) << i;
  EXPECT_TRUE(quarantined());
  std::this_thread::sleep_for(1200ms);
  auto after = ask<inventory_view>(get_inventory{"p1"});
  ASSERT_TRUE(after) << caf::to_string(after.error());
  EXPECT_EQ(after->available, 5);
}

TEST_F(RegionTest, test_a_reservation_left_by_an_unfinished_placement_is_released_on_expiry) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<product_view>(create_product{{"b", "B", "", 250, 10}, {}, {}})));
  // A first placement of order "o1" reserved A and B, then its order entity
  // died before writing the order (simulated: the reservations alone).
  auto expires = now_millis() + 60'000;
  ASSERT_TRUE((ask<order_line>(reserve_stock{"a", "o1", "u1", 1, expires})));
  ASSERT_TRUE((ask<order_line>(reserve_stock{"b", "o1", "u1", 2, expires})));
  EXPECT_EQ(ask<inventory_view>(get_inventory{"b"})->reserved, 2);
  // Before the order exists, B's timer hears "expired": an orphan.
  EXPECT_EQ(ask<uint8_t>(expire_order{"o1", "b"}).value(),
            static_cast<uint8_t>(order_status::expired));
  // The retry asks for A only: it reuses A's reservation, with a new expiry.
  checkout retry;
  retry.user_id = "u1";
  retry.items = {{"a", 1, 0}};
  auto placed = ask<purchase_result>(place_order{"o1", retry});
  ASSERT_TRUE(placed) << to_string(placed.error());
  EXPECT_EQ(placed->order.items.size(), 1u);
  EXPECT_EQ(placed->order.total_cents, 100);
  EXPECT_EQ(ask<inventory_view>(get_inventory{"a"})->reserved, 1);
  // The order is pending and not yet due: A's timer must wait; B's
  // reservation is not the order's, so its timer releases it.
  EXPECT_EQ(ask<uint8_t>(expire_order{"o1", "a"}).value(),
            static_cast<uint8_t>(order_status::pending_payment));
  EXPECT_EQ(ask<uint8_t>(expire_order{"o1", "b"}).value(),
            static_cast<uint8_t>(order_status::expired));
  ASSERT_TRUE((ask<bool>(release_reservation{"b", "o1"})));
  EXPECT_EQ(ask<inventory_view>(get_inventory{"b"})->reserved, 0);
  EXPECT_EQ(ask<inventory_view>(get_inventory{"a"})->reserved, 1);
  // The same key with a different request is refused; the same one replays.
  checkout other = retry;
  other.items = {{"a", 2, 0}};
  EXPECT_FALSE((ask<purchase_result>(place_order{"o1", other})));
  auto again = ask<purchase_result>(place_order{"o1", retry});
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->order.order_id, "o1");
}

// A crash between an order's write and its cart's (a kill -9, or the entity
// failing) left the ordered lines in the cart, to be ordered a second time.
// The order takes them out again whenever it is asked for with its key or
// loaded from storage while unpaid; the cart gives up only lines not set
// since the order was placed, so the same line put in again stays.
TEST_F(RegionTest, test_an_order_from_the_cart_takes_its_lines_out_again_after_a_lost_clear) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<product_view>(create_product{{"b", "B", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  const auto cart_key = keys::entity(keys::cart, "u1", entity_context{}.shard_count);
  std::string cart_before_the_order;
  ASSERT_TRUE(*db_->get(cart_key, cart_before_the_order));
  const auto from_cart = from_cart_of("u1");
  auto placed = ask<purchase_result>(place_order{"o1", from_cart});
  ASSERT_TRUE(placed) << to_string(placed.error());
  auto lines_in_cart = [&] {
    auto v = ask<cart_view>(get_cart{"u1"});
    return v ? v->items.size() : size_t{999};
  };
  EXPECT_EQ(lines_in_cart(), 0u);
  auto crash = [&](entity_kind kind, const std::string& id) {
    auto before = metrics->crashes.load();
    self->send(region, crash_entity{kind, id});
    for (int i = 0; i < 500 && metrics->crashes.load() == before; ++i)
      std::this_thread::sleep_for(10ms);
    ASSERT_GT(metrics->crashes.load(), before);
  };
  // What the crash leaves: the order written, the cart as it was before.
  auto lose_the_clear = [&] {
    ASSERT_FALSE(db_->write({put_op(cart_key, cart_before_the_order)}, true));
    crash(entity_kind::cart, "u1"); // it starts again from what is stored
    ASSERT_EQ(lines_in_cart(), 1u);
  };

  lose_the_clear();
  // A retry of the placement, with the order's entity still running.
  auto again = ask<purchase_result>(place_order{"o1", from_cart});
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(lines_in_cart(), 0u);

  lose_the_clear();
  // The order loaded again (after a restart, or here a crash of its entity),
  // then asked for.
  crash(entity_kind::order, "o1");
  ASSERT_TRUE((ask<order_record>(get_order{"o1", "u1"})));
  EXPECT_EQ(lines_in_cart(), 0u);

  // The user puts the same line in again, and another: the order, loaded or
  // retried once more, takes out nothing.
  std::this_thread::sleep_for(2ms); // (times are in milliseconds)
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "b", 1})));
  crash(entity_kind::order, "o1");
  ASSERT_TRUE((ask<order_record>(get_order{"o1", "u1"})));
  ASSERT_TRUE((ask<purchase_result>(place_order{"o1", from_cart})));
  EXPECT_EQ(lines_in_cart(), 2u);
  // Also once the cart itself was loaded again from storage.
  crash(entity_kind::cart, "u1");
  crash(entity_kind::order, "o1");
  ASSERT_TRUE((ask<order_record>(get_order{"o1", "u1"})));
  EXPECT_EQ(lines_in_cart(), 2u);

  // A user who saw the ordered line still there after the crash, took it out
  // and put it back, keeps it.
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "b", 0})));
  lose_the_clear();
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 0})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  crash(entity_kind::order, "o1");
  ASSERT_TRUE((ask<order_record>(get_order{"o1", "u1"})));
  EXPECT_EQ(lines_in_cart(), 1u);
}

// A checkout from the cart takes the cart's lines (take_cart) and holds them
// until its order ends the checkout: by taking the lines out (clear_cart), or
// by ending it without them (end_cart_checkout). Another order's take waits
// until then, so two checkouts of one cart run as if one came after the
// other. An order whose entity stopped without saying loses the hold as soon
// as the cart has asked the order (here: none is stored); one that still
// runs (a slow disk) keeps it past the checkout's time limit (2 ask timeouts
// and a follow-up wait).
TEST_F(RegionTest, test_a_second_checkout_of_a_cart_waits_until_the_first_has_ended) {
  follow_up_wait = 200ms;
  start(120s, 1s); // the time limit: 2.2 s
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  // (Takes sent with `ask` come from this test's actor, which stays; those
  // sent with `ask_async` from one that stops once answered.)
  auto first = ask<cart_view>(take_cart{"u1", "o1", 1});
  ASSERT_TRUE(first);
  ASSERT_EQ(first->items.size(), 1u);
  EXPECT_EQ(first->items[0].quantity, 2);
  // The same order again (another attempt to place it, after its entity
  // restarted) gets the lines at once.
  EXPECT_TRUE((ask<cart_view>(take_cart{"u1", "o1", 2})));

  // o1 refused (say, out of stock): o2 gets the lines, unchanged. The end of
  // the earlier attempt, arriving late, ends nothing.
  auto second = ask_async<cart_view>(take_cart{"u1", "o2"});
  self->send(region, end_cart_checkout{"u1", "o1", 1});
  EXPECT_EQ(second.wait_for(300ms), std::future_status::timeout);
  self->send(region, end_cart_checkout{"u1", "o1", 2});
  ASSERT_EQ(second.wait_for(5s), std::future_status::ready);
  auto taken = second.get();
  ASSERT_TRUE(taken) << to_string(taken.error());
  EXPECT_EQ(taken->items.size(), 1u);

  // o2's entity has stopped without ending its checkout: o3 gets the lines
  // once the cart has asked order o2, not at the limit.
  auto third = ask_async<cart_view>(take_cart{"u1", "o3"});
  ASSERT_EQ(third.wait_for(1500ms), std::future_status::ready);
  taken = third.get();
  ASSERT_TRUE(taken) << to_string(taken.error());
  EXPECT_EQ(taken->items.size(), 1u);
  // (o3's client stopped too: its checkout goes on in another attempt, by
  // this test's actor, which stays.)
  ASSERT_TRUE((ask<cart_view>(take_cart{"u1", "o3", 1})));

  // o3 placed: its clear ends the checkout, and o4, waiting, finds the cart empty.
  auto fourth = ask_async<cart_view>(take_cart{"u1", "o4"});
  EXPECT_EQ(fourth.wait_for(100ms), std::future_status::timeout);
  ASSERT_TRUE((ask<cart_view>(clear_cart{"u1", taken->items, 0, "o3"}))); // (any attempt)
  ASSERT_EQ(fourth.wait_for(5s), std::future_status::ready);
  taken = fourth.get();
  ASSERT_TRUE(taken) << to_string(taken.error());
  EXPECT_TRUE(taken->items.empty());
  // An empty cart is held by no checkout: the next take is answered at once.
  auto fifth = ask_async<cart_view>(take_cart{"u1", "o5"});
  EXPECT_EQ(fifth.wait_for(1s), std::future_status::ready);

  // An order still running past the limit keeps the lines: o7 waits for its end.
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  ASSERT_TRUE((ask<cart_view>(take_cart{"u1", "o6"})));
  auto seventh = ask_async<cart_view>(take_cart{"u1", "o7"});
  EXPECT_EQ(seventh.wait_for(3s), std::future_status::timeout);
  self->send(region, end_cart_checkout{"u1", "o6"});
  ASSERT_EQ(seventh.wait_for(5s), std::future_status::ready);
  taken = seventh.get();
  ASSERT_TRUE(taken) << to_string(taken.error());
  EXPECT_EQ(taken->items.size(), 1u);
}

// A placement that waited for another checkout of the cart orders the lines
// as the cart holds them when it gets them, and takes them out: also a line
// changed while it waited.
TEST_F(RegionTest, test_a_checkout_that_waited_orders_the_cart_as_it_found_it) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  ASSERT_TRUE((ask<cart_view>(take_cart{"u1", "o1"})));
  auto placing = ask_async<purchase_result>(place_order{"o2", from_cart_of("u1")});
  EXPECT_EQ(placing.wait_for(300ms), std::future_status::timeout);
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 3})));
  self->send(region, end_cart_checkout{"u1", "o1"});
  ASSERT_EQ(placing.wait_for(5s), std::future_status::ready);
  auto placed = placing.get();
  ASSERT_TRUE(placed) << to_string(placed.error());
  ASSERT_EQ(placed->order.items.size(), 1u);
  EXPECT_EQ(placed->order.items[0].quantity, 3);
  auto cart = ask<cart_view>(get_cart{"u1"});
  ASSERT_TRUE(cart);
  EXPECT_TRUE(cart->items.empty());
}

// A cart that restarts while a checkout holds its lines (a crash, a failed
// write) keeps them held: the hold is stored with them. A second checkout
// waits for the first to end, and finds the lines ordered, not a cart it
// would order again.
TEST_F(RegionTest, test_a_cart_that_restarts_during_a_checkout_keeps_its_lines_held) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<product_view>(create_product{{"b", "B", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "b", 1})));
  const auto shards = entity_context{}.shard_count;
  journal_->stall_group_writing(keys::child(keys::ledger, "b", "o1", shards), 2s);
  auto first = ask_async<purchase_result>(place_order{"o1", from_cart_of("u1")});
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(first.wait_for(0s), std::future_status::timeout); // o1 holds the lines, reserving
  ASSERT_TRUE(crash_once(entity_kind::cart, "u1"));
  auto second = ask_async<purchase_result>(place_order{"o2", from_cart_of("u1")});
  auto placed = first.get();
  ASSERT_TRUE(placed) << to_string(placed.error());
  EXPECT_EQ(placed->order.items.size(), 2u);
  auto refused = second.get();
  ASSERT_FALSE(refused) << "the cart's lines were ordered twice";
  EXPECT_EQ(describe(refused.error()).code, errc::validation_failed); // the cart is empty
  auto a = inventory_once_reserved("a", 2);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->reserved, 2);
  auto b = inventory_once_reserved("b", 1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->reserved, 1);
}

// A hold loaded from storage whose attempt is no longer under way (its
// order's entity stopped, or the node restarted) ends as soon as the cart has
// asked the order, not at the hold's time limit.
TEST_F(RegionTest, test_a_stored_hold_whose_checkout_is_over_ends_once_the_order_says_so) {
  start(); // the time limit: 2 x 5 s + 1 s
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  // Taken by an attempt that no entity of order "o1" runs (this test's actor).
  ASSERT_TRUE((ask<cart_view>(take_cart{"u1", "o1", 7})));
  ASSERT_TRUE(crash_once(entity_kind::cart, "u1"));
  auto asked = std::chrono::steady_clock::now();
  auto next = ask_async<cart_view>(take_cart{"u1", "o2"});
  ASSERT_EQ(next.wait_for(5s), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 5s);
  auto taken = next.get();
  ASSERT_TRUE(taken) << to_string(taken.error());
  ASSERT_EQ(taken->items.size(), 1u);
  EXPECT_EQ(taken->items[0].quantity, 2);
}

// An order that cannot say how its checkout stands (here its record cannot
// be read) does not keep the cart from every later checkout: after three
// questions without an answer, a time limit apart, the hold ends.
TEST_F(RegionTest, test_a_stored_hold_whose_order_cannot_answer_ends_after_three_questions) {
  follow_up_wait = 200ms;
  start(120s, 1s); // the time limit: 2.2 s
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  const auto order_key = keys::entity(keys::order, "o1", entity_context{}.shard_count);
  ASSERT_FALSE(db_->write({put_op(order_key, "not an order record")}, true));
  ASSERT_TRUE((ask<cart_view>(take_cart{"u1", "o1", 7})));
  ASSERT_TRUE(crash_once(entity_kind::cart, "u1"));
  auto asked = std::chrono::steady_clock::now();
  auto next = ask_async<cart_view>(take_cart{"u1", "o2"}); // (its client waits 10 s)
  auto taken = next.get();
  ASSERT_TRUE(taken) << to_string(taken.error());
  EXPECT_GE(std::chrono::steady_clock::now() - asked, 4s); // asked at once, then twice more
  ASSERT_EQ(taken->items.size(), 1u);
}

// An order entity loaded only to answer a cart's question passivates when
// idle, as any other.
TEST_F(RegionTest, test_an_order_loaded_to_answer_a_cart_passivates_when_idle) {
  start(300ms);
  auto progress = ask<checkout_progress>(checkout_under_way{"o9", 1});
  ASSERT_TRUE(progress) << to_string(progress.error());
  EXPECT_FALSE(progress->under_way);
  EXPECT_TRUE(progress->ordered.empty()); // no such order
  EXPECT_GE(metrics->activations.load(), 1u);
  EXPECT_TRUE(test::eventually(10s, [&] { return metrics->active.load() == 0; }))
    << metrics->active.load() << " entities still active";
}

// A crash of the node between an order's write and its cart's clear leaves the
// cart with the lines and the order's hold. The cart, loading, asks the order:
// stored, so its lines leave the cart before the next checkout gets it (which
// finds it empty), not ordered a second time.
TEST_F(RegionTest, test_a_stored_hold_of_an_order_that_was_written_takes_its_lines_out) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  const auto cart_key = keys::entity(keys::cart, "u1", entity_context{}.shard_count);
  std::string stored;
  ASSERT_TRUE(*db_->get(cart_key, stored));
  cart_record held;
  ASSERT_TRUE(decode(stored, held));
  ASSERT_TRUE((ask<purchase_result>(place_order{"o1", from_cart_of("u1")})));
  held.checkout_order = "o1";
  held.checkout_attempt = 99; // an entity gone with the node
  ASSERT_FALSE(db_->write({put_op(cart_key, encode(held))}, true));
  ASSERT_TRUE(crash_once(entity_kind::cart, "u1"));
  auto second = ask<purchase_result>(place_order{"o2", from_cart_of("u1")});
  ASSERT_FALSE(second) << "the cart's lines were ordered twice";
  EXPECT_EQ(describe(second.error()).code, errc::validation_failed); // the cart is empty
  auto a = inventory_once_reserved("a", 2);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->reserved, 2);
  auto cart = ask<cart_view>(get_cart{"u1"});
  ASSERT_TRUE(cart);
  EXPECT_TRUE(cart->items.empty());
}

// An order's entity that crashes while the disk holds the order's write
// cannot tell whether the order is stored: its placement is answered 503
// "may still be stored". The cart keeps the lines held meanwhile, so a second
// checkout (a client retrying without its key) waits until the write is done,
// and finds them ordered rather than a cart to order again.
TEST_F(RegionTest, test_a_checkout_whose_order_may_still_be_stored_keeps_the_cart_held) {
  crash_settle_timeout = 200ms;
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  // Order o2's entity is running already (a new one would load only once the
  // disk is done, and find the lines out of the cart by then).
  auto none = ask<order_record>(get_order{"o2", "u1"});
  ASSERT_FALSE(none);
  ASSERT_EQ(describe(none.error()).code, errc::not_found);
  ASSERT_NO_FATAL_FAILURE(place_from_the_cart_and_crash_while_the_order_is_written("o1", 3s, false));
  auto second = ask_async<purchase_result>(place_order{"o2", from_cart_of("u1")}).get();
  ASSERT_FALSE(second) << "the cart's lines were ordered twice";
  EXPECT_EQ(describe(second.error()).code, errc::validation_failed); // the cart is empty
  auto o1 = ask_retrying<order_record>(get_order{"o1", "u1"});
  ASSERT_TRUE(o1) << to_string(o1.error()); // the write did land
  EXPECT_EQ(o1->status, order_status::pending_payment);
  auto a = inventory_once_reserved("a", 2);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->reserved, 2);
  EXPECT_EQ(a->available, 8);
  auto cart = ask<cart_view>(get_cart{"u1"});
  ASSERT_TRUE(cart);
  EXPECT_TRUE(cart->items.empty());
}

// The same, but the held write then fails: the order is not stored. The cart
// asks the order as soon as its entity is gone, and its next entity answers
// once the write is over: the lines are free again well before the hold's
// time limit (11 s here), and the second checkout orders them.
TEST_F(RegionTest, test_a_checkout_whose_order_write_then_fails_frees_the_cart_once_it_is_over) {
  crash_settle_timeout = 200ms;
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  ASSERT_NO_FATAL_FAILURE(
    place_from_the_cart_and_crash_while_the_order_is_written("o1", 2500ms, true));
  auto asked = std::chrono::steady_clock::now();
  auto second = ask_async<purchase_result>(place_order{"o2", from_cart_of("u1")}).get();
  ASSERT_TRUE(second) << to_string(second.error());
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 6s);
  ASSERT_EQ(second->order.items.size(), 1u);
  EXPECT_EQ(second->order.items[0].quantity, 2);
  EXPECT_EQ(journal_->failures(), 1u); // (the failure did meet the order's write)
  auto o1 = ask_retrying<order_record>(get_order{"o1", "u1"});
  ASSERT_FALSE(o1);
  EXPECT_EQ(describe(o1.error()).code, errc::not_found);
  auto a = inventory_once_reserved("a", 2); // o1's units are back: o2 holds 2
  ASSERT_TRUE(a);
  EXPECT_EQ(a->available, 8);
}

// An order placed from the cart is answered once the cart has stored that its
// lines left it. The order is stored before that: if its entity crashes while
// it waits for the cart, the placement and a retry that joined it are
// answered with the order, not with a 503 that a client without a key would
// answer by ordering again.
TEST_F(RegionTest, test_an_order_stored_while_its_answer_waits_for_the_cart_is_answered_on_a_crash) {
  follow_up_wait = 4s; // the order waits that long for the cart: ample on a slow CI machine
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  const auto shards = entity_context{}.shard_count;
  // The cart's second write: the first stores the checkout's hold.
  journal_->stall_group_writing(keys::entity(keys::cart, "u1", shards), 3s, 1);
  const auto from_cart = from_cart_of("u1");
  auto place = [&] { return ask_async<purchase_result>(place_order{"o1", from_cart}); };
  auto first = place();
  // The order is stored; the cart's change is held by the stalled disk.
  std::string stored;
  const auto order_key = keys::entity(keys::order, "o1", shards);
  for (int i = 0; i < 300 && !*db_->get(order_key, stored); ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(stored.empty());
  auto retry = place(); // reaches the order before the crash does: it joins the placement
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(first.wait_for(0s), std::future_status::timeout); // still waiting for the cart
  ASSERT_TRUE(crash_once(entity_kind::order, "o1"));
  auto placed = first.get();
  ASSERT_TRUE(placed) << to_string(placed.error());
  EXPECT_FALSE(placed->replayed);
  EXPECT_EQ(placed->order.order_id, "o1");
  EXPECT_EQ(placed->order.status, order_status::pending_payment);
  auto replayed = retry.get();
  ASSERT_TRUE(replayed) << to_string(replayed.error());
  EXPECT_TRUE(replayed->replayed);
  EXPECT_EQ(replayed->order.order_id, "o1");
  // Once the disk catches up, the lines have left the cart; the order holds its units.
  auto cart = ask<cart_view>(get_cart{"u1"});
  ASSERT_TRUE(cart);
  EXPECT_TRUE(cart->items.empty());
  auto stock = ask<inventory_view>(get_inventory{"a"});
  ASSERT_TRUE(stock);
  EXPECT_EQ(stock->reserved, 2);
}

// A cart whose write of the cleared lines fails restarts from storage, with
// the lines; the order asks the new cart, and answers once the lines are out.
TEST_F(RegionTest, test_an_order_asks_the_cart_again_when_its_write_of_the_clear_fails) {
  follow_up_wait = 4s; // as above
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<cart_view>(set_cart_item{"u1", "a", 2})));
  const auto shards = entity_context{}.shard_count;
  // The cart's write of the clear (after that of the checkout's hold) is
  // held while the test arms the failure: it is to fail.
  journal_->stall_group_writing(keys::entity(keys::cart, "u1", shards), 1s, 1);
  auto placing = ask_async<purchase_result>(place_order{"o1", from_cart_of("u1")});
  std::string stored;
  const auto order_key = keys::entity(keys::order, "o1", shards);
  for (int i = 0; i < 300 && !*db_->get(order_key, stored); ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(stored.empty());
  journal_->fail_next_groups(1);
  auto placed = placing.get();
  ASSERT_TRUE(placed) << to_string(placed.error());
  EXPECT_EQ(placed->order.order_id, "o1");
  EXPECT_EQ(journal_->failures(), 1u); // (the failure did meet the cart's write)
  auto cart = ask<cart_view>(get_cart{"u1"});
  ASSERT_TRUE(cart);
  EXPECT_TRUE(cart->items.empty());
  EXPECT_EQ(metrics->unconfirmed_cart_clears.load(), 0u);
}

// A retry with the key, after a crash that lost the cart's change, takes the
// lines out again and waits for the cart as the placement did. If the order's
// entity crashes meanwhile, the retry is answered with the stored order.
TEST_F(RegionTest, test_a_retry_waiting_for_the_cart_is_answered_with_the_order_on_a_crash) {
  follow_up_wait = 4s; // as above
  start();
  std::string cart_before_the_order;
  ASSERT_NO_FATAL_FAILURE(place_from_the_cart_and_lose_the_clear(cart_before_the_order));
  const auto cart_key = keys::entity(keys::cart, "u1", entity_context{}.shard_count);
  const auto from_cart = from_cart_of("u1");
  journal_->stall_group_writing(cart_key, 3s);
  auto retry = ask_async<purchase_result>(place_order{"o1", from_cart});
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(retry.wait_for(0s), std::future_status::timeout); // waiting for the cart
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(crash_once(entity_kind::order, "o1"));
  auto replayed = retry.get();
  ASSERT_TRUE(replayed) << to_string(replayed.error());
  EXPECT_TRUE(replayed->replayed);
  EXPECT_EQ(replayed->order.order_id, "o1");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s); // not left to a timeout
  auto cart = ask<cart_view>(get_cart{"u1"});
  ASSERT_TRUE(cart);
  EXPECT_TRUE(cart->items.empty());
}

// The retry above gets the order as it was placed, which is stored: a later
// change of the order that fails while the retry waits for the cart (here a
// payment whose group commit fails) does not turn its answer into an error.
TEST_F(RegionTest, test_a_retry_waiting_for_the_cart_gets_the_order_though_a_later_change_fails) {
  follow_up_wait = 4s; // as above
  start();
  std::string cart_before_the_order;
  ASSERT_NO_FATAL_FAILURE(place_from_the_cart_and_lose_the_clear(cart_before_the_order));
  const auto shards = entity_context{}.shard_count;
  const auto cart_key = keys::entity(keys::cart, "u1", shards);
  const auto from_cart = from_cart_of("u1");
  // The cart's write is held 1 s; the payment's group, behind it, 2 s more,
  // and fails.
  journal_->stall_group_writing(cart_key, 1s);
  auto retry = ask_async<purchase_result>(place_order{"o1", from_cart});
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(retry.wait_for(0s), std::future_status::timeout); // waiting for the cart
  journal_->stall_group_writing(keys::entity(keys::order, "o1", shards), 2s);
  auto paid = ask_async<payment_view>(pay_order{"o1", "u1", "card"});
  // Once the cart's write is done, the payment's is held: it is to fail.
  auto until = std::chrono::steady_clock::now() + 5s;
  for (std::string now = cart_before_the_order;
       now == cart_before_the_order && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(20ms);
    if (!*db_->get(cart_key, now))
      now.clear();
  }
  journal_->fail_next_groups(1);
  auto replayed = retry.get();
  ASSERT_TRUE(replayed) << to_string(replayed.error());
  EXPECT_TRUE(replayed->replayed);
  EXPECT_EQ(replayed->order.order_id, "o1");
  EXPECT_FALSE(paid.get()); // its commit did fail
  auto cart = ask<cart_view>(get_cart{"u1"});
  ASSERT_TRUE(cart);
  EXPECT_TRUE(cart->items.empty());
}

// A kill -9 between a cancel's write and its SKU's release leaves the order
// cancelled in storage and its reservation open. Loaded again, the SKU asks
// the order at once, not at the reservation's expiry (15 minutes here), and
// releases the units (and the buyer's count against a limit); a paid order's
// units are sold. An order still unpaid keeps its reservation.
TEST_F(RegionTest, test_a_reservation_whose_order_ended_before_a_crash_is_settled_when_its_sku_loads) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  const auto shards = entity_context{}.shard_count;
  auto place = [&](int64_t quantity) {
    checkout order;
    order.user_id = "u1";
    order.items = {{"a", quantity, 0}};
    auto placed = ask<purchase_result>(order);
    EXPECT_TRUE(placed);
    return placed ? placed->order.order_id : std::string{};
  };
  auto cancelled = place(2), paid = place(3), unpaid = place(1);
  ASSERT_EQ(ask<inventory_view>(get_inventory{"a"})->reserved, 6);
  // What the crash leaves: the orders' new states stored, the SKU's not.
  for (auto [id, status] : {std::pair{cancelled, order_status::cancelled},
                            std::pair{paid, order_status::paid}}) {
    auto key = keys::entity(keys::order, id, shards);
    std::string raw;
    ASSERT_TRUE(*db_->get(key, raw));
    order_record o;
    ASSERT_TRUE(decode(raw, o));
    o.status = status;
    ASSERT_FALSE(db_->write({put_op(key, encode(o))}, true));
  }
  // Every entity starts again from what is stored, as after a restart.
  for (auto& id : {cancelled, paid, unpaid})
    self->send(region, crash_entity{entity_kind::order, id});
  self->send(region, crash_entity{entity_kind::sku, "a"});
  // (Well under the 15 minutes; an ask that meets a restarting order entity
  // is repeated a second later.)
  auto inv = inventory_once_reserved("a", 1);
  ASSERT_TRUE(inv) << describe(inv.error()).message;
  EXPECT_EQ(inv->reserved, 1);
  EXPECT_EQ(inv->available, 6); // 2 back, 3 sold, 1 still held
  EXPECT_EQ(inv->sold, 3);
}

// A kill -9 during a checkout can leave reservations whose order was never
// written. Loaded again, the SKU asks their orders at once, not at the
// reservations' expiry (15 minutes here), and the units return.
TEST_F(RegionTest, test_a_reservation_without_an_order_is_released_when_its_sku_loads) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  // The orphan: a placement that reserved, then died with its entity.
  auto expires = now_millis() + 15 * 60'000;
  ASSERT_TRUE((ask<order_line>(reserve_stock{"a", "o-orphan", "u2", 2, expires})));
  checkout unpaid;
  unpaid.user_id = "u1";
  unpaid.items = {{"a", 1, 0}};
  ASSERT_TRUE((ask<purchase_result>(place_order{"o-unpaid", unpaid})));
  auto before = ask<inventory_view>(get_inventory{"a"});
  ASSERT_TRUE(before);
  EXPECT_EQ(before->reserved, 3);
  ASSERT_TRUE(crash_once(entity_kind::sku, "a"));
  auto inv = inventory_once_reserved("a", 1);
  ASSERT_TRUE(inv) << describe(inv.error()).message;
  EXPECT_EQ(inv->reserved, 1); // the orphan's 2 units are back; the unpaid order's 1 is held
  EXPECT_EQ(inv->available, 9);
}

// A placement that fails once its reservations are asked for (its entity
// crashes, or the order's write fails) has its SKUs ask the order now, not
// at the reservations' expiry (15 minutes here): the order does not exist,
// and the units return, also those of a reservation that lands after the crash.
TEST_F(RegionTest, test_a_placement_that_fails_after_reserving_releases_its_reservations) {
  start();
  const std::vector<order_line> lines{{"a", 1, 0}, {"b", 2, 0}};
  auto placed = place_while_b_is_held(lines);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(crash_once(entity_kind::order, "o1"));
  auto answer = placed.get();
  ASSERT_FALSE(answer);
  EXPECT_EQ(describe(answer.error()).code, errc::unavailable);
  auto a = inventory_once_reserved("a", 0);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->reserved, 0);
  EXPECT_EQ(a->available, 10);
  auto b = inventory_once_reserved("b", 0);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->reserved, 0);
  EXPECT_EQ(b->available, 10);
  // The order does not exist.
  auto o = ask<order_record>(get_order{"o1", "u1"});
  ASSERT_FALSE(o);
  EXPECT_EQ(describe(o.error()).code, errc::not_found);

  // The order's write fails (held by the disk while the test arms the failure).
  const auto shards = entity_context{}.shard_count;
  journal_->stall_group_writing(keys::entity(keys::order, "o2", shards), 1s);
  checkout order;
  order.user_id = "u1";
  order.items = lines;
  placed = ask_async<purchase_result>(place_order{"o2", order});
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(placed.wait_for(0s), std::future_status::timeout); // the write is held
  journal_->fail_next_groups(1);
  answer = placed.get();
  ASSERT_FALSE(answer);
  EXPECT_EQ(describe(answer.error()).code, errc::unavailable);
  a = inventory_once_reserved("a", 0);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->available, 10);
  b = inventory_once_reserved("b", 0);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->available, 10);
  o = ask_retrying<order_record>(get_order{"o2", "u1"});
  ASSERT_FALSE(o);
  EXPECT_EQ(describe(o.error()).code, errc::not_found);
}

// The SKU's question may come while the placement is still under way, its
// reservations being made (a SKU that loads while a checkout reserves, or
// whose timer fires then): the order, not stored yet, is not an orphan.
TEST_F(RegionTest, test_an_order_asked_by_a_sku_while_it_reserves_is_still_pending) {
  start();
  auto placed = place_while_b_is_held({{"a", 1, 0}, {"b", 1, 0}});
  ASSERT_FALSE(HasFailure());
  auto asked = ask_async<uint8_t>(expire_order{"o1", "a"});
  auto status = asked.get();
  ASSERT_TRUE(status) << describe(status.error()).message;
  EXPECT_EQ(*status, static_cast<uint8_t>(order_status::pending_payment));
  auto done = placed.get();
  ASSERT_TRUE(done) << describe(done.error()).message;
  EXPECT_EQ(done->order.items.size(), 2u);
  auto stock = ask<inventory_view>(get_inventory{"a"});
  ASSERT_TRUE(stock);
  EXPECT_EQ(stock->reserved, 1);
}

// A cancel's answer says the stock is released: by the time it comes, every
// SKU's release is in storage, not just the order's new status (a kill -9
// between the two used to hold the units until the reservation's expiry).
TEST_F(RegionTest, test_a_cancel_answers_once_the_released_stock_is_durable) {
  start();
  ASSERT_TRUE((ask<product_view>(create_product{{"a", "A", "", 100, 10}, {}, {}})));
  ASSERT_TRUE((ask<product_view>(create_product{{"b", "B", "", 250, 10}, {}, {}})));
  const auto shards = entity_context{}.shard_count;
  for (int round = 0; round < 20; ++round) {
    checkout order;
    order.user_id = "u1";
    order.items = {{"a", 1, 0}, {"b", 2, 0}};
    auto placed = ask<purchase_result>(order);
    ASSERT_TRUE(placed) << caf::to_string(placed.error());
    auto id = placed->order.order_id;
    auto cancelled = ask<order_record>(cancel_order{id, "u1", false});
    ASSERT_TRUE(cancelled) << caf::to_string(cancelled.error());
    EXPECT_EQ(cancelled->status, order_status::cancelled);
    // Straight from RocksDB, right after the answer: both reservations are
    // settled (moved out of the ledger's range), and nothing is left open.
    for (auto sku : {"a", "b"}) {
      std::string raw;
      EXPECT_FALSE(*db_->get(keys::child(keys::ledger, sku, id, shards), raw)) << sku << " " << round;
      EXPECT_TRUE(*db_->get(keys::child(keys::settled, sku, id, shards), raw)) << sku << " " << round;
    }
  }
  EXPECT_EQ(ask<inventory_view>(get_inventory{"a"})->available, 10);
  EXPECT_EQ(ask<inventory_view>(get_inventory{"b"})->available, 10);
}
