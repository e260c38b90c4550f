// Receivers and their secrets: webhook_configs, pagerduty_configs, slack_configs and
// console_configs, plus the Alertmanager integrations tocsin accepts but does not deliver to.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "routing/config_loading.hpp"
#include "rules/file_read.hpp"
#include "rules/promql_lexer.hpp"

namespace tocsin::routing_detail {

namespace {

using yaml::checker;

// Largest secret file read: a routing key, token or URL is far smaller.
constexpr std::size_t max_secret_file_bytes = 64u << 10;

std::string trim_space(std::string text)
{
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
        text.pop_back();
    }
    std::size_t start = 0;
    while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) {
        ++start;
    }
    text.erase(0, start);
    return text;
}

// Receiver kinds of Alertmanager that tocsin reads but does not deliver to.
constexpr std::string_view undelivered_kinds[] = {
    "email_configs",    "opsgenie_configs",  "wechat_configs", "victorops_configs",  "sns_configs",
    "telegram_configs", "webex_configs",     "discord_configs", "msteams_configs",   "msteamsv2_configs",
    "jira_configs",     "rocketchat_configs", "pushover_configs", "incidentio_configs",
};

class receiver_loader {
public:
    receiver_loader(load_context& ctx, const global_config& global) : ctx_(ctx), check_(ctx.check), global_(global) {}

    void load(const YAML::Node& node, std::vector<receiver_config>& out);

private:
    void load_receiver(const YAML::Node& node, const std::string& field, receiver_config& out);
    void load_webhook(const YAML::Node& node, const std::string& field, webhook_config& out);
    void load_pagerduty(const YAML::Node& node, const std::string& field, pagerduty_config& out);
    void load_slack(const YAML::Node& node, const std::string& field, slack_config& out);
    void load_console(const YAML::Node& node, const std::string& field, console_config& out);
    void load_limits(const YAML::Node& node, const std::string& field, delivery_limits& out);
    // Reads a {<count_key>: N, window: D} mapping; false when it is malformed.
    bool load_count_window(const YAML::Node& node, const std::string& field, std::string_view count_key,
                           std::uint32_t& count, milliseconds& window);
    void read_string(const YAML::Node& map, std::string_view key, const std::string& field, std::string& out);
    void read_bool(const YAML::Node& map, std::string_view key, const std::string& field, bool& out);
    void warn_unused(const YAML::Node& map, std::initializer_list<std::string_view> keys, const std::string& field);

    template <typename T, typename Load>
    void load_list(const YAML::Node& receiver, std::string_view key, const std::string& field, std::vector<T>& out,
                   Load load);

    load_context& ctx_;
    checker& check_;
    const global_config& global_;
};

void receiver_loader::read_string(const YAML::Node& map, std::string_view key, const std::string& field,
                                  std::string& out)
{
    const YAML::Node n = checker::child(map, key);
    if (!n.IsDefined() || n.IsNull()) {
        return;
    }
    if (auto value = check_.string(n, fmt::format("{}.{}", field, key))) {
        out = *value;
    }
}

void receiver_loader::read_bool(const YAML::Node& map, std::string_view key, const std::string& field, bool& out)
{
    const YAML::Node n = checker::child(map, key);
    if (!n.IsDefined()) {
        return;
    }
    if (auto value = check_.boolean(n, fmt::format("{}.{}", field, key))) {
        out = *value;
    }
}

void receiver_loader::warn_unused(const YAML::Node& map, std::initializer_list<std::string_view> keys,
                                  const std::string& field)
{
    for (auto key : keys) {
        const YAML::Node n = checker::child(map, key);
        if (n.IsDefined()) {
            ctx_.warn(n, fmt::format("{}.{} has no effect in tocsin; it is accepted so that an Alertmanager config "
                                     "loads unchanged",
                                     field, key));
        }
    }
}

template <typename T, typename Load>
void receiver_loader::load_list(const YAML::Node& receiver, std::string_view key, const std::string& field,
                                std::vector<T>& out, Load load)
{
    const YAML::Node list = checker::child(receiver, key);
    if (!list.IsDefined() || list.IsNull()) {
        return;
    }
    const std::string list_field = fmt::format("{}.{}", field, key);
    if (!check_.expect_sequence(list, list_field)) {
        return;
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
        T config;
        (this->*load)(list[i], fmt::format("{}[{}]", list_field, i), config);
        out.push_back(std::move(config));
    }
}

