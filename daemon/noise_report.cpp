#include "daemon/noise_report.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/api.hpp"
#include "daemon/http_types.hpp"
#include "daemon/logging.hpp"
#include "daemon/state_store.hpp"
#include "daemon/terminal_text.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"
#include "rules/sample_time.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;

constexpr time_ms five_minutes_ms = 5 * 60'000;

// Maximum length of a value echoed in an error message.
constexpr std::size_t max_echo_chars = 100;

std::uint8_t flap_marker(const alert& a)
{
    for (const auto& [name, value] : a.annotations) {
        if (name != "flapping") {
            continue;
        }
        if (value.starts_with("started")) {
            return flap_started;
        }
        if (value.starts_with("stopped")) {
            return flap_stopped;
        }
    }
    return flap_none;
}

// One notification: (integration, group, sent_at).
using notification_key = std::tuple<std::string_view, std::string_view, time_ms>;
using episode_key = std::pair<std::uint64_t, time_ms>; // (alert_id, starts_at)

struct episode_state {
    time_ms last_sent_at = 0;
    bool resolved = false;
    time_ms ends_at = 0;
};

// The rows of one rule, one group or the whole period, reduced to noise_stats by finish().
class accumulator {
public:
    // A row sent within the period.
    void add(const history_row& r)
    {
        notifications_.insert({r.integration, r.group_key, r.sent_at});
        auto [it, fresh] = episodes_.try_emplace({r.alert_id, r.starts_at});
        episode_state& e = it->second;
        const bool resolved = r.ends_at != 0;
        if (fresh || r.sent_at > e.last_sent_at) {
            e.last_sent_at = r.sent_at;
            e.resolved = resolved;
            e.ends_at = r.ends_at;
        } else if (r.sent_at == e.last_sent_at) {
            // Another integration or group at the same flush: firing wins.
            e.resolved = e.resolved && resolved;
            e.ends_at = std::max(e.ends_at, r.ends_at);
        }
    }

    // A row with a flap marker, sent before or within the period.
    void add_flap(const history_row& r) { flaps_[r.alert_id].push_back(&r); }

    bool empty() const { return notifications_.empty() && flaps_.empty(); }

    noise_stats finish(time_ms from, time_ms to)
    {
        noise_stats s;
        s.notifications = notifications_.size();
        s.episodes = episodes_.size();
        std::vector<time_ms> firing;
        for (const auto& [key, e] : episodes_) {
            if (!e.resolved) {
                continue;
            }
            const time_ms length = std::max<time_ms>(0, e.ends_at - key.second);
            firing.push_back(length);
            if (length <= five_minutes_ms) {
                ++s.resolved_within_5m;
            }
        }
        s.resolved_episodes = firing.size();
        if (!firing.empty()) {
            std::sort(firing.begin(), firing.end());
            const std::size_t mid = firing.size() / 2;
            const double ms = firing.size() % 2 == 1
                                  ? static_cast<double>(firing[mid])
                                  : (static_cast<double>(firing[mid - 1]) + static_cast<double>(firing[mid])) / 2.0;
            s.median_firing_seconds = ms / 1000.0;
        }
        time_ms flapping = 0;
        for (auto& [id, rows] : flaps_) {
            std::stable_sort(rows.begin(), rows.end(), [](const history_row* a, const history_row* b) {
                return std::tie(a->sent_at, a->flap) < std::tie(b->sent_at, b->flap);
            });
            std::optional<time_ms> since;
            auto add_span = [&](time_ms start, time_ms end) {
                const time_ms a = std::max(start, from);
                const time_ms b = std::min(end, to);
                flapping += std::max<time_ms>(0, b - a);
            };
            for (const history_row* r : rows) {
                if (r->flap == flap_started && !since) {
                    since = r->sent_at;
                } else if (r->flap == flap_stopped && since) {
                    add_span(*since, r->sent_at);
                    since.reset();
                }
            }
            if (since) {
                add_span(*since, to);
            }
        }
        s.flapping_seconds = static_cast<double>(flapping) / 1000.0;
        return s;
    }

private:
    std::set<notification_key> notifications_;
    std::map<episode_key, episode_state> episodes_;
    std::map<std::uint64_t, std::vector<const history_row*>> flaps_;
};

