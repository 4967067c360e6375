#pragma once
// A latency histogram in the manner of HdrHistogram: log-linear buckets with
// 2^precision_bits sub-buckets per power of two, so every recorded value is
// kept within a relative error of 2^-(precision_bits-1) (0.1% with the
// default 11 bits) from 1 us up to about an hour, in fixed memory.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shop::bench {

class histogram {
public:
  /// `precision_bits` sub-bucket bits (relative error 2^-(bits-1)); values in microseconds.
  explicit histogram(int precision_bits = 11, int64_t max_value = 3'600'000'000);

  void record(int64_t value, int64_t count = 1);
  void merge(const histogram& other);
  void reset();

  uint64_t count() const noexcept { return total_; }
  int64_t min() const noexcept { return total_ ? min_ : 0; }
  int64_t max() const noexcept { return max_; }
  double mean() const noexcept;

  /// The smallest recorded value v (to the histogram's precision) such that
  /// `percentile`% of all values are <= v. percentile in [0, 100].
  int64_t value_at(double percentile) const;

  /// The largest relative error of any reported value.
  double relative_error() const noexcept;

private:
  size_t index_of(int64_t value) const noexcept;
  int64_t highest_equivalent(size_t index) const noexcept;

  int sub_bits_;
  int64_t sub_count_;
  int64_t max_value_;
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  long double sum_ = 0;
};

} // namespace shop::bench
