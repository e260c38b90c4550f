#pragma once
// A streaming quantile sketch: the Greenwald-Khanna (GK) summary, from M. Greenwald and
// S. Khanna, "Space-efficient online computation of quantile summaries", SIGMOD 2001.
// It builds the reference quantiles of a period (for example a day of a model version's
// traffic) without storing the period's values.
//
// Error bound: after n values, quantile(q) returns a stored value whose rank among the n values
// is within epsilon * n of the target rank max(1, ceil(q * n)), and count_below(v) is within
// epsilon * n of the true count of values < v. With ties, "rank" means some position of the
// returned value in the sorted input. The bound is deterministic: it holds for every input
// order. The minimum and maximum are exact.
//
// How: the summary is a sorted list of tuples (v, g, delta). The sum of g over the tuples up to
// and including v is the lowest rank v can have (rmin), and rmin + delta the highest (rmax).
// GK keeps g + delta <= floor(2 epsilon n) for every tuple, which guarantees a tuple within
// epsilon n of any rank. Values are buffered, sorted and merged in batches: a value inserted
// before tuple t gets g = 1 and delta = g_t + delta_t - 1 (0 below the minimum or above the
// maximum), which bounds its rank by the neighbours' bounds, so batching keeps the invariant.
// After each merge, adjacent tuples are combined while the invariant allows.
//
// Cost: add() is O(1) amortized plus an O(b log b) sort of each batch of b buffered values and
// an O(s + b) merge with the s tuples. The summary keeps O((1/epsilon) log(epsilon n)) tuples
// in GK's analysis. This simpler combine rule (no GK bands) is not proven to meet that space
// bound, so memory_bytes() reports the real size (728 tuples, 76 kB with the buffers, for
// epsilon 0.001 after a million uniform values in tests/model/quantile_sketch_test.cpp).
//
// Thread safety: none. quantile() and count_below() are const but flush the buffer, so even
// concurrent reads need a lock.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace tocsin::model {

class quantile_sketch {
public:
    // Throws std::invalid_argument unless 0 < epsilon < 0.5.
    explicit quantile_sketch(double epsilon = 0.001);

    // Adds one value. Throws std::invalid_argument for a value that is not finite.
    void add(double value);

    std::uint64_t count() const { return count_; }
    double epsilon() const { return epsilon_; }

    // Returns a value whose rank is within epsilon * count() of max(1, ceil(q * count())), or
    // std::nullopt when the sketch is empty. Throws std::invalid_argument unless 0 <= q <= 1.
    std::optional<double> quantile(double q) const;

    // Returns an estimate of the count of added values < value, within epsilon * count().
    double count_below(double value) const;

    // Tuples in the summary, after flushing the buffer.
    std::size_t tuple_count() const;

    // Approximate heap and object size in bytes.
    std::size_t memory_bytes() const;

private:
    struct tuple {
        double value;
        std::uint64_t g;
        std::uint64_t delta;
    };

    void flush() const;
    void combine() const;

    double epsilon_;
    std::size_t buffer_capacity_;
    std::uint64_t count_ = 0;
    mutable std::uint64_t merged_count_ = 0;
    mutable std::vector<tuple> tuples_;
    mutable std::vector<double> buffer_;
    mutable std::vector<tuple> scratch_;
};

}  // namespace tocsin::model
