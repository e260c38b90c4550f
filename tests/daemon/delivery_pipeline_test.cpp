// The whole delivery path, black box: rule engine events in, requests at the PagerDuty, Slack and
// webhook stand-ins out, on a manual clock, through restarts, reloads, receiver errors and hangs.

#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include "daemon/logging.hpp"
#include "daemon/delivery_fixture.hpp"

using namespace tocsin;
using namespace tocsin::test;
using nlohmann::json;

namespace {

// "firing[h1,h2] resolved[h3]" from an Alertmanager webhook notification, by instance label.
std::string describe_webhook(const json& body)
{
    std::vector<std::string> firing;
    std::vector<std::string> resolved;
    for (const auto& a : body.at("alerts")) {
        const std::string instance = a.at("labels").value("instance", "?");
        (a.at("status") == "firing" ? firing : resolved).push_back(instance);
    }
    std::sort(firing.begin(), firing.end());
    std::sort(resolved.begin(), resolved.end());
    std::string out;
    if (!firing.empty()) {
        out += fmt::format("firing[{}]", fmt::join(firing, ","));
    }
    if (!resolved.empty()) {
        out += fmt::format("{}resolved[{}]", out.empty() ? "" : " ", fmt::join(resolved, ","));
    }
    return out;
}

// Each accepted webhook notification as "<seconds since start>s <what>".
std::vector<std::string> webhook_timeline(const delivery_pipeline& p, const std::string& path = "/webhook/hook")
{
    std::vector<std::string> out;
    for (const auto& e : p.rx.accepted(receiver_kind::webhook)) {
        if (e.path == path) {
            out.push_back(
                fmt::format("{}s {}", (e.arrival_ms - pipeline_start_ms) / 1000, describe_webhook(e.body)));
        }
    }
    return out;
}

// Every request the stand-ins rejected for breaking the real service's contract. Scripted
// responses come from the test itself and do not count.
std::vector<std::string> contract_violations(const delivery_pipeline& p)
{
    std::vector<std::string> out;
    for (const auto& r : p.rx.requests()) {
        if (!r.scripted && !r.accepted) {
            out.push_back(fmt::format("{} {}: HTTP {} {}", to_string(r.kind), r.path, r.status, r.reason));
        }
    }
    return out;
}

alert_snapshot host_alert(const std::string& alertname, const std::string& instance, time_ms fired_at,
                          const std::string& severity = "warning",
                          std::vector<std::pair<std::string, std::string>> annotations = {})
{
    return firing_alert(label_set{{"alertname", alertname}, {"instance", instance}, {"severity", severity}},
                        std::move(annotations), fired_at);
}

bool has_line(const std::string& text, const std::string& line)
{
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        if (l == line) {
            return true;
        }
    }
    return false;
}

std::string repeat(const std::string& piece, std::size_t times)
{
    std::string out;
    for (std::size_t i = 0; i < times; ++i) {
        out += piece;
    }
    return out;
}

const std::string routing_key = "R0UT1NGKEY0123456789abcdefABCDEF"; // 32 characters, as PagerDuty requires
const std::string webhook_secret = "WEBHOOKSECRETPATH42";
const std::string bot_token = "xoxb-4242-SECRETBOTTOKEN";

const char* hook_route = R"(
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs: [{url: '$BASE/webhook/hook'}]
)";

} // namespace

// ---- restarts ----

TEST_CASE("pipeline: a clean restart does not send a firing alert again")
{
    delivery_pipeline p;
    p.configure(hook_route);
    p.open();
    const auto a = host_alert("Down", "h1", p.at(0));
    p.post({fired(a)});
    p.run_until(p.at(minutes_ms(10)));
    p.shut_down();
    p.clock.set_ms(p.at(minutes_ms(10) + seconds_ms(20)));
    p.open({a});
    p.run_until(p.at(hours_ms(4) + minutes_ms(1)));
    CHECK(webhook_timeline(p) == std::vector<std::string>{"30s firing[h1]", "14430s firing[h1]"});
    CHECK(contract_violations(p).empty());
}

TEST_CASE("pipeline: a killed process does not send a firing alert again")
{
    delivery_pipeline p;
    p.configure(hook_route);
    p.open();
    const auto a = host_alert("Down", "h1", p.at(0));
    p.post({fired(a)});
    p.run_until(p.at(minutes_ms(10)));
    p.crash();
    p.clock.set_ms(p.at(minutes_ms(10) + seconds_ms(20)));
    p.open({a});
    p.run_until(p.at(hours_ms(4) + minutes_ms(1)));
    CHECK(webhook_timeline(p) == std::vector<std::string>{"30s firing[h1]", "14430s firing[h1]"});
}

