#include "daemon/runbook_api.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "daemon/api.hpp"
#include "daemon/ctl_audit.hpp"
#include "daemon/logging.hpp"
#include "daemon/silence_api.hpp"
#include "rules/rule.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;
using runbooks::run_phase;

constexpr std::string_view runs_prefix = "/api/v1/runbooks/runs/";
constexpr int max_action_nesting = 4;
constexpr std::size_t max_runbook_name_bytes = 128;
constexpr std::string_view actor_of_engine = "tocsin";

// A value from a request, quoted and cut for an error message.
std::string echo(std::string_view value) { return json_excerpt(json(std::string(value))); }

json time_or_null(time_ms t)
{
    if (t == 0) {
        return nullptr;
    }
    return format_rfc3339_ms(t);
}

std::string hex16(std::uint64_t v) { return fmt::format("{:016x}", v); }

json labels_json(const label_set& labels)
{
    json out = json::object();
    for (const auto& l : labels.items()) {
        out[l.name] = l.value;
    }
    return out;
}

const char* to_string(runbooks::step_state s)
{
    switch (s) {
    case runbooks::step_state::pending: return "pending";
    case runbooks::step_state::running: return "running";
    case runbooks::step_state::finished: return "finished";
    }
    return "unknown";
}

std::optional<run_phase> parse_phase(std::string_view text)
{
    for (run_phase p : {run_phase::queued, run_phase::running, run_phase::waiting_approval, run_phase::finished}) {
        if (text == runbooks::to_string(p)) {
            return p;
        }
    }
    return std::nullopt;
}

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// 16 hex digits, either case.
std::optional<std::uint64_t> parse_fingerprint(std::string_view text)
{
    if (text.size() != 16) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
    if (ec != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

bool valid_runbook_name(std::string_view name)
{
    return !name.empty() && name.size() <= max_runbook_name_bytes &&
           std::all_of(name.begin(), name.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
           });
}

std::optional<std::size_t> parse_limit(std::string_view text, std::size_t max)
{
    std::size_t n = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, n);
    if (text.empty() || ec != std::errc() || ptr != end || n < 1 || n > max) {
        return std::nullopt;
    }
    return n;
}

// The first control character (below 0x20, or 0x7f) of `text`, or -1.
int control_char(std::string_view text)
{
    for (unsigned char c : text) {
        if (c < 0x20 || c == 0x7f) {
            return c;
        }
    }
    return -1;
}

bool blank(std::string_view text)
{
    return std::all_of(text.begin(), text.end(), [](char c) { return c == ' '; });
}

bool equals_ignoring_case(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// Tracks parameters that may be given once.
class once {
public:
    bool first(const std::string& name, std::string& error, std::string_view example)
    {
        if (std::find(seen_.begin(), seen_.end(), name) != seen_.end()) {
            error = fmt::format("{} is given more than once; give it once, for example {}", name, example);
            return false;
        }
        seen_.push_back(name);
        return true;
    }

private:
    std::vector<std::string> seen_;
};

} // namespace

// ---- Views ----

json runbook_list_json(const std::vector<runbooks::runbook>& books)
{
    json out = json::array();
    for (const auto& b : books) {
        json matchers = json::array();
        for (const auto& m : b.trigger.matchers) {
            matchers.push_back(m.to_string());
        }
        json trigger = {
            {"matchers", std::move(matchers)},
            {"min_severity", b.trigger.min_severity ? json(to_string(*b.trigger.min_severity)) : json(nullptr)},
            {"on", runbooks::to_string(b.trigger.on)},
            {"level", b.trigger.on == runbooks::trigger_on::escalation ? json(b.trigger.escalation_level)
                                                                        : json(nullptr)},
        };
        json steps = json::array();
        for (const auto& s : b.steps) {
            steps.push_back({{"name", s.name},
                             {"kind", runbooks::to_string(s.kind)},
                             {"timeout_ms", s.timeout.count()},
                             {"on_failure", runbooks::to_string(s.on_failure)}});
        }
        json approval = nullptr;
        if (b.approval) {
            approval = {{"before_step", b.approval->before_name}, {"timeout_ms", b.approval->timeout.count()}};
        }
        out.push_back({
            {"name", b.name},
            {"file", b.file},
            {"line", b.line},
            {"trigger", std::move(trigger)},
            {"dry_run", b.dry_run},
            {"cooldown", {{"per_alert_ms", b.cooldown_per_alert.count()},
                          {"per_runbook_ms", b.cooldown_per_runbook.count()}}},
            {"max_runs", {{"count", b.max_runs}, {"window_ms", b.max_runs_window.count()}}},
            {"concurrency", b.concurrency},
            {"approval", std::move(approval)},
            {"on_interrupt", runbooks::to_string(b.on_interrupt)},
            {"escalate_to", b.escalate_to},
            {"steps", std::move(steps)},
        });
    }
    return out;
}

