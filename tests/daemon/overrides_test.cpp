#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "daemon/overrides.hpp"
#include "daemon/state_store.hpp"
#include "rules/engine.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace std::chrono_literals;
using tocsin::test::temp_dir;

namespace {

// 2024-11-30T20:53:20Z, near the sample times of the other daemon tests.
constexpr time_ms t0 = 1'733'000'000'000;
constexpr time_ms hour_ms = 3'600'000;

tier make_tier(severity level, compare_op op, double threshold, std::optional<condition> recover = std::nullopt)
{
    tier t;
    t.level = level;
    t.when = condition{op, threshold};
    t.recover = recover;
    return t;
}

// ModelAccuracyLow: accuracy < 0.9 warning, < 0.8 critical with recover > 0.85.
// HighCpu: cpu > 90 warning, > 95 critical; no recover.
std::shared_ptr<const rule_set> make_rules()
{
    auto accuracy = std::make_shared<rule>();
    accuracy->name = "ModelAccuracyLow";
    accuracy->group = "ml";
    accuracy->file = "ml.yaml";
    accuracy->metric = "accuracy";
    accuracy->tiers = {make_tier(severity::warning, compare_op::less, 0.9),
                       make_tier(severity::critical, compare_op::less, 0.8, condition{compare_op::greater, 0.85})};
    accuracy->definition_hash = 0x1111;

    auto cpu = std::make_shared<rule>();
    cpu->name = "HighCpu";
    cpu->group = "hosts";
    cpu->file = "hosts.yaml";
    cpu->metric = "cpu";
    cpu->tiers = {make_tier(severity::warning, compare_op::greater, 90),
                  make_tier(severity::critical, compare_op::greater, 95)};
    cpu->definition_hash = 0x2222;

    auto set = std::make_shared<rule_set>();
    set->groups.push_back(rule_group{"ml", "ml.yaml", {accuracy}});
    set->groups.push_back(rule_group{"hosts", "hosts.yaml", {cpu}});
    set->rules = {accuracy, cpu};
    return set;
}

override_request parse(const std::string& body, const std::string& rule_name = "HighCpu",
                       const override_limits& limits = {})
{
    static const auto rules = make_rules();
    return parse_override_request(body, rule_name, *rules, "alice", t0, limits);
}

threshold_override make_override(const std::string& rule_name, severity level, double threshold,
                                  time_ms expires_at = t0 + hour_ms)
{
    threshold_override o;
    o.rule_name = rule_name;
    o.tiers = {tier_override{level, threshold, std::nullopt}};
    o.created_at = t0;
    o.expires_at = expires_at;
    o.reason = "load test";
    o.author = "bob";
    o.token_name = "alice";
    return o;
}

const rule& rule_named(const rule_set& rules, const std::string& name)
{
    for (const auto& r : rules.rules) {
        if (r->name == name) {
            return *r;
        }
    }
    FAIL("no rule " << name);
    throw std::logic_error("unreachable");
}

void ingest(engine& e, const char* host, time_ms at, double value)
{
    const label_view labels[] = {{"__name__", "cpu"}, {"host", host}};
    REQUIRE(e.ingest(labels, at, value) == ingest_status::accepted);
}

} // namespace

TEST_CASE("override request: valid body parses")
{
    auto result = parse(R"({"tiers": {"critical": 97, "warning": 92.5}, "expires_in": "2h",
                            "reason": "load test until 18:00", "author": "bob"})");
    INFO(result.error);
    REQUIRE(result.value);
    CHECK(result.status == 200);
    const threshold_override& o = *result.value;
    CHECK(o.rule_name == "HighCpu");
    REQUIRE(o.tiers.size() == 2);
    CHECK(o.tiers[0].level == severity::warning);
    CHECK(o.tiers[0].when_threshold == 92.5);
    CHECK(o.tiers[1].level == severity::critical);
    CHECK(o.tiers[1].when_threshold == 97);
    CHECK_FALSE(o.tiers[1].recover_threshold);
    CHECK(o.created_at == t0);
    CHECK(o.expires_at == t0 + 2 * hour_ms);
    CHECK(o.reason == "load test until 18:00");
    CHECK(o.author == "bob");
    CHECK(o.token_name == "alice");
}

TEST_CASE("override request: author defaults to token name")
{
    auto result = parse(R"({"tiers": {"critical": 97}, "expires_in": "30m", "reason": "deploy"})");
    INFO(result.error);
    REQUIRE(result.value);
    CHECK(result.value->author == "alice");
}

