#include "daemon/state_store.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <chrono>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "daemon/silence_api.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;

// How long a statement waits for a lock held by another connection (a `sqlite3` shell, a
// backup tool) before it fails with SQLITE_BUSY.
constexpr int busy_timeout_ms = 5000;

// Migration N brings the schema from version N to N + 1. A schema change appends an entry
// and leaves the released ones as they are.
constexpr const char* migrations[] = {
    // Version 1: alerts with their timers, and a key/value table.
    R"sql(
        CREATE TABLE alerts (
            id               INTEGER PRIMARY KEY, -- the 64-bit alert id, bit cast to signed
            rule_name        TEXT NOT NULL,
            rule_hash        INTEGER NOT NULL,    -- bit cast to signed like id
            series           TEXT NOT NULL,       -- labels as a JSON object, __name__ included
            state            TEXT NOT NULL,       -- pending or firing
            severity         TEXT NOT NULL,       -- info, warning, critical or page
            value            REAL,                -- NULL for NaN, which SQLite cannot store
            active_at        INTEGER NOT NULL,    -- milliseconds since the Unix epoch
            fired_at         INTEGER NOT NULL,
            last_sample_at   INTEGER NOT NULL,
            no_data          INTEGER NOT NULL,
            tier_held_since  TEXT NOT NULL,       -- JSON array of milliseconds, one per tier
            tier_released_at TEXT NOT NULL
        );
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
    )sql",
    // Version 2: the severity of each tier, so that a restart maps tier timers to the tiers of
    // an edited rule by severity. Rows from version 1 get an empty list.
    R"sql(
        ALTER TABLE alerts ADD COLUMN tier_levels TEXT NOT NULL DEFAULT '[]'; -- JSON array of severity names
    )sql",
    // Version 3: delivery. The dispatcher's alerts, group timers and notification log, the
    // outbox, and the Slack message that each group's later messages thread onto.
    R"sql(
        CREATE TABLE dispatch_alerts (
            id   INTEGER PRIMARY KEY, -- alert::id bit cast to signed
            data TEXT NOT NULL        -- JSON: labels, annotations, times, generator_url, source
        );
        CREATE TABLE dispatch_groups (
            group_key     TEXT PRIMARY KEY,
            route_key     TEXT NOT NULL,
            group_labels  TEXT NOT NULL, -- JSON object
            next_flush_at INTEGER NOT NULL,
            has_flushed   INTEGER NOT NULL
        );
        CREATE TABLE nflog (
            group_key      TEXT NOT NULL,
            integration_id TEXT NOT NULL,
            firing         TEXT NOT NULL, -- JSON array of label fingerprints as 16 hex digits
            resolved       TEXT NOT NULL,
            sent_at        INTEGER NOT NULL,
            expires_at     INTEGER NOT NULL,
            PRIMARY KEY (group_key, integration_id)
        );
        CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            receiver        TEXT NOT NULL,
            kind            TEXT NOT NULL,
            idx             INTEGER NOT NULL,
            group_key       TEXT NOT NULL,
            body            TEXT NOT NULL, -- without secrets; the sender adds them
            resolved        INTEGER NOT NULL,
            dedup_key       TEXT NOT NULL,
            alert_count     INTEGER NOT NULL,
            created_at      INTEGER NOT NULL,
            attempts        INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL,
            last_error      TEXT NOT NULL
        );
        CREATE TABLE slack_threads (
            integration_id TEXT NOT NULL,
            group_key      TEXT NOT NULL,
            channel        TEXT NOT NULL,
            ts             TEXT NOT NULL,
            PRIMARY KEY (integration_id, group_key)
        );
    )sql",
    // Version 4: the copies that groups keep of an alert whose labels moved it to other groups,
    // so that a restart still announces their resolve.
    R"sql(
        CREATE TABLE dispatch_copies (
            group_key TEXT NOT NULL,
            id        INTEGER NOT NULL, -- alert::id bit cast to signed
            data      TEXT NOT NULL,    -- JSON, as in dispatch_alerts
            PRIMARY KEY (group_key, id)
        );
    )sql",
    // Version 5: threshold overrides set through the API, one per rule, until they expire.
    R"sql(
        CREATE TABLE threshold_overrides (
            rule_name  TEXT PRIMARY KEY,
            tiers      TEXT NOT NULL,    -- JSON array of {"severity", "when"?, "recover"?}
            created_at INTEGER NOT NULL, -- milliseconds since the Unix epoch
            expires_at INTEGER NOT NULL,
            reason     TEXT NOT NULL,
            author     TEXT NOT NULL,
            token_name TEXT NOT NULL
        );
    )sql",
    // Version 6: snapshots of the detectors of dynamic rules, replaced whole at each snapshot.
    R"sql(
        CREATE TABLE baselines (
            rule_name      TEXT NOT NULL,
            series         TEXT NOT NULL,    -- JSON object of the series labels, __name__ included
            spec_hash      INTEGER NOT NULL, -- detector_spec_hash bit cast to signed
            last_sample_at INTEGER NOT NULL, -- milliseconds since the Unix epoch
            state          BLOB NOT NULL,    -- detector::save()
            last_output    BLOB NOT NULL,    -- write_output() of the last value scored
            PRIMARY KEY (rule_name, series)
        );
    )sql",
    // Version 7: silences, pending, active and expired ones within the retention.
    R"sql(
        CREATE TABLE silences (
            id   TEXT PRIMARY KEY,
            data TEXT NOT NULL -- JSON as in Alertmanager's GettableSilence, without status
        );
    )sql",
    // Version 8: one row per alert in each sent notification, for the noise report, kept for
    // history_retention. With IF NOT EXISTS, a database whose version number was set back by
    // hand with this table still in it (as the migration tests of older versions do) migrates.
    R"sql(
        CREATE TABLE IF NOT EXISTS notification_history (
            sent_at     INTEGER NOT NULL, -- milliseconds since the Unix epoch
            receiver    TEXT NOT NULL,
            integration TEXT NOT NULL,    -- receiver/kind/index
            group_key   TEXT NOT NULL,
            alertname   TEXT NOT NULL,
            fingerprint INTEGER NOT NULL, -- label fingerprint bit cast to signed
            alert_id    INTEGER NOT NULL, -- alert::id bit cast to signed
            starts_at   INTEGER NOT NULL,
            ends_at     INTEGER NOT NULL, -- 0 while firing
            flap        INTEGER NOT NULL  -- 0 none, 1 started, 2 stopped
        );
        CREATE INDEX IF NOT EXISTS notification_history_by_time ON notification_history (sent_at);
        CREATE INDEX IF NOT EXISTS notification_history_flaps ON notification_history (sent_at) WHERE flap != 0;
    )sql",
};
static_assert(std::size(migrations) == state_store::schema_version);

std::int64_t to_signed(std::uint64_t value) { return std::bit_cast<std::int64_t>(value); }
std::uint64_t to_unsigned(std::int64_t value) { return std::bit_cast<std::uint64_t>(value); }

