#include "daemon/am_alerts.hpp"

#include <algorithm>
#include <cctype>

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

#include "daemon/api.hpp"
#include "daemon/http_types.hpp"
#include "daemon/overrides.hpp"
#include "daemon/silence_api.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;

constexpr int max_json_depth = 8;

// Reads an object of string values into `out`. Returns the problem, or an empty string.
std::string read_string_map(const json& node, const std::string& where, std::vector<std::pair<std::string, std::string>>& out)
{
    if (!node.is_object()) {
        return fmt::format("{} must be an object of strings; got {}", where, json_excerpt(node));
    }
    for (const auto& [name, value] : node.items()) {
        if (!value.is_string()) {
            return fmt::format("{}.{} must be a string; got {}", where, name, json_excerpt(value));
        }
        if (name.empty() || !is_valid_utf8(name)) {
            return fmt::format("{} has an empty or invalid UTF-8 name; use names such as alertname", where);
        }
        const std::string& text = value.get_ref<const std::string&>();
        if (!is_valid_utf8(text)) {
            return fmt::format("{}.{} is not valid UTF-8", where, name);
        }
        out.emplace_back(name, text);
    }
    return {};
}

// Parses one postableAlert. Returns the problem, or an empty string with `out` filled.
std::string read_alert(const json& item, std::size_t index, time_ms now, std::chrono::milliseconds resolve_timeout,
                       const postable_alert_limits& limits, alert& out)
{
    const std::string where = fmt::format("alerts[{}]", index);
    if (!item.is_object()) {
        return fmt::format("{} must be an object with labels; got {}", where, json_excerpt(item));
    }
    auto labels_node = item.find("labels");
    if (labels_node == item.end()) {
        return fmt::format("{}: missing field \"labels\"; an alert needs at least one label, such as alertname", where);
    }
    std::vector<std::pair<std::string, std::string>> pairs;
    if (std::string problem = read_string_map(*labels_node, where + ".labels", pairs); !problem.empty()) {
        return problem;
    }
    std::vector<label> labels;
    for (auto& [name, value] : pairs) {
        if (value.size() > limits.max_label_value_bytes) {
            return fmt::format("{}.labels.{} has {} bytes, over the limit of {}", where, name, value.size(),
                               limits.max_label_value_bytes);
        }
        labels.push_back(label{std::move(name), std::move(value)});
    }
    out.labels = label_set(std::move(labels));
    if (out.labels.empty()) {
        return fmt::format("{} has no labels with a value; an alert needs at least one, such as alertname", where);
    }
    if (out.labels.size() > limits.max_labels) {
        return fmt::format("{} has {} labels, over the limit of {}", where, out.labels.size(), limits.max_labels);
    }

    if (auto annotations = item.find("annotations"); annotations != item.end() && !annotations->is_null()) {
        if (std::string problem = read_string_map(*annotations, where + ".annotations", out.annotations);
            !problem.empty()) {
            return problem;
        }
        std::size_t bytes = 0;
        for (const auto& [name, value] : out.annotations) {
            bytes += name.size() + value.size();
        }
        if (bytes > limits.max_annotation_bytes) {
            return fmt::format("{}.annotations take {} bytes, over the limit of {}", where, bytes,
                               limits.max_annotation_bytes);
        }
        std::sort(out.annotations.begin(), out.annotations.end());
    }

    auto read_time = [&](const char* field, std::optional<time_ms>& into) -> std::string {
        auto it = item.find(field);
        if (it == item.end() || it->is_null()) {
            return {};
        }
        if (!it->is_string()) {
            return fmt::format("{}.{} must be an RFC 3339 string; got {}", where, field, json_excerpt(*it));
        }
        const std::string& text = it->get_ref<const std::string&>();
        // Go's zero time, which some senders use for "not set".
        if (text.starts_with("0001-01-01T00:00:00")) {
            return {};
        }
        into = parse_rfc3339(text);
        if (!into) {
            return fmt::format("{}.{} is {}, not an RFC 3339 time such as 2026-01-02T15:04:05Z", where, field,
                               json_excerpt(*it));
        }
        return {};
    };
    std::optional<time_ms> starts;
    std::optional<time_ms> ends;
    if (std::string problem = read_time("startsAt", starts); !problem.empty()) {
        return problem;
    }
    if (std::string problem = read_time("endsAt", ends); !problem.empty()) {
        return problem;
    }
    out.starts_at = starts ? *starts : (ends ? std::min(*ends, now) : now);
    out.ends_at = ends ? *ends : now + resolve_timeout.count();
    if (out.ends_at < out.starts_at) {
        return fmt::format("{}: endsAt ({}) is before startsAt ({})", where, format_rfc3339_ms(out.ends_at),
                           format_rfc3339_ms(out.starts_at));
    }
    if (auto url = item.find("generatorURL"); url != item.end() && !url->is_null()) {
        if (!url->is_string()) {
            return fmt::format("{}.generatorURL must be a string; got {}", where, json_excerpt(*url));
        }
        out.generator_url = url->get<std::string>();
    }
    out.id = out.labels.fingerprint();
    out.updated_at = now;
    out.source = "api";
    return {};
}

