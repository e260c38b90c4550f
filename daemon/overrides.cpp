#include "daemon/overrides.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/api.hpp"
#include "daemon/http_types.hpp"
#include "rules/duration.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;

bool is_upward(compare_op op) { return op == compare_op::greater || op == compare_op::greater_equal; }
bool is_downward(compare_op op) { return op == compare_op::less || op == compare_op::less_equal; }

// True when no value satisfies both conditions. The rule loader applies the same test to
// `recover`, so an overridden rule stays one that the loader would accept.
bool disjoint(const condition& when, const condition& recover)
{
    if (is_upward(when.op) && is_downward(recover.op)) {
        if (when.op == compare_op::greater || recover.op == compare_op::less) {
            return recover.threshold <= when.threshold;
        }
        return recover.threshold < when.threshold;
    }
    if (is_downward(when.op) && is_upward(recover.op)) {
        if (when.op == compare_op::less || recover.op == compare_op::greater) {
            return recover.threshold >= when.threshold;
        }
        return recover.threshold > when.threshold;
    }
    return false;
}

std::string severity_list(const rule& r)
{
    std::string out;
    for (const tier& t : r.tiers) {
        if (!out.empty()) {
            out += ", ";
        }
        out += to_string(t.level);
    }
    return out;
}

const tier* find_tier(const rule& r, severity level)
{
    for (const tier& t : r.tiers) {
        if (t.level == level) {
            return &t;
        }
    }
    return nullptr;
}

// A JSON value for an error message, cut to 60 bytes so that a huge value cannot flood the response.
std::string describe_value(const json& value)
{
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) {
        text.resize(57);
        text += "...";
    }
    return text;
}

bool has_control_character(std::string_view text)
{
    return std::any_of(text.begin(), text.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f;
    });
}

override_request fail(int status, std::string message)
{
    override_request out;
    out.status = status;
    out.error = std::move(message);
    return out;
}

// Reads `tiers` or `recover`: an object from severity names to finite numbers.
std::optional<std::string> read_thresholds(const json& object, const char* field, bool recover,
                                           threshold_override& o)
{
    if (!object.is_object()) {
        return fmt::format("{} must be an object from severity to threshold, such as "
                           "{{\"critical\": 0.97}}; got {}",
                           field, describe_value(object));
    }
    for (const auto& [name, value] : object.items()) {
        auto level = parse_severity(name);
        if (!level) {
            return fmt::format("unknown severity \"{}\" in {}; expected info, warning, critical or page", name, field);
        }
        if (!value.is_number()) {
            return fmt::format("{}.{} must be a number such as 0.97; got {}", field, name, describe_value(value));
        }
        const double threshold = value.get<double>();
        if (!std::isfinite(threshold)) {
            return fmt::format("{}.{} must be a finite number; got {}", field, name, describe_value(value));
        }
        auto it = std::find_if(o.tiers.begin(), o.tiers.end(),
                               [&](const tier_override& t) { return t.level == *level; });
        if (it == o.tiers.end()) {
            o.tiers.push_back(tier_override{*level, std::nullopt, std::nullopt});
            it = std::prev(o.tiers.end());
        }
        (recover ? it->recover_threshold : it->when_threshold) = threshold;
    }
    return std::nullopt;
}

// Reads `reason` or `author`: a string without control characters (they would break log lines)
// of at most `max_bytes`.
std::optional<std::string> read_text(const json& value, const char* field, std::size_t max_bytes, std::string& out)
{
    if (!value.is_string()) {
        return fmt::format("{} must be a string; got {}", field, describe_value(value));
    }
    out = value.get<std::string>();
    if (out.size() > max_bytes) {
        return fmt::format("{} has {} bytes, over the limit of {}; shorten it and link to details instead",
                           field, out.size(), max_bytes);
    }
    if (has_control_character(out)) {
        return fmt::format("{} contains a control character such as a newline; send one line of text", field);
    }
    return std::nullopt;
}

