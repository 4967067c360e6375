#include "edge/api.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <optional>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/entity.hpp"
#include "edge/openapi.hpp"
#include "protocols/crypto.hpp"
#include "protocols/errc.hpp"
#include "protocols/exceptions.hpp"
#include "protocols/json.hpp"

namespace shop::edge {

struct api::bridge_state {
  explicit bridge_state(std::string jwt_secret) : jwt(std::move(jwt_secret)) {}

  /// Tokens verified by this bridge (each keeps its own cache: no lock).
  jwt_codec jwt;
  /// Set when the bridge actor stopped other than by the api's destructor
  /// (an exception in a route), with the reason in `why`; the loop thread
  /// starts a new one on it at its next hand-over.
  std::atomic<bool> down{false};
  std::string why; // written before `down`, read after it
};

/// A request the loop thread hands to a bridge actor, which runs its route
/// (token, decoding, the message to the region; the answer completes the
/// responder). Local only.
struct edge_job {
  std::function<void(caf::event_based_actor*, api::bridge_state&)> run;
};

/// The jobs of one loop iteration, sent as one message.
struct edge_jobs {
  std::vector<edge_job> jobs;
};

} // namespace shop::edge

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(shop::edge::edge_jobs)

namespace shop::edge {

namespace {

enum auth_level { public_route = 0, user_route = 1, admin_route = 2 };

caf::behavior bridge(caf::event_based_actor* self, api::bridge_state* state) {
  // An exception in a route (a bug, or memory running out) stops this
  // bridge: the requests it held get the request timeout's 503, and the loop
  // thread starts a new bridge. (On the loop thread it would have ended the
  // process.)
  self->set_exception_handler([](std::exception_ptr& eptr) -> caf::error {
    auto what = exception_text(eptr);
    spdlog::error("edge: a bridge stopped on an exception: {}", what);
    return caf::make_error(caf::sec::runtime_error, std::move(what));
  });
  // A stray error message (not the answer to one of its requests) must not
  // stop it: CAF's default would.
  self->set_error_handler([](caf::error& err) {
    spdlog::warn("edge: a bridge ignored an unexpected error message: {}", caf::to_string(err));
  });
  self->attach_functor([state](const caf::error& reason) {
    if (reason == caf::exit_reason::user_shutdown)
      return; // the api's destructor
    state->why = reason ? caf::to_string(reason) : "it quit";
    state->down.store(true, std::memory_order_release);
  });
  return {[self, state](edge_jobs& batch) {
    for (auto& job : batch.jobs)
      job.run(self, *state);
  }};
}

http_response json_response(int status, std::string body) {
  http_response res;
  res.status = status;
  res.body = std::move(body);
  return res;
}

/// The segments of an absolute path: `/a/b` and `/a/b/` are {a, b}; an
/// empty segment elsewhere (`//a`, `/a//b`) stays, and matches no route, so
/// a proxy that filters by path prefix (`/metrics`) sees every path that
/// reaches a route.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (!path.empty() && path.front() == '/')
    path.remove_prefix(1);
  if (!path.empty() && path.back() == '/')
    path.remove_suffix(1);
  if (path.empty())
    return out;
  for (;;) {
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos)
      return out;
    path.remove_prefix(slash + 1);
  }
}

/// Percent-decodes `in` into `out`; in a query component (`form`), '+' is a
/// space as well. False on a bad escape.
bool percent_decode(std::string_view in, std::string& out, bool form) {
  auto hex = [](char h) -> int {
    if (h >= '0' && h <= '9')
      return h - '0';
    if (h >= 'a' && h <= 'f')
      return h - 'a' + 10;
    if (h >= 'A' && h <= 'F')
      return h - 'A' + 10;
    return -1;
  };
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char ch = in[i];
    if (ch == '+' && form) {
      out.push_back(' ');
    } else if (ch == '%') {
      if (i + 2 >= in.size())
        return false;
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(ch);
    }
  }
  return true;
}

int64_t now_secs() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace

http_response error_response(const caf::error& err, const std::string& request_id,
                             std::chrono::seconds retry_after) {
  auto info = describe(err);
  auto res = json_response(http_status(info.code),
                           error_json(to_code(info.code), info.message, request_id));
  if (res.status == 503 || res.status == 429)
    res.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
  return res;
}

namespace {

/// An answer that is the node's fault (500, a bug) goes to the log with the
/// request's ids: the client sees its request id, the operator finds the rest.
void log_fault(const http_response& res, const caf::error& err, const std::string& route,
               const std::string& request_id, const std::string& trace_id) {
  if (res.status == 500)
    spdlog::error("{}: internal error (request {}, trace {}): {}", route, request_id, trace_id,
                  describe(err).message);
}

} // namespace

