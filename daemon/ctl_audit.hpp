#pragma once
// tocsinctl audit verify and audit show: check the hash chain of a runbook audit log and list
// its records, reading the file directly (on the host that runs tocsind).

#include <iosfwd>
#include <string>
#include <vector>

#include "rules/clock.hpp"

namespace tocsin {

struct audit_command {
    std::string path;               // the audit log file
    std::vector<std::string> kinds; // show: only these kinds
    std::string run_id;             // show: only this run
    std::string since;              // show: a duration such as 24h; empty for all
    bool json = false;              // show: one JSON record per line instead of a table
};

// Prints "ok: N records, chain intact" and returns 0, or the first broken record and returns 1.
// Returns 2 when the file cannot be read.
int run_audit_verify(const audit_command& cmd, std::ostream& out, std::ostream& err);

// Verifies the log first, as verify does (a broken chain exits 1 with nothing listed), then
// prints the records that pass the filters. Returns 2 for a bad --since.
int run_audit_show(const audit_command& cmd, time_ms now, std::ostream& out, std::ostream& err);

} // namespace tocsin
