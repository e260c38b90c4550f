#include <catch2/catch.hpp>

#include <map>

#include <yaml-cpp/yaml.h>

#include "routing/config.hpp"
#include "rules/yaml_check.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

// Environment variables seen by the loader in these tests; the process environment is untouched.
std::map<std::string, std::string>& fake_environment()
{
    static std::map<std::string, std::string> values;
    return values;
}

std::optional<std::string> fake_env(const char* name)
{
    const auto it = fake_environment().find(name);
    if (it == fake_environment().end()) {
        return std::nullopt;
    }
    return it->second;
}

struct loaded {
    routing_config config;
    diagnostics errors;
    diagnostics warnings;
};

loaded load_text(const std::string& text, const std::string& base_dir = "")
{
    loaded out;
    yaml::checker check("am.yml", out.errors);
    out.config = load_routing(YAML::Load(text), check, base_dir, out.warnings, fake_env);
    return out;
}

bool contains(const diagnostics& diags, const std::string& text)
{
    for (const auto& d : diags.items()) {
        if (d.to_string().find(text) != std::string::npos) {
            return true;
        }
    }
    return false;
}

const route_config& child(const route_config& route, std::size_t index)
{
    REQUIRE(route.routes.size() > index);
    return route.routes[index];
}

std::string keys_of(const std::vector<label_matcher>& matchers)
{
    std::string out;
    for (const auto& m : matchers) {
        out += out.empty() ? "" : ",";
        out += m.to_string();
    }
    return out;
}

constexpr const char* pd_key = "0123456789abcdef0123456789abcdef";

} // namespace

