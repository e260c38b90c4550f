#include "daemon/rule_tests.hpp"

#include <glob.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <tuple>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "rules/duration.hpp"
#include "rules/engine.hpp"
#include "rules/file_read.hpp"
#include "rules/promql_lexer.hpp"
#include "rules/rule_loader.hpp"
#include "rules/yaml_check.hpp"

namespace tocsin {

namespace fs = std::filesystem;

namespace {

// The bit pattern Prometheus uses for a stale marker.
constexpr std::uint64_t stale_marker_bits = 0x7ff0000000000002ULL;

constexpr std::string_view value_forms =
    "expected a number within the range of a double, stale, _, a+bxn, a-bxn, axn or _xn";

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool equals_ignoring_case(std::string_view text, std::string_view word)
{
    if (text.size() != word.size()) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char a = text[i] >= 'A' && text[i] <= 'Z' ? static_cast<char>(text[i] - 'A' + 'a') : text[i];
        if (a != word[i]) {
            return false;
        }
    }
    return true;
}

// Reads an unsigned number at `pos` of `item`: digits with an optional fraction and exponent,
// or Inf or NaN in any case. The caller has consumed the sign.
bool read_number(std::string_view item, std::size_t& pos, double& out)
{
    for (std::string_view word : {"inf", "nan"}) {
        if (item.size() - pos >= word.size() && equals_ignoring_case(item.substr(pos, word.size()), word)) {
            out = word == "inf" ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
            pos += word.size();
            return true;
        }
    }
    const std::size_t start = pos;
    std::size_t end = pos;
    while (end < item.size() && is_digit(item[end])) {
        ++end;
    }
    if (end < item.size() && item[end] == '.') {
        ++end;
        while (end < item.size() && is_digit(item[end])) {
            ++end;
        }
    }
    // At least one digit, and not a lone dot.
    if (end == start || (end == start + 1 && item[start] == '.')) {
        return false;
    }
    // An exponent only when digits follow it, so that "1e" stays an error at the 'e'.
    if (end < item.size() && (item[end] == 'e' || item[end] == 'E')) {
        std::size_t exponent = end + 1;
        if (exponent < item.size() && (item[exponent] == '+' || item[exponent] == '-')) {
            ++exponent;
        }
        if (exponent < item.size() && is_digit(item[exponent])) {
            while (exponent < item.size() && is_digit(item[exponent])) {
                ++exponent;
            }
            end = exponent;
        }
    }
    const auto [ptr, ec] = std::from_chars(item.data() + start, item.data() + end, out);
    if (ec != std::errc() || ptr != item.data() + end) {
        return false; // out of the range of a double, such as 1e400
    }
    pos = end;
    return true;
}

// Reads the repetition count after an 'x'.
bool read_count(std::string_view item, std::size_t& pos, std::uint64_t& out, notation_error& error,
                std::size_t item_offset)
{
    std::size_t end = pos;
    while (end < item.size() && is_digit(item[end])) {
        ++end;
    }
    if (end == pos) {
        error = {item_offset + pos, fmt::format("missing repetition count after 'x' in {}; {}",
                                                promql::quote(item), "expected an integer such as 1x5")};
        return false;
    }
    const auto [ptr, ec] = std::from_chars(item.data() + pos, item.data() + end, out);
    if (ec != std::errc()) {
        error = {item_offset + pos, fmt::format("repetition count {} is too large", item.substr(pos, end - pos))};
        return false;
    }
    pos = end;
    return true;
}

class value_expander {
public:
    value_expander(std::size_t max_samples, notation_error& error) : max_samples_(max_samples), error_(error) {}

    bool expand_item(std::string_view item, std::size_t offset)
    {
        if (item.starts_with("_")) {
            std::uint64_t count = 1;
            std::size_t pos = 1;
            if (item.size() > 1) {
                if (item[pos] != 'x') {
                    error_ = {offset + pos, fmt::format("unexpected {} after _ in {}; expected _ or _xn such as _x3",
                                                        promql::quote(item.substr(pos, 1)), promql::quote(item))};
                    return false;
                }
                ++pos;
                if (!read_count(item, pos, count, error_, offset) || !at_end(item, pos, offset)) {
                    return false;
                }
            }
            return append(std::nullopt, 0, count, offset);
        }

        std::size_t pos = 0;
        double first = 0;
        if (item.starts_with("stale")) {
            first = std::bit_cast<double>(stale_marker_bits);
            pos = 5;
            if (pos < item.size() && (item[pos] == '+' || item[pos] == '-')) {
                error_ = {offset + pos, fmt::format("a stale marker cannot be incremented in {}; expected stale or "
                                                    "stalexn", promql::quote(item))};
                return false;
            }
        } else if (!read_signed(item, pos, first, offset)) {
            return false;
        }
        if (pos == item.size()) {
            return append(first, 0, 1, offset);
        }

        double step = 0;
        if (item[pos] == '+' || item[pos] == '-') {
            const bool negative = item[pos] == '-';
            ++pos;
            if (!read_number(item, pos, step)) {
                error_ = {offset + pos, fmt::format("invalid increment in {}; {}", promql::quote(item), value_forms)};
                return false;
            }
            step = negative ? -step : step;
            if (pos == item.size() || item[pos] != 'x') {
                error_ = {offset + pos, fmt::format("missing xn after the increment in {}; expected a+bxn such as "
                                                    "1+2x10", promql::quote(item))};
                return false;
            }
        }
        if (item[pos] != 'x') {
            error_ = {offset + pos, fmt::format("unexpected {} in {}; {}", promql::quote(item.substr(pos, 1)),
                                                promql::quote(item), value_forms)};
            return false;
        }
        ++pos;
        std::uint64_t count = 0;
        if (!read_count(item, pos, count, error_, offset) || !at_end(item, pos, offset)) {
            return false;
        }
        // axn and a+bxn give n+1 values: a itself and n more.
        if (count == std::numeric_limits<std::uint64_t>::max()) {
            return too_many(offset);
        }
        return append(first, step, count + 1, offset);
    }

