#include <catch2/catch.hpp>

#include "runbooks/arg_template.hpp"
#include "runbooks/executor.hpp"
#include "runbooks/loader.hpp"
#include "runbooks/process.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;

namespace {

const std::string strict = "^[a-z0-9][a-z0-9-]{0,62}$";

std::vector<param> params_with(const std::string& pattern)
{
    std::string error;
    auto p = make_param("model", pattern, error);
    REQUIRE(p);
    return {*p};
}

arg_template parse(std::string_view source, const std::vector<param>& params)
{
    arg_template t;
    std::string error;
    INFO(error);
    REQUIRE(arg_template::parse(source, params, t, error));
    return t;
}

std::optional<std::string> render(const arg_template& t, const std::vector<param>& params, std::string_view value,
                                  std::string& error, escape_mode mode = escape_mode::none)
{
    label_set labels({{"alertname", "A"}, {"model", std::string(value)}});
    render_context ctx;
    ctx.labels = &labels;
    ctx.params = &params;
    ctx.run_id = "r0123";
    ctx.runbook = "rb";
    ctx.episode_start = 1'714'564'800'123;
    ctx.fingerprint = 0xabc;
    return t.render(ctx, mode, error);
}

const std::vector<std::string> hostile = {
    "x; rm -rf /", "$(reboot)", "`reboot`", "-rf", "--help", "a\nb", std::string("a\0b", 3), "a b", "../../etc",
    "x|y", "x&&y", "",
};

} // namespace

TEST_CASE("run fields render")
{
    const auto params = params_with(strict);
    auto t = parse("{{ $runbook.name }}/{{$run.id}}/{{ $episode.start }}/{{ $alert.fingerprint }}/{{ $labels.model }}",
                   params);
    std::string error;
    auto out = render(t, params, "fraud-v2", error);
    REQUIRE(out);
    CHECK(*out == "rb/r0123/2024-05-01T12:00:00.123Z/0000000000000abc/fraud-v2");
}

TEST_CASE("strict pattern rejects hostile values")
{
    const auto params = params_with(strict);
    auto t = parse("{{ $labels.model }}", params);
    for (const auto& value : hostile) {
        INFO(quote_value(value));
        std::string error;
        CHECK_FALSE(render(t, params, value, error));
        CHECK_THAT(error, Catch::Contains("label model"));
    }
    std::string error;
    CHECK_FALSE(render(t, params, "x; rm -rf /", error));
    CHECK_THAT(error, Catch::Contains("\"x; rm -rf /\" does not match the pattern"));
    CHECK_FALSE(render(t, params, "a\nb", error));
    CHECK_THAT(error, Catch::Contains("\"a\\nb\""));
}

TEST_CASE("absent label is an error")
{
    const auto params = params_with(".*");
    auto t = parse("{{ $labels.model }}", params);
    std::string error;
    CHECK_FALSE(render(t, params, "", error));
    CHECK_THAT(error, Catch::Contains("absent"));
}

TEST_CASE("NUL byte is always rejected")
{
    const auto params = params_with("(?s).*");
    auto t = parse("{{ $labels.model }}", params);
    std::string error;
    CHECK_FALSE(render(t, params, std::string("a\0b", 3), error));
    CHECK_THAT(error, Catch::Contains("NUL"));
}

TEST_CASE("permissive pattern passes one literal argument")
{
    const std::vector<std::string> allowed = {"x; rm -rf /", "$(reboot)", "`reboot`", "-rf", "a\nb", "a b", "*"};
    diagnostics diags;
    auto books = load_runbook_text(R"(runbooks:
  - name: echo
    trigger: {matchers: ['alertname="A"']}
    params: {model: '(?s).+'}
    steps:
      - name: print
        exec: {argv: [/usr/bin/printf, '<%s>|', '{{ $labels.model }}', 'tail-{{ $labels.model }}']}
)",
                                   "rb.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    program_allowlist allow({"/usr/bin/printf"});
    for (const auto& value : allowed) {
        INFO(quote_value(value));
        run_context ctx;
        ctx.run_id = "r1";
        ctx.book = &books[0];
        ctx.labels = label_set({{"alertname", "A"}, {"model", value}});
        std::string error;
        auto job = render_job(ctx, 0, error);
        REQUIRE(job);
        REQUIRE(job->exec.argv.size() == 4);
        CHECK(job->exec.argv[2] == value);
        exec_request request = job->exec;
        request.timeout = std::chrono::seconds(10);
        auto result = run_program(allow, request);
        INFO(result.summary() << " " << result.err);
        REQUIRE(result.ok());
        CHECK(result.out == "<" + value + ">|<tail-" + value + ">|");
    }
}

TEST_CASE("url and JSON escaping")
{
    const auto params = params_with("(?s).+");
    auto url = parse("http://h/m/{{ $labels.model }}", params);
    std::string error;
    CHECK(render(url, params, "a b/../c?d", error, escape_mode::url) == "http://h/m/a%20b%2F..%2Fc%3Fd");
    auto body = parse(R"({"model": "{{ $labels.model }}"})", params);
    CHECK(render(body, params, "x\", \"admin\": true, \"y\": \"\n", error, escape_mode::json) ==
          R"({"model": "x\", \"admin\": true, \"y\": \"\n"})");
}