void receiver_loader::load(const YAML::Node& node, std::vector<receiver_config>& out)
{
    if (!check_.expect_sequence(node, "receivers")) {
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        receiver_config receiver;
        load_receiver(item, fmt::format("receivers[{}]", i), receiver);
        if (receiver.name.empty()) {
            continue;
        }
        const auto previous = std::find_if(out.begin(), out.end(),
                                           [&](const receiver_config& r) { return r.name == receiver.name; });
        if (previous != out.end()) {
            check_.error(checker::child(item, "name"),
                         fmt::format("receiver {} is defined twice; the first is at line {}; rename one or merge them",
                                     promql::quote(receiver.name), previous->line));
            continue;
        }
        out.push_back(std::move(receiver));
    }
}

void receiver_loader::load_receiver(const YAML::Node& node, const std::string& field, receiver_config& out)
{
    out.line = node.Mark().line + 1;
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field,
                      {"name", "webhook_configs", "pagerduty_configs", "slack_configs", "console_configs",
                       "email_configs", "opsgenie_configs", "wechat_configs", "victorops_configs", "sns_configs",
                       "telegram_configs", "webex_configs", "discord_configs", "msteams_configs", "msteamsv2_configs",
                       "jira_configs", "rocketchat_configs", "pushover_configs", "incidentio_configs", "rate_limit",
                       "storm_guard"});

    const YAML::Node name = checker::child(node, "name");
    if (!name.IsDefined()) {
        check_.error(node, fmt::format("{} has no name; routes refer to receivers by name", field));
    } else if (auto value = check_.string(name, field + ".name")) {
        if (value->empty()) {
            check_.error(name, fmt::format("empty {}.name; routes refer to receivers by name", field));
        }
        out.name = *value;
    }

    load_list(node, "webhook_configs", field, out.webhooks, &receiver_loader::load_webhook);
    load_list(node, "pagerduty_configs", field, out.pagerduty, &receiver_loader::load_pagerduty);
    load_list(node, "slack_configs", field, out.slack, &receiver_loader::load_slack);
    load_list(node, "console_configs", field, out.console, &receiver_loader::load_console);
    if (const YAML::Node n = checker::child(node, "rate_limit"); n.IsDefined() && !n.IsNull()) {
        load_count_window(n, field + ".rate_limit", "max_notifications", out.rate_limit.max_notifications,
                          out.rate_limit.window);
    }
    if (const YAML::Node n = checker::child(node, "storm_guard"); n.IsDefined() && !n.IsNull()) {
        load_count_window(n, field + ".storm_guard", "max_new_alerts", out.storm_guard.max_new_alerts,
                          out.storm_guard.window);
    }

    for (auto kind : undelivered_kinds) {
        const YAML::Node list = checker::child(node, kind);
        if (!list.IsDefined() || list.IsNull()) {
            continue;
        }
        if (check_.expect_sequence(list, fmt::format("{}.{}", field, kind))) {
            ctx_.warn(list, fmt::format("{}.{}: tocsin does not deliver this kind of notification, so these entries "
                                        "are ignored; tocsin delivers webhook_configs, pagerduty_configs, "
                                        "slack_configs and console_configs",
                                        field, kind));
        }
    }
}

bool receiver_loader::load_count_window(const YAML::Node& node, const std::string& field, std::string_view count_key,
                                        std::uint32_t& count, milliseconds& window)
{
    const std::string example = fmt::format("such as {{{}: 20, window: 1h}}", count_key);
    if (!node.IsMap()) {
        check_.error(node, fmt::format("{} must be a mapping, {}", field, example));
        return false;
    }
    check_.check_keys(node, field, {count_key, std::string_view("window")});
    const YAML::Node n = checker::child(node, count_key);
    const YAML::Node w = checker::child(node, "window");
    if (!n.IsDefined() || !w.IsDefined()) {
        check_.error(node, fmt::format("{} needs {} and window, {}", field, count_key, example));
        return false;
    }
    auto value = check_.count(n, fmt::format("{}.{}", field, count_key));
    auto span = check_.duration(w, field + ".window");
    if (!value || !span) {
        return false;
    }
    if (*value < 1 || *value > 1'000'000) {
        check_.error(n, fmt::format("{}.{} is {}; expected 1 to 1000000", field, count_key, *value));
        return false;
    }
    if (span->count() <= 0) {
        check_.error(w, fmt::format("{}.window must be greater than 0s, {}", field, example));
        return false;
    }
    count = static_cast<std::uint32_t>(*value);
    window = *span;
    return true;
}

