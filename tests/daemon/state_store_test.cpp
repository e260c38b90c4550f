#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "daemon/state_store.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using tocsin::test::temp_dir;

namespace {

persisted_alert make_record(std::uint64_t id, std::string host, alert_state state)
{
    persisted_alert a;
    a.id = id;
    a.rule_name = "HighCpu";
    a.rule_hash = 0xfedcba9876543210ULL;
    a.series = label_set{{"__name__", "cpu"}, {"host", std::move(host)}, {"zone", "Zürich"}};
    a.state = state;
    a.level = severity::critical;
    a.value = 93.5;
    a.active_at = 1'733'000'000'000;
    a.fired_at = state == alert_state::firing ? 1'733'000'060'000 : 0;
    a.last_sample_at = 1'733'000'090'000;
    a.no_data = false;
    a.tier_held_since = {1'733'000'000'000, 0};
    a.tier_released_at = {0, 1'733'000'030'000};
    a.tier_levels = {severity::warning, severity::critical};
    return a;
}

alert_event make_event(alert_event::kind event_kind, const persisted_alert& record)
{
    alert_event e;
    e.what = event_kind;
    e.alert.id = record.id;
    e.alert.rule_name = record.rule_name;
    e.record = record;
    return e;
}

void check_same(const persisted_alert& a, const persisted_alert& b)
{
    CHECK(a.id == b.id);
    CHECK(a.rule_name == b.rule_name);
    CHECK(a.rule_hash == b.rule_hash);
    CHECK(a.series == b.series);
    CHECK(a.series.fingerprint() == b.series.fingerprint());
    CHECK(a.state == b.state);
    CHECK(a.level == b.level);
    CHECK(a.value == b.value);
    CHECK(a.active_at == b.active_at);
    CHECK(a.fired_at == b.fired_at);
    CHECK(a.last_sample_at == b.last_sample_at);
    CHECK(a.no_data == b.no_data);
    CHECK(a.tier_held_since == b.tier_held_since);
    CHECK(a.tier_released_at == b.tier_released_at);
    CHECK(a.tier_levels == b.tier_levels);
}

std::unique_ptr<state_store> open_store(const std::string& dir)
{
    std::string error;
    auto store = state_store::open(dir, error);
    INFO(error);
    REQUIRE(store);
    CHECK(error.empty());
    return store;
}

std::vector<persisted_alert> load(state_store& store)
{
    std::string error;
    auto alerts = store.load_alerts(error);
    INFO(error);
    REQUIRE(alerts);
    return *alerts;
}

} // namespace

TEST_CASE("state_store: open creates database")
{
    temp_dir dir;
    std::string state_dir = (dir.path() / "a" / "b").string();

    auto store = open_store(state_dir);

    CHECK(std::filesystem::exists(std::filesystem::path(state_dir) / "tocsin.db"));
    CHECK(store->path() == (std::filesystem::path(state_dir) / "tocsin.db").string());
    CHECK(load(*store).empty());
}

TEST_CASE("state_store: database is in WAL mode")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());

    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(store->path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* statement = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &statement, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(statement, 0))) == "wal");
    sqlite3_finalize(statement);
    sqlite3_close(db);
}

TEST_CASE("state_store: alerts round trip")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    persisted_alert firing = make_record(0x8000000000000001ULL, "a", alert_state::firing); // high bit set
    persisted_alert pending = make_record(42, "b", alert_state::pending);
    pending.level = severity::info;
    pending.no_data = true;
    pending.value = -std::numeric_limits<double>::infinity();

    std::string error;
    REQUIRE(store->apply({make_event(alert_event::kind::firing, firing),
                          make_event(alert_event::kind::pending, pending)},
                         error));

    auto alerts = load(*store);
    REQUIRE(alerts.size() == 2);
    // Ordered by id as stored, which is the signed bit cast: the high-bit id comes first.
    check_same(alerts[0], firing);
    check_same(alerts[1], pending);
}