    std::vector<std::optional<double>> take() { return std::move(values_); }

private:
    bool read_signed(std::string_view item, std::size_t& pos, double& out, std::size_t offset)
    {
        bool negative = false;
        if (item[pos] == '+' || item[pos] == '-') {
            negative = item[pos] == '-';
            ++pos;
        }
        if (!read_number(item, pos, out)) {
            error_ = {offset + pos, fmt::format("invalid value {}; {}", promql::quote(item), value_forms)};
            return false;
        }
        out = negative ? -out : out;
        return true;
    }

    bool at_end(std::string_view item, std::size_t pos, std::size_t offset)
    {
        if (pos == item.size()) {
            return true;
        }
        error_ = {offset + pos, fmt::format("unexpected {} after the repetition count in {}; separate values with "
                                            "spaces",
                                            promql::quote(item.substr(pos)), promql::quote(item))};
        return false;
    }

    bool too_many(std::size_t offset)
    {
        error_ = {offset, fmt::format("the values expand to more than {} samples; shorten the series or raise the "
                                      "interval",
                                      max_samples_)};
        return false;
    }

    // Appends `count` values, each the previous plus `step` (missing samples when `value` is
    // empty). A single value is count 1 with step 0.
    bool append(std::optional<double> value, double step, std::uint64_t count, std::size_t offset)
    {
        if (count > max_samples_ - values_.size()) {
            return too_many(offset);
        }
        // Adding step after step, as promtool does, keeps the values equal to promtool's. A
        // zero step is not added, because arithmetic would turn a stale marker into a plain NaN.
        for (std::uint64_t i = 0; i < count; ++i) {
            values_.push_back(value);
            if (value && step != 0.0) {
                *value += step;
            }
        }
        return true;
    }

    std::size_t max_samples_;
    notation_error& error_;
    std::vector<std::optional<double>> values_;
};

} // namespace

std::optional<std::vector<std::optional<double>>> expand_series_values(std::string_view text, std::size_t max_samples,
                                                                       notation_error& error)
{
    value_expander expander(max_samples, error);
    std::size_t pos = 0;
    while (pos < text.size()) {
        if (is_space(text[pos])) {
            ++pos;
            continue;
        }
        const std::size_t start = pos;
        while (pos < text.size() && !is_space(text[pos])) {
            ++pos;
        }
        if (!expander.expand_item(text.substr(start, pos - start), start)) {
            return std::nullopt;
        }
    }
    return expander.take();
}

// -- series labels -------------------------------------------------------------------------

namespace {

bool read_label_name(std::string_view text, std::size_t& pos, std::string& out, notation_error& error)
{
    std::string problem;
    if (pos < text.size() && (text[pos] == '"' || text[pos] == '\'' || text[pos] == '`')) {
        if (!promql::read_string(text, pos, out, problem)) {
            error = {pos, problem};
            return false;
        }
        return true;
    }
    if (!promql::read_identifier(text, pos, out, false)) {
        error = {pos, "expected a label name (an identifier, or a quoted string for other names)"};
        return false;
    }
    return true;
}

} // namespace

std::optional<label_set> parse_series_labels(std::string_view text, notation_error& error)
{
    std::size_t pos = 0;
    std::string metric;
    std::vector<label> labels;
    std::map<std::string, std::size_t, std::less<>> seen; // label name -> offset

    promql::skip_spaces(text, pos);
    if (pos < text.size() && text[pos] != '{') {
        if (!promql::read_identifier(text, pos, metric, true)) {
            error = {pos, "expected a metric name or '{'; write the series as metric{name=\"value\"}"};
            return std::nullopt;
        }
        promql::skip_spaces(text, pos);
    }

    if (pos < text.size() && text[pos] == '{') {
        ++pos;
        while (true) {
            promql::skip_spaces(text, pos);
            if (pos < text.size() && text[pos] == '}') {
                ++pos;
                break;
            }
            const std::size_t name_at = pos;
            std::string name;
            if (!read_label_name(text, pos, name, error)) {
                return std::nullopt;
            }
            promql::skip_spaces(text, pos);
            const bool quoted_name = text[name_at] == '"' || text[name_at] == '\'' || text[name_at] == '`';
            if (quoted_name && (pos >= text.size() || text[pos] == ',' || text[pos] == '}')) {
                // A quoted string on its own is the metric name: {"http.requests", job="x"}.
                if (!metric.empty()) {
                    error = {name_at, fmt::format("second metric name {}; the series already has {}",
                                                  promql::quote(name), promql::quote(metric))};
                    return std::nullopt;
                }
                metric = std::move(name);
            } else {
                const bool matcher = text.substr(pos).starts_with("=~") || text.substr(pos).starts_with("!");
                if (pos >= text.size() || text[pos] != '=' || matcher) {
                    error = {pos, fmt::format("expected '=' after label name {}; a series has exact label values, so "
                                              "!=, =~ and !~ do not apply",
                                              promql::quote(name))};
                    return std::nullopt;
                }
                ++pos;
                promql::skip_spaces(text, pos);
                std::string value;
                std::string problem;
                if (pos >= text.size() || (text[pos] != '"' && text[pos] != '\'' && text[pos] != '`')) {
                    error = {pos, fmt::format("expected a quoted value for label {}, such as {}=\"value\"",
                                              promql::quote(name), promql::format_label_name(name))};
                    return std::nullopt;
                }
                if (!promql::read_string(text, pos, value, problem)) {
                    error = {pos, problem};
                    return std::nullopt;
                }
                if (!is_valid_utf8(name)) {
                    error = {name_at, "label name is not valid UTF-8"};
                    return std::nullopt;
                }
                if (auto [previous, inserted] = seen.emplace(name, name_at); !inserted) {
                    error = {name_at, fmt::format("label {} appears twice in the series; keep one",
                                                  promql::quote(name))};
                    return std::nullopt;
                }
                if (name == "__name__") {
                    if (!metric.empty()) {
                        error = {name_at, fmt::format("__name__ repeats the metric name {}; give it once",
                                                      promql::quote(metric))};
                        return std::nullopt;
                    }
                    metric = std::move(value);
                } else {
                    labels.push_back(label{std::move(name), std::move(value)});
                }
            }
            promql::skip_spaces(text, pos);
            if (pos < text.size() && text[pos] == ',') {
                ++pos;
                continue;
            }
            if (pos < text.size() && text[pos] == '}') {
                ++pos;
                break;
            }
            error = {pos, pos < text.size() ? "expected ',' or '}' in the label list"
                                            : "missing '}' at the end of the label list"};
            return std::nullopt;
        }
        promql::skip_spaces(text, pos);
    }

    if (pos < text.size()) {
        error = {pos, fmt::format("unexpected {} after the series; write it as metric{{name=\"value\"}}",
                                  promql::quote(text.substr(pos)))};
        return std::nullopt;
    }
    if (metric.empty()) {
        error = {0, "series has no metric name; write it as metric{name=\"value\"}"};
        return std::nullopt;
    }
    labels.push_back(label{"__name__", std::move(metric)});
    return label_set(std::move(labels));
}

