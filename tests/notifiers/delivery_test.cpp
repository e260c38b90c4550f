#include <catch2/catch.hpp>

#include <cmath>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "notifiers/delivery.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

// 2023-11-14 22:13:20 UTC, a whole second so that HTTP dates (second resolution) line up.
constexpr time_ms start_ms = 1'700'000'000'000;

outbox_entry make_entry(std::uint64_t id, const std::string& receiver, integration_kind kind,
                        const std::string& group_key, time_ms created_at, time_ms next_attempt_at = 0)
{
    outbox_entry e;
    e.id = id;
    e.message.integration = integration_ref{receiver, kind, 0};
    e.message.group_key = group_key;
    e.message.body = "{}";
    e.created_at = created_at;
    e.next_attempt_at = next_attempt_at == 0 ? created_at : next_attempt_at;
    return e;
}

std::vector<std::uint64_t> ids_of(const std::vector<outbox_entry>& entries)
{
    std::vector<std::uint64_t> ids;
    for (const auto& e : entries) {
        ids.push_back(e.id);
    }
    return ids;
}

std::string http_date(time_ms t)
{
    std::time_t seconds = static_cast<std::time_t>(t / 1000);
    std::tm parts{};
    gmtime_r(&seconds, &parts);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
    return text;
}

attempt_result delivered()
{
    attempt_result r;
    r.outcome = attempt_outcome::delivered;
    r.http_status = 200;
    r.reason = "delivered";
    return r;
}

attempt_result server_error()
{
    attempt_result r;
    r.outcome = attempt_outcome::retry;
    r.http_status = 503;
    r.reason = "server_error";
    return r;
}

attempt_result classify(integration_kind kind, int status, std::string_view body, std::string_view retry_after = {},
                        bool web_api = false)
{
    return classify_response(kind, web_api, status, retry_after, body, start_ms);
}

const std::string slack_id = "chat/slack/0";
const std::string hook_id = "hook/webhook/0";
const std::string pd_id = "pd/pagerduty/0";

} // namespace

// ---- classify_response ----

TEST_CASE("classify pagerduty success statuses")
{
    auto r = classify(integration_kind::pagerduty, 202,
                      R"({"status":"success","message":"Event processed","dedup_key":"k"})");
    CHECK(r.outcome == attempt_outcome::delivered);
    CHECK(r.reason == "delivered");
    CHECK(r.http_status == 202);
    CHECK(r.detail.empty());
    CHECK(classify(integration_kind::pagerduty, 200, "").outcome == attempt_outcome::delivered);
}

TEST_CASE("classify pagerduty 400 keeps message and errors")
{
    auto r = classify(integration_kind::pagerduty, 400,
                      R"({"status":"invalid event","message":"Event object is invalid",)"
                      R"json("errors":["Length of 'routing_key' is incorrect (should be 32 characters)","'severity' is missing"]})json");
    CHECK(r.outcome == attempt_outcome::failed);
    CHECK(r.reason == "client_error");
    CHECK(r.http_status == 400);
    CHECK(r.detail == "Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters); "
                      "'severity' is missing");
    CHECK_FALSE(r.retry_after.has_value());
}

TEST_CASE("classify pagerduty error body that is not JSON")
{
    auto r = classify(integration_kind::pagerduty, 400, "bad request\n");
    CHECK(r.outcome == attempt_outcome::failed);
    CHECK(r.detail == "bad request");
}

TEST_CASE("classify pagerduty 429 waits at least 30 seconds")
{
    auto r = classify(integration_kind::pagerduty, 429, "");
    CHECK(r.outcome == attempt_outcome::retry);
    CHECK(r.reason == "rate_limited");
    REQUIRE(r.retry_after.has_value());
    CHECK(*r.retry_after == 30s);

    auto with_header = classify(integration_kind::pagerduty, 429, "", "90");
    REQUIRE(with_header.retry_after.has_value());
    CHECK(*with_header.retry_after == 90s);
}

TEST_CASE("classify pagerduty 5xx retries")
{
    for (int status : {500, 502, 503, 504}) {
        INFO(status);
        auto r = classify(integration_kind::pagerduty, status,
                          R"({"status":"unrecognized object","message":"Internal error","errors":["x"]})");
        CHECK(r.outcome == attempt_outcome::retry);
        CHECK(r.reason == "server_error");
        CHECK(r.detail == "Internal error: x");
        CHECK_FALSE(r.retry_after.has_value());
    }
}

