// The storefront over real HTTP against a real shopd with a real RocksDB
// directory: catalog paging and search, carts, multi-item checkout
// (all-or-nothing, idempotent), payment with the signed gateway callback and
// the sandbox gateway, expiry of unpaid checkout orders.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include <simdjson.h>

#include "protocols/crypto.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* payment_secret = "storefront-test-payment-secret";

void create_product(http_client& c, const std::string& admin, const std::string& sku,
                    const std::string& name, int64_t price, int64_t stock) {
  auto r = c.request("POST", "/api/v1/products",
                     R"({"sku":")" + sku + R"(","name":")" + name + R"(","price_cents":)"
                       + std::to_string(price) + R"(,"stock":)" + std::to_string(stock) + "}",
                     {bearer(admin)});
  ASSERT_EQ(r.status, 201) << r.body;
}

std::string user_token(http_client& c, const std::string& name) {
  auto r = c.request("POST", "/api/v1/users",
                     R"({"username":")" + name + R"(","password":"password-1"})");
  EXPECT_EQ(r.status, 201) << r.body;
  return login(c, name, "password-1");
}

/// Crashes `sku` past its restart budget (over 5 crashes within 10 s) until
/// its commands get 503: quarantined for 1 s at first, then 2 s, 4 s ... for
/// each crash after a quarantine. Each crash is sent after the last one's
/// restart: one sent to the dying activation is none. `crashes` counts the
/// crashes of this node so far.
bool quarantine(http_client& c, const std::string& admin, const std::string& sku,
                double& crashes) {
  while (c.request("GET", "/api/v1/products/" + sku).status != 503) {
    if (c.request("POST", "/api/v1/admin/fault-injection/crash",
                  R"({"kind":"sku","id":")" + sku + R"("})", {bearer(admin)})
          .status
        != 202)
      return false;
    ++crashes;
    if (!eventually(5s, [&] { return metric(c, "shop_entity_crashes_total") == crashes; })
        || crashes > 20)
      return false;
  }
  return true;
}

/// `{"items":[{"sku":..,"quantity":..},...]}`
std::string items_body(const std::vector<std::pair<std::string, int>>& lines) {
  std::string body = R"({"items":[)";
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0)
      body += ',';
    body += R"({"sku":")" + lines[i].first + R"(","quantity":)" + std::to_string(lines[i].second)
            + "}";
  }
  return body + "]}";
}

http_result place_order(http_client& c, const std::string& token, const std::string& body,
                        const std::string& key = {}) {
  std::vector<std::string> headers{bearer(token)};
  if (!key.empty())
    headers.push_back("Idempotency-Key: " + key);
  return c.request("POST", "/api/v1/orders", body, headers);
}

/// The values of `field` of each element of the top-level array `array`.
std::vector<std::string> column(const std::string& json, const std::string& array,
                                const std::string& field) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  EXPECT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  std::vector<std::string> out;
  simdjson::dom::array items;
  if (doc[array].get(items) != simdjson::SUCCESS)
    return out;
  for (auto item : items) {
    simdjson::dom::element v;
    if (item[field].get(v) != simdjson::SUCCESS)
      out.emplace_back();
    else if (v.is_string())
      out.emplace_back(std::string{v.get_string().value()});
    else
      out.emplace_back(simdjson::minify(v));
  }
  return out;
}

std::string signature(const std::string& body) {
  return "X-Signature: " + shop::to_hex(shop::hmac_sha256(payment_secret, body));
}

std::string callback_body(const std::string& payment_id, const std::string& order_id,
                          const std::string& status, int64_t amount) {
  return R"({"payment_id":")" + payment_id + R"(","order_id":")" + order_id + R"(","status":")"
         + status + R"(","amount_cents":)" + std::to_string(amount) + "}";
}

} // namespace

