#include "runbooks/loader.hpp"

#include <climits>
#include <cstdlib>
#include <map>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "rules/file_read.hpp"
#include "rules/yaml_check.hpp"
#include "runbooks/hash.hpp"
#include "runbooks/process.hpp"

namespace tocsin::runbooks {

namespace {

constexpr std::string_view step_kinds = "stop, restart, exec, rollback, http, notify, wait";

bool valid_unit_name(std::string_view name)
{
    if (name.empty() || name.size() > 255) {
        return false;
    }
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
                        c == '_' || c == '.' || c == '@' || c == '-' || c == '\\';
        if (!ok) {
            return false;
        }
    }
    static const char* const suffixes[] = {".service", ".socket", ".target", ".timer", ".mount", ".path",
                                           ".slice", ".scope"};
    for (const char* s : suffixes) {
        if (name.size() > std::string_view(s).size() && name.ends_with(s)) {
            return true;
        }
    }
    return false;
}

bool valid_name(std::string_view name)
{
    if (name.empty() || name.size() > 128) {
        return false;
    }
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                        c == '-' || c == '.';
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool valid_header_name(std::string_view name)
{
    if (name.empty()) {
        return false;
    }
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                        c == '_';
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

class runbook_file_loader {
public:
    runbook_file_loader(std::string_view text, const std::string& file, diagnostics& diags)
        : text_(text), file_(file), check_(file, diags)
    {
    }

    std::vector<runbook> load();

private:
    std::optional<runbook> load_runbook(const YAML::Node& node, std::size_t index);
    void load_trigger(const YAML::Node& node, runbook& rb);
    void load_cooldown(const YAML::Node& node, runbook& rb);
    void load_max_runs(const YAML::Node& node, runbook& rb);
    void load_params(const YAML::Node& node, runbook& rb);
    std::optional<step> load_step(const YAML::Node& node, std::size_t index, const runbook& rb);
    void load_service(const YAML::Node& node, step& s);
    void load_exec(const YAML::Node& node, step& s, const runbook& rb, std::string_view field);
    void load_http(const YAML::Node& node, step& s, const runbook& rb, std::string_view field);
    void load_notify(const YAML::Node& node, step& s, const runbook& rb);
    void load_wait(const YAML::Node& node, step& s);
    std::optional<arg_template> load_template(const YAML::Node& node, const runbook& rb, std::string_view field);
    std::optional<std::uint64_t> positive(const YAML::Node& node, std::string_view field, std::uint64_t max);

    std::string_view text_;
    std::string file_;
    yaml::checker check_;
};

std::vector<runbook> runbook_file_loader::load()
{
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text_));
    } catch (const YAML::Exception& e) {
        check_.error(e.mark, fmt::format("invalid YAML: {}; check the indentation and quoting here", e.msg));
        return {};
    }
    std::vector<runbook> out;
    if (root.IsNull()) {
        return out;
    }
    if (!check_.expect_map(root, "a runbook file")) {
        return out;
    }
    check_.check_keys(root, "runbook file", {"runbooks"});
    const YAML::Node list = yaml::checker::child(root, "runbooks");
    if (!list.IsDefined()) {
        check_.error(root, "missing field \"runbooks\" in runbook file; expected runbooks: [{name: ..., trigger: "
                           "..., steps: [...]}]");
        return out;
    }
    if (list.IsNull() || !check_.expect_sequence(list, "runbooks")) {
        return out;
    }
    std::map<std::string, int> names;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::size_t before = check_.error_count();
        auto rb = load_runbook(list[i], i);
        if (!rb) {
            continue;
        }
        if (!rb->name.empty()) {
            auto [previous, inserted] = names.emplace(rb->name, rb->line);
            if (!inserted) {
                check_.error(yaml::checker::child(list[i], "name"),
                             fmt::format("duplicate runbook name {}; the first is at line {}; names must be unique",
                                         quote_value(rb->name), previous->second));
            }
        }
        if (check_.error_count() == before) {
            out.push_back(std::move(*rb));
        }
    }
    return out;
}

