#include "edge/http_server.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include <http_parser.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

namespace shop::edge {

std::string_view http_request::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (k == name)
      return v;
  return {};
}

namespace {

bool lower_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(),
                     [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); });
}

bool all_zero(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char ch) { return ch == '0'; });
}

} // namespace

bool parse_traceparent(std::string_view h, std::string_view& trace_id,
                       std::string_view& flags) noexcept {
  constexpr size_t size_v0 = 55; // 2 + 1 + 32 + 1 + 16 + 1 + 2
  if (h.size() < size_v0 || h[2] != '-' || h[35] != '-' || h[52] != '-')
    return false;
  auto version = h.substr(0, 2);
  if (!lower_hex(version) || version == "ff")
    return false;
  if (version == "00" ? h.size() != size_v0 : h.size() > size_v0 && h[size_v0] != '-')
    return false;
  auto trace = h.substr(3, 32), parent = h.substr(36, 16), f = h.substr(53, 2);
  if (!lower_hex(trace) || !lower_hex(parent) || !lower_hex(f) || all_zero(trace)
      || all_zero(parent))
    return false;
  trace_id = trace;
  flags = f;
  return true;
}

namespace {

/// ASCII only, whatever the C locale: header names and the tokens compared
/// here are ASCII (RFC 9110 5.1), and this is inlined where std::tolower is a call.
constexpr char ascii_lower(char ch) noexcept {
  return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
}

} // namespace

