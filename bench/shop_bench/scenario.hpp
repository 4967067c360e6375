#pragma once
// What the scenarios of shop-bench share: the load flags every subcommand
// takes, request builders, a batch sender for setup and audit, and small
// readers of JSON answers. shop-bench is single-threaded (one libuv loop).

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/shop_bench/load.hpp"
#include "bench/shop_bench/report.hpp"

namespace shop::bench {

struct common_flags {
  std::string targets = "http://127.0.0.1:8080";
  size_t connections = 64;
  double rate = 0;
  double duration = 0;
  double timeout = 30;
  std::string json;
  std::string plot;
};

load_options make_options(const common_flags& f, std::vector<target> targets);

/// Sends a list of requests (closed loop, `connections` at a time) and returns the answers in order.
std::vector<response> send_all(const std::vector<target>& targets, std::vector<request> reqs,
                               size_t connections);

request make(std::string method, std::string path, std::string body = {},
             std::vector<std::string> headers = {}, size_t target = 0);

/// Zipf(s) over n items: item k (0-based) has weight 1/(k+1)^s.
class zipf_sampler {
public:
  zipf_sampler(size_t n, double s);
  size_t operator()(std::mt19937_64& rng) const;

private:
  std::vector<double> cdf_;
};

/// A top-level string field of a JSON object; empty if absent.
std::string json_string(const std::string& body, const char* key);
/// A top-level integer field of a JSON object; -1 if absent.
int64_t json_int(const std::string& body, const char* key);

/// Writes the run's --json and --plot outputs, if asked for (reports failures on stderr).
void write_outputs(const run_report& rep, const common_flags& f);

/// The audit's reads of orders answered 201: a 404 means the order is lost; any
/// other answer but 200 (a 503 or a timeout) only that it could not be read.
struct order_reads {
  size_t lost = 0, unreadable = 0;
  /// Counts `r`; true if it is a 200 whose body can be checked.
  bool count(const response& r);
  void report(std::vector<std::string>& failures) const;
};

/// Ends an audited run: prints the table, each failure and `AUDIT PASS|FAIL`,
/// writes the outputs, and returns the exit code (0 on PASS, 1 on FAIL).
int finish_audited_run(run_report& rep, const std::vector<std::string>& failures,
                       const common_flags& f);

/// Logs in as admin at every target (each node signs its own tokens unless
/// they share a secret). Returns false (after printing why) on failure.
bool admin_logins(const std::vector<target>& targets, const std::string& password,
                  std::vector<std::string>& tokens);

/// Registers and logs in `n` users named `<prefix><i>`, user i at target
/// i % targets. Returns false (after printing why) on failure.
bool make_users(const std::vector<target>& targets, const std::string& prefix, size_t n,
                size_t connections, std::vector<std::string>& tokens);

} // namespace shop::bench

namespace shop::bench {

/// `shop-bench shop`: a storefront mix over a catalog of many products.
struct shop_flags {
  std::string admin_password;
  size_t users = 1000;
  size_t products = 100;
  /// Units of each product: enough that the mix rarely runs out.
  int64_t stock = 1'000'000;
  /// Weights of the request kinds a user starts (browse + search are the
  /// storefront's "browse 10").
  std::string mix = "browse=5,search=5,view=3,cart=2,checkout=1";
  /// Share of created orders that are paid (the rest wait and expire).
  double pay_share = 0.8;
  /// Signs gateway callbacks with this key when the node has no sandbox gateway.
  std::string payment_secret;
  std::string run_id;
};

int run_shop(const common_flags& f, const std::vector<target>& targets, shop_flags sf);

} // namespace shop::bench
