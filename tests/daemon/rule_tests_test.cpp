#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "daemon/rule_tests.hpp"
#include "rules/engine.hpp"
#include "support/test_support.hpp"

using namespace tocsin;

namespace {

std::vector<std::optional<double>> expand(std::string_view text, std::size_t max_samples = 1000)
{
    notation_error error;
    auto values = expand_series_values(text, max_samples, error);
    INFO(text << ": " << error.message);
    REQUIRE(values);
    return *values;
}

notation_error expand_error(std::string_view text, std::size_t max_samples = 1000)
{
    notation_error error;
    auto values = expand_series_values(text, max_samples, error);
    INFO(text);
    REQUIRE_FALSE(values);
    REQUIRE_FALSE(error.message.empty());
    return error;
}

std::vector<double> numbers(const std::vector<std::optional<double>>& values)
{
    std::vector<double> out;
    for (const auto& v : values) {
        REQUIRE(v);
        out.push_back(*v);
    }
    return out;
}

label_set series(std::string_view text)
{
    notation_error error;
    auto labels = parse_series_labels(text, error);
    INFO(text << ": " << error.message);
    REQUIRE(labels);
    return *labels;
}

notation_error series_error(std::string_view text)
{
    notation_error error;
    auto labels = parse_series_labels(text, error);
    INFO(text);
    REQUIRE_FALSE(labels);
    REQUIRE_FALSE(error.message.empty());
    return error;
}

// A rule with two tiers, a rule label and an annotation that shows the value.
constexpr std::string_view value_rules = R"(groups:
  - name: test
    rules:
      - alert: HighValue
        expr: value
        for: 2m
        tiers:
          warning: "> 10"
          critical: "> 100"
        labels:
          team: db
        annotations:
          summary: 'value on {{ $labels.instance }} is {{ $value }}'
)";

// Writes the rules and the test file into `dir` and runs the test file.
rule_test_file_result run(const test::temp_dir& dir, std::string_view test_text, rule_test_limits limits = {})
{
    dir.write("rules.yaml", value_rules);
    return run_rule_test_file(dir.write("test.yaml", test_text), limits);
}

std::string errors_of(const rule_test_file_result& result)
{
    return result.errors.to_string();
}

// The text `run_rule_test_files` writes to one of its streams.
std::string read_all(std::FILE* file)
{
    std::rewind(file);
    std::string out;
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
        out.append(buffer, n);
    }
    return out;
}

} // namespace

TEST_CASE("series values plain numbers")
{
    CHECK(numbers(expand("1 2.5 -3 +4 1e3 2.5E-1 .5 0")) == std::vector<double>{1, 2.5, -3, 4, 1000, 0.25, 0.5, 0});
    CHECK(expand("").empty());
    CHECK(expand("   ").empty());
}

TEST_CASE("series values infinity and NaN")
{
    auto values = numbers(expand("Inf -Inf +inf NaN nan"));
    REQUIRE(values.size() == 5);
    CHECK(values[0] == std::numeric_limits<double>::infinity());
    CHECK(values[1] == -std::numeric_limits<double>::infinity());
    CHECK(values[2] == std::numeric_limits<double>::infinity());
    CHECK(std::isnan(values[3]));
    CHECK(std::isnan(values[4]));
    CHECK_FALSE(is_stale_marker(values[3]));
}

TEST_CASE("series values ramps")
{
    CHECK(numbers(expand("-2+4x3")) == std::vector<double>{-2, 2, 6, 10});
    CHECK(numbers(expand("1-2x4")) == std::vector<double>{1, -1, -3, -5, -7});
    CHECK(numbers(expand("1+1x0")) == std::vector<double>{1});
    CHECK(numbers(expand("1e2+1e1x2")) == std::vector<double>{100, 110, 120});
}

TEST_CASE("series values ramp adds step by step")
{
    // promtool adds the step to the previous value, so 0.1+0.1+0.1 is 0.30000000000000004.
    auto values = numbers(expand("0.1+0.1x2"));
    REQUIRE(values.size() == 3);
    CHECK(values[2] == 0.1 + 0.1 + 0.1);
}

