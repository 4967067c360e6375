// Bad input: each case answered with the API.md error shape and the right
// status, the node staying up and no state changed.

#include <cstdlib>
#include <iostream>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "edge/jwt.hpp"
#include "protocols/crypto.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop;
using namespace shop::test;

namespace {

constexpr const char* secret = "bad-input-test-secret-of-32-bytes";

class BadInput : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(shopd.start());
    admin = shopd.admin_token();
    create_product_and_sale(c(), admin, "safe-1", 100, "sale-b", 50, 2);
    user = make_users(shopd.port(), "plain_", 1)[0];
  }

  http_client& c() {
    if (!client)
      client = std::make_unique<http_client>(shopd.port());
    return *client;
  }

  /// Asserts the error shape and code, then that nothing changed and the node is up.
  void expect_error(const http_result& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(json_field(r.body, "error.code"), code) << r.body;
    EXPECT_FALSE(json_field(r.body, "error.message").empty()) << r.body;
    EXPECT_FALSE(json_field(r.body, "error.request_id").empty()) << r.body;
    EXPECT_FALSE(r.header("x-request-id").empty());
    http_client fresh{shopd.port()};
    EXPECT_EQ(fresh.request("GET", "/healthz").status, 200);
    auto inv = fresh.request("GET", "/api/v1/inventory/safe-1");
    EXPECT_EQ(json_field(inv.body, "available"), "100") << inv.body;
    EXPECT_EQ(json_field(inv.body, "reserved"), "0");
    auto sale = fresh.request("GET", "/api/v1/flash-sales/sale-b");
    EXPECT_EQ(json_field(sale.body, "remaining"), "50");
    EXPECT_EQ(json_field(sale.body, "price_cents"), "500");
  }

  http_result buy(const std::string& body, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> h{bearer(user)};
    h.insert(h.end(), extra.begin(), extra.end());
    return c().request("POST", "/api/v1/flash-sales/sale-b/purchase", body, h);
  }

  temp_dir dir;
  shopd_process shopd{dir.path(), {"--jwt-secret", secret}};
  std::unique_ptr<http_client> client;
  std::string admin;
  std::string user;
};

} // namespace

TEST_F(BadInput, test_malformed_json_and_wrong_types) {
  expect_error(buy("{\"quantity\":"), 400, "invalid_json");
  expect_error(buy("{\"quantity\":1}}"), 400, "invalid_json");
  expect_error(buy("not json"), 400, "invalid_json");
  expect_error(buy("[1]"), 422, "validation_failed");
  expect_error(buy(R"({"quantity":"1"})"), 422, "validation_failed");
  expect_error(buy(R"({"quantity":1.0})"), 422, "validation_failed");
  expect_error(buy(R"({"quantity":true})"), 422, "validation_failed");
  // Not a JSON number at all (the parser calls these a problem with a number,
  // as it does 2^64, which is JSON and out of range: 422 below).
  expect_error(buy(R"({"quantity":0x1})"), 400, "invalid_json");
  expect_error(buy(R"({"quantity":01})"), 400, "invalid_json");
  expect_error(buy(R"({"quantity":-Infinity})"), 400, "invalid_json");
}

TEST_F(BadInput, test_quantities_out_of_range) {
  for (auto q : {"0", "-1", "2147483648", "9223372036854775808", "-9223372036854775809",
                 "18446744073709551616"})
    expect_error(buy(std::string{R"({"quantity":)"} + q + "}"), 422, "validation_failed");
}

