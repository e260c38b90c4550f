#include "support/fake_receivers.hpp"

#include <catch2/catch.hpp>
#include <httplib.h>

#include <chrono>
#include <regex>
#include <thread>

using tocsin::test::canned_response;
using tocsin::test::decode_slack_mrkdwn;
using tocsin::test::fake_receivers;
using tocsin::test::fake_receivers_options;
using tocsin::test::receiver_kind;
using json = nlohmann::json;

namespace {

const std::string routing_key = "0123456789abcdef0123456789abcdef";
const std::string webhook_path = "/services/T0001/B0001/abcdefghijklmnopqrstuvwx";
const std::string bot_token = "xoxb-111-222-token";

struct reply {
    int status = 0;
    std::string body;
    std::string content_type;
    std::string retry_after;
    json parsed() const { return json::parse(body); }
};

reply post(const fake_receivers& receivers, const std::string& path, const std::string& body,
           const std::string& content_type = "application/json", const httplib::Headers& headers = {})
{
    httplib::Client client("127.0.0.1", receivers.port());
    client.set_read_timeout(5, 0);
    auto result = client.Post(path.c_str(), headers, body, content_type.c_str());
    REQUIRE(result);
    return {result->status, result->body, result->get_header_value("Content-Type"),
            result->get_header_value("Retry-After")};
}

reply post_json(const fake_receivers& receivers, const std::string& path, const json& body,
                const httplib::Headers& headers = {})
{
    return post(receivers, path, body.dump(), "application/json", headers);
}

reply post_api(const fake_receivers& receivers, const std::string& method, const json& body,
               const std::string& token = bot_token)
{
    return post_json(receivers, "/api/" + method, body, {{"Authorization", "Bearer " + token}});
}

json trigger(const std::string& dedup_key = "grp-7f3a")
{
    json event = {{"routing_key", routing_key},
                  {"event_action", "trigger"},
                  {"payload", {{"summary", "disk full on db1"}, {"source", "db1"}, {"severity", "critical"}}}};
    if (!dedup_key.empty()) {
        event["dedup_key"] = dedup_key;
    }
    return event;
}

json action(const std::string& name, const std::string& dedup_key = "grp-7f3a",
            const std::string& key = routing_key)
{
    return {{"routing_key", key}, {"event_action", name}, {"dedup_key", dedup_key}};
}

// A string of `count` characters of which every other one is the two-byte "é".
std::string multibyte_text(std::size_t count)
{
    std::string text;
    for (std::size_t i = 0; i < count; ++i) {
        text += i % 2 == 0 ? "\xc3\xa9" : "x";
    }
    return text;
}

void require_pagerduty_rejected(const reply& r, const std::string& error_part)
{
    CHECK(r.status == 400);
    auto body = r.parsed();
    CHECK(body["status"] == "invalid event");
    CHECK(body["message"] == "Event object is invalid");
    REQUIRE(body["errors"].is_array());
    REQUIRE_FALSE(body["errors"].empty());
    CHECK_THAT(body["errors"].dump(), Catch::Contains(error_part));
}

json section(const std::string& text, const std::string& type = "mrkdwn")
{
    return {{"type", "section"}, {"text", {{"type", type}, {"text", text}}}};
}

json webhook_notification()
{
    json alert = {{"status", "firing"},
                  {"labels", {{"alertname", "DiskFull"}, {"instance", "db1"}}},
                  {"annotations", {{"summary", "disk full"}}},
                  {"startsAt", "2026-01-02T03:04:05.678Z"},
                  {"endsAt", "0001-01-01T00:00:00Z"},
                  {"generatorURL", "http://prometheus/graph"},
                  {"fingerprint", "0123456789abcdef"}};
    return {{"version", "4"},
            {"groupKey", "{}:{alertname=\"DiskFull\"}"},
            {"truncatedAlerts", 0},
            {"status", "firing"},
            {"receiver", "ops"},
            {"groupLabels", {{"alertname", "DiskFull"}}},
            {"commonLabels", {{"alertname", "DiskFull"}}},
            {"commonAnnotations", json::object()},
            {"externalURL", "http://tocsin:9093"},
            {"alerts", json::array({alert})}};
}

} // namespace

TEST_CASE("pagerduty accepts a trigger with 202 and its dedup_key")
{
    fake_receivers receivers;
    receivers.start();
    auto r = post_json(receivers, "/v2/enqueue", trigger());
    CHECK(r.status == 202);
    CHECK(r.parsed() == json{{"status", "success"}, {"message", "Event processed"}, {"dedup_key", "grp-7f3a"}});
    auto events = receivers.accepted(receiver_kind::pagerduty);
    REQUIRE(events.size() == 1);
    CHECK(events[0].body == trigger());
    CHECK(events[0].effect == "opened");
}

