#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runbooks/engine.hpp"
#include "runbooks/loader.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;
using namespace std::chrono_literals;

namespace {

constexpr time_ms minute = 60'000;
constexpr time_ms t0 = 1'714'564'800'000; // 2024-05-01T12:00:00Z

// Records each job and returns a scripted result per step name (success otherwise).
class fake_executor final : public step_executor {
public:
    step_result execute(const step_job& job) override
    {
        std::lock_guard lock(mutex_);
        jobs.push_back(job);
        auto it = results.find(job.step_name);
        if (it != results.end()) {
            return it->second;
        }
        return {step_outcome::succeeded, "ok", ""};
    }
    std::vector<std::string> names() const
    {
        std::vector<std::string> out;
        for (const auto& j : jobs) {
            out.push_back(j.step_name);
        }
        return out;
    }
    std::vector<step_job> jobs;
    std::map<std::string, step_result> results;

private:
    std::mutex mutex_;
};

std::string rollback_runbook(std::string_view extra = "", std::string_view step_extra = "")
{
    return "runbooks:\n"
           "  - name: rollback\n"
           "    trigger: {matchers: ['alertname=\"ModelAucDrift\"']}\n"
           "    params: {model: '^[a-z0-9][a-z0-9-]{0,62}$'}\n"
           "    escalate_to: ml-oncall\n" +
           std::string(extra) +
           "    steps:\n"
           "      - name: stop-canary\n"
           "        stop: {pid_file: /run/canary.pid}\n" +
           std::string(step_extra) +
           "      - name: roll-back\n"
           "        rollback: {exec: {argv: [/opt/rollback, '{{ $labels.model }}']}}\n"
           "      - name: tell\n"
           "        notify: {receiver: data-scientists, text: 'rolled back {{ $labels.model }}'}\n"
           "      - name: settle\n"
           "        wait: {until: resolved}\n"
           "        timeout: 30m\n";
}

std::vector<runbook> load(std::string_view text)
{
    diagnostics diags;
    auto books = load_runbook_text(text, "rb.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    return books;
}

alert_event firing(std::string model, time_ms episode, std::string instance = "h1")
{
    alert_event e;
    e.kind = trigger_on::firing;
    e.labels = label_set({{"alertname", "ModelAucDrift"}, {"model", model}, {"instance", instance},
                          {"severity", "critical"}});
    e.fingerprint = e.labels.fingerprint();
    e.episode_start = episode;
    return e;
}

alert_event resolved(alert_event e)
{
    e.kind = trigger_on::resolved;
    return e;
}

struct harness {
    manual_clock clock{t0};
    memory_journal journal;
    fake_executor exec;
    std::vector<notification> sent;
    std::vector<std::string> logs;
    std::unique_ptr<engine> eng;

    explicit harness(std::string_view text, engine_options options = {}, step_executor* executor = nullptr)
    {
        start(text, options, executor);
    }

    // Builds a new engine on the same journal, as a restarted daemon would.
    void start(std::string_view text, engine_options options = {}, step_executor* executor = nullptr)
    {
        eng.reset();
        engine_hooks hooks;
        hooks.notify = [this](const notification& n) {
            sent.push_back(n);
            return notify_result{true, ""};
        };
        hooks.log = [this](const std::string& line) { logs.push_back(line); };
        eng = std::make_unique<engine>(load(text), clock, journal, executor ? *executor : exec, hooks, options);
    }

    trigger_decision fire(const alert_event& e)
    {
        auto d = eng->on_alert(e);
        REQUIRE(d.size() == 1);
        eng->tick();
        return d[0];
    }

    run_view only_run() const
    {
        auto runs = eng->runs();
        REQUIRE(runs.size() == 1);
        return runs[0];
    }

    std::size_t journal_position(const std::string& write) const
    {
        const auto& w = journal.writes();
        return static_cast<std::size_t>(std::find(w.begin(), w.end(), write) - w.begin());
    }
};

} // namespace

TEST_CASE("firing alert runs steps in order")
{
    harness h(rollback_runbook());
    const auto e = firing("fraud-v2", t0);
    const auto d = h.fire(e);
    CHECK(d.kind == decision_kind::started);
    CHECK(h.exec.names() == std::vector<std::string>{"stop-canary", "roll-back"});
    CHECK(h.exec.jobs[1].exec.argv == std::vector<std::string>{"/opt/rollback", "fraud-v2"});
    REQUIRE(h.sent.size() == 1);
    CHECK(h.sent[0].receiver == "data-scientists");
    CHECK(h.sent[0].text == "rolled back fraud-v2");
    CHECK(h.only_run().phase == run_phase::running); // waiting for the alert to resolve

    h.clock.advance_ms(5 * minute);
    h.eng->tick();
    CHECK(h.only_run().phase == run_phase::running);
    h.eng->on_alert(resolved(e));
    h.eng->tick();
    const auto run = h.only_run();
    CHECK(run.phase == run_phase::finished);
    CHECK(run.outcome == run_outcome::succeeded);
    CHECK(run.steps[3].detail == "resolved after 5m");

    // The journal records the run before its first step, and each start before its end.
    const std::string id = d.run_id;
    CHECK(h.journal_position("run_created " + id) < h.journal_position("step_started " + id + " 0"));
    CHECK(h.journal_position("step_started " + id + " 0") < h.journal_position("step_finished " + id + " 0 succeeded"));
    CHECK(h.journal_position("step_finished " + id + " 3 succeeded") < h.journal_position("run_finished " + id + " succeeded"));
}

TEST_CASE("one run per firing episode")
{
    harness h(rollback_runbook());
    const auto e = firing("fraud-v2", t0);
    const auto first = h.fire(e);
    CHECK(first.kind == decision_kind::started);
    for (int i = 0; i < 5; ++i) {
        h.clock.advance_ms(minute);
        const auto again = h.fire(e);
        CHECK(again.kind == decision_kind::duplicate);
        CHECK(again.run_id == first.run_id);
    }
    CHECK(h.exec.jobs.size() == 2);
    h.eng->on_alert(resolved(e));
    h.eng->tick();

    const auto second = h.fire(firing("fraud-v2", t0 + 20 * minute));
    CHECK(second.kind == decision_kind::started);
    CHECK(second.run_id != first.run_id);
    CHECK(h.exec.jobs.size() == 4);
}

TEST_CASE("dry run logs and runs nothing")
{
    harness h(rollback_runbook("    dry_run: true\n"));
    h.fire(firing("fraud-v2", t0));
    CHECK(h.exec.jobs.empty());
    CHECK(h.sent.empty());
    const auto run = h.only_run();
    CHECK(run.outcome == run_outcome::dry_run);
    for (const auto& s : run.steps) {
        CHECK(s.outcome == step_outcome::dry_run);
    }
    CHECK(run.steps[1].detail == "would run: rollback [\"/opt/rollback\", \"fraud-v2\"]");
    CHECK(run.steps[2].detail == "would run: notify \"data-scientists\": \"rolled back fraud-v2\"");
    const bool logged = std::any_of(h.logs.begin(), h.logs.end(), [](const std::string& l) {
        return l.find("dry run") != std::string::npos && l.find("stop process from pid file") != std::string::npos;
    });
    CHECK(logged);
}

TEST_CASE("dry run shows a rejected label")
{
    harness h(rollback_runbook("    dry_run: true\n"));
    h.fire(firing("x; rm -rf /", t0));
    CHECK_THAT(h.only_run().steps[1].detail, Catch::StartsWith("would fail before running: argv[1]: label model"));
}

TEST_CASE("hostile label fails before running")
{
    harness h(rollback_runbook());
    h.fire(firing("$(reboot)", t0));
    CHECK(h.exec.names() == std::vector<std::string>{"stop-canary"});
    const auto run = h.only_run();
    CHECK(run.outcome == run_outcome::failed);
    CHECK_THAT(run.steps[1].detail, Catch::Contains("not run: argv[1]: label model: value \"$(reboot)\" does not match"));
    CHECK(run.steps[2].outcome == step_outcome::skipped);
}

TEST_CASE("cooldown per alert and runbook")
{
    harness h(rollback_runbook("    cooldown: {per_alert: 30m, per_runbook: 5m}\n    concurrency: 10\n"));
    CHECK(h.fire(firing("fraud-v2", t0)).kind == decision_kind::started);

    h.clock.advance_ms(2 * minute);
    auto other = h.fire(firing("churn", t0 + 2 * minute, "h2"));
    CHECK(other.kind == decision_kind::skipped_cooldown);
    CHECK_THAT(other.detail, Catch::Contains("cooldown.per_runbook is 5m"));

    h.clock.set_ms(t0 + 10 * minute);
    auto same = h.fire(firing("fraud-v2", t0 + 10 * minute));
    CHECK(same.kind == decision_kind::skipped_cooldown);
    CHECK_THAT(same.detail, Catch::Contains("started 10m ago; cooldown.per_alert is 30m"));
    // The refusal is final for that episode.
    CHECK(h.fire(firing("fraud-v2", t0 + 10 * minute)).kind == decision_kind::duplicate);

    h.clock.set_ms(t0 + 31 * minute);
    CHECK(h.fire(firing("fraud-v2", t0 + 31 * minute)).kind == decision_kind::started);
    REQUIRE(h.journal.load().skips.size() == 2);
    CHECK(h.journal.load().skips[0].reason == "cooldown");
}

TEST_CASE("max_runs limits runs per window")
{
    harness h(rollback_runbook("    max_runs: {count: 2, window: 1h}\n    concurrency: 10\n"));
    CHECK(h.fire(firing("a", t0, "h1")).kind == decision_kind::started);
    CHECK(h.fire(firing("b", t0, "h2")).kind == decision_kind::started);
    auto third = h.fire(firing("c", t0, "h3"));
    CHECK(third.kind == decision_kind::skipped_max_runs);
    CHECK_THAT(third.detail, Catch::Contains("2 runs started in the last 1h; max_runs allows 2"));
    h.clock.advance_ms(61 * minute);
    CHECK(h.fire(firing("d", t0 + 61 * minute, "h4")).kind == decision_kind::started);
}

TEST_CASE("concurrency limit queues runs in order")
{
    harness h(rollback_runbook("    concurrency: 1\n"));
    const auto a = firing("a", t0, "h1");
    const auto b = firing("b", t0, "h2");
    const auto c = firing("c", t0, "h3");
    CHECK(h.fire(a).kind == decision_kind::started);
    CHECK(h.fire(b).kind == decision_kind::queued);
    CHECK(h.fire(c).kind == decision_kind::queued);
    CHECK(h.exec.jobs.size() == 2); // a runs up to its wait

    // c's alert resolves while it waits in the queue: it is withdrawn.
    h.eng->on_alert(resolved(c));
    h.eng->on_alert(resolved(a));
    h.eng->tick();
    auto runs = h.eng->runs();
    CHECK(runs[0].outcome == run_outcome::succeeded);
    CHECK(runs[1].phase == run_phase::running); // b left the queue
    CHECK(runs[2].outcome == run_outcome::withdrawn);
    REQUIRE(h.exec.jobs.size() == 4);
    CHECK(h.exec.jobs[3].exec.argv == std::vector<std::string>{"/opt/rollback", "b"});
}

TEST_CASE("silenced alert is skipped and recorded")
{
    test::temp_dir dir;
    manual_clock audit_clock(t0);
    std::string error;
    auto audit = audit_log::open((dir.path() / "audit.jsonl").string(), audit_clock, error);
    REQUIRE(audit);
    engine_options options;
    options.audit = audit.get();
    harness h(rollback_runbook(), options);
    auto e = firing("fraud-v2", t0);
    e.silenced = true;
    e.silenced_by = "silence-42";
    const auto d = h.fire(e);
    CHECK(d.kind == decision_kind::skipped_silenced);
    CHECK(h.exec.jobs.empty());
    REQUIRE(h.eng->skips().size() == 1);
    CHECK(h.eng->skips()[0].reason == "silenced");
    REQUIRE(h.journal.load().skips.size() == 1);
    std::vector<audit_record> records;
    REQUIRE(read_audit_log(audit->path(), records, error));
    REQUIRE(records.size() == 1);
    CHECK(records[0].kind == "skipped");
    CHECK(records[0].details["reason"] == "silenced");
    CHECK(records[0].details["detail"] == "the alert is silenced by silence-42");

    // The silence ends while the same episode still fires: no run for it.
    e.silenced = false;
    CHECK(h.fire(e).kind == decision_kind::duplicate);
}

TEST_CASE("trigger filters kind, severity and level")
{
    harness h(R"(runbooks:
  - name: on-resolve
    trigger: {matchers: ['alertname="ModelAucDrift"'], on: resolved}
    steps: [{name: s, notify: {receiver: r, text: resolved}}]
  - name: page-only
    trigger: {matchers: ['alertname="ModelAucDrift"'], min_severity: page}
    steps: [{name: s, notify: {receiver: r, text: paged}}]
  - name: second-escalation
    trigger: {matchers: ['alertname="ModelAucDrift"'], on: escalation, level: 2}
    steps: [{name: s, notify: {receiver: r, text: escalated}}]
)");
    auto e = firing("m", t0);
    CHECK(h.eng->on_alert(e).empty()); // critical < page
    e.labels = e.labels.with("severity", "page");
    CHECK(h.eng->on_alert(e).size() == 1);
    auto esc = e;
    esc.kind = trigger_on::escalation;
    esc.escalation_level = 1;
    CHECK(h.eng->on_alert(esc).empty());
    esc.escalation_level = 2;
    REQUIRE(h.eng->on_alert(esc).size() == 1);
    auto other = e;
    other.labels = other.labels.with("alertname", "Other");
    CHECK(h.eng->on_alert(resolved(other)).empty());
    auto d = h.eng->on_alert(resolved(e));
    REQUIRE(d.size() == 1);
    CHECK(d[0].runbook == "on-resolve");
}

TEST_CASE("approval gate waits until approved")
{
    harness h(rollback_runbook("    approval: {required_before: roll-back, timeout: 15m}\n"));
    const auto d = h.fire(firing("fraud-v2", t0));
    CHECK(h.exec.names() == std::vector<std::string>{"stop-canary"});
    auto run = h.only_run();
    CHECK(run.phase == run_phase::waiting_approval);
    REQUIRE(h.sent.size() == 1);
    CHECK(h.sent[0].what == notification::kind::approval_request);
    CHECK(h.sent[0].receiver == "ml-oncall");

    h.clock.advance_ms(14 * minute);
    h.eng->tick();
    CHECK(h.only_run().phase == run_phase::waiting_approval);
    std::string error;
    CHECK_FALSE(h.eng->approve(d.run_id, "", error));
    REQUIRE(h.eng->approve(d.run_id, "alice", error));
    CHECK_FALSE(h.eng->approve(d.run_id, "alice", error));
    CHECK_THAT(error, Catch::Contains("not waiting for approval"));
    h.eng->tick();
    CHECK(h.exec.names() == std::vector<std::string>{"stop-canary", "roll-back"});
    CHECK(h.only_run().approval_by == "alice");
}

TEST_CASE("approval rejected ends the run")
{
    harness h(rollback_runbook("    approval: {required_before: roll-back, timeout: 15m}\n"));
    const auto d = h.fire(firing("fraud-v2", t0));
    std::string error;
    REQUIRE(h.eng->reject(d.run_id, "bob", "the drift is a data bug", error));
    h.eng->tick();
    CHECK(h.exec.names() == std::vector<std::string>{"stop-canary"});
    CHECK(h.only_run().outcome == run_outcome::rejected);
    CHECK(h.only_run().outcome_detail == "rejected by bob: the drift is a data bug");
}

TEST_CASE("approval timeout ends and escalates")
{
    harness h(rollback_runbook("    approval: {required_before: roll-back, timeout: 15m}\n"));
    const auto d = h.fire(firing("fraud-v2", t0));
    h.clock.advance_ms(15 * minute);
    h.eng->tick();
    CHECK(h.only_run().outcome == run_outcome::approval_timed_out);
    CHECK(h.exec.jobs.size() == 1);
    REQUIRE(h.sent.size() == 2);
    CHECK(h.sent[1].what == notification::kind::escalation);
    CHECK(h.sent[1].receiver == "ml-oncall");
    std::string error;
    CHECK_FALSE(h.eng->approve(d.run_id, "late", error));
}

TEST_CASE("on_failure policies")
{
    SECTION("abort")
    {
        harness h(rollback_runbook());
        h.exec.results["stop-canary"] = {step_outcome::failed, "pid file missing", ""};
        h.fire(firing("m", t0));
        CHECK(h.exec.names() == std::vector<std::string>{"stop-canary"});
        CHECK(h.only_run().outcome == run_outcome::failed);
        CHECK(h.only_run().outcome_detail == "step stop-canary failed: pid file missing");
    }
    SECTION("continue")
    {
        harness h(rollback_runbook("", "        on_failure: continue\n"));
        h.exec.results["stop-canary"] = {step_outcome::timed_out, "timed out", ""};
        h.fire(firing("m", t0));
        CHECK(h.exec.names() == std::vector<std::string>{"stop-canary", "roll-back"});
    }
    SECTION("escalate")
    {
        harness h(rollback_runbook("", "        on_failure: escalate\n        escalate_to: sre-oncall\n"));
        h.exec.results["stop-canary"] = {step_outcome::failed, "no such process", ""};
        h.fire(firing("m", t0));
        CHECK(h.only_run().outcome == run_outcome::escalated);
        REQUIRE(h.sent.size() == 1);
        CHECK(h.sent[0].what == notification::kind::escalation);
        CHECK(h.sent[0].receiver == "sre-oncall");
        CHECK_THAT(h.sent[0].text, Catch::Contains("no such process"));
    }
}

TEST_CASE("a wait times out on the engine's clock")
{
    harness h(rollback_runbook());
    h.fire(firing("m", t0));
    h.clock.advance_ms(29 * minute);
    h.eng->tick();
    CHECK(h.only_run().phase == run_phase::running);
    h.clock.advance_ms(minute);
    h.eng->tick();
    CHECK(h.only_run().outcome == run_outcome::failed);
    CHECK(h.only_run().steps[3].outcome == step_outcome::timed_out);
}

TEST_CASE("wait for metric recovery uses hook")
{
    manual_clock clock(t0);
    memory_journal journal;
    fake_executor exec;
    bool recovered = false;
    engine_hooks hooks;
    hooks.condition_met = [&](const wait_query& q) { return q.until == wait_condition::metric_recovered && recovered; };
    engine eng(load(R"(runbooks:
  - name: rb
    trigger: {matchers: ['alertname="ModelAucDrift"']}
    steps: [{name: w, wait: {until: metric_recovered}, timeout: 1h}]
)"),
               clock, journal, exec, hooks);
    eng.on_alert(firing("m", t0));
    eng.tick();
    CHECK(eng.runs()[0].phase == run_phase::running);
    recovered = true;
    eng.tick();
    CHECK(eng.runs()[0].outcome == run_outcome::succeeded);
}

TEST_CASE("cancel is recorded as override")
{
    test::temp_dir dir;
    std::string error;
    manual_clock audit_clock(t0);
    auto audit = audit_log::open((dir.path() / "audit.jsonl").string(), audit_clock, error);
    engine_options options;
    options.audit = audit.get();
    harness h(rollback_runbook(), options);
    const auto d = h.fire(firing("m", t0));
    REQUIRE(h.eng->cancel(d.run_id, "carol", "fixed by hand", error));
    CHECK(h.only_run().outcome == run_outcome::cancelled);
    std::vector<audit_record> records;
    REQUIRE(read_audit_log(audit->path(), records, error));
    auto overrides = filter_audit(records, {{"override"}, d.run_id, {}, {}});
    REQUIRE(overrides.size() == 1);
    CHECK(overrides[0].actor == "carol");
    CHECK(verify_audit_log(audit->path()).ok);
    std::vector<std::string> steps;
    for (const auto& r : filter_audit(records, {{"step"}, d.run_id, {}, {}})) {
        steps.push_back(r.details["step"].get<std::string>() + " " + r.details["phase"].get<std::string>());
    }
    CHECK(steps == std::vector<std::string>{"stop-canary started", "stop-canary finished", "roll-back started",
                                            "roll-back finished", "tell finished"});
    CHECK(filter_audit(records, {{"notification"}, d.run_id, {}, {}}).size() == 1);
}

TEST_CASE("journal write failure runs nothing")
{
    harness h(rollback_runbook());
    h.journal.fail_writes(true);
    const auto d = h.fire(firing("m", t0));
    CHECK(d.kind == decision_kind::error);
    CHECK(h.exec.jobs.empty());
    // Once the journal works again, the same episode can still start its run.
    h.journal.fail_writes(false);
    CHECK(h.fire(firing("m", t0)).kind == decision_kind::started);
}

TEST_CASE("restart resumes after finished steps")
{
    const std::string text = rollback_runbook("    on_interrupt: resume\n"
                                              "    approval: {required_before: roll-back, timeout: 15m}\n");
    harness h(text);
    const auto d = h.fire(firing("fraud-v2", t0));
    CHECK(h.exec.names() == std::vector<std::string>{"stop-canary"});

    h.start(text); // the daemon restarts
    const auto lines = h.eng->recover();
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Catch::Contains("resumed at step roll-back"));
    CHECK(h.only_run().phase == run_phase::waiting_approval);
    std::string error;
    REQUIRE(h.eng->approve(d.run_id, "alice", error));
    h.eng->tick();
    CHECK(h.exec.names() == std::vector<std::string>{"stop-canary", "roll-back"});
    // The episode is still known after the restart.
    CHECK(h.fire(firing("fraud-v2", t0)).kind == decision_kind::duplicate);
}

