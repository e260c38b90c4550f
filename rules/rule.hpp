#pragma once
// The rule model: what rule files load into and what the engine evaluates.
//
// A rule selects series by metric name and label matchers, optionally transforms each series
// over a window, and compares the result with up to four tiers. One alert exists per
// (rule, series); its severity is the highest tier whose condition has held for that tier's
// `for` duration.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/detector.hpp"
#include "rules/matcher.hpp"
#include "rules/template.hpp"

namespace tocsin {

using std::chrono::milliseconds;

enum class compare_op { greater, greater_equal, less, less_equal, equal, not_equal };

// "> 80", "<= 0.5", "== 0". NaN never satisfies a condition, whatever the operator.
struct condition {
    compare_op op = compare_op::greater;
    double threshold = 0;

    bool holds(double value) const;
    std::string to_string() const;
};

// Severities in ascending order. The names are the values of the `severity` label.
enum class severity : std::uint8_t { info = 1, warning = 2, critical = 3, page = 4 };

const char* to_string(severity s);
std::optional<severity> parse_severity(std::string_view name);

struct tier {
    severity level = severity::warning;
    condition when;
    // Hysteresis: once the tier holds, it stays held until `recover` is true. Without it
    // the tier is released as soon as `when` is false.
    std::optional<condition> recover;
    milliseconds for_duration{0};
    // After release, the tier still counts as firing for this long.
    milliseconds keep_firing_for{0};
};

enum class transform_kind { none, rate, increase, delta, avg, min, max, quantile };

const char* to_string(transform_kind k);

struct transform {
    transform_kind kind = transform_kind::none;
    milliseconds window{0};
    double quantile = 0.5;    // for transform_kind::quantile, in [0, 1]
    bool extrapolate = true;  // rate/increase/delta extrapolate to the window edges as Prometheus does
};

// The action taken when a series stops reporting. The silence is measured on the injected clock
// from the moment the last sample arrived (or a Prometheus stale marker arrived).
enum class no_data_action {
    resolve,    // resolve the series' alert once the series is missing
    keep_state, // keep the alert as it is; resolve only after `resolve_after`, if set
    alert,      // raise a separate no-data alert for the series
};

struct no_data_policy {
    milliseconds timeout{std::chrono::minutes(5)};
    no_data_action action = no_data_action::resolve;
    milliseconds resolve_after{0}; // keep_state only; 0 keeps the state until data returns
    severity alert_severity = severity::warning; // action alert only
};

// The handling of a NaN or ±Inf value. Either way it never fires and never resets a pending timer.
enum class non_numeric_action {
    ignore,  // skip the value; the alert keeps its state
    no_data, // treat the series as silent, so the no-data policy applies
};

struct rule {
    std::string name;  // becomes the alertname label
    std::string group; // the rule group it was loaded from
    std::string file;  // the rule file, for messages
    int line = 0;      // 1-based position of the rule in `file`
    int column = 0;

    std::string expr;   // the expression as written, for the API
    std::string metric; // required __name__ of the selected series
    std::vector<label_matcher> matchers;
    transform xform;
    // A dynamic rule scores each value against a baseline of its series; its tiers then compare
    // the score (for example "> 3" sigma), not the value.
    std::optional<detector_spec> dynamic;
    std::vector<tier> tiers; // ascending severity, at least one

    std::vector<std::pair<std::string, text_template>> labels;
    std::vector<std::pair<std::string, text_template>> annotations;

    no_data_policy no_data;
    non_numeric_action on_non_numeric = non_numeric_action::ignore;
    bool fire_on_infinity = false; // opt-in: let ±Inf take part in comparisons

    // Hash of the rule's canonical definition. A reload keeps the state of alerts whose rule
    // name and hash are unchanged.
    std::uint64_t definition_hash = 0;

    bool selects(const label_set& series) const;
};

struct rule_group {
    std::string name;
    std::string file;
    std::vector<std::shared_ptr<const rule>> rules;
};

// Every loaded rule, read-only once built and shared by the engine and the API.
struct rule_set {
    std::vector<rule_group> groups;
    std::vector<std::shared_ptr<const rule>> rules; // all rules in load order
};

} // namespace tocsin
