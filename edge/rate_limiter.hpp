#pragma once
// Token buckets by key (a user id, a client address): each key may make
// `rate` requests a second on average and up to `burst` at once. Not
// synchronised: its owner locks it where more than one thread uses it (the
// users' limit, which the edge's bridge actors share).
//
// A bucket that has filled up again is the same as no bucket, so buckets are
// forgotten once full: every call looks at two hash buckets of the table, in
// turn, and drops the full ones. Memory follows the keys active lately, with
// no pause to sweep a large table at once. At `max_keys` a key seen for the
// first time is let through untracked rather than refused, and counted.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace shop::edge {

struct rate_limit {
  /// Requests a second per key, on average; 0 turns the limit off.
  double rate = 0;
  /// Requests a key may make at once (the bucket's size); at least 1.
  double burst = 1;
};

class rate_limiter {
public:
  using clock = std::chrono::steady_clock;

  /// `max_keys` bounds the memory, some 100 bytes a key.
  explicit rate_limiter(rate_limit limit, size_t max_keys = 100'000);

  bool enabled() const noexcept { return limit_.rate > 0; }

  /// Takes one token from `key`'s bucket. Returns zero if the request may
  /// go ahead, else how long until the bucket holds a token again.
  std::chrono::milliseconds take(std::string_view key, clock::time_point now);

  /// Keys with a bucket (full ones are dropped as the sweep reaches them).
  size_t tracked() const noexcept { return buckets_.size(); }
  /// Keys let through untracked because `max_keys` buckets were in use.
  uint64_t untracked() const noexcept { return untracked_; }

private:
  struct bucket {
    double tokens;
    clock::time_point updated;
  };
  void sweep_some(clock::time_point now);

  rate_limit limit_;
  size_t max_keys_;
  std::unordered_map<std::string, bucket> buckets_;
  size_t sweep_pos_ = 0;          // the hash bucket swept last
  std::vector<std::string> full_; // reused by sweep_some
  uint64_t untracked_ = 0;
};

/// The key that a client address is limited by: an IPv4 address as is, an
/// IPv6 address by its /64 prefix (what one subscriber usually holds), an
/// IPv4-mapped IPv6 address as the IPv4 address.
std::string client_key(std::string_view address);

} // namespace shop::edge
