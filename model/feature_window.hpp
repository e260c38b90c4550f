#pragma once
// Data quality and drift of one feature over a sliding time window, in fixed memory.
//
// Window: a ring of bucket_count time buckets of width duration_ms / bucket_count (default 60
// buckets of 1 minute over 1 hour). Bucket b contains the values whose time t has
// floor(t / width) == b. The window is the newest bucket, which holds the newest time seen,
// and the bucket_count - 1 before it, so it covers between duration_ms - width and duration_ms
// of history: a value leaves the window between duration_ms - width and duration_ms after its
// time. That is the resolution, one bucket width (1 minute by default). A value older than the
// window's first bucket is rejected as late. A value with a newer time moves the window
// forward, so the caller must keep times sane (a time far in the future empties the window).
//
// Each bucket counts, in 32-bit counters: values, missing values (null or absent), type
// mismatches, valid values, out-of-range values, outliers, unseen categories, and one counter
// per drift bin (numeric: the reference's quantile bins; categorical and boolean: one per
// reference category plus one for all others). Window totals are kept in 64-bit counters and
// updated on each add and on each evicted bucket, so add() is O(1) plus an O(bins) lookup, and
// queries cost O(bins). Memory per feature is fixed: bucket_count * (7 + bins) * 4 bytes, plus
// the KS sample below, plus the category table.
//
// Quality (quality()):
//   missing_rate        missing / values
//   type_mismatch_rate  type mismatches / values. A numeric feature needs a finite number, a
//                       categorical one a string, a boolean one a boolean. NaN and infinite
//                       numbers count as type mismatches.
//   out_of_range_share  values outside the declared [min, max] / valid values (numeric, with
//                       min or max declared)
//   outlier_share       values outside the reference's [low_value, high_value] / valid values
//                       (numeric, with a reference)
//   unseen_rate         values whose category is not among the reference's categories /
//                       valid values (categorical and boolean, with a reference). NOTE: a
//                       reference keeps at most max_categories categories, so a rare category
//                       that it folded into other_share counts as unseen here.
// A rate with a zero denominator is absent.
//
// Drift (drift()), against the reference:
//   psi  tocsin::psi (rules/drift.hpp) of the window's bin shares against the reference's.
//        Numeric values are binned on the reference's quantile edges as tocsin::bin_shares
//        does. Categorical values are binned on the reference's categories plus one bin for
//        all other categories, whose reference share is other_share (usually 0, which psi
//        replaces by its epsilon).
//   ks   tocsin::ks_2samp of the window's KS sample against the reference's ks_points
//        (numeric only). The KS sample is the most recent ks_sample_size valid values of the
//        window (a ring; older ones are overwritten). When the window holds more valid values,
//        KS tests its recent end only. For a stationary window, the sample's empirical CDF is
//        within sqrt(ln(2 / alpha) / (2 n)) of the window's distribution with probability
//        1 - alpha (Dvoretzky-Kiefer-Wolfowitz), about 0.043 for n = 1000 and alpha = 0.05, and
//        D moves by at most that much. The reference side adds up to 1 / ks_points (see
//        model/reference.hpp). ks_2samp computes an exact p-value for samples up to 10,000
//        values: 0.06 ms for 1000 x 1000 values and 0.8 ms for 1000 x 999, which takes the
//        O(n * ks_points) path (g++ 12 -O3, one Intel Xeon core).
//
// Thread safety: none. One thread at a time may use a window, or the caller locks.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/feature.hpp"
#include "model/reference.hpp"
#include "rules/drift.hpp"