// Sets o.expires_at from `expires_in` or `expires_at`, within (now, now + max_duration].
std::optional<std::string> read_expiry(const json& body, time_ms now, const override_limits& limits,
                                       threshold_override& o)
{
    const bool has_in = body.contains("expires_in");
    const bool has_at = body.contains("expires_at");
    const std::string max_text = format_duration(limits.max_duration);
    if (has_in == has_at) {
        return fmt::format("set exactly one of expires_in (a duration such as \"2h\") and expires_at (an RFC 3339 "
                           "time such as \"2026-01-02T15:04:05Z\"); an override lasts at most {} "
                           "(limits.max_override_duration)",
                           max_text);
    }
    if (has_in) {
        const json& value = body["expires_in"];
        if (!value.is_string()) {
            return fmt::format("expires_in must be a duration string such as \"2h\"; got {}", describe_value(value));
        }
        std::string problem;
        auto duration = parse_duration(value.get<std::string>(), problem);
        if (!duration) {
            return fmt::format("invalid expires_in \"{}\": {}", value.get<std::string>(), problem);
        }
        if (duration->count() <= 0) {
            return "expires_in must be greater than 0s; to remove an override, send DELETE to the same path";
        }
        if (*duration > limits.max_duration) {
            return fmt::format("expires_in {} is longer than the maximum {} (limits.max_override_duration); "
                               "shorten it, or change the rule file for a lasting change",
                               value.get<std::string>(), max_text);
        }
        o.expires_at = now + duration->count();
        return std::nullopt;
    }
    const json& value = body["expires_at"];
    if (!value.is_string()) {
        return fmt::format("expires_at must be an RFC 3339 time string such as \"2026-01-02T15:04:05Z\"; got {}",
                           describe_value(value));
    }
    auto at = parse_rfc3339(value.get<std::string>());
    if (!at) {
        return fmt::format("invalid expires_at \"{}\"; expected an RFC 3339 time such as \"2026-01-02T15:04:05Z\" "
                           "or \"2026-01-02T17:04:05+02:00\"",
                           value.get<std::string>());
    }
    if (*at <= now) {
        return fmt::format("expires_at {} is not in the future; the server time is {}", value.get<std::string>(),
                           format_rfc3339_ms(now));
    }
    if (*at - now > limits.max_duration.count()) {
        return fmt::format("expires_at {} is {} ahead, more than the maximum {} (limits.max_override_duration); "
                           "choose an earlier time, or change the rule file for a lasting change",
                           value.get<std::string>(), format_duration(std::chrono::milliseconds(*at - now)), max_text);
    }
    o.expires_at = *at;
    return std::nullopt;
}

// Reads the digits of text[pos, pos + count) into `out`.
bool read_digits(std::string_view text, std::size_t pos, std::size_t count, int& out)
{
    if (pos + count > text.size()) {
        return false;
    }
    for (std::size_t i = pos; i < pos + count; ++i) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
    }
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + count, out);
    return ec == std::errc() && end == text.data() + pos + count;
}

} // namespace

const tier_override* threshold_override::find(severity level) const
{
    for (const tier_override& t : tiers) {
        if (t.level == level) {
            return &t;
        }
    }
    return nullptr;
}

