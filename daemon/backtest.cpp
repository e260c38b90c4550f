#include "daemon/backtest.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <system_error>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "daemon/config.hpp"
#include "daemon/svg_chart.hpp"
#include "rules/duration.hpp"
#include "rules/file_read.hpp"
#include "rules/rule_loader.hpp"

namespace tocsin {

namespace {

// Errors reported per file before the reader gives up on it, and skipped rows reported one by
// one before only their count is.
constexpr std::size_t max_errors_per_file = 20;
constexpr std::size_t max_skip_warnings_per_file = 10;

constexpr std::int64_t five_minutes_ms = 5 * 60 * 1000;
constexpr double ms_per_day = 86'400'000.0;

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

std::string_view unquote(std::string_view s)
{
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
        s = s.substr(1, s.size() - 2);
    }
    return trim(s);
}

// Parses a whole decimal number, including "NaN", "+Inf" and "-Inf" as Prometheus writes them.
bool parse_number(std::string_view text, double& out)
{
    text = trim(text);
    if (!text.empty() && text.front() == '+') {
        text.remove_prefix(1);
    }
    if (text.empty() || text.front() == '+') {
        return false;
    }
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && end == text.data() + text.size();
}

std::string sanitize_metric_name(std::string_view stem)
{
    std::string out;
    for (char ch : stem) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                        ch == '_' || ch == ':';
        out += ok ? ch : '_';
    }
    if (out.empty()) {
        return "series";
    }
    if (out.front() >= '0' && out.front() <= '9') {
        out.insert(out.begin(), '_');
    }
    return out;
}

std::string file_stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

// The series labels: `metric` from the options, else `name` from the input, else the file
// stem as a metric name; then the --label pairs.
label_set make_series_labels(std::vector<label> labels, const std::string& file_name,
                             const backtest_read_options& options)
{
    std::string name;
    for (const auto& l : labels) {
        if (l.name == "__name__") {
            name = l.value;
        }
    }
    if (!options.metric.empty()) {
        name = options.metric;
    } else if (name.empty()) {
        name = sanitize_metric_name(file_stem(file_name));
    }
    labels.push_back(label{"__name__", name});
    for (const auto& l : options.labels) {
        labels.push_back(l);
    }
    // label_set keeps the last value of a repeated name, so --label and --metric win.
    return label_set(std::move(labels));
}

// Collects the errors of one file and stops the reader after max_errors_per_file.
class file_errors {
public:
    file_errors(const std::string& file, diagnostics& errors) : file_(file), errors_(errors) {}

    // Returns false once the reader must stop.
    bool add(int line, int column, std::string message)
    {
        ++count_;
        if (count_ > max_errors_per_file) {
            errors_.add(file_, 0, 0,
                        fmt::format("more than {} errors; fix these and run again", max_errors_per_file));
            return false;
        }
        errors_.add(file_, line, column, std::move(message));
        return true;
    }
    bool any() const { return count_ > 0; }

private:
    const std::string& file_;
    diagnostics& errors_;
    std::size_t count_ = 0;
};

// Counts the rows skipped under skip_bad_rows, reporting the first ones.
class skipped_rows {
public:
    skipped_rows(const std::string& file, diagnostics& warnings) : file_(file), warnings_(warnings) {}
    ~skipped_rows()
    {
        if (count_ > max_skip_warnings_per_file) {
            warnings_.add(file_, 0, 0,
                          fmt::format("skipped {} bad rows in all; only the first {} are listed", count_,
                                      max_skip_warnings_per_file));
        }
    }
    skipped_rows(const skipped_rows&) = delete;
    skipped_rows& operator=(const skipped_rows&) = delete;

    void add(int line, int column, const std::string& message)
    {
        ++count_;
        if (count_ <= max_skip_warnings_per_file) {
            warnings_.add(file_, line, column, "skipped: " + message);
        }
    }

private:
    const std::string& file_;
    diagnostics& warnings_;
    std::size_t count_ = 0;
};

std::string too_many_samples(const backtest_read_options& options)
{
    return fmt::format("more than {} samples in all inputs; raise --max-samples or shorten the inputs",
                       options.limits.max_samples);
}

bool series_limit_reached(const backtest_inputs& into, const backtest_read_options& options)
{
    return into.series.size() >= options.limits.max_series;
}

std::string too_many_series(const backtest_read_options& options)
{
    return fmt::format("more than {} series in all inputs; raise --max-series or split the backtest",
                       options.limits.max_series);
}

std::string describe_order_problem(time_ms t, time_ms previous, int previous_line)
{
    if (t == previous) {
        return fmt::format("timestamp {} repeats the timestamp of line {}; remove the duplicate row",
                           format_rfc3339(t), previous_line);
    }
    return fmt::format("timestamp {} is before {} on line {}; sort the rows by time", format_rfc3339(t),
                       format_rfc3339(previous), previous_line);
}

} // namespace

std::string recorded_series::timestamp_text(std::size_t i) const
{
    if (i < time_text_end.size()) {
        const std::size_t begin = i == 0 ? 0 : time_text_end[i - 1];
        return time_text.substr(begin, time_text_end[i] - begin);
    }
    const time_ms t = times[i];
    if (t % 1000 == 0) {
        return fmt::format("{}", t / 1000);
    }
    return fmt::format("{:.3f}", static_cast<double>(t) / 1000.0);
}

