#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/backtest.hpp"
#include "daemon/svg_chart.hpp"
#include "rules/rule_loader.hpp"
#include "support/test_support.hpp"

using namespace tocsin;

namespace {

// 2024-01-01T00:00:00Z in milliseconds.
constexpr time_ms day_start_ms = 1'704'067'200'000;
constexpr time_ms minute_ms = 60'000;

backtest_inputs read_csv(const std::string& text, const std::string& name = "load.csv",
                         backtest_read_options options = {})
{
    backtest_inputs inputs;
    diagnostics errors;
    const bool ok = read_csv_text(text, name, options, inputs, errors);
    INFO(errors.to_string());
    REQUIRE(ok);
    return inputs;
}

// The errors of a CSV text that must fail to read, one per line.
std::string csv_errors(const std::string& text, backtest_read_options options = {})
{
    backtest_inputs inputs;
    diagnostics errors;
    CHECK_FALSE(read_csv_text(text, "bad.csv", options, inputs, errors));
    return errors.to_string();
}

std::string json_errors(const std::string& text)
{
    backtest_inputs inputs;
    diagnostics errors;
    CHECK_FALSE(read_prometheus_json_text(text, "bad.json", {}, inputs, errors));
    return errors.to_string();
}

// Rows "YYYY-MM-DD HH:MM:SS,value" one minute apart from 2024-01-01 00:00, one per value.
std::string minute_rows(const std::vector<double>& values)
{
    std::string out = "timestamp,value\n";
    for (std::size_t i = 0; i < values.size(); ++i) {
        out += fmt::format("2024-01-01 {:02}:{:02}:00,{}\n", i / 60, i % 60, values[i]);
    }
    return out;
}

std::shared_ptr<const rule_set> load_rules(const std::string& yaml)
{
    diagnostics diags;
    auto groups = load_rule_text(yaml, "test.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    return make_rule_set(std::move(groups));
}

// Warning above 10 and critical above 30, both held for 2 minutes; a gap of 10 minutes is
// missing data, so one-minute samples never are.
const char* const load_rules_yaml = R"(
groups:
  - name: test
    rules:
      - alert: HighLoad
        expr: load
        for: 2m
        no_data: {timeout: 10m}
        tiers:
          warning: "> 10"
          critical: "> 30"
)";

// 60 one-minute samples with four episodes:
//   minutes 5-9 at 20: pending at 5, firing at 7, resolved at 10 (3 minutes firing);
//   minute 20 at 20: pending only, resolved at 21;
//   minutes 30-49: 20, then 40 from 35 to 44 (critical from 37, back to warning at 45),
//   resolved at 50 (18 minutes firing);
//   minutes 55-59 at 20: firing from 57, still open at the end.
std::vector<double> load_values()
{
    std::vector<double> v(60, 1.0);
    for (int i = 5; i <= 9; ++i) {
        v[i] = 20;
    }
    v[20] = 20;
    for (int i = 30; i <= 49; ++i) {
        v[i] = (i >= 35 && i <= 44) ? 40 : 20;
    }
    for (int i = 55; i <= 59; ++i) {
        v[i] = 20;
    }
    return v;
}

std::string read_file(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// Checks that every element is closed in order and that no '<' or '&' appears unescaped in
// text. Returns the first problem, or "" when the document is well formed.
std::string xml_problem(const std::string& doc)
{
    std::vector<std::string> stack;
    std::size_t pos = 0;
    while (pos < doc.size()) {
        if (doc[pos] == '&') {
            const auto semi = doc.find(';', pos);
            const std::string entity = doc.substr(pos, semi == std::string::npos ? 8 : semi - pos + 1);
            if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" &&
                entity != "&apos;") {
                return "bare & at " + std::to_string(pos);
            }
            pos = semi + 1;
            continue;
        }
        if (doc[pos] != '<') {
            ++pos;
            continue;
        }
        const auto end = doc.find('>', pos);
        if (end == std::string::npos) {
            return "unclosed tag at " + std::to_string(pos);
        }
        const std::string tag = doc.substr(pos + 1, end - pos - 1);
        if (tag.find('<') != std::string::npos) {
            return "'<' inside a tag at " + std::to_string(pos);
        }
        pos = end + 1;
        if (tag.empty() || tag.front() == '?' || tag.front() == '!' || tag.back() == '/') {
            continue;
        }
        const std::size_t name_start = tag.front() == '/' ? 1 : 0;
        const std::string name = tag.substr(name_start, tag.find_first_of(" \n/", 1) - name_start);
        if (tag.front() == '/') {
            if (stack.empty() || stack.back() != name) {
                return "unexpected </" + name + ">";
            }
            stack.pop_back();
        } else {
            stack.push_back(name);
        }
    }
    return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

std::size_t count_of(const std::string& text, const std::string& needle)
{
    std::size_t n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
        ++n;
    }
    return n;
}

} // namespace

