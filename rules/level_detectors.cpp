// The level detectors: mean_sigma, ewma, mad, seasonal and baseline. Each scores a value
// against a baseline of the series' own history (see rules/detector.hpp for the contract).
//
// Memory per series: the windowed kinds (mean_sigma, mad, trailing baseline) keep three
// sample rings, each capped at spec.max_samples: the baseline window, the samples younger
// than the lag, and the current run of held-out samples. ewma keeps O(1) state and seasonal
// one state per slot (24 or 168), whatever the number of samples. Rings and the sorted array
// grow by doubling up to their cap and never shrink, so steady state allocates nothing.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rules/detector_impl.hpp"
#include "rules/duration.hpp"
#include "rules/state_codec.hpp"
#include "rules/timezone.hpp"

namespace tocsin::detail {

namespace {

// Makes a z or ratio finite: an overflow to +-inf saturates at +-DBL_MAX, and NaN (only
// possible when sums of squares overflow, for values near 1e154 and beyond) becomes 0.
double finite_score(double z)
{
    if (std::isnan(z)) {
        return 0;
    }
    constexpr double max_score = std::numeric_limits<double>::max();
    return std::clamp(z, -max_score, max_score);
}

std::size_t required_samples(const detector_spec& spec)
{
    return std::max<std::size_t>(spec.min_samples, 1);
}

// Builds the output of the sigma-like kinds: z = (value - center) / scale with the scale
// floored as detector_spec describes, signed by the direction.
detector_output sigma_output(const detector_spec& spec, double value, double center, double spread,
                             std::size_t samples)
{
    detector_output out;
    out.samples = samples;
    out.ready = samples >= required_samples(spec);
    if (samples == 0) {
        return out;
    }

    if (std::isnan(spread) || spread < 0) {
        spread = 0;
    }
    const double scale =
        std::max({spread, spec.sigma_floor, spec.sigma_floor_ratio * std::abs(center), detector_spec::min_scale});
    out.baseline = center;
    out.scale = scale;
    if (!out.ready) {
        return out;
    }

    // An equal value gives exactly 0, whatever the scale.
    const double deviation = value - center;
    double z = deviation == 0 ? 0.0 : deviation / scale;
    switch (spec.side) {
    case direction::above: break;
    case direction::below: z = -z; break;
    case direction::both: z = std::abs(z); break;
    }
    out.score = z == 0 ? 0.0 : finite_score(z);
    return out;
}

// Largest ratio the baseline kind returns; also the result for a nonzero value against a
// zero baseline, signed like the value.
constexpr double max_ratio = 1e12;

// Returns value / base for compare: ratio and value - base for compare: difference. A zero
// baseline gives 1 for a zero value (the value equals the baseline) and +-max_ratio otherwise.
double compare_score(baseline_compare compare, double value, double base)
{
    if (compare == baseline_compare::difference) {
        return finite_score(value - base);
    }
    if (base == 0) {
        return value == 0 ? 1.0 : std::copysign(max_ratio, value);
    }
    return std::clamp(value / base, -max_ratio, max_ratio);
}

detector_output baseline_output(const detector_spec& spec, double value, double base, std::size_t samples,
                                bool ready)
{
    detector_output out;
    out.samples = samples;
    out.ready = ready;
    if (!ready && samples == 0) {
        return out;
    }
    out.baseline = base;
    if (ready) {
        out.score = compare_score(spec.compare, value, base);
    }
    return out;
}

struct timed_value {
    time_ms t = 0;
    double v = 0;
};

// A FIFO of samples in a circular buffer that grows by doubling up to `limit` entries.
class sample_ring {
public:
    explicit sample_ring(std::size_t limit) : limit_(limit) {}

    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    bool full() const { return size_ >= limit_; }

    const timed_value& front() const { return buffer_[head_]; }

    // i = 0 is the oldest sample.
    const timed_value& operator[](std::size_t i) const
    {
        std::size_t index = head_ + i;
        if (index >= buffer_.size()) {
            index -= buffer_.size();
        }
        return buffer_[index];
    }

    const timed_value& back() const { return (*this)[size_ - 1]; }

    // The caller makes room first: push_back on a full ring is a logic error.
    void push_back(timed_value sample)
    {
        if (size_ == buffer_.size()) {
            grow();
        }
        std::size_t index = head_ + size_;
        if (index >= buffer_.size()) {
            index -= buffer_.size();
        }
        buffer_[index] = sample;
        ++size_;
    }

    timed_value pop_front()
    {
        const timed_value sample = buffer_[head_];
        if (++head_ == buffer_.size()) {
            head_ = 0;
        }
        --size_;
        return sample;
    }

