#pragma once
// The run engine: decides whether an alert event starts a run, and moves each run through its
// steps, guards and approvals on an injected clock.
//
// Threading: the engine is single-threaded. Call every member function from one thread (in the
// daemon: the thread that also runs the dispatcher, or a strand). With
// engine_options::worker_threads, stop/restart/exec/rollback/http steps run on a worker thread
// each. Their results wait in a locked queue until the next tick() picks them up on the
// engine's thread. That queue is the only state shared with workers. Without it, tick() runs
// those steps inline and blocks until they end (tests, tocsinctl).
//
// How the daemon uses it (daemon/runbook_service.cpp):
//   1. Build: load_runbook_file(), check_programs(), a run_journal (SQLite), an audit_log,
//      a default_executor, engine_hooks{notify: enqueue into the delivery outbox,
//      condition_met: ask the rule engine whether the alert resolved or its metric recovered}.
//   2. Call recover() once, before the first event.
//   3. Call on_alert() for each alert transition the dispatcher handles (firing, resolved,
//      escalation level N), with silenced set from the silence store. Call it per alert when
//      the rule engine reports the transition, not when a notification group flushes: a run
//      must not wait for group_wait, nor be suppressed by group_interval or repeat_interval.
//      Repeating an event is harmless: one episode starts at most one run.
//   4. Call tick() after on_alert() and at least once a second (approval timeouts, waits,
//      queued runs, worker results).
//   5. API: runs(), find(), approve(), reject(), cancel().

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rules/clock.hpp"
#include "rules/labels.hpp"
#include "runbooks/audit.hpp"
#include "runbooks/executor.hpp"
#include "runbooks/journal.hpp"
#include "runbooks/model.hpp"

namespace tocsin::runbooks {

// One alert transition, as the dispatcher passes it to the engine.
struct alert_event {
    trigger_on kind = trigger_on::firing;
    int escalation_level = 0;       // for trigger_on::escalation
    label_set labels;               // alertname and severity included
    std::uint64_t fingerprint = 0;  // routing's alert fingerprint (labels.fingerprint())
    time_ms episode_start = 0;      // when this firing episode began (alert::starts_at); same for its
                                    // resolved and escalation events
    bool silenced = false;          // a silence matched the alert at this moment
    std::string silenced_by;        // silence id(s), for the record
};

enum class decision_kind {
    started,          // a run was created and will run on the next tick
    queued,           // a run was created behind the concurrency limit
    duplicate,        // this episode already has a run or a recorded skip: nothing happened
    skipped_silenced, // recorded; final for the episode
    skipped_cooldown, // recorded; final for the episode
    skipped_max_runs, // recorded; final for the episode
    error,            // the journal could not record the run, so it was not created
};
const char* to_string(decision_kind k);

struct trigger_decision {
    std::string runbook;
    decision_kind kind = decision_kind::duplicate;
    std::string run_id; // started, queued and duplicate of a run
    std::string detail;
};

struct notification {
    enum class kind { step, escalation, approval_request } what = kind::step;
    std::string receiver; // empty: the daemon's default receiver for escalations
    std::string text;
    std::string run_id;
    std::string runbook;
    std::string step;
};

struct notify_result {
    bool ok = true;
    std::string detail;
};

struct wait_query {
    std::string run_id;
    const runbook* book = nullptr;
    std::string step;
    wait_condition until = wait_condition::resolved;
    const label_set* labels = nullptr;
    std::uint64_t fingerprint = 0;
    time_ms episode_start = 0;
};

struct run_view;

// Callbacks the daemon supplies. All are called on the engine's thread and must not block for long
// (enqueue a notification, do not send it inline).
struct engine_hooks {
    std::function<notify_result(const notification&)> notify;
    // Polled on each tick while a wait step runs; true ends the wait successfully. For
    // wait_condition::resolved, a resolved event passed to on_alert() also ends the wait.
    std::function<bool(const wait_query&)> condition_met;
    // One line per event worth logging: dry-run steps, refusals, recoveries.
    std::function<void(const std::string&)> log;
    // Called after a step ends, when a run starts waiting for approval, and when a run ends.
    std::function<void(const run_view&)> changed;
};

struct engine_options {
    audit_log* audit = nullptr; // nullptr: no audit log
    bool worker_threads = false;
    // Finished runs and skips older than this are forgotten (memory and journal), and with
    // them the exactly-once key of their episode. Keep it longer than any firing episode lasts
    // and than every cooldown and max_runs window.
    milliseconds forget_after{7LL * 24 * 3'600'000};
};

enum class run_phase { queued, running, waiting_approval, finished };
const char* to_string(run_phase p);

enum class step_state { pending, running, finished };

struct step_view {
    std::string name;
    step_kind kind = step_kind::exec;
    step_state state = step_state::pending;
    step_outcome outcome = step_outcome::failed; // when finished
    std::string detail;
    std::string output;
    time_ms started_at = 0;
    time_ms finished_at = 0;
};

struct run_view {
    std::string id;
    std::string runbook;
    std::uint64_t fingerprint = 0;
    time_ms episode_start = 0;
    label_set labels;
    time_ms created_at = 0;
    bool dry_run = false;
    run_phase phase = run_phase::running;
    approval_state approval = approval_state::none;
    std::string approval_by;
    std::string approval_reason;
    bool cancelling = false; // cancelled while a step runs; ends when the step does
    std::vector<step_view> steps;
    std::optional<run_outcome> outcome;
    std::string outcome_detail;
    time_ms finished_at = 0;
};

// The id of the run for (runbook, alert fingerprint, episode start): "r" + 16 hex digits of
// SHA-256. One episode has at most one run, so the id is also its key.
std::string run_id_for(std::string_view runbook, std::uint64_t fingerprint, time_ms episode_start);

class engine {
public:
    // `clk`, `journal`, `executor` and options.audit must outlive the engine.
    engine(std::vector<runbook> books, const clock& clk, run_journal& journal, step_executor& executor,
           engine_hooks hooks, engine_options options = {});
    // Waits for worker threads still running a step.
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    // Reads the journal: remembers finished runs and skips (exactly-once keys, cooldowns,
    // max_runs windows), and for each unfinished run either resumes it or marks it interrupted
    // and escalates, per its runbook's on_interrupt. A step recorded finished never runs again.
    // A step recorded started but not finished is run again only when on_interrupt is resume
    // and a second run is safe (http with its Idempotency-Key, wait). Otherwise the step is
    // marked interrupted and the run ends interrupted. Call once, before the first on_alert(). Returns one line
    // per unfinished run it found.
    std::vector<std::string> recover();