TEST_CASE("backtest timestamp forms", "[backtest]")
{
    std::string error;
    std::optional<bool> unit;
    CHECK(parse_sample_timestamp("1704067200", unit, error) == day_start_ms);
    CHECK(unit == false);

    unit.reset();
    CHECK(parse_sample_timestamp("1704067200.25", unit, error) == day_start_ms + 250);

    unit.reset();
    CHECK(parse_sample_timestamp("1704067200123", unit, error) == day_start_ms + 123);
    CHECK(unit == true);

    unit.reset();
    CHECK(parse_sample_timestamp("2024-01-01 00:00:00", unit, error) == day_start_ms);
    CHECK(parse_sample_timestamp("2024-01-01T00:00:00Z", unit, error) == day_start_ms);
    CHECK(parse_sample_timestamp("2024-01-01T02:00:00+02:00", unit, error) == day_start_ms);
    CHECK(parse_sample_timestamp("2023-12-31T19:00:00-0500", unit, error) == day_start_ms);
    CHECK(parse_sample_timestamp("2024-01-01T00:00:01.5Z", unit, error) == day_start_ms + 1500);
    CHECK(parse_sample_timestamp("\"2024-01-01 00:01:00\"", unit, error) == day_start_ms + minute_ms);
    CHECK(parse_sample_timestamp("2024-01-01", unit, error) == day_start_ms);
}

TEST_CASE("backtest timestamp rejects bad forms", "[backtest]")
{
    std::string error;
    std::optional<bool> unit;
    CHECK_FALSE(parse_sample_timestamp("yesterday", unit, error));
    CHECK_THAT(error, Catch::Contains("Unix seconds"));
    CHECK_FALSE(parse_sample_timestamp("2024-02-30 00:00:00", unit, error));
    CHECK_THAT(error, Catch::Contains("no such day"));
    CHECK_FALSE(parse_sample_timestamp("2024-01-01 25:00:00", unit, error));
    CHECK_FALSE(parse_sample_timestamp("2024-01-01T00:00:00 CET", unit, error));
    CHECK_THAT(error, Catch::Contains("time zone"));

    unit = false; // the file started in seconds
    CHECK_FALSE(parse_sample_timestamp("1704067200000", unit, error));
    CHECK_THAT(error, Catch::Contains("one unit"));
}

TEST_CASE("backtest csv reads NAB layout", "[backtest]")
{
    const auto inputs = read_csv("timestamp,value\n2014-04-01 00:00:00,20.0\n2014-04-01 00:05:00,21.5\n",
                                 "/data/realKnownCause/machine-temperature.csv");
    REQUIRE(inputs.series.size() == 1);
    const auto& s = inputs.series[0];
    CHECK(s.labels.metric_name() == "machine_temperature");
    CHECK(s.labels.size() == 1);
    REQUIRE(s.size() == 2);
    CHECK(s.times[0] == 1'396'310'400'000);
    CHECK(s.times[1] - s.times[0] == 5 * minute_ms);
    CHECK(s.values[1] == 21.5);
    CHECK(s.timestamp_text(0) == "2014-04-01 00:00:00");
    CHECK(s.timestamp_text(1) == "2014-04-01 00:05:00");
    CHECK(inputs.samples == 2);
}

