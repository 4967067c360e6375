#pragma once
// A hash map that never stops the world to grow.
//
// std::unordered_map rehashes all of its entries at once when it grows: with a
// million entries that is a walk over a million scattered nodes, 100 ms and
// more (bench/RESULTS.md, "micro-benchmarks"). An entity's state is touched
// by one thread at a time, so such a pause stalls every actor queued behind
// it on the CAF worker. A SKU in a big sale holds one entry per open
// reservation; this map keeps them instead in `segments` independent maps,
// chosen by the key's hash, each of which grows (and rehashes) on its own:
// the longest pause shrinks by the number of segments.
//
// Small maps stay one segment (no memory cost for the many small ones); the
// split into segments happens once, when the map reaches `split_at` entries,
// and costs one rehash of that size. Pointers and references to values stay
// valid until their entry is erased, across growth and the split (the split
// moves nodes, not values), as in std::unordered_map.

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>

namespace shop {

template <class Key, class T, class Hash = std::hash<Key>, size_t Segments = 256,
          size_t SplitAt = 16384>
class segmented_map {
public:
  using map_type = std::unordered_map<Key, T, Hash>;
  static constexpr size_t segments = Segments;
  static constexpr size_t split_at = SplitAt;
  static_assert(Segments > 1 && (Segments & (Segments - 1)) == 0, "a power of two");

  /// The value under `key`, or nullptr.
  T* find(const Key& key) {
    auto& m = segment_of(key);
    auto i = m.find(key);
    return i == m.end() ? nullptr : &i->second;
  }
  const T* find(const Key& key) const {
    auto& m = segment_of(key);
    auto i = m.find(key);
    return i == m.end() ? nullptr : &i->second;
  }

  /// The value under `key`, inserted (value-initialised) if absent.
  T& operator[](const Key& key) {
    if (!split_ && one_.size() + 1 >= SplitAt)
      split();
    auto& m = segment_of(key);
    auto before = m.size();
    auto& v = m[key];
    size_ += m.size() - before;
    return v;
  }

  /// Removes `key` and returns its value; nullopt if it was absent.
  std::optional<T> take(const Key& key) {
    auto node = segment_of(key).extract(key);
    if (node.empty())
      return std::nullopt;
    --size_;
    return std::move(node.mapped());
  }

  /// Removes `key`; false if it was absent.
  bool erase(const Key& key) {
    if (segment_of(key).erase(key) == 0)
      return false;
    --size_;
    return true;
  }

  void clear() {
    one_ = map_type{};
    many_.reset();
    split_ = false;
    size_ = 0;
  }

  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// Calls f(key, value) for every entry, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    if (!split_) {
      for (auto& [k, v] : one_)
        f(k, v);
      return;
    }
    for (auto& m : *many_)
      for (auto& [k, v] : m)
        f(k, v);
  }

  /// The size of the largest segment (what one rehash may have to move).
  size_t largest_segment() const noexcept {
    if (!split_)
      return one_.size();
    size_t n = 0;
    for (auto& m : *many_)
      n = std::max(n, m.size());
    return n;
  }
  bool is_split() const noexcept { return split_; }

private:
  static constexpr int log2(size_t n) { return n <= 1 ? 0 : 1 + log2(n / 2); }
  static size_t index(size_t hash) noexcept {
    // Fibonacci hashing, then the top bits: some std::hash specialisations are
    // the identity (integers, caf::actor_addr's id), whose top bits are all
    // zero; a segment's own buckets use the plain hash modulo a prime.
    static_assert(std::numeric_limits<size_t>::digits == 64, "a 64-bit size_t");
    return (hash * 0x9E3779B97F4A7C15ull) >> (64 - log2(Segments));
  }

  map_type& segment_of(const Key& key) {
    return split_ ? (*many_)[index(Hash{}(key))] : one_;
  }
  const map_type& segment_of(const Key& key) const {
    return split_ ? (*many_)[index(Hash{}(key))] : one_;
  }

  void split() {
    many_ = std::make_unique<std::array<map_type, Segments>>();
    for (auto& m : *many_)
      m.reserve(2 * SplitAt / Segments);
    while (!one_.empty()) {
      auto node = one_.extract(one_.begin()); // moves the node, allocates nothing
      (*many_)[index(Hash{}(node.key()))].insert(std::move(node));
    }
    one_ = map_type{};
    split_ = true;
  }

  map_type one_;
  std::unique_ptr<std::array<map_type, Segments>> many_;
  bool split_ = false;
  size_t size_ = 0;
};

} // namespace shop