TEST_CASE("pipeline: alert started during restart joins group")
{
    delivery_pipeline p;
    p.configure(hook_route);
    p.open();
    const auto a = host_alert("Down", "h1", p.at(0));
    p.post({fired(a)});
    p.run_until(p.at(minutes_ms(10)));
    p.shut_down();
    const time_ms back = p.at(minutes_ms(10) + seconds_ms(20));
    p.clock.set_ms(back);
    p.open({a});
    // The sender's retried posts reach the new process: B starts firing there.
    p.post({fired(host_alert("Down", "h2", back))});
    p.run_until(p.at(hours_ms(1)));
    const auto timeline = webhook_timeline(p);
    REQUIRE(timeline.size() == 2);
    CHECK(timeline[0] == "30s firing[h1]");
    CHECK(timeline[1] == "630s firing[h1,h2]"); // the group's next tick, within group_wait of the restart
}

TEST_CASE("pipeline: a resolve during a restart is delivered once")
{
    const auto a_at = [](const delivery_pipeline& p) { return host_alert("Down", "h1", p.at(0)); };
    SECTION("the engine restores the alert and resolves it with the next sample")
    {
        delivery_pipeline p;
        p.configure(hook_route);
        p.open();
        const auto a = a_at(p);
        p.post({fired(a)});
        p.run_until(p.at(minutes_ms(10)));
        p.shut_down();
        const time_ms back = p.at(minutes_ms(10) + seconds_ms(20));
        p.clock.set_ms(back);
        p.open({a});
        p.post({resolved(a, p.at(minutes_ms(10) + seconds_ms(5)))});
        p.run_until(p.at(hours_ms(5)));
        CHECK(webhook_timeline(p) == std::vector<std::string>{"30s firing[h1]", "630s resolved[h1]"});
    }
    SECTION("the engine no longer has the alert")
    {
        delivery_pipeline p;
        p.configure(hook_route);
        p.open();
        p.post({fired(a_at(p))});
        p.run_until(p.at(minutes_ms(10)));
        p.shut_down();
        p.clock.set_ms(p.at(minutes_ms(10) + seconds_ms(20)));
        p.open({});
        p.run_until(p.at(hours_ms(5)));
        CHECK(webhook_timeline(p) == std::vector<std::string>{"30s firing[h1]", "630s resolved[h1]"});
    }
}

TEST_CASE("pipeline: escalation and restart resolve Slack once")
{
    delivery_pipeline p;
    p.configure(R"(
route:
  receiver: slack
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['severity="critical"']
      receiver: pd
receivers:
  - name: slack
    slack_configs:
      - api_url: '$BASE/services/T0001/B0001/WEBHOOKSECRETPATH42'
        send_resolved: true
        title: '{{ .Status }} {{ .CommonLabels.severity }}'
        text: '{{ range .Alerts }}{{ .Annotations.summary }}{{ end }}'
  - name: pd
    pagerduty_configs: [{routing_key: 'R0UT1NGKEY0123456789abcdefABCDEF', url: '$BASE/v2/enqueue'}]
)");
    p.open();
    auto a = host_alert("DiskFull", "h1", p.at(0), "warning", {{"summary", "disk 85%"}});
    p.post({fired(a)});
    p.run_until(p.at(minutes_ms(2)));
    a.labels = a.labels.with("severity", "critical");
    a.level = severity::critical;
    a.annotations = {{"summary", "disk 92%"}};
    p.post({severity_changed(a)});
    p.run_until(p.at(minutes_ms(3)));
    p.crash();
    p.clock.set_ms(p.at(minutes_ms(3) + seconds_ms(20)));
    p.open({a});
    p.run_until(p.at(minutes_ms(9)));
    a.annotations = {{"summary", "disk 40%"}};
    p.post({resolved(a, p.at(minutes_ms(9)))});
    p.run_until(p.at(hours_ms(1)));
    CHECK(contract_violations(p).empty());

    const auto pd = p.rx.accepted(receiver_kind::pagerduty);
    REQUIRE(pd.size() == 2);
    CHECK(pd[0].arrival_ms == p.at(minutes_ms(2)));
    CHECK(pd[0].body.at("event_action") == "trigger");
    CHECK(pd[1].arrival_ms == p.at(minutes_ms(12)));
    CHECK(pd[1].body.at("event_action") == "resolve");

    // Nothing in Slack at the escalation; one resolve of the warning, with the value at recovery.
    const auto slack = p.rx.accepted(receiver_kind::slack);
    REQUIRE(slack.size() == 2);
    const std::string first = slack[0].body.dump();
    const std::string second = slack[1].body.dump();
    INFO(first << "\n" << second);
    CHECK(slack[0].arrival_ms == p.at(seconds_ms(30)));
    CHECK(first.find("firing warning") != std::string::npos);
    CHECK(first.find("disk 85%") != std::string::npos);
    CHECK(slack[1].arrival_ms == p.at(minutes_ms(10) + seconds_ms(30)));
    CHECK(second.find("resolved warning") != std::string::npos);
    CHECK(second.find("disk 40%") != std::string::npos);
    CHECK(p.service().groups().groups().empty());
}