TEST_CASE("backtest csv without header in milliseconds", "[backtest]")
{
    backtest_read_options options;
    options.metric = "queue_depth";
    options.labels = {{"job", "worker"}};
    const auto inputs = read_csv("1704067200000,1\r\n1704067260000,NaN\r\n\r\n1704067320000,+Inf\r\n", "7days.csv",
                                 options);
    const auto& s = inputs.series[0];
    CHECK(s.labels.metric_name() == "queue_depth");
    CHECK(s.labels.get("job") == "worker");
    REQUIRE(s.size() == 3);
    CHECK(s.times[0] == day_start_ms);
    CHECK(std::isnan(s.values[1]));
    CHECK(std::isinf(s.values[2]));
    CHECK(s.timestamp_text(2) == "1704067320000");
}

TEST_CASE("backtest csv stem becomes a valid metric name", "[backtest]")
{
    const auto inputs = read_csv("0,1\n", "/x/7-day.cpu load.csv");
    CHECK(inputs.series[0].labels.metric_name() == "_7_day_cpu_load");
}

TEST_CASE("backtest csv errors name file and line", "[backtest]")
{
    CHECK_THAT(csv_errors("timestamp,value\n1704067200,1\n1704067260,abc\n"),
               Catch::Contains("bad.csv:3:12: invalid value \"abc\""));
    CHECK_THAT(csv_errors("1704067200,1\nnot-a-time,2\n"), Catch::Contains("bad.csv:2:1: invalid timestamp"));
    CHECK_THAT(csv_errors("1704067200,1,extra\n"), Catch::Contains("bad.csv:1:1: expected 2 columns"));
    CHECK_THAT(csv_errors("1704067260,1\n1704067200,2\n"), Catch::Contains("bad.csv:2:1: timestamp"));
    CHECK_THAT(csv_errors("1704067260,1\n1704067200,2\n"), Catch::Contains("sort the rows by time"));
    CHECK_THAT(csv_errors("1704067200,1\n1704067200,2\n"), Catch::Contains("repeats the timestamp of line 1"));
    CHECK_THAT(csv_errors("timestamp,value\n\n"), Catch::Contains("no samples"));
    CHECK_THAT(csv_errors("1704067200,1\n1704067260000,2\n"), Catch::Contains("bad.csv:2:1:"));
}

TEST_CASE("backtest csv stops after many errors", "[backtest]")
{
    std::string text;
    for (int i = 0; i < 100; ++i) {
        text += "x,y\n";
    }
    const std::string errors = csv_errors("1,1\n" + text);
    CHECK(count_of(errors, "\n") <= 21);
    CHECK_THAT(errors, Catch::Contains("more than 20 errors"));
}

TEST_CASE("backtest csv skips bad rows when asked", "[backtest]")
{
    backtest_read_options options;
    options.skip_bad_rows = true;
    const auto inputs = read_csv("1704067200,1\n1704067260,oops\n1704067200,3\n1704067320,4\n", "load.csv", options);
    REQUIRE(inputs.series[0].size() == 2);
    CHECK(inputs.series[0].values[1] == 4);
    REQUIRE(inputs.warnings.size() == 2);
    CHECK_THAT(inputs.warnings.to_string(), Catch::Contains("load.csv:2:12: skipped: invalid value"));
    CHECK_THAT(inputs.warnings.to_string(), Catch::Contains("load.csv:3:1: skipped: timestamp"));
}

TEST_CASE("backtest csv sample limit names the line", "[backtest]")
{
    backtest_read_options options;
    options.limits.max_samples = 2;
    const std::string errors = csv_errors("1,1\n2,2\n3,3\n", options);
    CHECK_THAT(errors, Catch::Contains("bad.csv:3:1: more than 2 samples"));
    CHECK_THAT(errors, Catch::Contains("--max-samples"));
}