TEST_CASE("override request: recover threshold and expires_at with offset")
{
    // t0 + 1h is 2024-11-30T21:53:20Z, which is 23:53:20 at +02:00.
    auto result = parse(R"({"tiers": {"critical": 0.7}, "recover": {"critical": 0.75},
                            "expires_at": "2024-11-30T23:53:20+02:00", "reason": "retraining"})",
                        "ModelAccuracyLow");
    INFO(result.error);
    REQUIRE(result.value);
    REQUIRE(result.value->tiers.size() == 1);
    CHECK(result.value->tiers[0].when_threshold == 0.7);
    CHECK(result.value->tiers[0].recover_threshold == 0.75);
    CHECK(result.value->expires_at == t0 + hour_ms);
}

TEST_CASE("override request: invalid bodies name the value and the fix")
{
    struct bad_case {
        const char* rule_name;
        const char* body;
        int status;
        const char* message;
    };
    const bad_case cases[] = {
        {"NoSuchRule", R"({"tiers": {"critical": 97}, "expires_in": "1h", "reason": "x"})", 404,
         "rule \"NoSuchRule\" not found"},
        {"HighCpu", "{\"tiers\": ", 400, "invalid JSON"},
        {"HighCpu", "[1, 2]", 400, "must be a JSON object"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires": "1h", "reason": "x"})", 400, "unknown field \"expires\""},
        {"HighCpu", R"({"tiers": {"urgent": 97}, "expires_in": "1h", "reason": "x"})", 400,
         "unknown severity \"urgent\""},
        {"HighCpu", R"({"tiers": {"page": 99}, "expires_in": "1h", "reason": "x"})", 400,
         "rule HighCpu has no tier page; its tiers are warning, critical"},
        {"HighCpu", R"({"tiers": {"critical": "97"}, "expires_in": "1h", "reason": "x"})", 400,
         "tiers.critical must be a number"},
        {"HighCpu", R"({"tiers": {"critical": 1e999}, "expires_in": "1h", "reason": "x"})", 400,
         "number overflow parsing '1e999'"},
        {"HighCpu", R"({"tiers": [97], "expires_in": "1h", "reason": "x"})", 400, "tiers must be an object"},
        {"HighCpu", R"({"tiers": {}, "expires_in": "1h", "reason": "x"})", 400, "changes no threshold"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "reason": "x"})", 400, "set exactly one of expires_in"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "1h", "expires_at": "2030-01-01T00:00:00Z",
           "reason": "x"})",
         400, "set exactly one of expires_in"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "two hours", "reason": "x"})", 400,
         "invalid expires_in \"two hours\""},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "0s", "reason": "x"})", 400,
         "expires_in must be greater than 0s"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "8d", "reason": "x"})", 400,
         "expires_in 8d is longer than the maximum 1w (limits.max_override_duration)"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_at": "2024-11-30T20:00:00Z", "reason": "x"})", 400,
         "is not in the future; the server time is 2024-11-30T20:53:20.000Z"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_at": "2024-12-30T20:00:00Z", "reason": "x"})", 400,
         "more than the maximum 1w"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_at": "tomorrow", "reason": "x"})", 400,
         "invalid expires_at \"tomorrow\""},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "1h"})", 400, "missing field \"reason\""},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "1h", "reason": "  "})", 400, "reason is empty"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "1h", "reason": "a\nb"})", 400,
         "reason contains a control character"},
        {"HighCpu", R"({"tiers": {"critical": 97}, "expires_in": "1h", "reason": "x", "author": 7})", 400,
         "author must be a string"},
        {"HighCpu", R"({"recover": {"critical": 93}, "expires_in": "1h", "reason": "x"})", 400,
         "tier critical of rule HighCpu has no recover condition"},
        {"HighCpu", R"({"tiers": {"critical": 85}, "expires_in": "1h", "reason": "x"})", 400,
         "tier critical (\"> 85\") would fire below tier warning (\"> 90\")"},
        {"ModelAccuracyLow", R"({"tiers": {"critical": 0.9}, "expires_in": "1h", "reason": "x"})", 400,
         "recover \"> 0.85\" of tier critical overlaps its condition \"< 0.9\""},
    };
    for (const auto& c : cases) {
        INFO(c.rule_name << " " << c.body);
        auto result = parse(c.body, c.rule_name);
        CHECK_FALSE(result.value);
        CHECK(result.status == c.status);
        CHECK_THAT(result.error, Catch::Contains(c.message));
    }
}

