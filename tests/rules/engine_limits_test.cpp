#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
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

// Counts the events to announce, or with `held_back` those for the store only.
std::size_t count_events(const std::vector<alert_event>& events, std::string_view rule_name, kind what,
                         bool held_back = false)
{
    std::size_t n = 0;
    for (const auto& e : events) {
        if (e.alert.rule_name == rule_name && e.what == what && e.held_back == held_back) {
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
    // Alerts up to the limit were announced before it was crossed; the others reach the store
    // only.
    CHECK(count_events(events, "PodDown", kind::firing) == 10'000);
    CHECK(count_events(events, "PodDown", kind::firing, true) == 10'000);
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

    // The pods come back: the meta alert resolves, and only the alerts that were announced get
    // an announced resolved event. Every alert's resolution reaches the store.
    h.clock.set_ms(30'000);
    for (int i = 0; i < 20'000; ++i) {
        h.push(pod(i), 30'000, 1);
    }
    h.eng.tick();
    events = h.eng.take_events();
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::resolved) == 1);
    CHECK(count_events(events, "PodDown", kind::resolved) == 10'000);
    // 9,999 while still over the limit, and the 10,000 that were never announced.
    CHECK(count_events(events, "PodDown", kind::resolved, true) == 19'999);
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
    CHECK(count_events(events, "PodDown", kind::firing, true) == 2);

    // Two of the sent alerts recover; the two held-back ones are still firing and now fit.
    h.push(pod(0), 15'000, 1);
    h.push(pod(1), 15'000, 1);
    h.eng.tick();
    events = h.eng.take_events();
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::resolved) == 1);
    CHECK(count_events(events, "PodDown", kind::resolved) == 2);
    CHECK(count_events(events, "PodDown", kind::firing) == 2);
    CHECK(h.eng.alerts().size() == 2);
    // pod 0 resolved while the rule was still over its limit: held back, then announced by
    // tick().
    CHECK(count_events(events, "PodDown", kind::resolved, true) == 1);

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

TEST_CASE("engine limits: changes over the limit reach the store as held-back events")
{
    engine_limits limits;
    limits.per_rule_max_alerts = 2;
    auto r = make_rule("HighCpu", "cpu", compare_op::greater, 80);
    tier critical;
    critical.level = severity::critical;
    critical.when = condition{compare_op::greater, 95};
    r->tiers.push_back(critical);
    auto rules = make_rules({r});
    harness h(rules, limits);
    auto host = [](int i) { return label_set{{"__name__", "cpu"}, {"host", "h" + std::to_string(i)}}; };

    // The store keeps exactly what the events say, as the daemon's does.
    std::map<std::uint64_t, persisted_alert> store;
    auto save = [&](const std::vector<alert_event>& events) {
        for (const auto& e : events) {
            if (e.record.state == alert_state::inactive) {
                store.erase(e.record.id);
            } else {
                store[e.record.id] = e.record;
            }
        }
    };

    h.clock.set_ms(1'000'000);
    for (int i = 0; i < 4; ++i) {
        h.push(host(i), 1'000'000, 90);
    }
    auto events = h.eng.take_events();
    save(events);
    CHECK(count_events(events, "HighCpu", kind::firing) == 2);
    CHECK(count_events(events, "HighCpu", kind::firing, true) == 2);

    // Still over the limit: h0 resolves, h1 (announced) and h2 (held back) escalate.
    h.push(host(0), 1'015'000, 50);
    h.push(host(1), 1'015'000, 97);
    h.push(host(2), 1'015'000, 97);
    events = h.eng.take_events();
    save(events);
    REQUIRE(events.size() == 3);
    for (const auto& e : events) {
        CHECK(e.held_back);
    }
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.labels.get("host") == "h0");
    CHECK(events[0].alert.reason == "recovered");
    CHECK(events[0].alert.resolved_at == 1'015'000);
    CHECK(events[0].record.state == alert_state::inactive);
    for (std::size_t i = 1; i < 3; ++i) {
        CHECK(events[i].what == kind::severity_changed);
        CHECK(events[i].record.state == alert_state::firing);
        CHECK(events[i].record.level == severity::critical);
        CHECK(events[i].record.fired_at == 1'000'000);
        CHECK(events[i].record.value == 97);
    }

    // A restart from the store brings back the same alerts.
    std::vector<persisted_alert> saved;
    for (const auto& [id, record] : store) {
        saved.push_back(record);
    }
    harness restarted(rules, limits);
    restarted.clock.set_ms(1'016'000);
    // The meta alert's record is dropped: restore() raises it again from the count.
    REQUIRE(restarted.eng.restore(saved) == 1);
    auto by_id = [](std::vector<persisted_alert> records) {
        std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
        return records;
    };
    const auto before = by_id(h.eng.persisted_state());
    const auto after = by_id(restarted.eng.persisted_state());
    REQUIRE(before.size() == 3);
    REQUIRE(after.size() == before.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
        CHECK(after[i].id == before[i].id);
        CHECK(after[i].state == before[i].state);
        CHECK(after[i].level == before[i].level);
        CHECK(after[i].value == before[i].value);
        CHECK(after[i].active_at == before[i].active_at);
        CHECK(after[i].fired_at == before[i].fired_at);
        CHECK(after[i].tier_held_since == before[i].tier_held_since);
    }
    // Three alerts are still over the limit of two: both engines show the meta alert only.
    REQUIRE(restarted.eng.alerts().size() == 1);
    CHECK(restarted.eng.alerts()[0].rule_name == "TocsinRuleAlertLimitExceeded");
    CHECK(h.eng.alerts().size() == 1);
}

TEST_CASE("engine limits: no-data alerts count toward the rule's alert limit")
{
    engine_limits limits;
    limits.per_rule_max_alerts = 2;
    auto r = make_rule("PodDown", "up", compare_op::equal, 0);
    r->no_data = no_data_policy{1min, no_data_action::alert, 0ms, severity::critical};
    harness h(make_rules({r}), limits);
    for (int i = 0; i < 3; ++i) {
        h.push(pod(i), 0, 1);
    }
    CHECK(h.eng.take_events().empty());

    // Three silent series: three no-data alerts, one more than the limit.
    h.clock.set_ms(60'000);
    h.eng.tick();
    auto events = h.eng.take_events();
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::firing) == 1);
    CHECK(count_events(events, "PodDown", kind::firing) == 2);
    CHECK(count_events(events, "PodDown", kind::firing, true) == 1);
    auto alerts = h.eng.alerts();
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].rule_name == "TocsinRuleAlertLimitExceeded");
    REQUIRE_FALSE(alerts[0].annotations.empty());
    CHECK(alerts[0].annotations[0].second == "alert limit exceeded (3 > 2)");
    auto rules = h.eng.rule_statistics();
    REQUIRE(rules.size() == 1);
    CHECK(rules[0].limit_exceeded);
    CHECK(rules[0].firing == 3);
    CHECK(h.eng.persisted_state().size() == 3);

    // Data returns: the no-data alerts and the meta alert resolve.
    h.clock.set_ms(70'000);
    for (int i = 0; i < 3; ++i) {
        h.push(pod(i), 70'000, 1);
    }
    h.eng.tick();
    events = h.eng.take_events();
    CHECK(count_events(events, "TocsinRuleAlertLimitExceeded", kind::resolved) == 1);
    CHECK(count_events(events, "PodDown", kind::resolved) == 2);
    CHECK(count_events(events, "PodDown", kind::resolved, true) == 1);
    CHECK(h.eng.alerts().empty());
    CHECK(h.eng.persisted_state().empty());
    CHECK_FALSE(h.eng.rule_statistics()[0].limit_exceeded);
    CHECK(h.eng.rule_statistics()[0].firing == 0);
}