TEST_CASE("series values repetition gives n+1 values")
{
    CHECK(numbers(expand("1x4")) == std::vector<double>{1, 1, 1, 1, 1});
    CHECK(numbers(expand("7x0")) == std::vector<double>{7});
    CHECK(numbers(expand("0.5x2 0.99x1")) == std::vector<double>{0.5, 0.5, 0.5, 0.99, 0.99});
}

TEST_CASE("series values missing samples")
{
    auto values = expand("1 _ _x3 2");
    REQUIRE(values.size() == 6);
    CHECK(values[0] == 1.0);
    CHECK_FALSE(values[1]);
    CHECK_FALSE(values[2]);
    CHECK_FALSE(values[3]);
    CHECK_FALSE(values[4]);
    CHECK(values[5] == 2.0);
    CHECK(expand("_x0").empty());
}

TEST_CASE("series values stale markers")
{
    auto values = expand("1 stale stalex2");
    REQUIRE(values.size() == 5);
    CHECK(values[0] == 1.0);
    for (std::size_t i = 1; i < values.size(); ++i) {
        REQUIRE(values[i]);
        CHECK(std::bit_cast<std::uint64_t>(*values[i]) == 0x7ff0000000000002ULL);
        CHECK(is_stale_marker(*values[i]));
    }
}

TEST_CASE("series values errors name the offset")
{
    CHECK(expand_error("abc").offset == 0);
    CHECK(expand_error("1 2 abc").offset == 4);
    CHECK(expand_error("1+2").offset == 3);
    CHECK(expand_error("1x").offset == 2);
    CHECK(expand_error("1x2y").offset == 3);
    CHECK(expand_error("_x").offset == 2);
    CHECK(expand_error("_y").offset == 1);
    CHECK(expand_error("stale+1x2").offset == 5);
    CHECK(expand_error("1e").offset == 1);
    CHECK(expand_error("1,2").offset == 1);
    CHECK(expand_error("1+x2").offset == 2);
    CHECK(expand_error("-").offset == 1);
    CHECK(expand_error("1x-2").offset == 2);
    CHECK(expand_error("1e400").offset == 0);
}

TEST_CASE("series values count too large")
{
    auto error = expand_error("1x100000000000000000000");
    CHECK_THAT(error.message, Catch::Contains("too large"));
}

TEST_CASE("series values cap")
{
    CHECK(expand("1x9", 10).size() == 10);
    CHECK_THAT(expand_error("1x10", 10).message, Catch::Contains("more than 10 samples"));
    CHECK_THAT(expand_error("1x5 1x5", 10).message, Catch::Contains("more than 10 samples"));
    // Counts this large would exhaust memory if they were expanded before the check.
    CHECK_THAT(expand_error("_x99999999999999", 10).message, Catch::Contains("more than 10 samples"));
    CHECK_THAT(expand_error("1x18446744073709551615", 10).message, Catch::Contains("more than 10 samples"));
}

TEST_CASE("series labels forms")
{
    auto a = series(R"(up{job="node", instance="a:9100"})");
    CHECK(a.get("__name__") == "up");
    CHECK(a.get("job") == "node");
    CHECK(a.get("instance") == "a:9100");
    CHECK(a.size() == 3);

    CHECK(series(R"({__name__="up", job="x"})") == series(R"(up{job="x"})"));
    CHECK(series("up") == series("up{}"));
    CHECK(series(R"( up { job = 'x' , } )") == series(R"(up{job="x"})"));
    CHECK(series("instance:node_cpu:rate1m").metric_name() == "instance:node_cpu:rate1m");
}

TEST_CASE("series labels quoted names and escapes")
{
    auto a = series(R"({"http.requests", "service.name"="checkout"})");
    CHECK(a.metric_name() == "http.requests");
    CHECK(a.get("service.name") == "checkout");

    auto b = series(R"(m{path="a\"b\\c\n", raw=`x\y`})");
    CHECK(b.get("path") == "a\"b\\c\n");
    CHECK(b.get("raw") == "x\\y");
}

