// The noise report: history rows from notifications, the report computed from rows, its JSON and
// text forms, the query of GET /api/v1/report/noise, the notification_history table of the
// state store, the rows the delivery service records, and `tocsinctl report noise`.

#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <catch2/catch.hpp>

#include "daemon/ctl_report.hpp"
#include "daemon/noise_report.hpp"
#include "daemon/state_store.hpp"
#include "delivery_fixture.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using tocsin::test::temp_dir;

namespace {

constexpr time_ms T = 1'700'000'000'000; // 2023-11-14T22:13:20Z
constexpr time_ms s_ms(time_ms s) { return s * 1000; }
constexpr time_ms min_ms(time_ms m) { return m * 60'000; }
constexpr time_ms h_ms(time_ms h) { return h * 3'600'000; }

history_row row(time_ms sent_at, const std::string& integration, const std::string& group, const std::string& alertname,
                std::uint64_t alert_id, time_ms starts_at, time_ms ends_at = 0, std::uint8_t flap = flap_none)
{
    history_row r;
    r.sent_at = sent_at;
    r.receiver = integration.substr(0, integration.find('/'));
    r.integration = integration;
    r.group_key = group;
    r.alertname = alertname;
    r.fingerprint = alert_id * 7;
    r.alert_id = alert_id;
    r.starts_at = starts_at;
    r.ends_at = ends_at;
    r.flap = flap;
    return r;
}

const std::string hook = "ops/webhook/0";
const std::string slack = "ops/slack/0";

// Two rules over a week:
// DiskFull in group g1 to one integration: four episodes, all resolved, of 60s, 360s, 300s and
// 90s, in six notifications (alerts 2 and 3 share theirs).
// HighCpu in group g2 to two integrations: one episode resolved after 200s and one still firing,
// each notification going to both integrations, six in all.
std::vector<history_row> two_rules()
{
    return {
        row(T + s_ms(30), hook, "g1", "DiskFull", 1, T),
        row(T + s_ms(90), hook, "g1", "DiskFull", 1, T, T + s_ms(60)),
        row(T + s_ms(130), hook, "g1", "DiskFull", 2, T + s_ms(100)),
        row(T + s_ms(130), hook, "g1", "DiskFull", 3, T + s_ms(100)),
        row(T + s_ms(500), hook, "g1", "DiskFull", 2, T + s_ms(100), T + s_ms(460)),
        row(T + s_ms(500), hook, "g1", "DiskFull", 3, T + s_ms(100), T + s_ms(400)),
        row(T + s_ms(1030), hook, "g1", "DiskFull", 1, T + s_ms(1000)),
        row(T + s_ms(1100), hook, "g1", "DiskFull", 1, T + s_ms(1000), T + s_ms(1090)),
        row(T + s_ms(2030), hook, "g2", "HighCpu", 10, T + s_ms(2000)),
        row(T + s_ms(2030), slack, "g2", "HighCpu", 10, T + s_ms(2000)),
        row(T + s_ms(2300), hook, "g2", "HighCpu", 10, T + s_ms(2000), T + s_ms(2200)),
        row(T + s_ms(2300), slack, "g2", "HighCpu", 10, T + s_ms(2000), T + s_ms(2200)),
        row(T + s_ms(3030), hook, "g2", "HighCpu", 11, T + s_ms(3000)),
        row(T + s_ms(3030), slack, "g2", "HighCpu", 11, T + s_ms(3000)),
    };
}

alert make_alert(std::uint64_t id, const std::string& name, const std::string& instance, time_ms starts_at,
                 time_ms ends_at = 0, annotation_list annotations = {})
{
    alert a;
    a.id = id;
    a.labels = label_set{{"alertname", name}, {"instance", instance}, {"severity", "critical"}};
    a.annotations = std::move(annotations);
    a.starts_at = starts_at;
    a.ends_at = ends_at;
    a.updated_at = starts_at;
    return a;
}

std::unique_ptr<state_store> open_store(const std::string& dir)
{
    std::string error;
    auto store = state_store::open(dir, error);
    INFO(error);
    REQUIRE(store);
    return store;
}

// By time, then integration, then alert id.
std::vector<history_row> sorted(std::vector<history_row> rows)
{
    std::sort(rows.begin(), rows.end(), [](const history_row& a, const history_row& b) {
        return std::tie(a.sent_at, a.integration, a.alert_id) < std::tie(b.sent_at, b.integration, b.alert_id);
    });
    return rows;
}

std::vector<history_row> load_all(state_store& store, time_ms since, time_ms now, std::size_t max = 1'000'000)
{
    std::string error;
    auto rows = store.load_history(since, now, max, error);
    INFO(error);
    REQUIRE(rows);
    return sorted(std::move(*rows));
}

int schema_version_of(const std::string& path)
{
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* query = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &query, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(query) == SQLITE_ROW);
    const int version = sqlite3_column_int(query, 0);
    sqlite3_finalize(query);
    sqlite3_close(db);
    return version;
}

// Returns one scripted reply to every request and records the requests.
class scripted_transport final : public silence_transport {
public:
    explicit scripted_transport(transport_reply reply) : reply_(std::move(reply)) {}
    transport_reply send(const std::string& method, const std::string& target, const std::string& /*body*/) override
    {
        requests.push_back(method + " " + target);
        return reply_;
    }
    std::vector<std::string> requests;

private:
    transport_reply reply_;
};

} // namespace