TEST_F(BadInput, test_fields_that_would_set_price_or_status_are_refused) {
  expect_error(buy(R"({"quantity":1,"price_cents":1})"), 422, "validation_failed");
  expect_error(buy(R"({"quantity":1,"status":"paid"})"), 422, "validation_failed");
  expect_error(c().request("POST", "/api/v1/users",
                           R"({"username":"mallory","password":"12345678","role":"admin"})"),
               422, "validation_failed");
  expect_error(c().request("POST", "/api/v1/products",
                           R"({"sku":"x1","name":"X","price_cents":1,"stock":1,"sold":5})",
                           {bearer(admin)}),
               422, "validation_failed");
  expect_error(c().request("POST", "/api/v1/products", R"({"sku":"x1","name":"X"})",
                           {bearer(admin)}),
               422, "validation_failed");
  expect_error(c().request("POST", "/api/v1/products/safe-1/restock", R"({"quantity":0})",
                           {bearer(admin)}),
               422, "validation_failed");
  // A second account under a taken name is a conflict, the first stays.
  expect_error(c().request("POST", "/api/v1/users",
                           R"({"username":"plain_0","password":"another-pw"})"),
               409, "conflict");
  EXPECT_FALSE(login(c(), "plain_0", "pw-plain_0").empty());
}

TEST_F(BadInput, test_unknown_route_and_method) {
  expect_error(c().request("GET", "/api/v1/nothing-here"), 404, "not_found");
  auto r = c().request("DELETE", "/api/v1/flash-sales/sale-b");
  expect_error(r, 405, "method_not_allowed");
  EXPECT_EQ(r.header("allow"), "GET, HEAD"); // HEAD is served by the GET route
  r = c().request("PUT", "/api/v1/products");
  expect_error(r, 405, "method_not_allowed");
  EXPECT_EQ(r.header("allow"), "POST, GET, HEAD");
  expect_error(c().request("GET", "/api/v1/products/bad%20id"), 404, "not_found");
  expect_error(c().request("GET", "/api/v1/orders/nope", {}, {bearer(user)}), 404, "not_found");
  // A path that is not UTF-8: the 404 names it, and must still be valid JSON.
  auto r2 = c().raw("GET /api/v1/caf\xC3/\xFF HTTP/1.1\r\nHost: x\r\n\r\n");
  expect_error(r2, 404, "not_found");
  EXPECT_EQ(r2.body.find('\xFF'), std::string::npos) << r2.body;
}

TEST_F(BadInput, test_a_route_matches_its_words_as_sent_and_a_percent_encoded_id_decoded) {
  auto plain = c().request("GET", "/api/v1/inventory/safe-1");
  ASSERT_EQ(plain.status, 200) << plain.body;
  for (auto path : {"/api/v1/inventory/safe%2D1", "/api/v1/inventory/%73afe%2d1",
                    "/api/v1/inventory/safe-1/"}) {
    auto r = c().request("GET", path);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    EXPECT_EQ(r.body, plain.body) << path;
  }
  // A route's own words are matched as sent, as a proxy filtering by path
  // prefix sees them: not encoded, and no empty segment before or among them.
  for (auto path : {"/api/v1/%69nventory/safe-1", "/%6Detrics", "//metrics", "//api/v1/inventory/safe-1",
                    "/api/v1//inventory/safe-1", "/api/v1/inventory//safe-1"})
    expect_error(c().request("GET", path), 404, "not_found");
  EXPECT_EQ(c().request("GET", "/metrics/").status, 200);
  // An encoded '/' stays inside its id, which then names nothing.
  expect_error(c().request("GET", "/api/v1/inventory%2Fsafe-1"), 404, "not_found");
  expect_error(c().request("GET", "/api/v1/products/safe-1%2Fx"), 404, "not_found");
  for (auto path : {"/api/v1/inventory/safe%2", "/api/v1/inventory/safe%zz1", "/api/v1/inventory/%"})
    expect_error(c().request("GET", path), 400, "bad_request");
}