    // Keeps the buffer, so a ring refilled to the same size allocates nothing.
    void clear()
    {
        head_ = 0;
        size_ = 0;
    }

    std::size_t heap_bytes() const { return buffer_.capacity() * sizeof(timed_value); }

private:
    void grow()
    {
        const std::size_t capacity = std::min(limit_, std::max<std::size_t>(16, 2 * buffer_.size()));
        std::vector<timed_value> next(capacity);
        for (std::size_t i = 0; i < size_; ++i) {
            next[i] = (*this)[i];
        }
        buffer_.swap(next);
        head_ = 0;
    }

    std::vector<timed_value> buffer_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::size_t limit_;
};

// Writes the samples of a ring, oldest first.
void save_ring(state_writer& w, const sample_ring& ring)
{
    w.count(ring.size());
    for (std::size_t i = 0; i < ring.size(); ++i) {
        w.i64(ring[i].t);
        w.f64(ring[i].v);
    }
}

// Reads samples written by save_ring into an empty ring of at most `limit` samples. The times
// must not decrease and the values must be finite, as learn() keeps them.
void load_ring(state_reader& r, sample_ring& ring, std::size_t limit)
{
    const std::size_t n = r.count(limit, 16);
    std::optional<time_ms> last;
    for (std::size_t i = 0; i < n && r.ok(); ++i) {
        const time_ms t = r.time();
        const double v = r.finite_f64();
        if (last && t < *last) {
            r.fail();
        }
        if (r.ok()) {
            ring.push_back({t, v});
            last = t;
        }
    }
}

// Mean and sample standard deviation of a sliding window from running sums.
//
// The sums are of d = v - reference, with the reference taken from a sample of the window.
// The shift keeps sum(d^2) - sum(d)^2 / n from cancelling catastrophically when the values sit
// far from zero (1e9 +- 1, say). It also gives a flat window a mean exactly equal to its value
// and a variance of exactly 0. Adding and removing samples leaves rounding residue in the sums, and
// the reference may drift away from the level, so the owner recomputes the sums from the
// window (with a fresh reference) after as many removals as the window holds: amortised O(1).
class shifted_moments {
public:
    std::size_t count() const { return count_; }

    void add(double v)
    {
        if (count_ == 0) {
            reference_ = v;
            sum_ = 0;
            sum_squares_ = 0;
        }
        const double d = v - reference_;
        sum_ += d;
        sum_squares_ += d * d;
        ++count_;
    }

    void remove(double v)
    {
        --count_;
        if (count_ == 0) {
            sum_ = 0;
            sum_squares_ = 0;
            return;
        }
        const double d = v - reference_;
        sum_ -= d;
        sum_squares_ -= d * d;
    }

    void clear()
    {
        count_ = 0;
        sum_ = 0;
        sum_squares_ = 0;
    }

    // Recomputes the sums over the ring, shifted by its newest value.
    void recompute(const sample_ring& ring)
    {
        clear();
        if (ring.empty()) {
            return;
        }
        reference_ = ring.back().v;
        for (std::size_t i = 0; i < ring.size(); ++i) {
            const double d = ring[i].v - reference_;
            sum_ += d;
            sum_squares_ += d * d;
        }
        count_ = ring.size();
    }

    // The sums are saved as they are, rounding residue included, so a restored window scores
    // bit for bit like the saved one.
    void save(state_writer& w) const
    {
        w.f64(reference_);
        w.f64(sum_);
        w.f64(sum_squares_);
        w.count(count_);
    }

    // Reads sums saved for a window of `expected_count` samples.
    void load(state_reader& r, std::size_t expected_count)
    {
        reference_ = r.finite_f64();
        // Sums of values near the double range may have overflowed; that is kept as saved.
        sum_ = r.f64();
        sum_squares_ = r.f64();
        count_ = r.count(expected_count, 0);
        if (count_ != expected_count) {
            r.fail();
        }
    }

    double mean() const
    {
        return count_ == 0 ? std::numeric_limits<double>::quiet_NaN()
                           : reference_ + sum_ / static_cast<double>(count_);
    }