TEST(Catalog, test_pages_cover_every_product_once_and_search_matches_name_words) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "tee-blue", "Blue Tee", 1500, 5);
  create_product(c, admin, "tee-red", "Red Tee", 1500, 5);
  create_product(c, admin, "shirt-blue", "Blue Oxford Shirt", 4000, 2);
  create_product(c, admin, "mug", "Coffee Mug", 900, 3);
  create_product(c, admin, "cap", "Baseball Cap", 1200, 0);
  create_product(c, admin, "glace", "Café Crème Glacée", 700, 4);

  std::multiset<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto r = c.request("GET", "/api/v1/products?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(r.status, 200) << r.body;
    auto skus = column(r.body, "items", "sku");
    EXPECT_LE(skus.size(), 2u);
    seen.insert(skus.begin(), skus.end());
    cursor = json_field(r.body, "next_cursor");
    if (cursor == "null") // the last page
      break;
  }
  EXPECT_EQ(seen, (std::multiset<std::string>{"cap", "glace", "mug", "shirt-blue", "tee-blue",
                                               "tee-red"}));

  // Every query word must begin a word of the name, in any case.
  auto search = [&](const std::string& q) {
    auto r = c.request("GET", "/api/v1/products?q=" + q);
    EXPECT_EQ(r.status, 200) << r.body;
    auto skus = column(r.body, "items", "sku");
    return std::set<std::string>(skus.begin(), skus.end());
  };
  EXPECT_EQ(search("blue"), (std::set<std::string>{"shirt-blue", "tee-blue"}));
  EXPECT_EQ(search("BLU+sh"), (std::set<std::string>{"shirt-blue"}));
  EXPECT_EQ(search("tee%20red"), (std::set<std::string>{"tee-red"}));
  EXPECT_EQ(search("lamp"), (std::set<std::string>{}));
  // A name loses the white space at its ends (here two spaces and an
  // ideographic one), as stored and shown.
  create_product(c, admin, "lamp", "  Desk Lamp\\u3000", 2500, 1);
  EXPECT_EQ(json_field(c.request("GET", "/api/v1/products/lamp").body, "name"), "Desk Lamp");
  EXPECT_EQ(search("lamp"), (std::set<std::string>{"lamp"}));
  // In every script: "CAFÉ CRÈ" and "glacée" find "Café Crème Glacée".
  EXPECT_EQ(search("CAF%C3%89+CR%C3%88"), (std::set<std::string>{"glace"}));
  EXPECT_EQ(search("glac%C3%A9e"), (std::set<std::string>{"glace"}));
  // A parameter's name is form-decoded like its value: `%71` is `q`.
  EXPECT_EQ(column(c.request("GET", "/api/v1/products?%71=lamp").body, "items", "sku"),
            (std::vector<std::string>{"lamp"}));
  // Listed products carry live stock.
  auto r = c.request("GET", "/api/v1/products?q=mug");
  EXPECT_EQ(column(r.body, "items", "available"), (std::vector<std::string>{"3"}));

  for (auto bad : {"/api/v1/products?limit=0", "/api/v1/products?limit=101",
                   "/api/v1/products?limit=x", "/api/v1/products?sort=price",
                   "/api/v1/products?cursor=zz", "/api/v1/products?q=a&q=b",
                   "/api/v1/products?q=a&%71=b"}) {
    auto res = c.request("GET", bad);
    EXPECT_EQ(res.status, 422) << bad << " " << res.body;
    EXPECT_EQ(json_field(res.body, "error.code"), "validation_failed") << bad;
  }
  for (auto bad : {"/api/v1/products?q=%zz", "/api/v1/products?%zz=1", "/api/v1/products?l%6=1"}) {
    auto res = c.request("GET", bad);
    EXPECT_EQ(res.status, 400) << bad << " " << res.body;
    EXPECT_EQ(json_field(res.body, "error.code"), "bad_request") << bad;
  }

  // A search whose matches fill its page exactly says it is the last
  // (next_cursor null), though products that do not match come after: a
  // "load more" must not fetch an empty page. (The first product in storage
  // order is renamed so that it alone matches.)
  auto all = column(c.request("GET", "/api/v1/products?limit=100").body, "items", "sku");
  ASSERT_EQ(all.size(), 7u);
  auto renamed = c.request("PATCH", "/api/v1/products/" + all[0], R"({"name":"Zebra Stripes"})",
                           {bearer(admin)});
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  auto only = c.request("GET", "/api/v1/products?q=zebra&limit=1");
  EXPECT_EQ(column(only.body, "items", "sku"), (std::vector<std::string>{all[0]}));
  EXPECT_EQ(json_field(only.body, "next_cursor"), "null") << only.body;
  // Without a query a full page goes on as before.
  auto first = c.request("GET", "/api/v1/products?limit=6");
  EXPECT_EQ(column(first.body, "items", "sku").size(), 6u);
  EXPECT_NE(json_field(first.body, "next_cursor"), "null") << first.body;
}

