#include "daemon/runbook_service.hpp"

#include <fmt/format.h>

#include "rules/rule.hpp"

namespace tocsin {

namespace {

std::string describe_run(const runbooks::run_view& r)
{
    std::string state;
    if (r.phase == runbooks::run_phase::finished && r.outcome) {
        state = runbooks::to_string(*r.outcome);
    } else if (r.phase == runbooks::run_phase::waiting_approval) {
        state = "waiting for approval";
    } else {
        state = runbooks::to_string(r.phase);
    }
    std::string steps;
    for (const auto& s : r.steps) {
        if (s.state != runbooks::step_state::finished) {
            continue;
        }
        steps += fmt::format("{}{} {}", steps.empty() ? "" : "; ", s.name, runbooks::to_string(s.outcome));
    }
    return fmt::format("{}{} {}: {}{}", r.dry_run ? "dry run of " : "", r.runbook, r.id, state,
                       steps.empty() ? "" : " (" + steps + ")");
}

} // namespace

runbook_service::runbook_service(const clock& clk, runbook_service_options options, runbook_callbacks callbacks)
    : clock_(clk), options_(std::move(options)), callbacks_(std::move(callbacks))
{
}

runbook_service::~runbook_service()
{
    // The engine waits for its worker threads; it goes before the journal it writes to.
    engine_.reset();
}

std::unique_ptr<runbook_service> runbook_service::open(std::vector<runbooks::runbook> books, const clock& clk,
                                                       runbook_service_options options, runbook_callbacks callbacks,
                                                       std::string& error)
{
    std::unique_ptr<runbook_service> s(new runbook_service(clk, std::move(options), std::move(callbacks)));
    s->journal_ = runbooks::sqlite_journal::open(s->options_.journal_path, error);
    if (!s->journal_) {
        return nullptr;
    }
    runbooks::step_executor* executor = s->options_.executor;
    if (executor == nullptr) {
        runbooks::executor_options exec;
        exec.allowed_programs = s->options_.allowed_programs;
        exec.output_limit = s->options_.output_limit;
        s->own_executor_ = std::make_unique<runbooks::default_executor>(std::move(exec));
        executor = s->own_executor_.get();
    }
    if (s->options_.dry_run) {
        for (auto& rb : books) {
            rb.dry_run = true;
        }
    }
    runbook_service* self = s.get();
    runbooks::engine_hooks hooks;
    hooks.notify = [self](const runbooks::notification& n) { return self->notify(n); };
    hooks.condition_met = [self](const runbooks::wait_query& q) { return self->condition_met(q); };
    hooks.log = [self](const std::string& line) { self->log(line); };
    hooks.changed = [self](const runbooks::run_view& r) { self->on_change(r); };
    runbooks::engine_options engine_options;
    engine_options.audit = s->options_.audit;
    engine_options.worker_threads = s->options_.worker_threads;
    engine_options.forget_after = s->options_.forget_after;
    s->engine_ = std::make_unique<runbooks::engine>(std::move(books), clk, *s->journal_, *executor, std::move(hooks),
                                                    engine_options);
    return s;
}

std::vector<std::string> runbook_service::recover()
{
    return engine_->recover();
}

void runbook_service::observe(const alert& a, const mute_status& mute)
{
    runbooks::alert_event e;
    const bool resolved = a.resolved_at(clock_.now_ms());
    e.kind = resolved ? runbooks::trigger_on::resolved : runbooks::trigger_on::firing;
    e.labels = a.labels;
    e.fingerprint = a.fingerprint();
    e.episode_start = a.starts_at;
    for (const auto& id : mute.silenced_by) {
        e.silenced_by += (e.silenced_by.empty() ? "" : ",") + id;
    }
    e.silenced = !mute.silenced_by.empty();
    feed(e, a.id);
    if (resolved) {
        notes_.erase(a.id);
        std::erase_if(alerts_, [&a](const auto& entry) { return entry.second == a.id; });
        std::vector<std::string> runs;
        for (const auto& [run_id, messages] : sent_) {
            if (!messages.empty() && messages.front().alert_id == a.id) {
                runs.push_back(run_id);
            }
        }
        for (const auto& run_id : runs) {
            resolve_messages(run_id, "");
        }
    }
}

void runbook_service::escalated(const alert& a, std::uint32_t level, const mute_status& mute)
{
    if (a.resolved_at(clock_.now_ms())) {
        return;
    }
    runbooks::alert_event e;
    e.kind = runbooks::trigger_on::escalation;
    e.escalation_level = static_cast<int>(level);
    e.labels = a.labels;
    e.fingerprint = a.fingerprint();
    e.episode_start = a.starts_at;
    e.silenced = !mute.silenced_by.empty();
    for (const auto& id : mute.silenced_by) {
        e.silenced_by += (e.silenced_by.empty() ? "" : ",") + id;
    }
    feed(e, a.id);
}

void runbook_service::feed(const runbooks::alert_event& event, std::uint64_t alert_id)
{
    for (const auto& d : engine_->on_alert(event)) {
        if (d.kind == runbooks::decision_kind::duplicate) {
            continue;
        }
        ++decisions_[{d.runbook, runbooks::to_string(d.kind)}];
        if (d.kind == runbooks::decision_kind::started || d.kind == runbooks::decision_kind::queued) {
            alerts_[{event.fingerprint, event.episode_start}] = alert_id;
        } else if (d.kind == runbooks::decision_kind::skipped_silenced ||
                   d.kind == runbooks::decision_kind::skipped_cooldown ||
                   d.kind == runbooks::decision_kind::skipped_max_runs) {
            // The alert's notifications then show on-call that tocsin did not act, and why.
            notes_[alert_id][d.runbook + " skipped"] = fmt::format("{}: not run: {}", d.runbook, d.detail);
            publish_notes(alert_id, false);
        } else if (d.kind == runbooks::decision_kind::error) {
            log(fmt::format("runbooks: runbook {} did not start for alert {}: {}", d.runbook, event.labels.to_string(),
                            d.detail));
        }
    }
}

void runbook_service::tick()
{
    engine_->tick();
}

std::optional<std::uint64_t> runbook_service::alert_of(std::uint64_t fingerprint, time_ms episode_start)
{
    auto it = alerts_.find({fingerprint, episode_start});
    if (it != alerts_.end()) {
        return it->second;
    }
    if (callbacks_.lookup) {
        if (auto id = callbacks_.lookup(fingerprint, episode_start)) {
            alerts_[{fingerprint, episode_start}] = *id;
            return id;
        }
    }
    return std::nullopt;
}

void runbook_service::on_change(const runbooks::run_view& run)
{
    const auto id = alert_of(run.fingerprint, run.episode_start);
    const bool finished = run.phase == runbooks::run_phase::finished;
    if (finished && run.outcome) {
        ++finished_[{run.runbook, runbooks::to_string(*run.outcome)}];
    }
    auto& counted = counted_steps_[run.id];
    counted.resize(run.steps.size(), false);
    for (std::size_t i = 0; i < run.steps.size(); ++i) {
        const auto& s = run.steps[i];
        if (s.state != runbooks::step_state::finished || counted[i]) {
            continue;
        }
        counted[i] = true;
        ++steps_[{run.runbook, runbooks::to_string(s.kind), runbooks::to_string(s.outcome)}];
        if (s.kind == runbooks::step_kind::rollback && s.outcome == runbooks::step_outcome::succeeded &&
            callbacks_.rolled_back) {
            runbook_rollback rb;
            rb.alert_id = id.value_or(0);
            rb.runbook = run.runbook;
            rb.run_id = run.id;
            rb.step = s.name;
            rb.detail = s.detail;
            rb.alert_labels = run.labels;
            rb.at = s.finished_at;
            callbacks_.rolled_back(rb);
        }
    }
    if (finished) {
        counted_steps_.erase(run.id);
    }
    if (run.phase != runbooks::run_phase::waiting_approval) {
        resolve_messages(run.id, "approval_request");
    }
    if (finished && !id) {
        resolve_messages(run.id, ""); // no alert to wait for
    }
    if (!id || !callbacks_.annotate) {
        return;
    }
    notes_[*id][run.id] = describe_run(run);
    // Step ends only update the annotation. A run that waits for a person or ends is
    // announced to the alert's receivers at once.
    publish_notes(*id, finished || run.phase == runbooks::run_phase::waiting_approval);
}

void runbook_service::publish_notes(std::uint64_t alert_id, bool announce)
{
    if (!callbacks_.annotate) {
        return;
    }
    std::string text;
    for (const auto& [key, line] : notes_[alert_id]) {
        text += (text.empty() ? "" : "\n") + line;
    }
    callbacks_.annotate(alert_id, text, announce);
}

runbooks::notify_result runbook_service::notify(const runbooks::notification& n)
{
    runbook_message m;
    m.receiver = n.receiver.empty() ? options_.default_receiver : n.receiver;
    m.runbook = n.runbook;
    m.run_id = n.run_id;
    m.step = n.step;
    switch (n.what) {
    case runbooks::notification::kind::step: m.purpose = "notify"; break;
    case runbooks::notification::kind::escalation: m.purpose = "escalation"; break;
    case runbooks::notification::kind::approval_request: m.purpose = "approval_request"; break;
    }
    m.text = n.text;
    if (auto run = engine_->find(n.run_id)) {
        m.alert_labels = run->labels;
        m.alert_id = alert_of(run->fingerprint, run->episode_start).value_or(0);
    }
    if (m.receiver.empty()) {
        ++messages_failed_;
        return {false, "no receiver: set escalate_to on the runbook or runbooks.default_receiver"};
    }
    if (n.what == runbooks::notification::kind::approval_request) {
        m.text += fmt::format(" Approve with `tocsinctl runbooks approve {} --by NAME`, or reject with `tocsinctl "
                              "runbooks reject {} --by NAME --reason TEXT`.",
                              n.run_id, n.run_id);
    }
    m.sent_at = clock_.now_ms();
    std::string error;
    if (!callbacks_.send || !callbacks_.send(m, error)) {
        ++messages_failed_;
        return {false, error.empty() ? "the message could not be queued" : error};
    }
    sent_[m.run_id].push_back(m);
    return {true, fmt::format("queued for receiver {}", m.receiver)};
}

void runbook_service::resolve_messages(const std::string& run_id, const std::string& which)
{
    auto it = sent_.find(run_id);
    if (it == sent_.end()) {
        return;
    }
    auto& list = it->second;
    for (auto m = list.begin(); m != list.end();) {
        if (!which.empty() && m->purpose != which) {
            ++m;
            continue;
        }
        runbook_message resolve = *m;
        resolve.resolved = true;
        std::string error;
        if (callbacks_.send && !callbacks_.send(resolve, error)) {
            log(fmt::format("runbooks: cannot queue the resolve of the {} message of run {} to {}: {}", m->purpose,
                            run_id, m->receiver, error));
        }
        m = list.erase(m);
    }
    if (list.empty()) {
        sent_.erase(it);
    }
}

bool runbook_service::condition_met(const runbooks::wait_query& q)
{
    const auto id = alert_of(q.fingerprint, q.episode_start);
    const alert* a = id && callbacks_.current ? callbacks_.current(*id) : nullptr;
    // Gone, resolved, or firing in a later episode: this episode is over.
    if (a == nullptr || a->resolved_at(clock_.now_ms()) || a->starts_at != q.episode_start) {
        return true;
    }
    if (q.until != runbooks::wait_condition::metric_recovered || q.book == nullptr ||
        !q.book->trigger.min_severity) {
        return false;
    }
    // The metric recovered when the alert fell below the tier that triggered the runbook, even
    // while it still fires at a lower one.
    const auto level = parse_severity(a->labels.get("severity"));
    return level && static_cast<int>(*level) < static_cast<int>(*q.book->trigger.min_severity);
}

void runbook_service::log(const std::string& line) const
{
    if (callbacks_.log) {
        callbacks_.log(line);
    }
}

void runbook_service::write_metrics(metrics_writer& w) const
{
    w.family("tocsin_runbook_decisions_total", "counter",
             "Alert events that started, queued or skipped a runbook run, by runbook and decision.");
    for (const auto& [key, n] : decisions_) {
        w.sample("tocsin_runbook_decisions_total", {{"runbook", key.first}, {"decision", key.second}},
                 static_cast<double>(n));
    }
    w.family("tocsin_runbook_runs_finished_total", "counter", "Runbook runs that ended, by runbook and outcome.");
    for (const auto& [key, n] : finished_) {
        w.sample("tocsin_runbook_runs_finished_total", {{"runbook", key.first}, {"outcome", key.second}},
                 static_cast<double>(n));
    }
    w.family("tocsin_runbook_steps_total", "counter", "Runbook steps that ended, by runbook, kind and outcome.");
    for (const auto& [key, n] : steps_) {
        w.sample("tocsin_runbook_steps_total",
                 {{"runbook", std::get<0>(key)}, {"kind", std::get<1>(key)}, {"outcome", std::get<2>(key)}},
                 static_cast<double>(n));
    }
    std::map<std::pair<std::string, std::string>, std::size_t> active;
    for (const auto& rb : engine_->runbooks()) {
        for (const char* phase : {"queued", "running", "waiting_approval"}) {
            active[{rb.name, phase}] = 0;
        }
    }
    for (const auto& [runbook, phase] : engine_->unfinished_runs()) {
        ++active[{runbook, runbooks::to_string(phase)}];
    }
    w.family("tocsin_runbook_runs_active", "gauge", "Runbook runs not finished yet, by runbook and phase.");
    for (const auto& [key, n] : active) {
        w.sample("tocsin_runbook_runs_active", {{"runbook", key.first}, {"phase", key.second}}, static_cast<double>(n));
    }
    w.family("tocsin_runbook_messages_failed_total", "counter",
             "Runbook messages (notify steps, escalations, approval requests) that could not be queued.");
    w.sample("tocsin_runbook_messages_failed_total", static_cast<double>(messages_failed_));
}

} // namespace tocsin
