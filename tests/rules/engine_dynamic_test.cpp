// Dynamic rules through the whole engine: rule text in, alerts and explanations out.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "rules/dynamic_loader.hpp"
#include "rules/engine.hpp"
#include "rules/rule_loader.hpp"
#include "tests/support/test_support.hpp"

using namespace tocsin;
using kind = alert_event::kind;

namespace {

constexpr time_ms second = 1000;
constexpr time_ms minute = 60 * second;

std::shared_ptr<const rule_set> load(const std::string& text)
{
    diagnostics diags;
    auto groups = load_rule_text(text, "dynamic.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    return make_rule_set(std::move(groups));
}

std::string load_error(const std::string& text)
{
    diagnostics diags;
    load_rule_text(text, "dynamic.yaml", diags);
    return diags.to_string();
}

std::string rule_text(const std::string& dynamic, const std::string& extra = "")
{
    return "groups:\n"
           "  - name: g\n"
           "    rules:\n"
           "      - alert: QueueAnomaly\n"
           "        expr: queue_depth\n"
           "        for: 2m\n"
           "        no_data: {timeout: 10m}\n"
           "        dynamic: " +
           dynamic + "\n" + extra;
}

const std::string flat_baseline_rule =
    rule_text("{type: mean_sigma, window: 1h, baseline_lag: 5m, sigma_floor: 1.0, min_samples: 30, k: 3}");

struct harness {
    explicit harness(std::shared_ptr<const rule_set> rules) : eng(std::move(rules), engine_limits{}, clock) {}

    void push(time_ms t, double value)
    {
        clock.set_ms(t);
        const label_view labels[] = {{"__name__", "queue_depth"}, {"job", "worker"}};
        REQUIRE(eng.ingest(labels, t, value) == ingest_status::accepted);
        for (auto& e : eng.take_events()) {
            events.push_back(std::move(e));
        }
    }

    std::size_t warming_up() const { return eng.rule_statistics().at(0).warming_up; }

    manual_clock clock;
    engine eng;
    std::vector<alert_event> events;
};

std::string annotation(const alert_snapshot& a, const std::string& name)
{
    for (const auto& [key, value] : a.annotations) {
        if (key == name) {
            return value;
        }
    }
    return "<none>";
}

} // namespace

TEST_CASE("dynamic rule with a flat baseline warms up, scores 0 and fires on a shift with a finite score")
{
    harness h(load(flat_baseline_rule));
    const time_ms step = 15 * second;
    std::size_t warming_samples = 0;
    for (time_ms t = 0; t < 60 * minute; t += step) {
        h.push(t, 100);
        if (h.warming_up() == 1) {
            ++warming_samples;
        }
    }
    // The baseline [t - 1h, t - 5m) first holds 30 samples at 12m30s, the 51st sample.
    CHECK(warming_samples == 50);
    CHECK(h.warming_up() == 0);
    CHECK(h.events.empty());

    for (time_ms t = 60 * minute; t <= 62 * minute; t += step) {
        h.push(t, 150);
    }
    REQUIRE(h.events.size() == 2);
    CHECK(h.events[0].what == kind::pending);
    CHECK(h.events[0].alert.active_at == 60 * minute);
    const alert_event& fired = h.events[1];
    CHECK(fired.what == kind::firing);
    CHECK(fired.alert.fired_at == 62 * minute);
    CHECK(fired.alert.value == 150);
    REQUIRE(fired.alert.explanation.has_value());
    CHECK(fired.alert.explanation->score == 50.0);
    CHECK(fired.alert.explanation->baseline == 100.0);
    CHECK(annotation(fired.alert, "score") == "50");
    CHECK(annotation(fired.alert, "baseline") == "100");
    CHECK(annotation(fired.alert, "band") == "97 to 103");
    CHECK(annotation(fired.alert, "detector") == "mean_sigma");
}

TEST_CASE("dynamic rule keeps firing samples out of its baseline")
{
    harness h(load(flat_baseline_rule));
    const time_ms step = 15 * second;
    time_ms t = 0;
    for (; t < 60 * minute; t += step) {
        h.push(t, 100);
    }
    // Two hours of the shifted level: had the baseline taken it in, the score would fall to 0
    // and the alert would resolve.
    for (; t < 180 * minute; t += step) {
        h.push(t, 150);
    }
    for (const auto& e : h.events) {
        UNSCOPED_INFO(to_string(e.what) << " at " << e.alert.last_sample_at / minute << " reason " << e.alert.reason
                                        << " score " << (e.alert.explanation ? e.alert.explanation->score : -1));
    }
    REQUIRE(h.events.size() == 2);
    CHECK(h.events[1].what == kind::firing);
    CHECK(h.eng.alerts().size() == 1);
    CHECK(h.eng.stats().baseline_adaptations == 0);
}

TEST_CASE("dynamic rule accepts a sustained shift as the new normal after adapt_after")
{
    harness h(load(rule_text("{type: mean_sigma, window: 1h, baseline_lag: 5m, sigma_floor: 1.0, "
                             "min_samples: 30, k: 3, adapt_after: 30m}")));
    const time_ms step = 15 * second;
    time_ms t = 0;
    for (; t < 60 * minute; t += step) {
        h.push(t, 100);
    }
    for (; t < 24 * 60 * minute; t += step) {
        h.push(t, 150);
    }
    // One shift: one alert that fires and then resolves once the shift is the baseline.
    std::vector<kind> kinds;
    for (const auto& e : h.events) {
        kinds.push_back(e.what);
    }
    CHECK(kinds == std::vector<kind>{kind::pending, kind::firing, kind::resolved});
    CHECK(h.eng.alerts().empty());
    CHECK(h.eng.stats().baseline_adaptations == 1);
    REQUIRE(h.events.size() == 3);
    CHECK(h.events[2].alert.resolved_at >= 90 * minute);
    CHECK(h.events[2].alert.resolved_at <= 92 * minute);
}

TEST_CASE("dynamic rule reports every evaluation to the observer")
{
    harness h(load(flat_baseline_rule));
    std::vector<evaluation> seen;
    h.eng.set_observer([&](const evaluation& e) { seen.push_back(e); });
    h.push(0, 100);
    h.push(15 * second, 100);
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].value == 100);
    REQUIRE(seen[1].detector.has_value());
    CHECK_FALSE(seen[1].detector->ready);
    CHECK(seen[1].def->name == "QueueAnomaly");
    CHECK(seen[1].state == alert_state::inactive);
}

