// Crashes: kill -9 of shopd during a purchase burst, entity crashes injected
// over HTTP, and storage that fails (injected, a full disk, a fatal I/O
// error). Acknowledged orders survive; nothing is sold twice.

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "storage/keys.hpp"
#include "storage/store.hpp"
#include "tests/fixtures/shopd_process.hpp"
#include "tests/fixtures/wal_file.hpp"

using namespace shop::test;
using namespace std::chrono_literals;

namespace {

/// shopd's environment with tests/fixtures/fail_wal_sync.cpp preloaded, and
/// `setting` (one of its SHOP_TEST_* variables, "NAME=value").
std::vector<std::string> with_wal_preload(std::string setting) {
  // The sanitizers' runtime must otherwise be the first library loaded.
  const char* asan = std::getenv("ASAN_OPTIONS");
  std::string asan_options = (asan && *asan ? std::string{asan} + ":" : std::string{})
                             + "verify_asan_link_order=0";
  return {std::string{"LD_PRELOAD="} + FAIL_WAL_SYNC_LIBRARY, std::move(setting),
          "ASAN_OPTIONS=" + asan_options};
}

using acked_orders = std::vector<std::pair<std::string, std::string>>; // (order id, token)

/// Three rounds of: `threads` clients send `attempt(client, thread, n)` in a
/// loop (n counts each thread's attempts), shopd is killed with SIGKILL at a
/// random moment, then restarted. `attempt` returns the answer and the token
/// it used; every 201 is recorded. Returns false if a restart failed.
bool kill9_during_bursts(
  shopd_process& shopd, int threads,
  const std::function<std::pair<http_result, std::string>(http_client&, int, size_t)>& attempt,
  acked_orders& acked) {
  std::mt19937 rng{std::random_device{}()};
  std::mutex m;
  for (int round = 0; round < 3; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> burst;
    for (int t = 0; t < threads; ++t)
      burst.emplace_back([&, t] {
        http_client c{shopd.port()};
        for (size_t n = 0; !stop; ++n) {
          auto [r, token] = attempt(c, t, n);
          if (r.status == 201) {
            std::lock_guard<std::mutex> g{m};
            acked.emplace_back(json_field(r.body, "order_id"), token);
          } else if (r.status == 0) {
            break; // the node died under us
          }
        }
      });
    std::this_thread::sleep_for(std::chrono::milliseconds{150 + rng() % 450});
    shopd.kill9();
    stop = true;
    for (auto& t : burst)
      t.join();
    if (!shopd.start()) {
      ADD_FAILURE() << "restart after kill -9 #" << round;
      return false;
    }
  }
  return true;
}

/// The prepared WAL files shopd has made in `data_dir` (it begins past a
/// quarter of a file of WAL, and keeps two ready; a `.tmp` one is still
/// being written).
size_t prepared_files_made(const std::string& data_dir) {
  size_t made = 0;
  for (auto& e : std::filesystem::directory_iterator(data_dir)) {
    auto name = e.path().filename().string();
    if (name.rfind("wal-spare-", 0) == 0 && name.find(".tmp") == std::string::npos)
      ++made;
  }
  return made;
}

/// Buys one unit of `sale` at a time, recording each order in `acked`, until
/// shopd has made `files` prepared WAL files in `data_dir` (60 s at most).
void buy_until_prepared(shopd_process& shopd, const std::string& data_dir,
                        const std::vector<std::string>& tokens, const std::string& sale,
                        size_t files, acked_orders& acked) {
  http_client c{shopd.port()};
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (prepared_files_made(data_dir) < files && std::chrono::steady_clock::now() < deadline) {
    auto& token = tokens[acked.size() % tokens.size()];
    auto r = purchase(c, token, sale);
    ASSERT_EQ(r.status, 201) << r.body;
    acked.emplace_back(json_field(r.body, "order_id"), token);
  }
  ASSERT_GE(prepared_files_made(data_dir), files);
}

/// Every acknowledged order was acknowledged once and exists (with `status`, if given).
void expect_acked_orders(http_client& c, const acked_orders& acked, const std::string& status = {}) {
  ASSERT_GT(acked.size(), 0u);
  std::set<std::string> unique;
  for (auto& [id, token] : acked) {
    EXPECT_TRUE(unique.insert(id).second) << "order acknowledged twice: " << id;
    auto r = c.request("GET", "/api/v1/orders/" + id, {}, {bearer(token)});
    ASSERT_EQ(r.status, 200) << "acknowledged order lost: " << id << " " << r.body;
    if (!status.empty()) {
      EXPECT_EQ(json_field(r.body, "status"), status) << id;
    }
  }
}

} // namespace

