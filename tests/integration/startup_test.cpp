// Starting shopd where it cannot run: an operator gets a clear error and a
// process that exits with status 1 at once (never one that hangs, holding the
// data dir), and a node that already runs there is not disturbed.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <simdjson.h>

#include "storage/keys.hpp"
#include "storage/store.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop::test;
using namespace std::chrono_literals;

namespace {

/// Starts `shopd`, which must fail; returns how long that took (ms).
std::chrono::milliseconds refused_start(shopd_process& shopd) {
  auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(shopd.start());
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                               - started);
}

/// A product of 10 units (and a sale on it) on a running node.
void add_product(shopd_process& shopd, const std::string& sku) {
  http_client c{shopd.port()};
  create_product_and_sale(c, shopd.admin_token(), sku, 10, "sale-" + sku, 5, 1);
}

/// The running node still serves and still has its product.
void still_serves(shopd_process& shopd, const std::string& sku, const inventory& expected) {
  http_client c{shopd.port()};
  EXPECT_EQ(c.request("GET", "/healthz").status, 200);
  EXPECT_EQ(get_inventory(c, sku), expected);
}

/// The data dir's `meta/storage_format` ("" if absent or unreadable).
std::string stored_format(const std::string& data_dir) {
  auto db = shop::store::open({data_dir});
  EXPECT_TRUE(db);
  std::string format;
  if (!db)
    return {};
  auto found = (*db)->get(shop::keys::meta("storage_format"), format);
  return found && *found ? format : std::string{};
}

} // namespace

// docs/operations.md, "The admin account": without a configured password a
// new data dir gets a generated one, printed once; later starts without one
// keep it; a configured password replaces it on every start, and stays when
// the setting is removed.
TEST(Startup, test_the_admin_password_is_generated_once_and_a_configured_one_set_at_every_start) {
  temp_dir dir;
  auto login_status = [](const shopd_process& shopd, const std::string& password) {
    http_client c{shopd.port()};
    return c.request("POST", "/api/v1/auth/login",
                     R"({"username":"admin","password":")" + password + "\"}")
      .status;
  };
  const std::string line = "admin password (generated; printed only this once): ";
  std::string generated;
  {
    shopd_process shopd{dir.path()};
    shopd.give_admin_password = false;
    ASSERT_TRUE(shopd.start());
    auto at = shopd.start_output().find(line);
    ASSERT_NE(at, std::string::npos) << shopd.start_output();
    auto begin = at + line.size();
    generated = shopd.start_output().substr(begin, shopd.start_output().find('\n', begin) - begin);
    EXPECT_EQ(generated.size(), 24u) << generated;
    EXPECT_EQ(login_status(shopd, generated), 200);
    http_client c{shopd.port()};
    auto token = login(c, "admin", generated);
    auto me = c.request("GET", "/api/v1/users/me", {}, {bearer(token)});
    EXPECT_EQ(json_field(me.body, "role"), "admin") << me.body;
    // Restarted without a password: nothing printed, nothing changed.
    ASSERT_TRUE(shopd.stop());
    ASSERT_TRUE(shopd.start());
    EXPECT_EQ(shopd.start_output().find(line), std::string::npos) << shopd.start_output();
    EXPECT_EQ(login_status(shopd, generated), 200);
    ASSERT_TRUE(shopd.stop());
  }
  {
    shopd_process shopd{dir.path(), {"--admin-password", "configured-pw-1"}};
    ASSERT_TRUE(shopd.start());
    EXPECT_EQ(shopd.start_output().find(line), std::string::npos) << shopd.start_output();
    EXPECT_EQ(login_status(shopd, "configured-pw-1"), 200);
    EXPECT_EQ(login_status(shopd, generated), 401);
    ASSERT_TRUE(shopd.stop());
  }
  shopd_process shopd{dir.path()};
  shopd.give_admin_password = false;
  ASSERT_TRUE(shopd.start());
  EXPECT_EQ(login_status(shopd, "configured-pw-1"), 200);
  EXPECT_EQ(shopd.start_output().find(line), std::string::npos) << shopd.start_output();
}

// The longest password a login takes, counted in characters (here 128 of
// two bytes each), and the shortest keys the node takes: a start with them serves.
TEST(Startup, test_the_longest_admin_password_and_the_shortest_secrets_are_taken) {
  temp_dir dir;
  std::string password;
  for (int i = 0; i < 128; ++i)
    password += "\xC3\xA9"; // é
  shopd_process shopd{dir.path(),
                      {"--admin-password", password, "--jwt-secret", std::string(32, 'j'),
                       "--payment-secret", std::string(16, 'p')}};
  ASSERT_TRUE(shopd.start());
  http_client c{shopd.port()};
  EXPECT_FALSE(login(c, "admin", password).empty());
  EXPECT_TRUE(shopd.stop());
}

