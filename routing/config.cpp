#include "routing/config.hpp"

#include <glob.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include "routing/config_loading.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"
#include "rules/yaml_check.hpp"

namespace tocsin {

namespace routing_detail {

void load_context::warn(const YAML::Node& node, std::string message)
{
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) {
        warnings.add(check.file(), 0, 0, std::move(message));
        return;
    }
    warnings.add(check.file(), mark.line + 1, mark.column + 1, std::move(message));
}

std::string load_context::resolve(const std::string& name) const
{
    const std::filesystem::path p(name);
    if (p.is_absolute() || base_dir.empty()) {
        return p.string();
    }
    return (base_dir / p).string();
}

} // namespace routing_detail

namespace {

using routing_detail::load_context;
using yaml::checker;

bool defined(const YAML::Node& node)
{
    return node.IsDefined();
}

// A name used somewhere (a route's receiver, a time interval), checked once everything is read.
struct reference {
    std::string name;
    YAML::Node node;
    std::string field;
};

std::string_view trim(std::string_view text)
{
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

// Reads `name =~ value` where the regex is not quoted, which Alertmanager's matcher syntax allows
// and PromQL's does not. The value runs to the next comma or the end.
std::optional<label_matcher> read_unquoted_regex_matcher(std::string_view text, std::size_t& pos)
{
    std::size_t p = pos;
    std::string name;
    std::string ignored;
    if (p < text.size() && (text[p] == '"' || text[p] == '\'' || text[p] == '`')) {
        if (!promql::read_string(text, p, name, ignored)) {
            return std::nullopt;
        }
    } else if (!promql::read_identifier(text, p, name, false)) {
        return std::nullopt;
    }
    promql::skip_spaces(text, p);
    const std::string_view rest = text.substr(p);
    match_op op = match_op::regex;
    if (rest.starts_with("=~")) {
        op = match_op::regex;
    } else if (rest.starts_with("!~")) {
        op = match_op::not_regex;
    } else {
        return std::nullopt;
    }
    p += 2;
    promql::skip_spaces(text, p);
    if (p >= text.size() || text[p] == '"' || text[p] == '\'' || text[p] == '`') {
        return std::nullopt;
    }
    const std::size_t end = std::min(text.find(',', p), text.size());
    const std::string value(trim(text.substr(p, end - p)));
    auto matcher = label_matcher::make(std::move(name), op, value, ignored);
    if (matcher) {
        pos = end;
    }
    return matcher;
}

// Parses one entry of an Alertmanager `matchers` list: one matcher, or several separated by
// commas and optionally enclosed in braces ({severity="page", team="db"}).
bool parse_matcher_list(std::string_view text, std::vector<label_matcher>& out, std::string& error)
{
    std::string_view body = trim(text);
    if (body.starts_with('{')) {
        if (!body.ends_with('}')) {
            error = fmt::format("missing closing brace in {}", promql::quote(text));
            return false;
        }
        body = body.substr(1, body.size() - 2);
    }
    std::size_t pos = 0;
    promql::skip_spaces(body, pos);
    if (pos == body.size()) {
        error = "empty matcher; expected a matcher such as severity=\"page\"";
        return false;
    }
    while (pos < body.size()) {
        const std::size_t start = pos;
        std::string problem;
        auto matcher = promql::read_matcher(body, pos, true, problem);
        if (!matcher) {
            pos = start;
            matcher = read_unquoted_regex_matcher(body, pos);
        }
        if (!matcher) {
            error = fmt::format("{} in {}", problem, promql::quote(text));
            return false;
        }
        out.push_back(std::move(*matcher));
        promql::skip_spaces(body, pos);
        if (pos == body.size()) {
            break;
        }
        if (body[pos] != ',') {
            error = fmt::format("unexpected text {} after the matcher {}; separate matchers with commas",
                                promql::quote(body.substr(pos)), out.back().to_string());
            return false;
        }
        ++pos;
        promql::skip_spaces(body, pos);
    }
    return true;
}

// Reads a list of Alertmanager matcher strings.
void load_matcher_strings(const YAML::Node& node, checker& check, const std::string& field,
                          std::vector<label_matcher>& out)
{
    if (!check.expect_sequence(node, field)) {
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        auto text = check.string(item, field);
        if (!text) {
            continue;
        }
        std::string error;
        if (!parse_matcher_list(*text, out, error)) {
            check.error(item, fmt::format("invalid matcher in {}: {}", field, error));
        }
    }
}

// Reads the legacy `match` (equality) or `match_re` (anchored regex) mapping of label name to value.
void load_matcher_map(const YAML::Node& node, checker& check, const std::string& field, match_op op,
                      std::vector<label_matcher>& out)
{
    if (node.IsNull()) {
        return;
    }
    if (!check.expect_map(node, field)) {
        return;
    }
    // The keys are label names, so check_keys does not apply; repeated names are checked here.
    std::map<std::string, int> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        if (!key.IsScalar()) {
            check.error(key, fmt::format("{} keys must be label names, got {}", field, yaml::describe(key)));
            continue;
        }
        auto [previous, inserted] = seen.emplace(key.Scalar(), key.Mark().line + 1);
        if (!inserted) {
            check.error(key, fmt::format("label {} appears twice in {}; the first is at line {}; keep one",
                                         promql::quote(key.Scalar()), field, previous->second));
            continue;
        }
        auto text = check.string(value, fmt::format("{}.{}", field, key.Scalar()));
        if (!text) {
            continue;
        }
        std::string error;
        auto matcher = label_matcher::make(key.Scalar(), op, *text, error);
        if (!matcher) {
            check.error(value, fmt::format("invalid {} entry: {}", field, error));
            continue;
        }
        out.push_back(std::move(*matcher));
    }
}

bool valid_label_name(const std::string& name)
{
    return !name.empty() && is_valid_utf8(name);
}

// Reads a list of label names (group_by, equal).
std::vector<std::string> load_label_names(const YAML::Node& node, checker& check, const std::string& field,
                                          bool allow_all, bool& all)
{
    std::vector<std::string> names;
    all = false;
    if (!check.expect_sequence(node, field)) {
        return names;
    }
    std::map<std::string, int> seen;
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        auto name = check.string(item, field);
        if (!name) {
            continue;
        }
        if (allow_all && *name == "...") {
            all = true;
            continue;
        }
        if (!valid_label_name(*name)) {
            check.error(item, fmt::format("invalid label name {} in {}; expected a name such as alertname",
                                          promql::quote(*name), field));
            continue;
        }
        auto [previous, inserted] = seen.emplace(*name, item.Mark().line + 1);
        if (!inserted) {
            check.error(item, fmt::format("label {} appears twice in {}; the first is at line {}; keep one",
                                          promql::quote(*name), field, previous->second));
            continue;
        }
        names.push_back(*name);
    }
    if (all && !names.empty()) {
        check.error(node, fmt::format("{} mixes '...' with label names; '...' groups by all labels, so use it "
                                      "alone",
                                      field));
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::vector<std::string> load_names(const YAML::Node& node, checker& check, const std::string& field,
                                    std::vector<reference>& refs)
{
    std::vector<std::string> names;
    if (!check.expect_sequence(node, field)) {
        return names;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        if (auto name = check.string(item, field)) {
            names.push_back(*name);
            refs.push_back({*name, item, field});
        }
    }
    return names;
}

// Orders matchers as Alertmanager does (name, operator, value), so a route's key does not
// depend on whether a matcher came from match, match_re or matchers.
void sort_matchers(std::vector<label_matcher>& matchers)
{
    std::stable_sort(matchers.begin(), matchers.end(), [](const label_matcher& a, const label_matcher& b) {
        if (a.name() != b.name()) {
            return a.name() < b.name();
        }
        if (a.op() != b.op()) {
            return a.op() < b.op();
        }
        return a.value() < b.value();
    });
}

class routing_loader {
public:
    routing_loader(load_context& ctx) : ctx_(ctx), check_(ctx.check) {}

    routing_config load(const YAML::Node& root);

private:
    void load_global(const YAML::Node& node, global_config& global);
    void load_route(const YAML::Node& node, const route_config* parent, route_config& out, const std::string& field);
    void check_intervals(const YAML::Node& node, const route_config& route, const std::string& field);
    void load_inhibit_rules(const YAML::Node& node, std::vector<inhibit_rule_config>& out);
    void load_flap_detection(const YAML::Node& node, flap_config& out);
    void load_escalation(const YAML::Node& node, route_config& route, const std::string& field);
    void warn_unrequired_equal(const YAML::Node& item, const std::string& field, const inhibit_rule_config& rule);
    void load_time_intervals(const YAML::Node& node, const std::string& field, std::vector<time_interval_config>& out);
    time_interval_spec load_time_interval_spec(const YAML::Node& node, const std::string& field);
    void load_templates(const YAML::Node& node, std::vector<std::string>& out);
    void check_references(const routing_config& config);

    load_context& ctx_;
    checker& check_;
    std::vector<reference> receiver_refs_;
    std::vector<reference> interval_refs_;
};

// Global keys of Alertmanager that configure integrations tocsin does not deliver to.
constexpr std::string_view unused_global_keys[] = {
    "smtp_from", "smtp_hello", "smtp_smarthost", "smtp_auth_username", "smtp_auth_password",
    "smtp_auth_password_file", "smtp_auth_secret", "smtp_auth_secret_file", "smtp_auth_identity",
    "smtp_require_tls", "smtp_tls_config", "opsgenie_api_url", "opsgenie_api_key", "opsgenie_api_key_file",
    "wechat_api_url", "wechat_api_secret", "wechat_api_corp_id", "victorops_api_url", "victorops_api_key",
    "victorops_api_key_file", "telegram_api_url", "webex_api_url", "jira_api_url", "rocketchat_api_url",
    "rocketchat_token", "rocketchat_token_file", "rocketchat_token_id", "rocketchat_token_id_file",
};

void routing_loader::load_global(const YAML::Node& node, global_config& global)
{
    if (node.IsNull() || !check_.expect_map(node, "global")) {
        return;
    }
    check_.check_keys(node, "global",
                      {"resolve_timeout", "pagerduty_url", "slack_api_url", "slack_api_url_file", "http_config",
                       "smtp_from", "smtp_hello", "smtp_smarthost", "smtp_auth_username", "smtp_auth_password",
                       "smtp_auth_password_file", "smtp_auth_secret", "smtp_auth_secret_file", "smtp_auth_identity",
                       "smtp_require_tls", "smtp_tls_config", "opsgenie_api_url", "opsgenie_api_key",
                       "opsgenie_api_key_file", "wechat_api_url", "wechat_api_secret", "wechat_api_corp_id",
                       "victorops_api_url", "victorops_api_key", "victorops_api_key_file", "telegram_api_url",
                       "webex_api_url", "jira_api_url", "rocketchat_api_url", "rocketchat_token",
                       "rocketchat_token_file", "rocketchat_token_id", "rocketchat_token_id_file"});

    if (const YAML::Node n = checker::child(node, "resolve_timeout"); defined(n)) {
        if (auto d = check_.duration(n, "global.resolve_timeout")) {
            if (d->count() <= 0) {
                check_.error(n, "global.resolve_timeout must be greater than 0; the default is 5m");
            } else {
                global.resolve_timeout = *d;
            }
        }
    }
    if (const YAML::Node n = checker::child(node, "pagerduty_url"); defined(n)) {
        if (auto url = check_.string(n, "global.pagerduty_url")) {
            if (!url->starts_with("https://") && !url->starts_with("http://")) {
                check_.error(n, fmt::format("global.pagerduty_url {} is not an http or https URL; the default is {}",
                                            promql::quote(*url), global.pagerduty_url));
            } else {
                global.pagerduty_url = *url;
            }
        }
    }
    std::vector<routing_detail::secret_source> sources;
    routing_detail::collect_secret_sources(node, "global.", "slack_api_url", "slack_api_url_file", "", sources);
    if (routing_detail::read_secret(sources, ctx_, "global.slack_api_url", global.slack_api_url)) {
        routing_detail::check_secret_url(global.slack_api_url, sources.front().node, ctx_, "global.slack_api_url");
    }
    if (const YAML::Node n = checker::child(node, "http_config"); defined(n)) {
        routing_detail::load_http_config(n, ctx_, "global.http_config", nullptr);
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        if (!key.IsScalar()) {
            continue;
        }
        const std::string& name = key.Scalar();
        if (std::find(std::begin(unused_global_keys), std::end(unused_global_keys), name) !=
            std::end(unused_global_keys)) {
            ctx_.warn(key, fmt::format("global.{} has no effect in tocsin: it configures an integration tocsin "
                                       "does not deliver to (tocsin sends to PagerDuty, Slack and webhooks)",
                                       name));
        }
    }
}

void routing_loader::load_route(const YAML::Node& node, const route_config* parent, route_config& out,
                                const std::string& field)
{
    out.line = node.Mark().line + 1;
    if (parent != nullptr) {
        out.receiver = parent->receiver;
        out.group_by = parent->group_by;
        out.group_by_all = parent->group_by_all;
        out.group_wait = parent->group_wait;
        out.group_interval = parent->group_interval;
        out.repeat_interval = parent->repeat_interval;
        out.dedup = parent->dedup;
        out.escalate = parent->escalate;
    }
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field,
                      {"receiver", "group_by", "match", "match_re", "matchers", "continue", "group_wait",
                       "group_interval", "repeat_interval", "mute_time_intervals", "active_time_intervals", "routes",
                       "dedup_scope", "escalate"});

    const YAML::Node receiver = checker::child(node, "receiver");
    if (defined(receiver)) {
        if (auto name = check_.string(receiver, field + ".receiver")) {
            if (name->empty()) {
                check_.error(receiver, fmt::format("empty {}.receiver; expected the name of a receiver", field));
            } else {
                out.receiver = *name;
                receiver_refs_.push_back({*name, receiver, field + ".receiver"});
            }
        }
    } else if (parent == nullptr) {
        check_.error(node, "the root route has no receiver; set route.receiver to the receiver that gets every "
                           "alert no child route takes");
    }

    if (const YAML::Node n = checker::child(node, "group_by"); defined(n)) {
        bool all = false;
        out.group_by = load_label_names(n, check_, field + ".group_by", true, all);
        out.group_by_all = all;
        if (all) {
            out.group_by.clear();
        }
    }

    const YAML::Node match = checker::child(node, "match");
    const YAML::Node match_re = checker::child(node, "match_re");
    const YAML::Node matchers = checker::child(node, "matchers");
    if (defined(match)) {
        load_matcher_map(match, check_, field + ".match", match_op::equal, out.matchers);
    }
    if (defined(match_re)) {
        load_matcher_map(match_re, check_, field + ".match_re", match_op::regex, out.matchers);
    }
    if (defined(matchers)) {
        load_matcher_strings(matchers, check_, field + ".matchers", out.matchers);
    }
    sort_matchers(out.matchers);

    const YAML::Node cont = checker::child(node, "continue");
    if (defined(cont)) {
        if (auto value = check_.boolean(cont, field + ".continue")) {
            out.continue_matching = *value;
        }
    }

    if (parent == nullptr) {
        // The root route takes every alert, so matchers and `continue` would mean nothing there.
        for (const YAML::Node& n : {match, match_re, matchers}) {
            if (defined(n)) {
                check_.error(n, "the root route must not have matchers, because it takes every alert; move them "
                                "to a child route under route.routes");
            }
        }
        if (defined(cont)) {
            check_.error(cont, "the root route must not have continue, because it has no siblings; remove it");
        }
    }

    if (const YAML::Node n = checker::child(node, "group_wait"); defined(n)) {
        if (auto d = check_.duration(n, field + ".group_wait")) {
            out.group_wait = *d;
        }
    }
    if (const YAML::Node n = checker::child(node, "group_interval"); defined(n)) {
        if (auto d = check_.duration(n, field + ".group_interval")) {
            if (d->count() <= 0) {
                check_.error(n, fmt::format("{}.group_interval must be greater than 0; the default is 5m", field));
            } else {
                out.group_interval = *d;
            }
        }
    }
    if (const YAML::Node n = checker::child(node, "repeat_interval"); defined(n)) {
        if (auto d = check_.duration(n, field + ".repeat_interval")) {
            if (d->count() <= 0) {
                check_.error(n, fmt::format("{}.repeat_interval must be greater than 0; the default is 4h", field));
            } else {
                out.repeat_interval = *d;
            }
        }
    }
    check_intervals(node, out, field);

    for (const char* key : {"mute_time_intervals", "active_time_intervals"}) {
        const YAML::Node n = checker::child(node, key);
        if (!defined(n) || n.IsNull()) {
            continue;
        }
        auto names = load_names(n, check_, field + "." + key, interval_refs_);
        if (parent == nullptr && !names.empty()) {
            check_.error(n, fmt::format("the root route must not have {}; set it on a child route", key));
        }
        if (std::string_view(key) == "mute_time_intervals") {
            out.mute_time_intervals = std::move(names);
        } else {
            out.active_time_intervals = std::move(names);
        }
    }

    if (const YAML::Node n = checker::child(node, "dedup_scope"); defined(n)) {
        if (auto value = check_.string(n, field + ".dedup_scope")) {
            if (*value == "group") {
                out.dedup = dedup_scope::group;
            } else if (*value == "alert") {
                out.dedup = dedup_scope::alert;
            } else {
                check_.error(n, fmt::format("invalid {}.dedup_scope {}; expected group (one PagerDuty incident per "
                                            "alert group) or alert (one per alert)",
                                            field, promql::quote(*value)));
            }
        }
    }

    if (const YAML::Node n = checker::child(node, "escalate"); defined(n)) {
        load_escalation(n, out, field + ".escalate");
    }

    if (const YAML::Node n = checker::child(node, "routes"); defined(n) && !n.IsNull()) {
        if (check_.expect_sequence(n, field + ".routes")) {
            out.routes.resize(n.size());
            for (std::size_t i = 0; i < n.size(); ++i) {
                load_route(n[i], &out, out.routes[i], fmt::format("{}.routes[{}]", field, i));
            }
        }
    }
}

// Warns when reminders cannot come out at repeat_interval: a group notifies only on its
// group_interval ticks, so the repeat rounds up to the next multiple of group_interval.
void routing_loader::check_intervals(const YAML::Node& node, const route_config& route, const std::string& field)
{
    const YAML::Node repeat = checker::child(node, "repeat_interval");
    const YAML::Node group = checker::child(node, "group_interval");
    if (!defined(repeat) && !defined(group)) {
        return; // inherited values were checked at the route that set them
    }
    const auto g = route.group_interval.count();
    const auto r = route.repeat_interval.count();
    if (g <= 0 || r % g == 0) {
        return;
    }
    const milliseconds effective{(r / g + 1) * g};
    ctx_.warn(defined(repeat) ? repeat : group,
              fmt::format("{}: repeat_interval {} is not a multiple of group_interval {}; reminders go out every {}",
                          field, format_duration(route.repeat_interval), format_duration(route.group_interval),
                          format_duration(effective)));
}

std::string route_key(const route_config& route, const std::string& parent_key)
{
    std::string key = parent_key + "/{";
    for (std::size_t i = 0; i < route.matchers.size(); ++i) {
        key += i == 0 ? "" : ",";
        key += route.matchers[i].to_string();
    }
    key += "}";
    return key;
}

void assign_child_keys(route_config& route)
{
    std::set<std::string> used;
    for (std::size_t i = 0; i < route.routes.size(); ++i) {
        route_config& child = route.routes[i];
        child.key = route_key(child, route.key);
        if (!used.insert(child.key).second) {
            // The first sibling keeps the plain key, so adding a route with the same matchers
            // after it leaves the keys of the routes before it alone.
            child.key += "#" + std::to_string(i);
            used.insert(child.key);
        }
        assign_child_keys(child);
    }
}

// Warns about `equal` labels that the source matchers let be absent. An absent label reads as
// empty on both sides, so a source alert without it inhibits every target alert without it,
// which is rarely what the rule's author meant.
void routing_loader::warn_unrequired_equal(const YAML::Node& item, const std::string& field,
                                           const inhibit_rule_config& rule)
{
    std::vector<std::string> unrequired;
    for (const std::string& name : rule.equal) {
        const bool required = std::any_of(rule.source_matchers.begin(), rule.source_matchers.end(),
                                          [&](const label_matcher& m) { return m.name() == name && !m.matches(""); });
        if (!required) {
            unrequired.push_back(name);
        }
    }
    if (unrequired.empty()) {
        return;
    }
    ctx_.warn(item, fmt::format("{}: the source matchers do not require the equal labels {}, so a source alert "
                                "without them inhibits every target alert without them; add source matchers such as "
                                "{}=~\".+\" if that is not intended",
                                field, fmt::join(unrequired, ", "), unrequired.front()));
}

// Reads route.escalate: a list of {after, receiver}, each `after` longer than the one before.
// An empty list (or null) turns escalation off for a route that would inherit it.
void routing_loader::load_escalation(const YAML::Node& node, route_config& route, const std::string& field)
{
    route.escalate.clear();
    if (node.IsNull() || !check_.expect_sequence(node, field)) {
        return;
    }
    constexpr std::size_t max_steps = 10;
    if (node.size() > max_steps) {
        check_.error(node, fmt::format("{} has {} steps; at most {} are allowed", field, node.size(), max_steps));
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        const std::string item_field = fmt::format("{}[{}]", field, i);
        if (!check_.expect_map(item, item_field)) {
            continue;
        }
        check_.check_keys(item, item_field, {"after", "receiver"});
        const YAML::Node after = checker::child(item, "after");
        const YAML::Node receiver = checker::child(item, "receiver");
        if (!defined(after) || !defined(receiver)) {
            check_.error(item, fmt::format("{} needs after and receiver, such as {{after: 15m, receiver: team-lead}}",
                                           item_field));
            continue;
        }
        auto delay = check_.duration(after, item_field + ".after");
        auto name = check_.string(receiver, item_field + ".receiver");
        if (!delay || !name) {
            continue;
        }
        if (delay->count() <= 0) {
            check_.error(after, fmt::format("{}.after must be greater than 0s, such as 15m", item_field));
            continue;
        }
        if (!route.escalate.empty() && *delay <= route.escalate.back().after) {
            check_.error(after, fmt::format("{}.after ({}) must be longer than the step before it ({}); list the "
                                            "steps in the order they happen",
                                            item_field, format_duration(*delay),
                                            format_duration(route.escalate.back().after)));
            continue;
        }
        if (name->empty()) {
            check_.error(receiver, fmt::format("empty {}.receiver; expected the name of a receiver", item_field));
            continue;
        }
        if (*name == route.receiver) {
            ctx_.warn(receiver, fmt::format("{}.receiver is the route's own receiver {}, which then gets each "
                                            "escalated alert twice; name the next receiver in the chain",
                                            item_field, promql::quote(*name)));
        }
        receiver_refs_.push_back({*name, receiver, item_field + ".receiver"});
        route.escalate.push_back({*delay, *name});
    }
}

void routing_loader::load_flap_detection(const YAML::Node& node, flap_config& out)
{
    if (!check_.expect_map(node, "flap_detection")) {
        return;
    }
    check_.check_keys(node, "flap_detection", {"window", "start_at_changes", "stop_at_changes"});
    const YAML::Node window = checker::child(node, "window");
    const YAML::Node start = checker::child(node, "start_at_changes");
    const YAML::Node stop = checker::child(node, "stop_at_changes");
    if (!defined(window) || !defined(start) || !defined(stop)) {
        check_.error(node, "flap_detection needs window, start_at_changes and stop_at_changes, such as {window: "
                           "10m, start_at_changes: 5, stop_at_changes: 2}");
        return;
    }
    auto w = check_.duration(window, "flap_detection.window");
    auto a = check_.count(start, "flap_detection.start_at_changes");
    auto b = check_.count(stop, "flap_detection.stop_at_changes");
    if (!w || !a || !b) {
        return;
    }
    if (w->count() <= 0) {
        check_.error(window, "flap_detection.window must be greater than 0s, such as 10m");
        return;
    }
    if (*a < 2 || *a > 1000) {
        check_.error(start, fmt::format("flap_detection.start_at_changes is {}; expected 2 to 1000 changes", *a));
        return;
    }
    if (*b >= *a) {
        check_.error(stop, fmt::format("flap_detection.stop_at_changes ({}) must be less than start_at_changes ({}), "
                                       "or flapping would never stop",
                                       *b, *a));
        return;
    }
    out.window = *w;
    out.start_at_changes = static_cast<std::uint32_t>(*a);
    out.stop_at_changes = static_cast<std::uint32_t>(*b);
}

void routing_loader::load_inhibit_rules(const YAML::Node& node, std::vector<inhibit_rule_config>& out)
{
    if (node.IsNull() || !check_.expect_sequence(node, "inhibit_rules")) {
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        const std::string field = fmt::format("inhibit_rules[{}]", i);
        if (!check_.expect_map(item, field)) {
            continue;
        }
        check_.check_keys(item, field,
                          {"source_matchers", "target_matchers", "equal", "source_match", "source_match_re",
                           "target_match", "target_match_re"});
        inhibit_rule_config rule;
        rule.line = item.Mark().line + 1;
        if (const YAML::Node n = checker::child(item, "source_match"); defined(n)) {
            load_matcher_map(n, check_, field + ".source_match", match_op::equal, rule.source_matchers);
        }
        if (const YAML::Node n = checker::child(item, "source_match_re"); defined(n)) {
            load_matcher_map(n, check_, field + ".source_match_re", match_op::regex, rule.source_matchers);
        }
        if (const YAML::Node n = checker::child(item, "source_matchers"); defined(n) && !n.IsNull()) {
            load_matcher_strings(n, check_, field + ".source_matchers", rule.source_matchers);
        }
        if (const YAML::Node n = checker::child(item, "target_match"); defined(n)) {
            load_matcher_map(n, check_, field + ".target_match", match_op::equal, rule.target_matchers);
        }
        if (const YAML::Node n = checker::child(item, "target_match_re"); defined(n)) {
            load_matcher_map(n, check_, field + ".target_match_re", match_op::regex, rule.target_matchers);
        }
        if (const YAML::Node n = checker::child(item, "target_matchers"); defined(n) && !n.IsNull()) {
            load_matcher_strings(n, check_, field + ".target_matchers", rule.target_matchers);
        }
        if (const YAML::Node n = checker::child(item, "equal"); defined(n) && !n.IsNull()) {
            bool all = false;
            rule.equal = load_label_names(n, check_, field + ".equal", false, all);
        }
        sort_matchers(rule.source_matchers);
        sort_matchers(rule.target_matchers);
        warn_unrequired_equal(item, field, rule);
        out.push_back(std::move(rule));
    }
}

constexpr std::string_view weekday_names[] = {"sunday", "monday", "tuesday", "wednesday",
                                              "thursday", "friday", "saturday"};
constexpr std::string_view month_names[] = {"january", "february", "march",     "april",   "may",      "june",
                                            "july",    "august",   "september", "october", "november", "december"};

std::optional<int> parse_int(std::string_view text)
{
    int value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

// Parses one end of a weekday or month range: a name (any case) or, for months, a number 1-12.
template <std::size_t N>
std::optional<int> parse_named(std::string_view text, const std::string_view (&names)[N], bool numbers)
{
    std::string lower(trim(text));
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (std::size_t i = 0; i < N; ++i) {
        if (names[i] == lower) {
            return static_cast<int>(i) + (numbers ? 1 : 0);
        }
    }
    if (numbers) {
        if (auto n = parse_int(lower); n && *n >= 1 && *n <= static_cast<int>(N)) {
            return *n;
        }
    }
    return std::nullopt;
}

// Parses "HH:MM" from 00:00 to 24:00 into minutes since midnight.
std::optional<int> parse_clock_time(std::string_view text)
{
    if (text.size() != 5 || text[2] != ':') {
        return std::nullopt;
    }
    auto hours = parse_int(text.substr(0, 2));
    auto minutes = parse_int(text.substr(3, 2));
    if (!hours || !minutes || *hours < 0 || *minutes < 0 || *minutes > 59 || *hours > 24 ||
        (*hours == 24 && *minutes != 0)) {
        return std::nullopt;
    }
    return *hours * 60 + *minutes;
}

// Splits "a:b" into its two ends; a single value is a range of one.
std::pair<std::string_view, std::string_view> split_range(std::string_view text)
{
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) {
        return {text, text};
    }
    return {text.substr(0, colon), text.substr(colon + 1)};
}

bool zone_exists(const std::string& location)
{
    if (location.empty() || location == "UTC" || location == "Local") {
        return true;
    }
    if (location.front() == '/' || location.find("..") != std::string::npos) {
        return false;
    }
    std::error_code ec;
    return std::filesystem::is_regular_file(std::filesystem::path("/usr/share/zoneinfo") / location, ec);
}

time_interval_spec routing_loader::load_time_interval_spec(const YAML::Node& node, const std::string& field)
{
    time_interval_spec spec;
    if (!check_.expect_map(node, field)) {
        return spec;
    }
    check_.check_keys(node, field, {"times", "weekdays", "days_of_month", "months", "years", "location"});

    if (const YAML::Node times = checker::child(node, "times"); defined(times) && !times.IsNull()) {
        if (check_.expect_sequence(times, field + ".times")) {
            for (std::size_t i = 0; i < times.size(); ++i) {
                const YAML::Node range = times[i];
                const std::string range_field = fmt::format("{}.times[{}]", field, i);
                if (!check_.expect_map(range, range_field)) {
                    continue;
                }
                check_.check_keys(range, range_field, {"start_time", "end_time"});
                std::optional<int> bounds[2];
                const char* keys[2] = {"start_time", "end_time"};
                for (int k = 0; k < 2; ++k) {
                    const YAML::Node n = checker::child(range, keys[k]);
                    if (!defined(n)) {
                        check_.error(range, fmt::format("{} has no {}; expected for example start_time: \"09:00\" "
                                                        "and end_time: \"17:00\"",
                                                        range_field, keys[k]));
                        continue;
                    }
                    if (auto text = check_.string(n, range_field + "." + keys[k])) {
                        bounds[k] = parse_clock_time(*text);
                        if (!bounds[k]) {
                            check_.error(n, fmt::format("invalid {}.{} {}; expected HH:MM from 00:00 to 24:00",
                                                        range_field, keys[k], promql::quote(*text)));
                        }
                    }
                }
                if (bounds[0] && bounds[1] && *bounds[0] >= *bounds[1]) {
                    check_.error(range, fmt::format("{}: start_time must be before end_time; a range that crosses "
                                                    "midnight needs two ranges, one ending at 24:00",
                                                    range_field));
                } else if (bounds[0] && bounds[1]) {
                    spec.times.push_back(clock_range{*bounds[0], *bounds[1]});
                }
            }
        }
    }

    struct range_kind {
        const char* key;
        const char* expected;
    };
    const range_kind kinds[] = {
        {"weekdays", "a weekday or a range such as monday:friday"},
        {"days_of_month", "a day from 1 to 31 or -31 to -1 (counted from the month's end), or a range such as 1:7"},
        {"months", "a month name or number, or a range such as january:march or 1:3"},
        {"years", "a year or a range such as 2024:2026"},
    };
    for (const auto& kind : kinds) {
        const YAML::Node list = checker::child(node, kind.key);
        if (!defined(list) || list.IsNull()) {
            continue;
        }
        const std::string list_field = field + "." + kind.key;
        if (!check_.expect_sequence(list, list_field)) {
            continue;
        }
        const std::string_view key = kind.key;
        for (std::size_t i = 0; i < list.size(); ++i) {
            const YAML::Node item = list[i];
            auto text = check_.string(item, list_field);
            if (!text) {
                continue;
            }
            auto [first_text, last_text] = split_range(*text);
            std::optional<int> first;
            std::optional<int> last;
            std::optional<int> written_first; // days of the month as written, negative ones included
            std::optional<int> written_last;
            if (key == "weekdays") {
                first = parse_named(first_text, weekday_names, false);
                last = parse_named(last_text, weekday_names, false);
            } else if (key == "months") {
                first = parse_named(first_text, month_names, true);
                last = parse_named(last_text, month_names, true);
            } else if (key == "days_of_month") {
                first = parse_int(trim(first_text));
                last = parse_int(trim(last_text));
                written_first = first;
                written_last = last;
                for (auto* day : {&first, &last}) {
                    if (*day && (**day == 0 || **day < -31 || **day > 31)) {
                        day->reset();
                    } else if (*day && **day < 0) {
                        **day += 32; // -1 is the last day; compared as day 31 of the longest month
                    }
                }
            } else {
                first = parse_int(trim(first_text));
                last = parse_int(trim(last_text));
                if ((first && *first <= 0) || (last && *last <= 0)) {
                    first.reset();
                }
            }
            if (!first || !last) {
                check_.error(item, fmt::format("invalid {} entry {}; expected {}", list_field, promql::quote(*text),
                                               kind.expected));
            } else if (*first > *last) {
                check_.error(item, fmt::format("invalid {} range {}: the start is after the end", list_field,
                                               promql::quote(*text)));
            } else if (key == "weekdays") {
                spec.weekdays.push_back(value_range{*first, *last});
            } else if (key == "months") {
                spec.months.push_back(value_range{*first, *last});
            } else if (key == "days_of_month") {
                spec.days_of_month.push_back(value_range{*written_first, *written_last});
            } else {
                spec.years.push_back(value_range{*first, *last});
            }
        }
    }

    if (const YAML::Node n = checker::child(node, "location"); defined(n)) {
        if (auto location = check_.string(n, field + ".location")) {
            std::string error;
            if (*location == "Local") {
                spec.location = time_zone::host(error);
            } else if (!location->empty() && *location != "UTC" && zone_exists(*location)) {
                spec.location = time_zone::locate(*location, error);
            }
            if (!error.empty() || !zone_exists(*location)) {
                check_.error(n, fmt::format("unknown time zone {} in {}.location; expected a name from "
                                            "/usr/share/zoneinfo such as Europe/Berlin, or UTC or Local{}",
                                            promql::quote(*location), field, error.empty() ? "" : " (" + error + ")"));
            }
        }
    }
    return spec;
}

void routing_loader::load_time_intervals(const YAML::Node& node, const std::string& field,
                                         std::vector<time_interval_config>& out)
{
    if (node.IsNull() || !check_.expect_sequence(node, field)) {
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        const std::string item_field = fmt::format("{}[{}]", field, i);
        if (!check_.expect_map(item, item_field)) {
            continue;
        }
        check_.check_keys(item, item_field, {"name", "time_intervals"});
        time_interval_config config;
        config.line = item.Mark().line + 1;
        const YAML::Node name = checker::child(item, "name");
        if (!defined(name)) {
            check_.error(item, fmt::format("{} has no name; routes refer to time intervals by name", item_field));
        } else if (auto text = check_.string(name, item_field + ".name")) {
            if (text->empty()) {
                check_.error(name, fmt::format("empty {}.name; routes refer to time intervals by name", item_field));
            } else {
                config.name = *text;
                for (const auto& other : out) {
                    if (other.name == config.name) {
                        check_.error(name, fmt::format("time interval {} is defined twice; the first is at line "
                                                       "{}; rename one",
                                                       promql::quote(config.name), other.line));
                    }
                }
            }
        }
        if (const YAML::Node specs = checker::child(item, "time_intervals"); defined(specs) && !specs.IsNull()) {
            if (check_.expect_sequence(specs, item_field + ".time_intervals")) {
                for (std::size_t k = 0; k < specs.size(); ++k) {
                    config.specs.push_back(
                        load_time_interval_spec(specs[k], fmt::format("{}.time_intervals[{}]", item_field, k)));
                }
            }
        }
        if (!config.name.empty()) {
            out.push_back(std::move(config));
        }
    }
}

void routing_loader::load_templates(const YAML::Node& node, std::vector<std::string>& out)
{
    if (node.IsNull() || !check_.expect_sequence(node, "templates")) {
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        auto pattern = check_.string(item, "templates");
        if (!pattern) {
            continue;
        }
        if (pattern->empty()) {
            check_.error(item, "empty templates entry; expected a glob such as templates/*.tmpl");
            continue;
        }
        const std::string full = ctx_.resolve(*pattern);
        glob_t matches{};
        const int rc = ::glob(full.c_str(), 0, nullptr, &matches);
        // A glob that matches nothing is not an error, as in Alertmanager: a templates folder may
        // be empty until someone adds a file.
        if (rc != 0 && rc != GLOB_NOMATCH) {
            check_.error(item, fmt::format("failed to expand templates entry {}: {}", promql::quote(*pattern),
                                           rc == GLOB_NOSPACE ? "out of memory" : "a folder could not be read"));
        }
        if (rc == 0) {
            for (std::size_t m = 0; m < matches.gl_pathc; ++m) {
                std::error_code ec;
                if (!std::filesystem::is_directory(matches.gl_pathv[m], ec)) {
                    out.emplace_back(matches.gl_pathv[m]);
                }
            }
        }
        ::globfree(&matches);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
}

void routing_loader::check_references(const routing_config& config)
{
    for (const auto& ref : receiver_refs_) {
        if (config.find_receiver(ref.name) == nullptr) {
            std::string names;
            for (const auto& r : config.receivers) {
                names += names.empty() ? "" : ", ";
                names += r.name;
            }
            check_.error(ref.node, fmt::format("{} names receiver {}, which is not defined; defined receivers: {}",
                                               ref.field, promql::quote(ref.name), names.empty() ? "none" : names));
        }
    }
    for (const auto& ref : interval_refs_) {
        const bool found = std::any_of(config.time_intervals.begin(), config.time_intervals.end(),
                                       [&](const time_interval_config& t) { return t.name == ref.name; });
        if (!found) {
            check_.error(ref.node, fmt::format("{} names time interval {}, which is not defined; define it under "
                                               "time_intervals",
                                               ref.field, promql::quote(ref.name)));
        }
    }
}

routing_config routing_loader::load(const YAML::Node& root)
{
    routing_config config;
    if (!root.IsMap()) {
        return config;
    }
    if (const YAML::Node n = checker::child(root, "global"); defined(n)) {
        load_global(n, config.global);
    }
    if (const YAML::Node n = checker::child(root, "receivers"); defined(n) && !n.IsNull()) {
        routing_detail::load_receivers(n, ctx_, config.global, config.receivers);
    }
    if (const YAML::Node n = checker::child(root, "time_intervals"); defined(n)) {
        load_time_intervals(n, "time_intervals", config.time_intervals);
    }
    // mute_time_intervals is the older name of time_intervals; Alertmanager still reads both.
    if (const YAML::Node n = checker::child(root, "mute_time_intervals"); defined(n)) {
        load_time_intervals(n, "mute_time_intervals", config.time_intervals);
    }
    if (const YAML::Node n = checker::child(root, "route"); defined(n)) {
        config.present = true;
        load_route(n, nullptr, config.root, "route");
        config.root.key = "{}";
        assign_child_keys(config.root);
    }
    if (const YAML::Node n = checker::child(root, "inhibit_rules"); defined(n)) {
        load_inhibit_rules(n, config.inhibit_rules);
    }
    if (const YAML::Node n = checker::child(root, "templates"); defined(n)) {
        load_templates(n, config.template_files);
    }
    if (const YAML::Node n = checker::child(root, "flap_detection"); defined(n) && !n.IsNull()) {
        load_flap_detection(n, config.flap_detection);
    }
    check_references(config);
    return config;
}

} // namespace

} // namespace tocsin

namespace tocsin {

routing_config load_routing(const YAML::Node& root, yaml::checker& check, const std::string& base_dir,
                            diagnostics& warnings, env_lookup env)
{
    routing_detail::load_context ctx{check, warnings, std::filesystem::path(base_dir), env ? env : process_env};
    routing_loader loader(ctx);
    return loader.load(root);
}

const std::vector<std::string>& routing_keys()
{
    static const std::vector<std::string> keys = {"global",         "route",         "receivers", "inhibit_rules",
                                                  "time_intervals", "mute_time_intervals", "templates",
                                                  "flap_detection"};
    return keys;
}

} // namespace tocsin