// ---- computation ----

TEST_CASE("noise report: counts, medians and order")
{
    const auto report = compute_noise_report(two_rules(), T, T + h_ms(24 * 7), 20);

    CHECK(report.from == T);
    CHECK(report.to == T + h_ms(24 * 7));
    REQUIRE(report.rules.size() == 2);
    CHECK(report.rule_count == 2);

    // Equal notifications: more episodes first.
    const noise_rule& disk = report.rules[0];
    CHECK(disk.alertname == "DiskFull");
    CHECK(disk.stats.notifications == 6);
    CHECK(disk.stats.episodes == 4);
    CHECK(disk.stats.resolved_episodes == 4);
    // 60, 90, 300, 360 s: an even count, the mean of 90 and 300.
    CHECK(disk.stats.median_firing_seconds == 195.0);
    // 60, 90 and 300 s (exactly 5 minutes counts) of 4.
    CHECK(disk.stats.resolved_within_5m == 3);
    CHECK(disk.stats.resolved_within_5m_share() == 0.75);
    CHECK(disk.stats.flapping_seconds == 0);

    const noise_rule& cpu = report.rules[1];
    CHECK(cpu.alertname == "HighCpu");
    CHECK(cpu.stats.notifications == 6); // one per integration
    CHECK(cpu.stats.episodes == 2);
    CHECK(cpu.stats.resolved_episodes == 1);
    CHECK(cpu.stats.median_firing_seconds == 200.0);
    CHECK(cpu.stats.resolved_within_5m == 1);
    CHECK(cpu.stats.resolved_within_5m_share() == 0.5);

    // Totals: 60, 90, 200, 300, 360 s, an odd count.
    CHECK(report.totals.notifications == 12);
    CHECK(report.totals.episodes == 6);
    CHECK(report.totals.resolved_episodes == 5);
    CHECK(report.totals.median_firing_seconds == 200.0);
    CHECK(report.totals.resolved_within_5m == 4);

    REQUIRE(report.groups.size() == 2);
    CHECK(report.group_count == 2);
    CHECK(report.groups[0].group_key == "g1");
    CHECK(report.groups[0].receiver == "ops");
    CHECK(report.groups[0].stats == disk.stats);
    CHECK(report.groups[1].group_key == "g2");
    CHECK(report.groups[1].stats == cpu.stats);
}

TEST_CASE("noise report: limit cuts lists, not counts")
{
    auto rows = two_rules();
    rows.push_back(row(T + s_ms(4000), hook, "g3", "Zeta", 20, T + s_ms(3990)));
    rows.push_back(row(T + s_ms(4000), hook, "g4", "Alpha", 21, T + s_ms(3990)));

    const auto report = compute_noise_report(rows, T, T + h_ms(24), 3);
    REQUIRE(report.rules.size() == 3);
    CHECK(report.rule_count == 4);
    CHECK(report.group_count == 4);
    // Alpha and Zeta tie on notifications and episodes: by name.
    CHECK(report.rules[2].alertname == "Alpha");
    REQUIRE(report.groups.size() == 3);
    CHECK(report.groups[2].group_key == "g3");
    CHECK(report.totals.notifications == 14);

    const auto one = compute_noise_report(rows, T, T + h_ms(24), 1);
    REQUIRE(one.rules.size() == 1);
    CHECK(one.rules[0].alertname == "DiskFull");
    CHECK(one.rule_count == 4);
}