TEST_CASE("restart interrupts a running exec step")
{
    const std::string text = rollback_runbook("    on_interrupt: resume\n");
    harness h(text);
    const auto e = firing("fraud-v2", t0);
    const std::string id = run_id_for("rollback", e.fingerprint, t0);
    // What a daemon killed in the middle of step 1 leaves in its journal.
    h.journal.run_created({id, "rollback", e.fingerprint, t0, e.labels.items(), t0, false, false, {}});
    h.journal.step_started(id, 0, "stop-canary", t0);
    h.journal.step_finished(id, 0, step_outcome::succeeded, "ok", t0);
    h.journal.step_started(id, 1, "roll-back", t0);

    h.eng->recover();
    h.eng->tick();
    CHECK(h.exec.jobs.empty());
    const auto run = h.only_run();
    CHECK(run.outcome == run_outcome::interrupted);
    CHECK(run.steps[1].outcome == step_outcome::interrupted);
    CHECK_THAT(run.outcome_detail, Catch::Contains("running it again could repeat its effect"));
    REQUIRE(h.sent.size() == 1);
    CHECK(h.sent[0].what == notification::kind::escalation);
    CHECK(h.sent[0].receiver == "ml-oncall");
    CHECK(h.journal.load().runs[0].steps.at(1).outcome == step_outcome::interrupted);
    CHECK(h.fire(e).kind == decision_kind::duplicate);
}