TEST_CASE("pagerduty generates a uuid dedup_key for a trigger without one")
{
    fake_receivers receivers;
    receivers.start();
    auto first = post_json(receivers, "/v2/enqueue", trigger(""));
    auto second = post_json(receivers, "/v2/enqueue", trigger(""));
    REQUIRE(first.status == 202);
    std::string key = first.parsed()["dedup_key"];
    CHECK(std::regex_match(key, std::regex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")));
    CHECK(second.parsed()["dedup_key"] != key);
    CHECK(receivers.pagerduty_alerts().size() == 2);
}

TEST_CASE("pagerduty rejects malformed json and wrong content type")
{
    fake_receivers receivers;
    receivers.start();
    require_pagerduty_rejected(post(receivers, "/v2/enqueue", "{\"routing_key\":"), "JSON parse error");
    require_pagerduty_rejected(post(receivers, "/v2/enqueue", trigger().dump(), "text/plain"), "Content-Type");
    require_pagerduty_rejected(post(receivers, "/v2/enqueue", "[1,2]"), "JSON object");
}

TEST_CASE("pagerduty accepts a charset parameter and a trailing newline")
{
    fake_receivers receivers;
    receivers.start();
    auto r = post(receivers, "/v2/enqueue", trigger().dump() + "\n", "application/json; charset=utf-8");
    CHECK(r.status == 202);
}

TEST_CASE("pagerduty checks the routing_key length")
{
    fake_receivers receivers;
    receivers.start();
    auto event = trigger();
    event["routing_key"] = routing_key.substr(1);
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event),
                               "Length of 'routing_key' is incorrect (should be 32 characters)");
    event["routing_key"] = routing_key + "0";
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "should be 32 characters");
    event.erase("routing_key");
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "'routing_key' is missing");
    CHECK(receivers.accepted(receiver_kind::pagerduty).empty());
}

TEST_CASE("pagerduty accepts only the configured routing key")
{
    fake_receivers_options options;
    options.pagerduty_routing_key = routing_key;
    fake_receivers receivers(options);
    receivers.start();
    CHECK(post_json(receivers, "/v2/enqueue", trigger()).status == 202);
    auto event = trigger();
    event["routing_key"] = std::string(32, 'f');
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "Invalid routing key");
}

TEST_CASE("pagerduty checks event_action")
{
    fake_receivers receivers;
    receivers.start();
    auto event = trigger();
    event["event_action"] = "Trigger";
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "'event_action' is invalid");
    event.erase("event_action");
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "'event_action' is missing");
}

TEST_CASE("pagerduty requires payload fields on trigger")
{
    fake_receivers receivers;
    receivers.start();
    auto event = trigger();
    event.erase("payload");
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "'payload' is missing");
    for (const char* field : {"summary", "source", "severity"}) {
        auto partial = trigger();
        partial["payload"].erase(field);
        require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", partial),
                                   std::string("'payload.") + field + "' is missing");
    }
}

TEST_CASE("pagerduty severity is a lower-case enum")
{
    fake_receivers receivers;
    receivers.start();
    for (const char* severity : {"critical", "error", "warning", "info"}) {
        auto event = trigger();
        event["payload"]["severity"] = severity;
        CHECK(post_json(receivers, "/v2/enqueue", event).status == 202);
    }
    for (const char* severity : {"Critical", "page", ""}) {
        auto event = trigger();
        event["payload"]["severity"] = severity;
        require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "'payload.severity' is invalid");
    }
}

TEST_CASE("pagerduty summary limit counts characters")
{
    fake_receivers receivers;
    receivers.start();
    auto event = trigger();
    event["payload"]["summary"] = multibyte_text(1024);
    REQUIRE(event["payload"]["summary"].get<std::string>().size() == 1536);
    CHECK(post_json(receivers, "/v2/enqueue", event).status == 202);

    event["payload"]["summary"] = multibyte_text(1025);
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "1025 characters");

    std::string raw = R"({"routing_key":")" + routing_key +
                      R"(","event_action":"trigger","payload":{"summary":"bad )" + std::string("\xff\xfe") +
                      R"(","source":"db1","severity":"info"}})";
    require_pagerduty_rejected(post(receivers, "/v2/enqueue", raw), "JSON parse error");
}