// A notification counts once per rule in it and once in the totals.
TEST_CASE("noise report: one notification, several rules")
{
    const std::vector<history_row> rows = {
        row(T + 10, hook, "g", "DiskFull", 1, T),
        row(T + 10, hook, "g", "DiskFull", 2, T),
        row(T + 10, hook, "g", "HighCpu", 3, T),
        row(T + 10, slack, "g", "HighCpu", 3, T),
    };
    const auto report = compute_noise_report(rows, T, T + 100, 20);
    CHECK(report.totals.notifications == 2);
    REQUIRE(report.rules.size() == 2);
    CHECK(report.rules[0].alertname == "HighCpu");
    CHECK(report.rules[0].stats.notifications == 2);
    CHECK(report.rules[1].stats.notifications == 1);
    CHECK(report.rules[1].stats.episodes == 2);
    REQUIRE(report.groups.size() == 1);
    CHECK(report.groups[0].stats.notifications == 2);
    CHECK(report.groups[0].stats.episodes == 3);
    CHECK_FALSE(report.totals.median_firing_seconds);
    CHECK(report.totals.resolved_within_5m_share() == 0.0);
}

// The period bounds the rows, and the latest row tells whether an episode resolved.
TEST_CASE("noise report: period bounds and resolves")
{
    const std::vector<history_row> rows = {
        // Before the period: not counted.
        row(T - s_ms(10), hook, "g", "Early", 1, T - s_ms(40)),
        // After the period: not counted.
        row(T + h_ms(2), hook, "g", "Late", 2, T + h_ms(2)),
        // Resolved before the period, firing again later: a new episode, still firing.
        row(T + s_ms(10), hook, "g", "Again", 3, T - min_ms(5)),
        row(T + s_ms(20), hook, "g", "Again", 3, T - min_ms(5), T + s_ms(15)),
        row(T + s_ms(30), hook, "g", "Again", 3, T + s_ms(25)),
        // A resolve at the same flush as a firing row in another group: still firing.
        row(T + s_ms(50), hook, "g", "Moved", 4, T),
        row(T + s_ms(50), hook, "h", "Moved", 4, T, T + s_ms(45)),
    };
    const auto report = compute_noise_report(rows, T, T + h_ms(1), 20);
    REQUIRE(report.rules.size() == 2);
    const noise_rule& again = report.rules[0];
    CHECK(again.alertname == "Again");
    CHECK(again.stats.notifications == 3);
    CHECK(again.stats.episodes == 2);
    CHECK(again.stats.resolved_episodes == 1);
    // Started 5 minutes before the period and resolved 15 s into it: 315 s, over 5 minutes.
    CHECK(again.stats.median_firing_seconds == 315.0);
    CHECK(again.stats.resolved_within_5m == 0);

    const noise_rule& moved = report.rules[1];
    CHECK(moved.alertname == "Moved");
    CHECK(moved.stats.episodes == 1);
    CHECK(moved.stats.resolved_episodes == 0);
    // In group h on its own, the episode resolved.
    REQUIRE(report.groups.size() == 2);
    CHECK(report.groups[1].group_key == "h");
    CHECK(report.groups[1].stats.resolved_episodes == 1);
    CHECK(report.groups[1].stats.median_firing_seconds == 45.0);
    CHECK(report.totals.notifications == 5);
}