    // Sample standard deviation (n - 1 in the denominator); 0 below two samples.
    double stddev() const
    {
        if (count_ < 2) {
            return 0;
        }
        const double n = static_cast<double>(count_);
        const double variance = (sum_squares_ - sum_ * sum_ / n) / (n - 1);
        return variance > 0 ? std::sqrt(variance) : 0;
    }

private:
    double reference_ = 0;
    double sum_ = 0;
    double sum_squares_ = 0;
    std::size_t count_ = 0;
};

// Returns the k-th smallest (0-based) of |a_i - m| over the sorted array a, in O(log n).
// The deviations of the values below m, read from m outwards, form one ascending sequence,
// and those of the values at or above m form another. The k-th smallest of the two is found
// by a binary search on how many of the k + 1 smallest come from the lower sequence.
double kth_abs_deviation(const std::vector<double>& a, double m, std::size_t k)
{
    const std::size_t split = static_cast<std::size_t>(std::lower_bound(a.begin(), a.end(), m) - a.begin());
    const std::size_t lower_count = split;
    const std::size_t upper_count = a.size() - split;
    auto lower = [&](std::size_t i) { return m - a[split - 1 - i]; };
    auto upper = [&](std::size_t j) { return a[split + j] - m; };

    const std::size_t smallest_count = k + 1;
    std::size_t lo = smallest_count > upper_count ? smallest_count - upper_count : 0;
    std::size_t hi = std::min(smallest_count, lower_count);
    while (lo < hi) {
        const std::size_t i = lo + (hi - lo) / 2;
        if (lower(i) < upper(smallest_count - i - 1)) {
            lo = i + 1;
        } else {
            hi = i;
        }
    }
    const std::size_t from_lower = lo;
    const std::size_t from_upper = smallest_count - lo;
    double kth = -std::numeric_limits<double>::infinity();
    if (from_lower > 0) {
        kth = lower(from_lower - 1);
    }
    if (from_upper > 0) {
        kth = std::max(kth, upper(from_upper - 1));
    }
    return kth;
}

double sorted_median(const std::vector<double>& a)
{
    const std::size_t n = a.size();
    return n % 2 == 1 ? a[n / 2] : std::midpoint(a[n / 2 - 1], a[n / 2]);
}

// The samples of [t - window, t - lag), fed from a FIFO of samples younger than the lag.
class window_baseline {
public:
    window_baseline(const detector_spec& spec, bool track_moments, bool track_order)
        : window_ms_(spec.window.count()),
          lag_ms_(spec.lag.count()),
          max_samples_(spec.max_samples),
          samples_(spec.max_samples),
          pending_(spec.max_samples),
          track_moments_(track_moments),
          track_order_(track_order)
    {
    }

    std::size_t size() const { return samples_.size(); }

    // Moves the pending samples that are now older than t - lag into the window, and drops
    // the samples older than t - window.
    void advance(time_ms t)
    {
        const time_ms lag_edge = t - lag_ms_;
        const time_ms window_edge = t - window_ms_;
        while (!pending_.empty() && pending_.front().t < lag_edge) {
            const timed_value sample = pending_.pop_front();
            if (sample.t >= window_edge) {
                insert(sample);
            }
        }
        while (!samples_.empty() && samples_.front().t < window_edge) {
            erase_oldest();
        }
    }

    void learn(time_ms t, double v)
    {
        advance(t);
        if (pending_.full()) {
            // More samples within the lag than max_samples: the oldest enters the window early.
            insert(pending_.pop_front());
        }
        pending_.push_back({t, v});
    }

    // Replaces the window with the samples of `run`, whose times are moved back by `shift`,
    // as seen from time t.
    void rebuild(time_ms t, const sample_ring& run, std::int64_t shift)
    {
        samples_.clear();
        pending_.clear();
        sorted_.clear();
        moments_.clear();
        removals_ = 0;
        const time_ms lag_edge = t - lag_ms_;
        const time_ms window_edge = t - window_ms_;
        for (std::size_t i = 0; i < run.size(); ++i) {
            const timed_value sample{run[i].t - shift, run[i].v};
            if (sample.t < window_edge) {
                continue;
            }
            if (sample.t < lag_edge) {
                insert(sample);
            } else if (!pending_.full()) {
                pending_.push_back(sample);
            }
        }
    }

    double mean() const { return moments_.mean(); }
    double stddev() const { return moments_.stddev(); }

    double median() const { return sorted_median(sorted_); }

    // 1.4826 * MAD, the MAD scaled to estimate sigma for normal data.
    double mad_scale(double median) const
    {
        const std::size_t n = sorted_.size();
        const double mad = std::midpoint(kth_abs_deviation(sorted_, median, (n - 1) / 2),
                                         kth_abs_deviation(sorted_, median, n / 2));
        return 1.4826 * mad;
    }

    std::size_t heap_bytes() const
    {
        return samples_.heap_bytes() + pending_.heap_bytes() + sorted_.capacity() * sizeof(double);
    }

