#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>

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
  // A long unknown name is named by its start, cut between characters.
  std::string name = "a";
  for (int i = 0; i < 30'000; ++i)
    name += "\xC3\xA9";
  r = decode_purchase(R"({")" + name + R"(":1})");
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::validation_failed);
  EXPECT_EQ(describe(r.error()).message,
            "field '" + name.substr(0, 63) + "...' is not accepted here");
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

TEST(JsonDecode, test_content_after_the_object_is_named_as_such_and_a_cut_object_is_not) {
  for (auto bad : {R"({"quantity":1}x)", R"({"quantity":1}0)", R"({"quantity":1} null)",
                   R"({"quantity":1},)", R"({"quantity":1}])", R"({"quantity":1}})",
                   R"({"quantity":1} {"a":1})", R"( {"a":"}{","b":[{}]} x)"}) {
    auto r = decode_purchase(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::invalid_json) << bad;
    EXPECT_EQ(describe(r.error()).message, "malformed JSON: trailing content after the JSON object")
      << bad;
  }
  // Cut, or malformed before its end: the parser's own words, not "trailing".
  for (auto bad : {R"({"quantity":1)", R"({"quantity":1]x)", R"({"quantity":}x)",
                   R"({"a":"}"x)", R"({"quantity":1,}x)"}) {
    auto r = decode_purchase(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::invalid_json) << bad;
    EXPECT_EQ(describe(r.error()).message.find("trailing"), std::string::npos) << bad;
  }
  // Whitespace after the object is no content.
  EXPECT_EQ(*decode_purchase("{\"quantity\":2} \r\n\t"), 2);
}

TEST(JsonDecode, test_a_malformed_number_is_invalid_json_and_a_huge_one_is_out_of_range) {
  // The parser reports both as a problem with a number; only the second is JSON.
  for (auto bad : {"0x1", "01", "-01", "1.", "1e", "1e+", "-", "--1", "-Infinity", "-NaN",
                   "1_000", "1x", "1true", "1\"a\"", "1-2", ".5", "+1"}) {
    auto r = decode_purchase(std::string{R"({"quantity":)"} + bad + "}");
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::invalid_json) << bad;
  }
  for (auto huge : {"18446744073709551616", "-99999999999999999999999", "1e400", "-1E+400",
                    "0.5e999"}) {
    auto r = decode_purchase(std::string{R"({"quantity":)"} + huge + "}");
    ASSERT_FALSE(r) << huge;
    EXPECT_EQ(code_of(r.error()), errc::validation_failed) << huge;
  }
  // A digit in a string is no number; a huge number after one is still JSON.
  for (auto name : {R"(01 \" 0x1)", R"(a\\)", R"(\\\" 01)"}) {
    auto r = decode_create_product(std::string{R"({"sku":"p1","name":")"} + name
                                   + R"(","price_cents":18446744073709551616,"stock":1})");
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(code_of(r.error()), errc::validation_failed) << name;
  }
  // The parser stops at a huge number: a fault after it is still found.
  for (auto bad : {R"({"quantity":18446744073709551616 "x":1})",
                   R"({"quantity":1e400,})", R"({"quantity":[1e400 2]})",
                   R"({"quantity":-1e400} x)"}) {
    auto r = decode_purchase(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::invalid_json) << bad;
  }
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

TEST(JsonDecode, test_lengths_count_characters_not_bytes) {
  auto credentials = [](const std::string& password) {
    return R"({"username":"alice","password":")" + password + R"("})";
  };
  auto e_acute = [](int n) {
    std::string s;
    for (int i = 0; i < n; ++i)
      s += "\xC3\xA9"; // "é": two bytes, one character
    return s;
  };
  // "ééé€": 4 characters in 9 bytes, too short.
  auto four = decode_credentials(credentials("\xC3\xA9\xC3\xA9\xC3\xA9\xE2\x82\xAC"), true);
  ASSERT_FALSE(four);
  EXPECT_EQ(code_of(four.error()), errc::validation_failed);
  EXPECT_TRUE(decode_credentials(credentials(e_acute(8)), true));
  EXPECT_TRUE(decode_credentials(credentials(e_acute(128)), true)); // 256 bytes
  EXPECT_FALSE(decode_credentials(credentials(e_acute(129)), true));
  // A product name's 200 are characters too.
  auto product = [](const std::string& name) {
    return decode_create_product(R"({"sku":"p1","name":")" + name
                                 + R"(","price_cents":1,"stock":1})");
  };
  EXPECT_TRUE(product(e_acute(200)));
  EXPECT_FALSE(product(e_acute(201)));
}

