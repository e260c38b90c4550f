// Template compilation, Alertmanager's template data, and the helpers the payload builders share.
// The builders of each integration live in payload_pagerduty.cpp, payload_slack.cpp and
// payload_webhook.cpp.

#include <algorithm>
#include <ctime>
#include <functional>

#include <fmt/format.h>

#include "notifiers/payload.hpp"
#include "notifiers/payload_detail.hpp"
#include "rules/file_read.hpp"

namespace tocsin {

namespace payload_detail {

std::string integration_path(const integration_ref& ref)
{
    return fmt::format("{}_configs[{}]", to_string(ref.kind), ref.index);
}

std::string field_key(std::string_view receiver, std::string_view field_path)
{
    std::string key(receiver);
    key += '\x1f';
    key += field_path;
    return key;
}

std::string template_error_marker(std::string_view error)
{
    // Engine errors name the template position; a short reason is enough in the message
    // itself, the log line carries the whole text.
    bool cut = false;
    std::string reason = truncate_utf8(trim(error), 160, &cut);
    return fmt::format("(template error: {})", reason);
}

field_renderer::field_renderer(const compiled_templates& templates, const notification& n, build_result& result)
    : templates_(templates), notification_(n), result_(result), prefix_(integration_path(n.integration))
{
}

std::string field_renderer::field_path(std::string_view field) const
{
    return prefix_ + "." + std::string(field);
}

bool field_renderer::configured(std::string_view field) const
{
    return templates_.inline_index.contains(field_key(notification_.integration.receiver, field_path(field)));
}

field_text field_renderer::render(std::string_view field, const nlohmann::json& data, std::string_view default_name,
                                  const nlohmann::json& default_data, std::string_view builtin)
{
    field_text out;
    const std::string path = field_path(field);
    auto it = templates_.inline_index.find(field_key(notification_.integration.receiver, path));
    if (it != templates_.inline_index.end()) {
        std::string error;
        if (templates_.set.render(it->second, data, out.text, error)) {
            out.from_receiver = true;
            return out;
        }
        ++result_.template_errors;
        out.marker = template_error_marker(error);
        result_.log_lines.push_back(fmt::format(
            "template failed while rendering, sent the default text with a marker: receiver=\"{}\" field={} "
            "group_key={} error=\"{}\"",
            notification_.integration.receiver, path, notification_.group_key, error));
    }

    out.text.clear();
    if (!default_name.empty() && templates_.set.has(default_name)) {
        std::string error;
        if (templates_.set.render_named(default_name, default_data, out.text, error)) {
            return out;
        }
        // A default template failing is a bug in the default set, not in the user's config; the
        // built-in text keeps the message useful.
        result_.log_lines.push_back(fmt::format(
            "default template \"{}\" failed, sent the built-in text: receiver=\"{}\" field={} group_key={} "
            "error=\"{}\"",
            default_name, notification_.integration.receiver, path, notification_.group_key, error));
        out.text.clear();
    }
    out.text = std::string(builtin);
    return out;
}

std::string format_time(time_ms t)
{
    if (t == 0) {
        return "0001-01-01T00:00:00Z";
    }
    time_ms seconds = t / 1000;
    time_ms millis = t % 1000;
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    std::time_t tt = static_cast<std::time_t>(seconds);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

namespace {

// Labels with the same value on every alert, as Alertmanager's CommonLabels.
std::vector<std::pair<std::string, std::string>> common_pairs(
    const std::vector<alert>& alerts, const std::function<std::vector<std::pair<std::string, std::string>>(const alert&)>& get)
{
    std::vector<std::pair<std::string, std::string>> common;
    if (alerts.empty()) {
        return common;
    }
    common = get(alerts.front());
    for (std::size_t i = 1; i < alerts.size() && !common.empty(); ++i) {
        auto other = get(alerts[i]);
        std::erase_if(common, [&](const auto& kv) {
            return std::find(other.begin(), other.end(), kv) == other.end();
        });
    }
    return common;
}

std::vector<std::pair<std::string, std::string>> label_pairs(const alert& a)
{
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& l : a.labels.items()) {
        out.emplace_back(l.name, l.value);
    }
    return out;
}

nlohmann::json to_object(const std::vector<std::pair<std::string, std::string>>& pairs)
{
    nlohmann::json obj = nlohmann::json::object();
    for (const auto& [k, v] : pairs) {
        obj[k] = v;
    }
    return obj;
}

} // namespace

std::string builtin_subject(const notification& n)
{
    std::string out = n.all_resolved() ? "[RESOLVED]" : fmt::format("[FIRING:{}]", n.firing);
    std::vector<std::string> group_values;
    for (const auto& l : n.group_labels.items()) {
        group_values.push_back(l.value);
    }
    out += ' ';
    out += fmt::format("{}", fmt::join(group_values, " "));
    auto common = common_pairs(n.alerts, label_pairs);
    std::vector<std::string> extra;
    for (const auto& [k, v] : common) {
        if (n.group_labels.get(k).empty()) {
            extra.push_back(v);
        }
    }
    if (!extra.empty()) {
        out += fmt::format(" ({})", fmt::join(extra, " "));
    }
    return out;
}

std::string dump_json(const nlohmann::ordered_json& body)
{
    return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string dump_json(const nlohmann::json& body)
{
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::size_t utf16_length(std::string_view text)
{
    std::size_t units = 0;
    for (unsigned char c : text) {
        if ((c & 0xc0) != 0x80) {
            ++units; // a lead byte or ASCII starts a code point
        }
        if ((c & 0xf8) == 0xf0) {
            ++units; // four-byte sequences are surrogate pairs in UTF-16
        }
    }
    return units;
}

std::string trim(std::string_view text)
{
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(first, last - first + 1));
}

notification filter_resolved(const notification& n, bool send_resolved)
{
    notification out = n;
    if (!send_resolved) {
        out.alerts.resize(std::min(out.alerts.size(), n.firing));
    }
    return out;
}

severity_rank highest_severity(const notification& n)
{
    auto rank_of = [](std::string_view value) {
        if (value.empty()) {
            return severity_rank::none;
        }
        if (value == "page" || value == "critical") {
            return severity_rank::critical;
        }
        if (value == "warning") {
            return severity_rank::warning;
        }
        if (value == "info") {
            return severity_rank::info;
        }
        return severity_rank::error; // "error" and any tier outside the known ones
    };
    const std::size_t end = n.firing > 0 ? std::min(n.firing, n.alerts.size()) : n.alerts.size();
    severity_rank best = severity_rank::none;
    for (std::size_t i = 0; i < end; ++i) {
        best = std::max(best, rank_of(n.alerts[i].labels.get("severity")));
    }
    return best;
}

const char* severity_name(severity_rank rank)
{
    switch (rank) {
    case severity_rank::critical: return "critical";
    case severity_rank::warning: return "warning";
    case severity_rank::info: return "info";
    case severity_rank::error:
    case severity_rank::none: return "error";
    }
    return "error";
}

} // namespace payload_detail

using namespace payload_detail;

namespace {

// Calls `visit(field_path, source)` for each non-empty template field of `receiver`, with paths
// as the config spells them: pagerduty_configs[0].details.num_firing, slack_configs[1].fields[0].title.
template <typename Visit>
void for_each_template_field(const receiver_config& receiver, Visit&& visit)
{
    auto field = [&](const std::string& prefix, std::string_view name, const std::string& source) {
        if (!source.empty()) {
            visit(prefix + "." + std::string(name), source);
        }
    };
    for (std::size_t i = 0; i < receiver.pagerduty.size(); ++i) {
        const auto& pd = receiver.pagerduty[i];
        const std::string prefix = fmt::format("pagerduty_configs[{}]", i);
        field(prefix, "client", pd.client);
        field(prefix, "client_url", pd.client_url);
        field(prefix, "description", pd.description);
        field(prefix, "severity", pd.severity);
        field(prefix, "source", pd.source);
        field(prefix, "class", pd.class_name);
        field(prefix, "component", pd.component);
        field(prefix, "group", pd.group);
        for (const auto& [name, value] : pd.details) {
            field(prefix, "details." + name, value);
        }
        for (std::size_t j = 0; j < pd.links.size(); ++j) {
            field(prefix, fmt::format("links[{}].href", j), pd.links[j].href);
            field(prefix, fmt::format("links[{}].text", j), pd.links[j].text);
        }
        for (std::size_t j = 0; j < pd.images.size(); ++j) {
            field(prefix, fmt::format("images[{}].src", j), pd.images[j].src);
            field(prefix, fmt::format("images[{}].alt", j), pd.images[j].alt);
            field(prefix, fmt::format("images[{}].href", j), pd.images[j].href);
        }
    }
    for (std::size_t i = 0; i < receiver.slack.size(); ++i) {
        const auto& sl = receiver.slack[i];
        const std::string prefix = fmt::format("slack_configs[{}]", i);
        field(prefix, "color", sl.color);
        field(prefix, "title", sl.title);
        field(prefix, "title_link", sl.title_link);
        field(prefix, "pretext", sl.pretext);
        field(prefix, "text", sl.text);
        field(prefix, "footer", sl.footer);
        field(prefix, "fallback", sl.fallback);
        field(prefix, "message_text", sl.message_text);
        field(prefix, "username", sl.username);
        field(prefix, "icon_emoji", sl.icon_emoji);
        field(prefix, "icon_url", sl.icon_url);
        field(prefix, "channel", sl.channel);
        for (std::size_t j = 0; j < sl.fields.size(); ++j) {
            field(prefix, fmt::format("fields[{}].title", j), sl.fields[j].title);
            field(prefix, fmt::format("fields[{}].value", j), sl.fields[j].value);
        }
        for (std::size_t j = 0; j < sl.actions.size(); ++j) {
            field(prefix, fmt::format("actions[{}].text", j), sl.actions[j].text);
            field(prefix, fmt::format("actions[{}].url", j), sl.actions[j].url);
            field(prefix, fmt::format("actions[{}].style", j), sl.actions[j].style);
        }
    }
}

} // namespace

std::shared_ptr<const compiled_templates> compile_templates(const routing_config& config,
                                                            const std::string& config_file, diagnostics& diags)
{
    auto compiled = std::make_shared<compiled_templates>();
    const std::size_t errors_before = diags.size();

    for (const auto& file : config.template_files) {
        std::string content;
        std::string error;
        if (!read_regular_file(file, max_config_file_bytes, content, error)) {
            diags.add(file, 0, 0, fmt::format("cannot read template file: {}; fix the path in `templates`", error));
            continue;
        }
        compiled->set.add_file(file, content, diags);
    }

    for (const auto& receiver : config.receivers) {
        for_each_template_field(receiver, [&](const std::string& path, const std::string& source) {
            std::string error;
            auto index = compiled->set.add_inline(source, error);
            if (!index) {
                diags.add(config_file, receiver.line, 0,
                          fmt::format("receiver \"{}\" {}: {}", receiver.name, path, error));
                return;
            }
            compiled->inline_index.emplace(field_key(receiver.name, path), *index);
        });
    }

    compiled->set.check_references(diags, config_file);
    if (diags.size() != errors_before) {
        return nullptr;
    }
    return compiled;
}

nlohmann::json template_data(const notification& n, const std::string& external_url)
{
    nlohmann::json alerts = nlohmann::json::array();
    for (std::size_t i = 0; i < n.alerts.size(); ++i) {
        const alert& a = n.alerts[i];
        const bool firing = i < n.firing;
        nlohmann::json labels = nlohmann::json::object();
        for (const auto& l : a.labels.items()) {
            labels[l.name] = l.value;
        }
        nlohmann::json annotations = nlohmann::json::object();
        for (const auto& [k, v] : a.annotations) {
            annotations[k] = v;
        }
        alerts.push_back({
            {"Status", firing ? "firing" : "resolved"},
            {"Labels", std::move(labels)},
            {"Annotations", std::move(annotations)},
            {"StartsAt", format_time(a.starts_at)},
            // A firing rule alert has no end yet (ends_at 0): Go's zero time, as Alertmanager
            // shows it. An alert from the API keeps its announced end, as in Alertmanager.
            {"EndsAt", format_time(a.ends_at)},
            {"GeneratorURL", a.generator_url},
            {"Fingerprint", fmt::format("{:016x}", a.fingerprint())},
        });
    }

    nlohmann::json group_labels = nlohmann::json::object();
    for (const auto& l : n.group_labels.items()) {
        group_labels[l.name] = l.value;
    }

    return {
        {"Receiver", n.integration.receiver},
        {"Status", n.all_resolved() ? "resolved" : "firing"},
        {"Alerts", std::move(alerts)},
        {"GroupLabels", std::move(group_labels)},
        {"CommonLabels", to_object(common_pairs(n.alerts, label_pairs))},
        {"CommonAnnotations", to_object(common_pairs(n.alerts, [](const alert& a) { return a.annotations; }))},
        {"ExternalURL", external_url},
        {"GroupKey", n.group_key},
    };
}

std::vector<std::string> runbook_action_lines(std::string_view value)
{
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start <= value.size()) {
        const std::size_t end = value.find('\n', start);
        std::string line = trim(value.substr(start, end == std::string_view::npos ? value.npos : end - start));
        if (!line.empty()) {
            lines.push_back(std::move(line));
        }
        if (end == std::string_view::npos) {
            break;
        }
        start = end + 1;
    }
    return lines;
}

build_result build_messages(const notification& n, const routing_config& config, const compiled_templates& templates)
{
    build_result result;
    const receiver_config* receiver = config.find_receiver(n.integration.receiver);
    const std::size_t index = n.integration.index;
    auto missing = [&] {
        result.log_lines.push_back(fmt::format(
            "integration {} is not in the routing config; nothing to send for group_key={}", n.integration.id(),
            n.group_key));
        return result;
    };
    if (!receiver) {
        return missing();
    }

    switch (n.integration.kind) {
    case integration_kind::pagerduty:
        if (index >= receiver->pagerduty.size()) {
            return missing();
        }
        return build_pagerduty(n, receiver->pagerduty[index], config, templates);
    case integration_kind::slack:
        if (index >= receiver->slack.size()) {
            return missing();
        }
        return build_slack(n, receiver->slack[index], config, templates);
    case integration_kind::webhook:
        if (index >= receiver->webhooks.size()) {
            return missing();
        }
        return build_webhook(n, receiver->webhooks[index], config);
    case integration_kind::console:
        if (index >= receiver->console.size()) {
            return missing();
        }
        return build_console(n, receiver->console[index], config);
    }
    return missing();
}

} // namespace tocsin
