// PagerDuty change events: the body, the change URL the sender derives, the stand-in's checks of
// POST /v2/change/enqueue, and a send through the real sender to the stand-in.

#include <catch2/catch.hpp>

#include <httplib.h>

#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "notifiers/payload.hpp"
#include "notifiers/sender.hpp"
#include "support/fake_receivers.hpp"

using namespace tocsin;
using nlohmann::json;
using tocsin::test::fake_receivers;
using tocsin::test::receiver_kind;

namespace {

const std::string routing_key = "0123456789abcdef0123456789abcdef";
const integration_ref pd_ref{"ml-oncall", integration_kind::pagerduty, 0};

std::size_t code_points(std::string_view s)
{
    std::size_t count = 0;
    for (unsigned char c : s) {
        count += (c & 0xc0) != 0x80 ? 1 : 0;
    }
    return count;
}

change_event rollback_event()
{
    change_event e;
    e.summary = "model-rollback r1a2b3c4d5e6f7a8b: succeeded";
    e.source = "tocsind@ml-host-1";
    e.timestamp = 1'700'000'000'123; // 2023-11-14T22:13:20.123Z
    e.custom_details = {{"runbook", "model-rollback"}, {"run", "r1a2b3c4d5e6f7a8b"}, {"steps", {"stop-canary", "rollback-model"}}};
    e.links = {{"http://tocsin.example:9093/api/v1/runbooks/runs/r1a2b3c4d5e6f7a8b", "Run"}};
    return e;
}

// The stored body as the sender sends it: the routing key added as the first member.
json with_routing_key(const std::string& body, const std::string& key = routing_key)
{
    json event = json::parse(body);
    event["routing_key"] = key;
    return event;
}

// A valid change event as the real service takes it.
json good_change()
{
    return {{"routing_key", routing_key},
            {"payload",
             {{"summary", "model-rollback r1: succeeded"},
              {"timestamp", "2023-11-14T22:13:20.123Z"},
              {"source", "tocsind"},
              {"custom_details", {{"run", "r1"}}}}},
            {"links", {{{"href", "https://tocsin.example/runs/r1"}, {"text", "Run"}}}}};
}

struct reply {
    int status = 0;
    json body;
};

reply post_change(const fake_receivers& receivers, const std::string& body)
{
    httplib::Client client("127.0.0.1", receivers.port());
    client.set_read_timeout(5, 0);
    auto result = client.Post("/v2/change/enqueue", body, "application/json");
    REQUIRE(result);
    return {result->status, json::parse(result->body, nullptr, false)};
}

// Sends one entry and runs the io_context until its callback has run.
attempt_result send_one(boost::asio::io_context& io, http_sender& sender, const outbox_entry& entry,
                        const send_target& target)
{
    std::optional<attempt_result> result;
    int calls = 0;
    sender.send(entry, target, [&](attempt_result r) {
        ++calls;
        result = std::move(r);
    });
    io.restart();
    io.run();
    REQUIRE(calls == 1);
    return *result;
}

} // namespace

TEST_CASE("change event body omits alert fields")
{
    const outbound_message m = build_pagerduty_change_event(pd_ref, rollback_event());
    CHECK(m.integration == pd_ref);
    CHECK(m.dedup_key.empty());
    CHECK(m.group_key.empty());
    CHECK_FALSE(m.resolved);
    CHECK(m.alert_count == 0);

    const json body = json::parse(m.body);
    CHECK_FALSE(body.contains("routing_key"));
    CHECK_FALSE(body.contains("event_action"));
    CHECK_FALSE(body.contains("dedup_key"));
    CHECK_FALSE(body.contains("client"));
    const json& payload = body["payload"];
    CHECK(payload["summary"] == "model-rollback r1a2b3c4d5e6f7a8b: succeeded");
    CHECK(payload["timestamp"] == "2023-11-14T22:13:20.123Z");
    CHECK(payload["source"] == "tocsind@ml-host-1");
    CHECK(payload["custom_details"]["runbook"] == "model-rollback");
    CHECK(payload["custom_details"]["steps"] == json{"stop-canary", "rollback-model"});
    CHECK_FALSE(payload.contains("severity"));
    REQUIRE(body["links"].size() == 1);
    CHECK(body["links"][0] ==
          json{{"href", "http://tocsin.example:9093/api/v1/runbooks/runs/r1a2b3c4d5e6f7a8b"}, {"text", "Run"}});
    CHECK(test::validate_pagerduty_change_event(with_routing_key(m.body)).empty());
}

