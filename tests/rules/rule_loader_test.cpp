#include <catch2/catch.hpp>

#include <algorithm>

#include "rules/rule_loader.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

std::vector<rule_group> load_ok(std::string_view text)
{
    diagnostics diags;
    auto groups = load_rule_text(text, "r.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    return groups;
}

std::vector<std::string> load_errors(std::string_view text)
{
    diagnostics diags;
    load_rule_text(text, "r.yaml", diags);
    std::vector<std::string> out;
    for (const auto& d : diags.items()) {
        out.push_back(d.to_string());
    }
    return out;
}

// One rule around the given body lines (indented by 8 spaces each in the file).
std::string one_rule(std::string_view body)
{
    return "groups:\n"
           "  - name: g\n"
           "    rules:\n"
           "      - alert: A\n" +
           std::string(body);
}

std::string only_error(std::string_view text)
{
    auto errors = load_errors(text);
    INFO(text);
    REQUIRE(errors.size() == 1);
    return errors.front();
}

// Returns the first rule; the shared pointer keeps it alive after the groups are gone.
std::shared_ptr<const rule> first_rule(const std::vector<rule_group>& groups)
{
    REQUIRE(!groups.empty());
    REQUIRE(!groups.front().rules.empty());
    return groups.front().rules.front();
}

} // namespace

TEST_CASE("rule loader loads the full example")
{
    const auto groups = load_ok(R"(groups:
  - name: node
    rules:
      - alert: HighCpu
        expr: 'rate(node_cpu_seconds_total{mode!="idle"}[5m])'
        for: 5m
        keep_firing_for: 30s
        tiers:
          warning: "> 0.8"
          critical:
            condition: "> 0.95"
            for: 1m
            recover: "< 0.9"
            keep_firing_for: 2m
        labels: {team: infra}
        annotations:
          summary: 'CPU on {{ $labels.instance }} at {{ $value | humanizePercentage }}'
        no_data: {timeout: 10m, action: keep_state, resolve_after: 1h}
        on_non_numeric: no_data
        fire_on_infinity: true
        extrapolate: false
)");
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].name == "node");
    CHECK(groups[0].file == "r.yaml");
    const auto held_r = first_rule(groups);
    const rule& r = *held_r;
    CHECK(r.name == "HighCpu");
    CHECK(r.group == "node");
    CHECK(r.file == "r.yaml");
    CHECK(r.line == 4);
    CHECK(r.column == 9);
    CHECK(r.metric == "node_cpu_seconds_total");
    REQUIRE(r.matchers.size() == 1);
    CHECK(r.matchers[0].to_string() == R"(mode!="idle")");
    CHECK(r.xform.kind == transform_kind::rate);
    CHECK(r.xform.window == 5min);
    CHECK_FALSE(r.xform.extrapolate);
    REQUIRE(r.tiers.size() == 2);
    CHECK(r.tiers[0].level == severity::warning);
    CHECK(r.tiers[0].when.op == compare_op::greater);
    CHECK(r.tiers[0].when.threshold == 0.8);
    CHECK(r.tiers[0].for_duration == 5min);
    CHECK(r.tiers[0].keep_firing_for == 30s);
    CHECK_FALSE(r.tiers[0].recover.has_value());
    CHECK(r.tiers[1].level == severity::critical);
    CHECK(r.tiers[1].when.threshold == 0.95);
    CHECK(r.tiers[1].for_duration == 1min);
    CHECK(r.tiers[1].keep_firing_for == 2min);
    REQUIRE(r.tiers[1].recover.has_value());
    CHECK(r.tiers[1].recover->op == compare_op::less);
    CHECK(r.tiers[1].recover->threshold == 0.9);
    REQUIRE(r.labels.size() == 1);
    CHECK(r.labels[0].first == "team");
    CHECK(r.labels[0].second.render({}, 0) == "infra");
    REQUIRE(r.annotations.size() == 1);
    CHECK(r.annotations[0].second.render(label_set{{"instance", "h1"}}, 0.5) == "CPU on h1 at 50%");
    CHECK(r.no_data.timeout == 10min);
    CHECK(r.no_data.action == no_data_action::keep_state);
    CHECK(r.no_data.resolve_after == 1h);
    CHECK(r.on_non_numeric == non_numeric_action::no_data);
    CHECK(r.fire_on_infinity);
    CHECK(r.definition_hash != 0);
}