namespace tocsin::model {

struct window_options {
    // Window length in milliseconds, at least bucket_count. The effective length is
    // bucket_count * (duration_ms / bucket_count), rounded down to whole milliseconds per bucket.
    time_ms duration_ms = 3'600'000;
    // Time buckets in the ring, 1 to 10,000.
    std::size_t bucket_count = 60;
    // Most recent valid numeric values kept for KS, 1 to tocsin::ks_max_exact_n.
    std::size_t ks_sample_size = 1000;
};

struct quality_summary {
    std::uint64_t values = 0;
    std::uint64_t missing = 0;
    std::uint64_t type_mismatches = 0;
    std::uint64_t valid = 0;
    std::uint64_t out_of_range = 0;
    std::uint64_t outliers = 0;
    std::uint64_t unseen = 0;
    std::optional<double> missing_rate;
    std::optional<double> type_mismatch_rate;
    std::optional<double> out_of_range_share;
    std::optional<double> outlier_share;
    std::optional<double> unseen_rate;
};

struct drift_summary {
    // Absent without a reference or without valid values in the window.
    std::optional<double> psi;
    // Valid values binned for PSI.
    std::uint64_t psi_count = 0;
    // Numeric only. Absent without a reference or without values in the KS sample.
    std::optional<tocsin::ks_result> ks;
    std::size_t ks_sample_count = 0;
    std::size_t ks_reference_count = 0;
};

class feature_window {
public:
    // `ref` may be null: then only missing, type-mismatch and out-of-range figures are kept.
    // Throws std::invalid_argument when the options are out of range, the reference's type
    // differs from the spec's, or a declared min is above the max.
    feature_window(feature_spec spec, std::shared_ptr<const reference> ref, const window_options& options = {});

    // Counts one record's value (feature_value::null() for an absent feature). Returns false
    // and counts nothing when the time is before the window (late_values() counts these) or
    // the time's bucket already contains 2^32 - 1 values (dropped_values() counts these).
    bool add(time_ms time, const feature_value& value);

    // Moves the window forward to `now` without adding a value, so a quiet feature's old
    // buckets expire. An earlier time than the newest seen does nothing.
    void advance_to(time_ms now);

    // Time of the first millisecond in the window, or std::nullopt before the first value.
    std::optional<time_ms> window_start() const;

    quality_summary quality() const;

    // `psi_epsilon` replaces empty shares, as tocsin::psi does. Throws std::invalid_argument
    // when it is not positive.
    drift_summary drift(double psi_epsilon = 1e-4) const;

    std::uint64_t late_values() const { return late_values_; }
    std::uint64_t dropped_values() const { return dropped_values_; }
    const feature_spec& spec() const { return spec_; }
    const std::shared_ptr<const reference>& reference_data() const { return reference_; }

    // Approximate heap and object size in bytes, excluding the shared reference.
    std::size_t memory_bytes() const;

private:
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
    };

    // Positions of the fixed counters in each bucket. Drift bins follow them.
    enum counter : std::size_t {
        values_counter,
        missing_counter,
        mismatch_counter,
        valid_counter,
        out_of_range_counter,
        outlier_counter,
        unseen_counter,
        fixed_counters,
    };

    void advance_bucket(std::int64_t bucket);
    void increment(std::uint32_t* bucket, std::size_t index);
    void count_number(std::uint32_t* bucket, time_ms time, double value);
    void count_category(std::uint32_t* bucket, std::optional<std::size_t> category);

    feature_spec spec_;
    std::shared_ptr<const reference> reference_;
    time_ms bucket_width_;
    std::size_t bucket_count_;
    std::size_t stride_;
    std::size_t bin_count_ = 0;

    std::vector<std::uint32_t> counts_;
    std::vector<std::uint64_t> totals_;
    std::int64_t head_bucket_ = 0;
    bool started_ = false;
    std::uint64_t late_values_ = 0;
    std::uint64_t dropped_values_ = 0;

    // Categorical: reference category name -> bin. Boolean: the bins of "false" and "true".
    std::unordered_map<std::string, std::uint32_t, string_hash, std::equal_to<>> category_bins_;
    std::optional<std::size_t> false_bin_;
    std::optional<std::size_t> true_bin_;

    // Numeric with a reference: the ring of the most recent valid values and their times.
    std::vector<double> ks_values_;
    std::vector<time_ms> ks_times_;
    std::size_t ks_next_ = 0;
    std::size_t ks_filled_ = 0;
};

}  // namespace tocsin::model