bool is_corruption(int code)
{
    int primary = code & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

std::string fix_for(int code, const std::string& path)
{
    switch (code & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return fmt::format("stop tocsind and move the file aside with its -wal and -shm files "
                           "(mv {0} {0}.corrupt); tocsind then starts with no saved alerts",
                           path);
    case SQLITE_FULL: return "free disk space on the state directory's file system";
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return "another process holds a lock on the database; stop it";
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
        return "check that the tocsind user can read and write the file and its folder";
    default: return "check the disk and the file's permissions";
    }
}

std::string text_column(sqlite3_stmt* statement, int column)
{
    const unsigned char* text = sqlite3_column_text(statement, column);
    if (text == nullptr) {
        return {};
    }
    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<std::size_t>(sqlite3_column_bytes(statement, column)));
}

const char* state_name(alert_state state)
{
    return state == alert_state::firing ? "firing" : "pending";
}

std::optional<alert_state> parse_state(std::string_view name)
{
    if (name == "pending") {
        return alert_state::pending;
    }
    if (name == "firing") {
        return alert_state::firing;
    }
    return std::nullopt;
}

std::string times_to_json(const std::vector<time_ms>& times) { return json(times).dump(); }

std::string levels_to_json(const std::vector<severity>& levels)
{
    json names = json::array();
    for (severity level : levels) {
        names.push_back(to_string(level));
    }
    return names.dump();
}

bool levels_from_json(const std::string& text, std::vector<severity>& out)
{
    json parsed = json::parse(text, nullptr, false);
    if (!parsed.is_array()) {
        return false;
    }
    out.clear();
    for (const json& item : parsed) {
        if (!item.is_string()) {
            return false;
        }
        auto level = parse_severity(item.get<std::string>());
        if (!level) {
            return false;
        }
        out.push_back(*level);
    }
    return true;
}

bool times_from_json(const std::string& text, std::vector<time_ms>& out)
{
    json parsed = json::parse(text, nullptr, false);
    if (!parsed.is_array()) {
        return false;
    }
    out.clear();
    for (const json& item : parsed) {
        if (!item.is_number_integer()) {
            return false;
        }
        out.push_back(item.get<time_ms>());
    }
    return true;
}