bool equals_ignore_case(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

const char* reason_phrase(int status) noexcept {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

// -- cross-thread completion --------------------------------------------------

struct responder::shared {
  struct item {
    uint64_t conn_id;
    uint64_t seq;
    http_response res;
    std::string request_id;
    std::chrono::steady_clock::time_point received;
  };
  std::mutex mtx;
  bool closed = false;
  uv_async_t* async = nullptr;
  std::vector<item> items;
  /// Answers given while the server's handler runs on the loop thread (the
  /// routes answered there: probes, /metrics, /openapi.yaml, 404s). The server
  /// takes them as the handler returns, before it parses the next request, so
  /// that each counts against its connection's limits at once: queued with
  /// `items`, every request of a read ran first, and 256 pipelined requests
  /// for a 71 KB document held 18 MB per connection. Loop thread only.
  std::vector<item> given_in_handler;
};

namespace {

/// The completion queue whose server is running its handler on this thread
/// (the loop thread, in on_message_complete), else null.
thread_local const responder::shared* handler_running = nullptr;

} // namespace

void responder::send(http_response res) const {
  if (!shared_)
    return;
  if (handler_running == shared_.get()) {
    shared_->given_in_handler.push_back({conn_id_, seq_, std::move(res), request_id_, received_});
    return;
  }
  std::lock_guard<std::mutex> guard{shared_->mtx};
  if (shared_->closed)
    return;
  shared_->items.push_back({conn_id_, seq_, std::move(res), request_id_, received_});
  uv_async_send(shared_->async); // the one libuv call allowed off the loop thread
}

// -- the server ---------------------------------------------------------------

namespace {

/// The access log's sink: lines collect in memory and go to stdout in one
/// write per loop iteration (or per 64 KiB). spdlog's stdout sink flushes
/// every line: one write syscall per answer, which cost the loop thread
/// more than the rest of a /healthz (bench/RESULTS.md).
class batched_stdout_sink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    buf_.append(formatted.data(), formatted.size());
    if (buf_.size() >= 64 * 1024)
      flush_();
  }
  void flush_() override {
    size_t done = 0;
    while (done < buf_.size()) {
      auto n = ::write(STDOUT_FILENO, buf_.data() + done, buf_.size() - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break; // stdout is gone: the lines are lost, the node goes on
      done += static_cast<size_t>(n);
    }
    buf_.clear();
  }

private:
  std::string buf_;
};

/// A logger for the access log with the process's log format (text or JSON,
/// as set with spdlog::set_formatter) and a batched sink; not kept in
/// spdlog's registry, so only the loop thread ever uses it.
std::shared_ptr<spdlog::logger> make_access_logger() {
  static std::atomic<int> made{0};
  auto name = "access-" + std::to_string(made++);
  auto logger = std::make_shared<spdlog::logger>(name, std::make_shared<batched_stdout_sink>());
  spdlog::initialize_logger(logger); // takes the registry's formatter and level
  spdlog::drop(name);
  return logger;
}

struct connection;

/// A request handed to the handler: its connection's id and its place in
/// the connection. (Both grow for as long as the node runs.)
struct request_key {
  uint64_t conn_id = 0;
  uint64_t seq = 0;
  bool operator==(const request_key& o) const noexcept {
    return conn_id == o.conn_id && seq == o.seq;
  }
};

struct request_key_hash {
  size_t operator()(const request_key& k) const noexcept {
    return std::hash<uint64_t>{}(k.conn_id * 0x9e3779b97f4a7c15ull ^ k.seq);
  }
};

/// One response slot per request, in arrival order.
struct slot {
  bool done = false;
  bool keep_alive = true;
  bool head = false; // a HEAD request: the answer carries no body
  /// The answer's `traceparent` header value.
  std::string traceparent;
  std::string bytes;
  // For the access log only (empty unless it is on):
  std::string request_line; ///< method and target, as the client sent them
  std::chrono::steady_clock::time_point received{};
};

struct write_req {
  uv_write_t req;
  std::string data;
  connection* conn;
  bool close_after;
  size_t held = 0; // what it counts in its connection's `held`
};

} // namespace

struct http_server::impl {
  http_limits limits;
  std::shared_ptr<spdlog::logger> access_log; // set when the access log is on
  request_handler handler;
  response_observer observer;
  iteration_hook after_reads;
  uv_check_t check;
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_async_t reply_async;
  uv_async_t stop_async;
  std::thread thread;
  std::shared_ptr<responder::shared> shared = std::make_shared<responder::shared>();
  std::unordered_map<uint64_t, connection*> conns;
  uint64_t next_conn_id = 1;
  http_parser_settings settings{};
  char read_buf[64 * 1024];
  std::string id_prefix;
  uint64_t id_counter = 0;
  bool stopped = false;
  /// close_connections_after_answers() was called: every request read is
  /// its connection's last.
  std::atomic<bool> last_requests{false};
  std::atomic<size_t> inflight{0};
  std::atomic<size_t> connections{0};
  std::atomic<uint64_t> refused_connections{0};
  /// Open connections past max_connections, being refused (loop thread).
  size_t refusing = 0;
  /// When the last warning about refused connections was logged.
  std::chrono::steady_clock::time_point refusal_logged{};
  /// When the last warning about a client that does not read was logged.
  std::chrono::steady_clock::time_point slow_reader_logged{};
  /// Bytes of answers held for clients that have not taken them: every open
  /// connection's `held`. Written by the loop thread only (so a plain load
  /// and store), read by the metrics.
  std::atomic<size_t> unread_bytes{0};
  std::atomic<uint64_t> slow_readers_closed{0};
  /// Requests handed to the handler, oldest first (one timeout for all, so
  /// deadlines are in order): the loop answers 503 for those past due.
  struct deadline {
    std::chrono::steady_clock::time_point at;
    uint64_t conn_id;
    uint64_t seq;
    std::string request_id;
  };
  std::deque<deadline> deadlines;
  /// Requests handed to the handler and not yet answered (by the handler or
  /// by the deadline), keyed by (conn id, seq): whichever answer comes first
  /// releases the in-flight slot, exactly once.
  std::unordered_set<request_key, request_key_hash> outstanding;
  /// With the access log on: the outstanding requests whose client went away
  /// before their answer (a reset), keyed like `outstanding`, so that their
  /// answer is still logged. At most one per outstanding request.
  struct orphan {
    std::string peer;
    slot s;
  };
  std::unordered_map<request_key, orphan, request_key_hash> orphans;
  uv_timer_t deadline_timer;
  uv_timer_t drain_timer;
  bool draining = false; // stop() began: answer what is in flight, take nothing new
  bool writes_draining = false; // ...and every request is answered: the drain timeout runs
  bool finished = false; // every handle closed: the loop ends
  /// The completions being answered (loop thread). Swapped with the shared
  /// queue, so both vectors keep their capacity from one iteration to the next.
  std::vector<responder::shared::item> replies;

  std::string next_request_id() {
    ++id_counter;
    return id_prefix + std::to_string(id_counter);
  }

  /// Random ids for trace context (not secrets: a fast generator will do).
  std::mt19937_64 trace_rng = [] {
    // Seeded with 256 bits: a 32-bit seed would let two nodes (or two starts)
    // share one sequence of "new" trace ids in 2^32.
    std::random_device rd;
    std::seed_seq seeds{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64{seeds};
  }();
  void append_hex(std::string& out, size_t digits) {
    static constexpr char hex[] = "0123456789abcdef";
    while (digits > 0) {
      auto bits = trace_rng();
      for (int i = 0; i < 16 && digits > 0; ++i, --digits, bits >>= 4)
        out.push_back(hex[bits & 0xf]);
    }
  }

  /// The trace context of a request with `headers` (lower-case names): sets
  /// `trace_id` (the client's, or a new one when it sent none, more than
  /// one, or an invalid one) and returns the answer's `traceparent`, whose
  /// parent id is this node's own span.
  std::string trace_context(const std::vector<std::pair<std::string, std::string>>& headers,
                            std::string& trace_id) {
    std::string_view client_trace, flags;
    int given = 0;
    bool valid = false;
    for (auto& [name, value] : headers)
      if (name == "traceparent" && ++given == 1)
        valid = parse_traceparent(value, client_trace, flags);
    if (given == 1 && valid) {
      trace_id.assign(client_trace);
    } else {
      trace_id.clear();
      flags = "00";
      // A trace id whose digits are all zero is invalid; 2^-128 is not worth a loop.
      append_hex(trace_id, 32);
    }
    std::string tp;
    tp.reserve(55);
    tp.append("00-").append(trace_id).push_back('-');
    append_hex(tp, 16);
    // Only the sampled bit (01) is defined; the others must go out as zero
    // (Trace Context 3.2.2.5).
    char low = flags[1]; // a lower-case hex digit; its lowest bit is the flags'
    bool sampled = ((low <= '9' ? low - '0' : low - 'a' + 10) & 1) != 0;
    tp.append(sampled ? "-01" : "-00");
    return tp;
  }
};

namespace {

/// The bytes http_parser consumed, in order, checked for what Debian's
/// lenient build takes without any callback seeing it: a bare CR in a head
/// (it takes any byte after a CR for the LF: after the request line, after
/// an empty field value, at the blank line) and a request line whose version
/// is not exactly "HTTP/" DIGIT "." DIGIT (it checks only the "H"). It also
/// refuses a control byte that starts a field value, which the parser lets
/// through: on_header_value sees that byte, but this loop passes over it
/// anyway.
/// Bodies are skipped: parse() tells where each head ends and how long its
/// body is (Content-Length; chunked bodies are refused).
class head_scanner {
public:
  /// Takes the next `n` consumed bytes; false at the first that is invalid.
  bool take(const char* p, size_t n) noexcept {
    for (size_t i = 0; i < n; ++i) {
      if (state_ == at::body) {
        auto skip = std::min<uint64_t>(body_left_, n - i);
        body_left_ -= skip;
        i += skip - 1;
        if (body_left_ == 0)
          state_ = at::line_start;
        continue;
      }
      char ch = p[i];
      if (after_cr_) {
        if (ch != '\n')
          return false;
        after_cr_ = false;
        continue;
      }
      if (ch == '\r') {
        after_cr_ = true;
        if (state_ == at::target || (state_ == at::version && version_len_ < 8))
          return false; // a request line without its version
        if (state_ == at::version)
          state_ = at::fields;
        continue;
      }
      switch (state_) {
        case at::line_start: // empty lines before a request line are skipped
          if (ch == '\n')
            break;
          state_ = at::method;
          break;
        case at::method:
          if (ch == ' ')
            state_ = at::before_target;
          break;
        case at::before_target:
          if (ch != ' ')
            state_ = at::target;
          break;
        case at::target:
          if (ch == ' ')
            state_ = at::before_version;
          else if (ch == '\n')
            return false;
          break;
        case at::before_version:
          if (ch == ' ')
            break;
          state_ = at::version;
          version_len_ = 0;
          [[fallthrough]];
        case at::version:
          if (version_len_ == 8) {
            if (ch != '\n')
              return false;
            state_ = at::fields;
            break;
          }
          if (!version_char(ch, version_len_++))
            return false;
          break;
        case at::fields:
          // A control byte in a field (the parser checks values only after
          // their first byte); HTAB is whitespace, LF a line end.
          if ((static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n') || ch == 0x7f)
            return false;
          break;
        case at::body: // (handled above)
          break;
      }
    }
    return true;
  }

  /// The head ended at the byte the parser has not consumed yet (its LF);
  /// `body` bytes follow it.
  void head_done(uint64_t body) noexcept {
    state_ = at::body;
    body_left_ = body + 1;
    after_cr_ = false;
  }

private:
  enum class at : uint8_t { line_start, method, before_target, target, before_version, version,
                            fields, body };

  static bool version_char(char ch, uint8_t i) noexcept {
    if (i < 5)
      return ch == "HTTP/"[i];
    return i == 6 ? ch == '.' : (ch >= '0' && ch <= '9');
  }

  at state_ = at::line_start;
  bool after_cr_ = false;
  uint8_t version_len_ = 0;
  uint64_t body_left_ = 0;
};

struct connection {
  uv_tcp_t tcp;
  uv_timer_t timer;
  http_server::impl* srv = nullptr;
  uint64_t id = 0;
  http_parser parser;
  http_request cur;
  std::string field;
  bool last_was_value = false;
  size_t header_bytes = 0;
  bool in_message = false;
  int error_status = 0; // set by a callback that refuses the request
  const char* error_text = nullptr; // and, for a 400 (or 411, 501, 505), why
  head_scanner scan; // what the parser consumed, checked (parse())
  /// The parser stopped at the last byte of a request's head, for parse()
  /// to check the head before anything is sent or run for it.
  bool head_ended = false;
  std::map<uint64_t, slot> slots;
  uint64_t next_seq = 0;
  uint64_t write_seq = 0;
  bool reading = true;
  bool closing = false;
  bool in_parse = false;
  bool refuse_more = false; // after an error or a last request: nothing more is read or run
  bool over_capacity = false; // past max_connections: its first request is refused with 503
  bool close_when_drained = false; // the client half-closed: answer, then close
  bool eof = false;                // the client sent all it will
  bool headers_done = false;       // the request's head is complete
  /// The parser stopped after a complete request (http_parser_pause): the
  /// connection had as many unanswered requests or unwritten bytes as it may,
  /// or that request was its last. Bytes read and not yet parsed wait in
  /// `unparsed` until the answers drain.
  bool paused = false;
  std::string unparsed;
  /// A request whose method is not safe (RFC 9110 9.2.1: anything but GET,
  /// HEAD, OPTIONS and TRACE) runs alone on its connection: it starts once
  /// every earlier request is answered, and the next starts once it is. RFC
  /// 9112 9.3.2 lets a server run only safe requests side by side: a client
  /// that pipelines a purchase and then a look at its orders expects to see
  /// it. ("Answered" includes the request timeout's 503, which tells the
  /// client the outcome is unknown: the next request may then run beside a
  /// late handler.) `paused` is then set with `waits_for_answers`: the parser
  /// goes on once every answer is written. `unsafe_until` is the sequence number
  /// after the last unsafe request handed on (0: none yet).
  bool waits_for_answers = false;
  uint64_t unsafe_until = 0;
  /// A request that asked for "100 Continue" gets it once its head is
  /// checked, or once it may go on after waiting for earlier answers.
  bool continue_owed = false;
  int pending_writes = 0;          // uv_write requests not yet completed (the
                                   // bytes uv_try_write could not send at once)
  size_t unsent_at_timer = 0;      // unsent_bytes() when the write timeout was armed
  /// Bytes of answers held for the client: finished and not yet written (an
  /// earlier one is still being worked on), and handed to libuv and not yet
  /// all written to the socket. Counted in the server's `unread_bytes`.
  size_t held = 0;
  int open_handles = 2;
  std::string peer; // the client's IP address, read once at accept
  /// After the last answer: the write side is shut down, and what the client
  /// still sends is read and dropped until it closes (close_gracefully).
  bool lingering = false;
  uv_shutdown_t shutdown_req;
};

void close_connection(connection* c);
void arm_timer(connection* c);

void add_unread(http_server::impl* srv, size_t n) {
  srv->unread_bytes.store(srv->unread_bytes.load(std::memory_order_relaxed) + n,
                          std::memory_order_relaxed);
}

void sub_unread(http_server::impl* srv, size_t n) {
  srv->unread_bytes.store(srv->unread_bytes.load(std::memory_order_relaxed) - n,
                          std::memory_order_relaxed);
}

/// `n` more bytes of answers held for the client. Not for a closed
/// connection: what it held goes with it.
void hold(connection* c, size_t n) {
  if (c->closing)
    return;
  c->held += n;
  add_unread(c->srv, n);
}

/// `n` bytes of answers the client's socket took (or that were dropped).
void release(connection* c, size_t n) {
  if (c->closing)
    return;
  c->held -= n;
  sub_unread(c->srv, n);
}

std::string serialize(const http_response& res, const std::string& request_id,
                      const std::string& traceparent, bool keep_alive, bool head) {
  std::string out;
  out.reserve(160 + res.body.size());
  out.append("HTTP/1.1 ").append(std::to_string(res.status)).push_back(' ');
  out.append(reason_phrase(res.status)).append("\r\n");
  bool has_type = false;
  for (auto& [k, v] : res.headers) {
    if (k == "Content-Type")
      has_type = true;
    out.append(k).append(": ").append(v).append("\r\n");
  }
  if (!has_type && !res.body.empty())
    out.append("Content-Type: application/json\r\n");
  if (res.status != 204) // RFC 9110 8.6: a 204 carries no Content-Length
    out.append("Content-Length: ").append(std::to_string(res.body.size())).append("\r\n");
  out.append("X-Request-Id: ").append(request_id).append("\r\n");
  out.append("traceparent: ").append(traceparent).append("\r\n");
  if (!keep_alive)
    out.append("Connection: close\r\n");
  out.append("\r\n");
  if (!head)
    out.append(res.body);
  return out;
}

void on_closed(uv_handle_t* h) {
  auto c = static_cast<connection*>(h->data);
  if (--c->open_handles == 0)
    delete c;
}

void finish_stop(http_server::impl* srv);
void start_write_drain(http_server::impl* srv);

/// A stop may finish: every connection closed, and every request whose
/// client went away answered (so that the access log has its line).
bool drained(const http_server::impl* srv) {
  return srv->draining && srv->conns.empty() && srv->orphans.empty();
}

void close_connection(connection* c) {
  if (c->closing)
    return;
  sub_unread(c->srv, c->held); // freed with the connection (its writes are cancelled)
  c->held = 0;
  c->closing = true;
  if (c->in_parse)
    return; // finished by on_read once http_parser_execute returns
  auto srv = c->srv;
  if (srv->access_log) // requests still being worked on: log their answers when they come
    for (auto& [seq, s] : c->slots)
      if (!s.done && srv->outstanding.count(request_key{c->id, seq}) > 0)
        srv->orphans.emplace(request_key{c->id, seq},
                             http_server::impl::orphan{c->peer, std::move(s)});
  srv->conns.erase(c->id);
  srv->connections.fetch_sub(1);
  if (c->over_capacity)
    --srv->refusing;
  uv_timer_stop(&c->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
  if (drained(srv))
    finish_stop(srv); // the last one drained (lingering ones included: their
                      // answers are safe from a reset only once they close)
}

size_t unanswered(const connection* c) {
  return c->next_seq - c->write_seq;
}

void update_reading(connection* c);
void start_reading(connection* c);

/// Runs no request of the connection after those already handed on: what
/// was read and not parsed yet (while the parser waited) is dropped unrun.
void stop_taking_requests(connection* c) {
  c->refuse_more = true;
  c->paused = false;
  c->waits_for_answers = false;
  c->in_message = false; // one being read is dropped: no read timeout for it
  c->unparsed.clear();
}

/// How long a connection closed after its last answer reads and drops what
/// its client still sends, waiting for the client to close.
constexpr uint64_t linger_ms = 2000;

/// Closes a connection whose last answer is written: first its write side
/// (FIN, after every queued write), then it reads and drops what the client
/// still sends until the client closes or `linger_ms` passes. Closing a
/// socket with unread bytes (a refused upload, requests pipelined after the
/// last one run) sends a reset instead, and a reset can destroy the answer
/// before the client has read it.
void close_gracefully(connection* c) {
  if (c->closing || c->lingering)
    return;
  if (c->eof) { // the client sent all it will: nothing is left unread
    close_connection(c);
    return;
  }
  c->lingering = true;
  stop_taking_requests(c);
  uv_timer_start(
    &c->timer, [](uv_timer_t* t) { close_connection(static_cast<connection*>(t->data)); },
    linger_ms, 0);
  c->shutdown_req.data = c;
  auto rc = uv_shutdown(&c->shutdown_req, reinterpret_cast<uv_stream_t*>(&c->tcp),
                        [](uv_shutdown_t* req, int status) {
                          if (status < 0) // also UV_ECANCELED when closed meanwhile
                            close_connection(static_cast<connection*>(req->data));
                        });
  if (rc != 0) {
    close_connection(c);
    return;
  }
  if (!c->reading) {
    c->reading = true;
    start_reading(c);
  }
}

/// After a half-close (or at a stop): close once every request is answered
/// and written (closing earlier would cancel queued writes).
void close_if_drained(connection* c) {
  // Not while parsing: requests later in the bytes being parsed are still to
  // come (parse() looks again when it is done).
  if (c->close_when_drained && !c->in_parse && unanswered(c) == 0 && c->pending_writes == 0
      && !c->paused)
    close_gracefully(c);
}

void on_written(uv_write_t* req, int status) {
  auto w = static_cast<write_req*>(req->data);
  auto c = w->conn;
  --c->pending_writes;
  release(c, w->held);
  if (status < 0)
    close_connection(c);
  else if (w->close_after)
    close_gracefully(c);
  else {
    update_reading(c);
    close_if_drained(c);
    arm_timer(c); // the write timeout ends, or starts over: the client reads
  }
  delete w;
}

enum class write_result { sent, queued, failed };

/// Writes `out` after whatever the connection has queued. On `failed` the
/// connection is being closed.
write_result write_bytes(connection* c, std::string out, bool close_after) {
  // Hand the kernel what it takes now: an answer nearly always fits the
  // socket's buffer, and then no write request is queued. (A queued write
  // costs more than the allocation: libuv 1.44 re-arms the connection's epoll
  // watcher after every completed write, one epoll_ctl per answer, although
  // nothing about the watcher changed.) A request already queued keeps its
  // turn: uv_try_write refuses to write past it.
  size_t written = 0;
  if (c->pending_writes == 0) {
    uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1);
    if (n < 0 && n != UV_EAGAIN) {
      close_connection(c);
      return write_result::failed;
    }
    written = n > 0 ? static_cast<size_t>(n) : 0;
  }
  if (written == out.size())
    return write_result::sent;
  out.erase(0, written);
  auto w = new write_req{};
  w->data = std::move(out);
  w->conn = c;
  w->close_after = close_after;
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1, on_written) < 0) {
    delete w;
    close_connection(c);
    return write_result::failed;
  }
  ++c->pending_writes;
  w->held = w->data.size();
  hold(c, w->held);
  return write_result::queued;
}

/// The interim answer to `Expect: 100-continue` (RFC 9110 10.1.1), ahead of
/// the request's own. False if the connection is closing.
bool send_continue(connection* c) {
  return write_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", false) != write_result::failed;
}

/// Writes every consecutive finished response, in request order, as one write.
void flush(connection* c) {
  if (c->closing)
    return;
  std::string out;
  bool close_after = false;
  for (auto i = c->slots.begin(); i != c->slots.end() && i->first == c->write_seq && i->second.done;
       i = c->slots.erase(i)) {
    out.append(i->second.bytes);
    release(c, i->second.bytes.size()); // held by the write below, if it is queued
    ++c->write_seq;
    if (!i->second.keep_alive) {
      close_after = true;
      c->slots.erase(i);
      for (auto& [seq, s] : c->slots) // answers after the last one are never written
        if (s.done)
          release(c, s.bytes.size());
      c->slots.clear();
      break;
    }
  }
  if (out.empty())
    return;
  switch (write_bytes(c, std::move(out), close_after)) {
    case write_result::failed:
      return;
    case write_result::sent: // what on_written does for a queued write
      if (close_after) {
        close_gracefully(c);
        return;
      }
      update_reading(c);
      close_if_drained(c);
      break;
    case write_result::queued:
      break;
  }
  arm_timer(c);
}

/// What the access log shows of the request being read: method and target.
std::string request_line_of(const connection* c) {
  return c->cur.method + " " + c->cur.path;
}

/// One access log line: the client, what it asked, the answer, the ids;
/// `client=gone` when the client went away before the answer.
void log_access(http_server::impl* srv, std::string_view peer, const slot& s,
                const http_response& res, const std::string& request_id,
                bool client_gone = false) {
  // The target as sent, with bytes that could confuse a log reader escaped.
  std::string target;
  for (unsigned char ch : s.request_line) {
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", ch);
      target += hex;
    } else {
      target += static_cast<char>(ch);
    }
  }
  auto us = s.received == std::chrono::steady_clock::time_point{}
              ? 0
              : std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - s.received)
                  .count();
  // traceparent: 00-<trace id>-<span id>-<flags>
  auto trace = s.traceparent.size() >= 35 ? std::string_view{s.traceparent}.substr(3, 32)
                                          : std::string_view{"-"};
  srv->access_log->info("access: {} \"{}\" {} {} {:.3f}ms request={} trace={}{}",
                        peer.empty() ? "-" : peer, target.empty() ? "-" : target, res.status,
                        res.body.size(), static_cast<double>(us) / 1000.0, request_id, trace,
                        client_gone ? " client=gone" : "");
}

/// The bytes of answers the client has not taken: queued for its socket, and
/// finished behind an earlier one still being worked on.
size_t unread_answer_bytes(const connection* c) {
  size_t n = c->tcp.write_queue_size;
  for (auto& [seq, s] : c->slots)
    if (s.done)
      n += s.bytes.size();
  return n;
}

/// Closes a connection whose client does not read its answers (they would
/// pile up in memory); warns at most every 10 s.
void close_slow_reader(connection* c) {
  auto srv = c->srv;
  auto now = std::chrono::steady_clock::now();
  if (now - srv->slow_reader_logged >= std::chrono::seconds{10}) {
    srv->slow_reader_logged = now;
    spdlog::warn("edge: closed a connection from {} holding {} bytes of answers it does not read "
                 "({} bytes held for all clients)",
                 c->peer.empty() ? "-" : c->peer, unread_answer_bytes(c),
                 srv->unread_bytes.load(std::memory_order_relaxed));
  }
  srv->slow_readers_closed.fetch_add(1, std::memory_order_relaxed);
  close_connection(c);
}

/// Past the node's budget for unread answers: closes the connections that
/// hold the most until a quarter of the budget is free again. A client that
/// reads holds (next to) nothing here, as the kernel's socket buffer takes its
/// answers; those closed have stopped reading, or ask faster than they read.
void shed_slow_readers(http_server::impl* srv) {
  std::vector<connection*> holders;
  for (auto& [id, c] : srv->conns)
    if (c->held > 0 && !c->closing)
      holders.push_back(c);
  std::sort(holders.begin(), holders.end(),
            [](const connection* a, const connection* b) { return a->held > b->held; });
  auto target = srv->limits.max_unread_answer_bytes_total / 4 * 3;
  for (auto c : holders) {
    if (srv->unread_bytes.load(std::memory_order_relaxed) <= target)
      break;
    close_slow_reader(c);
  }
}

void fill_slot(connection* c, uint64_t seq, const http_response& res,
               const std::string& request_id) {
  auto i = c->slots.find(seq);
  if (i == c->slots.end() || i->second.done)
    return; // already answered (e.g. timed out) or written
  if (c->srv->access_log)
    log_access(c->srv, c->peer, i->second, res, request_id);
  i->second.bytes =
    serialize(res, request_id, i->second.traceparent, i->second.keep_alive, i->second.head);
  i->second.done = true;
  hold(c, i->second.bytes.size());
  flush(c);
  auto srv = c->srv;
  if (!c->closing && !c->lingering
      && unread_answer_bytes(c) > srv->limits.max_unread_answer_bytes)
    close_slow_reader(c); // (a lingering one has sent its last answer: it closes anyway)
  if (auto budget = srv->limits.max_unread_answer_bytes_total;
      budget > 0 && srv->unread_bytes.load(std::memory_order_relaxed) > budget)
    shed_slow_readers(srv);
}

/// An answer the server gives itself, in API.md's error shape. `message`
/// must not need JSON escaping (the server's own fixed texts).
http_response server_error(int status, std::string_view code, std::string_view message,
                           const std::string& request_id) {
  http_response res;
  res.status = status;
  res.body = std::string{"{\"error\":{\"code\":\""} + std::string{code} + "\",\"message\":\""
             + std::string{message} + "\",\"request_id\":\"" + request_id + "\"}}";
  if (status == 503)
    res.headers.emplace_back("Retry-After", "1");
  return res;
}

bool valid_request_id(std::string_view id);

/// Answers a request the server itself refuses (limits, malformed input),
/// then closes the connection: the rest of its byte stream cannot be trusted.
void refuse(connection* c, int status, std::string_view code, std::string_view message,
            const char* route = "(refused)") {
  auto seq = c->next_seq++;
  auto& s = c->slots[seq];
  s.keep_alive = false;
  c->refuse_more = true;
  c->paused = false;
  c->waits_for_answers = false;
  c->unparsed.clear();
  // The client's X-Request-Id and trace context when the refused request got
  // past its headers (before that, a value may be cut short between two reads).
  bool headers_read = c->in_message && c->headers_done;
  s.head = headers_read && c->parser.method == HTTP_HEAD;
  auto client_rid = headers_read ? c->cur.header("x-request-id") : std::string_view{};
  auto rid = valid_request_id(client_rid) ? std::string{client_rid} : c->srv->next_request_id();
  static const decltype(c->cur.headers) no_headers;
  std::string trace_id;
  s.traceparent = c->srv->trace_context(headers_read ? c->cur.headers : no_headers, trace_id);
  if (c->srv->access_log && headers_read)
    s.request_line = request_line_of(c);
  auto res = server_error(status, code, message, rid);
  if (c->srv->observer)
    c->srv->observer(route, status, std::chrono::microseconds{0});
  fill_slot(c, seq, res, rid);
}

/// Whether the connection may take another request: few enough unanswered
/// ones, and few enough answer bytes the client has not read (a pipelining
/// client that never reads).
bool has_room(const connection* c) {
  constexpr size_t max_write_backlog = 1 << 20;
  return unanswered(c) < c->srv->limits.max_pipelined
         && c->tcp.write_queue_size < max_write_backlog;
}

/// Whether the parser, stopped, may go on: the connection has room, and a
/// request that must run alone (`waits_for_answers`) has every earlier one
/// answered.
bool may_go_on(const connection* c) {
  return has_room(c) && (!c->waits_for_answers || unanswered(c) == 0);
}

/// Stops the parser until every request handed on is answered (in a
/// callback: http_parser_execute returns once it is done).
void wait_for_answers(connection* c) {
  c->paused = true;
  c->waits_for_answers = true;
  http_parser_pause(&c->parser, 1);
}

bool is_safe(unsigned method) {
  return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS
         || method == HTTP_TRACE;
}

void parse(connection* c, const char* data, size_t n);

void update_reading(connection* c) {
  if (c->closing || c->lingering)
    return;
  if (c->paused && !c->in_parse && !c->refuse_more && may_go_on(c)) {
    // Go on with the requests that arrived while the parser was stopped
    // before reading more from the socket.
    c->paused = false;
    c->waits_for_answers = false;
    http_parser_pause(&c->parser, 0);
    auto rest = std::move(c->unparsed);
    c->unparsed.clear();
    if (c->continue_owed) {
      c->continue_owed = false;
      // Unless some of the body came already (the head's last LF is all
      // that waited), the client may be holding it back for this.
      if (rest.size() <= 1 && !send_continue(c))
        return; // the connection is closing
    }
    if (!rest.empty()) {
      parse(c, rest.data(), rest.size());
      // This may run outside the loop's poll phase (a deadline's 503, a
      // write completed later), after which the handler's per-iteration hook
      // would wait for the next event: hand it what was just parsed now.
      if (c->srv->after_reads)
        c->srv->after_reads();
    }
    if (c->closing || c->lingering)
      return;
    close_if_drained(c); // a half-closed client may have had nothing more to ask
    if (c->closing || c->lingering)
      return;
  }
  bool want = !c->refuse_more && !c->eof && !c->paused && has_room(c);
  if (want == c->reading)
    return;
  c->reading = want;
  if (want)
    start_reading(c);
  else
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
}

/// Answer bytes the client has not acknowledged: queued in libuv, and in the
/// kernel's send queue (SIOCOUTQ). A client that reads takes from the kernel's
/// queue first; libuv's shrinks only once the kernel wants more, which with a
/// large send buffer can take longer than a write timeout.
size_t unsent_bytes(const connection* c) {
  size_t n = c->tcp.write_queue_size;
  uv_os_fd_t fd;
  int in_kernel = 0;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&c->tcp), &fd) == 0
      && ::ioctl(fd, SIOCOUTQ, &in_kernel) == 0 && in_kernel > 0)
    n += static_cast<size_t>(in_kernel);
  return n;
}