// -- the test file ---------------------------------------------------------------------------

namespace {

using std::chrono::milliseconds;

struct series_input {
    label_set labels;
    std::vector<std::optional<double>> values;
};

struct expected_alert {
    label_set labels;
    std::optional<std::vector<std::pair<std::string, std::string>>> annotations; // sorted by name
};

struct alert_check {
    time_ms eval_time = 0; // from the test's start
    std::string eval_time_text;
    std::string alertname;
    std::vector<expected_alert> expected;
    int line = 0;
    int column = 0;
};

struct test_group {
    std::string name;
    time_ms start = 0;
    milliseconds interval{0};
    std::vector<series_input> series;
    std::vector<alert_check> checks;
};

struct test_file {
    std::vector<std::string> rule_files;
    bool rule_files_complete = true; // false when an entry is missing or matched nothing
    std::vector<test_group> tests;
};

std::vector<std::string_view> split_lines(std::string_view text)
{
    std::vector<std::string_view> lines;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) {
            lines.push_back(text.substr(start));
            break;
        }
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t year, unsigned month, unsigned day)
{
    year -= month <= 2 ? 1 : 0;
    const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
    const auto year_of_era = static_cast<unsigned>(year - era * 400);
    const unsigned day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    const unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + static_cast<std::int64_t>(day_of_era) - 719468;
}

// Parses a fixed-width decimal field of `width` digits at `pos`.
bool read_field(std::string_view text, std::size_t& pos, std::size_t width, unsigned& out)
{
    if (text.size() - pos < width) {
        return false;
    }
    out = 0;
    for (std::size_t i = 0; i < width; ++i) {
        if (!is_digit(text[pos + i])) {
            return false;
        }
        out = out * 10 + static_cast<unsigned>(text[pos + i] - '0');
    }
    pos += width;
    return true;
}

bool expect_char(std::string_view text, std::size_t& pos, std::string_view allowed)
{
    if (pos < text.size() && allowed.find(text[pos]) != std::string_view::npos) {
        ++pos;
        return true;
    }
    return false;
}

// Parses start_timestamp: Unix seconds (with an optional fraction, kept to the millisecond)
// or RFC 3339 such as 2024-01-01T00:00:00Z or 2024-01-01T02:00:00.5+02:00.
std::optional<time_ms> parse_start_timestamp(std::string_view text)
{
    if (!text.empty() && text.find_first_not_of("0123456789.-") == std::string_view::npos &&
        std::count(text.begin(), text.end(), '-') <= 1 && text.find('-', 1) == std::string_view::npos) {
        double seconds = 0;
        const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
        if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(seconds)) {
            return std::nullopt;
        }
        const double ms = std::round(seconds * 1000.0);
        if (std::fabs(ms) > static_cast<double>(timestamp_bound_ms)) {
            return std::nullopt;
        }
        return static_cast<time_ms>(ms);
    }

    std::size_t pos = 0;
    unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!read_field(text, pos, 4, year) || !expect_char(text, pos, "-") || !read_field(text, pos, 2, month) ||
        !expect_char(text, pos, "-") || !read_field(text, pos, 2, day) || !expect_char(text, pos, "Tt ") ||
        !read_field(text, pos, 2, hour) || !expect_char(text, pos, ":") || !read_field(text, pos, 2, minute) ||
        !expect_char(text, pos, ":") || !read_field(text, pos, 2, second)) {
        return std::nullopt;
    }
    static constexpr unsigned month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1] || hour > 23 || minute > 59 ||
        second > 60) {
        return std::nullopt;
    }
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 2 && day == 29 && !leap) {
        return std::nullopt;
    }
    time_ms fraction_ms = 0;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        const std::size_t digits_at = pos;
        time_ms scale = 100;
        while (pos < text.size() && is_digit(text[pos])) {
            fraction_ms += (text[pos] - '0') * scale;
            scale /= 10;
            ++pos;
        }
        if (pos == digits_at) {
            return std::nullopt;
        }
    }
    std::int64_t offset_minutes = 0;
    if (expect_char(text, pos, "Zz")) {
        // UTC
    } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
        const bool negative = text[pos] == '-';
        ++pos;
        unsigned offset_hours = 0, offset_mins = 0;
        if (!read_field(text, pos, 2, offset_hours) || !expect_char(text, pos, ":") ||
            !read_field(text, pos, 2, offset_mins) || offset_hours > 23 || offset_mins > 59) {
            return std::nullopt;
        }
        offset_minutes = (negative ? -1 : 1) * static_cast<std::int64_t>(offset_hours * 60 + offset_mins);
    } else {
        return std::nullopt;
    }
    if (pos != text.size()) {
        return std::nullopt;
    }
    const std::int64_t days = days_from_civil(year, month, day);
    const std::int64_t seconds_total = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    return seconds_total * 1000 + fraction_ms;
}

