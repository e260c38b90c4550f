#pragma once
// Outcomes of steps and runs, shared by the executors, the engine and the journal.

#include <optional>
#include <string_view>

namespace tocsin::runbooks {

enum class step_outcome {
    succeeded,
    failed,      // ran and failed, or could not start (program not allowed, template refused)
    timed_out,
    interrupted, // was running when the daemon stopped, and is not safe to run again
    dry_run,     // logged as it would run; nothing ran
    skipped,     // not run because the run ended first (cancel, abort)
};

enum class run_outcome {
    succeeded,          // every step succeeded (or failed with on_failure: continue)
    failed,             // a step failed with on_failure: abort
    escalated,          // a step failed with on_failure: escalate
    rejected,           // a person rejected the approval
    approval_timed_out, // no approval arrived within approval.timeout
    interrupted,        // the daemon stopped mid-run and on_interrupt (or the step) did not allow resuming
    cancelled,          // cancelled through the engine (an override)
    dry_run,            // a dry run went through all steps
    withdrawn,          // queued behind the concurrency limit, and the alert resolved before it started
};

const char* to_string(step_outcome o);
const char* to_string(run_outcome o);
std::optional<step_outcome> parse_step_outcome(std::string_view text);
std::optional<run_outcome> parse_run_outcome(std::string_view text);

} // namespace tocsin::runbooks