std::string labels_to_json(const label_set& labels)
{
    json object = json::object();
    for (const label& l : labels.items()) {
        object[l.name] = l.value;
    }
    // Ingest validation admits only UTF-8 labels, so `replace` should never alter them. It
    // keeps a stray byte from aborting the whole transaction.
    return object.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool labels_from_json(const std::string& text, label_set& out)
{
    json parsed = json::parse(text, nullptr, false);
    if (!parsed.is_object()) {
        return false;
    }
    std::vector<label> labels;
    labels.reserve(parsed.size());
    for (const auto& [name, value] : parsed.items()) {
        if (!value.is_string()) {
            return false;
        }
        labels.push_back(label{name, value.get<std::string>()});
    }
    out = label_set(std::move(labels));
    return true;
}

std::string annotations_to_json(const annotation_list& annotations)
{
    json object = json::object();
    for (const auto& [name, value] : annotations) {
        object[name] = value;
    }
    return object.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string alert_to_json(const alert& a)
{
    json object = {
        {"labels", json::parse(labels_to_json(a.labels))},
        {"annotations", json::parse(annotations_to_json(a.annotations))},
        {"starts_at", a.starts_at},
        {"ends_at", a.ends_at},
        {"updated_at", a.updated_at},
        {"generator_url", a.generator_url},
        {"source", a.source},
    };
    if (a.acknowledged()) {
        object["acknowledged_at"] = a.acknowledged_at;
        object["acknowledged_by"] = a.acknowledged_by;
        object["ack_comment"] = a.ack_comment;
    }
    return object.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool alert_from_json(const std::string& text, alert& out)
{
    json parsed = json::parse(text, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("labels") || !parsed["labels"].is_object() ||
        !parsed.contains("annotations") || !parsed["annotations"].is_object()) {
        return false;
    }
    if (!labels_from_json(parsed["labels"].dump(), out.labels)) {
        return false;
    }
    out.annotations.clear();
    for (const auto& [name, value] : parsed["annotations"].items()) {
        if (!value.is_string()) {
            return false;
        }
        out.annotations.emplace_back(name, value.get<std::string>());
    }
    out.starts_at = parsed.value("starts_at", time_ms{0});
    out.ends_at = parsed.value("ends_at", time_ms{0});
    out.updated_at = parsed.value("updated_at", time_ms{0});
    out.generator_url = parsed.value("generator_url", std::string());
    out.source = parsed.value("source", std::string("rules"));
    if (const auto at = parsed.find("acknowledged_at"); at != parsed.end() && at->is_number_integer()) {
        const auto by = parsed.find("acknowledged_by");
        const auto comment = parsed.find("ack_comment");
        out.acknowledged_at = at->get<time_ms>();
        out.acknowledged_by = by != parsed.end() && by->is_string() ? by->get<std::string>() : std::string();
        out.ack_comment = comment != parsed.end() && comment->is_string() ? comment->get<std::string>() : std::string();
    }
    return true;
}

std::string fingerprints_to_json(const std::vector<std::uint64_t>& values)
{
    json array = json::array();
    for (std::uint64_t v : values) {
        array.push_back(fmt::format("{:016x}", v));
    }
    return array.dump();
}

bool fingerprints_from_json(const std::string& text, std::vector<std::uint64_t>& out)
{
    json parsed = json::parse(text, nullptr, false);
    if (!parsed.is_array()) {
        return false;
    }
    out.clear();
    for (const json& item : parsed) {
        if (!item.is_string()) {
            return false;
        }
        const std::string hex = item.get<std::string>();
        std::uint64_t value = 0;
        auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), value, 16);
        if (ec != std::errc() || end != hex.data() + hex.size()) {
            return false;
        }
        out.push_back(value);
    }
    return true;
}

std::optional<integration_kind> parse_integration_kind(std::string_view name)
{
    for (auto kind : {integration_kind::webhook, integration_kind::pagerduty, integration_kind::slack,
                      integration_kind::console}) {
        if (name == to_string(kind)) {
            return kind;
        }
    }
    return std::nullopt;
}

void bind_text(sqlite3_stmt* s, int index, std::string_view text)
{
    sqlite3_bind_text(s, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

std::string override_tiers_to_json(const std::vector<tier_override>& tiers)
{
    json array = json::array();
    for (const tier_override& t : tiers) {
        json item = {{"severity", to_string(t.level)}};
        if (t.when_threshold) {
            item["when"] = *t.when_threshold;
        }
        if (t.recover_threshold) {
            item["recover"] = *t.recover_threshold;
        }
        array.push_back(std::move(item));
    }
    return array.dump();
}

bool override_tiers_from_json(const std::string& text, std::vector<tier_override>& out)
{
    json parsed = json::parse(text, nullptr, false);
    if (!parsed.is_array()) {
        return false;
    }
    out.clear();
    for (const json& item : parsed) {
        if (!item.is_object() || !item.contains("severity") || !item["severity"].is_string()) {
            return false;
        }
        auto level = parse_severity(item["severity"].get<std::string>());
        if (!level) {
            return false;
        }
        tier_override t;
        t.level = *level;
        for (const char* key : {"when", "recover"}) {
            if (!item.contains(key)) {
                continue;
            }
            if (!item[key].is_number() || !std::isfinite(item[key].get<double>())) {
                return false;
            }
            (std::string_view(key) == "when" ? t.when_threshold : t.recover_threshold) = item[key].get<double>();
        }
        out.push_back(t);
    }
    return true;
}

} // namespace

state_store::state_store(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

state_store::~state_store()
{
    stop_checkpointer();
    for (sqlite3_stmt* statement : {upsert_, delete_, select_all_, set_meta_, get_meta_}) {
        sqlite3_finalize(statement);
    }
    for (auto& [sql, statement] : statements_) {
        sqlite3_finalize(statement);
    }
    // Closing checkpoints the WAL into the main file. A crash skips this and loses nothing,
    // because the next open replays the WAL.
    sqlite3_close_v2(db_);
}

void state_store::start_checkpointer()
{
    checkpointer_ = std::thread([this] {
        sqlite3* db = nullptr;
        if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
            // Without this connection the WAL grows until the owner's connection closes and
            // checkpoints it. No data is lost, only disk space is used meanwhile.
            sqlite3_close_v2(db);
            return;
        }
        sqlite3_busy_timeout(db, busy_timeout_ms);
        std::unique_lock lock(checkpointer_mutex_);
        while (!checkpointer_wake_.wait_for(lock, std::chrono::seconds(1), [this] { return checkpointer_stop_; })) {
            lock.unlock();
            // PASSIVE copies what it can without blocking the owner's writes.
            sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
            lock.lock();
        }
        sqlite3_close_v2(db);
    });
}

void state_store::stop_checkpointer()
{
    if (!checkpointer_.joinable()) {
        return;
    }
    {
        std::lock_guard lock(checkpointer_mutex_);
        checkpointer_stop_ = true;
    }
    checkpointer_wake_.notify_all();
    checkpointer_.join();
}

std::string state_store::describe_failure(const char* action) const
{
    int code = sqlite3_extended_errcode(db_);
    if (is_corruption(code)) {
        return fmt::format("state database {} is corrupt or not a SQLite database ({}) while trying to {}; {}",
                           path_, sqlite3_errmsg(db_), action, fix_for(code, path_));
    }
    return fmt::format("cannot {} in state database {}: {}; {}", action, path_, sqlite3_errmsg(db_),
                       fix_for(code, path_));
}

bool state_store::execute(const char* sql, std::string& error)
{
    char* message = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
    sqlite3_free(message); // the same text is available from sqlite3_errmsg
    if (rc != SQLITE_OK) {
        error = describe_failure(fmt::format("run \"{}\"", std::string_view(sql).substr(0, 40)).c_str());
        return false;
    }
    return true;
}

std::unique_ptr<state_store> state_store::open(const std::string& state_dir, std::string& error, sync_mode sync)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(state_dir, ec);
    if (ec) {
        error = fmt::format("cannot create state directory {}: {}; create it with write access for "
                            "the tocsind user or set state_dir to a writable folder",
                            state_dir, ec.message());
        return nullptr;
    }
    std::string path = (fs::path(state_dir) / "tocsin.db").string();

    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        error = fmt::format("cannot open state database {}: {}; {}", path,
                            db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc), fix_for(rc, path));
        sqlite3_close_v2(db);
        return nullptr;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, busy_timeout_ms);
    std::unique_ptr<state_store> store(new state_store(db, path));

    // FULL adds one fsync of the WAL per commit. Commits happen per batch of alert
    // transitions and notifications, not per sample; a committed batch then also survives a
    // power loss. NORMAL writes the WAL without waiting for the disk: still safe against a
    // crash of the process, which is what most deployments need, at no disk latency.
    if (!store->execute("PRAGMA journal_mode=WAL", error) ||
        !store->execute(sync == sync_mode::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", error)) {
        return nullptr;
    }
    store->sync_ = sync;
    // Commits never checkpoint by themselves: the background thread does, so a commit costs at
    // most its own fsync.
    if (!store->execute("PRAGMA wal_autocheckpoint=0", error)) {
        return nullptr;
    }

    // A corrupt page is found now, with a message naming the fix, instead of in the middle
    // of a later write. The check reads every page, which is fast for a state database.
    sqlite3_stmt* check = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &check, nullptr) != SQLITE_OK) {
        error = store->describe_failure("check the database");
        return nullptr;
    }
    rc = sqlite3_step(check);
    std::string verdict = rc == SQLITE_ROW ? text_column(check, 0) : std::string();
    sqlite3_finalize(check);
    if (rc != SQLITE_ROW) {
        error = store->describe_failure("check the database");
        return nullptr;
    }
    if (verdict != "ok") {
        std::replace(verdict.begin(), verdict.end(), '\n', ' ');
        error = fmt::format("state database {} is corrupt (quick_check: {}); {}", path,
                            verdict.substr(0, 200), fix_for(SQLITE_CORRUPT, path));
        return nullptr;
    }

    if (!store->execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", error)) {
        return nullptr;
    }
    sqlite3_stmt* version_query = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &version_query, nullptr) !=
        SQLITE_OK) {
        error = store->describe_failure("read the schema version");
        return nullptr;
    }
    rc = sqlite3_step(version_query);
    std::int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(version_query, 0) : 0;
    sqlite3_finalize(version_query);
    if (rc != SQLITE_ROW) {
        error = store->describe_failure("read the schema version");
        return nullptr;
    }
    if (version > schema_version) {
        error = fmt::format("state database {} has schema version {}, newer than the {} this tocsind "
                            "supports; run the newer tocsind or move the file aside",
                            path, version, schema_version);
        return nullptr;
    }
    for (auto next = version; next < schema_version; ++next) {
        std::string migrate = fmt::format("BEGIN IMMEDIATE; {} DELETE FROM schema_version; "
                                          "INSERT INTO schema_version VALUES ({}); COMMIT;",
                                          migrations[next], next + 1);
        if (sqlite3_exec(db, migrate.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
            error = store->describe_failure(fmt::format("migrate the schema to version {}", next + 1).c_str());
            sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
            return nullptr;
        }
    }

    if (!store->prepare_statements(error)) {
        return nullptr;
    }
    store->start_checkpointer();
    return store;
}

