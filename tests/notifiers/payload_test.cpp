#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "notifiers/payload.hpp"
#include "support/fake_receivers.hpp"

using namespace tocsin;
using nlohmann::json;

namespace {

constexpr time_ms start_ms = 1'700'000'000'123; // 2023-11-14T22:13:20.123Z

alert make_alert(std::uint64_t id, label_set labels, annotation_list annotations = {}, time_ms ends_at = 0)
{
    alert a;
    a.id = id;
    a.labels = std::move(labels);
    a.annotations = std::move(annotations);
    a.starts_at = start_ms;
    a.ends_at = ends_at;
    a.generator_url = "http://tocsin.example/rules/disk";
    return a;
}

// Firing alerts come first, as the dispatcher orders them.
notification make_notification(integration_kind kind, std::string receiver, std::string group_key,
                               std::vector<alert> alerts, std::size_t firing, label_set group_labels = {})
{
    notification n;
    n.integration = {std::move(receiver), kind, 0};
    n.route_key = "{}";
    n.group_key = std::move(group_key);
    n.group_labels = std::move(group_labels);
    n.alerts = std::move(alerts);
    n.firing = firing;
    n.created_at = start_ms + 60'000;
    return n;
}

routing_config config_with(receiver_config receiver)
{
    routing_config config;
    config.global.external_url = "http://tocsin.example:9093";
    receiver.line = 7;
    config.receivers.push_back(std::move(receiver));
    return config;
}

receiver_config pagerduty_receiver(pagerduty_config pd = {})
{
    receiver_config r;
    r.name = "pd";
    r.pagerduty.push_back(std::move(pd));
    return r;
}

receiver_config slack_receiver(slack_config sl = {})
{
    receiver_config r;
    r.name = "slack";
    r.slack.push_back(std::move(sl));
    return r;
}

std::shared_ptr<const compiled_templates> compile(const routing_config& config)
{
    diagnostics diags;
    auto compiled = compile_templates(config, "tocsin.yml", diags);
    INFO(diags.to_string());
    REQUIRE(compiled);
    return compiled;
}

build_result build(const notification& n, const routing_config& config)
{
    return build_messages(n, config, *compile(config));
}

std::size_t code_points(std::string_view s)
{
    std::size_t count = 0;
    for (unsigned char c : s) {
        count += (c & 0xc0) != 0x80 ? 1 : 0;
    }
    return count;
}

bool valid_utf8(std::string_view s)
{
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (len == 0 || i + len > s.size()) {
            return false;
        }
        for (std::size_t j = 1; j < len; ++j) {
            if ((static_cast<unsigned char>(s[i + j]) & 0xc0) != 0x80) {
                return false;
            }
        }
        i += len;
    }
    return true;
}

// What Slack displays for escaped text: it decodes only these three entities.
std::string slack_decode(std::string s)
{
    auto replace_all = [&](std::string_view from, std::string_view to) {
        std::size_t pos = 0;
        while ((pos = s.find(from, pos)) != std::string::npos) {
            s.replace(pos, from.size(), to);
            pos += to.size();
        }
    };
    replace_all("&lt;", "<");
    replace_all("&gt;", ">");
    replace_all("&amp;", "&");
    return s;
}

bool any_line_contains(const build_result& r, std::string_view needle)
{
    for (const auto& line : r.log_lines) {
        if (line.find(needle) != std::string::npos) {
            return true;
        }
    }
    return false;
}

std::size_t utf16_units(std::string_view s)
{
    std::size_t units = 0;
    for (unsigned char c : s) {
        units += (c & 0xc0) != 0x80 ? 1 : 0;
        units += (c & 0xf8) == 0xf0 ? 1 : 0;
    }
    return units;
}

// The problems the PagerDuty stand-in finds in `body` once the sender has added a routing key.
std::vector<std::string> pagerduty_problems(const std::string& body)
{
    json event = json::parse(body);
    event["routing_key"] = std::string(32, 'k');
    return test::validate_pagerduty_event(event);
}

} // namespace

TEST_CASE("truncate_utf8 keeps short text and cuts on code points")
{
    bool cut = true;
    CHECK(truncate_utf8("abc", 3, &cut) == "abc");
    CHECK_FALSE(cut);
    CHECK(truncate_utf8("abcd", 3, &cut) == "ab\u2026");
    CHECK(cut);
    CHECK(truncate_utf8("\u00e9\u00e9\u00e9\u00e9", 2) == "\u00e9\u2026");
    CHECK(truncate_utf8("\U0001f525\U0001f525\U0001f525", 2) == "\U0001f525\u2026");
    CHECK(truncate_utf8("abc", 0).empty());
}

TEST_CASE("slack_escape escapes only ampersand and angle brackets")
{
    CHECK(slack_escape("a & b < c > d \"e\" 'f'") == "a &amp; b &lt; c &gt; d \"e\" 'f'");
}

