#pragma once
// The runbook model: what runs when an alert fires, under which guards. Loaded from YAML by
// runbooks/loader.hpp; the format is described in docs/RUNBOOKS.md.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rules/matcher.hpp"
#include "rules/rule.hpp"
#include "runbooks/arg_template.hpp"

namespace tocsin::runbooks {

using std::chrono::milliseconds;

// The alert transition a runbook reacts to.
enum class trigger_on { firing, resolved, escalation };

struct trigger_spec {
    std::vector<label_matcher> matchers; // all must match the alert's labels
    std::optional<severity> min_severity; // compared with the alert's severity label
    trigger_on on = trigger_on::firing;
    int escalation_level = 0; // for trigger_on::escalation: the level (1 = first escalation)
};

enum class step_kind { stop, restart, exec, rollback, http, notify, wait };

enum class failure_policy { abort, continue_run, escalate };

enum class interrupt_policy { resume, abort_and_escalate };

enum class wait_condition { resolved, metric_recovered };

// stop / restart: a systemd unit or a process named by its pid file.
struct service_target {
    std::string unit;      // a systemd unit name such as canary.service
    std::string pid_file;  // an absolute path
    bool user_bus = false; // unit on the user manager instead of the system manager
};

// exec, and rollback without http: the program (a literal absolute path) and its arguments.
struct exec_spec {
    std::vector<arg_template> argv;                        // argv[0] is literal
    std::vector<std::pair<std::string, arg_template>> env; // added to the scrubbed environment
};

// http, and rollback with http. The Idempotency-Key header is always set by the executor.
struct http_spec {
    std::string method = "POST";
    arg_template url; // scheme, host and port are literal
    std::vector<std::pair<std::string, arg_template>> headers;
    std::optional<arg_template> body; // values inserted as JSON string content
    std::string content_type = "application/json";
    int attempts = 3;           // tries in all, retried on 5xx, timeouts and connection errors
    milliseconds backoff{1000}; // doubled after each retry
};

struct notify_spec {
    std::string receiver; // a receiver name of the daemon's routing configuration
    arg_template text;
};

struct wait_spec {
    wait_condition until = wait_condition::resolved;
};

struct step {
    std::string name;
    step_kind kind = step_kind::exec;
    milliseconds timeout{60'000};
    failure_policy on_failure = failure_policy::abort;
    std::string escalate_to; // receiver for failure_policy::escalate; empty: the runbook's
    int line = 0;            // 1-based line in the runbook file

    service_target service; // stop, restart
    exec_spec exec;         // exec; rollback when !uses_http
    http_spec http;         // http; rollback when uses_http
    bool uses_http = false; // for rollback: true when it is an HTTP call
    notify_spec notify;
    wait_spec wait;

    // True when re-running the step after a crash cannot repeat its effect: an HTTP call (the
    // receiver deduplicates by Idempotency-Key) or a wait.
    bool safe_to_rerun() const { return kind == step_kind::wait || kind == step_kind::http || (kind == step_kind::rollback && uses_http); }
};

struct approval_spec {
    std::size_t before_step = 0; // index of the step that needs approval
    std::string before_name;
    milliseconds timeout{3'600'000};
};

struct runbook {
    std::string name;
    std::string file;
    int line = 0;
    trigger_spec trigger;
    bool dry_run = false;
    milliseconds cooldown_per_alert{0};   // since the last run's start for the same alert
    milliseconds cooldown_per_runbook{0}; // since the last run's start of this runbook
    std::uint64_t max_runs = 0;           // 0: no limit
    milliseconds max_runs_window{0};
    std::uint32_t concurrency = 1;        // runs of this runbook active at once; more wait in a queue
    std::optional<approval_spec> approval;
    std::vector<param> params;
    interrupt_policy on_interrupt = interrupt_policy::abort_and_escalate;
    std::string escalate_to; // receiver for escalations; empty: the daemon's default
    std::vector<step> steps;
    // SHA-256 of the steps and params as written (YAML re-emitted, so layout and comments do
    // not count). A run started under another definition is not resumed after a restart or
    // reload.
    std::string definition_hash;
};

const char* to_string(trigger_on on);
const char* to_string(step_kind kind);
const char* to_string(failure_policy policy);
const char* to_string(interrupt_policy policy);
const char* to_string(wait_condition until);

} // namespace tocsin::runbooks
