#include "daemon/ctl_audit.hpp"

#include <fstream>
#include <set>
#include <ostream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "daemon/api.hpp"
#include "daemon/terminal_text.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"
#include "runbooks/audit.hpp"

namespace tocsin {

int run_audit_verify(const audit_command& cmd, std::ostream& out, std::ostream& err)
{
    if (!std::ifstream(cmd.path)) {
        err << fmt::format("tocsinctl: cannot read the audit log {}; check the path (the daemon's "
                           "runbook audit log file)\n",
                           promql::quote(cmd.path));
        return 2;
    }
    const runbooks::audit_verify_result result = runbooks::verify_audit_log(cmd.path);
    if (result.ok) {
        out << fmt::format("ok: {} records, chain intact\n", result.records);
        if (!std::ifstream(cmd.path + ".head")) {
            err << fmt::format("tocsinctl: warning: {}.head is missing, so records cut from the end of the log "
                               "cannot be detected; the daemon writes it with every record\n",
                               cmd.path);
        }
        return 0;
    }
    err << fmt::format("tocsinctl: the audit log {} does not verify: {}; {} records before it are intact\n",
                       promql::quote(cmd.path), result.problem, result.records);
    return 1;
}

int run_audit_show(const audit_command& cmd, time_ms now, std::ostream& out, std::ostream& err)
{
    static const std::set<std::string> known_kinds = {"run_started", "step",        "approval",
                                                      "override",    "notification", "skipped",
                                                      "run_finished", "recovered",  "log_repaired"};
    for (const auto& kind : cmd.kinds) {
        if (!known_kinds.contains(kind)) {
            err << fmt::format("tocsinctl: unknown --kind {}; expected one of {}\n", promql::quote(kind),
                               fmt::join(known_kinds, ", "));
            return 2;
        }
    }
    runbooks::audit_filter filter;
    filter.kinds.insert(cmd.kinds.begin(), cmd.kinds.end());
    filter.run_id = cmd.run_id;
    if (!cmd.since.empty()) {
        std::string error;
        auto span = parse_duration(cmd.since, error);
        if (!span || span->count() <= 0) {
            err << fmt::format("tocsinctl: invalid --since {}: {}; expected a duration such as 24h or 7d\n",
                               promql::quote(cmd.since), span ? "it must be greater than 0" : error);
            return 2;
        }
        filter.from = now - span->count();
    }
    std::ostringstream verdict;
    if (const int status = run_audit_verify(cmd, verdict, err); status != 0) {
        return status;
    }
    std::vector<runbooks::audit_record> records;
    std::string error;
    if (!runbooks::read_audit_log(cmd.path, records, error)) {
        err << fmt::format("tocsinctl: {}\n", error);
        return 2;
    }
    const auto selected = runbooks::filter_audit(records, filter);
    if (!cmd.json && !selected.empty()) {
        out << fmt::format("{:>6}  {:<24}  {:<13} {:<12} {}\n", "SEQ", "TIME", "KIND", "ACTOR", "DETAILS");
    }
    for (const auto& r : selected) {
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