    void save(state_writer& w) const
    {
        save_ring(w, samples_);
        save_ring(w, pending_);
        if (track_moments_) {
            moments_.save(w);
            w.count(removals_);
        }
    }

    // Reads a state written by save() into this empty window.
    void load(state_reader& r)
    {
        load_ring(r, samples_, max_samples_);
        load_ring(r, pending_, max_samples_);
        if (track_moments_) {
            moments_.load(r, samples_.size());
            removals_ = r.count(std::max<std::size_t>(samples_.size(), 1), 0);
        }
        if (track_order_ && r.ok()) {
            sorted_.reserve(samples_.size());
            for (std::size_t i = 0; i < samples_.size(); ++i) {
                sorted_.push_back(samples_[i].v);
            }
            std::sort(sorted_.begin(), sorted_.end());
        }
    }

private:
    void insert(timed_value sample)
    {
        if (samples_.full()) {
            erase_oldest();
        }
        samples_.push_back(sample);
        if (track_moments_) {
            moments_.add(sample.v);
        }
        if (track_order_) {
            if (sorted_.size() == sorted_.capacity()) {
                // Grow by doubling as std::vector would, but never past max_samples.
                sorted_.reserve(std::min(max_samples_, std::max<std::size_t>(16, 2 * sorted_.size())));
            }
            // NOTE: the sorted array costs O(log n) to find the place plus O(n) to move the
            // larger values by one (a memmove of up to 8 * n bytes). That is 2 KB at a 1 h
            // window of 15 s samples and 80 KB per update at max_samples = 10,000.
            sorted_.insert(std::upper_bound(sorted_.begin(), sorted_.end(), sample.v), sample.v);
        }
    }

    void erase_oldest()
    {
        const timed_value sample = samples_.pop_front();
        if (track_order_) {
            sorted_.erase(std::lower_bound(sorted_.begin(), sorted_.end(), sample.v));
        }
        if (track_moments_) {
            moments_.remove(sample.v);
            if (++removals_ >= std::max<std::size_t>(samples_.size(), 1)) {
                moments_.recompute(samples_);
                removals_ = 0;
            }
        }
    }

    std::int64_t window_ms_;
    std::int64_t lag_ms_;
    std::size_t max_samples_;
    sample_ring samples_;
    sample_ring pending_;
    bool track_moments_;
    bool track_order_;
    shifted_moments moments_;
    std::size_t removals_ = 0;
    std::vector<double> sorted_;
};

// The current unbroken run of held-out samples of a windowed detector. Only the samples of
// the last `window` are kept, because a rebuild uses no older ones. The start of the run is
// kept apart to measure its length.
class held_out_run {
public:
    explicit held_out_run(const detector_spec& spec) : window_ms_(spec.window.count()), samples_(spec.max_samples) {}

    const sample_ring& samples() const { return samples_; }

    void add(time_ms t, double v)
    {
        if (!start_) {
            start_ = t;
        }
        if (samples_.full()) {
            samples_.pop_front();
        }
        samples_.push_back({t, v});
        while (samples_.front().t < t - window_ms_) {
            samples_.pop_front();
        }
    }

    std::optional<time_ms> start() const { return start_; }

    // True when the run has lasted adapt_after (never for adapt_after 0).
    bool due(time_ms t, std::chrono::milliseconds adapt_after) const
    {
        return adapt_after.count() > 0 && start_ && t - *start_ >= adapt_after.count();
    }

    void clear()
    {
        start_.reset();
        samples_.clear();
    }

    std::size_t heap_bytes() const { return samples_.heap_bytes(); }

    void save(state_writer& w) const
    {
        w.optional_i64(start_);
        save_ring(w, samples_);
    }

    // Reads a run written by save() into this empty run of at most `limit` samples.
    void load(state_reader& r, std::size_t limit)
    {
        start_ = r.optional_time();
        load_ring(r, samples_, limit);
        if (!start_ && !samples_.empty()) {
            r.fail();
        }
    }

private:
    std::int64_t window_ms_;
    std::optional<time_ms> start_;
    sample_ring samples_;
};

// mean_sigma, mad, and baseline with a trailing statistic: a statistic of the samples of
// [t - window, t - lag).
//
// The window runs on sample time minus the time spent in held-out runs. While samples are
// held out the baseline is frozen, so an anomaly longer than the window neither empties
// the baseline (which would reset it to warming up and then learn the anomaly) nor ages it:
// after the run the baseline goes on from where it stopped.
class window_detector final : public detector {
public:
    explicit window_detector(const detector_spec& spec)
        : spec_(spec), window_(spec, uses_moments(spec), uses_order(spec)), run_(spec)
    {
    }