TEST_CASE("pipeline: outbox survives crash during 503s")
{
    delivery_pipeline p;
    p.configure(hook_route);
    p.open();
    const auto a = host_alert("Down", "h1", p.at(0));
    p.rx.fail_next(receiver_kind::webhook, 2, 503);
    p.post({fired(a)});
    p.run_until(p.at(seconds_ms(32)));
    REQUIRE(p.rx.requests(receiver_kind::webhook).size() == 2); // at 30s and about 31s, both 503
    CHECK(p.rx.accepted(receiver_kind::webhook).empty());
    p.crash();
    p.clock.set_ms(p.at(seconds_ms(40)));
    p.open({a});
    p.run_until(p.at(hours_ms(1)));
    CHECK(p.rx.requests(receiver_kind::webhook).size() == 3);
    CHECK(webhook_timeline(p) == std::vector<std::string>{"40s firing[h1]"});
    CHECK(has_line(p.metrics(), R"(tocsin_notification_queue_length{integration="hook/webhook/0"} 0)"));
}

// ---- reloads ----

namespace {

std::string reload_config(const std::string& child_team)
{
    return fmt::format(R"(
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 10s
  group_interval: 1h
  repeat_interval: 4h
  routes:
    - matchers: ['team="{}"']
      receiver: other
      group_wait: 1m
receivers:
  - name: hook
    webhook_configs: [{{url: '$BASE/webhook/hook'}}]
  - name: other
    webhook_configs: [{{url: '$BASE/webhook/other'}}]
)",
                       child_team);
}

} // namespace

TEST_CASE("pipeline: a reload sends nothing by itself")
{
    const std::string before = reload_config("db");
    const std::string after = GENERATE(reload_config("db"), reload_config("storage"));
    delivery_pipeline p;
    p.configure(before);
    p.open();
    p.post({fired(host_alert("Disk", "h1", p.at(0)))});
    p.run_until(p.at(seconds_ms(20)));
    p.post({fired(host_alert("Disk", "h2", p.at(seconds_ms(20))))});
    p.run_until(p.at(seconds_ms(40)));
    p.reload(after);
    p.run_until(p.at(hours_ms(1) + minutes_ms(30)));
    CHECK(webhook_timeline(p) == std::vector<std::string>{"10s firing[h1]", "3610s firing[h1,h2]"});
}

TEST_CASE("pipeline: a reload neither re-sends nor splits a large group")
{
    delivery_pipeline p;
    p.configure(reload_config("db"));
    p.open();
    std::vector<alert_event> events;
    std::vector<std::string> all;
    for (int i = 0; i < 20; ++i) {
        const std::string instance = fmt::format("h{:02}", i);
        events.push_back(fired(host_alert("Disk", instance, p.at(0))));
        all.push_back(instance);
    }
    p.post(std::move(events));
    p.run_until(p.at(seconds_ms(60)));
    p.reload(reload_config("db"));
    p.run_until(p.at(hours_ms(4) + minutes_ms(1)));
    const std::string everything = fmt::format("firing[{}]", fmt::join(all, ","));
    CHECK(webhook_timeline(p) == std::vector<std::string>{"10s " + everything, "14410s " + everything});
}

// ---- Slack rate limits ----

namespace {

const char* slack_route = R"(
route:
  receiver: slack
  group_by: [alertname]
  group_wait: 10s
  group_interval: 4m
  routes:
    - matchers: ['team="db"']
      receiver: pd
      group_wait: 30s
receivers:
  - name: slack
    slack_configs: [{api_url: '$BASE/services/T0001/B0001/WEBHOOKSECRETPATH42'}]
  - name: pd
    pagerduty_configs: [{routing_key: 'R0UT1NGKEY0123456789abcdefABCDEF', url: '$BASE/v2/enqueue'}]
)";

canned_response slack_rate_limited(std::string retry_after)
{
    canned_response r;
    r.status = 429;
    r.headers = {{"Retry-After", std::move(retry_after)}};
    r.body = R"({"ok":false,"error":"rate_limited"})";
    r.content_type = "application/json";
    return r;
}

std::vector<time_ms> arrivals(const delivery_pipeline& p, receiver_kind kind)
{
    std::vector<time_ms> out;
    for (const auto& r : p.rx.requests(kind)) {
        out.push_back(r.arrival_ms - pipeline_start_ms);
    }
    return out;
}

