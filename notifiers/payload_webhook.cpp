// Alertmanager's webhook JSON (version 4) and the console text.

#include <fmt/format.h>

#include "notifiers/payload.hpp"
#include "notifiers/payload_detail.hpp"

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

} // namespace

build_result build_webhook(const notification& original, const webhook_config& config, const routing_config& routing)
{
    build_result result;
    const notification n = filter_resolved(original, config.send_resolved);
    if (n.alerts.empty()) {
        return result;
    }

    // Status and the common labels describe every alert, as in Alertmanager, which computes the
    // template data before it applies max_alerts.
    const nlohmann::json data = template_data(n, routing.global.external_url);
    std::size_t kept = n.alerts.size();
    if (config.max_alerts > 0 && config.max_alerts < kept) {
        kept = static_cast<std::size_t>(config.max_alerts);
    }

    nlohmann::ordered_json alerts = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < kept; ++i) {
        const auto& a = data["Alerts"][i];
        alerts.push_back({
            {"status", a["Status"]},
            {"labels", a["Labels"]},
            {"annotations", a["Annotations"]},
            {"startsAt", a["StartsAt"]},
            {"endsAt", a["EndsAt"]},
            {"generatorURL", a["GeneratorURL"]},
            {"fingerprint", a["Fingerprint"]},
        });
    }

    nlohmann::ordered_json body = {
        {"receiver", data["Receiver"]},
        {"status", data["Status"]},
        {"alerts", std::move(alerts)},
        {"groupLabels", data["GroupLabels"]},
        {"commonLabels", data["CommonLabels"]},
        {"commonAnnotations", data["CommonAnnotations"]},
        {"externalURL", data["ExternalURL"]},
        {"version", "4"},
        {"groupKey", data["GroupKey"]},
        {"truncatedAlerts", n.alerts.size() - kept},
    };
    result.messages.push_back(message_for(n, dump_json(body)));
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