    detector_output score(time_ms t, double value) override
    {
        window_.advance(window_time(t));
        const std::size_t n = window_.size();
        switch (spec_.kind) {
        case detector_kind::mean_sigma: return sigma_output(spec_, value, window_.mean(), window_.stddev(), n);
        case detector_kind::mad: {
            if (n == 0) {
                return sigma_output(spec_, value, 0, 0, 0);
            }
            const double median = window_.median();
            return sigma_output(spec_, value, median, window_.mad_scale(median), n);
        }
        default: {
            const bool ready = n >= required_samples(spec_);
            if (n == 0) {
                return baseline_output(spec_, value, 0, 0, false);
            }
            const double base = spec_.statistic == baseline_statistic::median ? window_.median() : window_.mean();
            return baseline_output(spec_, value, base, n, ready);
        }
        }
    }

    void learn(time_ms t, double value, bool held_out) override
    {
        if (!held_out) {
            if (const std::optional<time_ms> start = run_.start()) {
                paused_ms_ += t - *start;
                run_.clear();
            }
            window_.learn(t - paused_ms_, value);
            return;
        }
        run_.add(t, value);
        // A run shorter than the warm-up would leave the detector warming up again, with the
        // alert unable to resolve, so it adapts only once it holds min_samples values.
        if (run_.due(t, spec_.adapt_after) && run_.samples().size() >= spec_.min_samples) {
            // The run's own times count again: the new baseline is [t - window, t - lag) of it.
            window_.rebuild(t - paused_ms_, run_.samples(), paused_ms_);
            run_.clear();
            ++adaptations_;
        }
    }

    std::size_t memory_bytes() const override { return sizeof(*this) + window_.heap_bytes() + run_.heap_bytes(); }

    std::uint64_t adaptations() const override { return adaptations_; }

    void save(std::string& out) const override
    {
        state_writer w(out);
        w.header(tag(), state_version, variant());
        window_.save(w);
        run_.save(w);
        w.i64(paused_ms_);
        w.u64(adaptations_);
    }

    bool load(std::string_view in) override
    {
        state_reader r(in);
        r.header(tag(), state_version, variant());
        window_baseline window(spec_, uses_moments(spec_), uses_order(spec_));
        held_out_run run(spec_);
        window.load(r);
        run.load(r, spec_.max_samples);
        const std::int64_t paused = r.i64_in(0, state_time_bound_ms);
        const std::uint64_t adaptations = r.u64();
        if (!r.done()) {
            return false;
        }
        window_ = std::move(window);
        run_ = std::move(run);
        paused_ms_ = paused;
        adaptations_ = adaptations;
        return true;
    }

private:
    static constexpr std::uint8_t state_version = 1;

    state_tag tag() const
    {
        switch (spec_.kind) {
        case detector_kind::mean_sigma: return state_tag::mean_sigma;
        case detector_kind::mad: return state_tag::mad;
        default: return state_tag::baseline_trailing;
        }
    }

    // The trailing statistic of kind baseline, whose layouts differ: 0 median, 1 mean.
    std::uint8_t variant() const
    {
        return spec_.kind == detector_kind::baseline && spec_.statistic == baseline_statistic::mean ? 1 : 0;
    }

    // The time of the window at sample time t: frozen at the start of a held-out run.
    time_ms window_time(time_ms t) const { return run_.start().value_or(t) - paused_ms_; }

    static bool uses_moments(const detector_spec& spec)
    {
        return spec.kind == detector_kind::mean_sigma ||
               (spec.kind == detector_kind::baseline && spec.statistic == baseline_statistic::mean);
    }

    static bool uses_order(const detector_spec& spec)
    {
        return spec.kind == detector_kind::mad ||
               (spec.kind == detector_kind::baseline && spec.statistic == baseline_statistic::median);
    }

    const detector_spec& spec_;
    window_baseline window_;
    held_out_run run_;
    // Total length of the held-out runs so far, which the window does not count.
    std::int64_t paused_ms_ = 0;
    std::uint64_t adaptations_ = 0;
};

// baseline with fixed_value: the value against a constant. Nothing is learnt, so it is ready
// from the first sample (samples = 0) and adapt_after has no effect: a value the rule author
// fixed is not replaced by the series' own level.
class fixed_baseline_detector final : public detector {
public:
    explicit fixed_baseline_detector(const detector_spec& spec) : spec_(spec) {}

    detector_output score(time_ms, double value) override
    {
        return baseline_output(spec_, value, *spec_.fixed_value, 0, true);
    }

    void learn(time_ms, double, bool) override {}