TEST_CASE("noise report: flapping time")
{
    const time_ms from = T;
    const time_ms to = T + h_ms(6);
    const std::vector<history_row> rows = {
        // Started two hours before the period, stopped one hour into it: 1 h in the period.
        row(T - h_ms(2), hook, "g", "Flappy", 30, T - h_ms(3), 0, flap_started),
        row(T + h_ms(1), hook, "g", "Flappy", 30, T - h_ms(3), T + min_ms(50), flap_stopped),
        // 10 minutes, announced to two integrations: counted once.
        row(T + h_ms(2), hook, "g", "Flappy", 30, T + h_ms(1) + min_ms(55), 0, flap_started),
        row(T + h_ms(2), slack, "g", "Flappy", 30, T + h_ms(1) + min_ms(55), 0, flap_started),
        row(T + h_ms(2) + min_ms(10), hook, "g", "Flappy", 30, T + h_ms(1) + min_ms(55), T + h_ms(2) + min_ms(5),
            flap_stopped),
        row(T + h_ms(2) + min_ms(10), slack, "g", "Flappy", 30, T + h_ms(1) + min_ms(55), T + h_ms(2) + min_ms(5),
            flap_stopped),
        // Still flapping at the end of the period: 1 h.
        row(T + h_ms(5), hook, "g", "Flappy", 30, T + h_ms(4) + min_ms(58), 0, flap_started),
        // After the period: ignored.
        row(T + h_ms(7), hook, "g", "Flappy", 30, T + h_ms(4) + min_ms(58), T + h_ms(7), flap_stopped),
        // Another alert of the same rule in another group: 20 minutes.
        row(T + h_ms(3), hook, "k", "Flappy", 31, T + h_ms(3), 0, flap_started),
        row(T + h_ms(3) + min_ms(20), hook, "k", "Flappy", 31, T + h_ms(3), 0, flap_stopped),
    };
    const auto report = compute_noise_report(rows, from, to, 20);
    REQUIRE(report.rules.size() == 1);
    const noise_stats& s = report.rules[0].stats;
    CHECK(s.flapping_seconds == 3600 + 600 + 3600 + 1200);
    // Notifications in the period: T+1h, T+2h (two), T+2h10m (two), T+3h, T+3h20m, T+5h.
    CHECK(s.notifications == 8);
    // Episodes: (30, T-3h) resolved after 3h50m, (30, T+1h55m) resolved after 10 min,
    // (30, T+4h58m) and (31, T+3h) firing.
    CHECK(s.episodes == 4);
    CHECK(s.resolved_episodes == 2);
    CHECK(s.median_firing_seconds == (13'800.0 + 600.0) / 2);
    CHECK(s.resolved_within_5m == 0);
    CHECK(report.totals.flapping_seconds == s.flapping_seconds);

    REQUIRE(report.groups.size() == 2);
    CHECK(report.groups[0].group_key == "g");
    CHECK(report.groups[0].stats.flapping_seconds == 3600 + 600 + 3600);
    CHECK(report.groups[1].group_key == "k");
    CHECK(report.groups[1].stats.flapping_seconds == 1200);
}

TEST_CASE("noise report: flapping without notifications")
{
    const std::vector<history_row> rows = {
        row(T - h_ms(30), hook, "g", "Quiet", 5, T - h_ms(31), 0, flap_started),
    };
    const auto report = compute_noise_report(rows, T, T + h_ms(24), 20);
    REQUIRE(report.rules.size() == 1);
    CHECK(report.rules[0].stats.notifications == 0);
    CHECK(report.rules[0].stats.flapping_seconds == 24 * 3600);
    REQUIRE(report.groups.size() == 1);
    CHECK(report.groups[0].receiver == "ops");
    CHECK(report.totals.notifications == 0);
    CHECK(report.totals.flapping_seconds == 24 * 3600);
}

TEST_CASE("noise report: nothing sent")
{
    const auto report = compute_noise_report({}, T, T + h_ms(1), 20);
    CHECK(report.rules.empty());
    CHECK(report.groups.empty());
    CHECK(report.totals == noise_stats{});
    CHECK(format_noise_report(report) == "Noise report from 2023-11-14T22:13:20Z to 2023-11-14T23:13:20Z (1h)\n"
                                         "Totals: 0 notifications, 0 episodes (0 resolved), median firing time -, - "
                                         "resolved within 5m, flapping 0s\n"
                                         "\n"
                                         "Rules (0 of 0)\n"
                                         "none notified in this period\n"
                                         "\n"
                                         "Groups (0 of 0)\n"
                                         "none notified in this period\n");
}

// ---- rows from a notification ----

TEST_CASE("noise report: rows from a notification")
{
    notification n;
    n.integration = integration_ref{"oncall", integration_kind::pagerduty, 1};
    n.group_key = "{}:{alertname=\"DiskFull\"}";
    n.created_at = T + s_ms(30);
    // An API alert with a resolve timeout in the future still fires.
    n.alerts.push_back(make_alert(1, "DiskFull", "a", T, T + min_ms(5)));
    n.alerts.push_back(make_alert(
        2, "DiskFull", "b", T + s_ms(1), 0,
        {{"summary", "full"},
         {"flapping", "started: 5 changes between firing and resolved within 10m; further changes are held until it "
                      "settles"}}));
    n.alerts.push_back(make_alert(3, "DiskFull", "c", T - min_ms(10), T + s_ms(20),
                                  {{"flapping", "stopped: the state in this notification is current"}}));
    // A resolved alert without an end reads as resolved at the notification.
    n.alerts.push_back(make_alert(4, "OtherName", "d", T - min_ms(10)));
    n.firing = 2;

    const auto rows = history_rows(n);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].sent_at == T + s_ms(30));
    CHECK(rows[0].receiver == "oncall");
    CHECK(rows[0].integration == "oncall/pagerduty/1");
    CHECK(rows[0].group_key == n.group_key);
    CHECK(rows[0].alertname == "DiskFull");
    CHECK(rows[0].fingerprint == n.alerts[0].fingerprint());
    CHECK(rows[0].alert_id == 1);
    CHECK(rows[0].starts_at == T);
    CHECK(rows[0].ends_at == 0);
    CHECK(rows[0].flap == flap_none);
    CHECK(rows[1].flap == flap_started);
    CHECK(rows[1].ends_at == 0);
    CHECK(rows[2].flap == flap_stopped);
    CHECK(rows[2].ends_at == T + s_ms(20));
    CHECK(rows[3].alertname == "OtherName");
    CHECK(rows[3].ends_at == T + s_ms(30));

    const auto bounded = history_rows(n, 2);
    REQUIRE(bounded.size() == 2);
    CHECK(bounded[1].alert_id == 2);
}