TEST_CASE("pagerduty over-limit values pass when rejection is off")
{
    fake_receivers_options options;
    options.pagerduty_reject_over_limit = false;
    fake_receivers receivers(options);
    receivers.start();
    auto event = trigger(std::string(300, 'k'));
    event["payload"]["summary"] = std::string(2000, 's');
    CHECK(post_json(receivers, "/v2/enqueue", event).status == 202);
}

TEST_CASE("pagerduty dedup_key limit is 255 characters")
{
    fake_receivers receivers;
    receivers.start();
    CHECK(post_json(receivers, "/v2/enqueue", trigger(multibyte_text(255))).status == 202);
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", trigger(multibyte_text(256))),
                               "'dedup_key' is 256 characters");
}

TEST_CASE("pagerduty body limit is 512000 bytes")
{
    fake_receivers receivers;
    receivers.start();
    auto event = trigger();
    event["payload"]["custom_details"] = {{"pad", ""}};
    std::size_t base = event.dump().size();
    event["payload"]["custom_details"]["pad"] = std::string(512000 - base, 'p');
    REQUIRE(event.dump().size() == 512000);
    CHECK(post_json(receivers, "/v2/enqueue", event).status == 202);

    event["payload"]["custom_details"]["pad"] = std::string(512001 - base, 'p');
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "too large");
}

TEST_CASE("pagerduty ack and resolve need a dedup_key but no payload")
{
    fake_receivers receivers;
    receivers.start();
    CHECK(post_json(receivers, "/v2/enqueue", trigger()).status == 202);
    CHECK(post_json(receivers, "/v2/enqueue", action("acknowledge")).status == 202);
    auto resolve = action("resolve");
    resolve["payload"] = trigger()["payload"];
    CHECK(post_json(receivers, "/v2/enqueue", resolve).status == 202);

    auto missing = action("resolve");
    missing.erase("dedup_key");
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", missing), "'dedup_key' is missing");
    missing["event_action"] = "acknowledge";
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", missing), "'dedup_key' is missing");
}

TEST_CASE("pagerduty checks images, links and timestamps")
{
    fake_receivers receivers;
    receivers.start();
    auto event = trigger();
    event["images"] = json::array();
    event["links"] = json::array();
    event["payload"]["custom_details"] = {{"nested", {{"list", {1, 2, {{"deep", true}}}}}}};
    event["unknown_field"] = "tolerated";
    for (const char* timestamp : {"2015-07-17T08:42:58.315+0000", "2026-01-02T03:04:05Z",
                                  "2026-01-02T03:04:05.678+01:00"}) {
        event["payload"]["timestamp"] = timestamp;
        CHECK(post_json(receivers, "/v2/enqueue", event).status == 202);
    }
    event["payload"]["timestamp"] = "yesterday";
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", event), "'payload.timestamp'");
    event["payload"].erase("timestamp");

    event["images"] = json::array({{{"src", "https://grafana/x.png"}, {"alt", "graph"}}});
    event["links"] = json::array({{{"href", "https://runbooks/disk"}, {"text", "runbook"}}});
    CHECK(post_json(receivers, "/v2/enqueue", event).status == 202);

    auto http_image = event;
    http_image["images"][0]["src"] = "http://grafana/x.png";
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", http_image), "https URL");
    auto no_href = event;
    no_href["links"][0].erase("href");
    require_pagerduty_rejected(post_json(receivers, "/v2/enqueue", no_href), "'links[0].href' is missing");
}

TEST_CASE("pagerduty tracks alerts per routing and dedup key")
{
    fake_receivers receivers;
    receivers.start();
    const std::string other_key(32, 'a');
    post_json(receivers, "/v2/enqueue", trigger());
    post_json(receivers, "/v2/enqueue", trigger());
    REQUIRE(receivers.open_pagerduty_alert(routing_key, "grp-7f3a"));
    CHECK(receivers.open_pagerduty_alert(routing_key, "grp-7f3a")->trigger_count == 2);

    // Resolve through another routing key is dropped.
    CHECK(post_json(receivers, "/v2/enqueue", action("resolve", "grp-7f3a", other_key)).status == 202);
    CHECK(receivers.open_pagerduty_alert(routing_key, "grp-7f3a"));

    post_json(receivers, "/v2/enqueue", action("acknowledge"));
    CHECK(receivers.open_pagerduty_alert(routing_key, "grp-7f3a")->acknowledged);
    post_json(receivers, "/v2/enqueue", action("resolve"));
    CHECK_FALSE(receivers.open_pagerduty_alert(routing_key, "grp-7f3a"));

    // Acknowledge after resolve is dropped, and a new trigger opens a new alert.
    post_json(receivers, "/v2/enqueue", action("acknowledge"));
    post_json(receivers, "/v2/enqueue", trigger());
    auto reopened = receivers.open_pagerduty_alert(routing_key, "grp-7f3a");
    REQUIRE(reopened);
    CHECK_FALSE(reopened->acknowledged);
    CHECK(receivers.pagerduty_alerts().size() == 2);

    std::vector<std::string> effects;
    for (const auto& event : receivers.accepted(receiver_kind::pagerduty)) {
        effects.push_back(event.effect);
    }
    CHECK(effects == std::vector<std::string>{"opened", "updated", "dropped", "acknowledged", "resolved",
                                              "dropped", "opened"});
}

