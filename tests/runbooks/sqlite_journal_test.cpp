// The SQLite run journal: what it records is there after reopening, forget() removes rows from
// the file, and a damaged row is skipped without losing the others.

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <string>

#include "runbooks/sqlite_journal.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;

namespace {

run_record record_of(const std::string& id, time_ms created_at)
{
    run_record r;
    r.id = id;
    r.runbook = "model-rollback";
    r.fingerprint = 0xfedcba9876543210ULL;
    r.episode_start = created_at - 1000;
    r.labels = {{"alertname", "ModelAucLow"}, {"model", "churn"}};
    r.created_at = created_at;
    return r;
}

std::unique_ptr<sqlite_journal> open_journal(const std::string& path)
{
    std::string error;
    auto journal = sqlite_journal::open(path, error);
    INFO(error);
    REQUIRE(journal);
    return journal;
}

} // namespace

TEST_CASE("sqlite journal: runs, steps, approvals and skips are there after reopening")
{
    test::temp_dir dir;
    const std::string path = (dir.path() / "runbooks.db").string();
    {
        auto journal = open_journal(path);
        journal->run_created(record_of("r1", 10'000));
        journal->step_started("r1", 0, "stop-canary", 10'100);
        journal->step_finished("r1", 0, step_outcome::succeeded, "exit 0", 10'200);
        journal->approval("r1", approval_state::waiting, "", 10'300);
        journal->approval("r1", approval_state::approved, "alice", 10'400);
        journal->step_started("r1", 1, "rollback", 10'500); // in flight when the process dies
        journal->skipped({"model-rollback", 0x42, 9'000, "silenced", "silence s1", 9'500});
    }
    auto journal = open_journal(path);
    CHECK(journal->damaged_rows() == 0);
    const journal_snapshot snap = journal->load();
    REQUIRE(snap.runs.size() == 1);
    const journaled_run& r = snap.runs[0];
    CHECK(r.record.id == "r1");
    CHECK(r.record.fingerprint == 0xfedcba9876543210ULL);
    CHECK(r.record.episode_start == 9'000);
    REQUIRE(r.record.labels.size() == 2);
    CHECK(r.record.labels[1].value == "churn");
    CHECK(r.approval == approval_state::approved);
    CHECK(r.approval_by == "alice");
    REQUIRE(r.steps.size() == 2);
    CHECK(r.steps.at(0).finished);
    CHECK(r.steps.at(0).outcome == step_outcome::succeeded);
    CHECK(r.steps.at(0).detail == "exit 0");
    CHECK(r.steps.at(1).started);
    CHECK_FALSE(r.steps.at(1).finished);
    CHECK_FALSE(r.finished);
    REQUIRE(snap.skips.size() == 1);
    CHECK(snap.skips[0].reason == "silenced");
    CHECK(snap.skips[0].fingerprint == 0x42);

    // The run goes on in the new process.
    journal->step_finished("r1", 1, step_outcome::succeeded, "", 11'000);
    journal->run_finished("r1", run_outcome::succeeded, "", 11'100);
    CHECK(open_journal(path)->load().runs.at(0).outcome == run_outcome::succeeded);
}

TEST_CASE("sqlite journal: forget removes finished runs and old skips from the file")
{
    test::temp_dir dir;
    const std::string path = (dir.path() / "runbooks.db").string();
    {
        auto journal = open_journal(path);
        journal->run_created(record_of("old-finished", 1'000));
        journal->run_finished("old-finished", run_outcome::succeeded, "", 2'000);
        journal->run_created(record_of("old-open", 1'500));
        journal->run_created(record_of("new-finished", 50'000));
        journal->run_finished("new-finished", run_outcome::failed, "exit 1", 51'000);
        journal->skipped({"model-rollback", 1, 500, "cooldown", "", 900});
        journal->skipped({"model-rollback", 2, 60'000, "max_runs", "", 60'000});
        journal->forget(10'000);
        CHECK(journal->load().runs.size() == 2);
    }
    const journal_snapshot snap = open_journal(path)->load();
    REQUIRE(snap.runs.size() == 2);
    CHECK(snap.runs[0].record.id == "old-open"); // unfinished runs are never forgotten
    CHECK(snap.runs[1].record.id == "new-finished");
    REQUIRE(snap.skips.size() == 1);
    CHECK(snap.skips[0].reason == "max_runs");
}

TEST_CASE("sqlite journal: a damaged row is skipped and counted")
{
    test::temp_dir dir;
    const std::string path = (dir.path() / "runbooks.db").string();
    {
        auto journal = open_journal(path);
        journal->run_created(record_of("r1", 1'000));
        journal->step_started("r1", 0, "stop-canary", 1'100);
        journal->step_finished("r1", 0, step_outcome::failed, "exit 3", 1'200);
    }
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE runbook_journal SET body = '{\"id\": 7' WHERE kind = 'step_finished'", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);

    auto journal = open_journal(path);
    CHECK(journal->damaged_rows() == 1);
    const journal_snapshot snap = journal->load();
    REQUIRE(snap.runs.size() == 1);
    CHECK(snap.runs[0].steps.at(0).started);
    CHECK_FALSE(snap.runs[0].steps.at(0).finished); // so a restart treats it as interrupted

    std::string error;
    CHECK(sqlite_journal::open((dir.path() / "missing" / "runbooks.db").string(), error) == nullptr);
    CHECK(error.find("cannot open the runbook journal") != std::string::npos);
}
