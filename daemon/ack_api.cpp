#include "daemon/ack_api.hpp"

#include <charconv>

#include <fmt/format.h>

#include "daemon/http_types.hpp"
#include "daemon/silence_api.hpp"
#include "daemon/api.hpp"

namespace tocsin {

namespace {

constexpr std::string_view alerts_prefix = "/api/v1/alerts/";
constexpr std::string_view ack_suffix = "/ack";
constexpr int max_ack_nesting = 4;

// Reads an optional string field; sets `error` when it has another type or is too long.
bool read_text(const nlohmann::json& body, const char* name, std::size_t max_bytes, std::string& out,
               std::string& error)
{
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) {
        return true;
    }
    if (!it->is_string()) {
        error = fmt::format("\"{}\" is {}; expected a string", name, json_excerpt(*it));
        return false;
    }
    out = it->get<std::string>();
    if (out.size() > max_bytes) {
        error = fmt::format("\"{}\" has {} bytes; at most {} are allowed", name, out.size(), max_bytes);
        return false;
    }
    return true;
}

} // namespace

ack_request parse_ack_request(std::string_view body)
{
    ack_request out;
    if (body.size() > max_ack_body_bytes) {
        out.error = fmt::format("the request body has {} bytes; at most {} are allowed", body.size(),
                                max_ack_body_bytes);
        return out;
    }
    if (json_nesting_depth(body) > max_ack_nesting) {
        out.error = "the request body nests too deeply; expected {\"by\": \"<name>\", \"comment\": \"<text>\"}";
        return out;
    }
    nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
        out.error = "the request body is not a JSON object; expected {\"by\": \"<name>\", \"comment\": \"<text>\"}";
        return out;
    }
    for (const auto& [key, value] : parsed.items()) {
        if (key != "by" && key != "comment") {
            out.error = fmt::format("unknown field {}; expected by and comment", json_excerpt(key));
            return out;
        }
    }
    if (!read_text(parsed, "by", max_ack_by_bytes, out.by, out.error) ||
        !read_text(parsed, "comment", max_ack_comment_bytes, out.comment, out.error)) {
        return out;
    }
    if (out.by.empty()) {
        out.error = "\"by\" is missing or empty; name who acknowledges the alert, such as {\"by\": \"alice\"}";
        return out;
    }
    // The name goes into the log, so it must not be able to start a line of its own.
    for (unsigned char c : out.by) {
        if (c < 0x20 || c == 0x7f) {
            out.error = fmt::format("\"by\" contains the control character 0x{:02x}; use a plain name", c);
            return out;
        }
    }
    return out;
}

std::optional<std::uint64_t> ack_path_id(std::string_view path, bool& bad_id)
{
    bad_id = false;
    if (!path.starts_with(alerts_prefix) || !path.ends_with(ack_suffix) ||
        path.size() < alerts_prefix.size() + ack_suffix.size()) {
        return std::nullopt;
    }
    const std::string_view id = path.substr(alerts_prefix.size(), path.size() - alerts_prefix.size() - ack_suffix.size());
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), value, 16);
    if (id.empty() || id.size() > 16 || ec != std::errc() || end != id.data() + id.size()) {
        bad_id = true;
        return std::nullopt;
    }
    return value;
}

nlohmann::json ack_json(const alert& a)
{
    nlohmann::json out = {{"id", fmt::format("{:016x}", a.id)}, {"labels", nlohmann::json::object()}};
    for (const auto& l : a.labels.items()) {
        out["labels"][l.name] = l.value;
    }
    if (a.acknowledged()) {
        out["acknowledged"] = {{"by", a.acknowledged_by},
                               {"comment", a.ack_comment},
                               {"at", format_rfc3339_ms(a.acknowledged_at)}};
    } else {
        out["acknowledged"] = nullptr;
    }
    return out;
}

} // namespace tocsin