TEST_CASE("rule loader applies defaults")
{
    const auto held_r = first_rule(load_ok(one_rule("        expr: up\n        tiers: {critical: '== 0'}\n")));
    const rule& r = *held_r;
    CHECK(r.metric == "up");
    CHECK(r.matchers.empty());
    CHECK(r.xform.kind == transform_kind::none);
    REQUIRE(r.tiers.size() == 1);
    CHECK(r.tiers[0].for_duration == 0ms);
    CHECK(r.tiers[0].keep_firing_for == 0ms);
    CHECK(r.no_data.timeout == 5min);
    CHECK(r.no_data.action == no_data_action::resolve);
    CHECK(r.on_non_numeric == non_numeric_action::ignore);
    CHECK_FALSE(r.fire_on_infinity);
    CHECK(r.xform.extrapolate);
}

TEST_CASE("rule loader sorts tiers by severity")
{
    const auto held_r = first_rule(load_ok(one_rule(
        "        expr: up\n        tiers: {page: '> 9', info: '> 1', critical: '> 5', warning: '> 2'}\n")));
    const rule& r = *held_r;
    REQUIRE(r.tiers.size() == 4);
    CHECK(r.tiers[0].level == severity::info);
    CHECK(r.tiers[1].level == severity::warning);
    CHECK(r.tiers[2].level == severity::critical);
    CHECK(r.tiers[3].level == severity::page);
}

TEST_CASE("rule loader parses every expr form")
{
    struct example {
        std::string expr;
        std::string metric;
        transform_kind kind;
        std::size_t matchers;
    };
    const example examples[] = {
        {"up", "up", transform_kind::none, 0},
        {"node:cpu:ratio", "node:cpu:ratio", transform_kind::none, 0},
        {R"(up{job="node", instance=~"web-.*",})", "up", transform_kind::none, 2},
        {R"({__name__="up", job="node"})", "up", transform_kind::none, 1},
        {R"({"service.name"="checkout", __name__="http_requests_total"})", "http_requests_total",
         transform_kind::none, 1},
        {R"({"http.server.duration", job="x"})", "http.server.duration", transform_kind::none, 1},
        {"rate(x[5m])", "x", transform_kind::rate, 0},
        {"increase(x{a=\"b\"}[1h])", "x", transform_kind::increase, 1},
        {"delta( x [30s] )", "x", transform_kind::delta, 0},
        {"avg_over_time(x[5m])", "x", transform_kind::avg, 0},
        {"min_over_time(x[5m])", "x", transform_kind::min, 0},
        {"max_over_time(x[5m])", "x", transform_kind::max, 0},
        {"quantile_over_time(0.99, x[5m])", "x", transform_kind::quantile, 0},
    };
    for (const auto& e : examples) {
        INFO(e.expr);
        const auto text = one_rule("        expr: '" + e.expr + "'\n        tiers: {warning: '> 1'}\n");
        const auto held_r = first_rule(load_ok(text));
        const rule& r = *held_r;
        CHECK(r.metric == e.metric);
        CHECK(r.xform.kind == e.kind);
        CHECK(r.matchers.size() == e.matchers);
    }
    const auto held_q = first_rule(load_ok(one_rule("        expr: quantile_over_time(0.9, x[2m])\n        tiers: {info: '> 1'}\n")));
    const rule& q = *held_q;
    CHECK(q.xform.quantile == 0.9);
    CHECK(q.xform.window == 2min);
}

