#pragma once
// Sliding windows of samples and the range functions evaluated over them: rate, increase,
// delta, avg/min/max/quantile_over_time.
//
// A window at evaluation time t covers [t - W, t], both ends inclusive. NaN samples are
// skipped by every function, so a mean over [3, 5, NaN, 2] is 3.333.
//
// Thread safety: none; each window belongs to one engine binding.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "rules/clock.hpp"
#include "rules/rule.hpp"

namespace tocsin {

struct timed_sample {
    time_ms t = 0;
    double v = 0;
};

// A ring buffer of one series' samples, oldest first, with increasing timestamps.
class sample_window {
public:
    // Maximum samples kept. Past it the oldest sample is dropped, so one high-frequency
    // series cannot grow without bound.
    static constexpr std::uint32_t max_samples = 1u << 16;

    // Appends a sample and drops the samples older than `t - window`. Timestamps must
    // increase; the engine drops duplicate and out-of-order samples before this point.
    void push(time_ms t, double v, milliseconds window);
    void clear() { head_ = count_ = 0; }

    std::size_t size() const { return count_; }
    // 0 is the oldest sample.
    const timed_sample& operator[](std::size_t i) const { return ring_[(head_ + i) & (capacity_ - 1)]; }
    // Heap bytes held by the ring buffer.
    std::size_t capacity_bytes() const { return std::size_t{capacity_} * sizeof(timed_sample); }

private:
    void grow();

    std::unique_ptr<timed_sample[]> ring_;
    std::uint32_t capacity_ = 0; // a power of two, or 0
    std::uint32_t head_ = 0;
    std::uint32_t count_ = 0;
};

// Applies `x` to the samples of `window` that fall in [t - x.window, t]. Returns nullopt when
// there is no value: fewer than two numeric samples for rate/increase/delta, none for the
// others, or a transform_kind::none. `scratch` is reused by quantile to avoid allocating.
std::optional<double> evaluate_window(const sample_window& window, const transform& x, time_ms t,
                                      std::vector<double>& scratch);

} // namespace tocsin
