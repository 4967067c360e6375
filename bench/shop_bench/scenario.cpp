// Helpers shared by the scenarios; see scenario.hpp.

#include "bench/shop_bench/scenario.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include <simdjson.h>

namespace shop::bench {

namespace {

/// shop-bench is single-threaded: one parser serves every answer.
simdjson::dom::parser& parser_of_answers() {
  static simdjson::dom::parser parser;
  return parser;
}

} // namespace

std::string json_string(const std::string& body, const char* key) {
  auto& parser = parser_of_answers();
  simdjson::dom::element doc;
  std::string_view v;
  if (parser.parse(body).get(doc) || doc[key].get_string().get(v))
    return {};
  return std::string{v};
}

int64_t json_int(const std::string& body, const char* key) {
  auto& parser = parser_of_answers();
  simdjson::dom::element doc;
  int64_t v = -1;
  if (parser.parse(body).get(doc) || doc[key].get_int64().get(v))
    return -1;
  return v;
}


load_options make_options(const common_flags& f, std::vector<target> targets) {
  load_options o;
  o.targets = std::move(targets);
  o.connections = f.connections;
  o.rate = f.rate;
  o.duration = std::chrono::milliseconds{static_cast<int64_t>(f.duration * 1000)};
  o.timeout = std::chrono::milliseconds{static_cast<int64_t>(f.timeout * 1000)};
  o.progress = true;
  return o;
}

/// Sends a list of requests (closed loop, `connections` at a time) and returns the answers in order.
std::vector<response> send_all(const std::vector<target>& targets, std::vector<request> reqs,
                               size_t connections) {
  std::vector<response> out(reqs.size());
  std::vector<std::vector<size_t>> by_target(targets.size());
  for (size_t i = 0; i < reqs.size(); ++i)
    by_target[reqs[i].target % targets.size()].push_back(i);
  std::vector<size_t> next(targets.size(), 0);
  load_options o;
  o.targets = targets;
  o.connections = std::max<size_t>(targets.size(), std::min(connections, reqs.size()));
  run_load(
    o,
    [&](size_t conn) -> std::optional<request> {
      auto t = conn % targets.size();
      if (next[t] >= by_target[t].size())
        return std::nullopt;
      auto r = reqs[by_target[t][next[t]++]];
      r.tag = by_target[t][next[t] - 1];
      return r;
    },
    [&](const request& r, const response& res) { out[r.tag] = res; });
  return out;
}

request make(std::string method, std::string path, std::string body,
             std::vector<std::string> headers, size_t target) {
  request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.body = std::move(body);
  r.headers = std::move(headers);
  r.target = target;
  return r;
}


void write_outputs(const run_report& rep, const common_flags& f) {
  if (!f.json.empty() && !rep.write_json(f.json))
    std::fprintf(stderr, "cannot write %s\n", f.json.c_str());
  if (!f.plot.empty())
    if (auto err = rep.write_plot(f.plot); !err.empty())
      std::fprintf(stderr, "plot: %s\n", err.c_str());
}

bool order_reads::count(const response& r) {
  if (r.status == 200)
    return true;
  ++(r.status == 404 ? lost : unreadable);
  return false;
}

void order_reads::report(std::vector<std::string>& failures) const {
  if (lost > 0)
    failures.push_back(std::to_string(lost) + " order(s) answered 201 do not exist (404)");
  if (unreadable > 0)
    failures.push_back(std::to_string(unreadable)
                       + " order(s) answered 201 could not be read (no 200 or 404 answer)");
}

int finish_audited_run(run_report& rep, const std::vector<std::string>& failures,
                       const common_flags& f) {
  rep.facts["audit"] = failures.empty() ? "PASS" : "FAIL";
  rep.print_table();
  for (auto& msg : failures)
    std::printf("audit: %s\n", msg.c_str());
  std::printf("AUDIT %s\n", failures.empty() ? "PASS" : "FAIL");
  write_outputs(rep, f);
  return failures.empty() ? 0 : 1;
}

zipf_sampler::zipf_sampler(size_t n, double s) {
  double sum = 0;
  for (size_t k = 0; k < n; ++k)
    cdf_.push_back(sum += 1.0 / std::pow(static_cast<double>(k + 1), s));
  for (auto& c : cdf_)
    c /= sum;
}

size_t zipf_sampler::operator()(std::mt19937_64& rng) const {
  double u = std::uniform_real_distribution<double>{0, 1}(rng);
  return static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
}

bool admin_logins(const std::vector<target>& targets, const std::string& password,
                  std::vector<std::string>& tokens) {
  auto T = targets.size();
  std::vector<request> reqs;
  for (size_t t = 0; t < T; ++t)
    reqs.push_back(make("POST", "/api/v1/auth/login",
                        R"({"username":"admin","password":")" + password + R"("})", {}, t));
  auto res = send_all(targets, reqs, T);
  tokens.assign(T, {});
  for (size_t t = 0; t < T; ++t) {
    tokens[t] = json_string(res[t].body, "token");
    if (tokens[t].empty()) {
      std::fprintf(stderr, "admin login at target %zu failed: %d %s\n", t, res[t].status,
                   res[t].body.c_str());
      return false;
    }
  }
  return true;
}

namespace {

/// send_all, re-sending every request answered 503 (the node refused it at
/// once, e.g. its password hashers were busy) after the Retry-After second,
/// for at most a minute.
std::vector<response> send_all_retrying_503(const std::vector<target>& targets,
                                            const std::vector<request>& reqs,
                                            size_t connections) {
  auto out = send_all(targets, reqs, connections);
  for (int round = 0; round < 60; ++round) {
    std::vector<size_t> again;
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].status == 503)
        again.push_back(i);
    if (again.empty())
      break;
    std::this_thread::sleep_for(std::chrono::seconds{1});
    std::vector<request> retry;
    for (auto i : again)
      retry.push_back(reqs[i]);
    auto answers = send_all(targets, std::move(retry), connections);
    for (size_t j = 0; j < again.size(); ++j)
      out[again[j]] = std::move(answers[j]);
  }
  return out;
}

} // namespace

bool make_users(const std::vector<target>& targets, const std::string& prefix, size_t n,
                size_t connections, std::vector<std::string>& tokens) {
  auto T = targets.size();
  std::vector<request> reg, login;
  for (size_t i = 0; i < n; ++i) {
    auto body = R"({"username":")" + prefix + std::to_string(i) + R"(","password":"bench-pw-)"
                + std::to_string(i) + R"("})";
    reg.push_back(make("POST", "/api/v1/users", body, {}, i % T));
    login.push_back(make("POST", "/api/v1/auth/login", body, {}, i % T));
  }
  auto r1 = send_all_retrying_503(targets, reg, connections);
  for (auto& r : r1)
    if (r.status != 201 && r.status != 409) {
      std::fprintf(stderr, "registering users failed: %d %s\n", r.status, r.body.c_str());
      return false;
    }
  auto r2 = send_all_retrying_503(targets, login, connections);
  tokens.assign(n, {});
  for (size_t i = 0; i < n; ++i) {
    tokens[i] = json_string(r2[i].body, "token");
    if (tokens[i].empty()) {
      std::fprintf(stderr, "login failed: %d %s\n", r2[i].status, r2[i].body.c_str());
      return false;
    }
  }
  return true;
}

} // namespace shop::bench
