#include <catch2/catch.hpp>

#include <algorithm>

#include "runbooks/loader.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;
using namespace std::chrono_literals;

namespace {

std::vector<runbook> load_ok(std::string_view text)
{
    diagnostics diags;
    auto books = load_runbook_text(text, "rb.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    return books;
}

std::string load_errors(std::string_view text)
{
    diagnostics diags;
    load_runbook_text(text, "rb.yaml", diags);
    return diags.to_string();
}

// One runbook with the given steps (each line indented by 6 spaces in the file).
std::string with_steps(std::string_view steps, std::string_view extra = "")
{
    return "runbooks:\n"
           "  - name: rb\n"
           "    trigger: {matchers: ['alertname=\"A\"']}\n"
           "    params: {model: '^[a-z0-9][a-z0-9-]{0,62}$'}\n" +
           std::string(extra) + "    steps:\n" + std::string(steps);
}

} // namespace

TEST_CASE("complete runbook loads")
{
    auto books = load_ok(R"(runbooks:
  - name: model-rollback
    trigger:
      matchers: ['alertname=~"ModelAucDrift|ModelLatencyHigh"', 'team="ml"']
      min_severity: critical
      on: firing
    dry_run: true
    cooldown: {per_alert: 1h, per_runbook: 10m}
    max_runs: {count: 3, window: 24h}
    concurrency: 2
    approval: {required_before: rollback, timeout: 15m}
    params:
      model: '^[a-z0-9][a-z0-9-]{0,62}$'
    on_interrupt: resume
    escalate_to: ml-oncall
    steps:
      - name: stop-canary
        stop: {pid_file: /run/canary.pid}
        timeout: 30s
      - name: restart-unit
        restart: {unit: canary.service, user_bus: true}
        on_failure: continue
      - name: rollback
        rollback:
          exec: {argv: [/opt/rollback, '{{ $labels.model }}'], env: {RUN: '{{ $run.id }}'}}
        on_failure: escalate
        escalate_to: ds-oncall
      - name: deploy-api
        rollback:
          http:
            method: POST
            url: 'http://127.0.0.1:9000/models/{{ $labels.model }}/rollback'
            headers: {X-Run: '{{ $run.id }}'}
            body: '{"model": "{{ $labels.model }}"}'
            attempts: 4
            backoff: 100ms
      - name: ping
        http: {url: 'http://127.0.0.1:9000/ping', method: GET}
      - name: tell
        notify: {receiver: data-scientists, text: 'rolled back {{ $labels.model }}'}
      - name: settle
        wait: {until: metric_recovered}
        timeout: 30m
)");
    REQUIRE(books.size() == 1);
    const runbook& rb = books[0];
    CHECK(rb.name == "model-rollback");
    CHECK(rb.trigger.matchers.size() == 2);
    CHECK(rb.trigger.min_severity == severity::critical);
    CHECK(rb.trigger.on == trigger_on::firing);
    CHECK(rb.dry_run);
    CHECK(rb.cooldown_per_alert == 1h);
    CHECK(rb.cooldown_per_runbook == 10min);
    CHECK(rb.max_runs == 3);
    CHECK(rb.max_runs_window == 24h);
    CHECK(rb.concurrency == 2);
    REQUIRE(rb.approval);
    CHECK(rb.approval->before_step == 2);
    CHECK(rb.approval->timeout == 15min);
    CHECK(rb.on_interrupt == interrupt_policy::resume);
    CHECK(rb.escalate_to == "ml-oncall");
    REQUIRE(rb.steps.size() == 7);
    CHECK(rb.steps[0].kind == step_kind::stop);
    CHECK(rb.steps[0].service.pid_file == "/run/canary.pid");
    CHECK(rb.steps[0].timeout == 30s);
    CHECK(rb.steps[1].service.unit == "canary.service");
    CHECK(rb.steps[1].service.user_bus);
    CHECK(rb.steps[1].on_failure == failure_policy::continue_run);
    CHECK(rb.steps[2].kind == step_kind::rollback);
    CHECK_FALSE(rb.steps[2].uses_http);
    CHECK(rb.steps[2].exec.argv.size() == 2);
    CHECK(rb.steps[2].exec.env.size() == 1);
    CHECK(rb.steps[2].escalate_to == "ds-oncall");
    CHECK_FALSE(rb.steps[2].safe_to_rerun());
    CHECK(rb.steps[3].uses_http);
    CHECK(rb.steps[3].http.attempts == 4);
    CHECK(rb.steps[3].http.backoff == 100ms);
    CHECK(rb.steps[3].safe_to_rerun());
    CHECK(rb.steps[4].http.method == "GET");
    CHECK(rb.steps[5].notify.receiver == "data-scientists");
    CHECK(rb.steps[6].wait.until == wait_condition::metric_recovered);
    CHECK(rb.steps[6].timeout == 30min);
}

TEST_CASE("example runbook loads")
{
    diagnostics diags;
    auto books = load_runbook_file(std::string(TOCSIN_SOURCE_DIR) + "/examples/runbooks/model-rollback.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    REQUIRE(books.size() == 1);
    CHECK(books[0].steps.size() == 4);
    CHECK(books[0].steps[0].kind == step_kind::stop);
    CHECK(books[0].steps[1].kind == step_kind::rollback);
    CHECK(books[0].steps[2].kind == step_kind::notify);
}

TEST_CASE("escalation trigger needs level")
{
    auto books = load_ok(R"(runbooks:
  - name: rb
    trigger: {matchers: ['alertname="A"'], on: escalation, level: 2}
    steps: [{name: s, notify: {receiver: r, text: hi}}]
)");
    CHECK(books[0].trigger.escalation_level == 2);
    CHECK_THAT(load_errors(R"(runbooks:
  - name: rb
    trigger: {matchers: ['alertname="A"'], on: escalation}
    steps: [{name: s, notify: {receiver: r, text: hi}}]
)"),
               Catch::Contains("needs the escalation level"));
    CHECK_THAT(load_errors(R"(runbooks:
  - name: rb
    trigger: {matchers: ['alertname="A"'], level: 1}
    steps: [{name: s, notify: {receiver: r, text: hi}}]
)"),
               Catch::Contains("applies only with on: escalation"));
}

TEST_CASE("invalid runbooks name value and fix")
{
    struct bad_case {
        std::string text;
        std::string expected;
    };
    const std::vector<bad_case> cases = {
        {with_steps("      - name: s\n        exec: '/bin/rm -rf /tmp/x'\n"), "not a command line: no shell runs it"},
        {with_steps("      - name: s\n        exec: {argv: [rm, x]}\n"), "must be an absolute path"},
        {with_steps("      - name: s\n        exec: {argv: ['{{ $labels.model }}']}\n"),
         "must be a literal program path"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/echo, '{{ $labels.host }}']}\n"),
         "label host is not declared under params"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/echo, '{{ $value }}']}\n"), "unknown placeholder"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/echo, '{{ $labels.model ']}\n"),
         "without a closing"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/echo], env: {LD_PRELOAD: /x.so}}\n"),
         "LD_PRELOAD may not be set"},
        {with_steps("      - name: s\n        stop: {pid_file: run/x.pid}\n"), "must be an absolute path"},
        {with_steps("      - name: s\n        stop: {unit: 'canary; reboot'}\n"), "invalid unit"},
        {with_steps("      - name: s\n        stop: {unit: a.service, pid_file: /x}\n"), "exactly one of unit"},
        {with_steps("      - name: s\n        http: {url: 'ftp://x/'}\n"), "must start with http:// or https://"},
        {with_steps("      - name: s\n        http: {url: 'http://{{ $labels.model }}/x'}\n"),
         "scheme, host and port must be literal"},
        {with_steps("      - name: s\n        http: {url: 'http://h/x', headers: {Idempotency-Key: k}}\n"),
         "is set by tocsin"},
        {with_steps("      - name: s\n        http: {url: 'http://h/x', method: TRACE}\n"), "invalid method"},
        {with_steps("      - name: s\n        wait: {until: resolved}\n"), "give it a timeout"},
        {with_steps("      - name: s\n        wait: {until: later}\n        timeout: 1m\n"), "invalid wait.until"},
        {with_steps("      - name: s\n        notify: {receiver: r}\n"), "missing field \"text\" in notify"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n        on_failure: retry\n"),
         "expected abort, continue or escalate"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n        http: {url: 'http://h/'}\n"),
         "exactly one of"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n      - name: s\n        exec: {argv: "
                    "[/bin/true]}\n"),
         "duplicate step name"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n",
                    "    approval: {required_before: nope}\n"),
         "approval.required_before names no step: \"nope\"; expected one of: s"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n", "    on_interrupt: retry\n"),
         "expected resume or abort_and_escalate"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n", "    max_runs: {count: 3}\n"),
         "needs both count and window"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n", "    concurrency: 0\n"),
         "concurrency must be between 1 and 1000"},
        {with_steps("      - name: s\n        exec: {argv: [/bin/true]}\n", "    cooldown: soon\n"), "cooldown"},
        {"runbooks:\n  - name: rb\n    trigger: {matchers: []}\n    steps: [{name: s, exec: {argv: [/bin/true]}}]\n",
         "would run for every alert"},
        {"runbooks:\n  - name: rb\n    trigger: {matchers: ['alertname=~\"(\"']}\n    steps: [{name: s, exec: {argv: "
         "[/bin/true]}}]\n",
         "invalid matcher"},
        {"runbooks:\n  - name: rb\n    params: {model: '(['}\n    trigger: {matchers: ['a=\"b\"']}\n    steps: "
         "[{name: s, exec: {argv: [/bin/true]}}]\n",
         "params.model: pattern \"([\" does not compile"},
        {"runbooks:\n  - name: rb\n    trigger: {matchers: ['a=\"b\"'], min_severity: huge}\n    steps: [{name: s, "
         "exec: {argv: [/bin/true]}}]\n",
         "expected info, warning, critical or page"},
        {"runbooks:\n  - name: rb\n    trigger: {matchers: ['a=\"b\"']}\n    stesp: []\n", "unknown field \"stesp\""},
        {"runbooks:\n  - name: 'rb x'\n    trigger: {matchers: ['a=\"b\"']}\n    steps: [{name: s, exec: {argv: "
         "[/bin/true]}}]\n",
         "invalid runbook name \"rb x\""},
        {"runbooks: [{name: a, trigger: {matchers: ['a=\"b\"']}, steps: [{name: s, exec: {argv: [/bin/true]}}]}, "
         "{name: a, trigger: {matchers: ['a=\"b\"']}, steps: [{name: s, exec: {argv: [/bin/true]}}]}]\n",
         "duplicate runbook name"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        const std::string errors = load_errors(c.text);
        CHECK_THAT(errors, Catch::Contains(c.expected));
        CHECK_THAT(errors, Catch::StartsWith("rb.yaml:"));
    }
}

TEST_CASE("errors carry line and column")
{
    const std::string errors = load_errors(with_steps("      - name: s\n        stop: {pid_file: relative.pid}\n"));
    CHECK_THAT(errors, Catch::StartsWith("rb.yaml:7:"));
}

TEST_CASE("unlisted programs are reported")
{
    test::temp_dir dir;
    const std::string tool = dir.write("tool.sh", "#!/bin/sh\nexit 0\n");
    std::filesystem::permissions(tool, std::filesystem::perms::owner_all);
    const auto link = dir.path() / "link.sh";
    std::filesystem::create_symlink(tool, link);
    auto books = load_ok(with_steps("      - name: a\n        exec: {argv: [" + link.string() +
                                    "]}\n      - name: b\n        exec: {argv: [/bin/echo]}\n"));
    diagnostics diags;
    check_programs(books, {tool}, diags);
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.to_string(), Catch::Contains("step b") && Catch::Contains("not in the allowlist"));
}
