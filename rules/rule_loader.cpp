#include "rules/rule_loader.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "rules/duration.hpp"
#include "rules/dynamic_loader.hpp"
#include "rules/expr.hpp"
#include "rules/file_read.hpp"
#include "rules/labels.hpp"
#include "rules/promql_lexer.hpp"
#include "rules/yaml_check.hpp"

namespace tocsin {

namespace {

constexpr std::string_view tier_names = "info, warning, critical, page";

bool is_upward(compare_op op)
{
    return op == compare_op::greater || op == compare_op::greater_equal;
}

bool is_downward(compare_op op)
{
    return op == compare_op::less || op == compare_op::less_equal;
}

std::string format_number(double value)
{
    return fmt::format("{}", value);
}

// True when no value satisfies both `a` and `b`; both must be ordered comparisons in opposite
// directions.
bool disjoint(const condition& when, const condition& recover)
{
    if (is_upward(when.op) && is_downward(recover.op)) {
        if (when.op == compare_op::greater || recover.op == compare_op::less) {
            return recover.threshold <= when.threshold;
        }
        return recover.threshold < when.threshold; // >= T against <= R
    }
    if (is_downward(when.op) && is_upward(recover.op)) {
        if (when.op == compare_op::less || recover.op == compare_op::greater) {
            return recover.threshold >= when.threshold;
        }
        return recover.threshold > when.threshold; // <= T against >= R
    }
    return false;
}

// Splits text into lines so that positions inside a scalar can be mapped to file columns.
std::vector<std::string_view> split_lines(std::string_view text)
{
    std::vector<std::string_view> lines;
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto end = text.find('\n', start);
        if (end == std::string_view::npos) {
            lines.push_back(text.substr(start));
            break;
        }
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}

class rule_file_loader {
public:
    rule_file_loader(std::string_view text, const std::string& file, diagnostics& diags)
        : text_(text), lines_(split_lines(text)), file_(file), check_(file, diags)
    {
    }

    std::vector<rule_group> load();

private:
    void load_group(const YAML::Node& node, std::size_t index, std::vector<rule_group>& out,
                    std::map<std::string, int>& group_lines);
    std::shared_ptr<rule> load_rule(const YAML::Node& node, const std::string& group);
    void load_expr(const YAML::Node& node, rule& r);
    void load_tiers(const YAML::Node& node, rule& r, milliseconds default_for, milliseconds default_keep);
    void check_tier_order(const std::vector<std::pair<tier, YAML::Mark>>& tiers);
    std::optional<condition> load_condition(const YAML::Node& node, std::string_view field);
    // A tier condition; in a dynamic rule a bare number n means "> n".
    std::optional<condition> load_tier_condition(const YAML::Node& node, std::string_view field);
    static bool bare_number_fits(const detector_spec& spec);
    static bool direction_fits(const detector_spec& spec, compare_op op);
    static std::string score_meaning(const detector_spec& spec);
    static std::string example_tier(const detector_spec& spec);
    void load_templates(const YAML::Node& node, std::string_view field, bool labels,
                        std::vector<std::pair<std::string, text_template>>& out);
    void load_no_data(const YAML::Node& node, rule& r);
    YAML::Mark position_in_scalar(const YAML::Node& node, std::size_t offset, bool& exact) const;

    std::string_view text_;
    std::vector<std::string_view> lines_;
    std::string file_;
    yaml::checker check_;
    bool dynamic_rule_ = false; // the rule being loaded has a dynamic block
    std::optional<detector_spec> dynamic_spec_; // its detector, when the block loaded
};

std::vector<rule_group> rule_file_loader::load()
{
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text_));
    } catch (const YAML::Exception& e) {
        check_.error(e.mark, fmt::format("invalid YAML: {}; check the indentation and quoting here", e.msg));
        return {};
    }

    std::vector<rule_group> groups;
    if (root.IsNull()) {
        return groups; // An empty file holds no groups, as in Prometheus.
    }
    if (!check_.expect_map(root, "a rule file")) {
        return groups;
    }
    check_.check_keys(root, "rule file", {"groups"});
    const YAML::Node list = yaml::checker::child(root, "groups");
    if (!list.IsDefined()) {
        check_.error(root, "missing field \"groups\" in rule file; expected groups: [{name: ..., rules: [...]}]");
        return groups;
    }
    if (list.IsNull()) {
        return groups;
    }
    if (!check_.expect_sequence(list, "groups")) {
        return groups;
    }
    std::map<std::string, int> group_lines;
    for (std::size_t i = 0; i < list.size(); ++i) {
        load_group(list[i], i, groups, group_lines);
    }
    return groups;
}