TEST_CASE("classify pagerduty other statuses fail")
{
    for (int status : {401, 403, 404, 413}) {
        INFO(status);
        auto r = classify(integration_kind::pagerduty, status, "");
        CHECK(r.outcome == attempt_outcome::failed);
        CHECK(r.reason == "client_error");
    }
}

TEST_CASE("classify redirects fail with advice")
{
    for (int status : {301, 302, 307, 308}) {
        INFO(status);
        auto r = classify(integration_kind::webhook, status, "");
        CHECK(r.outcome == attempt_outcome::failed);
        CHECK(r.reason == "redirect");
        CHECK_THAT(r.detail, Catch::Contains("does not follow"));
    }
}

TEST_CASE("classify slack webhook ok")
{
    auto r = classify(integration_kind::slack, 200, "ok");
    CHECK(r.outcome == attempt_outcome::delivered);
    CHECK(r.reason == "delivered");
    CHECK(classify(integration_kind::slack, 200, "ok\r\n").outcome == attempt_outcome::delivered);
}

TEST_CASE("classify slack webhook 2xx with another body fails")
{
    for (std::string_view body : {R"({"ok":true})", "", "OK", "okay", " ok"}) {
        INFO(body);
        auto r = classify(integration_kind::slack, 200, body);
        CHECK(r.outcome == attempt_outcome::failed);
        CHECK(r.reason == "bad_response");
    }
}

TEST_CASE("classify slack webhook error bodies fail with detail")
{
    struct row {
        int status;
        const char* body;
    };
    const row rows[] = {
        {400, "invalid_payload"},
        {400, "user_not_found"},
        {400, "no_text"},
        {400, "missing_text"},
        {400, "missing_text_or_fallback_or_attachments"},
        {400, "invalid_token"},
        {400, "invalid_blocks"},
        {400, "invalid_blocks_format"},
        {403, "action_prohibited"},
        {403, "posting_to_general_channel_denied"},
        {403, "team_disabled"},
        {404, "channel_not_found"},
        {404, "no_service"},
        {410, "channel_is_archived"},
    };
    for (const auto& [status, body] : rows) {
        INFO(status << " " << body);
        auto r = classify(integration_kind::slack, status, body);
        CHECK(r.outcome == attempt_outcome::failed);
        CHECK(r.reason == "client_error");
        CHECK(r.http_status == status);
        CHECK(r.detail == body);
    }
}

TEST_CASE("classify slack webhook 429 honours Retry-After")
{
    auto r = classify(integration_kind::slack, 429, R"({"ok":false,"error":"rate_limited"})", "3");
    CHECK(r.outcome == attempt_outcome::retry);
    CHECK(r.reason == "rate_limited");
    REQUIRE(r.retry_after.has_value());
    CHECK(*r.retry_after == 3s);

    auto without = classify(integration_kind::slack, 429, "");
    REQUIRE(without.retry_after.has_value());
    CHECK(*without.retry_after == 1s);
}

TEST_CASE("classify slack webhook 5xx retries")
{
    auto r = classify(integration_kind::slack, 500, "rollup_error");
    CHECK(r.outcome == attempt_outcome::retry);
    CHECK(r.reason == "server_error");
    CHECK(r.detail == "rollup_error");
}

TEST_CASE("classify slack web api success keeps ts as text")
{
    auto r = classify(integration_kind::slack, 200,
                      R"({"ok":true,"channel":"C123ABC456","ts":"1503435956.000247","message":{"text":"x"}})", {},
                      true);
    CHECK(r.outcome == attempt_outcome::delivered);
    CHECK(r.slack_channel == "C123ABC456");
    CHECK(r.slack_ts == "1503435956.000247");
}

