// Drift detectors (psi and ks): a current window of the series compared with a reference
// distribution.
//
// Each series keeps two bounded FIFOs of samples: the current window, which covers
// (t - window, t], and, for the fixed and trailing references, the reference samples. The score
// of a sample compares the current window (with the sample itself) against the reference.
//
// Cost per sample: score() and learn() are O(1) amortised, because every sample enters and
// leaves each FIFO once and the FIFOs stop allocating once they reach their peak size.
// Cost of one computation, due every evaluate_every of sample time, with R reference and
// W current samples and B bins:
//   psi: O(R log R) to sort the reference for its quantile edges, only when the reference
//        changed since the last computation, plus O((R + W) log B) to bin both samples;
//   ks:  O((R + W) log(R + W)) to sort both samples, plus for the exact p-value (used when
//        max(R, W) <= ks_max_exact_n) O(R) when R == W and O(R * W) when they differ.
// A computation copies both samples into buffers the detector reuses, and the statistics in
// rules/drift.hpp allocate their own sorted copies.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "rules/detector_impl.hpp"
#include "rules/drift.hpp"
#include "rules/state_codec.hpp"

namespace tocsin::detail {

namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

// A FIFO with at most `max_size` entries. Its storage doubles until it fits the peak number of
// entries (never more than max_size) and is then reused, so steady state does not allocate.
template <typename T>
class bounded_fifo {
public:
    explicit bounded_fifo(std::size_t max_size) : max_size_(max_size) {}

    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    bool full() const { return size_ == max_size_; }

    // The entry `i` places after the oldest one.
    T& operator[](std::size_t i) { return storage_[slot(i)]; }
    const T& operator[](std::size_t i) const { return storage_[slot(i)]; }
    const T& front() const { return storage_[head_]; }

    void pop_front()
    {
        head_ = slot(1);
        --size_;
    }

    // The caller removes the oldest entry first when the FIFO is full.
    void push_back(const T& item)
    {
        if (size_ == storage_.size()) {
            grow();
        }
        storage_[slot(size_)] = item;
        ++size_;
    }

    void clear()
    {
        head_ = 0;
        size_ = 0;
    }

    std::size_t capacity_bytes() const { return storage_.capacity() * sizeof(T); }

private:
    // Index into storage_ of the entry `i` places after the oldest one, for i <= size_.
    std::size_t slot(std::size_t i) const
    {
        const std::size_t index = head_ + i;
        return index < storage_.size() ? index : index - storage_.size();
    }

    void grow()
    {
        constexpr std::size_t initial_size = 16;
        const std::size_t new_size = std::min(max_size_, std::max(initial_size, storage_.size() * 2));
        std::vector<T> bigger(new_size);
        for (std::size_t i = 0; i < size_; ++i) {
            bigger[i] = (*this)[i];
        }
        storage_ = std::move(bigger);
        head_ = 0;
    }

    std::vector<T> storage_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::size_t max_size_;
};

struct current_sample {
    time_ms t = 0;
    double value = 0;
    // False for held-out samples, and for samples already copied into the reference by an
    // adaptation, so that a trailing reference takes neither when they leave the window.
    bool enters_reference = true;
};

struct reference_sample {
    time_ms t = 0;
    double value = 0;
};

class drift_detector final : public detector {
public:
    drift_detector(const detector_spec& spec, std::size_t min_samples)
        : spec_(spec), min_samples_(min_samples), current_(spec.max_samples), reference_(spec.max_samples)
    {
        if (spec_.reference != drift_reference::file) {
            return;
        }
        // A file reference never changes, so its bins are computed once here.
        const drift_reference_data& data = *spec_.reference_data;
        if (spec_.kind == detector_kind::psi) {
            if (data.values.empty()) {
                edges_ = data.edges;
                reference_shares_ = data.shares;
            } else {
                edges_ = quantile_edges(data.values, spec_.bins);
                reference_shares_ = bin_shares(data.values, edges_);
            }
        }
        reference_changed_ = false;
    }