TEST(Startup, test_a_port_in_use_is_refused_and_the_node_exits) {
  temp_dir first_dir, second_dir;
  shopd_process first{first_dir.path()};
  ASSERT_TRUE(first.start());
  add_product(first, "port-1");
  // A new data dir, no admin password given: the refusal comes before either
  // is touched. (An admin password generated by a start that then failed
  // would be printed by no later start.)
  const std::string data = second_dir.path() + "/data";
  const std::string password_line = "admin password (generated; printed only this once): ";
  shopd_process second{data, {"--http-port", std::to_string(first.port())}};
  second.give_admin_password = false;
  EXPECT_LT(refused_start(second).count(), 10000);
  EXPECT_EQ(second.exit_status(), 1) << "shopd must exit by itself, not hang";
  EXPECT_NE(second.start_output().find("address already in use"), std::string::npos)
    << second.start_output();
  EXPECT_EQ(second.start_output().find(password_line), std::string::npos)
    << second.start_output();
  EXPECT_FALSE(std::filesystem::exists(data)) << "the refused start created its data dir";
  still_serves(first, "port-1", inventory{10, 0, 0});
  // On a free port the node starts there, and the password it generates is printed.
  shopd_process third{data};
  third.give_admin_password = false;
  EXPECT_TRUE(third.start());
  EXPECT_NE(third.start_output().find(password_line), std::string::npos) << third.start_output();
  EXPECT_TRUE(third.stop());
  EXPECT_TRUE(first.stop());
}

TEST(Startup, test_a_data_dir_in_use_by_another_node_is_refused) {
  temp_dir dir;
  shopd_process first{dir.path()};
  ASSERT_TRUE(first.start());
  add_product(first, "lock-1");
  shopd_process second{dir.path()};
  EXPECT_LT(refused_start(second).count(), 10000);
  EXPECT_EQ(second.exit_status(), 1);
  EXPECT_NE(second.start_output().find("another shopd"), std::string::npos)
    << second.start_output();
  still_serves(first, "lock-1", inventory{10, 0, 0});
  EXPECT_TRUE(first.stop());
}

TEST(Startup, test_a_data_dir_made_with_another_shard_count_is_refused_untouched) {
  temp_dir dir;
  shopd_process made{dir.path(), {"--shards", "8"}};
  ASSERT_TRUE(made.start());
  add_product(made, "shard-1");
  ASSERT_TRUE(made.stop());
  shopd_process other{dir.path(), {"--shards", "16"}};
  EXPECT_LT(refused_start(other).count(), 10000);
  EXPECT_EQ(other.exit_status(), 1);
  EXPECT_NE(other.start_output().find("created with 8 shards, not 16"), std::string::npos)
    << other.start_output();
  ASSERT_TRUE(made.start()); // the data dir is as it was
  still_serves(made, "shard-1", inventory{10, 0, 0});
}

TEST(Startup, test_a_data_dir_of_a_newer_storage_format_is_refused_untouched) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  ASSERT_TRUE(shopd.stop());
  {
    auto db = shop::store::open({dir.path()});
    ASSERT_TRUE(db);
    ASSERT_FALSE((*db)->write({shop::put_op(shop::keys::meta("storage_format"), "6")}, true));
  }
  EXPECT_LT(refused_start(shopd).count(), 10000);
  EXPECT_EQ(shopd.exit_status(), 1);
  EXPECT_NE(shopd.start_output().find("storage format 6"), std::string::npos)
    << shopd.start_output();
  EXPECT_EQ(stored_format(dir.path()), "6");
}