bool read_csv_text(std::string_view text, const std::string& file_name, const backtest_read_options& options,
                   backtest_inputs& into, diagnostics& errors)
{
    if (series_limit_reached(into, options)) {
        errors.add(file_name, 0, 0, too_many_series(options));
        return false;
    }
    recorded_series series;
    series.source = file_name;
    file_errors file_errs(file_name, errors);
    skipped_rows skipped(file_name, into.warnings);
    std::optional<bool> unit_ms;
    bool first_row = true;
    int previous_line = 0;
    int line_number = 0;

    // A bad row is an error, or a warning under skip_bad_rows. Returns false to stop reading.
    auto bad_row = [&](int line, int column, std::string message) {
        if (options.skip_bad_rows) {
            skipped.add(line, column, message);
            return true;
        }
        return file_errs.add(line, column, std::move(message));
    };

    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t newline = text.find('\n', pos);
        const std::string_view raw =
            text.substr(pos, newline == std::string_view::npos ? std::string_view::npos : newline - pos);
        pos = newline == std::string_view::npos ? text.size() : newline + 1;
        ++line_number;
        const std::string_view line = trim(raw);
        if (line.empty()) {
            continue;
        }

        std::vector<std::string_view> fields;
        std::size_t start = 0;
        for (;;) {
            const std::size_t comma = line.find(',', start);
            fields.push_back(trim(line.substr(start, comma == std::string_view::npos ? std::string_view::npos
                                                                                      : comma - start)));
            if (comma == std::string_view::npos) {
                break;
            }
            start = comma + 1;
        }

        // 1-based columns of the fields, for the error positions.
        const auto column_of = [&](std::size_t field) {
            return static_cast<int>(fields[field].data() - raw.data()) + 1;
        };
        double value = 0;
        const bool value_ok = fields.size() >= 2 && parse_number(unquote(fields[1]), value);
        if (first_row) {
            first_row = false;
            // A header names the columns, so its value field is not a number.
            if (fields.size() >= 2 && !value_ok) {
                continue;
            }
        }
        if (fields.size() != 2) {
            if (!bad_row(line_number, 1, fmt::format("expected 2 columns, timestamp,value, got {}; keep only those "
                                                  "columns (for example with cut -d, -f1,2)",
                                                  fields.size()))) {
                return false;
            }
            continue;
        }
        std::string error;
        const auto t = parse_sample_timestamp(fields[0], unit_ms, error);
        if (!t) {
            if (!bad_row(line_number, column_of(0), error)) {
                return false;
            }
            continue;
        }
        if (!value_ok) {
            const std::string message = fmt::format(
                "invalid value \"{}\"; expected a number such as 20.5, NaN, +Inf or -Inf", unquote(fields[1]));
            if (!bad_row(line_number, column_of(1), message)) {
                return false;
            }
            continue;
        }
        if (!series.times.empty() && *t <= series.times.back()) {
            if (!bad_row(line_number, column_of(0), describe_order_problem(*t, series.times.back(), previous_line))) {
                return false;
            }
            continue;
        }
        if (into.samples + series.size() >= options.limits.max_samples) {
            file_errs.add(line_number, 1, too_many_samples(options));
            return false;
        }
        if (series.time_text.size() + fields[0].size() > std::numeric_limits<std::uint32_t>::max()) {
            file_errs.add(line_number, 1, "more than 4 GiB of timestamp text; split the file");
            return false;
        }
        series.times.push_back(*t);
        series.values.push_back(value);
        series.time_text.append(fields[0]);
        series.time_text_end.push_back(static_cast<std::uint32_t>(series.time_text.size()));
        previous_line = line_number;
    }

    if (file_errs.any()) {
        return false;
    }
    if (series.times.empty()) {
        errors.add(file_name, 0, 0, "no samples; expected rows of timestamp,value such as 2014-04-01 00:00:00,20.0");
        return false;
    }
    series.labels = make_series_labels({}, file_name, options);
    into.samples += series.size();
    into.series.push_back(std::move(series));
    return true;
}

namespace {

// Reads one result object ({"metric":{...},"values":[[t,"v"],...]}) at JSON path `path`.
bool read_json_result(const nlohmann::json& result, const std::string& path, const std::string& file_name,
                      const backtest_read_options& options, backtest_inputs& into, file_errors& file_errs,
                      skipped_rows& skipped)
{
    if (!result.is_object()) {
        file_errs.add(0, 0, fmt::format("{}: expected an object with \"metric\" and \"values\"", path));
        return false;
    }
    std::vector<label> labels;
    if (const auto metric = result.find("metric"); metric != result.end()) {
        if (!metric->is_object()) {
            file_errs.add(0, 0, fmt::format("{}.metric: expected an object of label names and values", path));
            return false;
        }
        for (const auto& [name, value] : metric->items()) {
            if (!value.is_string() || name.empty()) {
                file_errs.add(0, 0, fmt::format("{}.metric.{}: expected a label with a string value", path, name));
                return false;
            }
            labels.push_back(label{name, value.get<std::string>()});
        }
    }
    const auto values = result.find("values");
    if (values == result.end()) {
        const bool histograms = result.contains("histograms");
        file_errs.add(0, 0, histograms ? fmt::format("{}: native histogram samples are not supported; query a float "
                                                  "series, for example with histogram_quantile()",
                                                  path)
                                    : fmt::format("{}: missing \"values\"; expected the output of a range query "
                                                  "(/api/v1/query_range)",
                                                  path));
        return false;
    }
    if (!values->is_array()) {
        file_errs.add(0, 0, fmt::format("{}.values: expected an array of [timestamp, \"value\"] pairs", path));
        return false;
    }
    if (series_limit_reached(into, options)) {
        file_errs.add(0, 0, fmt::format("{}: {}", path, too_many_series(options)));
        return false;
    }

    recorded_series series;
    series.source = file_name;
    std::size_t index = 0;
    for (const auto& pair : *values) {
        const std::string at = fmt::format("{}.values[{}]", path, index++);
        double value = 0;
        std::string problem;
        if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number()) {
            problem = fmt::format("{}: expected [timestamp in Unix seconds, \"value\"]", at);
        } else if (!((pair[1].is_string() && parse_number(pair[1].get<std::string>(), value)) ||
                     (pair[1].is_number() && (value = pair[1].get<double>(), true)))) {
            problem = fmt::format("{}[1]: invalid value {}; expected a number as a string, such as \"1.5\"", at,
                                  pair[1].dump());
        }
        time_ms t = 0;
        if (problem.empty()) {
            const double seconds = pair[0].get<double>();
            if (!std::isfinite(seconds) || !(std::fabs(seconds * 1000.0) < static_cast<double>(timestamp_bound_ms))) {
                problem = fmt::format("{}[0]: timestamp {} is out of range; expected Unix seconds", at, pair[0].dump());
            } else {
                t = static_cast<time_ms>(std::llround(seconds * 1000.0));
                if (!series.times.empty() && t <= series.times.back()) {
                    problem = fmt::format("{}[0]: timestamp {} is not after the previous sample's; sort the values "
                                          "by time and remove duplicates",
                                          at, format_rfc3339(t));
                }
            }
        }
        if (!problem.empty()) {
            if (options.skip_bad_rows) {
                skipped.add(0, 0, problem);
                continue;
            }
            file_errs.add(0, 0, problem);
            return false;
        }
        if (into.samples + series.size() >= options.limits.max_samples) {
            file_errs.add(0, 0, fmt::format("{}: {}", at, too_many_samples(options)));
            return false;
        }
        series.times.push_back(t);
        series.values.push_back(value);
    }
    if (series.times.empty()) {
        skipped.add(0, 0, fmt::format("{}: a series without samples", path));
        return true;
    }
    series.labels = make_series_labels(std::move(labels), file_name, options);
    into.samples += series.size();
    into.series.push_back(std::move(series));
    return true;
}

} // namespace