bool state_store::prepare_statements(std::string& error)
{
    struct statement_text {
        sqlite3_stmt** target;
        const char* sql;
    };
    const statement_text statements[] = {
        {&upsert_,
         "INSERT OR REPLACE INTO alerts (id, rule_name, rule_hash, series, state, severity, value, "
         "active_at, fired_at, last_sample_at, no_data, tier_held_since, tier_released_at, tier_levels) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
        {&delete_, "DELETE FROM alerts WHERE id = ?"},
        {&select_all_,
         "SELECT id, rule_name, rule_hash, series, state, severity, value, active_at, fired_at, "
         "last_sample_at, no_data, tier_held_since, tier_released_at, tier_levels FROM alerts ORDER BY id"},
        {&set_meta_, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"},
        {&get_meta_, "SELECT value FROM meta WHERE key = ?"},
    };
    for (const auto& s : statements) {
        if (sqlite3_prepare_v3(db_, s.sql, -1, SQLITE_PREPARE_PERSISTENT, s.target, nullptr) != SQLITE_OK) {
            error = describe_failure("prepare a statement");
            return false;
        }
    }
    return true;
}

bool state_store::upsert(const persisted_alert& alert, std::string& error)
{
    sqlite3_stmt* s = upsert_;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, to_signed(alert.id));
    sqlite3_bind_text(s, 2, alert.rule_name.data(), static_cast<int>(alert.rule_name.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, to_signed(alert.rule_hash));
    std::string series = labels_to_json(alert.series);
    sqlite3_bind_text(s, 4, series.data(), static_cast<int>(series.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, state_name(alert.state), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, to_string(alert.level), -1, SQLITE_STATIC);
    if (std::isnan(alert.value)) {
        sqlite3_bind_null(s, 7);
    } else {
        sqlite3_bind_double(s, 7, alert.value);
    }
    sqlite3_bind_int64(s, 8, alert.active_at);
    sqlite3_bind_int64(s, 9, alert.fired_at);
    sqlite3_bind_int64(s, 10, alert.last_sample_at);
    sqlite3_bind_int(s, 11, alert.no_data ? 1 : 0);
    std::string held_json = times_to_json(alert.tier_held_since);
    sqlite3_bind_text(s, 12, held_json.data(), static_cast<int>(held_json.size()), SQLITE_TRANSIENT);
    std::string released_json = times_to_json(alert.tier_released_at);
    sqlite3_bind_text(s, 13, released_json.data(), static_cast<int>(released_json.size()), SQLITE_TRANSIENT);
    std::string levels_json = levels_to_json(alert.tier_levels);
    sqlite3_bind_text(s, 14, levels_json.data(), static_cast<int>(levels_json.size()), SQLITE_TRANSIENT);

    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        error = describe_failure(fmt::format("save alert {:016x} of rule {}", alert.id, alert.rule_name).c_str());
        sqlite3_reset(s);
        return false;
    }
    sqlite3_reset(s);
    return true;
}

bool state_store::remove(std::uint64_t id, std::string& error)
{
    sqlite3_reset(delete_);
    sqlite3_bind_int64(delete_, 1, to_signed(id));
    int rc = sqlite3_step(delete_);
    sqlite3_reset(delete_);
    if (rc != SQLITE_DONE) {
        error = describe_failure(fmt::format("delete alert {:016x}", id).c_str());
        return false;
    }
    return true;
}

bool state_store::commit_or_rollback(bool ok, std::string& error)
{
    if (ok && execute("COMMIT", error)) {
        return true;
    }
    // The first error explains the failure, so a failing ROLLBACK must not overwrite it.
    std::string ignored;
    execute("ROLLBACK", ignored);
    return false;
}

bool state_store::apply_events(const std::vector<alert_event>& events, std::string& error)
{
    for (const alert_event& event : events) {
        bool ends_alert = event.what == alert_event::kind::resolved || event.record.state == alert_state::inactive;
        std::uint64_t id = event.record.id != 0 ? event.record.id : event.alert.id;
        if (!(ends_alert ? remove(id, error) : upsert(event.record, error))) {
            return false;
        }
    }
    return true;
}

bool state_store::apply(const std::vector<alert_event>& events, std::string& error)
{
    if (events.empty()) {
        return true;
    }
    if (!execute("BEGIN IMMEDIATE", error)) {
        return false;
    }
    return commit_or_rollback(apply_events(events, error), error);
}

bool state_store::replace_all(const std::vector<persisted_alert>& alerts, std::string& error)
{
    if (!execute("BEGIN IMMEDIATE", error)) {
        return false;
    }
    bool ok = execute("DELETE FROM alerts", error);
    for (const persisted_alert& alert : alerts) {
        if (!ok) {
            break;
        }
        if (alert.state != alert_state::inactive) {
            ok = upsert(alert, error);
        }
    }
    return commit_or_rollback(ok, error);
}

std::optional<std::vector<persisted_alert>> state_store::load_alerts(std::string& error)
{
    sqlite3_stmt* s = select_all_;
    sqlite3_reset(s);
    std::vector<persisted_alert> alerts;
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        persisted_alert a;
        a.id = to_unsigned(sqlite3_column_int64(s, 0));
        a.rule_name = text_column(s, 1);
        a.rule_hash = to_unsigned(sqlite3_column_int64(s, 2));
        std::string series = text_column(s, 3);
        std::string state = text_column(s, 4);
        std::string level = text_column(s, 5);
        a.value = sqlite3_column_type(s, 6) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                           : sqlite3_column_double(s, 6);
        a.active_at = sqlite3_column_int64(s, 7);
        a.fired_at = sqlite3_column_int64(s, 8);
        a.last_sample_at = sqlite3_column_int64(s, 9);
        a.no_data = sqlite3_column_int(s, 10) != 0;
        std::string held_json = text_column(s, 11);
        std::string released_json = text_column(s, 12);
        std::string levels_json = text_column(s, 13);

        auto parsed_state = parse_state(state);
        auto parsed_level = parse_severity(level);
        const char* bad_column = nullptr;
        if (!labels_from_json(series, a.series)) {
            bad_column = "series";
        } else if (!parsed_state) {
            bad_column = "state";
        } else if (!parsed_level) {
            bad_column = "severity";
        } else if (!times_from_json(held_json, a.tier_held_since)) {
            bad_column = "tier_held_since";
        } else if (!times_from_json(released_json, a.tier_released_at)) {
            bad_column = "tier_released_at";
        } else if (!levels_from_json(levels_json, a.tier_levels)) {
            bad_column = "tier_levels";
        }
        if (bad_column != nullptr) {
            sqlite3_reset(s);
            error = fmt::format("state database {}: alert {:016x} of rule {} has an invalid {} column; "
                                "{}",
                                path_, a.id, a.rule_name, bad_column, fix_for(SQLITE_CORRUPT, path_));
            return std::nullopt;
        }
        a.state = *parsed_state;
        a.level = *parsed_level;
        alerts.push_back(std::move(a));
    }
    if (rc != SQLITE_DONE) {
        error = describe_failure("read alerts");
        sqlite3_reset(s);
        return std::nullopt;
    }
    sqlite3_reset(s);
    return alerts;
}

bool state_store::set_meta(const std::string& key, const std::string& value, std::string& error)
{
    sqlite3_reset(set_meta_);
    sqlite3_bind_text(set_meta_, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(set_meta_, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(set_meta_);
    sqlite3_reset(set_meta_);
    if (rc != SQLITE_DONE) {
        error = describe_failure(fmt::format("set meta key {}", key).c_str());
        return false;
    }
    return true;
}

std::optional<std::string> state_store::get_meta(const std::string& key, std::string& error)
{
    error.clear();
    sqlite3_reset(get_meta_);
    sqlite3_bind_text(get_meta_, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(get_meta_);
    std::optional<std::string> value;
    if (rc == SQLITE_ROW) {
        value = text_column(get_meta_, 0);
    } else if (rc != SQLITE_DONE) {
        error = describe_failure(fmt::format("read meta key {}", key).c_str());
    }
    sqlite3_reset(get_meta_);
    return value;
}

// ---- delivery state ----

sqlite3_stmt* state_store::statement(const char* sql, std::string& error)
{
    if (auto it = statements_.find(sql); it != statements_.end()) {
        sqlite3_reset(it->second);
        sqlite3_clear_bindings(it->second);
        return it->second;
    }
    sqlite3_stmt* prepared = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &prepared, nullptr) != SQLITE_OK) {
        error = describe_failure("prepare a statement");
        return nullptr;
    }
    statements_.emplace(sql, prepared);
    return prepared;
}

namespace {

// Steps a statement that returns no rows and resets it.
bool step_done(sqlite3_stmt* s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
}

} // namespace

bool state_store::apply_changes(const dispatch_changes& changes, std::string& error)
{
    for (const alert& a : changes.alerts_upserted) {
        sqlite3_stmt* s = statement("INSERT OR REPLACE INTO dispatch_alerts (id, data) VALUES (?, ?)", error);
        if (s == nullptr) {
            return false;
        }
        sqlite3_bind_int64(s, 1, to_signed(a.id));
        bind_text(s, 2, alert_to_json(a));
        if (!step_done(s)) {
            error = describe_failure(fmt::format("save dispatcher alert {:016x}", a.id).c_str());
            return false;
        }
    }
    for (std::uint64_t id : changes.alerts_deleted) {
        sqlite3_stmt* s = statement("DELETE FROM dispatch_alerts WHERE id = ?", error);
        if (s == nullptr) {
            return false;
        }
        sqlite3_bind_int64(s, 1, to_signed(id));
        if (!step_done(s)) {
            error = describe_failure(fmt::format("delete dispatcher alert {:016x}", id).c_str());
            return false;
        }
    }
    for (const group_record& g : changes.groups_upserted) {
        sqlite3_stmt* s = statement("INSERT OR REPLACE INTO dispatch_groups (group_key, route_key, group_labels, "
                                    "next_flush_at, has_flushed) VALUES (?, ?, ?, ?, ?)",
                                    error);
        if (s == nullptr) {
            return false;
        }
        bind_text(s, 1, g.group_key);
        bind_text(s, 2, g.route_key);
        bind_text(s, 3, labels_to_json(g.group_labels));
        sqlite3_bind_int64(s, 4, g.next_flush_at);
        sqlite3_bind_int(s, 5, g.has_flushed ? 1 : 0);
        if (!step_done(s)) {
            error = describe_failure("save a group timer");
            return false;
        }
    }
    for (const std::string& key : changes.groups_deleted) {
        sqlite3_stmt* s = statement("DELETE FROM dispatch_groups WHERE group_key = ?", error);
        if (s == nullptr) {
            return false;
        }
        bind_text(s, 1, key);
        if (!step_done(s)) {
            error = describe_failure("delete a group timer");
            return false;
        }
    }
    for (const nflog_record& n : changes.nflog_upserted) {
        sqlite3_stmt* s = statement("INSERT OR REPLACE INTO nflog (group_key, integration_id, firing, resolved, "
                                    "sent_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                                    error);
        if (s == nullptr) {
            return false;
        }
        bind_text(s, 1, n.group_key);
        bind_text(s, 2, n.integration_id);
        bind_text(s, 3, fingerprints_to_json(n.firing));
        bind_text(s, 4, fingerprints_to_json(n.resolved));
        sqlite3_bind_int64(s, 5, n.sent_at);
        sqlite3_bind_int64(s, 6, n.expires_at);
        if (!step_done(s)) {
            error = describe_failure("save a notification log entry");
            return false;
        }
    }
    for (const auto& [group_key, integration_id] : changes.nflog_deleted) {
        sqlite3_stmt* s = statement("DELETE FROM nflog WHERE group_key = ? AND integration_id = ?", error);
        if (s == nullptr) {
            return false;
        }
        bind_text(s, 1, group_key);
        bind_text(s, 2, integration_id);
        if (!step_done(s)) {
            error = describe_failure("delete a notification log entry");
            return false;
        }
    }
    for (const auto& [group_key, a] : changes.copies_upserted) {
        sqlite3_stmt* s = statement("INSERT OR REPLACE INTO dispatch_copies (group_key, id, data) VALUES (?, ?, ?)",
                                    error);
        if (s == nullptr) {
            return false;
        }
        bind_text(s, 1, group_key);
        sqlite3_bind_int64(s, 2, to_signed(a.id));
        bind_text(s, 3, alert_to_json(a));
        if (!step_done(s)) {
            error = describe_failure(fmt::format("save the copy of alert {:016x} in group {}", a.id, group_key).c_str());
            return false;
        }
    }
    for (const auto& [group_key, id] : changes.copies_deleted) {
        sqlite3_stmt* s = statement("DELETE FROM dispatch_copies WHERE group_key = ? AND id = ?", error);
        if (s == nullptr) {
            return false;
        }
        bind_text(s, 1, group_key);
        sqlite3_bind_int64(s, 2, to_signed(id));
        if (!step_done(s)) {
            error = describe_failure(fmt::format("delete the copy of alert {:016x} in group {}", id, group_key).c_str());
            return false;
        }
    }
    return true;
}

bool state_store::insert_outbox(outbox_entry& entry, std::string& error)
{
    sqlite3_stmt* s = statement("INSERT INTO outbox (receiver, kind, idx, group_key, body, resolved, dedup_key, "
                                "alert_count, created_at, attempts, next_attempt_at, last_error) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                error);
    if (s == nullptr) {
        return false;
    }
    const outbound_message& m = entry.message;
    bind_text(s, 1, m.integration.receiver);
    bind_text(s, 2, to_string(m.integration.kind));
    sqlite3_bind_int64(s, 3, m.integration.index);
    bind_text(s, 4, m.group_key);
    bind_text(s, 5, m.body);
    sqlite3_bind_int(s, 6, m.resolved ? 1 : 0);
    bind_text(s, 7, m.dedup_key);
    sqlite3_bind_int64(s, 8, static_cast<std::int64_t>(m.alert_count));
    sqlite3_bind_int64(s, 9, entry.created_at);
    sqlite3_bind_int64(s, 10, entry.attempts);
    sqlite3_bind_int64(s, 11, entry.next_attempt_at);
    bind_text(s, 12, entry.last_error);
    if (!step_done(s)) {
        error = describe_failure("add a notification to the outbox");
        return false;
    }
    entry.id = static_cast<std::uint64_t>(sqlite3_last_insert_rowid(db_));
    return true;
}

bool state_store::commit(const std::vector<alert_event>& events, const std::vector<dispatch_changes>& changes,
                         std::vector<outbox_entry>& new_entries, std::string& error,
                         const std::vector<outbox_entry>& outbox_updates,
                         const std::vector<std::uint64_t>& outbox_removed, const std::vector<history_row>& history)
{
    const bool no_changes =
        std::all_of(changes.begin(), changes.end(), [](const dispatch_changes& c) { return c.empty(); });
    if (events.empty() && no_changes && new_entries.empty() && outbox_updates.empty() && outbox_removed.empty() &&
        history.empty()) {
        return true;
    }
    if (!execute("BEGIN IMMEDIATE", error)) {
        return false;
    }
    bool ok = apply_events(events, error);
    for (const auto& batch : changes) {
        ok = ok && apply_changes(batch, error);
    }
    for (auto& entry : new_entries) {
        if (!ok) {
            break;
        }
        ok = insert_outbox(entry, error);
    }
    for (const auto& entry : outbox_updates) {
        ok = ok && update_outbox(entry, error);
    }
    for (std::uint64_t id : outbox_removed) {
        ok = ok && remove_outbox(id, error);
    }
    ok = ok && insert_history(history, error);
    if (!commit_or_rollback(ok, error)) {
        for (auto& entry : new_entries) {
            entry.id = 0;
        }
        return false;
    }
    return true;
}

bool state_store::insert_history(const std::vector<history_row>& rows, std::string& error)
{
    if (rows.empty()) {
        return true;
    }
    sqlite3_stmt* s = statement("INSERT INTO notification_history (sent_at, receiver, integration, group_key, "
                                "alertname, fingerprint, alert_id, starts_at, ends_at, flap) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                error);
    if (s == nullptr) {
        return false;
    }
    for (const history_row& r : rows) {
        sqlite3_bind_int64(s, 1, r.sent_at);
        bind_text(s, 2, r.receiver);
        bind_text(s, 3, r.integration);
        bind_text(s, 4, r.group_key);
        bind_text(s, 5, r.alertname);
        sqlite3_bind_int64(s, 6, to_signed(r.fingerprint));
        sqlite3_bind_int64(s, 7, to_signed(r.alert_id));
        sqlite3_bind_int64(s, 8, r.starts_at);
        sqlite3_bind_int64(s, 9, r.ends_at);
        sqlite3_bind_int(s, 10, r.flap);
        if (!step_done(s)) {
            error = describe_failure(fmt::format("record the notification of group {} in the history", r.group_key).c_str());
            return false;
        }
    }
    return true;
}

std::optional<std::vector<history_row>> state_store::load_history(time_ms since, time_ms now, std::size_t max_rows,
                                                                 std::string& error)
{
    std::vector<history_row> rows;
    sqlite3_stmt* s = statement("SELECT sent_at, receiver, integration, group_key, alertname, fingerprint, alert_id, "
                                "starts_at, ends_at, flap FROM notification_history "
                                "WHERE sent_at >= ?1 AND sent_at <= ?2 "
                                "UNION ALL "
                                "SELECT sent_at, receiver, integration, group_key, alertname, fingerprint, alert_id, "
                                "starts_at, ends_at, flap FROM notification_history "
                                "WHERE flap != 0 AND sent_at < ?1 "
                                "LIMIT ?3",
                                error);
    if (s == nullptr) {
        return std::nullopt;
    }
    const auto max_limit = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    sqlite3_bind_int64(s, 1, since);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, static_cast<std::int64_t>(std::min(max_rows, max_limit)));
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        history_row r;
        r.sent_at = sqlite3_column_int64(s, 0);
        r.receiver = text_column(s, 1);
        r.integration = text_column(s, 2);
        r.group_key = text_column(s, 3);
        r.alertname = text_column(s, 4);
        r.fingerprint = to_unsigned(sqlite3_column_int64(s, 5));
        r.alert_id = to_unsigned(sqlite3_column_int64(s, 6));
        r.starts_at = sqlite3_column_int64(s, 7);
        r.ends_at = sqlite3_column_int64(s, 8);
        const std::int64_t flap = sqlite3_column_int64(s, 9);
        // An unknown marker (from a newer tocsind) reads as none rather than failing the report.
        r.flap = flap == flap_started || flap == flap_stopped ? static_cast<std::uint8_t>(flap) : flap_none;
        rows.push_back(std::move(r));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        error = describe_failure("read the notification history");
        return std::nullopt;
    }
    return rows;
}

std::optional<std::size_t> state_store::prune_history(time_ms before, std::size_t max_rows, std::string& error)
{
    sqlite3_stmt* s = statement("DELETE FROM notification_history WHERE rowid IN (SELECT rowid FROM "
                                "notification_history WHERE sent_at < ? ORDER BY sent_at LIMIT ?)",
                                error);
    if (s == nullptr) {
        return std::nullopt;
    }
    sqlite3_bind_int64(s, 1, before);
    sqlite3_bind_int64(s, 2, static_cast<std::int64_t>(
        std::min<std::size_t>(max_rows, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))));
    if (!step_done(s)) {
        error = describe_failure("prune the notification history");
        return std::nullopt;
    }
    return static_cast<std::size_t>(sqlite3_changes(db_));
}

bool state_store::read_rows(const char* sql, const char* what,
                            const std::function<std::optional<std::string>(sqlite3_stmt*)>& row, std::string& error)
{
    sqlite3_stmt* s = statement(sql, error);
    if (s == nullptr) {
        return false;
    }
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (auto problem = row(s)) {
            sqlite3_reset(s);
            error = fmt::format("state database {}: {}; {}", path_, *problem, fix_for(SQLITE_CORRUPT, path_));
            return false;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        error = describe_failure(fmt::format("read {}", what).c_str());
        return false;
    }
    return true;
}

std::optional<dispatch_state> state_store::load_dispatch_state(std::string& error)
{
    dispatch_state state;
    auto read_alert = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        alert a;
        a.id = to_unsigned(sqlite3_column_int64(s, 0));
        if (!alert_from_json(text_column(s, 1), a)) {
            return fmt::format("dispatcher alert {:016x} has invalid data", a.id);
        }
        state.alerts.push_back(std::move(a));
        return std::nullopt;
    };
    auto read_group = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        group_record g;
        g.group_key = text_column(s, 0);
        g.route_key = text_column(s, 1);
        if (!labels_from_json(text_column(s, 2), g.group_labels)) {
            return fmt::format("group {} has invalid labels", g.group_key);
        }
        g.next_flush_at = sqlite3_column_int64(s, 3);
        g.has_flushed = sqlite3_column_int(s, 4) != 0;
        state.groups.push_back(std::move(g));
        return std::nullopt;
    };
    auto read_nflog = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        nflog_record n;
        n.group_key = text_column(s, 0);
        n.integration_id = text_column(s, 1);
        if (!fingerprints_from_json(text_column(s, 2), n.firing) ||
            !fingerprints_from_json(text_column(s, 3), n.resolved)) {
            return fmt::format("notification log entry of group {} has invalid alert lists", n.group_key);
        }
        n.sent_at = sqlite3_column_int64(s, 4);
        n.expires_at = sqlite3_column_int64(s, 5);
        state.nflog.push_back(std::move(n));
        return std::nullopt;
    };
    auto read_copy = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        std::string group_key = text_column(s, 0);
        alert a;
        a.id = to_unsigned(sqlite3_column_int64(s, 1));
        if (!alert_from_json(text_column(s, 2), a)) {
            return fmt::format("the copy of alert {:016x} in group {} has invalid data", a.id, group_key);
        }
        state.copies.emplace_back(std::move(group_key), std::move(a));
        return std::nullopt;
    };
    const bool ok =
        read_rows("SELECT id, data FROM dispatch_alerts ORDER BY id", "dispatcher alerts", read_alert, error) &&
        read_rows("SELECT group_key, route_key, group_labels, next_flush_at, has_flushed FROM dispatch_groups",
                  "group timers", read_group, error) &&
        read_rows("SELECT group_key, integration_id, firing, resolved, sent_at, expires_at FROM nflog",
                  "the notification log", read_nflog, error) &&
        read_rows("SELECT group_key, id, data FROM dispatch_copies ORDER BY group_key, id",
                  "the copies of moved alerts", read_copy, error);
    if (!ok) {
        return std::nullopt;
    }
    return state;
}