TEST_CASE("dynamic rule keeps its baseline across a reload of the same rule and restarts it after an edit")
{
    harness h(load(flat_baseline_rule));
    const time_ms step = 15 * second;
    time_ms t = 0;
    for (; t < 20 * minute; t += step) {
        h.push(t, 100);
    }
    REQUIRE(h.warming_up() == 0);

    h.eng.replace_rules(load(flat_baseline_rule));
    h.push(t, 100);
    t += step;
    CHECK(h.warming_up() == 0);

    h.eng.replace_rules(load(
        rule_text("{type: mean_sigma, window: 2h, baseline_lag: 5m, sigma_floor: 1.0, min_samples: 30, k: 3}")));
    h.push(t, 100);
    CHECK(h.warming_up() == 1);
    CHECK(h.eng.stats().warming_up == 1);
}

TEST_CASE("dynamic rule tiers take bare numbers as score thresholds")
{
    auto rules = load(rule_text("{type: ewma, half_life: 1h}",
                                "        tiers:\n          warning: 3\n          critical: {condition: 4, for: 0s}\n"));
    const rule& r = *rules->rules.at(0);
    REQUIRE(r.dynamic.has_value());
    CHECK(r.dynamic->kind == detector_kind::ewma);
    REQUIRE(r.tiers.size() == 2);
    CHECK(r.tiers[0].when.op == compare_op::greater);
    CHECK(r.tiers[0].when.threshold == 3);
    CHECK(r.tiers[1].when.threshold == 4);
}

