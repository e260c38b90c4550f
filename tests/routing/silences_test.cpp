// The silence store on its own: validation, create and update rules, expiry, listing and the
// anchoring of regex matchers.
#include <catch2/catch.hpp>

#include <regex>
#include <set>
#include <string>
#include <vector>

#include "routing/silences.hpp"

using namespace tocsin;

namespace {

constexpr time_ms minute = 60'000;
constexpr time_ms hour = 60 * minute;
// 2024-06-01T12:00:00Z.
constexpr time_ms noon = 1'717'243'200'000;

label_matcher matcher(std::string_view text)
{
    std::string error;
    auto m = label_matcher::parse(text, error);
    INFO(text << " -> " << error);
    REQUIRE(m.has_value());
    return *m;
}

silence make_silence(std::vector<std::string_view> matchers, time_ms starts_at, time_ms ends_at)
{
    silence s;
    for (auto text : matchers) {
        s.matchers.push_back(matcher(text));
    }
    s.starts_at = starts_at;
    s.ends_at = ends_at;
    s.created_by = "alice";
    s.comment = "maintenance of the web tier";
    return s;
}

// A store whose ids count up: s1, s2, ...
struct counting_store {
    counting_store() : store(silence_limits{}, [this] { return "s" + std::to_string(++next); }) {}
    int next = 0;
    silence_store store;
};

label_set labels(std::initializer_list<label> items) { return label_set(items); }

} // namespace

TEST_CASE("silences: regex matchers are anchored and absent labels read as empty")
{
    // Six alerts that differ in instance and env, and which of them each silence mutes.
    const std::vector<std::pair<std::string, label_set>> alerts = {
        {"A", labels({{"alertname", "Latency"}, {"instance", "web"}})},
        {"B", labels({{"alertname", "Latency"}, {"instance", "web-2"}})},
        {"C", labels({{"alertname", "Latency"}, {"instance", "myweb"}})},
        {"D", labels({{"alertname", "Latency"}, {"instance", "WEB"}})},
        {"E", labels({{"alertname", "Latency"}, {"instance", "web"}, {"env", "preprod"}})},
        {"F", labels({{"alertname", "Latency"}, {"instance", "web-3"}, {"env", "prod"}})},
    };
    struct scenario {
        std::vector<std::string_view> matchers;
        std::set<std::string> muted;
    };
    const std::vector<scenario> scenarios = {
        {{R"(alertname="Latency")", R"(instance=~"web")"}, {"A", "E"}},
        {{R"(alertname="Latency")", R"(instance!~"web-.*")"}, {"A", "C", "D", "E"}},
        {{R"(env=~"prod|stage")"}, {"F"}},
        {{R"(abc=~".*abc")"}, {}},
    };
    for (const auto& sc : scenarios) {
        counting_store c;
        const silence_result created = c.store.set(make_silence(sc.matchers, noon, noon + hour), noon);
        INFO(created.error);
        REQUIRE(created.ok());
        std::set<std::string> muted;
        for (const auto& [name, l] : alerts) {
            if (c.store.mutes(l, noon + minute)) {
                muted.insert(name);
            }
        }
        CHECK(muted == sc.muted);
    }
}