struct api::job_batch {
  edge_jobs pending;
};

struct api::context {
  http_request& req;
  responder r;
  std::vector<std::string> params;
  jwt_claims claims;
  /// "METHOD pattern" of the route (lives as long as the api).
  const std::string& route;
  /// The bridge actor the handler runs on; null for the loop's own routes.
  caf::event_based_actor* self = nullptr;

  void fail(errc code, std::string message) { fail(make_error(code, std::move(message))); }
  void fail(const caf::error& err) {
    auto res = error_response(err, r.request_id());
    res.route = route; // refused before reaching an actor: still counted under its route
    log_fault(res, err, route, r.request_id(), req.trace_id);
    r.send(std::move(res));
  }
  /// 401 on a route that takes a bearer token, with the challenge every 401
  /// carries (RFC 9110 11.6.1). RFC 6750 3: no error code when the request
  /// brought no token, `invalid_token` when its token was refused.
  void fail_bearer(const caf::error& err, bool token_given) {
    auto res = error_response(err, r.request_id());
    res.headers.emplace_back("WWW-Authenticate",
                             token_given ? R"(Bearer error="invalid_token")" : "Bearer");
    res.route = route;
    r.send(std::move(res));
  }
};

namespace {

/// 429 `rate_limited`, with Retry-After in whole seconds (at least 1).
void refuse_for(api::context& ctx, std::chrono::milliseconds wait, std::string message) {
  auto secs = std::chrono::seconds{std::max<int64_t>(1, (wait.count() + 999) / 1000)};
  auto res =
    error_response(make_error(errc::rate_limited, std::move(message)), ctx.r.request_id(), secs);
  res.route = ctx.route;
  ctx.r.send(std::move(res));
}

/// Reads the field `name` (lower case), which may be given once, into `out`
/// (nullopt if absent). Given twice, answers 400 and returns false: which
/// one the client meant is anybody's guess, and a proxy may read the other.
bool field_once(api::context& c, std::string_view name, std::string_view display,
                std::optional<std::string_view>& out) {
  for (auto& [n, value] : c.req.headers)
    if (n == name) {
      if (out) {
        c.fail(errc::bad_request, std::string{display} + " must be given once");
        return false;
      }
      out = value;
    }
  return true;
}

} // namespace

struct api::route {
  std::string method;
  std::string pattern;
  std::vector<std::string> segments;
  int auth;
  void (api::*fn)(context&);
  /// "METHOD pattern": the route's name in metrics and logs.
  std::string name;
  /// Counted by the per-client rate limit (all but the probes and /metrics).
  bool limited = true;
  /// Answered on the loop thread (the probes, /metrics, /openapi.yaml: public,
  /// and sending no message); every other route runs on a bridge.
  bool on_loop = false;
};

api::api(caf::actor_system& sys, caf::actor region, std::string jwt_secret,
         std::string payment_secret, api_options opts, node_probe probe)
  : batch_(std::make_unique<job_batch>()),
    sys_(sys),
    region_(std::move(region)),
    issuer_(std::make_shared<const jwt_codec>(jwt_secret)),
    payment_secret_(std::move(payment_secret)),
    opts_(opts),
    probe_(std::move(probe)),
    users_limiter_(opts.per_user),
    clients_limiter_(opts.per_client) {
  for (size_t i = 0; i < std::max<size_t>(1, opts_.bridges); ++i) {
    bridge_states_.push_back(std::make_unique<bridge_state>(jwt_secret));
    bridges_.push_back(sys_.spawn(bridge, bridge_states_.back().get()));
  }
  add("POST", "/api/v1/users", public_route, &api::register_user);
  add("POST", "/api/v1/auth/login", public_route, &api::login);
  add("GET", "/api/v1/users/me", user_route, &api::me);
  add("POST", "/api/v1/products", admin_route, &api::create_product);
  add("GET", "/api/v1/products", public_route, &api::list_products);
  add("GET", "/api/v1/products/{sku}", public_route, &api::get_product);
  add("PATCH", "/api/v1/products/{sku}", admin_route, &api::patch_product);
  add("POST", "/api/v1/products/{sku}/restock", admin_route, &api::restock);
  add("GET", "/api/v1/inventory/{sku}", public_route, &api::get_inventory);
  add("POST", "/api/v1/flash-sales", admin_route, &api::create_sale);
  add("GET", "/api/v1/flash-sales/{id}", public_route, &api::get_sale);
  add("POST", "/api/v1/flash-sales/{id}/purchase", user_route, &api::purchase);
  add("GET", "/api/v1/orders/{id}", user_route, &api::get_order);
  add("POST", "/api/v1/orders/{id}/cancel", user_route, &api::cancel_order);
  add("GET", "/api/v1/cart", user_route, &api::get_cart);
  add("DELETE", "/api/v1/cart", user_route, &api::clear_cart);
  add("PUT", "/api/v1/cart/items/{sku}", user_route, &api::put_cart_item);
  add("DELETE", "/api/v1/cart/items/{sku}", user_route, &api::delete_cart_item);
  add("POST", "/api/v1/orders", user_route, &api::create_order);
  add("POST", "/api/v1/orders/{id}/pay", user_route, &api::pay_order);
  add("POST", "/api/v1/payments/callback", public_route, &api::payment_callback);
  if (opts_.sandbox_payments)
    add("POST", "/api/v1/payments/{id}/sandbox-complete", user_route, &api::sandbox_complete);
  add("GET", "/healthz", public_route, &api::healthz);
  add("GET", "/readyz", public_route, &api::readyz);
  add("GET", "/metrics", public_route, &api::metrics);
  add("GET", "/openapi.yaml", public_route, &api::openapi);
  for (auto& r : routes_) {
    // Load balancers and Prometheus must always get through.
    if (r.pattern == "/healthz" || r.pattern == "/readyz" || r.pattern == "/metrics")
      r.limited = false;
    // Answered on the loop: they send no message, and /metrics reads the
    // request counters, which the loop thread owns.
    r.on_loop = r.fn == &api::healthz || r.fn == &api::readyz || r.fn == &api::metrics
                || r.fn == &api::openapi;
  }
  if (opts_.fault_injection) {
    add("POST", "/api/v1/admin/fault-injection/crash", admin_route, &api::crash);
    if (probe_.fail_storage_writes)
      add("POST", "/api/v1/admin/fault-injection/storage", admin_route, &api::fail_storage);
  }
}