std::optional<std::uint64_t> runbook_file_loader::positive(const YAML::Node& node, std::string_view field,
                                                           std::uint64_t max)
{
    auto v = check_.count(node, field);
    if (!v) {
        return std::nullopt;
    }
    if (*v == 0 || *v > max) {
        check_.error(node, fmt::format("{} must be between 1 and {}, got {}", field, max, *v));
        return std::nullopt;
    }
    return v;
}

std::optional<runbook> runbook_file_loader::load_runbook(const YAML::Node& node, std::size_t index)
{
    if (!check_.expect_map(node, fmt::format("runbooks[{}]", index))) {
        return std::nullopt;
    }
    check_.check_keys(node, "runbook",
                      {"name", "trigger", "dry_run", "cooldown", "max_runs", "concurrency", "approval", "params",
                       "on_interrupt", "escalate_to", "steps"});
    runbook rb;
    rb.file = file_;
    rb.line = node.Mark().line + 1;
    {
        YAML::Emitter definition;
        definition << YAML::BeginSeq;
        for (const char* key : {"params", "steps"}) {
            const YAML::Node part = yaml::checker::child(node, key);
            if (part.IsDefined()) {
                definition << part;
            } else {
                definition << YAML::Null;
            }
        }
        definition << YAML::EndSeq;
        rb.definition_hash = sha256_hex(definition.good() ? definition.c_str() : "");
    }

    const YAML::Node name = yaml::checker::child(node, "name");
    if (!name.IsDefined()) {
        check_.error(node, fmt::format("missing field \"name\" in runbooks[{}]; every runbook needs a name such as "
                                       "model-rollback",
                                       index));
    } else if (auto v = check_.string(name, "runbook name")) {
        if (!valid_name(*v)) {
            check_.error(name, fmt::format("invalid runbook name {}; use 1 to 128 of a-z A-Z 0-9 _ - .",
                                           quote_value(*v)));
        }
        rb.name = *v;
    }

    // Params first: the templates of the steps refer to them.
    if (auto p = yaml::checker::child(node, "params"); p.IsDefined()) {
        load_params(p, rb);
    }

    const YAML::Node trigger = yaml::checker::child(node, "trigger");
    if (!trigger.IsDefined()) {
        check_.error(node, fmt::format("missing field \"trigger\" in runbook {}; expected trigger: {{matchers: "
                                       "['alertname=\"ModelAucDrift\"'], on: firing}}",
                                       quote_value(rb.name)));
    } else {
        load_trigger(trigger, rb);
    }

    if (auto n = yaml::checker::child(node, "dry_run"); n.IsDefined()) {
        rb.dry_run = check_.boolean(n, "dry_run").value_or(false);
    }
    if (auto n = yaml::checker::child(node, "cooldown"); n.IsDefined()) {
        load_cooldown(n, rb);
    }
    if (auto n = yaml::checker::child(node, "max_runs"); n.IsDefined()) {
        load_max_runs(n, rb);
    }
    if (auto n = yaml::checker::child(node, "concurrency"); n.IsDefined()) {
        if (auto v = positive(n, "concurrency", 1000)) {
            rb.concurrency = static_cast<std::uint32_t>(*v);
        }
    }
    if (auto n = yaml::checker::child(node, "on_interrupt"); n.IsDefined()) {
        if (auto v = check_.string(n, "on_interrupt")) {
            if (*v == "resume") {
                rb.on_interrupt = interrupt_policy::resume;
            } else if (*v == "abort_and_escalate") {
                rb.on_interrupt = interrupt_policy::abort_and_escalate;
            } else {
                check_.error(n, fmt::format("invalid on_interrupt {}; expected resume or abort_and_escalate",
                                            quote_value(*v)));
            }
        }
    }
    if (auto n = yaml::checker::child(node, "escalate_to"); n.IsDefined()) {
        if (auto v = check_.string(n, "escalate_to")) {
            if (v->empty()) {
                check_.error(n, "escalate_to is empty; name a receiver of the routing configuration");
            }
            rb.escalate_to = *v;
        }
    }

    const YAML::Node steps = yaml::checker::child(node, "steps");
    if (!steps.IsDefined()) {
        check_.error(node, fmt::format("missing field \"steps\" in runbook {}; expected a list of steps",
                                       quote_value(rb.name)));
    } else if (check_.expect_sequence(steps, "steps")) {
        if (steps.size() == 0) {
            check_.error(steps, "steps is empty; a runbook needs at least one step");
        }
        std::map<std::string, int> step_names;
        for (std::size_t i = 0; i < steps.size(); ++i) {
            if (auto s = load_step(steps[i], i, rb)) {
                auto [previous, inserted] = step_names.emplace(s->name, s->line);
                if (!inserted) {
                    check_.error(yaml::checker::child(steps[i], "name"),
                                 fmt::format("duplicate step name {}; the first is at line {}; step names must be "
                                             "unique within a runbook",
                                             quote_value(s->name), previous->second));
                }
                rb.steps.push_back(std::move(*s));
            }
        }
    }

    if (auto n = yaml::checker::child(node, "approval"); n.IsDefined() && check_.expect_map(n, "approval")) {
        check_.check_keys(n, "approval", {"required_before", "timeout"});
        approval_spec spec;
        const YAML::Node before = yaml::checker::child(n, "required_before");
        if (!before.IsDefined()) {
            check_.error(n, "missing field \"required_before\" in approval; name the step that waits for a person");
        } else if (auto v = check_.string(before, "approval.required_before")) {
            bool found = false;
            for (std::size_t i = 0; i < rb.steps.size(); ++i) {
                if (rb.steps[i].name == *v) {
                    spec.before_step = i;
                    found = true;
                }
            }
            if (!found) {
                std::string names;
                for (const auto& s : rb.steps) {
                    names += names.empty() ? "" : ", ";
                    names += s.name;
                }
                check_.error(before, fmt::format("approval.required_before names no step: {}; expected one of: {}",
                                                 quote_value(*v), names));
            }
            spec.before_name = *v;
        }
        if (auto t = yaml::checker::child(n, "timeout"); t.IsDefined()) {
            if (auto d = check_.duration(t, "approval.timeout")) {
                if (d->count() <= 0) {
                    check_.error(t, "approval.timeout must be longer than 0s");
                }
                spec.timeout = *d;
            }
        }
        rb.approval = spec;
    }

    return rb;
}

