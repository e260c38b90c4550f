#include "daemon/silence_api.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "daemon/api.hpp"
#include "daemon/http_types.hpp"
#include "daemon/overrides.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;

constexpr int max_json_depth = 8;

match_op op_of(bool is_regex, bool is_equal)
{
    if (is_regex) {
        return is_equal ? match_op::regex : match_op::not_regex;
    }
    return is_equal ? match_op::equal : match_op::not_equal;
}

// Reads the fields shared by the request and the stored form into `out`. Returns the problem,
// or nullopt.
std::optional<std::string> read_silence(const json& doc, silence& out)
{
    if (!doc.is_object()) {
        return fmt::format("the body must be a JSON object with matchers, startsAt, endsAt, createdBy and comment; "
                           "got {}",
                           json_excerpt(doc));
    }
    auto text = [&](const char* field, bool required, std::string& into) -> std::optional<std::string> {
        auto it = doc.find(field);
        if (it == doc.end() || it->is_null()) {
            if (required) {
                return fmt::format("missing field \"{}\"", field);
            }
            return std::nullopt;
        }
        if (!it->is_string()) {
            return fmt::format("field \"{}\" must be a string; got {}", field, json_excerpt(*it));
        }
        into = it->get<std::string>();
        return std::nullopt;
    };
    auto time = [&](const char* field, bool required, time_ms& into) -> std::optional<std::string> {
        std::string value;
        if (auto problem = text(field, required, value)) {
            return problem;
        }
        if (value.empty() && !required) {
            return std::nullopt;
        }
        const auto parsed = parse_rfc3339(value);
        if (!parsed) {
            return fmt::format("field \"{}\" is {}, not an RFC 3339 time; expected for example "
                               "2026-01-02T15:04:05Z",
                               field, json_excerpt(json(value)));
        }
        into = *parsed;
        return std::nullopt;
    };

    if (auto problem = text("id", false, out.id)) {
        return problem;
    }
    auto matchers = doc.find("matchers");
    if (matchers == doc.end() || !matchers->is_array()) {
        return "field \"matchers\" must be an array such as [{\"name\": \"alertname\", \"value\": \"DiskFull\", "
               "\"isRegex\": false}]";
    }
    for (std::size_t i = 0; i < matchers->size(); ++i) {
        const json& m = (*matchers)[i];
        if (!m.is_object()) {
            return fmt::format("matchers[{}] must be an object with name, value and isRegex; got {}", i, json_excerpt(m));
        }
        auto name = m.find("name");
        auto value = m.find("value");
        auto is_regex = m.find("isRegex");
        auto is_equal = m.find("isEqual");
        if (name == m.end() || !name->is_string() || value == m.end() || !value->is_string()) {
            return fmt::format("matchers[{}] needs string fields name and value; got {}", i, json_excerpt(m));
        }
        if (is_regex == m.end() || !is_regex->is_boolean()) {
            return fmt::format("matchers[{}] needs the boolean field isRegex; got {}", i, json_excerpt(m));
        }
        if (is_equal != m.end() && !is_equal->is_boolean() && !is_equal->is_null()) {
            return fmt::format("matchers[{}].isEqual must be a boolean; got {}", i, json_excerpt(*is_equal));
        }
        const bool equal = is_equal == m.end() || is_equal->is_null() || is_equal->get<bool>();
        std::string error;
        auto made = label_matcher::make(name->get<std::string>(), op_of(is_regex->get<bool>(), equal),
                                        value->get<std::string>(), error);
        if (!made) {
            return fmt::format("matchers[{}]: {}", i, error);
        }
        out.matchers.push_back(std::move(*made));
    }
    if (auto problem = time("startsAt", true, out.starts_at)) {
        return problem;
    }
    if (auto problem = time("endsAt", true, out.ends_at)) {
        return problem;
    }
    if (auto problem = text("createdBy", true, out.created_by)) {
        return problem;
    }
    if (auto problem = text("comment", true, out.comment)) {
        return problem;
    }
    return std::nullopt;
}

json matchers_json(const silence& s)
{
    json out = json::array();
    for (const label_matcher& m : s.matchers) {
        const bool regex = m.op() == match_op::regex || m.op() == match_op::not_regex;
        const bool equal = m.op() == match_op::equal || m.op() == match_op::regex;
        out.push_back({{"name", m.name()}, {"value", m.value()}, {"isRegex", regex}, {"isEqual", equal}});
    }
    return out;
}