class test_file_loader {
public:
    test_file_loader(std::string_view text, std::string file, const rule_test_limits& limits, diagnostics& diags)
        : text_(text), lines_(split_lines(text)), file_(std::move(file)), limits_(limits), check_(file_, diags)
    {
    }

    std::optional<test_file> load();

private:
    void load_rule_files(const YAML::Node& node, test_file& out);
    void load_rule_globs(const YAML::Node& node, test_file& out);
    void load_test(const YAML::Node& node, std::size_t index, milliseconds default_interval, test_file& out);
    void load_series(const YAML::Node& node, std::size_t index, test_group& test, std::size_t& total_samples,
                     std::map<std::uint64_t, int>& series_lines);
    void load_check(const YAML::Node& node, std::size_t index, std::uint64_t span_limit, test_group& test);
    std::optional<expected_alert> load_expected(const YAML::Node& node, std::string_view field,
                                                const std::string& alertname);
    std::optional<std::vector<std::pair<std::string, std::string>>> load_string_map(const YAML::Node& node,
                                                                                    std::string_view field);
    std::optional<milliseconds> positive_duration(const YAML::Node& node, std::string_view field);
    void reject_promtool_only(const YAML::Node& map, std::initializer_list<std::string_view> keys);
    // Reports `error`, found in the scalar `node`, at its own column when the scalar's source
    // text equals its value, else at the scalar with the offset in the message.
    void notation_problem(const YAML::Node& node, std::string_view field, const notation_error& error);

    std::string_view text_;
    std::vector<std::string_view> lines_;
    std::string file_;
    const rule_test_limits& limits_;
    yaml::checker check_;
};

std::optional<test_file> test_file_loader::load()
{
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text_));
    } catch (const YAML::Exception& e) {
        check_.error(e.mark, fmt::format("invalid YAML: {}; check the indentation and quoting here", e.msg));
        return std::nullopt;
    }
    if (!check_.expect_map(root, "a rule test file")) {
        return std::nullopt;
    }
    check_.check_keys(root, "rule test file",
                      {"rule_files", "evaluation_interval", "tests", "group_eval_order", "fuzzy_compare"});

    test_file out;
    const YAML::Node rule_files = yaml::checker::child(root, "rule_files");
    if (!rule_files.IsDefined() || rule_files.IsNull()) {
        check_.error(root, "missing field \"rule_files\" in rule test file; expected rule_files: [rules.yaml], "
                           "paths relative to the test file");
        out.rule_files_complete = false;
    } else {
        load_rule_files(rule_files, out);
    }

    milliseconds evaluation_interval = std::chrono::minutes(1);
    if (const YAML::Node n = yaml::checker::child(root, "evaluation_interval"); n.IsDefined() && !n.IsNull()) {
        if (auto d = positive_duration(n, "evaluation_interval")) {
            evaluation_interval = *d;
        }
    }
    // Both only change how promtool evaluates PromQL, which tocsin does not do. They are
    // read so that a test file written for promtool loads, and checked for their type.
    if (const YAML::Node n = yaml::checker::child(root, "group_eval_order"); n.IsDefined() && !n.IsNull()) {
        check_.expect_sequence(n, "group_eval_order");
    }
    if (const YAML::Node n = yaml::checker::child(root, "fuzzy_compare"); n.IsDefined() && !n.IsNull()) {
        check_.boolean(n, "fuzzy_compare");
    }

    const YAML::Node tests = yaml::checker::child(root, "tests");
    if (!tests.IsDefined() || tests.IsNull()) {
        check_.error(root, "missing field \"tests\" in rule test file; expected tests: [{input_series: [...], "
                           "alert_rule_test: [...]}]");
    } else if (check_.expect_sequence(tests, "tests")) {
        for (std::size_t i = 0; i < tests.size(); ++i) {
            load_test(tests[i], i, evaluation_interval, out);
        }
    }
    return out;
}

void test_file_loader::load_rule_files(const YAML::Node& node, test_file& out)
{
    const std::size_t errors_before = check_.error_count();
    load_rule_globs(node, out);
    out.rule_files_complete = check_.error_count() == errors_before;
}

void test_file_loader::load_rule_globs(const YAML::Node& node, test_file& out)
{
    if (!check_.expect_sequence(node, "rule_files")) {
        return;
    }
    const fs::path base_dir = fs::path(file_).parent_path();
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        auto pattern = check_.string(item, "rule_files");
        if (!pattern) {
            continue;
        }
        if (pattern->empty()) {
            check_.error(item, "empty rule_files entry; expected a path or glob such as rules/*.yaml");
            continue;
        }
        const fs::path candidate(*pattern);
        const std::string full = candidate.is_absolute() ? *pattern : (base_dir / candidate).string();
        glob_t matches{};
        const int rc = ::glob(full.c_str(), GLOB_BRACE, nullptr, &matches);
        if (rc == GLOB_NOMATCH) {
            check_.error(item, fmt::format("rule_files entry {} matches no file (looked for {}); relative paths "
                                           "start at the test file's folder",
                                           promql::quote(*pattern), promql::quote(full)));
        } else if (rc != 0) {
            check_.error(item, fmt::format("failed to expand rule_files entry {}: {}", promql::quote(*pattern),
                                           rc == GLOB_NOSPACE ? "out of memory" : "a folder could not be read"));
        } else {
            std::vector<std::string> found;
            for (std::size_t m = 0; m < matches.gl_pathc; ++m) {
                std::error_code ec;
                if (!fs::is_directory(matches.gl_pathv[m], ec)) {
                    found.emplace_back(matches.gl_pathv[m]);
                }
            }
            if (found.empty()) {
                check_.error(item, fmt::format("rule_files entry {} matches only folders; expected rule files",
                                               promql::quote(*pattern)));
            }
            std::sort(found.begin(), found.end());
            for (auto& f : found) {
                if (std::find(out.rule_files.begin(), out.rule_files.end(), f) == out.rule_files.end()) {
                    out.rule_files.push_back(std::move(f));
                }
            }
        }
        ::globfree(&matches);
    }
}