TEST_CASE("restart reruns http with same key")
{
    const std::string text = R"(runbooks:
  - name: deploy
    trigger: {matchers: ['alertname="ModelAucDrift"']}
    params: {model: '^[a-z0-9][a-z0-9-]{0,62}$'}
    on_interrupt: resume
    steps:
      - name: call
        rollback: {http: {url: 'http://127.0.0.1:1/models/{{ $labels.model }}/rollback'}}
)";
    harness h(text);
    const auto e = firing("fraud-v2", t0);
    const std::string id = run_id_for("deploy", e.fingerprint, t0);
    h.journal.run_created({id, "deploy", e.fingerprint, t0, e.labels.items(), t0, false, false, {}});
    h.journal.step_started(id, 0, "call", t0);

    h.eng->recover();
    h.eng->tick();
    REQUIRE(h.exec.jobs.size() == 1);
    CHECK(h.exec.jobs[0].http.key == idempotency_key("deploy", e.fingerprint, t0, "call"));
    CHECK(h.exec.jobs[0].http.request.url == "http://127.0.0.1:1/models/fraud-v2/rollback");
    CHECK(h.only_run().outcome == run_outcome::succeeded);
}

TEST_CASE("restart with abort_and_escalate")
{
    const std::string text = rollback_runbook("    approval: {required_before: roll-back, timeout: 15m}\n");
    harness h(text);
    h.fire(firing("fraud-v2", t0));
    h.start(text);
    h.eng->recover();
    CHECK(h.only_run().outcome == run_outcome::interrupted);
    CHECK(h.exec.jobs.size() == 1);
    CHECK(h.sent.back().what == notification::kind::escalation);
}