// Most notifications first, then most episodes, then by name.
template <typename Entry>
void sort_and_cut(std::vector<Entry>& entries, std::size_t limit, std::string Entry::*name)
{
    std::sort(entries.begin(), entries.end(), [name](const Entry& a, const Entry& b) {
        if (a.stats.notifications != b.stats.notifications) {
            return a.stats.notifications > b.stats.notifications;
        }
        if (a.stats.episodes != b.stats.episodes) {
            return a.stats.episodes > b.stats.episodes;
        }
        return a.*name < b.*name;
    });
    if (entries.size() > limit) {
        entries.resize(limit);
    }
}

std::string echo(std::string_view text)
{
    std::string shown(text.substr(0, max_echo_chars));
    if (text.size() > max_echo_chars) {
        shown += "...";
    }
    return promql::quote(shown);
}

json stats_json(const noise_stats& s)
{
    return {
        {"notifications", s.notifications},
        {"episodes", s.episodes},
        {"resolved_episodes", s.resolved_episodes},
        {"median_firing_seconds", s.median_firing_seconds ? json(*s.median_firing_seconds) : json(nullptr)},
        {"resolved_within_5m", s.resolved_within_5m},
        {"resolved_within_5m_share", s.resolved_within_5m_share()},
        {"flapping_seconds", s.flapping_seconds},
    };
}

// Reads the fields stats_json() writes; throws json::exception for a missing or mistyped one.
noise_stats stats_from_json(const json& j)
{
    noise_stats s;
    s.notifications = j.at("notifications").get<std::uint64_t>();
    s.episodes = j.at("episodes").get<std::uint64_t>();
    s.resolved_episodes = j.at("resolved_episodes").get<std::uint64_t>();
    s.resolved_within_5m = j.at("resolved_within_5m").get<std::uint64_t>();
    const json& median = j.at("median_firing_seconds");
    if (!median.is_null()) {
        s.median_firing_seconds = median.get<double>();
    }
    s.flapping_seconds = j.at("flapping_seconds").get<double>();
    return s;
}

// A duration of seconds for people: whole seconds from 1s on ("2m31s"), milliseconds below.
std::string human_seconds(double seconds)
{
    auto ms = static_cast<std::int64_t>(std::llround(seconds * 1000.0));
    if (ms >= 1000) {
        ms = (ms + 500) / 1000 * 1000;
    }
    return format_duration(std::chrono::milliseconds(ms));
}

std::string percent(double share) { return fmt::format("{}%", std::llround(share * 100.0)); }

std::string table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows)
{
    std::vector<std::size_t> widths(header.size(), 0);
    for (std::size_t i = 0; i < header.size(); ++i) {
        widths[i] = display_width(header[i]);
    }
    for (const auto& row : rows) {
        for (std::size_t i = 0; i < row.size(); ++i) {
            widths[i] = std::max(widths[i], display_width(row[i]));
        }
    }
    auto line = [&](const std::vector<std::string>& cells) {
        std::string out;
        for (std::size_t i = 0; i < cells.size(); ++i) {
            out += cells[i];
            if (i + 1 < cells.size()) {
                out.append(widths[i] - display_width(cells[i]) + 2, ' ');
            }
        }
        return out + '\n';
    };
    std::string out = line(header);
    for (const auto& row : rows) {
        out += line(row);
    }
    return out;
}

std::vector<std::string> stats_cells(const noise_stats& s)
{
    return {std::to_string(s.notifications),
            std::to_string(s.episodes),
            std::to_string(s.resolved_episodes),
            s.median_firing_seconds ? human_seconds(*s.median_firing_seconds) : std::string("-"),
            s.episodes == 0 ? std::string("-") : percent(s.resolved_within_5m_share()),
            human_seconds(s.flapping_seconds)};
}

} // namespace

