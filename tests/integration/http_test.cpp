// The edge's HTTP/1.1 connection handling against a real shopd, beyond one
// request at a time: pipelining into a client that reads slowly.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "tests/fixtures/shopd_process.hpp"

using namespace shop::test;
using namespace std::chrono_literals;

namespace {

/// A loopback TCP connection with a small receive buffer, so the server's
/// answers back up in its send buffer unless the test reads them.
int connect_small_window(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int rcvbuf = 4096;
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