void test_file_loader::reject_promtool_only(const YAML::Node& map, std::initializer_list<std::string_view> keys)
{
    for (auto key : keys) {
        const YAML::Node n = yaml::checker::child(map, key);
        if (!n.IsDefined()) {
            continue;
        }
        if (key == "promql_expr_test") {
            check_.error(n, "promql_expr_test is not supported, because tocsin does not evaluate PromQL; test the "
                            "alerts with alert_rule_test");
        } else {
            check_.error(n, fmt::format("{} is not supported, because tocsin templates have no external labels "
                                        "or URL; remove it",
                                        key));
        }
    }
}

std::optional<milliseconds> test_file_loader::positive_duration(const YAML::Node& node, std::string_view field)
{
    auto d = check_.duration(node, field);
    if (d && d->count() <= 0) {
        check_.error(node, fmt::format("{} must be longer than 0s, got {}", field, node.Scalar()));
        return std::nullopt;
    }
    return d;
}

void test_file_loader::load_test(const YAML::Node& node, std::size_t index, milliseconds default_interval,
                                 test_file& out)
{
    const std::string location = fmt::format("tests[{}]", index);
    if (!check_.expect_map(node, location)) {
        return;
    }
    check_.check_keys(node, location,
                      {"name", "interval", "start_timestamp", "input_series", "alert_rule_test", "promql_expr_test",
                       "external_labels", "external_url"});
    reject_promtool_only(node, {"promql_expr_test", "external_labels", "external_url"});

    test_group test;
    test.name = location;
    test.interval = default_interval;
    if (const YAML::Node n = yaml::checker::child(node, "name"); n.IsDefined() && !n.IsNull()) {
        if (auto name = check_.string(n, location + ".name"); name && !name->empty()) {
            test.name = *name;
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "interval"); n.IsDefined() && !n.IsNull()) {
        if (auto d = positive_duration(n, location + ".interval")) {
            test.interval = *d;
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "start_timestamp"); n.IsDefined() && !n.IsNull()) {
        auto text = check_.string(n, location + ".start_timestamp");
        if (text) {
            if (auto start = parse_start_timestamp(*text)) {
                test.start = *start;
            } else {
                check_.error(n, fmt::format("invalid {}.start_timestamp {}; expected Unix seconds such as "
                                            "1704067200 or RFC 3339 such as 2024-01-01T00:00:00Z",
                                            location, promql::quote(*text)));
            }
        }
    }

    const YAML::Node series = yaml::checker::child(node, "input_series");
    if (series.IsDefined() && !series.IsNull() && check_.expect_sequence(series, location + ".input_series")) {
        std::size_t total_samples = 0;
        std::map<std::uint64_t, int> series_lines;
        for (std::size_t i = 0; i < series.size(); ++i) {
            load_series(series[i], i, test, total_samples, series_lines);
        }
    }

    // The last sample and every eval_time must stay within the engine's timestamp range.
    const auto span_limit = static_cast<std::uint64_t>(timestamp_bound_ms - std::abs(test.start));
    const YAML::Node checks = yaml::checker::child(node, "alert_rule_test");
    if (checks.IsDefined() && !checks.IsNull() && check_.expect_sequence(checks, location + ".alert_rule_test")) {
        for (std::size_t i = 0; i < checks.size(); ++i) {
            load_check(checks[i], i, span_limit, test);
        }
    }

    std::size_t longest = 0;
    for (const auto& s : test.series) {
        longest = std::max(longest, s.values.size());
    }
    if (longest > 1 && static_cast<std::uint64_t>(longest - 1) >
                           span_limit / static_cast<std::uint64_t>(test.interval.count())) {
        check_.error(node, fmt::format("{}: {} samples {} apart reach past the year 33,000; use fewer samples or "
                                       "a shorter interval",
                                       location, longest, format_duration(test.interval)));
    }
    out.tests.push_back(std::move(test));
}

void test_file_loader::load_series(const YAML::Node& node, std::size_t index, test_group& test,
                                   std::size_t& total_samples, std::map<std::uint64_t, int>& series_lines)
{
    const std::string location = fmt::format("input_series[{}]", index);
    if (!check_.expect_map(node, location)) {
        return;
    }
    check_.check_keys(node, location, {"series", "values"});
    const YAML::Node series_node = yaml::checker::child(node, "series");
    if (!series_node.IsDefined()) {
        check_.error(node, fmt::format("missing field \"series\" in {}; expected series: 'metric{{name=\"value\"}}'",
                                       location));
        return;
    }
    auto text = check_.string(series_node, location + ".series");
    if (!text) {
        return;
    }
    notation_error problem;
    auto labels = parse_series_labels(*text, problem);
    if (!labels) {
        notation_problem(series_node, location + ".series", problem);
    } else if (auto [previous, inserted] = series_lines.emplace(labels->fingerprint(), series_node.Mark().line + 1);
               !inserted) {
        check_.error(series_node, fmt::format("series {} is listed twice in the same test (first at line {}); "
                                              "merge the values into one entry",
                                              labels->to_string(), previous->second));
        labels.reset();
    }

    // The values are checked even when the series is invalid, so that one run reports both.
    series_input input;
    const YAML::Node values_node = yaml::checker::child(node, "values");
    if (values_node.IsDefined() && !values_node.IsNull()) {
        auto values_text = check_.string(values_node, location + ".values");
        if (!values_text) {
            return;
        }
        auto values = expand_series_values(*values_text, limits_.max_samples_per_series, problem);
        if (!values) {
            notation_problem(values_node, location + ".values", problem);
            return;
        }
        total_samples += values->size();
        if (total_samples > limits_.max_samples_per_test) {
            check_.error(values_node, fmt::format("the input series of this test expand to more than {} samples; "
                                                  "shorten them or split the test",
                                                  limits_.max_samples_per_test));
            return;
        }
        input.values = std::move(*values);
    }
    if (labels) {
        input.labels = std::move(*labels);
        test.series.push_back(std::move(input));
    }
}