bool read_prometheus_json_text(std::string_view text, const std::string& file_name,
                               const backtest_read_options& options, backtest_inputs& into, diagnostics& errors)
{
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        // Turn the byte offset into a line and column.
        const std::size_t offset = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
        int line = 1;
        std::size_t line_start = 0;
        for (std::size_t i = 0; i < offset; ++i) {
            if (text[i] == '\n') {
                ++line;
                line_start = i + 1;
            }
        }
        // what() repeats the position after a "[json.exception...] parse error at line L, column C: "
        // prefix; the diagnostic already carries the position.
        std::string_view reason = e.what();
        if (const auto colon = reason.find("column "); colon != std::string_view::npos) {
            if (const auto rest = reason.find(": ", colon); rest != std::string_view::npos) {
                reason.remove_prefix(rest + 2);
            }
        }
        errors.add(file_name, line, static_cast<int>(offset - line_start + 1),
                   fmt::format("invalid JSON: {}; expected a Prometheus query_range response", reason));
        return false;
    } catch (const nlohmann::json::exception& e) {
        // out_of_range for a number beyond double, such as 1e400.
        errors.add(file_name, 1, 1,
                   fmt::format("invalid JSON ({}); expected a Prometheus query_range response with numbers within "
                               "the range of a double",
                               e.what()));
        return false;
    }

    file_errors file_errs(file_name, errors);
    skipped_rows skipped(file_name, into.warnings);
    const nlohmann::json* results = nullptr;
    std::string prefix;
    if (doc.is_array()) {
        results = &doc;
    } else if (doc.is_object()) {
        const std::string status = doc.value("status", std::string{});
        if (status == "error") {
            errors.add(file_name, 0, 0,
                       fmt::format("the file is a Prometheus error response ({}: {}); fix the query and fetch again",
                                   doc.value("errorType", std::string{"unknown"}),
                                   doc.value("error", std::string{"no message"})));
            return false;
        }
        const auto data = doc.find("data");
        if (status != "success" || data == doc.end() || !data->is_object()) {
            errors.add(file_name, 0, 0,
                       "expected a Prometheus API response {\"status\":\"success\",\"data\":{...}} or an array of "
                       "result objects");
            return false;
        }
        const std::string type = data->value("resultType", std::string{});
        if (type != "matrix") {
            errors.add(file_name, 0, 0,
                       fmt::format("data.resultType is \"{}\"; a backtest needs a range of samples, the \"matrix\" "
                                   "that /api/v1/query_range returns",
                                   type));
            return false;
        }
        const auto result = data->find("result");
        if (result == data->end() || !result->is_array()) {
            errors.add(file_name, 0, 0, "data.result: expected an array of series");
            return false;
        }
        results = &*result;
        prefix = "data.result";
    } else {
        errors.add(file_name, 0, 0, "expected a JSON object or array");
        return false;
    }

    const std::size_t before = into.series.size();
    for (std::size_t i = 0; i < results->size(); ++i) {
        const std::string path = fmt::format("{}[{}]", prefix, i);
        if (!read_json_result((*results)[i], path, file_name, options, into, file_errs, skipped)) {
            return false;
        }
    }
    if (into.series.size() == before) {
        errors.add(file_name, 0, 0, "no series with samples; check the query and its time range");
        return false;
    }
    return !file_errs.any();
}

bool read_input_file(const std::string& path, const backtest_read_options& options, backtest_inputs& into,
                     diagnostics& errors)
{
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!ec && std::filesystem::is_regular_file(status)) {
        const auto size = std::filesystem::file_size(path, ec);
        if (!ec && size > options.limits.max_file_bytes) {
            errors.add(path, 0, 0,
                       fmt::format("the file is {} bytes, more than the {} bytes an input may have; raise "
                                   "--max-file-bytes or cut the time range",
                                   size, options.limits.max_file_bytes));
            return false;
        }
    }
    std::string content;
    std::string error;
    if (!read_regular_file(path, options.limits.max_file_bytes, content, error)) {
        errors.add(path, 0, 0, fmt::format("cannot read the input: {}", error));
        return false;
    }
    const auto first = content.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && (content[first] == '{' || content[first] == '[')) {
        return read_prometheus_json_text(content, path, options, into, errors);
    }
    return read_csv_text(content, path, options, into, errors);
}

bool check_distinct_series(const backtest_inputs& inputs, diagnostics& errors)
{
    std::unordered_map<std::uint64_t, std::size_t> seen;
    bool ok = true;
    for (std::size_t i = 0; i < inputs.series.size(); ++i) {
        const auto& s = inputs.series[i];
        const auto [it, inserted] = seen.emplace(s.labels.fingerprint(), i);
        if (!inserted && inputs.series[it->second].labels == s.labels) {
            errors.add(s.source, 0, 0,
                       fmt::format("the series {} also comes from {}; one series must come from one input, so "
                                   "drop --metric (each CSV file is then named after its file) or run the "
                                   "inputs in separate backtests",
                                   s.labels.to_string(), inputs.series[it->second].source));
            ok = false;
        }
    }
    return ok;
}

// -- runner ------------------------------------------------------------------------------

namespace {

evaluation_record to_record(const evaluation& e)
{
    evaluation_record rec;
    rec.at = e.at;
    rec.value = e.value;
    rec.state = e.state;
    rec.level = e.level;
    if (e.detector) {
        rec.dynamic = true;
        rec.ready = e.detector->ready;
        rec.score = e.detector->score;
        rec.baseline = e.detector->baseline;
        rec.scale = e.detector->scale;
    }
    return rec;
}

detector_output to_detector_output(const evaluation_record& rec)
{
    detector_output out;
    out.ready = rec.ready;
    out.score = rec.score;
    out.baseline = rec.baseline;
    out.scale = rec.scale;
    return out;
}

// Follows the engine's events and the observer's evaluations during a run.
class backtest_run {
public:
    backtest_run(backtest_result& result, const backtest_inputs& inputs, const backtest_options& options)
        : result_(result), inputs_(inputs), options_(options)
    {
        const auto& rules = result_.rules->rules;
        for (std::size_t r = 0; r < rules.size(); ++r) {
            rule_by_pointer_.emplace(rules[r].get(), r);
            rule_by_name_.emplace(rules[r]->name, r);
        }
        for (std::size_t s = 0; s < inputs_.series.size(); ++s) {
            series_by_fingerprint_.emplace(inputs_.series[s].labels.fingerprint(), s);
        }
        // One trace per (rule, series) the rule selects, so a chart exists even for a pair the
        // engine never evaluated.
        for (std::size_t r = 0; r < rules.size(); ++r) {
            for (std::size_t s = 0; s < inputs_.series.size(); ++s) {
                if (rules[r]->selects(inputs_.series[s].labels)) {
                    trace_by_pair_.emplace(pair_key(r, s), result_.traces.size());
                    result_.traces.push_back(binding_trace{r, s, {}, 0, 0, 0});
                    last_.emplace_back();
                }
            }
        }
    }

    void observe(const evaluation& e)
    {
        ++result_.evaluations;
        const auto rule_it = rule_by_pointer_.find(e.def);
        const auto series_it = series_by_fingerprint_.find(e.series_fingerprint);
        if (rule_it == rule_by_pointer_.end() || series_it == series_by_fingerprint_.end()) {
            return;
        }
        const auto trace_it = trace_by_pair_.find(pair_key(rule_it->second, series_it->second));
        if (trace_it == trace_by_pair_.end()) {
            return;
        }
        const evaluation_record rec = to_record(e);
        last_[trace_it->second] = rec;
        binding_trace& trace = result_.traces[trace_it->second];
        ++trace.evaluated;
        if (rec.dynamic && !rec.ready) {
            ++trace.warming_up;
        }
        if (e.detector) {
            trace.baseline_samples = std::max(trace.baseline_samples, e.detector->samples);
        }
        if (options_.keep_evaluations) {
            result_.traces[trace_it->second].evaluations.push_back(rec);
        }
    }

    // Folds the engine's events, taken at sample time `now`, into episodes.
    void apply(const std::vector<alert_event>& events, time_ms now)
    {
        for (const auto& event : events) {
            const auto rule_it = rule_by_name_.find(event.alert.rule_name);
            const auto series_it = series_by_fingerprint_.find(event.record.series.fingerprint());
            // The per-rule limit meta-alert has no series of the input; it is left out.
            if (rule_it == rule_by_name_.end() || series_it == series_by_fingerprint_.end()) {
                continue;
            }
            apply_one(event, rule_it->second, series_it->second, now);
        }
    }

private:
    static std::uint64_t pair_key(std::size_t r, std::size_t s)
    {
        return (static_cast<std::uint64_t>(r) << 32) | static_cast<std::uint64_t>(s);
    }

