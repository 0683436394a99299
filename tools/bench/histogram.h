// A log-linear latency histogram (64 sub-buckets per power of two: ≤ 1.6 % error), fixed size,
// no allocation per sample; one per event loop, merged at the end.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace derp::bench {

class Histogram {
 public:
  void add(uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
    if (ns > max_) max_ = ns;
  }
  void merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    if (o.max_ > max_) max_ = o.max_;
  }
  uint64_t count() const { return total_; }
  uint64_t max() const { return max_; }
  // The value at quantile q (0..1): the upper edge of the bucket holding that rank, capped at max.
  uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total_));
    if (rank >= total_) rank = total_ - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > rank) {
        uint64_t v = upper(i);
        return v < max_ ? v : max_;
      }
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 6;
  static constexpr size_t kBuckets = (64 - kSubBits + 1) << kSubBits;
  static size_t index(uint64_t v) {
    if (v < (1u << kSubBits)) return static_cast<size_t>(v);
    const int msb = 63 - std::countl_zero(v);
    const int shift = msb - kSubBits;
    return (static_cast<size_t>(shift + 1) << kSubBits) +
           static_cast<size_t>((v >> shift) & ((1u << kSubBits) - 1));
  }
  static uint64_t upper(size_t i) {
    if (i < (1u << kSubBits)) return i;
    const int shift = static_cast<int>(i >> kSubBits) - 1;
    const uint64_t sub = i & ((1u << kSubBits) - 1);
    return (((uint64_t{1} << kSubBits) + sub + 1) << shift) - 1;
  }
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

}  // namespace derp::bench