void rule_file_loader::load_group(const YAML::Node& node, std::size_t index, std::vector<rule_group>& out,
                                  std::map<std::string, int>& group_lines)
{
    if (!check_.expect_map(node, fmt::format("groups[{}]", index))) {
        return;
    }
    check_.check_keys(node, "group", {"name", "rules"});

    rule_group group;
    group.file = file_;
    const YAML::Node name = yaml::checker::child(node, "name");
    if (!name.IsDefined()) {
        check_.error(node, fmt::format("missing field \"name\" in groups[{}]; every group needs a name", index));
    } else if (auto value = check_.string(name, "group name")) {
        if (value->empty()) {
            check_.error(name, "empty group name; expected a name such as node");
        } else {
            auto [previous, inserted] = group_lines.emplace(*value, name.Mark().line + 1);
            if (!inserted) {
                check_.error(name, fmt::format("duplicate group name {}; the first is at line {}; group names must "
                                               "be unique within a file",
                                               promql::quote(*value), previous->second));
            }
            group.name = *value;
        }
    }

    const YAML::Node rules = yaml::checker::child(node, "rules");
    if (!rules.IsDefined()) {
        check_.error(node, fmt::format("missing field \"rules\" in group {}; expected a list of rules",
                                       promql::quote(group.name)));
    } else if (!rules.IsNull() && check_.expect_sequence(rules, "rules")) {
        for (std::size_t i = 0; i < rules.size(); ++i) {
            if (auto r = load_rule(rules[i], group.name)) {
                group.rules.push_back(std::move(r));
            }
        }
    }
    out.push_back(std::move(group));
}