json run_json(const runbooks::run_view& r)
{
    json steps = json::array();
    for (const auto& s : r.steps) {
        const bool finished = s.state == runbooks::step_state::finished;
        steps.push_back({
            {"name", s.name},
            {"kind", runbooks::to_string(s.kind)},
            {"state", to_string(s.state)},
            {"outcome", finished ? json(runbooks::to_string(s.outcome)) : json(nullptr)},
            {"detail", s.detail},
            {"output", s.output},
            {"started_at", time_or_null(s.started_at)},
            {"finished_at", time_or_null(s.finished_at)},
        });
    }
    return {
        {"id", r.id},
        {"runbook", r.runbook},
        {"fingerprint", hex16(r.fingerprint)},
        {"episode_start", format_rfc3339_ms(r.episode_start)},
        {"labels", labels_json(r.labels)},
        {"created_at", format_rfc3339_ms(r.created_at)},
        {"dry_run", r.dry_run},
        {"phase", runbooks::to_string(r.phase)},
        {"approval", {{"state", runbooks::to_string(r.approval)},
                      {"by", r.approval_by.empty() ? json(nullptr) : json(r.approval_by)},
                      {"reason", r.approval_reason.empty() ? json(nullptr) : json(r.approval_reason)}}},
        {"outcome", r.outcome ? json(runbooks::to_string(*r.outcome)) : json(nullptr)},
        {"outcome_detail", r.outcome_detail},
        {"finished_at", time_or_null(r.finished_at)},
        {"steps", std::move(steps)},
    };
}

json skip_json(const runbooks::skip_record& s)
{
    return {
        {"runbook", s.runbook},
        {"fingerprint", hex16(s.fingerprint)},
        {"episode_start", format_rfc3339_ms(s.episode_start)},
        {"reason", s.reason},
        {"detail", s.detail},
        {"at", format_rfc3339_ms(s.at)},
    };
}

// ---- GET /api/v1/runbooks/runs ----

runs_query parse_runs_query(const query_params& params, std::string& error)
{
    error.clear();
    runs_query out;
    once seen;
    for (const auto& [name, value] : params) {
        if (name == "runbook") {
            if (!seen.first(name, error, "runbook=model-rollback")) {
                return {};
            }
            if (!valid_runbook_name(value)) {
                error = fmt::format("invalid runbook {}; expected a runbook name (up to {} of a-z A-Z 0-9 _ - .) as "
                                    "GET /api/v1/runbooks lists them",
                                    echo(value), max_runbook_name_bytes);
                return {};
            }
            out.runbook = value;
        } else if (name == "phase") {
            if (!seen.first(name, error, "phase=waiting_approval")) {
                return {};
            }
            out.phase = parse_phase(value);
            if (!out.phase) {
                error = fmt::format("invalid phase {}; expected queued, running, waiting_approval or finished",
                                    echo(value));
                return {};
            }
        } else if (name == "alert") {
            if (!seen.first(name, error, "alert=8f3a0c1d2e4b5a69")) {
                return {};
            }
            out.alert = parse_fingerprint(value);
            if (!out.alert) {
                error = fmt::format("invalid alert {}; expected the alert's fingerprint, 16 hex digits such as "
                                    "8f3a0c1d2e4b5a69",
                                    echo(value));
                return {};
            }
        } else if (name == "limit") {
            if (!seen.first(name, error, "limit=100")) {
                return {};
            }
            auto n = parse_limit(value, max_runs_limit);
            if (!n) {
                error = fmt::format("invalid limit {}; expected a whole number from 1 to {}", echo(value),
                                    max_runs_limit);
                return {};
            }
            out.limit = *n;
        } else {
            error = fmt::format("unknown query parameter {}; expected runbook, phase, alert or limit", echo(name));
            return {};
        }
    }
    return out;
}

runs_query parse_runs_query_string(std::string_view query, std::string& error)
{
    error.clear();
    auto params = parse_query(query);
    if (!params) {
        error = "the query string has a malformed %XX escape; percent-encode it, for example "
                "runbook=model-rollback&phase=finished";
        return {};
    }
    return parse_runs_query(*params, error);
}