TEST_CASE("classify slack web api errors fail with code")
{
    for (std::string_view code :
         {"channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "msg_blocks_too_long", "invalid_blocks"}) {
        INFO(code);
        auto body = std::string(R"({"ok":false,"error":")") + std::string(code) + "\"}";
        auto r = classify(integration_kind::slack, 200, body, {}, true);
        CHECK(r.outcome == attempt_outcome::failed);
        CHECK(r.reason == "client_error");
        CHECK(r.detail == code);
    }
}

TEST_CASE("classify slack web api ratelimited retries")
{
    auto r = classify(integration_kind::slack, 200, R"({"ok":false,"error":"ratelimited"})", "7", true);
    CHECK(r.outcome == attempt_outcome::retry);
    CHECK(r.reason == "rate_limited");
    REQUIRE(r.retry_after.has_value());
    CHECK(*r.retry_after == 7s);
}

TEST_CASE("classify slack web api unparsable body retries")
{
    for (std::string_view body : {"<html>gateway</html>", "", R"({"channel":"C1"})", "[true]"}) {
        INFO(body);
        auto r = classify(integration_kind::slack, 200, body, {}, true);
        CHECK(r.outcome == attempt_outcome::retry);
        CHECK(r.reason == "bad_response");
    }
}

TEST_CASE("classify slack web api 429 and 5xx retry")
{
    auto limited = classify(integration_kind::slack, 429, R"({"ok":false,"error":"ratelimited"})", "30", true);
    CHECK(limited.outcome == attempt_outcome::retry);
    CHECK(limited.reason == "rate_limited");
    REQUIRE(limited.retry_after.has_value());
    CHECK(*limited.retry_after == 30s);

    auto server = classify(integration_kind::slack, 503, "", {}, true);
    CHECK(server.outcome == attempt_outcome::retry);
    CHECK(server.reason == "server_error");

    auto denied = classify(integration_kind::slack, 401, R"({"ok":false,"error":"invalid_auth"})", {}, true);
    CHECK(denied.outcome == attempt_outcome::failed);
    CHECK(denied.detail == "invalid_auth");
}

TEST_CASE("classify webhook statuses")
{
    for (int status : {200, 201, 202, 204, 299}) {
        INFO(status);
        CHECK(classify(integration_kind::webhook, status, "whatever").outcome == attempt_outcome::delivered);
    }
    for (int status : {429, 500, 502, 503, 599}) {
        INFO(status);
        CHECK(classify(integration_kind::webhook, status, "").outcome == attempt_outcome::retry);
    }
    for (int status : {100, 400, 401, 404, 422}) {
        INFO(status);
        auto r = classify(integration_kind::webhook, status, "no such hook");
        CHECK(r.outcome == attempt_outcome::failed);
        CHECK(r.detail == "no such hook");
    }
    auto limited = classify(integration_kind::webhook, 429, "", "12");
    REQUIRE(limited.retry_after.has_value());
    CHECK(*limited.retry_after == 12s);
    CHECK_FALSE(classify(integration_kind::webhook, 429, "").retry_after.has_value());
}

TEST_CASE("classify 503 honours Retry-After")
{
    auto r = classify(integration_kind::webhook, 503, "", "120");
    REQUIRE(r.retry_after.has_value());
    CHECK(*r.retry_after == 120s);
}

TEST_CASE("classify detail is cut on a UTF-8 boundary")
{
    // 511 ASCII bytes, then a 2-byte character that would end at byte 513.
    std::string body(511, 'a');
    body += "\xc3\xa9 tail";
    auto r = classify(integration_kind::webhook, 400, body);
    CHECK(r.detail.size() == 511);
    CHECK(r.detail == std::string(511, 'a'));

    // A 3-byte character ending exactly at byte 512 stays.
    std::string exact(509, 'b');
    exact += "\xe2\x82\xac";
    exact += "more";
    CHECK(classify(integration_kind::webhook, 400, exact).detail == std::string(509, 'b') + "\xe2\x82\xac");
}

TEST_CASE("classify detail is one line")
{
    auto r = classify(integration_kind::slack, 400, "invalid_token\r\nsecond line\n");
    CHECK(r.detail == "invalid_token  second line");
}

// ---- parse_retry_after ----

TEST_CASE("retry-after delta seconds")
{
    CHECK(parse_retry_after("3", start_ms) == 3s);
    CHECK(parse_retry_after(" 120 ", start_ms) == 120s);
    CHECK(parse_retry_after("0", start_ms) == 0s);
    CHECK(parse_retry_after("007", start_ms) == 7s);
    CHECK(parse_retry_after("86400", start_ms) == 24h);
    CHECK(parse_retry_after("86401", start_ms) == 24h);
    CHECK(parse_retry_after("99999999999999999999999999", start_ms) == 24h);
}

TEST_CASE("retry-after IMF-fixdate")
{
    // start_ms is Tue, 14 Nov 2023 22:13:20 GMT.
    CHECK(http_date(start_ms) == "Tue, 14 Nov 2023 22:13:20 GMT");
    CHECK(parse_retry_after("Tue, 14 Nov 2023 22:13:23 GMT", start_ms) == 3s);
    CHECK(parse_retry_after("Wed, 15 Nov 2023 00:13:20 GMT", start_ms) == 2h);
    CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", start_ms) == 0s);
    CHECK(parse_retry_after("Tue, 14 Nov 2023 22:13:20 GMT", start_ms + 500) == 0s);
    CHECK(parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", start_ms) == 24h);
    CHECK(parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", start_ms).has_value());
}

TEST_CASE("retry-after obsolete date forms")
{
    CHECK(parse_retry_after("Tuesday, 14-Nov-23 22:13:25 GMT", start_ms) == 5s);
    CHECK(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", start_ms) == 0s);
    CHECK(parse_retry_after("Tue Nov 14 22:13:30 2023", start_ms) == 10s);
    CHECK(parse_retry_after("Sun Nov  6 08:49:37 1994", start_ms) == 0s);
    CHECK(parse_retry_after("Wed Nov 15 22:13:20 2023", start_ms) == 24h);
}

TEST_CASE("retry-after rejects garbage")
{
    for (std::string_view value : {"", "  ", "abc", "-5", "1.5", "3s", "+3", "0x10",
                                   "Tue, 14 Nov 2023 22:13:23 PST", "Tue, 32 Nov 2023 22:13:23 GMT",
                                   "Wed, 29 Feb 2023 00:00:00 GMT", "Tue, 14 Nov 2023 24:00:00 GMT",
                                   "Tue, 14 Nov 2023 22:61:00 GMT", "Tue, 14 Foo 2023 22:13:23 GMT",
                                   "Tue, 14 Nov 2023 22:13:23 GMT trailing", "Tue 14 Nov 2023 22:13:23 GMT",
                                   "2023-11-14T22:13:23Z", "Tue Nov 14 22:13:30"}) {
        INFO('"' << value << '"');
        CHECK_FALSE(parse_retry_after(value, start_ms).has_value());
    }
}

// ---- delivery_queue ----

TEST_CASE("queue slack 429 retry-after then delivery")
{
    for (bool as_date : {false, true}) {
        INFO((as_date ? "HTTP date" : "delta seconds"));
        manual_clock clock(start_ms);
        delivery_queue queue(retry_policy{}, clock, 1);
        // A group flushed after group_wait: the entry becomes due 10 s after it was stored.
        queue.add(make_entry(1, "chat", integration_kind::slack, "g", start_ms, start_ms + 10'000));

        std::vector<time_ms> attempts;
        int answered_429 = 0;
        int delivered_count = 0;
        for (int step = 0; step < 10 && queue.size() > 0; ++step) {
            auto wake = queue.next_wakeup();
            REQUIRE(wake.has_value());
            REQUIRE(*wake >= clock.now_ms());
            clock.set_ms(*wake);
            auto due = queue.take_due();
            REQUIRE(due.size() == 1);
            attempts.push_back(clock.now_ms());
            attempt_result result;
            if (answered_429 < 2) {
                ++answered_429;
                std::string header = as_date ? http_date(clock.now_ms() + 3'000) : "3";
                result = classify_response(integration_kind::slack, false, 429, header,
                                           R"({"ok":false,"error":"rate_limited"})", clock.now_ms());
            } else {
                result = classify_response(integration_kind::slack, false, 200, {}, "ok", clock.now_ms());
            }
            auto done = queue.complete(due[0].id, result);
            if (done.outcome == attempt_outcome::delivered) {
                ++delivered_count;
            }
        }

        REQUIRE(attempts.size() == 3);
        CHECK(attempts[0] == start_ms + 10'000);
        CHECK(attempts[1] >= start_ms + 13'000);
        CHECK(attempts[2] >= start_ms + 16'000);
        CHECK(attempts[1] - attempts[0] >= 3'000);
        CHECK(attempts[2] - attempts[1] >= 3'000);
        // The backoff after one or two failures (1 s, 2 s, ±20%) stays below Retry-After, so the
        // retries come exactly when Slack allows, not at a later group interval.
        CHECK(attempts[2] <= start_ms + 16'000);
        CHECK(delivered_count == 1);
        CHECK(queue.size() == 0);
        const auto& c = queue.counters().at(slack_id);
        CHECK(c.sent == 1);
        CHECK(c.retried == 2);
        CHECK(c.failed == 0);
        CHECK(c.queued == 0);
        CHECK(c.in_flight == 0);
        CHECK_FALSE(queue.next_wakeup().has_value());
    }
}

TEST_CASE("queue caps an absurd retry-after at one hour")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "chat", integration_kind::slack, "g1", start_ms));
    REQUIRE(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1});
    auto result = classify_response(integration_kind::slack, false, 429, "999999999", "", clock.now_ms());
    auto done = queue.complete(1, result);
    CHECK(done.outcome == attempt_outcome::retry);
    CHECK(done.entry.next_attempt_at == start_ms + 3'600'000);
}

TEST_CASE("queue long retry-after leaves others unaffected")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "chat", integration_kind::slack, "g1", start_ms));

    auto first = queue.take_due();
    REQUIRE(ids_of(first) == std::vector<std::uint64_t>{1});
    auto result = classify_response(integration_kind::slack, false, 429, "600", "", clock.now_ms());
    auto done = queue.complete(1, result);
    CHECK(done.outcome == attempt_outcome::retry);
    CHECK(done.entry.next_attempt_at == start_ms + 600'000);
    CHECK(done.entry.attempts == 1);
    CHECK(done.entry.last_error.find("429") != std::string::npos);
    REQUIRE(queue.next_wakeup().has_value());
    CHECK(*queue.next_wakeup() == start_ms + 600'000);
    CHECK(queue.take_due().empty());

    // Another integration and another group of the same Slack integration still go out.
    queue.add(make_entry(2, "hook", integration_kind::webhook, "g1", clock.now_ms()));
    queue.add(make_entry(3, "chat", integration_kind::slack, "g2", clock.now_ms()));
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{2});
    // Slack's token bucket (1 per second) was emptied by the first attempt.
    REQUIRE(queue.next_wakeup().has_value());
    CHECK(*queue.next_wakeup() == start_ms + 1'000);
    clock.set_ms(*queue.next_wakeup());
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{3});
    CHECK(queue.complete(2, delivered()).outcome == attempt_outcome::delivered);
    CHECK(queue.complete(3, delivered()).outcome == attempt_outcome::delivered);

    // The kept entry waits the whole 600 s with no earlier wakeup.
    CHECK(queue.size() == 1);
    CHECK(*queue.next_wakeup() == start_ms + 600'000);
    clock.set_ms(start_ms + 599'999);
    CHECK(queue.take_due().empty());
    CHECK(*queue.next_wakeup() == start_ms + 600'000);
    clock.set_ms(start_ms + 600'000);
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1});
}

TEST_CASE("queue 5xx backoff grows within jitter and cap")
{
    manual_clock clock(start_ms);
    retry_policy policy; // 1 s doubling, 5 min cap, ±20%
    delivery_queue queue(policy, clock, 42);
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g", start_ms));

    std::vector<time_ms> waits;
    for (std::uint32_t attempt = 1; attempt <= 14; ++attempt) {
        auto due = queue.take_due();
        REQUIRE(due.size() == 1);
        auto done = queue.complete(1, server_error());
        REQUIRE(done.outcome == attempt_outcome::retry);
        CHECK(done.entry.attempts == attempt);
        const time_ms wait = done.entry.next_attempt_at - clock.now_ms();
        waits.push_back(wait);

        const double base = std::min(1000.0 * std::pow(2.0, attempt - 1), 300'000.0);
        INFO("attempt " << attempt << " wait " << wait << " base " << base);
        CHECK(wait >= static_cast<time_ms>(base * 0.8) - 1);
        CHECK(wait <= static_cast<time_ms>(base * 1.2) + 1);
        CHECK(wait <= 300'000);
        clock.set_ms(done.entry.next_attempt_at);
    }
    // From the 10th failure on, the base (512 s and more) is over the cap.
    for (std::size_t i = 9; i < waits.size(); ++i) {
        CHECK(waits[i] >= 240'000);
        CHECK(waits[i] <= 300'000);
    }
    // The jitter moves the waits below the cap off their base (1 s, 2 s, ... 256 s).
    int on_base = 0;
    for (std::size_t i = 0; i < 9; ++i) {
        const double base = 1000.0 * std::pow(2.0, static_cast<double>(i));
        on_base += waits[i] == static_cast<time_ms>(base) ? 1 : 0;
    }
    CHECK(on_base < 2);
    const auto& c = queue.counters().at(hook_id);
    CHECK(c.retried == 14);
    CHECK(c.queued == 1);
}

TEST_CASE("queue backoff is reproducible with a seed")
{
    auto waits_for = [](std::uint64_t seed) {
        manual_clock clock(start_ms);
        delivery_queue queue(retry_policy{}, clock, seed);
        queue.add(make_entry(1, "hook", integration_kind::webhook, "g", start_ms));
        std::vector<time_ms> waits;
        for (int i = 0; i < 5; ++i) {
            REQUIRE(queue.take_due().size() == 1);
            auto done = queue.complete(1, server_error());
            waits.push_back(done.entry.next_attempt_at - clock.now_ms());
            clock.set_ms(done.entry.next_attempt_at);
        }
        return waits;
    };
    CHECK(waits_for(7) == waits_for(7));
    CHECK(waits_for(7) != waits_for(8));
}

TEST_CASE("queue 400 is not retried and keeps detail")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "pd", integration_kind::pagerduty, "g", start_ms));
    REQUIRE(queue.take_due().size() == 1);
    auto result = classify_response(integration_kind::pagerduty, false, 400, {},
                                    R"({"status":"invalid event","message":"Event object is invalid",)"
                                    R"json("errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]})json",
                                    clock.now_ms());
    auto done = queue.complete(1, result);
    CHECK(done.outcome == attempt_outcome::failed);
    CHECK(done.entry.attempts == 1);
    CHECK(done.entry.last_error ==
          "HTTP 400 client_error: Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters)");
    CHECK(queue.size() == 0);
    CHECK_FALSE(queue.next_wakeup().has_value());
    const auto& c = queue.counters().at(pd_id);
    CHECK(c.failed == 1);
    CHECK(c.retried == 0);
    CHECK(c.sent == 0);
}

TEST_CASE("queue keeps order within a group")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "pd", integration_kind::pagerduty, "g", start_ms));     // trigger
    queue.add(make_entry(2, "pd", integration_kind::pagerduty, "g", start_ms + 5)); // resolve
    clock.advance_ms(10);

    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1});
    // While the trigger is in flight, the resolve waits for its outcome, not for a time.
    CHECK(queue.take_due().empty());
    CHECK_FALSE(queue.next_wakeup().has_value());

    auto retry = queue.complete(1, server_error());
    REQUIRE(retry.outcome == attempt_outcome::retry);
    // The resolve is due, but the trigger still waits for its retry: the resolve does too.
    CHECK(queue.take_due().empty());
    REQUIRE(queue.next_wakeup().has_value());
    CHECK(*queue.next_wakeup() == retry.entry.next_attempt_at);

    clock.set_ms(retry.entry.next_attempt_at);
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1});
    queue.complete(1, delivered());
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{2});
}

