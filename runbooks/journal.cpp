#include "runbooks/journal.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace tocsin::runbooks {

const char* to_string(approval_state s)
{
    switch (s) {
    case approval_state::none: return "none";
    case approval_state::waiting: return "waiting";
    case approval_state::approved: return "approved";
    case approval_state::rejected: return "rejected";
    case approval_state::timed_out: return "timed_out";
    }
    return "unknown";
}

void memory_journal::check_writable() const
{
    if (fail_) {
        throw std::runtime_error("journal write failed (test)");
    }
}

journaled_run& memory_journal::find(const std::string& run_id)
{
    for (auto& r : runs_) {
        if (r.record.id == run_id) {
            return r;
        }
    }
    throw std::runtime_error("journal: unknown run " + run_id);
}

void memory_journal::run_created(const run_record& record)
{
    check_writable();
    for (const auto& r : runs_) {
        if (r.record.id == record.id) {
            throw std::runtime_error("journal: run " + record.id + " exists already");
        }
    }
    journaled_run run;
    run.record = record;
    run.started = !record.queued;
    run.started_at = record.queued ? 0 : record.created_at;
    runs_.push_back(std::move(run));
    writes_.push_back(fmt::format("run_created {}", record.id));
}

void memory_journal::run_started(const std::string& run_id, time_ms at)
{
    check_writable();
    auto& r = find(run_id);
    r.started = true;
    r.started_at = at;
    writes_.push_back(fmt::format("run_started {}", run_id));
}

void memory_journal::approval(const std::string& run_id, approval_state state, const std::string& by, time_ms at)
{
    check_writable();
    auto& r = find(run_id);
    r.approval = state;
    r.approval_by = by;
    r.approval_at = at;
    writes_.push_back(fmt::format("approval {} {}", run_id, to_string(state)));
}

void memory_journal::step_started(const std::string& run_id, std::size_t index, const std::string& name, time_ms at)
{
    check_writable();
    auto& r = find(run_id);
    auto& s = r.steps[index];
    if (!s.started) {
        s.started_at = at;
    }
    s.name = name;
    s.started = true;
    writes_.push_back(fmt::format("step_started {} {}", run_id, index));
}

void memory_journal::step_finished(const std::string& run_id, std::size_t index, step_outcome outcome,
                                   const std::string& detail, time_ms at)
{
    check_writable();
    auto& r = find(run_id);
    auto& s = r.steps[index];
    s.finished = true;
    s.outcome = outcome;
    s.detail = detail;
    s.finished_at = at;
    writes_.push_back(fmt::format("step_finished {} {} {}", run_id, index, to_string(outcome)));
}

void memory_journal::run_finished(const std::string& run_id, run_outcome outcome, const std::string& detail,
                                  time_ms at)
{
    check_writable();
    auto& r = find(run_id);
    r.finished = true;
    r.outcome = outcome;
    r.outcome_detail = detail;
    r.finished_at = at;
    writes_.push_back(fmt::format("run_finished {} {}", run_id, to_string(outcome)));
}

void memory_journal::skipped(const skip_record& skip)
{
    check_writable();
    skips_.push_back(skip);
    writes_.push_back(fmt::format("skipped {} {}", skip.runbook, skip.reason));
}

void memory_journal::forget(time_ms before)
{
    check_writable();
    std::erase_if(runs_, [&](const journaled_run& r) { return r.finished && r.record.created_at < before; });
    std::erase_if(skips_, [&](const skip_record& s) { return s.at < before; });
}

journal_snapshot memory_journal::load() const
{
    return {runs_, skips_};
}

} // namespace tocsin::runbooks
