#include <set>
#include <stdexcept>

#include <gtest/gtest.h>

#include <caf/sec.hpp>

#include "protocols/crypto.hpp"
#include "protocols/errc.hpp"
#include "protocols/json.hpp"
#include "protocols/record_codec.hpp"

using namespace shop;

namespace {

errc code_of(const caf::error& e) {
  return describe(e).code;
}

} // namespace

TEST(JsonDecode, test_purchase_quantity_defaults_to_one_and_is_range_checked) {
  EXPECT_EQ(*decode_purchase(""), 1);
  EXPECT_EQ(*decode_purchase("{}"), 1);
  EXPECT_EQ(*decode_purchase(R"({"quantity":3})"), 3);
  for (auto bad : {R"({"quantity":0})", R"({"quantity":-1})", R"({"quantity":2147483648})",
                   R"({"quantity":9223372036854775808})", R"({"quantity":1.5})",
                   R"({"quantity":"2"})", R"({"quantity":null})"}) {
    auto r = decode_purchase(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::validation_failed) << bad;
  }
}

TEST(JsonDecode, test_unknown_and_duplicate_fields_are_refused) {
  auto r = decode_purchase(R"({"quantity":1,"price_cents":1})");
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::validation_failed);
  EXPECT_NE(describe(r.error()).message.find("price_cents"), std::string::npos);
  r = decode_purchase(R"({"quantity":1,"quantity":2})");
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::validation_failed);
}

TEST(JsonDecode, test_malformed_json_is_invalid_json) {
  for (auto bad : {"{", R"({"quantity":1}})", R"({"quantity":1} {"a":1})", "{\"quantity\":[1,2}",
                   "nul", "\xff\xfe"}) {
    auto r = decode_purchase(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::invalid_json) << bad;
  }
  auto r = decode_purchase("[1,2,3]");
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::validation_failed);
}

TEST(JsonDecode, test_registration_rules) {
  EXPECT_TRUE(decode_credentials(R"({"username":"alice_1","password":"12345678"})", true));
  for (auto bad : {R"({"username":"al","password":"12345678"})",
                   R"({"username":"Alice","password":"12345678"})",
                   R"({"username":"alice","password":"short"})", R"({"username":"alice"})",
                   R"({"username":"alice","password":"12345678","role":"admin"})"}) {
    EXPECT_FALSE(decode_credentials(bad, true)) << bad;
  }
}

TEST(JsonDecode, test_sale_needs_every_field_and_a_window) {
  auto ok = decode_create_sale(
    R"({"id":"s1","sku":"p1","price_cents":10,"quantity":5,"per_user_limit":1,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-02T00:00:00+01:00"})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->ends_at - ok->starts_at, 23 * 3600 * 1000);
  auto bad = decode_create_sale(
    R"({"id":"s1","sku":"p1","price_cents":10,"quantity":5,"per_user_limit":1,"starts_at":"2026-01-02T00:00:00Z","ends_at":"2026-01-01T00:00:00Z"})");
  EXPECT_FALSE(bad);
  EXPECT_FALSE(decode_create_sale(
    R"({"id":"s 1","sku":"p1","price_cents":10,"quantity":5,"per_user_limit":1,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-02T00:00:00Z"})"));
  EXPECT_FALSE(decode_create_sale(R"({"id":"s1"})"));
}

