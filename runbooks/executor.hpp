#pragma once
// From a runbook step to something that runs: the engine renders a step into a step_job (all
// templates filled in and checked), and a step_executor runs the job and reports a step_result.
//
// notify and wait steps never reach an executor: the engine handles them through its hooks
// (runbooks/engine.hpp). A step_executor runs stop, restart, exec, rollback and http.

#include <functional>
#include <optional>
#include <string>

#include "runbooks/http_step.hpp"
#include "runbooks/model.hpp"
#include "runbooks/outcome.hpp"
#include "runbooks/process.hpp"

namespace tocsin::runbooks {

struct step_job {
    std::string run_id;
    std::string runbook;
    std::size_t step_index = 0;
    std::string step_name;
    step_kind kind = step_kind::exec;
    bool uses_http = false;  // rollback by http
    milliseconds timeout{60'000};
    exec_request exec;       // exec, rollback by exec
    service_target service;  // stop, restart
    http_call http;          // http, rollback by http (key set)

    bool runs_program() const { return kind == step_kind::exec || (kind == step_kind::rollback && !uses_http); }
    bool calls_http() const { return kind == step_kind::http || (kind == step_kind::rollback && uses_http); }
    // One line for logs, dry runs and the audit log: `exec ["/opt/rollback", "fraud-v2"]`.
    std::string describe() const;
};

struct step_result {
    step_outcome outcome = step_outcome::failed;
    std::string detail; // one line: "exited with status 3", "attempt 1: 500; attempt 2: 200"
    std::string output; // captured stdout and stderr, or the HTTP response body, already cut to size
};

// Run data that templates can refer to.
struct run_context {
    std::string run_id;
    const runbook* book = nullptr;
    label_set labels;
    std::uint64_t fingerprint = 0;
    time_ms episode_start = 0;
};

// Fills in a step's templates. Returns nullopt and an `error` naming the value and the pattern
// when a label value is refused; the step must then fail without running. Not for notify and
// wait steps.
std::optional<step_job> render_job(const run_context& ctx, std::size_t step_index, std::string& error);

// Renders a notify step's text.
std::optional<std::string> render_text(const run_context& ctx, const arg_template& text, std::string& error);

// Runs jobs. execute() blocks until the step ends and may be called from a worker thread; it
// must be safe to call for several jobs at once.
class step_executor {
public:
    virtual ~step_executor() = default;
    virtual step_result execute(const step_job& job) = 0;
};

struct executor_options {
    std::vector<std::string> allowed_programs; // absolute paths; see program_allowlist
    std::size_t output_limit = 64 * 1024;
    milliseconds kill_grace{2'000};            // SIGTERM to SIGKILL, for exec and stop
    http_transport* transport = nullptr;       // nullptr: an httplib_transport owned by the executor
    std::function<void(milliseconds)> http_sleep; // between HTTP retries; empty: sleep
};

// The real thing: fork/exec, pid files, sd-bus and HTTP.
class default_executor final : public step_executor {
public:
    explicit default_executor(executor_options options);
    step_result execute(const step_job& job) override;

private:
    executor_options options_;
    program_allowlist allow_;
    httplib_transport own_transport_;
};

} // namespace tocsin::runbooks
