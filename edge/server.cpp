#include "edge/server.hpp"

#include <spdlog/spdlog.h>

namespace shop::edge {

server::server(node& n, server_config cfg) : node_(n), cfg_(std::move(cfg)) {
}

server::~server() {
  stop();
}

std::string server::start() {
  node_probe probe;
  probe.ready = [this] { return node_.ready(); };
  probe.stopping = [this] { return stopping_.load(std::memory_order_relaxed); };
  probe.fail_storage_writes = [this](uint32_t groups) { node_.fail_storage_writes(groups); };
  probe.write_metrics = [this](std::string& out) {
    node_.write_metrics(out);
    if (http_) {
      write_metric(out, "shop_http_inflight", "gauge", "Requests being processed.",
                   static_cast<double>(http_->inflight()));
      write_metric(out, "shop_http_connections", "gauge", "Open client connections.",
                   static_cast<double>(http_->connections()));
      if (cfg_.limits.max_connections > 0)
        write_metric(out, "shop_http_connections_max", "gauge",
                     "Client connections served at most (--max-connections).",
                     static_cast<double>(cfg_.limits.max_connections));
      write_metric(out, "shop_http_connections_refused_total", "counter",
                   "Connections refused past --max-connections (answered 503, or closed).",
                   static_cast<double>(http_->refused_connections()));
      write_metric(out, "shop_http_unread_answer_bytes", "gauge",
                   "Bytes of answers held for clients that have not taken them.",
                   static_cast<double>(http_->unread_answer_bytes()));
      write_metric(out, "shop_http_slow_readers_closed_total", "counter",
                   "Connections closed because their client did not take its answers.",
                   static_cast<double>(http_->slow_readers_closed()));
    }
  };
  api_ = std::make_unique<api>(node_.system(), node_.region(), node_.jwt_secret(),
                               node_.payment_secret(), cfg_.api, std::move(probe));
  auto a = api_.get();
  http_ = std::make_unique<http_server>(
    cfg_.limits, [a](http_request& req, responder r) { a->handle(req, std::move(r)); },
    [a](const std::string& route, int status, std::chrono::microseconds us) {
      a->observe(route, status, us);
    },
    [a] { a->flush(); }, cfg_.access_log);
  if (auto err = http_->start(cfg_.http_host, cfg_.http_port); !err.empty()) {
    // Back to the state before start(): the api holds actors of the node's
    // system, and the node's stop() waits for every actor to finish.
    http_.reset();
    api_.reset();
    return err;
  }
  bool v6 = cfg_.http_host.find(':') != std::string::npos;
  spdlog::info("edge: serving http://{}{}{}:{}", v6 ? "[" : "", cfg_.http_host, v6 ? "]" : "",
               http_->port());
  return {};
}

void server::announce_stop() noexcept {
  stopping_.store(true, std::memory_order_relaxed);
  if (http_)
    http_->close_connections_after_answers();
}

void server::stop() {
  if (http_)
    http_->stop();
  api_.reset();
}

uint16_t server::port() const noexcept {
  return http_ ? http_->port() : 0;
}

} // namespace shop::edge