api::~api() {
  // A bridge's jobs and its answer handlers use this object and its routes:
  // they must be gone before it is.
  caf::scoped_actor self{sys_};
  for (auto& b : bridges_)
    self->send_exit(b, caf::exit_reason::user_shutdown);
  for (auto& b : bridges_)
    self->wait_for(b);
}

std::vector<std::pair<std::string, std::string>> api::routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& r : routes_)
    out.emplace_back(r.method, r.pattern);
  return out;
}

void api::add(std::string method, std::string pattern, int auth, void (api::*fn)(context&)) {
  route r{std::move(method), pattern, {}, auth, fn, {}};
  r.name = r.method + " " + r.pattern;
  for (auto s : split_path(pattern))
    r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

void api::handle(http_request& req, responder r) {
  static const std::string unmatched = "(unmatched)";
  auto segments = split_path(req.path);
  const route* match = nullptr;
  std::vector<std::string> allowed; // methods of the routes whose path matches
  std::vector<std::string> params;
  bool bad_escape = false; // a route's words matched, an id's escape was malformed
  for (auto& rt : routes_) {
    if (rt.segments.size() != segments.size())
      continue;
    // A route's words as they are: a proxy that filters paths by prefix
    // (`/metrics`, `/api/v1/admin`) sees what this matches.
    bool ok = true;
    for (size_t i = 0; i < segments.size() && ok; ++i)
      if (rt.segments[i].front() != '{')
        ok = rt.segments[i] == segments[i];
    if (!ok)
      continue;
    // Its ids percent-decoded: `sku%2D1` is `sku-1` (RFC 3986 6.2.2.2). An
    // encoded '/' stays in its id, which then names nothing.
    std::vector<std::string> ps;
    for (size_t i = 0; i < segments.size() && ok; ++i) {
      if (rt.segments[i].front() != '{')
        continue;
      if (segments[i].find('%') == std::string_view::npos) {
        ps.emplace_back(segments[i]);
      } else {
        ps.emplace_back();
        ok = percent_decode(segments[i], ps.back(), false);
      }
    }
    if (!ok) {
      bad_escape = true;
      continue;
    }
    // HEAD is served by the GET route (RFC 9110 9.3.2); the server leaves
    // out the body and keeps its Content-Length.
    if (rt.method == req.method || (req.method == "HEAD" && rt.method == "GET")) {
      match = &rt;
      params = std::move(ps);
      break;
    }
    // Each method once (two routes of one method may match a path), and
    // HEAD with GET, as the GET route serves it.
    auto allow = [&allowed](const std::string& m) {
      if (std::find(allowed.begin(), allowed.end(), m) == allowed.end())
        allowed.push_back(m);
    };
    allow(rt.method);
    if (rt.method == "GET")
      allow("HEAD");
  }
  context ctx{req, std::move(r), std::move(params), {}, match ? match->name : unmatched};
  if (clients_limiter_.enabled() && (!match || match->limited)) {
    auto wait = clients_limiter_.take(client_key(req.peer), req.received);
    if (wait.count() > 0) {
      refuse_for(ctx, wait, "too many requests from this address; retry later");
      return;
    }
  }
  if (!match) {
    if (bad_escape) {
      auto res = error_response(
        make_error(errc::bad_request, "malformed percent-encoding in the path"),
        ctx.r.request_id());
      res.route = unmatched;
      ctx.r.send(std::move(res));
    } else if (!allowed.empty()) {
      auto res = error_response(make_error(errc::method_not_allowed,
                                           req.method + " is not allowed on " + req.path),
                                ctx.r.request_id());
      std::string allow;
      for (auto& m : allowed)
        allow.append(allow.empty() ? "" : ", ").append(m);
      res.headers.emplace_back("Allow", std::move(allow));
      res.route = unmatched;
      ctx.r.send(std::move(res));
    } else {
      auto res = error_response(make_error(errc::not_found, "no route for " + req.path),
                                ctx.r.request_id());
      res.route = unmatched;
      ctx.r.send(std::move(res));
    }
    return;
  }
  if (match->on_loop) {
    (this->*(match->fn))(ctx);
    return;
  }
  // The rest runs on a bridge, with the request's contents: the server
  // starts the next request afresh.
  batch_->pending.jobs.push_back(
    edge_job{[this, match, req = std::move(req), r = std::move(ctx.r),
              params = std::move(ctx.params)](caf::event_based_actor* self,
                                              bridge_state& bridge) mutable {
      context c{req, std::move(r), std::move(params), {}, match->name, self};
      serve(c, *match, bridge);
    }});
}

void api::serve(context& ctx, const route& rt, bridge_state& bridge) {
  if (rt.auth != public_route) {
    std::optional<std::string_view> field;
    if (!field_once(ctx, "authorization", "Authorization", field))
      return;
    auto auth = field.value_or(std::string_view{});
    // `Bearer 1*SP token` (RFC 6750 2.1); the scheme name is case-insensitive
    // (RFC 9110 11.1): "bearer" works too.
    constexpr std::string_view scheme = "Bearer";
    std::string_view token;
    if (auth.size() > scheme.size() && auth[scheme.size()] == ' '
        && equals_ignore_case(auth.substr(0, scheme.size()), scheme)) {
      token = auth.substr(scheme.size());
      token.remove_prefix(std::min(token.find_first_not_of(' '), token.size()));
    }
    if (token.empty()) {
      ctx.fail_bearer(make_error(errc::unauthorized, "a bearer token is required"), false);
      return;
    }
    auto claims = bridge.jwt.verify(token, now_secs());
    if (!claims) {
      ctx.fail_bearer(claims.error(), true);
      return;
    }
    ctx.claims = std::move(*claims);
    if (rt.auth == admin_route && ctx.claims.role != user_role::admin) {
      ctx.fail(errc::forbidden, "this route needs the admin role");
      return;
    }
    // By the verified user: a forged token cannot spend another user's requests.
    if (users_limiter_.enabled() && ctx.claims.role == user_role::user) {
      std::chrono::milliseconds wait;
      {
        std::lock_guard<std::mutex> guard{users_limiter_mtx_};
        wait = users_limiter_.take(ctx.claims.sub, ctx.req.received);
      }
      if (wait.count() > 0) {
        refuse_for(ctx, wait, "too many requests from this user; retry later");
        return;
      }
    }
  }
  (this->*(rt.fn))(ctx);
}

template <class Reply, class Command, class Encode>
void api::ask(context& ctx, Command cmd, int status, Encode encode) {
  // No CAF timeout: each one would cost the CAF clock thread a wake-up. The
  // HTTP server answers 503 itself when a request is not answered in time,
  // and CAF answers every request to a dead actor with an error. The route's
  // name lives in the route table, which outlives the bridge that runs these.
  assert(ctx.self); // a bridge's route: the loop's own send no message
  const std::string* route = &ctx.route;
  ctx.self->request(region_, caf::infinite, std::move(cmd))
    .then(
      [r = ctx.r, status, encode, route](Reply& reply) {
        auto res = json_response(status, encode(reply));
        res.route = *route;
        r.send(std::move(res));
      },
      [r = ctx.r, route, trace = ctx.req.trace_id](caf::error& err) {
        auto res = error_response(err, r.request_id());
        res.route = *route;
        log_fault(res, err, *route, r.request_id(), trace);
        r.send(std::move(res));
      });
}

void api::flush() {
  auto& jobs = batch_->pending.jobs;
  if (jobs.empty())
    return;
  auto n = jobs.size();
  auto i = next_bridge_++ % bridges_.size();
  if (auto& state = *bridge_states_[i]; state.down.load(std::memory_order_acquire)) {
    // The stopped actor is done with its state (its exit ran after its last
    // message): the new one takes it over, verified tokens included.
    spdlog::warn("edge: started bridge {} anew (it stopped: {}); the requests it held get the "
                 "request timeout's 503",
                 i, state.why);
    state.down.store(false, std::memory_order_relaxed);
    bridges_[i] = sys_.spawn(bridge, &state);
    ++bridge_restarts_;
  }
  caf::anon_send(bridges_[i], std::move(batch_->pending));
  jobs.clear();
  jobs.reserve(n); // the next iteration's jobs, without growing from nothing again
}

// -- handlers -----------------------------------------------------------------

namespace {

/// Reads the optional Idempotency-Key header (1..128 printable ASCII) into
/// `out`; on a bad one, answers 400 and returns false.
bool idempotency_key(api::context& c, std::string& out) {
  std::optional<std::string_view> field;
  if (!field_once(c, "idempotency-key", "Idempotency-Key", field))
    return false;
  auto key = field.value_or(std::string_view{});
  if (field && (key.empty() || key.size() > 128)) {
    c.fail(errc::bad_request, "Idempotency-Key must be 1 to 128 characters");
    return false;
  }
  for (char ch : key)
    if (ch < 0x21 || ch > 0x7e) {
      c.fail(errc::bad_request, "Idempotency-Key must be printable ASCII");
      return false;
    }
  out.assign(key);
  return true;
}

} // namespace


void api::register_user(context& c) {
  shop::register_user cmd;
  if (!idempotency_key(c, cmd.idempotency_key))
    return;
  auto creds = decode_credentials(c.req.body, true);
  if (!creds)
    return c.fail(creds.error());
  cmd.username = std::move(creds->username);
  cmd.password = std::move(creds->password);
  ask<user_view>(c, std::move(cmd), 201, [](const user_view& u) {
                   json_writer w;
                   w.begin_object()
                     .field("user_id", u.user_id)
                     .field("username", u.username)
                     .end_object();
                   return w.take();
                 });
}

void api::login(context& c) {
  auto creds = decode_credentials(c.req.body, false);
  if (!creds)
    return c.fail(creds.error());
  // A name registration would refuse cannot exist: no account actor for it.
  if (!is_valid_username(creds->username))
    return c.fail(errc::unauthorized, "wrong username or password");
  auto issuer = issuer_;
  auto ttl = opts_.token_ttl.count();
  ask<user_view>(c, login_user{creds->username, creds->password}, 200,
                 [issuer, ttl](const user_view& u) {
                   jwt_claims claims{u.user_id, u.username, u.role, now_secs() + ttl};
                   json_writer w;
                   w.begin_object()
                     .field("token", issuer->issue(claims))
                     .field("token_type", "Bearer")
                     .field("expires_in", static_cast<int64_t>(ttl))
                     .field("user_id", u.user_id)
                     .field("role", to_string(u.role))
                     .end_object();
                   return w.take();
                 });
}

void api::me(context& c) {
  ask<user_view>(c, get_user{c.claims.name, c.claims.sub}, 200,
                 [](const user_view& u) { return to_json(u); });
}

namespace {

bool check_id(api::context& c, const std::string& id, const char* what) {
  if (is_valid_id(id))
    return true;
  c.fail(errc::not_found, std::string{"no such "} + what);
  return false;
}

auto encode_product = [](const product_view& p) { return to_json(p); };
auto encode_inventory = [](const inventory_view& v) { return to_json(v); };
auto encode_sale = [](const sale_view& v) { return to_json(v); };
auto encode_order = [](const order_record& o) { return to_json(o); };
auto encode_placed = [](const purchase_result& p) { return to_json(p.order); };

} // namespace

void api::create_product(context& c) {
  shop::create_product cmd;
  if (!idempotency_key(c, cmd.idempotency_key))
    return;
  auto p = decode_create_product(c.req.body);
  if (!p)
    return c.fail(p.error());
  cmd.product = std::move(*p);
  cmd.requester = c.claims.sub;
  ask<product_view>(c, std::move(cmd), 201, encode_product);
}

void api::get_product(context& c) {
  if (check_id(c, c.params[0], "product"))
    ask<product_view>(c, shop::get_product{c.params[0]}, 200, encode_product);
}

void api::patch_product(context& c) {
  if (!check_id(c, c.params[0], "product"))
    return;
  auto u = decode_update_product(c.req.body);
  if (!u)
    return c.fail(u.error());
  u->sku = c.params[0];
  ask<product_view>(c, std::move(*u), 200, encode_product);
}

void api::restock(context& c) {
  if (!check_id(c, c.params[0], "product"))
    return;
  shop::restock cmd{c.params[0], 0, {}, c.claims.sub};
  if (!idempotency_key(c, cmd.idempotency_key))
    return;
  auto q = decode_restock(c.req.body);
  if (!q)
    return c.fail(q.error());
  cmd.quantity = *q;
  ask<inventory_view>(c, std::move(cmd), 200, encode_inventory);
}

void api::get_inventory(context& c) {
  if (check_id(c, c.params[0], "product"))
    ask<inventory_view>(c, shop::get_inventory{c.params[0]}, 200, encode_inventory);
}

void api::create_sale(context& c) {
  shop::create_sale cmd;
  if (!idempotency_key(c, cmd.idempotency_key))
    return;
  auto t = decode_create_sale(c.req.body);
  if (!t)
    return c.fail(t.error());
  cmd.terms = std::move(*t);
  cmd.requester = c.claims.sub;
  ask<sale_view>(c, std::move(cmd), 201, encode_sale);
}

void api::get_sale(context& c) {
  if (check_id(c, c.params[0], "flash sale"))
    ask<sale_view>(c, shop::get_sale{c.params[0]}, 200, encode_sale);
}


void api::purchase(context& c) {
  if (!check_id(c, c.params[0], "flash sale"))
    return;
  shop::purchase cmd;
  if (!idempotency_key(c, cmd.idempotency_key))
    return;
  auto q = decode_purchase(c.req.body);
  if (!q)
    return c.fail(q.error());
  cmd.sale_id = c.params[0];
  cmd.user_id = c.claims.sub;
  cmd.quantity = *q;
  cmd.trace_id = c.req.trace_id;
  ask<purchase_result>(c, std::move(cmd), 201, encode_placed);
}

void api::get_order(context& c) {
  if (check_id(c, c.params[0], "order"))
    ask<order_record>(c,
                      shop::get_order{c.params[0], c.claims.sub,
                                      c.claims.role == user_role::admin},
                      200, encode_order);
}

void api::cancel_order(context& c) {
  if (check_id(c, c.params[0], "order"))
    ask<order_record>(c,
                      shop::cancel_order{c.params[0], c.claims.sub,
                                         c.claims.role == user_role::admin},
                      200, encode_order);
}

void api::list_products(context& c) {
  shop::list_products cmd;
  std::string_view query = c.req.query;
  bool seen_q = false, seen_limit = false, seen_cursor = false;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty())
      continue;
    auto eq = part.find('=');
    auto name = part.substr(0, eq); // as sent, for the messages
    std::string decoded_name, value;
    if (!percent_decode(name, decoded_name, true)
        || !percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1),
                           value, true))
      return c.fail(errc::bad_request, "malformed percent-encoding in the query string");
    auto once = [&](bool& seen) {
      if (seen) {
        c.fail(errc::validation_failed,
               "query parameter '" + std::string{name} + "' appears twice");
        return false;
      }
      return seen = true;
    };
    if (decoded_name == "q") {
      if (!once(seen_q))
        return;
      if (value.size() > 200)
        return c.fail(errc::validation_failed, "query parameter 'q' must be at most 200 bytes");
      cmd.query = std::move(value);
    } else if (decoded_name == "limit") {
      if (!once(seen_limit))
        return;
      int64_t n = 0;
      bool ok = !value.empty() && value.size() <= 3;
      for (char ch : value)
        ok = ok && ch >= '0' && ch <= '9' && (n = n * 10 + (ch - '0'), true);
      if (!ok || n < 1 || n > 100)
        return c.fail(errc::validation_failed,
                      "query parameter 'limit' must be an integer from 1 to 100");
      cmd.limit = n;
    } else if (decoded_name == "cursor") {
      if (!once(seen_cursor))
        return;
      if (value.empty() || value.size() > 80)
        return c.fail(errc::validation_failed, "query parameter 'cursor' is not valid");
      cmd.cursor = std::move(value);
    } else {
      return c.fail(errc::validation_failed,
                    "query parameter '" + std::string{name} + "' is not accepted here");
    }
  }
  ask<product_page>(c, std::move(cmd), 200, [](const product_page& p) { return to_json(p); });
}

