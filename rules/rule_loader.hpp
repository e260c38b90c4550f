#pragma once
// Loads rule files (YAML) into the rule model. Every problem is reported as
// file:line:column: what is wrong; what was expected, and all problems of a file are collected
// in one pass. The file format is described in docs/CONFIGURATION.md.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/diagnostics.hpp"
#include "rules/rule.hpp"

namespace tocsin {

// Reads and loads one rule file. Returns the groups and rules that loaded without error;
// callers must treat the file as invalid when `diags` received any entry.
std::vector<rule_group> load_rule_file(const std::string& path, diagnostics& diags);

// Loads rule-file text; `file_name` is used in the diagnostics and in rule::file.
std::vector<rule_group> load_rule_text(std::string_view text, const std::string& file_name, diagnostics& diags);

// Checks what spans files: alert names must be unique across the whole set, because an alert
// is identified by its alertname and its series labels.
void validate_rule_set(const rule_set& rules, diagnostics& diags);

// Builds a rule_set from groups in load order.
std::shared_ptr<const rule_set> make_rule_set(std::vector<rule_group> groups);

// Parses a tier condition such as "> 0.8", "<= 5", "== 0". NaN and infinite thresholds are
// rejected.
std::optional<condition> parse_condition(std::string_view text, std::string& error);

// Returns the stable 64-bit hash of the rule's definition: the alert name, selector,
// transform, tiers, labels and policies. The file, group, position and annotations are not
// part of it.
std::uint64_t definition_hash_of(const rule& r);

} // namespace tocsin