json runs_response(std::vector<runbooks::run_view> runs, const std::vector<runbooks::skip_record>& skips,
                   const runs_query& query)
{
    // Newest first; runs created in the same millisecond keep the engine's order, reversed.
    std::reverse(runs.begin(), runs.end());
    std::stable_sort(runs.begin(), runs.end(),
                     [](const runbooks::run_view& a, const runbooks::run_view& b) { return a.created_at > b.created_at; });
    json run_list = json::array();
    for (const auto& r : runs) {
        if (run_list.size() >= query.limit) {
            break;
        }
        if ((!query.runbook.empty() && r.runbook != query.runbook) || (query.phase && r.phase != *query.phase) ||
            (query.alert && r.fingerprint != *query.alert)) {
            continue;
        }
        run_list.push_back(run_json(r));
    }

    std::vector<const runbooks::skip_record*> order;
    order.reserve(skips.size());
    for (auto it = skips.rbegin(); it != skips.rend(); ++it) {
        order.push_back(&*it);
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const runbooks::skip_record* a, const runbooks::skip_record* b) { return a->at > b->at; });
    json skip_list = json::array();
    for (const auto* s : order) {
        if (skip_list.size() >= query.limit) {
            break;
        }
        if ((!query.runbook.empty() && s->runbook != query.runbook) || (query.alert && s->fingerprint != *query.alert)) {
            continue;
        }
        skip_list.push_back(skip_json(*s));
    }
    return {{"runs", std::move(run_list)}, {"skips", std::move(skip_list)}};
}

// ---- /api/v1/runbooks/runs/{id}[/{action}] ----

bool valid_run_id(std::string_view id)
{
    return id.size() == 17 && id.front() == 'r' && std::all_of(id.begin() + 1, id.end(), is_lower_hex);
}

const char* to_string(run_action action)
{
    switch (action) {
    case run_action::none: return "none";
    case run_action::approve: return "approve";
    case run_action::reject: return "reject";
    case run_action::cancel: return "cancel";
    }
    return "unknown";
}

run_path parse_run_path(std::string_view path)
{
    run_path out;
    if (!path.starts_with(runs_prefix)) {
        return out;
    }
    out.matched = true;
    const std::string_view rest = path.substr(runs_prefix.size());
    const auto slash = rest.find('/');
    const std::string_view id = rest.substr(0, slash);
    if (!valid_run_id(id)) {
        out.status = 400;
        out.error = fmt::format("invalid run id {}; expected \"r\" and 16 lowercase hex digits, such as "
                                "r0123456789abcdef, as GET /api/v1/runbooks/runs lists them",
                                echo(id));
        return out;
    }
    out.run_id = std::string(id);
    if (slash == std::string_view::npos) {
        return out;
    }
    const std::string_view action = rest.substr(slash + 1);
    if (action == "approve") {
        out.action = run_action::approve;
    } else if (action == "reject") {
        out.action = run_action::reject;
    } else if (action == "cancel") {
        out.action = run_action::cancel;
    } else {
        out.status = 404;
        out.error = fmt::format("unknown run action {}; expected /api/v1/runbooks/runs/{}/approve, reject or cancel",
                                echo(action), out.run_id);
    }
    return out;
}

run_action_request parse_run_action_request(run_action action, std::string_view body)
{
    run_action_request out;
    auto fail = [&](int status, std::string error) {
        out.status = status;
        out.error = std::move(error);
        return out;
    };
    const bool reason_required = action == run_action::reject || action == run_action::cancel;
    const std::string_view expected = reason_required ? R"({"by": "<name>", "reason": "<why>"})"
                                                      : R"({"by": "<name>", "reason": "<optional>"})";
    if (body.size() > max_run_action_body_bytes) {
        return fail(413, fmt::format("the request body has {} bytes; at most {} are allowed", body.size(),
                                     max_run_action_body_bytes));
    }
    if (json_nesting_depth(body) > max_action_nesting) {
        return fail(400, fmt::format("the request body nests too deeply; expected {}", expected));
    }
    const json parsed = json::parse(body, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
        return fail(400, fmt::format("the request body is not a JSON object; expected {}", expected));
    }
    for (const auto& [key, value] : parsed.items()) {
        if (key != "by" && key != "reason") {
            return fail(400, fmt::format("unknown field {}; expected by and reason", echo(key)));
        }
    }
    auto text = [&](const char* name, std::size_t max_bytes, std::string& into) -> bool {
        auto it = parsed.find(name);
        if (it == parsed.end() || it->is_null()) {
            return true;
        }
        if (!it->is_string()) {
            fail(400, fmt::format("\"{}\" is {}; expected a string", name, json_excerpt(*it)));
            return false;
        }
        into = it->get<std::string>();
        if (into.size() > max_bytes) {
            fail(400, fmt::format("\"{}\" has {} bytes; at most {} are allowed", name, into.size(), max_bytes));
            return false;
        }
        // Both reach the daemon's log and the audit log, so neither may start a line of its own.
        if (const int c = control_char(into); c >= 0) {
            fail(400, fmt::format("\"{}\" contains the control character 0x{:02x}; write it on one line without "
                                  "control characters",
                                  name, c));
            return false;
        }
        return true;
    };
    if (!text("by", max_run_action_by_bytes, out.by) || !text("reason", max_run_action_reason_bytes, out.reason)) {
        return out;
    }
    if (blank(out.by)) {
        return fail(400, fmt::format("\"by\" is missing or empty; name who {} the run, such as {{\"by\": \"alice\"}}",
                                     action == run_action::approve  ? "approves"
                                     : action == run_action::reject ? "rejects"
                                                                    : "cancels"));
    }
    if (equals_ignoring_case(out.by, actor_of_engine)) {
        return fail(400, fmt::format("\"by\" is {}, the name the audit log gives tocsin's own actions; use the name "
                                     "of the person",
                                     echo(out.by)));
    }
    if (reason_required && blank(out.reason)) {
        return fail(400, fmt::format("\"reason\" is missing or empty; say why you {} the run, such as {{\"by\": "
                                     "\"alice\", \"reason\": \"the canary is healthy\"}}",
                                     action == run_action::reject ? "reject" : "cancel"));
    }
    return out;
}