    std::size_t memory_bytes() const override { return sizeof(*this); }

    std::uint64_t adaptations() const override { return 0; }

    // Nothing is learnt, so the state is the header alone.
    void save(std::string& out) const override
    {
        state_writer w(out);
        w.header(state_tag::baseline_fixed, 1, 0);
    }

    bool load(std::string_view in) override
    {
        state_reader r(in);
        r.header(state_tag::baseline_fixed, 1, 0);
        return r.done();
    }

private:
    const detector_spec& spec_;
};

// Exponentially weighted mean and variance, updated in place by
//   diff = v - mean, mean += alpha * diff, variance = (1 - alpha) * (variance + alpha * diff^2),
// the incremental form of a weighted mean and weighted population variance. Two ways to pick
// alpha are used (both with weights that halve per half_life of sample time):
//
// update_after_gap: alpha = 1 - 2^(-dt / half_life) for the gap dt since the previous sample,
// so the state is a level that decays towards each new sample in proportion to the time
// passed. Two samples 2 h apart with a 1 h half-life give the same state as a chain of
// updates 1 h apart. A sample at the same time as the previous one has weight 0.
//
// update_with_weights: every sample has weight 2^(-(now - t_i) / half_life) and alpha is the
// new sample's share of the decayed total weight. Dense bursts separated by long gaps (a
// seasonal slot gets an hour of samples, then nothing for 23 hours) then weigh each sample of
// the burst alike. With update_after_gap the first sample after the gap would carry about
// half the slot's weight and the rest of the hour almost none.
struct ewma_state {
    std::size_t count = 0;
    double mean = 0;
    double variance = 0;
    double weight = 0; // decayed sum of the weights; update_with_weights only
    time_ms last_t = 0;

    void update_after_gap(time_ms t, double v, double half_life_ms)
    {
        const double dt = static_cast<double>(t - last_t);
        apply(t, v, count == 0 ? 1.0 : (dt > 0 ? -std::expm1(-dt / half_life_ms * std::numbers::ln2) : 0.0));
    }

    void update_with_weights(time_ms t, double v, double half_life_ms)
    {
        const double dt = static_cast<double>(t - last_t);
        const double decay = count == 0 ? 0.0 : std::exp2(-std::max(dt, 0.0) / half_life_ms);
        weight = weight * decay + 1;
        apply(t, v, 1 / weight);
    }

    double stddev() const { return variance > 0 ? std::sqrt(variance) : 0; }

    void save(state_writer& w) const
    {
        w.u64(count);
        w.f64(mean);
        w.f64(variance);
        w.f64(weight);
        w.i64(last_t);
    }

    // apply() keeps the mean and variance finite, and the variance and weight are never
    // negative, so a state that breaks either is corrupt.
    static ewma_state load(state_reader& r)
    {
        ewma_state s;
        s.count = static_cast<std::size_t>(r.u64());
        s.mean = r.finite_f64();
        s.variance = r.finite_f64();
        s.weight = r.finite_f64();
        s.last_t = r.time();
        if (s.variance < 0 || s.weight < 0) {
            r.fail();
        }
        return s;
    }

private:
    void apply(time_ms t, double v, double alpha)
    {
        if (count == 0) {
            mean = v;
            variance = 0;
        } else {
            const double diff = v - mean;
            const double increment = alpha * diff;
            mean += increment;
            variance = (1 - alpha) * (variance + diff * increment);
            if (!std::isfinite(mean) || !std::isfinite(variance)) {
                // Values near the double range overflowed the state: restart from this sample
                // rather than keep an infinite or NaN baseline for good.
                mean = v;
                variance = 0;
            }
        }
        last_t = t;
        ++count;
    }
};

class ewma_detector final : public detector {
public:
    explicit ewma_detector(const detector_spec& spec)
        : spec_(spec), half_life_ms_(static_cast<double>(spec.half_life.count()))
    {
    }

    detector_output score(time_ms, double value) override
    {
        return sigma_output(spec_, value, state_.mean, state_.stddev(), state_.count);
    }

    void learn(time_ms t, double value, bool held_out) override
    {
        if (!held_out) {
            run_start_.reset();
            state_.update_after_gap(t, value, half_life_ms_);
            return;
        }
        // The held-out run is learnt into its own state from scratch, which is what replaying
        // the run would give, in O(1) memory.
        if (!run_start_) {
            run_start_ = t;
            run_state_ = ewma_state{};
        }
        run_state_.update_after_gap(t, value, half_life_ms_);
        if (spec_.adapt_after.count() > 0 && t - *run_start_ >= spec_.adapt_after.count() &&
            run_state_.count >= spec_.min_samples) {
            state_ = run_state_;
            run_start_.reset();
            ++adaptations_;
        }
    }