TEST_CASE("template_data has Alertmanager's shape")
{
    auto n = make_notification(integration_kind::webhook, "hook", "{}:{alertname=\"Disk\"}",
                               {make_alert(1, {{"alertname", "Disk"}, {"instance", "h1"}, {"team", "db"}},
                                           {{"summary", "disk full"}, {"runbook_url", "https://run/1"}}),
                                make_alert(2, {{"alertname", "Disk"}, {"instance", "h2"}, {"team", "db"}},
                                           {{"summary", "disk full"}}, start_ms + 30'000)},
                               1, {{"alertname", "Disk"}});
    const json data = template_data(n, "http://tocsin.example");

    CHECK(data["Receiver"] == "hook");
    CHECK(data["Status"] == "firing");
    CHECK(data["GroupKey"] == "{}:{alertname=\"Disk\"}");
    CHECK(data["ExternalURL"] == "http://tocsin.example");
    CHECK(data["GroupLabels"] == json{{"alertname", "Disk"}});
    CHECK(data["CommonLabels"] == json{{"alertname", "Disk"}, {"team", "db"}});
    CHECK(data["CommonAnnotations"] == json{{"summary", "disk full"}});
    REQUIRE(data["Alerts"].size() == 2);

    const json& first = data["Alerts"][0];
    CHECK(first["Status"] == "firing");
    CHECK(first["StartsAt"] == "2023-11-14T22:13:20.123Z");
    CHECK(first["EndsAt"] == "0001-01-01T00:00:00Z");
    CHECK(first["GeneratorURL"] == "http://tocsin.example/rules/disk");
    CHECK(first["Labels"]["instance"] == "h1");
    CHECK(first["Annotations"]["runbook_url"] == "https://run/1");
    const std::string fingerprint = first["Fingerprint"];
    CHECK(fingerprint.size() == 16);
    CHECK(fingerprint.find_first_not_of("0123456789abcdef") == std::string::npos);

    const json& second = data["Alerts"][1];
    CHECK(second["Status"] == "resolved");
    CHECK(second["EndsAt"] == "2023-11-14T22:13:50.123Z");
}

TEST_CASE("template_data status is resolved when every alert resolved")
{
    auto n = make_notification(integration_kind::webhook, "hook", "g", {make_alert(1, {{"alertname", "A"}}, {}, start_ms)},
                               0);
    CHECK(template_data(n, "")["Status"] == "resolved");
}

TEST_CASE("compile_templates names receiver and field of a bad template")
{
    pagerduty_config pd;
    pd.description = "{{ .CommonLabels.alertname ";
    auto config = config_with(pagerduty_receiver(pd));
    diagnostics diags;
    CHECK_FALSE(compile_templates(config, "tocsin.yml", diags));
    REQUIRE(diags.size() >= 1);
    const diagnostic& d = diags.items().front();
    CHECK(d.file == "tocsin.yml");
    CHECK(d.line == 7);
    CHECK(d.message.find("receiver \"pd\" pagerduty_configs[0].description:") == 0);
}

TEST_CASE("compile_templates rejects an undefined sub-template")
{
    slack_config sl;
    sl.text = "{{ template \"nowhere.defined\" . }}";
    auto config = config_with(slack_receiver(sl));
    diagnostics diags;
    CHECK_FALSE(compile_templates(config, "tocsin.yml", diags));
    CHECK(diags.to_string().find("nowhere.defined") != std::string::npos);
}

TEST_CASE("compile_templates reports an unreadable template file")
{
    routing_config config;
    config.template_files.push_back("/nonexistent/tocsin/templates.tmpl");
    diagnostics diags;
    CHECK_FALSE(compile_templates(config, "tocsin.yml", diags));
    REQUIRE(diags.size() == 1);
    CHECK(diags.items()[0].file == "/nonexistent/tocsin/templates.tmpl");
}

TEST_CASE("pagerduty trigger and resolve share the dedup key")
{
    auto config = config_with(pagerduty_receiver());
    const std::string group = "{}/{team=\"db\"}:{alertname=\"DiskFull\", instance=\"h1\"}";
    auto firing = make_notification(integration_kind::pagerduty, "pd", group,
                                    {make_alert(1, {{"alertname", "DiskFull"}, {"instance", "h1"}})}, 1);
    auto resolved = make_notification(integration_kind::pagerduty, "pd", group,
                                      {make_alert(1, {{"alertname", "DiskFull"}, {"instance", "h1"}}, {}, start_ms)},
                                      0);
    auto trigger = build(firing, config);
    auto resolve = build(resolved, config);
    REQUIRE(trigger.messages.size() == 1);
    REQUIRE(resolve.messages.size() == 1);

    const json t = json::parse(trigger.messages[0].body);
    const json r = json::parse(resolve.messages[0].body);
    CHECK(t["event_action"] == "trigger");
    CHECK(r["event_action"] == "resolve");
    CHECK_FALSE(trigger.messages[0].resolved);
    CHECK(resolve.messages[0].resolved);
    CHECK(t["dedup_key"] == r["dedup_key"]);
    CHECK(trigger.messages[0].dedup_key == t["dedup_key"]);
    CHECK(t["dedup_key"] == pagerduty_dedup_key("pd", group));
    CHECK_FALSE(t.contains("routing_key"));
    CHECK(trigger.messages[0].body.front() == '{');
    CHECK(pagerduty_problems(trigger.messages[0].body).empty());
    CHECK(pagerduty_problems(resolve.messages[0].body).empty());
}

TEST_CASE("pagerduty groups get different dedup keys")
{
    auto config = config_with(pagerduty_receiver());
    auto h1 = make_notification(integration_kind::pagerduty, "pd", "{}:{instance=\"h1\"}",
                                {make_alert(1, {{"alertname", "DiskFull"}, {"instance", "h1"}})}, 1);
    auto h2 = make_notification(integration_kind::pagerduty, "pd", "{}:{instance=\"h2\"}",
                                {make_alert(2, {{"alertname", "DiskFull"}, {"instance", "h2"}})}, 1);
    CHECK(build(h1, config).messages[0].dedup_key != build(h2, config).messages[0].dedup_key);
    CHECK(pagerduty_dedup_key("pd", "g").size() == 64);
    CHECK(pagerduty_dedup_key("pd", "g") != pagerduty_dedup_key("pd2", "g"));
}

TEST_CASE("pagerduty dedup_scope alert sends one event per alert")
{
    auto config = config_with(pagerduty_receiver());
    auto n = make_notification(integration_kind::pagerduty, "pd", "g",
                               {make_alert(11, {{"alertname", "A"}, {"instance", "h1"}}),
                                make_alert(12, {{"alertname", "A"}, {"instance", "h2"}}, {}, start_ms)},
                               1);
    n.dedup = dedup_scope::alert;
    auto result = build(n, config);
    REQUIRE(result.messages.size() == 2);
    CHECK(result.messages[0].dedup_key == pagerduty_dedup_key("pd", "g", 11));
    CHECK(result.messages[1].dedup_key == pagerduty_dedup_key("pd", "g", 12));
    CHECK(json::parse(result.messages[0].body)["event_action"] == "trigger");
    CHECK(json::parse(result.messages[1].body)["event_action"] == "resolve");
    CHECK(result.messages[0].alert_count == 1);
}

TEST_CASE("pagerduty summary is cut to 1024 code points")
{
    // About 1400 characters mixing two-, three- and four-byte characters, with a four-byte one
    // as character 1024.
    std::string text;
    const std::vector<std::string> pieces = {"caf\u00e9 ", "\u78c1\u76d8 ", "x"};
    while (code_points(text) < 1023) {
        text += pieces[code_points(text) % pieces.size()];
    }
    while (code_points(text) > 1023) {
        text.pop_back();
        while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xc0) == 0x80) {
            text.pop_back(); // never leave a partial sequence
        }
        if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xc0) {
            text.pop_back();
        }
    }
    REQUIRE(code_points(text) == 1023);
    text += "\U0001f4be"; // character 1024
    while (code_points(text) < 1400) {
        text += "\u00e9\u4e2d\U0001f525 ";
    }

    pagerduty_config pd;
    pd.description = "{{ .CommonAnnotations.description }}";
    auto config = config_with(pagerduty_receiver(pd));
    auto n = make_notification(integration_kind::pagerduty, "pd", "g",
                               {make_alert(1, {{"alertname", "A"}}, {{"description", text}})}, 1);
    auto result = build(n, config);
    REQUIRE(result.messages.size() == 1);
    const json body = json::parse(result.messages[0].body);
    const std::string summary = body["payload"]["summary"];

    CHECK(code_points(summary) == 1024);
    CHECK(valid_utf8(summary));
    CHECK(summary.ends_with("\u2026"));
    CHECK(summary.substr(0, summary.size() - 3) == text.substr(0, summary.size() - 3));
    CHECK(body["payload"]["custom_details"]["full_summary"] == text);
    CHECK(any_line_contains(result, "summary cut to 1024"));
    CHECK(pagerduty_problems(result.messages[0].body).empty());
    CHECK(result.messages[0].dedup_key == pagerduty_dedup_key("pd", "g"));
}

