#include "daemon/api.hpp"

#include <ctime>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/metrics.hpp"

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

std::string alerts_json(const std::vector<alert_snapshot>& alerts)
{
    auto list = nlohmann::json::array();
    for (const auto& a : alerts) {
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
        list.push_back(std::move(item));
    }
    nlohmann::json doc = {{"status", "success"}, {"data", {{"alerts", std::move(list)}}}};
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string rules_json(const rule_set& rules, const std::vector<rule_stats>& stats)
{
    std::map<std::string, const rule_stats*> by_name;
    for (const auto& s : stats) {
        by_name[s.name] = &s;
    }
    auto groups = nlohmann::json::array();
    for (const auto& group : rules.groups) {
        auto list = nlohmann::json::array();
        for (const auto& r : group.rules) {
            auto tiers = nlohmann::json::array();
            for (const auto& t : r->tiers) {
                nlohmann::json tier = {
                    {"severity", to_string(t.level)},
                    {"condition", t.when.to_string()},
                    {"forSeconds", static_cast<double>(t.for_duration.count()) / 1000.0},
                    {"keepFiringForSeconds", static_cast<double>(t.keep_firing_for.count()) / 1000.0},
                };
                if (t.recover) {
                    tier["recover"] = t.recover->to_string();
                }
                tiers.push_back(std::move(tier));
            }
            nlohmann::json item = {
                {"name", r->name},
                {"file", r->file},
                {"metric", r->metric},
                {"transform", to_string(r->xform.kind)},
                {"tiers", std::move(tiers)},
            };
            if (auto it = by_name.find(r->name); it != by_name.end()) {
                item["series"] = it->second->series;
                item["pending"] = it->second->pending;
                item["firing"] = it->second->firing;
                item["health"] = it->second->limit_exceeded ? "alert_limit_exceeded" : "ok";
            }
            list.push_back(std::move(item));
        }
        groups.push_back({{"name", group.name}, {"file", group.file}, {"rules", std::move(list)}});
    }
    nlohmann::json doc = {{"status", "success"}, {"data", {{"groups", std::move(groups)}}}};
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace tocsin