TEST_CASE("requests record rejections and arrival times")
{
    tocsin::manual_clock clock(5000);
    fake_receivers_options options;
    options.clock = &clock;
    fake_receivers receivers(options);
    receivers.start();
    auto event = trigger();
    event["payload"]["severity"] = "Critical";
    post_json(receivers, "/v2/enqueue", event);
    clock.advance_ms(250);
    post_json(receivers, "/v2/enqueue", trigger());

    auto requests = receivers.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].status == 400);
    CHECK_FALSE(requests[0].accepted);
    CHECK_THAT(requests[0].reason, Catch::Contains("severity"));
    CHECK(requests[0].arrival_ms == 5000);
    CHECK(requests[0].headers.at("content-type") == "application/json");
    CHECK(requests[1].accepted);
    CHECK(requests[1].reason.empty());
    CHECK(requests[1].arrival_ms == 5250);
    CHECK(receivers.accepted(receiver_kind::pagerduty).at(0).arrival_ms == 5250);
}

TEST_CASE("slack webhook accepts json and form bodies")
{
    fake_receivers receivers;
    receivers.start();
    auto r = post_json(receivers, webhook_path, {{"text", "disk full"}});
    CHECK(r.status == 200);
    CHECK(r.body == "ok");
    CHECK_THAT(r.content_type, Catch::StartsWith("text/plain"));

    auto form = post(receivers, webhook_path, "payload=%7B%22text%22%3A%22a+b%22%7D",
                     "application/x-www-form-urlencoded");
    CHECK(form.status == 200);
    auto messages = receivers.accepted(receiver_kind::slack);
    REQUIRE(messages.size() == 2);
    CHECK(messages[1].body == json{{"text", "a b"}});

    CHECK(post(receivers, webhook_path, "text=hi", "application/x-www-form-urlencoded").body == "invalid_payload");
    CHECK(post(receivers, webhook_path, "{\"text\":", "application/json").body == "invalid_payload");
    auto plain = post(receivers, webhook_path, R"({"text":"hi"})", "text/plain");
    CHECK(plain.status == 400);
    CHECK(plain.body == "invalid_payload");
}

TEST_CASE("slack webhook accepts alertmanager's attachment")
{
    fake_receivers receivers;
    receivers.start();
    json attachment = {{"title", "[FIRING:1] DiskFull db"}, {"text", ""}, {"fallback", ""}, {"callback_id", ""},
                       {"footer", ""}, {"color", "danger"}, {"mrkdwn_in", {"fallback", "pretext", "text"}}};
    json message = {{"username", "Alertmanager"}, {"channel", "#ops"}, {"attachments", json::array({attachment})}};
    CHECK(post_json(receivers, webhook_path, message).status == 200);
}

TEST_CASE("slack webhook unknown and revoked paths")
{
    fake_receivers receivers;
    receivers.add_slack_webhook(webhook_path);
    receivers.revoke_slack_webhook("/services/T0001/B0002/revokedrevokedrevokedrev");
    receivers.add_slack_webhook("/services/T0001/B0002/revokedrevokedrevokedrev");
    receivers.start();
    auto unknown = post_json(receivers, "/services/T0001/B0001/other", {{"text", "x"}});
    CHECK(unknown.status == 404);
    CHECK(unknown.body == "no_service");
    auto short_path = post_json(receivers, "/services/T0001/B0001", {{"text", "x"}});
    CHECK(short_path.status == 404);
    auto revoked = post_json(receivers, "/services/T0001/B0002/revokedrevokedrevokedrev", {{"text", "x"}});
    CHECK(revoked.status == 400);
    CHECK(revoked.body == "invalid_token");
    CHECK(post_json(receivers, webhook_path, {{"text", "x"}}).status == 200);
}