    detector_output score(time_ms t, double value) override
    {
        advance_to(t);

        detector_output out;
        out.samples = reference_size();
        // The scored sample counts in the current window, unless a fixed reference still
        // collects it.
        const bool value_is_current = !collecting_reference() && std::isfinite(value);
        if (value_is_current && current_.full()) {
            // learn() would do the same, so the window scored is the window learnt.
            leave_current_window();
        }
        out.current_samples = current_.size() + (value_is_current ? 1 : 0);
        if (!reference_ready() || out.current_samples < min_samples_) {
            // The next ready sample computes afresh: it is the first one after warm-up.
            has_figure_ = false;
            return out;
        }

        const bool due = !has_figure_ || spec_.evaluate_every.count() == 0 ||
                         t - last_computed_ >= spec_.evaluate_every.count();
        if (due) {
            compute(t, value_is_current ? std::optional<double>(value) : std::nullopt);
        }
        out.ready = true;
        out.score = figure_;
        out.secondary = secondary_;
        // The sizes the figure was computed from, which may lag the live ones until the next
        // computation.
        out.samples = figure_reference_samples_;
        out.current_samples = figure_current_samples_;
        return out;
    }

    void learn(time_ms t, double value, bool held_out) override
    {
        if (!std::isfinite(value)) {
            return;
        }
        advance_to(t);

        if (collecting_reference()) {
            // Held-out samples stay out of the reference, as out of every baseline.
            if (!held_out) {
                push_reference(t, value);
            }
            return;
        }

        if (current_.full()) {
            leave_current_window();
        }
        current_.push_back(current_sample{t, value, !held_out});

        if (!held_out) {
            held_out_since_.reset();
            return;
        }
        if (!held_out_since_) {
            held_out_since_ = t;
        }
        // A current window below min_samples would leave a fixed reference that never becomes
        // ready again, so the adaptation waits until the window has enough samples.
        const bool can_adapt = spec_.adapt_after.count() > 0 && spec_.reference != drift_reference::file &&
                               current_.size() >= min_samples_;
        if (can_adapt && t - *held_out_since_ >= spec_.adapt_after.count()) {
            adapt();
        }
    }

    // The values of a file reference belong to the shared spec and are not counted.
    std::size_t memory_bytes() const override
    {
        const std::size_t vectors = reference_values_.capacity() + current_values_.capacity() + edges_.capacity() +
                                    reference_shares_.capacity();
        return sizeof(*this) + current_.capacity_bytes() + reference_.capacity_bytes() + vectors * sizeof(double);
    }

    std::uint64_t adaptations() const override { return adaptations_; }

    // The variant byte is the reference kind. The buffers of the computation are not saved:
    // they are rebuilt from the samples, and a file reference's bins from the spec.
    void save(std::string& out) const override
    {
        state_writer w(out);
        w.header(tag(), state_version, variant());
        w.count(current_.size());
        for (std::size_t i = 0; i < current_.size(); ++i) {
            w.i64(current_[i].t);
            w.f64(current_[i].value);
            w.boolean(current_[i].enters_reference);
        }
        w.count(reference_.size());
        for (std::size_t i = 0; i < reference_.size(); ++i) {
            w.i64(reference_[i].t);
            w.f64(reference_[i].value);
        }
        w.optional_i64(first_sample_);
        w.boolean(reference_frozen_);
        w.boolean(has_figure_);
        w.i64(last_computed_);
        w.f64(figure_);
        w.f64(secondary_);
        w.count(figure_reference_samples_);
        w.count(figure_current_samples_);
        w.optional_i64(held_out_since_);
        w.u64(adaptations_);
    }