TEST_CASE("rule loader reports expr errors at their column")
{
    // Line 5 is "        expr: 'EXPR'"; the expression starts at column 16.
    auto at = [](std::string_view expr) {
        return only_error(one_rule("        expr: '" + std::string(expr) + "'\n        tiers: {warning: '> 1'}\n"));
    };
    CHECK_THAT(at("rate(x[5m]) > 3"), Catch::StartsWith("r.yaml:5:28: invalid expr: comparisons do not belong"));
    CHECK_THAT(at("sum(rate(x[5m]))"), Catch::StartsWith("r.yaml:5:16: invalid expr: aggregation sum"));
    CHECK_THAT(at("irate(x[5m])"), Catch::StartsWith("r.yaml:5:16: invalid expr: unsupported function irate"));
    CHECK_THAT(at("irate(x[5m])"), Catch::Contains("quantile_over_time(Q, SEL[W])"));
    CHECK_THAT(at("a / b"), Catch::StartsWith("r.yaml:5:18: invalid expr: binary operator /"));
    CHECK_THAT(at("x[5m]"), Catch::StartsWith("r.yaml:5:17: invalid expr: a range selector"));
    CHECK_THAT(at("rate(x)"), Catch::StartsWith("r.yaml:5:22: invalid expr: rate needs a range window"));
    CHECK_THAT(at("rate(x[0s])"), Catch::StartsWith("r.yaml:5:23: invalid expr: the window of rate must be greater than 0"));
    CHECK_THAT(at("rate(x[5q])"), Catch::StartsWith("r.yaml:5:23: invalid expr: invalid window"));
    CHECK_THAT(at("rate(x[5m:1m])"), Catch::StartsWith("r.yaml:5:23: invalid expr: subqueries"));
    CHECK_THAT(at("quantile_over_time(1.5, x[5m])"), Catch::StartsWith("r.yaml:5:35: invalid expr: quantile 1.5 is outside [0, 1]"));
    CHECK_THAT(at("quantile_over_time(-0.1, x[5m])"), Catch::Contains("outside [0, 1]"));
    CHECK_THAT(at("{job=\"x\"}"), Catch::Contains("a metric name is required"));
    CHECK_THAT(at("up{job=}"), Catch::StartsWith("r.yaml:5:23: invalid expr: missing value after job="));
    CHECK_THAT(at("up{job=x}"), Catch::StartsWith("r.yaml:5:23: invalid expr: the value of label job must be quoted"));
    CHECK_THAT(at("up{job=\"x\""), Catch::StartsWith("r.yaml:5:18: invalid expr: unclosed '{'"));
    CHECK_THAT(at("up{a=~\"(\"}"), Catch::Contains("invalid regex"));
    CHECK_THAT(at("up offset 5m"), Catch::Contains("offset and @ modifiers"));
    CHECK_THAT(at("rate(sum(x)[5m])"), Catch::Contains("not a function call"));
    CHECK_THAT(at("up{__name__=\"other\"}"), Catch::Contains("given twice"));
}

TEST_CASE("rule loader reports expr errors inside block scalars")
{
    const auto error = only_error(one_rule("        expr: >-\n          rate(x[5m]) > 1\n        tiers: {warning: '> 1'}\n"));
    CHECK_THAT(error, Catch::StartsWith("r.yaml:5:15: invalid expr (at column 13 of the expression): comparisons"));
}

TEST_CASE("rule loader rejects unknown fields")
{
    CHECK(only_error(one_rule("        expr: up\n        fro: 5m\n        tiers: {warning: '> 1'}\n")) ==
          "r.yaml:6:9: unknown field \"fro\" in rule; expected one of: alert, expr, for, keep_firing_for, tiers, "
          "dynamic, labels, annotations, no_data, on_non_numeric, fire_on_infinity, extrapolate");
    CHECK_THAT(only_error("groups:\n  - name: g\n    interval: 1m\n    rules: []\n"),
               Catch::StartsWith("r.yaml:3:5: unknown field \"interval\" in group; expected one of: name, rules"));
    const auto misspelled = load_errors("group:\n  - name: g\n");
    REQUIRE(misspelled.size() == 2);
    CHECK_THAT(misspelled[0], Catch::StartsWith("r.yaml:1:1: unknown field \"group\" in rule file; expected one of: groups"));
    CHECK_THAT(misspelled[1], Catch::StartsWith("r.yaml:1:1: missing field \"groups\" in rule file"));
    CHECK_THAT(only_error(one_rule("        expr: up\n        tiers:\n          warning: {condition: '> 1', fro: 1m}\n")),
               Catch::StartsWith("r.yaml:7:39: unknown field \"fro\" in tier warning"));
    CHECK_THAT(only_error(one_rule("        expr: up\n        tiers: {warning: '> 1'}\n        no_data: {timeot: 1m}\n")),
               Catch::StartsWith("r.yaml:7:19: unknown field \"timeot\" in no_data"));
}

