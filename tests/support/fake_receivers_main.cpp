// tocsin-fake-receivers: the PagerDuty, Slack and webhook stand-ins as a process, for the
// integration tests. Appends one JSON line per request to the events file and stops on SIGTERM
// or SIGINT. Each line's "kind" is pagerduty, pagerduty_change, slack, slack_api or webhook.

#include "support/fake_receivers.hpp"

#include <csignal>
#include <fstream>
#include <iostream>
#include <mutex>

#include <CLI/CLI.hpp>
#include <pthread.h>

namespace {

using tocsin::test::fake_receivers;
using tocsin::test::received_request;
using tocsin::test::receiver_kind;

nlohmann::json event_line(const received_request& request)
{
    nlohmann::json line;
    line["kind"] = tocsin::test::to_string(request.kind);
    line["status"] = request.status;
    line["accepted"] = request.accepted;
    // The parsed body when it was JSON, else the raw text.
    line["body"] = request.parsed.is_null() ? nlohmann::json(request.body) : request.parsed;
    line["path"] = request.path;
    line["reason"] = request.reason;
    line["arrival_ms"] = request.arrival_ms;
    // The response, parsed when it is JSON (Slack Web API: channel and ts), else the raw text.
    nlohmann::json response = nlohmann::json::parse(request.response_body, nullptr, false);
    line["response"] = response.is_discarded() ? nlohmann::json(request.response_body) : response;
    return line;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"Local stand-ins for PagerDuty Events API v2 (alert and change events), Slack and an "
                 "Alertmanager-format webhook"};
    int port = 0;
    std::string events_path;
    tocsin::test::fake_receivers_options options;
    int fail_first = 0;
    int fail_status = 503;
    int retry_after_s = -1;
    app.add_option("--port", port, "TCP port on 127.0.0.1; 0 picks a free one")->default_val(0);
    app.add_option("--events", events_path, "File that gets one JSON line per request")->required();
    app.add_option("--routing-key", options.pagerduty_routing_key,
                   "The only PagerDuty routing key accepted (default: any 32-character key)");
    app.add_option("--slack-token", options.slack_token, "Bot token the Slack Web API endpoints expect");
    app.add_flag("--slack-rate-limit", options.slack_rate_limit,
                 "Answer 429 with Retry-After: 1 to more than one Slack message per second per webhook");
    app.add_option("--fail-first", fail_first, "Answer the first N requests of each endpoint with --fail-status")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--fail-status", fail_status, "HTTP status of the scripted failures")
        ->check(CLI::Range(100, 599))
        ->default_val(503);
    app.add_option("--retry-after", retry_after_s, "Retry-After header of the scripted failures, in seconds")
        ->check(CLI::NonNegativeNumber);
    CLI11_PARSE(app, argc, argv);

    std::ofstream events(events_path, std::ios::app);
    if (!events) {
        std::cerr << "cannot open the events file " << events_path << " for appending\n";
        return 1;
    }

    // Block the stop signals before any thread starts, so that only sigwait below receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    fake_receivers receivers(options);
    std::mutex events_mutex; // guards events
    receivers.set_request_listener([&](const received_request& request) {
        std::lock_guard lock(events_mutex);
        // The raw body or the reason may hold invalid UTF-8, which dump() must not throw on.
        events << event_line(request).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n'
               << std::flush;
    });
    for (auto kind : {receiver_kind::pagerduty, receiver_kind::pagerduty_change, receiver_kind::slack,
                      receiver_kind::slack_api, receiver_kind::webhook}) {
        if (fail_first > 0) {
            receivers.fail_next(kind, fail_first, fail_status,
                                retry_after_s >= 0 ? std::optional<int>(retry_after_s) : std::nullopt);
        }
    }

    try {
        receivers.start(port);
    } catch (const std::exception& e) {
        std::cerr << e.what() << '\n';
        return 1;
    }
    std::cout << "listening on 127.0.0.1:" << receivers.port() << std::endl;

    int received = 0;
    sigwait(&stop_signals, &received);
    receivers.stop();
    return 0;
}
