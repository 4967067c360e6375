#include "bench/shop_bench/load.hpp"

#include <cstdio>
#include <deque>
#include <memory>

#include <http_parser.h>
#include <unistd.h>
#include <uv.h>

namespace shop::bench {

bool parse_targets(const std::string& text, std::vector<target>& out) {
  out.clear();
  size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    auto item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const std::string scheme = "http://";
    if (item.rfind(scheme, 0) != 0)
      return false;
    item = item.substr(scheme.size());
    while (!item.empty() && item.back() == '/')
      item.pop_back();
    auto colon = item.rfind(':');
    target t;
    if (colon == std::string::npos) {
      t.host = item;
      t.port = 80;
    } else {
      t.host = item.substr(0, colon);
      int port = std::atoi(item.c_str() + colon + 1);
      if (port <= 0 || port > 65535)
        return false;
      t.port = static_cast<uint16_t>(port);
    }
    if (t.host == "localhost")
      t.host = "127.0.0.1";
    if (t.host.empty())
      return false;
    out.push_back(t);
    if (comma == std::string::npos)
      break;
    pos = comma + 1;
  }
  return !out.empty();
}

namespace {

using clock = std::chrono::steady_clock;

struct engine;

struct in_flight {
  request req;
  clock::time_point start;  // intended (open loop) or actual (closed loop) send time: latency
  clock::time_point handed; // when a connection took it: the timeout runs from here
};

struct conn {
  engine* eng = nullptr;
  size_t index = 0;
  size_t target = 0;
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  http_parser parser;
  bool connected = false;
  bool connecting = false;
  bool closing = false;
  std::optional<in_flight> current;
  std::string body;
  int status = 0;
  bool message_done = false;
  bool keep_alive = true;
  bool source_done = false; // closed loop: nothing more for this connection
  bool in_idle = false;     // open loop: listed in idle_by_target
  char buf[64 * 1024];
};

struct engine {
  load_options opts;
  const request_source* next = nullptr;
  const response_sink* sink = nullptr;
  const progress_text* extra = nullptr;
  uv_loop_t loop;
  uv_timer_t tick;
  std::vector<std::unique_ptr<conn>> conns;
  std::vector<std::deque<size_t>> idle_by_target; // open loop: idle connection indexes
  std::deque<in_flight> backlog;                  // open loop: due, waiting for a connection
  http_parser_settings settings{};
  clock::time_point t0;
  uint64_t scheduled = 0; // open loop: requests issued so far
  size_t finished_conns = 0; // closed loop: connections whose source ran dry
  bool exhausted = false;
  bool stopping = false;
  load_summary summary;
  uint64_t last_completed = 0;
  clock::time_point last_progress;
  std::vector<sockaddr_in> addrs;
};

void start_request(conn* c, in_flight f);
void issue_closed(conn* c);
void connection_free(conn* c);

void finish(conn* c, int status) {
  auto eng = c->eng;
  if (!c->current)
    return;
  response res;
  res.status = status;
  res.body = std::move(c->body);
  res.done = clock::now();
  res.latency_us =
    std::chrono::duration_cast<std::chrono::microseconds>(res.done - c->current->start).count();
  auto req = std::move(c->current->req);
  c->current.reset();
  c->body.clear();
  ++eng->summary.completed;
  if (status == 0)
    ++eng->summary.transport_errors;
  (*eng->sink)(req, res);
}

void on_close(uv_handle_t* h) {
  auto c = static_cast<conn*>(h->data);
  c->closing = false;
  c->connected = false;
  c->connecting = false;
  if (c->eng->stopping)
    return;
  if (c->current) { // handed to us while we were closing: connect again and send it
    auto f = std::move(*c->current);
    c->current.reset();
    start_request(c, std::move(f));
    return;
  }
  connection_free(c); // reconnects lazily with the next request
}

void drop_connection(conn* c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->current)
    finish(c, 0);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_close);
}

int on_body(http_parser* p, const char* at, size_t n) {
  static_cast<conn*>(p->data)->body.append(at, n);
  return 0;
}

int on_message_complete(http_parser* p) {
  auto c = static_cast<conn*>(p->data);
  c->status = static_cast<int>(p->status_code);
  c->keep_alive = http_should_keep_alive(p) != 0;
  c->message_done = true;
  return 0;
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto c = static_cast<conn*>(s->data);
  if (n < 0) {
    drop_connection(c);
    return;
  }
  c->message_done = false;
  auto parsed = http_parser_execute(&c->parser, &c->eng->settings, buf->base, static_cast<size_t>(n));
  if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || parsed != static_cast<size_t>(n)) {
    drop_connection(c);
    return;
  }
  if (c->message_done) {
    finish(c, c->status);
    if (!c->keep_alive) {
      drop_connection(c);
      return;
    }
    connection_free(c);
  }
}

