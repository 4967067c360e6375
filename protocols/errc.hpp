#pragma once
// The domain error vocabulary shared by every layer, and its HTTP mapping.
// Actors report failures as caf::error values of category "shop"; the edge
// maps them to a status and the JSON error shape of API.md in one place.

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace shop {

enum class errc : uint8_t {
  bad_request = 1,
  invalid_json,
  validation_failed,
  unauthorized,
  forbidden,
  not_found,
  method_not_allowed,
  conflict,
  sold_out,
  limit_exceeded,
  sale_not_active,
  insufficient_stock,
  payload_too_large,
  header_too_large,
  rate_limited,
  unavailable,
  internal,
  request_timeout,
};

/// The error category atom of every shop error.
constexpr caf::atom_value errc_category = caf::atom("shop");

/// The machine-readable code of API.md, e.g. "sold_out".
[[nodiscard]] std::string_view to_code(errc x) noexcept;

/// The HTTP status API.md assigns to `x`.
[[nodiscard]] int http_status(errc x) noexcept;

/// Makes a CAF error of category "shop"; `message` is the human-readable text.
[[nodiscard]] caf::error make_error(errc x, std::string message = {});

/// A decoded caf::error: the shop code (internal or unavailable for system errors) and a message.
struct error_info {
  errc code = errc::internal;
  std::string message;
};

/// Translates any caf::error: shop errors keep their code and text; a request
/// timeout, a dead receiver or a crashed entity become `unavailable` (503).
[[nodiscard]] error_info describe(const caf::error& err);

} // namespace shop