// A product's name is one line of text that names something; its description
// may break lines. Control characters (a NUL, an escape that would drive the
// terminal of whoever reads a log or an export) are refused in both, and so is
// a name of spaces alone: 422, naming the field.
TEST(JsonDecode, test_product_text_holds_no_control_characters_and_a_name_is_not_blank) {
  auto create = [](const std::string& name, const std::string& description) {
    return decode_create_product(R"({"sku":"p1","name":")" + name + R"(","description":")"
                                 + description + R"(","price_cents":1})");
  };
  auto update = [](const std::string& field, const std::string& text) {
    return decode_update_product(R"({")" + field + R"(":")" + text + R"("})");
  };
  auto refused = [](const auto& r, const std::string& field, const std::string& why) {
    ASSERT_FALSE(r) << field << ": " << why;
    EXPECT_EQ(code_of(r.error()), errc::validation_failed);
    auto message = describe(r.error()).message;
    EXPECT_NE(message.find("'" + field + "'"), std::string::npos) << message;
    EXPECT_NE(message.find(why), std::string::npos) << message;
  };
  ASSERT_TRUE(create(" Caf\\u00e9 cr\\u00e8me ", "Line one\\nline two\\r\\n\\tindented"));
  ASSERT_TRUE(update("name", "\\u00a0x")); // a no-break space is not a control character
  ASSERT_TRUE(update("name", "\\u3000\\u5546\\u54c1\\u3000")); // not blank: two visible ones
  ASSERT_TRUE(update("name", "\\ud83d\\ude00")); // one four-byte character (U+1F600)
  ASSERT_TRUE(update("name", "\\u06dd")); // a format character that is drawn (end of ayah)
  ASSERT_TRUE(update("name", "\xe3\x80\x80\xf0\x9f\x98\x80")); // U+3000 and U+1F600, unescaped
  // JSON escapes: NUL, tab, line feed, ESC, DEL and two C1 controls.
  for (auto bad : {"a\\u0000b", "a\\tb", "a\\nb", "\\u001b[2Jx", "a\\u007fb", "a\\u0085b",
                   "a\\u009fb"}) {
    refused(create(bad, ""), "name", "control characters");
    refused(update("name", bad), "name", "control characters");
  }
  // Spaces of any kind, and characters that show nothing, alone are blank too:
  // no-break, em and ideographic spaces, zero-width ones, a byte order mark,
  // direction marks, variation selectors, the Hangul filler, the blank Braille pattern.
  for (auto blank : {" ", "     ", "\\u00a0", "\\u3000\\u3000", "\\u2003 \\u200b", "\\ufeff",
                     "\\u200e\\u202e", "\\ufe0f", "\\u034f\\u180b", "\\udb40\\udd00", "\\u3164",
                     "\\u2800", "\\u202f\\u205f\\u1680"}) {
    refused(create(blank, ""), "name", "blank");
    refused(update("name", blank), "name", "blank");
  }
  for (auto bad : {"a\\u0000b", "\\u001b[31mred", "x\\u0085"}) {
    refused(create("ok", bad), "description", "control characters");
    refused(update("description", bad), "description", "control characters");
  }
  // An empty description, or one of spaces and line breaks, is allowed.
  EXPECT_TRUE(create("ok", ""));
  EXPECT_TRUE(create("ok", " \\n "));
}