TEST_CASE("change event leaves out empty optional fields")
{
    change_event e;
    e.summary = "restarted model-api";
    e.links = {{"  ", "no target"}, {"https://tocsin.example/x", ""}};
    const json body = json::parse(build_pagerduty_change_event(pd_ref, e).body);
    CHECK(body["payload"] == json{{"summary", "restarted model-api"}});
    CHECK(body["links"] == json::array({{{"href", "https://tocsin.example/x"}}}));

    e.links.clear();
    e.summary = " \n ";
    e.custom_details = "not an object";
    const json blank = json::parse(build_pagerduty_change_event(pd_ref, e).body);
    CHECK_FALSE(blank.contains("links"));
    CHECK(blank["payload"]["summary"] == "tocsin change event");
    CHECK(blank["payload"]["custom_details"] == json{{"value", "not an object"}});
    CHECK(test::validate_pagerduty_change_event(with_routing_key(build_pagerduty_change_event(pd_ref, e).body))
              .empty());
}

TEST_CASE("change event summary is cut to 1024 code points")
{
    std::string text;
    while (code_points(text) < 1500) {
        text += "r\u00e9\u78c1\U0001f525 ";
    }
    change_event e;
    e.summary = text;
    const outbound_message m = build_pagerduty_change_event(pd_ref, e);
    const std::string summary = json::parse(m.body)["payload"]["summary"];
    CHECK(code_points(summary) == 1024);
    CHECK(summary.ends_with("\u2026"));
    CHECK(summary.substr(0, summary.size() - 3) == text.substr(0, summary.size() - 3));
    CHECK(test::validate_pagerduty_change_event(with_routing_key(m.body)).empty());
}

TEST_CASE("change event trims largest details first")
{
    change_event e;
    e.summary = "big";
    e.custom_details = {{"small", "kept"}, {"log", std::string(400'000, 'x')}, {"trace", std::string(300'000, 'y')}};
    e.links = {{"https://tocsin.example/x", "X"}};
    const outbound_message m = build_pagerduty_change_event(pd_ref, e);
    CHECK(m.body.size() <= 512000 - 100);
    const json body = json::parse(m.body);
    const json& details = body["payload"]["custom_details"];
    CHECK_FALSE(details.contains("log"));
    CHECK(details.contains("trace"));
    CHECK(details["small"] == "kept");
    CHECK(details["omitted"].get<std::string>().starts_with("1 of the custom details left out"));
    CHECK(body.contains("links"));
    CHECK(test::validate_pagerduty_change_event(with_routing_key(m.body)).empty());

    // Links and a huge source go too when nothing else is left to take out.
    change_event huge;
    huge.summary = "huge";
    huge.source = std::string(600'000, 's');
    huge.links = {{"https://tocsin.example/" + std::string(100, 'l'), "L"}};
    const outbound_message cut = build_pagerduty_change_event(pd_ref, huge);
    CHECK(cut.body.size() <= 512000 - 100);
    const json cut_body = json::parse(cut.body);
    CHECK_FALSE(cut_body.contains("links"));
    CHECK(code_points(cut_body["payload"]["source"].get<std::string>()) == 1024);
}

TEST_CASE("pagerduty_change_url rewrites enqueue URLs")
{
    CHECK(pagerduty_change_url("https://events.pagerduty.com/v2/enqueue") ==
          "https://events.pagerduty.com/v2/change/enqueue");
    CHECK(pagerduty_change_url("http://127.0.0.1:8080/v2/enqueue") == "http://127.0.0.1:8080/v2/change/enqueue");
    CHECK(pagerduty_change_url("https://proxy.example/pd/v2/enqueue") ==
          "https://proxy.example/pd/v2/change/enqueue");
    CHECK(pagerduty_change_url("https://events.eu.pagerduty.com/v2/enqueue\n") ==
          "https://events.eu.pagerduty.com/v2/change/enqueue");
    CHECK(pagerduty_change_url("https://relay.example:8443/pagerduty/events?x=1") ==
          "https://relay.example:8443/v2/change/enqueue");
    CHECK(pagerduty_change_url("https://relay.example/v2/enqueue/") == "https://relay.example/v2/change/enqueue");
    CHECK(pagerduty_change_url("http://[::1]:9000") == "http://[::1]:9000/v2/change/enqueue");
    CHECK(pagerduty_change_url("https://relay.example#v2/enqueue") == "https://relay.example/v2/change/enqueue");
    CHECK(pagerduty_change_url("not a url") == "not a url");
}

TEST_CASE("fake PagerDuty accepts a good change event")
{
    fake_receivers receivers;
    receivers.start();
    const reply r = post_change(receivers, good_change().dump());
    CHECK(r.status == 202);
    CHECK(r.body == json{{"status", "success"}, {"message", "Change event processed"}});
    REQUIRE(receivers.pagerduty_change_events().size() == 1);
    CHECK(receivers.pagerduty_change_events()[0] == good_change());
    const auto requests = receivers.requests(receiver_kind::pagerduty_change);
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].accepted);
    CHECK(requests[0].path == "/v2/change/enqueue");
    CHECK(receivers.accepted(receiver_kind::pagerduty_change)[0].effect == "recorded");
    CHECK(receivers.requests(receiver_kind::pagerduty).empty());
    CHECK(receivers.pagerduty_alerts().empty());
    CHECK(test::to_string(receiver_kind::pagerduty_change) == "pagerduty_change");
    receivers.stop();
}