    std::size_t memory_bytes() const override { return sizeof(*this); }

    std::uint64_t adaptations() const override { return adaptations_; }

    void save(std::string& out) const override
    {
        state_writer w(out);
        w.header(state_tag::ewma, 1, 0);
        state_.save(w);
        run_state_.save(w);
        w.optional_i64(run_start_);
        w.u64(adaptations_);
    }

    bool load(std::string_view in) override
    {
        state_reader r(in);
        r.header(state_tag::ewma, 1, 0);
        const ewma_state state = ewma_state::load(r);
        const ewma_state run_state = ewma_state::load(r);
        const std::optional<time_ms> run_start = r.optional_time();
        const std::uint64_t adaptations = r.u64();
        if (!r.done()) {
            return false;
        }
        state_ = state;
        run_state_ = run_state;
        run_start_ = run_start;
        adaptations_ = adaptations;
        return true;
    }

private:
    const detector_spec& spec_;
    double half_life_ms_;
    ewma_state state_;
    ewma_state run_state_;
    std::optional<time_ms> run_start_;
    std::uint64_t adaptations_ = 0;
};

// One ewma_state per local hour of the day or of the week, updated with weights that halve
// per half_life of sample time (ewma_state::update_with_weights). With hour_of_day and a 7d
// half-life, the same hour a week ago weighs half as much as today's.
class seasonal_detector final : public detector {
public:
    seasonal_detector(const detector_spec& spec, time_zone zone)
        : spec_(spec),
          half_life_ms_(static_cast<double>(spec.half_life.count())),
          clock_(std::move(zone)),
          slots_(spec.period == season::hour_of_week ? 168 : 24)
    {
    }

    detector_output score(time_ms t, double value) override
    {
        const ewma_state& slot = slots_[slot_of(t)];
        return sigma_output(spec_, value, slot.mean, slot.stddev(), slot.count);
    }

    void learn(time_ms t, double value, bool held_out) override
    {
        ewma_state& slot = slots_[slot_of(t)];
        if (!held_out) {
            clear_run();
            slot.update_with_weights(t, value, half_life_ms_);
            return;
        }
        if (!run_start_) {
            run_start_ = t;
        }
        if (slot.count > 0) {
            offset_sum_ += value - slot.mean;
            ++offset_count_;
        }
        if (spec_.adapt_after.count() > 0 && t - *run_start_ >= spec_.adapt_after.count()) {
            // Only learnt samples move the slots' means, so they are frozen during the run and
            // the mean offset is the level shift. The daily shape and the spreads are kept.
            if (offset_count_ > 0) {
                const double shift = offset_sum_ / static_cast<double>(offset_count_);
                for (ewma_state& s : slots_) {
                    if (s.count > 0) {
                        s.mean += shift;
                    }
                }
            }
            clear_run();
            ++adaptations_;
        }
    }

    std::size_t memory_bytes() const override
    {
        std::size_t bytes = sizeof(*this) + slots_.capacity() * sizeof(ewma_state);
        const std::string& name = clock_.zone().name();
        if (name.capacity() > 15) {
            bytes += name.capacity() + 1;
        }
        return bytes;
    }

    std::uint64_t adaptations() const override { return adaptations_; }

    // The variant byte is the season: 0 for hour_of_day, 1 for hour_of_week.
    void save(std::string& out) const override
    {
        state_writer w(out);
        w.header(state_tag::seasonal, 1, variant());
        w.count(slots_.size());
        for (const ewma_state& slot : slots_) {
            slot.save(w);
        }
        w.optional_i64(run_start_);
        w.f64(offset_sum_);
        w.u64(offset_count_);
        w.u64(adaptations_);
    }

    bool load(std::string_view in) override
    {
        state_reader r(in);
        r.header(state_tag::seasonal, 1, variant());
        const std::size_t n = r.count(slots_.size(), 0);
        if (n != slots_.size()) {
            r.fail();
        }
        std::vector<ewma_state> slots;
        slots.reserve(slots_.size());
        for (std::size_t i = 0; i < n && r.ok(); ++i) {
            slots.push_back(ewma_state::load(r));
        }
        const std::optional<time_ms> run_start = r.optional_time();
        // A sum of differences of finite values may overflow to infinity and is kept as saved.
        // NaN cannot arise.
        const double offset_sum = r.f64();
        const std::uint64_t offset_count = r.u64();
        const std::uint64_t adaptations = r.u64();
        if (std::isnan(offset_sum) || !r.done()) {
            return false;
        }
        slots_ = std::move(slots);
        run_start_ = run_start;
        offset_sum_ = offset_sum;
        offset_count_ = static_cast<std::size_t>(offset_count);
        adaptations_ = adaptations;
        return true;
    }

private:
    std::uint8_t variant() const { return spec_.period == season::hour_of_week ? 1 : 0; }

