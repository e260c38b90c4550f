#pragma once
// Local stand-ins for the services tocsin delivers to: PagerDuty Events API v2 (alert and change
// events), Slack incoming
// webhooks, the Slack Web API (chat.postMessage, chat.update) and a generic webhook that expects
// Alertmanager's webhook format (version 4). Each one rejects what the real service rejects,
// with the real status and body, so that a test passing against them shows that tocsin's
// payloads are valid.
//
// Endpoints, all on one loopback port:
//   POST /v2/enqueue                    PagerDuty Events API v2
//   POST /v2/change/enqueue             PagerDuty change events
//   POST /services/<T>/<B>/<secret>     Slack incoming webhook
//   POST /api/chat.postMessage          Slack Web API, Authorization: Bearer <token>
//   POST /api/chat.update               Slack Web API
//   POST /webhook/<name>                generic webhook, Alertmanager webhook format version 4
//
// Thread safety: every public member function may be called from any thread while the server
// runs. Accessors return copies.

#include "rules/clock.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace httplib {
class Server;
struct Request;
struct Response;
} // namespace httplib

namespace tocsin::test {

enum class receiver_kind { pagerduty, slack, slack_api, webhook, pagerduty_change };

// "pagerduty", "slack", "slack_api", "webhook" or "pagerduty_change".
std::string_view to_string(receiver_kind kind);

// A scripted response, sent in place of normal handling.
struct canned_response {
    int status = 500;
    std::vector<std::pair<std::string, std::string>> headers; // for example {"Retry-After", "30"}
    std::string body;
    std::string content_type = "text/plain";
    // Holds the request this long before responding, or until stop(), whichever comes first.
    std::chrono::milliseconds hang{0};
};

// A hang long enough to outlast any client timeout: the request is held until stop().
inline constexpr std::chrono::milliseconds hang_until_stop{std::chrono::hours(24)};

// One request as received, accepted or not.
struct received_request {
    receiver_kind kind = receiver_kind::pagerduty;
    std::string path;
    std::map<std::string, std::string> headers; // names in lower case
    std::string body;
    nlohmann::json parsed; // the body as JSON (for Slack forms, the decoded message); null if none
    std::int64_t arrival_ms = 0; // the receivers' clock, steady milliseconds by default
    int status = 0;
    std::string response_body;
    bool accepted = false;
    bool scripted = false; // answered from the scripted queue
    std::string reason;    // why the request was rejected; empty when accepted
};

// One accepted event (PagerDuty), message (Slack) or notification (webhook).
struct accepted_event {
    receiver_kind kind = receiver_kind::pagerduty;
    std::string path;
    nlohmann::json body; // the parsed JSON; for Slack form bodies, the decoded message
    std::int64_t arrival_ms = 0;
    // PagerDuty: the effective dedup_key. Slack Web API: the message ts. Otherwise empty.
    std::string key;
    // PagerDuty: opened, updated, acknowledged, resolved or dropped (ack/resolve of an alert that
    // is not open on this routing key). PagerDuty change events: recorded. Slack Web API: posted,
    // replied or edited.
    std::string effect;
};

// One PagerDuty alert, from the trigger that opened it until its resolve.
struct pagerduty_alert {
    std::string routing_key;
    std::string dedup_key;
    bool open = true;
    bool acknowledged = false;
    int trigger_count = 1; // repeated triggers on an open alert add log entries
    std::int64_t opened_ms = 0;
    std::int64_t resolved_ms = 0; // 0 while open
};

// One message posted through the Slack Web API, with its current (possibly edited) content.
struct slack_message {
    std::string channel; // channel ID
    std::string ts;
    std::string thread_ts; // the parent's ts for a threaded reply; empty for a parent
    nlohmann::json content;
    int edit_count = 0;
};

struct fake_receivers_options {
    // Empty: any 32-character routing key is accepted. Otherwise only this key.
    std::string pagerduty_routing_key;
    // Whether the real PagerDuty rejects or truncates an over-long summary or dedup_key, and how
    // it treats an image without https src or a link without href, is not documented. Rejecting
    // is the default so that tests catch a sender that exceeds the documented limits.
    bool pagerduty_reject_over_limit = true;
    // The bot token chat.postMessage and chat.update expect as "Authorization: Bearer <token>".
    std::string slack_token = "xoxb-0000000000-fake-receivers";
    // When non-empty, only these webhook paths ("/services/T…/B…/secret") exist; any other path
    // gets 404 no_service. When empty, every well-formed webhook path exists.
    std::set<std::string> slack_webhooks;
    // Webhook paths that answer 400 invalid_token, as revoked hooks do.
    std::set<std::string> revoked_slack_webhooks;
    // Slack answers 429 with Retry-After when messages come faster than about one per second
    // per webhook (or per channel for chat.postMessage). Off by default so that tests are not
    // timing dependent.
    bool slack_rate_limit = false;
    int slack_rate_limit_burst = 1; // messages allowed per rolling second
    // Supplies arrival times and drives the rate limit; null means a steady clock. Must outlive
    // the receivers.
    const tocsin::clock* clock = nullptr;
};

class fake_receivers {
public:
    explicit fake_receivers(fake_receivers_options options = {});
    ~fake_receivers();
    fake_receivers(const fake_receivers&) = delete;
    fake_receivers& operator=(const fake_receivers&) = delete;

    // Binds 127.0.0.1:port (0 picks a free port) and serves on a background thread. Throws
    // std::runtime_error when the port cannot be bound. Returns the bound port.
    int start(int port = 0);
    // Releases requests held by a hang, stops the server and joins its thread. Idempotent.
    void stop();
    int port() const { return port_; }
    // "http://127.0.0.1:<port>".
    std::string base_url() const;