int run_action_error_status(const std::optional<runbooks::run_view>& run, run_action action)
{
    if (!run) {
        return 404;
    }
    if (run->phase == run_phase::finished) {
        return 409;
    }
    if ((action == run_action::approve || action == run_action::reject) && run->phase != run_phase::waiting_approval) {
        return 409;
    }
    if (action == run_action::cancel && run->cancelling) {
        return 409;
    }
    return 500;
}

// ---- GET /api/v1/audit ----

std::optional<audit_query> parse_audit_query(const query_params& params, time_ms now, std::string& error)
{
    error.clear();
    audit_query out;
    once seen;
    for (const auto& [name, value] : params) {
        if (name == "kind") {
            std::vector<std::string> kinds;
            std::string_view rest = value;
            while (true) {
                const auto comma = rest.find(',');
                kinds.emplace_back(rest.substr(0, comma));
                if (comma == std::string_view::npos) {
                    break;
                }
                rest.remove_prefix(comma + 1);
            }
            if (!check_audit_kinds(kinds, "kind", error)) {
                return std::nullopt;
            }
            out.filter.kinds.insert(kinds.begin(), kinds.end());
        } else if (name == "run") {
            if (!seen.first(name, error, "run=r0123456789abcdef")) {
                return std::nullopt;
            }
            if (!valid_run_id(value)) {
                error = fmt::format("invalid run {}; expected \"r\" and 16 lowercase hex digits, such as "
                                    "r0123456789abcdef, as GET /api/v1/runbooks/runs lists them",
                                    echo(value));
                return std::nullopt;
            }
            out.filter.run_id = value;
        } else if (name == "since") {
            if (!seen.first(name, error, "since=24h")) {
                return std::nullopt;
            }
            auto from = parse_audit_since(value, now, "since", error);
            if (!from) {
                return std::nullopt;
            }
            out.filter.from = *from;
        } else if (name == "limit") {
            if (!seen.first(name, error, "limit=1000")) {
                return std::nullopt;
            }
            auto n = parse_limit(value, max_audit_limit);
            if (!n) {
                error = fmt::format("invalid limit {}; expected a whole number from 1 to {}", echo(value),
                                    max_audit_limit);
                return std::nullopt;
            }
            out.limit = *n;
        } else {
            error = fmt::format("unknown query parameter {}; expected kind, run, since or limit", echo(name));
            return std::nullopt;
        }
    }
    return out;
}

http_response audit_response(const std::string& log_path, std::string_view query, time_ms now)
{
    auto params = parse_query(query);
    if (!params) {
        return http_response::text(400, "the query string has a malformed %XX escape; percent-encode it, for "
                                        "example kind=approval,override&since=24h\n");
    }
    std::string error;
    auto parsed = parse_audit_query(*params, now, error);
    if (!parsed) {
        return http_response::text(400, error + "\n");
    }
    const audit_selection selected = select_audit_records(log_path, parsed->filter);
    if (selected.result == audit_selection::state::unreadable) {
        get_logger("runbooks")->error("cannot read the audit log for GET /api/v1/audit: {}", selected.error);
        return http_response::text(500, "cannot read the audit log; see the tocsind log\n");
    }
    json records = json::array();
    const std::size_t skip = selected.records.size() > parsed->limit ? selected.records.size() - parsed->limit : 0;
    for (std::size_t i = skip; i < selected.records.size(); ++i) {
        records.push_back(selected.records[i].to_json());
    }
    const json doc = {
        {"chain", {{"ok", selected.verify.ok},
                   {"records", selected.verify.records},
                   {"problem", selected.verify.ok ? json(nullptr) : json(selected.verify.problem)}}},
        {"records", std::move(records)},
    };
    return http_response::json(200, doc.dump(-1, ' ', false, json::error_handler_t::replace));
}

} // namespace tocsin