// A name is a line of text: the white space at its ends (of any kind) is
// not kept, and the 200 characters count what is. What stands inside stays,
// and so do zero-width characters at the ends (a variation selector makes an
// emoji). A description keeps its text as given.
TEST(JsonDecode, test_a_product_name_loses_the_white_space_at_its_ends) {
  auto create = [](const std::string& name, const std::string& description = "") {
    return decode_create_product(R"({"sku":"p1","name":")" + name + R"(","description":")"
                                 + description + R"(","price_cents":1})");
  };
  auto renamed = [](const std::string& name) {
    return decode_update_product(R"({"name":")" + name + R"("})");
  };
  auto c = create("  Caf\\u00e9  cr\\u00e8me \\u3000\\u00a0", " \\n indented \\n ");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->name, "Caf\xC3\xA9  cr\xC3\xA8me");
  EXPECT_EQ(c->description, " \n indented \n ");
  auto u = renamed("\\u2003x y\\u2028");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->name, "x y");
  auto heart = renamed(" love \\u2764\\ufe0f ");
  ASSERT_TRUE(heart);
  EXPECT_EQ(heart->name, "love \xE2\x9D\xA4\xEF\xB8\x8F");
  auto zero_width = renamed("\\u200bx");
  ASSERT_TRUE(zero_width);
  EXPECT_EQ(zero_width->name, "\xE2\x80\x8Bx");
  std::string longest(200, 'n');
  auto padded = create("   " + longest + "\\u3000");
  ASSERT_TRUE(padded);
  EXPECT_EQ(padded->name, longest);
  EXPECT_FALSE(create(" " + longest + "n "));
  // White space that is a control character is refused, at the ends too.
  for (auto bad : {"Lamp\\n", "\\tLamp", "Lamp\\u0085"}) {
    auto r = create(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(describe(r.error()).message.find("control characters"), std::string::npos);
  }
  // A description is taken as given, its length checked first, as before.
  auto too_long = create("ok", std::string(4001, 'd') + "\\u001b");
  ASSERT_FALSE(too_long);
  EXPECT_NE(describe(too_long.error()).message.find("0 to 4000 characters"), std::string::npos)
    << describe(too_long.error()).message;
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

TEST(JsonDecode, test_checkout_takes_items_or_the_cart_and_refuses_the_rest) {
  auto c = decode_checkout(R"({"items":[{"sku":"a","quantity":2},{"quantity":1,"sku":"b"}]})");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->items.size(), 2u);
  EXPECT_EQ(c->items[1].sku, "b");
  EXPECT_EQ(c->items[0].quantity, 2);
  EXPECT_FALSE(c->from_cart);
  c = decode_checkout(R"({"from_cart":true})");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->from_cart);
  EXPECT_TRUE(c->items.empty());
  std::string many = R"({"items":[)";
  for (int i = 0; i <= max_order_lines; ++i)
    many += (i ? "," : "") + std::string{R"({"sku":"s)"} + std::to_string(i) + R"(","quantity":1})";
  many += "]}";
  for (auto bad : {std::string{"{}"}, std::string{R"({"from_cart":false})"},
                   std::string{R"({"items":[]})"}, std::string{R"({"items":{}})"},
                   std::string{R"({"items":[1]})"}, std::string{R"({"items":[{"sku":"a"}]})"},
                   std::string{R"({"items":[{"quantity":1}]})"},
                   std::string{R"({"items":[{"sku":"a/b","quantity":1}]})"},
                   std::string{R"({"items":[{"sku":"a","quantity":0}]})"},
                   std::string{R"({"items":[{"sku":"a","quantity":1,"quantity":2}]})"},
                   std::string{R"({"items":[{"sku":"a","quantity":1,"price_cents":0}]})"},
                   std::string{R"({"items":[{"sku":"a","quantity":1},{"sku":"a","quantity":1}]})"},
                   std::string{R"({"items":[{"sku":"a","quantity":1}],"from_cart":true})"},
                   std::string{R"({"from_cart":true,"coupon":"X"})"},
                   std::string{R"({"from_cart":true,"status":"paid"})"}, many}) {
    auto r = decode_checkout(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::validation_failed) << bad;
  }
  auto r = decode_checkout(R"({"items":[{"sku":"a","quantity":1})");
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::invalid_json);
}