/// Purchase bursts on 24 connections, each ended by `kill -9` and a restart,
/// three times: every order answered 201 exists and is reserved, and stock
/// is conserved.
void kill9_during_purchase_bursts_loses_no_acknowledged_order(shopd_process& shopd) {
  ASSERT_TRUE(shopd.start());
  constexpr int64_t stock = 4000;
  {
    http_client c{shopd.port()};
    create_product_and_sale(c, shopd.admin_token(), "crash-1", stock, "sale-k", stock, 1000);
  }
  auto tokens = make_users(shopd.port(), "victim_", 200);
  acked_orders acked;
  ASSERT_TRUE(kill9_during_bursts(
    shopd, 24,
    [&](http_client& c, int t, size_t n) {
      auto& token = tokens[(static_cast<size_t>(t) + n) % tokens.size()];
      return std::make_pair(c.request("POST", "/api/v1/flash-sales/sale-k/purchase",
                                      R"({"quantity":1})", {bearer(token)}),
                            token);
    },
    acked));
  auto acked_units = static_cast<int64_t>(acked.size()); // one unit each
  http_client c{shopd.port()};
  expect_acked_orders(c, acked, "pending_payment");
  auto inv = get_inventory(c, "crash-1");
  EXPECT_EQ(inv.available + inv.reserved + inv.sold, stock);
  // Every acknowledged unit is reserved; a few more may be reserved whose
  // 201 was lost with the connection when the node died (never fewer).
  EXPECT_GE(inv.reserved, acked_units);
  auto sale = c.request("GET", "/api/v1/flash-sales/sale-k");
  EXPECT_EQ(std::stoll(json_field(sale.body, "remaining")), stock - inv.reserved - inv.sold);
}

TEST(Crash, test_kill9_during_bursts_loses_no_acknowledged_order) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  kill9_during_purchase_bursts_loses_no_acknowledged_order(shopd);
}

// `--durability async` writes the WAL without fsync: a process crash keeps
// every acknowledged change, since the kernel holds it (only a kernel crash
// or power cut may lose the latest). The mode uses no prepared WAL files.
TEST(Crash, test_kill9_in_async_durability_loses_no_acknowledged_order) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--durability", "async", "--prepared-wal-mb", "1"}};
  ASSERT_NO_FATAL_FAILURE(kill9_during_purchase_bursts_loses_no_acknowledged_order(shopd));
  EXPECT_NE(shopd.start_output().find("(durability async,"), std::string::npos)
    << shopd.start_output();
  EXPECT_EQ(prepared_files_made(dir.path()), 0u);
}

// The same, with the WAL written over prepared zero-filled files
// (storage/prepared_wal.hpp): each kill leaves a WAL whose records end in
// zeros (or one that outgrew its file), which recovery must read to the last
// acknowledged order. Small files, so that a burst fills one.
TEST(Crash, test_kill9_while_the_wal_is_a_prepared_file_loses_no_acknowledged_order) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--prepared-wal-mb", "1"}};
  ASSERT_TRUE(shopd.start());
  constexpr int64_t stock = 100000;
  auto tokens = make_users(shopd.port(), "zero_", 100);
  acked_orders acked;
  {
    http_client c{shopd.port()};
    create_product_and_sale(c, shopd.admin_token(), "crash-z", stock, "sale-z", stock, 10000);
  }
  ASSERT_NO_FATAL_FAILURE(buy_until_prepared(shopd, dir.path(), tokens, "sale-z", 1, acked));
  // From this start on, each WAL is begun from a prepared file while one is ready.
  ASSERT_TRUE(shopd.restart());
  {
    http_client c{shopd.port()};
    auto metrics = c.request("GET", "/metrics").body;
    EXPECT_NE(metrics.find("shop_wal_files_total{start=\"prepared\"} 1\n"), std::string::npos)
      << metrics;
  }
  ASSERT_TRUE(kill9_during_bursts(
    shopd, 24,
    [&](http_client& c, int t, size_t n) {
      auto& token = tokens[(static_cast<size_t>(t) * 7 + n) % tokens.size()];
      return std::make_pair(c.request("POST", "/api/v1/flash-sales/sale-z/purchase",
                                      R"({"quantity":1})", {bearer(token)}),
                            token);
    },
    acked));
  http_client c{shopd.port()};
  expect_acked_orders(c, acked, "pending_payment");
  auto inv = get_inventory(c, "crash-z");
  EXPECT_EQ(inv.available + inv.reserved + inv.sold, stock);
  EXPECT_GE(inv.reserved, static_cast<int64_t>(acked.size()));
}

