// The delivery part of the state store: dispatcher state, outbox and Slack threads.

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

std::unique_ptr<state_store> open_store(const std::string& dir)
{
    std::string error;
    auto store = state_store::open(dir, error);
    INFO(error);
    REQUIRE(store);
    return store;
}

alert make_alert(std::uint64_t id, const std::string& instance, time_ms ends_at = 0)
{
    alert a;
    a.id = id;
    a.labels = label_set{{"alertname", "DiskFull"}, {"instance", instance}, {"severity", "critical"}};
    a.annotations = {{"summary", "disk 99% full on " + instance}, {"zone", "Zürich"}};
    a.starts_at = 1'000;
    a.ends_at = ends_at;
    a.updated_at = 2'000;
    a.generator_url = "http://tocsin.example/rules";
    a.source = "rules";
    return a;
}

outbox_entry make_entry(const std::string& group_key, bool resolved)
{
    outbox_entry e;
    e.message.integration = integration_ref{"oncall", integration_kind::pagerduty, 1};
    e.message.group_key = group_key;
    e.message.body = R"({"event_action":"trigger"})";
    e.message.resolved = resolved;
    e.message.dedup_key = "abc123";
    e.message.alert_count = 3;
    e.created_at = 5'000;
    e.next_attempt_at = 5'000;
    return e;
}

