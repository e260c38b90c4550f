#pragma once
// The JSON of Alertmanager's v2 silence API (PostableSilence, GettableSilence), also used to
// store silences in the state database.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/matcher.hpp"
#include "routing/silences.hpp"

namespace tocsin {

// Largest request body of POST /api/v2/silences.
inline constexpr std::size_t max_silence_body_bytes = 256 * 1024;

// A parsed request body, or the HTTP status and message that reject it.
struct silence_body {
    int status = 200;
    std::string error;
    silence value;
};

// Parses a PostableSilence: {"id"?, "matchers": [{"name", "value", "isRegex", "isEqual"?}],
// "startsAt", "endsAt", "createdBy", "comment"}. Fields are checked for type and form here;
// the silence store checks the rules that need the clock (see silence_store::validate).
silence_body parse_postable_silence(std::string_view body);

// A GettableSilence: the silence with "status": {"state": ...} and "updatedAt".
nlohmann::json gettable_silence(const silence& s, time_ms now);

// The form stored in the state database, and its reader.
std::string stored_silence(const silence& s);
std::optional<silence> parse_stored_silence(std::string_view text, std::string& error);

// Parses the `filter` query values of GET /api/v2/silences and /api/v2/alerts: each one
// matcher such as alertname="DiskFull", optionally in braces, or several separated by commas.
// Returns a JSON value as text for an error message, cut to 60 bytes so that a huge value
// cannot flood the response.
std::string json_excerpt(const nlohmann::json& value);

std::optional<std::vector<label_matcher>> parse_filter_matchers(const std::vector<std::string>& values,
                                                                std::string& error);

} // namespace tocsin