// ---- query, JSON and text ----

TEST_CASE("noise report: query parameters")
{
    const auto retention = std::chrono::milliseconds(h_ms(24 * 30));
    std::string error;

    auto q = parse_noise_query("", retention, error);
    REQUIRE(q);
    CHECK(q->since == std::chrono::hours(24 * 7));
    CHECK(q->limit == 20);
    CHECK_FALSE(q->capped);

    q = parse_noise_query("since=24h&limit=5&other=x", retention, error);
    REQUIRE(q);
    CHECK(q->since == std::chrono::hours(24));
    CHECK(q->limit == 5);

    q = parse_noise_query("since=90d&limit=1000", retention, error);
    REQUIRE(q);
    CHECK(q->since == retention);
    CHECK(q->capped);
    CHECK(q->limit == 1000);

    const std::vector<std::pair<std::string, std::string>> bad = {
        {"since=7days", "invalid since \"7days\""},
        {"since=0s", "must be longer than 0s"},
        {"since=-1h", "invalid since \"-1h\""},
        {"since=", "invalid since \"\""},
        {"since=1h&since=2h", "since is given more than once"},
        {"limit=0", "invalid limit \"0\"; expected a whole number from 1 to 1000"},
        {"limit=1001", "invalid limit \"1001\""},
        {"limit=ten", "invalid limit \"ten\""},
        {"limit=5&limit=6", "limit is given more than once"},
        {"since=%zz", "malformed %XX escape"},
    };
    for (const auto& [query, message] : bad) {
        INFO(query);
        error.clear();
        CHECK_FALSE(parse_noise_query(query, retention, error));
        CHECK_THAT(error, Catch::Contains(message));
    }
    error.clear();
    CHECK_FALSE(parse_noise_query("since=7days", retention, error));
    CHECK_THAT(error, Catch::Contains("expected a duration such as 7d, 24h or 30m"));
}