void on_timer(uv_timer_t* t) {
  auto c = static_cast<connection*>(t->data);
  if (c->in_message && !c->waits_for_answers) {
    refuse(c, 408, "request_timeout", "the request did not arrive in time");
    c->in_message = false;
  } else if (c->pending_writes > 0) {
    if (unsent_bytes(c) < c->unsent_at_timer) {
      arm_timer(c); // the client took some: it gets another write timeout
    } else { // it took nothing of its answers for the whole timeout
      c->srv->slow_readers_closed.fetch_add(1, std::memory_order_relaxed);
      close_connection(c);
    }
  } else if (unanswered(c) == 0) {
    close_connection(c);
  }
}

void arm_timer(connection* c) {
  if (c->closing || c->lingering) // a lingering connection keeps its linger timer
    return;
  auto& l = c->srv->limits;
  // A connection being refused gets a moment to say what it wants: it holds
  // a descriptor of the few set aside for refusing.
  auto wait = [&](std::chrono::milliseconds t) {
    return static_cast<uint64_t>((c->over_capacity ? std::min(t, l.refusing_timeout) : t).count());
  };
  if (c->in_message && !c->waits_for_answers) { // (a request that waits for
    // earlier answers waits on the server, not on the client)
    uv_timer_start(&c->timer, on_timer, wait(l.read_timeout), 0);
  } else if (c->pending_writes > 0) { // waiting on the client to read
    c->unsent_at_timer = unsent_bytes(c);
    uv_timer_start(&c->timer, on_timer, wait(l.write_timeout), 0);
  } else if (unanswered(c) == 0) {
    uv_timer_start(&c->timer, on_timer, wait(l.idle_timeout), 0);
  } else {
    uv_timer_stop(&c->timer); // waiting on our own answers, not on the client
  }
}

