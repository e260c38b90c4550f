// The runbook_actions annotation in notifications: a "Runbook:" line under each alert in Slack,
// and custom_details.runbook_actions in PagerDuty.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "notifiers/payload.hpp"
#include "support/fake_receivers.hpp"

using namespace tocsin;
using nlohmann::json;

namespace {

constexpr time_ms start_ms = 1'700'000'000'123;
const std::string rollback_line =
    "model-rollback r1a2b3c4d5e6f7a8b: succeeded (stop-canary succeeded; rollback-model succeeded)";
const std::string restart_line = "restart-api r0f0e0d0c0b0a0908: failed (restart-api timed out)";

alert make_alert(std::uint64_t id, label_set labels, annotation_list annotations = {})
{
    alert a;
    a.id = id;
    a.labels = std::move(labels);
    a.annotations = std::move(annotations);
    a.starts_at = start_ms;
    return a;
}

notification make_notification(integration_kind kind, std::string receiver, std::vector<alert> alerts,
                               std::size_t firing)
{
    notification n;
    n.integration = {std::move(receiver), kind, 0};
    n.route_key = "{}";
    n.group_key = "{}:{alertname=\"ModelAucDrift\"}";
    n.group_labels = {{"alertname", "ModelAucDrift"}};
    n.alerts = std::move(alerts);
    n.firing = firing;
    n.created_at = start_ms + 60'000;
    return n;
}

routing_config config_with(receiver_config receiver)
{
    routing_config config;
    config.global.external_url = "http://tocsin.example:9093";
    config.receivers.push_back(std::move(receiver));
    return config;
}

routing_config slack_config_with(slack_config sl = {})
{
    receiver_config r;
    r.name = "slack";
    r.slack.push_back(std::move(sl));
    return config_with(std::move(r));
}

routing_config pagerduty_config_with(pagerduty_config pd = {})
{
    receiver_config r;
    r.name = "pd";
    r.pagerduty.push_back(std::move(pd));
    return config_with(std::move(r));
}

build_result build(const notification& n, const routing_config& config)
{
    diagnostics diags;
    auto compiled = compile_templates(config, "tocsin.yml", diags);
    INFO(diags.to_string());
    REQUIRE(compiled);
    return build_messages(n, config, *compiled);
}

json built_body(const notification& n, const routing_config& config)
{
    const build_result result = build(n, config);
    REQUIRE(result.messages.size() == 1);
    return json::parse(result.messages[0].body);
}

// The mrkdwn texts of the section and context blocks, in order.
std::vector<std::string> block_texts(const json& blocks)
{
    std::vector<std::string> out;
    for (const auto& b : blocks) {
        if (b["type"] == "section" && b.contains("text")) {
            out.push_back(b["text"]["text"]);
        } else if (b["type"] == "context") {
            for (const auto& e : b["elements"]) {
                out.push_back(e["text"]);
            }
        }
    }
    return out;
}

std::size_t count(std::string_view text, std::string_view needle)
{
    std::size_t n = 0;
    for (std::size_t pos = text.find(needle); pos != std::string_view::npos; pos = text.find(needle, pos + 1)) {
        ++n;
    }
    return n;
}

std::string joined(const std::vector<std::string>& texts)
{
    std::string out;
    for (const auto& t : texts) {
        out += t + "\n";
    }
    return out;
}

} // namespace

TEST_CASE("runbook_action_lines splits and trims the annotation")
{
    CHECK(runbook_action_lines("").empty());
    CHECK(runbook_action_lines(" a: ok \n\n  b: failed\r\n") == std::vector<std::string>{"a: ok", "b: failed"});
}

TEST_CASE("slack shows the runbook line under its alert")
{
    const auto n = make_notification(
        integration_kind::slack, "slack",
        {make_alert(1, {{"alertname", "ModelAucDrift"}, {"model", "churn"}},
                    {{"runbook_actions", rollback_line + "\n" + restart_line}, {"summary", "AUC 0.71"}}),
         make_alert(2, {{"alertname", "ModelAucDrift"}, {"model", "fraud"}}, {{"summary", "AUC 0.69"}})},
        2);
    const json body = built_body(n, slack_config_with());
    CHECK(test::validate_slack_message(body).empty());
    const std::string text = joined(block_texts(body["blocks"]));
    INFO(text);
    const std::string expected = "model=churn \u2014 AUC 0.71\nRunbook: " + rollback_line + "\nRunbook: " +
                                 restart_line + "\n\U0001f525 model=fraud \u2014 AUC 0.69";
    CHECK(text.find(expected) != std::string::npos);
    CHECK(count(text, "Runbook: ") == 2);
}

TEST_CASE("slack escapes runbook text exactly once")
{
    const std::string hostile = "deploy r1: failed (<script>alert(1)</script> & <!channel>)";
    const auto n = make_notification(
        integration_kind::slack, "slack",
        {make_alert(1, {{"alertname", "ModelAucDrift"}, {"model", "churn"}}, {{"runbook_actions", hostile}})}, 1);
    const json body = built_body(n, slack_config_with());
    CHECK(test::validate_slack_message(body).empty());
    const std::string text = joined(block_texts(body["blocks"]));
    INFO(text);
    CHECK(text.find("Runbook: deploy r1: failed (&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;!channel&gt;)") !=
          std::string::npos);
    CHECK(text.find("&amp;lt;") == std::string::npos);
    CHECK(text.find("&amp;amp;") == std::string::npos);
    CHECK(text.find("<script>") == std::string::npos);

    // The displayed text is the text as written, with no link and no mention.
    bool displayed = false;
    for (const auto& s : test::slack_mrkdwn_strings(body)) {
        const auto decoded = test::decode_slack_mrkdwn(s);
        CHECK(decoded.mentions.empty());
        displayed = displayed || decoded.displayed.find("Runbook: " + hostile) != std::string::npos;
    }
    CHECK(displayed);
}