override_request parse_override_request(std::string_view body, std::string_view rule_name, const rule_set& rules,
                                        std::string_view token_name, time_ms now, const override_limits& limits)
{
    if (body.size() > limits.max_body_bytes) {
        return fail(413, fmt::format("request body has {} bytes, over the limit of {} for an override; send only "
                                     "tiers, recover, expires_in or expires_at, reason and author",
                                     body.size(), limits.max_body_bytes));
    }
    const rule* target = nullptr;
    for (const auto& r : rules.rules) {
        if (r->name == rule_name) {
            target = r.get();
            break;
        }
    }
    if (target == nullptr) {
        return fail(404, fmt::format("rule \"{}\" not found; GET /api/v1/rules lists the loaded rules and their tiers",
                                     rule_name));
    }

    // An override body is a flat object with small maps inside; deep nesting would only make
    // the parser and the error messages recurse.
    constexpr int max_json_depth = 8;
    if (json_nesting_depth(body) > max_json_depth) {
        return fail(400, fmt::format("request body nests JSON deeper than {} levels; expected an object such as "
                                     "{{\"tiers\": {{\"critical\": 0.97}}, \"expires_in\": \"2h\", \"reason\": \"...\"}}",
                                     max_json_depth));
    }
    json parsed;
    try {
        parsed = json::parse(body);
    } catch (const json::exception& e) {
        // parse_error for bad syntax, out_of_range for a number beyond double such as 1e999.
        return fail(400, fmt::format("invalid JSON in the request body ({}); expected an object such as "
                                     "{{\"tiers\": {{\"critical\": 0.97}}, \"expires_in\": \"2h\", \"reason\": \"...\"}}",
                                     e.what()));
    }
    if (!parsed.is_object()) {
        return fail(400, fmt::format("the request body must be a JSON object such as {{\"tiers\": {{\"critical\": "
                                     "0.97}}, \"expires_in\": \"2h\", \"reason\": \"...\"}}; got {}",
                                     describe_value(parsed)));
    }
    for (const auto& [key, value] : parsed.items()) {
        static constexpr std::string_view known[] = {"tiers", "recover", "expires_in", "expires_at", "reason",
                                                     "author"};
        if (std::find(std::begin(known), std::end(known), key) == std::end(known)) {
            return fail(400, fmt::format("unknown field \"{}\"; expected tiers, recover, expires_in or expires_at, "
                                         "reason and author",
                                         key));
        }
    }

    threshold_override o;
    o.rule_name = target->name;
    o.created_at = now;
    o.token_name = std::string(token_name);
    if (parsed.contains("tiers")) {
        if (auto problem = read_thresholds(parsed["tiers"], "tiers", false, o)) {
            return fail(400, *problem);
        }
    }
    if (parsed.contains("recover")) {
        if (auto problem = read_thresholds(parsed["recover"], "recover", true, o)) {
            return fail(400, *problem);
        }
    }
    std::sort(o.tiers.begin(), o.tiers.end(),
              [](const tier_override& a, const tier_override& b) { return a.level < b.level; });
    if (auto problem = read_expiry(parsed, now, limits, o)) {
        return fail(400, *problem);
    }
    if (!parsed.contains("reason")) {
        return fail(400, "missing field \"reason\"; say why the thresholds change, such as \"deploy of checkout "
                         "v2 raises latency until the cache warms\"");
    }
    if (auto problem = read_text(parsed["reason"], "reason", limits.max_reason_bytes, o.reason)) {
        return fail(400, *problem);
    }
    if (o.reason.find_first_not_of(' ') == std::string::npos) {
        return fail(400, "reason is empty; say why the thresholds change");
    }
    if (parsed.contains("author")) {
        if (auto problem = read_text(parsed["author"], "author", limits.max_author_bytes, o.author)) {
            return fail(400, *problem);
        }
    }
    if (o.author.empty()) {
        o.author = o.token_name;
    }
    if (auto problem = check_override(o, *target); !problem.empty()) {
        return fail(400, problem);
    }
    override_request out;
    out.value = std::move(o);
    out.status = 200;
    return out;
}

std::string check_override(const threshold_override& o, const rule& r)
{
    if (o.tiers.empty()) {
        return fmt::format("the override of rule {} changes no threshold; set at least one severity in tiers or "
                           "recover, such as \"tiers\": {{\"{}\": 0.97}}",
                           r.name, r.tiers.empty() ? "warning" : to_string(r.tiers.back().level));
    }
    for (const tier_override& t : o.tiers) {
        const char* name = to_string(t.level);
        const tier* base = find_tier(r, t.level);
        if (base == nullptr) {
            return fmt::format("rule {} has no tier {}; its tiers are {}", r.name, name, severity_list(r));
        }
        if (!t.when_threshold && !t.recover_threshold) {
            return fmt::format("the override of tier {} of rule {} sets no threshold", name, r.name);
        }
        if ((t.when_threshold && !std::isfinite(*t.when_threshold)) ||
            (t.recover_threshold && !std::isfinite(*t.recover_threshold))) {
            return fmt::format("the override of tier {} of rule {} has a threshold that is not a finite number",
                               name, r.name);
        }
        if (t.recover_threshold && !base->recover) {
            return fmt::format("tier {} of rule {} has no recover condition, so recover.{} cannot be overridden; "
                               "remove it from the request, or add recover to the tier in {}",
                               name, r.name, name, r.file);
        }
    }

    auto changed = apply_override(r, o);
    for (const tier& t : changed->tiers) {
        if (!t.recover || !o.find(t.level)) {
            continue;
        }
        if (!disjoint(t.when, *t.recover)) {
            const char* side = is_upward(t.when.op) ? "at or below" : "at or above";
            return fmt::format("with the override, recover \"{}\" of tier {} overlaps its condition \"{}\", so the "
                               "tier could be released while its condition holds; set recover.{} {} {}",
                               t.recover->to_string(), to_string(t.level), t.when.to_string(), to_string(t.level),
                               side, fmt::format("{}", t.when.threshold));
        }
    }
    // Tiers are in ascending severity. With > or >= a higher severity must not fire at a lower
    // value than a lower severity; with < or <= the reverse. The rule loader requires the same.
    for (std::size_t i = 0; i < changed->tiers.size(); ++i) {
        for (std::size_t j = i + 1; j < changed->tiers.size(); ++j) {
            const tier& low = changed->tiers[i];
            const tier& high = changed->tiers[j];
            const bool up = is_upward(low.when.op) && is_upward(high.when.op);
            const bool down = is_downward(low.when.op) && is_downward(high.when.op);
            if ((up && high.when.threshold < low.when.threshold) ||
                (down && high.when.threshold > low.when.threshold)) {
                return fmt::format("with the override, tier {} (\"{}\") would fire {} tier {} (\"{}\"); a higher "
                                   "severity needs a threshold {} the lower one, so override both tiers",
                                   to_string(high.level), high.when.to_string(), up ? "below" : "above",
                                   to_string(low.level), low.when.to_string(), up ? "at or above" : "at or below");
            }
        }
    }
    return {};
}

