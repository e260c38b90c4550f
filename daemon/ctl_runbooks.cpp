#include "daemon/ctl_runbooks.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "daemon/runbook_api.hpp"
#include "daemon/terminal_text.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;

bool acts(runbooks_command::action a)
{
    using action = runbooks_command::action;
    return a == action::approve || a == action::reject || a == action::cancel;
}

const char* verb_of(runbooks_command::action a)
{
    using action = runbooks_command::action;
    switch (a) {
    case action::approve: return "approve";
    case action::reject: return "reject";
    case action::cancel: return "cancel";
    default: return "";
    }
}

// A field of a server object as text for a table: strings as they are (made printable), numbers
// and booleans as JSON, null or absent as "-".
std::string field(const json& obj, const char* name)
{
    if (!obj.is_object()) {
        return "-";
    }
    auto it = obj.find(name);
    if (it == obj.end() || it->is_null()) {
        return "-";
    }
    if (it->is_string()) {
        const std::string text = printable(it->get<std::string>());
        return text.empty() ? "-" : text;
    }
    return printable(it->dump(-1, ' ', false, json::error_handler_t::replace));
}

const json& member(const json& obj, const char* name)
{
    static const json null_value;
    if (!obj.is_object()) {
        return null_value;
    }
    auto it = obj.find(name);
    return it == obj.end() ? null_value : *it;
}

std::string format_table(const std::vector<std::vector<std::string>>& rows)
{
    return format_columns(rows);
}

// Prints the outcome of a failed exchange. Returns 1.
int report_failure(const transport_reply& reply, std::ostream& err)
{
    if (reply.status == 0) {
        err << "tocsinctl: " << reply.error << '\n';
    } else {
        err << "tocsinctl: " << reply.status << ": " << server_error_message(reply.status, reply.body) << '\n';
    }
    if (reply.status == 401) {
        err << "tocsinctl: pass an admin token with --token-file FILE, or put the token itself in TOCSIN_TOKEN\n";
    }
    return 1;
}

std::optional<json> parse_reply(const transport_reply& reply, bool (*shape)(const json&), const char* expected,
                                std::ostream& err)
{
    json doc = json::parse(reply.body, nullptr, false);
    if (doc.is_discarded() || !shape(doc)) {
        err << "tocsinctl: the server's answer is not " << expected << ": "
            << server_error_message(reply.status, reply.body) << '\n';
        return std::nullopt;
    }
    return doc;
}

bool is_array(const json& doc) { return doc.is_array(); }
bool is_run(const json& doc) { return doc.is_object() && doc.contains("id") && doc.contains("phase"); }
bool is_runs(const json& doc)
{
    return doc.is_object() && doc.contains("runs") && doc["runs"].is_array() && doc.contains("skips") &&
           doc["skips"].is_array();
}

} // namespace

bool check_runbooks_args(const runbooks_command& cmd, std::string& error)
{
    using action = runbooks_command::action;
    if (cmd.subcommand == action::runs && !cmd.phase.empty() && cmd.phase != "queued" && cmd.phase != "running" &&
        cmd.phase != "waiting_approval" && cmd.phase != "finished") {
        error = fmt::format("--phase {} is not a run phase; expected queued, running, waiting_approval or finished",
                            promql::quote(cmd.phase));
        return false;
    }
    if (cmd.subcommand == action::show || acts(cmd.subcommand)) {
        if (!valid_run_id(cmd.run_id)) {
            error = fmt::format("{} is not a run id; expected \"r\" and 16 lowercase hex digits, as tocsinctl "
                                "runbooks runs lists them",
                                promql::quote(cmd.run_id));
            return false;
        }
    }
    if (!acts(cmd.subcommand)) {
        return true;
    }
    const auto control = [](std::string_view text) {
        return std::any_of(text.begin(), text.end(), [](char c) {
            const auto byte = static_cast<unsigned char>(c);
            return byte < 0x20 || byte == 0x7f;
        });
    };
    if (trim_space(cmd.by).empty()) {
        error = fmt::format("--by is empty; pass --by NAME, the person who decides to {} the run",
                            verb_of(cmd.subcommand));
        return false;
    }
    if (cmd.by.size() > max_run_action_by_bytes || control(cmd.by)) {
        error = fmt::format("--by must be a plain name of at most {} bytes without control characters",
                            max_run_action_by_bytes);
        return false;
    }
    if (cmd.subcommand != action::approve && trim_space(cmd.reason).empty()) {
        error = fmt::format("--reason is required to {} a run; say why, for example --reason 'the canary is healthy'",
                            verb_of(cmd.subcommand));
        return false;
    }
    if (cmd.reason.size() > max_run_action_reason_bytes || control(cmd.reason)) {
        error = fmt::format("--reason must be one line of at most {} bytes without control characters",
                            max_run_action_reason_bytes);
        return false;
    }
    return true;
}

