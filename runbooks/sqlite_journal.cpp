#include "runbooks/sqlite_journal.hpp"

#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

namespace tocsin::runbooks {

namespace {

using json = nlohmann::json;

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

} // namespace

std::unique_ptr<sqlite_journal> sqlite_journal::open(const std::string& path, std::string& error)
{
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    if (rc != SQLITE_OK) {
        error = fmt::format("cannot open the runbook journal {}: {}", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return nullptr;
    }
    std::unique_ptr<sqlite_journal> journal(new sqlite_journal(db));
    try {
        journal->exec("PRAGMA journal_mode=WAL");
        journal->exec("PRAGMA synchronous=FULL");
        journal->exec("CREATE TABLE IF NOT EXISTS runbook_journal ("
                      " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                      " run_id TEXT NOT NULL," // empty for skips
                      " kind TEXT NOT NULL,"
                      " at INTEGER NOT NULL,"
                      " body TEXT NOT NULL)");
        if (sqlite3_prepare_v2(db, "INSERT INTO runbook_journal (run_id, kind, at, body) VALUES (?, ?, ?, ?)", -1,
                               &journal->insert_, nullptr) != SQLITE_OK) {
            throw std::runtime_error(sqlite3_errmsg(db));
        }
        sqlite3_stmt* rows = nullptr;
        if (sqlite3_prepare_v2(db, "SELECT kind, body FROM runbook_journal ORDER BY seq", -1, &rows, nullptr) !=
            SQLITE_OK) {
            throw std::runtime_error(sqlite3_errmsg(db));
        }
        while (sqlite3_step(rows) == SQLITE_ROW) {
            const auto* kind = reinterpret_cast<const char*>(sqlite3_column_text(rows, 0));
            const auto* body = reinterpret_cast<const char*>(sqlite3_column_text(rows, 1));
            if (kind == nullptr || body == nullptr || !journal->replay(kind, body)) {
                ++journal->damaged_rows_;
            }
        }
        sqlite3_finalize(rows);
    } catch (const std::exception& e) {
        error = fmt::format("cannot read the runbook journal {}: {}", path, e.what());
        return nullptr;
    }
    return journal;
}

sqlite_journal::sqlite_journal(sqlite3* db) : db_(db) {}

sqlite_journal::~sqlite_journal()
{
    sqlite3_finalize(insert_);
    sqlite3_close(db_);
}

void sqlite_journal::exec(const char* sql)
{
    char* message = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
        std::string text = message != nullptr ? message : sqlite3_errmsg(db_);
        sqlite3_free(message);
        throw std::runtime_error(fmt::format("{} failed: {}", sql, text));
    }
}

// One row, committed (autocommit) before it returns.
void sqlite_journal::append(const std::string& run_id, const char* kind, const std::string& body, time_ms at)
{
    sqlite3_reset(insert_);
    sqlite3_bind_text(insert_, 1, run_id.c_str(), static_cast<int>(run_id.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(insert_, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(insert_, 3, at);
    sqlite3_bind_text(insert_, 4, body.c_str(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(insert_) != SQLITE_DONE) {
        const std::string message = sqlite3_errmsg(db_);
        sqlite3_reset(insert_);
        throw std::runtime_error(fmt::format("cannot write the runbook journal: {}", message));
    }
}

void sqlite_journal::run_created(const run_record& record)
{
    json labels = json::object();
    for (const auto& l : record.labels) {
        labels[l.name] = l.value;
    }
    const json body = {{"id", record.id},
                       {"runbook", record.runbook},
                       {"fingerprint", fmt::format("{:016x}", record.fingerprint)},
                       {"episode_start", record.episode_start},
                       {"labels", std::move(labels)},
                       {"created_at", record.created_at},
                       {"dry_run", record.dry_run},
                       {"queued", record.queued},
                       {"definition", record.definition}};
    append(record.id, "run_created", dump(body), record.created_at);
    mirror_.run_created(record);
}

void sqlite_journal::run_started(const std::string& run_id, time_ms at)
{
    append(run_id, "run_started", dump({{"id", run_id}, {"at", at}}), at);
    mirror_.run_started(run_id, at);
}

void sqlite_journal::approval(const std::string& run_id, approval_state state, const std::string& by, time_ms at)
{
    append(run_id, "approval", dump({{"id", run_id}, {"state", to_string(state)}, {"by", by}, {"at", at}}), at);
    mirror_.approval(run_id, state, by, at);
}

void sqlite_journal::step_started(const std::string& run_id, std::size_t index, const std::string& name, time_ms at)
{
    append(run_id, "step_started", dump({{"id", run_id}, {"index", index}, {"name", name}, {"at", at}}), at);
    mirror_.step_started(run_id, index, name, at);
}

void sqlite_journal::step_finished(const std::string& run_id, std::size_t index, step_outcome outcome,
                                   const std::string& detail, time_ms at)
{
    append(run_id, "step_finished",
           dump({{"id", run_id}, {"index", index}, {"outcome", to_string(outcome)}, {"detail", detail}, {"at", at}}),
           at);
    mirror_.step_finished(run_id, index, outcome, detail, at);
}

void sqlite_journal::run_finished(const std::string& run_id, run_outcome outcome, const std::string& detail,
                                  time_ms at)
{
    append(run_id, "run_finished",
           dump({{"id", run_id}, {"outcome", to_string(outcome)}, {"detail", detail}, {"at", at}}), at);
    mirror_.run_finished(run_id, outcome, detail, at);
}

void sqlite_journal::skipped(const skip_record& skip)
{
    const json body = {{"runbook", skip.runbook},
                       {"fingerprint", fmt::format("{:016x}", skip.fingerprint)},
                       {"episode_start", skip.episode_start},
                       {"reason", skip.reason},
                       {"detail", skip.detail},
                       {"at", skip.at}};
    append("", "skipped", dump(body), skip.at);
    mirror_.skipped(skip);
}

void sqlite_journal::forget(time_ms before)
{
    // The runs memory_journal::forget() drops: finished ones created before `before`.
    std::set<std::string> dropped;
    for (const auto& r : mirror_.load().runs) {
        if (r.finished && r.record.created_at < before) {
            dropped.insert(r.record.id);
        }
    }
    exec("BEGIN IMMEDIATE");
    try {
        sqlite3_stmt* del = nullptr;
        if (sqlite3_prepare_v2(db_, "DELETE FROM runbook_journal WHERE run_id = ?", -1, &del, nullptr) != SQLITE_OK) {
            throw std::runtime_error(sqlite3_errmsg(db_));
        }
        for (const auto& id : dropped) {
            sqlite3_reset(del);
            sqlite3_bind_text(del, 1, id.c_str(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
            if (sqlite3_step(del) != SQLITE_DONE) {
                const std::string message = sqlite3_errmsg(db_);
                sqlite3_finalize(del);
                throw std::runtime_error(message);
            }
        }
        sqlite3_finalize(del);
        const std::string skips = fmt::format("DELETE FROM runbook_journal WHERE kind = 'skipped' AND at < {}", before);
        exec(skips.c_str());
        exec("COMMIT");
    } catch (const std::exception& e) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        throw std::runtime_error(fmt::format("cannot prune the runbook journal: {}", e.what()));
    }
    mirror_.forget(before);
}

journal_snapshot sqlite_journal::load() const
{
    return mirror_.load();
}

// Applies one stored row to the mirror; false when the row cannot be read.
bool sqlite_journal::replay(const std::string& kind, const std::string& body)
{
    const json row = json::parse(body, nullptr, false);
    if (!row.is_object()) {
        return false;
    }
    try {
        if (kind == "run_created") {
            run_record r;
            r.id = row.at("id").get<std::string>();
            r.runbook = row.at("runbook").get<std::string>();
            r.fingerprint = std::stoull(row.at("fingerprint").get<std::string>(), nullptr, 16);
            r.episode_start = row.at("episode_start").get<time_ms>();
            for (const auto& [name, value] : row.at("labels").items()) {
                r.labels.push_back({name, value.get<std::string>()});
            }
            r.created_at = row.at("created_at").get<time_ms>();
            r.dry_run = row.at("dry_run").get<bool>();
            r.queued = row.at("queued").get<bool>();
            r.definition = row.value("definition", std::string());
            mirror_.run_created(r);
        } else if (kind == "run_started") {
            mirror_.run_started(row.at("id").get<std::string>(), row.at("at").get<time_ms>());
        } else if (kind == "approval") {
            const std::string state = row.at("state").get<std::string>();
            approval_state parsed = approval_state::none;
            for (auto s : {approval_state::none, approval_state::waiting, approval_state::approved,
                           approval_state::rejected, approval_state::timed_out}) {
                if (state == to_string(s)) {
                    parsed = s;
                }
            }
            mirror_.approval(row.at("id").get<std::string>(), parsed, row.at("by").get<std::string>(),
                             row.at("at").get<time_ms>());
        } else if (kind == "step_started") {
            mirror_.step_started(row.at("id").get<std::string>(), row.at("index").get<std::size_t>(),
                                 row.at("name").get<std::string>(), row.at("at").get<time_ms>());
        } else if (kind == "step_finished") {
            auto outcome = parse_step_outcome(row.at("outcome").get<std::string>());
            if (!outcome) {
                return false;
            }
            mirror_.step_finished(row.at("id").get<std::string>(), row.at("index").get<std::size_t>(), *outcome,
                                  row.at("detail").get<std::string>(), row.at("at").get<time_ms>());
        } else if (kind == "run_finished") {
            auto outcome = parse_run_outcome(row.at("outcome").get<std::string>());
            if (!outcome) {
                return false;
            }
            mirror_.run_finished(row.at("id").get<std::string>(), *outcome, row.at("detail").get<std::string>(),
                                 row.at("at").get<time_ms>());
        } else if (kind == "skipped") {
            skip_record s;
            s.runbook = row.at("runbook").get<std::string>();
            s.fingerprint = std::stoull(row.at("fingerprint").get<std::string>(), nullptr, 16);
            s.episode_start = row.at("episode_start").get<time_ms>();
            s.reason = row.at("reason").get<std::string>();
            s.detail = row.at("detail").get<std::string>();
            s.at = row.at("at").get<time_ms>();
            mirror_.skipped(s);
        } else {
            return false;
        }
    } catch (const std::exception&) {
        return false; // a missing field, a wrong type, or an event for a run whose creation was lost
    }
    return true;
}

} // namespace tocsin::runbooks