void test_file_loader::load_check(const YAML::Node& node, std::size_t index, std::uint64_t span_limit,
                                  test_group& test)
{
    const std::string location = fmt::format("alert_rule_test[{}]", index);
    if (!check_.expect_map(node, location)) {
        return;
    }
    check_.check_keys(node, location, {"eval_time", "alertname", "exp_alerts"});
    alert_check check;
    check.line = node.Mark().line + 1;
    check.column = node.Mark().column + 1;
    bool valid = true;

    const YAML::Node eval = yaml::checker::child(node, "eval_time");
    if (!eval.IsDefined() || eval.IsNull()) {
        check_.error(node, fmt::format("missing field \"eval_time\" in {}; expected a duration from the first "
                                       "sample, such as 10m",
                                       location));
        valid = false;
    } else if (auto d = check_.duration(eval, location + ".eval_time")) {
        check.eval_time = d->count();
        check.eval_time_text = eval.Scalar();
        if (static_cast<std::uint64_t>(check.eval_time) > span_limit) {
            check_.error(eval, fmt::format("{}.eval_time {} reaches past the year 33,000; use a shorter eval_time",
                                           location, eval.Scalar()));
            valid = false;
        }
    } else {
        valid = false;
    }

    const YAML::Node name = yaml::checker::child(node, "alertname");
    if (!name.IsDefined() || name.IsNull()) {
        check_.error(node, fmt::format("missing field \"alertname\" in {}; expected the alert rule's name", location));
        valid = false;
    } else if (auto text = check_.string(name, location + ".alertname"); text && !text->empty()) {
        check.alertname = *text;
    } else {
        if (text) {
            check_.error(name, fmt::format("empty {}.alertname; expected the alert rule's name", location));
        }
        valid = false;
    }

    const YAML::Node alerts = yaml::checker::child(node, "exp_alerts");
    if (alerts.IsDefined() && !alerts.IsNull() && check_.expect_sequence(alerts, location + ".exp_alerts")) {
        for (std::size_t i = 0; i < alerts.size(); ++i) {
            auto expected = load_expected(alerts[i], fmt::format("{}.exp_alerts[{}]", location, i), check.alertname);
            if (expected) {
                check.expected.push_back(std::move(*expected));
            } else {
                valid = false;
            }
        }
    }
    if (valid) {
        test.checks.push_back(std::move(check));
    }
}

std::optional<expected_alert> test_file_loader::load_expected(const YAML::Node& node, std::string_view field,
                                                              const std::string& alertname)
{
    if (!check_.expect_map(node, field)) {
        return std::nullopt;
    }
    check_.check_keys(node, field, {"exp_labels", "exp_annotations"});
    expected_alert out;
    std::vector<label> labels;
    if (const YAML::Node n = yaml::checker::child(node, "exp_labels"); n.IsDefined() && !n.IsNull()) {
        auto pairs = load_string_map(n, fmt::format("{}.exp_labels", field));
        if (!pairs) {
            return std::nullopt;
        }
        for (auto& [name, value] : *pairs) {
            if (name == "alertname" && value != alertname) {
                check_.error(n, fmt::format("{}.exp_labels has alertname {}, but the test is for {}; leave "
                                            "alertname out, it is added",
                                            field, promql::quote(value), promql::quote(alertname)));
                return std::nullopt;
            }
            labels.push_back(label{name, value});
        }
    }
    // As in promtool, the alertname label is implied.
    labels.push_back(label{"alertname", alertname});
    out.labels = label_set(std::move(labels));
    if (const YAML::Node n = yaml::checker::child(node, "exp_annotations"); n.IsDefined()) {
        if (n.IsNull()) {
            out.annotations.emplace();
        } else {
            out.annotations = load_string_map(n, fmt::format("{}.exp_annotations", field));
            if (!out.annotations) {
                return std::nullopt;
            }
        }
    }
    return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>>
test_file_loader::load_string_map(const YAML::Node& node, std::string_view field)
{
    if (!check_.expect_map(node, field)) {
        return std::nullopt;
    }
    std::vector<std::pair<std::string, std::string>> out;
    bool valid = true;
    for (auto it = node.begin(); it != node.end(); ++it) {
        // Copies: the iterator returns its pair by value, so a reference would dangle.
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        if (!key.IsScalar()) {
            check_.error(key, fmt::format("{} keys must be strings, got {}", field, yaml::describe(key)));
            valid = false;
            continue;
        }
        if (value.IsNull()) {
            out.emplace_back(key.Scalar(), "");
            continue;
        }
        auto text = check_.string(value, fmt::format("{}.{}", field, key.Scalar()));
        if (!text) {
            valid = false;
            continue;
        }
        for (const auto& [existing, unused] : out) {
            if (existing == key.Scalar()) {
                check_.error(key, fmt::format("{} lists {} twice; keep one", field, promql::quote(existing)));
                valid = false;
            }
        }
        out.emplace_back(key.Scalar(), *text);
    }
    if (!valid) {
        return std::nullopt;
    }
    std::sort(out.begin(), out.end());
    return out;
}

void test_file_loader::notation_problem(const YAML::Node& node, std::string_view field, const notation_error& error)
{
    YAML::Mark mark = node.Mark();
    if (!mark.is_null() && mark.line >= 0 && static_cast<std::size_t>(mark.line) < lines_.size()) {
        const std::string_view line = lines_[static_cast<std::size_t>(mark.line)];
        auto start = static_cast<std::size_t>(mark.column);
        if (start < line.size() && (line[start] == '"' || line[start] == '\'')) {
            ++start;
        }
        const std::string& value = node.Scalar();
        if (start <= line.size() && line.substr(start, value.size()) == value) {
            mark.column = static_cast<int>(start + error.offset);
            check_.error(mark, fmt::format("invalid {}: {}", field, error.message));
            return;
        }
    }
    check_.error(node, fmt::format("invalid {} at character {}: {}", field, error.offset + 1, error.message));
}

} // namespace