TEST_CASE("queue moves on after a failed head")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g", start_ms));
    queue.add(make_entry(2, "hook", integration_kind::webhook, "g", start_ms));
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1});
    attempt_result rejected = classify_response(integration_kind::webhook, false, 400, {}, "bad", clock.now_ms());
    CHECK(queue.complete(1, rejected).outcome == attempt_outcome::failed);
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{2});
}

TEST_CASE("queue sends groups and integrations in parallel")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g1", start_ms));
    queue.add(make_entry(2, "hook", integration_kind::webhook, "g1", start_ms));
    queue.add(make_entry(3, "hook", integration_kind::webhook, "g2", start_ms));
    queue.add(make_entry(4, "pd", integration_kind::pagerduty, "g1", start_ms));
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1, 3, 4});

    // A dead receiver in one group does not hold back the next message of another.
    queue.complete(1, server_error());
    queue.add(make_entry(5, "hook", integration_kind::webhook, "g2", start_ms));
    queue.complete(3, delivered());
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{5});
    CHECK(queue.size() == 4);
    CHECK(queue.counters().at(hook_id).in_flight == 1);
    CHECK(queue.counters().at(hook_id).queued == 2);
    CHECK(queue.counters().at(pd_id).in_flight == 1);
}

TEST_CASE("queue rate limit spaces a burst")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    for (std::uint64_t id = 1; id <= 10; ++id) {
        queue.add(make_entry(id, "chat", integration_kind::slack, "g" + std::to_string(id), start_ms));
    }

    std::vector<time_ms> sent_at;
    std::vector<std::uint64_t> order;
    for (int step = 0; step < 20 && queue.size() > 0; ++step) {
        auto wake = queue.next_wakeup();
        REQUIRE(wake.has_value());
        REQUIRE(*wake >= clock.now_ms());
        clock.set_ms(*wake);
        auto due = queue.take_due();
        // Slack's default bucket contains one token, so each wakeup sends exactly one message.
        REQUIRE(due.size() == 1);
        sent_at.push_back(clock.now_ms());
        order.push_back(due[0].id);
        queue.complete(due[0].id, delivered());
    }
    REQUIRE(sent_at.size() == 10);
    for (std::size_t i = 1; i < sent_at.size(); ++i) {
        CHECK(sent_at[i] - sent_at[i - 1] >= 1'000);
    }
    CHECK(sent_at.back() - sent_at.front() == 9'000);
    CHECK(order == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    CHECK(queue.counters().at(slack_id).sent == 10);
}

TEST_CASE("queue rate limit with configured burst")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    delivery_limits limits;
    limits.rate_limit_per_second = 2;
    limits.burst = 3;
    queue.set_limits(hook_id, integration_kind::webhook, limits);
    for (std::uint64_t id = 1; id <= 6; ++id) {
        queue.add(make_entry(id, "hook", integration_kind::webhook, "g" + std::to_string(id), start_ms));
    }
    auto first = queue.take_due();
    CHECK(first.size() == 3);
    for (const auto& e : first) {
        queue.complete(e.id, delivered());
    }
    CHECK(*queue.next_wakeup() == start_ms + 500);
    clock.set_ms(start_ms + 499);
    CHECK(queue.take_due().empty());
    clock.set_ms(start_ms + 500);
    CHECK(queue.take_due().size() == 1);
    clock.set_ms(start_ms + 1'500); // two more tokens
    CHECK(queue.take_due().size() == 2);
}

TEST_CASE("queue webhook has no default rate limit")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    for (std::uint64_t id = 1; id <= 40; ++id) {
        queue.add(make_entry(id, "hook", integration_kind::webhook, "g" + std::to_string(id), start_ms));
    }
    for (int round = 0; round < 10; ++round) {
        auto due = queue.take_due();
        REQUIRE(due.size() == 4); // the default concurrency limit, never a rate limit
        for (const auto& e : due) {
            queue.complete(e.id, delivered());
        }
    }
    CHECK(queue.size() == 0);
}

TEST_CASE("queue concurrency limit")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    delivery_limits limits;
    limits.max_concurrency = 2;
    queue.set_limits(hook_id, integration_kind::webhook, limits);
    REQUIRE(queue.counters().count(hook_id) == 1);
    CHECK(queue.counters().at(hook_id).sent == 0);
    for (std::uint64_t id = 1; id <= 5; ++id) {
        queue.add(make_entry(id, "hook", integration_kind::webhook, "g" + std::to_string(id), start_ms));
    }
    queue.add(make_entry(6, "pd", integration_kind::pagerduty, "g1", start_ms));

    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1, 2, 6});
    CHECK(queue.take_due().empty());
    // The waiting entries need a completion, not time: no wakeup to spin on.
    CHECK_FALSE(queue.next_wakeup().has_value());
    CHECK(queue.counters().at(hook_id).in_flight == 2);
    CHECK(queue.counters().at(hook_id).queued == 3);

    queue.complete(2, delivered());
    CHECK(*queue.next_wakeup() == clock.now_ms());
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{3});
    CHECK(queue.take_due().empty());
}