namespace {

auto encode_cart = [](const cart_view& v) { return to_json(v); };

} // namespace

void api::get_cart(context& c) {
  ask<cart_view>(c, shop::get_cart{c.claims.sub}, 200, encode_cart);
}

void api::put_cart_item(context& c) {
  if (!check_id(c, c.params[0], "product"))
    return;
  auto q = decode_cart_quantity(c.req.body);
  if (!q)
    return c.fail(q.error());
  ask<cart_view>(c, set_cart_item{c.claims.sub, c.params[0], *q}, 200, encode_cart);
}

void api::delete_cart_item(context& c) {
  if (check_id(c, c.params[0], "product"))
    ask<cart_view>(c, set_cart_item{c.claims.sub, c.params[0], 0}, 200, encode_cart);
}

void api::clear_cart(context& c) {
  ask<cart_view>(c, shop::clear_cart{c.claims.sub, {}, {}, {}}, 204,
                 [](const cart_view&) { return std::string{}; });
}

void api::create_order(context& c) {
  std::string key;
  if (!idempotency_key(c, key))
    return;
  auto cmd = decode_checkout(c.req.body);
  if (!cmd)
    return c.fail(cmd.error());
  cmd->user_id = c.claims.sub;
  cmd->idempotency_key = std::move(key);
  cmd->trace_id = c.req.trace_id;
  ask<purchase_result>(c, std::move(*cmd), 201, encode_placed);
}