    // Queues a canned answer for the next request of `kind`; queued answers are used in order,
    // before normal handling.
    void script(receiver_kind kind, canned_response response);
    // Queues `count` answers of `status` with an optional Retry-After header.
    void fail_next(receiver_kind kind, int count, int status, std::optional<int> retry_after_s = {});
    std::size_t scripted_left(receiver_kind kind) const;

    // Called after each answered request, on a server thread, without locks held. Set it
    // before start().
    void set_request_listener(std::function<void(const received_request&)> listener);

    void add_slack_webhook(const std::string& path);
    void revoke_slack_webhook(const std::string& path);

    std::vector<received_request> requests() const;
    std::vector<received_request> requests(receiver_kind kind) const;
    std::vector<accepted_event> accepted(receiver_kind kind) const;
    std::vector<pagerduty_alert> pagerduty_alerts() const; // every alert ever opened, in order
    std::optional<pagerduty_alert> open_pagerduty_alert(const std::string& routing_key,
                                                        const std::string& dedup_key) const;
    // The bodies of the accepted change events (routing key included), in arrival order.
    std::vector<nlohmann::json> pagerduty_change_events() const;
    std::vector<slack_message> slack_messages() const; // Web API messages, in posting order
    std::optional<slack_message> find_slack_message(const std::string& ts) const;
    // Requests currently held by a hang.
    int hanging() const;

    // Waits until at least `count` requests have been answered; false on timeout.
    bool wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const;
    // Waits until at least `count` requests are held by a hang; false on timeout.
    bool wait_for_hanging(int count, std::chrono::milliseconds timeout) const;

private:
    struct answer {
        int status = 200;
        std::string body;
        std::string content_type = "text/plain";
        std::vector<std::pair<std::string, std::string>> headers;
        std::string reason; // empty when accepted
    };

    void handle(receiver_kind kind, const httplib::Request& request, httplib::Response& response);
    answer answer_pagerduty(const httplib::Request& request, received_request& record);
    answer answer_pagerduty_change(const httplib::Request& request, received_request& record);
    // The 400 answer of both PagerDuty endpoints, in PagerDuty's error format.
    static answer pagerduty_rejection(const std::vector<std::string>& errors);
    answer answer_slack_webhook(const httplib::Request& request, received_request& record);
    answer answer_slack_api(const httplib::Request& request, received_request& record);
    answer answer_webhook(const httplib::Request& request, received_request& record);
    // Whether `key` has used its messages for the rolling second. Caller holds mutex_.
    bool rate_limited_locked(const std::string& key, std::int64_t now_ms);
    std::string next_ts_locked();
    std::string channel_id_locked(const std::string& channel, bool create);
    void hold(std::chrono::milliseconds duration);

    fake_receivers_options options_;
    std::function<void(const received_request&)> listener_;
    std::unique_ptr<tocsin::clock> own_clock_;
    const tocsin::clock* clock_;
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;

    // mutex_ guards the webhook sets in options_ and every member below; cv_ signals new
    // records, hangs and stop.
    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;
    bool stopping_ = false;
    int hanging_ = 0;
    std::map<receiver_kind, std::deque<canned_response>> scripts_;
    std::vector<received_request> requests_;
    std::vector<accepted_event> accepted_;
    std::vector<pagerduty_alert> alerts_;
    std::vector<slack_message> messages_;
    std::map<std::string, std::deque<std::int64_t>> rate_windows_;
    std::map<std::string, std::string> channel_ids_; // channel name -> channel ID
    std::int64_t last_ts_us_ = 0;
};

// The PagerDuty and webhook validators, usable without a server. Each returns the list of
// problems; empty means valid.
std::vector<std::string> validate_pagerduty_event(const nlohmann::json& event,
                                                  bool reject_over_limit = true);
// A change event: routing_key, payload {summary, timestamp, source, custom_details} and links;
// any other member, event_action and dedup_key included, is an error.
std::vector<std::string> validate_pagerduty_change_event(const nlohmann::json& event,
                                                         bool reject_over_limit = true);
std::vector<std::string> validate_alertmanager_webhook(const nlohmann::json& notification);
// Returns the Slack error code for an invalid message ("no_text", "invalid_blocks", …), or an
// empty string when Slack would post it.
std::string validate_slack_message(const nlohmann::json& message);

// Counts Unicode code points; std::nullopt for invalid UTF-8.
std::optional<std::size_t> count_code_points(std::string_view utf8);

// How Slack shows a mrkdwn string.
struct slack_link {
    std::string url;
    std::string label; // empty when the token had none
};
struct decoded_mrkdwn {
    std::string displayed; // the text as a reader sees it, styles (*bold*, _italic_) left as is
    std::vector<slack_link> links;
    // Mentions that notify people: "here", "channel", "everyone", "subteam^ID", "@U123".
    std::vector<std::string> mentions;
    std::vector<std::string> channels; // channel references such as "C123"
};

// Decodes Slack mrkdwn as Slack renders it: <…> tokens become links, mentions or channel
// references, then &amp; &lt; &gt; (and no other entity) are unescaped once.
decoded_mrkdwn decode_slack_mrkdwn(std::string_view text);

// The strings of a Slack message in which Slack parses <…> tokens: top-level text, mrkdwn text
// objects in blocks, and the attachment fields pretext, text, fallback, footer and field values.
std::vector<std::string> slack_mrkdwn_strings(const nlohmann::json& message);

} // namespace tocsin::test