// An IMF-fixdate for a time on the manual clock.
std::string http_date(time_ms at)
{
    const std::time_t seconds = static_cast<std::time_t>(at / 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return text;
}

} // namespace

TEST_CASE("pipeline: Slack 429 waits for Retry-After in seconds and as a date")
{
    const bool as_date = GENERATE(false, true);
    delivery_pipeline p;
    p.configure(slack_route);
    p.open();
    if (as_date) {
        // The first attempt comes at group_wait (10s). Each response requests 3 more seconds.
        p.rx.script(receiver_kind::slack, slack_rate_limited(http_date(p.at(seconds_ms(13)))));
        p.rx.script(receiver_kind::slack, slack_rate_limited(http_date(p.at(seconds_ms(16)))));
    } else {
        p.rx.script(receiver_kind::slack, slack_rate_limited("3"));
        p.rx.script(receiver_kind::slack, slack_rate_limited("3"));
    }
    p.post({fired(host_alert("Disk", "h1", p.at(0)))});
    p.run_until(p.at(minutes_ms(4)));
    const auto times = arrivals(p, receiver_kind::slack);
    REQUIRE(times.size() == 3);
    CHECK(times[0] == seconds_ms(10));
    CHECK(times[1] >= times[0] + seconds_ms(3));
    CHECK(times[2] >= times[1] + seconds_ms(3));
    CHECK(times[2] < seconds_ms(20)); // not held back to the next group_interval
    CHECK(p.rx.accepted(receiver_kind::slack).size() == 1);
    const auto metrics = p.metrics();
    CHECK(has_line(metrics, R"(tocsin_notifications_sent_total{integration="slack/slack/0"} 1)"));
    CHECK(has_line(metrics, R"(tocsin_notifications_retried_total{integration="slack/slack/0"} 2)"));
    p.run_until(p.at(minutes_ms(30)));
    CHECK(p.rx.requests(receiver_kind::slack).size() == 3);
    CHECK(contract_violations(p).empty());
}

TEST_CASE("pipeline: long Retry-After delays no other receiver")
{
    delivery_pipeline p;
    p.configure(slack_route);
    p.open();
    p.rx.script(receiver_kind::slack, slack_rate_limited("600"));
    p.post({fired(host_alert("Disk", "h1", p.at(0)))});
    p.run_until(p.at(seconds_ms(60)));
    REQUIRE(p.rx.requests(receiver_kind::slack).size() == 1);
    auto db = host_alert("Replication", "db1", p.at(seconds_ms(60)));
    db.labels = db.labels.with("team", "db");
    db.id = db.labels.without("severity").fingerprint();
    p.post({fired(db)});
    p.wakeups.clear();
    p.run_until(p.at(minutes_ms(15)));
    // The PagerDuty group flushes at 90s while Slack waits.
    const auto pd = p.rx.accepted(receiver_kind::pagerduty);
    REQUIRE(pd.size() == 1);
    CHECK(pd[0].arrival_ms == p.at(seconds_ms(90)));
    CHECK(arrivals(p, receiver_kind::slack) == std::vector<time_ms>{seconds_ms(10), seconds_ms(610)});
    CHECK(p.rx.accepted(receiver_kind::slack).size() == 1);
    // Woken only by the group ticks (Slack every 4m from 10s, PagerDuty every 4m from 90s) and
    // by the retry itself: no polling in between.
    std::vector<time_ms> expected = {seconds_ms(90),  seconds_ms(250), seconds_ms(330), seconds_ms(490),
                                     seconds_ms(570), seconds_ms(610), seconds_ms(730), seconds_ms(810)};
    std::vector<time_ms> woke;
    for (auto t : p.wakeups) {
        woke.push_back(t - pipeline_start_ms);
    }
    CHECK(woke == expected);
}

// ---- PagerDuty limits ----

namespace {

const char* pd_route = R"(
route:
  receiver: pd
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
receivers:
  - name: pd
    pagerduty_configs:
      - routing_key: 'R0UT1NGKEY0123456789abcdefABCDEF'
        url: '$BASE/v2/enqueue'
        description: '{{ range .Alerts }}{{ .Annotations.description }} {{ end }}'
)";

std::vector<alert_event> described_alerts(const delivery_pipeline& p, std::size_t count, const std::string& text)
{
    std::vector<alert_event> events;
    for (std::size_t i = 0; i < count; ++i) {
        events.push_back(fired(host_alert("Disk", fmt::format("h{:04}", i), p.at(0), "critical",
                                          {{"description", text}})));
    }
    return events;
}

} // namespace