std::shared_ptr<rule> rule_file_loader::load_rule(const YAML::Node& node, const std::string& group)
{
    if (!check_.expect_map(node, "a rule")) {
        return nullptr;
    }
    const std::size_t errors_before = check_.error_count();
    if (yaml::checker::child(node, "record").IsDefined()) {
        check_.error(node, "recording rules are not supported; keep them in Prometheus and remote_write their "
                           "output to tocsin, then alert on the recorded series");
        return nullptr;
    }
    check_.check_keys(node, "rule",
                      {"alert", "expr", "for", "keep_firing_for", "tiers", "dynamic", "labels", "annotations",
                       "no_data", "on_non_numeric", "fire_on_infinity", "extrapolate"});

    auto r = std::make_shared<rule>();
    r->group = group;
    r->file = file_;
    r->line = node.Mark().line + 1;
    r->column = node.Mark().column + 1;

    const YAML::Node alert = yaml::checker::child(node, "alert");
    if (!alert.IsDefined()) {
        check_.error(node, "missing field \"alert\" in rule; expected the alert name, such as alert: HighCpu");
    } else if (auto name = check_.string(alert, "alert")) {
        const bool blank = std::all_of(name->begin(), name->end(), [](char c) { return c == ' ' || c == '\t'; });
        if (blank) {
            check_.error(alert, "empty alert name; expected a name such as HighCpu");
        } else if (!is_valid_utf8(*name)) {
            check_.error(alert, "invalid UTF-8 in alert name");
        } else {
            r->name = *name;
        }
    }

    const YAML::Node expr = yaml::checker::child(node, "expr");
    if (!expr.IsDefined()) {
        check_.error(node, fmt::format("missing field \"expr\" in rule {}; expected a selector such as "
                                       "expr: 'up{{job=\"node\"}}'",
                                       promql::quote(r->name)));
    } else {
        load_expr(expr, *r);
    }

    milliseconds default_for{0};
    milliseconds default_keep{0};
    if (const YAML::Node n = yaml::checker::child(node, "for"); n.IsDefined()) {
        default_for = check_.duration(n, "for").value_or(default_for);
    }
    if (const YAML::Node n = yaml::checker::child(node, "keep_firing_for"); n.IsDefined()) {
        default_keep = check_.duration(n, "keep_firing_for").value_or(default_keep);
    }

    std::optional<dynamic_block> dynamic;
    dynamic_rule_ = false;
    dynamic_spec_.reset();
    if (const YAML::Node n = yaml::checker::child(node, "dynamic"); n.IsDefined()) {
        dynamic_rule_ = true;
        const auto slash = file_.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : file_.substr(0, slash);
        dynamic = load_dynamic_block(n, dir, check_);
        if (dynamic) {
            r->dynamic = dynamic->spec;
            dynamic_spec_ = dynamic->spec;
        }
    }

    const YAML::Node tiers = yaml::checker::child(node, "tiers");
    if (tiers.IsDefined()) {
        load_tiers(tiers, *r, default_for, default_keep);
        if (dynamic && dynamic->k) {
            check_.error(dynamic->k_mark, "dynamic.k and tiers both set the thresholds; keep one: k: 3 is short "
                                          "for tiers: {warning: \"> 3\"}");
        }
    } else if (dynamic && dynamic->k) {
        tier t;
        t.level = severity::warning;
        t.when = condition{compare_op::greater, *dynamic->k};
        t.for_duration = default_for;
        t.keep_firing_for = default_keep;
        r->tiers.push_back(t);
    } else if (!dynamic_rule_ || dynamic) {
        check_.error(node, fmt::format("missing field \"tiers\" in rule {}; expected at least one of {}, such as "
                                       "tiers: {{warning: \"{}\"}}",
                                       promql::quote(r->name), tier_names, dynamic_rule_ ? "> 3" : "> 0.8"));
    }

    if (const YAML::Node n = yaml::checker::child(node, "labels"); n.IsDefined() && !n.IsNull()) {
        load_templates(n, "labels", true, r->labels);
    }
    if (const YAML::Node n = yaml::checker::child(node, "annotations"); n.IsDefined() && !n.IsNull()) {
        load_templates(n, "annotations", false, r->annotations);
    }
    if (const YAML::Node n = yaml::checker::child(node, "no_data"); n.IsDefined()) {
        load_no_data(n, *r);
    }
    if (const YAML::Node n = yaml::checker::child(node, "on_non_numeric"); n.IsDefined()) {
        if (auto value = check_.string(n, "on_non_numeric")) {
            if (*value == "ignore") {
                r->on_non_numeric = non_numeric_action::ignore;
            } else if (*value == "no_data") {
                r->on_non_numeric = non_numeric_action::no_data;
            } else {
                check_.error(n, fmt::format("invalid on_non_numeric {}; expected ignore or no_data",
                                            promql::quote(*value)));
            }
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "fire_on_infinity"); n.IsDefined()) {
        r->fire_on_infinity = check_.boolean(n, "fire_on_infinity").value_or(false);
    }
    if (const YAML::Node n = yaml::checker::child(node, "extrapolate"); n.IsDefined()) {
        if (auto value = check_.boolean(n, "extrapolate")) {
            const auto kind = r->xform.kind;
            if (kind != transform_kind::rate && kind != transform_kind::increase && kind != transform_kind::delta) {
                check_.error(n, fmt::format("extrapolate applies only to rate, increase and delta, but this expr "
                                            "uses {}; remove extrapolate",
                                            kind == transform_kind::none ? "no function" : to_string(kind)));
            }
            r->xform.extrapolate = *value;
        }
    }

    if (check_.error_count() != errors_before) {
        return nullptr;
    }
    r->definition_hash = definition_hash_of(*r);
    return r;
}

YAML::Mark rule_file_loader::position_in_scalar(const YAML::Node& node, std::size_t offset, bool& exact) const
{
    // yaml-cpp gives the mark of the scalar's first character (the quote for a quoted scalar).
    // The offset maps to a column only when the scalar sits on one line and its source text
    // equals its value, so escapes and folded lines fall back to the scalar's own mark.
    YAML::Mark mark = node.Mark();
    exact = false;
    if (mark.is_null() || mark.line < 0 || static_cast<std::size_t>(mark.line) >= lines_.size()) {
        return mark;
    }
    const std::string_view line = lines_[static_cast<std::size_t>(mark.line)];
    auto start = static_cast<std::size_t>(mark.column);
    if (start < line.size() && (line[start] == '"' || line[start] == '\'')) {
        ++start;
    }
    const std::string& value = node.Scalar();
    if (start <= line.size() && line.substr(start, value.size()) == value) {
        exact = true;
        mark.column = static_cast<int>(start + offset);
    }
    return mark;
}