void receiver_loader::load_limits(const YAML::Node& node, const std::string& field, delivery_limits& out)
{
    if (const YAML::Node n = checker::child(node, "timeout"); n.IsDefined()) {
        if (auto d = check_.duration(n, field + ".timeout")) {
            if (d->count() <= 0) {
                check_.error(n, fmt::format("{}.timeout must be greater than 0; omit it for the default of 10s", field));
            } else {
                out.timeout = *d;
            }
        }
    }
    if (const YAML::Node n = checker::child(node, "rate_limit"); n.IsDefined()) {
        double value = 0;
        bool ok = false;
        if (n.IsScalar()) {
            const std::string& text = n.Scalar();
            auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
            ok = !text.empty() && ec == std::errc() && ptr == text.data() + text.size() && std::isfinite(value) &&
                 value > 0;
        }
        if (!ok) {
            check_.error(n, fmt::format("{}.rate_limit must be a number of messages per second greater than 0, "
                                        "such as 1 or 0.5",
                                        field));
        } else {
            out.rate_limit_per_second = value;
        }
    }
    for (const auto& [key, target] : {std::pair<std::string_view, std::uint32_t*>{"burst", &out.burst},
                                      std::pair<std::string_view, std::uint32_t*>{"max_concurrency",
                                                                                  &out.max_concurrency}}) {
        const YAML::Node n = checker::child(node, key);
        if (!n.IsDefined()) {
            continue;
        }
        auto value = check_.count(n, fmt::format("{}.{}", field, key));
        if (!value) {
            continue;
        }
        if (*value == 0 || *value > std::numeric_limits<std::uint32_t>::max()) {
            check_.error(n, fmt::format("{}.{} must be from 1 to {}; omit it for the default", field, key,
                                        std::numeric_limits<std::uint32_t>::max()));
            continue;
        }
        *target = static_cast<std::uint32_t>(*value);
    }
}

void receiver_loader::load_webhook(const YAML::Node& node, const std::string& field, webhook_config& out)
{
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field,
                      {"send_resolved", "url", "url_file", "url_env", "max_alerts", "http_config", "timeout",
                       "rate_limit", "burst", "max_concurrency"});
    read_bool(node, "send_resolved", field, out.send_resolved);

    std::vector<secret_source> sources;
    collect_secret_sources(node, field + ".", "url", "url_file", "url_env", sources);
    if (sources.empty()) {
        check_.error(node, fmt::format("{} has no url; set url, url_file or url_env", field));
    } else if (read_secret(sources, ctx_, field + ".url", out.url)) {
        check_secret_url(out.url, sources.front().node, ctx_, field + ".url");
    }

    if (const YAML::Node n = checker::child(node, "max_alerts"); n.IsDefined()) {
        if (auto value = check_.count(n, field + ".max_alerts")) {
            out.max_alerts = *value;
        }
    }
    if (const YAML::Node n = checker::child(node, "http_config"); n.IsDefined()) {
        std::vector<secret_source> token_sources;
        load_http_config(n, ctx_, field + ".http_config", &token_sources);
        read_secret(token_sources, ctx_, field + ".http_config.authorization", out.bearer_token);
    }
    load_limits(node, field, out.limits);
}