TEST_CASE("rule loader rejects repeated keys")
{
    CHECK_THAT(only_error(one_rule("        expr: up\n        expr: down\n        tiers: {warning: '> 1'}\n")),
               Catch::StartsWith("r.yaml:6:9: field \"expr\" appears twice in rule; the first is at line 5"));
}

TEST_CASE("rule loader reports missing fields")
{
    CHECK_THAT(only_error("groups:\n  - name: g\n    rules:\n      - expr: up\n        tiers: {warning: '> 1'}\n"),
               Catch::StartsWith("r.yaml:4:9: missing field \"alert\""));
    CHECK_THAT(only_error(one_rule("        tiers: {warning: '> 1'}\n")), Catch::StartsWith("r.yaml:4:9: missing field \"expr\""));
    CHECK_THAT(only_error(one_rule("        expr: up\n")), Catch::StartsWith("r.yaml:4:9: missing field \"tiers\""));
    CHECK_THAT(only_error("groups:\n  - rules: []\n"), Catch::StartsWith("r.yaml:2:5: missing field \"name\""));
    CHECK_THAT(only_error("groups:\n  - name: g\n"), Catch::StartsWith("r.yaml:2:5: missing field \"rules\""));
    CHECK_THAT(only_error(one_rule("        expr: up\n        tiers: {warning: {for: 1m}}\n")),
               Catch::StartsWith("r.yaml:6:26: missing field \"condition\" in tier warning"));
}

TEST_CASE("rule loader rejects bad tiers")
{
    auto tiers = [](std::string_view t) { return only_error(one_rule("        expr: up\n        tiers: " + std::string(t) + "\n")); };
    CHECK_THAT(tiers("{warn: '> 1'}"), Catch::StartsWith("r.yaml:6:17: unknown tier \"warn\"; expected one of info, warning, critical, page"));
    CHECK_THAT(tiers("{}"), Catch::StartsWith("r.yaml:6:16: tiers is empty"));
    CHECK_THAT(tiers("{warning: '1'}"), Catch::StartsWith("r.yaml:6:26: tiers.warning: missing comparison operator"));
    CHECK_THAT(tiers("{warning: '= 1'}"), Catch::Contains("use =="));
    CHECK_THAT(tiers("{warning: '> NaN'}"), Catch::Contains("NaN is not a valid threshold"));
    CHECK_THAT(tiers("{warning: '> inf'}"), Catch::Contains("infinite threshold"));
    CHECK_THAT(tiers("{warning: '> abc'}"), Catch::Contains("invalid threshold \"abc\""));
    CHECK_THAT(tiers("[warning]"), Catch::StartsWith("r.yaml:6:16: tiers must be a mapping, got a sequence"));
    CHECK_THAT(tiers("{warning: [1]}"), Catch::StartsWith("r.yaml:6:26: tiers.warning must be a condition"));
    CHECK_THAT(tiers("{warning: {condition: '> 1', for: soon}}"), Catch::StartsWith("r.yaml:6:50: tiers.warning.for: invalid duration \"soon\""));
}

TEST_CASE("rule loader accepts tier numbers in every notation")
{
    const auto held_r = first_rule(load_ok(one_rule("        expr: up\n        tiers: {info: '>= -2', warning: '>=1e3', critical: '> +1500.5'}\n")));
    const rule& r = *held_r;
    REQUIRE(r.tiers.size() == 3);
    CHECK(r.tiers[0].when.threshold == -2);
    CHECK(r.tiers[1].when.threshold == 1000);
    CHECK(r.tiers[2].when.threshold == 1500.5);
}

