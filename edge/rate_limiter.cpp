#include "edge/rate_limiter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace shop::edge {

rate_limiter::rate_limiter(rate_limit limit, size_t max_keys)
  : limit_(limit), max_keys_(std::max<size_t>(1, max_keys)) {
  limit_.burst = std::max(1.0, limit_.burst);
}

std::chrono::milliseconds rate_limiter::take(std::string_view key, clock::time_point now) {
  if (!enabled())
    return std::chrono::milliseconds{0};
  sweep_some(now);
  auto it = buckets_.find(std::string{key});
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) { // until sweeping frees some
      ++untracked_;
      return std::chrono::milliseconds{0};
    }
    it = buckets_.emplace(std::string{key}, bucket{limit_.burst, now}).first;
  }
  auto& b = it->second;
  // Callers on more than one thread take in the order they run, not in the
  // order their requests arrived: a time before the bucket's last one counts
  // as that one, or the time between the two would be refilled twice.
  now = std::max(now, b.updated);
  auto elapsed = std::chrono::duration<double>(now - b.updated).count();
  b.tokens = std::min(limit_.burst, b.tokens + elapsed * limit_.rate);
  b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::chrono::milliseconds{0};
  }
  // At most a day, whatever the rate: the conversion must stay in range.
  auto wait_ms = std::min(86'400'000.0, std::ceil((1 - b.tokens) / limit_.rate * 1e3));
  return std::chrono::milliseconds{std::max<int64_t>(1, static_cast<int64_t>(wait_ms))};
}

void rate_limiter::sweep_some(clock::time_point now) {
  // A few hash buckets per call, round the table: a bucket of tokens that is
  // full again by now carries no information and is forgotten. Erasing does
  // not rehash, so the positions stay valid while we go.
  auto n = buckets_.bucket_count();
  if (n == 0 || buckets_.empty())
    return;
  for (int step = 0; step < 2; ++step) {
    sweep_pos_ = (sweep_pos_ + 1) % n;
    full_.clear();
    for (auto it = buckets_.begin(sweep_pos_); it != buckets_.end(sweep_pos_); ++it) {
      auto elapsed = std::chrono::duration<double>(now - it->second.updated).count();
      if (it->second.tokens + elapsed * limit_.rate >= limit_.burst)
        full_.push_back(it->first);
    }
    for (auto& k : full_)
      buckets_.erase(k);
  }
}

std::string client_key(std::string_view address) {
  std::string text{address};
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) != 1)
    return text; // IPv4 (or not an address at all: taken as it is)
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    char v4[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &v6.s6_addr[12], v4, sizeof(v4));
    return v4;
  }
  char prefix[64];
  std::snprintf(prefix, sizeof(prefix), "%02x%02x:%02x%02x:%02x%02x:%02x%02x::/64", v6.s6_addr[0],
                v6.s6_addr[1], v6.s6_addr[2], v6.s6_addr[3], v6.s6_addr[4], v6.s6_addr[5],
                v6.s6_addr[6], v6.s6_addr[7]);
  return prefix;
}

} // namespace shop::edge