struct write_req {
  uv_write_t req;
  std::string data;
};

void send_now(conn* c) {
  auto& r = c->current->req;
  auto w = new write_req{};
  auto& t = c->eng->opts.targets[c->target];
  w->data.reserve(128 + r.body.size());
  w->data.append(r.method).push_back(' ');
  w->data.append(r.path).append(" HTTP/1.1\r\nHost: ").append(t.host).append("\r\n");
  for (auto& h : r.headers)
    w->data.append(h).append("\r\n");
  if (!r.body.empty() || r.method == "POST")
    w->data.append("Content-Type: application/json\r\nContent-Length: ")
      .append(std::to_string(r.body.size()))
      .append("\r\n");
  w->data.append("\r\n").append(r.body);
  w->req.data = w;
  http_parser_init(&c->parser, HTTP_RESPONSE);
  c->parser.data = c;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  ++c->eng->summary.sent;
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1,
               [](uv_write_t* req, int status) {
                 auto wr = static_cast<write_req*>(req->data);
                 auto cc = static_cast<conn*>(req->handle->data);
                 delete wr;
                 if (status < 0)
                   drop_connection(cc);
               })
      != 0) {
    delete w;
    drop_connection(c);
  }
}

void on_connect(uv_connect_t* req, int status) {
  auto c = static_cast<conn*>(req->data);
  c->connecting = false;
  if (status < 0) {
    drop_connection(c);
    return;
  }
  c->connected = true;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start(
    reinterpret_cast<uv_stream_t*>(&c->tcp),
    [](uv_handle_t* h, size_t, uv_buf_t* b) {
      auto cc = static_cast<conn*>(h->data);
      *b = uv_buf_init(cc->buf, sizeof(cc->buf));
    },
    on_read);
  if (c->current)
    send_now(c);
}

void start_request(conn* c, in_flight f) {
  f.handed = clock::now();
  c->current = std::move(f);
  c->target = c->current->req.target % c->eng->opts.targets.size();
  if (c->connected) {
    send_now(c);
    return;
  }
  if (c->connecting || c->closing)
    return;
  c->connecting = true;
  uv_tcp_init(&c->eng->loop, &c->tcp);
  c->tcp.data = c;
  c->connect_req.data = c;
  if (uv_tcp_connect(&c->connect_req, &c->tcp,
                     reinterpret_cast<const sockaddr*>(&c->eng->addrs[c->target]), on_connect)
      != 0) {
    c->connecting = false;
    drop_connection(c);
  }
}

bool issuing_over(engine* e) {
  if (e->stopping || e->exhausted)
    return true;
  return e->opts.duration.count() > 0 && clock::now() - e->t0 >= e->opts.duration;
}

void issue_closed(conn* c) {
  auto e = c->eng;
  if (issuing_over(e))
    return;
  if (c->source_done)
    return;
  auto r = (*e->next)(c->index);
  if (!r) {
    c->source_done = true;
    if (++e->finished_conns == e->conns.size())
      e->exhausted = true;
    return;
  }
  r->target = c->index % e->opts.targets.size(); // a connection serves one target
  auto now = clock::now();
  start_request(c, in_flight{std::move(*r), now, now});
}

/// A connection has no request in flight: give it the next one.
void connection_free(conn* c) {
  auto e = c->eng;
  if (e->opts.rate <= 0) {
    issue_closed(c);
    return;
  }
  // Open loop: take the oldest due request for this connection's target.
  for (auto i = e->backlog.begin(); i != e->backlog.end(); ++i) {
    if (i->req.target % e->opts.targets.size() == c->index % e->opts.targets.size()) {
      auto f = std::move(*i);
      e->backlog.erase(i);
      start_request(c, std::move(f));
      return;
    }
  }
  if (!c->in_idle) {
    c->in_idle = true;
    e->idle_by_target[c->index % e->opts.targets.size()].push_back(c->index);
  }
}

bool all_idle(engine* e) {
  for (auto& c : e->conns)
    if (c->current || c->connecting || c->closing)
      return false;
  return e->backlog.empty();
}

void stop_all(engine* e) {
  e->stopping = true;
  uv_timer_stop(&e->tick);
  uv_close(reinterpret_cast<uv_handle_t*>(&e->tick), nullptr);
  for (auto& c : e->conns)
    if (c->connected || c->connecting) {
      if (!c->closing) {
        c->closing = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), nullptr);
      }
    }
}

