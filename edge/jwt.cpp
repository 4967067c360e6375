#include "edge/jwt.hpp"

#include <simdjson.h>

#include "protocols/crypto.hpp"
#include "protocols/errc.hpp"
#include "protocols/json.hpp"

namespace shop::edge {

namespace {

constexpr size_t max_cached_tokens = 200'000;
const std::string header_b64 = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");

caf::error unauthorized(std::string why) {
  return make_error(errc::unauthorized, std::move(why));
}

} // namespace

jwt_codec::jwt_codec(std::string secret) : secret_(std::move(secret)) {
}

std::string jwt_codec::issue(const jwt_claims& c) const {
  json_writer w;
  w.begin_object()
    .field("sub", c.sub)
    .field("name", c.name)
    .field("role", to_string(c.role))
    .field("exp", c.exp)
    .end_object();
  auto signing_input = header_b64 + "." + base64url_encode(w.str());
  auto sig = base64url_encode(hmac_sha256(secret_, signing_input));
  return signing_input + "." + sig;
}

caf::expected<jwt_claims> jwt_codec::verify(std::string_view token, int64_t now_secs) {
  if (auto i = cache_.find(std::string{token}); i != cache_.end()) {
    if (i->second.exp <= now_secs)
      return unauthorized("the token has expired");
    return i->second;
  }
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return unauthorized("malformed token");
  std::string header, payload, sig;
  if (!base64url_decode(token.substr(0, dot1), header)
      || !base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload)
      || !base64url_decode(token.substr(dot2 + 1), sig))
    return unauthorized("malformed token");
  thread_local simdjson::ondemand::parser parser;
  // 1. The algorithm is pinned before anything else is trusted: one `alg`,
  // HS256, and no `crit` (RFC 7515 4.1.11: its extensions are not understood here).
  {
    simdjson::padded_string h{header};
    simdjson::ondemand::document doc;
    simdjson::ondemand::object obj;
    if (parser.iterate(h).get(doc) || doc.get_object().get(obj))
      return unauthorized("unsupported token algorithm");
    int algs = 0;
    for (auto field : obj) {
      std::string_view key, alg;
      if (field.unescaped_key().get(key) || key == "crit")
        return unauthorized("unsupported token algorithm");
      if (key == "alg" && (++algs > 1 || field.value().get_string().get(alg) || alg != "HS256"))
        return unauthorized("unsupported token algorithm");
    }
    if (algs != 1)
      return unauthorized("unsupported token algorithm");
  }
  // 2. The signature, compared in constant time.
  auto expected = hmac_sha256(secret_, token.substr(0, dot2));
  if (!constant_time_equal(expected, sig))
    return unauthorized("invalid token signature");
  // 3. The claims. Each one this node reads may appear once: RFC 7519 lets a
  // parser take the last of two, another parser (a proxy's, a gateway's) may
  // take the first, so a token that names two roles or two expiries is refused,
  // as a header with two `alg` is. `nbf`, when given, is honoured (RFC 7519
  // 4.1.5); this node issues none.
  jwt_claims c;
  int64_t not_before = 0;
  {
    simdjson::padded_string p{payload};
    simdjson::ondemand::document doc;
    simdjson::ondemand::object obj;
    if (parser.iterate(p).get(doc) || doc.get_object().get(obj))
      return unauthorized("malformed token claims");
    enum : unsigned { sub_seen = 1, name_seen = 2, role_seen = 4, exp_seen = 8, nbf_seen = 16 };
    unsigned seen = 0;
    bool ok = true;
    for (auto field : obj) {
      std::string_view key, text;
      if (field.unescaped_key().get(key)) {
        ok = false;
        break;
      }
      unsigned bit = key == "sub"    ? sub_seen
                     : key == "name" ? name_seen
                     : key == "role" ? role_seen
                     : key == "exp"  ? exp_seen
                     : key == "nbf"  ? nbf_seen
                                     : 0u;
      if (bit == 0)
        continue;
      if (seen & bit) {
        ok = false;
        break;
      }
      seen |= bit;
      if (bit == exp_seen || bit == nbf_seen) {
        ok = !field.value().get_int64().get(bit == exp_seen ? c.exp : not_before);
      } else if ((ok = !field.value().get_string().get(text))) {
        // Copied now: the view dies with the next field.
        if (bit == sub_seen)
          c.sub.assign(text);
        else if (bit == name_seen)
          c.name.assign(text);
        else if (text == "admin" || text == "user")
          c.role = text == "admin" ? user_role::admin : user_role::user;
        else
          ok = false;
      }
      if (!ok)
        break;
    }
    if (!ok || c.sub.empty() || c.name.empty() || c.exp == 0)
      return unauthorized("malformed token claims");
  }
  if (c.exp <= now_secs)
    return unauthorized("the token has expired");
  // Not cached until it is valid: the cache checks only the expiry.
  if (not_before > now_secs)
    return unauthorized("the token is not valid yet");
  if (cache_.size() >= max_cached_tokens)
    cache_.clear();
  cache_.emplace(std::string{token}, c);
  return c;
}

} // namespace shop::edge
