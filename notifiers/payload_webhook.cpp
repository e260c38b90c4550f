// Alertmanager's webhook JSON (version 4) and the console text.

#include <algorithm>
#include <iterator>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "notifiers/payload.hpp"
#include "notifiers/payload_detail.hpp"
#include "rules/labels.hpp"

namespace tocsin::payload_detail {

namespace {

outbound_message message_for(const notification& n, std::string body)
{
    outbound_message m;
    m.integration = n.integration;
    m.group_key = n.group_key;
    m.body = std::move(body);
    m.resolved = n.all_resolved();
    m.alert_count = n.alerts.size();
    return m;
}

// Appends `text` as a JSON string. Valid UTF-8 is escaped as nlohmann::json escapes it (quote,
// backslash and control characters); other text goes through nlohmann::json, which replaces
// invalid bytes with U+FFFD.
void append_json_string(std::string& out, std::string_view text)
{
    if (!is_valid_utf8(text)) {
        out += dump_json(nlohmann::json(std::string(text)));
        return;
    }
    out.push_back('"');
    for (char c : text) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\b':
            out += "\\b";
            break;
        case '\f':
            out += "\\f";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
            } else {
                out.push_back(c);
            }
        }
    }
    out.push_back('"');
}

void append_pairs(std::string& out, const std::vector<std::pair<std::string_view, std::string_view>>& pairs)
{
    out.push_back('{');
    for (std::size_t i = 0; i < pairs.size(); ++i) {
        if (i > 0) {
            out.push_back(',');
        }
        append_json_string(out, pairs[i].first);
        out.push_back(':');
        append_json_string(out, pairs[i].second);
    }
    out.push_back('}');
}

using text_pairs = std::vector<std::pair<std::string_view, std::string_view>>;

text_pairs label_views(const label_set& labels)
{
    text_pairs out;
    out.reserve(labels.size());
    for (const auto& l : labels.items()) {
        out.emplace_back(l.name, l.value);
    }
    return out;
}

// Returns the annotations as a JSON object has them: sorted by name, the last of equal names kept.
text_pairs annotation_views(const annotation_list& annotations)
{
    text_pairs out;
    out.reserve(annotations.size());
    for (const auto& [name, value] : annotations) {
        out.emplace_back(name, value);
    }
    std::stable_sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    for (std::size_t i = 0; i + 1 < out.size();) {
        if (out[i].first == out[i + 1].first) {
            out.erase(out.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
            ++i;
        }
    }
    return out;
}

// The pairs of `first` that every other set has too, as Alertmanager's CommonLabels.
text_pairs common_of(text_pairs common, const std::vector<text_pairs>& others)
{
    for (const auto& other : others) {
        if (common.empty()) {
            break;
        }
        std::erase_if(common, [&other](const auto& kv) {
            auto it = std::lower_bound(other.begin(), other.end(), kv,
                                       [](const auto& x, const auto& y) { return x.first < y.first; });
            return it == other.end() || it->first != kv.first || it->second != kv.second;
        });
    }
    return common;
}

} // namespace

// Writes the body directly rather than through template_data(): a group with many alerts
// notifies on every change, and this is the hot path of webhook delivery.
build_result build_webhook(const notification& n, const webhook_config& config, const routing_config& routing)
{
    build_result result;
    // Without send_resolved only the firing alerts (listed first) are sent.
    const std::size_t count = config.send_resolved ? n.alerts.size() : std::min(n.alerts.size(), n.firing);
    if (count == 0) {
        return result;
    }
    // Status and the common labels describe every alert, as in Alertmanager, which computes the
    // template data before it applies max_alerts.
    std::size_t kept = count;
    if (config.max_alerts > 0 && config.max_alerts < kept) {
        kept = static_cast<std::size_t>(config.max_alerts);
    }
    std::vector<text_pairs> labels(count);
    std::vector<text_pairs> annotations(count);
    for (std::size_t i = 0; i < count; ++i) {
        labels[i] = label_views(n.alerts[i].labels);
        annotations[i] = annotation_views(n.alerts[i].annotations);
    }
    const bool all_resolved = n.firing == 0;

    std::string out;
    out.reserve(512 + count * 384);
    out += "{\"receiver\":";
    append_json_string(out, n.integration.receiver);
    out += all_resolved ? ",\"status\":\"resolved\"" : ",\"status\":\"firing\"";
    out += ",\"alerts\":[";
    for (std::size_t i = 0; i < kept; ++i) {
        const alert& a = n.alerts[i];
        if (i > 0) {
            out.push_back(',');
        }
        out += i < n.firing ? "{\"status\":\"firing\",\"labels\":" : "{\"status\":\"resolved\",\"labels\":";
        append_pairs(out, labels[i]);
        out += ",\"annotations\":";
        append_pairs(out, annotations[i]);
        // A firing rule alert has no end yet (ends_at 0): Go's zero time, as Alertmanager
        // shows it. An alert from the API keeps its announced end, as in Alertmanager.
        fmt::format_to(std::back_inserter(out), ",\"startsAt\":\"{}\",\"endsAt\":\"{}\",\"generatorURL\":",
                       format_time(a.starts_at), format_time(a.ends_at));
        append_json_string(out, a.generator_url);
        fmt::format_to(std::back_inserter(out), ",\"fingerprint\":\"{:016x}\"}}", a.fingerprint());
    }
    out += "],\"groupLabels\":";
    append_pairs(out, label_views(n.group_labels));
    const std::vector<text_pairs> other_labels(labels.begin() + 1, labels.end());
    const std::vector<text_pairs> other_annotations(annotations.begin() + 1, annotations.end());
    out += ",\"commonLabels\":";
    append_pairs(out, common_of(labels.front(), other_labels));
    out += ",\"commonAnnotations\":";
    append_pairs(out, common_of(annotations.front(), other_annotations));
    out += ",\"externalURL\":";
    append_json_string(out, routing.global.external_url);
    out += ",\"version\":\"4\",\"groupKey\":";
    append_json_string(out, n.group_key);
    fmt::format_to(std::back_inserter(out), ",\"truncatedAlerts\":{}}}", count - kept);

    outbound_message m;
    m.integration = n.integration;
    m.group_key = n.group_key;
    m.body = std::move(out);
    m.resolved = all_resolved;
    m.alert_count = count;
    result.messages.push_back(std::move(m));
    return result;
}

build_result build_console(const notification& original, const console_config& config, const routing_config&)
{
    build_result result;
    const notification n = filter_resolved(original, config.send_resolved);
    if (n.alerts.empty()) {
        return result;
    }

    std::string text = fmt::format("{} receiver={} group={}\n", n.all_resolved() ? "[RESOLVED]" : fmt::format("[FIRING:{}]", n.firing),
                                   n.integration.receiver, n.group_labels.to_string());
    for (std::size_t i = 0; i < n.alerts.size(); ++i) {
        const alert& a = n.alerts[i];
        std::string summary;
        for (const auto& [k, v] : a.annotations) {
            if (k == "summary" || (k == "description" && summary.empty())) {
                summary = v;
            }
        }
        text += fmt::format("  {} {}", i < n.firing ? "firing  " : "resolved", a.labels.to_string());
        if (!summary.empty()) {
            text += ": " + summary;
        }
        text += '\n';
    }
    result.messages.push_back(message_for(n, std::move(text)));
    return result;
}

} // namespace tocsin::payload_detail