std::optional<std::vector<outbox_entry>> state_store::load_outbox(std::string& error)
{
    std::vector<outbox_entry> entries;
    auto read_entry = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        outbox_entry e;
        e.id = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
        e.message.integration.receiver = text_column(s, 1);
        auto kind = parse_integration_kind(text_column(s, 2));
        if (!kind) {
            return fmt::format("outbox entry {} has an unknown kind", e.id);
        }
        e.message.integration.kind = *kind;
        e.message.integration.index = static_cast<std::uint32_t>(sqlite3_column_int64(s, 3));
        e.message.group_key = text_column(s, 4);
        e.message.body = text_column(s, 5);
        e.message.resolved = sqlite3_column_int(s, 6) != 0;
        e.message.dedup_key = text_column(s, 7);
        e.message.alert_count = static_cast<std::size_t>(sqlite3_column_int64(s, 8));
        e.created_at = sqlite3_column_int64(s, 9);
        e.attempts = static_cast<std::uint32_t>(sqlite3_column_int64(s, 10));
        e.next_attempt_at = sqlite3_column_int64(s, 11);
        e.last_error = text_column(s, 12);
        entries.push_back(std::move(e));
        return std::nullopt;
    };
    if (!read_rows("SELECT id, receiver, kind, idx, group_key, body, resolved, dedup_key, alert_count, "
                   "created_at, attempts, next_attempt_at, last_error FROM outbox ORDER BY id",
                   "the outbox", read_entry, error)) {
        return std::nullopt;
    }
    return entries;
}