void api::pay_order(context& c) {
  if (!check_id(c, c.params[0], "order"))
    return;
  auto method = decode_pay(c.req.body);
  if (!method)
    return c.fail(method.error());
  bool sandbox = opts_.sandbox_payments;
  ask<payment_view>(c, shop::pay_order{c.params[0], c.claims.sub, std::move(*method)}, 200,
                    [sandbox](const payment_view& p) {
                      // Without the sandbox there is no gateway page to send the buyer to.
                      auto url = sandbox ? "/api/v1/payments/" + p.payment_id + "/sandbox-complete"
                                         : std::string{};
                      return to_json(p, url);
                    });
}

namespace {

/// Checks a gateway callback: `signature` must be the hex HMAC-SHA256 of the
/// raw body under the payment secret (compared in constant time), then the
/// body is decoded. A bad signature is 401 whatever the body holds.
caf::expected<shop::payment_callback> verify_callback(const std::string& secret,
                                                      std::string_view body,
                                                      std::string_view signature) {
  auto expected = to_hex(hmac_sha256(secret, body));
  std::string given{signature};
  for (auto& ch : given) // hex digits in either case
    if (ch >= 'A' && ch <= 'F')
      ch = static_cast<char>(ch - 'A' + 'a');
  if (given.empty() || !constant_time_equal(expected, given))
    return make_error(errc::unauthorized, "the X-Signature header does not sign this body");
  return decode_payment_callback(body);
}

} // namespace