void runbook_file_loader::load_trigger(const YAML::Node& node, runbook& rb)
{
    if (!check_.expect_map(node, "trigger")) {
        return;
    }
    check_.check_keys(node, "trigger", {"matchers", "min_severity", "on", "level"});
    const YAML::Node matchers = yaml::checker::child(node, "matchers");
    if (!matchers.IsDefined() || matchers.IsNull()) {
        check_.error(node, "missing field \"matchers\" in trigger; a runbook without matchers would run for every "
                           "alert; expected matchers: ['alertname=\"ModelAucDrift\"']");
    } else if (check_.expect_sequence(matchers, "trigger.matchers")) {
        if (matchers.size() == 0) {
            check_.error(matchers, "trigger.matchers is empty; a runbook without matchers would run for every alert");
        }
        for (std::size_t i = 0; i < matchers.size(); ++i) {
            auto text = check_.string(matchers[i], "a matcher");
            if (!text) {
                continue;
            }
            std::string error;
            auto m = label_matcher::parse(*text, error);
            if (!m) {
                check_.error(matchers[i], fmt::format("invalid matcher {}: {}; expected name=\"value\", name!=\"value\", "
                                                      "name=~\"regex\" or name!~\"regex\"",
                                                      quote_value(*text), error));
                continue;
            }
            rb.trigger.matchers.push_back(std::move(*m));
        }
    }
    if (auto n = yaml::checker::child(node, "min_severity"); n.IsDefined()) {
        if (auto v = check_.string(n, "trigger.min_severity")) {
            if (auto s = parse_severity(*v)) {
                rb.trigger.min_severity = *s;
            } else {
                check_.error(n, fmt::format("invalid trigger.min_severity {}; expected info, warning, critical or page",
                                            quote_value(*v)));
            }
        }
    }
    const YAML::Node on = yaml::checker::child(node, "on");
    if (on.IsDefined()) {
        if (auto v = check_.string(on, "trigger.on")) {
            if (*v == "firing") {
                rb.trigger.on = trigger_on::firing;
            } else if (*v == "resolved") {
                rb.trigger.on = trigger_on::resolved;
            } else if (*v == "escalation") {
                rb.trigger.on = trigger_on::escalation;
            } else {
                check_.error(on, fmt::format("invalid trigger.on {}; expected firing, resolved or escalation",
                                             quote_value(*v)));
            }
        }
    }
    const YAML::Node level = yaml::checker::child(node, "level");
    if (level.IsDefined()) {
        if (rb.trigger.on != trigger_on::escalation) {
            check_.error(level, "trigger.level applies only with on: escalation; remove it or set on: escalation");
        } else if (auto v = positive(level, "trigger.level", 100)) {
            rb.trigger.escalation_level = static_cast<int>(*v);
        }
    } else if (rb.trigger.on == trigger_on::escalation) {
        check_.error(node, "missing field \"level\" in trigger; on: escalation needs the escalation level, such as "
                           "level: 1 for the first escalation");
    }
}