bool state_store::record_outcomes(const std::vector<outbox_entry>& updates, const std::vector<std::uint64_t>& removed,
                                  std::string& error)
{
    if (updates.empty() && removed.empty()) {
        return true;
    }
    const bool relax = sync_ == sync_mode::full;
    if (relax && !execute("PRAGMA synchronous=NORMAL", error)) {
        return false;
    }
    bool ok = execute("BEGIN IMMEDIATE", error);
    if (ok) {
        for (const auto& entry : updates) {
            ok = ok && update_outbox(entry, error);
        }
        for (std::uint64_t id : removed) {
            ok = ok && remove_outbox(id, error);
        }
        ok = commit_or_rollback(ok, error);
    }
    std::string restore_error;
    if (relax && !execute("PRAGMA synchronous=FULL", restore_error)) {
        // Later commits would silently lose their power-loss safety, so this is a failure too.
        error = restore_error;
        return false;
    }
    return ok;
}

bool state_store::update_outbox(const outbox_entry& entry, std::string& error)
{
    sqlite3_stmt* s =
        statement("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?", error);
    if (s == nullptr) {
        return false;
    }
    sqlite3_bind_int64(s, 1, entry.attempts);
    sqlite3_bind_int64(s, 2, entry.next_attempt_at);
    bind_text(s, 3, entry.last_error);
    sqlite3_bind_int64(s, 4, static_cast<std::int64_t>(entry.id));
    if (!step_done(s)) {
        error = describe_failure(fmt::format("update outbox entry {}", entry.id).c_str());
        return false;
    }
    return true;
}