TEST_CASE("pipeline: a PagerDuty summary over 1024 characters is cut and accepted")
{
    delivery_pipeline p;
    p.configure(pd_route);
    p.open();
    // 200 code points, every one of them several bytes long.
    const std::string description = repeat("é東🚨ü京", 40);
    p.post(described_alerts(p, 7, description));
    p.run_until(p.at(minutes_ms(10)));
    CHECK(contract_violations(p).empty());
    const auto events = p.rx.accepted(receiver_kind::pagerduty);
    REQUIRE(events.size() == 1);
    REQUIRE(p.rx.requests(receiver_kind::pagerduty).at(0).status == 202);
    const std::string summary = events[0].body.at("payload").at("summary");
    CHECK(count_code_points(summary) == std::optional<std::size_t>(1024));
    CHECK(summary.substr(summary.size() - 3) == "…");
    CHECK(events[0].key == pagerduty_dedup_key("pd", p.service().groups().groups().at(0).group_key));
}

TEST_CASE("pipeline: a PagerDuty event for 3000 alerts stays under 512 KB")
{
    delivery_pipeline p;
    p.configure(pd_route);
    p.open();
    p.post(described_alerts(p, 3000, repeat("disk almost full ", 12)));
    p.run_until(p.at(minutes_ms(2)));
    CHECK(contract_violations(p).empty());
    const auto requests = p.rx.requests(receiver_kind::pagerduty);
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].status == 202);
    CHECK(requests[0].body.size() <= 512'000);
    CHECK(requests[0].body.find("more alerts omitted") != std::string::npos);
}

TEST_CASE("pipeline: a PagerDuty 400 is not retried and counts as a client error")
{
    delivery_pipeline p;
    p.configure(pd_route);
    p.open();
    canned_response invalid;
    invalid.status = 400;
    invalid.content_type = "application/json";
    invalid.body = R"({"status":"invalid event","message":"Event object is invalid","errors":["'payload.source' is missing"]})";
    p.rx.script(receiver_kind::pagerduty, invalid);
    p.post(described_alerts(p, 1, "disk full"));
    p.run_until(p.at(hours_ms(1)));
    CHECK(p.rx.requests(receiver_kind::pagerduty).size() == 1);
    const auto metrics = p.metrics();
    INFO(metrics);
    CHECK(has_line(metrics, R"(tocsin_notifications_failed_total{integration="pd/pagerduty/0",reason="client_error"} 1)"));
    CHECK(has_line(metrics, R"(tocsin_notifications_retried_total{integration="pd/pagerduty/0"} 0)"));
    CHECK(has_line(metrics, R"(tocsin_notification_queue_length{integration="pd/pagerduty/0"} 0)"));
}

// ---- Slack text ----

namespace {

// The mrkdwn strings of a Slack message that contain `needle`.
std::vector<std::string> mrkdwn_with(const json& message, const std::string& needle)
{
    std::vector<std::string> out;
    for (const auto& s : slack_mrkdwn_strings(message)) {
        if (s.find(needle) != std::string::npos) {
            out.push_back(s);
        }
    }
    return out;
}

} // namespace

TEST_CASE("pipeline: Slack shows markup characters, links and cron strings as written")
{
    delivery_pipeline p;
    p.configure(R"(
route: {receiver: slack, group_by: [alertname], group_wait: 10s, group_interval: 5m}
receivers:
  - name: slack
    slack_configs:
      - api_url: '$BASE/services/T0001/B0001/WEBHOOKSECRETPATH42'
        title: '[{{ .Status }}] {{ .CommonLabels.alertname }}'
        text: '<{{ .CommonAnnotations.dashboard }}|Dashboard> {{ .CommonAnnotations.summary }} schedule: {{ .CommonLabels.schedule }}'
)");
    p.open();
    const std::string summary = "p99 > 500ms & errors < 1% on <checkout>";
    const std::string dashboard = "https://grafana.example/d/x?var-q=rate(x[5m])>100&from=now-1h";
    auto a = firing_alert(label_set{{"alertname", "Latency"}, {"schedule", "*/5 * * * *"}, {"severity", "warning"}},
                          {{"dashboard", dashboard}, {"summary", summary}}, p.at(0));
    p.post({fired(a)});
    p.run_until(p.at(minutes_ms(1)));
    CHECK(contract_violations(p).empty());
    const auto messages = p.rx.accepted(receiver_kind::slack);
    REQUIRE(messages.size() == 1);
    const std::string wire = p.rx.requests(receiver_kind::slack).at(0).body;
    CHECK(wire.find("&amp;gt;") == std::string::npos);
    CHECK(wire.find("&amp;amp;") == std::string::npos);
    const auto texts = mrkdwn_with(messages[0].body, "schedule: ");
    INFO(messages[0].body.dump(2));
    // Links back to tocsind are absolute, from the daemon's external_url.
    CHECK(messages[0].body.at("text").get<std::string>().find("http://tocsin.example:9093/") != std::string::npos);
    REQUIRE_FALSE(texts.empty());
    for (const auto& text : texts) {
        INFO(text);
        const auto decoded = decode_slack_mrkdwn(text);
        REQUIRE(decoded.links.size() == 1);
        CHECK(decoded.links[0].label == "Dashboard");
        CHECK(decoded.links[0].url == "https://grafana.example/d/x?var-q=rate(x[5m])%3E100&from=now-1h");
        CHECK(decoded.displayed.find(" " + summary + " ") != std::string::npos);
        // An inline code span: mrkdwn shows it literally instead of reading bold text into it.
        CHECK(decoded.displayed.find("schedule: `*/5 * * * *`") != std::string::npos);
        CHECK(decoded.mentions.empty());
    }
}

