#include <catch2/catch.hpp>

#include <string>

#include "rules/engine.hpp"

using namespace tocsin;
using namespace std::chrono_literals;
using kind = alert_event::kind;

namespace {

std::shared_ptr<rule> make_rule(std::string name, std::string metric, compare_op op, double threshold)
{
    auto r = std::make_shared<rule>();
    r->name = std::move(name);
    r->group = "test";
    r->metric = std::move(metric);
    tier t;
    t.level = severity::warning;
    t.when = condition{op, threshold};
    r->tiers.push_back(t);
    r->definition_hash = std::hash<std::string>{}(r->name);
    return r;
}

std::shared_ptr<const rule_set> make_rules(std::vector<std::shared_ptr<rule>> rules)
{
    auto set = std::make_shared<rule_set>();
    for (auto& r : rules) {
        set->rules.push_back(r);
    }
    return set;
}

struct harness {
    harness(std::shared_ptr<const rule_set> rules, engine_limits limits) : eng(std::move(rules), limits, clock) {}

    ingest_status push(const label_set& series, time_ms t, double value)
    {
        std::vector<label_view> views;
        for (const auto& l : series.items()) {
            views.push_back(label_view{l.name, l.value});
        }
        return eng.ingest(views, t, value);
    }

    manual_clock clock{0};
    engine eng;
};

label_set pod(int i)
{
    return label_set{{"__name__", "up"}, {"pod", "p" + std::to_string(i)}};
}

std::size_t count_events(const std::vector<alert_event>& events, std::string_view rule_name, kind what)
{
    std::size_t n = 0;
    for (const auto& e : events) {
        if (e.alert.rule_name == rule_name && e.what == what) {
            ++n;
        }
    }
    return n;
}

} // namespace

TEST_CASE("engine limits: a rule over its alert limit shows one meta alert")
{
    engine_limits limits;
    limits.per_rule_max_alerts = 10'000;
    limits.max_active_alerts = 50'000;
    auto pod_down = make_rule("PodDown", "up", compare_op::equal, 0);
    auto heartbeat = make_rule("Heartbeat", "heartbeat", compare_op::greater, 0);
    harness h(make_rules({pod_down, heartbeat}), limits);

    for (int i = 0; i < 20'000; ++i) {
        REQUIRE(h.push(pod(i), 0, 0) == ingest_status::accepted);
    }
    h.push(label_set{{"__name__", "heartbeat"}}, 0, 1);
    h.eng.tick();

    auto events = h.eng.take_events();
    // Alerts up to the limit were sent before it was crossed; none after.
    CHECK(count_events(events, "PodDown", kind::firing) == 10'000);
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::firing) == 1);
    CHECK(count_events(events, "Heartbeat", kind::firing) == 1);

    auto alerts = h.eng.alerts();
    REQUIRE(alerts.size() == 2);
    const alert_snapshot* meta = nullptr;
    for (const auto& a : alerts) {
        CHECK(a.rule_name != "PodDown");
        if (a.rule_name == "TocsinRuleAlertLimitExceeded") {
            meta = &a;
        }
    }
    REQUIRE(meta != nullptr);
    CHECK(meta->labels.get("alertname") == "TocsinRuleAlertLimitExceeded");
    CHECK(meta->labels.get("rule") == "PodDown");
    CHECK(meta->labels.get("severity") == "critical");
    REQUIRE_FALSE(meta->annotations.empty());
    CHECK(meta->annotations[0].second == "alert limit exceeded (20000 > 10000)");

    auto rules = h.eng.rule_statistics();
    REQUIRE(rules.size() == 2);
    CHECK(rules[0].limit_exceeded);
    CHECK(rules[0].firing == 20'000);
    CHECK_FALSE(rules[1].limit_exceeded);
    // Held-back alerts stay tracked.
    CHECK(h.eng.stats().firing == 20'001);

    // The pods come back: the meta alert resolves, and only the alerts that were sent get a
    // resolved event.
    h.clock.set_ms(30'000);
    for (int i = 0; i < 20'000; ++i) {
        h.push(pod(i), 30'000, 1);
    }
    h.eng.tick();
    events = h.eng.take_events();
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::resolved) == 1);
    CHECK(count_events(events, "PodDown", kind::resolved) == 10'000);
    CHECK(count_events(events, "PodDown", kind::firing) == 0);
    CHECK_FALSE(h.eng.rule_statistics()[0].limit_exceeded);
    REQUIRE(h.eng.alerts().size() == 1);
    CHECK(h.eng.alerts()[0].rule_name == "Heartbeat");
}

TEST_CASE("engine limits: held-back alerts are sent once the rule is under its limit")
{
    engine_limits limits;
    limits.per_rule_max_alerts = 2;
    harness h(make_rules({make_rule("PodDown", "up", compare_op::equal, 0)}), limits);
    for (int i = 0; i < 4; ++i) {
        h.push(pod(i), 0, 0);
    }
    auto events = h.eng.take_events();
    CHECK(count_events(events, "PodDown", kind::firing) == 2);

    // Two of the sent alerts recover; the two held-back ones are still firing and now fit.
    h.push(pod(0), 15'000, 1);
    h.push(pod(1), 15'000, 1);
    h.eng.tick();
    events = h.eng.take_events();
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::resolved) == 1);
    CHECK(count_events(events, "PodDown", kind::resolved) == 2);
    CHECK(count_events(events, "PodDown", kind::firing) == 2);
    CHECK(h.eng.alerts().size() == 2);

    h.eng.tick();
    CHECK(h.eng.take_events().empty());
}

TEST_CASE("engine limits: max_active_alerts rejects new alerts only")
{
    engine_limits limits;
    limits.max_active_alerts = 3;
    auto a = make_rule("PodDown", "up", compare_op::equal, 0);
    auto b = make_rule("Heartbeat", "heartbeat", compare_op::greater, 0);
    harness h(make_rules({a, b}), limits);
    for (int i = 0; i < 5; ++i) {
        h.push(pod(i), 0, 0);
    }
    CHECK(h.eng.stats().firing == 3);
    CHECK(h.eng.stats().alert_limit_rejections == 2);
    h.push(label_set{{"__name__", "heartbeat"}}, 0, 1);
    CHECK(h.eng.stats().alert_limit_rejections == 3);

    // Existing alerts keep evaluating; a freed slot goes to the next new alert.
    h.push(pod(0), 15'000, 1);
    h.push(label_set{{"__name__", "heartbeat"}}, 15'000, 1);
    CHECK(h.eng.stats().firing == 3);
    auto rules = h.eng.rule_statistics();
    CHECK(rules[0].firing == 2);
    CHECK(rules[1].firing == 1);
}

TEST_CASE("engine limits: set_limits applies to rules already over the new limit")
{
    harness h(make_rules({make_rule("PodDown", "up", compare_op::equal, 0)}), engine_limits{});
    for (int i = 0; i < 5; ++i) {
        h.push(pod(i), 0, 0);
    }
    h.eng.take_events();
    engine_limits limits;
    limits.per_rule_max_alerts = 4;
    h.eng.set_limits(limits);
    auto events = h.eng.take_events();
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::firing) == 1);
    CHECK(h.eng.alerts().size() == 1);
}