TEST_CASE("series labels errors")
{
    CHECK(series_error(R"(m{a!="1"})").offset == 3);
    CHECK(series_error(R"(m{a="1")").offset == 7);
    CHECK_THAT(series_error(R"(m{a="1", a="2"})").message, Catch::Contains("twice"));
    CHECK_THAT(series_error(R"({a="1"})").message, Catch::Contains("no metric name"));
    CHECK(series_error(R"(m{a=1})").offset == 4);
    CHECK(series_error(R"(m{a="1"} x)").offset == 9);
    CHECK(series_error(R"(1m)").offset == 0);
    CHECK_THAT(series_error(R"(m{__name__="n"})").message, Catch::Contains("__name__"));
    CHECK_THAT(series_error(R"({"a", "b"})").message, Catch::Contains("second metric name"));
    CHECK(series_error(R"(m{a="\q"})").offset > 0);
}

TEST_CASE("rule test passes")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - name: fires after for
    interval: 1m
    input_series:
      - series: 'value{instance="a"}'
        values: '20x10'
      - series: 'value{instance="b"}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 1m
        alertname: HighValue
      - eval_time: 2m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
            exp_annotations: {summary: "value on a is 20"}
      - eval_time: 5m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db, alertname: HighValue}
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    CHECK(result.tests == 1);
    CHECK(result.checks == 3);
    CHECK(result.failures.empty());
    CHECK(result.passed());
}

TEST_CASE("rule test pending alerts do not count")
{
    test::temp_dir dir;
    // Pending from 0s; `for: 2m` has not elapsed at 1m59s.
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - interval: 1m
    input_series:
      - series: 'value{instance="a"}'
        values: '20x3'
    alert_rule_test:
      - eval_time: 119s
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    REQUIRE(result.failures.size() == 1);
    CHECK(result.failures[0].expected.size() == 1);
    CHECK(result.failures[0].got.empty());
    CHECK(result.failures[0].eval_time == 119'000);
    CHECK_THAT(format_rule_test_failure(result.failures[0]), Catch::Contains("at eval_time 119s"));
}

TEST_CASE("rule test failure shows both lists")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - name: wrong severity
    input_series:
      - series: 'value{instance="a"}'
        values: '200x5'
    alert_rule_test:
      - eval_time: 4m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    REQUIRE(result.failures.size() == 1);
    const auto& failure = result.failures[0];
    CHECK(failure.test == "wrong severity");
    CHECK(failure.alertname == "HighValue");
    CHECK(failure.line == 8);
    CHECK(failure.column == 9);
    REQUIRE(failure.got.size() == 1);
    CHECK(failure.got[0].labels.get("severity") == "critical");

    const std::string text = format_rule_test_failure(failure);
    INFO(text);
    CHECK_THAT(text, Catch::Contains("test.yaml:8:9: FAILED \"wrong severity\": alertname HighValue at eval_time 4m"));
    CHECK_THAT(text, Catch::Contains(R"(- {alertname="HighValue", instance="a", severity="warning", team="db"})"));
    CHECK_THAT(text, Catch::Contains(R"(+ {alertname="HighValue", instance="a", severity="critical", team="db"})"));
    CHECK_THAT(text, Catch::Contains(R"(annotations: {summary="value on a is 200"})"));
}

TEST_CASE("rule test unexpected alert fails")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: HighValue
        exp_alerts: []
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    REQUIRE(result.failures.size() == 1);
    CHECK(result.failures[0].test == "tests[0]");
    CHECK(result.failures[0].expected.empty());
    CHECK(result.failures[0].got.size() == 1);
}

TEST_CASE("rule test missing severity hint")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, team: db}
)");
    REQUIRE(result.failures.size() == 1);
    CHECK_THAT(format_rule_test_failure(result.failures[0]), Catch::Contains("list it in exp_labels"));
}