TEST(JsonDecode, test_fault_injection_bodies) {
  auto crash = decode_crash_request(R"({ "kind": "sku", "id": "p-1" })");
  ASSERT_TRUE(crash);
  EXPECT_EQ(crash->kind, "sku");
  EXPECT_EQ(crash->id, "p-1");
  EXPECT_FALSE(decode_crash_request(R"({"kind":"sku"})"));
  EXPECT_FALSE(decode_crash_request(R"({"kind":"sku","id":"a b"})"));
  EXPECT_EQ(decode_storage_fault(R"({ "groups": 3 })").value(), 3);
  for (auto bad : {R"({"groups":0})", R"({"groups":1001})", R"({"groups":"1"})", R"({})",
                   R"({"groups":1,"more":2})"})
    EXPECT_FALSE(decode_storage_fault(bad)) << bad;
}

TEST(JsonDecode, test_cart_pay_and_callback_bodies) {
  EXPECT_EQ(*decode_cart_quantity(R"({"quantity":0})"), 0);
  EXPECT_EQ(*decode_cart_quantity(R"({"quantity":999})"), 999);
  for (auto bad : {R"({})", R"({"quantity":1000})", R"({"quantity":-1})", R"({"quantity":"1"})"})
    EXPECT_FALSE(decode_cart_quantity(bad)) << bad;
  EXPECT_EQ(*decode_pay(R"({"method":"alipay"})"), "alipay");
  for (auto bad : {R"({})", R"({"method":"cash"})", R"({"method":"card","amount_cents":1})"})
    EXPECT_FALSE(decode_pay(bad)) << bad;
  payment_callback cb{"pay_o1", "o1", true, 2500};
  auto back = decode_payment_callback(encode_payment_callback(cb));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->payment_id, "pay_o1");
  EXPECT_EQ(back->order_id, "o1");
  EXPECT_TRUE(back->succeeded);
  EXPECT_EQ(back->amount_cents, 2500);
  for (auto bad : {R"({"payment_id":"p","order_id":"o","status":"ok","amount_cents":1})",
                   R"({"payment_id":"p","order_id":"o","status":"failed"})",
                   R"({"payment_id":"p","order_id":"o","status":"failed","amount_cents":-1})"})
    EXPECT_FALSE(decode_payment_callback(bad)) << bad;
  EXPECT_FALSE(*decode_sandbox_complete(R"({"status":"failed"})"));
  EXPECT_FALSE(decode_sandbox_complete(R"({})"));
}