void receiver_loader::load_pagerduty(const YAML::Node& node, const std::string& field, pagerduty_config& out)
{
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field,
                      {"send_resolved", "routing_key", "routing_key_file", "routing_key_env", "service_key",
                       "service_key_file", "url", "client", "client_url", "description", "severity", "source",
                       "class", "component", "group", "details", "links", "images", "http_config", "timeout",
                       "rate_limit", "burst", "max_concurrency"});
    read_bool(node, "send_resolved", field, out.send_resolved);

    bool has_service_key = false;
    for (const char* key : {"service_key", "service_key_file"}) {
        if (const YAML::Node n = checker::child(node, key); n.IsDefined()) {
            has_service_key = true;
            check_.error(n, fmt::format("{}.{} selects PagerDuty Events API v1, which tocsin does not support; "
                                        "create an Events API v2 integration on the PagerDuty service and set its "
                                        "integration key as routing_key, routing_key_file or routing_key_env",
                                        field, key));
        }
    }

    std::vector<secret_source> sources;
    collect_secret_sources(node, field + ".", "routing_key", "routing_key_file", "routing_key_env", sources);
    if (sources.empty()) {
        if (!has_service_key) {
            check_.error(node, fmt::format("{} has no routing key; set routing_key, routing_key_file or "
                                           "routing_key_env to the service's Events API v2 integration key",
                                           field));
        }
    } else if (read_secret(sources, ctx_, field + ".routing_key", out.routing_key)) {
        if (out.routing_key.value.size() != 32) {
            ctx_.warn(sources.front().node,
                      fmt::format("{}.routing_key from {} has {} characters; PagerDuty rejects integration keys "
                                  "that are not 32 characters long",
                                  field, out.routing_key.origin, out.routing_key.value.size()));
        }
    }

    out.url = global_.pagerduty_url;
    if (const YAML::Node n = checker::child(node, "url"); n.IsDefined()) {
        if (auto url = check_.string(n, field + ".url")) {
            if (!url->starts_with("https://") && !url->starts_with("http://")) {
                check_.error(n, fmt::format("{}.url {} is not an http or https URL; omit it to use {}", field,
                                            promql::quote(*url), global_.pagerduty_url));
            } else {
                out.url = *url;
            }
        }
    }

    read_string(node, "client", field, out.client);
    read_string(node, "client_url", field, out.client_url);
    read_string(node, "description", field, out.description);
    read_string(node, "severity", field, out.severity);
    read_string(node, "source", field, out.source);
    read_string(node, "class", field, out.class_name);
    read_string(node, "component", field, out.component);
    read_string(node, "group", field, out.group);

    if (const YAML::Node details = checker::child(node, "details"); details.IsDefined() && !details.IsNull()) {
        if (check_.expect_map(details, field + ".details")) {
            for (auto it = details.begin(); it != details.end(); ++it) {
                const YAML::Node key = it->first;
                const YAML::Node value = it->second;
                auto name = check_.string(key, field + ".details keys");
                if (!name) {
                    continue;
                }
                auto text = check_.string(value, fmt::format("{}.details.{}", field, *name));
                if (!text) {
                    continue;
                }
                out.details.emplace_back(*name, *text);
            }
        }
    }

    if (const YAML::Node links = checker::child(node, "links"); links.IsDefined() && !links.IsNull()) {
        if (check_.expect_sequence(links, field + ".links")) {
            for (std::size_t i = 0; i < links.size(); ++i) {
                const std::string link_field = fmt::format("{}.links[{}]", field, i);
                if (!check_.expect_map(links[i], link_field)) {
                    continue;
                }
                check_.check_keys(links[i], link_field, {"href", "text"});
                pagerduty_link link;
                read_string(links[i], "href", link_field, link.href);
                read_string(links[i], "text", link_field, link.text);
                out.links.push_back(std::move(link));
            }
        }
    }
    if (const YAML::Node images = checker::child(node, "images"); images.IsDefined() && !images.IsNull()) {
        if (check_.expect_sequence(images, field + ".images")) {
            for (std::size_t i = 0; i < images.size(); ++i) {
                const std::string image_field = fmt::format("{}.images[{}]", field, i);
                if (!check_.expect_map(images[i], image_field)) {
                    continue;
                }
                check_.check_keys(images[i], image_field, {"src", "alt", "href"});
                pagerduty_image image;
                read_string(images[i], "src", image_field, image.src);
                read_string(images[i], "alt", image_field, image.alt);
                read_string(images[i], "href", image_field, image.href);
                out.images.push_back(std::move(image));
            }
        }
    }

    if (const YAML::Node n = checker::child(node, "http_config"); n.IsDefined()) {
        load_http_config(n, ctx_, field + ".http_config", nullptr);
    }
    load_limits(node, field, out.limits);
}