TEST_CASE("rule test annotations mismatch")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
            exp_annotations: {summary: "value on a is 21"}
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
            exp_annotations: {summary: "value on a is 20", extra: "x"}
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
            exp_annotations: {}
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    CHECK(result.checks == 3);
    REQUIRE(result.failures.size() == 3);
    const std::string text = format_rule_test_failure(result.failures[0]);
    INFO(text);
    CHECK_THAT(text, Catch::Contains(R"(~ {alertname="HighValue", instance="a", severity="warning", team="db"})"));
    CHECK_THAT(text, Catch::Contains(R"(expected annotations: {summary="value on a is 21"})"));
    CHECK_THAT(text, Catch::Contains(R"(got annotations:      {summary="value on a is 20"})"));
}

TEST_CASE("rule test order of alerts does not count")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x5'
      - series: 'value{instance="b"}'
        values: '200x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: b, severity: critical, team: db}
          - exp_labels: {instance: a, severity: warning, team: db}
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    CHECK(result.failures.empty());
    CHECK(result.checks == 1);
}

TEST_CASE("rule test stale marker resolves")
{
    test::temp_dir dir;
    // Fires at 2m; the stale marker at 4m resolves it at once; the series returns at 5m and
    // needs the full `for` again.
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x3 stale 20x3'
    alert_rule_test:
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
      - eval_time: 4m
        alertname: HighValue
      - eval_time: 6m
        alertname: HighValue
      - eval_time: 7m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    for (const auto& f : result.failures) {
        UNSCOPED_INFO(format_rule_test_failure(f));
    }
    CHECK(result.failures.empty());
    CHECK(result.checks == 4);
}

TEST_CASE("rule test missing samples run the no-data timer")
{
    test::temp_dir dir;
    // The default no-data timeout is 5m: the alert survives a one-sample gap and 4m of
    // silence after 2m, and resolves once the series has been silent for 5m.
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20 20 20 _x10 20'
      - series: 'value{instance="b"}'
        values: '20 20 20 _ 20'
    alert_rule_test:
      - eval_time: 4m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
          - exp_labels: {instance: b, severity: warning, team: db}
      - eval_time: 6m59s
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
          - exp_labels: {instance: b, severity: warning, team: db}
      - eval_time: 10m
        alertname: HighValue
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    for (const auto& f : result.failures) {
        UNSCOPED_INFO(format_rule_test_failure(f));
    }
    CHECK(result.failures.empty());
    CHECK(result.checks == 3);
}

TEST_CASE("rule test checks run in eval_time order")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
      - eval_time: 1m
        alertname: HighValue
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    CHECK(result.failures.empty());
}

TEST_CASE("rule test tests are independent")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
evaluation_interval: 30s
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x10'
  - input_series:
      - series: 'value{instance="b"}'
        values: '20x3'
    alert_rule_test:
      - eval_time: 1m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: b, severity: warning, team: db}
)");
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    // evaluation_interval 30s spaces the samples: 4 samples reach 1m30s, `for: 2m` is not met.
    CHECK(result.tests == 2);
    REQUIRE(result.failures.size() == 1);
    CHECK(result.failures[0].got.empty());
}

TEST_CASE("rule test start_timestamp")
{
    test::temp_dir dir;
    const std::string body = R"(
    input_series:
      - series: 'value{instance="a"}'
        values: '20x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: HighValue
        exp_alerts:
          - exp_labels: {instance: a, severity: warning, team: db}
)";
    for (const char* start : {"1704067200", "'2024-01-01T00:00:00Z'", "2024-01-01T02:00:00.5+02:00"}) {
        auto result = run(dir, "rule_files: [rules.yaml]\ntests:\n  - start_timestamp: " + std::string(start) + body);
        INFO(start << "\n" << errors_of(result));
        CHECK(result.passed());
    }
    auto bad = run(dir, "rule_files: [rules.yaml]\ntests:\n  - start_timestamp: 2024-13-01T00:00:00Z" + body);
    CHECK_THAT(errors_of(bad), Catch::Contains("test.yaml:3:22: invalid tests[0].start_timestamp"));
}