namespace {

/// A power cut, unlike a kill -9, can tear the write that was in flight: the
/// live WAL's records then end in one whose header is on the disk and whose
/// payload is only partly. Two rounds of: a burst of purchases, every one
/// answered; kill -9; the WAL torn as a power cut would leave it (the write
/// that would have come next); a restart. Every purchase answered 201 was
/// synced before its answer, so every one survives, and no unit is reserved
/// that no answer owns. The second round checks that the start after a torn
/// WAL leaves nothing that would cut a later recovery short.
void power_cuts_tear_the_wal_and_lose_nothing_acknowledged(shopd_process& shopd,
                                                           const std::string& data_dir,
                                                           const std::vector<std::string>& tokens,
                                                           const std::string& sale,
                                                           const std::string& sku, int64_t stock,
                                                           bool prepared, acked_orders& acked) {
  for (uint32_t round = 0; round < 2; ++round) {
    std::mutex m;
    parallel_for(shopd.port(), 400, 8, [&](http_client& c, size_t i) {
      auto& token = tokens[(i + round * 3) % tokens.size()];
      auto r = purchase(c, token, sale);
      ASSERT_EQ(r.status, 201) << r.body;
      std::lock_guard<std::mutex> g{m};
      acked.emplace_back(json_field(r.body, "order_id"), token);
    });
    shopd.kill9();
    auto wal = live_wal(data_dir);
    ASSERT_FALSE(wal.empty());
    auto end = wal_records_end(wal);
    ASSERT_GT(end, 0u);
    // The case meant: a prepared file's zeros after the records, or a plain end.
    if (prepared)
      EXPECT_LT(end, std::filesystem::file_size(wal)) << wal << ", round " << round;
    else
      EXPECT_EQ(end, std::filesystem::file_size(wal)) << wal << ", round " << round;
    tear_next_wal_write(wal, 600, 200, round + 1);
    ASSERT_TRUE(shopd.start()) << "restart after a torn WAL, round " << round;
    http_client c{shopd.port()};
    expect_acked_orders(c, acked, "pending_payment");
    auto inv = get_inventory(c, sku);
    EXPECT_EQ(inv.available + inv.reserved + inv.sold, stock);
    // Every purchase was answered before the kill: exactly the acknowledged units.
    EXPECT_EQ(inv.reserved, static_cast<int64_t>(acked.size()));
  }
}

} // namespace

TEST(Crash, test_a_power_cut_that_tears_a_prepared_wal_loses_no_acknowledged_order) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--prepared-wal-mb", "1"}};
  ASSERT_TRUE(shopd.start());
  constexpr int64_t stock = 100000;
  auto tokens = make_users(shopd.port(), "torn_", 50);
  acked_orders acked;
  {
    http_client c{shopd.port()};
    create_product_and_sale(c, shopd.admin_token(), "torn-p", stock, "sale-tp", stock, 10000);
  }
  // Both files: one for the WAL of each start after a power cut.
  ASSERT_NO_FATAL_FAILURE(buy_until_prepared(shopd, dir.path(), tokens, "sale-tp", 2, acked));
  ASSERT_TRUE(shopd.restart()); // from here on, each WAL is begun from a prepared file
  power_cuts_tear_the_wal_and_lose_nothing_acknowledged(shopd, dir.path(), tokens, "sale-tp",
                                                        "torn-p", stock, true, acked);
}

TEST(Crash, test_a_power_cut_that_tears_a_plain_wal_loses_no_acknowledged_order) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--prepared-wal-mb", "0"}};
  ASSERT_TRUE(shopd.start());
  constexpr int64_t stock = 100000;
  auto tokens = make_users(shopd.port(), "torn_", 50);
  {
    http_client c{shopd.port()};
    create_product_and_sale(c, shopd.admin_token(), "torn-e", stock, "sale-te", stock, 10000);
  }
  acked_orders acked;
  power_cuts_tear_the_wal_and_lose_nothing_acknowledged(shopd, dir.path(), tokens, "sale-te",
                                                        "torn-e", stock, false, acked);
}