TEST_CASE("slack cuts long runbook text")
{
    std::string lines;
    for (int i = 0; i < 8; ++i) {
        lines += "run-" + std::to_string(i) + ": succeeded " + std::string(400, 'x') + "\n";
    }
    const auto n = make_notification(
        integration_kind::slack, "slack",
        {make_alert(1, {{"alertname", "ModelAucDrift"}, {"model", "churn"}}, {{"runbook_actions", lines}})}, 1);
    const json body = built_body(n, slack_config_with());
    CHECK(test::validate_slack_message(body).empty());
    const std::string text = joined(block_texts(body["blocks"]));
    CHECK(count(text, "Runbook: run-") == 5);
    CHECK(text.find("Runbook: \u2026and 3 more runs") != std::string::npos);
    CHECK(text.find(std::string(300, 'x')) == std::string::npos); // each line cut to 300 code points
    CHECK(text.find("Runbook: run-0: succeeded " + std::string(100, 'x')) != std::string::npos);
}

TEST_CASE("slack without runbook_actions shows no runbook line")
{
    const auto n = make_notification(integration_kind::slack, "slack",
                                     {make_alert(1, {{"alertname", "ModelAucDrift"}}, {{"summary", "AUC 0.71"}})}, 1);
    const json body = built_body(n, slack_config_with());
    CHECK(joined(block_texts(body["blocks"])).find("Runbook:") == std::string::npos);
}

TEST_CASE("slack custom text adds runbook context")
{
    slack_config sl;
    sl.text = "{{ .CommonLabels.alertname }} needs attention";
    const auto n = make_notification(
        integration_kind::slack, "slack",
        {make_alert(1, {{"alertname", "ModelAucDrift"}, {"model", "churn"}}, {{"runbook_actions", rollback_line}}),
         make_alert(2, {{"alertname", "ModelAucDrift"}, {"model", "fraud"}},
                    {{"runbook_actions", rollback_line + "\n" + restart_line}})},
        2);
    const json body = built_body(n, slack_config_with(sl));
    CHECK(test::validate_slack_message(body).empty());
    bool found = false;
    for (const auto& b : body["blocks"]) {
        if (b["type"] == "context" && b["elements"][0]["text"] ==
                                          "Runbook: " + rollback_line + "\nRunbook: " + restart_line) {
            found = true;
        }
    }
    CHECK(found);
}

TEST_CASE("pagerduty lists firing runbook lines")
{
    const auto n = make_notification(
        integration_kind::pagerduty, "pd",
        {make_alert(1, {{"alertname", "ModelAucDrift"}, {"model", "churn"}},
                    {{"runbook_actions", rollback_line + "\n" + restart_line}}),
         make_alert(2, {{"alertname", "ModelAucDrift"}, {"model", "fraud"}}, {{"runbook_actions", rollback_line}}),
         make_alert(3, {{"alertname", "ModelAucDrift"}, {"model", "spam"}},
                    {{"runbook_actions", "resolved-only r9: succeeded"}})},
        2);
    const json body = built_body(n, pagerduty_config_with());
    const json& details = body["payload"]["custom_details"];
    CHECK(details["runbook_actions"] == json{rollback_line, restart_line});
    // The annotation itself still travels with each alert.
    CHECK(details["firing"][0]["annotations"]["runbook_actions"] == rollback_line + "\n" + restart_line);

    json event = body;
    event["routing_key"] = std::string(32, 'k');
    CHECK(test::validate_pagerduty_event(event).empty());
}

TEST_CASE("pagerduty runbook detail absent or configured")
{
    const auto n = make_notification(integration_kind::pagerduty, "pd",
                                     {make_alert(1, {{"alertname", "ModelAucDrift"}})}, 1);
    CHECK_FALSE(built_body(n, pagerduty_config_with())["payload"]["custom_details"].contains("runbook_actions"));

    // A configured detail of that name replaces tocsin's.
    pagerduty_config pd;
    pd.details = {{"runbook_actions", "see the runbook journal"}};
    const auto with = make_notification(
        integration_kind::pagerduty, "pd",
        {make_alert(1, {{"alertname", "ModelAucDrift"}}, {{"runbook_actions", rollback_line}})}, 1);
    CHECK(built_body(with, pagerduty_config_with(pd))["payload"]["custom_details"]["runbook_actions"] ==
          "see the runbook journal");
}

TEST_CASE("webhook passes runbook_actions through unchanged")
{
    receiver_config r;
    r.name = "hook";
    r.webhooks.emplace_back();
    const auto n = make_notification(
        integration_kind::webhook, "hook",
        {make_alert(1, {{"alertname", "ModelAucDrift"}}, {{"runbook_actions", "a & <b>\n" + rollback_line}})}, 1);
    const json body = built_body(n, config_with(r));
    CHECK(body["alerts"][0]["annotations"]["runbook_actions"] == "a & <b>\n" + rollback_line);
}
