#pragma once
// Detectors: thresholds that follow the series. A rule with a `dynamic:` block passes each value
// (after its transform) through one detector per series. The detector scores the value against a
// baseline learnt from the series' own history, and the rule's tiers compare that score: for
// mean_sigma "> 3" means "more than 3 sigma from the baseline".
//
// The engine calls score() and then learn() for every numeric value, in sample-time order:
//
//   detector_output out = d.score(t, v); // against the baseline as it stands
//   ... tiers, `for` and hysteresis run on out.score when out.ready ...
//   d.learn(t, v, held_out);             // held_out: the rule is pending or firing, or the
//                                        // score meets the lowest tier
//
// Each update costs O(1) or O(log n) in the samples kept, and memory per series is bounded by
// detector_spec::max_samples. Detectors run on sample time only, so a backtest replaying the
// same samples gets the same scores as the daemon did.
//
// Thread safety: a detector belongs to one series of one rule and is used by one thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rules/clock.hpp"

namespace tocsin {

enum class detector_kind : std::uint8_t {
    mean_sigma, // mean and standard deviation over a rolling time window, with a lag
    ewma,       // exponentially weighted mean and variance with a half-life
    mad,        // median and median absolute deviation over a rolling time window
    seasonal,   // mean and deviation per hour of the day or of the week
    baseline,   // the value against a fixed value or a trailing median or mean (model metrics)
    psi,        // Population Stability Index of a current window against a reference
    ks,         // two-sample Kolmogorov-Smirnov test of a current window against a reference
};

const char* to_string(detector_kind k);
std::optional<detector_kind> parse_detector_kind(std::string_view name);

// Which side of the baseline counts. For the sigma-like kinds the score is z for above, -z for
// below and |z| for both, so tiers are always written as "> k".
enum class direction : std::uint8_t { above, below, both };

enum class season : std::uint8_t { hour_of_day, hour_of_week };

enum class baseline_statistic : std::uint8_t { median, mean };

// How kind `baseline` turns value and baseline into a score: value / baseline (ratio, so
// "< 0.95" means "below 95% of the baseline") or value - baseline (difference).
enum class baseline_compare : std::uint8_t { ratio, difference };

// The reference distribution of psi and ks: the first `reference_window` of samples of the
// series (fixed), the `reference_window` just before the current window (trailing), or a file
// given by the rule (file; see drift_reference_data).
enum class drift_reference : std::uint8_t { fixed, trailing, file };

// Which ks figure becomes the score: the statistic D (tiers "> 0.2") or the p-value
// (tiers "< 0.01").
enum class ks_score : std::uint8_t { statistic, p_value };

// A reference for psi or ks read from a file at load time. For psi it holds bin edges and the
// reference share of each bin (edges.size() == shares.size() + 1), or raw values from which
// quantile bins are built; for ks it holds raw values.
struct drift_reference_data {
    std::string file;
    std::vector<double> edges;
    std::vector<double> shares;
    std::vector<double> values;
};

// Recorded samples that warm a detector up before its first live sample, for example a week of
// history for a seasonal baseline. Every series of the rule starts from the same history.
struct warm_start_data {
    std::string file;
    std::vector<std::pair<time_ms, double>> samples; // ascending time
};

struct detector_spec {
    detector_kind kind = detector_kind::mean_sigma;
    direction side = direction::both;

    // Warm-up: the baseline needs this many samples before the detector scores (for seasonal,
    // per season slot). Until then the series is reported as warming up and cannot fire.
    std::size_t min_samples = 30;
    // Cap on the samples one series keeps (windows, reference, held-out samples). When a
    // window holds more, its oldest samples leave early.
    std::size_t max_samples = 10'000;

    // mean_sigma, mad, baseline (trailing): the baseline covers [t - window, t - lag), where
    // time spent in a run of held-out samples does not count: the baseline freezes during an
    // anomaly instead of emptying. psi, ks: the current window covers (t - window, t].
    std::chrono::milliseconds window{std::chrono::hours(1)};
    // Samples younger than this stay out of the baseline, so a fresh anomaly is not measured
    // against itself.
    std::chrono::milliseconds lag{0};

    // The scale (sigma, or 1.4826 * MAD) never drops below
    // max(sigma_floor, sigma_floor_ratio * |baseline|, min_scale), so a flat baseline gives
    // z = 0 for an equal value and a finite z for any other, never NaN.
    double sigma_floor = 0;
    double sigma_floor_ratio = 0.01;
    static constexpr double min_scale = 1e-9;

    // ewma and seasonal: weight of a sample halves after this much sample time; uneven
    // sample spacing is taken into account. For seasonal it applies per slot, in sample time;
    // the rule loader defaults it to 7 days for hour_of_day and 28 days for hour_of_week.
    std::chrono::milliseconds half_life{std::chrono::hours(1)};