void receiver_loader::load_slack(const YAML::Node& node, const std::string& field, slack_config& out)
{
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field,
                      {"send_resolved", "api_url", "api_url_file", "api_url_env", "app_token", "app_token_file",
                       "app_url", "bot_token", "bot_token_file", "bot_token_env", "http_config", "channel",
                       "username", "color", "title", "title_link", "pretext", "text", "fields", "short_fields",
                       "footer", "fallback", "callback_id", "icon_emoji", "icon_url", "image_url", "thumb_url",
                       "link_names", "mrkdwn_in", "actions", "message_text", "update_message", "send_blocks",
                       "thread_replies", "timeout", "rate_limit", "burst", "max_concurrency"});
    read_bool(node, "send_resolved", field, out.send_resolved);

    std::vector<secret_source> url_sources;
    collect_secret_sources(node, field + ".", "api_url", "api_url_file", "api_url_env", url_sources);
    if (read_secret(url_sources, ctx_, field + ".api_url", out.api_url)) {
        check_secret_url(out.api_url, url_sources.front().node, ctx_, field + ".api_url");
    }

    // Alertmanager's app_token, tocsin's bot_token and the Bearer credentials of
    // http_config.authorization all set the same bot token, so only one of them may be given.
    std::vector<secret_source> token_sources;
    collect_secret_sources(node, field + ".", "app_token", "app_token_file", "", token_sources);
    collect_secret_sources(node, field + ".", "bot_token", "bot_token_file", "bot_token_env", token_sources);
    if (const YAML::Node n = checker::child(node, "http_config"); n.IsDefined()) {
        load_http_config(n, ctx_, field + ".http_config", &token_sources);
    }
    read_secret(token_sources, ctx_, field + ".bot_token", out.bot_token);
    if (!out.bot_token.empty() && !out.api_url.empty()) {
        ctx_.warn(node, fmt::format("{} has both a bot token and api_url; with a token tocsin posts to app_url "
                                    "(default https://slack.com/api/chat.postMessage) and ignores api_url",
                                    field));
    }

    read_string(node, "app_url", field, out.app_url);
    if (!out.app_url.empty() && !out.app_url.starts_with("https://") && !out.app_url.starts_with("http://")) {
        check_.error(checker::child(node, "app_url"),
                     fmt::format("{}.app_url {} is not an http or https URL; omit it to use "
                                 "https://slack.com/api/chat.postMessage",
                                 field, promql::quote(out.app_url)));
    }
    read_string(node, "channel", field, out.channel);
    read_string(node, "username", field, out.username);
    read_string(node, "icon_emoji", field, out.icon_emoji);
    read_string(node, "icon_url", field, out.icon_url);
    read_bool(node, "link_names", field, out.link_names);
    read_bool(node, "send_blocks", field, out.send_blocks);
    read_bool(node, "update_message", field, out.update_message);
    read_bool(node, "thread_replies", field, out.thread_replies);
    read_string(node, "color", field, out.color);
    read_string(node, "title", field, out.title);
    read_string(node, "title_link", field, out.title_link);
    read_string(node, "pretext", field, out.pretext);
    read_string(node, "text", field, out.text);
    read_string(node, "footer", field, out.footer);
    read_string(node, "fallback", field, out.fallback);
    read_string(node, "message_text", field, out.message_text);
    warn_unused(node, {"callback_id", "image_url", "thumb_url", "mrkdwn_in"}, field);

    bool short_fields = false;
    read_bool(node, "short_fields", field, short_fields);
    if (const YAML::Node fields = checker::child(node, "fields"); fields.IsDefined() && !fields.IsNull()) {
        if (check_.expect_sequence(fields, field + ".fields")) {
            for (std::size_t i = 0; i < fields.size(); ++i) {
                const std::string item_field = fmt::format("{}.fields[{}]", field, i);
                if (!check_.expect_map(fields[i], item_field)) {
                    continue;
                }
                check_.check_keys(fields[i], item_field, {"title", "value", "short"});
                slack_field item;
                // As in Alertmanager, short_fields is the default for fields that do not set short.
                item.is_short = short_fields;
                read_string(fields[i], "title", item_field, item.title);
                read_string(fields[i], "value", item_field, item.value);
                read_bool(fields[i], "short", item_field, item.is_short);
                out.fields.push_back(std::move(item));
            }
        }
    }
    if (const YAML::Node actions = checker::child(node, "actions"); actions.IsDefined() && !actions.IsNull()) {
        if (check_.expect_sequence(actions, field + ".actions")) {
            for (std::size_t i = 0; i < actions.size(); ++i) {
                const std::string item_field = fmt::format("{}.actions[{}]", field, i);
                if (!check_.expect_map(actions[i], item_field)) {
                    continue;
                }
                check_.check_keys(actions[i], item_field, {"type", "text", "url", "style", "name", "value", "confirm"});
                slack_action action;
                read_string(actions[i], "type", item_field, action.type);
                read_string(actions[i], "text", item_field, action.text);
                read_string(actions[i], "url", item_field, action.url);
                read_string(actions[i], "style", item_field, action.style);
                warn_unused(actions[i], {"name", "value", "confirm"}, item_field);
                if (action.text.empty()) {
                    check_.error(actions[i], fmt::format("{} has no text; Slack needs the text of a button", item_field));
                }
                if (action.url.empty() && !checker::child(actions[i], "name").IsDefined()) {
                    check_.error(actions[i], fmt::format("{} has no url; tocsin sends link buttons, so set url",
                                                         item_field));
                }
                out.actions.push_back(std::move(action));
            }
        }
    }

    if (!out.bot_token.empty() && out.channel.empty()) {
        check_.error(node, fmt::format("{} has a bot token but no channel; chat.postMessage needs a channel such "
                                       "as #alerts or a channel ID",
                                       field));
    }
    if (out.api_url.empty() && out.bot_token.empty() && url_sources.empty() && token_sources.empty()) {
        if (global_.slack_api_url.empty()) {
            check_.error(node, fmt::format("{} has no Slack URL or token; set api_url (an incoming webhook URL), "
                                           "api_url_file, api_url_env, global.slack_api_url, or a bot token "
                                           "(bot_token, app_token) with a channel",
                                           field));
        } else {
            out.api_url = global_.slack_api_url;
        }
    }
    load_limits(node, field, out.limits);
}