TEST(JsonTime, test_rfc3339_round_trip) {
  millis t = 0;
  ASSERT_TRUE(parse_time("2026-11-22T10:00:00.123Z", t));
  EXPECT_EQ(format_time(t), "2026-11-22T10:00:00.123Z");
  ASSERT_TRUE(parse_time("1970-01-01T00:00:00Z", t));
  EXPECT_EQ(t, 0);
  EXPECT_EQ(format_time(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_time(951'782'400'000), "2000-02-29T00:00:00.000Z");
  // Every formatted time parses back to itself (a day's worth of steps over 200 years).
  for (millis v = -2'000'000'000'000; v < 4'300'000'000'000; v += millis{86'399'999} * 37) {
    millis back = 0;
    ASSERT_TRUE(parse_time(format_time(v), back)) << v;
    EXPECT_EQ(back, v) << format_time(v);
  }
  EXPECT_FALSE(parse_time("2026-11-22 10:00:00Z", t));
  EXPECT_FALSE(parse_time("2026-13-22T10:00:00Z", t));
  EXPECT_FALSE(parse_time("2026-11-22T10:00:00", t));
}

TEST(JsonEncode, test_strings_are_escaped) {
  json_writer w;
  w.begin_object().field("k", std::string_view{"a\"b\\c\n\x01"}).end_object();
  EXPECT_EQ(w.str(), R"({"k":"a\"b\\c\n\u0001"})");
}

TEST(RecordCodec, test_records_round_trip_and_truncation_is_detected) {
  order_record o;
  o.order_id = "o1";
  o.user_id = "u1";
  o.status = order_status::expired;
  o.items.push_back({"sku-1", 2, 150});
  o.total_cents = 300;
  o.created_at = -5;
  o.expires_at = 1'700'000'000'000;
  o.flash_sale_id = "s1";
  auto bytes = encode(o);
  order_record back;
  ASSERT_TRUE(decode(bytes, back));
  EXPECT_EQ(back.status, order_status::expired);
  EXPECT_EQ(back.items.at(0).quantity, 2);
  EXPECT_EQ(back.created_at, -5);
  EXPECT_EQ(back.expires_at, o.expires_at);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode(std::string_view{bytes}.substr(0, n), back)) << n;
  EXPECT_FALSE(decode(bytes + "x", back));
  ledger_entry e{"o1", "u1", "s1", 3, 99, 1, 2, reservation_state::sold};
  ledger_entry e2;
  ASSERT_TRUE(decode(encode(e), e2));
  EXPECT_EQ(e2.state, reservation_state::sold);
  EXPECT_EQ(e2.quantity, 3);
}

TEST(ErrorCodes, test_each_code_maps_to_the_api_status) {
  EXPECT_EQ(http_status(errc::sold_out), 409);
  EXPECT_EQ(http_status(errc::limit_exceeded), 409);
  EXPECT_EQ(http_status(errc::validation_failed), 422);
  EXPECT_EQ(http_status(errc::payload_too_large), 413);
  EXPECT_EQ(http_status(errc::header_too_large), 431);
  EXPECT_EQ(http_status(errc::unavailable), 503);
  auto info = describe(make_error(errc::sold_out, "gone"));
  EXPECT_EQ(info.code, errc::sold_out);
  EXPECT_EQ(info.message, "gone");
  EXPECT_EQ(describe(caf::make_error(caf::sec::request_timeout)).code, errc::unavailable);
}

TEST(Crypto, test_base64url_and_order_ids) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00\x01"}) {
    std::string back;
    ASSERT_TRUE(base64url_decode(base64url_encode(s), back));
    EXPECT_EQ(back, s);
  }
  std::string out;
  EXPECT_FALSE(base64url_decode("ab+/", out));
  auto a = derive_order_id("secret", "u1", "s1", "key");
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, derive_order_id("secret", "u1", "s1", "key"));
  EXPECT_NE(a, derive_order_id("secret", "u2", "s1", "key"));
  EXPECT_NE(a, derive_order_id("secret", "u1", "s2", "key"));
  EXPECT_NE(a, derive_order_id("other", "u1", "s1", "key"));
}

TEST(Crypto, test_random_ids_are_hex_and_never_repeat_across_pool_refills) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) { // 2000 x 16 bytes: several 4 KiB refills
    auto id = random_id_hex(16);
    ASSERT_EQ(id.size(), 32u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ASSERT_TRUE(seen.insert(id).second) << "repeated id " << id;
  }
  EXPECT_EQ(random_id_hex(0), "");
  EXPECT_THROW((void)random_id_hex(65), std::invalid_argument);
}
