// PagerDuty Events API v2 bodies, without the routing key: the sender inserts it as the first
// member when it sends, so the outbox never contains it.

#include <set>

#include <fmt/format.h>

#include "notifiers/payload.hpp"
#include "notifiers/payload_detail.hpp"

namespace tocsin::payload_detail {

namespace {

using ordered_json = nlohmann::ordered_json;

// PagerDuty rejects events over 512,000 bytes. The routing key the sender adds
// ("routing_key":"<32 characters>", about 50 bytes) must fit in the margin.
constexpr std::size_t max_body_bytes = 512000 - 100;
// payload.summary limit, in Unicode code points.
constexpr std::size_t max_summary_chars = 1024;
// The uncut summary kept in custom_details.full_summary is itself capped (at most 64 KiB of
// UTF-8), so that a summary rendered over a huge group does not push every alert out of the
// event's size budget.
constexpr std::size_t max_full_summary_chars = 16'384;

// custom_details.runbook_actions: at most this many lines, each cut to this many code points.
constexpr std::size_t max_runbook_lines = 100;
constexpr std::size_t max_runbook_line_chars = 1024;
// Kept when custom_details are replaced for size, when no larger than this.
constexpr std::size_t max_kept_runbook_bytes = 64 * 1024;

// Collects the runbook_actions lines of the firing alerts, each once, in alert order. The array
// is empty when no firing alert has the annotation.
ordered_json runbook_actions(const notification& n)
{
    std::vector<std::string> lines;
    std::set<std::string, std::less<>> seen;
    std::size_t more = 0;
    for (std::size_t i = 0; i < std::min(n.firing, n.alerts.size()); ++i) {
        for (const auto& [k, v] : n.alerts[i].annotations) {
            if (k != runbook_actions_annotation) {
                continue;
            }
            for (auto& line : runbook_action_lines(v)) {
                line = truncate_utf8(line, max_runbook_line_chars);
                if (!seen.insert(line).second) {
                    continue;
                }
                if (lines.size() < max_runbook_lines) {
                    lines.push_back(std::move(line));
                } else {
                    ++more;
                }
            }
        }
    }
    ordered_json out = ordered_json::array();
    for (auto& line : lines) {
        out.push_back(std::move(line));
    }
    if (more > 0) {
        out.push_back(fmt::format("\u2026and {} more lines in the alerts' runbook_actions annotations", more));
    }
    return out;
}

ordered_json alert_entry(const alert& a)
{
    ordered_json labels = ordered_json::object();
    for (const auto& l : a.labels.items()) {
        labels[l.name] = l.value;
    }
    ordered_json annotations = ordered_json::object();
    for (const auto& [k, v] : a.annotations) {
        annotations[k] = v;
    }
    return {{"labels", std::move(labels)}, {"annotations", std::move(annotations)}};
}

// A detail value that parses as a JSON array, object or number is inserted structured, so
// PagerDuty shows fields and numbers. Any other value stays the rendered string.
ordered_json detail_value(const std::string& rendered)
{
    const std::string text = trim(rendered);
    if (!text.empty() && (text.front() == '[' || text.front() == '{' || text.front() == '-' ||
                          (text.front() >= '0' && text.front() <= '9'))) {
        ordered_json parsed = ordered_json::parse(text, nullptr, false);
        if (!parsed.is_discarded() && (parsed.is_array() || parsed.is_object() || parsed.is_number())) {
            return parsed;
        }
    }
    return rendered;
}

bool valid_severity(std::string_view s)
{
    return s == "critical" || s == "error" || s == "warning" || s == "info";
}

// Trims the firing and resolved lists of custom_details from their ends until `event` fits in
// max_body_bytes, and notes how many alerts were left out. `omitted` counts them across calls.
void trim_alert_lists(ordered_json& event, std::size_t body_size, std::size_t& omitted)
{
    ordered_json& details = event["payload"]["custom_details"];
    // Each entry costs its own serialization plus a separating comma. The note added at the end
    // costs at most this much.
    constexpr std::size_t note_bytes = 160;
    std::size_t size = body_size + note_bytes;
    for (const char* list : {"resolved", "firing"}) {
        if (size <= max_body_bytes) {
            break;
        }
        if (!details.contains(list) || !details[list].is_array()) {
            continue;
        }
        ordered_json& entries = details[list];
        while (size > max_body_bytes && !entries.empty()) {
            size -= dump_json(entries.back()).size() + (entries.size() > 1 ? 1 : 0);
            entries.erase(entries.size() - 1);
            ++omitted;
        }
    }
    if (omitted > 0) {
        details["omitted"] = fmt::format("{} more alerts omitted to keep the event under PagerDuty's size limit",
                                         omitted);
    }
}

struct pd_message {
    ordered_json event;
    std::string dedup_key;
    bool resolved = false;
    std::size_t alert_count = 0;
};

pd_message build_one(const notification& n, const pagerduty_config& config, const routing_config& routing,
                     const compiled_templates& templates, std::string dedup_key, build_result& result)
{
    const nlohmann::json data = template_data(n, routing.global.external_url);
    field_renderer fields(templates, n, result);
    auto render = [&](std::string_view field, std::string_view default_name, std::string_view builtin = {}) {
        field_text t = fields.render(field, data, default_name, data, builtin);
        if (!t.marker.empty()) {
            t.text = t.text.empty() ? t.marker : t.text + " " + t.marker;
        }
        return t;
    };

    // Summary: cut to 1024 code points, keeping the error marker visible when there is one.
    field_text description = fields.render("description", data, "pagerduty.default.description", data,
                                           builtin_subject(n));
    if (trim(description.text).empty()) {
        description.text = builtin_subject(n);
    }
    std::string summary;
    bool summary_cut = false;
    if (description.marker.empty()) {
        summary = truncate_utf8(description.text, max_summary_chars, &summary_cut);
    } else {
        const std::size_t marker_chars = utf16_length(description.marker) + 1;
        summary = truncate_utf8(description.text, max_summary_chars - std::min(marker_chars, max_summary_chars / 2),
                                &summary_cut);
        summary = truncate_utf8(summary + " " + description.marker, max_summary_chars);
    }
    if (summary_cut) {
        result.log_lines.push_back(fmt::format(
            "PagerDuty summary cut to {} characters, the full text is in custom_details.full_summary: "
            "receiver=\"{}\" group_key={}",
            max_summary_chars, n.integration.receiver, n.group_key));
    }

    const field_text client = render("client", "pagerduty.default.client", "tocsin");
    const field_text client_url = render("client_url", "pagerduty.default.clientURL", routing.global.external_url);
    // Like Alertmanager: without a source template, the source is the client text.
    field_text source = fields.configured("source") ? render("source", {}, client.text) : client;
    if (trim(source.text).empty()) {
        source.text = client.text.empty() ? "tocsin" : client.text;
    }

    std::string severity = severity_name(highest_severity(n));
    if (fields.configured("severity")) {
        const field_text rendered = fields.render("severity", data, {}, data, severity);
        const std::string value = trim(rendered.text);
        if (valid_severity(value)) {
            severity = value;
        } else if (rendered.marker.empty()) {
            result.log_lines.push_back(fmt::format(
                "PagerDuty severity \"{}\" is not one of critical, error, warning, info; sent error instead: "
                "receiver=\"{}\" field={} group_key={}",
                value, n.integration.receiver, fields.field_path("severity"), n.group_key));
            severity = "error";
        }
    }

    ordered_json payload = ordered_json::object();
    payload["summary"] = summary;
    payload["source"] = source.text;
    payload["severity"] = severity;
    for (auto [field, key] : {std::pair{"component", "component"}, {"group", "group"}, {"class", "class"}}) {
        if (!fields.configured(field)) {
            continue;
        }
        const field_text t = render(field, {});
        if (!trim(t.text).empty()) {
            payload[key] = t.text;
        }
    }

    // custom_details: Alertmanager's defaults (firing, resolved, num_firing, num_resolved),
    // replaced by configured details of the same name.
    ordered_json details = ordered_json::object();
    ordered_json firing = ordered_json::array();
    ordered_json resolved = ordered_json::array();
    for (std::size_t i = 0; i < n.alerts.size(); ++i) {
        (i < n.firing ? firing : resolved).push_back(alert_entry(n.alerts[i]));
    }
    details["firing"] = std::move(firing);
    details["resolved"] = std::move(resolved);
    details["num_firing"] = n.firing;
    details["num_resolved"] = n.alerts.size() - std::min(n.firing, n.alerts.size());
    ordered_json runbook_lines = runbook_actions(n);
    if (!runbook_lines.empty()) {
        details["runbook_actions"] = runbook_lines; // a configured detail of that name replaces it
    }
    for (const auto& [name, source_text] : config.details) {
        const field_text t = render("details." + name, {});
        details[name] = t.marker.empty() ? detail_value(t.text) : ordered_json(t.text);
    }
    if (summary_cut) {
        details["full_summary"] = truncate_utf8(description.text, max_full_summary_chars);
    }
    payload["custom_details"] = std::move(details);

    ordered_json event = ordered_json::object();
    event["event_action"] = n.all_resolved() ? "resolve" : "trigger";
    event["dedup_key"] = dedup_key;
    event["payload"] = std::move(payload);
    if (!client.text.empty()) {
        event["client"] = client.text;
    }
    if (!client_url.text.empty()) {
        event["client_url"] = client_url.text;
    }

    ordered_json links = ordered_json::array();
    for (std::size_t i = 0; i < config.links.size(); ++i) {
        const field_text href = render(fmt::format("links[{}].href", i), {});
        if (!href.marker.empty() || trim(href.text).empty()) {
            continue; // a link without a target is rejected by PagerDuty; the error is logged
        }
        const field_text text = render(fmt::format("links[{}].text", i), {});
        ordered_json link = {{"href", trim(href.text)}};
        if (!text.text.empty()) {
            link["text"] = text.text;
        }
        links.push_back(std::move(link));
    }
    if (!n.alerts.empty()) {
        const alert& first = n.alerts.front();
        for (auto [annotation, text] : {std::pair{"runbook_url", "Runbook"}, {"dashboard", "Dashboard"},
                                        {"source", "Source"}}) {
            for (const auto& [k, v] : first.annotations) {
                const bool duplicate = std::any_of(links.begin(), links.end(),
                                                   [&](const ordered_json& l) { return l["href"] == v; });
                if (k == annotation && !v.empty() && !duplicate) {
                    links.push_back({{"href", v}, {"text", text}});
                }
            }
        }
    }
    if (!links.empty()) {
        event["links"] = std::move(links);
    }

    ordered_json images = ordered_json::array();
    for (std::size_t i = 0; i < config.images.size(); ++i) {
        const field_text src = render(fmt::format("images[{}].src", i), {});
        if (!src.marker.empty() || trim(src.text).empty()) {
            continue;
        }
        ordered_json image = {{"src", trim(src.text)}};
        const field_text alt = render(fmt::format("images[{}].alt", i), {});
        if (!alt.text.empty()) {
            image["alt"] = alt.text;
        }
        const field_text href = render(fmt::format("images[{}].href", i), {});
        if (!href.text.empty() && href.marker.empty()) {
            image["href"] = trim(href.text);
        }
        images.push_back(std::move(image));
    }
    if (!images.empty()) {
        event["images"] = std::move(images);
    }

    // Size: trim the alert lists first, then replace the details, then drop links and images.
    // The event itself is always sent.
    std::size_t size = dump_json(event).size();
    if (size > max_body_bytes) {
        std::size_t omitted = 0;
        // One pass is exact but for the note's estimate; a second one covers that.
        for (int pass = 0; pass < 2 && size > max_body_bytes; ++pass) {
            trim_alert_lists(event, size, omitted);
            size = dump_json(event).size();
        }
        result.log_lines.push_back(fmt::format(
            "PagerDuty event over {} bytes, left {} alerts out of custom_details: receiver=\"{}\" group_key={}",
            max_body_bytes, omitted, n.integration.receiver, n.group_key));
    }
    if (size > max_body_bytes) {
        const std::size_t details_size = dump_json(event["payload"]["custom_details"]).size();
        event["payload"]["custom_details"] = {
            {"error", fmt::format("custom_details of {} bytes did not fit PagerDuty's event size limit and were left "
                                  "out; see the alerts in tocsin",
                                  details_size)},
            {"num_firing", n.firing},
            {"num_resolved", n.alerts.size() - std::min(n.firing, n.alerts.size())},
        };
        // The runbook lines stay visible when they are small next to the limit.
        if (!runbook_lines.empty() && dump_json(runbook_lines).size() <= max_kept_runbook_bytes) {
            event["payload"]["custom_details"]["runbook_actions"] = runbook_lines;
        }
        size = dump_json(event).size();
        result.log_lines.push_back(fmt::format(
            "PagerDuty event over {} bytes after trimming alerts, replaced custom_details: receiver=\"{}\" "
            "group_key={}",
            max_body_bytes, n.integration.receiver, n.group_key));
    }
    if (size > max_body_bytes) {
        event.erase("links");
        event.erase("images");
        result.log_lines.push_back(fmt::format(
            "PagerDuty event over {} bytes, left out links and images: receiver=\"{}\" group_key={}", max_body_bytes,
            n.integration.receiver, n.group_key));
    }

    pd_message out;
    out.event = std::move(event);
    out.dedup_key = std::move(dedup_key);
    out.resolved = n.all_resolved();
    out.alert_count = n.alerts.size();
    return out;
}

outbound_message to_message(const notification& n, pd_message&& m)
{
    outbound_message out;
    out.integration = n.integration;
    out.group_key = n.group_key;
    out.body = dump_json(m.event);
    out.resolved = m.resolved;
    out.dedup_key = std::move(m.dedup_key);
    out.alert_count = m.alert_count;
    return out;
}

} // namespace

build_result build_pagerduty(const notification& original, const pagerduty_config& config,
                             const routing_config& routing, const compiled_templates& templates)
{
    build_result result;
    const notification n = filter_resolved(original, config.send_resolved);
    if (n.alerts.empty()) {
        return result;
    }

    if (n.dedup == dedup_scope::group) {
        const std::string key = pagerduty_dedup_key(n.integration.receiver, n.group_key);
        result.messages.push_back(to_message(n, build_one(n, config, routing, templates, key, result)));
        return result;
    }

    // dedup_scope: alert gives one PagerDuty alert per alert, each with its own key and data.
    for (std::size_t i = 0; i < n.alerts.size(); ++i) {
        notification single = n;
        single.alerts = {n.alerts[i]};
        single.firing = i < n.firing ? 1 : 0;
        const std::string key = pagerduty_dedup_key(n.integration.receiver, n.group_key, n.alerts[i].id);
        result.messages.push_back(to_message(single, build_one(single, config, routing, templates, key, result)));
    }
    return result;
}

} // namespace tocsin::payload_detail