TEST_CASE("pipeline: a Slack message for 400 alerts is cut and accepted")
{
    delivery_pipeline p;
    p.configure(R"(
route: {receiver: slack, group_by: [alertname], group_wait: 10s, group_interval: 5m}
receivers:
  - name: slack
    slack_configs: [{api_url: '$BASE/services/T0001/B0001/WEBHOOKSECRETPATH42'}]
)");
    p.open();
    std::vector<alert_event> events;
    for (int i = 0; i < 400; ++i) {
        events.push_back(fired(host_alert("Latency", fmt::format("h{:03}", i), p.at(0), "warning",
                                          {{"description", repeat("slow responses ", 13) + "abcde"}})));
    }
    p.post(std::move(events));
    p.run_until(p.at(minutes_ms(1)));
    CHECK(contract_violations(p).empty());
    const auto requests = p.rx.requests(receiver_kind::slack);
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].status == 200);
    const auto messages = p.rx.accepted(receiver_kind::slack);
    REQUIRE(messages.size() == 1);
    const auto more = mrkdwn_with(messages[0].body, " more alerts");
    REQUIRE(more.size() == 1);
    CHECK(std::regex_search(more[0], std::regex("…and [0-9]+ more alerts$")));
}

TEST_CASE("pipeline: failed Slack template still sends")
{
    delivery_pipeline p;
    p.configure(R"(
route: {receiver: slack, group_by: [alertname], group_wait: 10s, group_interval: 5m}
receivers:
  - name: slack
    slack_configs:
      - api_url: '$BASE/services/T0001/B0001/WEBHOOKSECRETPATH42'
        text: '{{ (index .Alerts 0).Annotations.runbook_url | required }} {{ .CommonLabels.alertname }}'
)");
    p.open();
    p.post({fired(host_alert("Disk", "h1", p.at(0)))});
    p.run_until(p.at(minutes_ms(1)));
    CHECK(contract_violations(p).empty());
    const auto messages = p.rx.accepted(receiver_kind::slack);
    REQUIRE(messages.size() == 1);
    const std::string shown = messages[0].body.dump();
    CHECK(shown.find("Disk") != std::string::npos);
    CHECK(shown.find("template error") != std::string::npos);
    CHECK(has_line(p.metrics(), R"(tocsin_notification_template_errors_total{receiver="slack"} 1)"));
}

// ---- PagerDuty incident identity ----