TEST_F(BadInput, test_head_answers_a_get_route_without_its_body) {
  auto r = c().raw_half_close("HEAD /api/v1/inventory/safe-1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  auto get = c().request("GET", "/api/v1/inventory/safe-1");
  EXPECT_NE(r.find("Content-Length: " + std::to_string(get.body.size()) + "\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.find("\r\n\r\n") + 4, r.size()) << "no body after the headers: " << r;
  // HEAD on a route without GET is still 405 (headers only, too).
  auto post_only = c().raw_half_close(
    "HEAD /api/v1/flash-sales/sale-b/purchase HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(post_only.rfind("HTTP/1.1 405 ", 0), 0u) << post_only;
}

TEST_F(BadInput, test_a_sale_on_a_day_that_does_not_exist_is_refused) {
  for (auto day : {"2027-02-29", "2026-02-30", "2026-04-31"})
    expect_error(c().request("POST", "/api/v1/flash-sales",
                             std::string{R"({"id":"no-day","sku":"safe-1","price_cents":1,"quantity":1,"per_user_limit":1,"starts_at":")"}
                               + day + R"(T00:00:00Z","ends_at":"2100-01-01T00:00:00Z"})",
                             {bearer(admin)}),
                 422, "validation_failed");
  EXPECT_EQ(c().request("GET", "/api/v1/flash-sales/no-day").status, 404);
  // A sale that has ended before it is created could never sell anything.
  expect_error(c().request("POST", "/api/v1/flash-sales",
                           R"({"id":"no-day","sku":"safe-1","price_cents":1,"quantity":1,"per_user_limit":1,"starts_at":"2020-01-01T00:00:00Z","ends_at":"2020-01-02T00:00:00Z"})",
                           {bearer(admin)}),
               422, "validation_failed");
  EXPECT_EQ(c().request("GET", "/api/v1/flash-sales/no-day").status, 404);
  // An end past year 9999 once its offset is applied: it was stored with the
  // year clamped, ending before it started.
  expect_error(c().request("POST", "/api/v1/flash-sales",
                           R"({"id":"no-day","sku":"safe-1","price_cents":1,"quantity":1,"per_user_limit":1,"starts_at":"9999-06-01T00:00:00Z","ends_at":"9999-12-31T23:00:00-01:00"})",
                           {bearer(admin)}),
               422, "validation_failed");
  EXPECT_EQ(c().request("GET", "/api/v1/flash-sales/no-day").status, 404);
}

TEST_F(BadInput, test_body_and_header_limits) {
  std::string big(70 * 1024, 'x');
  expect_error(buy(R"({"quantity":1,"pad":")" + big + "\"}"), 413, "payload_too_large");
  expect_error(c().request("GET", "/healthz", {}, {"X-Big: " + std::string(9000, 'a')}), 431,
               "header_too_large");
  std::vector<std::string> many;
  for (int i = 0; i < 100; ++i)
    many.push_back("X-H" + std::to_string(i) + ": v");
  expect_error(c().request("GET", "/healthz", {}, many), 431, "header_too_large");
  auto garbage = c().raw("/ BLAH HTTP/9.9\r\n\r\n");
  expect_error(garbage, 400, "bad_request");
  expect_error(c().raw("BLAH / HTTP/1.1\r\nHost: t\r\n\r\n"), 501, "not_implemented");
}

// `--max-body-bytes` and `--max-header-bytes` set the limits: a node started
// with 2 KiB of each refuses what the defaults would take, and takes what
// fits.
TEST(Limits, test_the_body_and_header_limits_follow_their_options) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--max-body-bytes", "2048", "--max-header-bytes", "2048"}};
  ASSERT_TRUE(shopd.start());
  auto admin = shopd.admin_token();
  int made = 0;
  auto product = [&](size_t description_bytes) {
    http_client c{shopd.port()};
    return c.request("POST", "/api/v1/products",
                     R"({"sku":"lim-)" + std::to_string(++made) + R"(","name":"L","price_cents":1,"stock":1,"description":")"
                       + std::string(description_bytes, 'd') + "\"}",
                     {bearer(admin)});
  };
  auto big = product(3000);
  EXPECT_EQ(big.status, 413) << big.body;
  EXPECT_EQ(json_field(big.body, "error.code"), "payload_too_large");
  auto fits = product(1500);
  EXPECT_EQ(fits.status, 201) << fits.body;
  http_client c{shopd.port()};
  auto long_header = c.request("GET", "/healthz", {}, {"X-Pad: " + std::string(3000, 'a')});
  EXPECT_EQ(long_header.status, 431) << long_header.body;
  EXPECT_EQ(json_field(long_header.body, "error.code"), "header_too_large");
  http_client c2{shopd.port()};
  EXPECT_EQ(c2.request("GET", "/healthz", {}, {"X-Pad: " + std::string(1500, 'a')}).status, 200);
}

