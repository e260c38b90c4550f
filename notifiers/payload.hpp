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
//
// PagerDuty change events (a runbook run, a rollback) are built by
// build_pagerduty_change_event(); the sender posts them to the change events endpoint.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

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
    // PagerDuty only. An alert event always has one (see pagerduty_dedup_key()). An EMPTY
    // dedup_key marks a change event, which the sender posts to pagerduty_change_url().
    std::string dedup_key;
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

// A PagerDuty change event: something that changed in the system (a runbook run, a rollback),
// shown on the service's timeline. It opens no incident and has no dedup_key.
struct change_event {
    std::string summary;       // required, cut to 1024 code points (a blank one is replaced)
    std::string source;        // optional, left out when empty
    time_ms timestamp = 0;     // when the change happened, left out when 0 (PagerDuty then uses receipt time)
    // Details, left out when null or an empty object. Any other value that is not an object is
    // sent as {"value": <it>}, because PagerDuty takes an object only.
    nlohmann::json custom_details = nlohmann::json::object();
    std::vector<std::pair<std::string, std::string>> links;   // (href, text), skipped when href is blank
};

// The body of a change event (PagerDuty's POST /v2/change/enqueue) for `integration`, without
// the routing key, which the sender adds when it sends. The message has an empty dedup_key and
// an empty group_key (the caller may set one), and alert_count 0. The body stays under 512,000
// bytes: the largest members of custom_details are left out first, with a note.
outbound_message build_pagerduty_change_event(const integration_ref& integration, const change_event& e);

// Lowercase hex SHA-256 of the receiver and the group key (and the alert id under
// dedup_scope: alert). The same for trigger and resolve, across restarts and replicas.
std::string pagerduty_dedup_key(const std::string& receiver, const std::string& group_key);
std::string pagerduty_dedup_key(const std::string& receiver, const std::string& group_key, std::uint64_t alert_id);

// The annotation in which tocsind reports the runbook runs of an alert, one line per run, for
// example "model-rollback r1a2b3c4d5e6f7a8b: succeeded (stop-canary succeeded)". Slack shows
// the lines under the alert; PagerDuty gets them in custom_details.runbook_actions.
inline constexpr std::string_view runbook_actions_annotation = "runbook_actions";

// Returns the non-empty lines of a runbook_actions value, without surrounding spaces.
std::vector<std::string> runbook_action_lines(std::string_view value);

// Escapes the three characters Slack treats as markup: & < >.
std::string slack_escape(std::string_view text);

// Cuts `text` to at most `max_chars` Unicode code points; when cut, the last one is "…".
std::string truncate_utf8(std::string_view text, std::size_t max_chars, bool* truncated = nullptr);

} // namespace tocsin
