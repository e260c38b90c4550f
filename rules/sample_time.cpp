#include "rules/sample_time.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "rules/file_read.hpp"

namespace tocsin {

namespace {

// Numeric timestamps above this are milliseconds: 1e11 seconds is the year 5138, while 1e11
// milliseconds is March 1973, before any recorded metric.
constexpr double milliseconds_threshold = 1e11;

constexpr const char* timestamp_forms =
    "expected Unix seconds (1396310400), Unix milliseconds (1396310400000), a UTC date such as "
    "2014-04-01 00:00:00, or RFC 3339 such as 2014-04-01T00:00:00+02:00";

bool parse_digits(std::string_view text, std::size_t pos, std::size_t count, int& out)
{
    if (pos + count > text.size()) {
        return false;
    }
    int v = 0;
    for (std::size_t i = pos; i < pos + count; ++i) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        v = v * 10 + (text[i] - '0');
    }
    out = v;
    return true;
}

// Parses "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS[.fff]" and RFC 3339 with 'T', an optional fraction
// and Z or an offset (+HH:MM or +HHMM). No offset means UTC.
std::optional<time_ms> parse_date(std::string_view text, std::string& error)
{
    using namespace std::chrono;
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (!parse_digits(text, 0, 4, y) || text[4] != '-' || !parse_digits(text, 5, 2, mo) || text.size() < 10 ||
        text[7] != '-' || !parse_digits(text, 8, 2, d)) {
        error = fmt::format("invalid date \"{}\"; {}", text, timestamp_forms);
        return std::nullopt;
    }
    const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
    if (!ymd.ok()) {
        error = fmt::format("invalid date \"{}\": no such day; expected a calendar date such as 2014-04-01", text);
        return std::nullopt;
    }
    std::size_t pos = 10;
    std::int64_t millis = 0;
    std::int64_t offset_minutes = 0;
    if (pos < text.size()) {
        const char sep = text[pos];
        if ((sep != ' ' && sep != 'T' && sep != 't') || !parse_digits(text, pos + 1, 2, h) ||
            text.size() < pos + 9 || text[pos + 3] != ':' || !parse_digits(text, pos + 4, 2, mi) ||
            text[pos + 6] != ':' || !parse_digits(text, pos + 7, 2, s)) {
            error = fmt::format("invalid date and time \"{}\"; {}", text, timestamp_forms);
            return std::nullopt;
        }
        if (h > 23 || mi > 59 || s > 59) {
            error = fmt::format("invalid time of day in \"{}\"; expected hours 00-23, minutes and seconds 00-59", text);
            return std::nullopt;
        }
        pos += 9;
        if (pos < text.size() && text[pos] == '.') {
            ++pos;
            const std::size_t begin = pos;
            while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
                // Digits past milliseconds are dropped: sample times are whole milliseconds.
                if (pos - begin < 3) {
                    millis = millis * 10 + (text[pos] - '0');
                }
                ++pos;
            }
            if (pos == begin) {
                error = fmt::format("invalid fraction of a second in \"{}\"; expected digits after the '.'", text);
                return std::nullopt;
            }
            for (std::size_t n = pos - begin; n < 3; ++n) {
                millis *= 10;
            }
        }
        if (pos < text.size()) {
            const char zone = text[pos];
            int oh = 0, om = 0;
            if ((zone == 'Z' || zone == 'z') && pos + 1 == text.size()) {
                pos += 1;
            } else if ((zone == '+' || zone == '-') && parse_digits(text, pos + 1, 2, oh) &&
                       ((text.size() == pos + 6 && text[pos + 3] == ':' && parse_digits(text, pos + 4, 2, om)) ||
                        (text.size() == pos + 5 && parse_digits(text, pos + 3, 2, om))) &&
                       oh <= 23 && om <= 59) {
                offset_minutes = (zone == '-' ? -1 : 1) * (oh * 60 + om);
                pos = text.size();
            } else {
                error = fmt::format("invalid time zone in \"{}\"; expected Z, +HH:MM or -HH:MM, or nothing for UTC",
                                    text);
                return std::nullopt;
            }
        }
    }
    const auto day_ms = duration_cast<milliseconds>(sys_days{ymd}.time_since_epoch()).count();
    return day_ms + ((h * 60 + mi) * 60 + s) * 1000LL + millis - offset_minutes * 60'000;
}

std::string_view trim_blanks(std::string_view s)
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
    s = trim_blanks(s);
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
        s = trim_blanks(s.substr(1, s.size() - 2));
    }
    return s;
}

