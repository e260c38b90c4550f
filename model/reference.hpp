#pragma once
// The reference distribution of one feature of a model version, against which data quality
// and drift are measured, and its JSON form, so a version's reference can be frozen and
// exported.
//
// A numeric reference stores:
//   edges, shares   bins + 1 quantile edges (quantiles 0, 1/bins, ..., 1) and the share of the
//                   reference in each bin, binned as tocsin::bin_shares does (rules/drift.hpp).
//                   Heavy ties give repeated edges and empty bins.
//   low_value, high_value   the low_quantile and high_quantile quantiles (default 0.005 and
//                   0.995). A window value outside [low_value, high_value] is an outlier.
//   ks_points       a sorted sample of the reference for the Kolmogorov-Smirnov test: all
//                   values when there are at most ks_points of them, otherwise ks_points order
//                   statistics at the evenly spaced ranks (i + 0.5) / ks_points. KS against
//                   these points has a statistic within 1 / ks_points of KS against all
//                   values, and its p-value is that of a sample of ks_points values, which is
//                   larger (more conservative) than with the full reference.
// A categorical or boolean reference stores each category's share, at most max_categories of
// them (the most frequent, ties by name), and the share of all others as other_share. A
// boolean reference has the categories "false" and "true".
//
// Two ways to build one:
//   build_numeric_reference / build_categorical_reference   exact, from a list of values.
//                   Quantiles interpolate linearly between order statistics, like numpy's
//                   default quantile method.
//   reference_builder   streaming, for the values of a period. Numeric quantiles come from a
//                   quantile_sketch (model/quantile_sketch.hpp), so every edge, low_value,
//                   high_value and KS point is within epsilon * count ranks of the exact
//                   one, and each share within about 2 * epsilon of its bin's true share.
//                   Categories are counted exactly, up to max_tracked_categories names.
//
// JSON: see to_json below for the fields. reference_from_json rejects malformed input with a
// message that names the field, what is wrong and what is expected.
//
// Thread safety: a reference is a plain value and may be shared for reading, for example as a
// std::shared_ptr<const reference>. A reference_builder is not thread-safe.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/feature.hpp"
#include "model/quantile_sketch.hpp"

namespace tocsin::model {

struct reference_options {
    // Quantile bins for numeric PSI, 1 to max_reference_bins.
    std::size_t bins = 10;
    // Quantiles whose values bound the non-outlier range, 0 <= low < high <= 1.
    double low_quantile = 0.005;
    double high_quantile = 0.995;
    // Size of the KS sample kept from a numeric reference, 1 to max_reference_ks_points.
    std::size_t ks_points = 1000;
    // Categories kept by a categorical reference, 1 to max_reference_categories.
    std::size_t max_categories = 256;
    // Rank error of the streaming builder's quantile sketch.
    double sketch_epsilon = 0.001;
    // Distinct categories the streaming builder counts. Values of further categories count
    // towards other_share.
    std::size_t max_tracked_categories = 100'000;
};

// Limits that reference_from_json enforces, so a reference file bounds the memory of the
// windows built on it.
inline constexpr std::size_t max_reference_bins = 1000;
inline constexpr std::size_t max_reference_ks_points = 10'000;
inline constexpr std::size_t max_reference_categories = 10'000;
// Shares must sum to 1 within this.
inline constexpr double reference_share_tolerance = 1e-6;
// The value of "format_version" that this code writes and reads.
inline constexpr int reference_format_version = 1;

struct category_share {
    std::string name;
    double share = 0;

    bool operator==(const category_share&) const = default;
};

struct reference {
    feature_type type = feature_type::numeric;
    // Values the reference was built from.
    std::uint64_t count = 0;

    // Numeric only.
    std::vector<double> edges;
    std::vector<double> shares;
    double low_quantile = 0;
    double low_value = 0;
    double high_quantile = 1;
    double high_value = 0;
    std::vector<double> ks_points;

    // Categorical and boolean only, most frequent first.
    std::vector<category_share> categories;
    double other_share = 0;

    std::size_t bin_count() const { return shares.size(); }
    bool operator==(const reference&) const = default;
};

// Builds an exact numeric reference. Throws std::invalid_argument when values is empty, has
// a value that is not finite, or the options are out of range.
reference build_numeric_reference(std::span<const double> values, const reference_options& options = {});

// Builds an exact categorical reference. Throws std::invalid_argument when values is empty or
// the options are out of range.
reference build_categorical_reference(std::span<const std::string> values, const reference_options& options = {});

// Builds a reference from a period's values, one at a time.
class reference_builder {
public:
    // Throws std::invalid_argument when the options are out of range.
    reference_builder(feature_type type, const reference_options& options = {});

    // Adds one value. Returns false, and ignores the value, when it is null, of another type
    // than the builder's, or a number that is not finite.
    bool add(const feature_value& value);

    std::uint64_t count() const { return count_; }

    // Builds the reference. Throws std::logic_error when no value was added.
    reference build() const;

private:
    feature_type type_;
    reference_options options_;
    std::uint64_t count_ = 0;
    quantile_sketch sketch_;
    std::unordered_map<std::string, std::uint64_t> category_counts_;
    std::uint64_t untracked_count_ = 0;
};

// Writes a reference as JSON:
//   {"format_version": 1, "type": "numeric", "count": 1000,
//    "edges": [...], "shares": [...], "low_quantile": 0.005, "low_value": -2.6,
//    "high_quantile": 0.995, "high_value": 2.6, "ks_points": [...]}
//   {"format_version": 1, "type": "categorical" or "boolean", "count": 1000,
//    "categories": [{"name": "a", "share": 0.6}, ...], "other_share": 0.0}
// Doubles are written with enough digits to read back the same value.
nlohmann::json to_json(const reference& ref);

// Reads and validates a reference. On failure returns std::nullopt and sets `error` to a
// message that starts with "reference:", names the field and states what it expects.
std::optional<reference> reference_from_json(const nlohmann::json& json, std::string& error);

// Parses JSON text and then validates it as reference_from_json does.
std::optional<reference> parse_reference(std::string_view text, std::string& error);

}  // namespace tocsin::model
