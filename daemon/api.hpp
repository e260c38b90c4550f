#pragma once
// JSON views of the engine for the HTTP API.

#include <functional>
#include <string>
#include <vector>

#include "rules/clock.hpp"
#include "routing/dispatcher.hpp"
#include "rules/engine.hpp"

namespace tocsin {
class override_table;
struct threshold_override;
} // namespace tocsin

namespace tocsin {

// RFC 3339 in UTC with milliseconds, as Prometheus writes it: 2026-01-02T03:04:05.678Z.
std::string format_rfc3339_ms(time_ms t);

// GET /api/v1/alerts: {"status":"success","data":{"alerts":[...]}}.
// `mutes` gives each alert's silences and inhibiting alerts (silencedBy, inhibitedBy); without
// it both lists are empty.
std::string alerts_json(const std::vector<alert_snapshot>& alerts,
                        const std::function<mute_status(const alert_snapshot&)>& mutes = {});

// GET /api/v1/rules: the loaded rules in the shape of Prometheus' rules API (type, query,
// duration, labels, annotations, alerts, health), plus tiers and series counts. `rules` are the
// rules as the files define them. A rule with an entry in `overrides` shows the tiers in force
// and an `override` object with the thresholds before and after.
std::string rules_json(const rule_set& rules, const std::vector<rule_stats>& stats,
                       const std::vector<alert_snapshot>& alerts, const override_table* overrides = nullptr);

// GET /api/v1/overrides: {"status":"success","data":{"overrides":[...]}}, one item per active
// override, described against `rules` as the files define them.
std::string overrides_json(const override_table& overrides, const rule_set& rules);

// The response body of PUT and DELETE /api/v1/rules/{name}/override: {"status":"success","data":{...}}.
std::string override_json(const threshold_override& o, const rule& r);

} // namespace tocsin
