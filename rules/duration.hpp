#pragma once
// Prometheus-style durations: one or more <integer><unit> parts with units in descending
// order, each at most once: y (365 days), w, d, h, m, s, ms. "1h30m", "500ms", "2d", "0s".
// A bare "0" is accepted, as Prometheus does.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace tocsin {

// Parses `text`. Returns nullopt and sets `error` ("what is wrong; what was expected") for an
// empty string, a sign, a fraction, an unknown or repeated unit, units out of order, or a
// value above the range of std::chrono::milliseconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string& error);

// Formats in the same notation with the largest units first: 90 min -> "1h30m", 0 -> "0s".
// Negative durations get a leading '-'.
std::string format_duration(std::chrono::milliseconds d);

} // namespace tocsin