TEST_CASE("queue drops a retry older than max_age")
{
    manual_clock clock(start_ms);
    retry_policy policy;
    policy.max_age = 1h;
    delivery_queue queue(policy, clock, 1);
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g", start_ms));
    queue.add(make_entry(2, "hook", integration_kind::webhook, "g", start_ms));

    REQUIRE(queue.take_due().size() == 1);
    clock.set_ms(start_ms + 3'600'000); // exactly max_age: still kept
    CHECK(queue.complete(1, server_error()).outcome == attempt_outcome::retry);

    clock.set_ms(start_ms + 3'600'000 + 300'000);
    REQUIRE(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1});
    auto done = queue.complete(1, server_error());
    CHECK(done.outcome == attempt_outcome::failed);
    CHECK(done.entry.last_error.find("max_age") != std::string::npos);
    const auto& c = queue.counters().at(hook_id);
    CHECK(c.dropped == 1);
    CHECK(c.failed == 0);
    CHECK(c.retried == 1);

    // A delivery that succeeds late still counts as sent.
    REQUIRE(ids_of(queue.take_due()) == std::vector<std::uint64_t>{2});
    CHECK(queue.complete(2, delivered()).outcome == attempt_outcome::delivered);
    CHECK(queue.counters().at(hook_id).sent == 1);
}

