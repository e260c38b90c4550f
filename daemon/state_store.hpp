#pragma once
// Durable daemon state in SQLite: the pending and firing alerts with their timers, and a small
// key/value table for facts such as the hash of the last loaded configuration.
//
// The database is <state_dir>/tocsin.db in WAL mode with synchronous=FULL: a transaction that
// apply() or replace_all() committed survives a crash of the process and, on storage that
// honours fsync, a power loss.
//
// Thread safety: none. One owner calls every member function.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/engine.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace tocsin {

class state_store {
public:
    // Opens or creates <state_dir>/tocsin.db, creating the folder when missing, and brings the
    // schema up to date. Returns null and sets `error` (naming the file and the fix) when the
    // folder or file cannot be used or the database is corrupt.
    static std::unique_ptr<state_store> open(const std::string& state_dir, std::string& error);

    ~state_store();
    state_store(const state_store&) = delete;
    state_store& operator=(const state_store&) = delete;

    // Applies alert events in order, in one transaction. A pending or firing record is
    // inserted or replaced by alert id. A resolved event or an inactive record deletes it.
    bool apply(const std::vector<alert_event>& events, std::string& error);

    // Returns every stored alert, ordered by id.
    std::optional<std::vector<persisted_alert>> load_alerts(std::string& error);

    // Replaces every stored alert with `alerts` in one transaction (used at shutdown).
    bool replace_all(const std::vector<persisted_alert>& alerts, std::string& error);

    bool set_meta(const std::string& key, const std::string& value, std::string& error);
    // Returns nullopt with `error` empty when the key is absent, or with `error` set on failure.
    std::optional<std::string> get_meta(const std::string& key, std::string& error);

    const std::string& path() const { return path_; }

    // The schema version this build writes. A database with a newer version is not opened.
    static constexpr int schema_version = 2;

private:
    state_store(sqlite3* db, std::string path);

    bool prepare_statements(std::string& error);
    bool upsert(const persisted_alert& alert, std::string& error);
    bool remove(std::uint64_t id, std::string& error);
    bool execute(const char* sql, std::string& error);
    bool commit_or_rollback(bool ok, std::string& error);
    std::string describe_failure(const char* action) const;

    sqlite3* db_ = nullptr;
    std::string path_;
    sqlite3_stmt* upsert_ = nullptr;
    sqlite3_stmt* delete_ = nullptr;
    sqlite3_stmt* select_all_ = nullptr;
    sqlite3_stmt* set_meta_ = nullptr;
    sqlite3_stmt* get_meta_ = nullptr;
};

} // namespace tocsin