void rule_file_loader::load_expr(const YAML::Node& node, rule& r)
{
    auto text = check_.string(node, "expr");
    if (!text) {
        return;
    }
    expr_error problem;
    auto parsed = parse_expr(*text, problem);
    if (!parsed) {
        bool exact = false;
        const YAML::Mark mark = position_in_scalar(node, problem.offset, exact);
        if (exact) {
            check_.error(mark, fmt::format("invalid expr: {}", problem.message));
        } else {
            check_.error(mark, fmt::format("invalid expr (at column {} of the expression): {}", problem.offset + 1,
                                           problem.message));
        }
        return;
    }
    r.expr = *text;
    r.metric = std::move(parsed->metric);
    r.matchers = std::move(parsed->matchers);
    r.xform = parsed->xform;
}

std::optional<condition> rule_file_loader::load_condition(const YAML::Node& node, std::string_view field)
{
    auto text = check_.string(node, field);
    if (!text) {
        return std::nullopt;
    }
    std::string problem;
    auto c = parse_condition(*text, problem);
    if (!c) {
        check_.error(node, fmt::format("{}: {}", field, problem));
    }
    return c;
}

std::optional<condition> rule_file_loader::load_tier_condition(const YAML::Node& node, std::string_view field)
{
    if (dynamic_rule_ && node.IsScalar()) {
        const std::string& text = node.Scalar();
        double value = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (!text.empty() && ec == std::errc() && ptr == text.data() + text.size() && std::isfinite(value)) {
            if (dynamic_spec_ && !bare_number_fits(*dynamic_spec_)) {
                check_.error(node, fmt::format("{}: a bare number means \"> {}\", but {}; write the comparison, "
                                               "such as {}",
                                               field, text, score_meaning(*dynamic_spec_), example_tier(*dynamic_spec_)));
                return std::nullopt;
            }
            return condition{compare_op::greater, value};
        }
    }
    auto c = load_condition(node, field);
    if (c && dynamic_spec_ && !direction_fits(*dynamic_spec_, c->op)) {
        check_.error(node, fmt::format("{}: {} can never mean an anomaly, because {}; write {} instead", field,
                                       c->to_string(), score_meaning(*dynamic_spec_), example_tier(*dynamic_spec_)));
        return std::nullopt;
    }
    return c;
}

// True when "> n" is the usual way to write a tier of this detector: its score grows with the
// anomaly. A baseline ratio or difference can go either way, and a small p-value is the anomaly.
bool rule_file_loader::bare_number_fits(const detector_spec& spec)
{
    if (spec.kind == detector_kind::baseline) {
        return false;
    }
    return !(spec.kind == detector_kind::ks && spec.ks_figure == ks_score::p_value);
}

// False for a tier comparison that points away from the anomaly: "<" on a score that grows with
// it (z scores, PSI, the KS statistic), ">" on a KS p-value. Any comparison fits a baseline.
bool rule_file_loader::direction_fits(const detector_spec& spec, compare_op op)
{
    if (spec.kind == detector_kind::baseline) {
        return true;
    }
    const bool upward = op == compare_op::greater || op == compare_op::greater_equal;
    const bool downward = op == compare_op::less || op == compare_op::less_equal;
    if (spec.kind == detector_kind::ks && spec.ks_figure == ks_score::p_value) {
        return !upward;
    }
    return !downward;
}

std::string rule_file_loader::score_meaning(const detector_spec& spec)
{
    switch (spec.kind) {
    case detector_kind::baseline:
        return spec.compare == baseline_compare::ratio
                   ? "the score of type baseline is value / baseline, so \"> 0.95\" holds for any value above 95% "
                     "of the baseline"
                   : "the score of type baseline is value - baseline and can go either way";
    case detector_kind::psi: return "the PSI is never negative and grows with drift";
    case detector_kind::ks:
        return spec.ks_figure == ks_score::p_value ? "with score: p_value, drift gives small p-values"
                                                   : "the KS statistic is never negative and grows with drift";
    default:
        return "the score grows with the anomaly (|z| with direction both, -z with direction below, so a drop "
               "scores positive)";
    }
}

