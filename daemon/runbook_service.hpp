#pragma once
// The runbooks inside tocsind: the run engine with its SQLite journal and the audit log. The
// engine receives every alert change the dispatcher applies and reports into notifications.
//
//   dispatcher alert change -> observe() -> engine::on_alert (firing, resolved)
//   escalation step sent    -> escalated() -> engine::on_alert (escalation level N)
//   engine notify hook      -> callbacks.send (durable outbox, every integration of a receiver)
//   engine changed hook     -> callbacks.annotate (annotation runbook_actions on the alert,
//                              announced to its groups when a run waits for approval or ends)
//                           -> callbacks.change_event (PagerDuty change event per rollback)
//
// An alert is fed per change, not per notification, so a run never waits for group_wait and
// reminders never start one. Repeated events are harmless: an episode starts at most one run.
//
// Thread safety: every call on the daemon's event loop thread. Steps that run programs, stop
// services or call HTTP run on worker threads of the engine; tick() collects their results.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "daemon/metrics.hpp"
#include "routing/alert.hpp"
#include "routing/dispatcher.hpp"
#include "rules/clock.hpp"
#include "runbooks/audit.hpp"
#include "runbooks/engine.hpp"
#include "runbooks/executor.hpp"
#include "runbooks/sqlite_journal.hpp"

namespace tocsin {

// A message of a runbook to one receiver: a notify step, an escalation or an approval request.
struct runbook_message {
    std::string receiver;
    std::string runbook;
    std::string run_id;
    std::string step;     // empty for escalations
    std::string purpose;  // "notify", "escalation" or "approval_request"
    std::string text;
    label_set alert_labels; // of the alert the run is for; empty when the run is unknown
    std::uint64_t alert_id = 0; // the dispatcher's id of the run's alert; 0 when not known
    time_ms sent_at = 0;    // when the firing message went out
    // The resolve of a message sent before (same receiver, run, purpose and step): an approval
    // request once it is decided, the others once the run's alert resolves.
    bool resolved = false;
};

// A rollback that succeeded, for PagerDuty change events.
struct runbook_rollback {
    std::uint64_t alert_id = 0; // 0 when the alert is no longer known
    std::string runbook;
    std::string run_id;
    std::string step;
    std::string detail;
    label_set alert_labels;
    time_ms at = 0;
};

struct runbook_callbacks {
    // Queues `m` durably for every integration of m.receiver; false with `error` when it could
    // not be written or the receiver is unknown.
    std::function<bool(const runbook_message& m, std::string& error)> send;
    // Sets the runbook annotation of alert `id` (see dispatcher::annotate).
    std::function<void(std::uint64_t id, const std::string& text, bool announce)> annotate;
    // The dispatcher's current version of the alert with this id, or null.
    std::function<const alert*(std::uint64_t id)> current;
    // The id of the alert with this label fingerprint and episode start, for runs recovered
    // after a restart; nullopt when no such alert is held.
    std::function<std::optional<std::uint64_t>(std::uint64_t fingerprint, time_ms episode_start)> lookup;
    std::function<void(const runbook_rollback&)> rolled_back;
    std::function<void(const std::string&)> log;
};

struct runbook_service_options {
    std::string journal_path; // SQLite file of the run journal
    runbooks::audit_log* audit = nullptr; // the daemon's audit log; must outlive the service
    std::vector<std::string> allowed_programs;
    bool dry_run = false;     // every runbook runs dry
    std::size_t output_limit = 64 * 1024;
    std::chrono::milliseconds forget_after{std::chrono::hours(24 * 7)};
    std::string default_receiver; // for escalations of runbooks without escalate_to
    bool worker_threads = true;
    // Tests replace the executor (nullptr: the default executor on real processes and HTTP).
    runbooks::step_executor* executor = nullptr;
};

class runbook_service {
public:
    // Opens the journal and builds the engine. Returns null with `error`
    // naming the file and the cause. Call recover() before the first observe().
    static std::unique_ptr<runbook_service> open(std::vector<runbooks::runbook> books, const clock& clk,
                                                 runbook_service_options options, runbook_callbacks callbacks,
                                                 std::string& error);
    ~runbook_service();
    runbook_service(const runbook_service&) = delete;
    runbook_service& operator=(const runbook_service&) = delete;

    // Resumes or ends the runs a previous process left unfinished; one line per run.
    std::vector<std::string> recover();

    // The dispatcher's version of an alert after a change, with its mute status now. A firing
    // alert is a firing event, a resolved one a resolved event. Only silences count as muting:
    // an inhibited alert still triggers its runbooks.
    void observe(const alert& a, const mute_status& mute);
    // Escalation step `level` (1 = the first) of the alert's route was sent.
    void escalated(const alert& a, std::uint32_t level, const mute_status& mute);

    void tick();

    runbooks::engine& engine() { return *engine_; }
    const runbooks::engine& engine() const { return *engine_; }
    void write_metrics(metrics_writer& w) const;

private:
    runbook_service(const clock& clk, runbook_service_options options, runbook_callbacks callbacks);
    void feed(const runbooks::alert_event& event, std::uint64_t alert_id);
    void on_change(const runbooks::run_view& run);
    // Writes the lines of notes_[alert_id] into the alert's runbook annotation.
    void publish_notes(std::uint64_t alert_id, bool announce);
    runbooks::notify_result notify(const runbooks::notification& n);
    bool condition_met(const runbooks::wait_query& q);
    std::optional<std::uint64_t> alert_of(std::uint64_t fingerprint, time_ms episode_start);
    void log(const std::string& line) const;
    // Sends the resolves of the messages of `run_id` that match `which` (all when empty).
    void resolve_messages(const std::string& run_id, const std::string& which);

    const clock& clock_;
    runbook_service_options options_;
    runbook_callbacks callbacks_;
    std::unique_ptr<runbooks::sqlite_journal> journal_;
    std::unique_ptr<runbooks::step_executor> own_executor_;
    std::unique_ptr<runbooks::engine> engine_;

    // (label fingerprint, episode start) -> alert id, for the alerts that runs are for.
    std::map<std::pair<std::uint64_t, time_ms>, std::uint64_t> alerts_;
    // Per alert id: one line per run (by run id), joined into the runbook annotation.
    std::map<std::uint64_t, std::map<std::string, std::string>> notes_;

    std::map<std::pair<std::string, std::string>, std::uint64_t> decisions_; // (runbook, decision kind)
    std::map<std::pair<std::string, std::string>, std::uint64_t> finished_;  // (runbook, outcome)
    std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> steps_; // (runbook, kind, outcome)
    // Firing messages per run id, until they are resolved. NOTE: in memory: after a restart the
    // messages of earlier runs stay firing at their receivers.
    std::map<std::string, std::vector<runbook_message>> sent_;
    // Per unfinished run: which of its steps were counted in steps_ already.
    std::map<std::string, std::vector<bool>> counted_steps_;
    std::uint64_t messages_failed_ = 0;
};

} // namespace tocsin
