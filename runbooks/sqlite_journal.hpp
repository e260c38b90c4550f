#pragma once
// A run_journal in an SQLite file (WAL, synchronous=FULL): every record is one committed row
// before the call returns, so a run recorded as started or a step recorded as finished
// survives a crash or kill -9.
//
// Rows are events (run_created, step_started, ...) with a JSON body, appended in order. Opening
// the file replays them into a memory_journal, which load() returns. A row that cannot be read
// (edited by hand, cut by a disk error) is skipped and counted in damaged_rows(); the runs it
// belonged to then load with what the other rows say. forget() deletes the rows of the runs and
// skips it drops.
//
// Thread safety: none; the engine calls it from its own thread, as run_journal requires.

#include <cstddef>
#include <memory>
#include <string>

#include "runbooks/journal.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace tocsin::runbooks {

class sqlite_journal final : public run_journal {
public:
    // Opens or creates the file. Returns null with `error` naming the file and the cause.
    static std::unique_ptr<sqlite_journal> open(const std::string& path, std::string& error);
    ~sqlite_journal() override;
    sqlite_journal(const sqlite_journal&) = delete;
    sqlite_journal& operator=(const sqlite_journal&) = delete;

    void run_created(const run_record& record) override;
    void run_started(const std::string& run_id, time_ms at) override;
    void approval(const std::string& run_id, approval_state state, const std::string& by, time_ms at) override;
    void step_started(const std::string& run_id, std::size_t index, const std::string& name, time_ms at) override;
    void step_finished(const std::string& run_id, std::size_t index, step_outcome outcome, const std::string& detail,
                       time_ms at) override;
    void run_finished(const std::string& run_id, run_outcome outcome, const std::string& detail, time_ms at) override;
    void skipped(const skip_record& skip) override;
    void forget(time_ms before) override;
    journal_snapshot load() const override;

    std::size_t damaged_rows() const { return damaged_rows_; }

private:
    explicit sqlite_journal(sqlite3* db);
    void append(const std::string& run_id, const char* kind, const std::string& body, time_ms at);
    void exec(const char* sql);
    bool replay(const std::string& kind, const std::string& body);

    sqlite3* db_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    memory_journal mirror_;
    std::size_t damaged_rows_ = 0;
};

} // namespace tocsin::runbooks
