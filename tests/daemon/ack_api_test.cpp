// The acknowledgement API's request parser, path form and response body.

#include <catch2/catch.hpp>

#include <string>

#include "daemon/ack_api.hpp"

using namespace tocsin;

TEST_CASE("ack request bodies name who acknowledges, with an optional comment")
{
    auto ok = parse_ack_request(R"({"by": "alice", "comment": "rolling back the canary"})");
    CHECK(ok.error.empty());
    CHECK(ok.by == "alice");
    CHECK(ok.comment == "rolling back the canary");

    auto no_comment = parse_ack_request(R"({"by": "bob", "comment": null})");
    CHECK(no_comment.error.empty());
    CHECK(no_comment.comment.empty());
}

TEST_CASE("ack rejects bad bodies")
{
    CHECK(parse_ack_request("").error ==
          "the request body is not a JSON object; expected {\"by\": \"<name>\", \"comment\": \"<text>\"}");
    CHECK(parse_ack_request("[1]").error.starts_with("the request body is not a JSON object"));
    CHECK(parse_ack_request(R"({"comment": "x"})").error ==
          "\"by\" is missing or empty; name who acknowledges the alert, such as {\"by\": \"alice\"}");
    CHECK(parse_ack_request(R"({"by": 7})").error == "\"by\" is 7; expected a string");
    CHECK(parse_ack_request(R"({"by": "a", "owner": "b"})").error == "unknown field \"owner\"; expected by and comment");
    CHECK(parse_ack_request("{\"by\": \"eve\\ninjected line\"}").error ==
          "\"by\" contains the control character 0x0a; use a plain name");
    CHECK(parse_ack_request(R"({"by": ")" + std::string(300, 'x') + R"("})").error ==
          "\"by\" has 300 bytes; at most 256 are allowed");
    CHECK(parse_ack_request(std::string(20000, ' ')).error == "the request body has 20000 bytes; at most 16384 are allowed");
    CHECK(parse_ack_request(std::string(5000, '[') + std::string(5000, ']')).error.starts_with(
        "the request body nests too deeply"));
}

TEST_CASE("ack paths carry the alert id as hex digits")
{
    bool bad = false;
    CHECK(ack_path_id("/api/v1/alerts/00000000000000ff/ack", bad) == 255u);
    CHECK_FALSE(bad);
    CHECK(ack_path_id("/api/v1/alerts/ffffffffffffffff/ack", bad) == 0xffffffffffffffffULL);
    CHECK_FALSE(ack_path_id("/api/v1/alerts", bad).has_value());
    CHECK_FALSE(bad);
    CHECK_FALSE(ack_path_id("/api/v1/alerts/12/other", bad).has_value());
    CHECK_FALSE(bad);
    for (const char* path : {"/api/v1/alerts//ack", "/api/v1/alerts/xyz/ack", "/api/v1/alerts/1ffffffffffffffff/ack",
                             "/api/v1/alerts/-1/ack", "/api/v1/alerts/12 /ack"}) {
        INFO(path);
        CHECK_FALSE(ack_path_id(path, bad).has_value());
        CHECK(bad);
    }
}

TEST_CASE("the ack answer shows the acknowledgement or null")
{
    alert a;
    a.id = 0xab;
    a.labels = label_set{{"alertname", "ModelAucLow"}};
    auto plain = ack_json(a);
    CHECK(plain["id"] == "00000000000000ab");
    CHECK(plain["labels"]["alertname"] == "ModelAucLow");
    CHECK(plain["acknowledged"].is_null());
    a.acknowledged_by = "alice";
    a.ack_comment = "on it";
    a.acknowledged_at = 1'700'000'000'123;
    auto acked = ack_json(a);
    CHECK(acked["acknowledged"]["by"] == "alice");
    CHECK(acked["acknowledged"]["comment"] == "on it");
    CHECK(acked["acknowledged"]["at"] == "2023-11-14T22:13:20.123Z");
}