TEST_CASE("fake PagerDuty rejects malformed change events")
{
    fake_receivers receivers;
    receivers.start();

    auto rejected = [&](const json& event, const std::string& expected) {
        INFO(event.dump());
        const reply r = post_change(receivers, event.dump());
        CHECK(r.status == 400);
        CHECK(r.body["status"] == "invalid event");
        CHECK(r.body["message"].is_string());
        REQUIRE(r.body["errors"].is_array());
        CHECK(r.body["errors"].dump().find(expected) != std::string::npos);
    };

    json missing_payload = good_change();
    missing_payload.erase("payload");
    rejected(missing_payload, "'payload' is missing");

    json missing_summary = good_change();
    missing_summary["payload"].erase("summary");
    rejected(missing_summary, "'payload.summary' is missing or blank");

    json blank_summary = good_change();
    blank_summary["payload"]["summary"] = "";
    rejected(blank_summary, "'payload.summary' is missing or blank");

    json long_key = good_change();
    long_key["routing_key"] = routing_key + "0";
    rejected(long_key, "Length of 'routing_key' is incorrect");

    json no_key = good_change();
    no_key.erase("routing_key");
    rejected(no_key, "'routing_key' is missing or blank");

    json with_action = good_change();
    with_action["event_action"] = "trigger";
    rejected(with_action, "'event_action' is not allowed in a change event");

    json with_dedup = good_change();
    with_dedup["dedup_key"] = "abc";
    rejected(with_dedup, "'dedup_key' is not allowed in a change event");

    json long_summary = good_change();
    long_summary["payload"]["summary"] = std::string(1025, 's');
    rejected(long_summary, "1025 characters long; the maximum is 1024");

    json bad_time = good_change();
    bad_time["payload"]["timestamp"] = "2023-02-30T10:00:00Z";
    rejected(bad_time, "'payload.timestamp' is not an ISO 8601 date-time");

    json numeric_source = good_change();
    numeric_source["payload"]["source"] = 7;
    rejected(numeric_source, "'payload.source' must be a string");

    json array_details = good_change();
    array_details["payload"]["custom_details"] = json::array({1});
    rejected(array_details, "'payload.custom_details' must be an object");

    json severity = good_change();
    severity["payload"]["severity"] = "critical";
    rejected(severity, "'payload.severity' is not a field of a change event");

    json link_without_href = good_change();
    link_without_href["links"] = json::array({{{"text", "Run"}}});
    rejected(link_without_href, "'links[0].href' is missing or blank");

    json link_not_object = good_change();
    link_not_object["links"] = json::array({"https://tocsin.example"});
    rejected(link_not_object, "'links[0]' must be an object");

    rejected(json::array({good_change()}), "Event must be a JSON object");

    CHECK(receivers.pagerduty_change_events().empty());
    for (const auto& request : receivers.requests(receiver_kind::pagerduty_change)) {
        CHECK_FALSE(request.accepted);
        CHECK_FALSE(request.reason.empty());
    }
    receivers.stop();
}

TEST_CASE("fake PagerDuty checks change timestamps")
{
    auto problems = [](const std::string& timestamp) {
        json event = good_change();
        event["payload"]["timestamp"] = timestamp;
        return test::validate_pagerduty_change_event(event);
    };
    CHECK(problems("2024-02-29T23:59:60.5+0100").empty());
    CHECK(problems("2023-11-14T22:13:20-05:30").empty());
    CHECK_FALSE(problems("2023-02-29T00:00:00Z").empty());
    CHECK_FALSE(problems("2023-13-01T00:00:00Z").empty());
    CHECK_FALSE(problems("2023-11-14T24:00:00Z").empty());
    CHECK_FALSE(problems("2023-11-14 22:13:20Z").empty());
    CHECK_FALSE(problems("yesterday").empty());
}

