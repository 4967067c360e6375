#pragma once
// JSON in (simdjson on-demand, strict: every field's type, range and length
// is checked, unknown and duplicate fields are refused, trailing content is
// refused) and JSON out (a small writer). No I/O here.

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "protocols/types.hpp"

namespace shop {

/// Appends `s` to `out` escaped for the inside of a JSON string; bytes that
/// are not well-formed UTF-8 become U+FFFD, so the result is always valid.
void append_json_escaped(std::string& out, std::string_view s);

/// Appends JSON text to a string; the caller keeps the structure balanced.
class json_writer {
public:
  json_writer& begin_object();
  json_writer& end_object();
  json_writer& begin_array();
  json_writer& end_array();
  /// Writes `"name":` (with a comma when needed).
  json_writer& key(std::string_view name);
  json_writer& value(std::string_view s);
  json_writer& value(const char* s) { return value(std::string_view{s}); }
  json_writer& value(int64_t n);
  json_writer& value(bool b);
  json_writer& null();
  json_writer& time(millis t);
  template <class T>
  json_writer& field(std::string_view name, const T& v) {
    key(name);
    return value(v);
  }
  std::string& str() { return out_; }
  std::string take() { return std::move(out_); }

private:
  void comma();
  std::string out_;
  bool need_comma_ = false;
};

/// Formats `t` as RFC 3339 UTC with milliseconds, e.g. 2026-11-22T10:00:00.000Z.
[[nodiscard]] std::string format_time(millis t);

/// Parses RFC 3339 (`Z` or a `+hh:mm` offset, optional fraction). Returns false on bad input.
[[nodiscard]] bool parse_time(std::string_view s, millis& out);

/// True for ids of API.md: [A-Za-z0-9._-]{1,64}.
[[nodiscard]] bool is_valid_id(std::string_view s) noexcept;

// -- request decoders: each returns a validation error (errc::invalid_json or
// errc::validation_failed, with a message naming the field) or the value ----

/// `{"username","password"}`; `strict` applies the registration rules
/// (username 3..32 of [a-z0-9_], password 8..128).
[[nodiscard]] caf::expected<login_user> decode_credentials(std::string_view body, bool strict);
/// The registration rule for usernames: [a-z0-9_]{3,32}.
[[nodiscard]] bool is_valid_username(std::string_view s) noexcept;
/// The registration rule for passwords: UTF-8 text of 8 to 128 characters.
[[nodiscard]] bool is_valid_new_password(std::string_view s) noexcept;
[[nodiscard]] caf::expected<product_record> decode_create_product(std::string_view body);
[[nodiscard]] caf::expected<update_product> decode_update_product(std::string_view body);
/// `{"quantity"}`, 1..10^9.
[[nodiscard]] caf::expected<int64_t> decode_restock(std::string_view body);
[[nodiscard]] caf::expected<sale_terms> decode_create_sale(std::string_view body);
/// `{"quantity"}` (default 1, range 1..max_purchase_quantity); an empty body means `{}`.
[[nodiscard]] caf::expected<int64_t> decode_purchase(std::string_view body);
/// Fault injection (tests and drills): `{"kind","id"}` of an entity to crash.
struct crash_request {
  std::string kind;
  std::string id;
};
[[nodiscard]] caf::expected<crash_request> decode_crash_request(std::string_view body);
/// Fault injection: `{"groups"}`, the number of group commits to fail (1 to 1000).
[[nodiscard]] caf::expected<int64_t> decode_storage_fault(std::string_view body);

constexpr int64_t max_purchase_quantity = 10000;
/// Most lines in one order or cart.
constexpr int64_t max_order_lines = 100;
/// Largest quantity of one cart line (API.md: 1..999; 0 removes the line).
constexpr int64_t max_cart_quantity = 999;

/// POST /orders: `{"items":[{"sku","quantity"}...]}` or `{"from_cart":true}`;
/// a `coupon` is refused (no coupon exists yet).
[[nodiscard]] caf::expected<checkout> decode_checkout(std::string_view body);
/// PUT /cart/items/{sku}: `{"quantity"}`, 0..max_cart_quantity.
[[nodiscard]] caf::expected<int64_t> decode_cart_quantity(std::string_view body);
/// POST /orders/{id}/pay: `{"method"}`, one of card, alipay, wechat.
[[nodiscard]] caf::expected<std::string> decode_pay(std::string_view body);
/// POST /payments/callback (the body whose signature was checked).
[[nodiscard]] caf::expected<payment_callback> decode_payment_callback(std::string_view body);
/// POST /payments/{id}/sandbox-complete: `{"status"}`; true for succeeded.
[[nodiscard]] caf::expected<bool> decode_sandbox_complete(std::string_view body);
/// The callback body a gateway sends (the sandbox gateway signs this).
[[nodiscard]] std::string encode_payment_callback(const payment_callback& x);

// -- response encoders --------------------------------------------------------

[[nodiscard]] std::string to_json(const product_view& x);
[[nodiscard]] std::string to_json(const inventory_view& x);
[[nodiscard]] std::string to_json(const sale_view& x);
[[nodiscard]] std::string to_json(const order_record& x);
[[nodiscard]] std::string to_json(const user_view& x);
[[nodiscard]] std::string to_json(const cart_view& x);
[[nodiscard]] std::string to_json(const product_page& x);
/// `pay_url` empty writes null.
[[nodiscard]] std::string to_json(const payment_view& x, std::string_view pay_url);
/// The error shape of API.md.
[[nodiscard]] std::string error_json(std::string_view code, std::string_view message,
                                     std::string_view request_id);

} // namespace shop