TEST_CASE("silences: invalid silences are rejected with the reason")
{
    counting_store c;
    auto error_of = [&](silence s) {
        const silence_result r = c.store.set(std::move(s), noon);
        CHECK(r.status == 400);
        return r.error;
    };
    CHECK_THAT(error_of(make_silence({}, noon, noon + hour)), Catch::Contains("no matchers"));
    CHECK_THAT(error_of(make_silence({R"(env=~".*")", R"(team!="db")"}, noon, noon + hour)),
               Catch::Contains("matches the empty string"));
    CHECK_THAT(error_of(make_silence({"alertname=X"}, noon + hour, noon + hour)), Catch::Contains("is not after"));
    CHECK_THAT(error_of(make_silence({"alertname=X"}, noon - 2 * hour, noon - hour)), Catch::Contains("in the past"));

    silence no_author = make_silence({"alertname=X"}, noon, noon + hour);
    no_author.created_by.clear();
    CHECK_THAT(error_of(no_author), Catch::Contains("createdBy is empty"));
    silence no_comment = make_silence({"alertname=X"}, noon, noon + hour);
    no_comment.comment.clear();
    CHECK_THAT(error_of(no_comment), Catch::Contains("comment is empty"));

    silence long_comment = make_silence({"alertname=X"}, noon, noon + hour);
    long_comment.comment.assign(70'000, 'x');
    CHECK_THAT(error_of(long_comment), Catch::Contains("more than the limit"));

    silence many = make_silence({"alertname=X"}, noon, noon + hour);
    for (int i = 0; i < 64; ++i) {
        many.matchers.push_back(matcher("l" + std::to_string(i) + "=v"));
    }
    CHECK_THAT(error_of(many), Catch::Contains("65 matchers"));
    CHECK(c.store.size() == 0);
}

TEST_CASE("silences: a start in the past becomes now")
{
    counting_store c;
    const silence_result r = c.store.set(make_silence({"alertname=X"}, noon - hour, noon + hour), noon);
    REQUIRE(r.ok());
    CHECK(r.id == "s1");
    const silence* s = c.store.find("s1");
    REQUIRE(s != nullptr);
    CHECK(s->starts_at == noon);
    CHECK(s->updated_at == noon);
    CHECK(s->state_at(noon) == silence_state::active);
}

TEST_CASE("silences: updates keep the id only where history stays true")
{
    counting_store c;
    REQUIRE(c.store.set(make_silence({"alertname=X"}, noon, noon + hour), noon).ok());

    SECTION("an active silence extends its end in place")
    {
        silence longer = *c.store.find("s1");
        longer.ends_at = noon + 3 * hour;
        longer.comment = "takes longer";
        const silence_result r = c.store.set(longer, noon + minute);
        REQUIRE(r.ok());
        CHECK(r.id == "s1");
        CHECK(c.store.size() == 1);
        CHECK(c.store.find("s1")->ends_at == noon + 3 * hour);
        CHECK(c.store.find("s1")->comment == "takes longer");
    }
    SECTION("other matchers on an active silence replace it")
    {
        silence wider = *c.store.find("s1");
        wider.matchers.push_back(matcher("env=prod"));
        const silence_result r = c.store.set(wider, noon + minute);
        REQUIRE(r.ok());
        CHECK(r.id == "s2");
        CHECK(c.store.find("s1")->state_at(noon + minute) == silence_state::expired);
        CHECK(c.store.find("s1")->ends_at == noon + minute);
        CHECK(c.store.find("s2")->state_at(noon + minute) == silence_state::active);
    }
    SECTION("an expired silence is replaced by a new one")
    {
        REQUIRE(c.store.expire("s1", noon + minute).ok());
        silence again = *c.store.find("s1");
        again.ends_at = noon + 2 * hour;
        const silence_result r = c.store.set(again, noon + 2 * minute);
        REQUIRE(r.ok());
        CHECK(r.id == "s2");
        CHECK(c.store.find("s1")->ends_at == noon + minute);
    }
    SECTION("a pending silence moves its start in place")
    {
        REQUIRE(c.store.set(make_silence({"alertname=Y"}, noon + hour, noon + 2 * hour), noon).ok());
        silence moved = *c.store.find("s2");
        moved.starts_at = noon + 30 * minute;
        const silence_result r = c.store.set(moved, noon + minute);
        REQUIRE(r.ok());
        CHECK(r.id == "s2");
        CHECK(c.store.find("s2")->starts_at == noon + 30 * minute);
    }
    SECTION("other matchers on a pending silence replace it")
    {
        REQUIRE(c.store.set(make_silence({"alertname=Y"}, noon + hour, noon + 2 * hour), noon).ok());
        silence other = *c.store.find("s2");
        other.matchers = {matcher("alertname=Z")};
        const silence_result r = c.store.set(other, noon + minute);
        REQUIRE(r.ok());
        CHECK(r.id == "s3");
        CHECK(c.store.find("s2")->state_at(noon + minute) == silence_state::expired);
        CHECK(c.store.find("s3")->matchers.front().value() == "Z");
    }
    SECTION("an unknown id is not found")
    {
        silence unknown = make_silence({"alertname=X"}, noon, noon + hour);
        unknown.id = "no-such-id";
        const silence_result r = c.store.set(unknown, noon);
        CHECK(r.status == 404);
        CHECK_THAT(r.error, Catch::Contains("no-such-id"));
    }
}

TEST_CASE("silences: expire ends active and pending silences once")
{
    counting_store c;
    REQUIRE(c.store.set(make_silence({"alertname=X"}, noon, noon + hour), noon).ok());
    REQUIRE(c.store.set(make_silence({"alertname=Y"}, noon + hour, noon + 2 * hour), noon).ok());

    CHECK(c.store.expire("s1", noon + minute).ok());
    CHECK(c.store.find("s1")->ends_at == noon + minute);
    CHECK(c.store.find("s1")->starts_at == noon);
    CHECK(c.store.expire("s2", noon + minute).ok());
    CHECK(c.store.find("s2")->starts_at == noon + minute);
    CHECK(c.store.find("s2")->ends_at == noon + minute);
    CHECK_FALSE(c.store.mutes(labels({{"alertname", "X"}}), noon + minute));

    const silence_result again = c.store.expire("s1", noon + 2 * minute);
    CHECK(again.status == 409);
    CHECK_THAT(again.error, Catch::Contains("already expired"));
    CHECK(c.store.expire("s9", noon).status == 404);
}

TEST_CASE("silences: a pending silence mutes only from its start")
{
    counting_store c;
    REQUIRE(c.store.set(make_silence({"alertname=X"}, noon + hour, noon + 2 * hour), noon).ok());
    const label_set x = labels({{"alertname", "X"}});
    CHECK_FALSE(c.store.mutes(x, noon + hour - 1));
    CHECK(c.store.mutes(x, noon + hour));
    CHECK(c.store.muted_by(x, noon + hour) == std::vector<std::string>{"s1"});
    CHECK_FALSE(c.store.mutes(x, noon + 2 * hour));
}

TEST_CASE("silences: listing order and filters follow Alertmanager")
{
    counting_store c;
    REQUIRE(c.store.set(make_silence({"alertname=A", "team=db"}, noon, noon + 3 * hour), noon).ok());   // s1 active
    REQUIRE(c.store.set(make_silence({"alertname=B"}, noon, noon + 2 * hour), noon).ok());              // s2 active
    REQUIRE(c.store.set(make_silence({"alertname=C"}, noon + 2 * hour, noon + 5 * hour), noon).ok());   // s3 pending
    REQUIRE(c.store.set(make_silence({"alertname=D"}, noon + hour, noon + 5 * hour), noon).ok());       // s4 pending
    REQUIRE(c.store.set(make_silence({"alertname=E"}, noon, noon + hour), noon).ok());                  // s5
    REQUIRE(c.store.set(make_silence({"alertname=F", "team=db"}, noon, noon + hour), noon).ok());       // s6
    REQUIRE(c.store.expire("s5", noon + minute).ok());
    REQUIRE(c.store.expire("s6", noon + 2 * minute).ok());

    auto ids = [](const std::vector<const silence*>& list) {
        std::vector<std::string> out;
        for (const silence* s : list) {
            out.push_back(s->id);
        }
        return out;
    };
    const time_ms now = noon + 10 * minute;
    CHECK(ids(c.store.list({}, now)) == std::vector<std::string>{"s2", "s1", "s4", "s3", "s6", "s5"});
    const std::vector<label_matcher> team_db = {matcher("team=db")};
    CHECK(ids(c.store.list(team_db, now)) == std::vector<std::string>{"s1", "s6"});
    const std::vector<label_matcher> not_db = {matcher(R"(team!="db")")};
    CHECK(ids(c.store.list(not_db, now)) == std::vector<std::string>{"s2", "s4", "s3", "s5"});
}

TEST_CASE("silences: the limit counts pending and active silences")
{
    silence_limits limits;
    limits.max_silences = 2;
    int next = 0;
    silence_store store(limits, [&] { return "s" + std::to_string(++next); });
    REQUIRE(store.set(make_silence({"alertname=A"}, noon, noon + hour), noon).ok());
    REQUIRE(store.set(make_silence({"alertname=B"}, noon, noon + hour), noon).ok());
    const silence_result over = store.set(make_silence({"alertname=C"}, noon, noon + hour), noon);
    CHECK(over.status == 429);
    CHECK_THAT(over.error, Catch::Contains("limits.max_silences"));
    REQUIRE(store.expire("s1", noon).ok());
    CHECK(store.set(make_silence({"alertname=C"}, noon, noon + hour), noon).ok());
}

TEST_CASE("silences: expired silences are dropped after the retention")
{
    silence_limits limits;
    limits.retention = std::chrono::hours(2);
    int next = 0;
    silence_store store(limits, [&] { return "s" + std::to_string(++next); });
    REQUIRE(store.set(make_silence({"alertname=A"}, noon, noon + hour), noon).ok());
    silence_changes first = store.take_changes();
    REQUIRE(first.upserted.size() == 1);
    CHECK(first.upserted[0].id == "s1");
    CHECK(store.take_changes().empty());

    store.collect_garbage(noon + 3 * hour - 1);
    CHECK(store.size() == 1);
    store.collect_garbage(noon + 3 * hour);
    CHECK(store.size() == 0);
    const silence_changes dropped = store.take_changes();
    CHECK(dropped.deleted == std::vector<std::string>{"s1"});
}

TEST_CASE("silences: restore skips broken records and drops old ones")
{
    counting_store c;
    std::vector<silence> saved;
    silence ok = make_silence({"alertname=A"}, noon, noon + hour);
    ok.id = "kept";
    saved.push_back(ok);
    silence old = make_silence({"alertname=B"}, noon - 200 * hour, noon - 199 * hour);
    old.id = "old";
    saved.push_back(old);
    silence broken = make_silence({}, noon, noon + hour);
    broken.id = "broken";
    saved.push_back(broken);

    CHECK(c.store.restore(saved, noon) == 1);
    CHECK(c.store.find("kept") != nullptr);
    CHECK(c.store.find("old") == nullptr);
    CHECK(c.store.find("broken") == nullptr);
    CHECK(c.store.mutes(labels({{"alertname", "A"}}), noon));
}

TEST_CASE("silences: ids are random version 4 UUIDs")
{
    const std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    std::set<std::string> seen;
    for (int i = 0; i < 100; ++i) {
        const std::string id = random_uuid();
        CHECK(std::regex_match(id, uuid));
        seen.insert(id);
    }
    CHECK(seen.size() == 100);
}