TEST_CASE("queue expire drops old entries")
{
    manual_clock clock(start_ms);
    retry_policy policy;
    policy.max_age = 1h;
    delivery_queue queue(policy, clock, 1);
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g1", start_ms - 2 * 3'600'000));
    queue.add(make_entry(2, "hook", integration_kind::webhook, "g2", start_ms));
    auto all = [](const std::string&) { return true; };
    auto dropped = queue.expire(all);
    CHECK(ids_of(dropped) == std::vector<std::uint64_t>{1});
    CHECK(queue.size() == 1);
    CHECK(queue.counters().at(hook_id).dropped == 1);
    CHECK(queue.counters().at(hook_id).queued == 1);
}

TEST_CASE("queue expire drops a removed integration")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "gone", integration_kind::webhook, "g", start_ms));
    queue.add(make_entry(2, "gone", integration_kind::webhook, "g", start_ms));
    queue.add(make_entry(3, "gone", integration_kind::webhook, "h", start_ms, start_ms + 60'000));
    queue.add(make_entry(4, "hook", integration_kind::webhook, "g", start_ms));
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1, 4});

    auto exists = [](const std::string& id) { return id != "gone/webhook/0"; };
    // Entry 1 is in flight and stays until its attempt completes.
    CHECK(ids_of(queue.expire(exists)) == std::vector<std::uint64_t>{2, 3});
    CHECK(queue.size() == 2);
    const auto& gone = queue.counters().at("gone/webhook/0");
    CHECK(gone.dropped == 2);
    CHECK(gone.queued == 0);
    CHECK(gone.in_flight == 1);

    queue.complete(1, server_error());
    CHECK(ids_of(queue.expire(exists)) == std::vector<std::uint64_t>{1});
    CHECK(queue.counters().at("gone/webhook/0").dropped == 3);
    CHECK(queue.size() == 1);
}