void runbook_file_loader::load_cooldown(const YAML::Node& node, runbook& rb)
{
    if (node.IsScalar()) {
        if (auto d = check_.duration(node, "cooldown")) {
            rb.cooldown_per_alert = *d;
        }
        return;
    }
    if (!node.IsMap()) {
        check_.error(node, fmt::format("cooldown must be a duration (per alert) or a mapping {{per_alert: 30m, "
                                       "per_runbook: 5m}}, got {}",
                                       yaml::describe(node)));
        return;
    }
    check_.check_keys(node, "cooldown", {"per_alert", "per_runbook"});
    if (auto n = yaml::checker::child(node, "per_alert"); n.IsDefined()) {
        rb.cooldown_per_alert = check_.duration(n, "cooldown.per_alert").value_or(milliseconds{0});
    }
    if (auto n = yaml::checker::child(node, "per_runbook"); n.IsDefined()) {
        rb.cooldown_per_runbook = check_.duration(n, "cooldown.per_runbook").value_or(milliseconds{0});
    }
}

void runbook_file_loader::load_max_runs(const YAML::Node& node, runbook& rb)
{
    if (!node.IsMap()) {
        check_.error(node, fmt::format("max_runs must be a mapping such as {{count: 3, window: 1h}}, got {}",
                                       yaml::describe(node)));
        return;
    }
    check_.check_keys(node, "max_runs", {"count", "window"});
    const YAML::Node count = yaml::checker::child(node, "count");
    const YAML::Node window = yaml::checker::child(node, "window");
    if (!count.IsDefined() || !window.IsDefined()) {
        check_.error(node, "max_runs needs both count and window, such as {count: 3, window: 1h}");
        return;
    }
    if (auto c = positive(count, "max_runs.count", 1'000'000)) {
        rb.max_runs = *c;
    }
    if (auto w = check_.duration(window, "max_runs.window")) {
        if (w->count() <= 0) {
            check_.error(window, "max_runs.window must be longer than 0s");
        }
        rb.max_runs_window = *w;
    }
}

void runbook_file_loader::load_params(const YAML::Node& node, runbook& rb)
{
    if (!check_.expect_map(node, "params")) {
        return;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        auto name = check_.string(key, "a param name");
        if (!name) {
            continue;
        }
        if (!is_legacy_label_name(*name)) {
            check_.error(key, fmt::format("param {} is not a label name; expected [a-zA-Z_][a-zA-Z0-9_]*",
                                          quote_value(*name)));
            continue;
        }
        bool duplicate = false;
        for (const auto& p : rb.params) {
            duplicate = duplicate || p.name == *name;
        }
        if (duplicate) {
            check_.error(key, fmt::format("param {} appears twice; keep one", *name));
            continue;
        }
        auto pattern = check_.string(value, fmt::format("params.{}", *name));
        if (!pattern) {
            continue;
        }
        if (pattern->empty()) {
            check_.error(value, fmt::format("params.{} has an empty pattern; give the pattern its values must match, "
                                            "such as '^[a-z0-9][a-z0-9-]{{0,62}}$'",
                                            *name));
            continue;
        }
        std::string error;
        auto p = make_param(*name, *pattern, error);
        if (!p) {
            check_.error(value, fmt::format("params.{}: {}", *name, error));
            continue;
        }
        rb.params.push_back(std::move(*p));
    }
}

