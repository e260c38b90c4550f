#pragma once
// Sample timestamps as people write them in recorded series: Unix seconds or milliseconds, dates
// and RFC 3339. Shared by the backtest's readers and by detectors' warm-start files.
//
// Thread safety: every function is reentrant.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rules/clock.hpp"

namespace tocsin {

// Parses a timestamp. Numbers are Unix seconds (a fraction allowed), or Unix milliseconds when
// the number is above 1e11, because 1e11 seconds is the year 5138 and 1e11 milliseconds is March
// 1973. `unit_ms` carries the unit of the first numeric timestamp of a file: a later one in the
// other unit is an error. Dates may be written "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS[.fff]" or
// RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)", and are UTC unless an offset is given. One
// pair of double quotes around the text is allowed. Returns nullopt with `error` set ("what is
// wrong; the fix").
std::optional<time_ms> parse_sample_timestamp(std::string_view text, std::optional<bool>& unit_ms,
                                              std::string& error);

// Formats a sample time as RFC 3339 in UTC: "2014-04-01T00:05:00Z", with ".250" when the
// milliseconds are not zero.
std::string format_rfc3339(time_ms t);

// Reads a file of `timestamp,value` rows (a header row allowed, timestamps as above, ascending)
// for a detector's warm start. At most `max_samples` rows. On failure returns nothing and sets
// `error` to "path:line: what is wrong; the fix".
std::optional<std::vector<std::pair<time_ms, double>>> read_timestamp_value_file(const std::string& path,
                                                                                 std::size_t max_samples,
                                                                                 std::string& error);

} // namespace tocsin