void receiver_loader::load_console(const YAML::Node& node, const std::string& field, console_config& out)
{
    if (node.IsNull()) {
        return;
    }
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field, {"send_resolved"});
    read_bool(node, "send_resolved", field, out.send_resolved);
}

} // namespace

void collect_secret_sources(const YAML::Node& map, const std::string& prefix, std::string_view value_key,
                            std::string_view file_key, std::string_view env_key, std::vector<secret_source>& out)
{
    const std::pair<std::string_view, secret_source::kind> keys[] = {
        {value_key, secret_source::kind::inline_value},
        {file_key, secret_source::kind::file},
        {env_key, secret_source::kind::env},
    };
    for (const auto& [key, kind] : keys) {
        if (key.empty()) {
            continue;
        }
        const YAML::Node n = checker::child(map, key);
        if (n.IsDefined()) {
            out.push_back({n, kind, prefix + std::string(key)});
        }
    }
}

bool read_secret(const std::vector<secret_source>& sources, load_context& ctx, std::string_view secret_name,
                 secret& out)
{
    if (sources.empty()) {
        return false;
    }
    if (sources.size() > 1) {
        std::string names;
        for (const auto& s : sources) {
            names += names.empty() ? "" : ", ";
            names += s.field;
        }
        ctx.check.error(sources[1].node, fmt::format("{} is set more than once ({}); keep exactly one", secret_name, names));
        return false;
    }
    const secret_source& source = sources.front();
    // The checker's messages for a non-string value describe its type, never the value.
    auto text = ctx.check.string(source.node, source.field);
    if (!text) {
        return false;
    }
    switch (source.from) {
    case secret_source::kind::inline_value:
        if (text->empty()) {
            ctx.check.error(source.node, fmt::format("empty {}; set the value, or remove the key", source.field));
            return false;
        }
        out.value = *text;
        out.origin = "inline";
        return true;
    case secret_source::kind::file: {
        if (text->empty()) {
            ctx.check.error(source.node, fmt::format("empty {}; expected the path of a file", source.field));
            return false;
        }
        const std::string path = ctx.resolve(*text);
        std::string content;
        std::string problem;
        if (!read_regular_file(path, max_secret_file_bytes, content, problem)) {
            ctx.check.error(source.node, fmt::format("failed to read {} {}: {}", source.field, path, problem));
            return false;
        }
        content = trim_space(std::move(content));
        if (content.empty()) {
            ctx.check.error(source.node,
                            fmt::format("{} {} is empty; write the secret into that file", source.field, path));
            return false;
        }
        out.value = std::move(content);
        out.origin = "file " + path;
        return true;
    }
    case secret_source::kind::env: {
        if (text->empty()) {
            ctx.check.error(source.node,
                            fmt::format("empty {}; expected the name of an environment variable", source.field));
            return false;
        }
        auto value = ctx.env(text->c_str());
        if (!value) {
            ctx.check.error(source.node, fmt::format("environment variable {} named by {} is not set; set it in "
                                                     "tocsind's environment (with systemd: Environment= or "
                                                     "EnvironmentFile=)",
                                                     *text, source.field));
            return false;
        }
        std::string content = trim_space(std::move(*value));
        if (content.empty()) {
            ctx.check.error(source.node,
                            fmt::format("environment variable {} named by {} is empty", *text, source.field));
            return false;
        }
        out.value = std::move(content);
        out.origin = "environment variable " + *text;
        return true;
    }
    }
    return false;
}