TEST_CASE("rule loader checks tier order")
{
    auto tiers = [](std::string_view t) { return load_errors(one_rule("        expr: up\n        tiers: " + std::string(t) + "\n")); };
    const auto up = tiers("{warning: '> 5', critical: '> 4'}");
    REQUIRE(up.size() == 1);
    CHECK_THAT(up[0], Catch::StartsWith("r.yaml:6:43: tier critical (\"> 4\") has a lower threshold than tier warning (\"> 5\")"));

    const auto down = tiers("{warning: '< 10', page: '<= 20'}");
    REQUIRE(down.size() == 1);
    CHECK_THAT(down[0], Catch::Contains("tier page (\"<= 20\") has a higher threshold than tier warning (\"< 10\")"));

    CHECK(tiers("{warning: '> 5', critical: '>= 5'}").empty());
    CHECK(tiers("{warning: '< 10', critical: '< 5'}").empty());
    CHECK(tiers("{info: '== 1', warning: '!= 0'}").empty());
    // Tiers that compare in opposite directions are not ordered against each other.
    CHECK(tiers("{warning: '< 10', critical: '> 100'}").empty());
}

TEST_CASE("rule loader checks the side of recover")
{
    auto recover = [](std::string_view when, std::string_view rec) {
        return load_errors(one_rule("        expr: up\n        tiers:\n          warning: {condition: '" + std::string(when) +
                                    "', recover: '" + std::string(rec) + "'}\n"));
    };
    CHECK(recover("> 80", "< 75").empty());
    CHECK(recover("> 80", "<= 80").empty());
    CHECK(recover("> 80", "< 80").empty());
    CHECK(recover(">= 80", "< 80").empty());
    CHECK(recover("< 10", "> 15").empty());
    CHECK(recover("<= 10", ">= 10.5").empty());

    const auto wrong_direction = recover("> 80", "> 70");
    REQUIRE(wrong_direction.size() == 1);
    CHECK_THAT(wrong_direction[0], Catch::StartsWith("r.yaml:7:49: tiers.warning.recover \"> 70\" overlaps the condition \"> 80\""));
    CHECK_THAT(wrong_direction[0], Catch::Contains("expected < or <= with a threshold at or below 80"));

    CHECK(recover("> 80", "< 85").size() == 1);
    CHECK(recover(">= 80", "<= 80").size() == 1);
    CHECK(recover("< 10", "< 5").size() == 1);
    CHECK(recover("< 10", "> 5").size() == 1);
    CHECK_THAT(recover("== 1", "!= 1").at(0), Catch::Contains("recover needs a condition with >, >=, < or <="));
}

TEST_CASE("rule loader validates templates and labels")
{
    auto body = [](std::string_view extra) {
        return one_rule("        expr: up\n        tiers: {warning: '> 1'}\n" + std::string(extra));
    };
    CHECK_THAT(only_error(body("        annotations:\n          summary: '{{ $value | humanise }}'\n")),
               Catch::StartsWith("r.yaml:8:20: annotations.summary: invalid template: unknown function \"humanise\" at column 13"));
    CHECK_THAT(only_error(body("        labels: {team: '{{ $lables.x }}'}\n")),
               Catch::StartsWith("r.yaml:7:24: labels.team: invalid template: unknown variable \"$lables\""));
    CHECK_THAT(only_error(body("        labels: {severity: high}\n")),
               Catch::StartsWith("r.yaml:7:18: label severity is set by tocsin (from the tier)"));
    CHECK_THAT(only_error(body("        labels: {alertname: x}\n")), Catch::Contains("label alertname is set by tocsin"));
    CHECK_THAT(only_error(body("        labels: {__x: y}\n")), Catch::Contains("reserved"));
    CHECK_THAT(only_error(body("        labels: {a: [1]}\n")), Catch::StartsWith("r.yaml:7:21: labels.a must be a string, got a sequence"));
    CHECK_THAT(only_error(body("        labels: [a]\n")), Catch::StartsWith("r.yaml:7:17: labels must be a mapping"));
}