// A SKU in trouble (here: crashed past its restart budget, so quarantined)
// cannot tell its live stock. The catalog still lists its product, as stored,
// with its stock counts null; the other products keep their live stock.
TEST(Catalog, test_a_page_lists_a_quarantined_skus_product_with_its_stock_unknown) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--fault-injection"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "lamp-a", "Desk Lamp", 2500, 4);
  create_product(c, admin, "lamp-b", "Floor Lamp", 7900, 2);
  create_product(c, admin, "lamp-c", "Table Lamp", 3100, 6);
  // The page is read while the SKU is quarantined: 503 before and after it.
  double crashes = 0;
  http_result r;
  bool during = false;
  for (int attempt = 0; attempt < 3 && !during; ++attempt) {
    ASSERT_TRUE(quarantine(c, admin, "lamp-b", crashes));
    r = c.request("GET", "/api/v1/products?q=lamp");
    during = c.request("GET", "/api/v1/products/lamp-b").status == 503;
  }
  ASSERT_TRUE(during);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(column(r.body, "items", "sku").size(), 3u) << r.body;
  // sku -> field -> value (the page is in storage order, not by name).
  std::map<std::string, std::map<std::string, std::string>> items;
  auto skus = column(r.body, "items", "sku");
  for (auto field : {"name", "price_cents", "available", "reserved", "sold"}) {
    auto values = column(r.body, "items", field);
    for (size_t i = 0; i < skus.size(); ++i)
      items[skus[i]][field] = values[i];
  }
  EXPECT_EQ(items["lamp-a"]["available"], "4");
  EXPECT_EQ(items["lamp-c"]["available"], "6");
  EXPECT_EQ(items["lamp-c"]["sold"], "0");
  EXPECT_EQ(items["lamp-b"]["name"], "Floor Lamp");
  EXPECT_EQ(items["lamp-b"]["price_cents"], "7900");
  EXPECT_EQ(items["lamp-b"]["available"], "null");
  EXPECT_EQ(items["lamp-b"]["reserved"], "null");
  EXPECT_EQ(items["lamp-b"]["sold"], "null");
  // Out of quarantine it restarts from storage and reports its stock again.
  ASSERT_TRUE(eventually(10s, [&] {
    auto again = c.request("GET", "/api/v1/products?q=floor");
    return again.status == 200 && column(again.body, "items", "available") == std::vector<std::string>{"2"};
  }));
}

// A cart is an entity like the others: crashed (fault injection), it starts
// again from what it stored, its lines and their quantities.
TEST(Cart, test_a_crashed_cart_starts_again_with_its_lines) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--fault-injection"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "tee", "Tee", 1500, 5);
  auto alice = user_token(c, "alice");
  auto me = json_field(c.request("GET", "/api/v1/users/me", {}, {bearer(alice)}).body, "user_id");
  ASSERT_FALSE(me.empty());
  ASSERT_EQ(c.request("PUT", "/api/v1/cart/items/tee", R"({"quantity":3})", {bearer(alice)}).status,
            200);
  auto crashed = c.request("POST", "/api/v1/admin/fault-injection/crash",
                           R"({"kind":"cart","id":")" + me + R"("})", {bearer(admin)});
  ASSERT_EQ(crashed.status, 202) << crashed.body;
  ASSERT_TRUE(eventually(5s, [&] { return metric(c, "shop_entity_crashes_total") == 1; }));
  http_result cart;
  ASSERT_TRUE(eventually(5s, [&] {
    cart = c.request("GET", "/api/v1/cart", {}, {bearer(alice)});
    return cart.status == 200; // (a request meeting the restart may get 503)
  })) << cart.body;
  EXPECT_EQ(column(cart.body, "items", "sku"), (std::vector<std::string>{"tee"}));
  EXPECT_EQ(column(cart.body, "items", "quantity"), (std::vector<std::string>{"3"}));
}