void api::payment_callback(context& c) {
  std::optional<std::string_view> signature;
  if (!field_once(c, "x-signature", "X-Signature", signature))
    return;
  auto cb = verify_callback(payment_secret_, c.req.body, signature.value_or(std::string_view{}));
  if (!cb)
    return c.fail(cb.error());
  ask<order_record>(c, std::move(*cb), 200, encode_order);
}

void api::sandbox_complete(context& c) {
  // Payment ids are "pay_<order id>" (see the order entity).
  const auto& payment_id = c.params[0];
  constexpr std::string_view prefix = "pay_";
  if (!is_valid_id(payment_id) || payment_id.compare(0, prefix.size(), prefix) != 0
      || payment_id.size() == prefix.size())
    return c.fail(errc::not_found, "no such payment");
  auto succeeded = decode_sandbox_complete(c.req.body);
  if (!succeeded)
    return c.fail(succeeded.error());
  auto order_id = payment_id.substr(prefix.size());
  // The sandbox gateway: look the order up as its owner, sign the callback
  // the way a real gateway would, and hand it to the callback route's checks.
  auto self = c.self;
  auto fail = [r = c.r, route = c.route](const caf::error& err) {
    auto res = error_response(err, r.request_id());
    res.route = route;
    r.send(std::move(res));
  };
  self->request(region_, caf::infinite, shop::get_order{order_id, c.claims.sub, false})
    .then(
      [self, fail, r = c.r, route = c.route, region = region_, secret = payment_secret_,
       payment_id, order_id, ok = *succeeded](order_record& o) {
        shop::payment_callback cb{payment_id, order_id, ok, o.total_cents - o.discount_cents};
        auto body = encode_payment_callback(cb);
        auto signature = to_hex(hmac_sha256(secret, body));
        auto verified = verify_callback(secret, body, signature);
        if (!verified)
          return fail(verified.error());
        self->request(region, caf::infinite, std::move(*verified))
          .then(
            [r, route](order_record& paid) {
              auto res = json_response(200, to_json(paid));
              res.route = route;
              r.send(std::move(res));
            },
            [fail](caf::error& err) { fail(err); });
      },
      [fail](caf::error& err) { fail(err); });
}

