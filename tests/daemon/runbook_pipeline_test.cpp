// Runbooks fed by the real pipeline on a manual clock: rule engine events -> delivery_service
// (dispatcher, silences, durable outbox) -> runbook_service -> engine -> an HTTP step whose
// transport the test scripts. The main case is an automated response that must run once per
// firing episode of each alert: not held back by group timers, not repeated by reminders or
// retries, and skipped with a record while a silence matches.

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <map>
#include <mutex>

#include "daemon/config.hpp"
#include "daemon/delivery_service.hpp"
#include "daemon/runbook_service.hpp"
#include "daemon/state_store.hpp"
#include "notifiers/sender.hpp"
#include "routing/silences.hpp"
#include "rules/engine.hpp"
#include "runbooks/audit.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

constexpr time_ms minute = 60'000;
constexpr time_ms t0 = 1'750'000'000'000; // any fixed start

// A remediation endpoint that processes the first call but returns 504 for it, and returns 200
// ("duplicate") for every later call.
class remediation_endpoint final : public runbooks::http_transport {
public:
    explicit remediation_endpoint(const tocsin::clock& clk) : clock_(clk) {}

    struct call {
        std::string url;
        std::string key;
        time_ms at = 0;
    };

    runbooks::http_response send(const runbooks::http_request& request) override
    {
        std::lock_guard lock(mutex_);
        call c;
        c.url = request.url;
        c.at = clock_.now_ms();
        for (const auto& [name, value] : request.headers) {
            if (name == "Idempotency-Key") {
                c.key = value;
            }
        }
        calls_.push_back(c);
        runbooks::http_response r;
        r.status = calls_.size() == 1 ? 504 : 200;
        r.body = calls_.size() == 1 ? "gateway timeout" : "duplicate";
        return r;
    }

    std::vector<call> calls() const
    {
        std::lock_guard lock(mutex_);
        return calls_;
    }

private:
    const tocsin::clock& clock_;
    mutable std::mutex mutex_;
    std::vector<call> calls_;
};

constexpr const char* config_text = R"(
rule_files: [rules.yaml]
runbooks:
  files: [runbooks.yaml]
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 5m
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:9/hook
)";

constexpr const char* rules_text = R"(
groups:
  - name: disk
    rules:
      - alert: DiskFull
        expr: disk_used_pct
        for: 2m
        tiers:
          critical: "> 95"
)";

constexpr const char* runbooks_text = R"(
runbooks:
  - name: cleanup
    trigger:
      matchers: ['alertname="DiskFull"']
    params:
      instance: '^h[0-9]+$'
    steps:
      - name: remediate
        http:
          url: 'http://127.0.0.1:9/remediate/{{ $labels.instance }}'
          attempts: 3
          backoff: 2s
        timeout: 5s
)";

struct pipeline {
    test::temp_dir dir;
    manual_clock clk{t0};
    loaded_config config;
    std::unique_ptr<state_store> store;
    boost::asio::io_context io; // never run: notifications stay in the outbox
    http_sender sender{io, "tocsin-test", &clk};
    std::unique_ptr<delivery_service> delivery;
    silence_store silences{silence_limits{}, [n = 0]() mutable { return "silence-" + std::to_string(++n); }};
    std::unique_ptr<engine> rules;
    remediation_endpoint endpoint{clk};
    std::unique_ptr<runbooks::default_executor> executor;
    std::unique_ptr<runbooks::audit_log> audit;
    std::unique_ptr<runbook_service> service;
    std::vector<runbook_message> messages;

