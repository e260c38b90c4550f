#pragma once
// Typed reads from yaml-cpp nodes that report every problem as file:line:column into a
// diagnostics list, so a loader can go on and collect all errors of a file in one pass.
// yaml-cpp marks are 0-based; the diagnostics are 1-based.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "rules/diagnostics.hpp"

namespace tocsin::yaml {

// "a mapping", "a sequence", "a string", "null".
const char* describe(const YAML::Node& node);

class checker {
public:
    checker(std::string file, diagnostics& diags) : file_(std::move(file)), diags_(diags) {}

    const std::string& file() const { return file_; }
    std::size_t error_count() const { return errors_; }

    void error(const YAML::Mark& mark, std::string message);
    void error(const YAML::Node& node, std::string message) { error(node.Mark(), std::move(message)); }

    // Reports an error unless `node` is a mapping. `what` names it in the message ("rule").
    bool expect_map(const YAML::Node& node, std::string_view what);
    bool expect_sequence(const YAML::Node& node, std::string_view what);

    // Reports keys outside `allowed` and keys that appear twice in the mapping `node`.
    void check_keys(const YAML::Node& node, std::string_view what, std::initializer_list<std::string_view> allowed);

    // Returns the child `key` of a mapping, or an undefined node when it is absent.
    static YAML::Node child(const YAML::Node& map, std::string_view key);

    // Typed scalar reads. `field` names the value in messages ("for", "tiers.critical.for").
    std::optional<std::string> string(const YAML::Node& node, std::string_view field);
    std::optional<bool> boolean(const YAML::Node& node, std::string_view field);
    std::optional<std::chrono::milliseconds> duration(const YAML::Node& node, std::string_view field);
    // A non-negative integer count ("100000").
    std::optional<std::uint64_t> count(const YAML::Node& node, std::string_view field);
    // A byte size: an integer, or a number with B, KiB, MiB or GiB ("32MiB", "512 KiB").
    std::optional<std::uint64_t> size(const YAML::Node& node, std::string_view field);

private:
    std::string file_;
    diagnostics& diags_;
    std::size_t errors_ = 0;
};

} // namespace tocsin::yaml