TEST_CASE("slack rejects a message without content")
{
    fake_receivers receivers;
    receivers.start();
    for (const json& message : {json::object(), json{{"text", ""}}, json{{"blocks", json::array()}},
                                json{{"attachments", json::array()}, {"channel", "#ops"}}}) {
        auto r = post_json(receivers, webhook_path, message);
        CHECK(r.status == 400);
        CHECK(r.body == "no_text");
    }
    CHECK(receivers.accepted(receiver_kind::slack).empty());
}

TEST_CASE("slack block limits")
{
    fake_receivers receivers;
    receivers.start();
    auto check = [&](const json& blocks, bool valid) {
        auto r = post_json(receivers, webhook_path, {{"text", "fallback"}, {"blocks", blocks}});
        INFO(blocks.dump().substr(0, 200));
        CHECK(r.status == (valid ? 200 : 400));
        CHECK(r.body == (valid ? "ok" : "invalid_blocks"));
    };

    json fifty = json::array();
    for (int i = 0; i < 50; ++i) {
        fifty.push_back({{"type", "divider"}});
    }
    check(fifty, true);
    fifty.push_back({{"type", "divider"}});
    check(fifty, false);

    check(json::array({section(multibyte_text(3000))}), true);
    check(json::array({section(multibyte_text(3001))}), false);
    check(json::array({section("")}), false);
    check(json::array({section("", "plain_text")}), false);

    json header = {{"type", "header"}, {"text", {{"type", "plain_text"}, {"text", multibyte_text(150)}}}};
    check(json::array({header}), true);
    header["text"]["text"] = multibyte_text(151);
    check(json::array({header}), false);
    header["text"] = {{"type", "mrkdwn"}, {"text", "*bold*"}};
    check(json::array({header}), false);

    json fields = json::array();
    for (int i = 0; i < 10; ++i) {
        fields.push_back({{"type", "mrkdwn"}, {"text", "*field*"}});
    }
    check(json::array({{{"type", "section"}, {"fields", fields}}}), true);
    fields.push_back({{"type", "mrkdwn"}, {"text", "*field*"}});
    check(json::array({{{"type", "section"}, {"fields", fields}}}), false);

    json elements = json::array();
    for (int i = 0; i < 10; ++i) {
        elements.push_back({{"type", "mrkdwn"}, {"text", "ctx"}});
    }
    check(json::array({{{"type", "context"}, {"elements", elements}}}), true);
    elements.push_back({{"type", "mrkdwn"}, {"text", "ctx"}});
    check(json::array({{{"type", "context"}, {"elements", elements}}}), false);

    json buttons = json::array();
    for (int i = 0; i < 25; ++i) {
        buttons.push_back({{"type", "button"}, {"text", {{"type", "plain_text"}, {"text", "b"}}}, {"url", "https://x"}});
    }
    check(json::array({{{"type", "actions"}, {"elements", buttons}}}), true);
    buttons.push_back(buttons[0]);
    check(json::array({{{"type", "actions"}, {"elements", buttons}}}), false);
}

TEST_CASE("slack text and attachment limits")
{
    fake_receivers receivers;
    receivers.start();
    CHECK(post_json(receivers, webhook_path, {{"text", multibyte_text(40000)}}).status == 200);
    auto long_text = post_json(receivers, webhook_path, {{"text", multibyte_text(40001)}});
    CHECK(long_text.status == 400);
    CHECK(long_text.body == "msg_too_long");

    json attachments = json::array();
    for (int i = 0; i < 100; ++i) {
        attachments.push_back({{"text", "a"}});
    }
    CHECK(post_json(receivers, webhook_path, {{"attachments", attachments}}).status == 200);
    attachments.push_back({{"text", "a"}});
    auto too_many = post_json(receivers, webhook_path, {{"attachments", attachments}});
    CHECK(too_many.status == 400);
    CHECK(too_many.body == "too_many_attachments");
}