void api::healthz(context& c) {
  auto res = json_response(200, R"({"status":"ok"})");
  res.route = c.route;
  c.r.send(std::move(res));
}

void api::readyz(context& c) {
  bool stopping = probe_.stopping && probe_.stopping();
  bool ready = !stopping && (!probe_.ready || probe_.ready());
  auto res = ready ? json_response(200, R"({"status":"ready"})")
                   : error_response(make_error(errc::unavailable, stopping
                                                                    ? "the node is stopping"
                                                                    : "the node is not ready"),
                                    c.r.request_id());
  res.route = c.route;
  c.r.send(std::move(res));
}

void api::metrics(context& c) {
  std::string out;
  write_metric_header(out, "shop_http_requests_total", "counter",
                      "HTTP requests answered, by route and status.");
  for (auto& [key, n] : requests_)
    write_sample(out, "shop_http_requests_total",
                 "route=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"",
                 static_cast<double>(n));
  write_metric_header(out, "shop_http_request_duration_seconds", "histogram",
                      "Time from a request's arrival to its answer, by route.");
  for (auto& [route, h] : latency_)
    h->write(out, "shop_http_request_duration_seconds", "route=\"" + route + "\"");
  // The rate limits: the users' one the bridges share, the clients' one this
  // (loop) thread owns.
  struct limit_figures {
    const char* label;
    size_t tracked;
    uint64_t untracked;
  };
  limit_figures limits[] = {
    {R"(limit="user")", 0, 0},
    {R"(limit="client")", clients_limiter_.tracked(), clients_limiter_.untracked()}};
  {
    std::lock_guard<std::mutex> guard{users_limiter_mtx_};
    limits[0].tracked = users_limiter_.tracked();
    limits[0].untracked = users_limiter_.untracked();
  }
  write_metric_header(out, "shop_rate_limit_keys", "gauge",
                      "Keys with a token bucket (full ones are dropped as the sweep reaches them).");
  for (auto& l : limits)
    write_sample(out, "shop_rate_limit_keys", l.label, static_cast<double>(l.tracked));
  write_metric_header(out, "shop_rate_limit_untracked_total", "counter",
                      "Requests let through without a bucket: the limit's 100,000 keys were in use.");
  for (auto& l : limits)
    write_sample(out, "shop_rate_limit_untracked_total", l.label,
                 static_cast<double>(l.untracked));
  write_metric(out, "shop_edge_bridge_restarts_total", "counter",
               "Bridge actors started anew after an exception stopped one.",
               static_cast<double>(bridge_restarts_));
  if (probe_.write_metrics)
    probe_.write_metrics(out);
  http_response res;
  res.status = 200;
  res.body = std::move(out);
  res.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  res.route = c.route;
  c.r.send(std::move(res));
}

