#pragma once
// JWT HS256 for the edge's auth middleware. The algorithm is pinned: a token
// whose header names any other `alg` (including "none") is refused before
// its signature is looked at. Signatures are compared in constant time.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include <caf/expected.hpp>

#include "protocols/types.hpp"

namespace shop::edge {

struct jwt_claims {
  std::string sub;  // user id
  std::string name; // username: the account entity's key (/users/me checks its id is `sub`)
  user_role role = user_role::user;
  int64_t exp = 0;  // seconds since the epoch
};

/// Not synchronised (the cache is not locked): each of the edge's bridge actors
/// has its own.
class jwt_codec {
public:
  explicit jwt_codec(std::string secret);

  [[nodiscard]] std::string issue(const jwt_claims& claims) const;

  /// Verifies signature, algorithm and expiry. Errors are errc::unauthorized
  /// with a reason. Verified tokens are cached (claims are immutable); the
  /// expiry is checked on every call.
  [[nodiscard]] caf::expected<jwt_claims> verify(std::string_view token, int64_t now_secs);

private:
  std::string secret_;
  std::unordered_map<std::string, jwt_claims> cache_;
};

} // namespace shop::edge
