#pragma once
// Turns a notification into the messages its integration sends: PagerDuty Events API v2,
// Slack (incoming webhook or chat.postMessage), Alertmanager's webhook JSON (version 4), or a
// console line. Payloads are built without secrets; the sender adds the routing key, the webhook
// URL or the bot token when it sends, so the outbox on disk contains no credential.
//
// Limits are kept here, never by dropping the event: a PagerDuty summary is cut to 1024
// characters with an ellipsis and the body kept under 512,000 bytes by trimming details; a Slack
// message stays within Block Kit's limits and ends with "and N more alerts" when cut. A template
// that fails while rendering falls back to the default text with a visible marker.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "notifiers/go_template.hpp"
#include "routing/config.hpp"
#include "routing/dispatcher.hpp"

namespace tocsin {

// The templates of one routing config: the files, and every inline template of each receiver,
// parsed at load.
struct compiled_templates;

struct outbound_message {
    integration_ref integration;
    std::string group_key;
    std::string body;           // JSON (no secrets); for console, the text to print
    bool resolved = false;      // every alert of the group resolved
    std::string dedup_key;      // PagerDuty only
    std::size_t alert_count = 0;
};

struct build_result {
    std::vector<outbound_message> messages;
    std::uint32_t template_errors = 0; // each one also in `log_lines`
    std::vector<std::string> log_lines; // warnings to log: truncation, template fallbacks
};

// Parses every template of `config` (template files and inline receiver fields). Errors are
// reported as file:line:column against `config_file`. Returns null on error.
std::shared_ptr<const compiled_templates> compile_templates(const routing_config& config,
                                                            const std::string& config_file,
                                                            diagnostics& diags);

// The Alertmanager-shaped template data of a notification.
nlohmann::json template_data(const notification& n, const std::string& external_url);

// Builds the messages of one notification with its integration's settings from `config`.
build_result build_messages(const notification& n, const routing_config& config, const compiled_templates& templates);

// Lowercase hex SHA-256 of the receiver and the group key (and the alert id under
// dedup_scope: alert). The same for trigger and resolve, across restarts and replicas.
std::string pagerduty_dedup_key(const std::string& receiver, const std::string& group_key);
std::string pagerduty_dedup_key(const std::string& receiver, const std::string& group_key, std::uint64_t alert_id);

// Escapes the three characters Slack treats as markup: & < >.
std::string slack_escape(std::string_view text);

// Cuts `text` to at most `max_chars` Unicode code points; when cut, the last one is "…".
std::string truncate_utf8(std::string_view text, std::size_t max_chars, bool* truncated = nullptr);

} // namespace tocsin