TEST_CASE("restart keeps the wait deadline")
{
    const std::string text = rollback_runbook("    on_interrupt: resume\n");
    harness h(text);
    h.fire(firing("fraud-v2", t0));
    h.clock.advance_ms(20 * minute);
    h.eng->tick();
    h.start(text);
    h.eng->recover();
    h.eng->tick();
    CHECK(h.only_run().phase == run_phase::running);
    h.clock.advance_ms(10 * minute); // 30 minutes after the wait began
    h.eng->tick();
    CHECK(h.only_run().steps[3].outcome == step_outcome::timed_out);
    CHECK(h.exec.jobs.size() == 2);
}

TEST_CASE("restart after runbook change interrupts")
{
    const std::string text = rollback_runbook("    on_interrupt: resume\n    approval: {required_before: roll-back, "
                                              "timeout: 15m}\n");
    harness h(text);
    h.fire(firing("fraud-v2", t0));
    h.start(R"(runbooks:
  - name: rollback
    trigger: {matchers: ['alertname="ModelAucDrift"']}
    on_interrupt: resume
    steps: [{name: other, notify: {receiver: r, text: x}}]
)");
    h.eng->recover();
    CHECK(h.only_run().outcome == run_outcome::interrupted);
    CHECK_THAT(h.only_run().outcome_detail, Catch::Contains("changed since the run started"));
}