std::string rule_file_loader::example_tier(const detector_spec& spec)
{
    switch (spec.kind) {
    case detector_kind::baseline:
        return spec.compare == baseline_compare::ratio ? "\"< 0.95\" for a drop below 95% of the baseline"
                                                       : "\"< -0.05\" for a drop of 0.05";
    case detector_kind::psi: return "\"> 0.25\"";
    case detector_kind::ks: return spec.ks_figure == ks_score::p_value ? "\"< 0.01\"" : "\"> 0.2\"";
    default: return "\"> 3\", with direction: below for drops";
    }
}

void rule_file_loader::load_tiers(const YAML::Node& node, rule& r, milliseconds default_for,
                                  milliseconds default_keep)
{
    if (!check_.expect_map(node, "tiers")) {
        return;
    }
    if (node.size() == 0) {
        check_.error(node, fmt::format("tiers is empty; expected at least one of {}", tier_names));
        return;
    }
    std::vector<std::pair<tier, YAML::Mark>> loaded;
    std::map<severity, int> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
        // Copies: the iterator returns its pair by value, so a reference would dangle.
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        auto name = check_.string(key, "tier name");
        if (!name) {
            continue;
        }
        auto level = parse_severity(*name);
        if (!level) {
            check_.error(key, fmt::format("unknown tier {}; expected one of {}", promql::quote(*name), tier_names));
            continue;
        }
        auto [previous, inserted] = seen.emplace(*level, key.Mark().line + 1);
        if (!inserted) {
            check_.error(key, fmt::format("tier {} appears twice; the first is at line {}; keep one",
                                          promql::quote(*name), previous->second));
            continue;
        }

        tier t;
        t.level = *level;
        t.for_duration = default_for;
        t.keep_firing_for = default_keep;
        const std::string prefix = "tiers." + *name;
        bool ok = true;
        YAML::Node recover_node;
        if (value.IsScalar()) {
            auto c = load_tier_condition(value, prefix);
            ok = c.has_value();
            if (c) {
                t.when = *c;
            }
        } else if (value.IsMap()) {
            check_.check_keys(value, fmt::format("tier {}", *name), {"condition", "for", "recover", "keep_firing_for"});
            const YAML::Node cond = yaml::checker::child(value, "condition");
            if (!cond.IsDefined()) {
                check_.error(value, fmt::format("missing field \"condition\" in tier {}; expected for example "
                                                "condition: \"> 0.9\"",
                                                *name));
                ok = false;
            } else if (auto c = load_tier_condition(cond, prefix + ".condition")) {
                t.when = *c;
            } else {
                ok = false;
            }
            if (const YAML::Node n = yaml::checker::child(value, "for"); n.IsDefined()) {
                t.for_duration = check_.duration(n, prefix + ".for").value_or(t.for_duration);
            }
            if (const YAML::Node n = yaml::checker::child(value, "keep_firing_for"); n.IsDefined()) {
                t.keep_firing_for = check_.duration(n, prefix + ".keep_firing_for").value_or(t.keep_firing_for);
            }
            recover_node = yaml::checker::child(value, "recover");
            if (recover_node.IsDefined()) {
                if (auto c = load_condition(recover_node, prefix + ".recover")) {
                    t.recover = *c;
                } else {
                    ok = false;
                }
            }
        } else {
            check_.error(value, fmt::format("{} must be a condition such as \"> 0.8\" or a mapping with condition, "
                                            "for, recover, keep_firing_for; got {}",
                                            prefix, yaml::describe(value)));
            ok = false;
        }

        if (ok && t.recover) {
            const condition& when = t.when;
            const condition& recover = *t.recover;
            if (!is_upward(when.op) && !is_downward(when.op)) {
                check_.error(recover_node, fmt::format("{}.recover needs a condition with >, >=, < or <=; with {} "
                                                       "the tier already releases as soon as the condition is false, "
                                                       "so remove recover",
                                                       prefix, when.to_string()));
            } else if (!disjoint(when, recover)) {
                const char* side = is_upward(when.op) ? "< or <= with a threshold at or below" :
                                                        "> or >= with a threshold at or above";
                check_.error(recover_node,
                             fmt::format("{}.recover \"{}\" overlaps the condition \"{}\", so the tier could be "
                                         "released while its condition holds; expected {} {}",
                                         prefix, recover.to_string(), when.to_string(), side,
                                         format_number(when.threshold)));
            }
        }
        if (ok) {
            loaded.emplace_back(t, value.Mark());
        }
    }
    std::sort(loaded.begin(), loaded.end(),
              [](const auto& a, const auto& b) { return a.first.level < b.first.level; });
    check_tier_order(loaded);
    for (auto& [t, mark] : loaded) {
        r.tiers.push_back(t);
    }
}

