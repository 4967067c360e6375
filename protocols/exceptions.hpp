#pragma once
// What an exception says, for the exit reasons and logs of actors that stop
// on one (the entities, the edge's bridge actors).

#include <exception>
#include <string>

namespace shop {

/// The `what()` of the exception in `eptr`, or "unknown exception".
inline std::string exception_text(const std::exception_ptr& eptr) {
  try {
    std::rethrow_exception(eptr);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

} // namespace shop