TEST_CASE("rule test values error position")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '1 2 3x'
    alert_rule_test:
      - eval_time: 1m
        alertname: HighValue
)");
    CHECK(result.tests == 0);
    REQUIRE(result.errors.size() == 1);
    CHECK_THAT(errors_of(result), Catch::Contains("test.yaml:5:24: invalid input_series[0].values: missing "
                                                    "repetition count"));
}

TEST_CASE("rule test series error position")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: value{instance=~"a"}
)");
    REQUIRE(result.errors.size() == 1);
    CHECK_THAT(errors_of(result), Catch::Contains("test.yaml:4:31: invalid input_series[0].series: expected '='"));
}

TEST_CASE("rule test invalid files")
{
    test::temp_dir dir;
    struct example {
        std::string text;
        std::string error;
    };
    const std::vector<example> examples = {
        {"rule_files: [missing.yaml]\ntests: []\n", "matches no file"},
        {"tests: []\n", "missing field \"rule_files\""},
        {"rule_files: [rules.yaml]\n", "missing field \"tests\""},
        {"rule_files: [rules.yaml]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n        alertname: Typo\n",
         "alertname \"Typo\" is not defined"},
        {"rule_files: [rules.yaml]\ntests:\n  - promql_expr_test: []\n", "promql_expr_test is not supported"},
        {"rule_files: [rules.yaml]\ntests:\n  - external_labels: {a: b}\n", "external_labels is not supported"},
        {"rule_files: [rules.yaml]\ntests:\n  - interval: 0s\n", "interval must be longer than 0s"},
        {"rule_files: [rules.yaml]\ntests:\n  - alert_rule_test:\n      - alertname: HighValue\n",
         "missing field \"eval_time\""},
        {"rule_files: [rules.yaml]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n",
         "missing field \"alertname\""},
        {"rule_files: [rules.yaml]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n        alertname: HighValue\n"
         "        exp_alerts:\n          - exp_labels: {alertname: Other}\n",
         "leave alertname out"},
        {"rule_files: [rules.yaml]\ntests:\n  - input_series:\n      - series: 'a{b=\"c\"}'\n      - series: "
         "'a{b=\"c\"}'\n",
         "listed twice"},
        {"rule_files: [rules.yaml]\ntests:\n  - inputseries: []\n", "unknown field \"inputseries\""},
        {"rule_files: [rules.yaml]\ntests: [\n", "invalid YAML"},
    };
    for (const auto& e : examples) {
        auto result = run(dir, e.text);
        INFO(e.text);
        CHECK(result.tests == 0);
        CHECK_THAT(errors_of(result), Catch::Contains(e.error));
    }
}

TEST_CASE("rule test invalid rule file")
{
    test::temp_dir dir;
    dir.write("broken.yaml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'x{'\n");
    auto result = run_rule_test_file(dir.write("test.yaml", "rule_files: ['*.yaml']\ntests: []\n"));
    CHECK_FALSE(result.passed());
    CHECK_THAT(errors_of(result), Catch::Contains("broken.yaml:5:"));
}

TEST_CASE("rule test sample limits")
{
    test::temp_dir dir;
    rule_test_limits limits;
    limits.max_samples_per_series = 100;
    limits.max_samples_per_test = 150;
    auto per_series = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '1x100'
)",
                          limits);
    CHECK_THAT(errors_of(per_series), Catch::Contains("more than 100 samples"));

    auto per_test = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '1x99'
      - series: 'value{instance="b"}'
        values: '1x99'
)",
                        limits);
    CHECK_THAT(errors_of(per_test), Catch::Contains("more than 150 samples"));
}

