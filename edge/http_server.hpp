#pragma once
// The HTTP/1.1 transport: one libuv loop thread that accepts connections,
// parses requests with http_parser (the parser Node.js shipped for a decade),
// enforces limits and timeouts, and writes responses in request order
// (pipelining). One per node.
//
// The loop never waits for an actor. A handler either answers at once or
// keeps the `responder` and completes it later from any thread; completions
// travel back to the loop through a mutex-protected queue and uv_async_send.
// An answer given while the handler still runs goes to its connection as the
// handler returns, before the next request is parsed.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace shop::edge {

struct http_limits {
  /// Request line plus all header lines, in bytes; more answers 431. Default: 8 KiB.
  size_t max_header_bytes = 8 * 1024;
  /// Number of header lines; more answers 431. Default: 64.
  size_t max_headers = 64;
  /// Request body in bytes; more answers 413. Default: 64 KiB.
  size_t max_body_bytes = 64 * 1024;
  /// A request must arrive completely within this time after its first byte (else 408). Default: 10 s.
  std::chrono::milliseconds read_timeout{10'000};
  /// A keep-alive connection without requests is closed after this. Default: 60 s.
  std::chrono::milliseconds idle_timeout{60'000};
  /// A connection whose written answers the client takes none of for this
  /// long is closed (any progress restarts it). Default: 30 s.
  std::chrono::milliseconds write_timeout{30'000};
  /// Bytes of answers a connection may hold that its client has not taken
  /// (queued for the socket, or finished behind an earlier unanswered one);
  /// past this it is closed: its client does not read. Reading pauses at
  /// 1 MiB already, but up to `max_pipelined` requests may be under way when
  /// it does. Default: 4 MiB.
  size_t max_unread_answer_bytes = 4u << 20;
  /// Bytes of answers held for clients that have not taken them, all
  /// connections together (answers the kernel's socket buffers took are not
  /// counted: a client that reads holds none). Past this, the connections
  /// holding the most are closed until a quarter of it is free: many
  /// connections that each stay under `max_unread_answer_bytes` must not
  /// take the node's memory. 0: no node-wide budget. Default: 256 MiB.
  size_t max_unread_answer_bytes_total = 256u << 20;
  /// Requests being processed node-wide; past this, new requests get 503 at once. Default: 20000.
  size_t max_inflight = 20'000;
  /// Client connections served at once; 0: no limit. Past it, up to 1/16 of
  /// it more (at least 16) are held only to answer their first request, once
  /// its headers are in, 503 `unavailable` with `Connection: close` (closed
  /// after `refusing_timeout` without them), and further ones are closed at once: the
  /// descriptors storage needs are never handed to clients.
  /// shopd sets it from the open-file limit (cluster/node.hpp, fd_plan). Default: 0.
  size_t max_connections = 0;
  /// A connection being refused (past max_connections) that has not sent its
  /// request's headers within this is closed. Default: 1 s.
  std::chrono::milliseconds refusing_timeout{1'000};
  /// Unanswered pipelined requests per connection before reading pauses. Default: 256.
  size_t max_pipelined = 256;
  /// A request not answered by its handler within this time gets 503. Default: 5 s.
  std::chrono::milliseconds request_timeout{5'000};
  /// At a stop, every request in flight is answered within the request
  /// timeout (its handler's answer or the 503); stop() then waits this much
  /// longer for the answers to be written before it closes what is left.
  /// Default: 1 s.
  std::chrono::milliseconds drain_timeout{1'000};
};

struct http_request {
  std::string method;
  std::string path;
  std::string query;
  /// Header names in lower case, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string request_id;
  /// W3C trace id (32 lowercase hex digits): the client's, from a valid
  /// `traceparent`, else a new one. The response's `traceparent` carries it.
  std::string trace_id;
  std::chrono::steady_clock::time_point received;
  /// The client's IP address as text: the TCP peer (behind a proxy, the
  /// proxy). Empty if the socket could not tell.
  std::string peer;

  /// The first header named `name` (lower case), or empty.
  std::string_view header(std::string_view name) const;
};

struct http_response {
  int status = 200;
  std::string body;
  /// Extra headers; Content-Type is application/json unless given here.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Set by the server for metrics: the route pattern that served the request.
  std::string route;
};

class http_server;

/// Completes one request; usable from any thread, exactly once.
class responder {
public:
  /// The server's completion queue (opaque outside http_server.cpp).
  struct shared;

  responder() = default;
  responder(std::shared_ptr<shared> queue, uint64_t conn_id, uint64_t seq, std::string request_id,
            std::chrono::steady_clock::time_point received)
    : shared_(std::move(queue)),
      conn_id_(conn_id),
      seq_(seq),
      request_id_(std::move(request_id)),
      received_(received) {
  }

  /// Queues the response for the loop thread (or, called on the loop thread
  /// while the server's handler runs, hands it over as the handler returns).
  /// Call once.
  void send(http_response res) const;
  const std::string& request_id() const noexcept { return request_id_; }

private:
  std::shared_ptr<shared> shared_;
  uint64_t conn_id_ = 0;
  uint64_t seq_ = 0;
  std::string request_id_;
  std::chrono::steady_clock::time_point received_;
};

/// Called on the loop thread for every complete request. The handler may
/// take the request's contents (move from it): the server does not look at
/// the request after the call, and starts the next one afresh.
using request_handler = std::function<void(http_request&, responder)>;

/// Called on the loop thread after each response is written (metrics).
using response_observer =
  std::function<void(const std::string& route, int status, std::chrono::microseconds latency)>;

/// Called on the loop thread once per loop iteration, after the requests
/// read in that iteration were handled (lets a handler batch its work).
using iteration_hook = std::function<void()>;

class http_server {
public:
  /// With `access_log`, every answer is logged (spdlog, info): client
  /// address, method and target, status, body bytes, time from the complete
  /// request, request id and trace id.
  http_server(http_limits limits, request_handler handler, response_observer observer = {},
              iteration_hook after_reads = {}, bool access_log = false);
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds and starts the loop thread. Returns an error text, or empty on
  /// success. Sets SIGPIPE to be ignored unless the program handles it.
  [[nodiscard]] std::string start(const std::string& host, uint16_t port);

  /// Whether `start(host, port)` could listen now: the error `start` would
  /// give (an address that is not numeric or not this machine's, a port in
  /// use), or empty. Listens for a moment and closes again, so a program can
  /// refuse a start before it has changed anything.
  [[nodiscard]] static std::string check_listen(const std::string& host, uint16_t port);

  /// Stops accepting and reading, answers what is in flight (the last answer
  /// on each connection says `Connection: close`), closes each connection once
  /// its answers are written, and `drain_timeout` (at least the 2 s a closed
  /// connection lingers) after the last answer, which comes `request_timeout`
  /// + 100 ms after the stop at the latest, every connection left; joins the
  /// loop thread. Idempotent.
  void stop();

  /// From now on every request read is its connection's last, as if its
  /// client had sent `Connection: close`: its answer says so and the
  /// connection closes once it is written, so that clients open a new one
  /// (through a load balancer, to another node). Everything else goes on:
  /// new connections are accepted and requests served. For the delay before
  /// a stop (shopd's --shutdown-delay). Any thread; idempotent.
  void close_connections_after_answers() noexcept;

  /// The bound port (useful when started on port 0).
  uint16_t port() const noexcept { return port_; }

  /// Requests handed to the handler and not yet answered.
  size_t inflight() const noexcept;
  /// Open client connections.
  size_t connections() const noexcept;
  /// Connections refused since the start, past `max_connections`: answered
  /// 503, or closed at once when even the room to refuse in was taken.
  uint64_t refused_connections() const noexcept;
  /// Bytes of answers held for clients that have not taken them.
  size_t unread_answer_bytes() const noexcept;
  /// Connections closed since the start because their client did not take
  /// its answers: past `max_unread_answer_bytes`, past the node's
  /// `max_unread_answer_bytes_total`, or nothing taken for `write_timeout`.
  uint64_t slow_readers_closed() const noexcept;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
  uint16_t port_ = 0;
};

/// The reason phrase of a status code.
const char* reason_phrase(int status) noexcept;

/// ASCII case-insensitive equality, as HTTP compares scheme names and tokens.
bool equals_ignore_case(std::string_view a, std::string_view b) noexcept;

/// Parses a W3C `traceparent` header (Trace Context, level 1): version (two
/// lowercase hex digits, not ff), trace id (32, not all zero), parent id (16,
/// not all zero) and flags (2), joined by '-'. Version 00 is exactly 55
/// characters; a later version may be longer, with '-' after the flags.
/// On success sets `trace_id` and `flags` (views into `header`).
bool parse_traceparent(std::string_view header, std::string_view& trace_id,
                       std::string_view& flags) noexcept;

} // namespace shop::edge
