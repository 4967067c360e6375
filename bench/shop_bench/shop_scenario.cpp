// `shop-bench shop`: users shop in a storefront. Each user is a small state
// machine with at most one request in flight: it browses the catalog,
// searches, views products, fills its cart and checks out (from the cart, or
// one item straight away); a share of the orders is then paid, through the
// node's sandbox gateway or a callback signed like a gateway's. Popular
// products are chosen with a Zipf(1) skew. After the run, an audit reads the
// stock and the orders back.

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <simdjson.h>

#include "bench/shop_bench/report.hpp"
#include "bench/shop_bench/scenario.hpp"
#include "protocols/crypto.hpp"

namespace shop::bench {

namespace {

enum kind : int { browse, search, view, cart, checkout, pay, pay_complete, kind_count };

constexpr const char* kind_names[kind_count] = {"browse",   "search", "view",        "cart",
                                                "checkout", "pay",    "pay-complete"};

/// Parses "browse=5,search=5,..." into weights of the first five kinds.
bool parse_mix(const std::string& text, std::vector<double>& weights) {
  weights.assign(checkout + 1, 0);
  std::stringstream in{text};
  std::string part;
  while (std::getline(in, part, ',')) {
    auto eq = part.find('=');
    if (eq == std::string::npos)
      return false;
    auto name = part.substr(0, eq);
    double w = 0;
    try {
      w = std::stod(part.substr(eq + 1));
    } catch (...) {
      return false;
    }
    bool known = false;
    for (int k = browse; k <= checkout; ++k)
      if (name == kind_names[k]) {
        weights[k] = w;
        known = true;
      }
    if (!known || w < 0)
      return false;
  }
  double sum = 0;
  for (auto w : weights)
    sum += w;
  return sum > 0;
}

const char* adjectives[] = {"Blue", "Red", "Green", "Black", "White", "Linen", "Cotton", "Wool",
                            "Classic", "Slim", "Vintage", "Sport"};
const char* nouns[] = {"Tee", "Shirt", "Mug", "Cap", "Scarf", "Jacket", "Sock", "Bag",
                       "Lamp", "Notebook", "Bottle", "Hoodie"};

struct order_seen {
  size_t user = 0;
  std::map<std::string, int64_t> units; // sku -> quantity
  bool paid = false;
};

/// A checkout or payment without a final answer (no answer, or a 5xx that
/// may have taken effect) is retried as is: the Idempotency-Key makes a
/// checkout safe to repeat, and a payment callback is idempotent.
constexpr int max_retries = 3;

struct user_state {
  bool busy = false;
  int retries = 0; // of the request in `next`
  size_t cart_lines = 0;
  uint64_t checkouts = 0;
  std::string cursor; // the next catalog page, if the last browse had one
  std::optional<request> next; // a follow-up (pay, then complete) goes first
};

} // namespace

int run_shop(const common_flags& f, const std::vector<target>& targets, shop_flags sf) {
  auto T = targets.size();
  std::vector<double> weights;
  if (!parse_mix(sf.mix, weights)) {
    std::fprintf(stderr, "bad --mix '%s': expected e.g. browse=5,search=5,view=3,cart=2,checkout=1\n",
                 sf.mix.c_str());
    return 2;
  }
  if (sf.users < T) {
    std::fprintf(stderr, "--users must be at least the number of targets\n");
    return 2;
  }
  if (sf.run_id.empty())
    sf.run_id = std::to_string(std::random_device{}() % 1000000);
  auto setup_start = std::chrono::steady_clock::now();
  std::vector<std::string> admin;
  if (!admin_logins(targets, sf.admin_password, admin))
    return 2;
  // The catalog.
  std::vector<std::string> skus, words;
  {
    std::vector<request> reqs;
    for (size_t i = 0; i < sf.products; ++i) {
      auto sku = "p" + sf.run_id + "-" + std::to_string(i);
      std::string name = std::string{adjectives[i % 12]} + " " + adjectives[(i / 12 + 3) % 12]
                         + " " + nouns[(i / 7) % 12] + " " + std::to_string(i);
      reqs.push_back(make("POST", "/api/v1/products",
                          R"({"sku":")" + sku + R"(","name":")" + name + R"(","price_cents":)"
                            + std::to_string(500 + (i * 37) % 5000) + R"(,"stock":)"
                            + std::to_string(sf.stock) + "}",
                          {"Authorization: Bearer " + admin[0]}));
      skus.push_back(sku);
    }
    for (auto& r : send_all(targets, std::move(reqs), std::min<size_t>(f.connections, 16)))
      if (r.status != 201) {
        std::fprintf(stderr, "creating the catalog failed: %d %s\n", r.status, r.body.c_str());
        return 2;
      }
    for (auto w : adjectives)
      words.emplace_back(std::string{w}.substr(0, 4)); // a search as the user types
    for (auto w : nouns)
      words.emplace_back(w);
  }
  std::vector<std::string> tokens;
  if (!make_users(targets, "s" + sf.run_id + "_", sf.users, f.connections, tokens))
    return 2;
  auto setup_secs =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - setup_start).count();
  std::fprintf(stderr, "setup: %zu products, %zu users registered and logged in, in %.1f s\n",
               sf.products, sf.users, setup_secs);