// A sale cannot promise more units than the SKU has: 409, and no sale.
TEST_F(BadInput, test_a_sale_larger_than_the_stock_is_refused) {
  auto r = c().request(
    "POST", "/api/v1/flash-sales",
    R"({"id":"too-big","sku":"safe-1","price_cents":400,"quantity":101,"per_user_limit":2,"starts_at":"2020-01-01T00:00:00Z","ends_at":"2100-01-01T00:00:00Z"})",
    {bearer(admin)});
  expect_error(r, 409, "insufficient_stock");
  expect_error(c().request("GET", "/api/v1/flash-sales/too-big"), 404, "not_found");
}

TEST_F(BadInput, test_missing_expired_forged_and_alg_none_tokens) {
  // Every 401 carries its challenge (RFC 9110 11.6.1); RFC 6750's error code
  // only when a token came and was refused.
  auto none_given = c().request("POST", "/api/v1/flash-sales/sale-b/purchase", "{}");
  expect_error(none_given, 401, "unauthorized");
  EXPECT_EQ(none_given.header("www-authenticate"), "Bearer");
  auto mine = c().request("GET", "/api/v1/users/me", {}, {bearer(user)});
  EXPECT_EQ(mine.header("www-authenticate"), "");
  auto sub = json_field(mine.body, "user_id");
  ASSERT_FALSE(sub.empty());
  edge::jwt_codec right{secret}, wrong{"some-other-secret"};
  auto expired = right.issue({sub, "plain_0", user_role::user, 1000});
  auto late = c().request("POST", "/api/v1/flash-sales/sale-b/purchase", "{}", {bearer(expired)});
  expect_error(late, 401, "unauthorized");
  EXPECT_EQ(late.header("www-authenticate"), R"(Bearer error="invalid_token")");
  // `--jwt-secret` is the key, used as given: a token signed with it passes.
  auto valid = right.issue({sub, "plain_0", user_role::user, 4'000'000'000});
  EXPECT_EQ(c().request("GET", "/api/v1/users/me", {}, {bearer(valid)}).status, 200);
  auto forged = wrong.issue({sub, "plain_0", user_role::admin, 4'000'000'000});
  expect_error(c().request("POST", "/api/v1/flash-sales/sale-b/purchase", "{}", {bearer(forged)}),
               401, "unauthorized");
  auto payload = base64url_encode(R"({"sub":")" + sub
                                  + R"(","name":"plain_0","role":"admin","exp":4000000000})");
  auto none = base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  expect_error(c().request("POST", "/api/v1/products/safe-1/restock", R"({"quantity":5})",
                           {bearer(none)}),
               401, "unauthorized");
  expect_error(c().request("POST", "/api/v1/flash-sales/sale-b/purchase", "{}",
                           {"Authorization: Basic YWRtaW46eA=="}),
               401, "unauthorized");
  // Two Authorization fields, whichever is valid: a proxy that reads the
  // other one would see another caller.
  expect_error(buy("{}", {bearer(admin)}), 400, "bad_request");
  expect_error(c().request("POST", "/api/v1/flash-sales/sale-b/purchase", "{}",
                           {"Authorization: Basic YWRtaW46eA==", bearer(user)}),
               400, "bad_request");
  // The scheme's name is case-insensitive (RFC 9110); the token is not.
  EXPECT_EQ(c().request("GET", "/api/v1/users/me", {}, {"Authorization: bearer " + user}).status, 200);
  EXPECT_EQ(c().request("GET", "/api/v1/users/me", {}, {"Authorization: BEARER " + user}).status, 200);
  // One space or more after it (RFC 6750 2.1), none is no token.
  EXPECT_EQ(c().request("GET", "/api/v1/users/me", {}, {"Authorization: Bearer   " + user}).status, 200);
  for (auto no_token : {"Authorization: Bearer", "Authorization: Bearer    ",
                        "Authorization: Bearer\tx"}) {
    auto r = c().request("GET", "/api/v1/users/me", {}, {no_token});
    expect_error(r, 401, "unauthorized");
    EXPECT_EQ(r.header("www-authenticate"), "Bearer") << no_token;
  }
  EXPECT_EQ(c().request("GET", "/api/v1/users/me", {}, {"Authorization: Bearerx" + user}).status, 401);
}

// /users/me is the account the token's `sub` names. A token also carries the
// name, the account entity's key; a token signed with this node's secret whose
// name is now another account's (a data dir reset or restored under the same
// secret, the name registered again) must not show that account.
TEST_F(BadInput, test_users_me_is_the_account_of_the_tokens_sub_not_of_its_name) {
  auto me = c().request("GET", "/api/v1/users/me", {}, {bearer(user)});
  ASSERT_EQ(me.status, 200);
  auto sub = json_field(me.body, "user_id");
  edge::jwt_codec right{secret};
  auto same = right.issue({sub, "plain_0", user_role::user, 4'000'000'000});
  EXPECT_EQ(json_field(c().request("GET", "/api/v1/users/me", {}, {bearer(same)}).body, "user_id"), sub);
  auto stranger = right.issue({"0123456789abcdef01234567", "plain_0", user_role::user, 4'000'000'000});
  auto r = c().request("GET", "/api/v1/users/me", {}, {bearer(stranger)});
  expect_error(r, 404, "not_found");
  EXPECT_EQ(r.body.find(sub), std::string::npos) << r.body;
}

TEST_F(BadInput, test_logins_of_unknown_and_impossible_names_are_refused_alike) {
  for (auto name : {"nobody_here", "NoSuchUpper", "a/b", "x"}) {
    auto r = c().request("POST", "/api/v1/auth/login",
                         std::string{R"({"username":")"} + name + R"(","password":"whatever-1"})");
    expect_error(r, 401, "unauthorized");
    EXPECT_EQ(json_field(r.body, "error.message"), "wrong username or password") << name;
  }
  auto wrong = c().request("POST", "/api/v1/auth/login", R"({"username":"plain_0","password":"nope-nope"})");
  expect_error(wrong, 401, "unauthorized");
  EXPECT_EQ(json_field(wrong.body, "error.message"), "wrong username or password");
}

TEST_F(BadInput, test_an_empty_or_overlong_idempotency_key_is_refused) {
  expect_error(buy("{}", {"Idempotency-Key: "}), 400, "bad_request");
  expect_error(buy("{}", {"Idempotency-Key: " + std::string(129, 'k')}), 400, "bad_request");
  expect_error(buy("{}", {"Idempotency-Key: has space"}), 400, "bad_request");
  expect_error(buy("{}", {"Idempotency-Key: one", "Idempotency-Key: two"}), 400, "bad_request");
}

TEST_F(BadInput, test_a_half_closed_client_still_gets_its_answers) {
  // Two pipelined requests, then the client closes its sending side.
  auto r = c().raw_half_close("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /api/v1/inventory/safe-1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(r.find("{\"status\":\"ok\"}"), std::string::npos) << r;
  EXPECT_NE(r.find("\"available\":100"), std::string::npos) << r;
}

TEST_F(BadInput, test_upgrade_requests_are_served_as_http1_and_connect_is_refused) {
  auto h2c = c().raw("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n");
  EXPECT_EQ(h2c.status, 200) << h2c.body;
  expect_error(c().raw("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 400,
               "bad_request");
}

TEST_F(BadInput, test_a_users_token_on_an_admin_route_is_forbidden) {
  expect_error(c().request("POST", "/api/v1/products/safe-1/restock", R"({"quantity":5})",
                           {bearer(user)}),
               403, "forbidden");
  expect_error(c().request("POST", "/api/v1/flash-sales",
                           R"({"id":"evil","sku":"safe-1","price_cents":1,"quantity":1,"per_user_limit":1,"starts_at":"2020-01-01T00:00:00Z","ends_at":"2100-01-01T00:00:00Z"})",
                           {bearer(user)}),
               403, "forbidden");
}

namespace {

/// Valid requests of every kind a user (not an admin) can send, as raw bytes.
std::vector<std::string> seed_requests(const std::string& user) {
  auto req = [&](const std::string& method, const std::string& path, const std::string& body,
                 bool auth, const std::string& extra = {}) {
    std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (auth)
      r += "Authorization: Bearer " + user + "\r\n";
    r += extra;
    if (!body.empty())
      r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size())
           + "\r\n";
    return r + "\r\n" + body;
  };
  return {
    req("GET", "/healthz", {}, false),
    req("GET", "/readyz", {}, false),
    req("POST", "/api/v1/users", R"({"username":"new_user","password":"password-1"})", false),
    req("POST", "/api/v1/auth/login", R"({"username":"plain_0","password":"pw-plain_0"})", false),
    req("GET", "/api/v1/users/me", {}, true),
    req("GET", "/api/v1/products/safe-1", {}, false),
    req("GET", "/api/v1/products?limit=5", {}, false),
    req("GET", "/api/v1/inventory/safe-1", {}, false),
    req("GET", "/api/v1/flash-sales/sale-b", {}, false),
    req("POST", "/api/v1/flash-sales/sale-b/purchase", R"({"quantity":1})", true,
        "Idempotency-Key: mutated-1\r\n"),
    req("POST", "/api/v1/orders", R"({"items":[{"sku":"safe-1","quantity":1}]})", true),
    req("POST", "/api/v1/orders", R"({"from_cart":true})", true),
    req("GET", "/api/v1/orders/0123456789abcdef01234567", {}, true),
    req("POST", "/api/v1/orders/0123456789abcdef01234567/cancel", {}, true),
    req("POST", "/api/v1/orders/0123456789abcdef01234567/pay", R"({"method":"card"})", true),
    req("GET", "/api/v1/cart", {}, true),
    req("PUT", "/api/v1/cart/items/safe-1", R"({"quantity":2})", true),
    req("DELETE", "/api/v1/cart/items/safe-1", {}, true),
    req("POST", "/api/v1/payments/callback",
        R"({"payment_id":"p1","order_id":"o1","status":"succeeded","amount_cents":500})", false,
        "X-Signature: 00ff\r\n"),
    // Admin routes with a user's token: refused, however mutated.
    req("POST", "/api/v1/products/safe-1/restock", R"({"quantity":5})", true),
    req("PATCH", "/api/v1/products/safe-1", R"({"price_cents":1})", true),
    req("POST", "/api/v1/flash-sales",
        R"({"id":"evil","sku":"safe-1","price_cents":1,"quantity":1,"per_user_limit":1,"starts_at":"2020-01-01T00:00:00Z","ends_at":"2100-01-01T00:00:00Z"})",
        true),
  };
}

/// A few random edits of a request: flipped, deleted, inserted or repeated
/// bytes, a JSON value swapped for an awkward one, a junk header, another
/// request spliced in, another method, a strange path.
std::string mutate(std::string r, const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  static const std::vector<std::string> values{
    "0", "-1", "2147483648", "9223372036854775808", "-9223372036854775809", "1e400", "1.5",
    "null", "true", "\"\"", "[]", "{}", "\"\\u0000\"", "\"\\ud800\"", "\xff\xfe",
    std::string(3000, '['), "\"" + std::string(70'000, 'x') + "\"", "18446744073709551616", "-0"};
  static const std::vector<std::string> headers{
    "Content-Length: -1\r\n", "Content-Length: 99999999999999999999\r\n",
    "Transfer-Encoding: chunked\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n",
    "Authorization: Bearer a.b.c\r\n", "Authorization: Basic Zm9vOmJhcg==\r\n",
    "X-Request-Id: " + std::string(300, 'r') + "\r\n", "Idempotency-Key: \x01\r\n",
    "traceparent: 00-" + std::string(32, '0') + "-" + std::string(16, '0') + "-01\r\n",
    "Expect: 100-continue\r\n", "Upgrade: h2c\r\nConnection: Upgrade\r\n",
    std::string("X: \x00\x7f\x80\r\n", 9), ": no-name\r\n", "Content-Type: text/plain\r\n"};
  static const std::vector<std::string> methods{"GET",     "POST",  "PUT",   "DELETE", "PATCH",
                                                "OPTIONS", "TRACE", "get",   "CONNECT",
                                                std::string(40, 'X')};
  static const std::vector<std::string> paths{"/%", "//", "/api/v1/../", "/%2e%2e/", "?" "?",
                                              "/api/v1/orders/" + std::string(100, 'z'), "#x",
                                              "/api/v1/flash-sales/%00/"};
  auto below = [&](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
  for (size_t edits = 1 + below(4); edits > 0; --edits) {
    switch (below(9)) {
      case 0:
        for (size_t i = 1 + below(8); i > 0 && !r.empty(); --i)
          r[below(r.size())] = static_cast<char>(rng());
        break;
      case 1:
        if (!r.empty())
          r.erase(below(r.size()), 1 + below(32));
        break;
      case 2: {
        std::string junk;
        for (size_t i = 1 + below(16); i > 0; --i)
          junk.push_back(static_cast<char>(rng()));
        r.insert(below(r.size() + 1), junk);
        break;
      }
      case 3:
        if (!r.empty()) {
          auto at = below(r.size());
          r.insert(at, r.substr(at, 1 + below(64)));
        }
        break;
      case 4: { // the last JSON value of the body
        auto colon = r.rfind(':');
        auto body = r.find("\r\n\r\n");
        if (colon != std::string::npos && body != std::string::npos && colon > body) {
          auto end = r.find_first_of(",}]", colon + 1);
          r.replace(colon + 1, (end == std::string::npos ? r.size() : end) - colon - 1,
                    values[below(values.size())]);
        }
        break;
      }
      case 5:
        if (auto eol = r.find("\r\n"); eol != std::string::npos)
          r.insert(eol + 2, headers[below(headers.size())]);
        break;
      case 6: {
        auto& other = seeds[below(seeds.size())];
        r = r.substr(0, below(r.size() + 1)) + other.substr(below(other.size()));
        break;
      }
      case 7:
        if (auto sp = r.find(' '); sp != std::string::npos)
          r.replace(0, sp, methods[below(methods.size())]);
        break;
      case 8:
        if (auto sp = r.find(' '); sp != std::string::npos)
          r.insert(sp + 1, paths[below(paths.size())]);
        break;
    }
  }
  return r;
}

} // namespace

TEST_F(BadInput, test_thousands_of_mutated_requests_get_answers_and_break_no_rule) {
  // Seeded, so a failure can be replayed: SHOP_MUTATION_SEED picks another run.
  uint64_t seed = 20261122;
  if (auto* s = std::getenv("SHOP_MUTATION_SEED"))
    seed = std::strtoull(s, nullptr, 10);
  SCOPED_TRACE("SHOP_MUTATION_SEED=" + std::to_string(seed));
  std::mt19937_64 rng{seed};
  auto seeds = seed_requests(user);
  // Unmutated, every seed is a request the node understands: else the
  // mutations would only ever test the 400s and 404s of a stale seed.
  for (auto& s : seeds) {
    auto r = c().raw_half_close(s);
    auto status = r.rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(r.c_str() + 9) : 0;
    EXPECT_TRUE(status > 0 && status < 500 && status != 400 && status != 405
                && (status != 404 || s.find("0123456789abcdef") != std::string::npos))
      << s << "\n-> " << r.substr(0, 300);
  }
  std::map<int, size_t> statuses; // of the first answer on each connection
  for (int n = 0; n < 10'000; ++n) {
    // Now and then several requests on one connection, pipelined.
    std::string bytes;
    for (size_t k = rng() % 10 < 3 ? 2 + rng() % 4 : 1; k > 0; --k)
      bytes += mutate(seeds[rng() % seeds.size()], seeds, rng);
    auto out = c().raw_half_close(bytes);
    SCOPED_TRACE("request " + std::to_string(n) + ": " + bytes.substr(0, 300));
    // A 500 is a bug; a 503 would mean the node is struggling with one client.
    // (501 and 505 refuse a method, a transfer coding or an HTTP version a
    // mutation made.)
    for (auto at = out.find("HTTP/1.1 5"); at != std::string::npos;
         at = out.find("HTTP/1.1 5", at + 1))
      ASSERT_TRUE(out.compare(at, 12, "HTTP/1.1 501") == 0 || out.compare(at, 12, "HTTP/1.1 505") == 0)
        << out.substr(0, 500);
    if (out.empty())
      continue; // cut off before a request was complete: closed without an answer
    ASSERT_EQ(out.rfind("HTTP/1.1 ", 0), 0u) << out.substr(0, 300);
    auto status = std::atoi(out.c_str() + 9);
    ++statuses[status];
    auto head_end = out.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos) << out.substr(0, 300);
    // The first answer's body, unless it answers a HEAD (no body) or is an interim 100.
    if (status >= 400 && bytes.rfind("HEAD ", 0) != 0) {
      auto len_at = out.find("Content-Length: ");
      ASSERT_LT(len_at, head_end) << out.substr(0, 300);
      auto body = out.substr(head_end + 4, std::strtoul(out.c_str() + len_at + 16, nullptr, 10));
      EXPECT_FALSE(json_field(body, "error.code").empty()) << body;
      EXPECT_FALSE(json_field(body, "error.message").empty()) << body;
      EXPECT_FALSE(json_field(body, "error.request_id").empty()) << body;
    }
    if (n % 500 == 0) {
      http_client fresh{shopd.port()};
      ASSERT_EQ(fresh.request("GET", "/healthz").status, 200) << "the node is down";
    }
  }
  size_t answered = 0;
  std::string spread;
  for (auto [status, count] : statuses) {
    answered += count;
    spread += " " + std::to_string(status) + ":" + std::to_string(count);
  }
  std::cout << "first answers by status:" << spread << "\n";
  EXPECT_GT(answered, 8000u) << spread;
  EXPECT_GT(statuses[200] + statuses[201], 100u) << "some mutations still make valid requests:" << spread;
  // What a user may do, mutated requests may do too, and no more: stock is
  // neither made nor lost, the sale's limit holds, prices are the admin's.
  http_client fresh{shopd.port()};
  auto inv = fresh.request("GET", "/api/v1/inventory/safe-1");
  auto units = [&](const char* f) { return std::stoll(json_field(inv.body, f)); };
  EXPECT_EQ(units("available") + units("reserved") + units("sold"), 100) << inv.body;
  auto sale = fresh.request("GET", "/api/v1/flash-sales/sale-b");
  auto remaining = std::stoll(json_field(sale.body, "remaining"));
  EXPECT_GE(remaining, 48) << sale.body; // one user, per_user_limit 2
  EXPECT_EQ(json_field(sale.body, "price_cents"), "500");
  EXPECT_EQ(json_field(fresh.request("GET", "/api/v1/products/safe-1").body, "price_cents"), "1000");
  EXPECT_EQ(fresh.request("GET", "/api/v1/flash-sales/evil").status, 404);
}