TEST_CASE("noise report: JSON fields and round trip")
{
    auto report = compute_noise_report(two_rules(), T, T + h_ms(24 * 7), 20);
    report.capped = true;
    const std::string body = noise_report_json(report);
    const auto doc = nlohmann::json::parse(body);
    CHECK(doc["status"] == "success");
    const auto& data = doc["data"];
    CHECK(data["from"] == "2023-11-14T22:13:20.000Z");
    CHECK(data["to"] == "2023-11-21T22:13:20.000Z");
    CHECK(data["period_seconds"] == 604800.0);
    CHECK(data["capped"] == true);
    CHECK(data["totals"]["notifications"] == 12);
    CHECK(data["totals"]["rules"] == 2);
    CHECK(data["totals"]["groups"] == 2);
    const auto& disk = data["rules"][0];
    CHECK(disk["alertname"] == "DiskFull");
    CHECK(disk["notifications"] == 6);
    CHECK(disk["episodes"] == 4);
    CHECK(disk["resolved_episodes"] == 4);
    CHECK(disk["median_firing_seconds"] == 195.0);
    CHECK(disk["resolved_within_5m"] == 3);
    CHECK(disk["resolved_within_5m_share"] == 0.75);
    CHECK(disk["flapping_seconds"] == 0.0);
    CHECK(data["groups"][1]["group_key"] == "g2");
    CHECK(data["groups"][1]["receiver"] == "ops");

    std::string error;
    auto parsed = parse_noise_report(body, error);
    INFO(error);
    REQUIRE(parsed);
    CHECK(*parsed == report);

    const auto empty = compute_noise_report({}, T, T + 1000, 20);
    CHECK(nlohmann::json::parse(noise_report_json(empty))["data"]["totals"]["median_firing_seconds"].is_null());

    CHECK_FALSE(parse_noise_report("[]", error));
    CHECK_THAT(error, Catch::Contains("not a noise report"));
    CHECK_FALSE(parse_noise_report(R"({"status":"success","data":{}})", error));
    CHECK_THAT(error, Catch::Contains("not a noise report tocsinctl can read"));
}

TEST_CASE("noise report: the text tables")
{
    auto rows = two_rules();
    rows.push_back(row(T + h_ms(1), hook, "g\x1b[2J", "Flap\ny", 40, T + h_ms(1), 0, flap_started));
    const auto report = compute_noise_report(rows, T, T + h_ms(2), 20);
    CHECK(format_noise_report(report) ==
          "Noise report from 2023-11-14T22:13:20Z to 2023-11-15T00:13:20Z (2h)\n"
          "Totals: 13 notifications, 7 episodes (5 resolved), median firing time 3m20s, 57% resolved within 5m, "
          "flapping 1h\n"
          "\n"
          "Rules (3 of 3)\n"
          "ALERTNAME  NOTIFICATIONS  EPISODES  RESOLVED  MEDIAN FIRING  WITHIN 5M  FLAPPING\n"
          "DiskFull   6              4         4         3m15s          75%        0s\n"
          "HighCpu    6              2         1         3m20s          50%        0s\n"
          "Flap y     1              1         0         -              0%         1h\n"
          "\n"
          "Groups (3 of 3)\n"
          "GROUP  RECEIVER  NOTIFICATIONS  EPISODES  RESOLVED  MEDIAN FIRING  WITHIN 5M  FLAPPING\n"
          "g1     ops       6              4         4         3m15s          75%        0s\n"
          "g2     ops       6              2         1         3m20s          50%        0s\n"
          "g [2J  ops       1              1         0         -              0%         1h\n");
}

// ---- state store ----

TEST_CASE("noise report: store round trip and pruning")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    std::string error;

    auto rows = two_rules();
    rows.push_back(row(T - h_ms(2), hook, "g", "Flappy", 30, T - h_ms(3), 0, flap_started));
    rows.push_back(row(T - h_ms(1), hook, "g", "Flappy", 30, T - h_ms(3)));
    rows.back().fingerprint = 0xfedcba9876543210ULL; // above INT64_MAX
    rows.back().alert_id = 0x8000000000000001ULL;
    std::vector<outbox_entry> none;
    REQUIRE(store->commit({}, {}, none, error, {}, {}, rows));

    // Everything from the start of the flap on.
    auto loaded = load_all(*store, T - h_ms(3), T + h_ms(1));
    CHECK(loaded == sorted(rows));

    // From T on: the flap start before T comes too, the older plain row does not.
    loaded = load_all(*store, T, T + h_ms(1));
    REQUIRE(loaded.size() == rows.size() - 1);
    CHECK(loaded[0].flap == flap_started);
    CHECK(loaded[1] == rows[0]);

    // Up to a time: later rows stay out.
    loaded = load_all(*store, T, T + s_ms(130));
    CHECK(loaded.size() == 1 + 4);

    // At most max_rows.
    loaded = load_all(*store, T, T + h_ms(1), 3);
    CHECK(loaded.size() == 3);

    // The report of what the store gives back matches the one of the rows themselves.
    CHECK(compute_noise_report(load_all(*store, T, T + h_ms(24)), T, T + h_ms(24), 20) ==
          compute_noise_report(rows, T, T + h_ms(24), 20));

    // Pruning: oldest first, in batches.
    auto deleted = store->prune_history(T + s_ms(100), 1, error);
    REQUIRE(deleted);
    CHECK(*deleted == 1);
    loaded = load_all(*store, 0, T + h_ms(1));
    CHECK(loaded.size() == rows.size() - 1);
    CHECK(loaded[0] == rows.back()); // the flap start at T-2h went first
    deleted = store->prune_history(T + s_ms(100), 100, error);
    REQUIRE(deleted);
    CHECK(*deleted == 3); // T-1h, T+30s, T+90s
    deleted = store->prune_history(T + s_ms(100), 100, error);
    REQUIRE(deleted);
    CHECK(*deleted == 0);
    CHECK(load_all(*store, 0, T + h_ms(1)).size() == rows.size() - 4);
}

