#pragma once
// JSON views of the engine for the HTTP API.

#include <string>
#include <vector>

#include "rules/clock.hpp"
#include "rules/engine.hpp"

namespace tocsin {

// RFC 3339 in UTC with milliseconds, as Prometheus writes it: 2026-01-02T03:04:05.678Z.
std::string format_rfc3339_ms(time_ms t);

// GET /api/v1/alerts: {"status":"success","data":{"alerts":[...]}}.
std::string alerts_json(const std::vector<alert_snapshot>& alerts);

// GET /api/v1/rules: the loaded rules in the shape of Prometheus' rules API (type, query,
// duration, labels, annotations, alerts, health), plus tiers and series counts.
std::string rules_json(const rule_set& rules, const std::vector<rule_stats>& stats,
                       const std::vector<alert_snapshot>& alerts);

} // namespace tocsin