std::optional<arg_template> runbook_file_loader::load_template(const YAML::Node& node, const runbook& rb,
                                                               std::string_view field)
{
    auto text = check_.string(node, field);
    if (!text) {
        return std::nullopt;
    }
    arg_template t;
    std::string error;
    if (!arg_template::parse(*text, rb.params, t, error)) {
        check_.error(node, fmt::format("{}: {}", field, error));
        return std::nullopt;
    }
    return t;
}

std::optional<step> runbook_file_loader::load_step(const YAML::Node& node, std::size_t index, const runbook& rb)
{
    if (!check_.expect_map(node, fmt::format("steps[{}]", index))) {
        return std::nullopt;
    }
    check_.check_keys(node, "step",
                      {"name", "timeout", "on_failure", "escalate_to", "stop", "restart", "exec", "rollback", "http",
                       "notify", "wait"});
    step s;
    s.line = node.Mark().line + 1;
    const YAML::Node name = yaml::checker::child(node, "name");
    if (!name.IsDefined()) {
        check_.error(node, fmt::format("missing field \"name\" in steps[{}]; every step needs a name such as "
                                       "stop-canary",
                                       index));
    } else if (auto v = check_.string(name, "step name")) {
        if (!valid_name(*v)) {
            check_.error(name, fmt::format("invalid step name {}; use 1 to 128 of a-z A-Z 0-9 _ - .",
                                           quote_value(*v)));
        }
        s.name = *v;
    }

    std::vector<std::pair<step_kind, YAML::Node>> kinds;
    for (auto [kind, key] : {std::pair{step_kind::stop, "stop"}, std::pair{step_kind::restart, "restart"},
                             std::pair{step_kind::exec, "exec"}, std::pair{step_kind::rollback, "rollback"},
                             std::pair{step_kind::http, "http"}, std::pair{step_kind::notify, "notify"},
                             std::pair{step_kind::wait, "wait"}}) {
        if (auto n = yaml::checker::child(node, key); n.IsDefined()) {
            kinds.emplace_back(kind, n);
        }
    }
    if (kinds.size() != 1) {
        check_.error(node, fmt::format("step {} must have exactly one of: {}; it has {}", quote_value(s.name),
                                       step_kinds, kinds.size()));
        return std::nullopt;
    }
    s.kind = kinds[0].first;
    const YAML::Node body = kinds[0].second;
    switch (s.kind) {
    case step_kind::stop:
    case step_kind::restart:
        load_service(body, s);
        break;
    case step_kind::exec:
        load_exec(body, s, rb, "exec");
        break;
    case step_kind::rollback:
        if (check_.expect_map(body, "rollback")) {
            check_.check_keys(body, "rollback", {"exec", "http"});
            const YAML::Node e = yaml::checker::child(body, "exec");
            const YAML::Node h = yaml::checker::child(body, "http");
            if (e.IsDefined() == h.IsDefined()) {
                check_.error(body, "rollback must have exactly one of exec (a program) or http (a deploy API call)");
            } else if (e.IsDefined()) {
                load_exec(e, s, rb, "rollback.exec");
            } else {
                s.uses_http = true;
                load_http(h, s, rb, "rollback.http");
            }
        }
        break;
    case step_kind::http:
        load_http(body, s, rb, "http");
        break;
    case step_kind::notify:
        load_notify(body, s, rb);
        break;
    case step_kind::wait:
        load_wait(body, s);
        break;
    }

    if (auto n = yaml::checker::child(node, "timeout"); n.IsDefined()) {
        if (auto d = check_.duration(n, "timeout")) {
            if (d->count() <= 0) {
                check_.error(n, "timeout must be longer than 0s");
            }
            s.timeout = *d;
        }
    } else if (s.kind == step_kind::wait) {
        check_.error(node, fmt::format("step {} waits; give it a timeout such as timeout: 30m", quote_value(s.name)));
    }
    if (auto n = yaml::checker::child(node, "on_failure"); n.IsDefined()) {
        if (auto v = check_.string(n, "on_failure")) {
            if (*v == "abort") {
                s.on_failure = failure_policy::abort;
            } else if (*v == "continue") {
                s.on_failure = failure_policy::continue_run;
            } else if (*v == "escalate") {
                s.on_failure = failure_policy::escalate;
            } else {
                check_.error(n, fmt::format("invalid on_failure {}; expected abort, continue or escalate",
                                            quote_value(*v)));
            }
        }
    }
    if (auto n = yaml::checker::child(node, "escalate_to"); n.IsDefined()) {
        if (s.on_failure != failure_policy::escalate) {
            check_.error(n, "escalate_to applies only with on_failure: escalate");
        } else if (auto v = check_.string(n, "escalate_to")) {
            s.escalate_to = *v;
        }
    }
    return s;
}