// A whole decimal number with an optional leading '+'.
bool parse_number(std::string_view text, double& out)
{
    text = trim_blanks(text);
    if (!text.empty() && text.front() == '+') {
        text.remove_prefix(1);
    }
    if (text.empty() || text.front() == '+') {
        return false;
    }
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && end == text.data() + text.size();
}

} // namespace

std::string format_rfc3339(time_ms t)
{
    using namespace std::chrono;
    const sys_time<milliseconds> tp{milliseconds(t)};
    const auto day = floor<days>(tp);
    const year_month_day ymd{day};
    const hh_mm_ss<milliseconds> hms{tp - day};
    std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                                  hms.hours().count(), hms.minutes().count(), hms.seconds().count());
    if (hms.subseconds().count() != 0) {
        out += fmt::format(".{:03}", hms.subseconds().count());
    }
    out += 'Z';
    return out;
}

std::optional<time_ms> parse_sample_timestamp(std::string_view text, std::optional<bool>& unit_ms,
                                                std::string& error)
{
    text = unquote(text);
    if (text.empty()) {
        error = fmt::format("empty timestamp; {}", timestamp_forms);
        return std::nullopt;
    }
    if (text.size() >= 10 && text[4] == '-') {
        auto t = parse_date(text, error);
        if (t && (*t <= -timestamp_bound_ms || *t >= timestamp_bound_ms)) {
            error = fmt::format("timestamp \"{}\" is out of range", text);
            return std::nullopt;
        }
        return t;
    }
    double number = 0;
    if (!parse_number(text, number) || !std::isfinite(number)) {
        error = fmt::format("invalid timestamp \"{}\"; {}", text, timestamp_forms);
        return std::nullopt;
    }
    const bool is_ms = std::fabs(number) > milliseconds_threshold;
    if (unit_ms && *unit_ms != is_ms) {
        error = fmt::format(
            "timestamp \"{}\" reads as Unix {} (numbers above 1e11 are milliseconds), but the first row of the "
            "file was in {}; write every timestamp in one unit",
            text, is_ms ? "milliseconds" : "seconds", *unit_ms ? "milliseconds" : "seconds");
        return std::nullopt;
    }
    unit_ms = is_ms;
    const double ms = is_ms ? number : number * 1000.0;
    if (!(std::fabs(ms) < static_cast<double>(timestamp_bound_ms))) {
        error = fmt::format("timestamp \"{}\" is out of range", text);
        return std::nullopt;
    }
    return static_cast<time_ms>(std::llround(ms));
}

std::optional<std::vector<std::pair<time_ms, double>>> read_timestamp_value_file(const std::string& path,
                                                                                 std::size_t max_samples,
                                                                                 std::string& error)
{
    std::string content;
    std::string problem;
    if (!read_regular_file(path, max_config_file_bytes, content, problem)) {
        error = fmt::format("{}: {}", path, problem);
        return std::nullopt;
    }
    std::vector<std::pair<time_ms, double>> out;
    std::optional<bool> unit_ms;
    std::string_view rest = content;
    int line = 0;
    while (!rest.empty()) {
        const auto end = rest.find('\n');
        std::string_view row = trim_blanks(rest.substr(0, end));
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        ++line;
        if (row.empty()) {
            continue;
        }
        const auto comma = row.find(',');
        if (comma == std::string_view::npos || row.find(',', comma + 1) != std::string_view::npos) {
            error = fmt::format("{}:{}: expected two fields, timestamp,value; got {}", path, line,
                                fmt::format("\"{}\"", row.substr(0, 80)));
            return std::nullopt;
        }
        double value = 0;
        const bool numeric = parse_number(unquote(row.substr(comma + 1)), value);
        if (!numeric && out.empty() && line == 1) {
            continue; // a header row
        }
        if (!numeric || !std::isfinite(value)) {
            error = fmt::format("{}:{}: invalid value \"{}\"; expected a finite number", path, line,
                                row.substr(comma + 1, 80));
            return std::nullopt;
        }
        auto t = parse_sample_timestamp(row.substr(0, comma), unit_ms, problem);
        if (!t) {
            error = fmt::format("{}:{}: {}", path, line, problem);
            return std::nullopt;
        }
        if (!out.empty() && *t <= out.back().first) {
            error = fmt::format("{}:{}: timestamp {} is not after the previous row's {}; sort the rows by time and "
                                "remove duplicates",
                                path, line, format_rfc3339(*t), format_rfc3339(out.back().first));
            return std::nullopt;
        }
        if (out.size() >= max_samples) {
            error = fmt::format("{}:{}: more than {} rows; a warm start needs no more than the detector keeps, so "
                                "cut the file to its most recent rows",
                                path, line, max_samples);
            return std::nullopt;
        }
        out.emplace_back(*t, value);
    }
    return out;
}

} // namespace tocsin
