#pragma once
// One log line per interval for a warning that each of many events would
// repeat: a quarantined SKU that every cancel asks in vain, a product listed
// without its stock on every page. The lines held back are counted, so the
// next line can say how many there were.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace shop {

class log_throttle {
public:
  using clock = std::chrono::steady_clock;

  explicit log_throttle(std::chrono::milliseconds interval) : interval_(interval) {}

  /// True if a line may be logged at `now` (the first time, and once
  /// `interval` has passed since the last one); then `held_back` is how many
  /// were refused since the last line, and the count starts again. Thread-safe.
  bool allow(uint64_t& held_back, clock::time_point now = clock::now());

  /// The end of a line that `allow` let through: " (and N more since the last
  /// line)", or "" when none was held back.
  static std::string held_back_note(uint64_t held_back);

private:
  std::mutex mtx_;
  std::chrono::milliseconds interval_;
  bool logged_ = false;
  clock::time_point last_{};
  uint64_t held_back_ = 0;
};

} // namespace shop