// -- http_parser callbacks ----------------------------------------------------

connection* conn_of(http_parser* p) {
  return static_cast<connection*>(p->data);
}

/// http_parser's own cap on a request's head (80 KiB unless set) counts
/// every byte of it: whitespace and line ends too, which count_header_bytes
/// does not see (the target, and the header names and values, are what it
/// counts). So the parser is capped near the limit too, with room for the
/// separators of `max_headers` lines (": " and CRLF) and the request line's:
/// a head padded with whitespace is refused (431) there. The cap is one for
/// the whole process: the largest any server here asked for.
void cap_parser_head_size(const http_limits& limits) {
  static std::mutex mtx;
  static uint64_t largest = 0;
  // (+1: the parser counts the head's last LF twice, before and after
  // parse() stops it there.)
  auto wanted = static_cast<uint64_t>(limits.max_header_bytes) + 4 * limits.max_headers + 64 + 1;
  std::lock_guard<std::mutex> guard{mtx};
  if (wanted <= largest)
    return;
  largest = wanted;
  http_parser_set_max_header_size(
    static_cast<uint32_t>(std::min<uint64_t>(largest, std::numeric_limits<uint32_t>::max())));
}

int count_header_bytes(connection* c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > c->srv->limits.max_header_bytes) {
    c->error_status = 431;
    return 1;
  }
  return 0;
}