std::shared_ptr<const rule> apply_override(const rule& r, const threshold_override& o)
{
    auto copy = std::make_shared<rule>(r);
    for (tier& t : copy->tiers) {
        const tier_override* change = o.find(t.level);
        if (change == nullptr) {
            continue;
        }
        if (change->when_threshold) {
            t.when.threshold = *change->when_threshold;
        }
        if (change->recover_threshold && t.recover) {
            t.recover->threshold = *change->recover_threshold;
        }
    }
    return copy;
}

std::vector<tier_change> tier_changes(const threshold_override& o, const rule& r)
{
    std::vector<tier_change> out;
    for (const tier_override& change : o.tiers) {
        const tier* base = find_tier(r, change.level);
        if (base == nullptr) {
            continue;
        }
        tier_change c;
        c.level = change.level;
        c.when_before = base->when;
        c.when_after = base->when;
        if (change.when_threshold) {
            c.when_after.threshold = *change.when_threshold;
        }
        if (change.recover_threshold && base->recover) {
            c.recover_before = base->recover;
            c.recover_after = base->recover;
            c.recover_after->threshold = *change.recover_threshold;
        }
        out.push_back(std::move(c));
    }
    return out;
}

std::string describe_changes(const std::vector<tier_change>& changes)
{
    std::string out;
    for (const tier_change& c : changes) {
        if (!out.empty()) {
            out += ", ";
        }
        out += fmt::format("{} {} -> {}", to_string(c.level), c.when_before.to_string(), c.when_after.to_string());
        if (c.recover_before && c.recover_after) {
            out += fmt::format(" (recover {} -> {})", c.recover_before->to_string(), c.recover_after->to_string());
        }
    }
    return out;
}

void override_table::set(threshold_override o)
{
    std::string key = o.rule_name;
    items_.insert_or_assign(std::move(key), std::move(o));
}

std::optional<threshold_override> override_table::remove(const std::string& rule_name)
{
    auto it = items_.find(rule_name);
    if (it == items_.end()) {
        return std::nullopt;
    }
    threshold_override removed = std::move(it->second);
    items_.erase(it);
    return removed;
}

const threshold_override* override_table::find(const std::string& rule_name) const
{
    auto it = items_.find(rule_name);
    return it == items_.end() ? nullptr : &it->second;
}

std::vector<threshold_override> override_table::take_expired(time_ms now)
{
    std::vector<threshold_override> expired;
    for (auto it = items_.begin(); it != items_.end();) {
        if (it->second.expires_at <= now) {
            expired.push_back(std::move(it->second));
            it = items_.erase(it);
        } else {
            ++it;
        }
    }
    return expired;
}

