#pragma once
// The load engine of shop-bench: one libuv loop driving C keep-alive
// connections to one or more targets.
//
// - Closed loop: each connection sends its next request when the previous
//   answer arrives (like wrk); latency is measured from the actual send.
// - Open loop (`rate` > 0): request i is due at t0 + i/rate, fixed in
//   advance. A due request waits for a free connection if none is idle, and
//   its latency is measured from its *intended* send time, so a server stall
//   shows in the percentiles instead of being hidden by the load generator
//   slowing down (coordinated omission, as in wrk2).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace shop::bench {

struct target {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
};

/// Parses "http://host:port[,http://host:port...]". Returns false on bad input.
bool parse_targets(const std::string& text, std::vector<target>& out);

struct request {
  std::string method = "GET";
  std::string path = "/";
  std::string body;
  std::vector<std::string> headers; // "Name: value"
  int kind = 0;                     // index into the caller's list of request kinds
  uint64_t tag = 0;                 // caller's id (e.g. the user index)
  size_t target = 0;                // which target to send it to
};

struct response {
  int status = 0; // 0: transport failure or timeout
  std::string body;
  int64_t latency_us = 0;
  std::chrono::steady_clock::time_point done;
};

struct load_options {
  std::vector<target> targets;
  size_t connections = 64;
  /// Requests per second for the open loop; 0 means closed loop.
  double rate = 0;
  /// Stop issuing after this long (0: when the generator is exhausted).
  std::chrono::milliseconds duration{0};
  /// A request not answered within this is counted as a failure (status 0).
  std::chrono::milliseconds timeout{30'000};
  /// Print a live progress line to stderr once a second.
  bool progress = false;
};

struct load_summary {
  uint64_t sent = 0;
  uint64_t completed = 0;
  uint64_t transport_errors = 0;
  double seconds = 0;
};

/// Produces the next request; std::nullopt when there is nothing more to send.
/// `connection` is the index of the connection that will send it (closed
/// loop), or SIZE_MAX in the open loop (the engine picks one of the request's
/// target's connections).
using request_source = std::function<std::optional<request>(size_t connection)>;

/// Called for every answered (or failed) request, on the engine's thread.
using response_sink = std::function<void(const request&, const response&)>;

/// Optional: extra text for the progress line (e.g. "p99 3.1ms").
using progress_text = std::function<std::string()>;

/// Runs the load on the calling thread until done. Connects lazily and
/// reconnects after a server closes a connection.
load_summary run_load(const load_options& opts, const request_source& next,
                      const response_sink& sink, const progress_text& extra = {});

} // namespace shop::bench
