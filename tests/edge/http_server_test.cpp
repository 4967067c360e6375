// The HTTP/1.1 transport on its own (edge/http_server): a real libuv loop on
// a loopback port, raw sockets as clients, and a handler written by each test
// that answers at once, later, or not until the test says so.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "edge/http_server.hpp"

using namespace shop::edge;
using namespace std::chrono_literals;

namespace {

/// A handler that holds every request until the test answers it.
struct held_requests {
  std::mutex mtx;
  std::vector<std::pair<http_request, responder>> held;
  std::atomic<int> dispatched{0};

  request_handler handler() {
    return [this](http_request& req, responder r) {
      ++dispatched;
      std::lock_guard<std::mutex> guard{mtx};
      held.emplace_back(req, std::move(r));
    };
  }

  /// Answers every held request 200 with its path as the body.
  void answer_all() {
    std::vector<std::pair<http_request, responder>> now;
    {
      std::lock_guard<std::mutex> guard{mtx};
      now.swap(held);
    }
    for (auto& [req, r] : now) {
      http_response res;
      res.body = req.path;
      r.send(std::move(res));
    }
  }

  /// Waits (up to 5 s) until `n` requests were handed over, then 100 ms more
  /// for any that should not come; how many came.
  int dispatched_after_reaching(int n) {
    auto until = std::chrono::steady_clock::now() + 5s;
    while (dispatched.load() < n && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(100ms);
    return dispatched.load();
  }

  std::vector<http_request> requests() {
    std::lock_guard<std::mutex> guard{mtx};
    std::vector<http_request> out;
    for (auto& [req, r] : held)
      out.push_back(req);
    return out;
  }
};

/// A blocking loopback client that closes its socket when it goes.
class raw_client {
public:
  /// With `rcvbuf`, a receive buffer that small: what the client does not
  /// read backs up on the server.
  explicit raw_client(uint16_t port, int rcvbuf = 0) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    if (rcvbuf > 0)
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~raw_client() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  /// Sends all of `bytes`; false if the connection failed first.
  bool send(const std::string& bytes) {
    for (size_t sent = 0; sent < bytes.size();) {
      auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  /// A client that held back begins to read in earnest: a receive buffer of
  /// 4 MiB (a window of 4 KiB takes seconds per MiB, with delayed ACKs).
  void open_window() {
    int bytes = 4 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  }

  /// Closes with a reset (RST), as a client that gives up does.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    ::close(fd_);
    fd_ = -1;
  }

  /// Reads until `done(buffer)` holds, the peer closes, or `timeout` passes.
  template <class Pred>
  std::string read_until(Pred done, std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(buf_) && !eof_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char tmp[16384];
      auto n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n < 0 && errno == ECONNRESET)
        reset_ = true;
      if (n <= 0)
        eof_ = true;
      else
        buf_.append(tmp, static_cast<size_t>(n));
    }
    return buf_;
  }

  /// Everything until the server closes the connection (or `timeout`).
  std::string read_to_eof(std::chrono::milliseconds timeout = 5000ms) {
    return read_until([](const std::string&) { return false; }, timeout);
  }

  bool saw_eof() const { return eof_; }
  /// The connection ended with a reset (RST), not an orderly close (FIN).
  bool saw_reset() const { return reset_; }

private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
  bool reset_ = false;
};

/// How many whole answers `stream` holds (without copying their bodies, for
/// a check made after every read of megabytes of answers).
size_t answers_in(const std::string& stream) {
  size_t n = 0, at = 0;
  for (;;) {
    auto end = stream.find("\r\n\r\n", at);
    if (end == std::string::npos)
      return n;
    auto cl = stream.find("Content-Length: ", at);
    size_t length = cl == std::string::npos || cl > end
                      ? 0
                      : std::strtoul(stream.c_str() + cl + 16, nullptr, 10);
    if (stream.size() < end + 4 + length)
      return n;
    ++n;
    at = end + 4 + length;
  }
}

/// Answer bodies in the order they appear in `stream` (the handlers' answers
/// carry the request path as their body, with a Content-Length).
std::vector<std::string> bodies(const std::string& stream) {
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    auto end = stream.find("\r\n\r\n", at);
    if (end == std::string::npos)
      return out;
    auto head = stream.substr(at, end - at);
    auto cl = head.find("Content-Length: ");
    size_t length = cl == std::string::npos ? 0 : std::strtoul(head.c_str() + cl + 16, nullptr, 10);
    if (stream.size() < end + 4 + length)
      return out;
    out.push_back(stream.substr(end + 4, length));
    at = end + 4 + length;
  }
}

/// Answers the held requests as they arrive and reads what comes back, until
/// `done(stream)` holds, the server closes, or `timeout` passes.
template <class Pred>
std::string serve_until(held_requests& h, raw_client& c, Pred done,
                        std::chrono::milliseconds timeout = 10s) {
  std::string stream;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(stream) && !c.saw_eof() && std::chrono::steady_clock::now() < deadline) {
    h.answer_all();
    stream = c.read_until(done, 20ms);
  }
  return stream;
}

/// A loopback server with `limits` and a handler that holds every request.
struct held_server {
  held_requests h;
  http_server server;
  raw_client client;
  explicit held_server(http_limits limits = {})
    : server(limits, h.handler()), client((start(), server.port())) {
  }
  void start() {
    auto err = server.start("127.0.0.1", 0);
    EXPECT_TRUE(err.empty()) << err;
  }
};

struct server_under_test {
  http_server server;
  server_under_test(http_limits limits, request_handler h) : server(limits, std::move(h)) {
    auto err = server.start("127.0.0.1", 0);
    EXPECT_TRUE(err.empty()) << err;
  }
};

} // namespace

// One read of many small pipelined requests used to run every one of them,
// however many the connection already had unanswered, with their answers
// piling up in memory for a client that may never read them.
TEST(HttpServer, test_one_read_of_pipelined_requests_runs_no_more_than_the_limit) {
  http_limits limits;
  limits.max_pipelined = 16;
  held_server s{limits};
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  constexpr int total = 1000; // ~26 KB: one write, and one read on the server
  std::string requests;
  for (int i = 0; i < total; ++i)
    requests += "GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n";
  c.send(requests);
  EXPECT_EQ(h.dispatched_after_reaching(16), 16);
  EXPECT_EQ(server.inflight(), 16u);
  // As the answers go out, the rest run, in order, 16 at a time at most.
  auto stream = serve_until(h, c, [&](const std::string& b) {
    EXPECT_LE(server.inflight(), 16u);
    return bodies(b).size() >= total;
  }, 20s);
  auto got = bodies(stream);
  ASSERT_EQ(got.size(), size_t{total});
  for (int i = 0; i < total; ++i)
    ASSERT_EQ(got[i], "/r" + std::to_string(i));
  EXPECT_EQ(h.dispatched.load(), total);
}