TEST_CASE("backtest input file size limit", "[backtest]")
{
    test::temp_dir dir;
    const auto path = dir.write("big.csv", "1,1\n2,2\n3,3\n");
    backtest_read_options options;
    options.limits.max_file_bytes = 8;
    backtest_inputs inputs;
    diagnostics errors;
    CHECK_FALSE(read_input_file(path, options, inputs, errors));
    CHECK_THAT(errors.to_string(), Catch::Contains("more than the 8 bytes"));
    CHECK_THAT(errors.to_string(), Catch::Contains("--max-file-bytes"));
}

TEST_CASE("backtest json reads query_range response", "[backtest]")
{
    const std::string text = R"({"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"up","job":"node","instance":"a:9100"},
         "values":[[1704067200,"1"],[1704067215.5,"0"]]},
        {"metric":{"__name__":"up","job":"node","instance":"b:9100"},
         "values":[[1704067200,"NaN"]]}]}})";
    backtest_inputs inputs;
    diagnostics errors;
    backtest_read_options options;
    options.labels = {{"env", "prod"}};
    REQUIRE(read_prometheus_json_text(text, "range.json", options, inputs, errors));
    REQUIRE(inputs.series.size() == 2);
    const auto& a = inputs.series[0];
    CHECK(a.labels.metric_name() == "up");
    CHECK(a.labels.get("instance") == "a:9100");
    CHECK(a.labels.get("env") == "prod");
    REQUIRE(a.size() == 2);
    CHECK(a.times[1] == day_start_ms + 15'500);
    CHECK(a.values[1] == 0);
    CHECK(a.timestamp_text(1) == "1704067215.500");
    CHECK(std::isnan(inputs.series[1].values[0]));
    CHECK(inputs.samples == 3);
}

TEST_CASE("backtest json reads a plain result array", "[backtest]")
{
    const std::string text = R"([{"metric":{"job":"api"},"values":[[1704067200,"2.5"]]}])";
    backtest_inputs inputs;
    diagnostics errors;
    backtest_read_options options;
    options.metric = "latency_seconds";
    REQUIRE(read_prometheus_json_text(text, "api.json", options, inputs, errors));
    CHECK(inputs.series[0].labels.metric_name() == "latency_seconds");
    CHECK(inputs.series[0].values[0] == 2.5);
}

TEST_CASE("backtest json errors", "[backtest]")
{
    CHECK_THAT(json_errors(R"({"status":"error","errorType":"bad_data","error":"parse error"})"),
               Catch::Contains("bad_data: parse error"));
    CHECK_THAT(json_errors(R"({"status":"success","data":{"resultType":"vector","result":[]}})"),
               Catch::Contains("query_range"));
    CHECK_THAT(json_errors(R"([{"metric":{},"values":[[1704067200,"x"]]}])"),
               Catch::Contains("bad.json: [0].values[0][1]: invalid value \"x\""));
    CHECK_THAT(json_errors(R"([{"metric":{},"values":[[1704067260,"1"],[1704067200,"2"]]}])"),
               Catch::Contains("[0].values[1][0]"));
    CHECK_THAT(json_errors(R"([{"metric":{},"histograms":[]}])"), Catch::Contains("native histogram"));
    CHECK_THAT(json_errors("[\n{\"metric\": {},\n \"values\": [[1, \"1\"]\n"), Catch::Contains("bad.json:4:"));
    CHECK_THAT(json_errors("[]"), Catch::Contains("no series"));
    CHECK_THAT(json_errors(R"([{"metric":{},"values":[[1e400,"1"]]}])"),
               Catch::Contains("within the range of a double"));
}

TEST_CASE("backtest input file detects json", "[backtest]")
{
    test::temp_dir dir;
    const auto json_path = dir.write("range.json", R"(  {"status":"success","data":{"resultType":"matrix",
        "result":[{"metric":{"__name__":"up"},"values":[[1704067200,"1"]]}]}})");
    const auto csv_path = dir.write("up.txt", "1704067200,1\n");
    backtest_inputs inputs;
    diagnostics errors;
    CHECK(read_input_file(json_path, {}, inputs, errors));
    CHECK(read_input_file(csv_path, {}, inputs, errors));
    CHECK(errors.empty());
    REQUIRE(inputs.series.size() == 2);
    // The same series from two files is one series twice.
    CHECK_FALSE(check_distinct_series(inputs, errors));
    CHECK_THAT(errors.to_string(), Catch::Contains("also comes from"));
}