// A SKU in trouble does not take down the carts that hold it: they show the
// price it stored, and changes to their lines are stored and answered.
TEST(Cart, test_a_cart_holding_a_quarantined_sku_is_still_shown_and_changed) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--fault-injection"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "tee", "Tee", 1500, 5);
  create_product(c, admin, "mug", "Mug", 900, 3);
  auto alice = user_token(c, "alice");
  auto put = [&](const std::string& sku, int quantity) {
    return c.request("PUT", "/api/v1/cart/items/" + sku,
                     R"({"quantity":)" + std::to_string(quantity) + "}", {bearer(alice)});
  };
  ASSERT_EQ(put("tee", 1).status, 200);
  ASSERT_EQ(put("mug", 1).status, 200);
  // While the mug's SKU is quarantined (tried again if the quarantine ended
  // before the last request): another line changes, the cart is read, and
  // the mug's line is taken out and put back (a new line of a product that
  // exists as stored).
  double crashes = 0;
  http_result changed, read, removed, added;
  bool during = false;
  for (int attempt = 0; attempt < 3 && !during; ++attempt) {
    ASSERT_TRUE(quarantine(c, admin, "mug", crashes));
    changed = put("tee", 2 + attempt);
    read = c.request("GET", "/api/v1/cart", {}, {bearer(alice)});
    removed = put("mug", 0);
    added = put("mug", 2);
    during = c.request("GET", "/api/v1/products/mug").status == 503;
  }
  ASSERT_TRUE(during);
  for (auto* r : {&changed, &read, &added}) {
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(column(r->body, "items", "sku"), (std::vector<std::string>{"mug", "tee"}));
    EXPECT_EQ(column(r->body, "items", "price_cents"), (std::vector<std::string>{"900", "1500"}));
  }
  ASSERT_EQ(removed.status, 200) << removed.body;
  EXPECT_EQ(column(removed.body, "items", "sku"), (std::vector<std::string>{"tee"}));
  auto tee = std::stoi(column(added.body, "items", "quantity")[1]);
  EXPECT_EQ(json_field(added.body, "total_cents"), std::to_string(2 * 900 + tee * 1500));
  // A product that does not exist is still refused.
  EXPECT_EQ(put("lamp", 1).status, 404);
}

TEST(Cart, test_lines_are_priced_now_updated_removed_and_cleared) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "tee", "Tee", 1500, 5);
  create_product(c, admin, "mug", "Mug", 900, 3);
  auto alice = user_token(c, "alice");
  auto bob = user_token(c, "bob");

  auto put = [&](const std::string& token, const std::string& sku, const std::string& body) {
    return c.request("PUT", "/api/v1/cart/items/" + sku, body, {bearer(token)});
  };
  EXPECT_EQ(put(alice, "tee", R"({"quantity":2})").status, 200);
  auto r = put(alice, "mug", R"({"quantity":1})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(column(r.body, "items", "sku"), (std::vector<std::string>{"mug", "tee"}));
  EXPECT_EQ(column(r.body, "items", "line_total_cents"), (std::vector<std::string>{"900", "3000"}));
  EXPECT_EQ(json_field(r.body, "total_cents"), "3900");

  // A cart shows today's price.
  ASSERT_EQ(c.request("PATCH", "/api/v1/products/tee", R"({"price_cents":1000})", {bearer(admin)})
              .status,
            200);
  r = c.request("GET", "/api/v1/cart", {}, {bearer(alice)});
  EXPECT_EQ(json_field(r.body, "total_cents"), "2900") << r.body;

  // Refused without a change: unknown product, bad quantities, other fields.
  EXPECT_EQ(put(alice, "lamp", R"({"quantity":1})").status, 404);
  EXPECT_EQ(put(alice, "tee", R"({"quantity":1000})").status, 422);
  EXPECT_EQ(put(alice, "tee", R"({"quantity":-1})").status, 422);
  EXPECT_EQ(put(alice, "tee", R"({"quantity":1,"price_cents":1})").status, 422);
  EXPECT_EQ(put(alice, "tee", R"({"quantity":)").status, 400);
  EXPECT_EQ(c.request("GET", "/api/v1/cart").status, 401);
  r = c.request("GET", "/api/v1/cart", {}, {bearer(alice)});
  EXPECT_EQ(json_field(r.body, "total_cents"), "2900") << r.body;

  // Carts are per user.
  r = c.request("GET", "/api/v1/cart", {}, {bearer(bob)});
  EXPECT_EQ(json_field(r.body, "total_cents"), "0") << r.body;

  // Quantity 0 and DELETE remove a line; DELETE /cart empties it.
  r = put(alice, "tee", R"({"quantity":0})");
  EXPECT_EQ(column(r.body, "items", "sku"), (std::vector<std::string>{"mug"}));
  r = c.request("DELETE", "/api/v1/cart/items/mug", {}, {bearer(alice)});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(column(r.body, "items", "sku"), (std::vector<std::string>{}));
  put(alice, "tee", R"({"quantity":3})");
  r = c.request("DELETE", "/api/v1/cart", {}, {bearer(alice)});
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());

  // The cart is durable.
  put(alice, "mug", R"({"quantity":2})");
  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  r = c2.request("GET", "/api/v1/cart", {}, {bearer(alice)});
  EXPECT_EQ(column(r.body, "items", "quantity"), (std::vector<std::string>{"2"})) << r.body;
}