int on_message_begin(http_parser* p) {
  auto c = conn_of(p);
  if (c->closing)
    return -1; // closed while parsing (a failed write): nothing more is run
  c->cur = http_request{};
  c->field.clear();
  c->last_was_value = false;
  c->header_bytes = 0;
  c->headers_done = false;
  c->head_ended = false;
  c->in_message = true;
  if (c->write_seq < c->unsafe_until)
    wait_for_answers(c); // an unsafe request before this one is not answered yet
  arm_timer(c);
  return 0;
}

// -- framing checks -------------------------------------------------------------
//
// Debian builds http_parser without HTTP_PARSER_STRICT, and the lenient parser
// frames some malformed requests where a proxy in front may frame them
// another way: one request to the proxy, two to this server (request
// smuggling). What the callbacks see is checked here (RFC 9112 and 9110 say
// these MUST be refused): a field name must be a token, with nothing between
// it and its colon; the request target holds no control characters; the
// Host field is there once in HTTP/1.1, and valid. The bytes no callback
// sees (line ends, the request line's version) are checked by head_scanner
// in parse(), before anything runs for the request. A chunked body's framing
// is not taken at all: a request with Transfer-Encoding is refused (411,
// 501) before its body, so every body is framed by Content-Length.

/// Whatever the locale says.
constexpr bool is_ascii_alnum(unsigned char ch) noexcept {
  return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z');
}

/// RFC 9110 5.6.2: a token's characters.
bool is_tchar(unsigned char ch) noexcept {
  return is_ascii_alnum(ch) || (ch != 0 && std::strchr("!#$%&'*+-.^_`|~", ch) != nullptr);
}

/// RFC 9112 3.2 (uri-host [":" port]): unreserved, pct-encoded, sub-delims,
/// ':' and the brackets of an IP literal. Empty is valid.
bool valid_host(std::string_view host) noexcept {
  for (unsigned char ch : host)
    if (!(is_ascii_alnum(ch) || (ch != 0 && std::strchr("-._~%!$&'()*+,;=:[]", ch) != nullptr)))
      return false;
  return true;
}

/// Refuses the request being parsed (a callback returns what this does).
int malformed(connection* c, int status, const char* why) {
  c->error_status = status;
  c->error_text = why;
  return -1;
}

int on_url(http_parser* p, const char* at, size_t n) {
  auto c = conn_of(p);
  // The lenient parser takes HTAB and FF into a target (and a CR or LF after
  // one as the end of an HTTP/0.9 request line); a proxy may split there.
  for (size_t i = 0; i < n; ++i) {
    auto ch = static_cast<unsigned char>(at[i]);
    if (ch < 0x20 || ch == 0x7f)
      return malformed(c, 400, "a control character in the request target");
    if (ch == '#')
      return malformed(c, 400, "a fragment (#) in the request target");
  }
  c->cur.path.append(at, n);
  return count_header_bytes(c, n);
}

int on_header_field(http_parser* p, const char* at, size_t n) {
  auto c = conn_of(p);
  if (c->last_was_value) {
    c->field.clear();
    c->last_was_value = false;
  }
  for (size_t i = 0; i < n; ++i)
    if (!is_tchar(static_cast<unsigned char>(at[i])))
      // "Content-Length :" would be Content-Length to the lenient parser
      // (RFC 9112 5.1: whitespace before the colon MUST be refused).
      return malformed(c, 400, "a header field name that is not a token");
  c->field.append(at, n);
  return count_header_bytes(c, n);
}

int on_header_value(http_parser* p, const char* at, size_t n) {
  auto c = conn_of(p);
  if (!c->last_was_value) {
    if (c->cur.headers.size() >= c->srv->limits.max_headers) {
      c->error_status = 431;
      return 1;
    }
    std::string name = c->field;
    for (auto& ch : name)
      ch = ascii_lower(ch);
    c->cur.headers.emplace_back(std::move(name), std::string{});
    c->last_was_value = true;
  }
  c->cur.headers.back().second.append(at, n);
  return count_header_bytes(c, n);
}