TEST_CASE("override request: size limits")
{
    override_limits limits;
    limits.max_body_bytes = 100;
    limits.max_reason_bytes = 10;
    const std::string long_reason = R"({"tiers": {"critical": 97}, "expires_in": "1h", "reason": "eleven bytes"})";
    auto too_long = parse(long_reason, "HighCpu", limits);
    CHECK(too_long.status == 400);
    CHECK_THAT(too_long.error, Catch::Contains("reason has 12 bytes, over the limit of 10"));

    auto too_big = parse(std::string(101, ' '), "HighCpu", limits);
    CHECK(too_big.status == 413);
    CHECK_THAT(too_big.error, Catch::Contains("101 bytes, over the limit of 100"));

    // Deep nesting is rejected before anything recurses into it.
    const std::string deep = R"({"tiers": {"critical": 6}, "expires_in": "1h", "reason": )" +
                             std::string(16'000, '[') + std::string(16'000, ']') + "}";
    auto nested = parse(deep, "HighCpu", override_limits{});
    CHECK(nested.status == 400);
    CHECK_THAT(nested.error, Catch::Contains("nests JSON deeper than 8 levels"));
}

TEST_CASE("override request: configured maximum duration")
{
    override_limits limits;
    limits.max_duration = 1h;
    CHECK(parse(R"({"tiers": {"critical": 97}, "expires_in": "1h", "reason": "x"})", "HighCpu", limits).value);
    auto over = parse(R"({"tiers": {"critical": 97}, "expires_in": "61m", "reason": "x"})", "HighCpu", limits);
    CHECK_FALSE(over.value);
    CHECK_THAT(over.error, Catch::Contains("longer than the maximum 1h"));
}

TEST_CASE("parse_rfc3339: forms and invalid input")
{
    CHECK(parse_rfc3339("2024-11-30T20:53:20Z") == t0);
    CHECK(parse_rfc3339("2024-11-30t20:53:20z") == t0);
    CHECK(parse_rfc3339("2024-11-30T20:53:20.5Z") == t0 + 500);
    CHECK(parse_rfc3339("2024-11-30T20:53:20.123456789Z") == t0 + 123);
    CHECK(parse_rfc3339("2024-11-30T15:53:20-05:00") == t0);
    CHECK(parse_rfc3339("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_rfc3339("2024-02-29T00:00:00Z"));
    CHECK_FALSE(parse_rfc3339("2023-02-29T00:00:00Z"));
    CHECK_FALSE(parse_rfc3339("2024-11-30T24:00:00Z"));
    CHECK_FALSE(parse_rfc3339("2024-11-30T20:53:20"));
    CHECK_FALSE(parse_rfc3339("2024-11-30 20:53:20Z"));
    CHECK_FALSE(parse_rfc3339("2024-11-30T20:53:20.Z"));
    CHECK_FALSE(parse_rfc3339("2024-11-30T20:53:20+0500"));
    CHECK_FALSE(parse_rfc3339("2024-11-30T20:53:20Zjunk"));
    CHECK_FALSE(parse_rfc3339(""));
}

TEST_CASE("apply_override: same name and hash, new thresholds")
{
    auto rules = make_rules();
    override_table table;
    threshold_override o = make_override("ModelAccuracyLow", severity::critical, 0.7);
    o.tiers[0].recover_threshold = 0.75;
    table.set(o);
    auto effective = table.apply(rules);
    REQUIRE(effective != rules);
    REQUIRE(effective->rules.size() == 2);
    REQUIRE(effective->groups.size() == 2);

    const rule& changed = *effective->rules[0];
    CHECK(changed.name == "ModelAccuracyLow");
    CHECK(changed.definition_hash == rules->rules[0]->definition_hash);
    CHECK(changed.tiers[0].when.threshold == 0.9);
    CHECK(changed.tiers[1].when.op == compare_op::less);
    CHECK(changed.tiers[1].when.threshold == 0.7);
    REQUIRE(changed.tiers[1].recover);
    CHECK(changed.tiers[1].recover->op == compare_op::greater);
    CHECK(changed.tiers[1].recover->threshold == 0.75);
    // The groups hold the same copy, and the rule without an override is shared as it is.
    CHECK(effective->groups[0].rules[0] == effective->rules[0]);
    CHECK(effective->rules[1] == rules->rules[1]);
    CHECK(effective->groups[1].rules[0] == rules->rules[1]);
    // The rule files' rules stay untouched.
    CHECK(rules->rules[0]->tiers[1].when.threshold == 0.8);

    CHECK(override_table{}.apply(rules) == rules);
}

TEST_CASE("override_table: replace_rules keeps alert state")
{
    auto rules = make_rules();
    manual_clock clock(t0);
    engine eng(rules, engine_limits{}, clock);

    ingest(eng, "a", t0, 96);
    auto fired = eng.take_events();
    REQUIRE(fired.size() == 1);
    CHECK(fired[0].what == alert_event::kind::firing);
    const auto before = eng.alerts();
    REQUIRE(before.size() == 1);
    CHECK(before[0].level == severity::critical);

    // Raise critical to 97: the alert keeps its state and timers until the next sample.
    override_table table;
    table.set(make_override("HighCpu", severity::critical, 97));
    eng.replace_rules(table.apply(rules));
    CHECK(eng.take_events().empty());
    const auto after = eng.alerts();
    REQUIRE(after.size() == 1);
    CHECK(after[0].id == before[0].id);
    CHECK(after[0].state == alert_state::firing);
    CHECK(after[0].level == severity::critical);
    CHECK(after[0].active_at == before[0].active_at);
    CHECK(after[0].fired_at == before[0].fired_at);
    const auto persisted = eng.persisted_state();
    REQUIRE(persisted.size() == 1);
    CHECK(persisted[0].rule_hash == 0x2222);

    // The next sample meets the new threshold: 96 is now only a warning.
    ingest(eng, "a", t0 + 1000, 96);
    auto stepped = eng.take_events();
    REQUIRE(stepped.size() == 1);
    CHECK(stepped[0].what == alert_event::kind::severity_changed);
    CHECK(stepped[0].alert.level == severity::warning);
    CHECK(stepped[0].alert.fired_at == before[0].fired_at);

    // Without the override, 96 is critical again.
    eng.replace_rules(override_table{}.apply(rules));
    CHECK(eng.take_events().empty());
    ingest(eng, "a", t0 + 2000, 96);
    auto restored = eng.take_events();
    REQUIRE(restored.size() == 1);
    CHECK(restored[0].alert.level == severity::critical);
}

TEST_CASE("override_table: expiry on a manual clock")
{
    manual_clock clock(t0);
    override_table table;
    table.set(make_override("HighCpu", severity::critical, 97, t0 + hour_ms));
    table.set(make_override("ModelAccuracyLow", severity::warning, 0.95, t0 + 2 * hour_ms));

    clock.advance_ms(hour_ms - 1);
    CHECK(table.take_expired(clock.now_ms()).empty());
    CHECK(table.items().size() == 2);

    clock.advance_ms(1);
    auto expired = table.take_expired(clock.now_ms());
    REQUIRE(expired.size() == 1);
    CHECK(expired[0].rule_name == "HighCpu");
    CHECK(table.find("HighCpu") == nullptr);
    CHECK(table.find("ModelAccuracyLow") != nullptr);

    clock.advance_ms(hour_ms);
    CHECK(table.take_expired(clock.now_ms()).size() == 1);
    CHECK(table.empty());
}

TEST_CASE("override_table: reload drops overrides of removed rules and tiers")
{
    override_table table;
    table.set(make_override("HighCpu", severity::critical, 97));
    table.set(make_override("ModelAccuracyLow", severity::warning, 0.95));
    table.set(make_override("Gone", severity::warning, 1));

    // HighCpu loses its critical tier on reload.
    auto base = make_rules();
    auto reloaded = std::make_shared<rule_set>(*base);
    auto cpu = std::make_shared<rule>(*base->rules[1]);
    cpu->tiers.pop_back();
    reloaded->rules[1] = cpu;
    reloaded->groups[1].rules[0] = cpu;

    auto dropped = table.take_unfit(*reloaded);
    REQUIRE(dropped.size() == 2);
    CHECK(dropped[0].value.rule_name == "Gone");
    CHECK_THAT(dropped[0].reason, Catch::Contains("rule Gone no longer exists"));
    CHECK(dropped[1].value.rule_name == "HighCpu");
    CHECK_THAT(dropped[1].reason, Catch::Contains("rule HighCpu has no tier critical"));
    REQUIRE(table.items().size() == 1);
    CHECK(table.find("ModelAccuracyLow") != nullptr);
}

TEST_CASE("describe_changes: old and new conditions")
{
    auto rules = make_rules();
    threshold_override o = make_override("ModelAccuracyLow", severity::critical, 0.7);
    o.tiers[0].recover_threshold = 0.75;
    o.tiers.insert(o.tiers.begin(), tier_override{severity::warning, 0.95, std::nullopt});
    CHECK(describe_changes(tier_changes(o, rule_named(*rules, "ModelAccuracyLow"))) ==
          "warning < 0.9 -> < 0.95, critical < 0.8 -> < 0.7 (recover > 0.85 -> > 0.75)");
}

TEST_CASE("state_store: overrides round trip and survive reopening")
{
    temp_dir dir;
    threshold_override o = make_override("ModelAccuracyLow", severity::critical, 0.7, t0 + 3 * hour_ms);
    o.tiers[0].recover_threshold = 0.75;
    o.tiers.insert(o.tiers.begin(), tier_override{severity::warning, std::nullopt, std::nullopt});
    o.tiers[0].when_threshold = 0.95;
    o.reason = "retraining, see ticket \"ML-12\" – Zürich";

    {
        std::string error;
        auto store = state_store::open(dir.path().string(), error);
        INFO(error);
        REQUIRE(store);
        REQUIRE(store->set_override(o, error));
        REQUIRE(store->set_override(make_override("HighCpu", severity::critical, 97), error));
        REQUIRE(store->remove_override("HighCpu", error));
        REQUIRE(store->remove_override("NeverSet", error));
    }

    std::string error;
    auto store = state_store::open(dir.path().string(), error);
    INFO(error);
    REQUIRE(store);
    std::vector<std::string> unreadable;
    auto loaded = store->load_overrides(unreadable, error);
    REQUIRE(loaded);
    REQUIRE(loaded->size() == 1);

    const threshold_override& back = loaded->front();
    CHECK(back.rule_name == o.rule_name);
    REQUIRE(back.tiers.size() == 2);
    CHECK(back.tiers[0].level == severity::warning);
    CHECK(back.tiers[0].when_threshold == 0.95);
    CHECK_FALSE(back.tiers[0].recover_threshold);
    CHECK(back.tiers[1].level == severity::critical);
    CHECK(back.tiers[1].when_threshold == 0.7);
    CHECK(back.tiers[1].recover_threshold == 0.75);
    CHECK(back.created_at == o.created_at);
    CHECK(back.expires_at == o.expires_at);
    CHECK(back.reason == o.reason);
    CHECK(back.author == o.author);
    CHECK(back.token_name == o.token_name);
}

TEST_CASE("state_store: version 4 database gains the overrides table")
{
    temp_dir dir;
    std::string error;
    {
        auto store = state_store::open(dir.path().string(), error);
        REQUIRE(store);
    }
    // Turn the file back into a version 4 database, as an older tocsind left it.
    const std::string path = (dir.path() / "tocsin.db").string();
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const char* downgrade = "DROP TABLE threshold_overrides; DROP TABLE baselines; DROP TABLE silences; "
                            "UPDATE schema_version SET version = 4";
    REQUIRE(sqlite3_exec(db, downgrade, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);

    auto store = state_store::open(dir.path().string(), error);
    INFO(error);
    REQUIRE(store);
    REQUIRE(store->set_override(make_override("HighCpu", severity::critical, 97), error));
    std::vector<std::string> unreadable;
    auto loaded = store->load_overrides(unreadable, error);
    REQUIRE(loaded);
    CHECK(loaded->size() == 1);
}

TEST_CASE("state_store: damaged override row is skipped and named")
{
    temp_dir dir;
    std::string error;
    {
        auto store = state_store::open(dir.path().string(), error);
        REQUIRE(store);
        REQUIRE(store->set_override(make_override("HighCpu", severity::critical, 97), error));
    }
    const std::string path = (dir.path() / "tocsin.db").string();
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, R"(UPDATE threshold_overrides SET tiers = '[{"severity": "urgent", "when": 1}]')",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);

    auto store = state_store::open(dir.path().string(), error);
    REQUIRE(store);
    std::vector<std::string> unreadable;
    auto loaded = store->load_overrides(unreadable, error);
    REQUIRE(loaded);
    CHECK(loaded->empty());
    CHECK(unreadable == std::vector<std::string>{"HighCpu"});
}