    alert_episode& open_episode(const alert_event& event, std::size_t r, std::size_t s)
    {
        const auto it = open_.find(event.alert.id);
        if (it != open_.end()) {
            return result_.episodes[it->second];
        }
        alert_episode ep;
        ep.rule_index = r;
        ep.series_index = s;
        ep.no_data = event.alert.no_data;
        ep.active_at = event.alert.active_at;
        open_.emplace(event.alert.id, result_.episodes.size());
        result_.episodes.push_back(std::move(ep));
        return result_.episodes.back();
    }

    void apply_one(const alert_event& event, std::size_t r, std::size_t s, time_ms now)
    {
        const alert_snapshot& alert = event.alert;
        switch (event.what) {
        case alert_event::kind::pending: open_episode(event, r, s); break;
        case alert_event::kind::firing: {
            alert_episode& ep = open_episode(event, r, s);
            if (ep.fired_at) {
                break;
            }
            ep.fired_at = alert.fired_at != 0 ? alert.fired_at : now;
            ep.peak = alert.level;
            ep.levels.emplace_back(*ep.fired_at, alert.level);
            ep.value_at_start = alert.value;
            if (alert.explanation) {
                ep.detector_at_start = alert.explanation;
            } else if (const auto trace = trace_by_pair_.find(pair_key(r, s)); trace != trace_by_pair_.end()) {
                const auto& last = last_[trace->second];
                if (last && last->dynamic && last->at == *ep.fired_at) {
                    ep.detector_at_start = to_detector_output(*last);
                }
            }
            break;
        }
        case alert_event::kind::severity_changed: {
            alert_episode& ep = open_episode(event, r, s);
            if (ep.fired_at && alert.state == alert_state::firing) {
                ep.peak = std::max(ep.peak, alert.level);
                ep.levels.emplace_back(now, alert.level);
            }
            break;
        }
        case alert_event::kind::updated: break;
        case alert_event::kind::resolved: {
            const auto it = open_.find(alert.id);
            if (it == open_.end()) {
                break;
            }
            alert_episode& ep = result_.episodes[it->second];
            ep.resolved_at = alert.resolved_at != 0 ? alert.resolved_at : now;
            ep.resolve_reason = alert.reason;
            open_.erase(it);
            break;
        }
        }
    }

    backtest_result& result_;
    const backtest_inputs& inputs_;
    const backtest_options& options_;
    std::unordered_map<const rule*, std::size_t> rule_by_pointer_;
    std::unordered_map<std::string, std::size_t> rule_by_name_;
    std::unordered_map<std::uint64_t, std::size_t> series_by_fingerprint_;
    std::unordered_map<std::uint64_t, std::size_t> trace_by_pair_;
    std::vector<std::optional<evaluation_record>> last_; // per trace: the latest evaluation
    std::unordered_map<std::uint64_t, std::size_t> open_; // alert id -> episode index
};

// The next sample of one series in the time-ordered merge. Ties go to the lower series
// index, so a run is deterministic.
struct merge_cursor {
    time_ms at;
    std::size_t series;
    std::size_t index;
    bool operator>(const merge_cursor& other) const
    {
        return at != other.at ? at > other.at : series > other.series;
    }
};

} // namespace

backtest_result run_backtest(std::shared_ptr<const rule_set> rules, const backtest_inputs& inputs,
                             const backtest_options& options)
{
    backtest_result result;
    result.rules = rules;
    backtest_run run(result, inputs, options);

    std::priority_queue<merge_cursor, std::vector<merge_cursor>, std::greater<>> queue;
    std::vector<std::vector<label_view>> views(inputs.series.size());
    result.first_sample_at = std::numeric_limits<time_ms>::max();
    result.last_sample_at = std::numeric_limits<time_ms>::min();
    for (std::size_t s = 0; s < inputs.series.size(); ++s) {
        const auto& series = inputs.series[s];
        for (const auto& l : series.labels.items()) {
            views[s].push_back(label_view{l.name, l.value});
        }
        if (!series.times.empty()) {
            queue.push(merge_cursor{series.times.front(), s, 0});
            result.first_sample_at = std::min(result.first_sample_at, series.times.front());
            result.last_sample_at = std::max(result.last_sample_at, series.times.back());
        }
    }
    if (queue.empty()) {
        result.first_sample_at = 0;
        result.last_sample_at = 0;
        return result;
    }

    manual_clock clock(result.first_sample_at);
    engine eng(rules, options.limits, clock);
    eng.set_observer([&run](const evaluation& e) { run.observe(e); });

    while (!queue.empty()) {
        const merge_cursor next = queue.top();
        queue.pop();
        if (next.at != clock.now_ms()) {
            // The daemon ticks about once a second; here the clock jumps from sample to sample,
            // and no-data timers are checked at each jump.
            clock.set_ms(next.at);
            eng.tick();
            run.apply(eng.take_events(), next.at);
        }
        const auto& series = inputs.series[next.series];
        const ingest_status status = eng.ingest(views[next.series], next.at, series.values[next.index]);
        if (status == ingest_status::accepted) {
            ++result.ingest.accepted;
        } else {
            ++result.ingest.rejected;
        }
        run.apply(eng.take_events(), next.at);
        if (next.index + 1 < series.times.size()) {
            queue.push(merge_cursor{series.times[next.index + 1], next.series, next.index + 1});
        }
    }
    return result;
}

// -- summary -----------------------------------------------------------------------------

namespace {

std::optional<std::int64_t> median_of(std::vector<std::int64_t> values)
{
    if (values.empty()) {
        return std::nullopt;
    }
    std::sort(values.begin(), values.end());
    const std::size_t mid = values.size() / 2;
    if (values.size() % 2 == 1) {
        return values[mid];
    }
    return values[mid - 1] + (values[mid] - values[mid - 1]) / 2;
}

// Adds up the episodes selected by `keep` into one summary.
noise_summary summarize_episodes(const backtest_result& result, double span_days,
                                 const std::function<bool(const alert_episode&)>& keep)
{
    noise_summary out;
    std::vector<std::int64_t> durations;
    std::size_t quick = 0;
    for (const auto& ep : result.episodes) {
        if (!keep(ep)) {
            continue;
        }
        if (!ep.fired_at) {
            ++(ep.resolved_at ? out.pending_never_fired : out.still_pending);
            continue;
        }
        ++out.fired;
        if (!ep.resolved_at) {
            ++out.open;
            continue;
        }
        const std::int64_t duration = *ep.resolved_at - *ep.fired_at;
        durations.push_back(duration);
        if (duration <= five_minutes_ms) {
            ++quick;
        }
    }
    if (span_days > 0) {
        out.alerts_per_day = static_cast<double>(out.fired) / span_days;
    }
    out.median_firing_ms = median_of(std::move(durations));
    if (out.fired > 0) {
        out.resolved_within_5m_share = static_cast<double>(quick) / static_cast<double>(out.fired);
    }
    return out;
}

} // namespace