TEST_CASE("restart after a step's content changed interrupts")
{
    const std::string extra = "    on_interrupt: resume\n    approval: {required_before: roll-back, timeout: 15m}\n";
    const std::string text = rollback_runbook(extra);
    harness h(text);
    h.fire(firing("fraud-v2", t0));
    REQUIRE(h.only_run().phase == run_phase::waiting_approval);

    // Same step names, another program: the approval was given for the old one.
    std::string edited = text;
    const std::string from = "/opt/rollback";
    edited.replace(edited.find(from), from.size(), "/opt/rollback-v2");
    h.start(edited);
    h.eng->recover();
    CHECK(h.only_run().outcome == run_outcome::interrupted);
    CHECK_THAT(h.only_run().outcome_detail, Catch::Contains("its steps or params differ"));

    // Layout and comments do not count as a change.
    harness same(text);
    same.fire(firing("fraud-v2", t0));
    same.start("# reformatted\n" + text);
    same.eng->recover();
    CHECK(same.only_run().phase == run_phase::waiting_approval);
}

TEST_CASE("dry runs do not use up the guards of live runs")
{
    const std::string live = rollback_runbook("    max_runs: {count: 1, window: 24h}\n    cooldown: 1h\n");
    std::string dry = live;
    dry.replace(dry.find("    steps:"), 0, "    dry_run: true\n");
    harness h(dry);
    REQUIRE(h.fire(firing("fraud-v2", t0)).kind == decision_kind::started);
    h.clock.advance_ms(minute);
    CHECK(h.fire(firing("fraud-v2", t0 + minute)).kind == decision_kind::skipped_cooldown);

    // Switched to live: the rehearsal counts neither for the cooldown nor for max_runs.
    h.start(live);
    h.eng->recover();
    h.clock.advance_ms(minute);
    const auto d = h.fire(firing("fraud-v2", t0 + 2 * minute));
    CHECK(d.kind == decision_kind::started);
    // The live run does count for the live guards.
    h.clock.advance_ms(minute);
    CHECK(h.fire(firing("fraud-v2", t0 + 3 * minute)).kind == decision_kind::skipped_cooldown);
    CHECK(h.fire(firing("fraud-v3", t0 + 3 * minute)).kind == decision_kind::skipped_max_runs);
}

