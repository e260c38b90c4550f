// Mute and active time intervals, loaded from Alertmanager's YAML and applied by the
// dispatcher on a manual clock, in the intervals' own time zones across DST changes.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include <yaml-cpp/yaml.h>

#include "rules/clock.hpp"
#include "rules/diagnostics.hpp"
#include "rules/sample_time.hpp"
#include "rules/yaml_check.hpp"
#include "routing/dispatcher.hpp"

using namespace tocsin;

namespace {

constexpr time_ms minute = 60'000;

const char* const config_text = R"(
time_intervals:
  - name: night
    time_intervals:
      - times: [{start_time: "22:00", end_time: "24:00"}, {start_time: "00:00", end_time: "06:00"}]
        location: Europe/Berlin
  - name: utc_afternoon
    time_intervals:
      - times: [{start_time: "13:00", end_time: "24:00"}]
  - name: office_hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: "09:00", end_time: "17:00"}]
        location: Europe/Berlin
route:
  receiver: hook
  group_by: [alertname, instance]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 24h
  routes:
    - {matchers: ['team="a"'], receiver: hook, mute_time_intervals: [night]}
    - {matchers: ['team="b"'], receiver: hook, mute_time_intervals: [utc_afternoon]}
    - {matchers: ['team="c"'], receiver: hook, active_time_intervals: [office_hours]}
receivers:
  - name: hook
    webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
)";

std::shared_ptr<const routing_config> load_config()
{
    diagnostics errors;
    diagnostics warnings;
    yaml::checker check("am.yml", errors);
    auto config = std::make_shared<routing_config>(load_routing(YAML::Load(config_text), check, "", warnings));
    INFO(errors.to_string() << warnings.to_string());
    REQUIRE(errors.empty());
    REQUIRE(warnings.empty());
    return config;
}

time_ms at(const char* rfc3339)
{
    std::optional<bool> unit_ms;
    std::string error;
    auto t = parse_sample_timestamp(rfc3339, unit_ms, error);
    INFO(error);
    REQUIRE(t.has_value());
    return *t;
}

// Posts one alert of `team` at `fires` and returns when it is first notified, flushing groups
// at their times up to `until`.
std::optional<time_ms> first_notification(const std::string& team, time_ms fires, time_ms until)
{
    manual_clock clock{fires};
    dispatcher d(load_config(), clock);
    alert a;
    a.id = 1;
    a.labels = label_set{{"alertname", "Latency"}, {"instance", "x"}, {"team", team}};
    a.starts_at = fires;
    a.updated_at = fires;
    d.upsert(a);
    while (auto next = d.next_flush_at()) {
        if (*next > until) {
            break;
        }
        clock.set_ms(std::max(*next, clock.now_ms()));
        if (!d.flush_due().empty()) {
            return clock.now_ms();
        }
    }
    return std::nullopt;
}

std::string shown(std::optional<time_ms> t)
{
    return t ? format_rfc3339(*t) : "never";
}

} // namespace

TEST_CASE("time intervals: mute windows follow their zone across DST, whatever the host zone")
{
    // The host zone must play no part.
    setenv("TZ", "Asia/Seoul", 1);
    tzset();

    // 21:30 CET: before the night window.
    CHECK(shown(first_notification("a", at("2024-03-30T20:30:00Z"), at("2024-04-01T00:00:00Z"))) ==
          "2024-03-30T20:30:30Z");
    // 22:30 CET: muted until 06:00 CEST (04:00Z) on the morning of the spring-forward; a fixed
    // +01:00 would release it at 05:00Z.
    CHECK(shown(first_notification("a", at("2024-03-30T21:30:00Z"), at("2024-04-01T00:00:00Z"))) ==
          "2024-03-31T04:00:30Z");
    // 06:30 CEST: after the window; a fixed +01:00 would still mute it.
    CHECK(shown(first_notification("a", at("2024-03-31T04:30:00Z"), at("2024-04-01T00:00:00Z"))) ==
          "2024-03-31T04:30:30Z");
    // 05:30 CET after the fall-back: muted until 06:00 CET (05:00Z); a fixed +02:00 would
    // notify at once.
    CHECK(shown(first_notification("a", at("2024-10-27T04:30:00Z"), at("2024-10-28T00:00:00Z"))) ==
          "2024-10-27T05:00:30Z");

    // No location means UTC: 16:00Z is muted until 24:00 UTC, 05:00Z is not muted.
    CHECK(shown(first_notification("b", at("2024-01-10T16:00:00Z"), at("2024-01-12T00:00:00Z"))) ==
          "2024-01-11T00:00:30Z");
    CHECK(shown(first_notification("b", at("2024-01-10T05:00:00Z"), at("2024-01-12T00:00:00Z"))) ==
          "2024-01-10T05:00:30Z");
    unsetenv("TZ");
    tzset();
}

TEST_CASE("time intervals: an active interval holds notifications until it starts")
{
    // Saturday 2024-06-01 10:00 CEST: outside office hours until Monday 09:00 CEST (07:00Z).
    CHECK(shown(first_notification("c", at("2024-06-01T08:00:00Z"), at("2024-06-04T00:00:00Z"))) ==
          "2024-06-03T07:00:30Z");
    // Monday 10:00 CEST: inside.
    CHECK(shown(first_notification("c", at("2024-06-03T08:00:00Z"), at("2024-06-04T00:00:00Z"))) ==
          "2024-06-03T08:00:30Z");
}

TEST_CASE("time intervals: fields and negative days of the month")
{
    time_interval_spec last_days;
    last_days.days_of_month = {{-3, -1}};
    CHECK_FALSE(last_days.contains(at("2024-02-26T12:00:00Z")));
    CHECK(last_days.contains(at("2024-02-27T12:00:00Z"))); // 2024 is a leap year: 27, 28, 29
    CHECK(last_days.contains(at("2024-02-29T23:59:59Z")));
    CHECK_FALSE(last_days.contains(at("2024-03-28T12:00:00Z")));
    CHECK(last_days.contains(at("2024-03-29T00:00:00Z")));

    time_interval_spec q1_2025;
    q1_2025.months = {{1, 3}};
    q1_2025.years = {{2025, 2025}};
    CHECK(q1_2025.contains(at("2025-03-31T23:59:59Z")));
    CHECK_FALSE(q1_2025.contains(at("2025-04-01T00:00:00Z")));
    CHECK_FALSE(q1_2025.contains(at("2024-02-01T00:00:00Z")));

    time_interval_spec evening;
    evening.times = {{17 * 60, 24 * 60}};
    CHECK(evening.contains(at("2024-01-01T23:59:59Z")));
    CHECK_FALSE(evening.contains(at("2024-01-02T00:00:00Z")));
    CHECK_FALSE(evening.contains(at("2024-01-01T16:59:59Z")));
}