TEST(Checkout, test_all_or_nothing_reservation_and_a_cancel_releases_every_line) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "a", "Item A", 1000, 5);
  create_product(c, admin, "b", "Item B", 250, 1);
  auto alice = user_token(c, "alice");

  // B has one unit: nothing is reserved, and the refusal names B.
  auto r = place_order(c, alice, items_body({{"a", 2}, {"b", 2}}));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(json_field(r.body, "error.code"), "insufficient_stock");
  EXPECT_NE(json_field(r.body, "error.message").find("'b'"), std::string::npos);
  EXPECT_EQ(get_inventory(c, "a"), (inventory{5, 0, 0}));
  EXPECT_EQ(get_inventory(c, "b"), (inventory{1, 0, 0}));

  // An unknown SKU fails the whole order too.
  r = place_order(c, alice, items_body({{"a", 1}, {"nope", 1}}));
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(get_inventory(c, "a"), (inventory{5, 0, 0}));

  r = place_order(c, alice, items_body({{"b", 1}, {"a", 2}}));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(json_field(r.body, "status"), "pending_payment");
  EXPECT_EQ(json_field(r.body, "total_cents"), "2250");
  EXPECT_EQ(column(r.body, "items", "price_cents"), (std::vector<std::string>{"1000", "250"}));
  auto order_id = json_field(r.body, "order_id");
  EXPECT_EQ(get_inventory(c, "a"), (inventory{3, 2, 0}));
  EXPECT_EQ(get_inventory(c, "b"), (inventory{0, 1, 0}));
  r = c.request("GET", "/api/v1/orders/" + order_id, {}, {bearer(alice)});
  EXPECT_EQ(r.status, 200);

  // Cancel releases every line, once.
  r = c.request("POST", "/api/v1/orders/" + order_id + "/cancel", {}, {bearer(alice)});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "status"), "cancelled");
  EXPECT_EQ(c.request("POST", "/api/v1/orders/" + order_id + "/cancel", {}, {bearer(alice)}).status,
            409);
  EXPECT_TRUE(eventually(3s, [&] {
    return get_inventory(c, "a") == inventory{5, 0, 0} && get_inventory(c, "b") == inventory{1, 0, 0};
  })) << get_inventory(c, "a") << get_inventory(c, "b");

  // Bad bodies: refused, nothing reserved.
  for (auto bad : {R"({})", R"({"items":[]})", R"({"items":[{"sku":"a"}]})",
                   R"({"items":[{"sku":"a","quantity":0}]})",
                   R"({"items":[{"sku":"a","quantity":1},{"sku":"a","quantity":1}]})",
                   R"({"items":[{"sku":"a","quantity":1,"price_cents":1}]})",
                   R"({"items":[{"sku":"a","quantity":1}],"from_cart":true})",
                   R"({"items":[{"sku":"a","quantity":1}],"coupon":"FREE"})",
                   R"({"items":[{"sku":"a","quantity":1}],"status":"paid"})"}) {
    auto res = place_order(c, alice, bad);
    EXPECT_EQ(res.status, 422) << bad << " " << res.body;
  }
  EXPECT_EQ(place_order(c, alice, R"({"items":[)").status, 400);
  EXPECT_EQ(get_inventory(c, "a"), (inventory{5, 0, 0}));
}

TEST(Checkout, test_retries_with_one_idempotency_key_make_one_order_also_after_restart) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "a", "Item A", 1000, 100);
  create_product(c, admin, "b", "Item B", 500, 100);
  auto alice = user_token(c, "alice");
  auto body = items_body({{"a", 3}, {"b", 1}});

  // Eight concurrent copies of one request: one order, one reservation.
  std::mutex m;
  std::set<std::string> bodies;
  std::atomic<int> created{0};
  parallel_for(shopd.port(), 8, 8, [&](http_client& cc, size_t) {
    auto r = place_order(cc, alice, body, "checkout-1");
    if (r.status == 201)
      ++created;
    std::lock_guard<std::mutex> g{m};
    bodies.insert(r.body);
  });
  EXPECT_EQ(created.load(), 8);
  ASSERT_EQ(bodies.size(), 1u) << *bodies.begin();
  auto first = *bodies.begin();
  EXPECT_EQ(get_inventory(c, "a"), (inventory{97, 3, 0}));
  EXPECT_EQ(get_inventory(c, "b"), (inventory{99, 1, 0}));

  // The same key for another request is refused, also for the cart's lines.
  auto r = place_order(c, alice, items_body({{"a", 1}}), "checkout-1");
  EXPECT_EQ(r.status, 409) << r.body;
  r = place_order(c, alice, R"({"from_cart":true})", "checkout-1");
  EXPECT_EQ(r.status, 409) << r.body;

  // After a crash and restart: the same answer, no new reservation.
  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  r = place_order(c2, alice, body, "checkout-1");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, first);
  EXPECT_EQ(get_inventory(c2, "a"), (inventory{97, 3, 0}));
  // A new key is a new order.
  r = place_order(c2, alice, body, "checkout-2");
  EXPECT_EQ(r.status, 201);
  EXPECT_NE(json_field(r.body, "order_id"), json_field(first, "order_id"));
  EXPECT_EQ(get_inventory(c2, "a"), (inventory{94, 6, 0}));
}

