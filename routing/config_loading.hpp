#pragma once
// Internal to the routing config loader: the state shared by config.cpp (global, route tree,
// inhibit rules, time intervals, templates) and config_receivers.cpp (receivers and secrets).

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "routing/config.hpp"
#include "rules/diagnostics.hpp"
#include "rules/yaml_check.hpp"

namespace tocsin::routing_detail {

struct load_context {
    yaml::checker& check;
    diagnostics& warnings;
    std::filesystem::path base_dir;
    env_lookup env;

    // Adds a warning at the position of `node` in the same file:line:column form as errors.
    void warn(const YAML::Node& node, std::string message);
    // Resolves `name` against base_dir unless it is absolute.
    std::string resolve(const std::string& name) const;
};

// Reads `receivers`. `global` supplies defaults (the PagerDuty URL, the Slack API URL).
void load_receivers(const YAML::Node& node, load_context& ctx, const global_config& global,
                    std::vector<receiver_config>& out);

// One place a secret may come from: an inline value, a file or an environment variable.
struct secret_source {
    enum class kind { inline_value, file, env };
    YAML::Node node;
    kind from = kind::inline_value;
    std::string field; // "slack_configs[0].bot_token_file", for messages
};

// Appends the sources of one secret found in the mapping `map`: `value_key` inline, `file_key`
// and `env_key` (each skipped when empty). `prefix` ("receivers[0].slack_configs[1].") starts
// the field names used in messages.
void collect_secret_sources(const YAML::Node& map, const std::string& prefix, std::string_view value_key,
                            std::string_view file_key, std::string_view env_key, std::vector<secret_source>& out);

// Reads the secret from its one source into `out`. Reports an error when several sources are
// given, or when the file or environment variable cannot be read or is empty; the messages name
// the file or variable, never the value. Returns false when there is no source or on error.
bool read_secret(const std::vector<secret_source>& sources, load_context& ctx, std::string_view secret_name,
                 secret& out);

// Reports an error at `node` unless the secret looks like an http or https URL; the message
// names the secret's origin, never its value.
void check_secret_url(const secret& url, const YAML::Node& node, load_context& ctx, std::string_view field);

// Reads an Alertmanager http_config. Every field is accepted; those tocsin does not use give a
// warning. With `bearer` set, authorization.credentials(_file) become sources of that secret
// (a Slack bot token); otherwise they too only warn.
void load_http_config(const YAML::Node& node, load_context& ctx, const std::string& field,
                      std::vector<secret_source>* bearer);

} // namespace tocsin::routing_detail
