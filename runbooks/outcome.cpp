#include "runbooks/outcome.hpp"

namespace tocsin::runbooks {

namespace {

constexpr step_outcome all_steps[] = {step_outcome::succeeded, step_outcome::failed,  step_outcome::timed_out,
                                      step_outcome::interrupted, step_outcome::dry_run, step_outcome::skipped};
constexpr run_outcome all_runs[] = {run_outcome::succeeded, run_outcome::failed,      run_outcome::escalated,
                                    run_outcome::rejected,  run_outcome::approval_timed_out, run_outcome::interrupted,
                                    run_outcome::cancelled, run_outcome::dry_run,     run_outcome::withdrawn};

} // namespace

const char* to_string(step_outcome o)
{
    switch (o) {
    case step_outcome::succeeded: return "succeeded";
    case step_outcome::failed: return "failed";
    case step_outcome::timed_out: return "timed_out";
    case step_outcome::interrupted: return "interrupted";
    case step_outcome::dry_run: return "dry_run";
    case step_outcome::skipped: return "skipped";
    }
    return "unknown";
}

const char* to_string(run_outcome o)
{
    switch (o) {
    case run_outcome::succeeded: return "succeeded";
    case run_outcome::failed: return "failed";
    case run_outcome::escalated: return "escalated";
    case run_outcome::rejected: return "rejected";
    case run_outcome::approval_timed_out: return "approval_timed_out";
    case run_outcome::interrupted: return "interrupted";
    case run_outcome::cancelled: return "cancelled";
    case run_outcome::dry_run: return "dry_run";
    case run_outcome::withdrawn: return "withdrawn";
    }
    return "unknown";
}

std::optional<step_outcome> parse_step_outcome(std::string_view text)
{
    for (auto o : all_steps) {
        if (text == to_string(o)) {
            return o;
        }
    }
    return std::nullopt;
}

std::optional<run_outcome> parse_run_outcome(std::string_view text)
{
    for (auto o : all_runs) {
        if (text == to_string(o)) {
            return o;
        }
    }
    return std::nullopt;
}

} // namespace tocsin::runbooks
