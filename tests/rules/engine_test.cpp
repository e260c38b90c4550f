#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <optional>

#include "rules/engine.hpp"

using namespace tocsin;
using namespace std::chrono_literals;
using kind = alert_event::kind;

namespace {

tier make_tier(severity level, compare_op op, double threshold, milliseconds for_duration = 0ms,
               std::optional<condition> recover = std::nullopt, milliseconds keep_firing_for = 0ms)
{
    tier t;
    t.level = level;
    t.when = condition{op, threshold};
    t.recover = recover;
    t.for_duration = for_duration;
    t.keep_firing_for = keep_firing_for;
    return t;
}

std::shared_ptr<rule> make_rule(std::string name, std::string metric, std::vector<tier> tiers)
{
    auto r = std::make_shared<rule>();
    r->name = std::move(name);
    r->group = "test";
    r->metric = std::move(metric);
    r->tiers = std::move(tiers);
    r->definition_hash = std::hash<std::string>{}(r->name);
    return r;
}

std::shared_ptr<const rule_set> make_rules(std::vector<std::shared_ptr<rule>> rules)
{
    auto set = std::make_shared<rule_set>();
    rule_group group;
    group.name = "test";
    for (auto& r : rules) {
        group.rules.push_back(r);
        set->rules.push_back(r);
    }
    set->groups.push_back(std::move(group));
    return set;
}

text_template make_template(std::string_view source)
{
    text_template out;
    std::string error;
    REQUIRE(text_template::parse(source, out, error));
    return out;
}

// An engine on a manual clock, fed with label sets.
struct harness {
    explicit harness(std::shared_ptr<const rule_set> rules, engine_limits limits = {})
        : eng(std::move(rules), limits, clock)
    {
    }

    ingest_status push(const label_set& series, time_ms t, double value)
    {
        std::vector<label_view> views;
        for (const auto& l : series.items()) {
            views.push_back(label_view{l.name, l.value});
        }
        return eng.ingest(views, t, value);
    }

    // Feeds a sample with the clock following sample time, as live traffic does.
    ingest_status live(const label_set& series, time_ms t, double value)
    {
        clock.set_ms(t);
        return push(series, t, value);
    }

    std::vector<alert_event> events() { return eng.take_events(); }

    std::optional<alert_snapshot> alert_for(std::string_view rule_name) const
    {
        for (auto& a : eng.alerts()) {
            if (a.rule_name == rule_name && !a.no_data) {
                return a;
            }
        }
        return std::nullopt;
    }

    manual_clock clock{0};
    engine eng;
};

const double nan_value = std::numeric_limits<double>::quiet_NaN();
const double inf_value = std::numeric_limits<double>::infinity();

double stale_marker_value() { return std::bit_cast<double>(std::uint64_t{0x7ff0000000000002ULL}); }

label_set cpu(std::string instance)
{
    return label_set{{"__name__", "cpu"}, {"instance", std::move(instance)}};
}

} // namespace

