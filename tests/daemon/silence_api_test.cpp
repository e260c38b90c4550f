// The v2 silence JSON: requests parse or fail with a message naming the field, the stored form
// reads back as written, and filters parse as Alertmanager's.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "daemon/silence_api.hpp"
#include "daemon/state_store.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using tocsin::test::temp_dir;

namespace {

const std::string valid_body = R"({
  "matchers": [
    {"name": "alertname", "value": "DiskFull", "isRegex": false},
    {"name": "instance", "value": "web-.*", "isRegex": true, "isEqual": false}
  ],
  "startsAt": "2026-01-02T15:04:05Z",
  "endsAt": "2026-01-02T17:04:05.250+01:00",
  "createdBy": "alice",
  "comment": "disk replacement, ticket OPS-12"
})";

std::string error_of(const std::string& body)
{
    const silence_body parsed = parse_postable_silence(body);
    CHECK(parsed.status != 200);
    return parsed.error;
}

} // namespace

TEST_CASE("silence api: a postable silence parses")
{
    const silence_body parsed = parse_postable_silence(valid_body);
    INFO(parsed.error);
    REQUIRE(parsed.error.empty());
    const silence& s = parsed.value;
    CHECK(s.id.empty());
    REQUIRE(s.matchers.size() == 2);
    CHECK(s.matchers[0].to_string() == R"(alertname="DiskFull")");
    CHECK(s.matchers[1].to_string() == R"(instance!~"web-.*")");
    CHECK(s.starts_at == 1'767'366'245'000);
    // 17:04:05.250+01:00 is 16:04:05.250Z.
    CHECK(s.ends_at == 1'767'366'245'000 + 3'600'000 + 250);
    CHECK(s.created_by == "alice");
    CHECK(s.comment == "disk replacement, ticket OPS-12");
}

TEST_CASE("silence api: malformed bodies name the field and the fix")
{
    CHECK_THAT(error_of("{"), Catch::Contains("invalid JSON"));
    CHECK_THAT(error_of("[]"), Catch::Contains("must be a JSON object"));
    CHECK_THAT(error_of(R"({"startsAt": "2026-01-02T15:04:05Z"})"), Catch::Contains("\"matchers\" must be an array"));
    CHECK_THAT(error_of(R"({"matchers": [{"name": "a", "value": "b"}]})"), Catch::Contains("isRegex"));
    CHECK_THAT(error_of(R"({"matchers": [{"name": "a", "value": 1, "isRegex": false}]})"),
               Catch::Contains("string fields name and value"));
    CHECK_THAT(error_of(R"({"matchers": [{"name": "a", "value": "(", "isRegex": true}]})"),
               Catch::Contains("invalid regex"));
    CHECK_THAT(error_of(R"({"matchers": [{"name": "", "value": "x", "isRegex": false}]})"),
               Catch::Contains("empty label name"));

    nlohmann::json doc = nlohmann::json::parse(valid_body);
    doc["endsAt"] = "tomorrow";
    CHECK_THAT(error_of(doc.dump()), Catch::Contains("\"endsAt\" is \"tomorrow\", not an RFC 3339 time"));
    doc = nlohmann::json::parse(valid_body);
    doc.erase("createdBy");
    CHECK_THAT(error_of(doc.dump()), Catch::Contains("missing field \"createdBy\""));
    doc = nlohmann::json::parse(valid_body);
    doc["comment"] = 5;
    CHECK_THAT(error_of(doc.dump()), Catch::Contains("\"comment\" must be a string"));

    CHECK_THAT(error_of(std::string(20, '[') + std::string(20, ']')), Catch::Contains("deeper than"));
    const silence_body huge = parse_postable_silence(std::string(max_silence_body_bytes + 1, ' '));
    CHECK(huge.status == 413);
}

TEST_CASE("silence api: the gettable form carries state and Alertmanager's fields")
{
    silence s = parse_postable_silence(valid_body).value;
    s.id = "5a4b1c2d-0000-4000-8000-000000000001";
    s.updated_at = s.starts_at;
    const nlohmann::json doc = gettable_silence(s, s.starts_at + 1);
    CHECK(doc["id"] == s.id);
    CHECK(doc["status"]["state"] == "active");
    CHECK(doc["startsAt"] == "2026-01-02T15:04:05.000Z");
    CHECK(doc["endsAt"] == "2026-01-02T16:04:05.250Z");
    CHECK(doc["updatedAt"] == "2026-01-02T15:04:05.000Z");
    CHECK(doc["matchers"][1] ==
          nlohmann::json({{"name", "instance"}, {"value", "web-.*"}, {"isRegex", true}, {"isEqual", false}}));
    CHECK(gettable_silence(s, s.starts_at - 1)["status"]["state"] == "pending");
    CHECK(gettable_silence(s, s.ends_at)["status"]["state"] == "expired");
}

TEST_CASE("silence api: filters take one or more matchers")
{
    std::string error;
    auto one = parse_filter_matchers({R"(alertname="DiskFull")"}, error);
    REQUIRE(one);
    CHECK(one->size() == 1);
    auto braces = parse_filter_matchers({R"({alertname="A,B", team=~"db|web"})", "env!=dev"}, error);
    INFO(error);
    REQUIRE(braces);
    REQUIRE(braces->size() == 3);
    CHECK((*braces)[0].value() == "A,B");
    CHECK((*braces)[1].to_string() == R"(team=~"db|web")");
    CHECK_FALSE(parse_filter_matchers({"alertname=="}, error));
    CHECK_THAT(error, Catch::Contains("invalid filter"));
}

TEST_CASE("state_store: silences round trip and a damaged row is skipped")
{
    temp_dir dir;
    silence s = parse_postable_silence(valid_body).value;
    s.id = "one";
    s.updated_at = s.starts_at + 5;
    {
        std::string error;
        auto store = state_store::open(dir.path().string(), error);
        INFO(error);
        REQUIRE(store);
        silence other = s;
        other.id = "two";
        silence gone = s;
        gone.id = "three";
        REQUIRE(store->apply_silence_changes({{s, other, gone}, {}}, error));
        REQUIRE(store->apply_silence_changes({{}, {"three"}}, error));
    }
    {
        // A row whose JSON was damaged on disk.
        sqlite3* db = nullptr;
        const std::string path = (dir.path() / "tocsin.db").string();
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        REQUIRE(sqlite3_exec(db, R"(UPDATE silences SET data = '{"id": "two", "matchers": 5' WHERE id = 'two')",
                             nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    std::string error;
    auto store = state_store::open(dir.path().string(), error);
    REQUIRE(store);
    std::vector<std::string> unreadable;
    auto loaded = store->load_silences(unreadable, error);
    INFO(error);
    REQUIRE(loaded);
    REQUIRE(loaded->size() == 1);
    const silence& back = loaded->front();
    CHECK(back.id == "one");
    CHECK(back.starts_at == s.starts_at);
    CHECK(back.ends_at == s.ends_at);
    CHECK(back.updated_at == s.updated_at);
    CHECK(back.created_by == s.created_by);
    CHECK(back.comment == s.comment);
    REQUIRE(back.matchers.size() == 2);
    CHECK(back.matchers[1].to_string() == s.matchers[1].to_string());
    REQUIRE(unreadable.size() == 1);
    CHECK_THAT(unreadable[0], Catch::StartsWith("two: "));
}