TEST_CASE("rule loader validates scalar fields")
{
    auto body = [](std::string_view extra) {
        return one_rule("        expr: up\n        tiers: {warning: '> 1'}\n" + std::string(extra));
    };
    CHECK_THAT(only_error(body("        for: 5 minutes\n")), Catch::StartsWith("r.yaml:7:14: for: invalid duration \"5 minutes\""));
    CHECK_THAT(only_error(body("        for: -5m\n")), Catch::StartsWith("r.yaml:7:14: for: negative duration"));
    CHECK_THAT(only_error(body("        keep_firing_for: [1m]\n")), Catch::StartsWith("r.yaml:7:26: keep_firing_for must be a duration"));
    CHECK_THAT(only_error(body("        fire_on_infinity: yes\n")),
               Catch::StartsWith("r.yaml:7:27: fire_on_infinity must be true or false, got \"yes\""));
    CHECK_THAT(only_error(body("        on_non_numeric: skip\n")),
               Catch::StartsWith("r.yaml:7:25: invalid on_non_numeric \"skip\"; expected ignore or no_data"));
    CHECK_THAT(only_error(body("        extrapolate: false\n")),
               Catch::StartsWith("r.yaml:7:22: extrapolate applies only to rate, increase and delta"));
    CHECK_THAT(only_error("groups:\n  - name: g\n    rules:\n      - alert: ''\n        expr: up\n        tiers: {warning: '> 1'}\n"),
               Catch::StartsWith("r.yaml:4:16: empty alert name"));
}

TEST_CASE("rule loader validates no_data")
{
    auto no_data = [](std::string_view value) {
        return only_error(one_rule("        expr: up\n        tiers: {warning: '> 1'}\n        no_data: " + std::string(value) + "\n"));
    };
    CHECK_THAT(no_data("{timeout: 0s}"), Catch::StartsWith("r.yaml:7:28: no_data.timeout must be greater than 0"));
    CHECK_THAT(no_data("{action: drop}"), Catch::StartsWith("r.yaml:7:27: invalid no_data.action \"drop\"; expected resolve, keep_state or alert"));
    CHECK_THAT(no_data("{action: resolve, resolve_after: 1h}"),
               Catch::StartsWith("r.yaml:7:51: no_data.resolve_after applies only with action: keep_state"));
    CHECK_THAT(no_data("{action: alert, severity: urgent}"), Catch::Contains("invalid no_data.severity \"urgent\""));
    CHECK_THAT(no_data("{action: resolve, severity: page}"), Catch::Contains("applies only with action: alert"));

    const auto held_r = first_rule(load_ok(one_rule("        expr: up\n        tiers: {warning: '> 1'}\n        no_data: {action: alert, severity: page, timeout: 90s}\n")));
    const rule& r = *held_r;
    CHECK(r.no_data.action == no_data_action::alert);
    CHECK(r.no_data.alert_severity == severity::page);
    CHECK(r.no_data.timeout == 90s);
}

TEST_CASE("rule loader rejects recording rules")
{
    CHECK_THAT(only_error("groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum(up)\n"),
               Catch::StartsWith("r.yaml:4:9: recording rules are not supported"));
}

TEST_CASE("rule loader rejects duplicate group names")
{
    CHECK_THAT(only_error("groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n"),
               Catch::StartsWith("r.yaml:4:11: duplicate group name \"g\"; the first is at line 2"));
}

TEST_CASE("rule loader reports YAML syntax errors once")
{
    const auto errors = load_errors("groups:\n  - name: g\n    rules: [\n      - alert: x\n");
    REQUIRE(errors.size() == 1);
    CHECK_THAT(errors[0], Catch::Matches(R"(r\.yaml:\d+:\d+: invalid YAML: .*)"));

    const auto map_value = load_errors("groups: a: b\n");
    REQUIRE(map_value.size() == 1);
    CHECK_THAT(map_value[0], Catch::StartsWith("r.yaml:1:10: invalid YAML: illegal map value"));

    const auto indentation = load_errors("groups:\n  - name: g\n rules: []\n");
    REQUIRE(indentation.size() == 1);
    CHECK_THAT(indentation[0], Catch::StartsWith("r.yaml:3:2: invalid YAML: end of map not found"));
}