backtest_summary summarize(const backtest_result& result, const backtest_inputs& inputs)
{
    backtest_summary summary;
    summary.span_days = static_cast<double>(result.last_sample_at - result.first_sample_at) / ms_per_day;
    const auto& rules = result.rules->rules;
    for (std::size_t r = 0; r < rules.size(); ++r) {
        noise_summary s =
            summarize_episodes(result, summary.span_days, [r](const alert_episode& ep) { return ep.rule_index == r; });
        s.rule = rules[r]->name;
        s.series = static_cast<std::size_t>(std::count_if(result.traces.begin(), result.traces.end(),
                                                          [r](const binding_trace& t) { return t.rule_index == r; }));
        summary.rules.push_back(std::move(s));
    }
    summary.total = summarize_episodes(result, summary.span_days, [](const alert_episode&) { return true; });
    summary.total.series = inputs.series.size();
    return summary;
}

// -- reports -----------------------------------------------------------------------------

namespace {

// Keys stay in the order written, so the report reads top-down.
using report_json = nlohmann::ordered_json;

std::string format_value(double v)
{
    if (std::isnan(v)) {
        return "NaN";
    }
    return fmt::format("{:.6g}", v);
}

// cpu{host="a"}: the metric name, then the other labels in Prometheus notation.
std::string series_display(const label_set& labels)
{
    const label_set rest = labels.without("__name__");
    std::string out(labels.metric_name());
    if (!rest.empty()) {
        out += rest.to_string();
    }
    return out;
}

std::string format_ms_duration(std::int64_t ms)
{
    // Whole seconds read better in a summary; shorter durations keep their milliseconds.
    if (ms >= 1000) {
        ms -= ms % 1000;
    }
    return format_duration(milliseconds(ms));
}

bool is_drift_rule(const rule& r)
{
    return r.dynamic && (r.dynamic->kind == detector_kind::psi || r.dynamic->kind == detector_kind::ks);
}

// The median time between consecutive samples, or nothing for a single sample.
std::optional<std::int64_t> median_interval_ms(const recorded_series& series)
{
    if (series.times.size() < 2) {
        return std::nullopt;
    }
    std::vector<std::int64_t> gaps;
    gaps.reserve(series.times.size() - 1);
    for (std::size_t i = 1; i < series.times.size(); ++i) {
        gaps.push_back(series.times[i] - series.times[i - 1]);
    }
    return median_of(std::move(gaps));
}

std::vector<std::string> report_notes(const backtest_result& result, const backtest_inputs& inputs)
{
    std::vector<std::string> notes;
    const auto& rules = result.rules->rules;
    for (std::size_t r = 0; r < rules.size(); ++r) {
        const bool selected = std::any_of(result.traces.begin(), result.traces.end(),
                                          [r](const binding_trace& t) { return t.rule_index == r; });
        if (!selected) {
            std::vector<std::string> matchers;
            for (const auto& m : rules[r]->matchers) {
                matchers.push_back(m.to_string());
            }
            if (matchers.empty()) {
                notes.push_back(fmt::format("rule {} selects none of the input series (it needs the metric {}); "
                                            "set the metric name with --metric or name the CSV file after it",
                                            rules[r]->name, rules[r]->metric));
            } else {
                notes.push_back(fmt::format("rule {} selects none of the input series (it needs the metric {} with "
                                            "{{{}}}); set the metric name with --metric and the labels with --label "
                                            "name=value",
                                            rules[r]->name, rules[r]->metric, fmt::join(matchers, ", ")));
            }
        }
    }
    for (const auto& trace : result.traces) {
        const rule& r = *rules[trace.rule_index];
        const recorded_series& series = inputs.series[trace.series_index];
        const auto interval = median_interval_ms(series);
        if (r.no_data.timeout.count() > 0 && interval && *interval >= r.no_data.timeout.count()) {
            notes.push_back(fmt::format("{} has a sample every {}, and rule {} counts a gap of {} as missing data, "
                                        "so every gap resets its alert; set no_data: {{timeout: {}}} or longer in "
                                        "the rule",
                                        series_display(series.labels), format_ms_duration(*interval), r.name,
                                        format_duration(r.no_data.timeout), format_ms_duration(*interval * 3)));
        }
    }
    for (const auto& trace : result.traces) {
        const rule& r = *rules[trace.rule_index];
        if (r.dynamic && trace.evaluated > 0 && trace.warming_up == trace.evaluated) {
            notes.push_back(fmt::format("rule {} never finished warming up on {}: its baseline held at most {} of the "
                                        "{} samples it needs (min_samples), so it could not fire; give a longer "
                                        "series, a longer window, or a lower min_samples",
                                        r.name, series_display(inputs.series[trace.series_index].labels),
                                        trace.baseline_samples, r.dynamic->min_samples));
        }
    }
    if (result.evaluations == 0 && !result.traces.empty()) {
        notes.push_back("the engine reported no evaluations, so baselines, scores and transformed values are "
                        "missing from the report, the charts and the samples CSV");
    }
    if (result.ingest.rejected > 0) {
        notes.push_back(fmt::format("the engine rejected {} samples (series limit or stale markers)",
                                    result.ingest.rejected));
    }
    return notes;
}

std::vector<const alert_episode*> fired_episodes(const backtest_result& result)
{
    std::vector<const alert_episode*> out;
    for (const auto& ep : result.episodes) {
        if (ep.fired_at) {
            out.push_back(&ep);
        }
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const alert_episode* a, const alert_episode* b) { return *a->fired_at < *b->fired_at; });
    return out;
}

std::string summary_row(const noise_summary& s, const std::string& name, std::size_t name_width)
{
    const std::string per_day = s.alerts_per_day ? fmt::format("{:.2f}", *s.alerts_per_day) : "-";
    const std::string median = s.median_firing_ms ? format_ms_duration(*s.median_firing_ms) : "-";
    const std::string quick =
        s.resolved_within_5m_share ? fmt::format("{:.0f}%", *s.resolved_within_5m_share * 100) : "-";
    return fmt::format("{:<{}}  {:>6}  {:>5}  {:>7}  {:>13}  {:>14}  {:>12}  {:>4}\n", name, name_width, s.series,
                       s.fired, per_day, median, quick, s.pending_never_fired, s.open);
}

report_json summary_json(const noise_summary& s)
{
    report_json j;
    if (!s.rule.empty()) {
        j["rule"] = s.rule;
    }
    j["series"] = s.series;
    j["fired"] = s.fired;
    j["alerts_per_day"] = s.alerts_per_day ? report_json(*s.alerts_per_day) : report_json(nullptr);
    j["median_firing_ms"] = s.median_firing_ms ? report_json(*s.median_firing_ms) : report_json(nullptr);
    j["resolved_within_5m_share"] =
        s.resolved_within_5m_share ? report_json(*s.resolved_within_5m_share) : report_json(nullptr);
    j["pending_never_fired"] = s.pending_never_fired;
    j["still_pending"] = s.still_pending;
    j["open"] = s.open;
    return j;
}

report_json labels_json(const label_set& labels)
{
    report_json j = report_json::object();
    for (const auto& l : labels.items()) {
        j[l.name] = l.value;
    }
    return j;
}

report_json time_json(const std::optional<time_ms>& t)
{
    return t ? report_json(format_rfc3339(*t)) : report_json(nullptr);
}

// NaN and infinities have no JSON form; they become null.
report_json number_json(double v) { return std::isfinite(v) ? report_json(v) : report_json(nullptr); }

} // namespace