TEST_CASE("rule test exit statuses")
{
    test::temp_dir dir;
    dir.write("rules.yaml", value_rules);
    const std::string pass = dir.write("pass.yaml", R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '1x5'
    alert_rule_test:
      - eval_time: 5m
        alertname: HighValue
)");
    const std::string fail = dir.write("fail.yaml", R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"}'
        values: '20x5'
    alert_rule_test:
      - eval_time: 5m
        alertname: HighValue
)");
    const std::string invalid = dir.write("invalid.yaml", "rule_files: [rules.yaml]\ntests: 3\n");

    struct run_case {
        std::vector<std::string> files;
        rule_test_exit status;
        std::string output;
    };
    const std::vector<run_case> cases = {
        {{pass}, rule_test_exit::passed, "pass.yaml: PASSED (1 tests, 1 checks)"},
        {{pass, fail}, rule_test_exit::failed, "fail.yaml: FAILED (1 of 1 checks in 1 tests)"},
        {{fail, invalid, pass}, rule_test_exit::invalid_file, "invalid.yaml: INVALID (1 errors); no test ran"},
    };
    for (const auto& c : cases) {
        std::FILE* out = std::tmpfile();
        std::FILE* err = std::tmpfile();
        REQUIRE(out != nullptr);
        REQUIRE(err != nullptr);
        const rule_test_exit status = run_rule_test_files(c.files, out, err);
        const std::string output = read_all(out);
        const std::string errors = read_all(err);
        std::fclose(out);
        std::fclose(err);
        INFO(output << errors);
        CHECK(status == c.status);
        CHECK_THAT(output, Catch::Contains(c.output));
    }
}

TEST_CASE("rule test example files pass")
{
    const std::string file = GENERATE(std::string("node_test.yaml"), std::string("models_test.yaml"));
    const std::string path = std::string(TOCSIN_SOURCE_DIR) + "/examples/tests/" + file;
    INFO(path);
    auto result = run_rule_test_file(path);
    INFO(errors_of(result));
    for (const auto& f : result.failures) {
        UNSCOPED_INFO(format_rule_test_failure(f));
    }
    CHECK(result.passed());
    CHECK(result.tests > 0);
    CHECK(result.checks > 0);
}

TEST_CASE("rule test reports every problem in one run")
{
    test::temp_dir dir;
    auto result = run(dir, R"(rule_files: [rules.yaml]
tests:
  - input_series:
      - series: 'value{instance="a"'
        values: '1 2 3x'
    alert_rule_test:
      - eval_time: 1m
        alertname: Typo
)");
    INFO(errors_of(result));
    CHECK(result.errors.size() == 3);
    CHECK_THAT(errors_of(result), Catch::Contains("test.yaml:4:36: invalid input_series[0].series: missing '}'"));
    CHECK_THAT(errors_of(result), Catch::Contains("test.yaml:5:24: invalid input_series[0].values"));
    CHECK_THAT(errors_of(result), Catch::Contains("test.yaml:7:9: alertname \"Typo\" is not defined"));
}

TEST_CASE("rule test dynamic rule")
{
    test::temp_dir dir;
    dir.write("dynamic.yaml", R"(groups:
  - name: queues
    rules:
      - alert: QueueDepthAnomaly
        expr: queue_depth{job="worker"}
        for: 2m
        dynamic:
          type: mean_sigma
          window: 1h
          baseline_lag: 5m
          min_samples: 30
          sigma_floor: 1.0
          direction: above
        tiers:
          warning: "> 3"
          critical: "> 4"
)");
    // A flat 10 for an hour, then 20: ten times the sigma floor above the baseline.
    auto result = run_rule_test_file(dir.write("test.yaml", R"(rule_files: [dynamic.yaml]
tests:
  - input_series:
      - series: 'queue_depth{job="worker", queue="mail"}'
        values: '10x59 20x10'
    alert_rule_test:
      - eval_time: 59m
        alertname: QueueDepthAnomaly
      - eval_time: 61m
        alertname: QueueDepthAnomaly
      - eval_time: 62m
        alertname: QueueDepthAnomaly
        exp_alerts:
          - exp_labels: {job: worker, queue: mail, severity: critical}
)"));
    INFO(errors_of(result));
    REQUIRE(result.errors.empty());
    for (const auto& f : result.failures) {
        UNSCOPED_INFO(format_rule_test_failure(f));
    }
    CHECK(result.failures.empty());
    CHECK(result.checks == 3);
}