// A request that ends the connection (Connection: close, or HTTP/1.0) is the
// last one run: a request pipelined after it could never be answered, so it
// must not run either (it might buy something).
TEST(HttpServer, test_nothing_after_a_connection_close_request_runs) {
  held_requests h;
  server_under_test s{http_limits{}, h.handler()};
  for (auto last : {std::string{"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"},
                    std::string{"GET /last HTTP/1.0\r\n\r\n"}}) {
    h.dispatched = 0;
    raw_client c{s.server.port()};
    ASSERT_TRUE(c.connected());
    c.send("GET /first HTTP/1.1\r\nHost: t\r\n\r\n" + last
           + "POST /after HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
             "GET /after2 HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(h.dispatched_after_reaching(2), 2) << last;
    h.answer_all();
    auto stream = c.read_to_eof();
    EXPECT_TRUE(c.saw_eof()) << last;
    EXPECT_EQ(bodies(stream), (std::vector<std::string>{"/first", "/last"})) << last;
    EXPECT_EQ(h.dispatched.load(), 2) << last;
  }
}

// Before a stop (shopd's --shutdown-delay): every request read from then on
// is its connection's last, on a connection opened before as on a new one,
// as if its client had sent `Connection: close`. Answered with that header,
// nothing pipelined behind it runs, and the connection ends with a FIN, not
// a reset. Requests read before keep their connection open.
TEST(HttpServer, test_after_close_connections_after_answers_each_request_is_its_connections_last) {
  held_requests h;
  server_under_test s{http_limits{}, h.handler()};
  raw_client before{s.server.port()};
  ASSERT_TRUE(before.connected());
  ASSERT_TRUE(before.send("GET /kept HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_EQ(h.dispatched_after_reaching(1), 1);
  s.server.close_connections_after_answers();
  h.answer_all();
  auto first = before.read_until([](const std::string& b) { return !bodies(b).empty(); });
  EXPECT_EQ(bodies(first), std::vector<std::string>{"/kept"});
  EXPECT_EQ(first.find("Connection: close"), std::string::npos) << first;
  EXPECT_FALSE(before.saw_eof());

  raw_client after{s.server.port()};
  ASSERT_TRUE(after.connected());
  const std::string pipelined = "GET /last HTTP/1.1\r\nHost: t\r\n\r\n"
                                "POST /not-run HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}";
  for (auto* c : {&before, &after}) {
    h.dispatched = 0;
    ASSERT_TRUE(c->send(pipelined));
    EXPECT_EQ(h.dispatched_after_reaching(1), 1);
    h.answer_all();
    auto stream = c->read_to_eof();
    EXPECT_TRUE(c->saw_eof());
    EXPECT_FALSE(c->saw_reset());
    auto last = stream.substr(stream.rfind("HTTP/1.1 "));
    EXPECT_EQ(bodies(last), std::vector<std::string>{"/last"}) << stream;
    EXPECT_NE(last.find("Connection: close\r\n"), std::string::npos) << last;
    EXPECT_EQ(h.dispatched.load(), 1);
  }
}

// The request timeout bounds the handler's time, not the client's upload: a
// body that takes longer than the timeout to arrive is still served.
TEST(HttpServer, test_the_request_timeout_starts_when_the_request_is_complete) {
  http_limits limits;
  limits.request_timeout = 300ms;
  limits.read_timeout = 5000ms;
  server_under_test s{limits, [](http_request& req, responder r) {
                        std::thread{[body = req.body, r = std::move(r)] {
                          std::this_thread::sleep_for(50ms); // well inside 300 ms
                          http_response res;
                          res.body = body;
                          r.send(std::move(res));
                        }}.detach();
                      }};
  raw_client c{s.server.port()};
  ASSERT_TRUE(c.connected());
  c.send("POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
  std::this_thread::sleep_for(600ms);
  c.send("cd");
  auto stream = c.read_until([](const std::string& b) { return !bodies(b).empty(); });
  EXPECT_EQ(stream.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << stream;
  EXPECT_EQ(bodies(stream), std::vector<std::string>{"abcd"});
}

// Debian's http_parser is built lenient, and frames some malformed requests
// where a proxy in front may frame them another way: one request to the
// proxy, two here, the second smuggled past the proxy's checks. Each is
// refused with its status before anything runs, and the connection is
// closed: nothing after it is taken as a request.
TEST(HttpServer, test_requests_a_proxy_could_frame_another_way_are_refused_and_closed) {
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
  struct refusal {
    const char* why;
    std::string bytes;
    int status;
  };
  const std::vector<refusal> cases{
    {"whitespace before a colon", // RFC 9112 5.1
     "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length : 2\r\n\r\n{}" + smuggled, 400},
    {"a space in a field name", "GET /a HTTP/1.1\r\nHost: t\r\nX Y: 1\r\n\r\n" + smuggled, 400},
    {"whitespace before the first field line",
     "GET /a HTTP/1.1\r\n Host: t\r\n\r\n" + smuggled, 400},
    {"a bare CR ending the head", // RFC 9112 2.2
     "GET /a HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\rZ" + smuggled, 400},
    {"a bare CR after an empty field value",
     "POST /a HTTP/1.1\r\nHost: t\r\nX-A:\rZContent-Length: 2\r\n\r\n{}" + smuggled, 400},
    {"a bare CR ending the request line",
     "GET /a HTTP/1.1\rZHost: t\r\n\r\n" + smuggled, 400},
    {"a bare CR after an empty field value, the blank line next",
     "GET /a HTTP/1.1\r\nHost: t\r\nFoo:\rX\r\n" + smuggled, 400},
    {"a bare CR after an empty field value, a folded line next",
     "GET /a HTTP/1.1\r\nHost: t\r\nX-A:\rX\tv\r\n\r\n" + smuggled, 400},
    {"a bare CR in an empty Content-Length",
     "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length:\rX 2\r\n\r\n{}" + smuggled, 400},
    {"a bare CR ending the head of a request that expects 100 Continue", // no 100 first
     "POST /a HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\rX",
     400},
    {"a request line whose version is H and four other bytes",
     "GET /a H\r\n\r\n1.1\r\nHost: t\r\n\r\n" + smuggled, 400},
    {"a request line whose version is not HTTP/", "GET /a HXYZW1.1\r\nHost: t\r\n\r\n" + smuggled,
     400},
    {"a chunked body (its framing is the lenient parser's)", // RFC 9112 6.3: 411
     "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n3b\r\n0\r\n\r\n"
       + smuggled,
     411},
    {"a chunked body in HTTP/1.0", // RFC 9112 6.1
     "POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
     "2\r\n{}\r\n0\r\n\r\n" + smuggled,
     411},
    {"a transfer coding other than chunked", // RFC 9112 6.1: 501
     "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled, 501},
    {"HTTP/1.1 without Host", "GET /a HTTP/1.1\r\n\r\n" + smuggled, 400}, // RFC 9112 3.2
    {"two Host fields", "GET /a HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n" + smuggled, 400},
    {"an invalid Host", "GET /a HTTP/1.1\r\nHost: t u\r\n\r\n" + smuggled, 400},
    {"a tab in the target", // a proxy may split the request line there
     "GET /a\tHTTP/1.1\r\nHost: t\r\n\r\n" + smuggled, 400},
    {"a fragment in the target", "GET /a#b HTTP/1.1\r\nHost: t\r\n\r\n" + smuggled, 400},
    {"an absolute target of another scheme", "GET ftp://t/a HTTP/1.1\r\nHost: t\r\n\r\n" + smuggled,
     400},
    {"an absolute target with userinfo", // RFC 9110 4.2.4
     "GET http://u@t/a HTTP/1.1\r\nHost: t\r\n\r\n" + smuggled, 400},
    {"an absolute target with empty userinfo",
     "GET http://@t/a HTTP/1.1\r\nHost: t\r\n\r\n" + smuggled, 400},
    {"NUL starting a field value", // RFC 9110 5.5: no control bytes in a value
     "GET /a HTTP/1.1\r\nHost: t\r\nX-A: " + std::string(1, '\0') + "1\r\n\r\n" + smuggled, 400},
    {"a vertical tab starting a field value",
     "GET /a HTTP/1.1\r\nHost: t\r\nX-A:\x0b" "1\r\n\r\n" + smuggled, 400},
    {"DEL starting a field value", "GET /a HTTP/1.1\r\nHost: t\r\nX-A: \x7f\r\n\r\n" + smuggled,
     400},
    {"a transfer coding beside Content-Length", // the parser's own refusal
     "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\n{}"
       + smuggled,
     400},
    {"HTTP/2.0 in a request line", "GET /a HTTP/2.0\r\nHost: t\r\n\r\n" + smuggled, 505},
  };
  for (auto& r : cases) {
    SCOPED_TRACE(r.why);
    held_server s;
    auto& [h, server, c] = s;
    ASSERT_TRUE(c.connected());
    c.send(r.bytes);
    auto stream = c.read_to_eof();
    EXPECT_EQ(stream.rfind("HTTP/1.1 " + std::to_string(r.status) + " ", 0), 0u) << stream;
    EXPECT_NE(stream.find("Connection: close\r\n"), std::string::npos) << stream;
    EXPECT_EQ(answers_in(stream), 1u) << stream;
    EXPECT_TRUE(c.saw_eof());
    EXPECT_EQ(h.dispatched_after_reaching(0), 0);
  }
}

// What those checks must not refuse: bare LF line ends (RFC 9112 2.2 lets a
// server take them), empty lines before a request line, HTTP/1.0 without
// Host and HTTP/1.2 (served as 1.1), field names of every token character,
// folded and empty field values, a value with a tab and bytes past ASCII,
// the absolute form (RFC 9112 3.2.2, routed by its path and query), and a
// head that arrives a byte at a time, so that every check meets a line end,
// a field name and the head's end split across reads.
TEST(HttpServer, test_valid_heads_pass_the_framing_checks_also_a_byte_at_a_time) {
  held_server s;
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("GET /lf HTTP/1.1\nHost: t\n\n"
         "GET http://t:8080/abs?x=1 HTTP/1.1\r\nHost: other\r\n\r\n"
         "GET /tokens HTTP/1.1\r\nHost: [::1]:80\r\n!#$%&'*+-.^_`|~09Az: v\r\n"
         "X-T:\t\xc3\xa9\ta b\r\n\r\n"
         "\r\n\nGET /folded HTTP/1.2\r\nHost: t\r\nX-F: a\r\n b\r\nX-E:\r\n\r\n");
  ASSERT_EQ(h.dispatched_after_reaching(4), 4);
  auto reqs = h.requests();
  EXPECT_EQ(reqs[1].query, "x=1");
  EXPECT_EQ(reqs[2].header("!#$%&'*+-.^_`|~09az"), "v");
  EXPECT_EQ(reqs[2].header("x-t"), "\xc3\xa9\ta b"); // obs-text and a tab inside a value
  EXPECT_EQ(reqs[3].header("x-f"), "a b"); // obs-fold: its line end taken out
  auto stream = serve_until(h, c, [](const std::string& st) { return answers_in(st) == 4; });
  EXPECT_EQ(bodies(stream), (std::vector<std::string>{"/lf", "/abs", "/tokens", "/folded"}))
    << stream;
  {
    held_server s10;
    ASSERT_TRUE(s10.client.connected());
    s10.client.send("GET /ten HTTP/1.0\r\n\r\n");
    auto st =
      serve_until(s10.h, s10.client, [](const std::string& x) { return answers_in(x) == 1; });
    EXPECT_EQ(bodies(st), std::vector<std::string>{"/ten"}) << st;
  }
  const std::string slow = "POST /bytes?q=2 HTTP/1.1\r\nHost: t\r\nX-A:\r\nX-B: 1\r\n"
                           "Content-Length: 2\r\n\r\n{}";
  held_server sb;
  ASSERT_TRUE(sb.client.connected());
  int one = 1;
  ::setsockopt(sb.client.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  for (char ch : slow) {
    ASSERT_TRUE(sb.client.send(std::string(1, ch)));
    std::this_thread::sleep_for(2ms); // one read each, mostly
  }
  auto st = serve_until(sb.h, sb.client, [](const std::string& x) { return answers_in(x) == 1; });
  EXPECT_EQ(bodies(st), std::vector<std::string>{"/bytes"}) << st;
  EXPECT_EQ(sb.h.dispatched.load(), 1);
}

// Answers the server gives itself echo the client's X-Request-Id when the
// request got as far as sending one (API.md: every answer carries it).
TEST(HttpServer, test_a_refused_request_keeps_its_request_id) {
  http_limits limits;
  limits.max_body_bytes = 100;
  held_server s{limits};
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("POST /big HTTP/1.1\r\nHost: t\r\nX-Request-Id: client-42\r\n"
         "Content-Length: 5000\r\n\r\n");
  auto stream = c.read_to_eof();
  EXPECT_EQ(stream.rfind("HTTP/1.1 413 ", 0), 0u) << stream;
  EXPECT_NE(stream.find("X-Request-Id: client-42\r\n"), std::string::npos) << stream;
  EXPECT_NE(stream.find(R"("request_id":"client-42")"), std::string::npos) << stream;
  EXPECT_EQ(h.dispatched.load(), 0);
}

// A request cut off inside its headers gets a 408 with the server's own
// request id: the client's X-Request-Id may have been cut off too.
TEST(HttpServer, test_a_request_id_cut_off_in_the_headers_is_not_echoed) {
  http_limits limits;
  limits.read_timeout = 300ms;
  held_server s{limits};
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("GET /slow HTTP/1.1\r\nHost: t\r\nX-Request-Id: client-4");
  auto stream = c.read_to_eof();
  EXPECT_EQ(stream.rfind("HTTP/1.1 408 ", 0), 0u) << stream;
  EXPECT_EQ(stream.find("client-4"), std::string::npos) << stream;
  EXPECT_NE(stream.find("X-Request-Id: "), std::string::npos) << stream;
  EXPECT_EQ(h.dispatched.load(), 0);
}

// RFC 9110 8.6: a 204 carries no Content-Length; other answers do.
TEST(HttpServer, test_a_204_has_no_content_length) {
  server_under_test s{http_limits{}, [](http_request& req, responder r) {
                        http_response res;
                        res.status = req.path == "/none" ? 204 : 200;
                        res.body = req.path == "/none" ? "" : "x";
                        r.send(std::move(res));
                      }};
  raw_client c{s.server.port()};
  ASSERT_TRUE(c.connected());
  c.send("DELETE /none HTTP/1.1\r\nHost: t\r\n\r\nGET /some HTTP/1.1\r\nHost: t\r\n\r\n");
  auto stream = c.read_until([](const std::string& b) { return b.find("\r\n\r\nx") != std::string::npos; });
  auto second = stream.find("HTTP/1.1 200 OK");
  ASSERT_NE(second, std::string::npos) << stream;
  auto first = stream.substr(0, second);
  EXPECT_EQ(first.rfind("HTTP/1.1 204 No Content\r\n", 0), 0u) << first;
  EXPECT_EQ(first.find("Content-Length"), std::string::npos) << first;
  EXPECT_NE(stream.find("Content-Length: 1\r\n", second), std::string::npos) << stream;
}

// A client that sends `Expect: 100-continue` waits for the interim answer
// before its body; it gets one at once rather than after its own timeout.
TEST(HttpServer, test_expect_100_continue_is_answered) {
  held_server s;
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  auto interim = c.read_until([](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; },
                              2000ms);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  c.send("hello");
  auto stream = serve_until(h, c, [](const std::string& b) { return bodies(b).size() >= 2; });
  EXPECT_NE(stream.find("HTTP/1.1 200 OK"), std::string::npos) << stream;
  ASSERT_EQ(h.dispatched.load(), 1);
}

// A client that pipelines more than the limit and then half-closes still gets
// every answer, also for the requests that waited unparsed, and then EOF.
TEST(HttpServer, test_a_half_closed_client_gets_every_pipelined_answer) {
  http_limits limits;
  limits.max_pipelined = 8;
  held_server s{limits};
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  std::string requests;
  for (int i = 0; i < 100; ++i)
    requests += "GET /h" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n";
  c.send(requests);
  c.shutdown_write();
  auto stream = serve_until(h, c, [](const std::string&) { return false; });
  EXPECT_TRUE(c.saw_eof());
  auto got = bodies(stream);
  ASSERT_EQ(got.size(), 100u);
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(got[i], "/h" + std::to_string(i));
}

// RFC 9112 9.3.2 lets a server run pipelined requests side by side only if
// their methods are safe. A request that changes something (a purchase, a
// cancel) starts once every earlier request is answered, and the requests
// after it start once it is: a client that pipelines a purchase and then a
// look at its orders sees the purchase. Safe requests still run together.
TEST(HttpServer, test_a_pipelined_request_that_changes_something_runs_alone) {
  held_server s;
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n"
         "POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
         "GET /d HTTP/1.1\r\nHost: t\r\n\r\nDELETE /e HTTP/1.1\r\nHost: t\r\n\r\n"
         "PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
         "HEAD /g HTTP/1.1\r\nHost: t\r\n\r\nGET /h HTTP/1.1\r\nHost: t\r\n\r\n");
  // Each step: the requests that run together, then their answers.
  const std::vector<std::vector<std::string>> steps{
    {"/a", "/b"}, {"/c"}, {"/d"}, {"/e"}, {"/f"}, {"/g", "/h"}};
  int started = 0;
  for (auto& step : steps) {
    started += static_cast<int>(step.size());
    ASSERT_EQ(h.dispatched_after_reaching(started), started) << "before " << step.front();
    auto running = h.requests();
    ASSERT_EQ(running.size(), step.size());
    for (size_t i = 0; i < step.size(); ++i)
      EXPECT_EQ(running[i].path, step[i]);
    if (step.front() == "/c") {
      EXPECT_EQ(running[0].body, "{}"); // the body that waited in the socket
    }
    if (step.front() == "/f") {
      EXPECT_EQ(running[0].body, "abc");
    }
    h.answer_all();
  }
  auto stream = c.read_until([](const std::string& b) { return answers_in(b) >= 8; });
  EXPECT_EQ(answers_in(stream), 8u) << stream;
  EXPECT_EQ(h.dispatched.load(), 8);
}

// A request that waits for earlier answers waits on the server, not on the
// client: the read timeout does not answer it 408 meanwhile. Once it may go
// on, the rest of its body is the client's business again, and a body that
// never comes is answered 408 a read timeout after the wait.
TEST(HttpServer, test_a_request_waiting_for_earlier_answers_is_not_timed_out_meanwhile) {
  http_limits limits;
  limits.read_timeout = 300ms;
  held_server s{limits};
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  // /second waits at its start, behind the unanswered /first.
  c.send("POST /first HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
         "POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
  ASSERT_EQ(h.dispatched_after_reaching(1), 1);
  std::this_thread::sleep_for(700ms); // past the read timeout, twice
  EXPECT_EQ(h.dispatched.load(), 1);
  c.send("cd"); // the rest of /second's body (it waits in the socket)
  h.answer_all();
  ASSERT_EQ(h.dispatched_after_reaching(2), 2);
  auto second = h.requests();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].path, "/second");
  EXPECT_EQ(second[0].body, "abcd");
  h.answer_all();
  auto two = c.read_until([](const std::string& b) { return answers_in(b) >= 2; });
  ASSERT_EQ(answers_in(two), 2u) << two;
  // /third waits after its head, behind the unanswered /g, and its body stops
  // short: 408, a read timeout after /g's answer, not during the wait.
  c.send("GET /g HTTP/1.1\r\nHost: t\r\n\r\n"
         "POST /third HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
  ASSERT_EQ(h.dispatched_after_reaching(3), 3);
  std::this_thread::sleep_for(700ms);
  EXPECT_EQ(h.dispatched.load(), 3);
  auto answered_at = std::chrono::steady_clock::now();
  h.answer_all();
  auto stream = c.read_until(
    [](const std::string& b) { return b.find("HTTP/1.1 408") != std::string::npos; });
  auto took = std::chrono::steady_clock::now() - answered_at;
  ASSERT_NE(stream.find("HTTP/1.1 408"), std::string::npos) << stream;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2000ms);
  stream = c.read_to_eof(3000ms);
  EXPECT_TRUE(c.saw_eof());
  EXPECT_EQ(answers_in(stream), 4u) << stream;
  EXPECT_EQ(h.dispatched.load(), 3);
}

// A request that asked for "100 Continue" and waited after its head for an
// earlier answer gets it when it may go on: the client holds its body back
// for it (or for a second or so of its own).
TEST(HttpServer, test_a_request_that_waited_after_its_head_gets_its_100_continue) {
  held_server s;
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
         "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(h.dispatched_after_reaching(1), 1);
  h.answer_all();
  auto stream = c.read_until(
    [](const std::string& b) { return b.find("100 Continue") != std::string::npos; }, 2000ms);
  auto interim = stream.find("HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_NE(interim, std::string::npos) << stream;
  EXPECT_GT(interim, stream.find("/a")); // after the answer it waited for
  c.send("hello");
  ASSERT_EQ(h.dispatched_after_reaching(2), 2);
  auto b = h.requests();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].body, "hello");
}

// Admission control: a node with as many requests in progress as it takes
// answers the next one 503 at once (fail fast, Retry-After: 1) without
// running it, and takes requests again as soon as answers free room.
TEST(HttpServer, test_requests_past_the_in_flight_cap_get_503_at_once_and_later_ones_run) {
  http_limits limits;
  limits.max_inflight = 4;
  held_server s{limits};
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n"
         "GET /3 HTTP/1.1\r\nHost: t\r\n\r\nGET /4 HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_EQ(h.dispatched_after_reaching(4), 4);
  EXPECT_EQ(server.inflight(), 4u);
  raw_client late{server.port()};
  ASSERT_TRUE(late.connected());
  auto sent_at = std::chrono::steady_clock::now();
  late.send("POST /5 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
  auto refused = late.read_until([](const std::string& b) { return answers_in(b) >= 1; });
  EXPECT_LT(std::chrono::steady_clock::now() - sent_at, 1000ms); // not held until room
  EXPECT_EQ(refused.rfind("HTTP/1.1 503 ", 0), 0u) << refused;
  EXPECT_NE(refused.find("Retry-After: 1\r\n"), std::string::npos) << refused;
  EXPECT_NE(refused.find("\"code\":\"unavailable\""), std::string::npos) << refused;
  EXPECT_EQ(h.dispatched.load(), 4); // never handed to the handler
  EXPECT_EQ(server.inflight(), 4u);
  h.answer_all();
  auto four = c.read_until([](const std::string& b) { return answers_in(b) >= 4; });
  EXPECT_EQ(bodies(four), (std::vector<std::string>{"/1", "/2", "/3", "/4"}));
  // Room again: the same client's next request runs.
  late.send("POST /6 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
  ASSERT_EQ(h.dispatched_after_reaching(5), 5);
  h.answer_all();
  auto stream = late.read_until([](const std::string& b) { return answers_in(b) >= 2; });
  EXPECT_NE(stream.find("HTTP/1.1 200 OK"), std::string::npos) << stream;
  EXPECT_EQ(bodies(stream).back(), "/6");
}

// A keep-alive connection with nothing asked and nothing owed is closed
// after the idle timeout, counted from its last answer.
TEST(HttpServer, test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout) {
  http_limits limits;
  limits.idle_timeout = 300ms;
  held_server s{limits};
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  c.send("GET /once HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_EQ(h.dispatched_after_reaching(1), 1);
  std::this_thread::sleep_for(500ms); // waiting on the server: not idle
  auto answered_at = std::chrono::steady_clock::now();
  h.answer_all();
  auto stream = c.read_to_eof(3000ms);
  auto took = std::chrono::steady_clock::now() - answered_at;
  EXPECT_EQ(bodies(stream), std::vector<std::string>{"/once"});
  EXPECT_TRUE(c.saw_eof());
  EXPECT_FALSE(c.saw_reset());
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2000ms);
}

// W3C Trace Context, level 1, section 3.2: what a traceparent must look like.
TEST(TraceContext, test_traceparent_parsing_follows_the_w3c_rules) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string parent = "00f067aa0ba902b7";
  std::string_view id, flags;
  const std::string header = "00-" + trace + "-" + parent + "-01"; // id and flags view it
  ASSERT_TRUE(parse_traceparent(header, id, flags));
  EXPECT_EQ(id, trace);
  EXPECT_EQ(flags, "01");
  // A later version may append fields after a '-'.
  EXPECT_TRUE(parse_traceparent("01-" + trace + "-" + parent + "-00-what-comes-next", id, flags));
  EXPECT_TRUE(parse_traceparent("cc-" + trace + "-" + parent + "-00", id, flags));
  for (const auto& bad : std::vector<std::string>{
         std::string{},
         "00-" + trace + "-" + parent + "-01-", // version 00 is exactly 55 characters
         "00-" + trace + "-" + parent + "-1",
         "01-" + trace + "-" + parent + "-00x", // longer, but no '-' after the flags
         "ff-" + trace + "-" + parent + "-01",  // version ff is invalid
         "0g-" + trace + "-" + parent + "-01",
         "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + parent + "-01", // upper case
         "00-00000000000000000000000000000000-" + parent + "-01", // all-zero trace id
         "00-" + trace + "-0000000000000000-01",                  // all-zero parent id
         "00_" + trace + "-" + parent + "-01",
         "00-" + trace + "_" + parent + "-01",
         "00-" + trace + "-" + parent + "_01",
         "00-" + trace + "-" + parent + "-0z",
       })
    EXPECT_FALSE(parse_traceparent(bad, id, flags)) << bad;
}

namespace {

/// The value of header `name` in the first answer of `stream`, or empty.
std::string header_of(const std::string& stream, const std::string& name) {
  auto head = stream.substr(0, stream.find("\r\n\r\n"));
  auto at = head.find("\r\n" + name + ": ");
  if (at == std::string::npos)
    return {};
  at += name.size() + 4;
  return head.substr(at, head.find("\r\n", at) - at);
}

/// Waits (up to 5 s) until the handler got a request.
bool eventually_dispatched(held_requests& h) {
  for (int i = 0; i < 500 && h.dispatched.load() == 0; ++i)
    std::this_thread::sleep_for(10ms);
  return h.dispatched.load() > 0;
}

/// Sends one request with `extra` header lines, answers it and returns the
/// answer's traceparent and the trace id the handler saw.
std::pair<std::string, std::string> traced(const std::string& extra) {
  held_server s;
  auto& [h, server, c] = s;
  c.send("GET /t HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n");
  EXPECT_TRUE(eventually_dispatched(h));
  auto seen = h.requests().at(0).trace_id;
  auto stream = serve_until(h, c, [](const std::string& st) { return bodies(st).size() == 1; });
  return {header_of(stream, "traceparent"), seen};
}

} // namespace

// Every answer carries a traceparent: the client's trace id with this node's
// own span as the parent, or a new trace when the client sent none or an
// invalid one. The handler sees the same trace id (it travels in commands).
TEST(TraceContext, test_every_answer_carries_the_trace_and_the_handler_sees_it) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string client = "00-" + trace + "-00f067aa0ba902b7-01";
  auto [tp, seen] = traced("traceparent: " + client + "\r\n");
  std::string_view id, flags;
  ASSERT_TRUE(parse_traceparent(tp, id, flags)) << tp;
  EXPECT_EQ(id, trace);
  EXPECT_EQ(flags, "01");
  EXPECT_EQ(tp.substr(0, 3), "00-");
  EXPECT_NE(tp.substr(36, 16), "00f067aa0ba902b7"); // the node's span, not the client's
  EXPECT_EQ(seen, trace);

  // Only the sampled bit goes out (the others are undefined in version 00);
  // whitespace after the value is not part of it.
  auto [tp_ff, seen_ff] = traced("traceparent: 00-" + trace + "-00f067aa0ba902b7-ff \t\r\n");
  EXPECT_EQ(seen_ff, trace);
  EXPECT_EQ(tp_ff.substr(52), "-01") << tp_ff;
  auto [tp_02, seen_02] = traced("traceparent: 00-" + trace + "-00f067aa0ba902b7-02\r\n");
  EXPECT_EQ(tp_02.substr(52), "-00") << tp_02;

  std::set<std::string> fresh;
  for (const auto& extra : std::vector<std::string>
       {std::string{}, "traceparent: 00-" + trace + "-00f067aa0ba902b7-01x\r\n",
        "traceparent: " + client + "\r\ntraceparent: " + client + "\r\n"}) {
    auto [tp2, seen2] = traced(extra);
    ASSERT_TRUE(parse_traceparent(tp2, id, flags)) << extra << " -> " << tp2;
    EXPECT_NE(id, trace) << extra;
    EXPECT_EQ(flags, "00") << extra;
    EXPECT_EQ(seen2, std::string{id}) << extra;
    fresh.insert(seen2);
  }
  EXPECT_EQ(fresh.size(), 3u); // each a new trace
}

TEST(TraceContext, test_a_refused_request_keeps_its_trace) {
  http_limits limits;
  limits.max_body_bytes = 100;
  held_server s{limits};
  auto& [h, server, c] = s;
  const std::string trace = "0af7651916cd43dd8448eb211c80319c";
  c.send("POST /big HTTP/1.1\r\nHost: t\r\ntraceparent: 00-" + trace
         + "-b7ad6b7169203331-01\r\nContent-Length: 5000\r\n\r\n");
  auto stream = c.read_to_eof();
  EXPECT_EQ(stream.rfind("HTTP/1.1 413 ", 0), 0u) << stream;
  EXPECT_EQ(header_of(stream, "traceparent").substr(3, 32), trace) << stream;
  EXPECT_EQ(h.dispatched.load(), 0);
}

// A stop (SIGTERM) during traffic: requests already handed to the handler are
// answered, the last answer of each connection says `Connection: close`, and
// only then is the connection closed; no new connection is taken meanwhile,
// and an idle connection is closed at once.
TEST(HttpServer, test_stop_answers_the_requests_in_flight_then_closes) {
  held_server s;
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  raw_client idle{server.port()};
  ASSERT_TRUE(idle.connected());
  c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (h.dispatched < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(h.dispatched, 2);
  auto began = std::chrono::steady_clock::now();
  std::thread stopper{[&] { server.stop(); }};
  idle.read_to_eof(2000ms);
  EXPECT_TRUE(idle.saw_eof()); // nothing in flight: closed at once
  raw_client late{server.port()};
  EXPECT_FALSE(late.connected()); // the listener is closed
  h.answer_all();
  auto stream = c.read_to_eof(3000ms);
  stopper.join();
  EXPECT_TRUE(c.saw_eof());
  EXPECT_EQ(bodies(stream), (std::vector<std::string>{"/a", "/b"}));
  auto second = stream.find("HTTP/1.1", stream.find("HTTP/1.1") + 1);
  ASSERT_NE(second, std::string::npos);
  EXPECT_EQ(stream.find("Connection: close"), stream.find("Connection: close", second))
    << "only the last answer closes: " << stream;
  EXPECT_NE(stream.find("Connection: close", second), std::string::npos) << stream;
  EXPECT_LT(std::chrono::steady_clock::now() - began, 4s); // not the drain timeout
}

// What the handler never answers is answered by the request timeout (503), and
// the stop ends then, within the drain timeout. The 503 does not invite a
// blind retry: the command may still take effect after it.
TEST(HttpServer, test_stop_waits_no_longer_than_the_request_timeout_for_an_answer) {
  http_limits limits;
  limits.request_timeout = 300ms;
  held_server s{limits};
  auto& [h, server, c] = s;
  c.send("GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (h.dispatched < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(h.dispatched, 1);
  auto began = std::chrono::steady_clock::now();
  server.stop();
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_LT(took, 3s);
  auto stream = c.read_to_eof(2000ms);
  EXPECT_EQ(stream.rfind("HTTP/1.1 503", 0), 0u) << stream;
  EXPECT_NE(stream.find("Connection: close"), std::string::npos) << stream;
  EXPECT_NE(stream.find("may still take effect: retry with the same Idempotency-Key"),
            std::string::npos)
    << stream;
}

// A request refused with bytes of it still unread (here a body over the limit,
// announced and partly sent) is answered, then the connection ends with an
// orderly close. Closing a socket with unread bytes sends a reset instead,
// and a reset can destroy the answer before the client reads it: over a real
// network the client would never see its 413.
TEST(HttpServer, test_a_refused_upload_is_answered_then_closed_without_a_reset) {
  held_server s;
  auto& [h, server, c] = s;
  ASSERT_TRUE(c.connected());
  // The client sends its whole upload before it reads anything, as clients do.
  // The server reads and drops the rest, so the upload goes through quickly
  // (a server that stopped reading would leave it blocked, then reset).
  auto began = std::chrono::steady_clock::now();
  bool uploaded = false;
  std::thread uploader{[&c, &uploaded] {
    uploaded = c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                      + std::string(1000000, 'x'));
  }};
  auto stream = c.read_until([](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; });
  uploader.join();
  EXPECT_TRUE(uploaded);
  EXPECT_LT(std::chrono::steady_clock::now() - began, 1500ms);
  c.read_to_eof(5000ms);
  EXPECT_EQ(stream.rfind("HTTP/1.1 413", 0), 0u) << stream.substr(0, 200);
  EXPECT_TRUE(c.saw_eof());
  EXPECT_FALSE(c.saw_reset()) << "the server reset the connection instead of closing it";
}

// Past max_connections a connection is refused, never served: 503 as soon as
// its headers are in (no "100 Continue", no upload read), then closed. While
// 1/16 of the cap (at least 16) are being refused, new ones are closed at
// once; one that says nothing goes after refusing_timeout; and those being
// refused never count against the connections served.
TEST(HttpServer, test_connections_past_the_limit_are_refused_without_holding_the_room) {
  http_limits limits;
  limits.max_connections = 2;
  limits.refusing_timeout = 2s; // the steps below while the room is full take milliseconds
  server_under_test s{limits, [](http_request& req, responder r) {
                        http_response res;
                        res.body = req.path;
                        r.send(std::move(res));
                      }};
  auto port = s.server.port();
  auto wait_connections = [&](size_t n) {
    auto until = std::chrono::steady_clock::now() + 5s;
    while (s.server.connections() != n && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(5ms);
    return s.server.connections() == n;
  };
  auto served = [&](raw_client& c, const std::string& path) { // its answer is the next body
    auto before = bodies(c.read_until([](const std::string&) { return true; })).size();
    c.send("GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n");
    auto got = bodies(c.read_until([&](const std::string& b) { return bodies(b).size() > before; }));
    return got.size() == before + 1 && got.back() == path;
  };
  raw_client a{port};
  auto b = std::make_unique<raw_client>(port);
  ASSERT_TRUE(served(a, "/a"));
  ASSERT_TRUE(served(*b, "/b"));
  // The third: refused before its body, which it was about to upload.
  {
    raw_client c{port};
    c.send("POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n");
    auto stream = c.read_to_eof();
    EXPECT_EQ(stream.rfind("HTTP/1.1 503 ", 0), 0u) << stream;
    EXPECT_NE(stream.find("Connection: close\r\n"), std::string::npos) << stream;
    EXPECT_NE(stream.find("\"code\":\"unavailable\""), std::string::npos) << stream;
    EXPECT_TRUE(c.saw_eof());
  }
  ASSERT_TRUE(wait_connections(2));
  // The room to refuse in: 16 connections that say nothing.
  std::vector<std::unique_ptr<raw_client>> silent;
  for (int i = 0; i < 16; ++i)
    silent.push_back(std::make_unique<raw_client>(port));
  ASSERT_TRUE(wait_connections(18));
  {
    raw_client past{port};
    past.send("GET /past HTTP/1.1\r\nHost: t\r\n\r\n");
    auto stream = past.read_to_eof();
    EXPECT_TRUE(past.saw_eof());
    EXPECT_EQ(stream.find("HTTP/1.1"), std::string::npos) << "closed without an answer: " << stream;
  }
  EXPECT_EQ(s.server.refused_connections(), 18u);
  // A served connection that leaves makes room for a new one to be served,
  // however many are being refused.
  b.reset();
  ASSERT_TRUE(wait_connections(17));
  raw_client d{port};
  EXPECT_TRUE(served(d, "/d"));
  // The silent ones are closed after refusing_timeout...
  for (auto& c : silent) {
    c->read_to_eof(5s);
    EXPECT_TRUE(c->saw_eof());
  }
  ASSERT_TRUE(wait_connections(2));
  // ...the room is free again, and the two served connections still are.
  {
    raw_client again{port};
    again.send("GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(again.read_to_eof().rfind("HTTP/1.1 503 ", 0), 0u);
  }
  EXPECT_TRUE(served(a, "/a2"));
  EXPECT_TRUE(served(d, "/d2"));
}

namespace {

/// A server that answers every request with `body_bytes` bytes from another
/// thread, as the node's actors do (so the pipelined requests of one read all
/// run before their answers come), and a way to wait for its count of open
/// connections.
struct big_answers {
  std::atomic<int> answered{0}; // requests the worker has answered
  std::mutex mtx;
  std::condition_variable wake;
  std::deque<responder> to_answer;
  bool done = false;
  std::thread worker;
  server_under_test s;
  big_answers(http_limits limits, size_t body_bytes)
    : worker{[this, body_bytes] { answer(body_bytes); }},
      s{limits, [this](http_request&, responder r) {
          std::lock_guard<std::mutex> guard{mtx};
          to_answer.push_back(std::move(r));
          wake.notify_one();
        }} {}
  ~big_answers() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      done = true;
    }
    wake.notify_one();
    worker.join();
  }
  void answer(size_t body_bytes) {
    std::unique_lock<std::mutex> lock{mtx};
    for (;;) {
      wake.wait(lock, [&] { return done || !to_answer.empty(); });
      if (done)
        return;
      auto r = std::move(to_answer.front());
      to_answer.pop_front();
      lock.unlock();
      http_response res;
      res.body.assign(body_bytes, 'x');
      r.send(std::move(res));
      answered.fetch_add(1);
      lock.lock();
    }
  }
  bool connections_become(size_t n, std::chrono::milliseconds limit = 5s) {
    return holds_within(limit, [&] { return s.server.connections() == n; });
  }
  /// `unread_answer_bytes()` once the handler has answered `n` requests in
  /// all, and the answers are with the connections.
  size_t unread_once_answered(int n) {
    EXPECT_TRUE(holds_within(10s, [&] { return answered.load() >= n; })) << answered.load();
    return settled_unread_bytes();
  }
  /// No request in flight, and `unread_answer_bytes()` the same for 100 ms.
  size_t settled_unread_bytes() {
    size_t last = std::numeric_limits<size_t>::max();
    holds_within(10s, [&] {
      auto now = s.server.unread_answer_bytes();
      bool same = now == last && s.server.inflight() == 0;
      last = now;
      if (!same)
        std::this_thread::sleep_for(100ms);
      return same;
    });
    return last;
  }
  template <class Pred>
  static bool holds_within(std::chrono::milliseconds limit, Pred pred) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!pred() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(5ms);
    return pred();
  }
};

std::string pipelined_gets(int n) {
  std::string out;
  for (int i = 0; i < n; ++i)
    out += "GET /big" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n";
  return out;
}

} // namespace

// Pipelined requests in one read all run before any answer exists, so the
// pause at 1 MiB of unread answers comes too late for them: 64 answers of
// 256 KiB to a client that never reads would sit in memory (and a few
// thousand such connections would take the node's memory). Past
// max_unread_answer_bytes the connection is closed; a client that reads
// gets every answer.
TEST(HttpServer, test_a_client_that_never_reads_its_pipelined_answers_is_closed) {
  http_limits limits;
  limits.max_unread_answer_bytes = 4u << 20;
  big_answers b{limits, 256 << 10};
  {
    raw_client reader{b.s.server.port()};
    ASSERT_TRUE(reader.send(pipelined_gets(8))); // 2 MiB: within the limit
    auto stream = reader.read_until([](const std::string& got) { return answers_in(got) == 8; });
    EXPECT_EQ(bodies(stream).size(), 8u);
    EXPECT_FALSE(reader.saw_eof());
  }
  ASSERT_TRUE(b.connections_become(0));
  raw_client stuck{b.s.server.port(), 4096};
  ASSERT_TRUE(stuck.send(pipelined_gets(64))); // 16 MiB it will not read
  EXPECT_TRUE(big_answers::holds_within(5s, [&] { return b.s.server.slow_readers_closed() == 1; }));
  EXPECT_TRUE(b.connections_become(0)) << b.s.server.connections();
}

// A route answered on the loop thread (the probes, /metrics, /openapi.yaml)
// costs its client one small request per big answer. Its answer goes to the
// connection before the next request is parsed, so the connection stops
// reading at 1 MiB of unwritten answers: a client that pipelines 256 such
// requests and does not read makes the node run (and hold) only what fits
// there and in the kernel's socket buffer, not 256 answers (64 MiB here),
// and gets every one in order once it reads.
TEST(HttpServer, test_answers_given_on_the_loop_stop_the_reading_as_they_pile_up) {
  http_limits limits;
  limits.max_unread_answer_bytes = 64u << 20; // not the limit at work here
  constexpr size_t answer_bytes = 256 << 10;
  std::atomic<int> answered{0};
  server_under_test s{limits, [&](http_request& req, responder r) {
                        http_response res;
                        res.body = req.path;
                        res.body.resize(answer_bytes, 'x');
                        r.send(std::move(res));
                        answered.fetch_add(1);
                      }};
  constexpr int pipelined = 256;
  raw_client stuck{s.server.port(), 4096};
  ASSERT_TRUE(stuck.send(pipelined_gets(pipelined)));
  // Settled: the count the same for 300 ms.
  int ran = -1;
  big_answers::holds_within(10s, [&] {
    int before = answered.load();
    std::this_thread::sleep_for(300ms);
    ran = answered.load();
    return ran == before && ran > 0;
  });
  // 1 MiB in the node, and what the kernel takes (a few MiB).
  EXPECT_LT(ran, 48) << "the answers piled up before any was written";
  // (The answer that crosses 1 MiB is queued whole, with its head.)
  EXPECT_LT(s.server.unread_answer_bytes(), (1u << 20) + 2 * answer_bytes);
  EXPECT_EQ(s.server.slow_readers_closed(), 0u);

  stuck.open_window();
  auto stream = stuck.read_until([](const std::string& got) { return answers_in(got) == pipelined; },
                                 30s);
  auto got = bodies(stream);
  ASSERT_EQ(got.size(), static_cast<size_t>(pipelined));
  for (int i = 0; i < pipelined; ++i)
    EXPECT_EQ(got[i].rfind("/big" + std::to_string(i) + "x", 0), 0u) << i;
  EXPECT_FALSE(stuck.saw_eof());
}

// The cap per connection bounds what one client that does not read makes the
// node hold, not what many do. Past the node's budget, the connections that
// hold the most unread answers are closed until a quarter of it is free; a
// connection holding less keeps its answers, and a client that reads is not
// affected.
TEST(HttpServer, test_past_the_node_budget_for_unread_answers_the_biggest_holders_are_closed) {
  http_limits limits;
  limits.max_unread_answer_bytes = 64u << 20; // not the cap at work here
  limits.max_unread_answer_bytes_total = 20u << 20;
  big_answers b{limits, 256 << 10};
  auto& server = b.s.server;
  raw_client first{server.port(), 4096};
  ASSERT_TRUE(first.send(pipelined_gets(64))); // 16 MiB it does not read
  // What the kernel's socket buffers took (a few MiB at most) is not held.
  auto first_holds = b.unread_once_answered(64);
  if (first_holds <= (11u << 20))
    GTEST_SKIP() << "this kernel's socket buffers take more than 5 MiB: " << first_holds
                 << " bytes held of 16 MiB";
  ASSERT_LT(first_holds, limits.max_unread_answer_bytes_total);
  EXPECT_EQ(server.connections(), 1u);

  // The second one takes the node past its budget while it holds less than
  // the first: the first is closed.
  raw_client second{server.port(), 4096};
  ASSERT_TRUE(second.send(pipelined_gets(64)));
  ASSERT_TRUE(big_answers::holds_within(5s, [&] { return server.slow_readers_closed() == 1; }));
  EXPECT_TRUE(b.connections_become(1));
  first.open_window();
  auto to_first = first.read_to_eof(10s);
  EXPECT_TRUE(first.saw_eof());
  EXPECT_LT(bodies(to_first).size(), 64u);

  // The second holds less than the budget: it keeps every answer.
  EXPECT_LT(b.settled_unread_bytes(), limits.max_unread_answer_bytes_total);
  raw_client reader{server.port()};
  ASSERT_TRUE(reader.send(pipelined_gets(8)));
  auto to_reader = reader.read_until([](const std::string& got) { return answers_in(got) == 8; });
  EXPECT_EQ(bodies(to_reader).size(), 8u);
  second.open_window();
  auto to_second = second.read_until([](const std::string& got) { return answers_in(got) == 64; }, 20s);
  EXPECT_EQ(bodies(to_second).size(), 64u);
  EXPECT_FALSE(second.saw_eof());
  EXPECT_EQ(server.slow_readers_closed(), 1u);
  EXPECT_EQ(b.settled_unread_bytes(), 0u);
}

// What the node counts as held for a client returns to zero once the client
// has taken its answers, on a connection still open (a closed one takes its
// count with it): counted too high, the budget would shrink for good;
// counted down past zero, every client holding an answer would be closed.
TEST(HttpServer, test_unread_answers_are_counted_until_the_client_takes_them) {
  http_limits limits;
  limits.max_unread_answer_bytes = 16u << 20;
  big_answers b{limits, 256 << 10};
  // 8 MiB to a client with a small window: more than the kernel's socket
  // buffer takes (a few MiB), so the rest waits in the node, partly written.
  constexpr int more_than_the_kernel_takes = 32;
  auto& server = b.s.server;
  {
    raw_client reader{server.port(), 4096};
    ASSERT_TRUE(reader.send(pipelined_gets(more_than_the_kernel_takes)));
    if (b.unread_once_answered(more_than_the_kernel_takes) == 0)
      GTEST_SKIP() << "this kernel's socket buffers take 8 MiB: nothing waits in the node";
    reader.open_window();
    auto got = reader.read_until(
      [](const std::string& g) { return answers_in(g) == more_than_the_kernel_takes; }, 20s);
    EXPECT_EQ(bodies(got).size(), more_than_the_kernel_takes);
    EXPECT_EQ(b.settled_unread_bytes(), 0u);
    EXPECT_EQ(server.connections(), 1u);
  }
  ASSERT_TRUE(b.connections_become(0));
  {
    // Its last request asks to close: the connection lingers after the last
    // answer (the client has not closed yet), its count back to zero.
    raw_client closes{server.port(), 4096};
    ASSERT_TRUE(closes.send(pipelined_gets(more_than_the_kernel_takes - 1)
                            + "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    EXPECT_GT(b.unread_once_answered(2 * more_than_the_kernel_takes), 0u);
    closes.open_window();
    EXPECT_EQ(bodies(closes.read_to_eof(20s)).size(), more_than_the_kernel_takes);
    EXPECT_EQ(b.settled_unread_bytes(), 0u);
    EXPECT_EQ(server.connections(), 1u) << "closed before it was looked at: the check proves nothing";
  }
  EXPECT_EQ(server.slow_readers_closed(), 0u);
}

// A stop gives the answers `drain_timeout` to be written (at least the 2 s a
// connection lingers after its last answer) once every request is answered,
// not the longest a request could have taken on top of it: a client that
// does not read holds up a stop, and a node's restart, for that much only.
TEST(HttpServer, test_a_stop_waits_the_drain_timeout_only_for_a_client_that_does_not_read) {
  http_limits limits;
  limits.request_timeout = 10s;
  limits.drain_timeout = 1s;
  limits.max_unread_answer_bytes = 16u << 20; // it is not closed for what it holds
  big_answers b{limits, 256 << 10};
  raw_client stuck{b.s.server.port(), 4096};
  ASSERT_TRUE(stuck.send(pipelined_gets(32))); // 8 MiB: more than the kernel takes
  if (b.unread_once_answered(32) == 0)
    GTEST_SKIP() << "this kernel's socket buffers take 8 MiB: nothing waits in the node";
  auto began = std::chrono::steady_clock::now();
  b.s.server.stop();
  auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - began)
                   .count();
  EXPECT_GE(took_ms, 1900); // its answers had their chance
  EXPECT_LT(took_ms, 6000); // not 11.1 s, the request timeout's bound
  EXPECT_EQ(b.s.server.connections(), 0u);
}

// The same when a request is in flight at the stop: the drain counts from
// its answer.
TEST(HttpServer, test_a_stop_drains_from_the_last_answer_of_a_request_in_flight) {
  http_limits limits;
  limits.request_timeout = 10s;
  limits.drain_timeout = 1s;
  limits.max_unread_answer_bytes = 64u << 20;
  std::mutex mtx;
  std::vector<responder> held;
  server_under_test s{limits, [&](http_request&, responder r) {
                        std::lock_guard<std::mutex> guard{mtx};
                        held.push_back(std::move(r));
                      }};
  raw_client stuck{s.server.port(), 4096};
  ASSERT_TRUE(stuck.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(big_answers::holds_within(5s, [&] { return s.server.inflight() == 1; }));
  auto began = std::chrono::steady_clock::now();
  std::thread stopper{[&] { s.server.stop(); }};
  std::this_thread::sleep_for(1s);
  {
    std::lock_guard<std::mutex> guard{mtx};
    http_response res;
    res.body.assign(16u << 20, 'x'); // more than the kernel takes: it waits in the node
    held.at(0).send(std::move(res));
  }
  stopper.join();
  auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - began)
                   .count();
  EXPECT_GE(took_ms, 2900); // the answer after 1 s, then 2 s to be written
  EXPECT_LT(took_ms, 7000); // not 11.1 s
}

// A client that takes nothing of an answer for write_timeout is closed (its
// answer would hold memory and a descriptor for as long as it likes); one
// that reads slowly, but reads, keeps its connection.
TEST(HttpServer, test_a_client_that_stops_reading_is_closed_after_the_write_timeout) {
  http_limits limits;
  limits.write_timeout = 1s;
  limits.max_unread_answer_bytes = 64u << 20;
  big_answers b{limits, 4 << 20};
  {
    raw_client slow{b.s.server.port(), 4096};
    ASSERT_TRUE(slow.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"));
    // 4 MiB read 256 KiB every 50 ms: slower than the server writes, never
    // stalled for a write timeout.
    std::string got;
    auto until = std::chrono::steady_clock::now() + 10s;
    while (bodies(got).empty() && !slow.saw_eof() && std::chrono::steady_clock::now() < until) {
      got = slow.read_until([n = got.size()](const std::string& g) { return g.size() >= n + (256 << 10); },
                            1s);
      std::this_thread::sleep_for(50ms);
    }
    ASSERT_EQ(bodies(got).size(), 1u) << got.size() << " bytes read";
    EXPECT_EQ(bodies(got)[0].size(), 4u << 20);
    EXPECT_FALSE(slow.saw_eof());
  }
  ASSERT_TRUE(b.connections_become(0));
  raw_client stuck{b.s.server.port(), 4096};
  ASSERT_TRUE(stuck.send("GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(b.s.server.connections(), 1u); // not before the timeout
  EXPECT_TRUE(b.connections_become(0, 5s)) << b.s.server.connections();
  EXPECT_EQ(b.s.server.slow_readers_closed(), 1u); // the slow one was not
}

// http_parser counts every byte of a request's head; the header limit counts
// the target and the header names and values. A head padded with whitespace
// (here 20,000 spaces before a header's value) is refused too.
TEST(HttpServer, test_a_head_padded_with_whitespace_is_past_the_header_limit) {
  big_answers b{http_limits{}, 10};
  raw_client c{b.s.server.port()};
  ASSERT_TRUE(c.send("GET /x HTTP/1.1\r\nHost: t\r\nA:" + std::string(20000, ' ') + "b\r\n\r\n"));
  auto stream = c.read_to_eof();
  EXPECT_EQ(stream.rfind("HTTP/1.1 431 ", 0), 0u) << stream.substr(0, 200);
}

// A handler may keep a responder and answer it while it runs for another
// connection's request. That answer can let the other connection, paused at
// its pipelining cap, parse its next request and run the handler again
// before the first handler's answers are all delivered: each gets its
// answers, in order, once (under the sanitizers, no use of freed memory).
TEST(HttpServer, test_a_handler_may_answer_another_connections_request_while_it_runs) {
  http_limits limits;
  limits.max_pipelined = 1;
  std::optional<responder> kept; // the loop thread's only
  server_under_test s{limits, [&](http_request& req, responder r) {
                        auto answer = [](const responder& to, std::string body) {
                          http_response res;
                          res.body = std::move(body);
                          to.send(std::move(res));
                        };
                        if (req.path == "/hold") {
                          kept = std::move(r);
                          return;
                        }
                        if (req.path == "/release" && kept) {
                          answer(*kept, "/hold");
                          kept.reset();
                        }
                        answer(r, req.path);
                      }};
  raw_client a{s.server.port()};
  ASSERT_TRUE(a.send("GET /hold HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(big_answers::holds_within(5s, [&] { return s.server.inflight() == 1; }));
  raw_client b{s.server.port()};
  ASSERT_TRUE(b.send("GET /release HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto to_b = b.read_until([](const std::string& got) { return answers_in(got) == 1; });
  EXPECT_EQ(bodies(to_b), std::vector<std::string>{"/release"});
  auto to_a = a.read_until([](const std::string& got) { return answers_in(got) == 2; });
  EXPECT_EQ(bodies(to_a), (std::vector<std::string>{"/hold", "/next"}));
  EXPECT_TRUE(big_answers::holds_within(5s, [&] { return s.server.inflight() == 0; }));
}

// A method the server does not know (RFC 9110 9.1: 501, not a malformed
// request), also one spelled in lower case: methods are case-sensitive.
TEST(HttpServer, test_an_unknown_method_is_not_implemented) {
  big_answers b{http_limits{}, 10};
  for (std::string method : {"FOO", "get", "BREW"}) {
    raw_client c{b.s.server.port()};
    ASSERT_TRUE(c.send(method + " /x HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto stream = c.read_to_eof();
    EXPECT_EQ(stream.rfind("HTTP/1.1 501 Not Implemented\r\n", 0), 0u) << method << ": " << stream;
    EXPECT_NE(stream.find(R"({"error":{"code":"not_implemented","message":"the request method is not one this server implements","request_id":")"),
              std::string::npos)
      << stream;
    EXPECT_TRUE(c.saw_eof()) << method;
  }
  // Bytes that are no method at all, such as a TLS handshake, are malformed.
  raw_client tls{b.s.server.port()};
  ASSERT_TRUE(tls.send(std::string{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11}));
  EXPECT_EQ(tls.read_to_eof().rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
  EXPECT_EQ(b.answered.load(), 0);
}

namespace {

/// Sends this process's standard output (where the access log goes) to a
/// temporary file while it lives.
class captured_stdout {
public:
  captured_stdout() : saved_(::dup(STDOUT_FILENO)) {
    char path[] = "/tmp/shop-stdout-XXXXXX";
    fd_ = ::mkstemp(path);
    ::unlink(path);
    std::fflush(stdout);
    ::dup2(fd_, STDOUT_FILENO);
  }
  ~captured_stdout() { restore(); }
  captured_stdout(const captured_stdout&) = delete;
  captured_stdout& operator=(const captured_stdout&) = delete;

  /// Puts standard output back and returns what was written meanwhile.
  std::string restore() {
    if (saved_ >= 0) {
      std::fflush(stdout);
      ::dup2(saved_, STDOUT_FILENO);
      ::close(saved_);
      saved_ = -1;
    }
    std::string out;
    char buf[4096];
    ssize_t n;
    for (off_t at = 0; (n = ::pread(fd_, buf, sizeof(buf), at)) > 0; at += n)
      out.append(buf, static_cast<size_t>(n));
    return out;
  }

private:
  int saved_;
  int fd_ = -1;
};

} // namespace

// A client that resets its connection while its request is worked on still
// gets its access log line, marked `client=gone`, also when the node is
// stopping: the stop waits for that answer (within its limit) instead of
// finishing as soon as no connection is left.
TEST(HttpServer, test_a_stop_waits_to_log_the_answer_of_a_client_that_went_away) {
  captured_stdout out;
  held_requests h;
  http_server server{http_limits{}, h.handler(), {}, {}, true};
  ASSERT_TRUE(server.start("127.0.0.1", 0).empty());
  {
    raw_client c{server.port()};
    ASSERT_TRUE(c.send("GET /gone HTTP/1.1\r\nHost: t\r\nX-Request-Id: gone-7\r\n\r\n"));
    auto until = std::chrono::steady_clock::now() + 5s;
    while (h.dispatched < 1 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(5ms);
    c.reset();
  }
  auto until = std::chrono::steady_clock::now() + 5s;
  while (server.connections() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  std::thread stopper{[&] { server.stop(); }};
  std::this_thread::sleep_for(200ms); // the stop has begun, with no connection left
  h.answer_all();
  stopper.join();
  auto log = out.restore();
  ASSERT_EQ(h.dispatched, 1);
  EXPECT_EQ(server.connections(), 0u);
  auto at = log.find("request=gone-7");
  ASSERT_NE(at, std::string::npos) << "no access log line: " << log;
  auto begin = log.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  auto line = log.substr(begin, log.find('\n', at) - begin);
  EXPECT_NE(line.find(R"(access: 127.0.0.1 "GET /gone" 200 )"), std::string::npos) << log;
  EXPECT_NE(line.find(" client=gone"), std::string::npos) << log;
}