void rule_file_loader::check_tier_order(const std::vector<std::pair<tier, YAML::Mark>>& tiers)
{
    // Tiers are sorted by ascending severity. With > or >=, a higher severity must not fire at a
    // lower value than a lower severity; with < or <=, the reverse.
    for (std::size_t i = 0; i < tiers.size(); ++i) {
        for (std::size_t j = i + 1; j < tiers.size(); ++j) {
            const tier& low = tiers[i].first;
            const tier& high = tiers[j].first;
            if (is_upward(low.when.op) && is_upward(high.when.op) && high.when.threshold < low.when.threshold) {
                check_.error(tiers[j].second,
                             fmt::format("tier {} (\"{}\") has a lower threshold than tier {} (\"{}\"); with > or >= "
                                         "a higher severity needs a threshold at or above the lower one",
                                         to_string(high.level), high.when.to_string(), to_string(low.level),
                                         low.when.to_string()));
            }
            if (is_downward(low.when.op) && is_downward(high.when.op) && high.when.threshold > low.when.threshold) {
                check_.error(tiers[j].second,
                             fmt::format("tier {} (\"{}\") has a higher threshold than tier {} (\"{}\"); with < or <= "
                                         "a higher severity needs a threshold at or below the lower one",
                                         to_string(high.level), high.when.to_string(), to_string(low.level),
                                         low.when.to_string()));
            }
        }
    }
}

void rule_file_loader::load_templates(const YAML::Node& node, std::string_view field, bool labels,
                                      std::vector<std::pair<std::string, text_template>>& out)
{
    if (!check_.expect_map(node, field)) {
        return;
    }
    std::map<std::string, int> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
        auto name = check_.string(it->first, fmt::format("{} name", field));
        if (!name) {
            continue;
        }
        const std::string path = fmt::format("{}.{}", field, promql::format_label_name(*name));
        if (name->empty() || !is_valid_utf8(*name)) {
            check_.error(it->first, fmt::format("invalid {} name {}; expected a non-empty UTF-8 name", field,
                                                promql::quote(*name)));
            continue;
        }
        auto [previous, inserted] = seen.emplace(*name, it->first.Mark().line + 1);
        if (!inserted) {
            check_.error(it->first, fmt::format("{} appears twice; the first is at line {}; keep one", path,
                                                previous->second));
            continue;
        }
        if (labels) {
            if (*name == "alertname" || *name == "severity") {
                check_.error(it->first, fmt::format("label {} is set by tocsin ({}); remove it from labels", *name,
                                                    *name == "alertname" ? "from the alert field" : "from the tier"));
                continue;
            }
            if (name->starts_with("__")) {
                check_.error(it->first, fmt::format("label names starting with __ are reserved; rename {}",
                                                    promql::quote(*name)));
                continue;
            }
        }
        auto source = check_.string(it->second, path);
        if (!source) {
            continue;
        }
        text_template parsed;
        std::string problem;
        if (!text_template::parse(*source, parsed, problem)) {
            check_.error(it->second, fmt::format("{}: invalid template: {}", path, problem));
            continue;
        }
        out.emplace_back(*name, std::move(parsed));
    }
}