TEST_CASE("backtest static rule episodes", "[backtest]")
{
    const auto inputs = read_csv(minute_rows(load_values()));
    const auto result = run_backtest(load_rules(load_rules_yaml), inputs, {});

    CHECK(result.ingest.accepted == 60);
    CHECK(result.evaluations == 60);
    REQUIRE(result.episodes.size() == 4);

    const auto& first = result.episodes[0];
    CHECK(first.active_at == day_start_ms + 5 * minute_ms);
    CHECK(first.fired_at == day_start_ms + 7 * minute_ms);
    CHECK(first.resolved_at == day_start_ms + 10 * minute_ms);
    CHECK(first.peak == severity::warning);
    CHECK(first.value_at_start == 20);

    const auto& pending_only = result.episodes[1];
    CHECK_FALSE(pending_only.fired_at);
    CHECK(pending_only.resolved_at == day_start_ms + 21 * minute_ms);

    const auto& escalated = result.episodes[2];
    CHECK(escalated.fired_at == day_start_ms + 32 * minute_ms);
    CHECK(escalated.resolved_at == day_start_ms + 50 * minute_ms);
    CHECK(escalated.peak == severity::critical);
    REQUIRE(escalated.levels.size() == 3);
    CHECK(escalated.levels[1] == std::pair<time_ms, severity>{day_start_ms + 37 * minute_ms, severity::critical});
    CHECK(escalated.levels[2] == std::pair<time_ms, severity>{day_start_ms + 45 * minute_ms, severity::warning});

    const auto& open = result.episodes[3];
    CHECK(open.fired_at == day_start_ms + 57 * minute_ms);
    CHECK_FALSE(open.resolved_at);
}