    std::size_t slot_of(time_ms t)
    {
        return spec_.period == season::hour_of_week ? clock_.hour_of_week(t) : clock_.hour_of_day(t);
    }

    void clear_run()
    {
        run_start_.reset();
        offset_sum_ = 0;
        offset_count_ = 0;
    }

    const detector_spec& spec_;
    double half_life_ms_;
    local_time_cache clock_;
    std::vector<ewma_state> slots_;
    std::optional<time_ms> run_start_;
    double offset_sum_ = 0;
    std::size_t offset_count_ = 0;
    std::uint64_t adaptations_ = 0;
};

bool uses_window(const detector_spec& spec)
{
    return spec.kind == detector_kind::mean_sigma || spec.kind == detector_kind::mad ||
           (spec.kind == detector_kind::baseline && !spec.fixed_value);
}

// Returns an error message for a spec that cannot work, or an empty string.
std::string check_spec(const detector_spec& spec)
{
    if (spec.max_samples == 0) {
        return "dynamic.max_samples is 0: set it to at least min_samples (default 10000)";
    }
    if (uses_window(spec)) {
        if (spec.window.count() <= 0) {
            return "dynamic.window is " + format_duration(spec.window) + ": set a positive window such as 1h";
        }
        if (spec.lag.count() < 0) {
            return "dynamic.baseline_lag is " + format_duration(spec.lag) + ": set 0s or a positive lag";
        }
        if (spec.lag >= spec.window) {
            return "dynamic.baseline_lag (" + format_duration(spec.lag) + ") is not shorter than dynamic.window (" +
                   format_duration(spec.window) + "), so the baseline is always empty: shorten the lag";
        }
    }
    if ((spec.kind == detector_kind::ewma || spec.kind == detector_kind::seasonal) && spec.half_life.count() <= 0) {
        return "dynamic.half_life is " + format_duration(spec.half_life) + ": set a positive half-life such as 1h";
    }
    if (spec.adapt_after.count() < 0) {
        return "dynamic.adapt_after is " + format_duration(spec.adapt_after) + ": set 0s (never adapt) or a positive duration";
    }
    if (!std::isfinite(spec.sigma_floor) || spec.sigma_floor < 0 || !std::isfinite(spec.sigma_floor_ratio) ||
        spec.sigma_floor_ratio < 0) {
        return "dynamic.sigma_floor and sigma_floor_ratio must be finite and not negative";
    }
    if (spec.fixed_value && !std::isfinite(*spec.fixed_value)) {
        return "dynamic.value must be a finite number";
    }
    return {};
}

} // namespace

std::unique_ptr<detector> make_level_detector(const detector_spec& spec, std::string& error)
{
    if (std::string problem = check_spec(spec); !problem.empty()) {
        error = std::move(problem);
        return nullptr;
    }

    std::unique_ptr<detector> out;
    switch (spec.kind) {
    case detector_kind::mean_sigma:
    case detector_kind::mad: out = std::make_unique<window_detector>(spec); break;
    case detector_kind::baseline:
        if (spec.fixed_value) {
            out = std::make_unique<fixed_baseline_detector>(spec);
        } else {
            out = std::make_unique<window_detector>(spec);
        }
        break;
    case detector_kind::ewma: out = std::make_unique<ewma_detector>(spec); break;
    case detector_kind::seasonal: {
        std::optional<time_zone> zone = time_zone::locate(spec.timezone, error);
        if (!zone) {
            error = "dynamic.timezone: " + error;
            return nullptr;
        }
        out = std::make_unique<seasonal_detector>(spec, std::move(*zone));
        break;
    }
    case detector_kind::psi:
    case detector_kind::ks:
        error = std::string("detector kind ") + to_string(spec.kind) + " is not a level detector";
        return nullptr;
    }

    if (spec.warm_start) {
        // Out-of-order or non-finite history is skipped: the detectors need ascending time
        // and finite values.
        std::optional<time_ms> last;
        for (const auto& [t, v] : spec.warm_start->samples) {
            if (!std::isfinite(v) || (last && t < *last)) {
                continue;
            }
            out->learn(t, v, false);
            last = t;
        }
    }
    return out;
}

} // namespace tocsin::detail
