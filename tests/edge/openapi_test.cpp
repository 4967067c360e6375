// docs/openapi.yaml (compiled in, served at GET /openapi.yaml) describes
// exactly the routes the node serves: a route added without its
// documentation, or documented and gone, fails here.

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "edge/api.hpp"
#include "edge/openapi.hpp"

using namespace shop::edge;

namespace {

using route_set = std::set<std::pair<std::string, std::string>>;

/// The (METHOD, path) pairs of the document's `paths:` section. The document
/// keeps paths at two spaces of indentation and methods at four.
route_set documented_routes(std::string_view yaml) {
  route_set out;
  std::istringstream in{std::string{yaml}};
  static const std::regex path_line{R"(^  (/\S*):\s*$)"};
  static const std::regex method_line{R"(^    (get|put|post|patch|delete|head|options):\s*$)"};
  bool in_paths = false;
  std::string path;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != ' ' && line[0] != '#') { // a top-level key
      in_paths = line.rfind("paths:", 0) == 0;
      continue;
    }
    std::smatch m;
    if (!in_paths)
      continue;
    if (std::regex_match(line, m, path_line)) {
      path = m[1];
    } else if (std::regex_match(line, m, method_line)) {
      std::string method = m[1];
      for (auto& ch : method)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      out.emplace(method, path);
    }
  }
  return out;
}

} // namespace

TEST(OpenApi, test_the_document_lists_exactly_the_routes_the_node_serves) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  api_options opts;
  opts.fault_injection = true; // every optional route on
  opts.sandbox_payments = true;
  route_set served;
  {
    node_probe probe;
    probe.fail_storage_writes = [](uint32_t) {};
    api a{sys, caf::actor{}, "jwt-secret", "payment-secret", opts, probe};
    for (auto& r : a.routes())
      served.insert(r);
  }
  ASSERT_GT(served.size(), 20u);
  auto yaml = openapi_yaml();
  EXPECT_EQ(yaml.rfind("openapi: 3.", 0), 0u);
  auto documented = documented_routes(yaml);
  for (auto& r : served)
    EXPECT_TRUE(documented.count(r)) << r.first << " " << r.second << " is not documented";
  for (auto& r : documented)
    EXPECT_TRUE(served.count(r)) << r.first << " " << r.second << " is documented, not served";
}