void check_secret_url(const secret& url, const YAML::Node& node, load_context& ctx, std::string_view field)
{
    if (url.value.starts_with("https://") || url.value.starts_with("http://")) {
        return;
    }
    ctx.check.error(node, fmt::format("{} from {} is not an http or https URL; expected a URL such as "
                                      "https://hooks.slack.com/services/...",
                                      field, url.origin));
}

void load_http_config(const YAML::Node& node, load_context& ctx, const std::string& field,
                      std::vector<secret_source>* bearer)
{
    if (node.IsNull() || !ctx.check.expect_map(node, field)) {
        return;
    }
    ctx.check.check_keys(node, field,
                         {"authorization", "basic_auth", "oauth2", "bearer_token", "bearer_token_file", "proxy_url",
                          "no_proxy", "proxy_from_environment", "proxy_connect_header", "tls_config",
                          "follow_redirects", "enable_http2", "http_headers"});
    for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        if (!key.IsScalar()) {
            continue;
        }
        const std::string& name = key.Scalar();
        if (bearer != nullptr && name == "authorization") {
            const std::string auth_field = field + ".authorization";
            if (!ctx.check.expect_map(value, auth_field)) {
                continue;
            }
            ctx.check.check_keys(value, auth_field, {"type", "credentials", "credentials_file"});
            const YAML::Node type = yaml::checker::child(value, "type");
            if (type.IsDefined()) {
                auto text = ctx.check.string(type, auth_field + ".type");
                std::string lower = text.value_or("");
                std::transform(lower.begin(), lower.end(), lower.begin(),
                               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
                if (text && lower != "bearer") {
                    ctx.check.error(type, fmt::format("{}.type {} is not supported; tocsin sends Bearer tokens only",
                                                      auth_field, promql::quote(*text)));
                }
            }
            collect_secret_sources(value, auth_field + ".", "credentials", "credentials_file", "", *bearer);
            continue;
        }
        if (bearer != nullptr && (name == "bearer_token" || name == "bearer_token_file")) {
            collect_secret_sources(node, field + ".", name == "bearer_token" ? "bearer_token" : "",
                                   name == "bearer_token_file" ? "bearer_token_file" : "", "", *bearer);
            continue;
        }
        if (name == "basic_auth" || name == "oauth2" || name == "authorization" || name == "bearer_token" ||
            name == "bearer_token_file" || name == "http_headers") {
            // Sending the request without the credentials the receiver expects would fail every
            // notification, so this is an error, not a warning.
            ctx.check.error(key, fmt::format("{}.{} is not supported here; tocsin sends Bearer tokens "
                                             "(http_config.authorization) on webhook_configs and slack_configs only",
                                             field, name));
            continue;
        }
        ctx.warn(key, fmt::format("{}.{} has no effect in tocsin: it connects directly, verifies TLS against the "
                                  "system's CA certificates and does not follow redirects",
                                  field, name));
    }
}

void load_receivers(const YAML::Node& node, load_context& ctx, const global_config& global,
                    std::vector<receiver_config>& out)
{
    receiver_loader loader(ctx, global);
    loader.load(node, out);
}

} // namespace tocsin::routing_detail
