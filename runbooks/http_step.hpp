#pragma once
// HTTP steps (http, and rollback by http): one blocking call with retries. Every attempt of a
// step carries the same Idempotency-Key, derived from the runbook, the alert, the firing
// episode and the step. A receiver that deduplicates by key therefore applies the call once,
// even when a retry or a resume after a crash sends it again.
//
// 2xx is success and 4xx a failure that is not retried. 5xx, timeouts and connection errors
// are retried, up to `attempts` in all. Any other status (1xx, 3xx) is a failure.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "rules/clock.hpp"

namespace tocsin::runbooks {

using std::chrono::milliseconds;

struct http_request {
    std::string method = "POST";
    std::string url; // http://host:port/path?query
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::string content_type = "application/json";
    milliseconds timeout{10'000}; // connect, read and write each
};

struct http_response {
    int status = 0;    // 0: no response (timeout, connection refused); see error
    std::string body;  // cut to 64 KiB
    std::string error;
};

// Sends one request. Implementations must be safe to call from several threads at once. The
// daemon may supply its own; httplib_transport is the default.
class http_transport {
public:
    virtual ~http_transport() = default;
    virtual http_response send(const http_request& request) = 0;
};

// cpp-httplib, one connection per request, no redirects followed.
class httplib_transport final : public http_transport {
public:
    http_response send(const http_request& request) override;
};

// The key for (runbook, alert fingerprint, episode start, step): 32 hex digits of SHA-256 over
// the four values. Stable across restarts and versions.
std::string idempotency_key(std::string_view runbook, std::uint64_t fingerprint, time_ms episode_start,
                            std::string_view step);

struct http_call {
    http_request request;      // without the Idempotency-Key header; run_http_call adds it
    std::string key;
    int attempts = 3;
    milliseconds backoff{1000}; // before the 2nd attempt; doubled after each retry
};

struct http_outcome {
    bool ok = false;
    int attempts = 0;
    int status = 0;
    std::string detail; // one line per attempt: "attempt 1: 500", "attempt 2: 200"
    std::string body;   // of the last response
};

// Sends the call, retrying as described above. `sleep` waits between attempts (tests pass one
// that returns at once).
http_outcome run_http_call(http_transport& transport, const http_call& call,
                           const std::function<void(milliseconds)>& sleep = {});

} // namespace tocsin::runbooks
