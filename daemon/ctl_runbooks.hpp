#pragma once
// `tocsinctl runbooks list|runs|show|approve|reject|cancel`: a client of tocsind's runbook API
// (daemon/runbook_api.hpp).
//
// It talks to tocsind through the transport of `tocsinctl silence` (ctl_silence.hpp), with the
// same --url, --token-file, --ca-file and --timeout flags and environment variables. approve,
// reject and cancel need an admin token, as silences do.
//
// Exit codes: 0 success, 1 a request failed (the server's status and message go to stderr as
// `tocsinctl: <status>: <message>`), 2 a usage error (a bad run id, phase or missing reason).

#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "daemon/ctl_silence.hpp"

namespace tocsin {

struct runbooks_command {
    enum class action { list, runs, show, approve, reject, cancel };
    action subcommand = action::list;

    // Connection, as in silence_command.
    std::string url;
    std::string token_file;
    std::string ca_file;
    std::string timeout = "10s";

    std::string runbook; // runs: only this runbook
    std::string phase;   // runs: queued, running, waiting_approval or finished
    bool json = false;   // list, runs, show: print the server's JSON

    std::string run_id;  // show, approve, reject, cancel
    std::string by;      // approve, reject, cancel: who decides
    std::string reason;  // approve (optional), reject and cancel (required)
};

// Checks the arguments before anything is sent. Returns false and sets `error` to a message that
// names the argument and the fix.
bool check_runbooks_args(const runbooks_command& cmd, std::string& error);

// The path and query of the request for `cmd`: GET /api/v1/runbooks,
// /api/v1/runbooks/runs?runbook=...&phase=..., /api/v1/runbooks/runs/{id}, or the POST target
// /api/v1/runbooks/runs/{id}/{approve|reject|cancel}.
std::string runbooks_target(const runbooks_command& cmd);

// The body of approve, reject and cancel: {"by": ..., "reason": ...} ("reason" left out when
// empty).
nlohmann::json run_action_body(const runbooks_command& cmd);

// Tables of the server's JSON. Text from the server is shown with control characters replaced.
std::string format_runbooks_table(const nlohmann::json& books);
std::string format_runs_table(const nlohmann::json& response);
std::string format_run(const nlohmann::json& run);

// Runs the command against `api`. Output goes to `out`, messages to `err`.
int runbooks_run(const runbooks_command& cmd, silence_transport& api, std::ostream& out, std::ostream& err);

// Resolves the URL and token from the command and the environment, and runs the command against
// tocsind. Returns the exit code.
int run_runbooks_command(const runbooks_command& cmd);

} // namespace tocsin
