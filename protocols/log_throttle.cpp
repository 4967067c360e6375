#include "protocols/log_throttle.hpp"

namespace shop {

bool log_throttle::allow(uint64_t& held_back, clock::time_point now) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (logged_ && now - last_ < interval_) {
    ++held_back_;
    return false;
  }
  logged_ = true;
  last_ = now;
  held_back = held_back_;
  held_back_ = 0;
  return true;
}

std::string log_throttle::held_back_note(uint64_t held_back) {
  if (held_back == 0)
    return {};
  return " (and " + std::to_string(held_back) + " more since the last line)";
}

} // namespace shop
