#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "runbooks/audit.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;

namespace {

constexpr time_ms t0 = 1'714'564'800'000;

std::vector<std::string> read_lines(const std::string& path)
{
    std::ifstream in(path);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        lines.push_back(line);
    }
    return lines;
}

void write_lines(const std::string& path, const std::vector<std::string>& lines, bool final_newline = true)
{
    std::ofstream out(path, std::ios::trunc | std::ios::binary);
    for (std::size_t i = 0; i < lines.size(); ++i) {
        out << lines[i];
        if (i + 1 < lines.size() || final_newline) {
            out << '\n';
        }
    }
}

// A log of five records: run r1 started, two steps, an approval by alice, run r2 started.
std::string make_log(const test::temp_dir& dir, manual_clock& clock)
{
    const std::string path = (dir.path() / "audit.jsonl").string();
    std::string error;
    auto log = audit_log::open(path, clock, error);
    REQUIRE(log);
    log->append("run_started", "tocsin", {{"run_id", "r1"}, {"runbook", "rollback"}});
    clock.advance_ms(1000);
    log->append("step", "tocsin", {{"run_id", "r1"}, {"step", "stop-canary"}, {"outcome", "succeeded"}});
    clock.advance_ms(1000);
    log->append("approval", "alice", {{"run_id", "r1"}, {"state", "approved"}});
    clock.advance_ms(1000);
    log->append("step", "tocsin", {{"run_id", "r1"}, {"step", "roll-back"}, {"text", "Ünïcode \"quoted\""}});
    clock.advance_ms(1000);
    log->append("run_started", "tocsin", {{"run_id", "r2"}, {"runbook", "rollback"}});
    return path;
}

} // namespace

TEST_CASE("records chain by hash and verify")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    const auto result = verify_audit_log(path);
    INFO(result.problem);
    CHECK(result.ok);
    CHECK(result.records == 5);

    std::vector<audit_record> records;
    std::string error;
    REQUIRE(read_audit_log(path, records, error));
    REQUIRE(records.size() == 5);
    CHECK(records[0].seq == 1);
    CHECK(records[0].prev_hash == audit_genesis_hash());
    CHECK(records[1].prev_hash == records[0].hash);
    CHECK(records[2].actor == "alice");
    CHECK(records[3].details["text"] == "Ünïcode \"quoted\"");
    const auto lines = read_lines(path);
    CHECK_THAT(lines[0], Catch::StartsWith("{\"actor\":\"tocsin\",\"details\":{"));
    CHECK_THAT(lines[0], Catch::Contains("\"time\":\"2024-05-01T12:00:00.000Z\""));
}

TEST_CASE("reopening continues the chain")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    std::string error;
    auto log = audit_log::open(path, clock, error);
    REQUIRE(log);
    CHECK(log->last_seq() == 5);
    auto rec = log->append("override", "carol", {{"run_id", "r2"}, {"action", "cancel"}});
    CHECK(rec.seq == 6);
    CHECK(verify_audit_log(path).ok);
}

TEST_CASE("edited record is found")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    auto lines = read_lines(path);
    const auto pos = lines[2].find("alice");
    REQUIRE(pos != std::string::npos);
    lines[2].replace(pos, 5, "mallo");
    write_lines(path, lines);
    const auto result = verify_audit_log(path);
    CHECK_FALSE(result.ok);
    CHECK(result.line == 3);
    CHECK_THAT(result.problem, Catch::Contains("line 3: record 3 was edited"));
    CHECK(result.records == 2);
}

TEST_CASE("rehashed edit breaks the next link")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    std::vector<audit_record> records;
    std::string error;
    REQUIRE(read_audit_log(path, records, error));
    records[1].details["outcome"] = "failed";
    records[1].hash = audit_hash(records[1]);
    auto lines = read_lines(path);
    lines[1] = canonical_json(records[1].to_json());
    write_lines(path, lines);
    const auto result = verify_audit_log(path);
    CHECK_FALSE(result.ok);
    CHECK(result.line == 3);
    CHECK_THAT(result.problem, Catch::Contains("prev_hash does not match"));
}

TEST_CASE("removed record is found")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    auto lines = read_lines(path);
    lines.erase(lines.begin() + 1);
    write_lines(path, lines);
    const auto result = verify_audit_log(path);
    CHECK_FALSE(result.ok);
    CHECK(result.line == 2);
    CHECK_THAT(result.problem, Catch::Contains("seq 3 where seq 2 was expected"));
}

