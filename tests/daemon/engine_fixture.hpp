#pragma once
// An engine with two small rules, a manual clock and ingest limits, for the ingest tests.
//
//   HighCpu: cpu > 90, fires at once (no `for`).
//   CheckoutLatency: latency_seconds{"service.name"="checkout"} > 1, fires at once.

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "daemon/config.hpp"
#include "daemon/ingest.hpp"
#include "rules/clock.hpp"
#include "rules/engine.hpp"
#include "rules/rule.hpp"

namespace tocsin::test {

inline std::shared_ptr<const rule> make_threshold_rule(std::string name, std::string metric,
                                                       double threshold)
{
    auto r = std::make_shared<rule>();
    r->name = std::move(name);
    r->group = "ingest_test";
    r->file = "ingest_test.yaml";
    r->metric = std::move(metric);
    tier t;
    t.level = severity::warning;
    t.when = condition{compare_op::greater, threshold};
    r->tiers.push_back(t);
    r->definition_hash = std::hash<std::string>{}(r->name);
    return r;
}

inline std::shared_ptr<const rule_set> make_ingest_rules()
{
    auto high_cpu = make_threshold_rule("HighCpu", "cpu", 90);

    auto latency = std::make_shared<rule>(*make_threshold_rule("CheckoutLatency", "latency_seconds", 1));
    std::string error;
    auto matcher = label_matcher::make("service.name", match_op::equal, "checkout", error);
    if (!matcher) {
        throw std::runtime_error("test matcher: " + error);
    }
    latency->matchers.push_back(*matcher);

    auto set = std::make_shared<rule_set>();
    rule_group group;
    group.name = "ingest_test";
    group.file = "ingest_test.yaml";
    group.rules = {high_cpu, latency};
    set->groups.push_back(group);
    set->rules = {high_cpu, latency};
    return set;
}

struct engine_fixture {
    explicit engine_fixture(engine_limits engine_config = {})
        : eng(make_ingest_rules(), engine_config, clock)
    {
    }

    // Sample timestamps in the tests are near this instant (2024-11-30).
    static constexpr time_ms start_ms = 1'733'000'000'000;

    manual_clock clock{start_ms};
    engine eng;
    ingest_limits limits;
    ingest_counters counters;

    std::uint64_t rejected(reject_reason reason) const
    {
        return counters.samples_rejected[static_cast<std::size_t>(reason)];
    }

    // The alert of `rule_name` whose labels have `name`=`value`, or null.
    std::optional<alert_snapshot> find_alert(std::string_view rule_name, std::string_view name,
                                             std::string_view value) const
    {
        for (const alert_snapshot& a : eng.alerts()) {
            if (a.rule_name == rule_name && a.labels.get(name) == value) {
                return a;
            }
        }
        return std::nullopt;
    }
};

} // namespace tocsin::test