TEST(Checkout, test_from_cart_orders_the_cart_and_empties_it) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "a", "Item A", 1000, 10);
  create_product(c, admin, "b", "Item B", 500, 10);
  auto alice = user_token(c, "alice");

  auto r = place_order(c, alice, R"({"from_cart":true})");
  EXPECT_EQ(r.status, 422) << r.body; // the cart is empty
  c.request("PUT", "/api/v1/cart/items/a", R"({"quantity":2})", {bearer(alice)});
  c.request("PUT", "/api/v1/cart/items/b", R"({"quantity":4})", {bearer(alice)});
  r = place_order(c, alice, R"({"from_cart":true})", "cart-order-1");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(json_field(r.body, "total_cents"), "4000");
  // A retry gets the order (the cart may be empty by then); the same lines
  // given as a list with that key are another request.
  auto again = place_order(c, alice, R"({"from_cart":true})", "cart-order-1");
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, r.body);
  auto listed = place_order(c, alice, items_body({{"a", 2}, {"b", 4}}), "cart-order-1");
  EXPECT_EQ(listed.status, 409) << listed.body;
  EXPECT_EQ(column(r.body, "items", "sku"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(column(r.body, "items", "quantity"), (std::vector<std::string>{"2", "4"}));
  EXPECT_EQ(get_inventory(c, "b"), (inventory{6, 4, 0}));
  EXPECT_TRUE(eventually(3s, [&] {
    return json_field(c.request("GET", "/api/v1/cart", {}, {bearer(alice)}).body, "total_cents")
           == "0";
  }));
}

// A double click on "Place order", or a client that makes a new key for each
// attempt: checkouts of one cart that run at once order its lines once, as if
// one came after the other (the later ones find the cart empty). A checkout
// that is refused leaves the lines to the next.
TEST(Checkout, test_concurrent_checkouts_of_one_cart_order_its_lines_once) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "a", "Item A", 1000, 10);
  create_product(c, admin, "b", "Item B", 500, 1);
  auto alice = user_token(c, "alice");
  auto bob = user_token(c, "bob");
  auto checkouts = [&](const std::string& token, const std::string& key_prefix) {
    std::mutex m;
    std::map<int, int> statuses;
    std::set<std::string> refusals;
    parallel_for(shopd.port(), 8, 8, [&](http_client& cc, size_t i) {
      // Half without a key, half each with a key of its own.
      auto key = i % 2 == 0 ? std::string{} : key_prefix + std::to_string(i);
      auto r = place_order(cc, token, R"({"from_cart":true})", key);
      std::lock_guard<std::mutex> g{m};
      ++statuses[r.status];
      if (r.status != 201)
        refusals.insert(json_field(r.body, "error.code") + ": "
                        + json_field(r.body, "error.message"));
    });
    return std::make_pair(statuses, refusals);
  };
  auto cart_lines = [&](const std::string& token) {
    return column(c.request("GET", "/api/v1/cart", {}, {bearer(token)}).body, "items", "sku");
  };

  ASSERT_EQ(c.request("PUT", "/api/v1/cart/items/a", R"({"quantity":2})", {bearer(alice)}).status,
            200);
  ASSERT_EQ(c.request("PUT", "/api/v1/cart/items/b", R"({"quantity":1})", {bearer(alice)}).status,
            200);
  auto [statuses, refusals] = checkouts(alice, "alice-");
  EXPECT_EQ(statuses, (std::map<int, int>{{201, 1}, {422, 7}}));
  EXPECT_EQ(refusals, (std::set<std::string>{"validation_failed: the cart is empty"}));
  EXPECT_EQ(get_inventory(c, "a"), (inventory{8, 2, 0}));
  EXPECT_EQ(get_inventory(c, "b"), (inventory{0, 1, 0}));
  EXPECT_TRUE(cart_lines(alice).empty());

  // Bob's line is out of stock: every checkout is refused, none holds the
  // cart, and the line stays for a checkout once there is stock again.
  ASSERT_EQ(c.request("PUT", "/api/v1/cart/items/b", R"({"quantity":1})", {bearer(bob)}).status,
            200);
  std::tie(statuses, refusals) = checkouts(bob, "bob-");
  EXPECT_EQ(statuses, (std::map<int, int>{{409, 8}}));
  EXPECT_EQ(refusals.size(), 1u);
  EXPECT_EQ(refusals.begin()->rfind("insufficient_stock: ", 0), 0u) << *refusals.begin();
  EXPECT_EQ(cart_lines(bob), (std::vector<std::string>{"b"}));
  EXPECT_EQ(get_inventory(c, "b"), (inventory{0, 1, 0}));
  auto restocked = c.request("POST", "/api/v1/products/b/restock", R"({"quantity":1})",
                             {bearer(admin)});
  ASSERT_EQ(restocked.status, 200) << restocked.body;
  auto r = place_order(c, bob, R"({"from_cart":true})");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(get_inventory(c, "b"), (inventory{0, 2, 0}));
}