TEST_CASE("pagerduty body of 3000 alerts stays under the size limit")
{
    auto config = config_with(pagerduty_receiver());
    std::vector<alert> alerts;
    for (int i = 0; i < 3000; ++i) {
        alerts.push_back(make_alert(static_cast<std::uint64_t>(i) + 1,
                                    {{"alertname", "Disk"}, {"instance", "host-" + std::to_string(i)}},
                                    {{"description", std::string(200, 'd')}}));
    }
    auto n = make_notification(integration_kind::pagerduty, "pd", "g", std::move(alerts), 3000);
    auto result = build(n, config);
    REQUIRE(result.messages.size() == 1);
    const std::string& body = result.messages[0].body;
    CHECK(body.size() <= 512000 - 100);
    CHECK(pagerduty_problems(body).empty());
    const json parsed = json::parse(body);
    CHECK(parsed["event_action"] == "trigger");
    const json& details = parsed["payload"]["custom_details"];
    CHECK(details["num_firing"] == 3000);
    CHECK(details["firing"].size() < 3000);
    CHECK(details["firing"].size() > 100);
    const std::string omitted = details["omitted"];
    CHECK(omitted.find(std::to_string(3000 - details["firing"].size()) + " more alerts omitted") == 0);
    CHECK(any_line_contains(result, "left"));
}