void rule_file_loader::load_no_data(const YAML::Node& node, rule& r)
{
    if (!check_.expect_map(node, "no_data")) {
        return;
    }
    check_.check_keys(node, "no_data", {"timeout", "action", "resolve_after", "severity"});
    if (const YAML::Node n = yaml::checker::child(node, "timeout"); n.IsDefined()) {
        if (auto d = check_.duration(n, "no_data.timeout")) {
            if (d->count() <= 0) {
                check_.error(n, "no_data.timeout must be greater than 0; expected for example 5m");
            } else {
                r.no_data.timeout = *d;
            }
        }
    }
    const YAML::Node action = yaml::checker::child(node, "action");
    if (action.IsDefined()) {
        if (auto value = check_.string(action, "no_data.action")) {
            if (*value == "resolve") {
                r.no_data.action = no_data_action::resolve;
            } else if (*value == "keep_state") {
                r.no_data.action = no_data_action::keep_state;
            } else if (*value == "alert") {
                r.no_data.action = no_data_action::alert;
            } else {
                check_.error(action, fmt::format("invalid no_data.action {}; expected resolve, keep_state or alert",
                                                 promql::quote(*value)));
            }
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "resolve_after"); n.IsDefined()) {
        if (auto d = check_.duration(n, "no_data.resolve_after")) {
            if (r.no_data.action != no_data_action::keep_state) {
                check_.error(n, "no_data.resolve_after applies only with action: keep_state; remove it or set "
                                "action: keep_state");
            } else {
                r.no_data.resolve_after = *d;
            }
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "severity"); n.IsDefined()) {
        if (auto value = check_.string(n, "no_data.severity")) {
            auto level = parse_severity(*value);
            if (!level) {
                check_.error(n, fmt::format("invalid no_data.severity {}; expected one of {}", promql::quote(*value),
                                            tier_names));
            } else if (r.no_data.action != no_data_action::alert) {
                check_.error(n, "no_data.severity applies only with action: alert; remove it or set action: alert");
            } else {
                r.no_data.alert_severity = *level;
            }
        }
    }
}

std::uint64_t fnv1a(std::string_view text)
{
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (unsigned char c : text) {
        hash ^= c;
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

} // namespace

std::optional<condition> parse_condition(std::string_view text, std::string& error)
{
    constexpr std::string_view expected = "expected an operator and a number such as \"> 0.8\", \"<= 5\" or \"== 0\"";
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    while (!text.empty() && text.back() == ' ') {
        text.remove_suffix(1);
    }
    condition c;
    static constexpr std::pair<std::string_view, compare_op> ops[] = {
        {">=", compare_op::greater_equal}, {"<=", compare_op::less_equal}, {"==", compare_op::equal},
        {"!=", compare_op::not_equal},     {">", compare_op::greater},     {"<", compare_op::less},
    };
    bool found = false;
    for (const auto& [symbol, op] : ops) {
        if (text.starts_with(symbol)) {
            c.op = op;
            text.remove_prefix(symbol.size());
            found = true;
            break;
        }
    }
    if (!found) {
        if (text.starts_with("=")) {
            error = fmt::format("invalid operator '=' in condition; use == for equality; {}", expected);
        } else {
            error = fmt::format("missing comparison operator in {}; {}", promql::quote(text), expected);
        }
        return std::nullopt;
    }
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    std::string_view number = text;
    if (number.starts_with("+")) {
        number.remove_prefix(1);
    }
    double value = 0;
    auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec == std::errc::result_out_of_range && ptr == number.data() + number.size()) {
        error = fmt::format("threshold {} is out of the range of a double (about 1e-308 to 1e308); use a "
                            "number in that range",
                            promql::quote(text));
        return std::nullopt;
    }
    if (number.ends_with("%")) {
        const std::string_view percent = number.substr(0, number.size() - 1);
        double as_percent = 0;
        auto [end, parse_ec] = std::from_chars(percent.data(), percent.data() + percent.size(), as_percent);
        if (parse_ec == std::errc() && end == percent.data() + percent.size()) {
            error = fmt::format("invalid threshold {}: percent signs are not allowed; write the number in the "
                                "metric's own unit: {} if the metric is a percentage, {} if it is a ratio",
                                promql::quote(text), percent, as_percent / 100);
            return std::nullopt;
        }
    }
    if (number.empty() || ec != std::errc() || ptr != number.data() + number.size()) {
        error = fmt::format("invalid threshold {}; {}", promql::quote(text), expected);
        return std::nullopt;
    }
    if (std::isnan(value)) {
        error = "NaN is not a valid threshold, because NaN never satisfies a comparison; expected a number";
        return std::nullopt;
    }
    if (std::isinf(value)) {
        error = fmt::format("infinite threshold {}; expected a finite number", promql::quote(text));
        return std::nullopt;
    }
    c.threshold = value;
    return c;
}