std::string format_report_text(const backtest_result& result, const backtest_inputs& inputs,
                               const backtest_summary& summary)
{
    std::string out;
    const auto& rules = result.rules->rules;
    const auto fired = fired_episodes(result);
    out += fmt::format("{} alerts fired\n", fired.size());
    for (const alert_episode* ep : fired) {
        const rule& r = *rules[ep->rule_index];
        const std::string end = ep->resolved_at ? format_rfc3339(*ep->resolved_at) : "open";
        const std::int64_t until = ep->resolved_at ? *ep->resolved_at : result.last_sample_at;
        out += fmt::format("{}  {}  {} -> {} ({}{})  peak={}  value={}", r.name,
                           series_display(inputs.series[ep->series_index].labels), format_rfc3339(*ep->fired_at),
                           end, ep->resolved_at ? "" : "at least ", format_ms_duration(until - *ep->fired_at),
                           to_string(ep->peak), format_value(ep->value_at_start));
        if (ep->detector_at_start) {
            const detector_output& d = *ep->detector_at_start;
            if (!std::isnan(d.baseline)) {
                out += fmt::format("  baseline={}", format_value(d.baseline));
            }
            out += fmt::format("  score={}", format_value(d.score));
        }
        if (ep->no_data) {
            out += "  (no-data alert)";
        }
        out += '\n';
    }

    out += fmt::format("\nNoise over {} ({} to {}), {} samples in {} series:\n",
                       format_ms_duration(result.last_sample_at - result.first_sample_at),
                       format_rfc3339(result.first_sample_at), format_rfc3339(result.last_sample_at),
                       inputs.samples, inputs.series.size());
    std::size_t name_width = std::string_view("all rules").size();
    for (const auto& s : summary.rules) {
        name_width = std::max(name_width, s.rule.size());
    }
    out += fmt::format("{:<{}}  {:>6}  {:>5}  {:>7}  {:>13}  {:>14}  {:>12}  {:>4}\n", "rule", name_width, "series",
                       "fired", "per day", "median firing", "resolved <= 5m", "pending only", "open");
    for (const auto& s : summary.rules) {
        out += summary_row(s, s.rule, name_width);
    }
    out += summary_row(summary.total, "all rules", name_width);
    if (summary.total.still_pending > 0) {
        out += fmt::format("{} alerts were still pending at the end of the input\n", summary.total.still_pending);
    }
    for (const auto& note : report_notes(result, inputs)) {
        out += fmt::format("note: {}\n", note);
    }
    return out;
}

std::string format_report_json(const backtest_result& result, const backtest_inputs& inputs,
                               const backtest_summary& summary)
{
    const auto& rules = result.rules->rules;
    report_json doc;
    doc["span"] = {{"start", format_rfc3339(result.first_sample_at)},
                   {"end", format_rfc3339(result.last_sample_at)},
                   {"start_ms", result.first_sample_at},
                   {"end_ms", result.last_sample_at},
                   {"days", summary.span_days}};
    report_json series = report_json::array();
    for (const auto& s : inputs.series) {
        series.push_back({{"file", s.source}, {"labels", labels_json(s.labels)}, {"samples", s.size()}});
    }
    doc["inputs"] = std::move(series);
    doc["ingest"] = {{"accepted", result.ingest.accepted},
                     {"rejected", result.ingest.rejected},
                     {"evaluations", result.evaluations}};

    report_json episodes = report_json::array();
    for (const auto& ep : result.episodes) {
        report_json j;
        j["rule"] = rules[ep.rule_index]->name;
        j["labels"] = labels_json(inputs.series[ep.series_index].labels);
        j["no_data"] = ep.no_data;
        j["active_at"] = format_rfc3339(ep.active_at);
        j["fired_at"] = time_json(ep.fired_at);
        j["resolved_at"] = time_json(ep.resolved_at);
        j["resolve_reason"] = ep.resolve_reason;
        if (ep.fired_at) {
            j["peak"] = to_string(ep.peak);
            j["value"] = number_json(ep.value_at_start);
            j["duration_ms"] = ep.resolved_at ? report_json(*ep.resolved_at - *ep.fired_at) : nullptr;
            report_json levels = report_json::array();
            for (const auto& [at, level] : ep.levels) {
                levels.push_back({{"at", format_rfc3339(at)}, {"severity", to_string(level)}});
            }
            j["levels"] = std::move(levels);
        }
        if (ep.detector_at_start) {
            const detector_output& d = *ep.detector_at_start;
            j["detector"] = {{"ready", d.ready},
                             {"score", number_json(d.score)},
                             {"baseline", number_json(d.baseline)},
                             {"scale", number_json(d.scale)}};
        }
        episodes.push_back(std::move(j));
    }
    doc["episodes"] = std::move(episodes);

    report_json per_rule = report_json::array();
    for (const auto& s : summary.rules) {
        per_rule.push_back(summary_json(s));
    }
    doc["rules"] = std::move(per_rule);
    doc["total"] = summary_json(summary.total);
    doc["notes"] = report_notes(result, inputs);
    return doc.dump(2) + "\n";
}

// -- charts and samples CSV --------------------------------------------------------------

namespace {

std::string tier_color(severity s)
{
    switch (s) {
    case severity::info: return "#1f9fb4";
    case severity::warning: return "#f08c00";
    case severity::critical: return "#d62728";
    case severity::page: return "#8e44ad";
    }
    return "#d62728";
}

std::string file_name_part(std::string_view text)
{
    std::string out;
    for (char ch : text) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                        ch == '_' || ch == '-' || ch == '.';
        out += ok ? ch : '_';
        if (out.size() >= 80) {
            break;
        }
    }
    return out.empty() ? std::string("_") : out;
}

std::string describe_tiers(const rule& r)
{
    std::string out;
    for (const auto& t : r.tiers) {
        if (!out.empty()) {
            out += ", ";
        }
        out += fmt::format("{} {}", to_string(t.level), t.when.to_string());
        if (t.for_duration.count() > 0) {
            out += fmt::format(" for {}", format_duration(t.for_duration));
        }
    }
    return out;
}

bool is_sigma_like(detector_kind kind)
{
    return kind == detector_kind::mean_sigma || kind == detector_kind::ewma || kind == detector_kind::mad ||
           kind == detector_kind::seasonal;
}

