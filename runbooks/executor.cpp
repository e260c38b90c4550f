#include "runbooks/executor.hpp"

#include <fmt/format.h>

#include "runbooks/systemd_unit.hpp"

namespace tocsin::runbooks {

namespace {

render_context make_render_context(const run_context& ctx)
{
    render_context r;
    r.labels = &ctx.labels;
    r.params = &ctx.book->params;
    r.run_id = ctx.run_id;
    r.runbook = ctx.book->name;
    r.episode_start = ctx.episode_start;
    r.fingerprint = ctx.fingerprint;
    return r;
}

bool has_line_break(std::string_view s)
{
    return s.find_first_of("\r\n") != std::string_view::npos || s.find('\0') != std::string_view::npos;
}

} // namespace

std::string step_job::describe() const
{
    switch (kind) {
    case step_kind::stop:
    case step_kind::restart:
        if (!service.unit.empty()) {
            return fmt::format("{} unit {}{}", to_string(kind), quote_value(service.unit),
                               service.user_bus ? " (user bus)" : "");
        }
        return fmt::format("{} process from pid file {}", to_string(kind), quote_value(service.pid_file));
    case step_kind::exec:
    case step_kind::rollback:
        if (runs_program()) {
            std::string args;
            for (const auto& a : exec.argv) {
                args += args.empty() ? "" : ", ";
                args += quote_value(a);
            }
            std::string env;
            for (const auto& [name, value] : exec.env) {
                env += fmt::format(" {}={}", name, quote_value(value));
            }
            return fmt::format("{} [{}]{}", to_string(kind), args, env.empty() ? "" : " with" + env);
        }
        [[fallthrough]];
    case step_kind::http:
        return fmt::format("{} {} {} with Idempotency-Key {}", to_string(kind), http.request.method,
                           quote_value(http.request.url), http.key);
    case step_kind::notify:
    case step_kind::wait:
        break;
    }
    return to_string(kind);
}

std::optional<std::string> render_text(const run_context& ctx, const arg_template& text, std::string& error)
{
    return text.render(make_render_context(ctx), escape_mode::none, error);
}

std::optional<step_job> render_job(const run_context& ctx, std::size_t step_index, std::string& error)
{
    const step& s = ctx.book->steps.at(step_index);
    const render_context rc = make_render_context(ctx);
    step_job job;
    job.run_id = ctx.run_id;
    job.runbook = ctx.book->name;
    job.step_index = step_index;
    job.step_name = s.name;
    job.kind = s.kind;
    job.uses_http = s.uses_http;
    job.timeout = s.timeout;
    job.service = s.service;
    if (job.runs_program()) {
        job.exec.timeout = s.timeout;
        for (std::size_t i = 0; i < s.exec.argv.size(); ++i) {
            auto value = s.exec.argv[i].render(rc, escape_mode::none, error);
            if (!value) {
                error = fmt::format("argv[{}]: {}", i, error);
                return std::nullopt;
            }
            job.exec.argv.push_back(std::move(*value));
        }
        for (const auto& [name, t] : s.exec.env) {
            auto value = t.render(rc, escape_mode::none, error);
            if (!value) {
                error = fmt::format("env {}: {}", name, error);
                return std::nullopt;
            }
            job.exec.env.emplace_back(name, std::move(*value));
        }
    }
    if (job.calls_http()) {
        auto url = s.http.url.render(rc, escape_mode::url, error);
        if (!url) {
            error = "url: " + error;
            return std::nullopt;
        }
        job.http.request.method = s.http.method;
        job.http.request.url = std::move(*url);
        job.http.request.timeout = s.timeout;
        job.http.request.content_type = s.http.content_type;
        for (const auto& [name, t] : s.http.headers) {
            auto value = t.render(rc, escape_mode::none, error);
            if (!value) {
                error = fmt::format("header {}: {}", name, error);
                return std::nullopt;
            }
            if (has_line_break(*value)) {
                error = fmt::format("header {}: the value would hold a line break", name);
                return std::nullopt;
            }
            job.http.request.headers.emplace_back(name, std::move(*value));
        }
        if (s.http.body) {
            const escape_mode mode = s.http.content_type.find("json") != std::string::npos ? escape_mode::json
                                                                                          : escape_mode::url;
            auto body = s.http.body->render(rc, mode, error);
            if (!body) {
                error = "body: " + error;
                return std::nullopt;
            }
            job.http.request.body = std::move(*body);
        }
        job.http.key = idempotency_key(ctx.book->name, ctx.fingerprint, ctx.episode_start, s.name);
        job.http.attempts = s.http.attempts;
        job.http.backoff = s.http.backoff;
    }
    return job;
}

default_executor::default_executor(executor_options options)
    : options_(std::move(options)), allow_(options_.allowed_programs)
{
}

step_result default_executor::execute(const step_job& job)
{
    step_result result;
    if (job.runs_program()) {
        exec_request request = job.exec;
        request.output_limit = options_.output_limit;
        request.kill_grace = options_.kill_grace;
        const exec_result r = run_program(allow_, request);
        result.outcome = step_outcome::failed;
        if (r.ok()) {
            result.outcome = step_outcome::succeeded;
        } else if (r.timed_out) {
            result.outcome = step_outcome::timed_out;
        }
        result.detail = r.summary();
        result.output = r.out;
        if (!r.err.empty()) {
            result.output += (result.output.empty() ? "" : "\n") + std::string("[stderr]\n") + r.err;
        }
        return result;
    }
    if (job.calls_http()) {
        http_transport& transport = options_.transport ? *options_.transport : own_transport_;
        const http_outcome r = run_http_call(transport, job.http, options_.http_sleep);
        result.outcome = r.ok ? step_outcome::succeeded : step_outcome::failed;
        result.detail = r.detail;
        result.output = r.body;
        return result;
    }
    if (job.kind == step_kind::stop || job.kind == step_kind::restart) {
        service_result r;
        if (!job.service.unit.empty()) {
            r = control_unit({job.service.unit, job.kind == step_kind::restart, job.service.user_bus, job.timeout});
        } else if (job.kind == step_kind::stop) {
            r = stop_by_pid_file(job.service.pid_file, job.timeout, options_.kill_grace);
        } else {
            r = restart_by_pid_file(job.service.pid_file, job.timeout, options_.kill_grace);
        }
        result.outcome = r.ok ? step_outcome::succeeded : step_outcome::failed;
        result.detail = r.detail;
        return result;
    }
    result.detail = fmt::format("{} steps are run by the engine, not by an executor", to_string(job.kind));
    return result;
}

} // namespace tocsin::runbooks