TEST_CASE("fake PagerDuty scripts change event failures")
{
    fake_receivers receivers;
    receivers.fail_next(receiver_kind::pagerduty_change, 1, 429, 7);
    receivers.start();
    const reply first = post_change(receivers, good_change().dump());
    CHECK(first.status == 429);
    CHECK(first.body["status"] == "error");
    CHECK(post_change(receivers, good_change().dump()).status == 202);
    CHECK(receivers.pagerduty_change_events().size() == 1);
    receivers.stop();
}

TEST_CASE("sender routes change and alert events")
{
    test::fake_receivers_options options;
    options.pagerduty_routing_key = routing_key;
    fake_receivers receivers(options);
    receivers.start();

    routing_config config;
    receiver_config receiver;
    receiver.name = "ml-oncall";
    pagerduty_config pd;
    pd.routing_key.value = routing_key;
    pd.url = receivers.base_url() + "/v2/enqueue";
    receiver.pagerduty.push_back(pd);
    config.receivers.push_back(receiver);

    boost::asio::io_context io;
    http_sender sender(io, "tocsin-test");

    outbox_entry change;
    change.id = 1;
    change.message = build_pagerduty_change_event(pd_ref, rollback_event());
    auto target = resolve_target(change, config);
    REQUIRE(target);
    CHECK(target->url == receivers.base_url() + "/v2/enqueue");
    const attempt_result sent = send_one(io, sender, change, *target);
    CHECK(sent.outcome == attempt_outcome::delivered);
    CHECK(sent.http_status == 202);

    const auto events = receivers.pagerduty_change_events();
    REQUIRE(events.size() == 1);
    CHECK(events[0]["routing_key"] == routing_key);
    CHECK(events[0]["payload"]["summary"] == "model-rollback r1a2b3c4d5e6f7a8b: succeeded");
    CHECK(events[0]["payload"]["timestamp"] == "2023-11-14T22:13:20.123Z");
    // The routing key is only on the wire, never in the stored body.
    CHECK(change.message.body.find(routing_key) == std::string::npos);

    // An alert event of the same integration still goes to /v2/enqueue.
    outbox_entry alert_event;
    alert_event.id = 2;
    alert_event.message.integration = pd_ref;
    alert_event.message.dedup_key = "grp-1";
    alert_event.message.body =
        json{{"event_action", "trigger"},
             {"dedup_key", "grp-1"},
             {"payload", {{"summary", "AUC drift"}, {"source", "tocsin"}, {"severity", "critical"}}}}
            .dump();
    const attempt_result triggered = send_one(io, sender, alert_event, *target);
    CHECK(triggered.outcome == attempt_outcome::delivered);
    CHECK(receivers.accepted(receiver_kind::pagerduty).size() == 1);
    CHECK(receivers.pagerduty_change_events().size() == 1);

    // An alert event without a dedup_key still goes to /v2/enqueue, because its body has event_action.
    outbox_entry keyless = alert_event;
    keyless.id = 3;
    keyless.message.dedup_key.clear();
    CHECK(send_one(io, sender, keyless, *target).outcome == attempt_outcome::delivered);
    CHECK(receivers.accepted(receiver_kind::pagerduty).size() == 2);
    CHECK(receivers.pagerduty_change_events().size() == 1);

    // A change event the stand-in rejects is a permanent failure with PagerDuty's reason.
    outbox_entry wrong = change;
    wrong.id = 4;
    wrong.message.body = R"({"payload":{"summary":"","severity":"critical"}})";
    const attempt_result refused = send_one(io, sender, wrong, *target);
    CHECK(refused.outcome == attempt_outcome::failed);
    CHECK(refused.http_status == 400);
    CHECK(refused.detail.find("'payload.summary' is missing or blank") != std::string::npos);
    CHECK(refused.detail.find("'payload.severity' is not a field of a change event") != std::string::npos);
    REQUIRE(receivers.requests(receiver_kind::pagerduty_change).size() == 2);
    CHECK(receivers.requests(receiver_kind::pagerduty_change)[1].path == "/v2/change/enqueue");
    sender.stop();
    receivers.stop();
}
