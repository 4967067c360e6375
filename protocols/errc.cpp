#include "protocols/errc.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace shop {

std::string_view to_code(errc x) noexcept {
  switch (x) {
    case errc::bad_request: return "bad_request";
    case errc::invalid_json: return "invalid_json";
    case errc::validation_failed: return "validation_failed";
    case errc::unauthorized: return "unauthorized";
    case errc::forbidden: return "forbidden";
    case errc::not_found: return "not_found";
    case errc::method_not_allowed: return "method_not_allowed";
    case errc::conflict: return "conflict";
    case errc::sold_out: return "sold_out";
    case errc::limit_exceeded: return "limit_exceeded";
    case errc::sale_not_active: return "sale_not_active";
    case errc::insufficient_stock: return "insufficient_stock";
    case errc::payload_too_large: return "payload_too_large";
    case errc::header_too_large: return "header_too_large";
    case errc::rate_limited: return "rate_limited";
    case errc::unavailable: return "unavailable";
    case errc::internal: return "internal";
    case errc::request_timeout: return "request_timeout";
  }
  return "internal";
}

int http_status(errc x) noexcept {
  switch (x) {
    case errc::bad_request:
    case errc::invalid_json: return 400;
    case errc::validation_failed: return 422;
    case errc::unauthorized: return 401;
    case errc::forbidden: return 403;
    case errc::not_found: return 404;
    case errc::method_not_allowed: return 405;
    case errc::conflict:
    case errc::sold_out:
    case errc::limit_exceeded:
    case errc::sale_not_active:
    case errc::insufficient_stock: return 409;
    case errc::request_timeout: return 408;
    case errc::payload_too_large: return 413;
    case errc::header_too_large: return 431;
    case errc::rate_limited: return 429;
    case errc::unavailable: return 503;
    case errc::internal: return 500;
  }
  return 500;
}

caf::error make_error(errc x, std::string message) {
  if (message.empty())
    return caf::error{static_cast<uint8_t>(x), errc_category};
  return caf::error{static_cast<uint8_t>(x), errc_category,
                    caf::make_message(std::move(message))};
}

error_info describe(const caf::error& err) {
  error_info out;
  if (err.category() == errc_category) {
    out.code = static_cast<errc>(err.code());
    auto& ctx = err.context();
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      out.message = ctx.get_as<std::string>(0);
    else
      out.message = std::string{to_code(out.code)};
    return out;
  }
  out.code = errc::unavailable;
  if (err == caf::sec::request_timeout)
    out.message = "the owning actor did not answer in time";
  else if (err == caf::sec::request_receiver_down)
    out.message = "the owning actor stopped; retry";
  else
    out.message = "the owning actor failed; retry";
  return out;
}

} // namespace shop