TEST(Payment, test_signed_callback_pays_once_and_bad_ones_change_nothing) {
  temp_dir dir;
  shopd_process shopd{dir.path(), {"--payment-secret", payment_secret}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "a", "Item A", 1000, 10);
  auto alice = user_token(c, "alice");
  auto bob = user_token(c, "bob");
  auto r = place_order(c, alice, items_body({{"a", 2}}));
  ASSERT_EQ(r.status, 201) << r.body;
  auto order_id = json_field(r.body, "order_id");

  // Only the owner pays; methods are checked.
  EXPECT_EQ(c.request("POST", "/api/v1/orders/" + order_id + "/pay", R"({"method":"card"})",
                      {bearer(bob)})
              .status,
            404);
  EXPECT_EQ(c.request("POST", "/api/v1/orders/" + order_id + "/pay", R"({"method":"cash"})",
                      {bearer(alice)})
              .status,
            422);
  r = c.request("POST", "/api/v1/orders/" + order_id + "/pay", R"({"method":"card"})",
                {bearer(alice)});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "amount_cents"), "2000");
  EXPECT_EQ(json_field(r.body, "order_id"), order_id);
  auto payment_id = json_field(r.body, "payment_id");
  ASSERT_FALSE(payment_id.empty());
  // The sandbox gateway is off unless asked for.
  EXPECT_EQ(c.request("POST", "/api/v1/payments/" + payment_id + "/sandbox-complete",
                      R"({"status":"succeeded"})", {bearer(alice)})
              .status,
            404);

  auto good = callback_body(payment_id, order_id, "succeeded", 2000);
  auto callback = [&](const std::string& body, const std::string& sig) {
    return c.request("POST", "/api/v1/payments/callback", body, {sig});
  };
  auto status = [&] {
    return json_field(c.request("GET", "/api/v1/orders/" + order_id, {}, {bearer(alice)}).body,
                      "status");
  };
  // Forged, missing or mismatched signatures: 401.
  EXPECT_EQ(callback(good, "X-Signature: " + std::string(64, '0')).status, 401);
  EXPECT_EQ(callback(good, "X-Trace: 1").status, 401);
  EXPECT_EQ(callback(good, signature(callback_body(payment_id, order_id, "succeeded", 1))).status,
            401);
  // Two X-Signature fields, the valid one first: a proxy in front may have
  // checked the other, so 400, and the order is not paid (checked below).
  r = c.request("POST", "/api/v1/payments/callback", good,
                {signature(good), "X-Signature: " + std::string(64, '0')});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(json_field(r.body, "error.code"), "bad_request");
  // Signed but wrong: amount, payment id, unknown order.
  auto wrong_amount = callback_body(payment_id, order_id, "succeeded", 1999);
  EXPECT_EQ(callback(wrong_amount, signature(wrong_amount)).status, 422);
  auto wrong_payment = callback_body("pay_other", order_id, "succeeded", 2000);
  EXPECT_EQ(callback(wrong_payment, signature(wrong_payment)).status, 404);
  auto failed = callback_body(payment_id, order_id, "failed", 2000);
  auto upper = signature(failed); // hex digits in upper case are the same signature
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  EXPECT_EQ(callback(failed, upper).status, 200);
  EXPECT_EQ(status(), "pending_payment");
  EXPECT_EQ(get_inventory(c, "a"), (inventory{8, 2, 0}));

  r = callback(good, signature(good));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "status"), "paid");
  EXPECT_EQ(json_field(r.body, "payment_id"), payment_id);
  // The gateway retries: the same answer, still one sale.
  r = callback(good, signature(good));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json_field(r.body, "status"), "paid");
  EXPECT_TRUE(eventually(3s, [&] { return get_inventory(c, "a") == inventory{8, 0, 2}; }))
    << get_inventory(c, "a");
  // A paid order can be neither cancelled nor paid again.
  EXPECT_EQ(c.request("POST", "/api/v1/orders/" + order_id + "/cancel", {}, {bearer(alice)}).status,
            409);
  EXPECT_EQ(c.request("POST", "/api/v1/orders/" + order_id + "/pay", R"({"method":"card"})",
                      {bearer(alice)})
              .status,
            409);
  // Paid is durable, and the units stay sold.
  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  EXPECT_EQ(json_field(c2.request("GET", "/api/v1/orders/" + order_id, {}, {bearer(alice)}).body,
                       "status"),
            "paid");
  EXPECT_EQ(get_inventory(c2, "a"), (inventory{8, 0, 2}));
}

