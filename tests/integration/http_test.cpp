// The edge's HTTP/1.1 handling against a real shopd: pipelining into a
// client that reads slowly, /metrics, rate limits, the access log, the
// connection limit, the request timeout and the answer of a login.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <simdjson.h>

#include "edge/jwt.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop::test;
using namespace std::chrono_literals;

namespace {

/// A loopback TCP connection; with `rcvbuf`, a receive buffer that small.
int connect_loopback(uint16_t port, int rcvbuf = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// A small receive buffer, so the server's answers back up in its send
/// buffer unless the test reads them.
int connect_small_window(uint16_t port) {
  return connect_loopback(port, 4096);
}

struct response {
  int status = 0;
  std::string body;
};

/// Takes one complete response off the front of `buf`, if there is one.
bool take_response(std::string& buf, response& out) {
  auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos)
    return false;
  auto head = buf.substr(0, end);
  auto cl = head.find("Content-Length: ");
  size_t length = cl == std::string::npos ? 0 : std::strtoul(head.c_str() + cl + 16, nullptr, 10);
  if (buf.size() < end + 4 + length)
    return false;
  out.status = head.rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(head.c_str() + 9) : -1;
  out.body = buf.substr(end + 4, length);
  buf.erase(0, end + 4 + length);
  return true;
}

} // namespace

// Thousands of answers do not fit the socket's buffers: most are written
// only once the client reads. Every one arrives, whole and in request order,
// whether the edge answered it at once (/healthz) or an entity did (a product).
TEST(Http, test_a_pipelining_client_that_reads_slowly_gets_every_answer_in_order) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  const std::string description(4000, 'd'); // answers of ~4 KiB
  {
    http_client c{shopd.port()};
    auto r = c.request("POST", "/api/v1/products",
                       R"({"sku":"pipe-1","name":"Pipe","price_cents":100,"stock":77,"description":")"
                         + description + R"("})",
                       {bearer(shopd.admin_token())});
    ASSERT_EQ(r.status, 201) << r.body;
  }
  // ~8 MiB of answers: more than the kernel buffers of both ends hold
  // (net.ipv4.tcp_wmem allows a socket 4 MiB by default).
  constexpr int pairs = 2000;
  std::string requests;
  for (int i = 0; i < pairs; ++i)
    requests += "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /api/v1/products/pipe-1 HTTP/1.1\r\nHost: x\r\n\r\n";
  int fd = connect_small_window(shopd.port());
  ASSERT_GE(fd, 0);
  std::thread sender{[&] { // blocks while the server stops reading
    for (size_t sent = 0; sent < requests.size();) {
      auto n = ::send(fd, requests.data() + sent, requests.size() - sent, MSG_NOSIGNAL);
      if (n <= 0)
        return;
      sent += static_cast<size_t>(n);
    }
  }};
  struct closer { // also when an assertion below ends the test early
    int fd;
    std::thread& sender;
    ~closer() {
      ::shutdown(fd, SHUT_RDWR); // unblocks the sender
      sender.join();
      ::close(fd);
    }
  } close_at_end{fd, sender};
  std::this_thread::sleep_for(300ms); // let the answers back up
  std::string buf;
  int answered = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (answered < 2 * pairs && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0)
      continue;
    char tmp[1024]; // small reads: the client stays slow
    auto n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0)
      break;
    buf.append(tmp, static_cast<size_t>(n));
    response r;
    while (take_response(buf, r)) {
      ASSERT_EQ(r.status, 200) << "answer " << answered << ": " << r.body;
      if (answered % 2 == 0)
        ASSERT_EQ(r.body, R"({"status":"ok"})") << "answer " << answered;
      else
        ASSERT_EQ(json_field(r.body, "description"), description) << "answer " << answered;
      ++answered;
    }
  }
  EXPECT_EQ(answered, 2 * pairs);
  EXPECT_TRUE(buf.empty()) << buf.size() << " bytes beyond the last answer";
  EXPECT_TRUE(shopd.stop());
}