// Splits `text` at commas outside double-quoted strings.
std::vector<std::string_view> split_matchers(std::string_view text)
{
    std::vector<std::string_view> out;
    bool in_string = false;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string && c == '\\') {
            ++i;
        } else if (c == '"') {
            in_string = !in_string;
        } else if (c == ',' && !in_string) {
            out.push_back(text.substr(start, i - start));
            start = i + 1;
        }
    }
    out.push_back(text.substr(start));
    return out;
}

} // namespace

silence_body parse_postable_silence(std::string_view body)
{
    silence_body out;
    auto fail = [&](int status, std::string error) {
        out.status = status;
        out.error = std::move(error);
        return out;
    };
    if (body.size() > max_silence_body_bytes) {
        return fail(413, fmt::format("request body has {} bytes, over the limit of {} for a silence; shorten the "
                                     "comment or use fewer matchers",
                                     body.size(), max_silence_body_bytes));
    }
    if (json_nesting_depth(body) > max_json_depth) {
        return fail(400, fmt::format("request body nests JSON deeper than {} levels; send one silence object",
                                     max_json_depth));
    }
    json doc;
    try {
        doc = json::parse(body);
    } catch (const json::exception& e) {
        return fail(400, fmt::format("invalid JSON in the request body ({}); expected a silence object such as "
                                     "{{\"matchers\": [...], \"startsAt\": \"...\", \"endsAt\": \"...\", "
                                     "\"createdBy\": \"...\", \"comment\": \"...\"}}",
                                     e.what()));
    }
    if (auto problem = read_silence(doc, out.value)) {
        return fail(400, *problem);
    }
    return out;
}

json gettable_silence(const silence& s, time_ms now)
{
    return {
        {"id", s.id},
        {"status", {{"state", to_string(s.state_at(now))}}},
        {"updatedAt", format_rfc3339_ms(s.updated_at)},
        {"comment", s.comment},
        {"createdBy", s.created_by},
        {"startsAt", format_rfc3339_ms(s.starts_at)},
        {"endsAt", format_rfc3339_ms(s.ends_at)},
        {"matchers", matchers_json(s)},
    };
}

std::string stored_silence(const silence& s)
{
    const json doc = {
        {"id", s.id},
        {"updatedAt", format_rfc3339_ms(s.updated_at)},
        {"comment", s.comment},
        {"createdBy", s.created_by},
        {"startsAt", format_rfc3339_ms(s.starts_at)},
        {"endsAt", format_rfc3339_ms(s.ends_at)},
        {"matchers", matchers_json(s)},
    };
    return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<silence> parse_stored_silence(std::string_view text, std::string& error)
{
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::exception& e) {
        error = fmt::format("invalid JSON ({})", e.what());
        return std::nullopt;
    }
    silence s;
    if (auto problem = read_silence(doc, s)) {
        error = *problem;
        return std::nullopt;
    }
    if (auto updated = doc.find("updatedAt"); updated != doc.end() && updated->is_string()) {
        s.updated_at = parse_rfc3339(updated->get<std::string>()).value_or(0);
    }
    return s;
}

std::string json_excerpt(const nlohmann::json& value)
{
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) {
        text.resize(57);
        text += "...";
    }
    return text;
}

std::optional<std::vector<label_matcher>> parse_filter_matchers(const std::vector<std::string>& values,
                                                                std::string& error)
{
    std::vector<label_matcher> out;
    for (const std::string& value : values) {
        std::string_view text = value;
        while (!text.empty() && text.front() == ' ') {
            text.remove_prefix(1);
        }
        while (!text.empty() && text.back() == ' ') {
            text.remove_suffix(1);
        }
        if (text.size() >= 2 && text.front() == '{' && text.back() == '}') {
            text = text.substr(1, text.size() - 2);
        }
        for (std::string_view part : split_matchers(text)) {
            if (part.find_first_not_of(' ') == std::string_view::npos) {
                continue;
            }
            std::string problem;
            auto m = label_matcher::parse(part, problem);
            if (!m) {
                error = fmt::format("invalid filter: {}; expected matchers such as alertname=\"DiskFull\"", problem);
                return std::nullopt;
            }
            out.push_back(std::move(*m));
        }
    }
    return out;
}

} // namespace tocsin