TEST_CASE("queue next wakeup")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    CHECK_FALSE(queue.next_wakeup().has_value());

    queue.add(make_entry(1, "hook", integration_kind::webhook, "g1", start_ms, start_ms + 30'000));
    queue.add(make_entry(2, "hook", integration_kind::webhook, "g2", start_ms, start_ms + 20'000));
    CHECK(queue.next_wakeup() == start_ms + 20'000);

    // A due time already passed (an entry loaded after a restart) means "now", never the past.
    queue.add(make_entry(3, "hook", integration_kind::webhook, "g3", start_ms - 60'000));
    CHECK(queue.next_wakeup() == start_ms);
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{3});
    CHECK(queue.next_wakeup() == start_ms + 20'000);

    clock.set_ms(start_ms + 40'000);
    CHECK(ids_of(queue.take_due()) == std::vector<std::uint64_t>{1, 2});
    // Everything in flight.
    CHECK_FALSE(queue.next_wakeup().has_value());
}

TEST_CASE("queue rejects completing an entry not in flight")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g", start_ms));
    CHECK_THROWS_AS(queue.complete(1, delivered()), std::logic_error);
    CHECK_THROWS_AS(queue.complete(99, delivered()), std::logic_error);
    REQUIRE(queue.take_due().size() == 1);
    queue.complete(1, delivered());
    CHECK_THROWS_AS(queue.complete(1, delivered()), std::logic_error);
}

TEST_CASE("queue ignores a second copy of an entry")
{
    manual_clock clock(start_ms);
    delivery_queue queue(retry_policy{}, clock, 1);
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g", start_ms));
    queue.add(make_entry(1, "hook", integration_kind::webhook, "g", start_ms));
    CHECK(queue.size() == 1);
    CHECK(queue.counters().at(hook_id).queued == 1);
}
