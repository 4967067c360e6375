#pragma once
// The node's OpenAPI document (docs/openapi.yaml), compiled in at build time
// and served at GET /openapi.yaml.

#include <string_view>

namespace shop::edge {

/// docs/openapi.yaml as it was when shopd was built.
std::string_view openapi_yaml() noexcept;

} // namespace shop::edge
