// shop-bench: the load tester's harness for shopd. See bench/README.md.
//
//   shop-bench http --target URL --path /healthz --connections C --duration D [--rate R]
//   shop-bench flash-sale --target URL[,URL...] --admin-password PW --users N --stock N
//              --per-user-limit L --connections C [--rate R] [--duration D]
//              [--skus K --zipf S] [--json FILE] [--plot FILE.png]
//   shop-bench shop --target URL[,URL...] --admin-password PW --users N --products P
//              --connections C [--rate R] [--duration D] [--mix ...] [--pay-share S]

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>

#include <CLI/CLI.hpp>
#include <simdjson.h>

#include "bench/shop_bench/histogram.hpp"
#include "bench/shop_bench/load.hpp"
#include "bench/shop_bench/report.hpp"
#include "bench/shop_bench/scenario.hpp"

using namespace shop::bench;

namespace {

int run_http(const common_flags& f, const std::vector<target>& targets, const std::string& path) {
  run_report rep;
  rep.mode = "http";
  rep.kinds.push_back({"GET " + path, histogram{}, {}, 0});
  auto opts = make_options(f, targets);
  if (opts.duration.count() == 0)
    opts.duration = std::chrono::seconds{10};
  auto t0 = std::chrono::steady_clock::now();
  auto& k = rep.kinds[0];
  auto summary = run_load(
    opts,
    [&](size_t conn) -> std::optional<request> {
      return make("GET", path, {}, {}, conn == SIZE_MAX ? 0 : conn);
    },
    [&](const request&, const response& res) {
      k.latency.record(res.latency_us);
      ++k.outcomes[res.status >= 200 && res.status < 300 ? ok_2xx : classify(res.status, res.body)];
      ++k.count;
      if (!f.plot.empty())
        rep.samples.emplace_back(
          std::chrono::duration<float>(res.done - t0).count(), static_cast<float>(res.latency_us));
    },
    [&] { return "p99 " + std::to_string(k.latency.value_at(99) / 1000.0).substr(0, 6) + " ms"; });
  rep.seconds = summary.seconds;
  rep.facts["load"] = f.rate > 0 ? "open loop at " + std::to_string(static_cast<int64_t>(f.rate)) + " req/s"
                                 : "closed loop, " + std::to_string(f.connections) + " connections";
  rep.print_table();
  write_outputs(rep, f);
  return 0;
}

struct flash_flags {
  std::string admin_password;
  size_t users = 1000;
  int64_t stock = 100;
  int64_t per_user_limit = 1;
  size_t skus = 1;
  double zipf = 0;
  std::string run_id;
};

int run_flash_sale(const common_flags& f, const std::vector<target>& targets, flash_flags ff) {
  auto T = targets.size();
  if (ff.run_id.empty())
    ff.run_id = std::to_string(std::random_device{}() % 1000000);
  run_report rep;
  rep.mode = "flash-sale";
  auto setup_start = std::chrono::steady_clock::now();
  // 1. Admin tokens.
  std::vector<std::string> admin;
  if (!admin_logins(targets, ff.admin_password, admin))
    return 2;
  // 2. The hot SKUs and their sales.
  std::vector<std::string> sales;
  for (size_t k = 0; k < ff.skus; ++k) {
    auto sku = "bench-" + ff.run_id + "-" + std::to_string(k);
    auto sale = "sale-" + ff.run_id + "-" + std::to_string(k);
    auto auth = "Authorization: Bearer " + admin[0];
    auto res = send_all(
      targets,
      {make("POST", "/api/v1/products",
            R"({"sku":")" + sku + R"(","name":"Bench item","price_cents":1000,"stock":)"
              + std::to_string(ff.stock) + "}",
            {auth}),
       make("POST", "/api/v1/flash-sales",
            R"({"id":")" + sale + R"(","sku":")" + sku + R"(","price_cents":500,"quantity":)"
              + std::to_string(ff.stock) + R"(,"per_user_limit":)" + std::to_string(ff.per_user_limit)
              + R"(,"starts_at":"2020-01-01T00:00:00Z","ends_at":"2100-01-01T00:00:00Z"})",
            {auth})},
      1);
    for (auto& r : res)
      if (r.status != 201) {
        std::fprintf(stderr, "creating the sale failed: %d %s\n", r.status, r.body.c_str());
        return 2;
      }
    sales.push_back(sale);
  }
  // 3. Users: register, then log in at the user's own target.
  std::vector<std::string> tokens;
  if (!make_users(targets, "b" + ff.run_id + "_", ff.users, f.connections, tokens))
    return 2;
  auto setup_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - setup_start).count();
  std::fprintf(stderr, "setup: %zu users registered and logged in, %zu sale(s), in %.1f s\n",
               ff.users, ff.skus, setup_secs);
  // 4. The burst: every user tries to buy one unit (once, or until --duration ends).
  rep.kinds.push_back({"purchase", histogram{}, {}, 0});
  auto& k = rep.kinds[0];
  zipf_sampler pick_sale{ff.skus, ff.zipf};
  std::mt19937_64 rng{42};
  std::vector<size_t> next_user(T, 0); // closed loop: per target
  uint64_t open_next = 0;
  bool cycle = f.duration > 0;
  struct win { std::string order_id; size_t user; size_t sale; };
  std::vector<win> wins;
  auto t0 = std::chrono::steady_clock::now();
  auto purchase_for = [&](size_t user) {
    auto sale = pick_sale(rng);
    auto r = make("POST", "/api/v1/flash-sales/" + sales[sale] + "/purchase", R"({"quantity":1})",
                  {"Authorization: Bearer " + tokens[user]}, user % T);
    r.tag = user * 1024 + sale;
    return r;
  };
  auto summary = run_load(
    make_options(f, targets),
    [&](size_t conn) -> std::optional<request> {
      if (conn == SIZE_MAX) { // open loop
        if (open_next >= ff.users && !cycle)
          return std::nullopt;
        return purchase_for(open_next++ % ff.users);
      }
      auto t = conn % T;
      auto per_target = (ff.users + T - 1 - t) / T; // users i with i % T == t
      if (per_target == 0 || (next_user[t] >= per_target && !cycle))
        return std::nullopt;
      return purchase_for((next_user[t]++ % per_target) * T + t);
    },
    [&](const request& r, const response& res) {
      k.latency.record(res.latency_us);
      auto o = classify(res.status, res.body);
      ++k.outcomes[o];
      ++k.count;
      if (o == ok_201)
        wins.push_back({json_string(res.body, "order_id"), r.tag / 1024, r.tag % 1024});
      if (!f.plot.empty())
        rep.samples.emplace_back(std::chrono::duration<float>(res.done - t0).count(),
                                 static_cast<float>(res.latency_us));
    },
    [&] { return "p99 " + std::to_string(k.latency.value_at(99) / 1000.0).substr(0, 6) + " ms"; });
  rep.seconds = summary.seconds;
  rep.facts["setup_seconds"] = std::to_string(setup_secs);
  rep.facts["load"] = f.rate > 0 ? "open loop at " + std::to_string(static_cast<int64_t>(f.rate)) + " req/s"
                                 : "closed loop, " + std::to_string(f.connections) + " connections";
  // 5. The audit: read everything back and check the invariants.
  std::vector<std::string> failures;
  std::vector<int64_t> units(ff.skus, 0);
  // Requests without an answer (transport errors, timeouts) may or may not
  // have bought a unit: they widen the check, they do not break it.
  int64_t unknown = static_cast<int64_t>(k.outcomes[transport_error]);
  if (wins.empty())
    failures.push_back("no purchase succeeded, so nothing could be verified");
  std::map<std::pair<size_t, size_t>, int64_t> per_user;
  std::set<std::string> ids;
  for (auto& w : wins) {
    ++units[w.sale];
    if (++per_user[{w.user, w.sale}] > ff.per_user_limit)
      failures.push_back("user " + std::to_string(w.user) + " got more than the limit in sale " + sales[w.sale]);
    if (!ids.insert(w.order_id).second)
      failures.push_back("order id answered twice: " + w.order_id);
  }
  for (size_t s = 0; s < ff.skus; ++s) {
    auto sku = "bench-" + ff.run_id + "-" + std::to_string(s);
    auto res = send_all(targets, {make("GET", "/api/v1/inventory/" + sku), make("GET", "/api/v1/flash-sales/" + sales[s])}, 1);
    auto available = json_int(res[0].body, "available"), reserved = json_int(res[0].body, "reserved"),
         sold = json_int(res[0].body, "sold"), remaining = json_int(res[1].body, "remaining");
    if (available < 0 || reserved < 0 || sold < 0) {
      failures.push_back("cannot read inventory of " + sku + ": " + res[0].body);
      continue;
    }
    if (unknown == 0 && units[s] != reserved + sold)
      failures.push_back(sku + ": units in 201 answers " + std::to_string(units[s]) + " != reserved + sold " + std::to_string(reserved + sold));
    if (unknown > 0 && (reserved + sold < units[s] || reserved + sold > units[s] + unknown))
      failures.push_back(sku + ": reserved + sold " + std::to_string(reserved + sold) + " outside [" + std::to_string(units[s]) + ", " + std::to_string(units[s] + unknown) + "] (201 units, plus requests without an answer)");
    if (available + reserved + sold != ff.stock)
      failures.push_back(sku + ": available + reserved + sold = " + std::to_string(available + reserved + sold) + " != stocked " + std::to_string(ff.stock));
    if (remaining != ff.stock - reserved - sold)
      failures.push_back(sales[s] + ": remaining " + std::to_string(remaining) + " != quantity - reserved - sold");
    rep.facts["inventory " + sku] = "available " + std::to_string(available) + ", reserved " + std::to_string(reserved) + ", sold " + std::to_string(sold);
  }
  std::vector<request> checks;
  for (size_t i = 0; i < wins.size(); ++i) {
    auto r = make("GET", "/api/v1/orders/" + wins[i].order_id, {}, {"Authorization: Bearer " + tokens[wins[i].user]}, wins[i].user % T);
    checks.push_back(std::move(r));
  }
  auto found = send_all(targets, std::move(checks), f.connections);
  order_reads reads;
  for (auto& r : found)
    reads.count(r);
  reads.report(failures);
  return finish_audited_run(rep, failures, f);
}

} // namespace