TEST_CASE("slack rate limit answers 429 with Retry-After")
{
    tocsin::manual_clock clock(0);
    fake_receivers_options options;
    options.clock = &clock;
    options.slack_rate_limit = true;
    fake_receivers receivers(options);
    receivers.start();
    CHECK(post_json(receivers, webhook_path, {{"text", "one"}}).status == 200);
    auto limited = post_json(receivers, webhook_path, {{"text", "two"}});
    CHECK(limited.status == 429);
    CHECK(limited.retry_after == "1");
    // Another webhook has its own budget.
    CHECK(post_json(receivers, "/services/T0001/B0009/zzzzzzzzzzzzzzzzzzzzzzzz", {{"text", "x"}}).status == 200);
    clock.advance_ms(999);
    CHECK(post_json(receivers, webhook_path, {{"text", "three"}}).status == 429);
    clock.advance_ms(1);
    CHECK(post_json(receivers, webhook_path, {{"text", "four"}}).status == 200);
    CHECK(receivers.accepted(receiver_kind::slack).size() == 3);
}

TEST_CASE("slack api checks the bot token")
{
    fake_receivers_options options;
    options.slack_token = bot_token;
    fake_receivers receivers(options);
    receivers.start();
    json message = {{"channel", "#ops"}, {"text", "disk full"}};
    auto wrong = post_api(receivers, "chat.postMessage", message, "xoxb-wrong");
    CHECK(wrong.status == 200);
    CHECK(wrong.parsed() == json{{"ok", false}, {"error", "invalid_auth"}});
    auto missing = post_json(receivers, "/api/chat.postMessage", message);
    CHECK(missing.parsed()["error"] == "not_authed");
    CHECK(receivers.slack_messages().empty());
}

TEST_CASE("slack api postMessage returns channel id and increasing ts")
{
    fake_receivers_options options;
    options.slack_token = bot_token;
    fake_receivers receivers(options);
    receivers.start();
    std::string previous;
    for (int i = 0; i < 3; ++i) {
        auto r = post_api(receivers, "chat.postMessage", {{"channel", "#ops"}, {"text", "disk full"}});
        auto body = r.parsed();
        CHECK(body["ok"] == true);
        CHECK(body["channel"] == "C0123456789");
        std::string ts = body["ts"];
        CHECK(std::regex_match(ts, std::regex(R"(^\d+\.\d{6}$)")));
        CHECK(ts > previous);
        previous = ts;
    }
    auto by_id = post_api(receivers, "chat.postMessage", {{"channel", "C0123456789"}, {"text", "x"}});
    CHECK(by_id.parsed()["channel"] == "C0123456789");
    auto other = post_api(receivers, "chat.postMessage", {{"channel", "dev"}, {"text", "x"}});
    CHECK(other.parsed()["channel"] == "C0123456790");
    auto unknown_id = post_api(receivers, "chat.postMessage", {{"channel", "C9999999999"}, {"text", "x"}});
    CHECK(unknown_id.parsed()["error"] == "channel_not_found");
    auto empty = post_api(receivers, "chat.postMessage", {{"channel", "#ops"}});
    CHECK(empty.parsed()["error"] == "no_text");
}

TEST_CASE("slack api thread_ts must name an existing parent")
{
    fake_receivers_options options;
    options.slack_token = bot_token;
    fake_receivers receivers(options);
    receivers.start();
    std::string parent = post_api(receivers, "chat.postMessage", {{"channel", "#ops"}, {"text", "p"}}).parsed()["ts"];
    auto reply = post_api(receivers, "chat.postMessage", {{"channel", "#ops"}, {"text", "r"}, {"thread_ts", parent}});
    REQUIRE(reply.parsed()["ok"] == true);
    std::string reply_ts = reply.parsed()["ts"];
    CHECK(receivers.find_slack_message(reply_ts)->thread_ts == parent);

    auto to_reply = post_api(receivers, "chat.postMessage", {{"channel", "#ops"}, {"text", "r"}, {"thread_ts", reply_ts}});
    CHECK(to_reply.parsed()["error"] == "thread_not_found");
    auto unknown = post_api(receivers, "chat.postMessage", {{"channel", "#ops"}, {"text", "r"}, {"thread_ts", "1.000001"}});
    CHECK(unknown.parsed()["error"] == "thread_not_found");
    auto other_channel = post_api(receivers, "chat.postMessage", {{"channel", "#dev"}, {"text", "r"}, {"thread_ts", parent}});
    CHECK(other_channel.parsed()["error"] == "thread_not_found");
    auto as_number = post_api(receivers, "chat.postMessage",
                              {{"channel", "#ops"}, {"text", "r"}, {"thread_ts", std::stod(parent)}});
    CHECK(as_number.parsed()["error"] == "invalid_arguments");
    CHECK(receivers.slack_messages().size() == 2);
}

