// shopd: one node of the shop. Thin: parse configuration, start the node and
// its edge, wait for SIGINT, SIGTERM or SIGHUP (or storage failing for good),
// stop in order.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include "cluster/node.hpp"
#include "edge/http_server.hpp"
#include "edge/server.hpp"
#include "protocols/errc.hpp"
#include "protocols/json.hpp"

namespace {

/// spdlog flag %*: the log message escaped for use inside a JSON string
/// (invalid UTF-8 included: a log line is always valid JSON).
class json_message_flag : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    escaped_.clear();
    shop::append_json_escaped(escaped_, std::string_view{msg.payload.data(), msg.payload.size()});
    dest.append(escaped_.data(), escaped_.data() + escaped_.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message_flag>();
  }

private:
  std::string escaped_; // reused: the formatter is used under the sink's lock
};

/// A whole number written in decimal: no sign, no leading zero (CLI11 would
/// read "064" as octal 52, and "-1" for an unsigned option as its maximum).
const CLI::Validator decimal{[](std::string& in) -> std::string {
                               bool ok = !in.empty() && in.size() <= 19
                                         && (in == "0" || in[0] != '0')
                                         && in.find_first_not_of("0123456789") == std::string::npos;
                               return ok ? std::string{} : "'" + in + "' is not a whole decimal number";
                             },
                             ""};

/// A finite decimal number (CLI11's range check lets "nan" through, and
/// strtod reads "0x10" as 16); `what` names it in the error.
CLI::Validator finite(std::string what) {
  return CLI::Validator{[what](std::string& in) -> std::string {
                          char* end = nullptr;
                          double v = std::strtod(in.c_str(), &end);
                          bool ok = !in.empty() && end == in.c_str() + in.size() && std::isfinite(v)
                                    && in.find_first_not_of("0123456789.eE+-") == std::string::npos;
                          return ok ? std::string{} : "'" + in + "' is not " + what;
                        },
                        ""};
}
const CLI::Validator finite_seconds = finite("a number of seconds");
const CLI::Validator finite_number = finite("a number");

/// A rate of requests a second: 0 (no limit) or from 0.001 (one in 1,000 s).
const CLI::Validator request_rate{[](std::string& in) -> std::string {
                                    double v = std::strtod(in.c_str(), nullptr);
                                    return v == 0 || v >= 0.001
                                             ? std::string{}
                                             : "a rate is 0 (no limit) or at least 0.001";
                                  },
                                  ""};

/// A node id that is safe in a log line and a JSON string.
const CLI::Validator node_name{[](std::string& in) -> std::string {
                                 bool ok = !in.empty() && in.size() <= 64
                                           && in.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                   "0123456789._-")
                                                == std::string::npos;
                                 return ok ? std::string{}
                                           : "a node id is 1 to 64 letters, digits, '.', '_' or '-'";
                               },
                               ""};

/// `--admin-password`: one a login can take, by the registration rule (empty:
/// not given).
const CLI::Validator admin_password_rule{
  [](std::string& in) -> std::string {
    return in.empty() || shop::is_valid_new_password(in)
             ? std::string{}
             : "the admin password must be UTF-8 text of 8 to 128 characters, as a user's";
  },
  ""};

/// An HMAC key given by the operator: at least `min_bytes` (empty: not given,
/// so the node generates one).
CLI::Validator secret_of(size_t min_bytes, std::string why) {
  return CLI::Validator{[min_bytes, why](std::string& in) -> std::string {
                          return in.empty() || in.size() >= min_bytes
                                   ? std::string{}
                                   : "a secret of at least " + std::to_string(min_bytes)
                                       + " bytes" + why;
                        },
                        ""};
}

/// Waits up to `seconds` for one of `signals` (blocked); true with `sig` set
/// if one came.
bool wait_for_signal(const sigset_t& signals, double seconds, int& sig) {
  using clock = std::chrono::steady_clock;
  auto until = clock::now() + std::chrono::duration_cast<clock::duration>(
                                std::chrono::duration<double>{seconds});
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - clock::now());
    if (left.count() <= 0)
      return false;
    timespec ts{static_cast<time_t>(left.count() / 1'000'000'000),
                static_cast<long>(left.count() % 1'000'000'000)};
    int got = sigtimedwait(&signals, nullptr, &ts);
    if (got > 0) {
      sig = got;
      return true;
    }
    if (errno != EINTR && errno != EAGAIN)
      return false;
  }
}

} // namespace