int on_headers_complete(http_parser* p) {
  auto c = conn_of(p);
  c->cur.method = http_method_str(static_cast<http_method>(p->method)); // refusals log it too
  c->headers_done = true;
  // A field value excludes the whitespace around it (RFC 9110 5.5): the
  // parser drops the leading whitespace, this the trailing.
  for (auto& [name, value] : c->cur.headers) {
    auto end = value.find_last_not_of(" \t");
    value.resize(end == std::string::npos ? 0 : end + 1);
  }
  if (c->over_capacity) {
    c->error_status = 503; // before its body: no upload for an answer known now
    return -1;
  }
  // HTTP/1.x past 1.1 is served as 1.1 (RFC 9110 2.5). The parser reads a
  // request line without a version as HTTP/0.9.
  if (p->http_major != 1)
    return p->http_major == 0
             ? malformed(c, 400, "a request line without HTTP/1.0 or HTTP/1.1")
             : malformed(c, 505, "only HTTP/1.0 and HTTP/1.1 are served");
  int hosts = 0;
  bool host_valid = true, transfer_encoding = false;
  for (auto& [name, value] : c->cur.headers) {
    if (name == "host") {
      ++hosts;
      host_valid = host_valid && valid_host(value);
    } else if (name == "transfer-encoding") {
      transfer_encoding = true;
    }
  }
  if (hosts > 1 || !host_valid || (hosts == 0 && p->http_minor >= 1))
    return malformed(c, 400, "an HTTP/1.1 request needs exactly one valid Host field");
  if (transfer_encoding) // (the parser refused one beside Content-Length)
    return (p->flags & F_CHUNKED) != 0
             ? malformed(c, 411, "send the body with Content-Length, not chunked")
             : malformed(c, 501, "no transfer coding is served; send the body with Content-Length");
  if (p->content_length != ULLONG_MAX && p->content_length > c->srv->limits.max_body_bytes) {
    c->error_status = 413;
    return -1; // an error (1 and 2 mean "skip the body" to http_parser)
  }
  if (p->method == HTTP_CONNECT) // no tunnels here; refused before any handler runs
    return malformed(c, 400, "CONNECT is not served");
  if (!c->cur.path.empty() && c->cur.path[0] != '/' && c->cur.path != "*") {
    // The absolute form (http://host/path), which a server must take (RFC
    // 9112 3.2.2): routed by its path and query.
    http_parser_url u;
    http_parser_url_init(&u);
    auto& t = c->cur.path;
    auto part = [&](http_parser_url_fields f) {
      return (u.field_set & (1 << f)) != 0
               ? std::string_view{t}.substr(u.field_data[f].off, u.field_data[f].len)
               : std::string_view{};
    };
    // Userinfo is an error there (RFC 9110 4.2.4), also an empty one, which
    // the parser does not report (UF_USERINFO): any '@' in the authority.
    auto scheme_end = t.find("://");
    auto authority = scheme_end == t.npos ? std::string_view{}
                                          : std::string_view{t}.substr(scheme_end + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (http_parser_parse_url(t.data(), t.size(), 0, &u) != 0 || part(UF_HOST).empty()
        || authority.find('@') != authority.npos
        || !(equals_ignore_case(part(UF_SCHEMA), "http")
             || equals_ignore_case(part(UF_SCHEMA), "https")))
      return malformed(c, 400, "a request target that is neither a path nor an http URL");
    std::string origin{part(UF_PATH).empty() ? "/" : part(UF_PATH)};
    if (u.field_set & (1 << UF_QUERY))
      origin.append("?").append(part(UF_QUERY));
    t = std::move(origin);
  }
  // Other Upgrade requests (e.g. h2c) are served as plain HTTP/1.1, as RFC
  // 7230 allows: clearing the flag keeps http_parser parsing HTTP.
  p->upgrade = 0;
  // A client that waits for "100 Continue" before sending its body gets it at
  // once when the request's answer would be the next one written (RFC 9110
  // 10.1.1). Behind a safe request still unanswered it is left out, which the
  // RFC allows, and the client sends the body after its own short wait.
  bool has_body = (p->flags & F_CHUNKED) != 0
                  || (p->content_length > 0 && p->content_length != ULLONG_MAX);
  bool wants_continue = has_body && p->http_major == 1 && p->http_minor >= 1
                        && equals_ignore_case(c->cur.header("expect"), "100-continue");
  // The parser stops at the head's last byte, and parse() checks the head.
  c->head_ended = true;
  http_parser_pause(p, 1);
  if (!is_safe(p->method) && unanswered(c) > 0) {
    // Its body waits in the socket meanwhile; the "100 Continue" goes out
    // when the request may go on.
    c->continue_owed = wants_continue;
    wait_for_answers(c);
    arm_timer(c);
    return 0;
  }
  c->continue_owed = wants_continue && unanswered(c) == 0;
  return 0;
}

int on_body(http_parser* p, const char* at, size_t n) {
  auto c = conn_of(p);
  if (c->cur.body.size() + n > c->srv->limits.max_body_bytes) {
    c->error_status = 413;
    return 1;
  }
  c->cur.body.append(at, n);
  return 0;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128)
    return false;
  for (char ch : id)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.'
          || ch == ':'))
      return false;
  return true;
}

void deliver(http_server::impl* srv, responder::shared::item& it,
             std::chrono::steady_clock::time_point now);

/// Runs the handler on `req`; an answer it gives before it returns goes to
/// the connection now (responder::shared::given_in_handler).
void run_handler(http_server::impl* srv, http_request& req, responder r) {
  auto& given = srv->shared->given_in_handler;
  {
    struct running {
      explicit running(const responder::shared* s) { handler_running = s; }
      ~running() { handler_running = nullptr; }
    } scope{srv->shared.get()};
    srv->handler(req, std::move(r));
  }
  if (given.empty())
    return;
  // Taken out first: an answer to another connection's request (a handler
  // may keep a responder and answer it during a later request) can let that
  // connection parse again, and run the handler, before this loop ends.
  std::vector<responder::shared::item> batch;
  batch.swap(given);
  auto now = std::chrono::steady_clock::now();
  for (auto& it : batch)
    deliver(srv, it, now);
  batch.clear();
  if (given.empty())
    given.swap(batch); // its capacity, for the next answer
}

int on_message_complete(http_parser* p) {
  auto c = conn_of(p);
  if (c->closing)
    return -1;
  auto srv = c->srv;
  c->in_message = false;
  auto seq = c->next_seq++;
  bool keep_alive = http_should_keep_alive(p) != 0
                    && !srv->last_requests.load(std::memory_order_relaxed);
  auto& req = c->cur;
  // The request timeout runs from here: a slow upload is the read timeout's
  // business, and a request must not be past its deadline before it runs.
  req.received = std::chrono::steady_clock::now();
  {
    auto& s = c->slots[seq]; // not kept: an answer given at once erases it
    s.keep_alive = keep_alive;
    s.head = p->method == HTTP_HEAD;
    s.traceparent = srv->trace_context(req.headers, req.trace_id);
    if (srv->access_log) {
      s.request_line = request_line_of(c); // the query still in the path (split off below)
      s.received = req.received;
    }
  }
  req.peer = c->peer;
  if (auto q = req.path.find('?'); q != std::string::npos) {
    req.query = req.path.substr(q + 1);
    req.path.resize(q);
  }
  auto rid = req.header("x-request-id");
  req.request_id = valid_request_id(rid) ? std::string{rid} : srv->next_request_id();
  responder r{srv->shared, c->id, seq, req.request_id, req.received};
  if (srv->inflight.load(std::memory_order_relaxed) >= srv->limits.max_inflight) {
    auto res = server_error(503, "unavailable", "the node is at capacity; retry", req.request_id);
    if (srv->observer)
      srv->observer("(shed)", 503, std::chrono::microseconds{0});
    fill_slot(c, seq, res, req.request_id);
  } else {
    srv->inflight.fetch_add(1, std::memory_order_relaxed);
    srv->outstanding.insert(request_key{c->id, seq});
    srv->deadlines.push_back(
      {req.received + srv->limits.request_timeout, c->id, seq, req.request_id});
    run_handler(srv, req, std::move(r));
  }
  if (!is_safe(p->method))
    c->unsafe_until = seq + 1;
  if (!keep_alive) {
    // The connection's last request (Connection: close, HTTP/1.0, or a node
    // about to stop): nothing after it is run, since its answer could never
    // be sent. (Debian's http_parser is not built strict and would go on
    // parsing.)
    c->refuse_more = true;
    http_parser_pause(p, 1);
  } else if (!has_room(c)) {
    // The rest of this read waits: one read of many small pipelined requests
    // must not run past the connection's limits.
    c->paused = true;
    http_parser_pause(p, 1);
  }
  update_reading(c);
  return 0;
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

void start_reading(connection* c) {
  uv_read_start(
    reinterpret_cast<uv_stream_t*>(&c->tcp),
    [](uv_handle_t* h, size_t, uv_buf_t* b) {
      auto cc = static_cast<connection*>(h->data);
      *b = uv_buf_init(cc->srv->read_buf, sizeof(cc->srv->read_buf));
    },
    on_read);
}

void parse(connection* c, const char* data, size_t n) {
  size_t parsed = 0;
  for (;;) {
    c->in_parse = true;
    parsed = http_parser_execute(&c->parser, &c->srv->settings, data, n);
    c->in_parse = false;
    auto status = HTTP_PARSER_ERRNO(&c->parser);
    if (c->closing || (status != HPE_OK && status != HPE_PAUSED))
      break;
    if (!c->scan.take(data, parsed)) {
      malformed(c, 400,
                "a bare CR, a control byte in a header field, or a request line without its"
                " HTTP version");
      break;
    }
    if (!c->head_ended || status != HPE_PAUSED)
      break;
    // Stopped at the byte the parser took as the head's last LF: after a
    // bare CR it takes any byte (RFC 9112 2.2).
    c->head_ended = false;
    if (data[parsed] != '\n') {
      malformed(c, 400, "a bare CR ends the request head");
      break;
    }
    auto length = c->parser.content_length;
    c->scan.head_done(length == ULLONG_MAX ? 0 : length);
    if (c->paused) // and waits for earlier answers (on_headers_complete)
      break;
    if (c->continue_owed) {
      c->continue_owed = false;
      c->in_parse = true; // a failed write closes the connection below, not now
      send_continue(c);
      c->in_parse = false;
      if (c->closing)
        break;
    }
    http_parser_pause(&c->parser, 0);
    data += parsed;
    n -= parsed;
  }
  if (c->closing) {
    c->closing = false;
    close_connection(c);
    return;
  }
  auto err = HTTP_PARSER_ERRNO(&c->parser);
  if (err == HPE_PAUSED && c->error_status == 0) {
    if (c->paused) // else it was the last request: the rest is dropped
      c->unparsed.assign(data + parsed, n - parsed);
    update_reading(c);
    close_if_drained(c); // a half-closed client whose requests were all answered while parsing
    return;
  }
  if (err == HPE_OK && !c->parser.upgrade && c->error_status == 0) {
    close_if_drained(c);
    return;
  }
  if (c->error_status == 503)
    refuse(c, 503, "unavailable", "the node has as many connections as it serves; retry",
           "(shed)");
  else if (c->error_status == 413)
    refuse(c, 413, "payload_too_large", "the request body is too large");
  else if (c->error_status == 431 || err == HPE_HEADER_OVERFLOW)
    refuse(c, 431, "header_too_large", "the request headers are too large or too many");
  else if (c->error_status == 411)
    refuse(c, 411, "length_required", c->error_text);
  else if (c->error_status == 501)
    refuse(c, 501, "not_implemented", c->error_text);
  else if (c->error_status == 505)
    refuse(c, 505, "http_version_not_supported", c->error_text);
  else if (err == HPE_INVALID_METHOD && parsed < n
           && is_tchar(static_cast<unsigned char>(data[parsed])))
    // A token where the parser stopped: a method it does not know (RFC 9110
    // 9.1; case-sensitive, so `get` is one). Anything else there (a TLS
    // handshake, binary noise) is not HTTP: 400 below.
    refuse(c, 501, "not_implemented", "the request method is not one this server implements");
  else
    refuse(c, 400, "bad_request",
           std::string{"malformed HTTP request: "}
             + (c->error_text ? c->error_text : http_errno_description(err)));
  c->in_message = false;
  if (c->reading && !c->lingering) { // a lingering one reads on, and drops
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
    c->reading = false;
  }
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto c = static_cast<connection*>(stream->data);
  if (c->lingering) { // read and dropped; the client's close ends it
    if (nread < 0)
      close_connection(c);
    return;
  }
  if (nread == UV_EOF) {
    // Half-closed: the client sent all it will; answer what it asked (also
    // requests still waiting in `unparsed`), then close.
    c->close_when_drained = true;
    c->eof = true;
    uv_read_stop(stream);
    c->reading = false;
    close_if_drained(c);
    return;
  }
  if (nread < 0) {
    close_connection(c);
    return;
  }
  if (nread == 0 || c->refuse_more || c->closing)
    return;
  parse(c, buf->base, static_cast<size_t>(nread));
}

void on_connection(uv_stream_t* server, int status) {
  auto srv = static_cast<http_server::impl*>(server->data);
  if (status < 0)
    return;
  auto c = new connection{};
  c->srv = srv;
  c->id = srv->next_conn_id++;
  uv_tcp_init(&srv->loop, &c->tcp);
  uv_timer_init(&srv->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
    return;
  }
  if (auto cap = srv->limits.max_connections;
      cap > 0 && srv->connections.load() - srv->refusing >= cap) {
    // Past the connections this node serves: the client hears 503 on its
    // first request, while there is room to say it in (1/16 of the cap, at
    // least 16 connections being refused at once); past that room the
    // connection is closed at once. Either way its descriptor is not one
    // that storage needs (cluster/node.hpp, fd_plan).
    srv->refused_connections.fetch_add(1, std::memory_order_relaxed);
    auto now = std::chrono::steady_clock::now();
    if (now - srv->refusal_logged > std::chrono::seconds{10}) {
      srv->refusal_logged = now;
      spdlog::warn("edge: {} client connections open, {} served at most (--max-connections); "
                   "refusing new ones ({} so far)",
                   srv->connections.load(), cap, srv->refused_connections.load());
    }
    if (srv->refusing >= std::max<size_t>(16, cap / 16)) {
      c->closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_closed);
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
      return;
    }
    c->over_capacity = true;
    ++srv->refusing;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    char name[INET6_ADDRSTRLEN] = "";
    if (addr.ss_family == AF_INET)
      uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&addr), name, sizeof(name));
    else if (addr.ss_family == AF_INET6)
      uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&addr), name, sizeof(name));
    c->peer = name;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  srv->conns[c->id] = c;
  srv->connections.fetch_add(1);
  start_reading(c);
  arm_timer(c);
}

