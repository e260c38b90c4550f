#pragma once
// The outbox scheduler: which stored notification to send next, when to retry, and what an
// response means. Pure logic on an injected clock; the I/O lives in sender.hpp.
//
// - Messages of one (integration, group) go out in order, one at a time, so a resolve never
//   overtakes its trigger. Different groups and integrations proceed independently: one slow or
//   dead receiver never delays another.
// - Per integration: at most max_concurrency requests in flight and a token bucket of
//   rate_limit_per_second with `burst`.
// - Retries back off exponentially (1s doubling to a 5 min cap, ±20% jitter). A 429 waits for
//   Retry-After (seconds or an HTTP date) when given, never less. 5xx, 429, timeouts and network
//   errors retry; other 4xx fail at once and keep the receiver's error body for the log.
// - A message older than max_age is dropped and counted.
//
// Thread safety: none.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "notifiers/payload.hpp"
#include "rules/clock.hpp"

namespace tocsin {

struct outbox_entry {
    std::uint64_t id = 0;        // store row id, increasing
    outbound_message message;
    time_ms created_at = 0;
    std::uint32_t attempts = 0;
    time_ms next_attempt_at = 0;
    std::string last_error;
};

struct retry_policy {
    milliseconds initial{1000};
    double multiplier = 2.0;
    milliseconds max_backoff{300'000};
    double jitter = 0.2;             // ± share of the backoff
    milliseconds max_age{24 * 3'600'000}; // give up after this; counted as dropped
    milliseconds default_timeout{10'000};
};

enum class attempt_outcome : std::uint8_t { delivered, retry, failed };

struct attempt_result {
    attempt_outcome outcome = attempt_outcome::failed;
    int http_status = 0;             // 0 for network errors and timeouts
    std::string reason;              // delivered | server_error | rate_limited | timeout | network | client_error | bad_response
    std::string detail;              // receiver's error text, cut to 512 bytes
    std::optional<milliseconds> retry_after; // from the Retry-After header
    // chat.postMessage: the channel id and ts of the posted message, for threads and updates.
    std::string slack_channel;
    std::string slack_ts;
};

// Interprets an HTTP response per the receiver's contract (PagerDuty wants 202/2xx; a Slack
// webhook 200 with body "ok"; chat.postMessage 200 with {"ok":true}; a webhook any 2xx).
// `retry_after_header` is the raw header value or empty.
attempt_result classify_response(integration_kind kind, bool slack_web_api, int status,
                                 std::string_view retry_after_header, std::string_view body, time_ms now);

// Parses Retry-After: delta seconds or an IMF-fixdate (Sun, 06 Nov 1994 08:49:37 GMT).
std::optional<milliseconds> parse_retry_after(std::string_view value, time_ms now);

struct integration_counters {
    std::uint64_t sent = 0;
    std::uint64_t failed = 0;
    std::uint64_t retried = 0;
    std::uint64_t dropped = 0;
    std::size_t queued = 0;
    std::size_t in_flight = 0;
};

class delivery_queue {
public:
    delivery_queue(retry_policy policy, const clock& clock, std::uint64_t seed = std::random_device{}());

    // Sets the limits of each integration (from the routing config); unknown ones get defaults.
    void set_limits(const std::string& integration_id, integration_kind kind, const delivery_limits& limits);

    // Adds a stored entry (new, or loaded from the store at start).
    void add(outbox_entry entry);

    // Entries whose turn has come: due, first of their (integration, group), within
    // concurrency and rate limits. They count as in flight until complete().
    std::vector<outbox_entry> take_due();

    // Records the result of an attempt. Returns the entry's new state: delivered and failed
    // entries leave the queue; a retry gets its next_attempt_at.
    struct completion {
        attempt_outcome outcome;
        outbox_entry entry; // with attempts, next_attempt_at and last_error updated
    };
    completion complete(std::uint64_t id, const attempt_result& result);

    // Drops entries older than max_age and those of integrations that no longer exist.
    std::vector<outbox_entry> expire(const std::function<bool(const std::string& integration_id)>& exists);

    // When take_due() next has something, or nullopt when the queue is empty or all in flight.
    std::optional<time_ms> next_wakeup() const;

    std::size_t size() const;
    const std::map<std::string, integration_counters>& counters() const;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace tocsin