// -- running ---------------------------------------------------------------------------------

namespace {

std::vector<std::pair<std::string, std::string>> sorted_annotations(std::vector<std::pair<std::string, std::string>> a)
{
    std::sort(a.begin(), a.end());
    return a;
}

bool labels_less(const rule_test_alert& a, const rule_test_alert& b)
{
    const auto& x = a.labels.items();
    const auto& y = b.labels.items();
    if (x != y) {
        return std::lexicographical_compare(x.begin(), x.end(), y.begin(), y.end(), [](const label& l, const label& r) {
            return std::tie(l.name, l.value) < std::tie(r.name, r.value);
        });
    }
    return a.annotations < b.annotations;
}

// Compares the firing alerts with the expected ones, each expected alert taking one firing
// alert with the same labels (and the same annotations when it lists them). Order does not count.
bool alerts_match(const std::vector<expected_alert>& expected, const std::vector<rule_test_alert>& got)
{
    if (expected.size() != got.size()) {
        return false;
    }
    std::vector<bool> used(got.size(), false);
    for (const auto& e : expected) {
        bool found = false;
        for (std::size_t g = 0; g < got.size() && !found; ++g) {
            if (!used[g] && got[g].labels == e.labels && (!e.annotations || *e.annotations == got[g].annotations)) {
                used[g] = true;
                found = true;
            }
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

// Runs one test group on a fresh engine. Sample i of every series is ingested at
// start + i * interval, all series of one timestamp before tick(), so no-data timers run on
// the clock as in the daemon. Each check reads the alerts after tick() at its eval_time.
void run_test(const test_group& test, const std::shared_ptr<const rule_set>& rules, const std::string& file,
              rule_test_file_result& result)
{
    manual_clock clock(test.start);
    engine eng(rules, engine_limits{}, clock);

    std::vector<std::vector<label_view>> views(test.series.size());
    std::size_t longest = 0;
    for (std::size_t s = 0; s < test.series.size(); ++s) {
        for (const auto& l : test.series[s].labels.items()) {
            views[s].push_back(label_view{l.name, l.value});
        }
        longest = std::max(longest, test.series[s].values.size());
    }

    // Checks run in eval_time order, because the engine only moves forward in time.
    std::vector<std::size_t> order(test.checks.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return test.checks[a].eval_time < test.checks[b].eval_time;
    });

    std::vector<rule_test_failure> failures;
    std::size_t next = 0;
    for (const std::size_t index : order) {
        const alert_check& check = test.checks[index];
        const time_ms eval_at = test.start + check.eval_time;
        while (next < longest) {
            const time_ms t = test.start + static_cast<time_ms>(next) * test.interval.count();
            if (t > eval_at) {
                break;
            }
            clock.set_ms(t);
            for (std::size_t s = 0; s < test.series.size(); ++s) {
                const auto& values = test.series[s].values;
                if (next < values.size() && values[next]) {
                    eng.ingest(views[s], t, *values[next]);
                }
            }
            eng.tick();
            // Events matter only to the daemon's store; dropping them keeps memory flat.
            eng.take_events();
            ++next;
        }
        clock.set_ms(std::max(clock.now_ms(), eval_at));
        eng.tick();
        eng.take_events();

        std::vector<rule_test_alert> got;
        for (auto& a : eng.alerts()) {
            if (a.state == alert_state::firing && a.rule_name == check.alertname) {
                got.push_back(rule_test_alert{std::move(a.labels), sorted_annotations(std::move(a.annotations)), true});
            }
        }
        ++result.checks;
        if (alerts_match(check.expected, got)) {
            continue;
        }
        rule_test_failure failure;
        failure.file = file;
        failure.test = test.name;
        failure.alertname = check.alertname;
        failure.eval_time = check.eval_time;
        failure.eval_time_text = check.eval_time_text;
        failure.line = check.line;
        failure.column = check.column;
        for (const auto& e : check.expected) {
            failure.expected.push_back(
                rule_test_alert{e.labels, e.annotations.value_or(std::vector<std::pair<std::string, std::string>>{}),
                                e.annotations.has_value()});
        }
        std::sort(failure.expected.begin(), failure.expected.end(), labels_less);
        std::sort(got.begin(), got.end(), labels_less);
        failure.got = std::move(got);
        failures.push_back(std::move(failure));
    }
    // Report in file order, not eval_time order.
    std::sort(failures.begin(), failures.end(), [](const rule_test_failure& a, const rule_test_failure& b) {
        return a.line < b.line;
    });
    for (auto& f : failures) {
        result.failures.push_back(std::move(f));
    }
}

void check_alert_names(const test_file& tests, const rule_set& rules, const std::string& path, diagnostics& errors)
{
    for (const auto& test : tests.tests) {
        for (const auto& check : test.checks) {
            const bool known = std::any_of(rules.rules.begin(), rules.rules.end(),
                                           [&](const auto& r) { return r->name == check.alertname; });
            if (!known) {
                errors.add(path, check.line, check.column,
                           fmt::format("alertname {} is not defined in the rule files of this test; check the "
                                       "spelling or add the rule file to rule_files",
                                       promql::quote(check.alertname)));
            }
        }
    }
}

std::string format_annotations(const std::vector<std::pair<std::string, std::string>>& annotations)
{
    std::string out = "{";
    for (const auto& [name, value] : annotations) {
        out += out.size() > 1 ? ", " : "";
        out += promql::format_label_name(name) + "=" + promql::quote(value);
    }
    out += "}";
    return out;
}

} // namespace

rule_test_file_result run_rule_test_file(const std::string& path, const rule_test_limits& limits)
{
    rule_test_file_result result;
    result.file = path;

    std::string text;
    std::string problem;
    if (!read_regular_file(path, max_config_file_bytes, text, problem)) {
        result.errors.add(path, 0, 0, fmt::format("failed to read rule test file: {}", problem));
        return result;
    }
    // The rule files load and the alert names are checked even when the test file has errors,
    // so that one run reports every problem.
    auto loaded = test_file_loader(text, path, limits, result.errors).load();
    if (!loaded) {
        return result;
    }

    const std::size_t test_file_errors = result.errors.size();
    std::vector<rule_group> groups;
    for (const auto& file : loaded->rule_files) {
        for (auto& g : load_rule_file(file, result.errors)) {
            groups.push_back(std::move(g));
        }
    }
    auto rules = make_rule_set(std::move(groups));
    validate_rule_set(*rules, result.errors);
    const bool rules_valid = result.errors.size() == test_file_errors;

    // A check of an alert that no rule defines would pass while expecting nothing, so a typo
    // in alertname must fail loudly. With a rule file missing or invalid, the check would only
    // add noise.
    if (rules_valid && loaded->rule_files_complete) {
        check_alert_names(*loaded, *rules, path, result.errors);
    }
    if (!result.errors.empty()) {
        return result;
    }

    for (const auto& test : loaded->tests) {
        run_test(test, rules, path, result);
        ++result.tests;
    }
    return result;
}

std::string format_rule_test_failure(const rule_test_failure& failure)
{
    std::string out = fmt::format("{}:{}:{}: FAILED {}: alertname {} at eval_time {}\n", failure.file, failure.line,
                                  failure.column, promql::quote(failure.test), failure.alertname,
                                  failure.eval_time_text.empty()
                                      ? format_duration(std::chrono::milliseconds(failure.eval_time))
                                      : failure.eval_time_text);
    out += fmt::format("  expected {} firing, got {}; - expected but not firing, + firing but not expected, "
                       "~ other annotations\n",
                       failure.expected.size(), failure.got.size());

    // Pair each expected alert with a firing one: first exact matches, then equal labels.
    std::vector<bool> expected_used(failure.expected.size(), false);
    std::vector<int> got_pair(failure.got.size(), -1); // index into expected
    std::vector<bool> got_exact(failure.got.size(), false);
    for (int pass = 0; pass < 2; ++pass) {
        for (std::size_t e = 0; e < failure.expected.size(); ++e) {
            if (expected_used[e]) {
                continue;
            }
            const auto& want = failure.expected[e];
            for (std::size_t g = 0; g < failure.got.size(); ++g) {
                if (got_pair[g] >= 0 || !(failure.got[g].labels == want.labels)) {
                    continue;
                }
                const bool exact = !want.annotations_given || want.annotations == failure.got[g].annotations;
                if (pass == 0 && !exact) {
                    continue;
                }
                expected_used[e] = true;
                got_pair[g] = static_cast<int>(e);
                got_exact[g] = exact;
                break;
            }
        }
    }

    for (std::size_t g = 0; g < failure.got.size(); ++g) {
        const auto& alert = failure.got[g];
        if (got_pair[g] < 0) {
            out += fmt::format("  + {}\n      annotations: {}\n", alert.labels.to_string(),
                               format_annotations(alert.annotations));
        } else if (got_exact[g]) {
            out += fmt::format("    {}\n", alert.labels.to_string());
        } else {
            const auto& want = failure.expected[static_cast<std::size_t>(got_pair[g])];
            out += fmt::format("  ~ {}\n      expected annotations: {}\n      got annotations:      {}\n",
                               alert.labels.to_string(), format_annotations(want.annotations),
                               format_annotations(alert.annotations));
        }
    }
    bool severity_missing = false;
    for (std::size_t e = 0; e < failure.expected.size(); ++e) {
        const auto& want = failure.expected[e];
        severity_missing = severity_missing || want.labels.get("severity").empty();
        if (expected_used[e]) {
            continue;
        }
        out += fmt::format("  - {}\n", want.labels.to_string());
        if (want.annotations_given) {
            out += fmt::format("      annotations: {}\n", format_annotations(want.annotations));
        }
    }
    if (severity_missing && !failure.got.empty()) {
        out += "  note: tocsin alerts carry a severity label (the tier that fires); list it in exp_labels\n";
    }
    return out;
}

rule_test_exit run_rule_test_files(const std::vector<std::string>& paths, std::FILE* out, std::FILE* err,
                                   const rule_test_limits& limits)
{
    bool any_invalid = false;
    bool any_failed = false;
    for (const auto& path : paths) {
        const rule_test_file_result result = run_rule_test_file(path, limits);
        if (!result.errors.empty()) {
            any_invalid = true;
            for (const auto& d : result.errors.items()) {
                std::fprintf(err, "%s\n", d.to_string().c_str());
            }
            std::fprintf(out, "%s: INVALID (%zu errors); no test ran\n", path.c_str(), result.errors.size());
            continue;
        }
        if (result.failures.empty()) {
            std::fprintf(out, "%s: PASSED (%zu tests, %zu checks)\n", path.c_str(), result.tests, result.checks);
            continue;
        }
        any_failed = true;
        for (const auto& failure : result.failures) {
            std::fprintf(out, "%s", format_rule_test_failure(failure).c_str());
        }
        std::fprintf(out, "%s: FAILED (%zu of %zu checks in %zu tests)\n", path.c_str(), result.failures.size(),
                     result.checks, result.tests);
    }
    std::fflush(out);
    if (any_invalid) {
        return rule_test_exit::invalid_file;
    }
    return any_failed ? rule_test_exit::failed : rule_test_exit::passed;
}

} // namespace tocsin
