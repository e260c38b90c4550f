#include "rules/duration.hpp"

#include <cstdint>
#include <limits>

#include <fmt/format.h>

namespace tocsin {

namespace {

struct unit {
    std::string_view suffix;
    std::int64_t ms;
};

// Descending order; "ms" precedes "m" so that the longer suffix wins when matching.
constexpr unit units[] = {
    {"y", 365LL * 24 * 3600 * 1000},
    {"w", 7LL * 24 * 3600 * 1000},
    {"d", 24LL * 3600 * 1000},
    {"h", 3600LL * 1000},
    {"m", 60LL * 1000},
    {"s", 1000},
    {"ms", 1},
};

constexpr std::string_view expected = "expected a duration such as 30s, 5m, 1h30m or 500ms";

} // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string& error)
{
    if (text.empty()) {
        error = fmt::format("empty duration; {}", expected);
        return std::nullopt;
    }
    if (text == "0") {
        return std::chrono::milliseconds(0);
    }
    if (text.front() == '-') {
        error = fmt::format("negative duration \"{}\"; {}", text, expected);
        return std::nullopt;
    }
    if (text.find_first_of(" \t") != std::string_view::npos) {
        // "5 min" and "1h 30m" are common first attempts, so the message gives the spelling to use.
        std::string squeezed;
        for (char c : text) {
            if (c != ' ' && c != '\t') {
                squeezed.push_back(c);
            }
        }
        for (std::string_view word : {"mins", "min", "secs", "sec", "hours", "hour", "days", "day"}) {
            if (squeezed.ends_with(word)) {
                squeezed.replace(squeezed.size() - word.size(), word.size(), word.substr(0, 1));
                break;
            }
        }
        error = fmt::format("invalid duration \"{}\": spaces are not allowed; write \"{}\"", text, squeezed);
        return std::nullopt;
    }

    std::int64_t total = 0;
    std::size_t next_unit = 0; // index into `units` of the smallest unit still allowed
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t digits_start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
            ++pos;
        }
        if (pos == digits_start) {
            error = fmt::format("invalid duration \"{}\": expected a number at \"{}\"; {}", text,
                                text.substr(pos), expected);
            return std::nullopt;
        }
        const std::string_view digits = text.substr(digits_start, pos - digits_start);
        if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
            error = fmt::format("invalid duration \"{}\": fractions are not allowed; write 1m30s for "
                                "1.5m, or 1500ms for 1.5s",
                                text);
            return std::nullopt;
        }

        const std::size_t suffix_start = pos;
        while (pos < text.size() && !(text[pos] >= '0' && text[pos] <= '9')) {
            ++pos;
        }
        const std::string_view suffix = text.substr(suffix_start, pos - suffix_start);
        if (suffix.empty()) {
            error = fmt::format("invalid duration \"{}\": missing unit after {}; units are y, w, d, h, m, "
                                "s, ms (for example {}s)",
                                text, digits, digits);
            return std::nullopt;
        }
        std::size_t index = std::size(units);
        for (std::size_t i = 0; i < std::size(units); ++i) {
            if (units[i].suffix == suffix) {
                index = i;
            }
        }
        if (index == std::size(units)) {
            error = fmt::format("invalid duration \"{}\": unknown unit \"{}\"; units are y, w, d, h, m, s, ms",
                                text, suffix);
            return std::nullopt;
        }
        if (index < next_unit) {
            error = fmt::format("invalid duration \"{}\": unit \"{}\" is repeated or out of order; "
                                "write the units from largest to smallest, each once, as in 1h30m",
                                text, suffix);
            return std::nullopt;
        }
        next_unit = index + 1;

        std::int64_t count = 0;
        const std::int64_t limit = std::numeric_limits<std::int64_t>::max();
        for (char c : digits) {
            const int d = c - '0';
            if (count > (limit - d) / 10) {
                count = -1;
                break;
            }
            count = count * 10 + d;
        }
        if (count < 0 || count > (limit - total) / units[index].ms) {
            error = fmt::format("duration \"{}\" is too large; the maximum is 100y", text);
            return std::nullopt;
        }
        total += count * units[index].ms;
    }
    // Durations are added to sample timestamps. A cap of 100 years keeps every such sum far
    // from int64 overflow and is longer than any window or timer a rule needs.
    constexpr std::int64_t max_duration_ms = 100LL * 365 * 24 * 3600 * 1000;
    if (total > max_duration_ms) {
        error = fmt::format("duration \"{}\" is too large; the maximum is 100y", text);
        return std::nullopt;
    }
    return std::chrono::milliseconds(total);
}

std::string format_duration(std::chrono::milliseconds d)
{
    std::int64_t ms = d.count();
    if (ms == 0) {
        return "0s";
    }
    std::string out;
    if (ms < 0) {
        out += '-';
        // -INT64_MIN overflows; that value is far outside any configured duration, so clamp it.
        ms = ms == std::numeric_limits<std::int64_t>::min() ? std::numeric_limits<std::int64_t>::max() : -ms;
    }
    for (const auto& u : units) {
        if (ms >= u.ms) {
            out += fmt::format("{}{}", ms / u.ms, u.suffix);
            ms %= u.ms;
        }
    }
    return out;
}

} // namespace tocsin