dispatch_changes sample_changes()
{
    dispatch_changes c;
    c.alerts_upserted = {make_alert(1, "h1"), make_alert(2, "h2", 9'000)};
    c.alerts_upserted[0].acknowledged_by = "alice";
    c.alerts_upserted[0].ack_comment = "rolling back";
    c.alerts_upserted[0].acknowledged_at = 3'000;
    c.groups_upserted = {group_record{"{}:{alertname=\"DiskFull\"}", "{}", label_set{{"alertname", "DiskFull"}},
                                      40'000, true}};
    c.nflog_upserted = {nflog_record{"{}:{alertname=\"DiskFull\"}", "oncall/pagerduty/1",
                                     {0x1111222233334444ULL, 0xffffffffffffffffULL}, {7}, 30'000, 90'000}};
    return c;
}

} // namespace

TEST_CASE("delivery store: dispatch state, outbox and ids round trip")
{
    temp_dir dir;
    std::vector<outbox_entry> entries = {make_entry("g1", false), make_entry("g1", true)};
    {
        auto store = open_store(dir.path().string());
        std::string error;
        REQUIRE(store->commit({}, {sample_changes()}, entries, error));
        CHECK(entries[0].id != 0);
        CHECK(entries[1].id > entries[0].id);
    }
    auto store = open_store(dir.path().string());
    std::string error;
    auto state = store->load_dispatch_state(error);
    REQUIRE(state);
    REQUIRE(state->alerts.size() == 2);
    CHECK(state->alerts[0].labels == make_alert(1, "h1").labels);
    CHECK(state->alerts[0].annotations == make_alert(1, "h1").annotations);
    CHECK(state->alerts[1].ends_at == 9'000);
    CHECK(state->alerts[0].generator_url == "http://tocsin.example/rules");
    CHECK(state->alerts[0].acknowledged_by == "alice");
    CHECK(state->alerts[0].ack_comment == "rolling back");
    CHECK(state->alerts[0].acknowledged_at == 3'000);
    CHECK_FALSE(state->alerts[1].acknowledged());
    REQUIRE(state->groups.size() == 1);
    CHECK(state->groups[0].next_flush_at == 40'000);
    CHECK(state->groups[0].has_flushed);
    CHECK(state->groups[0].group_labels == label_set{{"alertname", "DiskFull"}});
    REQUIRE(state->nflog.size() == 1);
    CHECK(state->nflog[0].firing == std::vector<std::uint64_t>{0x1111222233334444ULL, 0xffffffffffffffffULL});
    CHECK(state->nflog[0].resolved == std::vector<std::uint64_t>{7});
    CHECK(state->nflog[0].expires_at == 90'000);

    auto outbox = store->load_outbox(error);
    REQUIRE(outbox);
    REQUIRE(outbox->size() == 2);
    CHECK((*outbox)[0].id == entries[0].id);
    CHECK((*outbox)[0].message.integration == entries[0].message.integration);
    CHECK((*outbox)[0].message.body == entries[0].message.body);
    CHECK((*outbox)[1].message.resolved);
    CHECK((*outbox)[1].message.alert_count == 3);
}

TEST_CASE("delivery store: later batches apply after earlier ones")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    dispatch_changes first;
    first.alerts_upserted = {make_alert(1, "h1")};
    first.groups_upserted = {group_record{"g", "{}", {}, 1, false}};
    dispatch_changes second;
    second.alerts_deleted = {1};
    second.groups_deleted = {"g"};
    dispatch_changes third;
    third.alerts_upserted = {make_alert(1, "h9")};
    std::vector<outbox_entry> none;
    std::string error;
    REQUIRE(store->commit({}, {first, second, third}, none, error));
    auto state = store->load_dispatch_state(error);
    REQUIRE(state);
    REQUIRE(state->alerts.size() == 1);
    CHECK(state->alerts[0].labels.get("instance") == "h9");
    CHECK(state->groups.empty());
}

TEST_CASE("delivery store: outbox update and removal")
{
    temp_dir dir;
    auto store = open_store(dir.path().string());
    std::vector<outbox_entry> entries = {make_entry("g1", false), make_entry("g2", false)};
    std::string error;
    REQUIRE(store->commit({}, {}, entries, error));
    entries[0].attempts = 4;
    entries[0].next_attempt_at = 77'000;
    entries[0].last_error = "HTTP 503";
    REQUIRE(store->update_outbox(entries[0], error));
    REQUIRE(store->remove_outbox(entries[1].id, error));
    auto outbox = store->load_outbox(error);
    REQUIRE(outbox);
    REQUIRE(outbox->size() == 1);
    CHECK((*outbox)[0].attempts == 4);
    CHECK((*outbox)[0].next_attempt_at == 77'000);
    CHECK((*outbox)[0].last_error == "HTTP 503");
}

TEST_CASE("delivery store: slack threads keep ts as text")
{
    temp_dir dir;
    {
        auto store = open_store(dir.path().string());
        std::string error;
        REQUIRE(store->set_slack_thread({"ops/slack/0", "g1"}, slack_thread{"C0123", "1503435956.000240"}, error));
        REQUIRE(store->set_slack_thread({"ops/slack/0", "g2"}, slack_thread{"C0123", "1503435957.000100"}, error));
        REQUIRE(store->remove_slack_thread({"ops/slack/0", "g2"}, error));
    }
    auto store = open_store(dir.path().string());
    std::string error;
    auto threads = store->load_slack_threads(error);
    REQUIRE(threads);
    REQUIRE(threads->size() == 1);
    CHECK(threads->at({"ops/slack/0", "g1"}).ts == "1503435956.000240");
}

TEST_CASE("delivery store: a killed process keeps committed notifications")
{
    temp_dir dir;
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        std::string error;
        auto store = state_store::open(dir.path().string(), error);
        std::vector<outbox_entry> entries = {make_entry("g1", false)};
        bool ok = store && store->commit({}, {sample_changes()}, entries, error);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    auto store = open_store(dir.path().string());
    std::string error;
    auto outbox = store->load_outbox(error);
    REQUIRE(outbox);
    CHECK(outbox->size() == 1);
    auto state = store->load_dispatch_state(error);
    REQUIRE(state);
    CHECK(state->nflog.size() == 1);
}

TEST_CASE("delivery store: copies round trip")
{
    temp_dir dir;
    const std::string slack_group = R"({}:{alertname="DiskFull"})";
    const std::string pd_group = R"({}/{severity="critical"}:{alertname="DiskFull"})";
    alert firing_copy = make_alert(1, "h1");
    firing_copy.labels = firing_copy.labels.with("severity", "warning");

    {
        auto store = open_store(dir.path().string());
        dispatch_changes first;
        first.copies_upserted = {{slack_group, firing_copy}, {pd_group, make_alert(1, "h1", 9'000)},
                                 {slack_group, make_alert(2, "h2")}};
        dispatch_changes second;
        second.copies_deleted = {{slack_group, 2}, {pd_group, 2}};
        std::vector<outbox_entry> none;
        std::string error;
        REQUIRE(store->commit({}, {first, second}, none, error));
    }

    auto store = open_store(dir.path().string());
    std::string error;
    auto state = store->load_dispatch_state(error);
    INFO(error);
    REQUIRE(state);
    REQUIRE(state->copies.size() == 2);

    // Ordered by group key, then alert id.
    CHECK(state->copies[0].first == pd_group);
    CHECK(state->copies[0].second.id == 1);
    CHECK(state->copies[0].second.ends_at == 9'000);
    CHECK(state->copies[1].first == slack_group);
    const alert& loaded = state->copies[1].second;
    CHECK(loaded.id == 1);
    CHECK(loaded.labels == firing_copy.labels);
    CHECK(loaded.annotations == firing_copy.annotations);
    CHECK(loaded.starts_at == 1'000);
    CHECK(loaded.ends_at == 0);
    CHECK(loaded.updated_at == 2'000);
    CHECK(loaded.generator_url == firing_copy.generator_url);
}

TEST_CASE("delivery store: version 3 database migrates")
{
    temp_dir dir;
    std::string path;
    {
        auto store = open_store(dir.path().string());
        path = store->path();
        std::vector<outbox_entry> entries = {make_entry("g1", false)};
        std::string error;
        REQUIRE(store->commit({}, {sample_changes()}, entries, error));
    }
    {
        // Migrations 1 to 3 are unchanged, so removing what versions 4 to 7 added gives the
        // version 3 schema as released.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        const char* downgrade =
            "DROP TABLE dispatch_copies; DROP TABLE threshold_overrides; DROP TABLE baselines; DROP TABLE silences; "
            "UPDATE schema_version SET version = 3;";
        REQUIRE(sqlite3_exec(db, downgrade, nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }

    auto store = open_store(dir.path().string());
    std::string error;
    auto state = store->load_dispatch_state(error);
    INFO(error);
    REQUIRE(state);
    CHECK(state->alerts.size() == 2);
    CHECK(state->groups.size() == 1);
    CHECK(state->nflog.size() == 1);
    CHECK(state->copies.empty());
    auto outbox = store->load_outbox(error);
    REQUIRE(outbox);
    CHECK(outbox->size() == 1);

    dispatch_changes c;
    c.copies_upserted = {{"g", make_alert(1, "h1")}};
    std::vector<outbox_entry> none;
    REQUIRE(store->commit({}, {c}, none, error));
    state = store->load_dispatch_state(error);
    REQUIRE(state);
    REQUIRE(state->copies.size() == 1);
    CHECK(state->copies[0].first == "g");

    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* query = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &query, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(query) == SQLITE_ROW);
    CHECK(sqlite3_column_int(query, 0) == state_store::schema_version);
    CHECK(state_store::schema_version == 8);
    sqlite3_finalize(query);
    sqlite3_close(db);
}
