#pragma once
// The rule engine: series in, alerts out. No sockets, no threads.
//
// Samples are evaluated as they arrive, on sample (event) time: `for` durations and windows
// compare sample timestamps, so a replayed stream gives the same alerts as live traffic. The
// injected clock drives only no-data detection (tick()).
//
// Thread safety: none. One owner (the daemon's event loop, a test, a backtest) calls every
// member function.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rules/clock.hpp"
#include "rules/labels.hpp"
#include "rules/rule.hpp"

namespace tocsin {

enum class alert_state : std::uint8_t { inactive, pending, firing };
const char* to_string(alert_state s);

// An alert as the API and the notifiers see it.
struct alert_snapshot {
    std::uint64_t id = 0;  // fingerprint of the rule name and the series labels; stable across severities
    std::string rule_name; // alertname
    label_set labels;      // series labels without __name__, rule labels, alertname, severity
    std::vector<std::pair<std::string, std::string>> annotations; // rendered
    alert_state state = alert_state::inactive;
    severity level = severity::warning;
    double value = 0;
    time_ms active_at = 0;      // sample time at which the first tier started to hold
    time_ms fired_at = 0;       // sample time at which it started firing; 0 while pending
    time_ms resolved_at = 0;    // set on resolved events
    time_ms last_sample_at = 0; // sample time of the last evaluated value
    bool no_data = false;       // a no-data alert raised by no_data_action::alert
    std::string reason;         // why it resolved: "", "recovered", "missing_series", "rule_removed", "rule_changed"
    // Dynamic rules: what the value was measured against when the event was made. `value`
    // stays the series' value; the tiers compared `score`.
    std::optional<detector_output> explanation;
};

// Everything needed to bring an alert back after a restart, with its timers.
struct persisted_alert {
    std::uint64_t id = 0;
    std::string rule_name;
    std::uint64_t rule_hash = 0; // rule::definition_hash at the time of saving
    label_set series;            // the full series label set, with __name__
    alert_state state = alert_state::inactive;
    severity level = severity::warning;
    double value = 0;
    time_ms active_at = 0;
    time_ms fired_at = 0;
    time_ms last_sample_at = 0;
    bool no_data = false;
    std::vector<time_ms> tier_held_since;  // per tier of the rule; 0 = not held
    std::vector<time_ms> tier_released_at; // per tier; keep_firing_for counts from here; 0 = none
    // The severity of each tier, so that restore() can map timers onto an edited rule. Empty
    // when the store did not keep it; restore() then infers the severities where it can.
    std::vector<severity> tier_levels;
};

// The saved state of one detector, so that a restarted daemon continues a dynamic rule's
// baseline instead of warming up again.
struct baseline_record {
    std::string rule_name;
    std::uint64_t spec_hash = 0; // detector_spec_hash() of the rule's dynamic block when saved
    label_set series;            // the full series label set, with __name__
    time_ms last_sample_at = 0;  // sample time of the series' last sample
    std::string state;           // detector::save()
    detector_output last;        // the output for the last value scored, for explanations
};

// A change that must reach the store (and, later, the notifiers).
struct alert_event {
    enum class kind : std::uint8_t {
        pending,          // first tier started to hold
        firing,           // a tier's `for` elapsed
        severity_changed, // escalation or de-escalation of a firing alert
        updated,          // timers changed without a visible transition (a higher tier started to hold)
        resolved,         // no tier is held any more; `alert.reason` gives the cause
    };
    kind what = kind::updated;
    alert_snapshot alert;
    persisted_alert record; // the new durable state; for resolved, state is inactive (delete it)
    // Every change produces an event, so the store always has the current state. A held-back
    // event is for the store only and must not be announced: its rule is over
    // per_rule_max_alerts, or it resolves an alert that was never announced. Once the rule is
    // back under its limit, tick() sends the state each alert has then as a normal event.
    bool held_back = false;
};

const char* to_string(alert_event::kind k);

// The struct defaults disable the timestamp checks, so tests and backtests can run on any
// clock; the daemon's defaults (main_config) enable them.
struct engine_limits {
    std::size_t max_series = 2'000'000;       // series beyond this are rejected on ingest
    std::size_t per_rule_max_alerts = 10'000; // pending, firing and no-data alerts of one rule
    std::size_t max_active_alerts = 50'000;   // pending + firing alerts of all rules
    // Samples stamped more than this ahead of the clock are rejected; 0 disables the check.
    // One sample far in the future would otherwise make every later real sample of its series
    // out of order.
    milliseconds max_future_skew{0};
    // Samples stamped more than this behind the clock are rejected; 0 disables the check. It
    // catches timestamps sent in seconds instead of milliseconds (they read as January 1970).
    milliseconds max_sample_age{0};
};

enum class ingest_status : std::uint8_t {
    accepted,
    duplicate,    // same timestamp as the series' last sample; dropped (a sender retry)
    out_of_order, // older than the series' last sample; dropped
    series_limit, // a new series would exceed engine_limits::max_series
    stale_marker, // a Prometheus stale marker; the series is missing from its timestamp on
    too_far_in_future, // the timestamp is more than max_future_skew ahead of the clock; dropped
    too_old,           // the timestamp is more than max_sample_age behind the clock; dropped
};

struct rule_stats {
    std::string name;
    std::string group;
    std::size_t series = 0;
    std::size_t warming_up = 0; // dynamic rules: series whose baseline is not ready yet
    std::size_t pending = 0;
    std::size_t firing = 0; // no-data alerts included
    bool limit_exceeded = false; // per_rule_max_alerts was hit; the rule's alerts are held back
};

struct engine_stats {
    std::size_t series = 0;
    std::size_t pending = 0;
    std::size_t firing = 0;
    std::size_t firing_by_severity[5] = {}; // indexed by severity value
    std::uint64_t samples_evaluated = 0;
    std::uint64_t non_numeric_samples = 0;
    std::uint64_t out_of_order_samples = 0;
    std::uint64_t duplicate_samples = 0;
    std::uint64_t too_far_in_future_samples = 0;
    std::uint64_t too_old_samples = 0;
    std::uint64_t series_limit_rejections = 0;
    std::uint64_t alert_limit_rejections = 0;
    std::size_t warming_up = 0;        // bindings of dynamic rules whose baseline is not ready yet
    std::uint64_t baseline_adaptations = 0; // baselines rebuilt after a sustained shift
    std::size_t detector_bytes = 0;    // the part of state_bytes taken by detectors
    std::size_t state_bytes = 0; // estimated bytes of engine state, label strings included
    std::size_t label_bytes = 0; // the part of state_bytes taken by packed series label buffers
};

// One value evaluated by one rule on one series, as backtests and charts need it.
struct evaluation {
    const rule* def = nullptr;
    std::uint64_t series_fingerprint = 0; // label_set::fingerprint() of the series, __name__ included
    time_ms at = 0;
    double value = 0;                      // after the rule's transform
    std::optional<detector_output> detector; // dynamic rules only
    alert_state state = alert_state::inactive; // after this value
    severity level = severity::warning;
};

class engine {
public:
    engine(std::shared_ptr<const rule_set> rules, engine_limits limits, const clock& clock);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    // Evaluates one sample. `sorted_labels` is sorted by name, has unique names and no
    // empty values, and is only borrowed for the call. A timestamp outside the limits'
    // max_future_skew and max_sample_age is rejected before any state changes. A gap since the
    // series' previous sample of at least a rule's no_data.timeout counts as missing data for
    // that rule, as if the clock had run through the gap (see no_data_action). A stale marker,
    // and a non-numeric value under on_non_numeric=no_data, make the series missing at their
    // timestamp: the rule's no-data action applies at once, in sample time.
    ingest_status ingest(std::span<const label_view> sorted_labels, time_ms timestamp, double value);

