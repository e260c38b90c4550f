#include "rules/yaml_check.hpp"

#include <charconv>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"

namespace tocsin::yaml {

const char* describe(const YAML::Node& node)
{
    switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Scalar: return "a string";
    case YAML::NodeType::Null: return "an empty value";
    case YAML::NodeType::Undefined: return "nothing";
    }
    return "an unknown node";
}

void checker::error(const YAML::Mark& mark, std::string message)
{
    ++errors_;
    if (mark.is_null()) {
        diags_.add(file_, 0, 0, std::move(message));
        return;
    }
    diags_.add(file_, mark.line + 1, mark.column + 1, std::move(message));
}

bool checker::expect_map(const YAML::Node& node, std::string_view what)
{
    if (node.IsMap()) {
        return true;
    }
    error(node, fmt::format("{} must be a mapping, got {}", what, describe(node)));
    return false;
}

bool checker::expect_sequence(const YAML::Node& node, std::string_view what)
{
    if (node.IsSequence()) {
        return true;
    }
    error(node, fmt::format("{} must be a sequence (a YAML list), got {}", what, describe(node)));
    return false;
}

void checker::check_keys(const YAML::Node& node, std::string_view what,
                         std::initializer_list<std::string_view> allowed)
{
    // yaml-cpp keeps repeated keys in the node but looks up only the first, so a repeated key
    // would be silently ignored without this check.
    std::map<std::string, YAML::Mark> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
        // Copies: the iterator returns its pair by value, so a reference would dangle.
        const YAML::Node key = it->first;
        if (!key.IsScalar()) {
            error(key, fmt::format("{} keys must be strings, got {}", what, describe(key)));
            continue;
        }
        const std::string& name = key.Scalar();
        bool known = false;
        for (auto a : allowed) {
            known = known || a == name;
        }
        if (!known) {
            std::string list;
            for (auto a : allowed) {
                list += list.empty() ? "" : ", ";
                list += a;
            }
            error(key, fmt::format("unknown field {} in {}; expected one of: {}", promql::quote(name), what, list));
            continue;
        }
        auto [previous, inserted] = seen.emplace(name, key.Mark());
        if (!inserted) {
            error(key, fmt::format("field {} appears twice in {}; the first is at line {}; keep one",
                                   promql::quote(name), what, previous->second.line + 1));
        }
    }
}

YAML::Node checker::child(const YAML::Node& map, std::string_view key)
{
    // Iterating avoids yaml-cpp's operator[], which on a non-const node would insert the key.
    for (auto it = map.begin(); it != map.end(); ++it) {
        if (it->first.IsScalar() && it->first.Scalar() == key) {
            return it->second;
        }
    }
    return YAML::Node(YAML::NodeType::Undefined);
}

std::optional<std::string> checker::string(const YAML::Node& node, std::string_view field)
{
    if (!node.IsScalar()) {
        error(node, fmt::format("{} must be a string, got {}", field, describe(node)));
        return std::nullopt;
    }
    return node.Scalar();
}

std::optional<bool> checker::boolean(const YAML::Node& node, std::string_view field)
{
    if (node.IsScalar()) {
        const std::string& text = node.Scalar();
        if (text == "true") {
            return true;
        }
        if (text == "false") {
            return false;
        }
        error(node, fmt::format("{} must be true or false, got {}", field, promql::quote(text)));
        return std::nullopt;
    }
    error(node, fmt::format("{} must be true or false, got {}", field, describe(node)));
    return std::nullopt;
}

std::optional<std::chrono::milliseconds> checker::duration(const YAML::Node& node, std::string_view field)
{
    if (!node.IsScalar()) {
        error(node, fmt::format("{} must be a duration such as 5m, got {}", field, describe(node)));
        return std::nullopt;
    }
    std::string problem;
    auto d = parse_duration(node.Scalar(), problem);
    if (!d) {
        error(node, fmt::format("{}: {}", field, problem));
    }
    return d;
}

std::optional<std::uint64_t> checker::count(const YAML::Node& node, std::string_view field)
{
    if (node.IsScalar()) {
        const std::string& text = node.Scalar();
        std::uint64_t value = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (!text.empty() && ec == std::errc() && ptr == text.data() + text.size()) {
            return value;
        }
        if (ec == std::errc::result_out_of_range) {
            error(node, fmt::format("{}: {} is too large", field, text));
            return std::nullopt;
        }
        error(node, fmt::format("{} must be a non-negative integer, got {}", field, promql::quote(text)));
        return std::nullopt;
    }
    error(node, fmt::format("{} must be a non-negative integer, got {}", field, describe(node)));
    return std::nullopt;
}

std::optional<std::uint64_t> checker::size(const YAML::Node& node, std::string_view field)
{
    constexpr std::string_view expected = "expected a byte count such as 1048576 or a size such as 512KiB, 32MiB, 1GiB";
    if (!node.IsScalar()) {
        error(node, fmt::format("{} must be a size, got {}; {}", field, describe(node), expected));
        return std::nullopt;
    }
    const std::string& text = node.Scalar();
    std::uint64_t number = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (text.empty() || ec == std::errc::invalid_argument) {
        error(node, fmt::format("invalid size {} for {}; {}", promql::quote(text), field, expected));
        return std::nullopt;
    }
    if (ec == std::errc::result_out_of_range) {
        error(node, fmt::format("size {} for {} is too large", promql::quote(text), field));
        return std::nullopt;
    }
    std::string_view unit(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
    while (!unit.empty() && unit.front() == ' ') {
        unit.remove_prefix(1);
    }
    std::uint64_t multiplier = 0;
    if (unit.empty() || unit == "B") {
        multiplier = 1;
    } else if (unit == "KiB") {
        multiplier = 1ULL << 10;
    } else if (unit == "MiB") {
        multiplier = 1ULL << 20;
    } else if (unit == "GiB") {
        multiplier = 1ULL << 30;
    } else if (unit == "KB" || unit == "kB" || unit == "MB" || unit == "GB" || unit == "K" || unit == "M" ||
               unit == "G") {
        error(node, fmt::format("ambiguous size unit {} in {} for {}; use KiB, MiB or GiB (powers of 1024)",
                                promql::quote(unit), promql::quote(text), field));
        return std::nullopt;
    } else {
        error(node, fmt::format("invalid size {} for {}; {}", promql::quote(text), field, expected));
        return std::nullopt;
    }
    if (number > std::numeric_limits<std::uint64_t>::max() / multiplier) {
        error(node, fmt::format("size {} for {} is too large", promql::quote(text), field));
        return std::nullopt;
    }
    return number * multiplier;
}

} // namespace tocsin::yaml
