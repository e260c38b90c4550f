#include "daemon/api.hpp"

#include <ctime>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/metrics.hpp"
#include "daemon/overrides.hpp"

namespace tocsin {

std::string format_rfc3339_ms(time_ms t)
{
    std::time_t seconds = static_cast<std::time_t>(t / 1000);
    int millis = static_cast<int>(t % 1000);
    if (millis < 0) {
        millis += 1000;
        --seconds;
    }
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1,
                       utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

namespace {

nlohmann::json alert_item(const alert_snapshot& a)
{
    nlohmann::json labels = nlohmann::json::object();
    for (const auto& l : a.labels.items()) {
        labels[l.name] = l.value;
    }
    nlohmann::json annotations = nlohmann::json::object();
    for (const auto& [name, value] : a.annotations) {
        annotations[name] = value;
    }
    nlohmann::json item = {
        {"id", fmt::format("{:016x}", a.id)},
        {"rule", a.rule_name},
        {"labels", std::move(labels)},
        {"annotations", std::move(annotations)},
        {"state", to_string(a.state)},
        {"severity", to_string(a.level)},
        {"value", format_sample_value(a.value)},
        {"activeAt", format_rfc3339_ms(a.active_at)},
    };
    if (a.fired_at != 0) {
        item["firedAt"] = format_rfc3339_ms(a.fired_at);
    }
    if (a.last_sample_at != 0) {
        item["lastSampleAt"] = format_rfc3339_ms(a.last_sample_at);
    }
    if (a.no_data) {
        item["noData"] = true;
    }
    return item;
}

nlohmann::json template_sources(const std::vector<std::pair<std::string, text_template>>& templates)
{
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [name, tmpl] : templates) {
        out[name] = tmpl.source();
    }
    return out;
}

double seconds(std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000.0; }

nlohmann::json override_item(const threshold_override& o, const rule& r)
{
    auto tiers = nlohmann::json::array();
    for (const tier_change& c : tier_changes(o, r)) {
        nlohmann::json tier = {
            {"severity", to_string(c.level)},
            {"condition", {{"from", c.when_before.to_string()}, {"to", c.when_after.to_string()}}},
        };
        if (c.recover_before && c.recover_after) {
            tier["recover"] = {{"from", c.recover_before->to_string()}, {"to", c.recover_after->to_string()}};
        }
        tiers.push_back(std::move(tier));
    }
    return {
        {"rule", o.rule_name},
        {"tiers", std::move(tiers)},
        {"createdAt", format_rfc3339_ms(o.created_at)},
        {"expiresAt", format_rfc3339_ms(o.expires_at)},
        {"reason", o.reason},
        {"author", o.author},
        {"tokenName", o.token_name},
    };
}

} // namespace

std::string alerts_json(const std::vector<alert_snapshot>& alerts,
                        const std::function<mute_status(const alert_snapshot&)>& mutes)
{
    auto list = nlohmann::json::array();
    for (const auto& a : alerts) {
        nlohmann::json item = alert_item(a);
        auto silenced = nlohmann::json::array();
        auto inhibited = nlohmann::json::array();
        auto storms = nlohmann::json::array();
        nlohmann::json acknowledged = nullptr;
        if (mutes) {
            const mute_status status = mutes(a);
            for (const auto& id : status.silenced_by) {
                silenced.push_back(id);
            }
            for (const auto id : status.inhibited_by) {
                inhibited.push_back(fmt::format("{:016x}", id));
            }
            for (const auto& receiver : status.storms) {
                storms.push_back(receiver);
            }
            if (status.acknowledged_at != 0) {
                acknowledged = {{"by", status.acknowledged_by},
                                {"comment", status.ack_comment},
                                {"at", format_rfc3339_ms(status.acknowledged_at)}};
            }
        }
        item["silencedBy"] = std::move(silenced);
        item["inhibitedBy"] = std::move(inhibited);
        item["heldByStormDigest"] = std::move(storms);
        item["acknowledged"] = std::move(acknowledged);
        list.push_back(std::move(item));
    }
    nlohmann::json doc = {{"status", "success"}, {"data", {{"alerts", std::move(list)}}}};
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string rules_json(const rule_set& rules, const std::vector<rule_stats>& stats,
                       const std::vector<alert_snapshot>& alerts, const override_table* overrides)
{
    std::map<std::string, const rule_stats*> stats_by_rule;
    for (const auto& s : stats) {
        stats_by_rule[s.name] = &s;
    }
    std::map<std::string, std::vector<const alert_snapshot*>> alerts_by_rule;
    for (const auto& a : alerts) {
        alerts_by_rule[a.rule_name].push_back(&a);
    }

    auto groups = nlohmann::json::array();
    for (const auto& group : rules.groups) {
        auto list = nlohmann::json::array();
        for (const auto& file_rule : group.rules) {
            const threshold_override* active = overrides != nullptr ? overrides->find(file_rule->name) : nullptr;
            // The tiers in force: the rule file's, or the overridden copy the engine evaluates.
            const std::shared_ptr<const rule> r = active != nullptr ? apply_override(*file_rule, *active) : file_rule;
            auto tiers = nlohmann::json::array();
            for (const auto& t : r->tiers) {
                nlohmann::json tier = {
                    {"severity", to_string(t.level)},
                    {"condition", t.when.to_string()},
                    {"forSeconds", seconds(t.for_duration)},
                    {"keepFiringForSeconds", seconds(t.keep_firing_for)},
                };
                if (t.recover) {
                    tier["recover"] = t.recover->to_string();
                }
                tiers.push_back(std::move(tier));
            }

            // The fields Prometheus' rules API has, so that Grafana and scripts can read them,
            // then tocsin's own (tiers, series).
            std::string state = "inactive";
            auto rule_alerts = nlohmann::json::array();
            if (auto it = alerts_by_rule.find(r->name); it != alerts_by_rule.end()) {
                for (const auto* a : it->second) {
                    if (a->state == alert_state::firing) {
                        state = "firing";
                    } else if (a->state == alert_state::pending && state != "firing") {
                        state = "pending";
                    }
                    rule_alerts.push_back(alert_item(*a));
                }
            }
            nlohmann::json item = {
                {"type", "alerting"},
                {"name", r->name},
                {"query", r->expr},
                {"duration", r->tiers.empty() ? 0.0 : seconds(r->tiers.front().for_duration)},
                {"keepFiringFor", r->tiers.empty() ? 0.0 : seconds(r->tiers.front().keep_firing_for)},
                {"labels", template_sources(r->labels)},
                {"annotations", template_sources(r->annotations)},
                {"state", state},
                {"alerts", std::move(rule_alerts)},
                {"health", "ok"},
                {"lastError", ""},
                {"file", r->file},
                {"metric", r->metric},
                {"transform", to_string(r->xform.kind)},
                {"tiers", std::move(tiers)},
            };
            if (active != nullptr) {
                item["override"] = override_item(*active, *file_rule);
            }
            if (r->dynamic) {
                const detector_spec& d = *r->dynamic;
                item["dynamic"] = {{"type", to_string(d.kind)}, {"minSamples", d.min_samples}};
            }
            if (auto it = stats_by_rule.find(r->name); it != stats_by_rule.end()) {
                item["series"] = it->second->series;
                if (r->dynamic) {
                    // Series whose baseline is not ready yet: they cannot fire until it is.
                    item["warmingUp"] = it->second->warming_up;
                }
                if (it->second->limit_exceeded) {
                    item["health"] = "err";
                    item["lastError"] = "alert limit exceeded: more alerts than limits.per_rule_max_alerts; "
                                        "the rule's alerts are held back";
                }
            }
            list.push_back(std::move(item));
        }
        groups.push_back({{"name", group.name}, {"file", group.file}, {"interval", 0}, {"rules", std::move(list)}});
    }
    nlohmann::json doc = {{"status", "success"}, {"data", {{"groups", std::move(groups)}}}};
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string overrides_json(const override_table& overrides, const rule_set& rules)
{
    auto list = nlohmann::json::array();
    for (const auto& r : rules.rules) {
        if (const threshold_override* o = overrides.find(r->name)) {
            list.push_back(override_item(*o, *r));
        }
    }
    nlohmann::json doc = {{"status", "success"}, {"data", {{"overrides", std::move(list)}}}};
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string override_json(const threshold_override& o, const rule& r)
{
    nlohmann::json doc = {{"status", "success"}, {"data", override_item(o, r)}};
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace tocsin
