#pragma once
// The routes of API.md: auth middleware, then one handler per route that
// turns the request into one message to the node's shard region and the
// reply into JSON. One per node.
//
// Threads: `handle` runs on the edge's loop thread, which only routes. The
// probes (/healthz, /readyz), /metrics and /openapi.yaml are answered there;
// every other route is handed, with its request, to a bridge actor, where
// its token is checked, its body decoded and its message sent: the loop
// thread bounds a node's requests per second (docs/operations.md), and the
// node's other cores do this work.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "edge/http_server.hpp"
#include "edge/jwt.hpp"
#include "edge/rate_limiter.hpp"
#include "protocols/metrics.hpp"

namespace shop::edge {

struct api_options {
  /// Lifetime of issued tokens. Default: 1 h.
  std::chrono::seconds token_ttl{3600};
  /// Enables POST /api/v1/admin/fault-injection/crash, and .../storage where the probe can
  /// fail storage writes (tests and chaos drills only). Default: off.
  bool fault_injection = false;
  /// Actors that take requests from the loop, check their tokens, decode
  /// them and send their messages into CAF. Default: 2.
  size_t bridges = 2;
  /// Enables POST /api/v1/payments/{id}/sandbox-complete. Default: off.
  bool sandbox_payments = false;
  /// Requests a user (role user, by the token's `sub`) may make on routes
  /// that need a token; 429 beyond. Admins are not limited. Default: off
  /// (burst 20).
  rate_limit per_user{0, 20};
  /// Requests a client address may make on every route but /healthz,
  /// /readyz and /metrics, checked before the token; 429 beyond. Default: off
  /// (burst 20).
  rate_limit per_client{0, 20};
};

/// What the edge asks of the node it runs on.
struct node_probe {
  /// /readyz: storage open and the node able to serve.
  std::function<bool()> ready;
  /// /readyz: a stop was announced (the edge serves on for a while, so that
  /// load balancers take the node out of rotation first).
  std::function<bool()> stopping;
  /// Appends the node's own metrics (entities, journal, storage) in Prometheus text.
  std::function<void(std::string&)> write_metrics;
  /// Fault injection: the next `groups` group commits fail.
  std::function<void(uint32_t)> fail_storage_writes;
};

class api {
public:
  api(caf::actor_system& sys, caf::actor region, std::string jwt_secret,
      std::string payment_secret, api_options opts, node_probe probe);
  ~api();

  /// The request handler for http_server (loop thread). Takes the request's
  /// contents when a bridge serves its route.
  void handle(http_request& req, responder r);

  /// Hands the requests of this loop iteration to a bridge actor as one
  /// message (loop thread; the http_server's iteration hook). One CAF
  /// wake-up per iteration instead of one per request.
  void flush();

  /// The response observer for http_server (loop thread): request metrics.
  void observe(const std::string& route, int status, std::chrono::microseconds latency);

  /// The route table: (method, pattern) pairs such as ("GET", "/api/v1/orders/{id}").
  std::vector<std::pair<std::string, std::string>> routes() const;

  struct context;
  struct route;
  /// What one bridge actor owns: its verified-token cache, and whether it
  /// stopped (the loop then starts a new one on the same state).
  struct bridge_state;

private:
  // Runs on a bridge: the token, the user's rate limit, then the handler.
  void serve(context& ctx, const route& rt, bridge_state& bridge);

  template <class Reply, class Command, class Encode>
  void ask(context& ctx, Command cmd, int status, Encode encode);

  void add(std::string method, std::string pattern, int auth, void (api::*fn)(context&));

  void register_user(context& c);
  void login(context& c);
  void me(context& c);
  void create_product(context& c);
  void get_product(context& c);
  void patch_product(context& c);
  void restock(context& c);
  void get_inventory(context& c);
  void create_sale(context& c);
  void get_sale(context& c);
  void purchase(context& c);
  void get_order(context& c);
  void cancel_order(context& c);
  void list_products(context& c);
  void get_cart(context& c);
  void put_cart_item(context& c);
  void delete_cart_item(context& c);
  void clear_cart(context& c);
  void create_order(context& c);
  void pay_order(context& c);
  void payment_callback(context& c);
  void sandbox_complete(context& c);
  void healthz(context& c);
  void readyz(context& c);
  void metrics(context& c);
  void openapi(context& c);
  void crash(context& c);
  void fail_storage(context& c);

  struct job_batch;
  std::unique_ptr<job_batch> batch_;
  caf::actor_system& sys_;
  caf::actor region_;
  // The destructor waits for the bridges to stop: their jobs use this object.
  std::vector<caf::actor> bridges_;
  std::vector<std::unique_ptr<bridge_state>> bridge_states_; // one per bridge, its own
  size_t next_bridge_ = 0;
  uint64_t bridge_restarts_ = 0; // loop thread only
  std::shared_ptr<const jwt_codec> issuer_;
  std::string payment_secret_;
  api_options opts_;
  node_probe probe_;
  std::vector<route> routes_;
  // Every bridge takes from it (and /metrics reads it on the loop thread).
  std::mutex users_limiter_mtx_;
  rate_limiter users_limiter_;
  // Loop thread only.
  rate_limiter clients_limiter_;
  // Request metrics, touched only on the loop thread.
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, std::unique_ptr<latency_histogram>> latency_;
};

/// The JSON error response of API.md for `err`; 429 and 503 carry
/// `Retry-After: <retry_after>`.
http_response error_response(const caf::error& err, const std::string& request_id,
                             std::chrono::seconds retry_after = std::chrono::seconds{1});

} // namespace shop::edge