TEST_CASE("dynamic block errors name the key and the fix")
{
    CHECK_THAT(load_error(rule_text("{type: zscore}")),
               Catch::Contains("unknown dynamic.type \"zscore\"; expected one of mean_sigma"));
    CHECK_THAT(load_error(rule_text("{type: ewma, window: 1h, k: 3}")),
               Catch::Contains("dynamic.window does not apply to type ewma; it is read by mean_sigma"));
    CHECK_THAT(load_error(rule_text("{type: mean_sigma, window: 5m, baseline_lag: 5m, k: 3}")),
               Catch::Contains("is not shorter than window"));
    CHECK_THAT(load_error(rule_text("{type: mean_sigma, k: 3, sigma_floor: -1}")),
               Catch::Contains("dynamic.sigma_floor -1 is out of range"));
    CHECK_THAT(load_error(rule_text("{type: mean_sigma}")), Catch::Contains("missing field \"tiers\""));
    CHECK_THAT(load_error(rule_text("{type: mean_sigma, k: 3}", "        tiers: {warning: 3}\n")),
               Catch::Contains("dynamic.k and tiers both set the thresholds"));
    CHECK_THAT(load_error(rule_text("{type: seasonal, timezone: Mars/Olympus, k: 3}")),
               Catch::Contains("Mars/Olympus"));
    CHECK_THAT(load_error(rule_text("{type: baseline, value: 0, k: 3}")), Catch::Contains("divides by zero"));
}

TEST_CASE("dynamic rule annotations can use the score and the baseline")
{
    auto rules = load(rule_text("{type: mean_sigma, window: 1h, sigma_floor: 1.0, min_samples: 5, k: 3}",
                                "        annotations:\n"
                                "          summary: 'depth {{ $value }} is {{ $score }} sigma from {{ $baseline }}'\n"));
    harness h(rules);
    time_ms t = 0;
    for (; t < 10 * minute; t += minute) {
        h.push(t, 100);
    }
    for (; t < 14 * minute; t += minute) {
        h.push(t, 110);
    }
    REQUIRE_FALSE(h.events.empty());
    CHECK(annotation(h.events.back().alert, "summary") == "depth 110 is 10 sigma from 100");
}

TEST_CASE("dynamic rule treats a noisy shift that dips below the threshold as one run")
{
    harness h(load(rule_text("{type: mean_sigma, window: 1h, baseline_lag: 5m, sigma_floor: 1.0, "
                             "min_samples: 30, k: 3, adapt_after: 30m}")));
    detector_output last;
    h.eng.set_observer([&](const evaluation& e) {
        if (e.detector) {
            last = *e.detector;
        }
    });
    const time_ms step = 15 * second;
    time_ms t = 0;
    for (; t < 60 * minute; t += step) {
        h.push(t, 100);
    }
    // Every fourth value is back at the old level: without the grace time those values would
    // enter the baseline, break the run of held-out values and keep adapt_after from ending it.
    for (int i = 0; t < 120 * minute; t += step, ++i) {
        h.push(t, i % 4 == 3 ? 101 : 110);
    }
    CHECK(h.eng.stats().baseline_adaptations == 1);
    CHECK(last.baseline > 105);
    CHECK(h.eng.alerts().empty());
}

TEST_CASE("dynamic rule adapts only once the shift holds a warm-up's worth of values")
{
    harness h(load(rule_text("{type: mean_sigma, window: 1d, min_samples: 100, adapt_after: 1h, k: 5}")));
    const time_ms step = 5 * minute;
    time_ms t = 0;
    for (int i = 0; i < 200; ++i, t += step) {
        h.push(t, 10);
    }
    // The shift lasts adapt_after after 12 values, but adapting then would leave 12 values in
    // the baseline: the detector would warm up again and the alert could not resolve.
    for (int i = 0; i < 99; ++i, t += step) {
        h.push(t, 50);
        REQUIRE(h.warming_up() == 0);
    }
    CHECK(h.eng.stats().baseline_adaptations == 0);
    h.push(t, 50);
    t += step;
    CHECK(h.eng.stats().baseline_adaptations == 1);
    h.push(t, 50);
    CHECK(h.eng.alerts().empty());
}

