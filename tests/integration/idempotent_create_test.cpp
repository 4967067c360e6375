// Idempotency-Key on the routes that create a user, a product or a flash sale,
// and on a restock, over real HTTP against a real shopd: a retry with the same
// key from the same requester gets the first answer (same status, same body)
// and changes nothing, also concurrently and across a crash; the same key with
// a different request, or a creation without the key, is a conflict.

#include <gtest/gtest.h>

#include <ctime>
#include <mutex>
#include <set>
#include <thread>

#include "tests/fixtures/shopd_process.hpp"

using namespace shop::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> with_key(std::vector<std::string> headers, const std::string& key) {
  headers.push_back("Idempotency-Key: " + key);
  return headers;
}

/// RFC 3339 UTC time `from_now` seconds from now.
std::string rfc3339_in(std::chrono::seconds from_now) {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + from_now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Sends eight copies of one POST at once, each on its own connection (a
/// client retrying over fresh connections); each must be answered `status`
/// with one and the same body, which is returned.
std::string answered_once(uint16_t port, const std::string& path, const std::string& body,
                          const std::vector<std::string>& headers, int status = 201) {
  std::mutex m;
  std::vector<http_result> answers;
  parallel_for(port, 8, 8, [&](http_client& cc, size_t) {
    auto a = cc.request("POST", path, body, headers);
    std::lock_guard<std::mutex> g{m};
    answers.push_back(std::move(a));
  });
  EXPECT_EQ(answers.size(), 8u);
  for (auto& a : answers) {
    EXPECT_EQ(a.status, status) << a.body;
    EXPECT_EQ(a.body, answers.front().body);
  }
  return answers.empty() ? std::string{} : answers.front().body;
}

} // namespace

TEST(IdempotentCreate, test_a_retried_product_creation_gets_its_first_answer_also_after_a_crash) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  const std::string body =
    R"({"sku":"lamp","name":"Desk lamp","price_cents":2500,"description":"warm","stock":40})";
  auto admin = [&] { return std::vector<std::string>{bearer(shopd.admin_token())}; };
  auto first = c.request("POST", "/api/v1/products", body, with_key(admin(), "lamp-1"));
  ASSERT_EQ(first.status, 201) << first.body;
  // The product changes after its creation; a retry still gets the first answer.
  auto r = c.request("POST", "/api/v1/products/lamp/restock", R"({"quantity":5})", admin());
  ASSERT_EQ(r.status, 200) << r.body;
  r = c.request("POST", "/api/v1/products", body, with_key(admin(), "lamp-1"));
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, first.body);

  // Anything but a retry of that creation is a conflict, and changes nothing.
  r = c.request("POST", "/api/v1/products", body, admin());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json_field(r.body, "error.code"), "conflict");
  r = c.request("POST", "/api/v1/products", body, with_key(admin(), "lamp-2"));
  EXPECT_EQ(r.status, 409);
  auto other = R"({"sku":"lamp","name":"Floor lamp","price_cents":2500,"stock":40})";
  r = c.request("POST", "/api/v1/products", other, with_key(admin(), "lamp-1"));
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(json_field(r.body, "error.message").find("Idempotency-Key"), std::string::npos)
    << r.body;
  EXPECT_EQ(get_inventory(c, "lamp"), (inventory{45, 0, 0}));
  r = c.request("GET", "/api/v1/products/lamp");
  EXPECT_EQ(json_field(r.body, "name"), "Desk lamp");

  // The receipt is durable with the product: the first answer survives a crash.
  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  r = c2.request("POST", "/api/v1/products", body, with_key(admin(), "lamp-1"));
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, first.body);
  r = c2.request("POST", "/api/v1/products", other, with_key(admin(), "lamp-1"));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(get_inventory(c2, "lamp"), (inventory{45, 0, 0}));
}

TEST(IdempotentCreate, test_a_retried_restock_adds_its_units_once_also_after_a_crash) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = [&] { return std::vector<std::string>{bearer(shopd.admin_token())}; };
  auto r = c.request("POST", "/api/v1/products",
                     R"({"sku":"mug","name":"Mug","price_cents":800,"stock":10})", admin());
  ASSERT_EQ(r.status, 201) << r.body;
  // Eight copies at once, each on its own connection: one restock of 5.
  const std::string path = "/api/v1/products/mug/restock";
  const auto first =
    answered_once(shopd.port(), path, R"({"quantity":5})", with_key(admin(), "delivery/7"), 200);
  EXPECT_EQ(json_field(first, "available"), "15") << first;
  EXPECT_EQ(get_inventory(c, "mug"), (inventory{15, 0, 0}));

  // The same key for another quantity: a conflict, nothing added.
  r = c.request("POST", path, R"({"quantity":6})", with_key(admin(), "delivery/7"));
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(json_field(r.body, "error.code"), "conflict");
  // Another key, or none, is another restock.
  r = c.request("POST", path, R"({"quantity":5})", with_key(admin(), "delivery/8"));
  EXPECT_EQ(r.status, 200) << r.body;
  r = c.request("POST", path, R"({"quantity":5})", admin());
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(get_inventory(c, "mug"), (inventory{25, 0, 0}));
  // A bad key is refused before anything changes.
  r = c.request("POST", path, R"({"quantity":5})", with_key(admin(), std::string(129, 'k')));
  EXPECT_EQ(r.status, 400) << r.body;

  // The receipt is stored with the restock: a retry after a crash gets the
  // first answer again and adds nothing.
  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  r = c2.request("POST", path, R"({"quantity":5})", with_key(admin(), "delivery/7"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, first);
  r = c2.request("POST", path, R"({"quantity":6})", with_key(admin(), "delivery/7"));
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(get_inventory(c2, "mug"), (inventory{25, 0, 0}));
}