// GET /openapi.yaml serves docs/openapi.yaml as it was built: outside tools
// (client generators, API checkers) read the contract from the node itself.
TEST(Http, test_the_node_serves_its_openapi_document) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto r = c.request("GET", "/openapi.yaml");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/yaml");
  std::ifstream in{std::string{SHOP_SOURCE_DIR} + "/docs/openapi.yaml", std::ios::binary};
  ASSERT_TRUE(in) << "cannot read docs/openapi.yaml";
  std::string file{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  EXPECT_EQ(r.body, file);
  EXPECT_FALSE(r.header("traceparent").empty());
}

namespace {

/// One sample line of Prometheus text: `name{labels} value`.
struct sample {
  std::string name, labels;
  double value = 0;
};

/// The family a sample belongs to: a histogram's series drop their suffix.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    std::string s{suffix};
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      auto base = name.substr(0, name.size() - s.size());
      auto t = types.find(base);
      if (t != types.end() && t->second == "histogram")
        return base;
    }
  }
  return name;
}

} // namespace

// GET /metrics is Prometheus text format 0.0.4 that a scraper takes: every
// family has one HELP and one TYPE line before its samples, which stay
// together; names and values are well formed; a histogram's buckets never
// decrease and end in le="+Inf", equal to its _count. Every metric
// docs/operations.md lists is there with the type it says, and requests
// without a route are counted under the labels it names.
TEST(Metrics, test_metrics_are_valid_prometheus_text_with_every_documented_metric) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  create_product_and_sale(c, shopd.admin_token(), "prom-1", 10, "sale-prom", 10, 5);
  auto token = make_users(shopd.port(), "scraped_", 1)[0];
  ASSERT_EQ(purchase(c, token, "sale-prom").status, 201);
  EXPECT_EQ(c.request("GET", "/api/v1/no-such-thing").status, 404);
  {
    http_client refused{shopd.port()}; // closed after its 413
    EXPECT_EQ(refused.request("POST", "/api/v1/products", std::string(70 * 1024, 'x')).status, 413);
  }
  auto r = c.request("GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type").rfind("text/plain; version=0.0.4", 0), 0u)
    << r.header("content-type");
  std::map<std::string, std::string> types; // family -> type
  std::map<std::string, int> helps;
  std::set<std::string> finished;           // families whose samples ended
  std::string current;                      // family of the last sample
  std::vector<sample> samples;
  const std::regex name_re{"[a-zA-Z_:][a-zA-Z0-9_:]*"};
  std::istringstream lines{r.body};
  for (std::string line; std::getline(lines, line);) {
    SCOPED_TRACE(line);
    ASSERT_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      ++helps[line.substr(7, line.find(' ', 7) - 7)];
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      auto name = line.substr(7, line.find(' ', 7) - 7);
      auto type = line.substr(line.find(' ', 7) + 1);
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << type;
      EXPECT_TRUE(types.emplace(name, type).second) << "a second TYPE line for " << name;
      continue;
    }
    ASSERT_NE(line[0], '#');
    sample x;
    auto end_of_name = line.find_first_of("{ ");
    ASSERT_NE(end_of_name, std::string::npos);
    x.name = line.substr(0, end_of_name);
    EXPECT_TRUE(std::regex_match(x.name, name_re)) << x.name;
    auto rest = end_of_name;
    if (line[end_of_name] == '{') {
      auto close = line.find("} ", end_of_name);
      ASSERT_NE(close, std::string::npos);
      x.labels = line.substr(end_of_name + 1, close - end_of_name - 1);
      rest = close + 1;
    }
    auto value = line.substr(rest + 1);
    char* parsed_to = nullptr;
    x.value = std::strtod(value.c_str(), &parsed_to);
    EXPECT_TRUE(!value.empty() && *parsed_to == '\0') << "value: " << value;
    auto family = family_of(x.name, types);
    EXPECT_EQ(types.count(family), 1u) << "no TYPE line before " << x.name;
    EXPECT_EQ(helps[family], 1) << "HELP lines of " << family;
    if (family != current) {
      EXPECT_EQ(finished.count(family), 0u) << family << "'s samples are not together";
      if (!current.empty())
        finished.insert(current);
      current = family;
    }
    samples.push_back(x);
  }
  // Histograms, per series (its labels without `le`).
  std::map<std::string, std::pair<double, std::string>> last_bucket; // series -> (value, le)
  std::map<std::string, double> counts;
  for (auto& x : samples) {
    auto family = family_of(x.name, types);
    if (types[family] != "histogram")
      continue;
    if (x.name == family + "_bucket") {
      auto le_at = x.labels.find("le=\"");
      ASSERT_NE(le_at, std::string::npos) << x.labels;
      auto le = x.labels.substr(le_at + 4, x.labels.find('"', le_at + 4) - le_at - 4);
      auto series = family + "{" + x.labels.substr(0, le_at) + "}";
      auto& [before, before_le] = last_bucket[series];
      EXPECT_GE(x.value, before) << series << " le=" << le;
      before = x.value;
      before_le = le;
    } else if (x.name == family + "_count") {
      auto series = family + "{" + (x.labels.empty() ? "" : x.labels + ",") + "}";
      counts[series] = x.value;
    }
  }
  EXPECT_FALSE(last_bucket.empty());
  for (auto& [series, last] : last_bucket) {
    EXPECT_EQ(last.second, "+Inf") << series;
    ASSERT_EQ(counts.count(series), 1u) << series;
    EXPECT_EQ(counts[series], last.first) << series;
  }
  // What docs/operations.md lists.
  std::ifstream in{std::string{SHOP_SOURCE_DIR} + "/docs/operations.md"};
  ASSERT_TRUE(in) << "cannot read docs/operations.md";
  const std::regex row{"^\\| `(shop_[a-z0-9_]+)` \\| (counter|gauge|histogram) \\|.*"};
  int documented = 0;
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_match(line, m, row))
      continue;
    ++documented;
    EXPECT_EQ(types[m[1]], m[2].str()) << m[1] << " (docs/operations.md says " << m[2] << ")";
  }
  EXPECT_GE(documented, 30);
  auto value_of = [&](const std::string& name, const std::string& labels) {
    for (auto& x : samples)
      if (x.name == name && x.labels == labels)
        return x.value;
    return -1.0;
  };
  EXPECT_GE(value_of("shop_http_requests_total", R"x(route="(unmatched)",status="404")x"), 1);
  EXPECT_GE(value_of("shop_http_requests_total", R"x(route="(refused)",status="413")x"), 1);
  EXPECT_GE(value_of("shop_http_requests_total",
                     R"(route="POST /api/v1/flash-sales/{id}/purchase",status="201")"),
            1);
  EXPECT_GE(value_of("shop_journal_groups_total", ""), 1);
  EXPECT_EQ(value_of("shop_flash_sale_remaining", R"(sale="sale-prom",sku="prom-1")"), 9);
}