TEST_CASE("state_store: NaN value round trip")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    persisted_alert a = make_record(7, "a", alert_state::firing);
    a.value = std::nan("");

    std::string error;
    REQUIRE(store->apply({make_event(alert_event::kind::firing, a)}, error));

    auto alerts = load(*store);
    REQUIRE(alerts.size() == 1);
    CHECK(std::isnan(alerts[0].value));
}

TEST_CASE("state_store: upsert and delete")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    persisted_alert pending = make_record(1, "a", alert_state::pending);
    persisted_alert firing = make_record(1, "a", alert_state::firing);
    firing.value = 99;
    persisted_alert other = make_record(2, "b", alert_state::firing);

    std::string error;
    REQUIRE(store->apply({make_event(alert_event::kind::pending, pending),
                          make_event(alert_event::kind::firing, other)},
                         error));
    REQUIRE(store->apply({make_event(alert_event::kind::firing, firing)}, error));
    auto alerts = load(*store);
    REQUIRE(alerts.size() == 2);
    check_same(alerts[0], firing);

    persisted_alert resolved = firing;
    resolved.state = alert_state::inactive;
    REQUIRE(store->apply({make_event(alert_event::kind::resolved, resolved)}, error));
    alerts = load(*store);
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].id == 2);

    // An inactive record deletes even when the event kind is not `resolved`.
    persisted_alert inactive = other;
    inactive.state = alert_state::inactive;
    REQUIRE(store->apply({make_event(alert_event::kind::updated, inactive)}, error));
    CHECK(load(*store).empty());
}

TEST_CASE("state_store: replace_all swaps everything")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    std::string error;
    REQUIRE(store->apply({make_event(alert_event::kind::firing, make_record(1, "a", alert_state::firing))}, error));

    persisted_alert b = make_record(2, "b", alert_state::pending);
    persisted_alert c = make_record(3, "c", alert_state::firing);
    REQUIRE(store->replace_all({b, c}, error));

    auto alerts = load(*store);
    REQUIRE(alerts.size() == 2);
    check_same(alerts[0], b);
    check_same(alerts[1], c);

    REQUIRE(store->replace_all({}, error));
    CHECK(load(*store).empty());
}

TEST_CASE("state_store: reopen without shutdown")
{
    temp_dir dir;
    persisted_alert a = make_record(5, "a", alert_state::firing);
    {
        auto store = open_store(dir.path().string());
        std::string error;
        REQUIRE(store->apply({make_event(alert_event::kind::firing, a)}, error));
        REQUIRE(store->set_meta("config_hash", "abc123", error));
        // Destroyed without replace_all, as when the daemon stops without a clean shutdown.
    }

    auto reopened = open_store(dir.path().string());
    auto alerts = load(*reopened);
    REQUIRE(alerts.size() == 1);
    check_same(alerts[0], a);
    std::string error;
    CHECK(reopened->get_meta("config_hash", error) == "abc123");
}

TEST_CASE("state_store: killed process keeps data")
{
    temp_dir dir;
    persisted_alert a = make_record(9, "a", alert_state::firing);

    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The child commits and then ends without closing the database or running any
        // destructor, so the committed transaction exists only in the WAL file.
        std::string error;
        auto store = state_store::open(dir.path().string(), error);
        bool ok = store && store->apply({make_event(alert_event::kind::firing, a)}, error);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(std::filesystem::exists(dir.path() / "tocsin.db-wal"));

    auto store = open_store(dir.path().string());
    auto alerts = load(*store);
    REQUIRE(alerts.size() == 1);
    check_same(alerts[0], a);
}

TEST_CASE("state_store: meta keys")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    std::string error = "stale";

    CHECK_FALSE(store->get_meta("missing", error));
    CHECK(error.empty());

    REQUIRE(store->set_meta("config_hash", "one", error));
    REQUIRE(store->set_meta("config_hash", "two", error));
    CHECK(store->get_meta("config_hash", error) == "two");
}