TEST_CASE("rule loader reports all errors of a file at once")
{
    const auto errors = load_errors(R"(groups:
  - name: a
    rules:
      - alert: One
        expr: rate(x)
        tiers: {warning: '> 1'}
      - alert: Two
        expr: up
        for: 5 m
        tiers: {bad: '> 1'}
  - name: a
    rules:
      - alert: Three
        expr: up
        tiers: {warning: '> 1'}
        annotations: {s: '{{ nope }}'}
)");
    REQUIRE(errors.size() == 5);
    CHECK_THAT(errors[0], Catch::StartsWith("r.yaml:5:21: invalid expr: rate needs a range window"));
    CHECK_THAT(errors[1], Catch::StartsWith("r.yaml:9:14: for: invalid duration"));
    CHECK_THAT(errors[2], Catch::StartsWith("r.yaml:10:17: unknown tier \"bad\""));
    CHECK_THAT(errors[3], Catch::StartsWith("r.yaml:11:11: duplicate group name \"a\""));
    CHECK_THAT(errors[4], Catch::StartsWith("r.yaml:16:26: annotations.s: invalid template: unknown function \"nope\""));
}

TEST_CASE("rule loader keeps valid rules beside invalid ones")
{
    diagnostics diags;
    auto groups = load_rule_text(one_rule("        expr: up\n        tiers: {warning: '> 1'}\n"
                                          "      - alert: B\n        expr: 'up >'\n        tiers: {warning: '> 1'}\n"),
                                 "r.yaml", diags);
    CHECK(diags.size() == 1);
    REQUIRE(groups.size() == 1);
    REQUIRE(groups[0].rules.size() == 1);
    CHECK(groups[0].rules[0]->name == "A");
}

TEST_CASE("rule loader accepts empty files")
{
    CHECK(load_ok("").empty());
    CHECK(load_ok("# only a comment\n").empty());
    CHECK(load_ok("groups: []\n").empty());
}

TEST_CASE("rule loader reads files")
{
    test::temp_dir dir;
    const auto path = dir.write("rules.yaml", one_rule("        expr: up\n        tiers: {warning: '> 1'}\n"));
    diagnostics diags;
    auto groups = load_rule_file(path, diags);
    CHECK(diags.empty());
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].rules[0]->file == path);

    diagnostics missing;
    CHECK(load_rule_file((dir.path() / "absent.yaml").string(), missing).empty());
    REQUIRE(missing.size() == 1);
    CHECK_THAT(missing.items()[0].to_string(), Catch::EndsWith("absent.yaml: failed to read rule file: No such file or directory"));
}

TEST_CASE("rule set rejects duplicate alert names across files")
{
    diagnostics diags;
    auto a = load_rule_text(one_rule("        expr: up\n        tiers: {warning: '> 1'}\n"), "a.yaml", diags);
    auto b = load_rule_text("groups:\n  - name: other\n    rules:\n      - alert: B\n        expr: up\n        tiers: {info: '> 1'}\n"
                            "      - alert: A\n        expr: down\n        tiers: {info: '> 1'}\n",
                            "b.yaml", diags);
    REQUIRE(diags.empty());
    for (auto& g : b) {
        a.push_back(std::move(g));
    }
    const auto set = make_rule_set(std::move(a));
    CHECK(set->rules.size() == 3);
    CHECK(set->groups.size() == 2);
    validate_rule_set(*set, diags);
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.items()[0].to_string(),
               Catch::StartsWith("b.yaml:7:9: duplicate alert name \"A\"; it is already defined at a.yaml:4:9 in group \"g\""));
}

TEST_CASE("rule set rejects duplicate alert names within a group")
{
    diagnostics diags;
    auto groups = load_rule_text(one_rule("        expr: up\n        tiers: {warning: '> 1'}\n"
                                          "      - alert: A\n        expr: down\n        tiers: {warning: '> 1'}\n"),
                                 "r.yaml", diags);
    REQUIRE(diags.empty());
    validate_rule_set(*make_rule_set(std::move(groups)), diags);
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.items()[0].to_string(), Catch::StartsWith("r.yaml:7:9: duplicate alert name \"A\""));
}