std::vector<dropped_override> override_table::take_unfit(const rule_set& rules)
{
    std::unordered_map<std::string_view, const rule*> by_name;
    for (const auto& r : rules.rules) {
        by_name.emplace(r->name, r.get());
    }
    std::vector<dropped_override> dropped;
    for (auto it = items_.begin(); it != items_.end();) {
        std::string reason;
        if (auto found = by_name.find(it->first); found == by_name.end()) {
            reason = fmt::format("rule {} no longer exists", it->first);
        } else {
            reason = check_override(it->second, *found->second);
        }
        if (reason.empty()) {
            ++it;
            continue;
        }
        dropped.push_back(dropped_override{std::move(it->second), std::move(reason)});
        it = items_.erase(it);
    }
    return dropped;
}

std::shared_ptr<const rule_set> override_table::apply(const std::shared_ptr<const rule_set>& base) const
{
    if (!base || items_.empty()) {
        return base;
    }
    // The groups and the flat list share the rule pointers, so both must point at the same copy.
    std::unordered_map<const rule*, std::shared_ptr<const rule>> replaced;
    for (const auto& r : base->rules) {
        if (const threshold_override* o = find(r->name)) {
            replaced.emplace(r.get(), apply_override(*r, *o));
        }
    }
    if (replaced.empty()) {
        return base;
    }
    auto swap_in = [&](const std::shared_ptr<const rule>& r) {
        auto it = replaced.find(r.get());
        return it == replaced.end() ? r : it->second;
    };
    auto effective = std::make_shared<rule_set>();
    effective->groups.reserve(base->groups.size());
    for (const rule_group& g : base->groups) {
        rule_group copy;
        copy.name = g.name;
        copy.file = g.file;
        copy.rules.reserve(g.rules.size());
        for (const auto& r : g.rules) {
            copy.rules.push_back(swap_in(r));
        }
        effective->groups.push_back(std::move(copy));
    }
    effective->rules.reserve(base->rules.size());
    for (const auto& r : base->rules) {
        effective->rules.push_back(swap_in(r));
    }
    return effective;
}

std::optional<time_ms> parse_rfc3339(std::string_view text)
{
    // 2026-01-02T03:04:05[.fraction](Z|+hh:mm|-hh:mm)
    int year = 0;
    int month = 0;
    int day = 0;
    int hour = 0;
    int minute = 0;
    int second = 0;
    if (!read_digits(text, 0, 4, year) || text.size() < 20 || text[4] != '-' || !read_digits(text, 5, 2, month) ||
        text[7] != '-' || !read_digits(text, 8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
        !read_digits(text, 11, 2, hour) || text[13] != ':' || !read_digits(text, 14, 2, minute) || text[16] != ':' ||
        !read_digits(text, 17, 2, second)) {
        return std::nullopt;
    }
    // A leap second (60) is not accepted: time_ms, like Unix time, has no place for it.
    if (hour > 23 || minute > 59 || second > 59) {
        return std::nullopt;
    }
    const std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                                           std::chrono::day{static_cast<unsigned>(day)}};
    if (!date.ok()) {
        return std::nullopt;
    }
    std::size_t pos = 19;
    time_ms millis = 0;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
            if (pos - start < 3) {
                millis = millis * 10 + (text[pos] - '0');
            }
            ++pos;
        }
        const std::size_t digits = pos - start;
        if (digits == 0 || digits > 9) {
            return std::nullopt;
        }
        for (std::size_t d = digits; d < 3; ++d) {
            millis *= 10;
        }
    }
    time_ms offset_minutes = 0;
    if (pos == text.size() - 1 && (text[pos] == 'Z' || text[pos] == 'z')) {
        ++pos;
    } else if (pos + 6 == text.size() && (text[pos] == '+' || text[pos] == '-')) {
        int offset_hour = 0;
        int offset_minute = 0;
        if (!read_digits(text, pos + 1, 2, offset_hour) || text[pos + 3] != ':' ||
            !read_digits(text, pos + 4, 2, offset_minute) || offset_hour > 23 || offset_minute > 59) {
            return std::nullopt;
        }
        offset_minutes = (offset_hour * 60 + offset_minute) * (text[pos] == '-' ? -1 : 1);
        pos += 6;
    } else {
        return std::nullopt;
    }
    const auto days = std::chrono::sys_days(date).time_since_epoch().count();
    const time_ms seconds_of_day = hour * 3600 + minute * 60 + second;
    return (static_cast<time_ms>(days) * 86400 + seconds_of_day - offset_minutes * 60) * 1000 + millis;
}

} // namespace tocsin