    bool load(std::string_view in) override
    {
        state_reader r(in);
        r.header(tag(), state_version, variant());
        bounded_fifo<current_sample> current(spec_.max_samples);
        const std::size_t current_count = r.count(spec_.max_samples, 17);
        std::optional<time_ms> last;
        for (std::size_t i = 0; i < current_count && r.ok(); ++i) {
            current_sample sample;
            sample.t = r.time();
            sample.value = r.finite_f64();
            sample.enters_reference = r.boolean();
            if (last && sample.t < *last) {
                r.fail();
            }
            last = sample.t;
            current.push_back(sample);
        }
        bounded_fifo<reference_sample> reference(spec_.max_samples);
        const std::size_t reference_count = r.count(spec_.max_samples, 16);
        last.reset();
        for (std::size_t i = 0; i < reference_count && r.ok(); ++i) {
            reference_sample sample;
            sample.t = r.time();
            sample.value = r.finite_f64();
            if (last && sample.t < *last) {
                r.fail();
            }
            last = sample.t;
            reference.push_back(sample);
        }
        const std::optional<time_ms> first_sample = r.optional_time();
        const bool frozen = r.boolean();
        const bool has_figure = r.boolean();
        const time_ms last_computed = r.time();
        // The score is always a number. The secondary figure is NaN for psi.
        const double figure = r.finite_f64();
        const double secondary = r.f64();
        const std::size_t figure_reference = r.count(std::numeric_limits<std::size_t>::max(), 0);
        const std::size_t figure_current = r.count(spec_.max_samples + 1, 0);
        const std::optional<time_ms> held_out_since = r.optional_time();
        const std::uint64_t adaptations = r.u64();
        if (!r.done() || (spec_.reference == drift_reference::file && reference.size() > 0)) {
            return false;
        }
        current_ = std::move(current);
        reference_ = std::move(reference);
        first_sample_ = first_sample;
        reference_frozen_ = frozen;
        // A file reference's bins were built from the spec; the others are rebuilt from the
        // loaded samples at the next computation.
        reference_changed_ = spec_.reference != drift_reference::file;
        has_figure_ = has_figure;
        last_computed_ = last_computed;
        figure_ = figure;
        secondary_ = secondary;
        figure_reference_samples_ = figure_reference;
        figure_current_samples_ = figure_current;
        held_out_since_ = held_out_since;
        adaptations_ = adaptations;
        return true;
    }

private:
    static constexpr std::uint8_t state_version = 1;

    state_tag tag() const { return spec_.kind == detector_kind::psi ? state_tag::psi : state_tag::ks; }

    std::uint8_t variant() const { return static_cast<std::uint8_t>(spec_.reference); }

    // True while a fixed reference still takes the series' samples.
    bool collecting_reference() const { return spec_.reference == drift_reference::fixed && !reference_frozen_; }

    std::size_t reference_size() const
    {
        if (spec_.reference == drift_reference::file) {
            // A reference given as bin shares has no sample count.
            return spec_.reference_data->values.size();
        }
        return reference_.size();
    }

    bool reference_ready() const
    {
        if (spec_.reference == drift_reference::file) {
            // make_drift_detector checked that a file reference is usable.
            return true;
        }
        return !collecting_reference() && reference_.size() >= min_samples_;
    }

    // Moves the windows forward to sample time t: ends the collection of a fixed reference once
    // it is complete, and moves samples that left the current window into a trailing reference.
    void advance_to(time_ms t)
    {
        if (spec_.reference == drift_reference::fixed && !reference_frozen_) {
            if (!first_sample_) {
                first_sample_ = t;
            }
            // The reference is complete once it covers reference_window and has min_samples.
            if (t - *first_sample_ >= spec_.reference_window.count() && reference_.size() >= min_samples_) {
                reference_frozen_ = true;
            }
        }

        const time_ms window_start = t - spec_.window.count();
        while (!current_.empty() && current_.front().t <= window_start) {
            leave_current_window();
        }

        if (spec_.reference != drift_reference::trailing) {
            return;
        }
        // A trailing reference keeps at least min_samples, even when they are older than
        // reference_window: when every newer sample was held out (a long drift with
        // adapt_after 0), the series keeps its last normal reference instead of warming up
        // again.
        const time_ms reference_start = window_start - spec_.reference_window.count();
        while (reference_.size() > min_samples_ && reference_.front().t <= reference_start) {
            reference_.pop_front();
            reference_changed_ = true;
        }
    }

