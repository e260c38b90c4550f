#pragma once
// Sends outbox entries over HTTP(S) with Boost.Beast on the daemon's io_context, and resolves
// each entry's destination and credentials from the current routing config at send time.
//
// - One keep-alive connection pool per scheme, host and port; TLS verifies the peer against the
//   system's CA store and sends SNI.
// - Each attempt has a deadline (the integration's timeout); a hung receiver costs one timeout.
// - PagerDuty: the routing key is spliced into the stored body. A message with an empty
//   dedup_key is a change event and goes to pagerduty_change_url() of the integration's URL,
//   unless its body has an event_action (an alert event that lost its key) or no payload. Slack webhooks: the URL is the
//   secret. Slack chat.postMessage: the bot token goes in an Authorization header; when the
//   group already has a message, the new one is posted in its thread and the first message is
//   updated in place with chat.update.
//
// Thread safety: all calls on the io_context's thread.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "notifiers/delivery.hpp"
#include "routing/config.hpp"

namespace boost::asio {
class io_context;
}

namespace tocsin {

struct slack_thread {
    std::string channel; // channel id returned by chat.postMessage
    std::string ts;      // opaque; never parsed as a number
};

struct send_target {
    std::string url;            // a secret for webhooks
    std::string routing_key;    // PagerDuty
    std::string bearer_token;   // Slack bot token, or a webhook's Authorization: Bearer credential
    milliseconds timeout{10'000};
    bool slack_web_api = false; // chat.postMessage rather than an incoming webhook
    std::string slack_update_url; // chat.update, next to app_url
    bool thread_replies = true;
    bool update_message = true;
    std::optional<slack_thread> thread; // the group's first message, when there is one
};

// The destination of `entry` under `config`, or nullopt when its integration no longer exists
// (the entry is then dropped and counted).
// `default_timeout` applies where the integration sets no timeout of its own.
std::optional<send_target> resolve_target(const outbox_entry& entry, const routing_config& config,
                                          milliseconds default_timeout = milliseconds(10'000));

// Checks that `url` is one the sender can use (http or https, a host, a port from 1 to 65535,
// no user:password@). Returns the problem, or nullopt. The message names at most the scheme and
// host, never the path, which may be a secret.
std::optional<std::string> url_problem(std::string_view url);

// Returns the change events URL of a PagerDuty integration whose alert events go to
// `enqueue_url`. A trailing "/v2/enqueue" becomes "/v2/change/enqueue". Any other URL keeps its
// scheme, host and port, and gets the path "/v2/change/enqueue". Spaces around the URL are
// ignored. A URL without "://" is returned as given, so the send fails as an alert event would.
std::string pagerduty_change_url(std::string_view enqueue_url);

class http_sender {
public:
    // `clock` dates a Retry-After given as an HTTP date; pass the clock that schedules the retries
    // (the delivery queue's). Null means the system clock.
    explicit http_sender(boost::asio::io_context& io, std::string user_agent = "tocsin", const clock* clock = nullptr);
    ~http_sender();
    http_sender(const http_sender&) = delete;
    http_sender& operator=(const http_sender&) = delete;

    // Sends one entry; calls `done` once on the io_context's thread with the classified result.
    // For a Slack chat.postMessage that started a thread, the result carries its channel and ts.
    void send(const outbox_entry& entry, const send_target& target, std::function<void(attempt_result)> done);

    // Cancels every request in flight; their `done` gets reason "network".
    void stop();

    std::size_t in_flight() const;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace tocsin