    explicit pipeline(const char* rules_yaml = rules_text, const char* runbooks_yaml = runbooks_text)
    {
        dir.write("rules.yaml", rules_yaml);
        dir.write("runbooks.yaml", runbooks_yaml);
        const std::string path = dir.write("tocsin.yaml", config_text);
        diagnostics diags;
        auto loaded = load_config(path, diags);
        INFO(diags.to_string());
        REQUIRE(loaded);
        config = std::move(*loaded);
        REQUIRE(config.runbooks.size() == 1);

        std::string error;
        store = state_store::open((dir.path() / "state").string(), error);
        REQUIRE(store);
        delivery = std::make_unique<delivery_service>(*store, clk, sender, config.routing, config.templates,
                                                      retry_policy{}, "http://tocsin.test", [] {});
        delivery->set_silences(&silences);
        REQUIRE(delivery->start({}, {}, error));
        rules = std::make_unique<engine>(config.rules, engine_limits{}, clk);

        runbooks::executor_options exec;
        exec.transport = &endpoint;
        exec.http_sleep = [this](std::chrono::milliseconds d) { clk.advance_ms(d.count()); };
        executor = std::make_unique<runbooks::default_executor>(std::move(exec));
        audit = runbooks::audit_log::open((dir.path() / "audit.log").string(), clk, error);
        REQUIRE(audit);

        runbook_service_options options;
        options.journal_path = (dir.path() / "runbooks.db").string();
        options.audit = audit.get();
        options.default_receiver = "hook";
        options.worker_threads = false;
        options.executor = executor.get();
        runbook_callbacks callbacks;
        callbacks.send = [this](const runbook_message& m, std::string&) {
            messages.push_back(m);
            return true;
        };
        callbacks.annotate = [this](std::uint64_t id, const std::string& text, bool announce) {
            delivery->annotate(id, std::string(runbook_actions_annotation), text, announce);
        };
        callbacks.current = [this](std::uint64_t id) { return delivery->groups().find(id); };
        service = runbook_service::open(config.runbooks, clk, std::move(options), std::move(callbacks), error);
        INFO(error);
        REQUIRE(service);
        service->recover();
        delivery->set_alert_observer([this](const alert& a, const mute_status& m) { service->observe(a, m); });
    }

    // One evaluation round at time `t`: samples in, events to delivery, runbook steps run.
    void step(time_ms t, const std::map<std::string, double>& values)
    {
        clk.set_ms(t);
        for (const auto& [instance, value] : values) {
            std::vector<label_view> series = {{"__name__", "disk_used_pct"}, {"instance", instance}};
            rules->ingest(series, t, value);
        }
        auto events = rules->take_events();
        std::string error;
        REQUIRE(delivery->flush(events, error));
        service->tick();
        std::vector<alert_event> none;
        REQUIRE(delivery->flush(none, error));
    }
};

label_matcher instance_is(const std::string& value)
{
    std::string error;
    auto m = label_matcher::make("instance", match_op::equal, value, error);
    REQUIRE(m);
    return *m;
}

double h1_value(time_ms offset)
{
    const bool high = (offset < 15 * minute) || (offset >= 25 * minute && offset < 30 * minute) ||
                      (offset >= 42 * minute && offset < 48 * minute);
    return high ? 99 : 50;
}

double h2_value(time_ms offset)
{
    return offset >= 3 * minute ? 99 : 50;
}

} // namespace