int main(int argc, char** argv) {
  shop::node_config cfg;
  shop::edge::server_config edge_cfg;
  std::string durability = "sync";
  double request_timeout_s = 5;
  double shutdown_delay_s = 0;

  CLI::App app{"shopd: an actor-based shop backend for flash sales (one node)"};
  app.set_version_flag("--version", "shopd " SHOP_VERSION);
  app.set_config("--config", "", "read options from a TOML/INI file");
  app.option_defaults()->always_capture_default();
  auto opt = [&](const char* name, auto& var, const char* env, const char* help) {
    return app.add_option(name, var, help)->envname(env);
  };
  opt("--http-host", edge_cfg.http_host, "SHOP_HTTP_HOST", "address the edge listens on");
  opt("--http-port", edge_cfg.http_port, "SHOP_HTTP_PORT", "port the edge listens on (0: any free port)")
    ->check(decimal);
  opt("--data-dir", cfg.data_dir, "SHOP_DATA_DIR", "RocksDB directory");
  opt("--admin-password", cfg.admin_password, "SHOP_ADMIN_PASSWORD",
      "password of user 'admin', 8 to 128 characters (default: generated and printed once)")
    ->check(admin_password_rule);
  opt("--durability", durability, "SHOP_DURABILITY",
      "sync: fsync the WAL per group commit; async: WAL without fsync")
    ->check(CLI::IsMember({"sync", "async"}));
  opt("--prepared-wal-mb", cfg.prepared_wal_mb, "SHOP_PREPARED_WAL_MB",
      "MiB of each zero-filled file made ready for RocksDB's WAL, so that a WAL fsync writes "
      "no metadata (0: none; only with --durability sync)")
    ->check(decimal)
    ->check(CLI::Range(0, 4096));
  opt("--payment-timeout", cfg.payment_timeout_s, "SHOP_PAYMENT_TIMEOUT",
      "seconds an order waits for payment before it expires")
    ->check(finite_seconds)
    ->check(CLI::Range(0.1, 30.0 * 86400));
  opt("--password-hash-cost", cfg.password_hash_cost, "SHOP_PASSWORD_HASH_COST",
      "argon2id memory cost as log2(KiB); lower only for tests and benches (3 = 8 KiB)")
    ->check(decimal)
    ->check(CLI::Range(3, 22));
  opt("--passivate-after", cfg.passivate_after_s, "SHOP_PASSIVATE_AFTER",
      "seconds an idle entity stays active")
    ->check(finite_seconds)
    ->check(CLI::Range(0.1, 86400.0));
  // RFC 7518 3.2: an HS256 key MUST be 256 bits or more.
  opt("--jwt-secret", cfg.jwt_secret, "SHOP_JWT_SECRET",
      "HMAC key of tokens, 32 bytes or more (default: generated once and stored in the data dir)")
    ->check(secret_of(32, " (RFC 7518: an HS256 key has 256 bits or more)"));
  opt("--payment-secret", cfg.payment_secret, "SHOP_PAYMENT_SECRET",
      "HMAC key of payment gateway callbacks, 16 bytes or more (default: generated once and "
      "stored in the data dir)")
    ->check(secret_of(16, ": a shorter one lets a forged callback mark orders paid"));
  app.add_flag("--sandbox-payments", edge_cfg.api.sandbox_payments,
               "enable POST /api/v1/payments/{id}/sandbox-complete, a gateway stand-in that "
               "sends itself the signed callback (make run turns it on)")
    ->envname("SHOP_SANDBOX_PAYMENTS");
  opt("--node-id", cfg.node_id, "SHOP_NODE_ID", "this node's name in logs")
    ->check(node_name);
  opt("--shards", cfg.shards, "SHOP_SHARDS", "number of shards; fixed for the life of a data dir")
    ->check(decimal)
    ->check(CLI::Range(1, 65536));
  opt("--log-format", cfg.log_format, "SHOP_LOG_FORMAT", "text or json")
    ->check(CLI::IsMember({"text", "json"}));
  opt("--workers", cfg.workers, "SHOP_WORKERS",
      "actor scheduler threads (0: the CPUs shopd may run on - 1, at least 1)")
    ->check(decimal)
    ->check(CLI::Range(0, 256));
  opt("--scheduler-policy", cfg.scheduler_policy, "SHOP_SCHEDULER_POLICY",
      "sharing (idle workers block) or stealing (idle workers poll, then sleep)")
    ->check(CLI::IsMember({"stealing", "sharing"}));
  app.add_flag("--access-log", edge_cfg.access_log,
               "log every answer: client address, method and target, status, body bytes, "
               "milliseconds, request id, trace id (costs CPU on the edge's thread)")
    ->envname("SHOP_ACCESS_LOG");
  app.add_flag("--fault-injection", edge_cfg.api.fault_injection,
               "enable POST /api/v1/admin/fault-injection/crash and .../storage (tests and drills "
               "only)")
    ->envname("SHOP_FAULT_INJECTION");
  opt("--request-timeout", request_timeout_s, "SHOP_REQUEST_TIMEOUT",
      "seconds the edge waits for an answer before 503")
    ->check(finite_seconds)
    ->check(CLI::Range(0.01, 600.0));
  opt("--shutdown-delay", shutdown_delay_s, "SHOP_SHUTDOWN_DELAY",
      "seconds the node serves on after a stop signal, with /readyz answering 503 and each "
      "answer closing its connection, so that a load balancer moves clients to other nodes "
      "first (a second signal ends it; 0: stop at once)")
    ->check(finite_seconds)
    ->check(CLI::Range(0.0, 3600.0));
  opt("--max-inflight", edge_cfg.limits.max_inflight, "SHOP_MAX_INFLIGHT",
      "requests in flight before new ones get 503")
    ->check(decimal)
    ->check(CLI::Range(1, 10'000'000));
  size_t max_connections = 0;
  opt("--max-connections", max_connections, "SHOP_MAX_CONNECTIONS",
      "client connections served at once; past it, new ones get 503 (0: as many as the "
      "open-file limit leaves after storage's share)")
    ->check(decimal)
    ->check(CLI::Range(0, 10'000'000));
  opt("--max-body-bytes", edge_cfg.limits.max_body_bytes, "SHOP_MAX_BODY_BYTES",
      "largest request body (413 beyond)")
    ->check(decimal)
    ->check(CLI::Range(1024, 16 << 20));
  // http_parser refuses more than 80 KiB of headers by itself.
  opt("--max-header-bytes", edge_cfg.limits.max_header_bytes, "SHOP_MAX_HEADER_BYTES",
      "largest request line plus headers (431 beyond)")
    ->check(decimal)
    ->check(CLI::Range(1024, 80 * 1024));
  opt("--rate-limit-user", edge_cfg.api.per_user.rate, "SHOP_RATE_LIMIT_USER",
      "requests a second one user may make on routes that need a token, on average "
      "(0: no limit; admins are never limited); 429 beyond")
    ->check(finite_number)
    ->check(CLI::Range(0.0, 1e6))
    ->check(request_rate);
  opt("--rate-limit-user-burst", edge_cfg.api.per_user.burst, "SHOP_RATE_LIMIT_USER_BURST",
      "requests one user may make at once before --rate-limit-user applies")
    ->check(finite_number)
    ->check(CLI::Range(1.0, 1e6));
  opt("--rate-limit-client", edge_cfg.api.per_client.rate, "SHOP_RATE_LIMIT_CLIENT",
      "requests a second one client address (an IPv6 /64) may make, on average, on every "
      "route but /healthz, /readyz and /metrics (0: no limit); 429 beyond")
    ->check(finite_number)
    ->check(CLI::Range(0.0, 1e6))
    ->check(request_rate);
  opt("--rate-limit-client-burst", edge_cfg.api.per_client.burst, "SHOP_RATE_LIMIT_CLIENT_BURST",
      "requests one client address may make at once before --rate-limit-client applies")
    ->check(finite_number)
    ->check(CLI::Range(1.0, 1e6));
  CLI11_PARSE(app, argc, argv);

  cfg.mode = durability == "async" ? shop::durability::async : shop::durability::sync;
  edge_cfg.limits.request_timeout =
    std::chrono::milliseconds{static_cast<int64_t>(request_timeout_s * 1000)};
  if (cfg.log_format == "json") {
    // %* is the message, escaped for a JSON string (plain %v would not be).
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<json_message_flag>('*').set_pattern(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","node":")" + cfg.node_id + R"(","msg":"%*"})");
    spdlog::set_formatter(std::move(formatter));
  }

  spdlog::info("shopd {}: starting", SHOP_VERSION);

  // File descriptors: storage's share first, so that no number of clients
  // can leave RocksDB without a file to open (cluster/node.hpp, fd_plan).
  auto fds = shop::plan_file_descriptors();
  if (fds.connections == 0) {
    spdlog::error("cannot start: the open-file limit ({}) is too small for a node; raise it "
                  "(ulimit -n, systemd's LimitNOFILE)",
                  fds.limit);
    return 1;
  }
  if (max_connections > fds.connections) {
    spdlog::error("cannot start: --max-connections {} needs more file descriptors than the "
                  "open-file limit ({}) leaves after storage's share: {} connections at most; "
                  "raise the limit (ulimit -n, systemd's LimitNOFILE) or lower the option",
                  max_connections, fds.limit, fds.connections);
    return 1;
  }
  edge_cfg.limits.max_connections = max_connections > 0 ? max_connections : fds.connections;
  cfg.storage_open_files = fds.storage_open_files;
  spdlog::info("shopd: open-file limit {}{}: up to {} client connections, {} SST files open",
               fds.limit, fds.found != fds.limit ? fmt::format(" (raised from {})", fds.found) : "",
               edge_cfg.limits.max_connections, fds.storage_open_files);

  // Block the stop signals before any thread starts; main waits for them below.
  // SIGHUP (the terminal went away) stops as cleanly as SIGTERM: its default
  // would kill the node mid-answer. Unless it was ignored when shopd started
  // (nohup): a blocked signal is kept pending even if ignored, so waiting for
  // it would stop the node that nohup is meant to keep running.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  struct sigaction hangup{};
  if (::sigaction(SIGHUP, nullptr, &hangup) != 0 || hangup.sa_handler != SIG_IGN)
    sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // A write past the file size limit (ulimit -f, systemd's LimitFSIZE) must
  // fail with EFBIG, which storage reports, not kill the node mid-write.
  std::signal(SIGXFSZ, SIG_IGN);

  // Storage that refuses writes until it is opened again (a fatal RocksDB
  // error): stop as on SIGTERM, then exit with status 3 so that the service
  // manager restarts the node, which recovers from its WAL. (The handler runs
  // on the journal's thread; the signal wakes sigwait below.)
  static std::atomic<bool> storage_stopped{false};
  cfg.on_storage_stopped = [](const std::string&) {
    if (!storage_stopped.exchange(true))
      ::kill(::getpid(), SIGTERM);
  };

  // The listen address first: a start refused for it must not open (or
  // create) the data dir, nor generate an admin password that a later start
  // would never print.
  if (auto err = shop::edge::http_server::check_listen(edge_cfg.http_host, edge_cfg.http_port);
      !err.empty()) {
    spdlog::error("cannot start the edge: {}", err);
    return 1;
  }
  shop::node node{cfg};
  if (auto err = node.start()) {
    spdlog::error("cannot start the node: {}", shop::describe(err).message);
    return 1;
  }
  if (!node.generated_admin_password().empty()) {
    std::printf("admin password (generated; printed only this once): %s\n",
                node.generated_admin_password().c_str());
    std::fflush(stdout);
  }
  shop::edge::server edge{node, edge_cfg};
  if (auto err = edge.start(); !err.empty()) {
    spdlog::error("cannot start the edge: {}", err);
    node.stop();
    return 1;
  }
  // An IPv6 address goes in brackets in a URL (http://[::1]:8080).
  bool v6 = edge_cfg.http_host.find(':') != std::string::npos;
  std::printf("shopd ready on http://%s%s%s:%u\n", v6 ? "[" : "", edge_cfg.http_host.c_str(),
              v6 ? "]" : "", edge.port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  if (storage_stopped) {
    spdlog::error("shopd: storage refuses writes until the node restarts; stopping (exit "
                  "status 3)");
  } else if (shutdown_delay_s > 0) {
    // Out of rotation first: load balancers see /readyz fail and stop sending
    // new clients here, and those with a connection here get an answer that
    // closes it, while the node still serves them. Storage failing meanwhile
    // (its SIGTERM) or a second signal ends the delay.
    spdlog::info("shopd: signal {} received; /readyz answers 503 and the node serves on for "
                 "{} s before it stops (a second signal stops it now)",
                 sig, shutdown_delay_s);
    edge.announce_stop();
    bool ended = wait_for_signal(stop_signals, shutdown_delay_s, sig);
    if (storage_stopped)
      spdlog::error("shopd: storage refuses writes until the node restarts; stopping before "
                    "the shutdown delay ends (exit status 3)");
    else if (ended)
      spdlog::info("shopd: signal {} received during the shutdown delay; stopping", sig);
    else
      spdlog::info("shopd: stopping");
  } else {
    spdlog::info("shopd: signal {} received; stopping", sig);
  }
  edge.stop();
  node.stop();
  spdlog::info("shopd: stopped");
  spdlog::shutdown();
  return storage_stopped ? 3 : 0;
}