TEST_CASE("definition hash is stable across layout changes")
{
    const auto base = first_rule(load_ok(R"(groups:
  - name: g
    rules:
      - alert: A
        expr: 'rate(x{a="1", b=~"c.*"}[5m])'
        tiers: {warning: '> 1', critical: {condition: '> 2', recover: '< 1.5'}}
        labels: {team: infra, tier: web}
        annotations: {summary: 'first'}
)"))->definition_hash;

    // Other group, other position, other formatting, reordered keys and matchers, another
    // annotation: the definition is the same.
    const auto moved = load_ok(R"(# a comment shifts the lines
groups:
  - name: first
    rules:
      - alert: Other
        expr: up
        tiers: {info: '> 0'}
  - name: renamed
    rules:
      - tiers:
          critical:
            recover: "<1.5"
            condition: ">2.0"
          warning: ">1"
        labels:
          tier: web
          team: infra
        expr: rate( x{ b=~"c.*", a="1" }[300s] )
        alert: A
        annotations: {summary: 'second', description: 'added'}
)");
    REQUIRE(moved.size() == 2);
    CHECK(moved[1].rules[0]->definition_hash == base);
    CHECK(moved[0].rules[0]->definition_hash != base);
}

TEST_CASE("definition hash changes when the rule changes")
{
    const std::string head = "groups:\n  - name: g\n    rules:\n      - alert: A\n";
    auto hash = [&](std::string_view body) { return first_rule(load_ok(head + std::string(body)))->definition_hash; };
    const auto base = hash("        expr: rate(x[5m])\n        tiers: {warning: '> 1'}\n");
    const std::string variants[] = {
        "        expr: rate(x[10m])\n        tiers: {warning: '> 1'}\n",
        "        expr: increase(x[5m])\n        tiers: {warning: '> 1'}\n",
        "        expr: rate(y[5m])\n        tiers: {warning: '> 1'}\n",
        "        expr: 'rate(x{a=\"b\"}[5m])'\n        tiers: {warning: '> 1'}\n",
        "        expr: rate(x[5m])\n        tiers: {warning: '>= 1'}\n",
        "        expr: rate(x[5m])\n        tiers: {warning: '> 2'}\n",
        "        expr: rate(x[5m])\n        tiers: {critical: '> 1'}\n",
        "        expr: rate(x[5m])\n        for: 1m\n        tiers: {warning: '> 1'}\n",
        "        expr: rate(x[5m])\n        keep_firing_for: 1m\n        tiers: {warning: '> 1'}\n",
        "        expr: rate(x[5m])\n        tiers: {warning: {condition: '> 1', recover: '< 0.5'}}\n",
        "        expr: rate(x[5m])\n        tiers: {warning: '> 1'}\n        labels: {team: a}\n",
        "        expr: rate(x[5m])\n        tiers: {warning: '> 1'}\n        no_data: {timeout: 1m}\n",
        "        expr: rate(x[5m])\n        tiers: {warning: '> 1'}\n        on_non_numeric: no_data\n",
        "        expr: rate(x[5m])\n        tiers: {warning: '> 1'}\n        fire_on_infinity: true\n",
        "        expr: rate(x[5m])\n        tiers: {warning: '> 1'}\n        extrapolate: false\n",
    };
    std::vector<std::uint64_t> seen{base};
    for (const auto& v : variants) {
        INFO(v);
        const auto h = hash(v);
        CHECK(std::find(seen.begin(), seen.end(), h) == seen.end());
        seen.push_back(h);
    }
    // The same text loaded twice gives the same hash.
    CHECK(hash("        expr: rate(x[5m])\n        tiers: {warning: '> 1'}\n") == base);
}

TEST_CASE("condition with a percent sign suggests the number")
{
    std::string error;
    CHECK_FALSE(parse_condition("> 80%", error).has_value());
    CHECK_THAT(error, Catch::Contains("percent signs are not allowed") && Catch::Contains("80 if the metric is a percentage") &&
                          Catch::Contains("0.8 if it is a ratio"));
}
