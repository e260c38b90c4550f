#include "runbooks/engine.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "rules/duration.hpp"
#include "runbooks/hash.hpp"

namespace tocsin::runbooks {

struct engine::run_state {
    run_record record;
    label_set labels;
    const runbook* book = nullptr;
    run_phase phase = run_phase::running;
    std::size_t next = 0; // first step not finished
    std::vector<step_view> steps;
    approval_state approval = approval_state::none;
    std::string approval_by;
    std::string approval_reason; // not journaled: after a restart it is in the audit log only
    time_ms approval_at = 0;
    bool in_flight = false;
    bool cancel_requested = false;
    std::string cancel_detail;
    std::size_t continued_failures = 0;
    std::optional<run_outcome> outcome;
    std::string outcome_detail;
    time_ms finished_at = 0;
};

const char* to_string(decision_kind k)
{
    switch (k) {
    case decision_kind::started: return "started";
    case decision_kind::queued: return "queued";
    case decision_kind::duplicate: return "duplicate";
    case decision_kind::skipped_silenced: return "skipped_silenced";
    case decision_kind::skipped_cooldown: return "skipped_cooldown";
    case decision_kind::skipped_max_runs: return "skipped_max_runs";
    case decision_kind::error: return "error";
    }
    return "unknown";
}

const char* to_string(run_phase p)
{
    switch (p) {
    case run_phase::queued: return "queued";
    case run_phase::running: return "running";
    case run_phase::waiting_approval: return "waiting_approval";
    case run_phase::finished: return "finished";
    }
    return "unknown";
}

std::string run_id_for(std::string_view runbook, std::uint64_t fingerprint, time_ms episode_start)
{
    const std::string material =
        fmt::format("tocsin-runbook-run/1|{}:{}|{:016x}|{}", runbook.size(), runbook, fingerprint, episode_start);
    return "r" + sha256_hex(material).substr(0, 16);
}

engine::engine(std::vector<runbook> books, const clock& clk, run_journal& journal, step_executor& executor,
               engine_hooks hooks, engine_options options)
    : books_(std::move(books)), clock_(clk), journal_(journal), executor_(executor), hooks_(std::move(hooks)),
      options_(options)
{
}

engine::~engine()
{
    for (auto& w : workers_) {
        if (w.thread.joinable()) {
            w.thread.join();
        }
    }
}

const runbook* engine::book(const std::string& name) const
{
    for (const auto& rb : books_) {
        if (rb.name == name) {
            return &rb;
        }
    }
    return nullptr;
}

engine::run_state* engine::run(const std::string& id)
{
    for (auto& r : runs_) {
        if (r->record.id == id) {
            return r.get();
        }
    }
    return nullptr;
}

const engine::run_state* engine::run(const std::string& id) const
{
    for (const auto& r : runs_) {
        if (r->record.id == id) {
            return r.get();
        }
    }
    return nullptr;
}

void engine::log(const std::string& line) const
{
    if (hooks_.log) {
        hooks_.log(line);
    }
}

bool engine::audit(const std::string& kind, const std::string& actor, nlohmann::json details)
{
    if (!options_.audit) {
        return true;
    }
    try {
        options_.audit->append(kind, actor, std::move(details));
        return true;
    } catch (const std::exception& e) {
        log(fmt::format("runbooks: audit log write failed: {}", e.what()));
        return false;
    }
}

namespace {

nlohmann::json run_details(const run_record& r)
{
    return {{"run_id", r.id},
            {"runbook", r.runbook},
            {"fingerprint", fmt::format("{:016x}", r.fingerprint)},
            {"episode_start", format_rfc3339(r.episode_start)}};
}

std::string labels_text(const std::vector<label>& labels)
{
    return label_set(labels).to_string();
}

} // namespace

run_context engine::context(const run_state& r) const
{
    run_context ctx;
    ctx.run_id = r.record.id;
    ctx.book = r.book;
    ctx.labels = r.labels;
    ctx.fingerprint = r.record.fingerprint;
    ctx.episode_start = r.record.episode_start;
    return ctx;
}

bool engine::matches(const runbook& rb, const alert_event& event) const
{
    if (rb.trigger.on != event.kind) {
        return false;
    }
    if (event.kind == trigger_on::escalation && event.escalation_level != rb.trigger.escalation_level) {
        return false;
    }
    for (const auto& m : rb.trigger.matchers) {
        if (!m.matches(event.labels)) {
            return false;
        }
    }
    if (rb.trigger.min_severity) {
        auto level = parse_severity(event.labels.get("severity"));
        if (!level || *level < *rb.trigger.min_severity) {
            return false;
        }
    }
    return true;
}

std::size_t engine::active_runs(const std::string& runbook) const
{
    std::size_t n = 0;
    for (const auto& r : runs_) {
        if (r->record.runbook == runbook && r->phase != run_phase::finished) {
            ++n;
        }
    }
    return n;
}

void engine::record_skip(const runbook& rb, const alert_event& event, const std::string& reason,
                         const std::string& detail)
{
    skip_record skip;
    skip.runbook = rb.name;
    skip.fingerprint = event.fingerprint;
    skip.episode_start = event.episode_start;
    skip.reason = reason;
    skip.detail = detail;
    skip.at = clock_.now_ms();
    try {
        journal_.skipped(skip);
    } catch (const std::exception& e) {
        log(fmt::format("runbooks: journal could not record a skip of {}: {}", rb.name, e.what()));
    }
    keys_.insert(run_id_for(rb.name, event.fingerprint, event.episode_start));
    skips_.push_back(skip);
    audit("skipped", "tocsin",
          {{"runbook", rb.name},
           {"fingerprint", fmt::format("{:016x}", event.fingerprint)},
           {"episode_start", format_rfc3339(event.episode_start)},
           {"labels", event.labels.to_string()},
           {"reason", reason},
           {"detail", detail}});
    log(fmt::format("runbooks: {} skipped for {}: {}: {}", rb.name, event.labels.to_string(), reason, detail));
}

trigger_decision engine::decide(const runbook& rb, const alert_event& event)
{
    trigger_decision d;
    d.runbook = rb.name;
    const std::string id = run_id_for(rb.name, event.fingerprint, event.episode_start);
    if (keys_.count(id) != 0) {
        d.kind = decision_kind::duplicate;
        if (run(id) != nullptr) {
            d.run_id = id;
            d.detail = "this firing episode already has a run";
        } else {
            d.detail = "this firing episode was already skipped";
        }
        return d;
    }
    if (event.silenced) {
        d.kind = decision_kind::skipped_silenced;
        d.detail = event.silenced_by.empty() ? "the alert is silenced" : "the alert is silenced by " + event.silenced_by;
        record_skip(rb, event, "silenced", d.detail);
        return d;
    }
    const time_ms now = clock_.now_ms();
    if (rb.cooldown_per_alert.count() > 0 || rb.cooldown_per_runbook.count() > 0) {
        for (const auto& r : runs_) {
            // Dry runs and live runs count apart, so that switching a runbook from dry run to
            // live is not held back by the rehearsals.
            if (r->record.runbook != rb.name || r->record.dry_run != rb.dry_run) {
                continue;
            }
            const time_ms age = now - r->record.created_at;
            if (r->record.fingerprint == event.fingerprint && age < rb.cooldown_per_alert.count()) {
                d.kind = decision_kind::skipped_cooldown;
                d.detail = fmt::format("run {} for this alert started {} ago; cooldown.per_alert is {} ({} left)",
                                       r->record.id, format_duration(milliseconds(age)),
                                       format_duration(rb.cooldown_per_alert),
                                       format_duration(milliseconds(rb.cooldown_per_alert.count() - age)));
            } else if (age < rb.cooldown_per_runbook.count()) {
                d.kind = decision_kind::skipped_cooldown;
                d.detail = fmt::format("run {} of this runbook started {} ago; cooldown.per_runbook is {} ({} left)",
                                       r->record.id, format_duration(milliseconds(age)),
                                       format_duration(rb.cooldown_per_runbook),
                                       format_duration(milliseconds(rb.cooldown_per_runbook.count() - age)));
            }
        }
        if (d.kind == decision_kind::skipped_cooldown) {
            record_skip(rb, event, "cooldown", d.detail);
            return d;
        }
    }
    if (rb.max_runs > 0) {
        std::uint64_t count = 0;
        for (const auto& r : runs_) {
            if (r->record.runbook == rb.name && r->record.dry_run == rb.dry_run &&
                now - r->record.created_at < rb.max_runs_window.count()) {
                ++count;
            }
        }
        if (count >= rb.max_runs) {
            d.kind = decision_kind::skipped_max_runs;
            d.detail = fmt::format("{} runs started in the last {}; max_runs allows {}", count,
                                   format_duration(rb.max_runs_window), rb.max_runs);
            record_skip(rb, event, "max_runs", d.detail);
            return d;
        }
    }

    auto state = std::make_unique<run_state>();
    state->record.id = id;
    state->record.runbook = rb.name;
    state->record.fingerprint = event.fingerprint;
    state->record.episode_start = event.episode_start;
    state->record.labels = event.labels.items();
    state->record.created_at = now;
    state->record.dry_run = rb.dry_run;
    state->record.definition = rb.definition_hash;
    state->record.queued = active_runs(rb.name) >= rb.concurrency;
    state->labels = event.labels;
    state->book = &rb;
    state->phase = state->record.queued ? run_phase::queued : run_phase::running;
    for (const auto& s : rb.steps) {
        step_view v;
        v.name = s.name;
        v.kind = s.kind;
        state->steps.push_back(std::move(v));
    }
    try {
        journal_.run_created(state->record);
    } catch (const std::exception& e) {
        d.kind = decision_kind::error;
        d.detail = fmt::format("the journal could not record the run, so it was not created: {}", e.what());
        log(fmt::format("runbooks: {}: {}", rb.name, d.detail));
        return d;
    }
    keys_.insert(id);
    auto details = run_details(state->record);
    details["labels"] = event.labels.to_string();
    details["dry_run"] = rb.dry_run;
    details["queued"] = state->record.queued;
    details["trigger"] = to_string(event.kind);
    audit("run_started", "tocsin", std::move(details));
    d.kind = state->record.queued ? decision_kind::queued : decision_kind::started;
    d.run_id = id;
    d.detail = state->record.queued
                   ? fmt::format("{} runs of this runbook are active; concurrency is {}", active_runs(rb.name),
                                 rb.concurrency)
                   : (rb.dry_run ? "dry run" : "");
    log(fmt::format("runbooks: {} run {} {} for {}", rb.name, id, to_string(d.kind), event.labels.to_string()));
    runs_.push_back(std::move(state));
    return d;
}

std::vector<trigger_decision> engine::on_alert(const alert_event& event)
{
    std::vector<trigger_decision> out;
    if (event.kind == trigger_on::resolved) {
        resolved_.emplace(event.fingerprint, event.episode_start);
        for (auto& r : runs_) {
            if (r->phase == run_phase::queued && r->record.fingerprint == event.fingerprint &&
                r->record.episode_start == event.episode_start && r->book &&
                r->book->trigger.on == trigger_on::firing) {
                finish(*r, run_outcome::withdrawn, "the alert resolved before the run left the queue");
            }
        }
    }
    for (const auto& rb : books_) {
        if (matches(rb, event)) {
            out.push_back(decide(rb, event));
        }
    }
    return out;
}

void engine::finish(run_state& r, run_outcome outcome, const std::string& detail)
{
    const time_ms now = clock_.now_ms();
    try {
        journal_.run_finished(r.record.id, outcome, detail, now);
    } catch (const std::exception& e) {
        log(fmt::format("runbooks: journal could not record the end of run {}: {}", r.record.id, e.what()));
    }
    r.phase = run_phase::finished;
    r.outcome = outcome;
    r.outcome_detail = detail;
    r.finished_at = now;
    for (auto& s : r.steps) {
        if (s.state == step_state::pending) {
            s.outcome = step_outcome::skipped;
        }
    }
    auto details = run_details(r.record);
    details["outcome"] = to_string(outcome);
    details["detail"] = detail;
    audit("run_finished", "tocsin", std::move(details));
    log(fmt::format("runbooks: run {} of {} finished: {}{}", r.record.id, r.record.runbook, to_string(outcome),
                    detail.empty() ? "" : ": " + detail));
    report_change(r);
}

void engine::report_change(const run_state& r)
{
    if (hooks_.changed) {
        hooks_.changed(view(r));
    }
}

void engine::escalate(run_state& r, const std::string& receiver, const std::string& text)
{
    notification n;
    n.what = notification::kind::escalation;
    n.receiver = receiver;
    n.text = text;
    n.run_id = r.record.id;
    n.runbook = r.record.runbook;
    notify_result result{false, "no notify hook"};
    if (hooks_.notify) {
        result = hooks_.notify(n);
    }
    auto details = run_details(r.record);
    details["purpose"] = "escalation";
    details["receiver"] = receiver;
    details["text"] = text;
    details["delivered"] = result.ok;
    details["detail"] = result.detail;
    audit("notification", "tocsin", std::move(details));
}

bool engine::start_queued()
{
    bool progress = false;
    for (auto& r : runs_) {
        if (r->phase != run_phase::queued || !r->book) {
            continue;
        }
        std::size_t active = 0;
        for (const auto& other : runs_) {
            if (other->record.runbook == r->record.runbook &&
                (other->phase == run_phase::running || other->phase == run_phase::waiting_approval)) {
                ++active;
            }
        }
        if (active >= r->book->concurrency) {
            continue;
        }
        try {
            journal_.run_started(r->record.id, clock_.now_ms());
        } catch (const std::exception& e) {
            log(fmt::format("runbooks: journal could not record that run {} left the queue: {}", r->record.id,
                            e.what()));
            continue;
        }
        r->phase = run_phase::running;
        auto details = run_details(r->record);
        details["from_queue"] = true;
        audit("run_started", "tocsin", std::move(details));
        progress = true;
    }
    return progress;
}

void engine::complete_step(run_state& r, std::size_t index, step_result result)
{
    const step& s = r.book->steps.at(index);
    step_view& v = r.steps.at(index);
    const time_ms now = clock_.now_ms();
    v.state = step_state::finished;
    v.outcome = result.outcome;
    v.detail = result.detail;
    v.output = result.output;
    v.finished_at = now;
    r.in_flight = false;
    bool recorded = true;
    try {
        journal_.step_finished(r.record.id, index, result.outcome, result.detail, now);
    } catch (const std::exception& e) {
        recorded = false;
        log(fmt::format("runbooks: journal could not record the end of step {} of run {}: {}", s.name, r.record.id,
                        e.what()));
    }
    auto details = run_details(r.record);
    details["step"] = s.name;
    details["kind"] = to_string(s.kind);
    details["phase"] = "finished";
    details["outcome"] = to_string(result.outcome);
    details["detail"] = result.detail;
    audit("step", "tocsin", std::move(details));
    report_change(r);
    if (!recorded) {
        finish(r, run_outcome::failed,
               fmt::format("the journal could not record the end of step {}; stopped to stay safe", s.name));
        return;
    }
    if (result.outcome == step_outcome::succeeded || result.outcome == step_outcome::dry_run) {
        r.next = index + 1;
        return;
    }
    const std::string what = fmt::format("step {} {}: {}", s.name, to_string(result.outcome), result.detail);
    switch (s.on_failure) {
    case failure_policy::continue_run:
        ++r.continued_failures;
        r.next = index + 1;
        return;
    case failure_policy::abort:
        finish(r, run_outcome::failed, what);
        return;
    case failure_policy::escalate: {
        finish(r, run_outcome::escalated, what);
        const std::string receiver = s.escalate_to.empty() ? r.book->escalate_to : s.escalate_to;
        escalate(r, receiver,
                 fmt::format("Runbook {} stopped for {}: {}. A person must take over.", r.record.runbook,
                             labels_text(r.record.labels), what));
        return;
    }
    }
}

bool engine::run_step(run_state& r)
{
    const std::size_t index = r.next;
    const runbook& rb = *r.book;
    const step& s = rb.steps.at(index);
    step_view& v = r.steps.at(index);
    const time_ms now = clock_.now_ms();
    const run_context ctx = context(r);

    const auto record_start = [&]() {
        try {
            journal_.step_started(r.record.id, index, s.name, now);
        } catch (const std::exception& e) {
            finish(r, run_outcome::failed,
                   fmt::format("the journal could not record the start of step {}, so it did not run: {}", s.name,
                               e.what()));
            return false;
        }
        if (v.state == step_state::pending && v.started_at == 0) {
            v.started_at = now;
        }
        v.state = step_state::running;
        return true;
    };

    if (r.record.dry_run) {
        std::string error;
        std::string what;
        switch (s.kind) {
        case step_kind::notify:
            if (auto text = render_text(ctx, s.notify.text, error)) {
                what = fmt::format("notify {}: {}", quote_value(s.notify.receiver), quote_value(*text));
            }
            break;
        case step_kind::wait:
            what = fmt::format("wait until {} for at most {}", to_string(s.wait.until), format_duration(s.timeout));
            break;
        default:
            if (auto job = render_job(ctx, index, error)) {
                what = job->describe();
            }
        }
        const std::string detail = what.empty() ? "would fail before running: " + error : "would run: " + what;
        if (!record_start()) {
            return true;
        }
        log(fmt::format("runbooks: dry run {} step {}: {}", r.record.id, s.name, detail));
        complete_step(r, index, {step_outcome::dry_run, detail, ""});
        return true;
    }

    switch (s.kind) {
    case step_kind::wait: {
        bool changed = false;
        if (v.state == step_state::pending) {
            if (!record_start()) {
                return true;
            }
            changed = true;
        }
        wait_query q;
        q.run_id = r.record.id;
        q.book = r.book;
        q.step = s.name;
        q.until = s.wait.until;
        q.labels = &r.labels;
        q.fingerprint = r.record.fingerprint;
        q.episode_start = r.record.episode_start;
        const bool resolved = s.wait.until == wait_condition::resolved &&
                              resolved_.count({r.record.fingerprint, r.record.episode_start}) != 0;
        if (resolved || (hooks_.condition_met && hooks_.condition_met(q))) {
            complete_step(r, index,
                          {step_outcome::succeeded,
                           fmt::format("{} after {}", s.wait.until == wait_condition::resolved ? "resolved"
                                                                                              : "metric recovered",
                                       format_duration(milliseconds(now - v.started_at))),
                           ""});
            return true;
        }
        if (now - v.started_at >= s.timeout.count()) {
            complete_step(r, index,
                          {step_outcome::timed_out,
                           fmt::format("not {} within {}", to_string(s.wait.until), format_duration(s.timeout)), ""});
            return true;
        }
        return changed;
    }
    case step_kind::notify: {
        std::string error;
        auto text = render_text(ctx, s.notify.text, error);
        if (!record_start()) {
            return true;
        }
        if (!text) {
            complete_step(r, index, {step_outcome::failed, "not sent: " + error, ""});
            return true;
        }
        notification n;
        n.what = notification::kind::step;
        n.receiver = s.notify.receiver;
        n.text = *text;
        n.run_id = r.record.id;
        n.runbook = rb.name;
        n.step = s.name;
        notify_result result{false, "no notify hook is set"};
        if (hooks_.notify) {
            result = hooks_.notify(n);
        }
        auto details = run_details(r.record);
        details["purpose"] = "step";
        details["step"] = s.name;
        details["receiver"] = s.notify.receiver;
        details["text"] = *text;
        details["delivered"] = result.ok;
        details["detail"] = result.detail;
        audit("notification", "tocsin", std::move(details));
        complete_step(r, index,
                      {result.ok ? step_outcome::succeeded : step_outcome::failed,
                       result.detail.empty() ? fmt::format("sent to {}", s.notify.receiver) : result.detail, ""});
        return true;
    }
    default:
        break;
    }

    std::string error;
    auto job = render_job(ctx, index, error);
    if (!record_start()) {
        return true;
    }
    if (!job) {
        complete_step(r, index, {step_outcome::failed, "not run: " + error, ""});
        return true;
    }
    auto details = run_details(r.record);
    details["step"] = s.name;
    details["kind"] = to_string(s.kind);
    details["phase"] = "started";
    details["action"] = job->describe();
    if (!audit("step", "tocsin", std::move(details)) && options_.audit) {
        complete_step(r, index, {step_outcome::failed, "not run: the audit log could not record it", ""});
        return true;
    }
    if (options_.worker_threads) {
        r.in_flight = true;
        ++in_flight_;
        auto done = std::make_shared<std::atomic<bool>>(false);
        std::thread thread([this, done, job = std::move(*job)]() {
            step_result result;
            try {
                result = executor_.execute(job);
            } catch (const std::exception& e) {
                result = {step_outcome::failed, fmt::format("executor error: {}", e.what()), ""};
            }
            {
                std::lock_guard lock(completions_mutex_);
                completions_.push_back({job.run_id, job.step_index, std::move(result)});
            }
            done->store(true);
        });
        workers_.push_back({std::move(thread), std::move(done)});
        return true;
    }
    step_result result;
    try {
        result = executor_.execute(*job);
    } catch (const std::exception& e) {
        result = {step_outcome::failed, fmt::format("executor error: {}", e.what()), ""};
    }
    complete_step(r, index, std::move(result));
    return true;
}

bool engine::advance(run_state& r)
{
    if (r.phase == run_phase::finished || r.phase == run_phase::queued || r.in_flight || !r.book) {
        return false;
    }
    const time_ms now = clock_.now_ms();
    if (r.phase == run_phase::waiting_approval && !r.book->approval) {
        r.phase = run_phase::running; // the runbook no longer requires approval
    }
    if (r.phase == run_phase::waiting_approval) {
        if (now - r.approval_at < r.book->approval->timeout.count()) {
            return false;
        }
        try {
            journal_.approval(r.record.id, approval_state::timed_out, "", now);
        } catch (const std::exception& e) {
            log(fmt::format("runbooks: journal could not record the approval timeout of {}: {}", r.record.id,
                            e.what()));
        }
        r.approval = approval_state::timed_out;
        auto details = run_details(r.record);
        details["state"] = "timed_out";
        details["step"] = r.book->approval->before_name;
        audit("approval", "tocsin", std::move(details));
        const std::string what = fmt::format("nobody approved step {} within {}", r.book->approval->before_name,
                                             format_duration(r.book->approval->timeout));
        finish(r, run_outcome::approval_timed_out, what);
        escalate(r, r.book->escalate_to,
                 fmt::format("Runbook {} for {} stopped: {}.", r.record.runbook, labels_text(r.record.labels), what));
        return true;
    }
    if (r.cancel_requested) {
        finish(r, run_outcome::cancelled, r.cancel_detail);
        return true;
    }
    if (r.next >= r.steps.size()) {
        if (r.record.dry_run) {
            finish(r, run_outcome::dry_run, "every step logged; nothing ran");
        } else {
            finish(r, run_outcome::succeeded,
                   r.continued_failures == 0 ? ""
                                             : fmt::format("{} failed steps were passed over (on_failure: continue)",
                                                           r.continued_failures));
        }
        return true;
    }
    if (r.book->approval && r.next == r.book->approval->before_step && r.approval != approval_state::approved &&
        !r.record.dry_run) {
        try {
            journal_.approval(r.record.id, approval_state::waiting, "", now);
        } catch (const std::exception& e) {
            finish(r, run_outcome::failed, fmt::format("the journal could not record the approval request: {}", e.what()));
            return true;
        }
        r.approval = approval_state::waiting;
        r.approval_at = now;
        r.phase = run_phase::waiting_approval;
        auto details = run_details(r.record);
        details["state"] = "waiting";
        details["step"] = r.book->approval->before_name;
        details["timeout"] = format_duration(r.book->approval->timeout);
        audit("approval", "tocsin", std::move(details));
        report_change(r);
        notification n;
        n.what = notification::kind::approval_request;
        n.receiver = r.book->escalate_to;
        n.run_id = r.record.id;
        n.runbook = r.record.runbook;
        n.step = r.book->approval->before_name;
        n.text = fmt::format("Runbook {} for {} waits for approval before step {} (run {}); it gives up in {}.",
                             r.record.runbook, labels_text(r.record.labels), n.step, r.record.id,
                             format_duration(r.book->approval->timeout));
        if (hooks_.notify) {
            hooks_.notify(n);
        }
        return true;
    }
    return run_step(r);
}

void engine::drain_completions()
{
    std::deque<completion> done;
    {
        std::lock_guard lock(completions_mutex_);
        done.swap(completions_);
    }
    for (auto& c : done) {
        --in_flight_;
        if (run_state* r = run(c.run_id)) {
            complete_step(*r, c.index, std::move(c.result));
        }
    }
    std::erase_if(workers_, [](worker& w) {
        if (!w.done->load()) {
            return false;
        }
        w.thread.join(); // it has queued its result and is returning
        return true;
    });
}

void engine::forget_old()
{
    const time_ms now = clock_.now_ms();
    if (now - last_forget_ < 60'000) {
        return;
    }
    last_forget_ = now;
    const time_ms cutoff = now - options_.forget_after.count();
    std::erase_if(runs_, [&](const std::unique_ptr<run_state>& r) {
        if (r->phase == run_phase::finished && r->record.created_at < cutoff) {
            keys_.erase(r->record.id);
            return true;
        }
        return false;
    });
    std::erase_if(skips_, [&](const skip_record& s) {
        if (s.at < cutoff) {
            keys_.erase(run_id_for(s.runbook, s.fingerprint, s.episode_start));
            return true;
        }
        return false;
    });
    std::erase_if(resolved_, [&](const auto& episode) { return episode.second < cutoff; });
    try {
        journal_.forget(cutoff);
    } catch (const std::exception& e) {
        log(fmt::format("runbooks: journal could not forget old runs: {}", e.what()));
    }
}

void engine::tick()
{
    drain_completions();
    forget_old();
    for (int pass = 0; pass < 10'000; ++pass) {
        bool progress = false;
        for (std::size_t i = 0; i < runs_.size(); ++i) {
            while (advance(*runs_[i])) {
                progress = true;
            }
        }
        progress = start_queued() || progress;
        if (!progress) {
            break;
        }
    }
}

bool engine::idle() const
{
    return in_flight_ == 0;
}

std::vector<std::string> engine::recover()
{
    std::vector<std::string> lines;
    const journal_snapshot snap = journal_.load();
    for (const auto& skip : snap.skips) {
        keys_.insert(run_id_for(skip.runbook, skip.fingerprint, skip.episode_start));
        skips_.push_back(skip);
    }
    for (const auto& jr : snap.runs) {
        auto state = std::make_unique<run_state>();
        run_state& r = *state;
        r.record = jr.record;
        r.labels = label_set(jr.record.labels);
        r.book = book(jr.record.runbook);
        r.approval = jr.approval;
        r.approval_by = jr.approval_by;
        r.approval_at = jr.approval_at;
        keys_.insert(jr.record.id);
        const std::size_t count = r.book ? r.book->steps.size() : jr.steps.size();
        r.steps.resize(count);
        bool names_match = r.book != nullptr;
        for (std::size_t i = 0; i < count && r.book; ++i) {
            r.steps[i].name = r.book->steps[i].name;
            r.steps[i].kind = r.book->steps[i].kind;
        }
        for (const auto& [index, js] : jr.steps) {
            if (index >= r.steps.size()) {
                names_match = false;
                continue;
            }
            step_view& v = r.steps[index];
            if (r.book && v.name != js.name) {
                names_match = false;
            }
            v.name = js.name;
            v.started_at = js.started_at;
            if (js.finished) {
                v.state = step_state::finished;
                v.outcome = js.outcome;
                v.detail = js.detail;
                v.finished_at = js.finished_at;
            } else if (js.started) {
                v.state = step_state::running;
            }
        }
        if (jr.finished) {
            r.phase = run_phase::finished;
            r.outcome = jr.outcome;
            r.outcome_detail = jr.outcome_detail;
            r.finished_at = jr.finished_at;
            runs_.push_back(std::move(state));
            continue;
        }
        runs_.push_back(std::move(state));
        r.next = 0;
        while (r.next < r.steps.size() && r.steps[r.next].state == step_state::finished) {
            ++r.next;
        }
        r.phase = !jr.started ? run_phase::queued
                              : (jr.approval == approval_state::waiting ? run_phase::waiting_approval
                                                                         : run_phase::running);
        const bool in_flight = r.next < r.steps.size() && r.steps[r.next].state == step_state::running;
        auto details = run_details(r.record);
        const auto give_up = [&](const std::string& why) {
            if (in_flight) {
                r.steps[r.next].state = step_state::finished;
                r.steps[r.next].outcome = step_outcome::interrupted;
                r.steps[r.next].detail = why;
                try {
                    journal_.step_finished(r.record.id, r.next, step_outcome::interrupted, why, clock_.now_ms());
                } catch (const std::exception& e) {
                    log(fmt::format("runbooks: journal could not record an interrupted step: {}", e.what()));
                }
            }
            details["action"] = "interrupted";
            details["detail"] = why;
            audit("recovered", "tocsin", details);
            finish(r, run_outcome::interrupted, why);
            escalate(r, r.book ? r.book->escalate_to : std::string(),
                     fmt::format("Runbook {} for {} was interrupted: {}. Check what it did and finish by hand.",
                                 r.record.runbook, labels_text(r.record.labels), why));
            lines.push_back(fmt::format("run {} of {}: interrupted: {}", r.record.id, r.record.runbook, why));
        };
        if (!r.book) {
            give_up(fmt::format("runbook {} is no longer configured", r.record.runbook));
            continue;
        }
        if (!names_match || (!r.record.definition.empty() && r.record.definition != r.book->definition_hash)) {
            give_up(fmt::format("runbook {} changed since the run started: its steps or params differ",
                                r.record.runbook));
            continue;
        }
        const std::string step_name = r.next < r.steps.size() ? r.steps[r.next].name : std::string();
        if (!r.record.dry_run && r.book->on_interrupt == interrupt_policy::abort_and_escalate) {
            give_up(in_flight ? fmt::format("tocsin stopped while step {} ran; on_interrupt is abort_and_escalate",
                                            step_name)
                              : "tocsin stopped during the run; on_interrupt is abort_and_escalate");
            continue;
        }
        if (in_flight && !r.record.dry_run && !r.book->steps[r.next].safe_to_rerun()) {
            give_up(fmt::format("step {} ({}) was running when tocsin stopped, and running it again could repeat "
                                "its effect",
                                step_name, to_string(r.book->steps[r.next].kind)));
            continue;
        }
        if (in_flight && r.book->steps[r.next].kind != step_kind::wait) {
            r.steps[r.next].state = step_state::pending; // runs again, with the same Idempotency-Key
        }
        details["action"] = "resumed";
        details["step"] = step_name;
        details["rerun"] = in_flight;
        audit("recovered", "tocsin", details);
        lines.push_back(fmt::format("run {} of {}: resumed at step {}{}", r.record.id, r.record.runbook,
                                    step_name.empty() ? "(none left)" : step_name,
                                    in_flight ? " (running it again)" : ""));
        log("runbooks: " + lines.back());
    }
    return lines;
}

engine::run_state* engine::record_decision(const std::string& run_id, approval_state decision, const std::string& by,
                                  std::string& error)
{
    const bool approved = decision == approval_state::approved;
    run_state* r = run(run_id);
    if (!r) {
        error = fmt::format("no run {}", run_id);
        return nullptr;
    }
    if (r->phase != run_phase::waiting_approval) {
        error = fmt::format("run {} is {}, not waiting for approval", run_id, to_string(r->phase));
        return nullptr;
    }
    if (by.empty()) {
        error = fmt::format("{} needs the name of the person who gives it", approved ? "an approval" : "a rejection");
        return nullptr;
    }
    const time_ms now = clock_.now_ms();
    try {
        journal_.approval(run_id, decision, by, now);
    } catch (const std::exception& e) {
        error = fmt::format("the journal could not record the {}: {}", approved ? "approval" : "rejection", e.what());
        return nullptr;
    }
    r->approval = decision;
    r->approval_by = by;
    r->approval_at = now;
    return r;
}

bool engine::approve(const std::string& run_id, const std::string& by, std::string& error)
{
    return approve(run_id, by, std::string(), error);
}

bool engine::approve(const std::string& run_id, const std::string& by, const std::string& reason, std::string& error)
{
    run_state* r = record_decision(run_id, approval_state::approved, by, error);
    if (!r) {
        return false;
    }
    r->phase = run_phase::running;
    r->approval_reason = reason;
    auto details = run_details(r->record);
    details["state"] = "approved";
    if (!reason.empty()) {
        details["reason"] = reason;
    }
    details["step"] = r->book->approval->before_name;
    audit("approval", by, std::move(details));
    return true;
}

bool engine::reject(const std::string& run_id, const std::string& by, const std::string& reason, std::string& error)
{
    run_state* r = record_decision(run_id, approval_state::rejected, by, error);
    if (!r) {
        return false;
    }
    r->approval_reason = reason;
    auto details = run_details(r->record);
    details["state"] = "rejected";
    details["reason"] = reason;
    details["step"] = r->book->approval->before_name;
    audit("approval", by, std::move(details));
    finish(*r, run_outcome::rejected, fmt::format("rejected by {}{}", by, reason.empty() ? "" : ": " + reason));
    return true;
}

bool engine::cancel(const std::string& run_id, const std::string& by, const std::string& reason, std::string& error)
{
    run_state* r = run(run_id);
    if (!r) {
        error = fmt::format("no run {}", run_id);
        return false;
    }
    if (r->phase == run_phase::finished) {
        error = fmt::format("run {} has finished already", run_id);
        return false;
    }
    if (r->cancel_requested) {
        error = fmt::format("run {} is being cancelled already; it ends when its running step does", run_id);
        return false;
    }
    if (by.empty()) {
        error = "a cancel needs the name of the person who asks for it";
        return false;
    }
    auto details = run_details(r->record);
    details["action"] = "cancel";
    details["reason"] = reason;
    details["step_running"] = r->in_flight;
    audit("override", by, std::move(details));
    const std::string detail = fmt::format("cancelled by {}{}", by, reason.empty() ? "" : ": " + reason);
    if (r->in_flight) {
        r->cancel_requested = true;
        r->cancel_detail = detail;
        return true;
    }
    finish(*r, run_outcome::cancelled, detail);
    return true;
}

run_view engine::view(const run_state& r) const
{
    run_view v;
    v.id = r.record.id;
    v.runbook = r.record.runbook;
    v.fingerprint = r.record.fingerprint;
    v.episode_start = r.record.episode_start;
    v.labels = r.labels;
    v.created_at = r.record.created_at;
    v.dry_run = r.record.dry_run;
    v.phase = r.phase;
    v.approval = r.approval;
    v.approval_by = r.approval_by;
    v.approval_reason = r.approval_reason;
    v.cancelling = r.cancel_requested;
    v.steps = r.steps;
    v.outcome = r.outcome;
    v.outcome_detail = r.outcome_detail;
    v.finished_at = r.finished_at;
    return v;
}

std::vector<run_view> engine::runs() const
{
    std::vector<run_view> out;
    for (const auto& r : runs_) {
        out.push_back(view(*r));
    }
    return out;
}

std::vector<std::pair<std::string, run_phase>> engine::unfinished_runs() const
{
    std::vector<std::pair<std::string, run_phase>> out;
    for (const auto& r : runs_) {
        if (r->phase != run_phase::finished) {
            out.emplace_back(r->record.runbook, r->phase);
        }
    }
    return out;
}

std::optional<run_view> engine::find(const std::string& run_id) const
{
    if (const run_state* r = run(run_id)) {
        return view(*r);
    }
    return std::nullopt;
}

} // namespace tocsin::runbooks