TEST_CASE("routing config loads an Alertmanager file unchanged")
{
    test::temp_dir dir;
    dir.write("templates/b.tmpl", "{{ define \"b\" }}b{{ end }}");
    dir.write("templates/a.tmpl", "{{ define \"a\" }}a{{ end }}");
    dir.write("templates/notes.txt", "not a template");
    const std::string text = std::string(R"(global:
  resolve_timeout: 10m
  slack_api_url: https://hooks.slack.com/services/T000/B000/XXXX
  smtp_smarthost: localhost:25
  smtp_from: alertmanager@example.org
templates:
  - templates/*.tmpl
  - extra/*.tmpl
route:
  receiver: team-ops
  group_by: [alertname, cluster]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 3h
  routes:
    - matchers:
        - severity = "page"
        - team=~"db|storage"
      receiver: pager
      continue: true
    - match:
        service: database
      match_re:
        instance: db-.*
      receiver: team-db
      group_by: ['...']
      routes:
        - matchers: ['{env="prod", severity!="info"}']
          receiver: pager
          mute_time_intervals: [offhours]
          active_time_intervals: [business]
    - receiver: chat
      matchers: [team = frontend]
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname, cluster]
  - source_match:
      severity: page
    target_match_re:
      severity: warning|info
    equal: [cluster]
time_intervals:
  - name: business
    time_intervals:
      - weekdays: ['monday:friday']
        times:
          - start_time: "09:00"
            end_time: "17:00"
        location: Europe/Berlin
mute_time_intervals:
  - name: offhours
    time_intervals:
      - weekdays: [saturday, sunday]
      - times: [{start_time: "00:00", end_time: "06:00"}, {start_time: "22:00", end_time: "24:00"}]
        days_of_month: ['1:7', '-3:-1']
        months: ['december', '1:2']
        years: ['2024:2030']
receivers:
  - name: team-ops
    email_configs:
      - to: ops@example.org
  - name: pager
    pagerduty_configs:
      - routing_key: )") + pd_key + R"(
        description: '{{ .CommonAnnotations.summary }}'
        severity: critical
        class: database
        details:
          firing: '{{ .Alerts.Firing | len }}'
        links:
          - href: https://runbooks.example.org
            text: Runbook
        images:
          - src: https://example.org/graph.png
            alt: graph
            href: https://example.org
  - name: team-db
    slack_configs:
      - channel: '#db'
        send_resolved: true
        title: '{{ .CommonLabels.alertname }}'
        short_fields: true
        fields:
          - title: Cluster
            value: '{{ .CommonLabels.cluster }}'
          - title: Summary
            value: '{{ .CommonAnnotations.summary }}'
            short: false
        actions:
          - type: button
            text: Runbook
            url: https://runbooks.example.org
  - name: chat
    webhook_configs:
      - url: http://127.0.0.1:5001/hook
        max_alerts: 20
  - name: blackhole
)";
    const auto result = load_text(text, dir.path().string());
    INFO(result.errors.to_string());
    REQUIRE(result.errors.empty());

    const routing_config& config = result.config;
    CHECK(config.present);
    CHECK(config.global.resolve_timeout == 10min);
    CHECK(config.global.external_url.empty());
    CHECK(config.global.slack_api_url.origin == "inline");
    CHECK(contains(result.warnings, "am.yml:4:3: global.smtp_smarthost has no effect in tocsin"));
    CHECK(contains(result.warnings, "receivers[0].email_configs: tocsin does not deliver"));

    REQUIRE(config.template_files.size() == 2);
    CHECK(config.template_files[0] == (dir.path() / "templates/a.tmpl").string());
    CHECK(config.template_files[1] == (dir.path() / "templates/b.tmpl").string());

    const route_config& root = config.root;
    CHECK(root.receiver == "team-ops");
    CHECK(root.group_by == std::vector<std::string>{"alertname", "cluster"});
    CHECK(root.repeat_interval == 3h);
    REQUIRE(root.routes.size() == 3);

    const route_config& page = child(root, 0);
    CHECK(page.continue_matching);
    CHECK(keys_of(page.matchers) == R"(severity="page",team=~"db|storage")");
    const route_config& db = child(root, 1);
    CHECK_FALSE(db.continue_matching);
    CHECK(db.group_by_all);
    CHECK(db.group_by.empty());
    CHECK(keys_of(db.matchers) == R"(instance=~"db-.*",service="database")");
    // match_re values are anchored, as in Alertmanager.
    CHECK(db.matchers[0].matches("db-1"));
    CHECK_FALSE(db.matchers[0].matches("old-db-1"));
    const route_config& prod = child(db, 0);
    CHECK(keys_of(prod.matchers) == R"(env="prod",severity!="info")");
    CHECK(prod.mute_time_intervals == std::vector<std::string>{"offhours"});
    CHECK(prod.active_time_intervals == std::vector<std::string>{"business"});
    CHECK(keys_of(child(root, 2).matchers) == R"(team="frontend")");

    REQUIRE(config.inhibit_rules.size() == 2);
    CHECK(keys_of(config.inhibit_rules[0].source_matchers) == R"(severity="critical")");
    CHECK(config.inhibit_rules[0].equal == std::vector<std::string>{"alertname", "cluster"});
    CHECK(keys_of(config.inhibit_rules[1].source_matchers) == R"(severity="page")");
    CHECK(keys_of(config.inhibit_rules[1].target_matchers) == R"(severity=~"warning|info")");
    CHECK(config.inhibit_rules[1].line == 38);

    REQUIRE(config.time_intervals.size() == 2);
    CHECK(config.time_intervals[0].name == "business");
    CHECK(config.time_intervals[1].name == "offhours");

    REQUIRE(config.receivers.size() == 5);
    const receiver_config* pager = config.find_receiver("pager");
    REQUIRE(pager != nullptr);
    REQUIRE(pager->pagerduty.size() == 1);
    const pagerduty_config& pd = pager->pagerduty[0];
    CHECK(pd.routing_key.value == pd_key);
    CHECK(pd.url == "https://events.pagerduty.com/v2/enqueue");
    CHECK(pd.class_name == "database");
    CHECK(pd.severity == "critical");
    REQUIRE(pd.details.size() == 1);
    CHECK(pd.details[0].first == "firing");
    REQUIRE(pd.links.size() == 1);
    CHECK(pd.links[0].text == "Runbook");
    REQUIRE(pd.images.size() == 1);
    CHECK(pd.images[0].alt == "graph");

    const receiver_config* team_db = config.find_receiver("team-db");
    REQUIRE(team_db != nullptr);
    REQUIRE(team_db->slack.size() == 1);
    const slack_config& slack = team_db->slack[0];
    CHECK(slack.api_url.value == "https://hooks.slack.com/services/T000/B000/XXXX");
    CHECK(slack.send_resolved);
    CHECK(slack.channel == "#db");
    REQUIRE(slack.fields.size() == 2);
    CHECK(slack.fields[0].is_short);
    CHECK_FALSE(slack.fields[1].is_short);
    REQUIRE(slack.actions.size() == 1);
    CHECK(slack.actions[0].url == "https://runbooks.example.org");

    const receiver_config* chat = config.find_receiver("chat");
    REQUIRE(chat != nullptr);
    REQUIRE(chat->webhooks.size() == 1);
    CHECK(chat->webhooks[0].max_alerts == 20);
    CHECK(chat->webhooks[0].send_resolved);
    CHECK(config.find_receiver("blackhole") != nullptr);
}

TEST_CASE("routing config without route is not present")
{
    const auto result = load_text("receivers: [{name: a}]\n");
    CHECK(result.errors.empty());
    CHECK_FALSE(result.config.present);
    CHECK(result.config.root.routes.empty());
}

TEST_CASE("routing child routes inherit from parents")
{
    const auto result = load_text(R"(route:
  receiver: root
  group_by: [alertname]
  group_wait: 10s
  group_interval: 2m
  repeat_interval: 1h
  dedup_scope: alert
  routes:
    - matchers: [team="db"]
      routes:
        - matchers: [severity="page"]
          receiver: pager
          group_wait: 0s
          group_by: [cluster]
    - matchers: [team="web"]
      dedup_scope: group
      repeat_interval: 4h
receivers: [{name: root}, {name: pager}]
)");
    INFO(result.errors.to_string());
    REQUIRE(result.errors.empty());
    const route_config& root = result.config.root;
    const route_config& db = child(root, 0);
    CHECK(db.receiver == "root");
    CHECK(db.group_by == std::vector<std::string>{"alertname"});
    CHECK(db.group_wait == 10s);
    CHECK(db.group_interval == 2min);
    CHECK(db.repeat_interval == 1h);
    CHECK(db.dedup == dedup_scope::alert);
    const route_config& page = child(db, 0);
    CHECK(page.receiver == "pager");
    CHECK(page.group_wait == 0s);
    CHECK(page.group_by == std::vector<std::string>{"cluster"});
    CHECK(page.group_interval == 2min);
    CHECK(page.dedup == dedup_scope::alert);
    const route_config& web = child(root, 1);
    CHECK(web.dedup == dedup_scope::group);
    CHECK(web.repeat_interval == 4h);
    CHECK(web.group_wait == 10s);
}

TEST_CASE("routing defaults follow Alertmanager")
{
    const auto result = load_text("route: {receiver: a}\nreceivers: [{name: a}]\n");
    REQUIRE(result.errors.empty());
    CHECK(result.config.root.group_wait == 30s);
    CHECK(result.config.root.group_interval == 5min);
    CHECK(result.config.root.repeat_interval == 4h);
    CHECK(result.config.root.dedup == dedup_scope::group);
    CHECK(result.config.global.resolve_timeout == 5min);
}

TEST_CASE("routing keys follow matchers and number equal siblings")
{
    const auto result = load_text(R"(route:
  receiver: a
  routes:
    - matchers: [team="db"]
      routes:
        - match_re: {severity: "page|critical"}
    - matchers: [severity="page", team="web"]
    - match: {team: web, severity: page}
      routes:
        - receiver: a
    - receiver: a
receivers: [{name: a}]
)");
    INFO(result.errors.to_string());
    REQUIRE(result.errors.empty());
    const route_config& root = result.config.root;
    CHECK(root.key == "{}");
    CHECK(child(root, 0).key == R"({}/{team="db"})");
    CHECK(child(child(root, 0), 0).key == R"({}/{team="db"}/{severity=~"page|critical"})");
    CHECK(child(root, 1).key == R"({}/{severity="page",team="web"})");
    // Same matchers as the sibling before it, in another style and order.
    CHECK(child(root, 2).key == R"({}/{severity="page",team="web"}#2)");
    CHECK(child(child(root, 2), 0).key == R"({}/{severity="page",team="web"}#2/{})");
    CHECK(child(root, 3).key == "{}/{}");
}

TEST_CASE("routing key numbers the second of two equal siblings")
{
    const auto result = load_text(R"(route:
  receiver: a
  routes:
    - {matchers: [team="db"], receiver: a}
    - {matchers: [team="db"], receiver: b}
receivers: [{name: a}, {name: b}]
)");
    REQUIRE(result.errors.empty());
    CHECK(child(result.config.root, 0).key == R"({}/{team="db"})");
    CHECK(child(result.config.root, 1).key == R"({}/{team="db"}#1)");
}

TEST_CASE("routing matchers accept Alertmanager matcher syntax")
{
    const auto result = load_text(R"(route:
  receiver: a
  routes:
    - matchers: ['{a="1",b!~"x|y"}', 'c =~ d|e', "'f' != g"]
receivers: [{name: a}]
)");
    INFO(result.errors.to_string());
    REQUIRE(result.errors.empty());
    const route_config& r = child(result.config.root, 0);
    CHECK(keys_of(r.matchers) == R"(a="1",b!~"x|y",c=~"d|e",f!="g")");
    CHECK(r.matchers[2].matches("e"));
    CHECK_FALSE(r.matchers[2].matches("de"));
}

TEST_CASE("routing errors name the position")
{
    struct error_case {
        const char* name;
        std::string text;
        std::string expected;
    };
    const std::vector<error_case> cases = {
        {"unknown receiver", "route:\n  receiver: nobody\nreceivers: [{name: a}]\n",
         "am.yml:2:13: route.receiver names receiver \"nobody\", which is not defined; defined receivers: a"},
        {"unknown receiver in a child",
         "route:\n  receiver: a\n  routes:\n    - receiver: b\nreceivers: [{name: a}]\n",
         "am.yml:4:17: route.routes[0].receiver names receiver \"b\""},
        {"duplicate receiver", "route: {receiver: a}\nreceivers:\n  - name: a\n  - name: a\n",
         "am.yml:4:11: receiver \"a\" is defined twice; the first is at line 3"},
        {"empty receiver name", "receivers:\n  - name: ''\n", "am.yml:2:11: empty receivers[0].name"},
        {"receiver without name", "receivers:\n  - webhook_configs: []\n", "am.yml:2:5: receivers[0] has no name"},
        {"unknown route key", "route:\n  receiver: a\n  group_wiat: 1m\nreceivers: [{name: a}]\n",
         "am.yml:3:3: unknown field \"group_wiat\" in route"},
        {"unknown receiver kind", "receivers:\n  - name: a\n    slack_config: []\n",
         "am.yml:3:5: unknown field \"slack_config\" in receivers[0]"},
        {"root without receiver", "route:\n  group_wait: 1m\n", "am.yml:2:3: the root route has no receiver"},
        {"root with matchers", "route:\n  receiver: a\n  matchers: [a=\"b\"]\nreceivers: [{name: a}]\n",
         "am.yml:3:13: the root route must not have matchers"},
        {"root with continue", "route:\n  receiver: a\n  continue: true\nreceivers: [{name: a}]\n",
         "am.yml:3:13: the root route must not have continue"},
        {"root with mute intervals",
         "route:\n  receiver: a\n  mute_time_intervals: [x]\nreceivers: [{name: a}]\n"
         "time_intervals: [{name: x}]\n",
         "am.yml:3:24: the root route must not have mute_time_intervals"},
        {"zero group_interval", "route:\n  receiver: a\n  group_interval: 0s\nreceivers: [{name: a}]\n",
         "am.yml:3:19: route.group_interval must be greater than 0"},
        {"zero repeat_interval", "route:\n  receiver: a\n  repeat_interval: 0s\nreceivers: [{name: a}]\n",
         "am.yml:3:20: route.repeat_interval must be greater than 0"},
        {"bad duration", "route:\n  receiver: a\n  group_wait: soon\nreceivers: [{name: a}]\n",
         "am.yml:3:15: route.group_wait:"},
        {"unknown time interval",
         "route:\n  receiver: a\n  routes:\n    - mute_time_intervals: [nights]\nreceivers: [{name: a}]\n",
         "am.yml:4:29: route.routes[0].mute_time_intervals names time interval \"nights\", which is not defined"},
        {"invalid matcher",
         "route:\n  receiver: a\n  routes:\n    - matchers: ['team=~\"(\"']\nreceivers: [{name: a}]\n",
         "am.yml:4:18: invalid matcher in route.routes[0].matchers"},
        {"invalid match_re",
         "route:\n  receiver: a\n  routes:\n    - match_re: {team: '('}\nreceivers: [{name: a}]\n",
         "am.yml:4:24: invalid route.routes[0].match_re entry"},
        {"group_by mixes all", "route:\n  receiver: a\n  group_by: ['...', alertname]\nreceivers: [{name: a}]\n",
         "am.yml:3:13: route.group_by mixes '...' with label names"},
        {"group_by repeats a label", "route:\n  receiver: a\n  group_by: [a, a]\nreceivers: [{name: a}]\n",
         "am.yml:3:17: label \"a\" appears twice in route.group_by"},
        {"bad dedup_scope", "route:\n  receiver: a\n  dedup_scope: rule\nreceivers: [{name: a}]\n",
         "am.yml:3:16: invalid route.dedup_scope \"rule\""},
        {"bad continue", "route:\n  receiver: a\n  routes: [{continue: yes}]\nreceivers: [{name: a}]\n",
         "am.yml:3:23: route.routes[0].continue must be true or false"},
        {"unknown inhibit key", "inhibit_rules:\n  - source_matcher: [a=\"b\"]\n",
         "am.yml:2:5: unknown field \"source_matcher\" in inhibit_rules[0]"},
        {"bad weekday", "time_intervals:\n  - name: x\n    time_intervals:\n      - weekdays: [mondays]\n",
         "am.yml:4:20: invalid time_intervals[0].time_intervals[0].weekdays entry \"mondays\""},
        {"weekday range reversed",
         "time_intervals:\n  - name: x\n    time_intervals:\n      - weekdays: ['friday:monday']\n",
         "am.yml:4:20: invalid time_intervals[0].time_intervals[0].weekdays range \"friday:monday\""},
        {"day of month zero", "time_intervals:\n  - name: x\n    time_intervals:\n      - days_of_month: ['0:5']\n",
         "am.yml:4:25: invalid time_intervals[0].time_intervals[0].days_of_month entry"},
        {"bad month", "time_intervals:\n  - name: x\n    time_intervals:\n      - months: [13]\n",
         "am.yml:4:18: invalid time_intervals[0].time_intervals[0].months entry \"13\""},
        {"times reversed",
         "time_intervals:\n  - name: x\n    time_intervals:\n      - times: [{start_time: '18:00', end_time: '08:00'}]\n",
         "am.yml:4:17: time_intervals[0].time_intervals[0].times[0]: start_time must be before end_time"},
        {"bad time", "time_intervals:\n  - name: x\n    time_intervals:\n      - times: [{start_time: '9am', end_time: '10:00'}]\n",
         "am.yml:4:30: invalid time_intervals[0].time_intervals[0].times[0].start_time \"9am\""},
        {"unknown location", "time_intervals:\n  - name: x\n    time_intervals:\n      - location: Mars/Olympus\n",
         "am.yml:4:19: unknown time zone \"Mars/Olympus\""},
        {"unknown time interval key", "time_intervals:\n  - name: x\n    time_intervals:\n      - weekday: [monday]\n",
         "am.yml:4:9: unknown field \"weekday\" in time_intervals[0].time_intervals[0]"},
        {"duplicate time interval", "time_intervals:\n  - name: x\nmute_time_intervals:\n  - name: x\n",
         "am.yml:4:11: time interval \"x\" is defined twice; the first is at line 2"},
        {"pagerduty service_key",
         "receivers:\n  - name: a\n    pagerduty_configs:\n      - service_key: abc\n",
         "am.yml:4:22: receivers[0].pagerduty_configs[0].service_key selects PagerDuty Events API v1, which tocsin "
         "does not support"},
        {"pagerduty without key", "receivers:\n  - name: a\n    pagerduty_configs:\n      - severity: info\n",
         "am.yml:4:9: receivers[0].pagerduty_configs[0] has no routing key"},
        {"webhook without url", "receivers:\n  - name: a\n    webhook_configs:\n      - send_resolved: false\n",
         "am.yml:4:9: receivers[0].webhook_configs[0] has no url"},
        {"webhook url not a URL", "receivers:\n  - name: a\n    webhook_configs:\n      - url: localhost:80\n",
         "am.yml:4:14: receivers[0].webhook_configs[0].url from inline is not an http or https URL"},
        {"slack without url", "receivers:\n  - name: a\n    slack_configs:\n      - channel: '#x'\n",
         "am.yml:4:9: receivers[0].slack_configs[0] has no Slack URL or token"},
        {"slack token without channel", "receivers:\n  - name: a\n    slack_configs:\n      - bot_token: xoxb-1\n",
         "am.yml:4:9: receivers[0].slack_configs[0] has a bot token but no channel"},
        {"two secret sources",
         "receivers:\n  - name: a\n    webhook_configs:\n      - url: http://x\n        url_env: HOOK\n",
         "am.yml:5:18: receivers[0].webhook_configs[0].url is set more than once "
         "(receivers[0].webhook_configs[0].url, receivers[0].webhook_configs[0].url_env); keep exactly one"},
        {"zero rate_limit",
         "receivers:\n  - name: a\n    webhook_configs:\n      - url: http://x\n        rate_limit: 0\n",
         "am.yml:5:21: receivers[0].webhook_configs[0].rate_limit must be a number of messages per second"},
        {"zero max_concurrency",
         "receivers:\n  - name: a\n    webhook_configs:\n      - url: http://x\n        max_concurrency: 0\n",
         "am.yml:5:26: receivers[0].webhook_configs[0].max_concurrency must be from 1"},
        {"unknown global key", "global:\n  slack_url: x\n", "am.yml:2:3: unknown field \"slack_url\" in global"},
        {"unknown console key", "receivers:\n  - name: a\n    console_configs: [{url: x}]\n",
         "am.yml:3:24: unknown field \"url\" in receivers[0].console_configs[0]"},
    };
    for (const auto& c : cases) {
        SECTION(c.name)
        {
            const auto result = load_text(c.text);
            INFO(result.errors.to_string());
            CHECK(contains(result.errors, c.expected));
        }
    }
}

TEST_CASE("routing warns when repeat_interval is not a multiple of group_interval")
{
    const auto result = load_text(R"(route:
  receiver: a
  group_interval: 5m
  repeat_interval: 7m
  routes:
    - matchers: [a="b"]
    - matchers: [a="c"]
      repeat_interval: 10m
receivers: [{name: a}]
)");
    REQUIRE(result.errors.empty());
    REQUIRE(result.warnings.size() == 1);
    CHECK(result.warnings.items()[0].to_string() ==
          "am.yml:4:20: route: repeat_interval 7m is not a multiple of group_interval 5m; reminders go out every 10m");
}

TEST_CASE("routing warns about a group_interval that breaks the default repeat")
{
    const auto result = load_text("route:\n  receiver: a\n  group_interval: 7m\nreceivers: [{name: a}]\n");
    REQUIRE(result.errors.empty());
    CHECK(contains(result.warnings, "am.yml:3:19: route: repeat_interval 4h is not a multiple of group_interval 7m; "
                                    "reminders go out every 4h5m"));
}

TEST_CASE("routing secrets come from files and environment variables")
{
    test::temp_dir dir;
    dir.write("pd.key", std::string(pd_key) + "\n");
    dir.write("slack.url", "  https://hooks.slack.com/services/T1/B1/file  \n");
    fake_environment()["HOOK_URL"] = "http://127.0.0.1:9/env";
    fake_environment()["SLACK_BOT"] = "xoxb-env-token";
    const auto result = load_text(R"(receivers:
  - name: a
    pagerduty_configs:
      - routing_key_file: pd.key
    slack_configs:
      - api_url_file: slack.url
      - bot_token_env: SLACK_BOT
        channel: C123
    webhook_configs:
      - url_env: HOOK_URL
)",
                                  dir.path().string());
    INFO(result.errors.to_string());
    REQUIRE(result.errors.empty());
    const receiver_config& r = result.config.receivers.at(0);
    CHECK(r.pagerduty.at(0).routing_key.value == pd_key);
    CHECK(r.pagerduty.at(0).routing_key.origin == "file " + (dir.path() / "pd.key").string());
    CHECK(r.slack.at(0).api_url.value == "https://hooks.slack.com/services/T1/B1/file");
    CHECK(r.slack.at(1).bot_token.value == "xoxb-env-token");
    CHECK(r.slack.at(1).bot_token.origin == "environment variable SLACK_BOT");
    CHECK(r.slack.at(1).api_url.empty());
    CHECK(r.webhooks.at(0).url.value == "http://127.0.0.1:9/env");
    CHECK(r.webhooks.at(0).url.origin == "environment variable HOOK_URL");
    fake_environment().clear();
}

TEST_CASE("routing secret errors name the file or variable")
{
    test::temp_dir dir;
    dir.write("empty.key", "\n");
    const auto result = load_text(R"(receivers:
  - name: a
    pagerduty_configs:
      - routing_key_env: PD_KEY_MISSING
      - routing_key_file: missing.key
      - routing_key_file: empty.key
)",
                                  dir.path().string());
    INFO(result.errors.to_string());
    CHECK(contains(result.errors, "am.yml:4:26: environment variable PD_KEY_MISSING named by "
                                  "receivers[0].pagerduty_configs[0].routing_key_env is not set"));
    CHECK(contains(result.errors, "am.yml:5:27: failed to read receivers[0].pagerduty_configs[1].routing_key_file " +
                                      (dir.path() / "missing.key").string() + ": No such file or directory"));
    CHECK(contains(result.errors, "am.yml:6:27: receivers[0].pagerduty_configs[2].routing_key_file " +
                                      (dir.path() / "empty.key").string() + " is empty"));
}

TEST_CASE("routing slack bot token sources")
{
    test::temp_dir dir;
    dir.write("token", "xoxb-file\n");
    const auto result = load_text(R"(global:
  slack_api_url_file: missing-is-not-read-here
receivers:
  - name: a
    slack_configs:
      - app_token: xoxb-app
        channel: '#a'
      - http_config:
          authorization:
            credentials_file: token
        channel: '#b'
      - app_token: xoxb-app
        bot_token: xoxb-bot
        channel: '#c'
)",
                                  dir.path().string());
    CHECK(contains(result.errors, "am.yml:2:23: failed to read global.slack_api_url_file"));
    CHECK(contains(result.errors, "am.yml:13:20: receivers[0].slack_configs[2].bot_token is set more than once"));
    const receiver_config& r = result.config.receivers.at(0);
    CHECK(r.slack.at(0).bot_token.value == "xoxb-app");
    CHECK(r.slack.at(1).bot_token.value == "xoxb-file");
    CHECK(r.slack.at(1).api_url.empty());
}

TEST_CASE("routing slack falls back to the global api url")
{
    fake_environment()["GLOBAL_HOOK"] = "unused";
    const auto result = load_text(R"(global:
  slack_api_url: https://hooks.slack.com/services/global
receivers:
  - name: a
    slack_configs: [{channel: '#a'}]
)");
    REQUIRE(result.errors.empty());
    CHECK(result.config.receivers.at(0).slack.at(0).api_url.value == "https://hooks.slack.com/services/global");
    fake_environment().clear();
}

TEST_CASE("routing delivery limits are read")
{
    const auto result = load_text(R"(receivers:
  - name: a
    slack_configs:
      - api_url: https://hooks.slack.com/services/x
        timeout: 5s
        rate_limit: 0.5
        burst: 3
        max_concurrency: 2
)");
    INFO(result.errors.to_string());
    REQUIRE(result.errors.empty());
    const delivery_limits& limits = result.config.receivers.at(0).slack.at(0).limits;
    CHECK(limits.timeout == 5s);
    CHECK(limits.rate_limit_per_second == 0.5);
    CHECK(limits.burst == 3);
    CHECK(limits.max_concurrency == 2);
}

TEST_CASE("routing warns about accepted keys without effect")
{
    const auto result = load_text(R"(global:
  http_config:
    follow_redirects: false
receivers:
  - name: a
    opsgenie_configs: [{api_key: x}]
    slack_configs:
      - api_url: https://hooks.slack.com/services/x
        image_url: https://example.org/i.png
    webhook_configs:
      - url: http://127.0.0.1:1/
        http_config:
          tls_config: {insecure_skip_verify: true}
)");
    INFO(result.errors.to_string());
    REQUIRE(result.errors.empty());
    CHECK(contains(result.warnings, "am.yml:3:5: global.http_config.follow_redirects has no effect in tocsin"));
    CHECK(contains(result.warnings, "am.yml:6:23: receivers[0].opsgenie_configs: tocsin does not deliver"));
    CHECK(contains(result.warnings, "am.yml:9:20: receivers[0].slack_configs[0].image_url has no effect in tocsin"));
    CHECK(contains(result.warnings,
                   "am.yml:13:11: receivers[0].webhook_configs[0].http_config.tls_config has no effect in tocsin"));
}

TEST_CASE("routing reads webhook bearer credentials and rejects other auth")
{
    const auto good = load_text(R"(receivers:
  - name: a
    webhook_configs:
      - url: http://127.0.0.1:1/
        http_config:
          authorization: {type: Bearer, credentials: hook-token}
)");
    INFO(good.errors.to_string());
    REQUIRE(good.errors.empty());
    CHECK(good.config.receivers[0].webhooks[0].bearer_token.value == "hook-token");

    const auto bad = load_text(R"(receivers:
  - name: a
    webhook_configs:
      - url: http://127.0.0.1:1/
        http_config:
          basic_auth: {username: u, password: p}
)");
    CHECK(contains(bad.errors, "am.yml:6:11: receivers[0].webhook_configs[0].http_config.basic_auth is not supported"));
}

TEST_CASE("routing warns about a routing key of the wrong length")
{
    const auto result = load_text("receivers:\n  - name: a\n    pagerduty_configs: [{routing_key: short}]\n");
    REQUIRE(result.errors.empty());
    INFO(result.warnings.to_string());
    CHECK(contains(result.warnings, "am.yml:3:39: receivers[0].pagerduty_configs[0].routing_key from inline has 5 "
                                    "characters; PagerDuty rejects"));
}

TEST_CASE("routing diagnostics never contain secret values")
{
    test::temp_dir dir;
    dir.write("hook.url", "file-secret-not-a-url\n");
    fake_environment()["BAD_TOKEN"] = "env-secret-value";
    fake_environment()["BAD_KEY"] = "env-secret-key";
    const auto result = load_text(R"(global:
  slack_api_url: inline-global-secret
receivers:
  - name: a
    pagerduty_configs:
      - routing_key: inline-pd-secret
      - routing_key_env: BAD_KEY
      - routing_key: inline-pd-both
        routing_key_file: hook.url
    webhook_configs:
      - url_file: hook.url
      - url: inline-webhook-secret
    slack_configs:
      - bot_token_env: BAD_TOKEN
      - api_url: inline-slack-secret
        app_token: inline-app-secret
        channel: '#x'
      - http_config:
          authorization: {type: Basic, credentials: inline-credentials-secret}
)",
                                  dir.path().string());
    // Both lists must hold something, or the check below proves nothing.
    CHECK(result.errors.size() >= 5);
    CHECK(result.warnings.size() >= 2);
    const std::string text = result.errors.to_string() + result.warnings.to_string();
    INFO(text);
    for (const char* value : {"inline-global-secret", "inline-pd-secret", "env-secret-key", "inline-pd-both",
                              "file-secret-not-a-url", "inline-webhook-secret", "env-secret-value",
                              "inline-slack-secret", "inline-app-secret", "inline-credentials-secret"}) {
        CHECK(text.find(value) == std::string::npos);
    }
    fake_environment().clear();
}

TEST_CASE("routing keys list the top-level keys")
{
    const auto& keys = routing_keys();
    for (const char* key :
         {"global", "route", "receivers", "inhibit_rules", "time_intervals", "mute_time_intervals", "templates"}) {
        CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
    }
}

TEST_CASE("routing warns about equal labels the inhibit source does not require")
{
    auto result = load_text(R"(
route: {receiver: a}
receivers: [{name: a}]
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname, cluster]
  - source_matchers: [severity="critical", 'cluster=~".+"']
    target_matchers: [severity="warning"]
    equal: [cluster]
)");
    REQUIRE(result.errors.empty());
    REQUIRE(result.warnings.size() == 1);
    CHECK(result.warnings.items()[0].to_string() ==
          "am.yml:5:5: inhibit_rules[0]: the source matchers do not require the equal labels alertname, cluster, so a "
          "source alert without them inhibits every target alert without them; add source matchers such as "
          "alertname=~\".+\" if that is not intended");
}

TEST_CASE("routing reads flap_detection and rejects settings that never stop")
{
    auto ok = load_text("route: {receiver: a}\nreceivers: [{name: a}]\n"
                        "flap_detection: {window: 10m, start_at_changes: 5, stop_at_changes: 2}\n");
    REQUIRE(ok.errors.empty());
    CHECK(ok.config.flap_detection.enabled());
    CHECK(ok.config.flap_detection.window == std::chrono::minutes(10));
    CHECK(ok.config.flap_detection.start_at_changes == 5);
    CHECK(ok.config.flap_detection.stop_at_changes == 2);

    auto never_stops = load_text("route: {receiver: a}\nreceivers: [{name: a}]\n"
                                 "flap_detection: {window: 10m, start_at_changes: 3, stop_at_changes: 3}\n");
    CHECK(contains(never_stops.errors, "stop_at_changes (3) must be less than start_at_changes (3)"));
    auto partial = load_text("route: {receiver: a}\nreceivers: [{name: a}]\nflap_detection: {window: 10m}\n");
    CHECK(contains(partial.errors, "flap_detection needs window, start_at_changes and stop_at_changes"));
    auto off = load_text("route: {receiver: a}\nreceivers: [{name: a}]\n");
    CHECK_FALSE(off.config.flap_detection.enabled());
}

TEST_CASE("routing reads escalation steps, inherits them and rejects steps out of order")
{
    auto ok = load_text("route:\n"
                        "  receiver: oncall\n"
                        "  escalate: [{after: 15m, receiver: lead}, {after: 45m, receiver: director}]\n"
                        "  routes:\n"
                        "    - matchers: ['team=\"db\"']\n"
                        "    - matchers: ['team=\"web\"']\n"
                        "      escalate: []\n"
                        "receivers: [{name: oncall}, {name: lead}, {name: director}]\n");
    REQUIRE(ok.errors.empty());
    REQUIRE(ok.config.root.escalate.size() == 2);
    CHECK(ok.config.root.escalate[0].after == 15min);
    CHECK(ok.config.root.escalate[0].receiver == "lead");
    CHECK(ok.config.root.escalate[1].after == 45min);
    CHECK(ok.config.root.escalate[1].receiver == "director");
    CHECK(child(ok.config.root, 0).escalate.size() == 2);
    CHECK(child(ok.config.root, 1).escalate.empty());

    auto backwards = load_text("route: {receiver: a, escalate: [{after: 30m, receiver: b}, {after: 10m, receiver: b}]}\n"
                               "receivers: [{name: a}, {name: b}]\n");
    CHECK(contains(backwards.errors, "route.escalate[1].after (10m) must be longer than the step before it (30m)"));
    auto unknown = load_text("route: {receiver: a, escalate: [{after: 5m, receiver: boss}]}\nreceivers: [{name: a}]\n");
    CHECK(contains(unknown.errors, "route.escalate[0].receiver names receiver \"boss\", which is not defined"));
    auto partial = load_text("route: {receiver: a, escalate: [{after: 5m}]}\nreceivers: [{name: a}]\n");
    CHECK(contains(partial.errors, "route.escalate[0] needs after and receiver"));
    auto zero = load_text("route: {receiver: a, escalate: [{after: 0s, receiver: a}]}\nreceivers: [{name: a}]\n");
    CHECK(contains(zero.errors, "route.escalate[0].after must be greater than 0s"));
    auto itself = load_text("route: {receiver: a, escalate: [{after: 5m, receiver: a}]}\nreceivers: [{name: a}]\n");
    CHECK(itself.errors.empty());
    CHECK(contains(itself.warnings, "route.escalate[0].receiver is the route's own receiver \"a\""));
    CHECK_FALSE(contains(ok.warnings, "own receiver"));
}

TEST_CASE("routing reads a receiver's rate_limit and storm_guard and names the fix for bad ones")
{
    auto ok = load_text("route: {receiver: a}\n"
                        "receivers:\n"
                        "  - name: a\n"
                        "    rate_limit: {max_notifications: 20, window: 1h}\n"
                        "    storm_guard: {max_new_alerts: 50, window: 5m}\n");
    REQUIRE(ok.errors.empty());
    const receiver_config& a = ok.config.receivers.at(0);
    CHECK(a.rate_limit.enabled());
    CHECK(a.rate_limit.max_notifications == 20);
    CHECK(a.rate_limit.window == 1h);
    CHECK(a.storm_guard.enabled());
    CHECK(a.storm_guard.max_new_alerts == 50);
    CHECK(a.storm_guard.window == 5min);

    auto plain = load_text("route: {receiver: a}\nreceivers: [{name: a}]\n");
    CHECK_FALSE(plain.config.receivers.at(0).rate_limit.enabled());
    CHECK_FALSE(plain.config.receivers.at(0).storm_guard.enabled());

    auto number = load_text("route: {receiver: a}\nreceivers: [{name: a, rate_limit: 5}]\n");
    CHECK(contains(number.errors, "receivers[0].rate_limit must be a mapping, such as {max_notifications: 20, window: 1h}"));
    auto missing = load_text("route: {receiver: a}\nreceivers: [{name: a, storm_guard: {window: 5m}}]\n");
    CHECK(contains(missing.errors, "receivers[0].storm_guard needs max_new_alerts and window"));
    auto zero = load_text("route: {receiver: a}\nreceivers: [{name: a, storm_guard: {max_new_alerts: 0, window: 5m}}]\n");
    CHECK(contains(zero.errors, "receivers[0].storm_guard.max_new_alerts is 0; expected 1 to 1000000"));
    auto typo = load_text("route: {receiver: a}\nreceivers: [{name: a, rate_limit: {max: 5, window: 1h}}]\n");
    CHECK_FALSE(typo.errors.empty());
}
