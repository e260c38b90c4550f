#pragma once
// Temporary threshold overrides: an operator raises or lowers the thresholds of a rule's tiers
// through the API until an expiry time, without editing the rule file.
//
// An override changes only the thresholds of `when` and `recover`; the comparison operator,
// `for` and everything else stay as the rule file defines them. The overridden rule is a copy
// with the same name and definition_hash, so engine::replace_rules() keeps the state of every
// alert of the rule, and the next sample is compared with the new thresholds.
//
// Thread safety: none. The daemon's event loop owns the table.

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rules/clock.hpp"
#include "rules/rule.hpp"

namespace tocsin {

// New thresholds for one tier. An unset field keeps the rule's threshold.
struct tier_override {
    severity level = severity::warning;
    std::optional<double> when_threshold;
    std::optional<double> recover_threshold;
};

struct threshold_override {
    std::string rule_name;
    std::vector<tier_override> tiers; // ascending severity, each severity at most once
    time_ms created_at = 0;           // milliseconds since the Unix epoch, on the daemon's clock
    time_ms expires_at = 0;           // the override stops applying when the clock reaches this
    std::string reason;
    std::string author;     // from the request body; else the token name
    std::string token_name; // the admin token file's name without its folder and extension

    const tier_override* find(severity level) const;
};

// Bounds on an override request. `max_duration` comes from limits.max_override_duration.
struct override_limits {
    std::chrono::milliseconds max_duration{std::chrono::hours(24 * 7)};
    std::size_t max_body_bytes = 64 * 1024;
    std::size_t max_reason_bytes = 1024;
    std::size_t max_author_bytes = 256;
};

// A parsed request, or the HTTP status (400, 404, 413) and a message naming the value and the fix.
struct override_request {
    std::optional<threshold_override> value;
    int status = 400;
    std::string error;
};

// Parses the body of PUT /api/v1/rules/{name}/override against the base rules (as the rule files
// define them). `token_name` is the identity of the admin token the request carried.
override_request parse_override_request(std::string_view body, std::string_view rule_name, const rule_set& rules,
                                        std::string_view token_name, time_ms now, const override_limits& limits);

// Checks that every severity of `o` is a tier of `r` and that a recover threshold is set only on
// a tier that has `recover`. The overridden rule must also pass the rule loader's checks: recover
// disjoint from the condition, thresholds ordered by severity. Returns "" when `o` fits.
std::string check_override(const threshold_override& o, const rule& r);

// Returns a copy of `r` with the thresholds of `o`. The name and definition_hash stay those of `r`.
std::shared_ptr<const rule> apply_override(const rule& r, const threshold_override& o);

// One tier's condition before and after an override, for the API, the log and the metrics.
struct tier_change {
    severity level = severity::warning;
    condition when_before;
    condition when_after;
    std::optional<condition> recover_before; // set when the override changes recover
    std::optional<condition> recover_after;
};

// Returns the changes `o` makes to `r`, in ascending severity. Tiers of `o` missing from `r` are left out.
std::vector<tier_change> tier_changes(const threshold_override& o, const rule& r);

// "critical > 0.95 -> > 0.97 (recover < 0.9 -> < 0.93), warning > 0.8 -> > 0.9".
std::string describe_changes(const std::vector<tier_change>& changes);

// An override that no longer fits the rules it was made for, with the reason.
struct dropped_override {
    threshold_override value;
    std::string reason;
};

// The active overrides, one per rule, keyed by rule name.
class override_table {
public:
    // Adds `o`, replacing an override of the same rule.
    void set(threshold_override o);
    // Removes the override of `rule_name`; returns it, or nullopt when there is none.
    std::optional<threshold_override> remove(const std::string& rule_name);
    const threshold_override* find(const std::string& rule_name) const;
    const std::map<std::string, threshold_override>& items() const { return items_; }
    bool empty() const { return items_.empty(); }

    // Removes and returns the overrides whose expires_at is at or before `now`.
    std::vector<threshold_override> take_expired(time_ms now);
    // Removes and returns the overrides whose rule is gone from `rules` or that check_override()
    // rejects against it, as after a reload that removed a rule or a tier.
    std::vector<dropped_override> take_unfit(const rule_set& rules);

    // Returns `base` with every overridden rule replaced by its overridden copy, in the same
    // groups and order. Returns `base` itself when no override applies.
    std::shared_ptr<const rule_set> apply(const std::shared_ptr<const rule_set>& base) const;

private:
    std::map<std::string, threshold_override> items_;
};

// Parses an RFC 3339 timestamp with a `Z` or ±hh:mm offset and an optional fraction of up to
// nanoseconds, such as 2026-01-02T03:04:05.678Z. Returns milliseconds since the Unix epoch
// (the fraction truncated), or nullopt.
std::optional<time_ms> parse_rfc3339(std::string_view text);

} // namespace tocsin