// Per-user rate limit (API.md: `rate_limited` 429 with Retry-After): a user
// past their burst is refused at the edge, before any actor, so a refused
// purchase changes nothing; other users and admins go on; the bucket refills
// at the configured rate.
TEST(Http, test_a_user_past_the_rate_limit_gets_429_and_nothing_changes) {
  temp_dir dir;
  // A token every 2 s: the test's requests come much faster than that.
  shopd_process shopd{dir.path(), {"--rate-limit-user", "0.5", "--rate-limit-user-burst", "3"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product_and_sale(c, admin, "rl-1", 100, "sale-rl", 100, 10);
  auto tokens = make_users(shopd.port(), "limited_", 2);
  auto buy = [&](const std::string& token) { return purchase(c, token, "sale-rl"); };
  // Logging in took none of the burst (a route without a token). Cheap reads
  // use it up, so the refusal comes well within the 2 s a token takes.
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(c.request("GET", "/api/v1/users/me", "", {bearer(tokens[0])}).status, 200) << i;
  auto refused = buy(tokens[0]);
  ASSERT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(json_field(refused.body, "error.code"), "rate_limited");
  EXPECT_FALSE(json_field(refused.body, "error.request_id").empty());
  auto retry_after = refused.header("retry-after");
  EXPECT_TRUE(retry_after == "2" || retry_after == "1") << retry_after;
  EXPECT_EQ(get_inventory(c, "rl-1"), (inventory{100, 0, 0}));
  // Another user, and the admin however often, are not held back.
  EXPECT_EQ(buy(tokens[1]).status, 201);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(c.request("GET", "/api/v1/users/me", "", {bearer(admin)}).status, 200);
  auto metrics = c.request("GET", "/metrics").body;
  EXPECT_NE(metrics.find(
              R"(shop_http_requests_total{route="POST /api/v1/flash-sales/{id}/purchase",status="429"} 1)"),
            std::string::npos)
    << metrics;
  // Both users have a bucket that is not full yet; the client limit is off.
  EXPECT_NE(metrics.find("\nshop_rate_limit_keys{limit=\"user\"} 2\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nshop_rate_limit_keys{limit=\"client\"} 0\n"), std::string::npos) << metrics;
  // A token every 2 s: one is back after that.
  std::this_thread::sleep_for(2100ms);
  EXPECT_EQ(buy(tokens[0]).status, 201);
  EXPECT_EQ(get_inventory(c, "rl-1"), (inventory{98, 2, 0}));
}

// The edge checks tokens and the users' limit on more than one thread (its
// bridge actors): one user's burst still lets exactly `burst` requests through
// when they come at once, over many connections.
TEST(Http, test_a_users_burst_holds_for_requests_that_come_at_once) {
  temp_dir dir;
  // A token every 100 s: none comes back while the test runs.
  shopd_process shopd{dir.path(), {"--rate-limit-user", "0.01", "--rate-limit-user-burst", "5"}};
  ASSERT_TRUE(shopd.start());
  auto token = make_users(shopd.port(), "burst_", 1)[0];
  constexpr int connections = 8, each = 6;
  std::atomic<int> ok{0}, limited{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t)
    threads.emplace_back([&] {
      http_client c{shopd.port()};
      for (int i = 0; i < each; ++i) {
        auto status = c.request("GET", "/api/v1/users/me", "", {bearer(token)}).status;
        (status == 200 ? ok : status == 429 ? limited : other)++;
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(ok.load(), 5);
  EXPECT_EQ(limited.load(), connections * each - 5);
  EXPECT_EQ(other.load(), 0);
}

// Per-client-address limit: every route counts, unknown ones too, except the
// probes and /metrics, which a load balancer and Prometheus must always reach.
TEST(Http, test_a_client_address_past_the_rate_limit_gets_429_but_probes_go_through) {
  temp_dir dir;
  // A token every 5 s: the test's requests come much faster than that.
  shopd_process shopd{dir.path(), {"--rate-limit-client", "0.2", "--rate-limit-client-burst", "4"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(c.request("GET", "/api/v1/products/none").status, 404) << i;
  auto refused = c.request("GET", "/no/such/route");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(json_field(refused.body, "error.code"), "rate_limited");
  auto retry_after = refused.header("retry-after"); // one token every 5 s
  EXPECT_TRUE(retry_after == "5" || retry_after == "4") << retry_after;
  // Before the token check: a login is refused as well.
  EXPECT_EQ(c.request("POST", "/api/v1/auth/login",
                      R"({"username":"admin","password":")" + std::string{shopd_process::admin_password} + R"("})")
              .status,
            429);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(c.request("GET", "/healthz").status, 200);
    EXPECT_EQ(c.request("GET", "/readyz").status, 200);
  }
  EXPECT_EQ(c.request("GET", "/metrics").status, 200);
}

// --access-log: one line per answer with what an operator needs to find a
// request again: client, method and target, status, size, time, request id
// and the trace id (the client's, from its traceparent). Refusals too.
TEST(Http, test_the_access_log_has_a_line_per_answer_with_its_ids) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--access-log"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto r = c.request("GET", "/api/v1/products?q=red%22shoe", "",
                     {"X-Request-Id: find-me-1",
                      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(c.request("POST", "/api/v1/flash-sales/none/purchase", R"({"quantity":1})",
                      {"X-Request-Id: find-me-2"})
              .status,
            401);
  auto line_of = [&](const std::string& rid) {
    auto out = shopd.output();
    auto i = out.find("request=" + rid);
    if (i == std::string::npos)
      return std::string{};
    auto begin = out.rfind('\n', i) + 1;
    return out.substr(begin, out.find('\n', i) - begin);
  };
  // A refusal of the server itself, after the headers: its request line too.
  EXPECT_EQ(c.request("POST", "/api/v1/users", std::string(70 * 1024, 'x'),
                      {"X-Request-Id: find-me-3"})
              .status,
            413);
  ASSERT_TRUE(eventually(5s, [&] { return !line_of("find-me-3").empty(); })) << shopd.output();
  EXPECT_NE(line_of("find-me-3").find(R"("POST /api/v1/users" 413 )"), std::string::npos)
    << line_of("find-me-3");
  auto first = line_of("find-me-1");
  EXPECT_NE(first.find(R"(access: 127.0.0.1 "GET /api/v1/products?q=red%22shoe" 200 )"),
            std::string::npos)
    << first;
  EXPECT_NE(first.find("trace=4bf92f3577b34da6a3ce929d0e0e4736"), std::string::npos) << first;
  auto second = line_of("find-me-2");
  EXPECT_NE(second.find(R"("POST /api/v1/flash-sales/none/purchase" 401 )"), std::string::npos)
    << second;
  // Without the flag, nothing of the kind.
  temp_dir dir2;
  shopd_process quiet{dir2.path()};
  ASSERT_TRUE(quiet.start());
  http_client c2{quiet.port()};
  EXPECT_EQ(c2.request("GET", "/healthz").status, 200);
  ASSERT_TRUE(quiet.stop());
  EXPECT_EQ(quiet.output().find("access:"), std::string::npos) << quiet.output();
}

// A client that goes away (a reset) while its request is being worked on
// still gets its line in the access log once the answer is made, marked
// `client=gone`: the request was applied or refused all the same (a purchase
// may have created an order), and the log must say so.
TEST(Http, test_the_access_log_keeps_the_answer_of_a_client_that_went_away) {
  temp_dir dir;
  // A slow password hash (64 MiB), so the login is still being worked on
  // when its client resets the connection.
  shopd_process shopd{dir.path(), {"--access-log", "--password-hash-cost", "16"}};
  ASSERT_TRUE(shopd.start());
  {
    http_client c{shopd.port()};
    ASSERT_EQ(c.request("POST", "/api/v1/users",
                        R"({"username":"gone_user","password":"password-1"})")
                .status,
              201);
  }
  int fd = connect_loopback(shopd.port());
  ASSERT_GE(fd, 0);
  std::string body = R"({"username":"gone_user","password":"password-1"})";
  std::string request = "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nX-Request-Id: gone-1\r\n"
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::this_thread::sleep_for(20ms); // read by the node, the hash under way
  linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  ::close(fd); // RST
  std::string line;
  ASSERT_TRUE(eventually(10s, [&] {
    auto out = shopd.output();
    auto i = out.find("request=gone-1");
    if (i == std::string::npos)
      return false;
    auto begin = out.rfind('\n', i) + 1;
    line = out.substr(begin, out.find('\n', i) - begin);
    return true;
  })) << shopd.output();
  EXPECT_NE(line.find(R"(access: 127.0.0.1 "POST /api/v1/auth/login" 200 )"), std::string::npos)
    << line;
  EXPECT_NE(line.find(" client=gone"), std::string::npos) << line;
  // Answers that reach their client are not marked.
  http_client c{shopd.port()};
  EXPECT_EQ(c.request("GET", "/healthz", "", {"X-Request-Id: here-1"}).status, 200);
  ASSERT_TRUE(eventually(5s, [&] { return shopd.output().find("request=here-1") != std::string::npos; }));
  auto out = shopd.output();
  auto i = out.find("request=here-1");
  EXPECT_EQ(out.substr(i, out.find('\n', i) - i).find("client=gone"), std::string::npos);
}

// With --log-format json the access log's lines are JSON objects like every
// other log line (its sink takes the process's log format).
TEST(Http, test_access_log_lines_follow_the_json_log_format) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--access-log", "--log-format", "json"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  EXPECT_EQ(c.request("GET", "/healthz", "", {"X-Request-Id: json-line-1"}).status, 200);
  ASSERT_TRUE(eventually(5s, [&] {
    return shopd.output().find("request=json-line-1") != std::string::npos;
  }));
  std::istringstream out{shopd.output()};
  simdjson::dom::parser parser;
  int access_lines = 0;
  for (std::string line; std::getline(out, line);) {
    if (line.find("access:") == std::string::npos)
      continue;
    ++access_lines;
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
    std::string_view msg, level;
    ASSERT_EQ(doc["msg"].get(msg), simdjson::SUCCESS) << line;
    ASSERT_EQ(doc["level"].get(level), simdjson::SUCCESS) << line;
    EXPECT_EQ(level, "info");
    EXPECT_NE(msg.find(R"(access: 127.0.0.1 "GET /healthz" 200 )"), std::string_view::npos) << msg;
  }
  EXPECT_EQ(access_lines, 1);
}

// Past --max-connections a client hears 503 on its first request, then the
// connection closes; the node keeps serving the connections it has, storage
// included, and new ones again once some close. (shopd sets the limit from
// its open-file limit, so that clients can never take the descriptors
// RocksDB needs for its next file: test_file_descriptors_go_to_storage_first.
// The room to refuse in: edge_test, test_connections_past_the_limit_...)
TEST(Http, test_connections_past_the_limit_are_refused_and_the_node_keeps_serving) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--max-connections", "20"}};
  ASSERT_TRUE(shopd.start());
  http_client keeper{shopd.port()}; // one of the 20, kept alive throughout
  auto admin = shopd.admin_token();  // its connection closed again
  create_product_and_sale(keeper, admin, "conn-1", 100, "sale-conn", 50, 2);
  auto user = make_users(shopd.port(), "conn_", 1, 1)[0];
  ASSERT_EQ(metric(keeper, "shop_http_connections_max"), 20);
  // Only the keeper's connection left open (the others close as they go).
  ASSERT_TRUE(eventually(5s, [&] { return metric(keeper, "shop_http_connections") == 1; }));
  std::vector<int> idle;
  while (idle.size() < 19) {
    int fd = connect_loopback(shopd.port()); // sends nothing
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  ASSERT_TRUE(eventually(5s, [&] { return metric(keeper, "shop_http_connections") == 20; }));
  // The 21st: answered 503 with Retry-After, then closed.
  http_client extra{shopd.port()};
  auto refused = extra.request("GET", "/healthz");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(json_field(refused.body, "error.code"), "unavailable");
  EXPECT_FALSE(json_field(refused.body, "error.request_id").empty());
  EXPECT_FALSE(refused.header("retry-after").empty());
  EXPECT_EQ(refused.header("connection"), "close");
  EXPECT_EQ(metric(keeper, "shop_http_connections_refused_total"), 1);
  // Refused is not closed for not reading: no answer is left unread.
  EXPECT_EQ(metric(keeper, "shop_http_slow_readers_closed_total"), 0);
  EXPECT_EQ(metric(keeper, "shop_http_unread_answer_bytes"), 0);
  // The connections it serves go on, storage included.
  auto bought = keeper.request("POST", "/api/v1/flash-sales/sale-conn/purchase",
                               R"({"quantity":1})", {bearer(user)});
  EXPECT_EQ(bought.status, 201) << bought.body;
  // Once clients leave, new connections are served again.
  for (int fd : idle)
    ::close(fd);
  ASSERT_TRUE(eventually(5s, [&] { return metric(keeper, "shop_http_connections") <= 1; }));
  http_client later{shopd.port()};
  EXPECT_EQ(later.request("GET", "/healthz").status, 200);
  EXPECT_EQ(get_inventory(later, "conn-1"), (inventory{99, 1, 0}));
}

// API.md, POST /api/v1/auth/login: 200 {"token","token_type":"Bearer",
// "expires_in","user_id","role"}. The token is an HS256 JWT of --jwt-secret
// for that account and role, valid for expires_in seconds; clients refresh by
// that figure, so it must be the token's own lifetime.
TEST(Auth, test_a_login_answers_a_bearer_token_valid_for_expires_in_seconds) {
  temp_dir dir;
  const std::string secret = "auth-test-secret-of-32-bytes-long";
  shopd_process shopd{dir.path(), {"--jwt-secret", secret}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto made = c.request("POST", "/api/v1/users", R"({"username":"shape_1","password":"pw-shape-1"})");
  ASSERT_EQ(made.status, 201) << made.body;
  auto user_id = json_field(made.body, "user_id");
  ASSERT_FALSE(user_id.empty());
  shop::edge::jwt_codec codec{secret};
  struct account {
    std::string name, password, id, role;
  };
  for (const account& a : {account{"shape_1", "pw-shape-1", user_id, "user"},
                           account{"admin", shopd.admin_password, "", "admin"}}) {
    SCOPED_TRACE(a.name);
    // The node reads the clock as std::chrono::system_clock (CLOCK_REALTIME);
    // std::time() reads the kernel's coarse clock, which lags it by up to a
    // tick, so near a second's turn it would bound the expiry a second short.
    auto wall_secs = [] {
      return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
    };
    auto before = wall_secs();
    auto r = c.request("POST", "/api/v1/auth/login",
                       R"({"username":")" + a.name + R"(","password":")" + a.password + R"("})");
    auto after = wall_secs();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json_field(r.body, "token_type"), "Bearer") << r.body;
    EXPECT_EQ(json_field(r.body, "role"), a.role) << r.body;
    auto expires_in = std::strtoll(json_field(r.body, "expires_in").c_str(), nullptr, 10);
    EXPECT_GT(expires_in, 0) << r.body;
    auto claims = codec.verify(json_field(r.body, "token"), after);
    ASSERT_TRUE(claims) << r.body;
    EXPECT_EQ(claims->name, a.name);
    EXPECT_EQ(shop::to_string(claims->role), a.role);
    EXPECT_EQ(claims->sub, json_field(r.body, "user_id"));
    if (!a.id.empty()) {
      EXPECT_EQ(claims->sub, a.id);
    }
    EXPECT_GE(claims->exp, before + expires_in);
    EXPECT_LE(claims->exp, after + expires_in);
    // It is accepted as the account's bearer token, and not past its expiry.
    auto me = c.request("GET", "/api/v1/users/me", {}, {bearer(json_field(r.body, "token"))});
    EXPECT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(json_field(me.body, "user_id"), claims->sub);
    EXPECT_FALSE(codec.verify(json_field(r.body, "token"), claims->exp + 1));
  }
}

// docs/operations.md: a request with no answer within --request-timeout gets
// 503 `unavailable`, counted under the route `(timeout)`, and the command
// may still be applied afterwards. The late answer is dropped: the client's
// next request on that connection gets its own answer, and the route's count
// is not taken a second time. (A registration outlasts a 50 ms timeout: its
// argon2id hash fills 128 MiB twice.)
TEST(Http, test_a_request_past_the_request_timeout_gets_503_and_may_still_be_applied) {
  temp_dir dir;
  {
    shopd_process shopd{dir.path(), {"--request-timeout", "0.05", "--password-hash-cost", "17"}};
    ASSERT_TRUE(shopd.start());
    http_client c{shopd.port()};
    auto batches = metric(c, "shop_journal_batches_total");
    auto r = c.request("POST", "/api/v1/users", R"({"username":"late_1","password":"pw-late-1"})");
    ASSERT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(json_field(r.body, "error.code"), "unavailable");
    EXPECT_NE(json_field(r.body, "error.message").find("may still take effect"), std::string::npos)
      << r.body;
    EXPECT_FALSE(json_field(r.body, "error.request_id").empty());
    // The registration goes on and is committed after its 503.
    ASSERT_TRUE(eventually(20s, [&] { return metric(c, "shop_journal_batches_total") > batches; }));
    // The same connection's next request gets its own answer, not the late one.
    auto next = c.request("GET", "/healthz");
    EXPECT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(next.body, R"({"status":"ok"})");
    EXPECT_EQ(metric(c, "shop_http_inflight"), 1) << "only /metrics itself";
    EXPECT_EQ(metric(c, R"m(shop_http_requests_total{route="(timeout)",status="503"})m"), 1);
    auto m = c.request("GET", "/metrics").body;
    EXPECT_EQ(m.find(R"(shop_http_requests_total{route="POST /api/v1/users")"), std::string::npos)
      << "a request is counted once, under (timeout)";
    EXPECT_NE(m.find(R"m(shop_http_request_duration_seconds_count{route="(timeout)"} 1)m"),
              std::string::npos)
      << m;
  }
  // The account exists: the registration took effect after the 503.
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  EXPECT_FALSE(login(c, "late_1", "pw-late-1").empty());
}
