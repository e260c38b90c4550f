// Alertmanager's postableAlert batches: defaults for missing times, empty label values dropped,
// invalid alerts reported while the valid ones are kept, and the gettableAlert fields.
#include <catch2/catch.hpp>

#include <string>

#include "daemon/am_alerts.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

// 2026-01-02T15:04:05Z.
constexpr time_ms now = 1'767'366'245'000;

postable_alerts parse(const std::string& body)
{
    return parse_postable_alerts(body, now, 5min, postable_alert_limits{});
}

} // namespace

TEST_CASE("am alerts: missing times take Alertmanager's defaults")
{
    const auto out = parse(R"([
      {"labels": {"alertname": "A", "team": ""}},
      {"labels": {"alertname": "B"}, "endsAt": "2026-01-02T15:00:00Z"},
      {"labels": {"alertname": "C"}, "startsAt": "2026-01-02T14:00:00+01:00", "generatorURL": "http://p/graph"},
      {"labels": {"alertname": "D"}, "startsAt": "0001-01-01T00:00:00Z"}
    ])");
    REQUIRE(out.errors.empty());
    REQUIRE(out.alerts.size() == 4);
    const alert& a = out.alerts[0];
    CHECK(a.labels.size() == 1); // the empty team label is dropped
    CHECK(a.starts_at == now);
    CHECK(a.ends_at == now + 300'000);
    CHECK(a.source == "api");
    CHECK(a.id == a.labels.fingerprint());
    // Only endsAt, in the past: the alert starts where it ends and is resolved.
    CHECK(out.alerts[1].starts_at == out.alerts[1].ends_at);
    CHECK(out.alerts[1].resolved_at(now));
    CHECK(out.alerts[2].starts_at == now - 2 * 3'600'000 - 245'000);
    CHECK(out.alerts[2].generator_url == "http://p/graph");
    // Go's zero time counts as not set.
    CHECK(out.alerts[3].starts_at == now);
}

TEST_CASE("am alerts: invalid alerts are reported and the valid ones kept")
{
    const auto out = parse(R"([
      {"labels": {"alertname": "Good"}},
      {"labels": {}},
      {"labels": {"alertname": 5}},
      {"labels": {"alertname": "X"}, "startsAt": "soon"},
      {"labels": {"alertname": "Y"}, "startsAt": "2026-01-02T15:00:00Z", "endsAt": "2026-01-02T14:00:00Z"},
      {"annotations": {"summary": "no labels"}},
      "not an object"
    ])");
    REQUIRE(out.alerts.size() == 1);
    CHECK(out.alerts[0].labels.get("alertname") == "Good");
    REQUIRE(out.errors.size() == 6);
    CHECK_THAT(out.errors[0], Catch::Contains("alerts[1] has no labels with a value"));
    CHECK_THAT(out.errors[1], Catch::Contains("alerts[2].labels.alertname must be a string"));
    CHECK_THAT(out.errors[2], Catch::Contains("alerts[3].startsAt is \"soon\", not an RFC 3339 time"));
    CHECK_THAT(out.errors[3], Catch::Contains("is before startsAt"));
    CHECK_THAT(out.errors[4], Catch::Contains("missing field \"labels\""));
    CHECK_THAT(out.errors[5], Catch::Contains("must be an object with labels"));
}

TEST_CASE("am alerts: bodies that are not a batch are rejected whole")
{
    CHECK(parse("{").fatal_status == 400);
    CHECK_THAT(parse("{}").fatal, Catch::Contains("must be a JSON array"));
    CHECK_THAT(parse(std::string(30, '[') + std::string(30, ']')).fatal, Catch::Contains("deeper than"));
    postable_alert_limits two;
    two.max_alerts = 2;
    const auto many = parse_postable_alerts(R"([{"labels":{"a":"1"}},{"labels":{"a":"2"}},{"labels":{"a":"3"}}])",
                                            now, 5min, two);
    CHECK(many.fatal_status == 413);
}

TEST_CASE("am alerts: the gettable form has Alertmanager's fields")
{
    alert a = parse(R"([{"labels": {"alertname": "A"}, "annotations": {"summary": "s"}}])").alerts.at(0);
    mute_status muted;
    muted.silenced_by = {"s1"};
    const auto doc = gettable_alert(a, muted, {"hook"}, now, 5min);
    CHECK(doc["labels"]["alertname"] == "A");
    CHECK(doc["annotations"]["summary"] == "s");
    CHECK(doc["startsAt"] == "2026-01-02T15:04:05.000Z");
    CHECK(doc["endsAt"] == "2026-01-02T15:09:05.000Z");
    CHECK(doc["fingerprint"].get<std::string>().size() == 16);
    CHECK(doc["receivers"] == nlohmann::json::array({{{"name", "hook"}}}));
    CHECK(doc["status"]["state"] == "suppressed");
    CHECK(doc["status"]["silencedBy"] == nlohmann::json::array({"s1"}));
    CHECK(doc["status"]["mutedBy"] == nlohmann::json::array());
    CHECK(gettable_alert(a, mute_status{}, {}, now, 5min)["status"]["state"] == "active");
}

TEST_CASE("am alerts: the status config hides secrets and keeps file names")
{
    const std::string text = R"(
listen: 127.0.0.1:9793
global: {slack_api_url: "https://hooks.slack.com/services/T0/B0/XYZ"}
receivers:
  - name: pd
    pagerduty_configs: [{routing_key: abcdef0123456789abcdef0123456789, url: "http://127.0.0.1/v2"}]
  - name: slack
    slack_configs: [{bot_token_file: /etc/tocsin/slack.token, channel: "#ops"}]
)";
    const std::string shown = redacted_config(text);
    CHECK(shown.find("abcdef0123456789") == std::string::npos);
    CHECK(shown.find("XYZ") == std::string::npos);
    CHECK(shown.find("http://127.0.0.1/v2") == std::string::npos);
    CHECK(shown.find("/etc/tocsin/slack.token") != std::string::npos);
    CHECK(shown.find("#ops") != std::string::npos);
    CHECK(shown.find("<secret>") != std::string::npos);
    CHECK(redacted_config("key: [unclosed").empty());
}
