#include "daemon/ctl_audit.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <set>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "daemon/api.hpp"
#include "daemon/overrides.hpp"
#include "daemon/terminal_text.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"
#include "runbooks/audit.hpp"

namespace tocsin {

namespace {

void print_cannot_read(const audit_command& cmd, std::ostream& err)
{
    err << fmt::format("tocsinctl: cannot read the audit log {}; check the path (the daemon's "
                       "runbook audit log file)\n",
                       promql::quote(cmd.path));
}

void print_head_missing(const audit_command& cmd, std::ostream& err)
{
    err << fmt::format("tocsinctl: warning: {}.head is missing, so records cut from the end of the log "
                       "cannot be detected; the daemon writes it with every record\n",
                       cmd.path);
}

void print_broken(const audit_command& cmd, const runbooks::audit_verify_result& result, std::ostream& err)
{
    err << fmt::format("tocsinctl: the audit log {} does not verify: {}; {} records before it are intact\n",
                       promql::quote(cmd.path), result.problem, result.records);
}

bool exists(const std::string& path)
{
    std::error_code ec;
    return std::filesystem::exists(path, ec);
}

} // namespace

const std::set<std::string>& audit_record_kinds()
{
    static const std::set<std::string> kinds = {"run_started",  "step",         "approval",     "override",
                                                "notification", "skipped",      "run_finished", "recovered",
                                                "log_repaired", "threshold_override", "acknowledgement"};
    return kinds;
}

bool check_audit_kinds(const std::vector<std::string>& kinds, std::string_view what, std::string& error)
{
    for (const auto& kind : kinds) {
        if (!audit_record_kinds().contains(kind)) {
            error = fmt::format("unknown {} {}; expected one of {}", what, promql::quote(kind),
                                fmt::join(audit_record_kinds(), ", "));
            return false;
        }
    }
    return true;
}

std::optional<time_ms> parse_audit_since(std::string_view text, time_ms now, std::string_view what,
                                         std::string& error)
{
    if (auto at = parse_rfc3339(text)) {
        return *at;
    }
    std::string problem;
    auto span = parse_duration(text, problem);
    if (!span || span->count() <= 0) {
        error = fmt::format("invalid {} {}: {}; expected a duration such as 24h or 7d, or an RFC 3339 time such "
                            "as 2026-01-02T15:04:05Z",
                            what, promql::quote(text), span ? "it must be greater than 0" : problem);
        return std::nullopt;
    }
    return now - span->count();
}

audit_selection select_audit_records(const std::string& path, const runbooks::audit_filter& filter)
{
    audit_selection out;
    if (!exists(path)) {
        if (!exists(path + ".head")) {
            out.result = audit_selection::state::missing;
            out.verify.ok = true;
            return out;
        }
        // The head file exists only after a record was written, so every record was removed.
        out.result = audit_selection::state::broken;
        out.verify.ok = false;
        out.verify.line = 1;
        out.verify.problem = fmt::format("the log is missing but its head file {} exists: every record was removed",
                                         promql::quote(path + ".head"));
        return out;
    }
    if (!std::ifstream(path)) {
        out.result = audit_selection::state::unreadable;
        out.error = fmt::format("cannot open {}: {}", promql::quote(path), std::strerror(errno));
        return out;
    }
    out.verify = runbooks::verify_audit_log(path);
    if (!out.verify.ok) {
        out.result = audit_selection::state::broken;
        return out;
    }
    out.head_missing = !exists(path + ".head");
    std::vector<runbooks::audit_record> records;
    if (!runbooks::read_audit_log(path, records, out.error)) {
        out.result = audit_selection::state::unreadable;
        return out;
    }
    // The log may have grown since it was verified; list only what the check covered.
    std::erase_if(records, [&](const runbooks::audit_record& r) { return r.seq > out.verify.records; });
    out.records = runbooks::filter_audit(records, filter);
    return out;
}

int run_audit_verify(const audit_command& cmd, std::ostream& out, std::ostream& err)
{
    if (!std::ifstream(cmd.path)) {
        print_cannot_read(cmd, err);
        return 2;
    }
    const runbooks::audit_verify_result result = runbooks::verify_audit_log(cmd.path);
    if (result.ok) {
        out << fmt::format("ok: {} records, chain intact\n", result.records);
        if (!exists(cmd.path + ".head")) {
            print_head_missing(cmd, err);
        }
        return 0;
    }
    print_broken(cmd, result, err);
    return 1;
}

int run_audit_show(const audit_command& cmd, time_ms now, std::ostream& out, std::ostream& err)
{
    std::string error;
    if (!check_audit_kinds(cmd.kinds, "--kind", error)) {
        err << "tocsinctl: " << error << '\n';
        return 2;
    }
    runbooks::audit_filter filter;
    filter.kinds.insert(cmd.kinds.begin(), cmd.kinds.end());
    filter.run_id = cmd.run_id;
    if (!cmd.since.empty()) {
        auto from = parse_audit_since(cmd.since, now, "--since", error);
        if (!from) {
            err << "tocsinctl: " << error << '\n';
            return 2;
        }
        filter.from = *from;
    }
    const audit_selection selected = select_audit_records(cmd.path, filter);
    switch (selected.result) {
    case audit_selection::state::missing:
    case audit_selection::state::unreadable:
        print_cannot_read(cmd, err);
        return 2;
    case audit_selection::state::broken:
        print_broken(cmd, selected.verify, err);
        return 1;
    case audit_selection::state::ok:
        break;
    }
    if (selected.head_missing) {
        print_head_missing(cmd, err);
    }
    if (!cmd.json && !selected.records.empty()) {
        out << fmt::format("{:>6}  {:<24}  {:<13} {:<12} {}\n", "SEQ", "TIME", "KIND", "ACTOR", "DETAILS");
    }
    for (const auto& r : selected.records) {
        if (cmd.json) {
            out << runbooks::canonical_json(r.to_json()) << '\n';
            continue;
        }
        out << fmt::format("{:>6}  {:<24}  {:<13} {:<12} {}\n", r.seq, format_rfc3339_ms(r.time), printable(r.kind),
                           printable(r.actor), printable(r.details.dump(-1, ' ', false,
                                                                        nlohmann::json::error_handler_t::replace)));
    }
    return 0;
}

} // namespace tocsin
