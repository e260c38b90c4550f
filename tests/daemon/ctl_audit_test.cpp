// tocsinctl audit verify and show on real audit log files.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "daemon/ctl_audit.hpp"
#include "runbooks/audit.hpp"
#include "support/test_support.hpp"

using namespace tocsin;

namespace {

constexpr time_ms t0 = 1'700'000'000'000;

std::string write_log(const test::temp_dir& dir, manual_clock& clock)
{
    const std::string path = (dir.path() / "audit.jsonl").string();
    std::string error;
    auto log = runbooks::audit_log::open(path, clock, error);
    REQUIRE(log);
    log->append("run_started", "tocsin", {{"run_id", "r1"}, {"runbook", "rollback"}});
    clock.set_ms(t0 + 60'000);
    log->append("step", "tocsin", {{"run_id", "r1"}, {"step", "stop-canary"}, {"outcome", "succeeded"}});
    clock.set_ms(t0 + 3'600'000);
    log->append("approval", "alice", {{"run_id", "r2"}, {"state", "approved"}});
    return path;
}

audit_command on(const std::string& path)
{
    audit_command cmd;
    cmd.path = path;
    return cmd;
}

} // namespace

TEST_CASE("audit verify passes an intact log and names the first edited record")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const std::string path = write_log(dir, clock);
    std::ostringstream out;
    std::ostringstream err;
    CHECK(run_audit_verify(on(path), out, err) == 0);
    CHECK(out.str() == "ok: 3 records, chain intact\n");

    std::string text;
    {
        std::ifstream in(path);
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    const auto pos = text.find("stop-canary");
    REQUIRE(pos != std::string::npos);
    text.replace(pos, 11, "stop-server");
    std::ofstream(path, std::ios::trunc) << text;
    std::ostringstream out2;
    std::ostringstream err2;
    CHECK(run_audit_verify(on(path), out2, err2) == 1);
    CHECK(err2.str().find("line 2: record 2 was edited") != std::string::npos);
    CHECK(err2.str().find("1 records before it are intact") != std::string::npos);

    std::ostringstream out3;
    std::ostringstream err3;
    CHECK(run_audit_show(on(path), t0, out3, err3) == 1);
    CHECK(out3.str().empty());
}

TEST_CASE("audit show filters by kind, run and period")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const std::string path = write_log(dir, clock);
    const time_ms now = t0 + 3'600'000;

    audit_command by_run = on(path);
    by_run.run_id = "r1";
    std::ostringstream out;
    std::ostringstream err;
    REQUIRE(run_audit_show(by_run, now, out, err) == 0);
    CHECK(out.str().find("run_started") != std::string::npos);
    CHECK(out.str().find("stop-canary") != std::string::npos);
    CHECK(out.str().find("alice") == std::string::npos);

    audit_command recent = on(path);
    recent.since = "30m";
    recent.json = true;
    std::ostringstream out2;
    REQUIRE(run_audit_show(recent, now, out2, err) == 0);
    CHECK(out2.str().find("\"actor\":\"alice\"") != std::string::npos);
    CHECK(out2.str().find("run_started") == std::string::npos);

    audit_command kinds = on(path);
    kinds.kinds = {"step", "approval"};
    std::ostringstream out3;
    REQUIRE(run_audit_show(kinds, now, out3, err) == 0);
    const std::string listed = out3.str();
    CHECK(std::count(listed.begin(), listed.end(), '\n') == 3); // a header and two records
    CHECK(listed.starts_with("   SEQ  TIME"));

    audit_command bad = on(path);
    bad.since = "yesterday";
    std::ostringstream out4;
    std::ostringstream err4;
    CHECK(run_audit_show(bad, now, out4, err4) == 2);
    CHECK(err4.str().find("invalid --since \"yesterday\"") != std::string::npos);

    audit_command typo = on(path);
    typo.kinds = {"steps"};
    std::ostringstream err6;
    CHECK(run_audit_show(typo, now, out4, err6) == 2);
    CHECK(err6.str().find("unknown --kind \"steps\"; expected one of acknowledgement, approval,") != std::string::npos);

    std::filesystem::remove(path + ".head");
    std::ostringstream out7;
    std::ostringstream err7;
    CHECK(run_audit_verify(on(path), out7, err7) == 0);
    CHECK(err7.str().find(".head is missing") != std::string::npos);

    std::ostringstream err5;
    CHECK(run_audit_verify(on((dir.path() / "missing.jsonl").string()), out4, err5) == 2);
    CHECK(err5.str().find("cannot read the audit log") != std::string::npos);
}