std::string runbooks_target(const runbooks_command& cmd)
{
    using action = runbooks_command::action;
    switch (cmd.subcommand) {
    case action::list: return "/api/v1/runbooks";
    case action::runs: {
        std::string target = "/api/v1/runbooks/runs";
        char sep = '?';
        if (!cmd.runbook.empty()) {
            target += sep + ("runbook=" + percent_encode(cmd.runbook));
            sep = '&';
        }
        if (!cmd.phase.empty()) {
            target += sep + ("phase=" + percent_encode(cmd.phase));
        }
        return target;
    }
    case action::show: return "/api/v1/runbooks/runs/" + percent_encode(cmd.run_id);
    case action::approve:
    case action::reject:
    case action::cancel:
        return fmt::format("/api/v1/runbooks/runs/{}/{}", percent_encode(cmd.run_id), verb_of(cmd.subcommand));
    }
    return "/api/v1/runbooks";
}

json run_action_body(const runbooks_command& cmd)
{
    json body = {{"by", cmd.by}};
    if (!cmd.reason.empty()) {
        body["reason"] = cmd.reason;
    }
    return body;
}

std::string format_runbooks_table(const json& books)
{
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"NAME", "TRIGGER", "ON", "STEPS", "APPROVAL BEFORE", "DRY RUN"});
    if (books.is_array()) {
        for (const json& b : books) {
            const json& trigger = member(b, "trigger");
            std::string matchers;
            if (member(trigger, "matchers").is_array()) {
                for (const json& m : member(trigger, "matchers")) {
                    if (!matchers.empty()) {
                        matchers += ' ';
                    }
                    matchers += m.is_string() ? printable(m.get<std::string>()) : "?";
                }
            }
            if (const json& sev = member(trigger, "min_severity"); sev.is_string()) {
                matchers += " severity>=" + printable(sev.get<std::string>());
            }
            std::string on = field(trigger, "on");
            if (const json& level = member(trigger, "level"); level.is_number()) {
                on += " " + level.dump();
            }
            std::string steps;
            if (member(b, "steps").is_array()) {
                for (const json& s : member(b, "steps")) {
                    if (!steps.empty()) {
                        steps += ',';
                    }
                    steps += field(s, "name");
                }
            }
            const json& dry = member(b, "dry_run");
            rows.push_back({field(b, "name"), matchers, on, steps, field(member(b, "approval"), "before_step"),
                            dry.is_boolean() && dry.get<bool>() ? "yes" : "no"});
        }
    }
    return format_table(rows);
}

std::string format_runs_table(const json& response)
{
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"ID", "RUNBOOK", "PHASE", "OUTCOME", "APPROVAL", "CREATED", "ALERT"});
    for (const json& r : member(response, "runs").is_array() ? member(response, "runs") : json::array()) {
        std::string approval = field(member(r, "approval"), "state");
        if (const json& by = member(member(r, "approval"), "by"); by.is_string()) {
            approval += " by " + printable(by.get<std::string>());
        }
        std::string phase = field(r, "phase");
        if (const json& dry = member(r, "dry_run"); dry.is_boolean() && dry.get<bool>()) {
            phase += " (dry run)";
        }
        rows.push_back({field(r, "id"), field(r, "runbook"), phase, field(r, "outcome"), approval,
                        field(r, "created_at"), field(r, "fingerprint")});
    }
    std::string out = format_table(rows);
    const json& skips = member(response, "skips");
    if (skips.is_array() && !skips.empty()) {
        std::vector<std::vector<std::string>> skip_rows;
        skip_rows.push_back({"SKIPPED", "RUNBOOK", "REASON", "EPISODE", "ALERT", "DETAIL"});
        for (const json& s : skips) {
            skip_rows.push_back({field(s, "at"), field(s, "runbook"), field(s, "reason"), field(s, "episode_start"),
                                 field(s, "fingerprint"), field(s, "detail")});
        }
        out += '\n' + format_table(skip_rows);
    }
    return out;
}