TEST_CASE("runs follow alerts, not notification groups")
{
    // A deploy API that returns 504 to the first call of each key, then 200.
    httplib::Server server;
    std::mutex mutex;
    std::vector<std::string> keys;
    server.Post(R"(/remediate/(.+))", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex);
        const std::string key = req.get_header_value("Idempotency-Key");
        res.status = std::count(keys.begin(), keys.end(), key) == 0 ? 504 : 200;
        keys.push_back(key);
    });
    const int port = server.bind_to_any_port("127.0.0.1");
    std::thread thread([&] { server.listen_after_bind(); });
    const auto ready_by = std::chrono::steady_clock::now() + 5s;
    while (!server.is_running() && std::chrono::steady_clock::now() < ready_by) {
        std::this_thread::sleep_for(1ms);
    }

    executor_options options;
    options.http_sleep = [](std::chrono::milliseconds) {};
    default_executor executor(options);
    const std::string text = "runbooks:\n"
                             "  - name: cleanup\n"
                             "    trigger: {matchers: ['alertname=\"DiskFull\"']}\n"
                             "    params: {instance: '^h[0-9]+$'}\n"
                             "    concurrency: 10\n"
                             "    steps:\n"
                             "      - name: remediate\n"
                             "        http: {url: 'http://127.0.0.1:" +
                             std::to_string(port) +
                             "/remediate/{{ $labels.instance }}', attempts: 3, backoff: 2s}\n"
                             "        timeout: 5s\n";
    harness h(text, {}, &executor);
    const auto disk = [](const std::string& instance, time_ms episode) {
        alert_event e;
        e.labels = label_set({{"alertname", "DiskFull"}, {"instance", instance}});
        e.fingerprint = e.labels.fingerprint();
        e.episode_start = episode;
        return e;
    };
    const auto count_calls = [&] {
        std::lock_guard lock(mutex);
        return keys.size();
    };

    // h1 fires at 2m: one call that times out (504), one retry with the same key.
    h.clock.set_ms(t0 + 2 * minute);
    CHECK(h.fire(disk("h1", t0)).kind == decision_kind::started);
    CHECK(count_calls() == 2);
    {
        std::lock_guard lock(mutex);
        CHECK(keys[0] == keys[1]);
    }
    // The alert is sent again at every reminder and evaluation: no further call.
    for (time_ms at : {t0 + 7 * minute + 30'000, t0 + 12 * minute + 30'000}) {
        h.clock.set_ms(at);
        CHECK(h.fire(disk("h1", t0)).kind == decision_kind::duplicate);
    }
    // h2 fires at 5m, while h1 still fires in the same group: its own run.
    h.clock.set_ms(t0 + 5 * minute);
    CHECK(h.fire(disk("h2", t0 + 3 * minute)).kind == decision_kind::started);
    CHECK(count_calls() == 4);
    // h1's second episode at 27m: one run, a new key.
    h.clock.set_ms(t0 + 27 * minute);
    CHECK(h.fire(disk("h1", t0 + 25 * minute)).kind == decision_kind::started);
    CHECK(count_calls() == 6);
    {
        std::lock_guard lock(mutex);
        CHECK(keys[4] != keys[0]);
        CHECK(keys[4] == keys[5]);
    }
    // h1's third episode falls inside a silence: not run, recorded as skipped: silenced.
    h.clock.set_ms(t0 + 42 * minute);
    auto third = disk("h1", t0 + 42 * minute);
    third.silenced = true;
    CHECK(h.fire(third).kind == decision_kind::skipped_silenced);
    CHECK(count_calls() == 6);
    REQUIRE(h.eng->skips().size() == 1);
    CHECK(h.eng->skips()[0].reason == "silenced");

    server.stop();
    thread.join();
}

