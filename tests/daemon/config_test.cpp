#include <catch2/catch.hpp>

#include <filesystem>

#include "daemon/config.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

const char* rule_file(const char* alert)
{
    static thread_local std::string text;
    text = std::string("groups:\n  - name: g\n    rules:\n      - alert: ") + alert +
           "\n        expr: up\n        tiers: {warning: '> 1'}\n";
    return text.c_str();
}

std::vector<std::string> errors_of(const diagnostics& diags)
{
    std::vector<std::string> out;
    for (const auto& d : diags.items()) {
        out.push_back(d.to_string());
    }
    return out;
}

} // namespace

TEST_CASE("config loads every section")
{
    test::temp_dir dir;
    dir.write("rules/a.yaml", rule_file("A"));
    dir.write("rules/b.yaml", rule_file("B"));
    dir.write("rules/skip.txt", "not yaml: [");
    dir.write("write.token", "s3cret-write\n");
    dir.write("admin.token", "  s3cret-admin  \n\n");
    dir.write("tls.crt", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n");
    dir.write("tls.key", "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n");
    const auto path = dir.write("tocsin.yaml", R"(listen: 127.0.0.1:19793
state_dir: state
rule_files: ["rules/*.yaml"]
log_level: debug
shutdown_timeout: 30s
limits:
  max_body_bytes: 16MiB
  max_decoded_bytes: 1048576
  max_samples_per_request: 5000
  max_labels_per_series: 32
  max_label_name_bytes: 1KiB
  max_label_value_bytes: 2048
  max_series: 1000
  per_rule_max_alerts: 10
  max_active_alerts: 20
auth:
  write_token_files: [write.token]
  admin_token_files: [admin.token]
tls:
  cert_file: tls.crt
  key_file: tls.key
)");
    diagnostics diags;
    auto config = load_config(path, diags);
    INFO(diags.to_string());
    REQUIRE(config.has_value());
    const auto& m = config->main;
    CHECK(m.path == path);
    CHECK(m.listen_address == "127.0.0.1");
    CHECK(m.listen_port == 19793);
    CHECK(m.state_dir == (dir.path() / "state").string());
    CHECK(m.log_level == "debug");
    CHECK(m.shutdown_timeout == 30s);
    CHECK(m.ingest.max_body_bytes == 16u << 20);
    CHECK(m.ingest.max_decoded_bytes == 1048576);
    CHECK(m.ingest.max_samples_per_request == 5000);
    CHECK(m.ingest.max_labels_per_series == 32);
    CHECK(m.ingest.max_label_name_bytes == 1024);
    CHECK(m.ingest.max_label_value_bytes == 2048);
    CHECK(m.engine.max_series == 1000);
    CHECK(m.engine.per_rule_max_alerts == 10);
    CHECK(m.engine.max_active_alerts == 20);
    CHECK(m.auth.write_tokens == std::vector<std::string>{"s3cret-write"});
    CHECK(m.auth.admin_tokens == std::vector<std::string>{"s3cret-admin"});
    CHECK(m.auth.write_token_files == std::vector<std::string>{(dir.path() / "write.token").string()});
    CHECK(m.tls.enabled());
    CHECK(m.tls.key_file == (dir.path() / "tls.key").string());
    CHECK(m.rule_files == std::vector<std::string>{"rules/*.yaml"});
    REQUIRE(config->rule_file_paths.size() == 2);
    CHECK(config->rule_file_paths[0] == (dir.path() / "rules/a.yaml").string());
    CHECK(config->rule_file_paths[1] == (dir.path() / "rules/b.yaml").string());
    REQUIRE(config->rules);
    CHECK(config->rules->rules.size() == 2);
    CHECK(config->rules->groups.size() == 2);
}

TEST_CASE("config defaults apply to an empty file")
{
    test::temp_dir dir;
    const auto path = dir.write("tocsin.yaml", "");
    diagnostics diags;
    auto config = load_config(path, diags);
    REQUIRE(config.has_value());
    CHECK(config->main.listen_address == "127.0.0.1");
    CHECK(config->main.listen_port == 9793);
    CHECK(config->main.ingest.max_body_bytes == 32u << 20);
    CHECK(config->main.engine.max_future_skew == 10min);
    CHECK(config->main.engine.max_sample_age == 24h);
    CHECK(config->rules->rules.empty());
}

TEST_CASE("config reads the timestamp limits as durations")
{
    test::temp_dir dir;
    auto path = dir.write("tocsin.yaml", "limits: {max_future_skew: 1m30s, max_sample_age: 0s}\n");
    diagnostics diags;
    auto config = load_config(path, diags);
    INFO(diags.to_string());
    REQUIRE(config.has_value());
    CHECK(config->main.engine.max_future_skew == 90s);
    CHECK(config->main.engine.max_sample_age == 0ms);

    path = dir.write("tocsin.yaml", "limits:\n  max_sample_age: 86400\n");
    diagnostics bad;
    CHECK_FALSE(load_config(path, bad).has_value());
    REQUIRE(bad.size() == 1);
    CHECK_THAT(bad.items()[0].to_string(), Catch::Contains(":2:19:") && Catch::Contains("limits.max_sample_age"));
}

TEST_CASE("config parses listen addresses")
{
    test::temp_dir dir;
    auto listen = [&](std::string_view value, std::string& host, std::uint16_t& port) {
        const auto path = dir.write("tocsin.yaml", "listen: '" + std::string(value) + "'\n");
        diagnostics diags;
        auto config = load_config(path, diags);
        if (config) {
            host = config->main.listen_address;
            port = config->main.listen_port;
        }
        return diags.empty() ? std::string() : diags.items()[0].message;
    };
    std::string host;
    std::uint16_t port = 0;
    CHECK(listen("[::1]:9000", host, port).empty());
    CHECK(host == "::1");
    CHECK(port == 9000);
    CHECK(listen("localhost:80", host, port).empty());
    CHECK(host == "localhost");
    CHECK(listen(":9793", host, port).empty());
    CHECK(host == "0.0.0.0");
    CHECK_THAT(listen("127.0.0.1", host, port), Catch::Contains("missing port"));
    CHECK_THAT(listen("127.0.0.1:99999", host, port), Catch::Contains("invalid port \"99999\""));
    CHECK_THAT(listen("::1:9000", host, port), Catch::Contains("must be in brackets"));
    CHECK_THAT(listen("[::g]:9000", host, port), Catch::Contains("invalid IPv6 address"));
    CHECK_THAT(listen("bad host:1", host, port), Catch::Contains("invalid host"));
}

TEST_CASE("config reports a glob that matches nothing")
{
    test::temp_dir dir;
    const auto path = dir.write("tocsin.yaml", "rule_files:\n  - rules/*.yaml\n");
    diagnostics diags;
    CHECK_FALSE(load_config(path, diags).has_value());
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.items()[0].to_string(),
               Catch::StartsWith(path + ":2:5: rule_files entry \"rules/*.yaml\" matches no file"));
}