bool state_store::remove_outbox(std::uint64_t id, std::string& error)
{
    sqlite3_stmt* s = statement("DELETE FROM outbox WHERE id = ?", error);
    if (s == nullptr) {
        return false;
    }
    sqlite3_bind_int64(s, 1, static_cast<std::int64_t>(id));
    if (!step_done(s)) {
        error = describe_failure(fmt::format("remove outbox entry {}", id).c_str());
        return false;
    }
    return true;
}

bool state_store::set_slack_thread(const thread_key& key, const slack_thread& thread, std::string& error)
{
    sqlite3_stmt* s = statement(
        "INSERT OR REPLACE INTO slack_threads (integration_id, group_key, channel, ts) VALUES (?, ?, ?, ?)", error);
    if (s == nullptr) {
        return false;
    }
    bind_text(s, 1, key.first);
    bind_text(s, 2, key.second);
    bind_text(s, 3, thread.channel);
    bind_text(s, 4, thread.ts);
    if (!step_done(s)) {
        error = describe_failure("save a Slack thread");
        return false;
    }
    return true;
}

bool state_store::remove_slack_thread(const thread_key& key, std::string& error)
{
    sqlite3_stmt* s = statement("DELETE FROM slack_threads WHERE integration_id = ? AND group_key = ?", error);
    if (s == nullptr) {
        return false;
    }
    bind_text(s, 1, key.first);
    bind_text(s, 2, key.second);
    if (!step_done(s)) {
        error = describe_failure("remove a Slack thread");
        return false;
    }
    return true;
}

std::optional<std::map<state_store::thread_key, slack_thread>> state_store::load_slack_threads(std::string& error)
{
    std::map<thread_key, slack_thread> threads;
    auto read_thread = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        threads[{text_column(s, 0), text_column(s, 1)}] = slack_thread{text_column(s, 2), text_column(s, 3)};
        return std::nullopt;
    };
    if (!read_rows("SELECT integration_id, group_key, channel, ts FROM slack_threads", "Slack threads", read_thread,
                   error)) {
        return std::nullopt;
    }
    return threads;
}