TEST_CASE("backtest noise summary", "[backtest]")
{
    const auto inputs = read_csv(minute_rows(load_values()));
    const auto result = run_backtest(load_rules(load_rules_yaml), inputs, {});
    const auto summary = summarize(result, inputs);

    CHECK(summary.span_days == Approx(59.0 / 1440.0));
    REQUIRE(summary.rules.size() == 1);
    const auto& s = summary.rules[0];
    CHECK(s.rule == "HighLoad");
    CHECK(s.series == 1);
    CHECK(s.fired == 3);
    REQUIRE(s.alerts_per_day);
    CHECK(*s.alerts_per_day == Approx(3.0 / (59.0 / 1440.0)));
    // Resolved firing durations are 3 and 18 minutes; the open one is left out.
    CHECK(s.median_firing_ms == (3 + 18) * minute_ms / 2);
    REQUIRE(s.resolved_within_5m_share);
    CHECK(*s.resolved_within_5m_share == Approx(1.0 / 3.0));
    CHECK(s.pending_never_fired == 1);
    CHECK(s.open == 1);
    CHECK(summary.total.fired == 3);

    const std::string text = format_report_text(result, inputs, summary);
    CHECK_THAT(text, Catch::Contains("3 alerts fired"));
    CHECK_THAT(text, Catch::Contains("HighLoad  load  2024-01-01T00:07:00Z -> 2024-01-01T00:10:00Z (3m)  "
                                     "peak=warning  value=20"));
    CHECK_THAT(text, Catch::Contains("2024-01-01T00:57:00Z -> open"));
    CHECK_THAT(text, Catch::Contains("peak=critical"));

    const auto doc = nlohmann::json::parse(format_report_json(result, inputs, summary));
    CHECK(doc["episodes"].size() == 4);
    CHECK(doc["episodes"][0]["fired_at"] == "2024-01-01T00:07:00Z");
    CHECK(doc["episodes"][3]["resolved_at"].is_null());
    CHECK(doc["rules"][0]["fired"] == 3);
    CHECK(doc["rules"][0]["median_firing_ms"] == 630'000);
    CHECK(doc["total"]["pending_never_fired"] == 1);
}

TEST_CASE("backtest notes short no-data timeout", "[backtest]")
{
    const auto inputs = read_csv(minute_rows(load_values()));
    const auto rules = load_rules(R"(
groups:
  - name: test
    rules:
      - alert: HighLoad
        expr: load
        no_data: {timeout: 1m}
        tiers:
          warning: "> 10"
)");
    const auto result = run_backtest(rules, inputs, {});
    const std::string text = format_report_text(result, inputs, summarize(result, inputs));
    CHECK_THAT(text, Catch::Contains("counts a gap of 1m as missing data"));
}

TEST_CASE("backtest notes a rule without series", "[backtest]")
{
    const auto inputs = read_csv(minute_rows(load_values()), "other.csv");
    const auto result = run_backtest(load_rules(load_rules_yaml), inputs, {});
    CHECK(result.traces.empty());
    const std::string text = format_report_text(result, inputs, summarize(result, inputs));
    CHECK_THAT(text, Catch::Contains("rule HighLoad selects none of the input series"));
}

TEST_CASE("backtest merges series in time order", "[backtest]")
{
    // Two series of one metric whose samples interleave; each gets its own alert.
    backtest_inputs inputs = read_csv("1704067200,20\n1704067320,20\n1704067440,20\n", "load.csv");
    backtest_read_options options;
    options.metric = "load";
    options.labels = {{"host", "b"}};
    diagnostics errors;
    REQUIRE(read_csv_text("1704067260,20\n1704067380,20\n1704067500,1\n", "b.csv", options, inputs, errors));
    const auto result = run_backtest(load_rules(load_rules_yaml), inputs, {});
    CHECK(result.ingest.accepted == 6);
    CHECK(result.ingest.rejected == 0);
    REQUIRE(result.episodes.size() == 2);
    CHECK(result.episodes[0].series_index == 0);
    CHECK(result.episodes[0].fired_at == day_start_ms + 2 * minute_ms);
    CHECK(result.episodes[1].series_index == 1);
    CHECK(result.episodes[1].fired_at == day_start_ms + 3 * minute_ms);
    CHECK(result.episodes[1].resolved_at == day_start_ms + 5 * minute_ms);
}

TEST_CASE("backtest samples csv has one row per input row", "[backtest]")
{
    // The timestamps are written as the input wrote them, in three forms.
    std::string text = "timestamp,value\n";
    for (int i = 0; i < 30; ++i) {
        const time_ms t = day_start_ms + i * minute_ms;
        if (i % 3 == 0) {
            text += fmt::format("{},{}\n", t / 1000, i % 10 == 5 ? 20 : 1);
        } else {
            text += fmt::format("{}.000,{}\n", t / 1000, i % 10 == 5 ? 20 : 1);
        }
    }
    const auto inputs = read_csv(text);
    backtest_options options;
    options.keep_evaluations = true;
    const auto result = run_backtest(load_rules(load_rules_yaml), inputs, options);

    test::temp_dir dir;
    std::string error;
    const auto written = write_samples_csv(result, inputs, (dir.path() / "samples").string(), error);
    CHECK(error.empty());
    REQUIRE(written.size() == 1);
    const std::string csv = read_file(written[0]);

    std::vector<std::string> lines;
    std::istringstream in(csv);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    REQUIRE(lines.size() == 31);
    CHECK(lines[0] == "timestamp,value,score,ready,state,severity");
    CHECK(lines[1] == "1704067200,1,,true,inactive,");
    CHECK(lines[2] == "1704067260.000,1,,true,inactive,");
    CHECK(lines[6] == "1704067500.000,20,,true,pending,warning");
    CHECK(lines[7] == "1704067560,1,,true,inactive,");
}

TEST_CASE("backtest samples csv leaves unevaluated rows empty", "[backtest]")
{
    // rate() needs two samples, so the first row has no evaluation.
    const auto inputs = read_csv("1704067200,1\n1704067260,61\n1704067320,121\n", "requests_total.csv");
    const auto rules = load_rules(R"(
groups:
  - name: test
    rules:
      - alert: Busy
        expr: rate(requests_total[5m])
        tiers:
          warning: "> 100"
)");
    backtest_options options;
    options.keep_evaluations = true;
    const auto result = run_backtest(rules, inputs, options);
    test::temp_dir dir;
    std::string error;
    const auto written = write_samples_csv(result, inputs, dir.path().string(), error);
    REQUIRE(written.size() == 1);
    const std::string csv = read_file(written[0]);
    CHECK_THAT(csv, Catch::Contains("\n1704067200,,,,,\n"));
    CHECK(count_of(csv, "\n") == 4);
}

TEST_CASE("backtest chart shows values, tiers and alerts", "[backtest]")
{
    backtest_read_options options;
    options.metric = "load";
    options.labels = {{"host", "a<b&c"}};
    const auto inputs = read_csv(minute_rows(load_values()), "load.csv", options);
    backtest_options run_options;
    run_options.keep_evaluations = true;
    const auto result = run_backtest(load_rules(load_rules_yaml), inputs, run_options);

    test::temp_dir dir;
    std::string error;
    const auto written = write_charts(result, inputs, (dir.path() / "charts").string(), error);
    CHECK(error.empty());
    REQUIRE(written.size() == 1);
    CHECK(std::filesystem::path(written[0]).extension() == ".svg");
    const std::string svg = read_file(written[0]);

    CHECK(svg.rfind("<?xml", 0) == 0);
    CHECK_THAT(svg, Catch::Contains("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\""));
    CHECK(xml_problem(svg).empty());
    CHECK_THAT(svg, Catch::Contains("a&lt;b&amp;c"));
    CHECK_THAT(svg, !Catch::Contains("a<b&c"));
    CHECK_THAT(svg, !Catch::Contains("<script"));
    CHECK_THAT(svg, Catch::Contains("<path d=\"M"));
    CHECK_THAT(svg, Catch::Contains("warning &gt; 10"));
    CHECK_THAT(svg, Catch::Contains("critical &gt; 30"));
    CHECK_THAT(svg, Catch::Contains("<title>firing: warning</title>"));
    CHECK_THAT(svg, Catch::Contains("<title>firing: critical</title>"));
    CHECK_THAT(svg, Catch::Contains("<title>pending</title>"));
    CHECK_THAT(svg, Catch::Contains(">00:30</text>"));
}

TEST_CASE("backtest chart of a dynamic rule", "[backtest]")
{
    // A steady series with noise and a jump at minute 150; mean_sigma over an hour.
    std::vector<double> values;
    for (int i = 0; i < 200; ++i) {
        values.push_back((i >= 150 && i < 160 ? 60.0 : 50.0) + (i % 5) * 0.5);
    }
    const auto inputs = read_csv(minute_rows(values), "queue_depth.csv");

    auto r = std::make_shared<rule>();
    r->name = "QueueAnomaly";
    r->group = "test";
    r->expr = "queue_depth";
    r->metric = "queue_depth";
    detector_spec spec;
    spec.kind = detector_kind::mean_sigma;
    spec.window = std::chrono::hours(1);
    spec.min_samples = 30;
    spec.side = direction::both;
    r->dynamic = spec;
    r->no_data.timeout = std::chrono::minutes(10);
    r->tiers.push_back(tier{severity::warning, condition{compare_op::greater, 3}, std::nullopt, {}, {}});
    r->definition_hash = definition_hash_of(*r);
    auto set = std::make_shared<rule_set>();
    set->groups.push_back(rule_group{"test", "", {r}});
    set->rules = {r};

    backtest_options options;
    options.keep_evaluations = true;
    const auto result = run_backtest(set, inputs, options);
    REQUIRE(result.traces.size() == 1);
    const auto& evals = result.traces[0].evaluations;
    REQUIRE(evals.size() == 200);
    CHECK_FALSE(evals.front().ready);
    CHECK(evals.back().ready);
    REQUIRE_FALSE(result.episodes.empty());
    CHECK(result.episodes[0].fired_at == day_start_ms + 150 * minute_ms);
    REQUIRE(result.episodes[0].detector_at_start);
    CHECK(result.episodes[0].detector_at_start->score > 3);

    const std::string svg = render_binding_chart(result, inputs, result.traces[0]);
    CHECK(xml_problem(svg).empty());
    CHECK_THAT(svg, Catch::Contains("<polygon"));
    CHECK_THAT(svg, Catch::Contains(">baseline</text>"));
    CHECK_THAT(svg, Catch::Contains("<title>warming up</title>"));
    CHECK_THAT(svg, Catch::Contains("mean_sigma detector"));

    const std::string text = format_report_text(result, inputs, summarize(result, inputs));
    CHECK_THAT(text, Catch::Contains("baseline="));
    CHECK_THAT(text, Catch::Contains("score="));
}

TEST_CASE("svg downsampling keeps a spike", "[backtest]")
{
    std::vector<time_ms> times;
    std::vector<double> values;
    for (int i = 0; i < 100'000; ++i) {
        times.push_back(i * 1000LL);
        values.push_back(i == 54'321 ? 1e6 : 1.0);
    }
    const auto picked = downsample_min_max(times, values, times.front(), times.back(), 500);
    CHECK(picked.size() <= 500 * 5);
    CHECK(std::is_sorted(picked.begin(), picked.end()));
    CHECK(std::find(picked.begin(), picked.end(), 54'321u) != picked.end());

    // Few points are all kept.
    const auto all = downsample_min_max({0, 1, 2}, {1, 2, 3}, 0, 2, 500);
    CHECK(all.size() == 3);
}

TEST_CASE("svg ticks are round", "[backtest]")
{
    const auto ticks = nice_value_ticks(0.13, 0.97, 7);
    REQUIRE_FALSE(ticks.empty());
    CHECK(ticks.front() == Approx(0.2));
    CHECK(ticks[1] - ticks[0] == Approx(0.2));

    const auto hours = nice_time_ticks(day_start_ms, day_start_ms + 6 * 3'600'000, 8);
    REQUIRE(hours.labels.size() == 7);
    CHECK(hours.labels[0] == "00:00");
    CHECK(hours.labels[1] == "01:00");

    const auto days = nice_time_ticks(day_start_ms, day_start_ms + 14 * 86'400'000LL, 8);
    REQUIRE_FALSE(days.labels.empty());
    CHECK(days.labels[0] == "2024-01-01");
}

TEST_CASE("svg escapes text", "[backtest]")
{
    CHECK(svg_escape("a<b&c>\"d'") == "a&lt;b&amp;c&gt;&quot;d&apos;");
    CHECK(svg_escape(std::string("x\x01y")) == "x y");
}

TEST_CASE("backtest notes a dynamic rule that never warms up", "[backtest]")
{
    // 200 hourly values against a 1h window: the baseline never holds 30 samples.
    std::vector<double> values(200, 5.0);
    std::string rows = "timestamp,value\n";
    for (std::size_t i = 0; i < values.size(); ++i) {
        rows += std::to_string(1'700'000'000 + static_cast<std::int64_t>(i) * 3600) + ",5\n";
    }
    const auto inputs = read_csv(rows, "load.csv");
    const auto rules = load_rules(R"(
groups:
  - name: test
    rules:
      - alert: LoadAnomaly
        expr: load
        no_data: {timeout: 3h}
        dynamic: {type: mean_sigma, window: 1h, k: 3}
)");
    const auto result = run_backtest(rules, inputs, {});
    REQUIRE(result.traces.size() == 1);
    CHECK(result.traces[0].evaluated == 200);
    CHECK(result.traces[0].warming_up == 200);
    const std::string text = format_report_text(result, inputs, summarize(result, inputs));
    CHECK_THAT(text, Catch::Contains("rule LoadAnomaly never finished warming up on"));
    CHECK_THAT(text, Catch::Contains("held at most 1 of the 30 samples it needs"));
}