/// Logs the answer to a request whose client went away, if it was kept.
void log_orphan(http_server::impl* srv, request_key key, const http_response& res,
                const std::string& request_id) {
  auto o = srv->orphans.find(key);
  if (o == srv->orphans.end())
    return;
  log_access(srv, o->second.peer, o->second.s, res, request_id, true);
  srv->orphans.erase(o);
  if (drained(srv))
    finish_stop(srv);
}

/// A handler's answer to its request's connection (if it is still open and
/// the deadline did not answer first). Its body is freed once written down:
/// a batch of big answers is not held twice.
void deliver(http_server::impl* srv, responder::shared::item& it,
             std::chrono::steady_clock::time_point now) {
  if (srv->outstanding.erase(request_key{it.conn_id, it.seq}) == 0)
    return; // answered with 503 by the deadline already
  srv->inflight.fetch_sub(1, std::memory_order_relaxed);
  if (srv->observer)
    srv->observer(it.res.route, it.res.status,
                  std::chrono::duration_cast<std::chrono::microseconds>(now - it.received));
  auto c = srv->conns.find(it.conn_id);
  if (c != srv->conns.end())
    fill_slot(c->second, it.seq, it.res, it.request_id);
  else if (!srv->orphans.empty()) // the client went away; the answer is still logged
    log_orphan(srv, request_key{it.conn_id, it.seq}, it.res, it.request_id);
  std::string{}.swap(it.res.body);
}

void on_replies(uv_async_t* a) {
  auto srv = static_cast<http_server::impl*>(a->data);
  auto& items = srv->replies; // empty: cleared after the last round
  {
    std::lock_guard<std::mutex> guard{srv->shared->mtx};
    items.swap(srv->shared->items); // uv_async_send coalesces: always drain everything
  }
  auto now = std::chrono::steady_clock::now();
  for (auto& it : items)
    deliver(srv, it, now);
  items.clear();
  start_write_drain(srv);
}

/// Answers 503 for requests whose handler has not answered in time. The late
/// answer, when it comes, finds the slot filled and is dropped.
void on_deadlines(uv_timer_t* t) {
  auto srv = static_cast<http_server::impl*>(t->data);
  auto now = std::chrono::steady_clock::now();
  while (!srv->deadlines.empty() && srv->deadlines.front().at <= now) {
    auto d = std::move(srv->deadlines.front());
    srv->deadlines.pop_front();
    if (srv->outstanding.erase(request_key{d.conn_id, d.seq}) == 0)
      continue; // answered in time
    // No answer in time: release the in-flight slot now, once.
    srv->inflight.fetch_sub(1, std::memory_order_relaxed);
    auto timed_out = [&] {
      // Not "retry": the command may still be applied after this answer, and
      // a retry without an Idempotency-Key would be a second one.
      return server_error(503, "unavailable",
                          "no answer in time; the request may still take effect: retry with the "
                          "same Idempotency-Key, or look before you retry",
                          d.request_id);
    };
    auto c = srv->conns.find(d.conn_id);
    if (c == srv->conns.end()) { // the client is gone
      if (!srv->orphans.empty())
        log_orphan(srv, request_key{d.conn_id, d.seq}, timed_out(), d.request_id);
      continue;
    }
    auto slot = c->second->slots.find(d.seq);
    if (slot == c->second->slots.end() || slot->second.done)
      continue;
    auto res = timed_out();
    if (srv->observer)
      srv->observer("(timeout)", 503, std::chrono::duration_cast<std::chrono::microseconds>(
                                        now - (d.at - srv->limits.request_timeout)));
    fill_slot(c->second, d.seq, res, d.request_id);
  }
  start_write_drain(srv);
}

/// The open connections, copied: closing one changes `conns`.
std::vector<connection*> connections_of(const http_server::impl* srv) {
  std::vector<connection*> all;
  for (auto& [id, c] : srv->conns)
    all.push_back(c);
  return all;
}

/// The end of a stop: closes every handle left, so the loop ends. Answers
/// that come later are dropped.
void finish_stop(http_server::impl* srv) {
  if (srv->finished)
    return;
  srv->finished = true;
  {
    std::lock_guard<std::mutex> guard{srv->shared->mtx};
    srv->shared->closed = true;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&srv->reply_async), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&srv->deadline_timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&srv->drain_timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&srv->check), nullptr);
  for (auto c : connections_of(srv))
    close_connection(c);
}