std::vector<history_row> history_rows(const notification& n, std::size_t max_rows)
{
    std::vector<history_row> rows;
    const std::size_t count = std::min(n.alerts.size(), max_rows);
    rows.reserve(count);
    const std::string integration = n.integration.id();
    for (std::size_t i = 0; i < count; ++i) {
        const alert& a = n.alerts[i];
        history_row r;
        r.sent_at = n.created_at;
        r.receiver = n.integration.receiver;
        r.integration = integration;
        r.group_key = n.group_key;
        r.alertname = std::string(a.labels.get("alertname"));
        r.fingerprint = a.fingerprint();
        r.alert_id = a.id;
        r.starts_at = a.starts_at;
        if (i >= n.firing) {
            r.ends_at = a.ends_at != 0 ? a.ends_at : n.created_at;
        }
        r.flap = flap_marker(a);
        rows.push_back(std::move(r));
    }
    return rows;
}

double noise_stats::resolved_within_5m_share() const
{
    return episodes == 0 ? 0.0 : static_cast<double>(resolved_within_5m) / static_cast<double>(episodes);
}

noise_report compute_noise_report(const std::vector<history_row>& rows, time_ms from, time_ms to, std::size_t limit)
{
    accumulator totals;
    std::map<std::string_view, accumulator> by_rule;
    std::map<std::string_view, accumulator> by_group;
    std::map<std::string_view, std::pair<time_ms, std::string_view>> receivers; // group -> (sent_at, receiver)
    for (const history_row& r : rows) {
        if (r.sent_at > to) {
            continue;
        }
        if (r.flap != flap_none) {
            totals.add_flap(r);
            by_rule[r.alertname].add_flap(r);
            by_group[r.group_key].add_flap(r);
        }
        if (r.sent_at < from) {
            continue;
        }
        totals.add(r);
        by_rule[r.alertname].add(r);
        by_group[r.group_key].add(r);
        auto [it, fresh] = receivers.try_emplace(r.group_key, r.sent_at, r.receiver);
        if (!fresh && r.sent_at >= it->second.first) {
            it->second = {r.sent_at, r.receiver};
        }
    }

    noise_report report;
    report.from = from;
    report.to = to;
    report.totals = totals.finish(from, to);
    for (auto& [name, acc] : by_rule) {
        noise_stats s = acc.finish(from, to);
        if (s.notifications > 0 || s.flapping_seconds > 0) {
            report.rules.push_back({std::string(name), s});
        }
    }
    for (auto& [key, acc] : by_group) {
        noise_stats s = acc.finish(from, to);
        if (s.notifications > 0 || s.flapping_seconds > 0) {
            auto it = receivers.find(key);
            // A group whose only rows are flap markers from before the period has no row in it.
            std::string receiver;
            if (it != receivers.end()) {
                receiver = std::string(it->second.second);
            } else {
                for (const history_row& r : rows) {
                    if (r.group_key == key) {
                        receiver = r.receiver;
                    }
                }
            }
            report.groups.push_back({std::string(key), std::move(receiver), s});
        }
    }
    report.rule_count = report.rules.size();
    report.group_count = report.groups.size();
    sort_and_cut(report.rules, limit, &noise_rule::alertname);
    sort_and_cut(report.groups, limit, &noise_group::group_key);
    return report;
}