    // seasonal: the slot of a sample is its local hour of the day or of the week in `timezone`
    // (an IANA name, "UTC" by default).
    season period = season::hour_of_day;
    std::string timezone = "UTC";

    // Baseline hygiene. Held-out samples (see the header comment) stay out of the baseline.
    // When samples have been held out for adapt_after without a break, the shift is taken as
    // the new normal: the baseline is rebuilt from the held-out samples, the score falls and
    // the alert resolves. Zero never adapts.
    std::chrono::milliseconds adapt_after{0};

    // baseline: compare with this value when set, else with the trailing `statistic` of the
    // series over [t - window, t - lag).
    std::optional<double> fixed_value;
    baseline_statistic statistic = baseline_statistic::median;
    baseline_compare compare = baseline_compare::ratio;

    // psi and ks.
    drift_reference reference = drift_reference::trailing;
    std::chrono::milliseconds reference_window{std::chrono::hours(24)};
    std::shared_ptr<const drift_reference_data> reference_data; // reference == file
    std::size_t bins = 10;       // psi: quantile bins of the reference
    double epsilon = 1e-4;       // psi: share used for an empty bin
    ks_score ks_figure = ks_score::statistic;
    // psi and ks are computed again when this much sample time has passed since the last
    // computation (and on the first sample after warm-up); in between score() returns the
    // last figure. Zero computes on every sample.
    std::chrono::milliseconds evaluate_every{std::chrono::minutes(1)};

    std::shared_ptr<const warm_start_data> warm_start;
};

// What a detector says about one sample.
struct detector_output {
    // False while the baseline (or reference) has fewer than min_samples: the series is
    // warming up, the score means nothing and the tiers are not evaluated.
    bool ready = false;
    double score = 0;
    // The baseline and scale in the series' units, for explanations and charts: mean and
    // sigma, median and 1.4826 * MAD, the slot's mean and sigma, or the trailing statistic
    // with scale NaN. NaN for psi and ks, whose score has no position on the value axis.
    double baseline = std::numeric_limits<double>::quiet_NaN();
    double scale = std::numeric_limits<double>::quiet_NaN();
    // The samples the baseline (or the reference) holds.
    std::size_t samples = 0;
    // psi and ks: the samples in the current window.
    std::size_t current_samples = 0;
    // psi and ks with ks_score::p_value: the other figure, for explanations (the p-value
    // when the score is D, D when it is the p-value). NaN otherwise.
    double secondary = std::numeric_limits<double>::quiet_NaN();
};

class detector {
public:
    virtual ~detector() = default;

    // Scores the value of a sample at time t against the current baseline. Values are finite;
    // t never decreases from one call to the next.
    virtual detector_output score(time_ms t, double value) = 0;

    // Records the sample just scored. A held-out sample stays out of the baseline; a run of
    // held-out samples longer than adapt_after rebuilds the baseline from them.
    virtual void learn(time_ms t, double value, bool held_out) = 0;

    // Bytes owned by this detector, its own object included.
    virtual std::size_t memory_bytes() const = 0;

    // The number of times the baseline was rebuilt after a sustained shift.
    virtual std::uint64_t adaptations() const = 0;

    // Appends the detector's whole state to `out` in a compact binary form, so a restarted
    // daemon continues from the same baseline. The form starts with a type tag and a version.
    virtual void save(std::string& out) const = 0;

    // Replaces the state with one written by save() of a detector of the same type and spec.
    // Returns false, leaving the detector as it was, for anything else: another type or
    // version, a truncated or corrupt blob, sizes over the spec's max_samples, non-finite
    // numbers where they cannot occur.
    virtual bool load(std::string_view in) = 0;
};

// Writes an output in the binary form of detector state, and reads it back. read_output
// returns false for a truncated or corrupt text.
std::string write_output(const detector_output& out);
bool read_output(std::string_view text, detector_output& out);

// Creates the detector for one series. The spec must outlive the detector (rules are shared
// and immutable). A spec with warm_start data feeds those samples through learn() first.
// Returns nullptr with `error` set when the spec cannot work (an unknown time zone, a file
// reference without data); the rule loader checks the same conditions, so the engine should
// never see them.
std::unique_ptr<detector> make_detector(const detector_spec& spec, std::string& error);

// The value at which a sigma-like or baseline score equals `score_threshold`, for drawing tier
// lines on a chart: baseline + k * scale (above), baseline - k * scale (below), baseline * r
// (ratio), baseline + d (difference). For direction both it returns the upper line; the lower
// one is value_at_score(spec, out, threshold, true). NaN for psi and ks.
double value_at_score(const detector_spec& spec, const detector_output& out, double score_threshold,
                      bool lower = false);

} // namespace tocsin