TEST(Crash, test_kill9_during_checkouts_loses_no_order_and_strands_no_reservation) {
  // Multi-item checkouts are a saga: the SKUs reserve before the order is
  // written. A kill -9 in between strands reservations without an order;
  // their expiry timers must give the units back.
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--payment-timeout", "3"}};
  ASSERT_TRUE(shopd.start());
  constexpr int64_t stock = 100000;
  const std::vector<std::string> skus{"ck-a", "ck-b", "ck-c"};
  {
    http_client c{shopd.port()};
    for (auto& sku : skus)
      ASSERT_EQ(c.request("POST", "/api/v1/products",
                          R"({"sku":")" + sku + R"(","name":"Crash item","price_cents":100,"stock":)"
                            + std::to_string(stock) + "}",
                          {bearer(shopd.admin_token())})
                  .status,
                201);
  }
  auto tokens = make_users(shopd.port(), "checkout_", 100);
  acked_orders acked;
  std::atomic<uint64_t> attempts{0};
  ASSERT_TRUE(kill9_during_bursts(
    shopd, 16,
    [&](http_client& c, int t, size_t n) {
      // A distinct key per attempt; two baskets that share SKU b.
      auto& token = tokens[(static_cast<size_t>(t) + 16 * n) % tokens.size()];
      auto body = n % 2 ? R"({"items":[{"sku":"ck-a","quantity":1},{"sku":"ck-b","quantity":2}]})"
                        : R"({"items":[{"sku":"ck-b","quantity":1},{"sku":"ck-c","quantity":1}]})";
      auto key = "Idempotency-Key: k" + std::to_string(attempts++);
      return std::make_pair(c.request("POST", "/api/v1/orders", body, {bearer(token), key}),
                            token);
    },
    acked));
  http_client c{shopd.port()};
  expect_acked_orders(c, acked);
  // Nothing is paid, so once every order has expired (3 s after its
  // creation) nothing may stay reserved: neither acknowledged orders nor
  // reservations stranded by the crashes. Stock is conserved throughout.
  int64_t left = 0;
  eventually(15s, [&] {
    left = 0;
    for (auto& sku : skus) {
      auto inv = get_inventory(c, sku);
      EXPECT_EQ(inv.available + inv.reserved + inv.sold, stock) << sku;
      left += inv.reserved;
    }
    return left == 0;
  });
  EXPECT_EQ(left, 0) << "units still reserved after every order expired";
  expect_acked_orders(c, acked, "expired");
}

// An order placed from the cart has its 201 only once its lines have left the
// cart for good: a kill -9 right after that 201 must not leave them there,
// free to be ordered a second time. Each write to the WAL waits 30 ms first
// (a slow disk, made by a preloaded library, tests/fixtures/fail_wal_sync.cpp),
// so that a change still on its way to the WAL when the 201 arrives is lost
// by the kill. (Before, the cart was cleared after the 201: lost every time.)
TEST(Crash, test_kill9_right_after_a_checkout_from_the_cart_leaves_its_lines_out_of_the_cart) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {}, with_wal_preload("SHOP_TEST_SLOW_WAL_WRITE_MS=30")};
  ASSERT_TRUE(shopd.start());
  {
    http_client c{shopd.port()};
    for (auto sku : {"cart-a", "cart-b"})
      ASSERT_EQ(c.request("POST", "/api/v1/products",
                          std::string{R"({"sku":")"} + sku
                            + R"(","name":"Cart item","price_cents":100,"stock":1000})",
                          {bearer(shopd.admin_token())})
                  .status,
                201);
  }
  auto token = make_users(shopd.port(), "carter_", 1)[0];
  std::vector<std::string> orders;
  for (int round = 0; round < 8; ++round) {
    http_client c{shopd.port()};
    ASSERT_EQ(c.request("PUT", "/api/v1/cart/items/cart-a", R"({"quantity":1})", {bearer(token)})
                .status,
              200);
    ASSERT_EQ(c.request("PUT", "/api/v1/cart/items/cart-b", R"({"quantity":2})", {bearer(token)})
                .status,
              200);
    auto placed = c.request("POST", "/api/v1/orders", R"({"from_cart":true})",
                            {bearer(token), "Idempotency-Key: round-" + std::to_string(round)});
    ASSERT_EQ(placed.status, 201) << placed.body;
    shopd.kill9();
    orders.push_back(json_field(placed.body, "order_id"));
    ASSERT_TRUE(shopd.restart());
    http_client after{shopd.port()};
    auto cart = after.request("GET", "/api/v1/cart", {}, {bearer(token)});
    ASSERT_EQ(cart.status, 200);
    ASSERT_EQ(json_field(cart.body, "items"), "[]") << "round " << round << ": " << cart.body;
  }
  // Every acknowledged order is there, its two lines reserved.
  http_client c{shopd.port()};
  for (auto& id : orders)
    EXPECT_EQ(json_field(c.request("GET", "/api/v1/orders/" + id, {}, {bearer(token)}).body,
                         "status"),
              "pending_payment")
      << id;
  EXPECT_EQ(get_inventory(c, "cart-a"), (inventory{992, 8, 0}));
  EXPECT_EQ(get_inventory(c, "cart-b"), (inventory{984, 16, 0}));
}