void runbook_file_loader::load_service(const YAML::Node& node, step& s)
{
    const char* what = s.kind == step_kind::stop ? "stop" : "restart";
    if (!check_.expect_map(node, what)) {
        return;
    }
    check_.check_keys(node, what, {"unit", "pid_file", "user_bus"});
    const YAML::Node unit = yaml::checker::child(node, "unit");
    const YAML::Node pid_file = yaml::checker::child(node, "pid_file");
    if (unit.IsDefined() == pid_file.IsDefined()) {
        check_.error(node, fmt::format("{} must have exactly one of unit (a systemd unit such as canary.service) or "
                                       "pid_file (an absolute path)",
                                       what));
        return;
    }
    if (unit.IsDefined()) {
        if (auto v = check_.string(unit, "unit")) {
            if (!valid_unit_name(*v)) {
                check_.error(unit, fmt::format("invalid unit {}; expected a systemd unit name such as canary.service",
                                               quote_value(*v)));
            }
            s.service.unit = *v;
        }
        if (auto n = yaml::checker::child(node, "user_bus"); n.IsDefined()) {
            s.service.user_bus = check_.boolean(n, "user_bus").value_or(false);
        }
    } else {
        if (yaml::checker::child(node, "user_bus").IsDefined()) {
            check_.error(node, "user_bus applies only to unit, not to pid_file");
        }
        if (auto v = check_.string(pid_file, "pid_file")) {
            if (v->empty() || v->front() != '/') {
                check_.error(pid_file, fmt::format("pid_file {} must be an absolute path", quote_value(*v)));
            }
            s.service.pid_file = *v;
        }
    }
}

void runbook_file_loader::load_exec(const YAML::Node& node, step& s, const runbook& rb, std::string_view field)
{
    if (node.IsScalar()) {
        check_.error(node, fmt::format("{} must be a mapping {{argv: [/absolute/program, arg, ...]}}, not a command "
                                       "line: no shell runs it, so write each argument as one list element",
                                       field));
        return;
    }
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field, {"argv", "env"});
    const YAML::Node argv = yaml::checker::child(node, "argv");
    if (!argv.IsDefined()) {
        check_.error(node, fmt::format("missing field \"argv\" in {}; expected argv: [/absolute/program, arg, ...]",
                                       field));
        return;
    }
    if (!check_.expect_sequence(argv, fmt::format("{}.argv", field))) {
        return;
    }
    if (argv.size() == 0) {
        check_.error(argv, fmt::format("{}.argv is empty; expected [/absolute/program, arg, ...]", field));
        return;
    }
    for (std::size_t i = 0; i < argv.size(); ++i) {
        auto t = load_template(argv[i], rb, fmt::format("{}.argv[{}]", field, i));
        if (!t) {
            continue;
        }
        if (i == 0) {
            if (!t->is_literal()) {
                check_.error(argv[i], fmt::format("{}.argv[0] must be a literal program path, not a template",
                                                  field));
                continue;
            }
            if (t->source().empty() || t->source().front() != '/') {
                check_.error(argv[i], fmt::format("{}.argv[0] {} must be an absolute path such as /usr/local/bin/"
                                                  "rollback; programs are not looked up in PATH",
                                                  field, quote_value(t->source())));
                continue;
            }
        }
        s.exec.argv.push_back(std::move(*t));
    }
    if (auto env = yaml::checker::child(node, "env"); env.IsDefined() && check_.expect_map(env, "env")) {
        for (auto it = env.begin(); it != env.end(); ++it) {
            const YAML::Node key = it->first;
            auto name = check_.string(key, "an environment variable name");
            if (!name) {
                continue;
            }
            if (!is_legacy_label_name(*name)) {
                check_.error(key, fmt::format("environment variable name {} is invalid; expected [A-Za-z_][A-Za-z0-9_]*",
                                              quote_value(*name)));
                continue;
            }
            if (*name == "LD_PRELOAD" || *name == "LD_LIBRARY_PATH" || *name == "LD_AUDIT" || *name == "PATH") {
                check_.error(key, fmt::format("environment variable {} may not be set by a runbook", *name));
                continue;
            }
            if (auto t = load_template(it->second, rb, fmt::format("env.{}", *name))) {
                s.exec.env.emplace_back(*name, std::move(*t));
            }
        }
    }
}