TEST_CASE("reordered records are found")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    auto lines = read_lines(path);
    std::swap(lines[2], lines[3]);
    write_lines(path, lines);
    const auto result = verify_audit_log(path);
    CHECK_FALSE(result.ok);
    CHECK(result.line == 3);
    CHECK_THAT(result.problem, Catch::Contains("removed or reordered"));
}

TEST_CASE("cut tail is found")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    auto lines = read_lines(path);

    SECTION("partial last line")
    {
        lines[4] = lines[4].substr(0, 40);
        write_lines(path, lines, false);
        const auto result = verify_audit_log(path);
        CHECK_FALSE(result.ok);
        CHECK(result.line == 5);
        CHECK_THAT(result.problem, Catch::Contains("incomplete record without a newline"));

        // The head file lists record 5, so the cut is no crash: the log is not extended.
        std::string error;
        CHECK_FALSE(audit_log::open(path, clock, error));
        CHECK_THAT(error, Catch::Contains("head file says 5 records"));

        // A crash during the write of record 5 leaves the head at record 4. Opening the log
        // then repairs it and records the repair in the log itself.
        const auto fourth = nlohmann::json::parse(lines[3]);
        write_lines(path + ".head", {nlohmann::json{{"hash", fourth["hash"]}, {"seq", 4}}.dump()});
        auto log = audit_log::open(path, clock, error);
        REQUIRE(log);
        CHECK(log->last_seq() == 5);
        std::vector<audit_record> records;
        REQUIRE(read_audit_log(path, records, error));
        CHECK(records.back().kind == "log_repaired");
        CHECK(records.back().details["dropped_bytes"] == 40);
        CHECK(verify_audit_log(path).ok);
    }
    SECTION("whole last records")
    {
        lines.pop_back();
        lines.pop_back();
        write_lines(path, lines);
        const auto result = verify_audit_log(path);
        CHECK_FALSE(result.ok);
        CHECK(result.line == 4);
        CHECK_THAT(result.problem, Catch::Contains("head file says 5 records"));
        std::string error;
        CHECK_FALSE(audit_log::open(path, clock, error));
        CHECK_THAT(error, Catch::Contains("removed from the end"));
    }
    SECTION("last record rewritten")
    {
        auto last = nlohmann::json::parse(lines[4]);
        last["actor"] = "mallory";
        audit_record rec;
        rec.seq = last["seq"];
        rec.time = last["time_ms"];
        rec.kind = last["kind"];
        rec.actor = last["actor"];
        rec.details = last["details"];
        rec.prev_hash = last["prev_hash"];
        last["hash"] = audit_hash(rec);
        lines[4] = canonical_json(last);
        write_lines(path, lines);
        std::string error;
        CHECK_FALSE(audit_log::open(path, clock, error));
        CHECK_THAT(error, Catch::Contains("the end of the log was rewritten"));
    }
    SECTION("whole log removed")
    {
        write_lines(path, {}, false);
        std::string error;
        CHECK_FALSE(audit_log::open(path, clock, error));
        CHECK_THAT(error, Catch::Contains("records were removed from the end"));
    }
}

TEST_CASE("broken log is not extended")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    auto lines = read_lines(path);
    lines.erase(lines.begin() + 2);
    write_lines(path, lines);
    std::string error;
    CHECK_FALSE(audit_log::open(path, clock, error));
    CHECK_THAT(error, Catch::Contains("does not verify: line 3"));
}

TEST_CASE("non-record line is found")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    auto lines = read_lines(path);
    lines.insert(lines.begin() + 1, "{\"hello\": 1}");
    write_lines(path, lines);
    const auto result = verify_audit_log(path);
    CHECK_FALSE(result.ok);
    CHECK(result.line == 2);
}

TEST_CASE("show filters by kind, run and time range")
{
    test::temp_dir dir;
    manual_clock clock(t0);
    const auto path = make_log(dir, clock);
    std::vector<audit_record> records;
    std::string error;
    REQUIRE(read_audit_log(path, records, error));
    CHECK(filter_audit(records, {{"step"}, "", {}, {}}).size() == 2);
    CHECK(filter_audit(records, {{}, "r2", {}, {}}).size() == 1);
    CHECK(filter_audit(records, {{"run_started", "approval"}, "r1", {}, {}}).size() == 2);
    const auto window = filter_audit(records, {{}, "", t0 + 1000, t0 + 3000});
    REQUIRE(window.size() == 2);
    CHECK(window[0].seq == 2);
    CHECK(window[1].seq == 3);
    CHECK(filter_audit(records, {}).size() == 5);
}