// Adds the baseline, the band of the lowest tier and one line per tier of a dynamic rule,
// drawn on the value axis.
void add_dynamic_lines(chart& c, const rule& r, const std::vector<evaluation_record>& evals)
{
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    const detector_spec& spec = *r.dynamic;
    // value_at_score gives the lower edge only for direction both; a copy with both gives the
    // band's lower edge for the one-sided directions too.
    detector_spec both = spec;
    both.side = direction::both;

    chart_line baseline{"baseline", "#555555", true, 1.2, {}, {}};
    chart_band band{"", "#4a90d9", {}, {}, {}};
    const double lowest = r.tiers.empty() ? 0 : r.tiers.front().when.threshold;
    band.name = is_sigma_like(spec.kind) ? fmt::format("band: baseline \u00b1 {} (lowest tier)", format_value(lowest))
                                         : fmt::format("between baseline and the lowest tier");
    std::vector<chart_line> tier_lines;
    std::vector<chart_line> lower_lines;
    for (const auto& t : r.tiers) {
        const std::string name = fmt::format("{} {}", to_string(t.level), t.when.to_string());
        tier_lines.push_back(chart_line{name, tier_color(t.level), true, 1.2, {}, {}});
        lower_lines.push_back(chart_line{name, tier_color(t.level), true, 1.2, {}, {}});
    }
    const bool two_sided = spec.side == direction::both && is_sigma_like(spec.kind);

    for (const auto& e : evals) {
        const bool usable = e.dynamic && e.ready;
        const detector_output out = to_detector_output(e);
        baseline.times.push_back(e.at);
        baseline.values.push_back(usable ? e.baseline : nan);
        band.times.push_back(e.at);
        if (usable && is_sigma_like(spec.kind)) {
            band.lower.push_back(value_at_score(both, out, lowest, true));
            band.upper.push_back(value_at_score(both, out, lowest, false));
        } else if (usable) {
            const double edge = value_at_score(spec, out, lowest);
            band.lower.push_back(std::min(edge, e.baseline));
            band.upper.push_back(std::max(edge, e.baseline));
        } else {
            band.lower.push_back(nan);
            band.upper.push_back(nan);
        }
        for (std::size_t i = 0; i < r.tiers.size(); ++i) {
            const double threshold = r.tiers[i].when.threshold;
            tier_lines[i].times.push_back(e.at);
            tier_lines[i].values.push_back(usable ? value_at_score(spec, out, threshold) : nan);
            if (two_sided) {
                lower_lines[i].times.push_back(e.at);
                lower_lines[i].values.push_back(usable ? value_at_score(spec, out, threshold, true) : nan);
            }
        }
        if (usable) {
            c.y_range_values.push_back(e.baseline);
        }
    }
    // The band's edges widen the y range only as far as one more height of the values, so a
    // wide band while the baseline settles does not flatten the series.
    double lo = std::numeric_limits<double>::infinity();
    double hi = -lo;
    for (double v : c.y_range_values) {
        if (std::isfinite(v)) {
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    }
    if (lo <= hi) {
        const double margin = hi > lo ? hi - lo : std::max(std::fabs(hi) * 0.1, 1.0);
        for (const auto* edge : {&band.lower, &band.upper}) {
            for (double v : *edge) {
                if (std::isfinite(v) && v >= lo - margin && v <= hi + margin) {
                    c.y_range_values.push_back(v);
                }
            }
        }
    }
    c.bands.push_back(std::move(band));
    // Tier lines go under the value line, the baseline just below it.
    std::vector<chart_line> lines;
    for (auto& l : tier_lines) {
        lines.push_back(std::move(l));
    }
    if (two_sided) {
        for (auto& l : lower_lines) {
            lines.push_back(std::move(l));
        }
    }
    lines.push_back(std::move(baseline));
    c.lines.insert(c.lines.begin(), std::make_move_iterator(lines.begin()), std::make_move_iterator(lines.end()));
}

void add_alert_spans(chart& c, const backtest_result& result, const binding_trace& trace, time_ms end)
{
    for (const auto& ep : result.episodes) {
        if (ep.rule_index != trace.rule_index || ep.series_index != trace.series_index) {
            continue;
        }
        const time_ms until = ep.resolved_at ? *ep.resolved_at : end;
        if (ep.no_data) {
            c.spans.push_back(chart_span{"no-data alert", "#7f7f7f", 0.25, ep.active_at, until, true});
            continue;
        }
        const time_ms pending_end = ep.fired_at ? *ep.fired_at : until;
        if (pending_end > ep.active_at) {
            c.spans.push_back(chart_span{"pending", "#e6c200", 0.12, ep.active_at, pending_end});
        }
        for (std::size_t i = 0; i < ep.levels.size(); ++i) {
            const time_ms from = ep.levels[i].first;
            const time_ms to = i + 1 < ep.levels.size() ? ep.levels[i + 1].first : until;
            const severity level = ep.levels[i].second;
            c.spans.push_back(chart_span{fmt::format("firing: {}", to_string(level)), tier_color(level), 0.25, from,
                                         std::max(from, to), true});
        }
    }
}

bool write_text_file(const std::filesystem::path& path, const std::string& content, std::string& error)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) {
        error = fmt::format("cannot create {}; check that the folder is writable", path.string());
        return false;
    }
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) {
        error = fmt::format("cannot write {}; check the free disk space", path.string());
        return false;
    }
    return true;
}

bool make_output_dir(const std::string& dir, std::string& error)
{
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        error = fmt::format("cannot create the folder {}: {}", dir, ec.message());
        return false;
    }
    return true;
}

} // namespace

std::string binding_file_stem(const rule& r, const recorded_series& series)
{
    // The names are cut to 80 characters and stripped of other characters, so the hash of the
    // whole rule name and series keeps two long, similar rule names apart.
    std::uint64_t hash = series.labels.fingerprint();
    for (const char c : r.name) {
        hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    }
    return fmt::format("{}__{}_{:08x}", file_name_part(r.name), file_name_part(series.labels.metric_name()),
                       static_cast<std::uint32_t>(hash & 0xffffffffu));
}

std::string render_binding_chart(const backtest_result& result, const backtest_inputs& inputs,
                                 const binding_trace& trace)
{
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    const rule& r = *result.rules->rules[trace.rule_index];
    const recorded_series& series = inputs.series[trace.series_index];
    const auto& evals = trace.evaluations;
    const bool score_mode = is_drift_rule(r);

    chart c;
    c.title = fmt::format("{} on {}", r.name, series_display(series.labels));
    std::string subtitle = fmt::format("{}  |  tiers: {}", r.expr, describe_tiers(r));
    if (r.dynamic) {
        subtitle += fmt::format("  |  {} detector", to_string(r.dynamic->kind));
    }
    c.y_label = score_mode ? std::string("score") : std::string(series.labels.metric_name());

    chart_line values{"value", "#1f3b73", false, 1.5, {}, {}};
    if (score_mode) {
        values.name = fmt::format("{} score", to_string(r.dynamic->kind));
    } else if (r.xform.kind != transform_kind::none) {
        values.name = fmt::format("{}[{}] of the value", to_string(r.xform.kind), format_duration(r.xform.window));
    }
    if (!evals.empty()) {
        for (const auto& e : evals) {
            double plotted = e.value;
            if (score_mode) {
                plotted = e.ready ? e.score : nan;
            }
            values.times.push_back(e.at);
            values.values.push_back(plotted);
        }
    } else if (!score_mode) {
        values.times = series.times;
        values.values = series.values;
        if (r.xform.kind != transform_kind::none) {
            values.name = "value (before the transform)";
        }
        subtitle += "  |  no evaluations reported";
    }
    c.subtitle = std::move(subtitle);
    c.y_range_values = values.values;
    const time_ms end = series.times.empty() ? 0 : series.times.back();

    if (!r.dynamic || score_mode) {
        for (const auto& t : r.tiers) {
            c.hlines.push_back(chart_hline{fmt::format("{} {}", to_string(t.level), t.when.to_string()),
                                           tier_color(t.level), t.when.threshold, true});
            c.y_range_values.push_back(t.when.threshold);
            if (t.recover) {
                const std::string name = fmt::format("{} recovers {}", to_string(t.level), t.recover->to_string());
                c.hlines.push_back(chart_hline{name, tier_color(t.level), t.recover->threshold, false});
            }
        }
    }
    c.lines.push_back(std::move(values));
    if (r.dynamic && !score_mode) {
        add_dynamic_lines(c, r, evals);
    }

    if (r.dynamic && !evals.empty()) {
        const auto first_ready =
            std::find_if(evals.begin(), evals.end(), [](const evaluation_record& e) { return e.ready; });
        const time_ms warm_end = first_ready == evals.end() ? evals.back().at : first_ready->at;
        if (warm_end > evals.front().at) {
            c.spans.push_back(chart_span{"warming up", "#9e9e9e", 0.15, evals.front().at, warm_end});
        }
    }
    add_alert_spans(c, result, trace, end);
    return render_svg(c);
}