TEST_CASE("pipeline: PagerDuty dedup keys stay per group")
{
    const char* config = R"(
route:
  receiver: pd
  group_by: [alertname, instance]
  group_wait: 30s
  group_interval: 5m
receivers:
  - name: pd
    pagerduty_configs: [{routing_key: 'R0UT1NGKEY0123456789abcdefABCDEF', url: '$BASE/v2/enqueue', send_resolved: true}]
)";
    delivery_pipeline p;
    p.configure(config);
    p.open();
    auto a = host_alert("DiskFull", "h1", p.at(0));
    const auto b = host_alert("DiskFull", "h2", p.at(0));
    p.post({fired(a), fired(b)});
    std::string h1_group;
    for (const auto& g : p.service().groups().groups()) {
        if (g.group_labels.get("instance") == "h1") {
            h1_group = g.group_key;
        }
    }
    REQUIRE_FALSE(h1_group.empty());
    p.run_until(p.at(minutes_ms(2)));
    a.labels = a.labels.with("severity", "critical");
    a.level = severity::critical;
    p.post({severity_changed(a)});
    p.run_until(p.at(minutes_ms(10)));
    p.post({resolved(a, p.at(minutes_ms(10)))});
    p.run_until(p.at(minutes_ms(12)));
    p.shut_down();
    p.open({b});
    p.run_until(p.at(minutes_ms(13)));
    p.reload(config);
    p.run_until(p.at(minutes_ms(20)));
    p.post({resolved(b, p.at(minutes_ms(20)))});
    p.run_until(p.at(minutes_ms(30)));
    CHECK(contract_violations(p).empty());

    const auto events = p.rx.accepted(receiver_kind::pagerduty);
    REQUIRE(events.size() == 5);
    auto instance_of = [](const accepted_event& e) {
        return e.body.at("payload").at("custom_details").dump().find("h1") != std::string::npos ? "h1" : "h2";
    };
    std::string k1;
    std::string k2;
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(events[i].arrival_ms == p.at(seconds_ms(30)));
        CHECK(events[i].body.at("event_action") == "trigger");
        (std::string(instance_of(events[i])) == "h1" ? k1 : k2) = events[i].key;
    }
    REQUIRE_FALSE(k1.empty());
    REQUIRE_FALSE(k2.empty());
    CHECK(k1 != k2);
    // The update after the severity change (an escalation, sent at once; the group's ticks
    // then count from it), the resolve of h1, and B's resolve after the restart and the reload.
    CHECK(events[2].arrival_ms == p.at(minutes_ms(2)));
    CHECK(events[2].body.at("event_action") == "trigger");
    CHECK(events[2].body.at("payload").at("severity") == "critical");
    CHECK(events[2].key == k1);
    CHECK(events[3].arrival_ms == p.at(minutes_ms(12)));
    CHECK(events[3].body.at("event_action") == "resolve");
    CHECK(events[3].key == k1);
    CHECK(events[4].arrival_ms == p.at(minutes_ms(20) + seconds_ms(30)));
    CHECK(events[4].body.at("event_action") == "resolve");
    CHECK(events[4].key == k2);
    const auto incidents = p.rx.pagerduty_alerts();
    REQUIRE(incidents.size() == 2);
    for (const auto& incident : incidents) {
        CHECK_FALSE(incident.open);
    }
    // Derived from the receiver and the group, so the same after any restart.
    CHECK(k1 == pagerduty_dedup_key("pd", h1_group));
}

// ---- a receiver that hangs ----

TEST_CASE("pipeline: a hanging receiver delays no other and is retried after its timeout")
{
    delivery_pipeline p;
    p.configure(R"(
route: {receiver: both, group_by: [alertname], group_wait: 30s, group_interval: 5m}
receivers:
  - name: both
    pagerduty_configs: [{routing_key: 'R0UT1NGKEY0123456789abcdefABCDEF', url: '$BASE/v2/enqueue', timeout: 1s}]
    webhook_configs: [{url: '$BASE/webhook/hook'}]
)");
    p.open();
    canned_response hang;
    hang.status = 202;
    hang.hang = hang_until_stop;
    p.rx.script(receiver_kind::pagerduty, hang);
    p.post({fired(host_alert("Disk", "h1", p.at(0)))});
    p.clock.set_ms(p.at(seconds_ms(30)));
    p.flush_only({});
    // The webhook gets its notification while PagerDuty keeps its request waiting. Both sends start
    // together, so wait for both rather than assume which reaches its receiver first.
    REQUIRE(p.run_io_until(
        [&] { return p.rx.accepted(receiver_kind::webhook).size() == 1 && p.rx.hanging() == 1; }));
    p.settle();                 // the PagerDuty attempt times out (1s of real time)
    CHECK(has_line(p.metrics(), R"(tocsin_notifications_retried_total{integration="both/pagerduty/0"} 1)"));
    p.run_until(p.at(minutes_ms(1)));
    const auto events = p.rx.accepted(receiver_kind::pagerduty);
    REQUIRE(events.size() == 1);
    CHECK(events[0].arrival_ms > p.at(seconds_ms(30)));
    CHECK(events[0].arrival_ms < p.at(seconds_ms(33)));
    const auto requests = p.rx.requests(receiver_kind::pagerduty);
    REQUIRE(requests.size() == 1); // the held request has no response yet
    CHECK(webhook_timeline(p) == std::vector<std::string>{"30s firing[h1]"});
}

// ---- secrets ----

namespace {

// Copies every line the "notify" logger writes while it lives, at every level.
class log_capture {
public:
    log_capture() : logger_(get_logger("notify")), sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_))
    {
        level_ = logger_->level();
        logger_->sinks().push_back(sink_);
        logger_->set_level(spdlog::level::trace);
    }
    ~log_capture()
    {
        auto& sinks = logger_->sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
        logger_->set_level(level_);
    }
    std::string text() const { return out_.str(); }

private:
    std::ostringstream out_;
    std::shared_ptr<spdlog::logger> logger_;
    std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
    spdlog::level::level_enum level_;
};