    // Applies no-data policies against the clock. The daemon calls it about once a second.
    void tick();

    // Installs a new rule set. Alerts whose rule has the same name and definition_hash keep
    // their state. An edited rule (same name, other hash) keeps the alerts of the series it
    // still selects: tier timers carry over by severity, the window restarts only when the
    // transform changed, and each alert is evaluated again with its last value against the new
    // tiers, so it stays, steps down or resolves with reason rule_changed. Alerts of series the
    // edited rule no longer selects resolve with rule_changed, those of removed rules with
    // rule_removed.
    void replace_rules(std::shared_ptr<const rule_set> rules);
    void set_limits(engine_limits limits);
    const engine_limits& limits() const;
    const rule_set& rules() const;
    // The injected clock's time, against which ingest() checks timestamps.
    time_ms now_ms() const;

    // Restores alerts saved by a previous process. Call before the first ingest. A record of
    // an edited rule (same name, other hash) is mapped onto the new tiers by severity as in
    // replace_rules(). Records whose rule no longer exists, whose series the rule no longer
    // selects, or whose tier severities cannot be determined are dropped and their count returned.
    // The no-data timer of a restored series continues from its last sample.
    std::size_t restore(const std::vector<persisted_alert>& records);

    // Saved state of every detector of every dynamic rule.
    std::vector<baseline_record> baselines() const;
    // Gives detectors their saved state. Call after restore() and before the first ingest.
    // Records whose rule is gone or is no longer dynamic, whose dynamic block changed, whose
    // series the rule no longer selects, or whose state does not load are dropped, and their
    // count returned.
    std::size_t restore_baselines(const std::vector<baseline_record>& records);

    // Moves out the events produced since the last call, in the order they happened.
    std::vector<alert_event> take_events();

    // Pending and firing alerts, plus one meta-alert per rule over its alert limit.
    std::vector<alert_snapshot> alerts() const;
    // Durable form of every pending and firing alert.
    std::vector<persisted_alert> persisted_state() const;

    // Calls `observer` for every value a rule evaluates, after the alert state has moved.
    // Backtests use it; an empty function (the default) turns it off.
    void set_observer(std::function<void(const evaluation&)> observer);

    engine_stats stats() const;
    std::vector<rule_stats> rule_statistics() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// True for the exact bit pattern of a Prometheus stale marker (0x7ff0000000000002).
bool is_stale_marker(double value);

} // namespace tocsin