void on_tick(uv_timer_t* t) {
  auto e = static_cast<engine*>(t->data);
  auto now = clock::now();
  // Open loop: issue everything that is due by now, at its intended time.
  if (e->opts.rate > 0 && !issuing_over(e)) {
    auto interval = std::chrono::duration<double>(1.0 / e->opts.rate);
    while (!issuing_over(e)) {
      auto due = e->t0 + std::chrono::duration_cast<clock::duration>(interval * static_cast<double>(e->scheduled));
      if (due > now)
        break;
      auto r = (*e->next)(SIZE_MAX);
      if (!r) {
        e->exhausted = true;
        break;
      }
      ++e->scheduled;
      r->target %= e->opts.targets.size();
      auto& idle = e->idle_by_target[r->target];
      in_flight f{std::move(*r), due, due};
      if (idle.empty()) {
        e->backlog.push_back(std::move(f));
      } else {
        auto idx = idle.front();
        idle.pop_front();
        e->conns[idx]->in_idle = false;
        start_request(e->conns[idx].get(), std::move(f));
      }
    }
  }
  // Requests past the timeout fail (status 0) and their connection is reset.
  // The clock runs from when a connection took the request, so a backlog
  // does not make every request sent late time out at once.
  for (auto& c : e->conns)
    if (c->current && now - c->current->handed > e->opts.timeout)
      drop_connection(c.get());
  // Open loop: due requests that waited for a connection longer than the
  // timeout fail without being sent (a load generator must not pile up).
  while (!e->backlog.empty() && now - e->backlog.front().start > e->opts.timeout) {
    auto f = std::move(e->backlog.front());
    e->backlog.pop_front();
    response res;
    res.status = 0;
    res.done = now;
    res.latency_us = std::chrono::duration_cast<std::chrono::microseconds>(now - f.start).count();
    ++e->summary.completed;
    ++e->summary.transport_errors;
    (*e->sink)(f.req, res);
  }
  if (e->opts.progress && now - e->last_progress >= std::chrono::seconds{1}) {
    auto secs = std::chrono::duration<double>(now - e->t0).count();
    auto window = std::chrono::duration<double>(now - e->last_progress).count();
    std::fprintf(stderr, "\r%6.1fs  %9.0f req/s  %8llu done  %6llu errors  %s   ", secs,
                 static_cast<double>(e->summary.completed - e->last_completed) / window,
                 static_cast<unsigned long long>(e->summary.completed),
                 static_cast<unsigned long long>(e->summary.transport_errors),
                 e->extra && *e->extra ? (*e->extra)().c_str() : "");
    e->last_completed = e->summary.completed;
    e->last_progress = now;
  }
  if (issuing_over(e) && all_idle(e))
    stop_all(e);
}

} // namespace

load_summary run_load(const load_options& opts, const request_source& next,
                      const response_sink& sink, const progress_text& extra) {
  engine e;
  e.opts = opts;
  if (e.opts.targets.empty())
    e.opts.targets.push_back(target{});
  e.next = &next;
  e.sink = &sink;
  e.extra = &extra;
  e.settings.on_body = on_body;
  e.settings.on_message_complete = on_message_complete;
  e.opts.progress = opts.progress && isatty(STDERR_FILENO);
  uv_loop_init(&e.loop);
  for (auto& t : e.opts.targets) {
    sockaddr_in a{};
    uv_ip4_addr(t.host.c_str(), t.port, &a);
    e.addrs.push_back(a);
  }
  e.idle_by_target.resize(e.opts.targets.size());
  // At least one connection per target, or a target's requests would wait forever.
  for (size_t i = 0; i < std::max(e.opts.connections, e.opts.targets.size()); ++i) {
    auto c = std::make_unique<conn>();
    c->eng = &e;
    c->index = i;
    c->target = i % e.opts.targets.size();
    e.conns.push_back(std::move(c));
  }
  uv_timer_init(&e.loop, &e.tick);
  e.tick.data = &e;
  e.t0 = e.last_progress = clock::now();
  // Open loop: 1 ms ticks release due requests; closed loop: 10 ms ticks check timeouts.
  uv_timer_start(&e.tick, on_tick, 0, e.opts.rate > 0 ? 1 : 10);
  for (auto& c : e.conns)
    connection_free(c.get());
  uv_run(&e.loop, UV_RUN_DEFAULT);
  uv_loop_close(&e.loop);
  if (e.opts.progress)
    std::fprintf(stderr, "\n");
  e.summary.seconds = std::chrono::duration<double>(clock::now() - e.t0).count();
  return e.summary;
}

} // namespace shop::bench