std::string file_bytes(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("pipeline: credentials reach only the request part that carries them")
{
    fake_receivers_options options;
    options.slack_token = bot_token;
    delivery_pipeline p(options);
    log_capture log;
    const std::string closed_secret = "CLOSEDPORTSECRET77";
    p.configure(R"(
route: {receiver: all, group_by: [alertname], group_wait: 30s, group_interval: 5m}
receivers:
  - name: all
    pagerduty_configs: [{routing_key: 'R0UT1NGKEY0123456789abcdefABCDEF', url: '$BASE/v2/enqueue'}]
    slack_configs:
      - {api_url: '$BASE/services/T0001/B0001/WEBHOOKSECRETPATH42', send_resolved: true}
      - {bot_token: 'xoxb-4242-SECRETBOTTOKEN', app_url: '$BASE/api/chat.postMessage', channel: '#alerts', send_resolved: true}
      - {api_url: 'http://127.0.0.1:1/services/T0002/B0002/CLOSEDPORTSECRET77'}
)");
    p.open();
    p.rx.fail_next(receiver_kind::pagerduty, 1, 503);
    p.rx.fail_next(receiver_kind::slack, 1, 500);
    p.rx.fail_next(receiver_kind::slack_api, 1, 429, 1);
    const auto a = host_alert("Disk", "h1", p.at(0));
    p.post({fired(a)});
    p.run_until(p.at(minutes_ms(10)));
    p.post({resolved(a, p.at(minutes_ms(10)))});
    p.run_until(p.at(minutes_ms(20)));

    CHECK(contract_violations(p).empty());
    CHECK(p.rx.accepted(receiver_kind::pagerduty).size() == 2);
    CHECK(p.rx.accepted(receiver_kind::slack).size() == 2);
    CHECK(p.rx.accepted(receiver_kind::slack_api).size() >= 2);
    const std::vector<std::string> secrets = {routing_key, webhook_secret, bot_token, closed_secret};

    for (const auto& r : p.rx.requests()) {
        INFO(to_string(r.kind) << " " << r.path);
        std::string body = r.body;
        if (r.kind == receiver_kind::pagerduty) {
            // The routing key belongs in its own field and nowhere else.
            json event = json::parse(r.body);
            CHECK(event.at("routing_key") == routing_key);
            event.erase("routing_key");
            body = event.dump();
        }
        for (const auto& s : secrets) {
            CHECK(body.find(s) == std::string::npos);
            if (!(r.kind == receiver_kind::slack && s == webhook_secret)) {
                CHECK(r.path.find(s) == std::string::npos);
            }
            for (const auto& [name, value] : r.headers) {
                if (r.kind == receiver_kind::slack_api && name == "authorization" && s == bot_token) {
                    CHECK(value == "Bearer " + bot_token);
                    continue;
                }
                CHECK(value.find(s) == std::string::npos);
            }
        }
    }
    const std::string metrics = p.metrics();
    const std::string logged = log.text();
    CHECK(logged.find("all/slack/2") != std::string::npos); // the closed port's failures were logged
    // The outbox on disk contains bodies without credentials.
    const std::string on_disk = file_bytes(p.dir.path() / "tocsin.db") + file_bytes(p.dir.path() / "tocsin.db-wal");
    REQUIRE_FALSE(on_disk.empty());
    for (const auto& s : secrets) {
        INFO(s);
        CHECK(metrics.find(s) == std::string::npos);
        CHECK(logged.find(s) == std::string::npos);
        CHECK(on_disk.find(s) == std::string::npos);
    }
}

TEST_CASE("pipeline: a sender's resolve without startsAt keeps the start of the alert it ends")
{
    delivery_pipeline p;
    p.configure(hook_route);
    p.open();
    alert a;
    a.labels = label_set{{"alertname", "FromPrometheus"}, {"instance", "h1"}};
    a.id = a.labels.fingerprint();
    a.source = "api";
    a.starts_at = p.at(0);
    a.updated_at = p.at(0);
    std::string error;
    REQUIRE(p.service().receive({a}, error));
    p.run_until(p.at(minutes_ms(2)));
    // Alertmanager's API fills a missing startsAt with the time of receipt.
    alert resolve = a;
    resolve.starts_at = p.at(minutes_ms(2));
    resolve.ends_at = p.at(minutes_ms(2));
    REQUIRE(p.service().receive({resolve}, error));
    p.run_until(p.at(minutes_ms(10)));

    const auto events = p.rx.accepted(receiver_kind::webhook);
    REQUIRE(events.size() == 2);
    const auto& resolved_alert = events[1].body.at("alerts").at(0);
    CHECK(resolved_alert.at("status") == "resolved");
    CHECK(resolved_alert.at("startsAt") == events[0].body.at("alerts").at(0).at("startsAt"));
}