TEST(Payment, test_sandbox_pays_and_an_unpaid_order_expires_and_cannot_be_paid) {
  temp_dir dir;
  // 4 s: the unpaid order's buyer starts paying before it expires (a few
  // synced commits in), also on a slow disk.
  shopd_process shopd{dir.path(), {"--sandbox-payments", "--payment-timeout", "4"}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = shopd.admin_token();
  create_product(c, admin, "a", "Item A", 1000, 10);
  create_product(c, admin, "b", "Item B", 300, 10);
  auto alice = user_token(c, "alice");
  auto bob = user_token(c, "bob");

  auto paid = place_order(c, alice, items_body({{"a", 1}, {"b", 1}}), "pay-once");
  auto unpaid = place_order(c, alice, items_body({{"a", 2}, {"b", 3}}));
  ASSERT_EQ(paid.status, 201);
  ASSERT_EQ(unpaid.status, 201);
  auto r = c.request("POST", "/api/v1/orders/" + json_field(paid.body, "order_id") + "/pay",
                     R"({"method":"wechat"})", {bearer(alice)});
  ASSERT_EQ(r.status, 200) << r.body;
  auto pay_url = json_field(r.body, "pay_url");
  EXPECT_EQ(pay_url, "/api/v1/payments/" + json_field(r.body, "payment_id") + "/sandbox-complete");
  // Only the owner completes a sandbox payment.
  EXPECT_EQ(c.request("POST", pay_url, R"({"status":"succeeded"})", {bearer(bob)}).status, 404);
  r = c.request("POST", pay_url, R"({"status":"succeeded"})", {bearer(alice)});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "status"), "paid");
  // A retry of the placement gets the first answer (API.md: same status, same
  // body), not the order's later state, and orders nothing more.
  auto again = place_order(c, alice, items_body({{"a", 1}, {"b", 1}}), "pay-once");
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, paid.body);

  // The unpaid order's buyer starts paying, but not in time.
  auto unpaid_id = json_field(unpaid.body, "order_id");
  r = c.request("POST", "/api/v1/orders/" + unpaid_id + "/pay", R"({"method":"card"})",
                {bearer(alice)});
  ASSERT_EQ(r.status, 200) << r.body;
  auto late_url = json_field(r.body, "pay_url");
  EXPECT_TRUE(eventually(10s, [&] {
    return json_field(c.request("GET", "/api/v1/orders/" + unpaid_id, {}, {bearer(alice)}).body,
                      "status")
           == "expired";
  }));
  EXPECT_TRUE(eventually(3s, [&] {
    return get_inventory(c, "a") == inventory{9, 0, 1} && get_inventory(c, "b") == inventory{9, 0, 1};
  })) << get_inventory(c, "a") << get_inventory(c, "b");
  r = c.request("POST", "/api/v1/orders/" + unpaid_id + "/pay", R"({"method":"card"})",
                {bearer(alice)});
  EXPECT_EQ(r.status, 409) << r.body;
  // The payment succeeds after all: it is recorded and owed back, and the
  // released stock stays released.
  r = c.request("POST", late_url, R"({"status":"succeeded"})", {bearer(alice)});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "status"), "refunded");
  EXPECT_EQ(json_field(c.request("GET", "/api/v1/orders/" + unpaid_id, {}, {bearer(alice)}).body,
                       "status"),
            "refunded");
  EXPECT_EQ(get_inventory(c, "a"), (inventory{9, 0, 1}));
  EXPECT_EQ(get_inventory(c, "b"), (inventory{9, 0, 1}));
}