/// Raises the soft open-file limit to the hard one; returns the soft limit.
uint64_t raise_open_file_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised{rl.rlim_max, rl.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
      rl.rlim_cur = rl.rlim_max;
  }
  return static_cast<uint64_t>(rl.rlim_cur);
}

int main(int argc, char** argv) {
  CLI::App app{"shop-bench: load tests for shopd (closed or open loop, with a post-run audit)"};
  app.require_subcommand(1);
  common_flags f;
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("--target", f.targets, "base URL(s), comma-separated: http://host:port[,...]");
    sub->add_option("--connections", f.connections, "connections (closed loop: concurrency)")->check(CLI::Range(1, 100000));
    sub->add_option("--rate", f.rate, "open loop: requests per second, fixed schedule, latency from the intended send time");
    sub->add_option("--duration", f.duration, "seconds of load (flash-sale: users keep retrying until then)");
    sub->add_option("--timeout", f.timeout, "seconds before a request counts as failed");
    sub->add_option("--json", f.json, "write the results as JSON to this file");
    sub->add_option("--plot", f.plot, "draw latency over time and by percentile to this PNG (needs gnuplot)");
  };
  auto http = app.add_subcommand("http", "wrk-like: one GET path");
  add_common(http);
  std::string path = "/healthz";
  http->add_option("--path", path, "the path to GET");
  auto flash = app.add_subcommand("flash-sale", "N users race for the stock of hot SKUs; then an audit");
  add_common(flash);
  flash_flags ff;
  flash->add_option("--admin-password", ff.admin_password, "the node's admin password")->required();
  flash->add_option("--users", ff.users, "buyers (registered and logged in before the burst)")->check(CLI::Range(1, 10'000'000));
  flash->add_option("--stock", ff.stock, "units of each hot SKU (all of them on sale)")->check(CLI::Range(1, 1'000'000'000));
  flash->add_option("--per-user-limit", ff.per_user_limit, "units one user may buy in a sale")->check(CLI::Range(1, 10000));
  flash->add_option("--skus", ff.skus, "number of hot SKUs, each with its own sale")->check(CLI::Range(1, 1000));
  flash->add_option("--zipf", ff.zipf, "skew of the buyers' choice among SKUs (0: uniform)");
  flash->add_option("--run-id", ff.run_id, "suffix of created ids (default: random)");
  auto shop_cmd = app.add_subcommand("shop", "a storefront mix: browse, search, view, cart, checkout, pay; then an audit");
  add_common(shop_cmd);
  shop_flags sf;
  shop_cmd->add_option("--admin-password", sf.admin_password, "the node's admin password")->required();
  shop_cmd->add_option("--users", sf.users, "shoppers (registered and logged in before the run)")->check(CLI::Range(1, 10'000'000));
  shop_cmd->add_option("--products", sf.products, "products in the catalog (created before the run)")->check(CLI::Range(1, 1'000'000));
  shop_cmd->add_option("--stock", sf.stock, "units of each product")->check(CLI::Range(1, 1'000'000'000));
  shop_cmd->add_option("--mix", sf.mix, "weights of the kinds a user starts: browse, search, view, cart, checkout");
  shop_cmd->add_option("--pay-share", sf.pay_share, "share of created orders that are paid")->check(CLI::Range(0.0, 1.0));
  shop_cmd->add_option("--payment-secret", sf.payment_secret, "without the node's sandbox gateway: sign payment callbacks with this key");
  shop_cmd->add_option("--run-id", sf.run_id, "suffix of created ids (default: random)");
  CLI11_PARSE(app, argc, argv);
  // Every connection is a file descriptor: a login shell's soft limit
  // (1,024) would fail the 1,000th connect with a bare EMFILE.
  auto fd_limit = raise_open_file_limit();
  if (f.connections + 64 > fd_limit) {
    std::fprintf(stderr,
                 "--connections %zu needs more file descriptors than the open-file limit allows "
                 "(%llu, with 64 for everything else); raise it (ulimit -n) or use fewer\n",
                 static_cast<size_t>(f.connections), static_cast<unsigned long long>(fd_limit));
    return 2;
  }
  std::vector<target> targets;
  if (!parse_targets(f.targets, targets)) {
    std::fprintf(stderr, "bad --target '%s': expected http://host:port[,http://host:port...]\n", f.targets.c_str());
    return 2;
  }
  if (*http)
    return run_http(f, targets, path);
  if (*shop_cmd)
    return run_shop(f, targets, sf);
  return run_flash_sale(f, targets, ff);
}