TEST_CASE("runbook runs once per episode",
          "[runbooks][pipeline]")
{
    pipeline p;
    std::string silence_id;
    for (time_ms offset = 0; offset <= 50 * minute; offset += 30'000) {
        if (offset == 40 * minute) {
            silence s;
            s.matchers.push_back(instance_is("h1"));
            s.starts_at = t0 + offset;
            s.ends_at = t0 + 50 * minute;
            s.created_by = "alice";
            s.comment = "maintenance of h1";
            const auto created = p.silences.set(s, t0 + offset);
            REQUIRE(created.ok());
            silence_id = created.id;
        }
        p.step(t0 + offset, {{"h1", h1_value(offset)}, {"h2", h2_value(offset)}});
    }

    const auto calls = p.endpoint.calls();
    REQUIRE(calls.size() == 4);

    // h1, episode 1 runs when its `for` is met at 2m, not at the group's first flush at 2m30s.
    // It is retried once after the 504 with the same key, and never again at reminders or
    // evaluations.
    CHECK(calls[0].url == "http://127.0.0.1:9/remediate/h1");
    CHECK(calls[0].at == t0 + 2 * minute);
    CHECK(calls[1].url == calls[0].url);
    CHECK(calls[1].key == calls[0].key);
    CHECK(calls[1].at == t0 + 2 * minute + 2'000); // the declared backoff

    // h2: at 5m, when its own `for` is met; its group's next flush is not before 7m30s.
    CHECK(calls[2].url == "http://127.0.0.1:9/remediate/h2");
    CHECK(calls[2].at == t0 + 5 * minute);
    CHECK(calls[2].key != calls[0].key);

    // h1, episode 2 (fires again at 27m): one call with a new key.
    CHECK(calls[3].url == "http://127.0.0.1:9/remediate/h1");
    CHECK(calls[3].at == t0 + 27 * minute);
    CHECK(calls[3].key != calls[0].key);

    // h1, episode 3 falls inside the silence: not run, recorded as skipped.
    const auto& skips = p.service->engine().skips();
    REQUIRE(skips.size() == 1);
    CHECK(skips[0].reason == "silenced");
    CHECK(skips[0].episode_start == t0 + 44 * minute);
    CHECK(skips[0].detail.find(silence_id) != std::string::npos);

    const auto runs = p.service->engine().runs();
    REQUIRE(runs.size() == 3);
    for (const auto& r : runs) {
        REQUIRE(r.outcome);
        CHECK(*r.outcome == runbooks::run_outcome::succeeded);
    }

    // Notifications followed the route whatever the runbook did.
    CHECK(p.delivery->groups().stats().notifications >= 3);

    // What the runbook did is on the alert, for its notifications.
    bool annotated = false;
    for (const auto& a : p.delivery->groups().alerts()) {
        for (const auto& [name, value] : a.annotations) {
            if (name == std::string(runbook_actions_annotation) && value.find("cleanup") != std::string::npos) {
                annotated = true;
            }
        }
    }
    CHECK(annotated);

    // The audit log contains the skip and every run, and its chain verifies.
    const auto verified = runbooks::verify_audit_log(p.audit->path());
    CHECK(verified.ok);
    std::vector<runbooks::audit_record> records;
    std::string error;
    REQUIRE(runbooks::read_audit_log(p.audit->path(), records, error));
    std::map<std::string, int> kinds;
    for (const auto& r : records) {
        ++kinds[r.kind];
    }
    CHECK(kinds["run_started"] == 3);
    CHECK(kinds["run_finished"] == 3);
    CHECK(kinds["skipped"] == 1);
}

TEST_CASE("silence ending mid-episode starts no run", "[runbooks][pipeline]")
{
    pipeline p;
    silence s;
    s.matchers.push_back(instance_is("h1"));
    s.starts_at = t0;
    s.ends_at = t0 + 4 * minute;
    s.created_by = "alice";
    s.comment = "disk replacement";
    REQUIRE(p.silences.set(s, t0).ok());
    for (time_ms offset = 0; offset <= 10 * minute; offset += 30'000) {
        p.step(t0 + offset, {{"h1", 99}});
    }
    CHECK(p.endpoint.calls().empty());
    REQUIRE(p.service->engine().skips().size() == 1);
    CHECK(p.service->engine().runs().empty());

    // The alert's notifications show that the runbook did not run, and why.
    std::string note;
    for (const auto& a : p.delivery->groups().alerts()) {
        for (const auto& [name, value] : a.annotations) {
            if (name == runbook_actions_annotation) {
                note = value;
            }
        }
    }
    CHECK_THAT(note, Catch::Contains("cleanup: not run: the alert is silenced by silence-1"));
}

TEST_CASE("metric_recovered wait ends at lower tier", "[runbooks][pipeline]")
{
    constexpr const char* tiered_rules = R"(
groups:
  - name: disk
    rules:
      - alert: DiskFull
        expr: disk_used_pct
        tiers:
          warning: "> 90"
          critical: "> 95"
)";
    constexpr const char* waiting_runbook = R"(
runbooks:
  - name: cleanup
    trigger:
      matchers: ['alertname="DiskFull"']
      min_severity: critical
    steps:
      - name: settle
        wait: {until: metric_recovered}
        timeout: 30m
)";
    pipeline p(tiered_rules, waiting_runbook);
    p.step(t0, {{"h1", 99}});
    p.step(t0 + minute, {{"h1", 99}});
    auto runs = p.service->engine().runs();
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].phase == runbooks::run_phase::running);

    // Down to the warning tier: the alert still fires, but the metric left the critical tier.
    p.step(t0 + 2 * minute, {{"h1", 92}});
    runs = p.service->engine().runs();
    REQUIRE(runs.size() == 1);
    REQUIRE(runs[0].outcome);
    CHECK(*runs[0].outcome == runbooks::run_outcome::succeeded);
    CHECK(runs[0].steps[0].outcome == runbooks::step_outcome::succeeded);
    bool still_firing = false;
    for (const auto& a : p.delivery->groups().alerts()) {
        still_firing = still_firing || (a.labels.get("severity") == "warning" && !a.resolved_at(t0 + 2 * minute));
    }
    CHECK(still_firing);
}