void api::openapi(context& c) {
  http_response res;
  res.body.assign(openapi_yaml());
  res.headers.emplace_back("Content-Type", "application/yaml");
  res.route = c.route;
  c.r.send(std::move(res));
}

void api::crash(context& c) {
  // Body: {"kind":"sku"|"sale"|"order"|"user"|"cart"|"bridge","id":"..."}.
  auto req = decode_crash_request(c.req.body);
  if (!req)
    return c.fail(req.error());
  const auto& kind_name = req->kind;
  if (kind_name == "bridge") {
    // The bridge running this request throws once it has answered (the id
    // names nothing); the loop starts a new one.
    auto res = json_response(202, R"({"status":"crash requested"})");
    res.route = c.route;
    c.r.send(std::move(res));
    throw std::runtime_error("fault injection: bridge crash");
  }
  crash_entity cmd;
  if (kind_name == "sku")
    cmd.kind = entity_kind::sku;
  else if (kind_name == "sale")
    cmd.kind = entity_kind::sale;
  else if (kind_name == "order")
    cmd.kind = entity_kind::order;
  else if (kind_name == "user")
    cmd.kind = entity_kind::user;
  else if (kind_name == "cart")
    cmd.kind = entity_kind::cart;
  else
    return c.fail(errc::validation_failed,
                  "field 'kind' must be sku, sale, order, user, cart or bridge");
  cmd.id = req->id;
  caf::anon_send(region_, std::move(cmd));
  auto res = json_response(202, R"({"status":"crash requested"})");
  res.route = c.route;
  c.r.send(std::move(res));
}

void api::fail_storage(context& c) {
  // Body: {"groups":N}, 1 to 1000: the journal's next N group commits fail.
  auto groups = decode_storage_fault(c.req.body);
  if (!groups)
    return c.fail(groups.error());
  probe_.fail_storage_writes(static_cast<uint32_t>(*groups));
  auto res = json_response(202, R"({"status":"storage failures injected"})");
  res.route = c.route;
  c.r.send(std::move(res));
}

void api::observe(const std::string& route, int status, std::chrono::microseconds latency) {
  ++requests_[{route, status}];
  auto& h = latency_[route];
  if (!h)
    h = std::make_unique<latency_histogram>();
  h->observe_us(static_cast<uint64_t>(latency.count()));
}

} // namespace shop::edge