TEST_CASE("dynamic rule files: a warm start skips the warm-up and a reference file feeds psi")
{
    test::temp_dir dir;
    std::string history = "timestamp,value\n";
    for (int i = 0; i < 40; ++i) {
        history += std::to_string(i * 15) + ",100\n";
    }
    dir.write("history.csv", history);
    dir.write("reference.txt", "value\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
    const std::string rules = rule_text("{type: mean_sigma, window: 1h, sigma_floor: 1.0, k: 3, warm_start: "
                                        "history.csv}") +
                              "      - alert: ScoreDrift\n"
                              "        expr: model_score\n"
                              "        dynamic: {type: psi, window: 1h, reference_file: reference.txt, bins: 4, min_samples: 5}\n"
                              "        tiers: {warning: 0.1}\n";
    const std::string path = dir.write("rules.yaml", rules);
    diagnostics diags;
    auto groups = load_rule_file(path, diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    auto set = make_rule_set(std::move(groups));
    REQUIRE(set->rules.at(1)->dynamic->reference == drift_reference::file);
    CHECK(set->rules.at(1)->dynamic->reference_data->values.size() == 10);

    harness h(set);
    h.push(10 * minute, 100);
    CHECK(h.warming_up() == 0);

    dir.write("history.csv", "timestamp,value\n0,100\n0,101\n");
    diagnostics bad;
    load_rule_file(path, bad);
    CHECK_THAT(bad.to_string(), Catch::Contains("history.csv:3: timestamp"));
    CHECK_THAT(bad.to_string(), Catch::Contains("sort the rows by time"));
}

TEST_CASE("dynamic rule baselines saved by one engine continue in another")
{
    const time_ms step = 15 * second;
    harness first(load(flat_baseline_rule));
    for (time_ms t = 0; t < 60 * minute; t += step) {
        first.push(t, 100);
    }
    REQUIRE(first.warming_up() == 0);
    const std::vector<baseline_record> saved = first.eng.baselines();
    REQUIRE(saved.size() == 1);
    CHECK(saved[0].rule_name == "QueueAnomaly");
    CHECK(saved[0].series.get("job") == "worker");
    CHECK(saved[0].last_sample_at == 60 * minute - step);
    CHECK_FALSE(saved[0].state.empty());

    // The same rule text in a new engine: no warm-up, the shift fires as in the first engine.
    harness second(load(flat_baseline_rule));
    second.clock.set_ms(60 * minute);
    CHECK(second.eng.restore_baselines(saved) == 0);
    // The saved output marks the baseline ready, so no series counts as warming up.
    CHECK(second.warming_up() == 0);
    for (time_ms t = 60 * minute; t <= 62 * minute; t += step) {
        second.push(t, 150);
        first.push(t, 150);
    }
    CHECK(second.warming_up() == 0);
    REQUIRE(second.events.size() == 2);
    CHECK(second.events[1].what == kind::firing);
    REQUIRE(second.events[1].alert.explanation.has_value());
    CHECK(second.events[1].alert.explanation->score == first.events.back().alert.explanation->score);
    CHECK(second.eng.stats().warming_up == 0);
}

TEST_CASE("dynamic baseline restore drops stale records")
{
    const time_ms step = 15 * second;
    harness first(load(flat_baseline_rule));
    for (time_ms t = 0; t < 60 * minute; t += step) {
        first.push(t, 100);
    }
    const std::vector<baseline_record> saved = first.eng.baselines();
    REQUIRE(saved.size() == 1);

    SECTION("edited dynamic block")
    {
        harness edited(load(
            rule_text("{type: mean_sigma, window: 2h, baseline_lag: 5m, sigma_floor: 1.0, min_samples: 30, k: 3}")));
        CHECK(edited.eng.restore_baselines(saved) == 1);
        edited.push(60 * minute, 150);
        CHECK(edited.warming_up() == 1);
    }
    SECTION("rule no longer dynamic")
    {
        harness fixed(load("groups:\n"
                           "  - name: g\n"
                           "    rules:\n"
                           "      - alert: QueueAnomaly\n"
                           "        expr: queue_depth\n"
                           "        tiers: {warning: '> 120'}\n"));
        CHECK(fixed.eng.restore_baselines(saved) == 1);
    }
    SECTION("corrupt state")
    {
        std::vector<baseline_record> corrupt = saved;
        corrupt[0].state.resize(corrupt[0].state.size() / 2);
        harness same(load(flat_baseline_rule));
        CHECK(same.eng.restore_baselines(corrupt) == 1);
        same.push(60 * minute, 100);
        CHECK(same.warming_up() == 1);
    }
    SECTION("a last sample time ahead of the clock")
    {
        std::vector<baseline_record> future = saved;
        future[0].last_sample_at = 4'102'444'800'000; // 2100-01-01
        harness same(load(flat_baseline_rule));
        same.clock.set_ms(60 * minute);
        CHECK(same.eng.restore_baselines(future) == 1);
        same.push(60 * minute, 100);
        CHECK(same.events.empty());
    }
    SECTION("series the rule does not select")
    {
        std::vector<baseline_record> other = saved;
        other[0].series = label_set{{"__name__", "disk_used"}, {"job", "worker"}};
        harness same(load(flat_baseline_rule));
        CHECK(same.eng.restore_baselines(other) == 1);
    }
}

TEST_CASE("dynamic rule keeps its baseline through a gap that counts as no data")
{
    const time_ms step = 15 * second;
    harness h(load(flat_baseline_rule));
    for (time_ms t = 0; t < 60 * minute; t += step) {
        h.push(t, 100);
    }
    REQUIRE(h.warming_up() == 0);
    // 30 minutes of silence, past the 10m no-data timeout: timers reset, the baseline stays.
    h.push(90 * minute, 100);
    CHECK(h.warming_up() == 0);
    // A silence of more than a day drops the baseline.
    h.push(90 * minute + 25 * 60 * minute, 100);
    CHECK(h.warming_up() == 1);
}

TEST_CASE("dynamic tiers that point away from the anomaly are errors")
{
    CHECK_THAT(load_error(rule_text("{type: baseline, window: 7d}", "        tiers: {critical: 0.95}\n")),
               Catch::Contains("a bare number means \"> 0.95\", but the score of type baseline is value / baseline"));
    CHECK_THAT(load_error(rule_text("{type: baseline, window: 7d}", "        tiers: {critical: 0.95}\n")),
               Catch::Contains("\"< 0.95\" for a drop below 95% of the baseline"));
    CHECK_THAT(load_error(rule_text("{type: ks, score: p_value}", "        tiers: {critical: 0.01}\n")),
               Catch::Contains("with score: p_value, drift gives small p-values"));
    CHECK_THAT(load_error(rule_text("{type: ks, score: p_value}", "        tiers: {critical: '> 0.5'}\n")),
               Catch::Contains("can never mean an anomaly"));
    CHECK_THAT(load_error(rule_text("{type: mean_sigma}", "        tiers: {warning: '< -3'}\n")),
               Catch::Contains("write \"> 3\", with direction: below for drops instead"));
    CHECK_THAT(load_error(rule_text("{type: psi}", "        tiers: {warning: '<= 0.1'}\n")),
               Catch::Contains("the PSI is never negative"));

    // The forms that fit load cleanly.
    CHECK(load_error(rule_text("{type: baseline, window: 7d}", "        tiers: {critical: '< 0.95'}\n")).empty());
    CHECK(load_error(rule_text("{type: ks, score: p_value}", "        tiers: {critical: '< 0.01'}\n")).empty());
    CHECK(load_error(rule_text("{type: mean_sigma, direction: below}",
                               "        tiers: {warning: {condition: 3, recover: '< 1'}}\n"))
              .empty());
}

TEST_CASE("dynamic spec hash covers the contents of reference and warm-start files")
{
    detector_spec spec;
    spec.kind = detector_kind::ks;
    spec.reference = drift_reference::file;
    auto near_zero = std::make_shared<drift_reference_data>();
    near_zero->file = "ref.txt";
    near_zero->values = {0.1, 0.2, 0.3};
    auto near_hundred = std::make_shared<drift_reference_data>(*near_zero);
    near_hundred->values = {100.1, 100.2, 100.3};

    spec.reference_data = near_zero;
    const std::uint64_t before = detector_spec_hash(spec);
    spec.reference_data = near_hundred;
    CHECK(detector_spec_hash(spec) != before);

    detector_spec seasonal;
    seasonal.kind = detector_kind::seasonal;
    auto week = std::make_shared<warm_start_data>();
    week->file = "history.csv";
    week->samples = {{0, 1.0}, {60'000, 2.0}};
    seasonal.warm_start = week;
    const std::uint64_t first = detector_spec_hash(seasonal);
    auto edited = std::make_shared<warm_start_data>(*week);
    edited->samples[1].second = 3.0;
    seasonal.warm_start = edited;
    CHECK(detector_spec_hash(seasonal) != first);
}

TEST_CASE("dynamic k must be positive")
{
    CHECK_THAT(load_error(rule_text("{type: mean_sigma, k: 0}")),
               Catch::Contains("dynamic.k is 0; expected a positive number of deviations"));
    CHECK_THAT(load_error(rule_text("{type: mean_sigma, k: -3}")), Catch::Contains("dynamic.k is -3"));
}