TEST_CASE("config resolves absolute globs and removes duplicates")
{
    test::temp_dir dir;
    const auto a = dir.write("r/a.yaml", rule_file("A"));
    const auto path = dir.write("tocsin.yaml", "rule_files: ['" + (dir.path() / "r/*.yaml").string() + "', r/a.yaml]\n");
    diagnostics diags;
    auto config = load_config(path, diags);
    INFO(diags.to_string());
    REQUIRE(config.has_value());
    CHECK(config->rule_file_paths == std::vector<std::string>{a});
}

TEST_CASE("config reports rule file errors with their own positions")
{
    test::temp_dir dir;
    const auto bad = dir.write("rules/bad.yaml", "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: 'up >'\n        tiers: {warning: '> 1'}\n");
    const auto path = dir.write("tocsin.yaml", "rule_files: [rules/*.yaml]\n");
    diagnostics diags;
    CHECK_FALSE(load_config(path, diags).has_value());
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.items()[0].to_string(), Catch::StartsWith(bad + ":5:19: invalid expr: comparisons"));
}

TEST_CASE("config rejects duplicate alert names across rule files")
{
    test::temp_dir dir;
    dir.write("rules/a.yaml", rule_file("Same"));
    const auto b = dir.write("rules/b.yaml", rule_file("Same"));
    const auto path = dir.write("tocsin.yaml", "rule_files: [rules/*.yaml]\n");
    diagnostics diags;
    CHECK_FALSE(load_config(path, diags).has_value());
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.items()[0].to_string(), Catch::StartsWith(b + ":4:9: duplicate alert name \"Same\""));
    CHECK_THAT(diags.items()[0].message, Catch::Contains("a.yaml:4:9"));
}