std::uint64_t definition_hash_of(const rule& r)
{
    // A canonical text of every field that changes what the rule evaluates or which labels its
    // alerts carry. Matchers are sorted, since their order does not change the selection.
    // Annotations are left out so that editing a summary does not reset pending timers.
    std::string text;
    text += fmt::format("alert={}\nmetric={}\n", promql::quote(r.name), promql::quote(r.metric));
    std::vector<std::string> matchers;
    for (const auto& m : r.matchers) {
        matchers.push_back(m.to_string());
    }
    std::sort(matchers.begin(), matchers.end());
    for (const auto& m : matchers) {
        text += "matcher=" + m + "\n";
    }
    text += fmt::format("transform={} window={} quantile={} extrapolate={}\n", to_string(r.xform.kind),
                        r.xform.window.count(), r.xform.quantile, r.xform.extrapolate);
    for (const auto& t : r.tiers) {
        text += fmt::format("tier={} when={} recover={} for={} keep={}\n", to_string(t.level), t.when.to_string(),
                            t.recover ? t.recover->to_string() : "-", t.for_duration.count(),
                            t.keep_firing_for.count());
    }
    std::vector<std::string> labels;
    for (const auto& [name, value] : r.labels) {
        labels.push_back(promql::quote(name) + "=" + promql::quote(value.source()));
    }
    std::sort(labels.begin(), labels.end());
    for (const auto& l : labels) {
        text += "label=" + l + "\n";
    }
    text += fmt::format("no_data timeout={} action={} resolve_after={} severity={}\n", r.no_data.timeout.count(),
                        static_cast<int>(r.no_data.action), r.no_data.resolve_after.count(),
                        to_string(r.no_data.alert_severity));
    text += fmt::format("on_non_numeric={} fire_on_infinity={}\n", static_cast<int>(r.on_non_numeric),
                        r.fire_on_infinity);
    if (r.dynamic) {
        text += canonical_text(*r.dynamic) + "\n";
    }
    return fnv1a(text);
}

std::vector<rule_group> load_rule_text(std::string_view text, const std::string& file_name, diagnostics& diags)
{
    // Collected locally and sorted, so the messages read top to bottom like the file.
    diagnostics local;
    rule_file_loader loader(text, file_name, local);
    auto groups = loader.load();
    std::vector<diagnostic> items = local.items();
    std::stable_sort(items.begin(), items.end(), [](const diagnostic& a, const diagnostic& b) {
        return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    for (auto& d : items) {
        diags.add(std::move(d));
    }
    return groups;
}

std::vector<rule_group> load_rule_file(const std::string& path, diagnostics& diags)
{
    std::string content;
    std::string problem;
    if (!read_regular_file(path, max_config_file_bytes, content, problem)) {
        diags.add(path, 0, 0, fmt::format("failed to read rule file: {}", problem));
        return {};
    }
    return load_rule_text(content, path, diags);
}

void validate_rule_set(const rule_set& rules, diagnostics& diags)
{
    std::map<std::string, const rule*> by_name;
    for (const auto& r : rules.rules) {
        auto [previous, inserted] = by_name.emplace(r->name, r.get());
        if (!inserted) {
            const rule& first = *previous->second;
            diags.add(r->file, r->line, r->column,
                      fmt::format("duplicate alert name {}; it is already defined at {}:{}:{} in group {}; alert "
                                  "names must be unique across all rule files because an alert is identified by its "
                                  "alertname and series labels",
                                  promql::quote(r->name), first.file, first.line, first.column,
                                  promql::quote(first.group)));
        }
    }
}

std::shared_ptr<const rule_set> make_rule_set(std::vector<rule_group> groups)
{
    auto set = std::make_shared<rule_set>();
    for (auto& g : groups) {
        for (const auto& r : g.rules) {
            set->rules.push_back(r);
        }
        set->groups.push_back(std::move(g));
    }
    return set;
}

} // namespace tocsin