// A kill -9 between the write of an order placed from the cart and the
// cart's clear: the order is stored, the cart still has its lines, held by
// that checkout. After the restart the next checkout of the cart must find
// them ordered (422, the cart empty), not order them a second time. The
// preloaded library holds the cart's second write to the WAL (the first
// stores the checkout's hold) until shopd is killed, so the kill lands there
// every time.
TEST(Crash, test_kill9_between_a_cart_checkouts_order_and_its_clear_orders_the_lines_once) {
  temp_dir dir;
  std::string token;
  {
    shopd_process setup{dir.path()};
    ASSERT_TRUE(setup.start());
    http_client c{setup.port()};
    ASSERT_EQ(c.request("POST", "/api/v1/products",
                        R"({"sku":"half-a","name":"Cart item","price_cents":100,"stock":100})",
                        {bearer(setup.admin_token())})
                .status,
              201);
    token = make_users(setup.port(), "halfway_", 1)[0];
    ASSERT_EQ(c.request("PUT", "/api/v1/cart/items/half-a", R"({"quantity":2})", {bearer(token)})
                .status,
              200);
    ASSERT_TRUE(setup.stop());
  }
  std::string cart_key;
  {
    auto db = shop::store::open({dir.path()});
    ASSERT_TRUE(db);
    ASSERT_FALSE((*db)->scan(std::string{shop::keys::cart} + "/",
                             [&](std::string_view key, std::string_view) {
                               cart_key = std::string{key};
                               return false;
                             }));
  }
  ASSERT_FALSE(cart_key.empty());
  temp_dir scratch;
  const auto marker = scratch.path() + "/held";
  auto env = with_wal_preload("SHOP_TEST_HOLD_WAL_WRITE=" + marker);
  env.push_back("SHOP_TEST_HOLD_WAL_MATCH=" + cart_key);
  env.push_back("SHOP_TEST_HOLD_WAL_SKIP=1");
  shopd_process shopd{dir.path(), {}, env};
  ASSERT_TRUE(shopd.start());
  std::thread checkout([&] {
    http_client c{shopd.port()};
    c.request("POST", "/api/v1/orders", R"({"from_cart":true})", {bearer(token)}); // no answer
  });
  bool held = eventually(10s, [&] { return std::filesystem::exists(marker); });
  shopd.kill9();
  checkout.join();
  ASSERT_TRUE(held) << "the cart's clear never reached the WAL";
  ASSERT_TRUE(shopd.restart());
  http_client c{shopd.port()};
  // The order was stored before the clear: its 2 units are reserved.
  EXPECT_EQ(get_inventory(c, "half-a"), (inventory{98, 2, 0}));
  auto again = c.request("POST", "/api/v1/orders", R"({"from_cart":true})", {bearer(token)});
  EXPECT_EQ(again.status, 422) << "the cart's lines were ordered a second time: " << again.body;
  EXPECT_EQ(json_field(c.request("GET", "/api/v1/cart", {}, {bearer(token)}).body, "items"), "[]");
  EXPECT_EQ(get_inventory(c, "half-a"), (inventory{98, 2, 0}));
}

TEST(Crash, test_entity_crash_answers_every_request_and_restarts_from_storage) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--fault-injection"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product_and_sale(c, admin, "sup-1", 200000, "sale-s", 200000, 10000);
  create_product_and_sale(c, admin, "sup-2", 10, "sale-t", 10, 10);
  auto tokens = make_users(shopd.port(), "sup_", 50);
  // The burst lasts until all three crashes have hit it, each after another
  // 500 answers, and at least 3,000 purchases were answered.
  constexpr int min_requests = 3000;
  constexpr int max_requests = 150000; // bounds the test if crashes never land
  std::atomic<int> started{0}, answered{0}, created{0}, unavailable{0}, other{0};
  std::atomic<bool> crashes_sent{false};
  std::thread crasher([&] {
    http_client cc{shopd.port()};
    for (int i = 1; i <= 3; ++i) {
      while (answered < 500 * i && started < max_requests)
        std::this_thread::sleep_for(1ms);
      auto r = cc.request("POST", "/api/v1/admin/fault-injection/crash",
                          R"({"kind":"sku","id":"sup-1"})", {bearer(admin)});
      EXPECT_EQ(r.status, 202) << r.body;
    }
    crashes_sent = true;
  });
  std::vector<std::thread> buyers;
  for (int t = 0; t < 16; ++t)
    buyers.emplace_back([&] {
      http_client cc{shopd.port()};
      while (!(crashes_sent && answered >= min_requests)) {
        auto i = started++;
        if (i >= max_requests)
          break;
        auto r = cc.request("POST", "/api/v1/flash-sales/sale-s/purchase", R"({"quantity":1})",
                            {bearer(tokens[static_cast<size_t>(i) % tokens.size()])});
        if (r.status == 201)
          ++created;
        else if (r.status == 503 && !r.header("retry-after").empty())
          ++unavailable;
        else
          ++other;
        ++answered;
      }
    });
  for (auto& b : buyers)
    b.join();
  crasher.join();
  EXPECT_EQ(other.load(), 0); // every request answered: 201 or 503, none hangs
  EXPECT_EQ(created + unavailable, answered.load());
  EXPECT_GE(answered.load(), min_requests);
  // A crash is asked for, not awaited: the last may still be under way.
  EXPECT_TRUE(eventually(10s, [&] { return metric(c, "shop_entity_crashes_total") == 3; }));
  http_result inv;
  EXPECT_TRUE(eventually(10s, [&] {
    inv = c.request("GET", "/api/v1/inventory/sup-1");
    return inv.status == 200;
  }));
  ASSERT_EQ(inv.status, 200) << inv.body;
  EXPECT_EQ(std::stoll(json_field(inv.body, "reserved")), created.load());
  // The other SKU is not affected.
  auto other_inv = c.request("GET", "/api/v1/inventory/sup-2");
  EXPECT_EQ(json_field(other_inv.body, "available"), "10");
  EXPECT_EQ(metric(c, "shop_entity_crashes_total"), 3);
}