TEST_CASE("config token file problems name the file but not the token")
{
    test::temp_dir dir;
    dir.write("empty.token", "\n  \n");
    dir.write("two.token", "first-secret second-secret\n");
    std::filesystem::create_directory(dir.path() / "folder.token");
    const auto path = dir.write("tocsin.yaml", R"(auth:
  write_token_files: [missing.token, empty.token]
  admin_token_files:
    - two.token
    - folder.token
)");
    diagnostics diags;
    CHECK_FALSE(load_config(path, diags).has_value());
    const auto errors = errors_of(diags);
    REQUIRE(errors.size() == 4);
    CHECK_THAT(errors[0], Catch::StartsWith(path + ":2:23: failed to read token file " + (dir.path() / "missing.token").string() +
                                            ": No such file or directory"));
    CHECK_THAT(errors[1], Catch::StartsWith(path + ":2:38: token file " + (dir.path() / "empty.token").string() + " is empty"));
    CHECK_THAT(errors[2], Catch::StartsWith(path + ":4:7: token file " + (dir.path() / "two.token").string() +
                                            " holds whitespace"));
    CHECK_THAT(errors[3], Catch::Contains("is a folder"));
    for (const auto& e : errors) {
        CHECK_THAT(e, !Catch::Contains("secret"));
    }
}

TEST_CASE("config tls needs both readable PEM files")
{
    test::temp_dir dir;
    dir.write("tls.crt", "-----BEGIN CERTIFICATE-----\n");
    dir.write("plain.key", "not pem\n");
    auto tls_errors = [&](std::string_view tls) {
        const auto path = dir.write("tocsin.yaml", "tls:\n" + std::string(tls));
        diagnostics diags;
        CHECK_FALSE(load_config(path, diags).has_value());
        return errors_of(diags);
    };
    auto only_cert = tls_errors("  cert_file: tls.crt\n");
    REQUIRE(only_cert.size() == 1);
    CHECK_THAT(only_cert[0], Catch::Contains(":2:3: tls needs both cert_file and key_file; key_file is missing"));

    auto missing_key = tls_errors("  cert_file: tls.crt\n  key_file: none.key\n");
    REQUIRE(missing_key.size() == 1);
    CHECK_THAT(missing_key[0], Catch::Contains(":3:13: failed to read tls.key_file"));

    auto not_pem = tls_errors("  cert_file: tls.crt\n  key_file: plain.key\n");
    REQUIRE(not_pem.size() == 1);
    CHECK_THAT(not_pem[0], Catch::Contains("is not in PEM format"));
}

TEST_CASE("config validates sizes and counts")
{
    test::temp_dir dir;
    auto limit = [&](std::string_view line) {
        const auto path = dir.write("tocsin.yaml", "limits:\n  " + std::string(line) + "\n");
        diagnostics diags;
        CHECK_FALSE(load_config(path, diags).has_value());
        REQUIRE(diags.size() == 1);
        return diags.items()[0].to_string();
    };
    CHECK_THAT(limit("max_body_bytes: 32MB"), Catch::Contains(":2:19: ambiguous size unit \"MB\""));
    CHECK_THAT(limit("max_body_bytes: lots"), Catch::Contains("invalid size \"lots\" for limits.max_body_bytes"));
    CHECK_THAT(limit("max_body_bytes: -1"), Catch::Contains("invalid size \"-1\""));
    CHECK_THAT(limit("max_body_bytes: 0"), Catch::Contains("limits.max_body_bytes must be greater than 0"));
    CHECK_THAT(limit("max_decoded_bytes: 99999999999GiB"), Catch::Contains("too large"));
    CHECK_THAT(limit("max_series: 1.5"), Catch::Contains("limits.max_series must be a non-negative integer"));
    CHECK_THAT(limit("max_series: 10KiB"), Catch::Contains("must be a non-negative integer"));
    CHECK_THAT(limit("max_serie: 10"), Catch::Contains("unknown field \"max_serie\" in limits"));

    const auto path = dir.write("tocsin.yaml", "limits: {max_body_bytes: 512 KiB, max_decoded_bytes: 2GiB}\n");
    diagnostics diags;
    auto config = load_config(path, diags);
    REQUIRE(config.has_value());
    CHECK(config->main.ingest.max_body_bytes == 512u * 1024);
    CHECK(config->main.ingest.max_decoded_bytes == std::size_t{2} << 30);
}

