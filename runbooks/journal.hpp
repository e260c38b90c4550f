#pragma once
// Durable record of runs, so that a restart neither repeats nor loses a step.
//
// The engine writes, in this order for each run:
//   run_created   before anything else happens for the run (also for queued runs)
//   run_started   when a queued run leaves the queue (runs created unqueued skip this)
//   approval      waiting, approved, rejected or timed_out
//   step_started  before the step is handed to an executor (or before a notify or wait)
//   step_finished with its outcome
//   run_finished  with the run's outcome
// and skipped() for an episode a guard refused (silenced, cooldown, max_runs), so the refusal
// is final across restarts too.
//
// Contract for implementations: a method returns only once its record is durable (for SQLite:
// committed), and throws std::exception when it cannot be. The engine never starts a step
// whose step_started record failed. Methods are called from the engine's thread only.
// load() returns every run and skip the journal still holds; an implementation may forget
// finished runs and skips older than the engine's forget_after (see engine_options), never
// unfinished runs.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rules/clock.hpp"
#include "rules/labels.hpp"
#include "runbooks/model.hpp"
#include "runbooks/outcome.hpp"

namespace tocsin::runbooks {

struct run_record {
    std::string id;
    std::string runbook;
    std::uint64_t fingerprint = 0;
    time_ms episode_start = 0;
    std::vector<label> labels; // the alert's labels when the run was created
    time_ms created_at = 0;
    bool dry_run = false;
    bool queued = false;        // created behind the concurrency limit
    std::string definition;     // runbook::definition_hash when the run was created; empty in old journals
};

enum class approval_state { none, waiting, approved, rejected, timed_out };
const char* to_string(approval_state s);

struct journaled_step {
    std::string name;
    bool started = false;
    bool finished = false;
    step_outcome outcome = step_outcome::failed;
    std::string detail;
    time_ms started_at = 0;  // of the first start
    time_ms finished_at = 0;
};

struct journaled_run {
    run_record record;
    bool started = false;      // false while queued
    time_ms started_at = 0;
    approval_state approval = approval_state::none;
    std::string approval_by;
    time_ms approval_at = 0;   // when the state was entered (waiting: when approval was asked)
    std::map<std::size_t, journaled_step> steps; // by step index
    bool finished = false;
    run_outcome outcome = run_outcome::failed;
    std::string outcome_detail;
    time_ms finished_at = 0;
};

struct skip_record {
    std::string runbook;
    std::uint64_t fingerprint = 0;
    time_ms episode_start = 0;
    std::string reason; // silenced, cooldown, max_runs
    std::string detail;
    time_ms at = 0;
};

struct journal_snapshot {
    std::vector<journaled_run> runs; // in creation order
    std::vector<skip_record> skips;
};

class run_journal {
public:
    virtual ~run_journal() = default;
    virtual void run_created(const run_record& record) = 0;
    virtual void run_started(const std::string& run_id, time_ms at) = 0;
    virtual void approval(const std::string& run_id, approval_state state, const std::string& by, time_ms at) = 0;
    virtual void step_started(const std::string& run_id, std::size_t index, const std::string& name, time_ms at) = 0;
    virtual void step_finished(const std::string& run_id, std::size_t index, step_outcome outcome,
                               const std::string& detail, time_ms at) = 0;
    virtual void run_finished(const std::string& run_id, run_outcome outcome, const std::string& detail,
                              time_ms at) = 0;
    virtual void skipped(const skip_record& skip) = 0;
    // Removes finished runs and skips created before `before`.
    virtual void forget(time_ms before) = 0;
    virtual journal_snapshot load() const = 0;
};

// Keeps everything in memory: for tests, and for a daemon without a state directory. A test
// "restarts" by building a new engine on the same memory_journal. fail_from_now() makes every
// later write throw, to test what the engine does when the journal cannot record.
class memory_journal final : public run_journal {
public:
    void run_created(const run_record& record) override;
    void run_started(const std::string& run_id, time_ms at) override;
    void approval(const std::string& run_id, approval_state state, const std::string& by, time_ms at) override;
    void step_started(const std::string& run_id, std::size_t index, const std::string& name, time_ms at) override;
    void step_finished(const std::string& run_id, std::size_t index, step_outcome outcome, const std::string& detail,
                       time_ms at) override;
    void run_finished(const std::string& run_id, run_outcome outcome, const std::string& detail, time_ms at) override;
    void skipped(const skip_record& skip) override;
    void forget(time_ms before) override;
    journal_snapshot load() const override;

    void fail_writes(bool fail) { fail_ = fail; }
    // Every write in order, as "step_started r1 0", for tests that check the order.
    const std::vector<std::string>& writes() const { return writes_; }

private:
    journaled_run& find(const std::string& run_id);
    void check_writable() const;

    std::vector<journaled_run> runs_;
    std::vector<skip_record> skips_;
    std::vector<std::string> writes_;
    bool fail_ = false;
};

} // namespace tocsin::runbooks
