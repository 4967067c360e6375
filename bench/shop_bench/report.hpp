#pragma once
// Results of a run: counts by outcome and latency per request kind, printed
// as a table, written as JSON and, with gnuplot, drawn as a PNG.

#include <map>
#include <string>
#include <vector>

#include "bench/shop_bench/histogram.hpp"

namespace shop::bench {

/// Outcome classes of a flash sale, in table order.
enum outcome : int { ok_201, ok_2xx, sold_out, limit_exceeded, other_409, rate_limited, unavailable, client_error, server_error, transport_error, outcome_count };

const char* outcome_name(int o) noexcept;

/// Classifies a status and body.
int classify(int status, const std::string& body) noexcept;

struct kind_stats {
  std::string name;
  histogram latency;             // microseconds
  uint64_t outcomes[outcome_count] = {};
  uint64_t count = 0;
};

struct run_report {
  std::string mode;
  double seconds = 0;
  std::vector<kind_stats> kinds;
  /// (seconds since start, latency us) of every answer, for the plot.
  std::vector<std::pair<float, float>> samples;
  std::map<std::string, std::string> facts; // extra key/values (audit, settings)

  void print_table() const;
  bool write_json(const std::string& path) const;
  /// Draws latency over time and the percentile curve with gnuplot. Returns an error text or "".
  std::string write_plot(const std::string& png_path) const;
};

} // namespace shop::bench