std::optional<noise_query> parse_noise_query(std::string_view query, std::chrono::milliseconds retention,
                                             std::string& error)
{
    noise_query out;
    auto params = parse_query(query);
    if (!params) {
        error = "the query string has a malformed %XX escape; percent-encode it, for example since=7d&limit=20";
        return std::nullopt;
    }
    bool seen_since = false;
    bool seen_limit = false;
    for (const auto& [name, value] : *params) {
        if (name == "since") {
            if (seen_since) {
                error = "since is given more than once; give it once, for example since=7d";
                return std::nullopt;
            }
            seen_since = true;
            std::string problem;
            auto d = parse_duration(value, problem);
            if (!d) {
                error = fmt::format("invalid since {}: {}; expected a duration such as 7d, 24h or 30m", echo(value),
                                    problem);
                return std::nullopt;
            }
            if (d->count() <= 0) {
                error = fmt::format("invalid since {}: the period must be longer than 0s; expected a duration such "
                                    "as 7d, 24h or 30m",
                                    echo(value));
                return std::nullopt;
            }
            out.since = *d;
        } else if (name == "limit") {
            if (seen_limit) {
                error = "limit is given more than once; give it once, for example limit=20";
                return std::nullopt;
            }
            seen_limit = true;
            std::size_t n = 0;
            const char* end = value.data() + value.size();
            auto [ptr, ec] = std::from_chars(value.data(), end, n);
            if (value.empty() || ec != std::errc() || ptr != end || n < 1 || n > max_noise_report_limit) {
                error = fmt::format("invalid limit {}; expected a whole number from 1 to {}", echo(value),
                                    max_noise_report_limit);
                return std::nullopt;
            }
            out.limit = n;
        }
    }
    if (out.since > retention) {
        out.since = retention;
        out.capped = true;
    }
    return out;
}