TEST_CASE("engine: pending, then firing once for has elapsed")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    r->labels.emplace_back("team", make_template("infra"));
    r->annotations.emplace_back("summary", make_template("{{ $labels.instance }} is busy"));
    harness h(make_rules({r}));

    CHECK(h.push(cpu("a"), 0, 90) == ingest_status::accepted);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::pending);
    CHECK(events[0].alert.state == alert_state::pending);
    CHECK(events[0].record.tier_held_since.size() == 1);

    h.push(cpu("a"), 30'000, 91);
    CHECK(h.events().empty());
    h.push(cpu("a"), 59'999, 92);
    CHECK(h.events().empty());

    h.push(cpu("a"), 60'000, 93);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    const alert_snapshot& a = events[0].alert;
    CHECK(a.state == alert_state::firing);
    CHECK(a.active_at == 0);
    CHECK(a.fired_at == 60'000);
    CHECK(a.value == 93);
    CHECK(a.labels.get("alertname") == "HighCpu");
    CHECK(a.labels.get("severity") == "warning");
    CHECK(a.labels.get("team") == "infra");
    CHECK(a.labels.get("instance") == "a");
    CHECK(a.labels.get("__name__").empty());
    REQUIRE(a.annotations.size() == 1);
    CHECK(a.annotations[0].second == "a is busy");
    CHECK(events[0].record.series == cpu("a"));
    CHECK(events[0].record.state == alert_state::firing);

    // Steady firing produces no event per sample.
    for (int i = 1; i <= 100; ++i) {
        h.push(cpu("a"), 60'000 + i * 15'000, 95);
    }
    CHECK(h.events().empty());
    CHECK(h.eng.stats().firing == 1);
    CHECK(h.eng.stats().firing_by_severity[static_cast<int>(severity::warning)] == 1);
}

TEST_CASE("engine: condition false before for elapses resolves without firing")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    h.push(cpu("a"), 30'000, 10);
    auto events = h.events();
    REQUIRE(events.size() == 2);
    CHECK(events[1].what == kind::resolved);
    CHECK(events[1].alert.reason == "recovered");
    CHECK(events[1].record.state == alert_state::inactive);
    h.push(cpu("a"), 60'000, 90);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::pending);
}

TEST_CASE("engine: escalation and de-escalation keep the alert id")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80),
                        make_tier(severity::critical, compare_op::greater, 95)});
    harness h(make_rules({r}));

    h.push(cpu("a"), 0, 85);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.level == severity::warning);
    const std::uint64_t id = events[0].alert.id;
    CHECK(id == events[0].record.id);

    h.push(cpu("a"), 15'000, 97);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::critical);
    CHECK(events[0].alert.labels.get("severity") == "critical");
    CHECK(events[0].alert.id == id);
    CHECK(events[0].alert.fired_at == 0);

    h.push(cpu("a"), 30'000, 85);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::warning);
    CHECK(events[0].alert.id == id);

    h.push(cpu("a"), 45'000, 10);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.id == id);
}

TEST_CASE("engine: a higher tier starting to hold while firing is an update")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80),
                        make_tier(severity::critical, compare_op::greater, 95, 1min)});
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 85);
    CHECK(h.events().size() == 1);

    h.push(cpu("a"), 15'000, 97);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::updated);
    CHECK(events[0].alert.level == severity::warning);
    CHECK(events[0].record.tier_held_since == std::vector<time_ms>{0, 15'000});

    h.push(cpu("a"), 75'000, 97);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::critical);
}

TEST_CASE("engine: recover condition prevents flapping")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 90, 0ms,
                                  condition{compare_op::less, 80})});
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 95);
    REQUIRE(h.events().size() == 1);

    // Hovering between the recover threshold and the condition keeps the alert firing.
    time_ms t = 0;
    for (double v : {85.0, 89.0, 91.0, 85.0, 82.0, 80.0}) {
        t += 15'000;
        h.push(cpu("a"), t, v);
    }
    CHECK(h.events().empty());
    REQUIRE(h.alert_for("HighCpu"));
    CHECK(h.alert_for("HighCpu")->state == alert_state::firing);

    h.push(cpu("a"), t + 15'000, 79);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);

    // Below the condition but above recover: stays inactive.
    h.push(cpu("a"), t + 30'000, 85);
    CHECK(h.events().empty());
}

TEST_CASE("engine: keep_firing_for keeps a released tier firing")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80, 0ms, std::nullopt, 2min)});
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    REQUIRE(h.events().size() == 1);

    h.push(cpu("a"), 15'000, 10);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::updated);
    CHECK(events[0].record.tier_released_at == std::vector<time_ms>{15'000});
    CHECK(h.alert_for("HighCpu")->state == alert_state::firing);

    h.push(cpu("a"), 134'999, 10);
    CHECK(h.events().empty());
    CHECK(h.alert_for("HighCpu")->state == alert_state::firing);

    h.push(cpu("a"), 135'000, 10);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK_FALSE(h.alert_for("HighCpu"));
}

TEST_CASE("engine: condition returning within keep_firing_for continues the alert")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80, 1min, std::nullopt, 2min)});
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    h.push(cpu("a"), 60'000, 90);
    h.push(cpu("a"), 75'000, 10);
    h.push(cpu("a"), 90'000, 90);
    auto events = h.events();
    REQUIRE(events.size() == 4);
    CHECK(events[1].what == kind::firing);
    CHECK(events[2].what == kind::updated);
    CHECK(events[3].what == kind::updated);
    // Past the end of keep_firing_for the alert still fires: the hold never restarted.
    h.push(cpu("a"), 200'000, 90);
    CHECK(h.events().empty());
    CHECK(h.alert_for("HighCpu")->state == alert_state::firing);
    CHECK(h.alert_for("HighCpu")->fired_at == 60'000);
}

TEST_CASE("engine: non-numeric samples never fire and keep the pending timer")
{
    auto r = make_rule("ErrorRatio", "error_ratio", {make_tier(severity::warning, compare_op::greater, 0.05, 1min)});
    harness h(make_rules({r}));
    const label_set series{{"__name__", "error_ratio"}, {"job", "api"}};

    // Flat counters: 0/0 gives NaN for ten minutes; nothing happens.
    for (time_ms t = 0; t < 600'000; t += 15'000) {
        h.live(series, t, nan_value);
    }
    h.eng.tick();
    CHECK(h.events().empty());
    CHECK(h.eng.stats().non_numeric_samples == 40);

    h.live(series, 600'000, 0.1);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::pending);

    // NaN and ±Inf in between neither fire nor reset the timer.
    h.live(series, 615'000, nan_value);
    h.live(series, 630'000, inf_value);
    h.live(series, 645'000, -inf_value);
    CHECK(h.events().empty());
    CHECK(h.alert_for("ErrorRatio")->state == alert_state::pending);

    h.live(series, 660'000, 0.1);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.active_at == 600'000);
    CHECK(h.eng.stats().non_numeric_samples == 43);
}

TEST_CASE("engine: NaN never fires, whatever the operator")
{
    auto r = make_rule("NotZero", "m", {make_tier(severity::warning, compare_op::not_equal, 0)});
    harness h(make_rules({r}));
    h.push(label_set{{"__name__", "m"}}, 0, nan_value);
    CHECK(h.events().empty());
    CHECK_FALSE(h.alert_for("NotZero"));
}

TEST_CASE("engine: infinity fires only when the rule opts in")
{
    auto off = make_rule("InfOff", "m", {make_tier(severity::warning, compare_op::greater, 1)});
    auto on = make_rule("InfOn", "m", {make_tier(severity::warning, compare_op::greater, 1)});
    on->fire_on_infinity = true;
    harness h(make_rules({off, on}));
    h.push(label_set{{"__name__", "m"}}, 0, inf_value);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].alert.rule_name == "InfOn");
    CHECK(events[0].what == kind::firing);
}

TEST_CASE("engine: non-numeric samples under on_non_numeric no_data mark the series missing")
{
    auto r = make_rule("ErrorRatio", "error_ratio", {make_tier(severity::warning, compare_op::greater, 0.05)});
    r->on_non_numeric = non_numeric_action::no_data;
    r->no_data.action = no_data_action::resolve;
    harness h(make_rules({r}));
    const label_set series{{"__name__", "error_ratio"}};
    h.live(series, 0, 0.1);
    REQUIRE(h.events().size() == 1);

    // The rule's no-data action applies at once, at the value's sample time.
    h.clock.set_ms(20'000);
    h.push(series, 15'000, nan_value);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "missing_series");
    CHECK(events[0].alert.resolved_at == 15'000);
    h.eng.tick();
    CHECK(h.events().empty());
}

TEST_CASE("engine: avg_over_time drops non-numeric samples")
{
    auto r = make_rule("Mean", "m", {make_tier(severity::warning, compare_op::greater, 0)});
    r->xform.kind = transform_kind::avg;
    r->xform.window = 1min;
    harness h(make_rules({r}));
    const label_set series{{"__name__", "m"}};
    h.push(series, 0, 3);
    h.push(series, 10'000, 5);
    h.push(series, 20'000, nan_value);
    h.push(series, 30'000, 2);
    auto a = h.alert_for("Mean");
    REQUIRE(a);
    CHECK(a->value == Approx(10.0 / 3));
}

TEST_CASE("engine: keep_state resolves a missing series once after resolve_after")
{
    auto r = make_rule("DevicesOffline", "devices_offline", {make_tier(severity::warning, compare_op::greater, 0)});
    r->no_data = no_data_policy{1min, no_data_action::keep_state, 9min, severity::warning};
    harness h(make_rules({r}));
    const label_set series{{"__name__", "devices_offline"}, {"site", "s1"}};

    // Samples every 15 s for [0, 5m), then silence; the daemon ticks every 15 s.
    std::vector<alert_event> resolved;
    std::vector<time_ms> resolved_at_clock;
    for (time_ms t = 0; t <= 30 * 60'000; t += 15'000) {
        if (t < 5 * 60'000) {
            h.live(series, t, 3);
        } else {
            h.clock.set_ms(t);
        }
        h.eng.tick();
        for (auto& e : h.events()) {
            if (e.what == kind::resolved) {
                resolved.push_back(e);
                resolved_at_clock.push_back(t);
            }
        }
    }
    // Last sample at 4m45s; missing from 5m45s; resolved 9 min later.
    REQUIRE(resolved.size() == 1);
    CHECK(resolved_at_clock[0] == 14 * 60'000 + 45'000);
    CHECK(resolved[0].alert.reason == "missing_series");
    CHECK(resolved[0].alert.resolved_at == 14 * 60'000 + 45'000);
    CHECK(resolved[0].record.state == alert_state::inactive);
    CHECK_FALSE(h.alert_for("DevicesOffline"));
}

TEST_CASE("engine: keep_state continues the same alert when data returns")
{
    auto r = make_rule("DevicesOffline", "devices_offline", {make_tier(severity::warning, compare_op::greater, 0)});
    r->no_data = no_data_policy{1min, no_data_action::keep_state, 10min, severity::warning};
    harness h(make_rules({r}));
    const label_set series{{"__name__", "devices_offline"}, {"site", "s1"}};

    h.live(series, 0, 3);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    const std::uint64_t id = events[0].alert.id;

    // Samples for [0, 5m), none for [5m, 9m), samples again from 9m.
    for (time_ms t = 15'000; t <= 20 * 60'000; t += 15'000) {
        if (t < 5 * 60'000 || t >= 9 * 60'000) {
            h.live(series, t, 3);
        } else {
            h.clock.set_ms(t);
        }
        h.eng.tick();
        CHECK(h.events().empty());
    }
    auto a = h.alert_for("DevicesOffline");
    REQUIRE(a);
    CHECK(a->id == id);
    CHECK(a->state == alert_state::firing);
    CHECK(a->fired_at == 0);
}

TEST_CASE("engine: resolve action resolves a missing series after the timeout")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    r->no_data = no_data_policy{5min, no_data_action::resolve, 0ms, severity::warning};
    harness h(make_rules({r}));
    const label_set series{{"__name__", "up"}, {"pod", "p1"}};
    h.live(series, 0, 0);
    REQUIRE(h.events().size() == 1);

    h.clock.set_ms(5 * 60'000 - 1);
    h.eng.tick();
    CHECK(h.events().empty());
    h.clock.set_ms(5 * 60'000);
    h.eng.tick();
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].alert.reason == "missing_series");
    CHECK(h.eng.stats().firing == 0);
    // The silent series without an alert is forgotten.
    CHECK(h.eng.stats().series == 0);
}

TEST_CASE("engine: alert action raises a no-data alert until samples return")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    r->no_data = no_data_policy{1min, no_data_action::alert, 0ms, severity::critical};
    harness h(make_rules({r}));
    const label_set series{{"__name__", "up"}, {"pod", "p1"}};
    h.live(series, 0, 1);
    CHECK(h.events().empty());

    h.clock.set_ms(60'000);
    h.eng.tick();
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.no_data);
    CHECK(events[0].record.no_data);
    CHECK(events[0].alert.level == severity::critical);
    CHECK(events[0].alert.labels.get("nodata") == "true");
    CHECK(events[0].alert.labels.get("pod") == "p1");
    const std::uint64_t no_data_id = events[0].alert.id;

    h.clock.set_ms(120'000);
    h.eng.tick();
    CHECK(h.events().empty());
    auto alerts = h.eng.alerts();
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].no_data);

    h.live(series, 130'000, 1);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.id == no_data_id);
    CHECK(events[0].alert.no_data);
    CHECK(h.eng.alerts().empty());

    // A real alert on the same series has another id.
    h.live(series, 145'000, 0);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].alert.id != no_data_id);
}

TEST_CASE("engine: a stale marker makes the series missing at once")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    harness h(make_rules({r}));
    const label_set series{{"__name__", "up"}, {"pod", "p1"}};
    h.live(series, 0, 0);
    REQUIRE(h.events().size() == 1);

    CHECK(is_stale_marker(stale_marker_value()));
    CHECK_FALSE(is_stale_marker(nan_value));
    // The rule's no-data action (resolve) applies at once, at the marker's sample time.
    h.clock.set_ms(20'000);
    CHECK(h.push(series, 15'000, stale_marker_value()) == ingest_status::stale_marker);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "missing_series");
    CHECK(events[0].alert.resolved_at == 15'000);
    CHECK(h.eng.stats().non_numeric_samples == 0);
    // Order checks apply to markers as to samples.
    CHECK(h.push(series, 15'000, stale_marker_value()) == ingest_status::duplicate);
    CHECK(h.push(series, 10'000, stale_marker_value()) == ingest_status::out_of_order);
    h.eng.tick();
    CHECK(h.events().empty());

    // A stale marker for an unknown series creates nothing.
    CHECK(h.live(label_set{{"__name__", "up"}, {"pod", "p2"}}, 15'000, stale_marker_value()) ==
          ingest_status::stale_marker);
    CHECK(h.eng.stats().series == 0);
}

TEST_CASE("engine: duplicate and out-of-order samples are dropped and counted")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    harness h(make_rules({r}));
    const label_set series{{"__name__", "up"}, {"pod", "p1"}};
    CHECK(h.push(series, 100'000, 0) == ingest_status::accepted);
    REQUIRE(h.events().size() == 1);

    CHECK(h.push(series, 100'000, 1) == ingest_status::duplicate);
    CHECK(h.push(series, 50'000, 1) == ingest_status::out_of_order);
    CHECK(h.events().empty());
    auto a = h.alert_for("Up");
    REQUIRE(a);
    CHECK(a->value == 0);
    CHECK(a->last_sample_at == 100'000);

    const engine_stats st = h.eng.stats();
    CHECK(st.duplicate_samples == 1);
    CHECK(st.out_of_order_samples == 1);
    CHECK(st.samples_evaluated == 1);
}

TEST_CASE("engine: increase across a counter reset never spikes")
{
    auto burst = make_rule("ReqBurst", "requests_total", {make_tier(severity::warning, compare_op::greater, 50)});
    auto probe = make_rule("Probe", "requests_total",
                           {make_tier(severity::info, compare_op::greater, -std::numeric_limits<double>::max())});
    const bool extrapolate = GENERATE(false, true);
    for (auto& r : {burst, probe}) {
        r->xform.kind = transform_kind::increase;
        r->xform.window = 1min;
        r->xform.extrapolate = extrapolate;
    }
    harness h(make_rules({burst, probe}));
    const label_set series{{"__name__", "requests_total"}};

    const double values[] = {100, 110, 120, 5, 15, 25, 35, 45};
    std::vector<double> seen;
    for (int i = 0; i < 8; ++i) {
        h.push(series, i * 15'000, values[i]);
        auto a = h.alert_for("Probe");
        if (a) {
            seen.push_back(a->value);
        }
    }
    for (auto& e : h.events()) {
        CHECK(e.alert.rule_name != "ReqBurst");
    }
    CHECK_FALSE(h.alert_for("ReqBurst"));
    REQUIRE(seen.size() == 7); // one sample in the window at t=0 gives no value
    for (double v : seen) {
        CHECK(v >= 0);
        CHECK(v <= 60);
    }
    if (!extrapolate) {
        CHECK(seen[4] == 35); // t=75s
        CHECK(seen[5] == 35); // t=90s
        CHECK(seen[6] == 40); // t=105s
    }
}

TEST_CASE("engine: matchers select the series of a rule")
{
    std::string error;
    auto r = make_rule("ApiDown", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    auto m = label_matcher::make("job", match_op::regex, "api|web", error);
    REQUIRE(m);
    r->matchers.push_back(*m);
    harness h(make_rules({r}));
    h.push(label_set{{"__name__", "up"}, {"job", "db"}}, 0, 0);
    h.push(label_set{{"__name__", "up"}, {"job", "api-2"}}, 0, 0);
    CHECK(h.events().empty());
    h.push(label_set{{"__name__", "up"}, {"job", "web"}}, 0, 0);
    CHECK(h.events().size() == 1);
    // Metrics no rule reads are not stored.
    h.push(label_set{{"__name__", "other"}}, 0, 0);
    CHECK(h.eng.stats().series == 3);
    CHECK(h.eng.rule_statistics()[0].series == 1);
}

TEST_CASE("engine: max_series rejects new series and keeps existing ones")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    engine_limits limits;
    limits.max_series = 2;
    harness h(make_rules({r}), limits);
    CHECK(h.push(label_set{{"__name__", "up"}, {"pod", "p1"}}, 0, 1) == ingest_status::accepted);
    CHECK(h.push(label_set{{"__name__", "up"}, {"pod", "p2"}}, 0, 1) == ingest_status::accepted);
    CHECK(h.push(label_set{{"__name__", "up"}, {"pod", "p3"}}, 0, 0) == ingest_status::series_limit);
    CHECK(h.push(label_set{{"__name__", "up"}, {"pod", "p4"}}, 0, 0) == ingest_status::series_limit);
    CHECK(h.eng.stats().series_limit_rejections == 2);
    CHECK(h.eng.stats().series == 2);

    CHECK(h.push(label_set{{"__name__", "up"}, {"pod", "p1"}}, 15'000, 0) == ingest_status::accepted);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].alert.labels.get("pod") == "p1");
}

TEST_CASE("engine: replace_rules keeps rules that keep their name")
{
    auto keep = make_rule("Keep", "m", {make_tier(severity::warning, compare_op::greater, 1)});
    auto change = make_rule("Change", "m", {make_tier(severity::warning, compare_op::greater, 1)});
    auto remove = make_rule("Remove", "m", {make_tier(severity::warning, compare_op::greater, 1)});
    harness h(make_rules({keep, change, remove}));
    const label_set series{{"__name__", "m"}};
    h.push(series, 0, 5);
    REQUIRE(h.events().size() == 3);

    auto changed = make_rule("Change", "m", {make_tier(severity::warning, compare_op::greater, 2)});
    changed->definition_hash += 1;
    auto added = make_rule("Added", "m", {make_tier(severity::warning, compare_op::greater, 1)});
    h.eng.replace_rules(make_rules({keep, changed, added}));

    // The edited rule still holds for the last value 5, so only the removed rule resolves.
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.rule_name == "Remove");
    CHECK(events[0].alert.reason == "rule_removed");
    auto kept = h.alert_for("Keep");
    REQUIRE(kept);
    CHECK(kept->fired_at == 0);
    auto edited = h.alert_for("Change");
    REQUIRE(edited);
    CHECK(edited->state == alert_state::firing);
    CHECK(edited->fired_at == 0);

    // The next sample starts the added rule; Keep and Change stay quiet.
    h.push(series, 15'000, 5);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.rule_name == "Added");
    CHECK(events[0].alert.fired_at == 15'000);
    CHECK(h.eng.stats().firing == 3);
    CHECK(h.eng.rules().rules.size() == 3);
    for (const auto& record : h.eng.persisted_state()) {
        if (record.rule_name == "Change") {
            CHECK(record.rule_hash == changed->definition_hash);
        }
    }
}

TEST_CASE("engine: restore brings alerts back with their timers")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80),
                        make_tier(severity::critical, compare_op::greater, 95, 1min)});
    auto rules = make_rules({r});
    std::vector<persisted_alert> saved;
    {
        harness h(rules);
        h.push(cpu("a"), 1'000'000, 97);
        h.push(cpu("b"), 1'000'000, 85);
        h.push(cpu("a"), 1'030'000, 97);
        saved = h.eng.persisted_state();
    }
    REQUIRE(saved.size() == 2);

    // A record of a rule that no longer exists is dropped.
    persisted_alert removed = saved[0];
    removed.rule_name = "Removed";
    saved.push_back(removed);

    harness h(rules);
    CHECK(h.eng.restore(saved) == 1);
    auto restored = h.eng.persisted_state();
    REQUIRE(restored.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(restored[i].id == saved[i].id);
        CHECK(restored[i].series == saved[i].series);
        CHECK(restored[i].state == saved[i].state);
        CHECK(restored[i].level == saved[i].level);
        CHECK(restored[i].active_at == saved[i].active_at);
        CHECK(restored[i].fired_at == saved[i].fired_at);
        CHECK(restored[i].tier_held_since == saved[i].tier_held_since);
    }
    CHECK(h.eng.stats().firing == 2);
    CHECK(h.events().empty());

    // Samples older than the saved ones are out of order; the critical tier's timer kept
    // running, so it is satisfied 1 min after it started to hold, with no new pending event.
    CHECK(h.push(cpu("a"), 1'030'000, 97) == ingest_status::duplicate);
    h.push(cpu("a"), 1'060'000, 97);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::critical);
    CHECK(events[0].alert.id == saved[0].id);
}

TEST_CASE("engine: state estimate grows with series")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    harness h(make_rules({r}));
    const std::size_t empty = h.eng.stats().state_bytes;
    for (int i = 0; i < 1000; ++i) {
        h.push(label_set{{"__name__", "up"}, {"pod", "p" + std::to_string(i)}}, 0, 1);
    }
    const engine_stats st = h.eng.stats();
    CHECK(st.series == 1000);
    CHECK(st.label_bytes > 1000 * 20);
    CHECK(st.state_bytes > empty + st.label_bytes);
    CHECK(st.state_bytes < empty + st.label_bytes + 1000 * 400);
}

// ---------------------------------------------------------------------------------------
// Reload of edited rules

namespace {

std::shared_ptr<rule> edit_of(const std::shared_ptr<rule>& r)
{
    auto edited = std::make_shared<rule>(*r);
    edited->definition_hash += 1;
    return edited;
}

} // namespace

TEST_CASE("engine: edited rule keeps a breaching alert")
{
    auto r = make_rule("HighLatency", "latency", {make_tier(severity::warning, compare_op::greater, 100, 1min)});
    harness h(make_rules({r}));
    const label_set series{{"__name__", "latency"}, {"job", "api"}};
    h.live(series, 0, 170);
    h.live(series, 60'000, 170);
    auto events = h.events();
    REQUIRE(events.size() == 2);
    CHECK(events[1].what == kind::firing);
    const std::uint64_t id = events[1].alert.id;

    auto edited = edit_of(r);
    edited->tiers[0].when.threshold = 120;
    h.clock.set_ms(70'000);
    h.eng.replace_rules(make_rules({edited}));

    CHECK(h.events().empty());
    auto a = h.alert_for("HighLatency");
    REQUIRE(a);
    CHECK(a->id == id);
    CHECK(a->state == alert_state::firing);
    CHECK(a->active_at == 0);
    CHECK(a->fired_at == 60'000);
    const auto records = h.eng.persisted_state();
    REQUIRE(records.size() == 1);
    CHECK(records[0].rule_hash == edited->definition_hash);

    // Still breaching: no new page.
    h.live(series, 75'000, 170);
    CHECK(h.events().empty());
}

TEST_CASE("engine: edited rule resolves a recovered alert")
{
    auto r = make_rule("HighLatency", "latency", {make_tier(severity::warning, compare_op::greater, 100)});
    harness h(make_rules({r}));
    const label_set series{{"__name__", "latency"}, {"job", "api"}};
    h.live(series, 0, 110);
    REQUIRE(h.events().size() == 1);

    auto edited = edit_of(r);
    edited->tiers[0].when.threshold = 120;
    h.clock.set_ms(30'000);
    h.eng.replace_rules(make_rules({edited}));

    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "rule_changed");
    CHECK(events[0].alert.resolved_at == 30'000);
    CHECK(events[0].record.state == alert_state::inactive);
    CHECK_FALSE(h.alert_for("HighLatency"));
    CHECK(h.eng.stats().firing == 0);

    // A later breach starts a new alert under the new threshold.
    h.live(series, 45'000, 115);
    CHECK(h.events().empty());
    h.live(series, 60'000, 125);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
}

TEST_CASE("engine: reload maps tier timers by severity")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80),
                        make_tier(severity::critical, compare_op::greater, 95, 1min)});
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 97);
    h.push(cpu("a"), 30'000, 97);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].alert.level == severity::warning);

    // A new page tier starts to hold at the last sample; critical keeps its timer from 0.
    auto edited = edit_of(r);
    edited->tiers.push_back(make_tier(severity::page, compare_op::greater, 96, 2min));
    h.eng.replace_rules(make_rules({edited}));
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::updated);
    CHECK(events[0].record.tier_held_since == std::vector<time_ms>{0, 0, 30'000});
    CHECK(events[0].record.tier_levels ==
          std::vector<severity>{severity::warning, severity::critical, severity::page});

    h.push(cpu("a"), 60'000, 97);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::critical);

    h.push(cpu("a"), 150'000, 97);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::page);

    // Dropping the tiers above warning steps the alert down instead of resolving it.
    auto warning_only = edit_of(edited);
    warning_only->tiers.resize(1);
    h.eng.replace_rules(make_rules({warning_only}));
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::warning);
    CHECK(events[0].alert.fired_at == 0);
    CHECK(events[0].record.tier_held_since == std::vector<time_ms>{0});
}

TEST_CASE("engine: longer for keeps an alert firing")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    h.push(cpu("a"), 60'000, 90);
    REQUIRE(h.events().size() == 2);

    auto edited = edit_of(r);
    edited->tiers[0].for_duration = 10min;
    h.eng.replace_rules(make_rules({edited}));
    h.push(cpu("a"), 75'000, 90);

    for (const auto& e : h.events()) {
        CHECK(e.what != kind::pending);
        CHECK(e.what != kind::resolved);
    }
    auto a = h.alert_for("HighCpu");
    REQUIRE(a);
    CHECK(a->state == alert_state::firing);
    CHECK(a->fired_at == 60'000);
}

TEST_CASE("engine: reload restarts window on transform change")
{
    auto r = make_rule("MeanHigh", "m", {make_tier(severity::warning, compare_op::greater, 10)});
    r->xform.kind = transform_kind::avg;
    r->xform.window = 1min;
    harness h(make_rules({r}));
    const label_set series{{"__name__", "m"}};
    h.push(series, 0, 20);
    h.push(series, 10'000, 20);
    REQUIRE(h.events().size() == 1);

    // Threshold edit: the window keeps 20 and 20, so 14 gives a mean of 18 > 15.
    auto threshold = edit_of(r);
    threshold->tiers[0].when.threshold = 15;
    h.eng.replace_rules(make_rules({threshold}));
    CHECK(h.events().empty());
    h.push(series, 20'000, 14);
    CHECK(h.events().empty());
    REQUIRE(h.alert_for("MeanHigh"));
    CHECK(h.alert_for("MeanHigh")->value == Approx(18));

    // Window edit: the old mean came from another function, so the alert waits for the next
    // value, and the new window contains that sample alone.
    auto window = edit_of(threshold);
    window->xform.window = 2min;
    h.eng.replace_rules(make_rules({window}));
    CHECK(h.events().empty());
    REQUIRE(h.alert_for("MeanHigh"));
    h.push(series, 30'000, 14);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "recovered");
    CHECK(events[0].alert.value == 14);
}

TEST_CASE("engine: reload resolves deselected series")
{
    std::string error;
    auto r = make_rule("Down", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    auto both = label_matcher::make("job", match_op::regex, "a|b", error);
    REQUIRE(both);
    r->matchers.push_back(*both);
    harness h(make_rules({r}));
    h.push(label_set{{"__name__", "up"}, {"job", "a"}}, 0, 0);
    h.push(label_set{{"__name__", "up"}, {"job", "b"}}, 0, 0);
    REQUIRE(h.events().size() == 2);

    auto edited = edit_of(r);
    auto only_a = label_matcher::make("job", match_op::equal, "a", error);
    REQUIRE(only_a);
    edited->matchers = {*only_a};
    h.eng.replace_rules(make_rules({edited}));

    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "rule_changed");
    CHECK(events[0].alert.labels.get("job") == "b");
    auto alerts = h.eng.alerts();
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].labels.get("job") == "a");
}

TEST_CASE("engine: reload resolves an obsolete no-data alert")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    r->no_data = no_data_policy{1min, no_data_action::alert, 0ms, severity::critical};
    harness h(make_rules({r}));
    h.live(label_set{{"__name__", "up"}}, 0, 1);
    h.clock.set_ms(60'000);
    h.eng.tick();
    REQUIRE(h.events().size() == 1);

    auto edited = edit_of(r);
    edited->no_data = no_data_policy{1min, no_data_action::keep_state, 0ms, severity::warning};
    h.eng.replace_rules(make_rules({edited}));
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.no_data);
    CHECK(events[0].alert.reason == "rule_changed");
    CHECK(h.eng.alerts().empty());
}

// ---------------------------------------------------------------------------------------
// Restore across a restart

TEST_CASE("engine: restore maps an edited rule by severity")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80),
                        make_tier(severity::critical, compare_op::greater, 95, 1min)});
    std::vector<persisted_alert> saved;
    {
        harness h(make_rules({r}));
        h.push(cpu("a"), 1'000'000, 97);
        h.push(cpu("b"), 1'000'000, 85);
        h.push(cpu("a"), 1'030'000, 97);
        saved = h.eng.persisted_state();
    }
    REQUIRE(saved.size() == 2);
    const bool levels_saved = GENERATE(true, false);
    if (!levels_saved) {
        // A store that does not keep the severities: they are inferred from the rule.
        for (auto& record : saved) {
            record.tier_levels.clear();
        }
    }

    auto edited = edit_of(r);
    edited->tiers[0].when.threshold = 90;
    harness h(make_rules({edited}));
    h.clock.set_ms(1'040'000);
    CHECK(h.eng.restore(saved) == 0);

    // b (85) no longer breaches the warning tier; a keeps its critical timer from 1'000'000.
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "rule_changed");
    CHECK(events[0].alert.labels.get("instance") == "b");
    CHECK(events[0].alert.resolved_at == 1'040'000);

    h.push(cpu("a"), 1'060'000, 97);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::critical);
    CHECK(events[0].alert.active_at == 1'000'000);
}

TEST_CASE("engine: restore of edited rule matches reload")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80, 10s),
                        make_tier(severity::critical, compare_op::greater, 95, 10s)});
    auto edited = edit_of(r);
    edited->tiers[0].for_duration = 1h;
    // Firing at critical since 1'010'000, with warning satisfied too.
    auto feed = [](harness& h) {
        h.push(cpu("a"), 1'000'000, 97);
        h.push(cpu("a"), 1'010'000, 97);
        h.push(cpu("a"), 1'020'000, 97);
    };

    // Reload: the edit arrives while the daemon runs.
    harness reloaded(make_rules({r}));
    feed(reloaded);
    REQUIRE(reloaded.alert_for("HighCpu")->level == severity::critical);
    reloaded.events();
    reloaded.eng.replace_rules(make_rules({edited}));

    // Restore: the edit was made while the daemon was down.
    std::vector<persisted_alert> saved;
    {
        harness before(make_rules({r}));
        feed(before);
        saved = before.eng.persisted_state();
    }
    harness restored(make_rules({edited}));
    REQUIRE(restored.eng.restore(saved) == 0);

    CHECK(reloaded.events().empty());
    CHECK(restored.events().empty());

    // Critical clears, warning still holds: both step down to warning and keep firing.
    reloaded.push(cpu("a"), 1'030'000, 90);
    restored.push(cpu("a"), 1'030'000, 90);
    const auto from_reload = reloaded.events();
    const auto from_restore = restored.events();
    REQUIRE(from_reload.size() == 1);
    REQUIRE(from_restore.size() == 1);
    for (const auto* e : {&from_reload[0], &from_restore[0]}) {
        CHECK(e->what == kind::severity_changed);
        CHECK(e->alert.state == alert_state::firing);
        CHECK(e->alert.level == severity::warning);
        CHECK(e->alert.fired_at == 1'010'000);
        CHECK(e->alert.active_at == 1'000'000);
    }
    CHECK(from_restore[0].record.tier_held_since == from_reload[0].record.tier_held_since);
    CHECK(from_restore[0].record.tier_released_at == from_reload[0].record.tier_released_at);
    auto a = restored.alert_for("HighCpu");
    REQUIRE(a);
    CHECK(a->state == alert_state::firing);
    CHECK(a->fired_at == 1'010'000);
}

TEST_CASE("engine: restore of an edited rule keeps a tier above the alert's level unsatisfied")
{
    // Warning fires at once; critical holds but its `for` has not elapsed when saved.
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::warning, compare_op::greater, 80),
                        make_tier(severity::critical, compare_op::greater, 95, 1min)});
    std::vector<persisted_alert> saved;
    {
        harness h(make_rules({r}));
        h.push(cpu("a"), 1'000'000, 97);
        h.push(cpu("a"), 1'030'000, 97);
        saved = h.eng.persisted_state();
    }
    auto edited = edit_of(r);
    edited->tiers[1].for_duration = 2min;
    harness h(make_rules({edited}));
    REQUIRE(h.eng.restore(saved) == 0);
    CHECK(h.events().empty());
    h.push(cpu("a"), 1'060'000, 97);
    CHECK(h.events().empty());
    CHECK(h.alert_for("HighCpu")->level == severity::warning);
    h.push(cpu("a"), 1'120'000, 97);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::severity_changed);
    CHECK(events[0].alert.level == severity::critical);
}

TEST_CASE("engine: restore drops records with unknown severities")
{
    auto r = make_rule("HighCpu", "cpu",
                       {make_tier(severity::info, compare_op::greater, 50),
                        make_tier(severity::warning, compare_op::greater, 80),
                        make_tier(severity::critical, compare_op::greater, 95)});
    std::vector<persisted_alert> saved;
    {
        harness h(make_rules({r}));
        h.push(cpu("a"), 1'000'000, 85);
        saved = h.eng.persisted_state();
    }
    REQUIRE(saved.size() == 1);
    saved[0].tier_levels.clear();

    // Two tiers now: the three saved timers cannot be matched to severities.
    auto edited = edit_of(r);
    edited->tiers.erase(edited->tiers.begin());
    harness h(make_rules({edited}));
    CHECK(h.eng.restore(saved) == 1);
    CHECK(h.eng.alerts().empty());

    // With the severities saved, the same record maps onto the two tiers.
    saved[0].tier_levels = {severity::info, severity::warning, severity::critical};
    harness with_levels(make_rules({edited}));
    CHECK(with_levels.eng.restore(saved) == 0);
    auto a = with_levels.alert_for("HighCpu");
    REQUIRE(a);
    CHECK(a->level == severity::warning);
    CHECK(a->state == alert_state::firing);
}

TEST_CASE("engine: restore continues the no-data timer")
{
    auto r = make_rule("Up", "up", {make_tier(severity::warning, compare_op::equal, 0)});
    r->no_data = no_data_policy{5min, no_data_action::resolve, 0ms, severity::warning};
    const label_set series{{"__name__", "up"}, {"pod", "p1"}};
    std::vector<persisted_alert> saved;
    {
        harness h(make_rules({r}));
        h.live(series, 1'000'000, 0);
        saved = h.eng.persisted_state();
    }
    REQUIRE(saved.size() == 1);

    SECTION("restart within the timeout")
    {
        harness h(make_rules({r}));
        h.clock.set_ms(1'000'000 + 120'000);
        REQUIRE(h.eng.restore(saved) == 0);
        h.clock.set_ms(1'000'000 + 300'000 - 1);
        h.eng.tick();
        CHECK(h.events().empty());
        h.clock.set_ms(1'000'000 + 300'000);
        h.eng.tick();
        auto events = h.events();
        REQUIRE(events.size() == 1);
        CHECK(events[0].what == kind::resolved);
        CHECK(events[0].alert.reason == "missing_series");
    }
    SECTION("restart after the timeout")
    {
        harness h(make_rules({r}));
        h.clock.set_ms(1'000'000 + 600'000);
        REQUIRE(h.eng.restore(saved) == 0);
        h.eng.tick();
        auto events = h.events();
        REQUIRE(events.size() == 1);
        CHECK(events[0].alert.reason == "missing_series");
    }
    SECTION("last sample ahead of the clock")
    {
        // The timer never starts later than the restart.
        harness h(make_rules({r}));
        h.clock.set_ms(900'000);
        REQUIRE(h.eng.restore(saved) == 0);
        h.clock.set_ms(900'000 + 300'000);
        h.eng.tick();
        auto events = h.events();
        REQUIRE(events.size() == 1);
        CHECK(events[0].alert.reason == "missing_series");
    }
}

// ---------------------------------------------------------------------------------------
// Gaps in sample time

TEST_CASE("engine: gap resolves under no_data resolve")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    r->no_data = no_data_policy{5min, no_data_action::resolve, 0ms, severity::warning};
    harness h(make_rules({r}));
    // A replay: the clock stays at 0, so only sample time shows the gap.
    h.push(cpu("a"), 0, 90);
    h.push(cpu("a"), 30'000, 90);
    REQUIRE(h.events().size() == 1);

    h.push(cpu("a"), 600'000, 90);
    auto events = h.events();
    REQUIRE(events.size() == 2);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "missing_series");
    CHECK(events[0].alert.resolved_at == 330'000);
    CHECK(events[1].what == kind::pending);
    CHECK(events[1].alert.active_at == 600'000);

    // The gap never counted toward `for`.
    h.push(cpu("a"), 630'000, 90);
    CHECK(h.events().empty());
    h.push(cpu("a"), 660'000, 90);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.fired_at == 660'000);
}

TEST_CASE("engine: gap below the timeout changes nothing")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    r->no_data = no_data_policy{5min, no_data_action::resolve, 0ms, severity::warning};
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    REQUIRE(h.events().size() == 1);
    h.push(cpu("a"), 299'999, 90);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.active_at == 0);
}

TEST_CASE("engine: gap keeps state until resolve_after")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    r->no_data = no_data_policy{1min, no_data_action::keep_state, 10min, severity::warning};
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    REQUIRE(h.events().size() == 1);

    // Missing from 1m, 4 min short of resolve_after: the pending timer keeps running.
    h.push(cpu("a"), 300'000, 90);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.active_at == 0);

    // Silent for 11 min: missing from 5m+1m, resolved 10 min later.
    h.push(cpu("a"), 960'000, 90);
    events = h.events();
    REQUIRE(events.size() == 2);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "missing_series");
    CHECK(events[0].alert.resolved_at == 300'000 + 60'000 + 600'000);
    CHECK(events[1].what == kind::pending);
    CHECK(events[1].alert.active_at == 960'000);
}

TEST_CASE("engine: gap under no_data alert resets timers")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 5min)});
    r->no_data = no_data_policy{1min, no_data_action::alert, 0ms, severity::critical};
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    REQUIRE(h.events().size() == 1);

    h.push(cpu("a"), 120'000, 90);
    auto events = h.events();
    REQUIRE(events.size() == 2);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "missing_series");
    CHECK_FALSE(events[0].alert.no_data);
    CHECK(events[1].what == kind::pending);
    CHECK_FALSE(events[1].alert.no_data);
    for (const auto& a : h.eng.alerts()) {
        CHECK_FALSE(a.no_data);
    }

    // `for` counts from the return at 2m, not from 0.
    for (time_ms t = 150'000; t < 420'000; t += 30'000) {
        h.push(cpu("a"), t, 90);
    }
    CHECK(h.events().empty());
    h.push(cpu("a"), 420'000, 90);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
}

TEST_CASE("engine: gap empties windows of forgotten series")
{
    auto r = make_rule("MeanHigh", "m", {make_tier(severity::warning, compare_op::greater, 10)});
    r->xform.kind = transform_kind::avg;
    r->xform.window = 30min;
    r->no_data = no_data_policy{5min, no_data_action::resolve, 0ms, severity::warning};
    harness h(make_rules({r}));
    const label_set series{{"__name__", "m"}};
    h.push(series, 0, 100);
    h.push(series, 10'000, 100);
    REQUIRE(h.events().size() == 1);

    // tick() would have forgotten the series, so the old samples are gone: the mean is 0, not
    // (100 + 100 + 0) / 3.
    h.push(series, 20 * 60'000, 0);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::resolved);
    CHECK(events[0].alert.reason == "missing_series");
    h.push(series, 20 * 60'000 + 10'000, 15);
    CHECK(h.events().empty());
    h.push(series, 20 * 60'000 + 20'000, 25);
    events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.value == Approx(40.0 / 3));
}

TEST_CASE("engine: replay with a gap matches live traffic")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    r->no_data = no_data_policy{5min, no_data_action::resolve, 0ms, severity::warning};
    // Samples every 15 s for [0, 2m), none for [2m, 10m), samples again for [10m, 12m).
    auto run = [&](bool live) {
        harness h(make_rules({r}));
        std::vector<alert_event> out;
        for (time_ms t = 0; t < 12 * 60'000; t += 15'000) {
            const bool has_sample = t < 2 * 60'000 || t >= 10 * 60'000;
            if (live) {
                h.clock.set_ms(t);
                if (has_sample) {
                    h.push(cpu("a"), t, 90);
                }
                h.eng.tick();
            } else if (has_sample) {
                h.push(cpu("a"), t, 90);
            }
            for (auto& e : h.events()) {
                out.push_back(std::move(e));
            }
        }
        return out;
    };
    const auto live = run(true);
    const auto replay = run(false);
    // pending, firing, resolved (missing_series), pending, firing
    REQUIRE(live.size() == 5);
    REQUIRE(replay.size() == live.size());
    for (std::size_t i = 0; i < live.size(); ++i) {
        INFO("event " << i);
        CHECK(replay[i].what == live[i].what);
        CHECK(replay[i].alert.reason == live[i].alert.reason);
        CHECK(replay[i].alert.active_at == live[i].alert.active_at);
        CHECK(replay[i].alert.fired_at == live[i].alert.fired_at);
        CHECK(replay[i].alert.resolved_at == live[i].alert.resolved_at);
    }
}

// ---------------------------------------------------------------------------------------
// Stale markers and non-numeric values in sample time

namespace {

enum class feed_mode { live, replay, replay_with_ticks };

// Samples of 90 every 15 s for [0, 90 s), then at 90 s a stale marker (or, with `nan`, NaN
// every 15 s until 5 min), silence, and samples of 90 again for [5 min, 7 min). live: the clock
// follows sample time and tick() runs after every step; replay: the clock stays at 0 and tick()
// never runs; replay_with_ticks: the clock stays at 0 and tick() runs after every step.
std::vector<alert_event> feed_missing_stream(const std::shared_ptr<rule>& r, bool nan, feed_mode mode)
{
    harness h(make_rules({r}));
    std::vector<alert_event> out;
    for (time_ms t = 0; t < 7 * 60'000; t += 15'000) {
        if (mode == feed_mode::live) {
            h.clock.set_ms(t);
        }
        if (t < 90'000 || t >= 5 * 60'000) {
            h.push(cpu("a"), t, 90);
        } else if (t == 90'000 && !nan) {
            REQUIRE(h.push(cpu("a"), t, stale_marker_value()) == ingest_status::stale_marker);
        } else if (nan) {
            h.push(cpu("a"), t, nan_value);
        }
        if (mode != feed_mode::replay) {
            h.eng.tick();
        }
        for (auto& e : h.events()) {
            out.push_back(std::move(e));
        }
    }
    return out;
}

} // namespace

TEST_CASE("engine: stale markers and no_data NaN act in sample time")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 30s)});
    r->on_non_numeric = non_numeric_action::no_data;
    const bool nan = GENERATE(false, true);
    const no_data_action action =
        GENERATE(no_data_action::resolve, no_data_action::keep_state, no_data_action::alert);
    r->no_data.timeout = 5min;
    r->no_data.action = action;
    r->no_data.resolve_after = action == no_data_action::keep_state ? 1min : 0ms;
    r->no_data.alert_severity = severity::critical;
    INFO("nan " << nan << ", action " << static_cast<int>(action));

    const auto live = feed_missing_stream(r, nan, feed_mode::live);
    struct expected {
        kind what;
        bool no_data;
        time_ms active_at;
        time_ms resolved_at;
    };
    // Missing from 90 s on: resolve and alert resolve at once, keep_state 1 min later.
    const time_ms missing_resolved_at = action == no_data_action::keep_state ? 150'000 : 90'000;
    std::vector<expected> want{{kind::pending, false, 0, 0},
                               {kind::firing, false, 0, 0},
                               {kind::resolved, false, 0, missing_resolved_at}};
    if (action == no_data_action::alert) {
        want.push_back({kind::firing, true, 90'000, 0});
        want.push_back({kind::resolved, true, 90'000, 300'000});
    }
    want.push_back({kind::pending, false, 300'000, 0});
    want.push_back({kind::firing, false, 300'000, 0});
    REQUIRE(live.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        INFO("event " << i);
        CHECK(live[i].what == want[i].what);
        CHECK(live[i].alert.no_data == want[i].no_data);
        CHECK(live[i].alert.active_at == want[i].active_at);
        CHECK(live[i].alert.resolved_at == want[i].resolved_at);
    }
    CHECK(live[2].alert.reason == "missing_series");

    for (const feed_mode mode : {feed_mode::replay, feed_mode::replay_with_ticks}) {
        const auto other = feed_missing_stream(r, nan, mode);
        INFO("mode " << static_cast<int>(mode));
        REQUIRE(other.size() == live.size());
        for (std::size_t i = 0; i < live.size(); ++i) {
            INFO("event " << i);
            CHECK(other[i].what == live[i].what);
            CHECK(other[i].alert.no_data == live[i].alert.no_data);
            CHECK(other[i].alert.level == live[i].alert.level);
            CHECK(other[i].alert.reason == live[i].alert.reason);
            CHECK(other[i].alert.active_at == live[i].alert.active_at);
            CHECK(other[i].alert.fired_at == live[i].alert.fired_at);
            CHECK(other[i].alert.resolved_at == live[i].alert.resolved_at);
        }
    }
}

TEST_CASE("engine: keep_state continues the alert after a stale marker")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    r->no_data = no_data_policy{5min, no_data_action::keep_state, 0ms, severity::warning};
    harness h(make_rules({r}));
    h.push(cpu("a"), 0, 90);
    REQUIRE(h.events().size() == 1);
    CHECK(h.push(cpu("a"), 15'000, stale_marker_value()) == ingest_status::stale_marker);
    CHECK(h.events().empty());
    // The pending timer kept running through the marker.
    h.push(cpu("a"), 60'000, 90);
    auto events = h.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::firing);
    CHECK(events[0].alert.active_at == 0);
}

// ---------------------------------------------------------------------------------------
// Timestamps far from the clock

TEST_CASE("engine: far-off timestamps rejected before state changes")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80, 1min)});
    engine_limits limits;
    limits.max_future_skew = 10min;
    limits.max_sample_age = 24h;
    harness h(make_rules({r}), limits);
    const time_ms now = 1'733'000'000'000;
    h.clock.set_ms(now);

    // One year ahead: rejected, so later real samples are not out of order.
    CHECK(h.push(cpu("a"), now + 365LL * 24 * 3'600'000, 90) == ingest_status::too_far_in_future);
    CHECK(h.eng.stats().series == 0);
    CHECK(h.push(cpu("a"), now, 90) == ingest_status::accepted);
    CHECK(h.push(cpu("a"), now + 10 * 60'000, 90) == ingest_status::accepted);
    CHECK(h.push(cpu("a"), now + 10 * 60'000 + 15'001, 90) == ingest_status::too_far_in_future);

    // Seconds instead of milliseconds read as January 1970: rejected.
    CHECK(h.push(cpu("b"), now / 1000, 90) == ingest_status::too_old);
    CHECK(h.push(cpu("b"), now - 24 * 3'600'000 - 1, 90) == ingest_status::too_old);
    CHECK(h.push(cpu("b"), now - 24 * 3'600'000, 90) == ingest_status::accepted);
    // Extreme values cannot overflow the checks.
    CHECK(h.push(cpu("c"), std::numeric_limits<time_ms>::max(), 90) == ingest_status::too_far_in_future);
    CHECK(h.push(cpu("c"), std::numeric_limits<time_ms>::min(), 90) == ingest_status::too_old);

    const engine_stats st = h.eng.stats();
    CHECK(st.too_far_in_future_samples == 3);
    CHECK(st.too_old_samples == 3);
    CHECK(st.samples_evaluated == 3);
    CHECK(st.series == 2);
}

TEST_CASE("engine: timestamp checks off by default")
{
    auto r = make_rule("HighCpu", "cpu", {make_tier(severity::warning, compare_op::greater, 80)});
    harness h(make_rules({r}));
    h.clock.set_ms(1'733'000'000'000);
    CHECK(h.push(cpu("a"), 5, 90) == ingest_status::accepted);
    CHECK(h.push(cpu("a"), 900'000'000'000'000, 90) == ingest_status::accepted);
}

TEST_CASE("engine: extreme timestamps rejected with checks off")
{
    // A window and a 100-year keep_firing_for added to timestamps near the int64 limits would
    // overflow; the fixed bound keeps every sum in range.
    auto r = make_rule("Burst", "requests_total",
                       {make_tier(severity::warning, compare_op::greater, 0, 0ms, std::nullopt,
                                  milliseconds(100LL * 365 * 24 * 3600 * 1000))});
    r->xform.kind = transform_kind::rate;
    r->xform.window = 5min;
    harness h(make_rules({r}));
    const label_set series{{"__name__", "requests_total"}, {"job", "api"}};
    CHECK(h.push(series, std::numeric_limits<time_ms>::min() + 1, 1) == ingest_status::too_old);
    CHECK(h.push(series, std::numeric_limits<time_ms>::max() - 1, 1) == ingest_status::too_far_in_future);
    CHECK(h.push(series, -1'000'000'000'000'000, 1) == ingest_status::accepted);
    CHECK(h.push(series, -999'999'999'999'000, 5) == ingest_status::accepted);
    CHECK(h.push(series, 1'000'000'000'000'000, 9) == ingest_status::accepted);
    CHECK(h.eng.stats().samples_evaluated == 3);
}