TEST_CASE("noise report: history shares the outbox transaction")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    std::string error;

    // A trigger makes the history insert fail after the outbox entry went in.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(store->path().c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TRIGGER refuse BEFORE INSERT ON notification_history "
                         "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);

    outbox_entry e;
    e.message.integration = integration_ref{"ops", integration_kind::webhook, 0};
    e.message.group_key = "g1";
    e.message.body = "{}";
    std::vector<outbox_entry> entries = {e};
    const std::vector<history_row> rows = {row(T, hook, "g1", "DiskFull", 1, T)};
    CHECK_FALSE(store->commit({}, {}, entries, error, {}, {}, rows));
    CHECK_THAT(error, Catch::Contains("record the notification of group g1 in the history"));
    CHECK(entries[0].id == 0);
    auto outbox = store->load_outbox(error);
    REQUIRE(outbox);
    CHECK(outbox->empty());
    CHECK(load_all(*store, 0, T + 1).empty());

    REQUIRE(sqlite3_exec(db, "DROP TRIGGER refuse", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    REQUIRE(store->commit({}, {}, entries, error, {}, {}, rows));
    CHECK(entries[0].id != 0);
    outbox = store->load_outbox(error);
    REQUIRE(outbox);
    CHECK(outbox->size() == 1);
    CHECK(load_all(*store, 0, T + 1) == rows);

    // Only history rows: committed too.
    entries.clear();
    const std::vector<history_row> more = {row(T + 5, hook, "g1", "DiskFull", 2, T)};
    REQUIRE(store->commit({}, {}, entries, error, {}, {}, more));
    CHECK(load_all(*store, 0, T + 10).size() == 2);
}

TEST_CASE("noise report: version 7 database migrates")
{
    temp_dir dir;
    std::string path;
    {
        auto store = open_store(dir.path().string());
        path = store->path();
        std::string error;
        REQUIRE(store->set_meta("config_hash", "abc", error));
    }
    CHECK(schema_version_of(path) == state_store::schema_version);
    CHECK(state_store::schema_version == 8);
    {
        // Migrations 1 to 7 are unchanged, so removing what version 8 added gives version 7.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        REQUIRE(sqlite3_exec(db, "DROP TABLE notification_history; UPDATE schema_version SET version = 7;", nullptr,
                             nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    CHECK(schema_version_of(path) == 7);

    auto store = open_store(dir.path().string());
    CHECK(schema_version_of(path) == 8);
    std::string error;
    CHECK(store->get_meta("config_hash", error) == "abc");
    const std::vector<history_row> rows = {row(T, hook, "g1", "DiskFull", 1, T)};
    std::vector<outbox_entry> none;
    REQUIRE(store->commit({}, {}, none, error, {}, {}, rows));
    CHECK(load_all(*store, 0, T + 1) == rows);
}

// ---- delivery ----

TEST_CASE("noise report: delivery records and prunes")
{
    using namespace tocsin::test;
    delivery_pipeline p;
    p.configure(R"(
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs: [{url: '$BASE/webhook/hook', send_resolved: true}]
    console_configs: [{send_resolved: false}]
)");
    p.open();
    p.service().set_history_retention(std::chrono::hours(24));
    const auto a = firing_alert(label_set{{"alertname", "Down"}, {"instance", "h1"}, {"severity", "warning"}}, {},
                                p.at(0));
    p.post({fired(a)});
    p.run_until(p.at(minutes_ms(1)));
    p.clock.set_ms(p.at(minutes_ms(2)));
    p.post({resolved(a, p.at(minutes_ms(2)))});
    p.run_until(p.at(minutes_ms(10)));

    auto rows = load_all(p.store(), p.at(0), p.at(hours_ms(1)));
    // The firing notice to both integrations, the resolve only to the webhook.
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].sent_at == p.at(seconds_ms(30)));
    CHECK(rows[0].integration == "hook/console/0");
    CHECK(rows[1].sent_at == p.at(seconds_ms(30)));
    CHECK(rows[1].integration == "hook/webhook/0");
    CHECK(rows[1].receiver == "hook");
    CHECK(rows[1].alertname == "Down");
    CHECK(rows[1].alert_id == a.id);
    CHECK(rows[1].starts_at == p.at(0));
    CHECK(rows[1].ends_at == 0);
    CHECK(rows[2].sent_at == p.at(seconds_ms(330)));
    CHECK(rows[2].integration == "hook/webhook/0");
    CHECK(rows[2].ends_at == p.at(minutes_ms(2)));

    const auto report = compute_noise_report(rows, p.at(0), p.at(hours_ms(1)), 20);
    REQUIRE(report.rules.size() == 1);
    CHECK(report.rules[0].stats.notifications == 3);
    CHECK(report.rules[0].stats.episodes == 1);
    CHECK(report.rules[0].stats.median_firing_seconds == 120.0);

    // A day later the rows are past the retention; the next flush deletes them.
    p.clock.set_ms(p.at(hours_ms(25)));
    p.post({});
    CHECK(load_all(p.store(), 0, p.at(hours_ms(26))).empty());
}