std::string noise_report_json(const noise_report& report)
{
    json rules = json::array();
    for (const noise_rule& r : report.rules) {
        json item = stats_json(r.stats);
        item["alertname"] = r.alertname;
        rules.push_back(std::move(item));
    }
    json groups = json::array();
    for (const noise_group& g : report.groups) {
        json item = stats_json(g.stats);
        item["group_key"] = g.group_key;
        item["receiver"] = g.receiver;
        groups.push_back(std::move(item));
    }
    json totals = stats_json(report.totals);
    totals["rules"] = report.rule_count;
    totals["groups"] = report.group_count;
    json data = {
        {"from", format_rfc3339_ms(report.from)},
        {"to", format_rfc3339_ms(report.to)},
        {"period_seconds", static_cast<double>(report.to - report.from) / 1000.0},
        {"capped", report.capped},
        {"totals", std::move(totals)},
        {"rules", std::move(rules)},
        {"groups", std::move(groups)},
    };
    json doc = {{"status", "success"}, {"data", std::move(data)}};
    return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

http_response noise_report_response(state_store& store, std::string_view query, time_ms now,
                                    std::chrono::milliseconds retention)
{
    std::string error;
    auto parsed = parse_noise_query(query, retention, error);
    if (!parsed) {
        return http_response::text(400, error + "\n");
    }
    const time_ms from = now - parsed->since.count();
    auto rows = store.load_history(from, now, max_noise_report_rows + 1, error);
    if (!rows) {
        get_logger("store")->error("cannot read the notification history for the noise report: {}", error);
        return http_response::text(500, "cannot read the notification history; see the tocsind log\n");
    }
    if (rows->size() > max_noise_report_rows) {
        const auto shorter = std::max<std::chrono::milliseconds>(
            std::chrono::hours(1), std::chrono::duration_cast<std::chrono::hours>(parsed->since / 4));
        return http_response::text(400, fmt::format("the last {} hold more than {} notification history rows, more "
                                                    "than one report reads; ask for a shorter period, such as "
                                                    "since={}\n",
                                                    format_duration(parsed->since), max_noise_report_rows,
                                                    format_duration(shorter)));
    }
    noise_report report = compute_noise_report(*rows, from, now, parsed->limit);
    report.capped = parsed->capped;
    return http_response::json(200, noise_report_json(report));
}

std::optional<noise_report> parse_noise_report(std::string_view body, std::string& error)
{
    noise_report report;
    try {
        const json doc = json::parse(body);
        if (!doc.is_object() || doc.value("status", std::string()) != "success" || !doc.contains("data")) {
            error = "the response is not a noise report: expected {\"status\":\"success\",\"data\":{...}}";
            return std::nullopt;
        }
        const json& data = doc.at("data");
        for (auto [key, target] : {std::pair{"from", &report.from}, std::pair{"to", &report.to}}) {
            std::optional<bool> unit_ms;
            std::string problem;
            auto t = parse_sample_timestamp(data.at(key).get<std::string>(), unit_ms, problem);
            if (!t) {
                error = fmt::format("the noise report's {} is not a time: {}", key, problem);
                return std::nullopt;
            }
            *target = *t;
        }
        report.capped = data.at("capped").get<bool>();
        const json& totals = data.at("totals");
        report.totals = stats_from_json(totals);
        report.rule_count = totals.at("rules").get<std::size_t>();
        report.group_count = totals.at("groups").get<std::size_t>();
        for (const json& item : data.at("rules")) {
            report.rules.push_back({item.at("alertname").get<std::string>(), stats_from_json(item)});
        }
        for (const json& item : data.at("groups")) {
            report.groups.push_back(
                {item.at("group_key").get<std::string>(), item.at("receiver").get<std::string>(), stats_from_json(item)});
        }
    } catch (const json::exception& e) {
        error = fmt::format("the response is not a noise report tocsinctl can read ({}); check that --url names "
                            "tocsind",
                            e.what());
        return std::nullopt;
    }
    return report;
}

std::string format_noise_report(const noise_report& report)
{
    std::string out = fmt::format("Noise report from {} to {} ({}{})\n", format_rfc3339(report.from),
                                  format_rfc3339(report.to),
                                  format_duration(std::chrono::milliseconds(report.to - report.from)),
                                  report.capped ? ", cut to history_retention" : "");
    const noise_stats& t = report.totals;
    out += fmt::format("Totals: {} notifications, {} episodes ({} resolved), median firing time {}, {} resolved "
                       "within 5m, flapping {}\n",
                       t.notifications, t.episodes, t.resolved_episodes,
                       t.median_firing_seconds ? human_seconds(*t.median_firing_seconds) : std::string("-"),
                       t.episodes == 0 ? std::string("-") : percent(t.resolved_within_5m_share()),
                       human_seconds(t.flapping_seconds));
    const std::vector<std::string> stats_header = {"NOTIFICATIONS", "EPISODES",  "RESOLVED",
                                                   "MEDIAN FIRING", "WITHIN 5M", "FLAPPING"};

    out += fmt::format("\nRules ({} of {})\n", report.rules.size(), report.rule_count);
    if (report.rules.empty()) {
        out += "none notified in this period\n";
    } else {
        std::vector<std::string> header = {"ALERTNAME"};
        header.insert(header.end(), stats_header.begin(), stats_header.end());
        std::vector<std::vector<std::string>> rows;
        for (const noise_rule& r : report.rules) {
            std::vector<std::string> row = {printable(r.alertname)};
            for (auto& cell : stats_cells(r.stats)) {
                row.push_back(std::move(cell));
            }
            rows.push_back(std::move(row));
        }
        out += table(header, rows);
    }

    out += fmt::format("\nGroups ({} of {})\n", report.groups.size(), report.group_count);
    if (report.groups.empty()) {
        out += "none notified in this period\n";
    } else {
        std::vector<std::string> header = {"GROUP", "RECEIVER"};
        header.insert(header.end(), stats_header.begin(), stats_header.end());
        std::vector<std::vector<std::string>> rows;
        for (const noise_group& g : report.groups) {
            std::vector<std::string> row = {printable(g.group_key), printable(g.receiver)};
            for (auto& cell : stats_cells(g.stats)) {
                row.push_back(std::move(cell));
            }
            rows.push_back(std::move(row));
        }
        out += table(header, rows);
    }
    return out;
}

} // namespace tocsin