  run_report rep;
  rep.mode = "shop";
  for (int k = 0; k < kind_count; ++k)
    rep.kinds.push_back({kind_names[k], histogram{}, {}, 0});
  histogram all;
  std::vector<user_state> users(sf.users);
  std::vector<size_t> cursor_of_target(T, 0);
  std::mt19937_64 rng{7};
  zipf_sampler popular{skus.size(), 1.0};
  std::discrete_distribution<int> pick_kind{weights.begin(), weights.end()};
  std::map<std::string, order_seen> orders;
  uint64_t unknown_outcomes = 0; // checkouts or payments without a final answer after retries
  auto auth = [&](size_t u) { return "Authorization: Bearer " + tokens[u]; };

  // The next request of user u (tag = user * kind_count + kind).
  auto next_of = [&](size_t u) -> request {
    auto& us = users[u];
    request r;
    if (us.next) {
      r = std::move(*us.next);
      us.next.reset();
    } else {
      int k = pick_kind(rng);
      switch (k) {
        case browse: {
          std::string path = "/api/v1/products?limit=20";
          if (!us.cursor.empty() && rng() % 2 == 0)
            path += "&cursor=" + us.cursor;
          r = make("GET", path);
          break;
        }
        case search:
          r = make("GET", "/api/v1/products?limit=20&q=" + words[rng() % words.size()]);
          break;
        case view: r = make("GET", "/api/v1/products/" + skus[popular(rng)]); break;
        case cart:
          r = make("PUT", "/api/v1/cart/items/" + skus[popular(rng)],
                   R"({"quantity":)" + std::to_string(1 + rng() % 2) + "}", {auth(u)});
          break;
        default: {
          auto key = "Idempotency-Key: s" + sf.run_id + "-" + std::to_string(u) + "-"
                     + std::to_string(us.checkouts++);
          auto body = us.cart_lines > 0 ? std::string{R"({"from_cart":true})"}
                                        : R"({"items":[{"sku":")" + skus[popular(rng)]
                                            + R"(","quantity":1}]})";
          r = make("POST", "/api/v1/orders", body, {auth(u), key});
          k = checkout;
        }
      }
      r.kind = k;
    }
    r.target = u % T;
    r.tag = u;
    us.busy = true;
    return r;
  };
  // The next user of target t (closed loop) or of any target (t ==
  // SIZE_MAX), preferring one without a request in flight. Only when every
  // one is waiting (more connections than users) does a user get two at once.
  auto pick_user = [&](size_t t) -> size_t {
    size_t step = t == SIZE_MAX ? 1 : T;
    size_t first = t == SIZE_MAX ? 0 : t;
    size_t count = (sf.users + step - 1 - first) / step;
    auto& at = cursor_of_target[t == SIZE_MAX ? 0 : t];
    for (size_t n = 0; n < count; ++n) {
      size_t u = first + (at++ % count) * step;
      if (!users[u].busy)
        return u;
    }
    return first + (at++ % count) * step;
  };

  auto t0 = std::chrono::steady_clock::now();
  auto opts = make_options(f, targets);
  if (opts.duration.count() == 0)
    opts.duration = std::chrono::seconds{10};
  simdjson::dom::parser parser;
  auto summary = run_load(
    opts,
    [&](size_t conn) -> std::optional<request> {
      return next_of(pick_user(conn == SIZE_MAX ? SIZE_MAX : conn % T));
    },
    [&](const request& r, const response& res) {
      auto u = static_cast<size_t>(r.tag);
      auto& us = users[u];
      us.busy = false;
      auto& k = rep.kinds[r.kind];
      k.latency.record(res.latency_us);
      all.record(res.latency_us);
      ++k.outcomes[classify(res.status, res.body)];
      ++k.count;
      if (!f.plot.empty())
        rep.samples.emplace_back(std::chrono::duration<float>(res.done - t0).count(),
                                 static_cast<float>(res.latency_us));
      if ((res.status == 0 || res.status >= 500) && (r.kind == checkout || r.kind == pay_complete)) {
        if (us.retries < max_retries) {
          ++us.retries;
          us.next = r;
        } else {
          ++unknown_outcomes;
          us.retries = 0;
        }
        return;
      }
      us.retries = 0;
      simdjson::dom::element doc;
      bool parsed = res.status >= 200 && res.status < 300 && !res.body.empty()
                    && !parser.parse(res.body).get(doc);
      switch (r.kind) {
        case browse:
          if (parsed) {
            std::string_view c;
            us.cursor = doc["next_cursor"].get_string().get(c) ? std::string{} : std::string{c};
          }
          break;
        case cart:
          if (simdjson::dom::array items; parsed && !doc["items"].get_array().get(items))
            us.cart_lines = items.size();
          break;
        case checkout:
          if (res.status == 201 && parsed) {
            std::string_view id;
            if (doc["order_id"].get_string().get(id))
              break;
            auto& o = orders[std::string{id}];
            o.user = u;
            for (auto line : doc["items"].get_array()) {
              std::string_view sku;
              int64_t q = 0;
              if (!line["sku"].get_string().get(sku) && !line["quantity"].get_int64().get(q))
                o.units[std::string{sku}] += q;
            }
            if (r.body.find("from_cart") != std::string::npos)
              us.cart_lines = 0;
            if (std::uniform_real_distribution<double>{0, 1}(rng) < sf.pay_share) {
              auto p = make("POST", "/api/v1/orders/" + std::string{id} + "/pay",
                            R"({"method":"card"})", {auth(u)});
              p.kind = pay;
              us.next = std::move(p);
            }
          }
          break;
        case pay:
          if (parsed) {
            std::string_view url, payment_id, order_id;
            int64_t amount = 0;
            if (doc["payment_id"].get_string().get(payment_id)
                || doc["order_id"].get_string().get(order_id)
                || doc["amount_cents"].get_int64().get(amount))
              break;
            request p;
            if (!doc["pay_url"].get_string().get(url)) {
              p = make("POST", std::string{url}, R"({"status":"succeeded"})", {auth(u)});
            } else if (!sf.payment_secret.empty()) {
              auto body = R"({"payment_id":")" + std::string{payment_id} + R"(","order_id":")"
                          + std::string{order_id} + R"(","status":"succeeded","amount_cents":)"
                          + std::to_string(amount) + "}";
              auto sig = to_hex(hmac_sha256(sf.payment_secret, body));
              p = make("POST", "/api/v1/payments/callback", body, {"X-Signature: " + sig});
            } else {
              break; // no way to complete the payment: the order stays pending
            }
            p.kind = pay_complete;
            us.next = std::move(p);
          }
          break;
        case pay_complete:
          if (parsed) {
            std::string_view id, status;
            if (!doc["order_id"].get_string().get(id) && !doc["status"].get_string().get(status)
                && status == "paid")
              orders[std::string{id}].paid = true;
          }
          break;
        default: break;
      }
    },
    [&] { return "p99 " + std::to_string(all.value_at(99) / 1000.0).substr(0, 6) + " ms"; });
  rep.seconds = summary.seconds;
  rep.facts["setup_seconds"] = std::to_string(setup_secs);
  rep.facts["mix"] = sf.mix;
  rep.facts["load"] = f.rate > 0 ? "open loop at " + std::to_string(static_cast<int64_t>(f.rate))
                                     + " req/s"
                                 : "closed loop, " + std::to_string(f.connections) + " connections";

  // The audit: stock is conserved, every unit in a paid order is sold, every
  // unit in an unpaid order is reserved, and every created order exists
  // with the status its answers imply.
  std::vector<std::string> failures;
  std::map<std::string, int64_t> want_sold, want_reserved;
  size_t paid = 0;
  for (auto& [id, o] : orders) {
    paid += o.paid ? 1 : 0;
    for (auto& [sku, q] : o.units)
      (o.paid ? want_sold : want_reserved)[sku] += q;
  }
  std::vector<request> reads;
  for (auto& sku : skus)
    reads.push_back(make("GET", "/api/v1/inventory/" + sku));
  auto inv = send_all(targets, std::move(reads), std::min<size_t>(f.connections, 16));
  for (size_t i = 0; i < skus.size(); ++i) {
    auto available = json_int(inv[i].body, "available"), reserved = json_int(inv[i].body, "reserved"),
         sold = json_int(inv[i].body, "sold");
    if (available < 0 || reserved < 0 || sold < 0) {
      failures.push_back("cannot read inventory of " + skus[i] + ": " + inv[i].body);
      continue;
    }
    if (available + reserved + sold != sf.stock)
      failures.push_back(skus[i] + ": available + reserved + sold = "
                         + std::to_string(available + reserved + sold) + " != stocked "
                         + std::to_string(sf.stock));
    // Requests without an answer may have reserved or sold units: they widen the check.
    bool exact = unknown_outcomes == 0;
    if ((exact && (sold != want_sold[skus[i]] || reserved != want_reserved[skus[i]]))
        || (!exact && sold + reserved < want_sold[skus[i]] + want_reserved[skus[i]]))
      failures.push_back(skus[i] + ": reserved " + std::to_string(reserved) + ", sold "
                         + std::to_string(sold) + "; the answers imply reserved "
                         + std::to_string(want_reserved[skus[i]]) + ", sold "
                         + std::to_string(want_sold[skus[i]]));
  }
  std::vector<request> checks;
  std::vector<const order_seen*> checked;
  for (auto& [id, o] : orders) {
    auto r = make("GET", "/api/v1/orders/" + id, {}, {auth(o.user)}, o.user % T);
    checks.push_back(std::move(r));
    checked.push_back(&o);
  }
  auto found = send_all(targets, std::move(checks), f.connections);
  order_reads looked_up;
  size_t wrong_status = 0, expired = 0;
  for (size_t i = 0; i < found.size(); ++i) {
    if (!looked_up.count(found[i]))
      continue;
    auto status = json_string(found[i].body, "status");
    if (!checked[i]->paid && status == "expired")
      ++expired;
    else if (checked[i]->paid ? status != "paid" : status != "pending_payment" && status != "paid")
      ++wrong_status;
  }
  if (expired > 0)
    failures.push_back(std::to_string(expired) + " unpaid order(s) expired before the audit, so "
                       "reserved stock cannot be checked: give the node a --payment-timeout "
                       "longer than the run");
  looked_up.report(failures);
  if (wrong_status > 0)
    failures.push_back(std::to_string(wrong_status) + " order(s) do not have the status their answers imply");
  rep.facts["orders"] = std::to_string(orders.size()) + " created, " + std::to_string(paid) + " paid";
  return finish_audited_run(rep, failures, f);
}

} // namespace shop::bench