TEST(JsonDecode, test_ids_that_no_url_could_name_are_refused) {
  auto product = [](const std::string& sku) {
    return decode_create_product(R"({"sku":")" + sku + R"(","name":"x","price_cents":1,"stock":1})");
  };
  auto sale = [](const std::string& id) {
    return decode_create_sale(
      R"({"id":")" + id
      + R"(","sku":"..","price_cents":10,"quantity":5,"per_user_limit":1,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-02T00:00:00Z"})");
  };
  for (auto bad : {".", ".."}) {
    auto r = product(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(code_of(r.error()), errc::validation_failed) << bad;
    auto s = sale(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(code_of(s.error()), errc::validation_failed) << bad;
  }
  for (auto ok : {"...", ".a", "a..", "-", "_", "A.b-c_9"}) {
    EXPECT_TRUE(product(ok)) << ok;
    EXPECT_TRUE(sale(ok)) << ok;
  }
  // One made before the rule is still named as it is (here as a sale's SKU).
  EXPECT_TRUE(is_valid_id(".."));
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

TEST(JsonTime, test_days_that_do_not_exist_are_refused) {
  millis t = 0;
  EXPECT_FALSE(parse_time("2026-02-29T00:00:00Z", t)); // 2026 is no leap year
  EXPECT_FALSE(parse_time("2026-02-30T00:00:00Z", t)); // was read as 2 March
  EXPECT_FALSE(parse_time("2026-04-31T00:00:00Z", t));
  EXPECT_FALSE(parse_time("1900-02-29T00:00:00Z", t)); // divisible by 100, not by 400
  EXPECT_TRUE(parse_time("2028-02-29T00:00:00Z", t));
  EXPECT_TRUE(parse_time("2000-02-29T00:00:00Z", t));
  EXPECT_TRUE(parse_time("2026-12-31T23:59:59Z", t));
  EXPECT_TRUE(parse_time("2026-01-31T00:00:00Z", t));
}

TEST(JsonTime, test_second_60_only_as_a_leap_second) {
  // UTC inserts a leap second as 23:59:60, read as the next midnight. At any
  // other minute second 60 does not exist: it was read as the next minute.
  millis t = 0;
  ASSERT_TRUE(parse_time("2016-12-31T23:59:60Z", t));
  EXPECT_EQ(format_time(t), "2017-01-01T00:00:00.000Z");
  ASSERT_TRUE(parse_time("2017-01-01T08:59:60+09:00", t)); // the same leap second in Tokyo
  EXPECT_EQ(format_time(t), "2017-01-01T00:00:00.000Z");
  ASSERT_TRUE(parse_time("2016-12-31T18:29:60.5-05:30", t));
  EXPECT_EQ(format_time(t), "2017-01-01T00:00:00.500Z");
  EXPECT_FALSE(parse_time("2020-01-01T00:00:60Z", t));
  EXPECT_FALSE(parse_time("2016-12-31T23:58:60Z", t));
  EXPECT_FALSE(parse_time("2016-12-31T23:59:60+01:00", t)); // 22:59:60 UTC
  EXPECT_FALSE(parse_time("2016-12-31T23:59:61Z", t));
}

TEST(JsonTime, test_instants_past_a_four_digit_year_are_refused) {
  // Every accepted instant is shown as it was meant; these were shown with
  // the year clamped, an ends_at before its starts_at.
  millis t = 0;
  ASSERT_TRUE(parse_time("9999-12-31T23:59:59.999Z", t));
  EXPECT_EQ(format_time(t), "9999-12-31T23:59:59.999Z");
  ASSERT_TRUE(parse_time("0000-01-01T00:00:00Z", t));
  EXPECT_EQ(format_time(t), "0000-01-01T00:00:00.000Z");
  ASSERT_TRUE(parse_time("9999-12-31T23:00:00+01:00", t));
  EXPECT_EQ(format_time(t), "9999-12-31T22:00:00.000Z");
  EXPECT_FALSE(parse_time("9999-12-31T23:00:00-01:00", t));
  EXPECT_FALSE(parse_time("9999-12-31T23:59:60Z", t)); // a leap second into year 10000
  EXPECT_FALSE(parse_time("0000-01-01T00:00:00+00:01", t));
}

TEST(JsonEncode, test_strings_are_escaped) {
  json_writer w;
  w.begin_object().field("k", std::string_view{"a\"b\\c\n\x01"}).end_object();
  EXPECT_EQ(w.str(), R"({"k":"a\"b\\c\n\u0001"})");
}

TEST(JsonEncode, test_invalid_utf8_becomes_replacement_characters) {
  // Well-formed multi-byte text passes unchanged: "é", "€", "😀".
  json_writer ok;
  ok.value(std::string_view{"\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"});
  EXPECT_EQ(ok.str(), "\"\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
  // A stray byte, a cut-off sequence, an overlong "/", a surrogate and a code
  // point above U+10FFFF: each invalid byte is replaced, nothing raw remains.
  json_writer bad;
  bad.value(std::string_view{"/\xFF/\xE2\x82/\xC0\xAF/\xED\xA0\x80/\xF4\x90\x80\x80"});
  EXPECT_EQ(bad.str(), R"("/\ufffd/\ufffd\ufffd/\ufffd\ufffd/\ufffd\ufffd\ufffd/\ufffd\ufffd\ufffd\ufffd")");
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
  // Payment fields round-trip; an order written before they existed still decodes.
  o.payment_id = "pay_o1";
  o.payment_method = "card";
  o.paid_at = 42;
  ASSERT_TRUE(decode(encode(o), back));
  EXPECT_EQ(back.payment_id, "pay_o1");
  EXPECT_EQ(back.paid_at, 42);
  // The source round-trips; orders of formats 1 and 2 (before it was kept)
  // decode with an unknown source.
  o.source = order_source::cart;
  ASSERT_TRUE(decode(encode(o), back));
  EXPECT_EQ(back.source, order_source::cart);
  auto v2 = bytes.substr(0, bytes.size() - 1);
  v2[0] = 2;
  ASSERT_TRUE(decode(v2, back));
  EXPECT_EQ(back.flash_sale_id, "s1");
  EXPECT_EQ(back.source, order_source::unknown);
  // Format 1 (before payments): the same fields without the payment's three.
  auto v1 = bytes.substr(0, bytes.size() - 4);
  v1[0] = 1;
  ASSERT_TRUE(decode(v1, back));
  EXPECT_EQ(back.flash_sale_id, "s1");
  EXPECT_TRUE(back.payment_id.empty());
  EXPECT_EQ(back.paid_at, 0);
  EXPECT_EQ(back.source, order_source::unknown);
  v2[0] = 4; // a format this build does not know
  EXPECT_FALSE(decode(v2, back));
  cart_record cart{{{"a", 2, 1'700'000'000'123}, {"b", 1, 1'700'000'000'456}}, "o7", 42};
  cart_record cart_back;
  auto cart_bytes = encode(cart);
  ASSERT_TRUE(decode(cart_bytes, cart_back));
  ASSERT_EQ(cart_back.items.size(), 2u);
  EXPECT_EQ(cart_back.items[1].sku, "b");
  EXPECT_EQ(cart_back.items[1].quantity, 1);
  EXPECT_EQ(cart_back.items[1].changed_at, 1'700'000'000'456);
  EXPECT_EQ(cart_back.checkout_order, "o7"); // the checkout holding the lines
  EXPECT_EQ(cart_back.checkout_attempt, 42u);
  // Format 2 (before the hold was stored): a line "a" x 2 set at 5; not held.
  const std::string cart_v2{"\x02\x01\x01" "a" "\x04" "\x0a", 6};
  ASSERT_TRUE(decode(cart_v2, cart_back));
  ASSERT_EQ(cart_back.items.size(), 1u);
  EXPECT_EQ(cart_back.items[0].changed_at, 5);
  EXPECT_TRUE(cart_back.checkout_order.empty());
  EXPECT_EQ(cart_back.checkout_attempt, 0u);
  for (size_t n = 0; n < cart_bytes.size(); ++n)
    EXPECT_FALSE(decode(std::string_view{cart_bytes}.substr(0, n), cart_back)) << n;
  // Format 1 (before lines kept their time): sku and quantity per line.
  // format 1, 2 lines, "a" x 2, "b" x 1 (varints; quantities zigzag-encoded)
  const std::string cart_v1{"\x01\x02\x01" "a" "\x04" "\x01" "b" "\x02", 8};
  ASSERT_TRUE(decode(cart_v1, cart_back));
  ASSERT_EQ(cart_back.items.size(), 2u);
  EXPECT_EQ(cart_back.items[0].quantity, 2);
  EXPECT_EQ(cart_back.items[1].sku, "b");
  EXPECT_EQ(cart_back.items[1].changed_at, 0);
  ledger_entry e{"o1", "u1", "s1", 3, 99, 1, 2, reservation_state::sold};
  ledger_entry e2;
  ASSERT_TRUE(decode(encode(e), e2));
  EXPECT_EQ(e2.state, reservation_state::sold);
  EXPECT_EQ(e2.quantity, 3);
  sku_tally t{12, {{"s1", 5}, {"s2", 7}}};
  sku_tally t2;
  auto tb = encode(t);
  ASSERT_TRUE(decode(tb, t2));
  EXPECT_EQ(t2.sold, 12);
  EXPECT_EQ(t2.sales, t.sales);
  for (size_t n = 0; n < tb.size(); ++n)
    EXPECT_FALSE(decode(std::string_view{tb}.substr(0, n), t2)) << n;
  int64_t units = 0;
  ASSERT_TRUE(decode_count(encode_count(1'000'000'007), units));
  EXPECT_EQ(units, 1'000'000'007);
  EXPECT_FALSE(decode_count(encode_count(3) + "x", units));
}

TEST(RecordCodec, test_a_restock_receipt_round_trips_and_a_cut_one_is_refused) {
  restock_receipt r{"delivery/7", "admin-id", 5, {"mug", 15, 2, 3}};
  auto raw = encode(r);
  restock_receipt b;
  ASSERT_TRUE(decode(raw, b));
  EXPECT_EQ(b.idempotency_key, "delivery/7");
  EXPECT_EQ(b.requester, "admin-id");
  EXPECT_EQ(b.quantity, 5);
  EXPECT_EQ(b.answer.sku, "mug");
  EXPECT_EQ(b.answer.available, 15);
  EXPECT_EQ(b.answer.reserved, 2);
  EXPECT_EQ(b.answer.sold, 3);
  for (size_t n = 0; n < raw.size(); ++n)
    EXPECT_FALSE(decode(raw.substr(0, n), b)) << n;
}

TEST(RecordCodec, test_a_creation_receipt_and_its_first_answer_round_trip) {
  product_view pv{{"lamp", "Desk lamp", "warm", 2500, 40}, {"lamp", 40, 0, 0}};
  sale_view sv;
  sv.terms = sale_terms{"s1", "lamp", 1500, 30, 1, 1'000, 2'000};
  sv.remaining = 30;
  sv.status = "active";
  user_view uv{"u1", "carol", user_role::user, 7};
  creation_receipt r{"key-1", "admin-id", encode(pv)};
  creation_receipt rb;
  ASSERT_TRUE(decode(encode(r), rb));
  EXPECT_EQ(rb.idempotency_key, "key-1");
  EXPECT_EQ(rb.requester, "admin-id");
  product_view pb;
  ASSERT_TRUE(decode(rb.answer, pb));
  EXPECT_EQ(pb.product, pv.product);
  EXPECT_EQ(pb.inventory.available, 40);
  sale_view sb;
  ASSERT_TRUE(decode(encode(sv), sb));
  EXPECT_EQ(sb.terms, sv.terms);
  EXPECT_EQ(sb.remaining, 30);
  EXPECT_EQ(sb.status, "active");
  user_view ub;
  ASSERT_TRUE(decode(encode(uv), ub));
  EXPECT_EQ(ub.user_id, "u1");
  EXPECT_EQ(ub.username, "carol");
  EXPECT_EQ(ub.created_at, 7);
  // Truncated or mixed up, nothing decodes.
  auto bytes = encode(sv);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode(std::string_view{bytes}.substr(0, n), sb)) << n;
  EXPECT_FALSE(decode(encode(pv), sb));
  EXPECT_FALSE(decode(encode(uv), pb));
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
  // One text per byte string: "Zm8" is "fo"; "Zm9", "Zm-" ... set bits after
  // the last byte, which no encoder writes.
  EXPECT_TRUE(base64url_decode("Zm8", out));
  EXPECT_EQ(out, "fo");
  EXPECT_FALSE(base64url_decode("Zm9", out));
  EXPECT_FALSE(base64url_decode("Zm-", out));
  EXPECT_TRUE(base64url_decode("Zg", out));
  EXPECT_EQ(out, "f");
  EXPECT_FALSE(base64url_decode("Zh", out));
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

TEST(Crypto, test_new_order_ids_begin_with_their_time_and_sort_by_it) {
  auto millis = [] {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
  };
  auto before = millis();
  auto first = new_order_id();
  auto after = millis();
  ASSERT_EQ(first.size(), 36u); // 12 digits of time, 96 random bits
  ASSERT_EQ(first.find_first_not_of("0123456789abcdef"), std::string::npos);
  auto stamped = std::stoull(first.substr(0, 12), nullptr, 16);
  EXPECT_GE(stamped, before);
  EXPECT_LE(stamped, after);
  std::this_thread::sleep_for(std::chrono::milliseconds{2});
  auto later = new_order_id();
  EXPECT_LT(first, later); // storage inserts it after the first one
  std::set<std::string> seen{first, later};
  for (int i = 0; i < 1000; ++i) // the same millisecond: the random part tells them apart
    ASSERT_TRUE(seen.insert(new_order_id()).second);
}