// Storage formats 3 to 5 only mark that order records may carry their
// source, and cart records the time of each line and the checkout holding
// them: a data dir of format 2, 3 or 4 is taken as it is, its orders and
// stock intact.
TEST(Startup, test_a_data_dir_of_storage_format_2_3_or_4_is_upgraded_in_place) {
  temp_dir dir;
  shopd_process shopd{dir.path()};
  ASSERT_TRUE(shopd.start());
  add_product(shopd, "fmt-1");
  std::string token;
  std::string order;
  {
    http_client c{shopd.port()};
    ASSERT_EQ(c.request("POST", "/api/v1/users", R"({"username":"fmt","password":"fmt-secret"})")
                .status,
              201);
    token = login(c, "fmt", "fmt-secret");
    auto r = c.request("POST", "/api/v1/flash-sales/sale-fmt-1/purchase", R"({"quantity":1})",
                       {bearer(token)});
    ASSERT_EQ(r.status, 201) << r.body;
    order = json_field(r.body, "order_id");
  }
  ASSERT_TRUE(shopd.stop());
  for (auto older : {"2", "3", "4"}) {
    {
      auto db = shop::store::open({dir.path()});
      ASSERT_TRUE(db);
      ASSERT_FALSE((*db)->write({shop::put_op(shop::keys::meta("storage_format"), older)}, true));
    }
    ASSERT_TRUE(shopd.start()) << shopd.start_output();
    {
      http_client c{shopd.port()};
      auto r = c.request("GET", "/api/v1/orders/" + order, {}, {bearer(token)});
      EXPECT_EQ(r.status, 200) << older << ": " << r.body;
      EXPECT_EQ(get_inventory(c, "fmt-1"), (inventory{9, 1, 0})) << older;
    }
    ASSERT_TRUE(shopd.stop());
    EXPECT_EQ(stored_format(dir.path()), "5") << older;
  }
}

TEST(Startup, test_invalid_options_are_refused_before_anything_starts) {
  temp_dir dir;
  for (std::vector<std::string> args : {std::vector<std::string>{"--durability", "fast"},
                                        {"--http-host", "not-an-address"},
                                        {"--shards", "0"},
                                        {"--shards", "064"}, // not octal 52
                                        {"--http-port", "-1"},
                                        {"--request-timeout", "nan"},
                                        {"--payment-timeout", "inf"},
                                        {"--payment-timeout", "0x10"}, // not 16 s
                                        {"--passivate-after", "NaN"},
                                        {"--max-body-bytes", "-1"}, // not SIZE_MAX
                                        {"--max-body-bytes", "0"},
                                        {"--max-header-bytes", "0"},
                                        {"--node-id", "n\"1"}, // would break JSON logs
                                        {"--rate-limit-user", "nan"},
                                        {"--rate-limit-user", "-1"},
                                        {"--rate-limit-client", "1e-300"},
                                        {"--rate-limit-client-burst", "0.5"},
                                        {"--max-connections", "-1"},
                                        // more than any open-file limit leaves for clients
                                        {"--max-connections", "10000000"},
                                        {"--no-such-flag", "1"},
                                        {"--config", "/nonexistent/shop.toml"},
                                        // passwords no login could take (8 to 128 characters)
                                        {"--admin-password", "seven-7"},
                                        {"--admin-password", "\xC3\xA9\xC3\xA9\xC3\xA9\xE2\x82\xAC"
                                                             "abc"}, // 7, in 12 bytes
                                        {"--admin-password", std::string(129, 'x')},
                                        {"--admin-password", "not-utf8-\xFF\xFE"},
                                        // keys a forger could guess
                                        {"--jwt-secret", std::string(31, 'k')},
                                        {"--payment-secret", std::string(15, 'k')}}) {
    shopd_process shopd{dir.path(), args};
    EXPECT_LT(refused_start(shopd).count(), 10000) << args[0];
    EXPECT_NE(shopd.exit_status(), 0) << args[0];
    EXPECT_NE(shopd.exit_status(), -1) << args[0] << ": shopd must exit by itself";
  }
}

// --log-format json: every log line is one JSON object, also when the message
// holds quotes, backslashes and bytes that are not UTF-8 (here in the path of
// a data dir that is a file).
TEST(Startup, test_json_log_lines_stay_valid_json_whatever_the_message_holds) {
  temp_dir dir;
  const std::string odd = dir.path() + "/a \"quoted\" \\ name";
  const std::string path = odd + " \xff\xfe";
  { std::ofstream{path} << "not a directory"; }
  shopd_process shopd{path, {"--log-format", "json"}};
  EXPECT_LT(refused_start(shopd).count(), 10000);
  EXPECT_EQ(shopd.exit_status(), 1);
  simdjson::dom::parser parser;
  int lines = 0;
  std::istringstream out{shopd.start_output()};
  for (std::string line; std::getline(out, line);) {
    if (line.empty() || line[0] != '{')
      continue; // the ready line and the admin password line are plain text
    ++lines;
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
    std::string_view msg, level;
    ASSERT_EQ(doc["msg"].get(msg), simdjson::SUCCESS) << line;
    ASSERT_EQ(doc["level"].get(level), simdjson::SUCCESS) << line;
    if (level == "error") {
      EXPECT_NE(msg.find(odd), std::string_view::npos) << line;
    }
  }
  EXPECT_GE(lines, 1) << shopd.start_output();
}