bool secret_key(std::string key)
{
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (key.ends_with("_file") || key.ends_with("_env")) {
        return false; // a path or a variable name, not the secret itself
    }
    for (const char* part : {"key", "token", "secret", "password", "credentials"}) {
        if (key.find(part) != std::string::npos) {
            return true;
        }
    }
    return key == "url" || key.ends_with("_url");
}

void redact(YAML::Node node)
{
    if (node.IsMap()) {
        for (auto it = node.begin(); it != node.end(); ++it) {
            if (it->first.IsScalar() && secret_key(it->first.Scalar()) && it->second.IsScalar()) {
                it->second = "<secret>";
            } else {
                redact(it->second);
            }
        }
    } else if (node.IsSequence()) {
        for (std::size_t i = 0; i < node.size(); ++i) {
            redact(node[i]);
        }
    }
}

} // namespace

std::string redacted_config(const std::string& text)
{
    try {
        YAML::Node root = YAML::Load(text);
        redact(root);
        YAML::Emitter out;
        out << root;
        return out.c_str();
    } catch (const YAML::Exception&) {
        return {};
    }
}

postable_alerts parse_postable_alerts(std::string_view body, time_ms now, std::chrono::milliseconds resolve_timeout,
                                      const postable_alert_limits& limits)
{
    postable_alerts out;
    if (json_nesting_depth(body) > max_json_depth) {
        out.fatal_status = 400;
        out.fatal = fmt::format("the body nests JSON deeper than {} levels; expected an array of alerts",
                                max_json_depth);
        return out;
    }
    json doc;
    try {
        doc = json::parse(body);
    } catch (const json::exception& e) {
        out.fatal_status = 400;
        out.fatal = fmt::format("invalid JSON ({}); expected an array of alerts such as [{{\"labels\": "
                                "{{\"alertname\": \"X\"}}}}]",
                                e.what());
        return out;
    }
    if (!doc.is_array()) {
        out.fatal_status = 400;
        out.fatal = fmt::format("the body must be a JSON array of alerts; got {}", json_excerpt(doc));
        return out;
    }
    if (doc.size() > limits.max_alerts) {
        out.fatal_status = 413;
        out.fatal = fmt::format("{} alerts in one request, over the limit of {}; send smaller batches", doc.size(),
                                limits.max_alerts);
        return out;
    }
    for (std::size_t i = 0; i < doc.size(); ++i) {
        alert a;
        if (std::string problem = read_alert(doc[i], i, now, resolve_timeout, limits, a); !problem.empty()) {
            out.errors.push_back(std::move(problem));
        } else {
            out.alerts.push_back(std::move(a));
        }
    }
    return out;
}

json gettable_alert(const alert& a, const mute_status& status, const std::vector<std::string>& receivers, time_ms now,
                    std::chrono::milliseconds resolve_timeout)
{
    json labels = json::object();
    for (const auto& l : a.labels.items()) {
        labels[l.name] = l.value;
    }
    json annotations = json::object();
    for (const auto& [name, value] : a.annotations) {
        annotations[name] = value;
    }
    json receiver_list = json::array();
    for (const auto& name : receivers) {
        receiver_list.push_back({{"name", name}});
    }
    json inhibited = json::array();
    for (const auto id : status.inhibited_by) {
        inhibited.push_back(fmt::format("{:016x}", id));
    }
    return {
        {"labels", std::move(labels)},
        {"annotations", std::move(annotations)},
        {"startsAt", format_rfc3339_ms(a.starts_at)},
        {"endsAt", format_rfc3339_ms(a.ends_at != 0 ? a.ends_at : now + resolve_timeout.count())},
        {"updatedAt", format_rfc3339_ms(a.updated_at)},
        {"generatorURL", a.generator_url},
        {"fingerprint", fmt::format("{:016x}", a.fingerprint())},
        {"receivers", std::move(receiver_list)},
        {"status",
         {{"state", status.muted() ? "suppressed" : "active"},
          {"silencedBy", status.silenced_by},
          {"inhibitedBy", std::move(inhibited)},
          {"mutedBy", json::array()}}},
    };
}

} // namespace tocsin