// The edge's bridge actors run the routes (tokens, bodies, messages). One
// that an exception stops is started anew: the node does not go on dropping
// every request the loop would have handed to it.
TEST(Crash, test_a_crashed_edge_bridge_is_replaced_and_requests_go_on) {
  temp_dir dir;
  // A request handed to a dead bridge would get 503 after the request timeout.
  shopd_process shopd{dir.path(), {"--fault-injection"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product_and_sale(c, admin, "br-1", 100, "sale-br", 100, 100);
  auto token = make_users(shopd.port(), "bridge_", 1)[0];
  auto r = c.request("POST", "/api/v1/admin/fault-injection/crash",
                     R"({"kind":"bridge","id":"any"})", {bearer(admin)});
  ASSERT_EQ(r.status, 202) << r.body;
  // Requests the bridge held as it crashed are lost by design (503): let it go first.
  std::this_thread::sleep_for(200ms);
  for (int i = 0; i < 10; ++i) {
    auto p = purchase(c, token, "sale-br");
    EXPECT_EQ(p.status, 201) << i << ": " << p.body;
    auto me = c.request("GET", "/api/v1/users/me", "", {bearer(token)});
    EXPECT_EQ(me.status, 200) << i << ": " << me.body;
  }
  EXPECT_EQ(metric(c, "shop_edge_bridge_restarts_total"), 1);
  EXPECT_EQ(get_inventory(c, "br-1"), (inventory{90, 10, 0}));
}

// A failed group commit (a full disk, simulated by the fault-injection route):
// the purchase waiting on it gets 503 and leaves nothing behind, /readyz says
// not ready until a commit succeeds again, and the SKU, restarted from what
// is stored, sells on with its counts intact.
TEST(Crash, test_a_failed_storage_write_is_refused_and_reported_until_writes_succeed) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--fault-injection"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product_and_sale(c, admin, "disk-1", 100, "sale-d", 100, 10);
  auto tokens = make_users(shopd.port(), "disk_", 2);
  auto buy = [&](const std::string& token) {
    return c.request("POST", "/api/v1/flash-sales/sale-d/purchase", R"({"quantity":1})",
                     {bearer(token)});
  };
  ASSERT_EQ(buy(tokens[0]).status, 201);
  EXPECT_EQ(c.request("GET", "/readyz").status, 200);

  // Three: the purchase's commit and the node's own first two probes of
  // storage (one a second), so that /readyz is asked while it still fails,
  // also on a slow machine.
  auto r = c.request("POST", "/api/v1/admin/fault-injection/storage", R"({ "groups": 3 })",
                     {bearer(admin)});
  ASSERT_EQ(r.status, 202) << r.body;
  auto failed = buy(tokens[1]);
  EXPECT_EQ(failed.status, 503) << failed.body;
  EXPECT_FALSE(failed.header("retry-after").empty());
  auto ready = c.request("GET", "/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  // Nothing of the failed purchase was stored or is counted.
  EXPECT_TRUE(eventually(5s, [&] { return get_inventory(c, "disk-1") == inventory{99, 1, 0}; }))
    << get_inventory(c, "disk-1");

  // The next commit succeeds: purchases go on and the node is ready again.
  EXPECT_TRUE(eventually(5s, [&] { return buy(tokens[1]).status == 201; }));
  EXPECT_EQ(c.request("GET", "/readyz").status, 200);
  EXPECT_EQ(get_inventory(c, "disk-1"), (inventory{98, 2, 0}));
  // Bad bodies for the route are refused.
  EXPECT_EQ(c.request("POST", "/api/v1/admin/fault-injection/storage", R"({"groups":0})",
                      {bearer(admin)}).status, 422);
  EXPECT_EQ(c.request("POST", "/api/v1/admin/fault-injection/storage", R"({"groups":1})",
                      {bearer(tokens[0])}).status, 403);
  // And it survives a restart with the same counts.
  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  EXPECT_EQ(get_inventory(c2, "disk-1"), (inventory{98, 2, 0}));
}

// A node that /readyz took out of rotation gets no traffic: it must find out
// by itself when storage takes writes again. Three failures injected: the
// purchase's group commit and the node's first two probes of storage.
TEST(Crash, test_a_node_is_ready_again_without_traffic_once_storage_takes_writes) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--fault-injection"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product_and_sale(c, admin, "disk-2", 100, "sale-d2", 100, 10);
  auto tokens = make_users(shopd.port(), "probe_", 1);
  auto r = c.request("POST", "/api/v1/admin/fault-injection/storage", R"({"groups":3})",
                     {bearer(admin)});
  ASSERT_EQ(r.status, 202) << r.body;
  auto failed = purchase(c, tokens[0], "sale-d2");
  EXPECT_EQ(failed.status, 503) << failed.body;
  EXPECT_EQ(c.request("GET", "/readyz").status, 503);
  EXPECT_EQ(metric(c, "shop_journal_healthy"), 0);
  // No request but probes: ready again within a few probe intervals (1 s each).
  EXPECT_TRUE(eventually(10s, [&] { return c.request("GET", "/readyz").status == 200; }));
  EXPECT_EQ(metric(c, "shop_journal_healthy"), 1);
  EXPECT_EQ(metric(c, "shop_journal_failures_total"), 3);
  EXPECT_EQ(get_inventory(c, "disk-2"), (inventory{100, 0, 0}));
  EXPECT_EQ(purchase(c, tokens[0], "sale-d2").status, 201);
}


// A full disk, for real: purchases that cannot be written get 503 and /readyz
// says not ready; once space is freed, RocksDB resumes by itself (its
// SstFileManager wants one memtable, 32 MiB, free, and looks every 5 s) and
// the node, with no request at all, finds out and is ready again. Nothing
// acknowledged is lost, nothing refused is stored, also across kill -9.
TEST(Crash, test_a_full_disk_refuses_purchases_until_space_is_freed_then_they_go_on) {
  temp_dir dir;
  small_disk disk{dir.path(), 100};
  if (!disk.mounted())
    GTEST_SKIP() << "cannot mount a tmpfs here (" << disk.error() << "); needs root";
  // Less free space than RocksDB preallocates for a WAL file (~35 MiB), so
  // the WAL grows write by write and a full disk fails the next one.
  ASSERT_EQ(small_disk::fill(dir.path() + "/ballast", 70u << 20), 70u << 20);
  shopd_process shopd{dir.path() + "/data"};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product_and_sale(c, admin, "disk-4", 1000, "sale-d4", 1000, 1000);
  auto tokens = make_users(shopd.port(), "full_", 1);
  auto buy = [&](http_client& client) { return purchase(client, tokens[0], "sale-d4"); };
  ASSERT_EQ(buy(c).status, 201);
  int64_t acknowledged = 1;
  small_disk::fill(dir.path() + "/the-rest");
  http_result refused;
  for (int i = 0; i < 2000; ++i) {
    auto r = buy(c);
    if (r.status != 201) {
      refused = r;
      break;
    }
    ++acknowledged;
  }
  ASSERT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(json_field(refused.body, "error.code"), "unavailable");
  EXPECT_EQ(c.request("GET", "/readyz").status, 503);
  EXPECT_EQ(buy(c).status, 503); // RocksDB keeps refusing: no retry succeeds by chance
  EXPECT_EQ(get_inventory(c, "disk-4"), (inventory{1000 - acknowledged, acknowledged, 0}));

  ASSERT_EQ(::unlink((dir.path() + "/ballast").c_str()), 0);
  EXPECT_TRUE(eventually(20s, [&] { return c.request("GET", "/readyz").status == 200; }));
  EXPECT_EQ(buy(c).status, 201);
  ++acknowledged;
  EXPECT_EQ(get_inventory(c, "disk-4"), (inventory{1000 - acknowledged, acknowledged, 0}));
  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  EXPECT_EQ(get_inventory(c2, "disk-4"), (inventory{1000 - acknowledged, acknowledged, 0}));
}

namespace {

/// A storage failure that RocksDB deems fatal, made by `fail` (undone by
/// `heal`) while shopd serves a sale with a per-user limit of 1: the purchase
/// caught in it gets 503; shopd stops by itself with status 3, for its service
/// manager to restart it; the restarted node has every order it acknowledged
/// and nothing of the refused one, whose buyer can then buy.
void expect_a_refused_purchase_gone_after_exit_3(shopd_process& shopd, const std::string& sku,
                                                 const std::function<void()>& fail,
                                                 const std::function<void()>& heal) {
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto sale = "sale-" + sku;
  create_product_and_sale(c, shopd.admin_token(), sku, 100, sale, 100, 1);
  auto tokens = make_users(shopd.port(), "buyer_", 6);
  std::vector<std::string> orders;
  for (size_t i = 0; i < 5; ++i) {
    auto r = purchase(c, tokens[i], sale);
    ASSERT_EQ(r.status, 201) << r.body;
    orders.push_back(json_field(r.body, "order_id"));
  }
  fail();
  auto refused = purchase(c, tokens[5], sale);
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(shopd.wait_exit(15s), 3);

  heal();
  ASSERT_TRUE(shopd.start());
  http_client c2{shopd.port()};
  EXPECT_EQ(get_inventory(c2, sku), (inventory{95, 5, 0}));
  for (size_t i = 0; i < orders.size(); ++i) {
    auto o = c2.request("GET", "/api/v1/orders/" + orders[i], "", {bearer(tokens[i])});
    EXPECT_EQ(o.status, 200) << orders[i] << " " << o.body;
    EXPECT_EQ(json_field(o.body, "status"), "pending_payment");
  }
  EXPECT_EQ(c2.request("GET", "/readyz").status, 200);
  auto again = purchase(c2, tokens[5], sale);
  EXPECT_EQ(again.status, 201) << again.body;
}

} // namespace

// Here: a WAL write past the process's file size limit, EFBIG, before any
// byte of it lands.
TEST(Crash, test_a_node_whose_storage_fails_for_good_exits_3_and_restarts_with_every_order) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  expect_a_refused_purchase_gone_after_exit_3(
    shopd, "disk-3",
    [&] {
      // Every file of the node may now grow by nothing: the next WAL write fails.
      rlimit limit{};
      ASSERT_EQ(prlimit(shopd.pid(), RLIMIT_FSIZE, nullptr, &limit), 0);
      limit.rlim_cur = 1;
      ASSERT_EQ(prlimit(shopd.pid(), RLIMIT_FSIZE, &limit, nullptr), 0);
    },
    [] {});
}

