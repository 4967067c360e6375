#pragma once
// Lock-free metric primitives shared by every layer, and their Prometheus
// text exposition (format 0.0.4). A metric object lives as long as its owner
// (one per node); any thread may update it.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace shop {

/// A cumulative histogram of durations in seconds with fixed bucket bounds.
class latency_histogram {
public:
  static constexpr std::array<double, 14> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                    0.005,  0.01,    0.025,  0.05,  0.1,
                                                    0.25,   0.5,     1.0,    5.0};

  void observe_us(uint64_t micros) noexcept {
    double secs = static_cast<double>(micros) / 1e6;
    size_t i = 0;
    while (i < bounds.size() && secs > bounds[i])
      ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(micros, std::memory_order_relaxed);
  }

  /// Appends `name_bucket{labels,le=..}`, `name_sum` and `name_count` lines.
  void write(std::string& out, std::string_view name, std::string_view labels) const;

private:
  std::array<std::atomic<uint64_t>, bounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

/// Appends a `# HELP` and `# TYPE` header.
void write_metric_header(std::string& out, std::string_view name, std::string_view type,
                         std::string_view help);

/// Appends a whole unlabelled metric: its header and its one sample.
/// `type` is "gauge" or "counter".
void write_metric(std::string& out, std::string_view name, std::string_view type,
                  std::string_view help, double value);

/// Appends one sample line `name{labels} value`.
void write_sample(std::string& out, std::string_view name, std::string_view labels,
                  double value);

} // namespace shop
