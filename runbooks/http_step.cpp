#include "runbooks/http_step.hpp"

#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "runbooks/hash.hpp"

namespace tocsin::runbooks {

namespace {

constexpr std::size_t max_body_kept = 64 * 1024;

// Splits http://host:port/path?query into "http://host:port" and "/path?query".
bool split_url(const std::string& url, std::string& origin, std::string& target)
{
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos) {
        return false;
    }
    const std::string scheme = url.substr(0, scheme_end);
    if (scheme != "http" && scheme != "https") {
        return false;
    }
    const auto path_start = url.find('/', scheme_end + 3);
    origin = path_start == std::string::npos ? url : url.substr(0, path_start);
    target = path_start == std::string::npos ? "/" : url.substr(path_start);
    return origin.size() > scheme_end + 3;
}

} // namespace

http_response httplib_transport::send(const http_request& request)
{
    http_response response;
    std::string origin;
    std::string target;
    if (!split_url(request.url, origin, target)) {
        response.error = fmt::format("invalid url {}", request.url);
        return response;
    }
    httplib::Client client(origin);
    if (!client.is_valid()) {
        response.error = fmt::format("invalid url {}", request.url);
        return response;
    }
    const auto seconds = request.timeout.count() / 1000;
    const auto micros = (request.timeout.count() % 1000) * 1000;
    client.set_connection_timeout(seconds, micros);
    client.set_read_timeout(seconds, micros);
    client.set_write_timeout(seconds, micros);
    client.set_follow_location(false);
    client.set_keep_alive(false);
    httplib::Headers headers;
    for (const auto& [name, value] : request.headers) {
        headers.emplace(name, value);
    }
    httplib::Request req;
    req.method = request.method;
    req.path = target;
    req.headers = headers;
    if (!request.body.empty() || request.method != "GET") {
        req.body = request.body;
        req.set_header("Content-Type", request.content_type);
    }
    auto result = client.send(req);
    if (!result) {
        response.error = httplib::to_string(result.error());
        return response;
    }
    response.status = result->status;
    response.body = result->body.substr(0, max_body_kept);
    return response;
}

std::string idempotency_key(std::string_view runbook, std::uint64_t fingerprint, time_ms episode_start,
                            std::string_view step)
{
    // Length-prefixed fields, so no choice of names can make two tuples hash alike.
    const std::string material = fmt::format("tocsin-runbook-step/1|{}:{}|{:016x}|{}|{}:{}", runbook.size(), runbook,
                                             fingerprint, episode_start, step.size(), step);
    return sha256_hex(material).substr(0, 32);
}

http_outcome run_http_call(http_transport& transport, const http_call& call,
                           const std::function<void(milliseconds)>& sleep)
{
    http_outcome outcome;
    http_request request = call.request;
    request.headers.emplace_back("Idempotency-Key", call.key);
    milliseconds backoff = call.backoff;
    const int attempts = std::max(1, call.attempts);
    for (int attempt = 1; attempt <= attempts; ++attempt) {
        if (attempt > 1) {
            if (sleep) {
                sleep(backoff);
            } else {
                std::this_thread::sleep_for(backoff);
            }
            backoff *= 2;
        }
        outcome.attempts = attempt;
        const http_response response = transport.send(request);
        outcome.status = response.status;
        outcome.body = response.body;
        if (!outcome.detail.empty()) {
            outcome.detail += "; ";
        }
        if (response.status == 0) {
            outcome.detail += fmt::format("attempt {}: no answer ({})", attempt, response.error);
            continue; // retried with the same key
        }
        outcome.detail += fmt::format("attempt {}: {}", attempt, response.status);
        if (response.status >= 200 && response.status < 300) {
            outcome.ok = true;
            return outcome;
        }
        if (response.status >= 500) {
            continue;
        }
        return outcome; // 4xx and anything else: the request itself is wrong; a retry cannot help
    }
    return outcome;
}

} // namespace tocsin::runbooks
