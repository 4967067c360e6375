#include "bench/shop_bench/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace shop::bench {

histogram::histogram(int precision_bits, int64_t max_value)
  : sub_bits_(precision_bits), sub_count_(int64_t{1} << precision_bits), max_value_(max_value) {
  // Bucket 0 holds [0, sub_count); bucket k >= 1 holds [sub_count << (k-1), sub_count << k)
  // in sub_count/2 slots of width 2^k. Enough buckets to reach max_value.
  int buckets = 1;
  while ((sub_count_ << (buckets - 1)) <= max_value_)
    ++buckets;
  counts_.assign(static_cast<size_t>(sub_count_ + (buckets - 1) * (sub_count_ / 2)), 0);
}

size_t histogram::index_of(int64_t v) const noexcept {
  if (v < sub_count_)
    return static_cast<size_t>(std::max<int64_t>(v, 0));
  // k = number of bits above the sub-bucket range.
  int msb = 63 - __builtin_clzll(static_cast<unsigned long long>(v));
  int k = msb - sub_bits_ + 1;
  int64_t slot = (v >> k) - sub_count_ / 2; // in [0, sub_count/2)
  return static_cast<size_t>(sub_count_ + (k - 1) * (sub_count_ / 2) + slot);
}

int64_t histogram::highest_equivalent(size_t index) const noexcept {
  auto i = static_cast<int64_t>(index);
  if (i < sub_count_)
    return i;
  int64_t k = (i - sub_count_) / (sub_count_ / 2) + 1;
  int64_t slot = (i - sub_count_) % (sub_count_ / 2);
  int64_t low = (slot + sub_count_ / 2) << k;
  return low + (int64_t{1} << k) - 1;
}

void histogram::record(int64_t value, int64_t count) {
  value = std::clamp<int64_t>(value, 0, max_value_);
  counts_[index_of(value)] += static_cast<uint64_t>(count);
  if (total_ == 0 || value < min_)
    min_ = value;
  max_ = std::max(max_, value);
  total_ += static_cast<uint64_t>(count);
  sum_ += static_cast<long double>(value) * count;
}

void histogram::merge(const histogram& other) {
  for (size_t i = 0; i < counts_.size() && i < other.counts_.size(); ++i)
    counts_[i] += other.counts_[i];
  if (other.total_) {
    min_ = total_ ? std::min(min_, other.min_) : other.min_;
    max_ = std::max(max_, other.max_);
  }
  total_ += other.total_;
  sum_ += other.sum_;
}

void histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

double histogram::mean() const noexcept {
  return total_ ? static_cast<double>(sum_ / total_) : 0.0;
}

int64_t histogram::value_at(double percentile) const {
  if (total_ == 0)
    return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The epsilon keeps e.g. 99.9% of 1000 at rank 999: the product is 999.0000000000001.
  auto wanted =
    static_cast<uint64_t>(std::ceil(percentile / 100.0 * static_cast<double>(total_) - 1e-9));
  wanted = std::max<uint64_t>(wanted, 1);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= wanted)
      return std::min(highest_equivalent(i), max_);
  }
  return max_;
}

double histogram::relative_error() const noexcept {
  return 1.0 / static_cast<double>(sub_count_ / 2);
}

} // namespace shop::bench
