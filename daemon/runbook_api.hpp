#pragma once
// The runbook API: JSON views of the runbook engine and the parsers of its requests.
//
//   GET  /api/v1/runbooks                               runbook_list_json()
//   GET  /api/v1/runbooks/runs?runbook=&phase=&alert=&limit=   parse_runs_query(), runs_response()
//   GET  /api/v1/runbooks/runs/{id}                     parse_run_path(), run_json()
//   POST /api/v1/runbooks/runs/{id}/approve|reject|cancel   parse_run_path(), parse_run_action_request()
//   GET  /api/v1/audit?kind=&run=&since=&limit=         audit_response()
//
// Everything here is a pure function of its arguments (audit_response() reads the log file), so
// the HTTP handlers stay thin. Error messages name the value and the fix; the handler sends them
// as text with the status the parser gives.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/http_types.hpp"
#include "rules/clock.hpp"
#include "runbooks/audit.hpp"
#include "runbooks/engine.hpp"
#include "runbooks/journal.hpp"
#include "runbooks/model.hpp"

namespace tocsin {

// Decoded query parameters in their order, as parse_query() (daemon/http_types.hpp) returns them.
using query_params = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::size_t default_runs_limit = 100;
inline constexpr std::size_t max_runs_limit = 1000;
inline constexpr std::size_t default_audit_limit = 1000;
inline constexpr std::size_t max_audit_limit = 10000;
inline constexpr std::size_t max_run_action_body_bytes = 16 * 1024;
inline constexpr std::size_t max_run_action_by_bytes = 256;
inline constexpr std::size_t max_run_action_reason_bytes = 4096;

// ---- Views ----

// GET /api/v1/runbooks: [{name, file, line, trigger: {matchers, min_severity, on, level},
// dry_run, cooldown: {per_alert_ms, per_runbook_ms}, max_runs: {count, window_ms}, concurrency,
// approval: {before_step, timeout_ms} or null, on_interrupt, escalate_to,
// steps: [{name, kind, timeout_ms, on_failure}]}]. Matchers are in PromQL syntax
// (alertname=~"A|B"); min_severity and level are null when not set; max_runs.count 0 means no
// limit.
nlohmann::json runbook_list_json(const std::vector<runbooks::runbook>& books);

// One run: {id, runbook, fingerprint (16 hex digits), episode_start, labels, created_at,
// dry_run, phase, approval: {state, by}, outcome, outcome_detail, finished_at, steps: [{name,
// kind, state, outcome, detail, output, started_at, finished_at}]}. Times are RFC 3339 UTC with
// milliseconds, and null until reached. outcome is null until the run (or step) has finished,
// and approval.by is null until someone has decided.
nlohmann::json run_json(const runbooks::run_view& r);

// One episode a guard skipped: {runbook, fingerprint, episode_start, reason, detail, at}.
nlohmann::json skip_json(const runbooks::skip_record& s);

// ---- GET /api/v1/runbooks/runs ----

struct runs_query {
    std::string runbook;                     // empty: every runbook
    std::optional<runbooks::run_phase> phase; // runs only; skips have no phase
    std::optional<std::uint64_t> alert;      // the alert's fingerprint
    std::size_t limit = default_runs_limit;  // per list, newest first
};

// Reads runbook=NAME, phase=queued|running|waiting_approval|finished, alert=<16 hex digits> and
// limit=N (1 to 1000, default 100). Each may be given once. Other names are rejected, so that a
// typo does not pass for "no filter". Sets `error` (HTTP 400) and returns the defaults when a
// value is rejected, and clears `error` otherwise.
runs_query parse_runs_query(const query_params& params, std::string& error);

// The same from the undecoded query string; also rejects a malformed %XX escape.
runs_query parse_runs_query_string(std::string_view query, std::string& error);

// {"runs": [...], "skips": [...]}: the runs (newest created first) and the skips (newest
// first) that pass the query, each list cut to query.limit. The phase filters runs only; the
// runbook and alert filter both.
nlohmann::json runs_response(std::vector<runbooks::run_view> runs, const std::vector<runbooks::skip_record>& skips,
                             const runs_query& query);

// ---- /api/v1/runbooks/runs/{id}[/{action}] ----

// True for "r" followed by 16 lowercase hex digits, the form of runbooks::run_id_for().
bool valid_run_id(std::string_view id);

enum class run_action { none, approve, reject, cancel };
const char* to_string(run_action action);

struct run_path {
    bool matched = false;  // the path starts with /api/v1/runbooks/runs/
    std::string run_id;
    run_action action = run_action::none; // none: GET the run
    int status = 200;      // 400 for a malformed run id, 404 for an unknown action
    std::string error;     // set with status 400 or 404
};

// Splits /api/v1/runbooks/runs/{id} and /api/v1/runbooks/runs/{id}/{approve|reject|cancel}.
// matched is false for every other path, /api/v1/runbooks/runs itself included.
run_path parse_run_path(std::string_view path);

struct run_action_request {
    std::string by;
    std::string reason;
    int status = 200;  // 400, or 413 for a body over max_run_action_body_bytes
    std::string error; // set when the body is rejected
};

// Parses {"by": "alice", "reason": "..."} for approve, reject or cancel. `by` is required: 1 to
// 256 bytes, no control characters, and not "tocsin", the actor name of the engine's own records.
// `reason` is optional for approve and required for reject and cancel: at most 4096 bytes, no
// control characters. Other keys are rejected by name.
run_action_request parse_run_action_request(run_action action, std::string_view body);

// Returns the status for an approve, reject or cancel that the engine rejected, given the run
// as find() returned it before the call. 404: no such run. 409: the phase does not allow the
// action (finished, not waiting_approval for approve and reject, or a cancel already under
// way). 500 otherwise, because
// then the journal could not record the decision.
int run_action_error_status(const std::optional<runbooks::run_view>& run, run_action action);

// ---- GET /api/v1/audit ----

struct audit_query {
    runbooks::audit_filter filter;
    std::size_t limit = default_audit_limit; // the newest records, listed oldest first
};

// Reads kind= (repeatable or comma separated, from the kinds of runbooks/audit.hpp), run=<run
// id>, since=<duration such as 24h, or an RFC 3339 time> and limit=N (1 to 10000, default
// 1000). Returns nullopt and sets `error` (HTTP 400) for an invalid value.
std::optional<audit_query> parse_audit_query(const query_params& params, time_ms now, std::string& error);

// The whole of GET /api/v1/audit for the log at `log_path` and the undecoded `query`:
//   200 {"chain": {"ok", "records", "problem"}, "records": [record as stored, ...]}. The chain is
//       verified first; when it is broken, chain.ok is false, problem names the first broken
//       line and records is empty. A log that does not exist yet (and has no head file) is
//       200 with zero records.
//   400 for a bad query (text), 500 when the log cannot be read (text; the reason is not shown).
// NOTE: each call reads and hashes the whole log, twice (verify, then read). In a Debug build a
// log of 100,000 records (49 MB) took about 9 s to verify, so the cost grows with the log.
http_response audit_response(const std::string& log_path, std::string_view query, time_ms now);

} // namespace tocsin
