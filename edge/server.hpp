#pragma once
// The edge of one node: the HTTP server plus the API, on top of a running
// node. One per node; start after node::start, stop before node::stop.

#include <atomic>
#include <memory>
#include <string>

#include "cluster/node.hpp"
#include "edge/api.hpp"
#include "edge/http_server.hpp"

namespace shop::edge {

struct server_config {
  /// Where the edge listens. Default: 127.0.0.1:8080 (port 0 picks a free port).
  std::string http_host = "127.0.0.1";
  uint16_t http_port = 8080;
  http_limits limits;
  api_options api;
  /// One log line per answer (http_server). Default: off.
  bool access_log = false;
};

class server {
public:
  server(node& n, server_config cfg);
  ~server();

  /// Binds and serves; returns an error text or empty.
  [[nodiscard]] std::string start();
  /// The delay before a stop begins: /readyz answers 503 ("the node is
  /// stopping") from now on, and every request read is its connection's
  /// last (http_server::close_connections_after_answers), while the edge
  /// goes on serving. Any thread; idempotent.
  void announce_stop() noexcept;
  /// Stops accepting and closes every connection. Idempotent.
  void stop();
  uint16_t port() const noexcept;

private:
  node& node_;
  server_config cfg_;
  std::atomic<bool> stopping_{false}; // announce_stop() was called
  std::unique_ptr<api> api_;
  std::unique_ptr<http_server> http_;
};

} // namespace shop::edge