std::vector<std::string> write_charts(const backtest_result& result, const backtest_inputs& inputs,
                                      const std::string& dir, std::string& error)
{
    std::vector<std::string> written;
    if (!make_output_dir(dir, error)) {
        return written;
    }
    for (const auto& trace : result.traces) {
        const rule& r = *result.rules->rules[trace.rule_index];
        const std::string stem = binding_file_stem(r, inputs.series[trace.series_index]);
        const auto path = std::filesystem::path(dir) / (stem + ".svg");
        if (!write_text_file(path, render_binding_chart(result, inputs, trace), error)) {
            return written;
        }
        written.push_back(path.string());
    }
    return written;
}

std::vector<std::string> write_samples_csv(const backtest_result& result, const backtest_inputs& inputs,
                                           const std::string& dir, std::string& error)
{
    std::vector<std::string> written;
    if (!make_output_dir(dir, error)) {
        return written;
    }
    for (const auto& trace : result.traces) {
        const rule& r = *result.rules->rules[trace.rule_index];
        const recorded_series& series = inputs.series[trace.series_index];
        std::string content = "timestamp,value,score,ready,state,severity\n";
        std::size_t j = 0;
        const auto& evals = trace.evaluations;
        for (std::size_t i = 0; i < series.size(); ++i) {
            const time_ms t = series.times[i];
            while (j < evals.size() && evals[j].at < t) {
                ++j;
            }
            content += series.timestamp_text(i);
            if (j >= evals.size() || evals[j].at != t) {
                content += ",,,,,\n";
                continue;
            }
            const evaluation_record& e = evals[j];
            const std::string score = e.dynamic && e.ready ? fmt::format("{}", e.score) : std::string();
            const char* level = e.state == alert_state::inactive ? "" : to_string(e.level);
            content += fmt::format(",{},{},{},{},{}\n", e.value, score, e.ready ? "true" : "false",
                                   to_string(e.state), level);
        }
        const auto path = std::filesystem::path(dir) / (binding_file_stem(r, series) + ".csv");
        if (!write_text_file(path, content, error)) {
            return written;
        }
        written.push_back(path.string());
    }
    return written;
}

// -- command -----------------------------------------------------------------------------

namespace {

void print_diagnostics(const diagnostics& diags, const char* prefix = "")
{
    for (const auto& d : diags.items()) {
        std::fprintf(stderr, "%s%s\n", prefix, d.to_string().c_str());
    }
}

// Loads the rules of --config and --rules into one set. Returns null after printing errors.
std::shared_ptr<const rule_set> load_backtest_rules(const backtest_command& command)
{
    diagnostics diags;
    std::vector<rule_group> groups;
    if (!command.config_file.empty()) {
        auto config = load_config(command.config_file, diags);
        if (!config) {
            print_diagnostics(diags);
            return nullptr;
        }
        groups = config->rules->groups;
    }
    for (const auto& file : command.rule_files) {
        auto loaded = load_rule_file(file, diags);
        for (auto& g : loaded) {
            groups.push_back(std::move(g));
        }
    }
    auto set = make_rule_set(std::move(groups));
    validate_rule_set(*set, diags);
    if (!diags.empty()) {
        print_diagnostics(diags);
        return nullptr;
    }
    if (set->rules.empty()) {
        std::fprintf(stderr, "no rules to run; the rule files contain no rules\n");
        return nullptr;
    }
    return set;
}

bool parse_label_pairs(const std::vector<std::string>& args, std::vector<label>& out)
{
    for (const auto& arg : args) {
        const auto eq = arg.find('=');
        if (eq == std::string::npos || eq == 0) {
            std::fprintf(stderr, "invalid --label \"%s\"; expected name=value, for example instance=db1\n",
                         arg.c_str());
            return false;
        }
        std::string value = arg.substr(eq + 1);
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
            value = value.substr(1, value.size() - 2);
        }
        const std::string name = arg.substr(0, eq);
        if (!is_valid_utf8(name) || !is_valid_utf8(value)) {
            std::fprintf(stderr, "invalid --label \"%s\"; names and values must be UTF-8\n", arg.c_str());
            return false;
        }
        out.push_back(label{name, std::move(value)});
    }
    return true;
}

} // namespace

int run_backtest_command(const backtest_command& command)
{
    if (command.rule_files.empty() && command.config_file.empty()) {
        std::fprintf(stderr, "no rules given; pass --rules FILE (repeatable) or --config tocsin.yaml\n");
        return 2;
    }
    backtest_read_options read_options;
    read_options.metric = command.metric;
    read_options.skip_bad_rows = command.skip_bad_rows;
    read_options.limits = command.limits;
    if (!parse_label_pairs(command.labels, read_options.labels)) {
        return 2;
    }
    const auto rules = load_backtest_rules(command);
    if (!rules) {
        return 1;
    }

    backtest_inputs inputs;
    diagnostics errors;
    for (const auto& path : command.inputs) {
        read_input_file(path, read_options, inputs, errors);
    }
    if (errors.empty()) {
        check_distinct_series(inputs, errors);
    }
    print_diagnostics(inputs.warnings, "warning: ");
    if (!errors.empty()) {
        print_diagnostics(errors);
        return 1;
    }

    backtest_options options;
    options.keep_evaluations = !command.svg_dir.empty() || !command.samples_csv_dir.empty();
    const backtest_result result = run_backtest(rules, inputs, options);
    const backtest_summary summary = summarize(result, inputs);
    const std::string report =
        command.json ? format_report_json(result, inputs, summary) : format_report_text(result, inputs, summary);
    std::fwrite(report.data(), 1, report.size(), stdout);
    // The report comes before the progress lines when both go to one terminal or file.
    std::fflush(stdout);

    int status = 0;
    // Progress goes to stderr, so --json output on stdout stays one document.
    if (!command.svg_dir.empty()) {
        std::string error;
        const auto written = write_charts(result, inputs, command.svg_dir, error);
        if (!error.empty()) {
            std::fprintf(stderr, "%s\n", error.c_str());
            status = 1;
        }
        std::fprintf(stderr, "wrote %zu charts to %s\n", written.size(), command.svg_dir.c_str());
    }
    if (!command.samples_csv_dir.empty()) {
        std::string error;
        const auto written = write_samples_csv(result, inputs, command.samples_csv_dir, error);
        if (!error.empty()) {
            std::fprintf(stderr, "%s\n", error.c_str());
            status = 1;
        }
        std::fprintf(stderr, "wrote %zu sample files to %s\n", written.size(), command.samples_csv_dir.c_str());
    }
    return status;
}

} // namespace tocsin
