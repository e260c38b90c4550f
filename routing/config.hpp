#pragma once
// The routing part of the configuration, in Alertmanager's schema: global, route, receivers,
// inhibit_rules, time_intervals, templates. An alertmanager.yml loads unchanged. tocsin adds keys
// beside Alertmanager's and never changes the meaning of one:
//   receivers[].*_configs[]: routing_key_env / api_url_env / url_env / bot_token(_file|_env),
//                            rate_limit, max_concurrency (delivery controls per integration)
//   receivers[].console_configs: prints notifications to the log instead of sending them
//   receivers[]: rate_limit (notifications per window), storm_guard (digest of a flood)
//   route: dedup_scope (group | alert) for PagerDuty incident identity, escalate (next receivers)
//
// Secrets (routing keys, webhook URLs, bot tokens) are read from the config, a file or an
// environment variable. They are held in `secret` values that never print.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/diagnostics.hpp"
#include "rules/labels.hpp"
#include "rules/matcher.hpp"
#include "routing/time_intervals.hpp"

namespace YAML {
class Node;
}

namespace tocsin {
namespace yaml {
class checker;
}

using std::chrono::milliseconds;

// A credential. `value` is used only to build the outgoing request; `origin` describes where it
// came from ("file /etc/tocsin/pd.key", "environment variable PD_KEY", "inline") for messages.
struct secret {
    std::string value;
    std::string origin;
    bool empty() const { return value.empty(); }
};

// Per-integration delivery controls (tocsin additions). 0 means the documented default.
struct delivery_limits {
    milliseconds timeout{0};          // per HTTP attempt; default 10s
    double rate_limit_per_second = 0; // sustained messages per second; Slack default 1
    std::uint32_t burst = 0;          // token bucket size; default 1 for Slack, 10 otherwise
    std::uint32_t max_concurrency = 0; // requests in flight; default 4
};

struct webhook_config {
    bool send_resolved = true;
    secret url;
    secret bearer_token; // http_config.authorization (type Bearer) or bearer_token(_file)
    std::uint64_t max_alerts = 0; // 0 = all alerts; otherwise the first N, truncatedAlerts set
    delivery_limits limits;
};

struct pagerduty_link {
    std::string href; // templates
    std::string text;
};

struct pagerduty_image {
    std::string src; // templates
    std::string alt;
    std::string href;
};

struct pagerduty_config {
    bool send_resolved = true;
    secret routing_key;                // Events API v2; required
    std::string url;                   // default global.pagerduty_url
    // Templates. Empty strings mean the default of Alertmanager's notification template set.
    std::string client;
    std::string client_url;
    std::string description;           // becomes payload.summary
    std::string severity;              // default: from the highest tier of the group's alerts
    std::string source;
    std::string class_name;            // "class"
    std::string component;
    std::string group;
    std::vector<std::pair<std::string, std::string>> details; // name -> template
    std::vector<pagerduty_link> links;
    std::vector<pagerduty_image> images;
    delivery_limits limits;
};

struct slack_field {
    std::string title; // templates
    std::string value;
    bool is_short = false;
};

struct slack_action {
    std::string type = "button";
    std::string text; // templates
    std::string url;
    std::string style;
};

struct slack_config {
    bool send_resolved = false;        // Alertmanager's default for Slack
    secret api_url;                    // incoming webhook URL; or chat.postMessage with a bot token
    secret bot_token;                  // xoxb-...; enables threads and message updates
    std::string app_url;               // default https://slack.com/api/chat.postMessage
    std::string channel;               // required with a bot token
    std::string username;
    std::string icon_emoji;
    std::string icon_url;
    bool link_names = false;
    bool send_blocks = true;           // tocsin: Block Kit layout; false sends Alertmanager's attachment
    bool update_message = true;        // with a bot token: update the first message in place
    bool thread_replies = true;        // with a bot token: post changes and the resolve in its thread
    // Templates; empty strings mean the default of the notification template set.
    std::string color;
    std::string title;
    std::string title_link;
    std::string pretext;
    std::string text;
    std::string footer;
    std::string fallback;
    std::string message_text;          // top-level "text"
    std::vector<slack_field> fields;
    std::vector<slack_action> actions;
    delivery_limits limits;
};

// Prints notifications to the log; for the example setup without real credentials.
struct console_config {
    bool send_resolved = true;
};

// At most max_notifications notifications per window to one receiver (a tocsin key,
// receivers[].rate_limit). A group over the limit keeps its news. It notifies as soon as the
// window has room again, with its state at that time, so nothing is dropped.
struct receiver_rate_limit {
    std::uint32_t max_notifications = 0; // 0: off
    milliseconds window{0};
    bool enabled() const { return max_notifications > 0 && window.count() > 0; }
};

// More than max_new_alerts new alerts for one receiver within window start a storm (a tocsin
// key, receivers[].storm_guard). One digest notification (counts, shared labels, top values)
// replaces the notifications of the storm's alerts, which stay listed in the API. The storm
// takes no more alerts once the window contains max_new_alerts or fewer arrivals, and its
// digest resolves when the last of its alerts resolves.
struct storm_guard_config {
    std::uint32_t max_new_alerts = 0; // 0: off
    milliseconds window{0};
    bool enabled() const { return max_new_alerts > 0 && window.count() > 0; }
};

struct receiver_config {
    std::string name;
    receiver_rate_limit rate_limit;
    storm_guard_config storm_guard;
    std::vector<webhook_config> webhooks;
    std::vector<pagerduty_config> pagerduty;
    std::vector<slack_config> slack;
    std::vector<console_config> console;
    int line = 0; // position in the config file, for messages
};

enum class dedup_scope : std::uint8_t { group, alert };

// One level of escalation (a tocsin key, route.escalate): a firing alert that has not been
// acknowledged `after` its start is also sent to `receiver`.
struct escalation_step {
    milliseconds after{0};
    std::string receiver;
};

struct route_config {
    std::string receiver;             // inherited from the parent when empty in the file
    std::vector<std::string> group_by; // sorted label names
    bool group_by_all = false;        // group_by: ['...']
    std::vector<label_matcher> matchers; // match, match_re and matchers together
    bool continue_matching = false;   // `continue`
    milliseconds group_wait{30'000};  // inherited values are already filled in
    milliseconds group_interval{300'000};
    milliseconds repeat_interval{4 * 3'600'000};
    std::vector<std::string> mute_time_intervals;
    std::vector<std::string> active_time_intervals;
    dedup_scope dedup = dedup_scope::group;
    std::vector<escalation_step> escalate; // ordered by `after`; inherited from the parent
    std::vector<route_config> routes;
    // A stable identity within the tree, from the matchers of this route and its ancestors:
    // {}/{team="db"}/{severity=~"page|critical"}. Siblings with equal matchers get "#<index>"
    // appended. Group keys, PagerDuty dedup keys and durable timers are derived from it, so an
    // unrelated edit elsewhere in the tree keeps every other route's key.
    std::string key;
    int line = 0;
};

struct inhibit_rule_config {
    std::vector<label_matcher> source_matchers;
    std::vector<label_matcher> target_matchers;
    std::vector<std::string> equal;
    int line = 0;
};

// A named time interval; routes refer to it by name.
struct time_interval_config {
    std::string name;
    std::vector<time_interval_spec> specs; // holds when any spec does
    int line = 0;
};

// Flap detection (a tocsin key, flap_detection): an alert that changed between firing and
// resolved start_at_changes times within `window` is flapping. One notification says so, its
// changes are held, and once no more than stop_at_changes remain within the window, one more
// notification gives its current state.
struct flap_config {
    milliseconds window{0}; // 0: off
    std::uint32_t start_at_changes = 0;
    std::uint32_t stop_at_changes = 0;
    bool enabled() const { return window.count() > 0 && start_at_changes > 0; }
};

struct global_config {
    milliseconds resolve_timeout{300'000};
    std::string pagerduty_url = "https://events.pagerduty.com/v2/enqueue";
    secret slack_api_url;
    std::string external_url; // for links back to tocsin; default http://<listen address>
};

struct routing_config {
    global_config global;
    route_config root;
    std::vector<receiver_config> receivers;
    std::vector<inhibit_rule_config> inhibit_rules;
    std::vector<time_interval_config> time_intervals;
    flap_config flap_detection;
    std::vector<std::string> template_files; // globs expanded, resolved against the config folder
    bool present = false; // false when the file has no route: alerts are then only visible in the API

    const receiver_config* find_receiver(const std::string& name) const;
};

// Looks up an environment variable; injectable so tests do not touch the process environment.
using env_lookup = std::optional<std::string> (*)(const char* name);
std::optional<std::string> process_env(const char* name);

// Reads the routing keys from the mapping `root` (the main config file or an alertmanager.yml).
// Reports every problem through `check` as file:line:column. Relative paths resolve against
// `base_dir`. Warnings (such as a repeat_interval that is not a multiple of group_interval)
// go to `warnings`, which never fail the load.
routing_config load_routing(const YAML::Node& root, yaml::checker& check, const std::string& base_dir,
                            diagnostics& warnings, env_lookup env = process_env);

// The top-level keys load_routing() reads, so the main config's key check can allow them.
const std::vector<std::string>& routing_keys();

// The routes an alert with `labels` reaches, in order, following Alertmanager: depth first, a
// route matches when all its matchers do, the first matching child wins unless it has
// `continue: true`, and a route with no matching child takes the alert itself.
std::vector<const route_config*> match_routes(const route_config& root, const label_set& labels);

} // namespace tocsin
