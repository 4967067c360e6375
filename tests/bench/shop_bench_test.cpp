// shop-bench's own correctness: percentiles, coordinated omission, audit.

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <thread>

#include "bench/shop_bench/histogram.hpp"
#include "bench/shop_bench/load.hpp"
#include "tests/fixtures/fake_http_server.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop::bench;
using namespace shop::test;
using namespace std::chrono_literals;

TEST(Histogram, test_percentiles_match_a_sorted_reference_within_the_stated_precision) {
  std::mt19937_64 rng{7};
  std::lognormal_distribution<double> dist{7.0, 1.5}; // ~1 ms median, long tail
  histogram h;
  std::vector<int64_t> values;
  for (int i = 0; i < 200000; ++i) {
    auto v = static_cast<int64_t>(dist(rng));
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  // Percentiles in hundredths of a percent, so the reference rank is exact integer math.
  for (uint64_t q : {0, 100, 2500, 5000, 9000, 9900, 9990, 9999, 10000}) {
    double p = static_cast<double>(q) / 100.0;
    auto rank = std::max<uint64_t>(1, (values.size() * q + 9999) / 10000);
    auto ref = values[rank - 1];
    auto got = h.value_at(p);
    EXPECT_GE(got, ref) << "p" << p;
    EXPECT_LE(static_cast<double>(got - ref), static_cast<double>(ref) * h.relative_error() + 1)
      << "p" << p << " ref " << ref << " got " << got;
  }
  EXPECT_EQ(h.count(), values.size());
  // Exact ranks at round counts: p99.9 of 1000 values is the 999th, not the max.
  histogram small;
  for (int v = 1; v <= 1000; ++v)
    small.record(v);
  EXPECT_EQ(small.value_at(99.9), 999);
  EXPECT_EQ(small.value_at(50), 500);
  EXPECT_EQ(h.max(), values.back());
  EXPECT_LE(h.relative_error(), 0.001);
}

// A server that stalls for 1 s: the open loop reports the stall in its
// percentiles (latency from the intended send time), the closed loop hides it.
TEST(LoadEngine, test_open_loop_reports_a_server_stall_that_closed_loop_hides) {
  auto start = std::chrono::steady_clock::now();
  fake_http_server server{[start](const std::string&, const std::string&, const std::string&) {
    auto t = std::chrono::steady_clock::now() - start;
    if (t > 700ms && t < 1700ms) // every answer waits until the stall ends
      std::this_thread::sleep_until(start + 1700ms);
    return fake_reply{200, "{}"};
  }};
  load_options opts;
  opts.targets = {target{"127.0.0.1", server.port()}};
  opts.connections = 8;
  opts.rate = 500;
  opts.duration = 3000ms;
  histogram open;
  run_load(opts, [](size_t) -> std::optional<request> { return request{}; },
           [&](const request&, const response& r) {
             EXPECT_EQ(r.status, 200);
             open.record(r.latency_us);
           });
  // The stall covers about a third of the schedule, so p99 sits near 1 s.
  EXPECT_GT(open.value_at(99), 700'000) << "p99 " << open.value_at(99) << " us";
  EXPECT_GT(open.value_at(75), 100'000) << "p75 " << open.value_at(75) << " us";

  // The same stall under a closed loop: only the requests in flight see it.
  auto start2 = std::chrono::steady_clock::now();
  fake_http_server server2{[start2](const std::string&, const std::string&, const std::string&) {
    auto t = std::chrono::steady_clock::now() - start2;
    if (t > 700ms && t < 1700ms)
      std::this_thread::sleep_until(start2 + 1700ms);
    return fake_reply{200, "{}"};
  }};
  opts.targets = {target{"127.0.0.1", server2.port()}};
  opts.rate = 0;
  histogram closed;
  run_load(opts, [](size_t) -> std::optional<request> { return request{}; },
           [&](const request&, const response& r) { closed.record(r.latency_us); });
  EXPECT_LT(closed.value_at(99), 500'000) << "closed-loop p99 " << closed.value_at(99) << " us";
}

namespace {

struct run_result {
  int exit_code = -1;
  std::string output;
};

/// Runs shop-bench with `args`; `shell_prefix` runs first in the same shell
/// (e.g. a `ulimit`).
run_result run_bench(const std::string& args, const std::string& shell_prefix = {}) {
  run_result r;
  auto cmd = shell_prefix + std::string{SHOP_BENCH_PATH} + " " + args + " 2>&1";
  auto pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  while (auto n = fread(buf, 1, sizeof(buf), pipe))
    r.output.append(buf, n);
  auto status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

} // namespace

TEST(Audit, test_the_audit_fails_on_a_server_that_oversells) {
  std::atomic<int> orders{0};
  // Says yes to every purchase, but its inventory claims only 10 units went.
  fake_http_server liar{[&](const std::string& method, const std::string& path, const std::string&) {
    if (path == "/api/v1/auth/login")
      return fake_reply{200, R"({"token":"t"})"};
    if (method == "POST" && path.find("/purchase") != std::string::npos)
      return fake_reply{201, R"({"order_id":"o)" + std::to_string(++orders) + R"("})"};
    if (method == "POST")
      return fake_reply{201, "{}"};
    if (path.rfind("/api/v1/inventory/", 0) == 0)
      return fake_reply{200, R"({"available":0,"reserved":10,"sold":0})"};
    if (path.rfind("/api/v1/flash-sales/", 0) == 0)
      return fake_reply{200, R"({"remaining":0})"};
    return fake_reply{200, "{}"};
  }};
  auto r = run_bench("flash-sale --target " + liar.url()
                     + " --admin-password x --users 50 --stock 10 --per-user-limit 1 --connections 8");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("AUDIT FAIL"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("units in 201 answers 50 != reserved + sold 10"), std::string::npos)
    << r.output;
}

TEST(Audit, test_the_audit_fails_when_nothing_could_be_verified) {
  // A node that refuses every purchase: zero 201 answers prove nothing.
  fake_http_server refuser{[](const std::string& method, const std::string& path, const std::string&) {
    if (path == "/api/v1/auth/login")
      return fake_reply{200, R"({"token":"t"})"};
    if (method == "POST" && path.find("/purchase") != std::string::npos)
      return fake_reply{503, R"({"error":{"code":"unavailable"}})"};
    if (method == "POST")
      return fake_reply{201, "{}"};
    if (path.rfind("/api/v1/inventory/", 0) == 0)
      return fake_reply{200, R"({"available":10,"reserved":0,"sold":0})"};
    return fake_reply{200, R"({"remaining":10})"};
  }};
  auto r = run_bench("flash-sale --target " + refuser.url()
                     + " --admin-password x --users 20 --stock 10 --connections 4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no purchase succeeded"), std::string::npos) << r.output;
}

TEST(LoadEngine, test_open_loop_with_fewer_connections_than_targets_still_finishes) {
  fake_http_server a{[](const std::string&, const std::string&, const std::string&) { return fake_reply{}; }};
  fake_http_server b{[](const std::string&, const std::string&, const std::string&) { return fake_reply{}; }};
  load_options opts;
  opts.targets = {target{"127.0.0.1", a.port()}, target{"127.0.0.1", b.port()}};
  opts.connections = 1;
  opts.rate = 200;
  opts.duration = 500ms;
  int answered = 0;
  size_t i = 0;
  run_load(
    opts,
    [&](size_t) -> std::optional<request> {
      request r;
      r.target = i++;
      return r;
    },
    [&](const request&, const response& res) { answered += res.status == 200 ? 1 : 0; });
  EXPECT_GT(answered, 50);
}

// Each connection is a file descriptor. shop-bench raises its soft limit to
// the hard one (a login shell's 1,024 would fail the 1,000th connect), and
// says so plainly when the hard limit is too low for --connections.
TEST(LoadEngine, test_connections_beyond_the_open_file_limit_are_a_clear_error) {
  fake_http_server ok{[](const std::string&, const std::string&, const std::string&) { return fake_reply{}; }};
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 1024)
    GTEST_SKIP() << "the hard limit (" << rl.rlim_max << ") is below this test's connections";
  auto raised = run_bench("http --target " + ok.url() + " --connections 400 --duration 0.3",
                          "ulimit -S -n 256 && ");
  EXPECT_EQ(raised.exit_code, 0) << raised.output;
  auto too_many = run_bench("http --target " + ok.url() + " --connections 400 --duration 0.3",
                            "ulimit -n 256 && ");
  EXPECT_EQ(too_many.exit_code, 2) << too_many.output;
  EXPECT_NE(too_many.output.find("--connections 400 needs more file descriptors than the "
                                 "open-file limit allows (256"),
            std::string::npos)
    << too_many.output;
}

TEST(Audit, test_a_flash_sale_against_shopd_passes_the_audit) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  auto url = "http://127.0.0.1:" + std::to_string(shopd.port());
  auto r = run_bench("flash-sale --target " + url + " --admin-password "
                     + shopd_process::admin_password
                     + " --users 600 --stock 200 --per-user-limit 2 --connections 32 --json "
                     + dir.path() + "/out.json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("AUDIT PASS"), std::string::npos) << r.output;
  // 600 buyers, 200 units: exactly 200 winners, 400 sold out.
  FILE* f = std::fopen((dir.path() + "/out.json").c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[4096] = {};
  auto n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  std::string json{buf, n};
  EXPECT_NE(json.find(R"("201":200)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("409 sold_out":400)"), std::string::npos) << json;
}

namespace {

std::string read_file(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[4096];
    while (auto n = std::fread(buf, 1, sizeof(buf), f))
      out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

} // namespace

TEST(Audit, test_a_storefront_run_against_shopd_passes_the_audit_in_both_payment_modes) {
  // Payments through the node's sandbox gateway, then through callbacks that
  // shop-bench signs as a gateway would.
  for (bool sandbox : {true, false}) {
    temp_dir dir;
    std::vector<std::string> args{"--payment-secret", "bench-test-secret"};
    if (sandbox)
      args.push_back("--sandbox-payments");
    shopd_process shopd{dir.path(), args};
    ASSERT_TRUE(shopd.start());
    auto url = "http://127.0.0.1:" + std::to_string(shopd.port());
    auto r = run_bench("shop --target " + url + "," + url + " --admin-password "
                       + shopd_process::admin_password
                       + " --users 60 --products 30 --connections 8 --duration 1.5"
                       + (sandbox ? "" : " --payment-secret bench-test-secret") + " --json "
                       + dir.path() + "/out.json");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("AUDIT PASS"), std::string::npos) << r.output;
    auto json = read_file(dir.path() + "/out.json");
    // Every kind of request was made, and none failed.
    for (auto kind : {"browse", "search", "view", "cart", "checkout", "pay", "pay-complete"})
      EXPECT_NE(json.find(std::string{R"("name":")"} + kind + "\""), std::string::npos)
        << kind << " " << json;
    for (auto bad : {R"x("409 (other)":0)x", R"x("4xx (other)":0)x", R"x("5xx (other)":0)x",
                     R"x("errors":0)x"}) {
      size_t n = 0;
      for (auto at = json.find(bad); at != std::string::npos; at = json.find(bad, at + 1))
        ++n;
      EXPECT_EQ(n, 7u) << bad << " " << json;
    }
    EXPECT_EQ(json.find(" 0 paid"), std::string::npos) << json;
  }
}

TEST(Audit, test_the_storefront_audit_fails_when_paid_units_are_not_sold) {
  // Answers like a shop, but its inventory never records a sale.
  std::atomic<int> orders{0};
  fake_http_server liar{[&](const std::string& method, const std::string& path, const std::string&) {
    if (path == "/api/v1/auth/login")
      return fake_reply{200, R"({"token":"t"})"};
    if (method == "POST" && path == "/api/v1/orders")
      return fake_reply{201, R"({"order_id":"o)" + std::to_string(++orders)
                               + R"(","items":[{"sku":"pfixed-0","quantity":1}]})"};
    if (method == "POST" && path.size() > 4 && path.compare(path.size() - 4, 4, "/pay") == 0) {
      auto id = path.substr(15, path.size() - 19); // /api/v1/orders/<id>/pay
      return fake_reply{200, R"({"payment_id":"pay_)" + id + R"(","order_id":")" + id
                               + R"(","amount_cents":500,"pay_url":"/complete/)" + id + "\"}"};
    }
    if (method == "POST" && path.rfind("/complete/", 0) == 0)
      return fake_reply{200, R"({"order_id":")" + path.substr(10) + R"(","status":"paid"})"};
    if (method == "POST")
      return fake_reply{201, "{}"};
    if (path.rfind("/api/v1/inventory/", 0) == 0)
      return fake_reply{200, R"({"available":1000000,"reserved":0,"sold":0})"};
    if (path.rfind("/api/v1/orders/", 0) == 0)
      return fake_reply{200, R"({"status":"paid"})"};
    return fake_reply{200, R"({"items":[],"next_cursor":null})"};
  }};
  auto r = run_bench("shop --target " + liar.url()
                     + " --admin-password x --users 20 --products 1 --run-id fixed"
                       " --mix checkout=1 --pay-share 1 --connections 4 --duration 0.5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("AUDIT FAIL"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("pfixed-0: reserved 0, sold 0; the answers imply"), std::string::npos)
    << r.output;
}