void runbook_file_loader::load_http(const YAML::Node& node, step& s, const runbook& rb, std::string_view field)
{
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field, {"method", "url", "headers", "body", "content_type", "attempts", "backoff"});
    if (auto n = yaml::checker::child(node, "method"); n.IsDefined()) {
        if (auto v = check_.string(n, "method")) {
            if (*v != "GET" && *v != "POST" && *v != "PUT" && *v != "PATCH" && *v != "DELETE") {
                check_.error(n, fmt::format("invalid method {}; expected GET, POST, PUT, PATCH or DELETE",
                                            quote_value(*v)));
            }
            s.http.method = *v;
        }
    }
    const YAML::Node url = yaml::checker::child(node, "url");
    if (!url.IsDefined()) {
        check_.error(node, fmt::format("missing field \"url\" in {}; expected url: http://host:port/path", field));
    } else if (auto t = load_template(url, rb, "url")) {
        const std::string prefix = t->literal_prefix();
        const bool scheme = prefix.starts_with("http://") || prefix.starts_with("https://");
        const auto host_start = prefix.find("://");
        const bool host_literal = scheme && prefix.find('/', host_start + 3) != std::string::npos;
        if (!scheme) {
            check_.error(url, fmt::format("url {} must start with http:// or https://", quote_value(t->source())));
        } else if (!host_literal) {
            check_.error(url, fmt::format("url {}: the scheme, host and port must be literal, up to the first / of "
                                          "the path; templates may only fill the path and query",
                                          quote_value(t->source())));
        }
        s.http.url = std::move(*t);
    }
    if (auto h = yaml::checker::child(node, "headers"); h.IsDefined() && check_.expect_map(h, "headers")) {
        for (auto it = h.begin(); it != h.end(); ++it) {
            const YAML::Node key = it->first;
            auto name = check_.string(key, "a header name");
            if (!name) {
                continue;
            }
            if (!valid_header_name(*name)) {
                check_.error(key, fmt::format("invalid header name {}", quote_value(*name)));
                continue;
            }
            if (iequals(*name, "Idempotency-Key") || iequals(*name, "Content-Length") || iequals(*name, "Host")) {
                check_.error(key, fmt::format("header {} is set by tocsin; remove it", *name));
                continue;
            }
            if (auto t = load_template(it->second, rb, fmt::format("headers.{}", *name))) {
                s.http.headers.emplace_back(*name, std::move(*t));
            }
        }
    }
    if (auto b = yaml::checker::child(node, "body"); b.IsDefined()) {
        s.http.body = load_template(b, rb, "body");
    }
    if (auto n = yaml::checker::child(node, "content_type"); n.IsDefined()) {
        if (auto v = check_.string(n, "content_type")) {
            s.http.content_type = *v;
        }
    }
    if (auto n = yaml::checker::child(node, "attempts"); n.IsDefined()) {
        if (auto v = positive(n, "attempts", 20)) {
            s.http.attempts = static_cast<int>(*v);
        }
    }
    if (auto n = yaml::checker::child(node, "backoff"); n.IsDefined()) {
        if (auto d = check_.duration(n, "backoff")) {
            s.http.backoff = *d;
        }
    }
}