// Storage failing for good during the shutdown delay ends the delay: the
// node does not serve 503s until it is over, it stops with status 3 at once.
TEST(Crash, test_storage_failing_during_the_shutdown_delay_stops_the_node_with_status_3) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--shutdown-delay", "60"}};
  ASSERT_TRUE(shopd.start());
  auto tokens = make_users(shopd.port(), "late_", 1);
  http_client c{shopd.port()};
  create_product_and_sale(c, shopd.admin_token(), "late-1", 10, "sale-late", 10, 1);
  ASSERT_EQ(::kill(shopd.pid(), SIGTERM), 0);
  EXPECT_TRUE(eventually(5s, [&] { return c.request("GET", "/readyz").status == 503; }));
  rlimit limit{};
  ASSERT_EQ(prlimit(shopd.pid(), RLIMIT_FSIZE, nullptr, &limit), 0);
  limit.rlim_cur = 1;
  ASSERT_EQ(prlimit(shopd.pid(), RLIMIT_FSIZE, &limit, nullptr), 0);
  EXPECT_EQ(purchase(c, tokens[0], "sale-late").status, 503);
  EXPECT_EQ(shopd.wait_exit(15s), 3);
  ASSERT_TRUE(shopd.start());
  http_client c2{shopd.port()};
  EXPECT_EQ(get_inventory(c2, "late-1"), (inventory{10, 0, 0}));
}

// Here: a WAL sync that fails (fdatasync answers EIO, as on a disk whose
// writeback failed; a preloaded library makes it,
// tests/fixtures/fail_wal_sync.cpp). The refused purchase's record was
// appended to the WAL before the sync failed: replayed at the restart, it
// would be an order its buyer was told had failed, holding a unit and the
// buyer's per-user limit (storage/wal_files.hpp).
TEST(Crash, test_a_purchase_refused_by_a_failed_wal_sync_is_no_order_after_the_restart) {
  temp_dir dir;
  temp_dir switches;
  auto trigger = switches.path() + "/fail-wal-sync";
  shopd_process shopd{dir.path(), {}, with_wal_preload("SHOP_TEST_FAIL_WAL_SYNC=" + trigger)};
  expect_a_refused_purchase_gone_after_exit_3(
    shopd, "sync-1", [&] { std::ofstream{trigger}; },
    [&] { std::filesystem::remove(trigger); });
}