TEST_CASE("slack api chat.update replaces an existing message")
{
    fake_receivers_options options;
    options.slack_token = bot_token;
    fake_receivers receivers(options);
    receivers.start();
    auto posted = post_api(receivers, "chat.postMessage", {{"channel", "#ops"}, {"text", "firing"}}).parsed();
    std::string ts = posted["ts"];
    std::string channel = posted["channel"];

    auto updated = post_api(receivers, "chat.update", {{"channel", channel}, {"ts", ts}, {"text", "resolved"}});
    CHECK(updated.parsed()["ok"] == true);
    CHECK(updated.parsed()["ts"] == ts);
    auto stored = receivers.find_slack_message(ts);
    REQUIRE(stored);
    CHECK(stored->content["text"] == "resolved");
    CHECK(stored->edit_count == 1);
    CHECK(receivers.slack_messages().size() == 1);

    auto by_name = post_api(receivers, "chat.update", {{"channel", "#ops"}, {"ts", ts}, {"text", "x"}});
    CHECK(by_name.parsed()["error"] == "channel_not_found");
    auto unknown_ts = post_api(receivers, "chat.update", {{"channel", channel}, {"ts", "1.000001"}, {"text", "x"}});
    CHECK(unknown_ts.parsed()["error"] == "message_not_found");
    auto no_ts = post_api(receivers, "chat.update", {{"channel", channel}, {"text", "x"}});
    CHECK(no_ts.parsed()["error"] == "message_not_found");
    auto empty = post_api(receivers, "chat.update", {{"channel", channel}, {"ts", ts}, {"text", ""}});
    CHECK(empty.parsed()["error"] == "no_text");
    CHECK(receivers.find_slack_message(ts)->content["text"] == "resolved");
}

TEST_CASE("slack api accepts form arguments")
{
    fake_receivers_options options;
    options.slack_token = bot_token;
    fake_receivers receivers(options);
    receivers.start();
    auto r = post(receivers, "/api/chat.postMessage",
                  "token=" + bot_token + "&channel=%23ops&blocks=%5B%7B%22type%22%3A%22divider%22%7D%5D",
                  "application/x-www-form-urlencoded");
    CHECK(r.parsed()["ok"] == true);
    auto stored = receivers.slack_messages();
    REQUIRE(stored.size() == 1);
    CHECK(stored[0].content["blocks"][0]["type"] == "divider");
}

TEST_CASE("scripted answers come before normal handling")
{
    fake_receivers receivers;
    receivers.start();
    receivers.fail_next(receiver_kind::pagerduty, 1, 429, 30);
    receivers.script(receiver_kind::pagerduty, canned_response{503, {}, "unavailable", "text/plain", {}});
    CHECK(receivers.scripted_left(receiver_kind::pagerduty) == 2);

    auto limited = post_json(receivers, "/v2/enqueue", trigger());
    CHECK(limited.status == 429);
    CHECK(limited.retry_after == "30");
    auto unavailable = post_json(receivers, "/v2/enqueue", trigger());
    CHECK(unavailable.status == 503);
    CHECK(unavailable.body == "unavailable");
    CHECK(post_json(receivers, "/v2/enqueue", trigger()).status == 202);

    // A script for one endpoint leaves the others alone.
    receivers.fail_next(receiver_kind::slack, 1, 500);
    CHECK(post_json(receivers, "/webhook/ops", webhook_notification()).status == 200);
    CHECK(post_json(receivers, webhook_path, {{"text", "x"}}).status == 500);

    auto requests = receivers.requests(receiver_kind::pagerduty);
    REQUIRE(requests.size() == 3);
    CHECK(requests[0].scripted);
    CHECK_FALSE(requests[0].accepted);
    CHECK(requests[2].accepted);
    CHECK(receivers.accepted(receiver_kind::pagerduty).size() == 1);
}

TEST_CASE("hang holds the request for its duration")
{
    fake_receivers receivers;
    receivers.start();
    receivers.script(receiver_kind::slack, canned_response{504, {}, "late", "text/plain", std::chrono::milliseconds(50)});
    auto r = post_json(receivers, webhook_path, {{"text", "x"}});
    CHECK(r.status == 504);
    CHECK(r.body == "late");
}

TEST_CASE("hang outlasts a client timeout and ends at stop")
{
    fake_receivers receivers;
    receivers.start();
    receivers.script(receiver_kind::pagerduty,
                     canned_response{503, {}, "", "text/plain", tocsin::test::hang_until_stop});
    httplib::Client client("127.0.0.1", receivers.port());
    client.set_read_timeout(0, 200000);
    auto result = client.Post("/v2/enqueue", trigger().dump(), "application/json");
    CHECK_FALSE(result);
    CHECK(result.error() == httplib::Error::Read);
    CHECK(receivers.hanging() == 1);

    auto before = std::chrono::steady_clock::now();
    receivers.stop();
    CHECK(std::chrono::steady_clock::now() - before < std::chrono::seconds(3));
    CHECK(receivers.hanging() == 0);
}