void runbook_file_loader::load_notify(const YAML::Node& node, step& s, const runbook& rb)
{
    if (!check_.expect_map(node, "notify")) {
        return;
    }
    check_.check_keys(node, "notify", {"receiver", "text"});
    const YAML::Node receiver = yaml::checker::child(node, "receiver");
    if (!receiver.IsDefined()) {
        check_.error(node, "missing field \"receiver\" in notify; name a receiver of the routing configuration");
    } else if (auto v = check_.string(receiver, "notify.receiver")) {
        if (v->empty()) {
            check_.error(receiver, "notify.receiver is empty; name a receiver of the routing configuration");
        }
        s.notify.receiver = *v;
    }
    const YAML::Node text = yaml::checker::child(node, "text");
    if (!text.IsDefined()) {
        check_.error(node, "missing field \"text\" in notify; expected the message, such as text: 'rolled back "
                           "{{ $labels.model }}'");
    } else if (auto t = load_template(text, rb, "notify.text")) {
        s.notify.text = std::move(*t);
    }
}

void runbook_file_loader::load_wait(const YAML::Node& node, step& s)
{
    if (!check_.expect_map(node, "wait")) {
        return;
    }
    check_.check_keys(node, "wait", {"until"});
    const YAML::Node until = yaml::checker::child(node, "until");
    if (!until.IsDefined()) {
        check_.error(node, "missing field \"until\" in wait; expected until: resolved or until: metric_recovered");
        return;
    }
    if (auto v = check_.string(until, "wait.until")) {
        if (*v == "resolved") {
            s.wait.until = wait_condition::resolved;
        } else if (*v == "metric_recovered") {
            s.wait.until = wait_condition::metric_recovered;
        } else {
            check_.error(until, fmt::format("invalid wait.until {}; expected resolved or metric_recovered",
                                            quote_value(*v)));
        }
    }
}

} // namespace

std::vector<runbook> load_runbook_text(std::string_view text, const std::string& file_name, diagnostics& diags)
{
    return runbook_file_loader(text, file_name, diags).load();
}

std::vector<runbook> load_runbook_file(const std::string& path, diagnostics& diags)
{
    std::string content;
    std::string error;
    if (!read_regular_file(path, max_config_file_bytes, content, error)) {
        diags.add(path, 0, 0, fmt::format("cannot read the runbook file: {}", error));
        return {};
    }
    return load_runbook_text(content, path, diags);
}

void check_programs(const std::vector<runbook>& books, const std::vector<std::string>& allowed_programs,
                    diagnostics& diags)
{
    const program_allowlist allow(allowed_programs);
    for (const auto& rb : books) {
        for (const auto& s : rb.steps) {
            const bool execs = s.kind == step_kind::exec || (s.kind == step_kind::rollback && !s.uses_http);
            if (!execs || s.exec.argv.empty()) {
                continue;
            }
            std::string error;
            if (!allow.check(s.exec.argv[0].source(), error)) {
                diags.add(rb.file, s.line, 0, fmt::format("runbook {} step {}: {}", rb.name, s.name, error));
            }
        }
    }
}

const char* to_string(trigger_on on)
{
    switch (on) {
    case trigger_on::firing: return "firing";
    case trigger_on::resolved: return "resolved";
    case trigger_on::escalation: return "escalation";
    }
    return "unknown";
}

const char* to_string(step_kind kind)
{
    switch (kind) {
    case step_kind::stop: return "stop";
    case step_kind::restart: return "restart";
    case step_kind::exec: return "exec";
    case step_kind::rollback: return "rollback";
    case step_kind::http: return "http";
    case step_kind::notify: return "notify";
    case step_kind::wait: return "wait";
    }
    return "unknown";
}

const char* to_string(failure_policy policy)
{
    switch (policy) {
    case failure_policy::abort: return "abort";
    case failure_policy::continue_run: return "continue";
    case failure_policy::escalate: return "escalate";
    }
    return "unknown";
}

const char* to_string(interrupt_policy policy)
{
    switch (policy) {
    case interrupt_policy::resume: return "resume";
    case interrupt_policy::abort_and_escalate: return "abort_and_escalate";
    }
    return "unknown";
}

const char* to_string(wait_condition until)
{
    switch (until) {
    case wait_condition::resolved: return "resolved";
    case wait_condition::metric_recovered: return "metric_recovered";
    }
    return "unknown";
}

} // namespace tocsin::runbooks
