#include "rules/drift_reference.hpp"

#include <charconv>
#include <cmath>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rules/file_read.hpp"

namespace tocsin {

namespace {

constexpr std::string_view format_help =
    R"(expected {"edges": [...], "shares": [...]}, {"values": [...]} or one number per line)";

// Maximum length of file text echoed in a message, so a hostile line cannot flood the log.
constexpr std::size_t max_echo_chars = 40;

std::string echo(std::string_view text)
{
    if (text.size() <= max_echo_chars) {
        return std::string(text);
    }
    return std::string(text.substr(0, max_echo_chars)) + "...";
}

std::string_view trim(std::string_view text)
{
    constexpr std::string_view blanks = " \t\r\f\v";
    const auto first = text.find_first_not_of(blanks);
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(blanks);
    return text.substr(first, last - first + 1);
}

// Parses the whole of `text` as one number. A leading '+' is accepted, as in most CSV exports.
// Returns nothing when the text is not a number or is out of the range of double.
std::optional<double> parse_number(std::string_view text, bool& out_of_range)
{
    out_of_range = false;
    if (text.size() > 1 && text.front() == '+' && text[1] != '-' && text[1] != '+') {
        text.remove_prefix(1);
    }
    double value = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec == std::errc::result_out_of_range && ptr == end) {
        out_of_range = true;
        return std::nullopt;
    }
    if (ec != std::errc() || ptr != end) {
        return std::nullopt;
    }
    return value;
}

// A header is a first line of text such as `value` or `"latency_ms"`. A line that starts like a
// number is never taken as a header, so a mistyped first value is reported, not skipped.
bool looks_like_header(std::string_view line)
{
    const char c = line.front();
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '"' || c == '\'';
}

bool read_text_values(const std::string& path, std::string_view content, drift_reference_data& out,
                      std::string& error)
{
    std::size_t line_number = 0;
    bool seen_content = false;
    while (!content.empty()) {
        const auto newline = content.find('\n');
        const std::string_view raw = content.substr(0, newline);
        content = newline == std::string_view::npos ? std::string_view{} : content.substr(newline + 1);
        ++line_number;

        const std::string_view line = trim(raw);
        if (line.empty()) {
            continue;
        }
        const bool first_line = !seen_content;
        seen_content = true;

        bool out_of_range = false;
        const auto value = parse_number(line, out_of_range);
        if (!value) {
            if (first_line && !out_of_range && looks_like_header(line)) {
                continue;
            }
            if (out_of_range) {
                error = fmt::format("{}:{}: {} is out of the range of a double; expected a finite number", path,
                                    line_number, echo(line));
            } else if (line.find_first_of(",;\t") != std::string_view::npos) {
                error = fmt::format("{}:{}: \"{}\" has more than one field; expected one number per line", path,
                                    line_number, echo(line));
            } else {
                error = fmt::format("{}:{}: \"{}\" is not a number; expected one finite number per line", path,
                                    line_number, echo(line));
            }
            return false;
        }
        if (!std::isfinite(*value)) {
            error = fmt::format("{}:{}: {} is not finite; expected a finite number", path, line_number, echo(line));
            return false;
        }
        if (out.values.size() == max_drift_reference_values) {
            error = fmt::format("{}:{}: more than {} values; reduce the reference, for example by sampling it",
                                path, line_number, max_drift_reference_values);
            return false;
        }
        out.values.push_back(*value);
    }
    if (out.values.empty()) {
        error = fmt::format("{}: holds no values; {}", path, format_help);
        return false;
    }
    return true;
}

// Copies a JSON array of finite numbers into `out`.
bool read_json_numbers(const std::string& path, const nlohmann::json& node, std::string_view field,
                       std::vector<double>& out, std::string& error)
{
    if (!node.is_array()) {
        error = fmt::format("{}: field \"{}\" is {}; expected an array of numbers", path, field, node.type_name());
        return false;
    }
    if (node.empty()) {
        error = fmt::format("{}: field \"{}\" is empty; expected at least one number", path, field);
        return false;
    }
    if (node.size() > max_drift_reference_values) {
        error = fmt::format("{}: field \"{}\" has {} entries, more than {}; reduce the reference, for example by "
                            "sampling it",
                            path, field, node.size(), max_drift_reference_values);
        return false;
    }
    out.reserve(node.size());
    for (std::size_t i = 0; i < node.size(); ++i) {
        const auto& item = node[i];
        if (!item.is_number()) {
            error = fmt::format("{}: {}[{}] is {}; expected a finite number", path, field, i, item.type_name());
            return false;
        }
        const double value = item.get<double>();
        if (!std::isfinite(value)) {
            error = fmt::format("{}: {}[{}] is not finite; expected a finite number", path, field, i);
            return false;
        }
        out.push_back(value);
    }
    return true;
}

bool check_bins(const std::string& path, const drift_reference_data& data, std::string& error)
{
    if (data.edges.size() != data.shares.size() + 1) {
        error = fmt::format("{}: {} edges for {} shares; expected one more edge than shares", path,
                            data.edges.size(), data.shares.size());
        return false;
    }
    for (std::size_t i = 1; i < data.edges.size(); ++i) {
        if (data.edges[i] < data.edges[i - 1]) {
            error = fmt::format("{}: edges[{}] = {} is below edges[{}] = {}; expected edges in ascending order", path,
                                i, data.edges[i], i - 1, data.edges[i - 1]);
            return false;
        }
    }
    double sum = 0;
    for (std::size_t i = 0; i < data.shares.size(); ++i) {
        if (data.shares[i] < 0) {
            error = fmt::format("{}: shares[{}] = {} is negative; expected shares >= 0 that sum to 1", path, i,
                                data.shares[i]);
            return false;
        }
        sum += data.shares[i];
    }
    if (std::abs(sum - 1) > drift_reference_share_tolerance) {
        error = fmt::format("{}: shares sum to {:.9g}; expected a sum of 1 within {}", path, sum,
                            drift_reference_share_tolerance);
        return false;
    }
    return true;
}

bool read_json(const std::string& path, std::string_view content, drift_reference_data& out, std::string& error)
{
    nlohmann::json root;
    try {
        root = nlohmann::json::parse(content);
    } catch (const nlohmann::json::exception& e) {
        // what() starts with an id such as "[json.exception.parse_error.101] "; the rest names
        // the line and column, or the number that overflows a double.
        std::string_view reason = e.what();
        if (const auto bracket = reason.find("] "); bracket != std::string_view::npos) {
            reason.remove_prefix(bracket + 2);
        }
        error = fmt::format("{}: invalid JSON: {}", path, reason);
        return false;
    }
    if (!root.is_object()) {
        error = fmt::format("{}: the JSON document is {}; {}", path, root.type_name(), format_help);
        return false;
    }
    for (const auto& [key, value] : root.items()) {
        if (key != "edges" && key != "shares" && key != "values") {
            error = fmt::format("{}: unknown field \"{}\"; {}", path, echo(key), format_help);
            return false;
        }
    }

    const bool has_edges = root.contains("edges");
    const bool has_shares = root.contains("shares");
    const bool has_values = root.contains("values");
    if (has_values && (has_edges || has_shares)) {
        error = fmt::format("{}: has both \"values\" and \"edges\"/\"shares\"; give one of the two forms", path);
        return false;
    }
    if (has_values) {
        return read_json_numbers(path, root["values"], "values", out.values, error);
    }
    if (!has_edges || !has_shares) {
        error = fmt::format("{}: field \"{}\" is missing; {}", path, has_edges ? "shares" : "edges", format_help);
        return false;
    }
    if (!read_json_numbers(path, root["edges"], "edges", out.edges, error) ||
        !read_json_numbers(path, root["shares"], "shares", out.shares, error)) {
        return false;
    }
    return check_bins(path, out, error);
}

} // namespace

std::optional<drift_reference_data> read_drift_reference(const std::string& path, std::string& error)
{
    std::string content;
    std::string reason;
    if (!read_regular_file(path, max_config_file_bytes, content, reason)) {
        error = fmt::format("{}: cannot read the drift reference: {}", path, reason);
        return std::nullopt;
    }

    std::string_view text = content;
    // Spreadsheet exports often start with a UTF-8 byte order mark.
    constexpr std::string_view byte_order_mark = "\xEF\xBB\xBF";
    if (text.starts_with(byte_order_mark)) {
        text.remove_prefix(byte_order_mark.size());
    }
    const auto first = text.find_first_not_of(" \t\r\n\f\v");
    if (first == std::string_view::npos) {
        error = fmt::format("{}: is empty; {}", path, format_help);
        return std::nullopt;
    }

    drift_reference_data data;
    data.file = path;
    const bool json = text[first] == '{' || text[first] == '[';
    const bool ok = json ? read_json(path, text, data, error) : read_text_values(path, text, data, error);
    if (!ok) {
        return std::nullopt;
    }
    return data;
}

} // namespace tocsin
