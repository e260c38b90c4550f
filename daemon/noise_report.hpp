#pragma once
// The noise report: which rules and alert groups notified most over a period, so that people
// know where to tune first. tocsind keeps one history row per alert in each notification it
// sends (state_store's notification_history table); GET /api/v1/report/noise and
// `tocsinctl report noise` show the report computed from those rows.
//
// Definitions used by compute_noise_report():
// - A notification is one (integration, group, sent_at): a group's flush to one integration. A
//   rule counts it once when at least one of its alerts is in it.
// - An episode is one firing span of one alert: (alert_id, starts_at). It counts in the period
//   when a notification in the period contains it. It is resolved when its latest row in the period
//   shows it resolved (ends_at set); a firing row at the same sent_at wins.
// - Firing time of a resolved episode: ends_at - starts_at. The median is over resolved episodes;
//   for an even count it is the mean of the two middle values.
// - Share resolved within 5 minutes: episodes resolved with a firing time of at most 5 minutes,
//   divided by all episodes of the period (the ones still firing included).
// - Flapping time: from a row whose flap marker is `started` to the next `stopped` row of the
//   same alert, or to the end of the period while it still flaps, cut to the period. Rows before
//   the period only show whether an alert already flapped when the period began.
//
// Only notifications that were built are recorded: an integration without send_resolved gets
// no resolve, so its episodes stay unresolved in the report unless another integration got the
// resolve. The same holds for the stop notice of a flap that settled as resolved.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "daemon/http_types.hpp"
#include "rules/clock.hpp"
#include "routing/dispatcher.hpp"

namespace tocsin {

class state_store;

// One alert in one sent notification, as stored.
struct history_row {
    time_ms sent_at = 0;      // notification::created_at
    std::string receiver;
    std::string integration;  // integration_ref::id(), such as "oncall/webhook/0"
    std::string group_key;
    std::string alertname;
    std::uint64_t fingerprint = 0; // label fingerprint, severity included
    std::uint64_t alert_id = 0;
    time_ms starts_at = 0;
    time_ms ends_at = 0;      // 0 while firing; the resolve time in a resolved alert's row
    std::uint8_t flap = 0;    // flap_none, flap_started or flap_stopped
    bool operator==(const history_row&) const = default;
};

inline constexpr std::uint8_t flap_none = 0;
inline constexpr std::uint8_t flap_started = 1;
inline constexpr std::uint8_t flap_stopped = 2;

// A notification with more alerts than this records its first this many (firing ones first,
// as the notification lists them). Its notification still counts in full.
inline constexpr std::size_t max_history_rows_per_notification = 1000;

// The history rows of one notification: one per alert, in the notification's order, at most
// `max_rows`. A firing alert's row has ends_at 0 even when an API sender gave it a future end
// (a resolve timeout); a resolved alert's row has its end. The flap marker comes from the
// "flapping" annotation that the dispatcher adds.
std::vector<history_row> history_rows(const notification& n,
                                      std::size_t max_rows = max_history_rows_per_notification);

// The figures of one rule, one group or the whole period.
struct noise_stats {
    std::uint64_t notifications = 0;
    std::uint64_t episodes = 0;
    std::uint64_t resolved_episodes = 0;
    std::uint64_t resolved_within_5m = 0;
    std::optional<double> median_firing_seconds; // nullopt without resolved episodes
    double flapping_seconds = 0;
    // resolved_within_5m / episodes, 0 without episodes.
    double resolved_within_5m_share() const;
    bool operator==(const noise_stats&) const = default;
};

struct noise_rule {
    std::string alertname;
    noise_stats stats;
    bool operator==(const noise_rule&) const = default;
};

struct noise_group {
    std::string group_key;
    std::string receiver;
    noise_stats stats;
    bool operator==(const noise_group&) const = default;
};

struct noise_report {
    time_ms from = 0; // the period: rows with from <= sent_at <= to
    time_ms to = 0;
    bool capped = false; // the requested period was longer than history_retention
    noise_stats totals;
    std::size_t rule_count = 0;  // rules that notified in the period, before `limit`
    std::size_t group_count = 0; // groups that notified in the period, before `limit`
    std::vector<noise_rule> rules;   // most notifications first, at most `limit`
    std::vector<noise_group> groups; // most notifications first, at most `limit`
    bool operator==(const noise_report&) const = default;
};

// Computes the report for the period [from, to] from `rows` in any order. Ties in the number
// of notifications are broken by more episodes, then by name.
noise_report compute_noise_report(const std::vector<history_row>& rows, time_ms from, time_ms to,
                                  std::size_t limit);

// The query of GET /api/v1/report/noise.
struct noise_query {
    std::chrono::milliseconds since{std::chrono::hours(24 * 7)};
    std::size_t limit = 20;
    bool capped = false; // `since` requested more than the retention and was cut to it
};

inline constexpr std::size_t max_noise_report_limit = 1000;

// Reads since= (a Prometheus duration greater than 0, default 7d) and limit= (1 to 1000,
// default 20) from an undecoded query string. A `since` longer than `retention` is cut to it.
// Returns nullopt and sets `error` to a message that names the value and the fix.
std::optional<noise_query> parse_noise_query(std::string_view query, std::chrono::milliseconds retention,
                                             std::string& error);

// GET /api/v1/report/noise: {"status":"success","data":{...}}; docs/API.md lists the fields.
std::string noise_report_json(const noise_report& report);

// A period with more history rows than this is not reported on, so that one request cannot
// hold the daemon's event loop or memory for long; a shorter `since` is the fix.
inline constexpr std::size_t max_noise_report_rows = 500'000;

// The whole of GET /api/v1/report/noise for the undecoded `query`: 200 with the report of the
// period ending at `now`; 400 for a bad query or a period with more than max_noise_report_rows
// rows; 500 when the store cannot be read.
http_response noise_report_response(state_store& store, std::string_view query, time_ms now,
                                    std::chrono::milliseconds retention);

// Reads the body of GET /api/v1/report/noise back. Returns nullopt and sets `error` when the
// body is not what noise_report_json() writes.
std::optional<noise_report> parse_noise_report(std::string_view body, std::string& error);

// The plain-text form for tocsinctl: the period and the totals, then a table of rules and a
// table of groups, columns padded to line up.
std::string format_noise_report(const noise_report& report);

} // namespace tocsin
