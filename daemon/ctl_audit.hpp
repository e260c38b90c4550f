#pragma once
// tocsinctl audit verify and audit show: check the hash chain of a runbook audit log and list
// its records, reading the file directly (on the host that runs tocsind).

#include <iosfwd>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "rules/clock.hpp"
#include "runbooks/audit.hpp"

namespace tocsin {

// ---- Shared with GET /api/v1/audit (daemon/runbook_api.hpp) ----

// The kinds of audit records runbooks/audit.hpp writes, sorted.
const std::set<std::string>& audit_record_kinds();

// Checks that each kind is one of audit_record_kinds(). Sets `error` to a message that names
// the first unknown one as `what` (such as --kind) and lists the valid ones.
bool check_audit_kinds(const std::vector<std::string>& kinds, std::string_view what, std::string& error);

// The start of the period `text` selects: a duration greater than 0 that ends at `now` (24h,
// 7d) or an RFC 3339 time (2026-01-02T15:04:05Z). Returns nullopt and sets `error`, naming the
// value as `what` (such as --since), otherwise.
std::optional<time_ms> parse_audit_since(std::string_view text, time_ms now, std::string_view what,
                                         std::string& error);

// The outcome of reading a log for listing: verified first, then read and filtered.
struct audit_selection {
    enum class state {
        ok,         // the chain verified, and `records` contains the matching ones
        missing,    // neither the log nor its head file exists: no record was written yet
        broken,     // the chain does not verify (see `verify`), and `records` is empty
        unreadable, // the log exists but cannot be read (see `error`)
    };
    state result = state::ok;
    runbooks::audit_verify_result verify;
    bool head_missing = false; // the log exists without its .head file
    std::vector<runbooks::audit_record> records; // in log order
    std::string error;
};

// Verifies the log at `path` and returns its records that pass `filter`. Only records the
// verification covered are returned, so a record appended between the check and the read is
// left out. A head file without its log counts as broken (every record was removed).
audit_selection select_audit_records(const std::string& path, const runbooks::audit_filter& filter);

// ---- tocsinctl audit ----

struct audit_command {
    std::string path;               // the audit log file
    std::vector<std::string> kinds; // show: only these kinds
    std::string run_id;             // show: only this run
    std::string since;              // show: a duration such as 24h or an RFC 3339 time; empty for all
    bool json = false;              // show: one JSON record per line instead of a table
};

// Prints "ok: N records, chain intact" and returns 0, or the first broken record and returns 1.
// Returns 2 when the file cannot be read.
int run_audit_verify(const audit_command& cmd, std::ostream& out, std::ostream& err);

// Verifies the log first, as verify does (a broken chain exits 1 with nothing listed), then
// prints the records that pass the filters. Returns 2 for a bad --since.
int run_audit_show(const audit_command& cmd, time_ms now, std::ostream& out, std::ostream& err);

} // namespace tocsin
