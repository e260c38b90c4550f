#pragma once
// `tocsinctl report noise`: a client of tocsind's GET /api/v1/report/noise. It prints the rules
// and alert groups that notified most over a period, as a table or as the server's JSON.
//
// It talks to tocsind through the transport of `tocsinctl silence` (ctl_silence.hpp), with the
// same --url, --token-file, --ca-file and --timeout flags and environment variables.
//
// Exit codes: 0 success, 1 the request failed (the server's status and message go to stderr as
// `tocsinctl: <status>: <message>`), 2 a usage error (a bad --since or --limit).

#include <cstddef>
#include <iosfwd>
#include <string>

#include "daemon/ctl_silence.hpp"

namespace tocsin {

struct report_command {
    // Connection, as in silence_command.
    std::string url;
    std::string token_file;
    std::string ca_file;
    std::string timeout = "10s";

    std::string since = "7d"; // a Prometheus duration
    std::size_t limit = 20;   // rows per table, 1 to 1000
    bool json = false;        // print the server's JSON instead of the tables
};

// The path and query of GET /api/v1/report/noise for `cmd`.
std::string noise_report_target(const report_command& cmd);

// Runs the report against `api`. Output goes to `out`, messages to `err`.
int report_noise(const report_command& cmd, silence_transport& api, std::ostream& out, std::ostream& err);

// Resolves the URL and token from the command and the environment, and runs the report against
// tocsind. Returns the exit code.
int run_report_command(const report_command& cmd);

} // namespace tocsin