TEST_CASE("config reports all errors at once")
{
    test::temp_dir dir;
    const auto path = dir.write("tocsin.yaml", R"(listen: nowhere
log_level: loud
shutdown_timeout: soon
rule_file: [x]
rule_files: [none/*.yaml]
limits: {max_series: 0}
auth: {write_token_files: [missing.token]}
)");
    diagnostics diags;
    CHECK_FALSE(load_config(path, diags).has_value());
    const auto errors = errors_of(diags);
    REQUIRE(errors.size() == 7);
    CHECK_THAT(errors[0], Catch::StartsWith(path + ":4:1: unknown field \"rule_file\" in config; expected one of: listen, "));
    CHECK_THAT(errors[1], Catch::StartsWith(path + ":1:9: missing port in listen address \"nowhere\""));
    CHECK_THAT(errors[2], Catch::StartsWith(path + ":2:12: invalid log_level \"loud\""));
    CHECK_THAT(errors[3], Catch::StartsWith(path + ":3:19: shutdown_timeout: invalid duration \"soon\""));
    CHECK_THAT(errors[4], Catch::StartsWith(path + ":6:22: limits.max_series must be greater than 0"));
    CHECK_THAT(errors[5], Catch::StartsWith(path + ":7:28: failed to read token file"));
    CHECK_THAT(errors[6], Catch::StartsWith(path + ":5:14: rule_files entry \"none/*.yaml\" matches no file"));
}

TEST_CASE("config reports unreadable and malformed files")
{
    test::temp_dir dir;
    diagnostics missing;
    const auto absent = (dir.path() / "absent.yaml").string();
    CHECK_FALSE(load_config(absent, missing).has_value());
    REQUIRE(missing.size() == 1);
    CHECK(missing.items()[0].to_string() == absent + ": failed to read config file: No such file or directory");

    const auto path = dir.write("tocsin.yaml", "listen: [\n");
    diagnostics syntax;
    CHECK_FALSE(load_config(path, syntax).has_value());
    REQUIRE(syntax.size() == 1);
    CHECK_THAT(syntax.items()[0].to_string(), Catch::StartsWith(path + ":2:1: invalid YAML"));

    const auto list = dir.write("list.yaml", "- a\n");
    diagnostics not_map;
    CHECK_FALSE(load_config(list, not_map).has_value());
    REQUIRE(not_map.size() == 1);
    CHECK_THAT(not_map.items()[0].to_string(), Catch::StartsWith(list + ":1:1: the config file must be a mapping"));
}

TEST_CASE("config rejects a token file that is a device")
{
    test::temp_dir dir;
    dir.write("rules.yaml", "groups: []\n");
    auto path = dir.write("tocsin.yaml", "state_dir: ./state\nrule_files: [rules.yaml]\n"
                                         "auth:\n  write_token_files: [/dev/zero]\n");
    diagnostics diags;
    CHECK_FALSE(load_config(path, diags).has_value());
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.items()[0].to_string(), Catch::Contains("/dev/zero") && Catch::Contains("character device"));
}

namespace {

constexpr const char* runbook_text = R"(runbooks:
  - name: rollback
    trigger: {matchers: ['alertname="ModelAucDrift"']}
    steps:
      - name: roll-back
        exec: {argv: [PROGRAM]}
      - name: tell
        notify: {receiver: RECEIVER, text: rolled back}
)";

std::string runbook_with(const std::string& program, const std::string& receiver)
{
    std::string text = runbook_text;
    text.replace(text.find("PROGRAM"), 7, program);
    text.replace(text.find("RECEIVER"), 8, receiver);
    return text;
}

std::string config_with_runbooks(const std::string& runbooks_section)
{
    return "route: {receiver: oncall}\n"
           "receivers:\n"
           "  - name: oncall\n"
           "  - name: data-scientists\n"
           "runbooks:\n" +
           runbooks_section;
}

} // namespace

TEST_CASE("config loads runbooks and their settings")
{
    test::temp_dir dir;
    const std::string program = dir.write("rollback.sh", "#!/bin/sh\nexit 0\n");
    std::filesystem::permissions(program, std::filesystem::perms::owner_all);
    dir.write("runbooks/rollback.yaml", runbook_with(program, "data-scientists"));
    const std::string path = dir.write(
        "tocsin.yaml", config_with_runbooks("  files: [runbooks/*.yaml]\n"
                                       "  allowed_programs: [" + program + "]\n"
                                       "  dry_run: true\n"
                                       "  output_limit: 8KiB\n"
                                       "  forget_after: 3d\n"
                                       "  default_receiver: oncall\n"));
    diagnostics diags;
    auto loaded = load_config(path, diags);
    INFO(diags.to_string());
    REQUIRE(loaded);
    REQUIRE(loaded->runbooks.size() == 1);
    CHECK(loaded->runbooks[0].name == "rollback");
    CHECK(loaded->runbooks[0].definition_hash.size() == 64);
    const auto& r = loaded->main.runbooks;
    CHECK(r.dry_run);
    CHECK(r.output_limit == 8 * 1024);
    CHECK(r.forget_after == std::chrono::hours(72));
    CHECK(r.default_receiver == "oncall");
    CHECK(r.allowed_programs == std::vector<std::string>{program});
}

TEST_CASE("config rejects runbooks that could not run")
{
    test::temp_dir dir;
    const std::string program = dir.write("rollback.sh", "#!/bin/sh\nexit 0\n");
    std::filesystem::permissions(program, std::filesystem::perms::owner_all);
    const std::string data_file = dir.write("notes.txt", "not a program\n");
    std::filesystem::create_directory(dir.path() / "bin");

    struct bad_case {
        std::string runbook;
        std::string section;
        std::string expected;
    };
    const std::vector<bad_case> cases = {
        {runbook_with(program, "nobody"), "  files: [rb.yaml]\n  allowed_programs: [" + program + "]\n",
         "receiver \"nobody\" is not a receiver of the main config; configured: oncall, data-scientists"},
        {runbook_with(program, "oncall"), "  files: [rb.yaml]\n",
         "is not in the allowlist"},
        {runbook_with(program, "oncall"), "  files: [rb.yaml]\n  allowed_programs: [/no/such/program]\n",
         "runbooks.allowed_programs entry \"/no/such/program\" cannot be used"},
        {runbook_with(program, "oncall"), "  files: [rb.yaml]\n  allowed_programs: [" + (dir.path() / "bin").string() + "]\n",
         "is not an executable file"},
        {runbook_with(program, "oncall"), "  files: [rb.yaml]\n  allowed_programs: [" + data_file + "]\n",
         "is not an executable file"},
        {runbook_with(program, "oncall"), "  files: [rb.yaml]\n  allowed_programs: [" + program + "]\n  colour: red\n",
         "colour"},
        {runbook_with(program, "oncall"), "  files: [rb.yaml]\n  allowed_programs: [" + program + "]\n  output_limit: 10\n",
         "runbooks.output_limit 10 bytes is out of range"},
        {runbook_with(program, "oncall"), "  files: [rb.yaml]\n  allowed_programs: [" + program + "]\n  forget_after: 5m\n",
         "runbooks.forget_after must be at least 1h"},
        {runbook_with(program, "oncall"), "  files: [missing/*.yaml]\n",
         "runbooks.files entry \"missing/*.yaml\" matches no file"},
        {runbook_with(program, "oncall"),
         "  files: [rb.yaml, rb-copy.yaml]\n  allowed_programs: [" + program + "]\n",
         "runbook name \"rollback\" is used twice"},
        {runbook_with(program, "oncall"),
         "  files: [rb.yaml]\n  allowed_programs: [" + program + "]\n  default_receiver: pager\n",
         "runbooks.default_receiver \"pager\" is not a receiver"},
    };
    for (const auto& c : cases) {
        INFO(c.section);
        dir.write("rb.yaml", c.runbook);
        dir.write("rb-copy.yaml", c.runbook);
        const std::string path = dir.write("tocsin.yaml", config_with_runbooks(c.section));
        diagnostics diags;
        CHECK_FALSE(load_config(path, diags));
        CHECK_THAT(diags.to_string(), Catch::Contains(c.expected));
    }
}