TEST_CASE("worker thread results reach tick")
{
    test::temp_dir dir;
    const std::string marker = (dir.path() / "ran").string();
    const std::string tool = dir.write("tool.sh", "#!/bin/sh\necho \"$1\" > " + marker + "\n");
    std::filesystem::permissions(tool, std::filesystem::perms::owner_all);

    executor_options options;
    options.allowed_programs = {tool};
    default_executor executor(options);
    engine_options eo;
    eo.worker_threads = true;
    harness h("runbooks:\n"
              "  - name: rb\n"
              "    trigger: {matchers: ['alertname=\"ModelAucDrift\"']}\n"
              "    params: {model: '^[a-z0-9-]+$'}\n"
              "    steps:\n"
              "      - name: run-tool\n"
              "        exec: {argv: [" + tool + ", '{{ $labels.model }}']}\n"
              "        timeout: 10s\n",
              eo, &executor);
    h.fire(firing("fraud-v2", t0));

    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!h.eng->idle() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
        h.eng->tick();
    }
    h.eng->tick();
    REQUIRE(h.only_run().outcome == run_outcome::succeeded);

    std::ifstream in(marker);
    std::string content;
    std::getline(in, content);
    CHECK(content == "fraud-v2");
}

TEST_CASE("example runbook end to end")
{
    test::temp_dir dir;
    const std::string source = std::string(TOCSIN_SOURCE_DIR) + "/examples/runbooks/";
    std::ifstream in(source + "model-rollback.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(!text.empty());
    const auto replace = [&](const std::string& from, const std::string& to) {
        const auto pos = text.find(from);
        REQUIRE(pos != std::string::npos);
        text.replace(pos, from.size(), to);
    };
    const std::string pid_file = (dir.path() / "canary.pid").string();
    const std::string versions = (dir.path() / "registry").string();
    replace("dry_run: true", "dry_run: false");
    replace("/run/model-canary/canary.pid", pid_file);
    replace("/opt/tocsin/examples/runbooks/rollback.sh", source + "rollback.sh");
    replace("/var/lib/model-registry", versions);

    // The canary: a small service that writes its pid file and exits on SIGTERM.
    // The trap comes before the pid file, so a SIGTERM right after the file appears is caught.
    const std::string canary = dir.write("canary.sh", "#!/bin/sh\ntrap 'exit 0' TERM\necho $$ > " + pid_file +
                                                          ".tmp; mv " + pid_file + ".tmp " + pid_file +
                                                          "\nwhile :; do sleep 0.05; done\n");
    std::filesystem::permissions(canary, std::filesystem::perms::owner_all);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::execl(canary.c_str(), canary.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!std::filesystem::exists(pid_file) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    REQUIRE(std::filesystem::exists(pid_file));

    executor_options options;
    options.allowed_programs = {source + "rollback.sh"};
    default_executor executor(options);
    harness h(text, {}, &executor);
    alert_event e;
    e.labels = label_set({{"alertname", "ModelAucDrift"}, {"team", "ml"}, {"severity", "critical"},
                          {"model", "fraud"}, {"version", "v7"}});
    e.fingerprint = e.labels.fingerprint();
    e.episode_start = t0;
    const auto d = h.fire(e);
    REQUIRE(d.kind == decision_kind::started);
    CHECK(h.only_run().phase == run_phase::waiting_approval);
    int status = 0;
    CHECK(::waitpid(pid, &status, 0) == pid); // the canary was stopped
    CHECK(WIFEXITED(status));

    std::string error;
    REQUIRE(h.eng->approve(d.run_id, "alice", error));
    h.eng->tick();
    const auto run = h.only_run();
    INFO(run.steps[1].detail << " " << run.steps[1].output);
    CHECK(run.steps[1].outcome == step_outcome::succeeded);
    std::ifstream version(versions + "/fraud/current");
    std::string current;
    std::getline(version, current);
    CHECK(current == "v6");
    REQUIRE(h.sent.size() == 2); // the approval request, then the data scientists
    CHECK(h.sent[1].receiver == "data-scientists");
    CHECK_THAT(h.sent[1].text, Catch::Contains("rolled it back from v7"));
    CHECK(run.phase == run_phase::running); // waits for the alert to resolve
}