    // Removes the oldest sample of the current window. A trailing reference takes it unless it
    // was held out.
    void leave_current_window()
    {
        const current_sample oldest = current_.front();
        current_.pop_front();
        if (spec_.reference == drift_reference::trailing && oldest.enters_reference) {
            push_reference(oldest.t, oldest.value);
        }
    }

    void push_reference(time_ms t, double value)
    {
        if (reference_.full()) {
            reference_.pop_front();
        }
        reference_.push_back(reference_sample{t, value});
        reference_changed_ = true;
    }

    // Takes the current window as the new reference after a sustained shift.
    void adapt()
    {
        reference_.clear();
        for (std::size_t i = 0; i < current_.size(); ++i) {
            current_sample& sample = current_[i];
            reference_.push_back(reference_sample{sample.t, sample.value});
            sample.enters_reference = false;
        }
        reference_changed_ = true;
        has_figure_ = false;
        held_out_since_.reset();
        ++adaptations_;
    }

    void compute(time_ms t, std::optional<double> scored_value)
    {
        current_values_.clear();
        for (std::size_t i = 0; i < current_.size(); ++i) {
            current_values_.push_back(current_[i].value);
        }
        if (scored_value) {
            current_values_.push_back(*scored_value);
        }

        std::span<const double> reference = reference_values_;
        if (spec_.reference == drift_reference::file) {
            reference = spec_.reference_data->values;
        } else if (reference_changed_) {
            reference_values_.clear();
            for (std::size_t i = 0; i < reference_.size(); ++i) {
                reference_values_.push_back(reference_[i].value);
            }
            reference = reference_values_;
            if (spec_.kind == detector_kind::psi) {
                edges_ = quantile_edges(reference, spec_.bins);
                reference_shares_ = bin_shares(reference, edges_);
            }
            reference_changed_ = false;
        }

        if (spec_.kind == detector_kind::psi) {
            const std::vector<double> current_shares = bin_shares(current_values_, edges_);
            figure_ = psi(reference_shares_, current_shares, spec_.epsilon);
            secondary_ = nan;
        } else {
            // Both samples are non-empty here, so ks_2samp returns a result.
            const ks_result result = ks_2samp(reference, current_values_).value_or(ks_result{});
            const bool p_value = spec_.ks_figure == ks_score::p_value;
            figure_ = p_value ? result.p_value : result.statistic;
            secondary_ = p_value ? result.statistic : result.p_value;
        }

        has_figure_ = true;
        last_computed_ = t;
        figure_reference_samples_ = reference_size();
        figure_current_samples_ = current_values_.size();
    }

    const detector_spec& spec_;
    const std::size_t min_samples_;

    bounded_fifo<current_sample> current_;
    // Reference samples of a fixed or trailing reference, oldest first. Unused for a file.
    bounded_fifo<reference_sample> reference_;
    // fixed: the time of the series' first sample, and whether the reference is complete.
    std::optional<time_ms> first_sample_;
    bool reference_frozen_ = false;
    // True when reference_ changed after the last computation, so the next one copies it and
    // (psi) builds its bins again.
    bool reference_changed_ = true;

    // Buffers of the computation, kept to reuse their storage: the reference and current values,
    // and for psi the bin edges and reference shares.
    std::vector<double> reference_values_;
    std::vector<double> current_values_;
    std::vector<double> edges_;
    std::vector<double> reference_shares_;

    // The last computed figure, returned between computations.
    bool has_figure_ = false;
    time_ms last_computed_ = 0;
    double figure_ = 0;
    double secondary_ = nan;
    std::size_t figure_reference_samples_ = 0;
    std::size_t figure_current_samples_ = 0;