std::string format_run(const json& run)
{
    std::string labels;
    if (const json& l = member(run, "labels"); l.is_object()) {
        for (const auto& [name, value] : l.items()) {
            if (!labels.empty()) {
                labels += ", ";
            }
            labels += printable(name) + "=" +
                      (value.is_string() ? printable(promql::quote(value.get<std::string>())) : std::string("?"));
        }
    }
    std::string approval = field(member(run, "approval"), "state");
    if (const json& by = member(member(run, "approval"), "by"); by.is_string()) {
        approval += " by " + printable(by.get<std::string>());
    }
    const json& dry = member(run, "dry_run");
    std::vector<std::vector<std::string>> head = {
        {"Run:", field(run, "id")},
        {"Runbook:", field(run, "runbook")},
        {"Alert:", field(run, "fingerprint") + " {" + labels + "}"},
        {"Episode start:", field(run, "episode_start")},
        {"Created:", field(run, "created_at")},
        {"Dry run:", dry.is_boolean() && dry.get<bool>() ? "yes" : "no"},
        {"Phase:", field(run, "phase")},
        {"Approval:", approval},
        {"Outcome:", field(run, "outcome")},
        {"Detail:", field(run, "outcome_detail")},
        {"Finished:", field(run, "finished_at")},
    };
    std::string out = format_table(head);
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"STEP", "KIND", "STATE", "OUTCOME", "STARTED", "FINISHED", "DETAIL"});
    std::vector<std::pair<std::string, std::string>> outputs;
    const json& steps = member(run, "steps");
    for (const json& s : steps.is_array() ? steps : json::array()) {
        rows.push_back({field(s, "name"), field(s, "kind"), field(s, "state"), field(s, "outcome"),
                        field(s, "started_at"), field(s, "finished_at"), field(s, "detail")});
        if (const json& output = member(s, "output"); output.is_string() && !output.get<std::string>().empty()) {
            outputs.emplace_back(field(s, "name"), output.get<std::string>());
        }
    }
    out += '\n' + format_table(rows);
    for (const auto& [name, text] : outputs) {
        out += fmt::format("\nOutput of {}:\n", name);
        std::string_view rest = text;
        while (!rest.empty()) {
            const auto nl = rest.find('\n');
            out += "  " + printable(rest.substr(0, nl)) + '\n';
            if (nl == std::string_view::npos) {
                break;
            }
            rest.remove_prefix(nl + 1);
        }
    }
    return out;
}

int runbooks_run(const runbooks_command& cmd, silence_transport& api, std::ostream& out, std::ostream& err)
{
    using action = runbooks_command::action;
    std::string error;
    if (!check_runbooks_args(cmd, error)) {
        err << "tocsinctl: " << error << '\n';
        return 2;
    }
    const bool post = acts(cmd.subcommand);
    const transport_reply reply =
        api.send(post ? "POST" : "GET", runbooks_target(cmd), post ? run_action_body(cmd).dump() : std::string());
    if (reply.status < 200 || reply.status >= 300) {
        return report_failure(reply, err);
    }
    std::optional<json> doc;
    switch (cmd.subcommand) {
    case action::list: doc = parse_reply(reply, is_array, "a list of runbooks", err); break;
    case action::runs: doc = parse_reply(reply, is_runs, "a list of runs", err); break;
    default: doc = parse_reply(reply, is_run, "a run", err); break;
    }
    if (!doc) {
        return 1;
    }
    if (cmd.json) {
        out << doc->dump(2, ' ', false, json::error_handler_t::replace) << '\n';
        return 0;
    }
    switch (cmd.subcommand) {
    case action::list: out << format_runbooks_table(*doc); break;
    case action::runs: out << format_runs_table(*doc); break;
    case action::show: out << format_run(*doc); break;
    default: {
        std::string state = field(*doc, "phase");
        if (const json& outcome = member(*doc, "outcome"); outcome.is_string()) {
            state += ", " + printable(outcome.get<std::string>());
        }
        out << fmt::format("run {}: {}\n", field(*doc, "id"), state);
        break;
    }
    }
    return 0;
}

int run_runbooks_command(const runbooks_command& cmd)
{
    std::string error;
    if (!check_runbooks_args(cmd, error)) {
        std::cerr << "tocsinctl: " << error << '\n';
        return 2;
    }
    auto api = connect_to_tocsind(cmd.url, cmd.token_file, cmd.ca_file, cmd.timeout, std::cerr);
    if (!api) {
        return 2;
    }
    return runbooks_run(cmd, *api, std::cout, std::cerr);
}

} // namespace tocsin