TEST_CASE("state_store: corrupt file error")
{
    temp_dir dir;
    std::string path = dir.write("tocsin.db", std::string(8192, 'x'));

    std::string error;
    auto store = state_store::open(dir.path().string(), error);

    CHECK_FALSE(store);
    CHECK_THAT(error, Catch::Contains(path));
    CHECK_THAT(error, Catch::Contains("not a SQLite database"));
    CHECK_THAT(error, Catch::Contains("move the file aside"));
}

TEST_CASE("state_store: damaged pages detected")
{
    temp_dir dir;
    std::string path;
    {
        auto store = open_store(dir.path().string());
        path = store->path();
        std::vector<persisted_alert> many;
        for (std::uint64_t id = 1; id <= 200; ++id) {
            many.push_back(make_record(id, std::string(200, 'h') + std::to_string(id), alert_state::firing));
        }
        std::string error;
        REQUIRE(store->replace_all(many, error));
    }
    // Overwrite the middle of the file (past the header page) with garbage.
    auto size = std::filesystem::file_size(path);
    REQUIRE(size > 3 * 4096);
    {
        std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
        file.seekp(static_cast<std::streamoff>(4096));
        std::string garbage(2 * 4096, '\x5a');
        file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    }

    std::string error;
    auto store = state_store::open(dir.path().string(), error);

    CHECK_FALSE(store);
    CHECK_THAT(error, Catch::Contains(path));
    CHECK_THAT(error, Catch::Contains("corrupt"));
    CHECK_THAT(error, Catch::Contains("move the file aside"));
}

TEST_CASE("state_store: unusable path errors")
{
    temp_dir dir;
    std::string error;

    std::string file = dir.write("plain_file", "x");
    CHECK_FALSE(state_store::open(file, error));
    CHECK_THAT(error, Catch::Contains("cannot create state directory " + file));

    std::filesystem::create_directory(dir.path() / "db_is_dir");
    std::filesystem::create_directory(dir.path() / "db_is_dir" / "tocsin.db");
    error.clear();
    CHECK_FALSE(state_store::open((dir.path() / "db_is_dir").string(), error));
    CHECK_THAT(error, Catch::Contains((dir.path() / "db_is_dir" / "tocsin.db").string()));
}

TEST_CASE("state_store: newer schema rejected")
{
    temp_dir dir;
    std::string path;
    {
        auto store = open_store(dir.path().string());
        path = store->path();
    }
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);

    std::string error;
    CHECK_FALSE(state_store::open(dir.path().string(), error));
    CHECK_THAT(error, Catch::Contains("schema version 99"));
    CHECK_THAT(error, Catch::Contains(path));
}

TEST_CASE("state_store: version 1 database migrates with empty tier levels")
{
    temp_dir dir;
    std::string path = (dir.path() / "tocsin.db").string();
    {
        // The version 1 schema as released, with one stored alert.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        const char* v1 = R"sql(
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1);
            CREATE TABLE alerts (
                id INTEGER PRIMARY KEY, rule_name TEXT NOT NULL, rule_hash INTEGER NOT NULL,
                series TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL, value REAL,
                active_at INTEGER NOT NULL, fired_at INTEGER NOT NULL, last_sample_at INTEGER NOT NULL,
                no_data INTEGER NOT NULL, tier_held_since TEXT NOT NULL, tier_released_at TEXT NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO alerts VALUES (7, 'HighCpu', 1, '{"__name__":"cpu","host":"a"}', 'firing',
                'critical', 97.0, 1000, 2000, 3000, 0, '[1000]', '[0]');
        )sql";
        REQUIRE(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }

    auto store = open_store(dir.path().string());
    std::string error;
    auto alerts = store->load_alerts(error);
    INFO(error);
    REQUIRE(alerts);
    REQUIRE(alerts->size() == 1);
    const auto& a = alerts->front();
    CHECK(a.id == 7);
    CHECK(a.state == alert_state::firing);
    CHECK(a.tier_held_since == std::vector<time_ms>{1000});
    CHECK(a.tier_levels.empty());
}