    // Applies an alert event to every runbook whose trigger matches it.
    std::vector<trigger_decision> on_alert(const alert_event& event);

    // Advances every run as far as it can go now: starts steps, collects worker results, polls
    // waits, times out approvals and waits, starts queued runs.
    void tick();

    // True when no step is running on a worker thread.
    bool idle() const;

    bool approve(const std::string& run_id, const std::string& by, std::string& error);
    // Also records why, in the audit log and the run's view.
    bool approve(const std::string& run_id, const std::string& by, const std::string& reason, std::string& error);
    bool reject(const std::string& run_id, const std::string& by, const std::string& reason, std::string& error);
    // Ends a run before its next step (an override). A step running on a worker finishes
    // first; the run ends cancelled after it.
    bool cancel(const std::string& run_id, const std::string& by, const std::string& reason, std::string& error);

    std::vector<run_view> runs() const;
    std::optional<run_view> find(const std::string& run_id) const;
    // The runbook and phase of each run not finished yet, without copying steps and output.
    std::vector<std::pair<std::string, run_phase>> unfinished_runs() const;
    const std::vector<skip_record>& skips() const { return skips_; }
    const std::vector<runbook>& runbooks() const { return books_; }

private:
    struct run_state;
    struct completion {
        std::string run_id;
        std::size_t index = 0;
        step_result result;
    };

    const runbook* book(const std::string& name) const;
    run_state* run(const std::string& id);
    const run_state* run(const std::string& id) const;
    bool matches(const runbook& rb, const alert_event& event) const;
    trigger_decision decide(const runbook& rb, const alert_event& event);
    // Records an approval or rejection of a run waiting for one; null with `error` otherwise.
    run_state* record_decision(const std::string& run_id, approval_state decision, const std::string& by,
                               std::string& error);
    void record_skip(const runbook& rb, const alert_event& event, const std::string& reason,
                     const std::string& detail);
    std::size_t active_runs(const std::string& runbook) const;
    bool advance(run_state& r);
    bool start_queued();
    bool run_step(run_state& r);
    void complete_step(run_state& r, std::size_t index, step_result result);
    void finish(run_state& r, run_outcome outcome, const std::string& detail);
    void escalate(run_state& r, const std::string& receiver, const std::string& text);
    void drain_completions();
    void forget_old();
    bool audit(const std::string& kind, const std::string& actor, nlohmann::json details);
    void log(const std::string& line) const;
    void report_change(const run_state& r);
    run_context context(const run_state& r) const;
    run_view view(const run_state& r) const;

    std::vector<runbook> books_;
    const clock& clock_;
    run_journal& journal_;
    step_executor& executor_;
    engine_hooks hooks_;
    engine_options options_;

    std::vector<std::unique_ptr<run_state>> runs_; // creation order
    std::vector<skip_record> skips_;
    std::set<std::string> keys_;                   // episodes with a run or a skip
    std::set<std::pair<std::uint64_t, time_ms>> resolved_; // (fingerprint, episode) seen resolved

    mutable std::mutex completions_mutex_;
    std::deque<completion> completions_;
    struct worker {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done; // set by the worker after it queued its result
    };
    std::vector<worker> workers_;
    std::size_t in_flight_ = 0;
    time_ms last_forget_ = 0;
};

} // namespace tocsin::runbooks