TEST_CASE("pagerduty replaces oversized configured details")
{
    pagerduty_config pd;
    pd.details.emplace_back("dump", std::string(600'000, 'x'));
    auto config = config_with(pagerduty_receiver(pd));
    auto n = make_notification(integration_kind::pagerduty, "pd", "g", {make_alert(1, {{"alertname", "A"}})}, 1);
    auto result = build(n, config);
    REQUIRE(result.messages.size() == 1);
    CHECK(result.messages[0].body.size() <= 512000 - 100);
    const json details = json::parse(result.messages[0].body)["payload"]["custom_details"];
    CHECK(details.contains("error"));
    CHECK_FALSE(details.contains("dump"));
}

TEST_CASE("pagerduty severity comes from the highest firing tier")
{
    auto config = config_with(pagerduty_receiver());
    auto severity_of = [&](std::vector<std::string> tiers) {
        std::vector<alert> alerts;
        for (std::size_t i = 0; i < tiers.size(); ++i) {
            label_set labels{{"alertname", "A"}, {"instance", std::to_string(i)}};
            if (!tiers[i].empty()) {
                labels = labels.with("severity", tiers[i]);
            }
            alerts.push_back(make_alert(i + 1, labels));
        }
        auto n = make_notification(integration_kind::pagerduty, "pd", "g", std::move(alerts), tiers.size());
        return json::parse(build(n, config).messages[0].body)["payload"]["severity"].get<std::string>();
    };
    CHECK(severity_of({"page"}) == "critical");
    CHECK(severity_of({"critical"}) == "critical");
    CHECK(severity_of({"error"}) == "error");
    CHECK(severity_of({"warning"}) == "warning");
    CHECK(severity_of({"info"}) == "info");
    CHECK(severity_of({"ticket"}) == "error");
    CHECK(severity_of({""}) == "error");
    CHECK(severity_of({"info", "warning"}) == "warning");
    CHECK(severity_of({"warning", "page", "info"}) == "critical");
}

TEST_CASE("pagerduty severity template must render a known value")
{
    pagerduty_config pd;
    pd.severity = "{{ .CommonLabels.severity }}";
    auto config = config_with(pagerduty_receiver(pd));
    auto with_severity = [&](std::string tier) {
        auto n = make_notification(integration_kind::pagerduty, "pd", "g",
                                   {make_alert(1, {{"alertname", "A"}, {"severity", tier}})}, 1);
        return build(n, config);
    };
    CHECK(json::parse(with_severity("warning").messages[0].body)["payload"]["severity"] == "warning");
    auto bad = with_severity("sev1");
    CHECK(json::parse(bad.messages[0].body)["payload"]["severity"] == "error");
    CHECK(any_line_contains(bad, "\"sev1\" is not one of"));
}

TEST_CASE("pagerduty event carries details, links, client and source")
{
    pagerduty_config pd;
    pd.details = {{"count", "{{ len .Alerts }}"}, {"owner", "team {{ .CommonLabels.team }}"}, {"list", "[1, 2]"}};
    pd.links.push_back({"https://status.example/{{ .CommonLabels.team }}", "Status"});
    pd.component = "{{ .CommonLabels.instance }}";
    auto config = config_with(pagerduty_receiver(pd));
    auto n = make_notification(
        integration_kind::pagerduty, "pd", "g",
        {make_alert(1, {{"alertname", "A"}, {"instance", "h1"}, {"team", "db"}},
                    {{"dashboard", "https://grafana.example/d/1"}, {"runbook_url", "https://runbooks.example/a"}})},
        1);
    const json body = json::parse(build(n, config).messages[0].body);
    const json& details = body["payload"]["custom_details"];
    CHECK(details["count"] == 1);
    CHECK(details["owner"] == "team db");
    CHECK(details["list"] == json::array({1, 2}));
    CHECK(details["num_firing"] == 1);
    CHECK(details["num_resolved"] == 0);
    CHECK(details["firing"][0]["labels"]["instance"] == "h1");
    CHECK(details["firing"][0]["annotations"]["dashboard"] == "https://grafana.example/d/1");
    CHECK(body["payload"]["component"] == "h1");
    CHECK_FALSE(body["payload"].contains("group"));
    CHECK(body["payload"]["source"] == body["client"]);
    CHECK_FALSE(body["client"].get<std::string>().empty());

    const json& links = body["links"];
    REQUIRE(links.size() == 3);
    CHECK(links[0] == json{{"href", "https://status.example/db"}, {"text", "Status"}});
    CHECK(links[1] == json{{"href", "https://runbooks.example/a"}, {"text", "Runbook"}});
    CHECK(links[2] == json{{"href", "https://grafana.example/d/1"}, {"text", "Dashboard"}});
    CHECK(pagerduty_problems(build(n, config).messages[0].body).empty());
}

TEST_CASE("pagerduty template failure falls back with a marker")
{
    pagerduty_config pd;
    pd.description = "{{ (index .Alerts 5).Annotations.summary }}";
    auto config = config_with(pagerduty_receiver(pd));
    auto n = make_notification(integration_kind::pagerduty, "pd", "{}:{alertname=\"Disk\"}",
                               {make_alert(1, {{"alertname", "Disk"}})}, 1, {{"alertname", "Disk"}});
    auto result = build(n, config);
    REQUIRE(result.messages.size() == 1);
    CHECK(result.template_errors == 1);
    const std::string summary = json::parse(result.messages[0].body)["payload"]["summary"];
    CHECK(summary.find("Disk") != std::string::npos);
    CHECK(summary.find("(template error: ") != std::string::npos);
    CHECK(any_line_contains(result, "receiver=\"pd\" field=pagerduty_configs[0].description"));
    CHECK(any_line_contains(result, "group_key={}:{alertname=\"Disk\"}"));
}

TEST_CASE("pagerduty without send_resolved sends nothing for a resolved group")
{
    pagerduty_config pd;
    pd.send_resolved = false;
    auto config = config_with(pagerduty_receiver(pd));
    auto n = make_notification(integration_kind::pagerduty, "pd", "g", {make_alert(1, {{"alertname", "A"}}, {}, start_ms)},
                               0);
    CHECK(build(n, config).messages.empty());
}

namespace {

// An alert with markup characters in the summary, a URL with them in the dashboard, and a
// cron schedule label.
notification escaping_notification()
{
    return make_notification(
        integration_kind::slack, "slack", "{}:{alertname=\"Latency\"}",
        {make_alert(1, {{"alertname", "Latency"}, {"schedule", "*/5 * * * *"}},
                    {{"dashboard", "https://grafana.example/d/x?var-q=rate(x[5m])>100&from=now-1h"},
                     {"summary", "p99 > 500ms & errors < 1% on <checkout>"}})},
        1, {{"alertname", "Latency"}});
}

std::string all_block_text(const json& blocks)
{
    std::string out;
    for (const auto& b : blocks) {
        if (b.contains("text")) {
            out += b["text"]["text"].get<std::string>() + "\n";
        }
        for (const char* key : {"fields", "elements"}) {
            if (b.contains(key)) {
                for (const auto& e : b[key]) {
                    if (e.contains("text") && e["text"].is_string()) {
                        out += e["text"].get<std::string>() + "\n";
                    } else if (e.contains("text")) {
                        out += e["text"]["text"].get<std::string>() + "\n";
                    }
                }
            }
        }
    }
    return out;
}

} // namespace

TEST_CASE("slack user template escapes data exactly once")
{
    slack_config sl;
    sl.title = "[{{ .Status }}] {{ .CommonLabels.alertname }}";
    sl.text = "<{{ .CommonAnnotations.dashboard }}|Dashboard> {{ .CommonAnnotations.summary }} schedule: "
              "{{ .CommonLabels.schedule }}";
    auto config = config_with(slack_receiver(sl));
    auto result = build(escaping_notification(), config);
    REQUIRE(result.messages.size() == 1);
    CHECK(result.template_errors == 0);
    const json body = json::parse(result.messages[0].body);
    const json& blocks = body["blocks"];
    REQUIRE(blocks.size() >= 2);
    REQUIRE(blocks[1].contains("text"));
    CHECK(blocks[0]["type"] == "header");
    CHECK(blocks[0]["text"]["text"] == "[firing] Latency");

    const std::string text = blocks[1]["text"]["text"];
    CHECK(text.find("&amp;gt;") == std::string::npos);
    CHECK(text.find("&amp;lt;") == std::string::npos);
    CHECK(text.find("p99 &gt; 500ms &amp; errors &lt; 1% on &lt;checkout&gt;") != std::string::npos);
    CHECK(slack_decode(text).find("p99 > 500ms & errors < 1% on <checkout>") != std::string::npos);

    // One link token, whose target decodes to the URL with '>' percent-encoded.
    REQUIRE(text.front() == '<');
    const std::size_t close = text.find('>');
    const std::string token = text.substr(1, close - 1);
    CHECK(std::count(token.begin(), token.end(), '|') == 1);
    CHECK(token.substr(token.find('|')) == "|Dashboard");
    CHECK(slack_decode(token.substr(0, token.find('|'))) ==
          "https://grafana.example/d/x?var-q=rate(x[5m])%3E100&from=now-1h");
    CHECK(text.find('<', 1) == std::string::npos);

    // The schedule sits in a code span, so mrkdwn shows it literally instead of bold.
    CHECK(text.find("schedule: `*/5 * * * *`") != std::string::npos);

    // As the Slack stand-in renders it: one link, no mention, the summary shown as written.
    const auto decoded = test::decode_slack_mrkdwn(text);
    REQUIRE(decoded.links.size() == 1);
    CHECK(decoded.links[0].url == "https://grafana.example/d/x?var-q=rate(x[5m])%3E100&from=now-1h");
    CHECK(decoded.links[0].label == "Dashboard");
    CHECK(decoded.mentions.empty());
    CHECK(decoded.displayed.find("p99 > 500ms & errors < 1% on <checkout>") != std::string::npos);
    CHECK(decoded.displayed.find("*/5 * * * *") != std::string::npos);
    CHECK(test::validate_slack_message(body).empty());
}

TEST_CASE("slack default layout escapes data exactly once")
{
    auto config = config_with(slack_receiver());
    auto result = build(escaping_notification(), config);
    REQUIRE(result.messages.size() == 1);
    const json body = json::parse(result.messages[0].body);
    const std::string text = all_block_text(body["blocks"]);
    CHECK(text.find("&amp;gt;") == std::string::npos);
    CHECK(text.find("&amp;amp;") == std::string::npos);
    CHECK(text.find("p99 &gt; 500ms &amp; errors &lt; 1% on &lt;checkout&gt;") != std::string::npos);
    CHECK(text.find("`*/5 * * * *`") != std::string::npos);
    CHECK(text.find("<https://grafana.example/d/x?var-q=rate(x[5m])%3E100&amp;from=now-1h|Dashboard>") !=
          std::string::npos);
    const std::string header = body["blocks"][0]["text"]["text"];
    CHECK(header == "\U0001f525 [FIRING:1] Latency (*/5 * * * *)");
    CHECK(body["text"].get<std::string>().find("[FIRING:1] Latency") != std::string::npos);
    CHECK(test::validate_slack_message(body).empty());
}

TEST_CASE("slack values without markup stay unchanged")
{
    slack_config sl;
    sl.text = "{{ .CommonLabels.job }} {{ .CommonLabels.instance }}";
    auto config = config_with(slack_receiver(sl));
    auto n = make_notification(integration_kind::slack, "slack", "g",
                               {make_alert(1, {{"alertname", "A"}, {"job", "node_exporter"}, {"instance", "h1:9100"}})},
                               1);
    const json body = json::parse(build(n, config).messages[0].body);
    CHECK(body["blocks"][1]["text"]["text"] == "node_exporter h1:9100");
}

TEST_CASE("slack message of 400 alerts respects every limit")
{
    auto config = config_with(slack_receiver());
    std::vector<alert> alerts;
    for (int i = 0; i < 400; ++i) {
        alerts.push_back(make_alert(static_cast<std::uint64_t>(i) + 1,
                                    {{"alertname", "Latency"}, {"instance", "host-" + std::to_string(i)}},
                                    {{"description", std::string(190, 'x') + " & <b>"}}));
    }
    auto n = make_notification(integration_kind::slack, "slack", "g", std::move(alerts), 400, {{"alertname", "Latency"}});
    auto result = build(n, config);
    REQUIRE(result.messages.size() == 1);
    const json body = json::parse(result.messages[0].body);
    const json& blocks = body["blocks"];

    CHECK(blocks.size() <= 50);
    std::size_t total = 0;
    for (const auto& b : blocks) {
        if (b["type"] == "header") {
            CHECK(utf16_units(b["text"]["text"].get<std::string>()) <= 150);
        }
        if (b["type"] == "section" && b.contains("text")) {
            const std::string t = b["text"]["text"];
            CHECK(utf16_units(t) <= 3000);
            CHECK_FALSE(t.empty());
        }
        if (b.contains("fields")) {
            CHECK(b["fields"].size() <= 10);
        }
    }
    total = utf16_units(all_block_text(blocks));
    CHECK(total <= 40000);
    CHECK(utf16_units(body["text"].get<std::string>()) <= 40000);

    // The last alert section and the log both report how many alerts were left out.
    std::string last_section;
    for (const auto& b : blocks) {
        if (b["type"] == "section" && b.contains("text")) {
            last_section = b["text"]["text"];
        }
    }
    CHECK(last_section.find("\u2026and ") != std::string::npos);
    CHECK(last_section.ends_with(" more alerts"));
    CHECK(any_line_contains(result, "of 400 alerts"));
    CHECK(test::validate_slack_message(body).empty());
}

TEST_CASE("slack attachment mode keeps Alertmanager's shape")
{
    slack_config sl;
    sl.send_blocks = false;
    sl.fields.push_back({"Instance", "{{ .CommonLabels.instance }}", true});
    sl.actions.push_back({"button", "Runbook", "{{ .CommonAnnotations.runbook_url }}", ""});
    auto config = config_with(slack_receiver(sl));
    auto n = make_notification(integration_kind::slack, "slack", "g",
                               {make_alert(1, {{"alertname", "A"}, {"instance", "h1"}, {"severity", "warning"}},
                                           {{"runbook_url", "https://runbooks.example/a?x=1&y=2"}})},
                               1, {{"alertname", "A"}});
    const json body = json::parse(build(n, config).messages[0].body);
    REQUIRE(body["attachments"].size() == 1);
    CHECK_FALSE(body.contains("blocks"));
    CHECK_FALSE(body.contains("channel"));
    const json& a = body["attachments"][0];
    CHECK(a["title"].get<std::string>().find("[FIRING:1] A") == 0);
    CHECK(a["title_link"] == "http://tocsin.example:9093/api/v1/alerts");
    CHECK(a.contains("text"));
    CHECK(a.contains("fallback"));
    CHECK(a["callback_id"] == "");
    CHECK(a["color"] == "warning");
    CHECK(a["mrkdwn_in"] == json::array({"fallback", "pretext", "text"}));
    CHECK(a["fields"][0] == json{{"title", "Instance"}, {"value", "h1"}, {"short", true}});
    CHECK(a["actions"][0]["url"] == "https://runbooks.example/a?x=1&y=2");
    CHECK(test::validate_slack_message(body).empty());
}

TEST_CASE("slack color follows status and severity")
{
    slack_config sl;
    sl.send_blocks = false;
    sl.send_resolved = true;
    auto config = config_with(slack_receiver(sl));
    auto color_of = [&](std::string tier, bool resolved) {
        auto n = make_notification(integration_kind::slack, "slack", "g",
                                   {make_alert(1, {{"alertname", "A"}, {"severity", tier}}, {}, resolved ? start_ms : 0)},
                                   resolved ? 0 : 1);
        return json::parse(build(n, config).messages[0].body)["attachments"][0]["color"].get<std::string>();
    };
    CHECK(color_of("critical", false) == "danger");
    CHECK(color_of("warning", false) == "warning");
    CHECK(color_of("info", false) == "#439fe0");
    CHECK(color_of("critical", true) == "good");
}

TEST_CASE("slack with a bot token names the channel")
{
    slack_config sl;
    sl.bot_token = {"xoxb-1", "inline"};
    sl.channel = "#ops-{{ .CommonLabels.team }}";
    auto config = config_with(slack_receiver(sl));
    auto n = make_notification(integration_kind::slack, "slack", "g", {make_alert(1, {{"alertname", "A"}, {"team", "db"}})},
                               1);
    const auto result = build(n, config);
    const json body = json::parse(result.messages[0].body);
    CHECK(body["channel"] == "#ops-db");
    CHECK(result.messages[0].body.find("xoxb-1") == std::string::npos);
}

TEST_CASE("slack template failure falls back with a marker")
{
    slack_config sl;
    sl.text = "{{ (index .Alerts 0).Annotations.runbook_url | required }} {{ .CommonLabels.alertname }}";
    auto config = config_with(slack_receiver(sl));
    auto n = make_notification(integration_kind::slack, "slack", "{}:{alertname=\"Disk\"}",
                               {make_alert(1, {{"alertname", "Disk"}, {"instance", "h1"}})}, 1,
                               {{"alertname", "Disk"}});
    auto result = build(n, config);
    REQUIRE(result.messages.size() == 1);
    CHECK(result.template_errors == 1);
    CHECK(any_line_contains(result, "receiver=\"slack\" field=slack_configs[0].text"));
    const json body = json::parse(result.messages[0].body);
    const std::string text = all_block_text(body["blocks"]);
    CHECK(text.find("(template error: ") != std::string::npos);
    CHECK(text.find("Disk") != std::string::npos);
    CHECK(text.find("instance") != std::string::npos);
    CHECK(text.find("h1") != std::string::npos);
    CHECK(test::validate_slack_message(body).empty());
}

TEST_CASE("slack attachment template failure keeps the alerts visible")
{
    slack_config sl;
    sl.send_blocks = false;
    sl.text = "{{ (index .Alerts 3).Labels.instance }}";
    auto config = config_with(slack_receiver(sl));
    auto n = make_notification(integration_kind::slack, "slack", "g", {make_alert(1, {{"alertname", "Disk"}, {"instance", "h1"}})},
                               1);
    auto result = build(n, config);
    CHECK(result.template_errors == 1);
    const std::string text = json::parse(result.messages[0].body)["attachments"][0]["text"];
    CHECK(text.find("(template error: ") != std::string::npos);
    CHECK(text.find("Disk") != std::string::npos);
}

TEST_CASE("webhook body is Alertmanager's version 4")
{
    receiver_config r;
    r.name = "hook";
    r.webhooks.push_back({});
    auto config = config_with(r);
    auto n = make_notification(integration_kind::webhook, "hook", "{}:{alertname=\"Disk\"}",
                               {make_alert(1, {{"alertname", "Disk"}, {"instance", "h1"}}, {{"summary", "full"}}),
                                make_alert(2, {{"alertname", "Disk"}, {"instance", "h2"}}, {{"summary", "full"}}, start_ms)},
                               1, {{"alertname", "Disk"}});
    const json body = json::parse(build(n, config).messages[0].body);
    CHECK(body["version"] == "4");
    CHECK(body["receiver"] == "hook");
    CHECK(body["status"] == "firing");
    CHECK(body["groupKey"] == "{}:{alertname=\"Disk\"}");
    CHECK(body["groupLabels"] == json{{"alertname", "Disk"}});
    CHECK(body["commonLabels"] == json{{"alertname", "Disk"}});
    CHECK(body["commonAnnotations"] == json{{"summary", "full"}});
    CHECK(body["externalURL"] == "http://tocsin.example:9093");
    CHECK(body["truncatedAlerts"] == 0);
    REQUIRE(body["alerts"].size() == 2);
    const json& a = body["alerts"][1];
    CHECK(a["status"] == "resolved");
    CHECK(a["labels"]["instance"] == "h2");
    CHECK(a["startsAt"] == "2023-11-14T22:13:20.123Z");
    CHECK(a["endsAt"] == "2023-11-14T22:13:20.123Z");
    CHECK(a["generatorURL"] == "http://tocsin.example/rules/disk");
    CHECK(a["fingerprint"].get<std::string>().size() == 16);
    CHECK(test::validate_alertmanager_webhook(body).empty());
}

TEST_CASE("webhook max_alerts truncates and counts")
{
    receiver_config r;
    r.name = "hook";
    webhook_config hook;
    hook.max_alerts = 2;
    r.webhooks.push_back(hook);
    auto config = config_with(r);
    std::vector<alert> alerts;
    for (int i = 0; i < 5; ++i) {
        alerts.push_back(make_alert(static_cast<std::uint64_t>(i) + 1, {{"alertname", "A"}, {"i", std::to_string(i)}}));
    }
    auto n = make_notification(integration_kind::webhook, "hook", "g", std::move(alerts), 5);
    const auto result = build(n, config);
    const json body = json::parse(result.messages[0].body);
    CHECK(body["alerts"].size() == 2);
    CHECK(body["truncatedAlerts"] == 3);
    CHECK(test::validate_alertmanager_webhook(body).empty());
    CHECK(result.messages[0].alert_count == 5);
}

// The webhook body is written directly, so it must carry the same values as the template data.
TEST_CASE("webhook body agrees with the template data for hostile text")
{
    receiver_config r;
    r.name = "hook \"quoted\"";
    r.webhooks.push_back({});
    auto config = config_with(r);
    const std::string nasty = std::string("tab\tnew\nline \"q\" back\\slash \x01\x1f\x7f ü ✓ ") + "\xff\xfe end";
    std::vector<alert> alerts;
    alerts.push_back(make_alert(1, {{"alertname", "A"}, {"shared", nasty}, {"x", "1"}},
                                {{"zeta", "last"}, {"summary", nasty}, {"alpha", "first"}, {"alpha", "again"}}));
    alerts.push_back(make_alert(2, {{"alertname", "A"}, {"shared", nasty}, {"x", "2"}},
                                {{"summary", nasty}, {"alpha", "again"}}, start_ms));
    alerts.back().generator_url = nasty;
    auto n = make_notification(integration_kind::webhook, r.name, "g" + nasty, std::move(alerts), 1,
                               {{"alertname", "A"}});
    const json body = json::parse(build(n, config).messages[0].body);
    // Serialized as every payload is, so invalid UTF-8 becomes U+FFFD on both sides.
    const json data = json::parse(template_data(n, config.global.external_url)
                                      .dump(-1, ' ', false, json::error_handler_t::replace));

    CHECK(body["receiver"] == data["Receiver"]);
    CHECK(body["status"] == data["Status"]);
    CHECK(body["groupKey"] == data["GroupKey"]);
    CHECK(body["groupLabels"] == data["GroupLabels"]);
    CHECK(body["commonLabels"] == data["CommonLabels"]);
    CHECK(body["commonAnnotations"] == data["CommonAnnotations"]);
    CHECK(body["commonAnnotations"] == json{{"alpha", "again"}, {"summary", data["Alerts"][0]["Annotations"]["summary"]}});
    REQUIRE(body["alerts"].size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        INFO(i);
        const json& a = body["alerts"][i];
        const json& d = data["Alerts"][i];
        CHECK(a["status"] == d["Status"]);
        CHECK(a["labels"] == d["Labels"]);
        CHECK(a["annotations"] == d["Annotations"]);
        CHECK(a["startsAt"] == d["StartsAt"]);
        CHECK(a["endsAt"] == d["EndsAt"]);
        CHECK(a["generatorURL"] == d["GeneratorURL"]);
        CHECK(a["fingerprint"] == d["Fingerprint"]);
    }
    CHECK(body["alerts"][0]["annotations"]["alpha"] == "again");
    CHECK(body["alerts"][0]["labels"]["shared"].get<std::string>().find("\xef\xbf\xbd") != std::string::npos);
    CHECK(test::validate_alertmanager_webhook(body).empty());
}

TEST_CASE("console text lists status, group and alerts")
{
    receiver_config r;
    r.name = "log";
    r.console.push_back({});
    auto config = config_with(r);
    auto n = make_notification(integration_kind::console, "log", "g",
                               {make_alert(1, {{"alertname", "Disk"}, {"instance", "h1"}}, {{"summary", "disk full"}})},
                               1, {{"alertname", "Disk"}});
    const std::string text = build(n, config).messages[0].body;
    CHECK(text.find("[FIRING:1]") == 0);
    CHECK(text.find("{alertname=\"Disk\"}") != std::string::npos);
    CHECK(text.find("instance=\"h1\"") != std::string::npos);
    CHECK(text.find("disk full") != std::string::npos);
}

TEST_CASE("build_messages of an unknown integration sends nothing")
{
    auto config = config_with(slack_receiver());
    auto n = make_notification(integration_kind::pagerduty, "slack", "g", {make_alert(1, {{"alertname", "A"}})}, 1);
    auto result = build(n, config);
    CHECK(result.messages.empty());
    CHECK(any_line_contains(result, "slack/pagerduty/0"));
}

