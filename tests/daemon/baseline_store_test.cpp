// Detector baselines in the state database: saved whole, read back as written, and a damaged
// row costs only that row.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "daemon/state_store.hpp"
#include "rules/engine.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using tocsin::test::temp_dir;

namespace {

baseline_record make_record(const std::string& rule, const std::string& job, std::string state)
{
    baseline_record rec;
    rec.rule_name = rule;
    rec.spec_hash = 0xfedcba9876543210ull; // above INT64_MAX, so the signed round trip is tested
    rec.series = label_set{{"__name__", "queue_depth"}, {"job", job}};
    rec.last_sample_at = 1'733'000'000'000;
    rec.state = std::move(state);
    rec.last.ready = true;
    rec.last.score = 4.5;
    rec.last.baseline = 100;
    rec.last.scale = 2;
    rec.last.samples = 240;
    return rec;
}

} // namespace

TEST_CASE("state_store: baselines round trip and a snapshot replaces the previous one")
{
    temp_dir dir;
    // Binary state with zero bytes and bytes above 0x7f.
    const std::string binary("\x01\x00\xff\x80tail", 8);
    {
        std::string error;
        auto store = state_store::open(dir.path().string(), error);
        INFO(error);
        REQUIRE(store);
        REQUIRE(store->replace_baselines({make_record("QueueAnomaly", "old", "x")}, error));
        REQUIRE(store->replace_baselines(
            {make_record("QueueAnomaly", "worker", binary), make_record("QueueAnomaly", "api", "")}, error));
    }
    std::string error;
    auto store = state_store::open(dir.path().string(), error);
    REQUIRE(store);
    std::size_t unreadable = 99;
    auto loaded = store->load_baselines(unreadable, error);
    INFO(error);
    REQUIRE(loaded);
    CHECK(unreadable == 0);
    REQUIRE(loaded->size() == 2);
    for (const baseline_record& rec : *loaded) {
        CHECK(rec.rule_name == "QueueAnomaly");
        CHECK(rec.spec_hash == 0xfedcba9876543210ull);
        CHECK(rec.last_sample_at == 1'733'000'000'000);
        CHECK(rec.series.metric_name() == "queue_depth");
        CHECK(rec.last.ready);
        CHECK(rec.last.score == 4.5);
        CHECK(rec.last.baseline == 100);
        CHECK(rec.last.scale == 2);
        CHECK(rec.last.samples == 240);
        CHECK(std::isnan(rec.last.secondary));
        if (rec.series.get("job") == "worker") {
            CHECK(rec.state == binary);
        } else {
            CHECK(rec.series.get("job") == "api");
            CHECK(rec.state.empty());
        }
    }

    REQUIRE(store->replace_baselines({}, error));
    loaded = store->load_baselines(unreadable, error);
    REQUIRE(loaded);
    CHECK(loaded->empty());
}

TEST_CASE("state_store: a baseline row with damaged labels is skipped and counted")
{
    temp_dir dir;
    std::string error;
    {
        auto store = state_store::open(dir.path().string(), error);
        REQUIRE(store);
        REQUIRE(store->replace_baselines(
            {make_record("QueueAnomaly", "worker", "a"), make_record("QueueAnomaly", "api", "b")}, error));
    }
    const std::string path = (dir.path() / "tocsin.db").string();
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, R"(UPDATE baselines SET series = '{"job": 1' WHERE state = X'61')", nullptr, nullptr,
                         nullptr) == SQLITE_OK);
    sqlite3_close(db);

    auto store = state_store::open(dir.path().string(), error);
    REQUIRE(store);
    std::size_t unreadable = 0;
    auto loaded = store->load_baselines(unreadable, error);
    INFO(error);
    REQUIRE(loaded);
    CHECK(unreadable == 1);
    REQUIRE(loaded->size() == 1);
    CHECK(loaded->front().series.get("job") == "api");
}