TEST(IdempotentCreate, test_concurrent_retries_of_a_sale_creation_make_one_sale) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = std::vector<std::string>{bearer(shopd.admin_token())};
  auto r = c.request("POST", "/api/v1/products",
                     R"({"sku":"kettle","name":"Kettle","price_cents":3000,"stock":100})", admin);
  ASSERT_EQ(r.status, 201) << r.body;
  // A sale that ends in four to five seconds (whole seconds): its creation's
  // retries must still get the first answer once it has ended (a new
  // creation would be refused).
  const std::string body = R"({"id":"kettle-sale","sku":"kettle","price_cents":1500,)"
                           R"("quantity":30,"per_user_limit":1,)"
                           R"("starts_at":"2020-01-01T00:00:00Z","ends_at":")"
                           + rfc3339_in(5s) + R"("})";
  auto first =
    answered_once(shopd.port(), "/api/v1/flash-sales", body, with_key(admin, "kettle-sale-1"));
  EXPECT_EQ(json_field(first, "status"), "active");
  EXPECT_EQ(json_field(first, "remaining"), "30");
  // One sale took 30 units off the SKU's available stock for sale, not eight.
  r = c.request("GET", "/api/v1/flash-sales/kettle-sale");
  EXPECT_EQ(json_field(r.body, "remaining"), "30");

  ASSERT_TRUE(eventually(10s, [&] {
    auto s = c.request("GET", "/api/v1/flash-sales/kettle-sale");
    return json_field(s.body, "status") == "ended";
  }));
  r = c.request("POST", "/api/v1/flash-sales", body, with_key(admin, "kettle-sale-1"));
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body, first);
  // Not a retry: a conflict (the id exists), also with a new key.
  r = c.request("POST", "/api/v1/flash-sales", body, with_key(admin, "kettle-sale-2"));
  EXPECT_EQ(r.status, 409) << r.body;
}

TEST(IdempotentCreate, test_a_retried_registration_gets_its_first_answer_only_with_its_password) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  const std::string body = R"({"username":"carol","password":"carol-secret-1"})";
  // Eight copies at once: one account.
  auto first = answered_once(shopd.port(), "/api/v1/users", body, {"Idempotency-Key: signup-carol"});
  auto user_id = json_field(first, "user_id");
  EXPECT_FALSE(user_id.empty());

  // The same key with another password is somebody else: the name is taken.
  auto r = c.request("POST", "/api/v1/users", R"({"username":"carol","password":"not-carols-pw"})",
                     {"Idempotency-Key: signup-carol"});
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json_field(r.body, "error.code"), "conflict");
  r = c.request("POST", "/api/v1/users", body);
  EXPECT_EQ(r.status, 409);
  r = c.request("POST", "/api/v1/users", body, {"Idempotency-Key: signup-carol-2"});
  EXPECT_EQ(r.status, 409);

  ASSERT_TRUE(shopd.restart());
  http_client c2{shopd.port()};
  r = c2.request("POST", "/api/v1/users", body, {"Idempotency-Key: signup-carol"});
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body, first);
  // The password is the first one's; the account is the first one.
  auto token = login(c2, "carol", "carol-secret-1");
  ASSERT_FALSE(token.empty());
  r = c2.request("GET", "/api/v1/users/me", {}, {bearer(token)});
  EXPECT_EQ(json_field(r.body, "user_id"), user_id);
  EXPECT_TRUE(login(c2, "carol", "not-carols-pw").empty());
}

TEST(IdempotentCreate, test_a_bad_idempotency_key_on_a_creation_is_refused_before_anything_changes) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  auto admin = std::vector<std::string>{bearer(shopd.admin_token())};
  const std::string product = R"({"sku":"mug","name":"Mug","price_cents":900,"stock":3})";
  for (auto& bad : {std::string(129, 'k'), std::string{"two words"}}) {
    auto r = c.request("POST", "/api/v1/products", product, with_key(admin, bad));
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(json_field(r.body, "error.code"), "bad_request");
    r = c.request("POST", "/api/v1/users", R"({"username":"dave","password":"dave-secret"})",
                  {"Idempotency-Key: " + bad});
    EXPECT_EQ(r.status, 400) << bad;
  }
  auto r = c.request("POST", "/api/v1/products", product,
                     with_key(with_key(admin, "a"), "b"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(c.request("GET", "/api/v1/products/mug").status, 404);
  EXPECT_TRUE(login(c, "dave", "dave-secret").empty());
}