TEST_CASE("generic webhook validates the alertmanager format")
{
    fake_receivers receivers;
    receivers.start();
    CHECK(post_json(receivers, "/webhook/ops", webhook_notification()).status == 200);
    auto events = receivers.accepted(receiver_kind::webhook);
    REQUIRE(events.size() == 1);
    CHECK(events[0].path == "/webhook/ops");

    auto check_rejected = [&](json notification, const std::string& reason) {
        auto r = post_json(receivers, "/webhook/ops", notification);
        CHECK(r.status == 400);
        CHECK_THAT(r.body, Catch::Contains(reason));
    };
    auto bad = webhook_notification();
    bad["version"] = 4;
    check_rejected(bad, "version");
    bad = webhook_notification();
    bad["alerts"][0].erase("fingerprint");
    check_rejected(bad, "alerts[0].fingerprint");
    bad = webhook_notification();
    bad["alerts"][0]["startsAt"] = "2026-01-02 03:04:05";
    check_rejected(bad, "alerts[0].startsAt");
    bad = webhook_notification();
    bad["status"] = "resolved";
    check_rejected(bad, "an alert is firing");
    bad = webhook_notification();
    bad["commonLabels"]["count"] = 3;
    check_rejected(bad, "commonLabels.count");
    bad = webhook_notification();
    bad.erase("truncatedAlerts");
    check_rejected(bad, "truncatedAlerts");
    bad = webhook_notification();
    bad["alerts"] = json::array();
    check_rejected(bad, "alerts must be");
    CHECK(receivers.accepted(receiver_kind::webhook).size() == 1);
}

TEST_CASE("mrkdwn decoder unescapes exactly once")
{
    CHECK(decode_slack_mrkdwn("a &lt; b &amp;&amp; c &gt; d").displayed == "a < b && c > d");
    // Double escaping shows the entity to the reader.
    CHECK(decode_slack_mrkdwn("a &amp;lt; b").displayed == "a &lt; b");
    // Only three entities exist in Slack.
    CHECK(decode_slack_mrkdwn("it&#39;s &quot;x&quot;").displayed == "it&#39;s &quot;x&quot;");
}

TEST_CASE("mrkdwn decoder parses links and mentions")
{
    auto link = decode_slack_mrkdwn("see <https://grafana/d?a=1&amp;b=2|the dash &amp; more> now");
    CHECK(link.displayed == "see the dash & more now");
    REQUIRE(link.links.size() == 1);
    CHECK(link.links[0].url == "https://grafana/d?a=1&b=2");
    CHECK(link.links[0].label == "the dash & more");
    CHECK(decode_slack_mrkdwn("<https://x>").displayed == "https://x");

    auto injected = decode_slack_mrkdwn("disk full <!channel> on <@U123> in <#C42|ops>");
    CHECK(injected.mentions == std::vector<std::string>{"channel", "@U123"});
    CHECK(injected.channels == std::vector<std::string>{"C42"});
    CHECK(injected.displayed == "disk full @channel on @U123 in #ops");

    auto escaped = decode_slack_mrkdwn("disk full &lt;!channel&gt;");
    CHECK(escaped.mentions.empty());
    CHECK(escaped.displayed == "disk full <!channel>");
}

TEST_CASE("mrkdwn strings of a message")
{
    json message = {{"text", "top"},
                    {"blocks", {section("sec"), section("plain", "plain_text")}},
                    {"attachments", json::array({{{"text", "att"}, {"fields", json::array({{{"title", "t"}, {"value", "val"}}})}}})}};
    auto strings = tocsin::test::slack_mrkdwn_strings(message);
    CHECK(strings == std::vector<std::string>{"top", "sec", "att", "val"});
}

TEST_CASE("count code points rejects invalid utf-8")
{
    CHECK(tocsin::test::count_code_points("h\xc3\xa9\xe2\x80\xa6\xf0\x9f\x94\xa5") == 4u);
    CHECK_FALSE(tocsin::test::count_code_points("\xc3"));
    CHECK_FALSE(tocsin::test::count_code_points("\xc0\xaf"));
    CHECK_FALSE(tocsin::test::count_code_points("\xed\xa0\x80"));
}
