#include "rules/window.hpp"

#include <algorithm>
#include <cmath>

namespace tocsin {

void sample_window::grow()
{
    const std::uint32_t next = capacity_ == 0 ? 4 : capacity_ * 2;
    auto ring = std::make_unique<timed_sample[]>(next);
    for (std::uint32_t i = 0; i < count_; ++i) {
        ring[i] = (*this)[i];
    }
    ring_ = std::move(ring);
    capacity_ = next;
    head_ = 0;
}

void sample_window::push(time_ms t, double v, milliseconds window)
{
    const time_ms lower = t - window.count();
    while (count_ > 0 && (*this)[0].t < lower) {
        head_ = (head_ + 1) & (capacity_ - 1);
        --count_;
    }
    if (count_ == capacity_) {
        if (capacity_ >= max_samples) {
            head_ = (head_ + 1) & (capacity_ - 1);
            --count_;
        } else {
            grow();
        }
    }
    ring_[(head_ + count_) & (capacity_ - 1)] = timed_sample{t, v};
    ++count_;
}

namespace {

// The samples of a window inside [lower, upper], skipping NaN.
struct range_view {
    const sample_window& window;
    std::size_t begin = 0;
    std::size_t end = 0;

    template <class F>
    void for_each(F&& f) const
    {
        for (std::size_t i = begin; i < end; ++i) {
            const timed_sample& s = window[i];
            if (!std::isnan(s.v)) {
                f(s);
            }
        }
    }
};

range_view select_range(const sample_window& window, time_ms lower, time_ms upper)
{
    range_view view{window};
    std::size_t i = 0;
    while (i < window.size() && window[i].t < lower) {
        ++i;
    }
    view.begin = i;
    while (i < window.size() && window[i].t <= upper) {
        ++i;
    }
    view.end = i;
    return view;
}

// rate, increase and delta, after Prometheus' extrapolatedRate (promql/functions.go, 2.x).
// A counter drop (a reset) adds the value before the drop, so the increase across the reset
// is the new value itself. Only pairs with both samples in the window are looked at, so a
// reset between a sample outside the window and one inside it is never counted.
std::optional<double> evaluate_change(const range_view& view, const transform& x, time_ms t)
{
    const bool is_counter = x.kind != transform_kind::delta;
    std::size_t n = 0;
    timed_sample first;
    timed_sample previous;
    double corrections = 0;
    view.for_each([&](const timed_sample& s) {
        if (n == 0) {
            first = s;
        } else if (is_counter && s.v < previous.v) {
            corrections += previous.v;
        }
        previous = s;
        ++n;
    });
    if (n < 2) {
        return std::nullopt;
    }
    const timed_sample& last = previous;
    if (last.t <= first.t) {
        return std::nullopt;
    }
    double result = last.v - first.v + corrections;
    const double sampled_seconds = static_cast<double>(last.t - first.t) / 1000.0;
    const double window_seconds = static_cast<double>(x.window.count()) / 1000.0;

    if (!x.extrapolate) {
        // Raw: increase and delta as observed, and rate per second over the time the samples span.
        if (x.kind == transform_kind::rate) {
            return result / sampled_seconds;
        }
        return result;
    }

    double to_start = static_cast<double>(first.t - (t - x.window.count())) / 1000.0;
    double to_end = static_cast<double>(t - last.t) / 1000.0;
    const double average_gap = sampled_seconds / static_cast<double>(n - 1);
    // A counter cannot go below zero, so do not extrapolate past the point where it was 0.
    if (is_counter && result > 0 && first.v >= 0) {
        const double to_zero = sampled_seconds * (first.v / result);
        to_start = std::min(to_start, to_zero);
    }
    // Extrapolate to an edge only when the gap to it is close to the usual sample spacing;
    // otherwise the series probably started or ended inside the window: add half a gap.
    const double threshold = average_gap * 1.1;
    double extrapolated = sampled_seconds;
    extrapolated += to_start < threshold ? to_start : average_gap / 2;
    extrapolated += to_end < threshold ? to_end : average_gap / 2;
    result *= extrapolated / sampled_seconds;
    if (x.kind == transform_kind::rate) {
        result /= window_seconds;
    }
    return result;
}

std::optional<double> evaluate_quantile(const range_view& view, double q, std::vector<double>& scratch)
{
    scratch.clear();
    view.for_each([&](const timed_sample& s) { scratch.push_back(s.v); });
    if (scratch.empty()) {
        return std::nullopt;
    }
    // Linear interpolation between the closest ranks, as quantile_over_time does.
    std::sort(scratch.begin(), scratch.end());
    const double rank = q * static_cast<double>(scratch.size() - 1);
    const auto lower = static_cast<std::size_t>(std::floor(rank));
    const std::size_t upper = std::min(lower + 1, scratch.size() - 1);
    const double weight = rank - std::floor(rank);
    return scratch[lower] * (1 - weight) + scratch[upper] * weight;
}

} // namespace

std::optional<double> evaluate_window(const sample_window& window, const transform& x, time_ms t,
                                      std::vector<double>& scratch)
{
    const range_view view = select_range(window, t - x.window.count(), t);
    switch (x.kind) {
    case transform_kind::none: return std::nullopt;
    case transform_kind::rate:
    case transform_kind::increase:
    case transform_kind::delta: return evaluate_change(view, x, t);
    case transform_kind::avg: {
        double sum = 0;
        std::size_t n = 0;
        view.for_each([&](const timed_sample& s) {
            sum += s.v;
            ++n;
        });
        if (n == 0) {
            return std::nullopt;
        }
        return sum / static_cast<double>(n);
    }
    case transform_kind::min:
    case transform_kind::max: {
        std::optional<double> best;
        const bool want_max = x.kind == transform_kind::max;
        view.for_each([&](const timed_sample& s) {
            if (!best || (want_max ? s.v > *best : s.v < *best)) {
                best = s.v;
            }
        });
        return best;
    }
    case transform_kind::quantile: return evaluate_quantile(view, x.quantile, scratch);
    }
    return std::nullopt;
}

} // namespace tocsin