// ---- tocsinctl report noise ----

TEST_CASE("noise report: tocsinctl prints the server's report")
{
    auto report = compute_noise_report(two_rules(), T, T + h_ms(1), 20);
    scripted_transport api({200, noise_report_json(report), ""});
    report_command cmd;
    cmd.since = "1h";
    cmd.limit = 5;
    std::ostringstream out;
    std::ostringstream err;
    CHECK(report_noise(cmd, api, out, err) == 0);
    CHECK(err.str().empty());
    CHECK(api.requests == std::vector<std::string>{"GET /api/v1/report/noise?since=1h&limit=5"});
    CHECK(out.str() == format_noise_report(report));

    cmd.json = true;
    out.str("");
    CHECK(report_noise(cmd, api, out, err) == 0);
    CHECK(nlohmann::json::parse(out.str()) == nlohmann::json::parse(noise_report_json(report)));
}

TEST_CASE("noise report: tocsinctl errors")
{
    scripted_transport api({400, "invalid since \"7days\": bad\n", ""});
    report_command cmd;
    std::ostringstream out;
    std::ostringstream err;

    cmd.since = "7days";
    CHECK(report_noise(cmd, api, out, err) == 2);
    CHECK_THAT(err.str(), Catch::StartsWith("tocsinctl: --since \"7days\": "));
    CHECK(api.requests.empty());

    err.str("");
    cmd.since = "7d";
    cmd.limit = 0;
    CHECK(report_noise(cmd, api, out, err) == 2);
    CHECK(err.str() == "tocsinctl: --limit 0 is out of range; expected 1 to 1000\n");

    err.str("");
    cmd.limit = 20;
    CHECK(report_noise(cmd, api, out, err) == 1);
    CHECK(err.str() == "tocsinctl: 400: invalid since \"7days\": bad\n");

    scripted_transport down({0, "", "cannot connect to http://127.0.0.1:1"});
    err.str("");
    CHECK(report_noise(cmd, down, out, err) == 1);
    CHECK(err.str() == "tocsinctl: cannot connect to http://127.0.0.1:1\n");

    scripted_transport wrong({200, "{\"status\":\"success\",\"data\":[]}", ""});
    err.str("");
    CHECK(report_noise(cmd, wrong, out, err) == 1);
    CHECK_THAT(err.str(), Catch::Contains("not a noise report tocsinctl can read"));
    CHECK(out.str().empty());
}