bool state_store::set_override(const threshold_override& o, std::string& error)
{
    sqlite3_stmt* s = statement("INSERT OR REPLACE INTO threshold_overrides (rule_name, tiers, created_at, expires_at, "
                                "reason, author, token_name) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                error);
    if (s == nullptr) {
        return false;
    }
    bind_text(s, 1, o.rule_name);
    bind_text(s, 2, override_tiers_to_json(o.tiers));
    sqlite3_bind_int64(s, 3, o.created_at);
    sqlite3_bind_int64(s, 4, o.expires_at);
    bind_text(s, 5, o.reason);
    bind_text(s, 6, o.author);
    bind_text(s, 7, o.token_name);
    if (!step_done(s)) {
        error = describe_failure(fmt::format("save the threshold override of rule {}", o.rule_name).c_str());
        return false;
    }
    return true;
}

bool state_store::remove_override(const std::string& rule_name, std::string& error)
{
    sqlite3_stmt* s = statement("DELETE FROM threshold_overrides WHERE rule_name = ?", error);
    if (s == nullptr) {
        return false;
    }
    bind_text(s, 1, rule_name);
    if (!step_done(s)) {
        error = describe_failure(fmt::format("delete the threshold override of rule {}", rule_name).c_str());
        return false;
    }
    return true;
}

std::optional<std::vector<threshold_override>> state_store::load_overrides(std::vector<std::string>& unreadable,
                                                                           std::string& error)
{
    std::vector<threshold_override> overrides;
    unreadable.clear();
    auto read_override = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        threshold_override o;
        o.rule_name = text_column(s, 0);
        if (!override_tiers_from_json(text_column(s, 1), o.tiers)) {
            // Skipped and reported by the caller: the file's thresholds apply to that rule.
            unreadable.push_back(o.rule_name);
            return std::nullopt;
        }
        o.created_at = sqlite3_column_int64(s, 2);
        o.expires_at = sqlite3_column_int64(s, 3);
        o.reason = text_column(s, 4);
        o.author = text_column(s, 5);
        o.token_name = text_column(s, 6);
        overrides.push_back(std::move(o));
        return std::nullopt;
    };
    if (!read_rows("SELECT rule_name, tiers, created_at, expires_at, reason, author, token_name "
                   "FROM threshold_overrides ORDER BY rule_name",
                   "threshold overrides", read_override, error)) {
        return std::nullopt;
    }
    return overrides;
}

} // namespace tocsin

namespace tocsin {

bool state_store::replace_baselines(const std::vector<baseline_record>& records, std::string& error)
{
    if (!execute("BEGIN IMMEDIATE", error)) {
        return false;
    }
    bool ok = execute("DELETE FROM baselines", error);
    sqlite3_stmt* s = ok ? statement("INSERT OR REPLACE INTO baselines (rule_name, series, spec_hash, last_sample_at, "
                                     "state, last_output) VALUES (?, ?, ?, ?, ?, ?)",
                                     error)
                         : nullptr;
    ok = ok && s != nullptr;
    for (const baseline_record& rec : records) {
        if (!ok) {
            break;
        }
        bind_text(s, 1, rec.rule_name);
        bind_text(s, 2, labels_to_json(rec.series));
        sqlite3_bind_int64(s, 3, static_cast<std::int64_t>(rec.spec_hash));
        sqlite3_bind_int64(s, 4, rec.last_sample_at);
        sqlite3_bind_blob(s, 5, rec.state.data(), static_cast<int>(rec.state.size()), SQLITE_TRANSIENT);
        const std::string last = write_output(rec.last);
        sqlite3_bind_blob(s, 6, last.data(), static_cast<int>(last.size()), SQLITE_TRANSIENT);
        if (!step_done(s)) {
            error = describe_failure(fmt::format("save the baseline of rule {}", rec.rule_name).c_str());
            ok = false;
        }
    }
    return commit_or_rollback(ok, error);
}

std::optional<std::vector<baseline_record>> state_store::load_baselines(std::size_t& unreadable, std::string& error)
{
    std::vector<baseline_record> records;
    unreadable = 0;
    auto read_baseline = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        baseline_record rec;
        rec.rule_name = text_column(s, 0);
        if (!labels_from_json(text_column(s, 1), rec.series)) {
            // A baseline is rebuilt by warming up, so a damaged row costs that series its
            // warm-up and nothing else.
            ++unreadable;
            return std::nullopt;
        }
        rec.spec_hash = static_cast<std::uint64_t>(sqlite3_column_int64(s, 2));
        rec.last_sample_at = sqlite3_column_int64(s, 3);
        const void* blob = sqlite3_column_blob(s, 4);
        const int size = sqlite3_column_bytes(s, 4);
        if (blob != nullptr && size > 0) {
            rec.state.assign(static_cast<const char*>(blob), static_cast<std::size_t>(size));
        }
        const void* last = sqlite3_column_blob(s, 5);
        const int last_size = sqlite3_column_bytes(s, 5);
        if (last == nullptr ||
            !read_output(std::string_view(static_cast<const char*>(last), static_cast<std::size_t>(last_size)),
                         rec.last)) {
            ++unreadable;
            return std::nullopt;
        }
        records.push_back(std::move(rec));
        return std::nullopt;
    };
    if (!read_rows("SELECT rule_name, series, spec_hash, last_sample_at, state, last_output FROM baselines", "baselines",
                   read_baseline, error)) {
        return std::nullopt;
    }
    return records;
}

} // namespace tocsin

namespace tocsin {

bool state_store::apply_silence_changes(const silence_changes& changes, std::string& error)
{
    if (changes.empty()) {
        return true;
    }
    if (!execute("BEGIN IMMEDIATE", error)) {
        return false;
    }
    bool ok = true;
    if (!changes.upserted.empty()) {
        sqlite3_stmt* s = statement("INSERT OR REPLACE INTO silences (id, data) VALUES (?, ?)", error);
        ok = s != nullptr;
        for (const silence& item : changes.upserted) {
            if (!ok) {
                break;
            }
            bind_text(s, 1, item.id);
            bind_text(s, 2, stored_silence(item));
            if (!step_done(s)) {
                error = describe_failure(fmt::format("save silence {}", item.id).c_str());
                ok = false;
            }
        }
    }
    if (ok && !changes.deleted.empty()) {
        sqlite3_stmt* s = statement("DELETE FROM silences WHERE id = ?", error);
        ok = s != nullptr;
        for (const std::string& id : changes.deleted) {
            if (!ok) {
                break;
            }
            bind_text(s, 1, id);
            if (!step_done(s)) {
                error = describe_failure(fmt::format("delete silence {}", id).c_str());
                ok = false;
            }
        }
    }
    return commit_or_rollback(ok, error);
}

std::optional<std::vector<silence>> state_store::load_silences(std::vector<std::string>& unreadable, std::string& error)
{
    std::vector<silence> out;
    unreadable.clear();
    auto read_silence_row = [&](sqlite3_stmt* s) -> std::optional<std::string> {
        const std::string id = text_column(s, 0);
        std::string problem;
        auto parsed = parse_stored_silence(text_column(s, 1), problem);
        if (!parsed || parsed->id != id) {
            // Reported by the caller; the other silences still load.
            unreadable.push_back(fmt::format("{}: {}", id, parsed ? "id does not match the row" : problem));
            return std::nullopt;
        }
        out.push_back(std::move(*parsed));
        return std::nullopt;
    };
    if (!read_rows("SELECT id, data FROM silences ORDER BY id", "silences", read_silence_row, error)) {
        return std::nullopt;
    }
    return out;
}

} // namespace tocsin