    // Start of the unbroken run of held-out samples, if one is running.
    std::optional<time_ms> held_out_since_;
    std::uint64_t adaptations_ = 0;
};

// Checks a file reference against the kind. Returns false with `error` set when it cannot work.
bool check_reference_data(const detector_spec& spec, std::size_t min_samples, std::string& error)
{
    const char* kind = to_string(spec.kind);
    if (!spec.reference_data) {
        error = fmt::format("{}: reference is file but no reference data was loaded; set reference_file", kind);
        return false;
    }
    const drift_reference_data& data = *spec.reference_data;
    const bool has_bins = !data.edges.empty() || !data.shares.empty();
    if (spec.kind == detector_kind::ks && data.values.empty()) {
        error = fmt::format("ks: reference file {} holds bin shares, but ks needs raw values; give a file of values",
                            data.file);
        return false;
    }
    if (!data.values.empty() && has_bins) {
        error = fmt::format("{}: reference file {} holds both values and bins; expected one of the two", kind,
                            data.file);
        return false;
    }
    if (data.values.empty()) {
        if (!has_bins) {
            error = fmt::format("{}: reference file {} holds no values and no bins; expected one of the two", kind,
                                data.file);
            return false;
        }
        if (data.edges.size() < 3 || data.edges.size() != data.shares.size() + 1) {
            error = fmt::format("psi: reference file {} has {} edges for {} shares; expected one more edge than "
                                "shares and at least two shares, since one bin always gives a PSI of 0",
                                data.file, data.edges.size(), data.shares.size());
            return false;
        }
        if (!(data.edges.back() > data.edges.front())) {
            error = fmt::format("psi: reference file {} has every edge at {}, so every value falls in one bin; give "
                                "edges that span the values",
                                data.file, data.edges.front());
            return false;
        }
        return true;
    }
    if (data.values.size() < min_samples) {
        error = fmt::format("{}: reference file {} holds {} values, fewer than min_samples {}; give more values or "
                            "lower min_samples",
                            kind, data.file, data.values.size(), min_samples);
        return false;
    }
    return true;
}

} // namespace

std::unique_ptr<detector> make_drift_detector(const detector_spec& spec, std::string& error)
{
    if (spec.kind != detector_kind::psi && spec.kind != detector_kind::ks) {
        error = fmt::format("make_drift_detector: {} is not a drift kind; expected psi or ks", to_string(spec.kind));
        return nullptr;
    }
    const char* kind = to_string(spec.kind);
    if (spec.max_samples == 0) {
        error = fmt::format("{}: max_samples is 0; expected at least 1", kind);
        return nullptr;
    }
    // Neither statistic has a meaning for an empty sample, so warm-up needs at least one.
    const std::size_t min_samples = std::max<std::size_t>(spec.min_samples, 1);
    if (min_samples > spec.max_samples) {
        error = fmt::format("{}: min_samples {} is more than max_samples {}, so the detector could never be ready; "
                            "raise max_samples or lower min_samples",
                            kind, spec.min_samples, spec.max_samples);
        return nullptr;
    }
    if (spec.window.count() <= 0) {
        error = fmt::format("{}: window is {}ms; expected a positive duration", kind, spec.window.count());
        return nullptr;
    }
    if (spec.evaluate_every.count() < 0) {
        error = fmt::format("{}: evaluate_every is {}ms; expected 0 or a positive duration", kind,
                            spec.evaluate_every.count());
        return nullptr;
    }
    if (spec.adapt_after.count() < 0) {
        error = fmt::format("{}: adapt_after is {}ms; expected 0 (never) or a positive duration", kind,
                            spec.adapt_after.count());
        return nullptr;
    }
    if (spec.kind == detector_kind::psi) {
        if (!(spec.epsilon > 0)) {
            error = fmt::format("psi: epsilon is {}; expected a positive share such as 0.0001", spec.epsilon);
            return nullptr;
        }
        if (spec.bins == 0) {
            error = "psi: bins is 0; expected at least 1";
            return nullptr;
        }
    }
    if (spec.reference == drift_reference::file) {
        if (!check_reference_data(spec, min_samples, error)) {
            return nullptr;
        }
    } else if (spec.reference_window.count() <= 0) {
        error = fmt::format("{}: reference_window is {}ms; expected a positive duration", kind,
                            spec.reference_window.count());
        return nullptr;
    }
    auto out = std::make_unique<drift_detector>(spec, min_samples);
    if (spec.warm_start) {
        // Out-of-order or non-finite history is skipped, because the windows need ascending
        // time and finite values.
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