/// A connection at a stop: reads and runs nothing more (requests read but
/// not parsed yet never ran); closes once the requests it has in flight are
/// answered and written, the last answer saying `Connection: close`.
void drain(connection* c) {
  stop_taking_requests(c);
  update_reading(c);
  if (unanswered(c) == 0 && c->pending_writes == 0) {
    close_connection(c); // idle: nothing of it is in flight
    return;
  }
  if (auto last = c->slots.find(c->next_seq - 1); unanswered(c) > 0 && last != c->slots.end()) {
    auto& s = last->second;
    // Its answer, when written, closes the connection (flush); one already
    // serialized (waiting behind an earlier one) gets the header added.
    if (s.done && s.keep_alive)
      if (auto end = s.bytes.find("\r\n\r\n"); end != std::string::npos) {
        constexpr std::string_view close_header = "Connection: close\r\n";
        s.bytes.insert(end + 2, close_header);
        hold(c, close_header.size());
      }
    s.keep_alive = false;
  }
  c->close_when_drained = true;
}

/// At a stop, once no request is in flight: the answers get `drain_timeout`
/// to be written, from now (not from the longest a request could still have
/// taken), so that a client that does not read holds up no stop for longer;
/// and a connection closed after its last answer gets its linger, so that
/// what its client still sends does not draw a reset.
void start_write_drain(http_server::impl* srv) {
  if (!srv->draining || srv->finished || srv->writes_draining || !srv->outstanding.empty())
    return;
  srv->writes_draining = true;
  auto wait = std::max<uint64_t>(
    static_cast<uint64_t>(std::max<int64_t>(0, srv->limits.drain_timeout.count())), linger_ms);
  uv_timer_start(
    &srv->drain_timer,
    [](uv_timer_t* t) { finish_stop(static_cast<http_server::impl*>(t->data)); }, wait, 0);
}

void on_stop(uv_async_t* a) {
  auto srv = static_cast<http_server::impl*>(a->data);
  srv->draining = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&srv->listener), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&srv->stop_async), nullptr);
  // The request deadlines go on: every request in flight is answered, by its
  // handler or with the timeout's 503, within the request timeout (plus a
  // deadline tick); the writes then get `drain_timeout` (from the last
  // answer, start_write_drain; this timer is the bound if that never comes).
  auto limit = srv->limits.request_timeout + std::chrono::milliseconds{100}
               + srv->limits.drain_timeout;
  uv_timer_start(
    &srv->drain_timer,
    [](uv_timer_t* t) { finish_stop(static_cast<http_server::impl*>(t->data)); },
    static_cast<uint64_t>(std::max<int64_t>(0, limit.count())), 0);
  for (auto c : connections_of(srv))
    if (!srv->finished)
      drain(c);
  if (drained(srv))
    finish_stop(srv);
  else
    start_write_drain(srv);
}

} // namespace

http_server::http_server(http_limits limits, request_handler handler, response_observer observer,
                         iteration_hook after_reads, bool access_log)
  : impl_(std::make_unique<impl>()) {
  impl_->limits = limits;
  cap_parser_head_size(limits);
  if (access_log)
    impl_->access_log = make_access_logger();
  impl_->handler = std::move(handler);
  impl_->observer = std::move(observer);
  impl_->after_reads = std::move(after_reads);
  auto& s = impl_->settings;
  s.on_message_begin = on_message_begin;
  s.on_url = on_url;
  s.on_header_field = on_header_field;
  s.on_header_value = on_header_value;
  s.on_headers_complete = on_headers_complete;
  s.on_body = on_body;
  s.on_message_complete = on_message_complete;
  std::random_device rd;
  char prefix[16];
  std::snprintf(prefix, sizeof(prefix), "%08x-", rd());
  impl_->id_prefix = prefix;
}

size_t http_server::inflight() const noexcept {
  return impl_->inflight.load(std::memory_order_relaxed);
}

uint64_t http_server::refused_connections() const noexcept {
  return impl_->refused_connections.load(std::memory_order_relaxed);
}

size_t http_server::unread_answer_bytes() const noexcept {
  return impl_->unread_bytes.load(std::memory_order_relaxed);
}

uint64_t http_server::slow_readers_closed() const noexcept {
  return impl_->slow_readers_closed.load(std::memory_order_relaxed);
}

size_t http_server::connections() const noexcept {
  return impl_->connections.load(std::memory_order_relaxed);
}

http_server::~http_server() {
  stop();
}

namespace {

/// A numeric IPv4 or IPv6 address (no name lookup).
bool listen_address(const std::string& host, uint16_t port, sockaddr_storage& addr) {
  return uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) == 0
         || uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) == 0;
}

/// Binds `listener` to `addr` and listens; libuv reports a port in use only
/// at the listen. Returns a libuv error code, 0 on success.
int bind_and_listen(uv_tcp_t& listener, const sockaddr_storage& addr, uv_connection_cb cb) {
  int rc = uv_tcp_bind(&listener, reinterpret_cast<const sockaddr*>(&addr), 0);
  return rc != 0 ? rc : uv_listen(reinterpret_cast<uv_stream_t*>(&listener), 1024, cb);
}

} // namespace

std::string http_server::check_listen(const std::string& host, uint16_t port) {
  sockaddr_storage addr{};
  if (!listen_address(host, port, addr))
    return "invalid listen address '" + host + "'";
  uv_loop_t loop;
  if (int rc = uv_loop_init(&loop); rc != 0)
    return std::string{"cannot listen: "} + uv_strerror(rc);
  uv_tcp_t probe;
  uv_tcp_init(&loop, &probe);
  int rc = bind_and_listen(probe, addr, [](uv_stream_t*, int) {});
  uv_close(reinterpret_cast<uv_handle_t*>(&probe), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (rc != 0)
    return "cannot listen on " + host + ":" + std::to_string(port) + ": " + uv_strerror(rc);
  return {};
}

std::string http_server::start(const std::string& host, uint16_t port) {
  auto& i = *impl_;
  // A write to a connection its client reset raises SIGPIPE, which kills the
  // process unless handled; libuv reports the write's EPIPE too, and that is
  // all the server needs. Left alone if the program chose a handler.
  struct sigaction current{};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
    std::signal(SIGPIPE, SIG_IGN);
  sockaddr_storage addr{};
  if (!listen_address(host, port, addr))
    return "invalid listen address '" + host + "'";
  uv_loop_init(&i.loop);
  uv_tcp_init(&i.loop, &i.listener);
  i.listener.data = impl_.get();
  if (int rc = bind_and_listen(i.listener, addr, on_connection); rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&i.listener), nullptr);
    uv_run(&i.loop, UV_RUN_DEFAULT);
    uv_loop_close(&i.loop);
    return "cannot listen on " + host + ":" + std::to_string(port) + ": " + uv_strerror(rc);
  }
  sockaddr_storage bound{};
  int len = sizeof(bound);
  uv_tcp_getsockname(&i.listener, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  uv_async_init(&i.loop, &i.reply_async, on_replies);
  i.reply_async.data = impl_.get();
  uv_async_init(&i.loop, &i.stop_async, on_stop);
  i.stop_async.data = impl_.get();
  i.shared->async = &i.reply_async;
  uv_check_init(&i.loop, &i.check);
  i.check.data = impl_.get();
  uv_check_start(&i.check, [](uv_check_t* h) {
    auto srv = static_cast<http_server::impl*>(h->data);
    if (srv->after_reads)
      srv->after_reads();
    if (srv->access_log)
      srv->access_log->flush(); // this iteration's lines, in one write
  });
  uv_timer_init(&i.loop, &i.drain_timer);
  i.drain_timer.data = impl_.get();
  uv_timer_init(&i.loop, &i.deadline_timer);
  i.deadline_timer.data = impl_.get();
  auto tick = static_cast<uint64_t>(std::clamp<int64_t>(i.limits.request_timeout.count() / 10, 10, 100));
  uv_timer_start(&i.deadline_timer, on_deadlines, tick, tick);
  i.thread = std::thread{[this] {
    pthread_setname_np(pthread_self(), "shop-edge"); // visible in top -H and perf
    uv_run(&impl_->loop, UV_RUN_DEFAULT);
    uv_loop_close(&impl_->loop);
  }};
  return {};
}

void http_server::close_connections_after_answers() noexcept {
  if (impl_)
    impl_->last_requests.store(true, std::memory_order_relaxed);
}

void http_server::stop() {
  if (!impl_ || impl_->stopped || !impl_->thread.joinable())
    return;
  impl_->stopped = true;
  uv_async_send(&impl_->stop_async);
  impl_->thread.join();
  if (impl_->access_log)
    impl_->access_log->flush(); // what the last loop iterations logged
}

} // namespace shop::edge
