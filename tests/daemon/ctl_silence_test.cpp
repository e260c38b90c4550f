// Tests of `tocsinctl silence`: matcher arguments, silence times, request bodies, the table,
// error messages, and the commands against a scripted transport.

#include <catch2/catch.hpp>

#include <deque>
#include <sstream>

#include "daemon/api.hpp"
#include "daemon/ctl_silence.hpp"
#include "daemon/overrides.hpp"
#include "daemon/silence_api.hpp"

using namespace tocsin;
using json = nlohmann::json;

namespace {

std::vector<label_matcher> parse_ok(const std::vector<std::string>& args, bool bare = true)
{
    std::string error;
    auto out = parse_matcher_args(args, bare, error);
    INFO(error);
    REQUIRE(out);
    return *out;
}

std::string parse_error(const std::vector<std::string>& args, bool bare = true)
{
    std::string error;
    auto out = parse_matcher_args(args, bare, error);
    REQUIRE_FALSE(out);
    return error;
}

time_ms at(const char* rfc3339) { return *parse_rfc3339(rfc3339); }

constexpr time_ms hour_ms = 3'600'000;

// A transport that returns the next scripted reply to each request and records the requests.
class scripted_transport final : public silence_transport {
public:
    struct request {
        std::string method;
        std::string target;
        std::string body;
    };

    transport_reply send(const std::string& method, const std::string& target, const std::string& body) override
    {
        requests.push_back({method, target, body});
        REQUIRE_FALSE(replies.empty());
        transport_reply reply = replies.front();
        replies.pop_front();
        return reply;
    }

    std::deque<transport_reply> replies;
    std::vector<request> requests;
};

json gettable(const std::string& id, const std::string& state, const char* starts, const char* ends)
{
    return {{"id", id},
            {"status", {{"state", state}}},
            {"updatedAt", starts},
            {"comment", "disk swap"},
            {"createdBy", "alice"},
            {"startsAt", starts},
            {"endsAt", ends},
            {"matchers", json::array({{{"name", "alertname"}, {"value", "DiskFull"}, {"isRegex", false},
                                       {"isEqual", true}}})}};
}

} // namespace

TEST_CASE("ctl silence: matcher arguments, four operators")
{
    auto m = parse_ok({"alertname=DiskFull", "env!=dev", "instance=~db-.*", "job!~\"node|blackbox\""});
    REQUIRE(m.size() == 4);
    CHECK(m[0].name() == "alertname");
    CHECK(m[0].op() == match_op::equal);
    CHECK(m[0].value() == "DiskFull");
    CHECK(m[1].op() == match_op::not_equal);
    CHECK(m[1].value() == "dev");
    CHECK(m[2].op() == match_op::regex);
    CHECK(m[2].value() == "db-.*");
    CHECK(m[2].matches("db-1"));
    CHECK_FALSE(m[2].matches("web-db-1"));
    CHECK(m[3].op() == match_op::not_regex);
    CHECK(m[3].value() == "node|blackbox");

    // Unquoted values are verbatim: spaces, commas, braces, backslashes and quotes inside.
    auto verbatim = parse_ok({"summary=disk is 95% full, {really}", R"(path=~C:\\data\d+)", "msg=say \"hi\""});
    CHECK(verbatim[0].value() == "disk is 95% full, {really}");
    CHECK(verbatim[1].value() == R"(C:\\data\d+)");
    CHECK(verbatim[1].matches(R"(C:\data7)"));
    CHECK(verbatim[2].value() == "say \"hi\"");

    // Quoted values take Go escapes. Single quotes, backticks and quoted names work too.
    auto quoted = parse_ok({R"(a="x\"y")", "b='two words'", "c=~`\\d+`", R"("service.name"="checkout")"});
    CHECK(quoted[0].value() == "x\"y");
    CHECK(quoted[1].value() == "two words");
    CHECK(quoted[2].value() == "\\d+");
    CHECK(quoted[3].name() == "service.name");

    // An empty value matches an absent label.
    CHECK(parse_ok({"a=DiskFull", "team="})[1].value().empty());
}

TEST_CASE("ctl silence: bare first argument is alertname")
{
    auto m = parse_ok({"DiskFull", "instance=db-1"});
    REQUIRE(m.size() == 2);
    CHECK(m[0].to_string() == "alertname=\"DiskFull\"");
    CHECK(m[1].to_string() == "instance=\"db-1\"");

    auto later = parse_error({"instance=db-1", "DiskFull"});
    CHECK_THAT(later, Catch::Contains("\"DiskFull\"") && Catch::Contains("no operator") &&
                          Catch::Contains("only the first matcher"));
    CHECK_THAT(parse_error({"DiskFull"}, false), Catch::Contains("no operator"));
}

TEST_CASE("ctl silence: invalid matcher arguments")
{
    CHECK_THAT(parse_error({"instance=~db-(", "x=y"}),
               Catch::Contains("invalid matcher \"instance=~db-(\"") && Catch::Contains("name=~regex"));
    CHECK_THAT(parse_error({"a==b"}), Catch::Contains("'==' is not an operator"));
    CHECK_THAT(parse_error({"a!b"}), Catch::Contains("'!' must be followed by = or ~"));
    CHECK_THAT(parse_error({"=value"}), Catch::Contains("invalid matcher \"=value\"") &&
                                            Catch::Contains("label name"));
    CHECK_THAT(parse_error({"bad-name=x"}), Catch::Contains("invalid matcher \"bad-name=x\""));
    CHECK_THAT(parse_error({"a=\"open"}), Catch::Contains("unterminated"));
    CHECK_THAT(parse_error({"a=\"x\"y"}), Catch::Contains("unexpected text"));
}

TEST_CASE("ctl silence: new silence window")
{
    const time_ms now = at("2026-03-01T10:00:00Z");
    std::string error;

    auto plain = new_silence_window(now, "", "", "", error);
    REQUIRE(plain);
    CHECK(plain->ends_at == now + hour_ms); // 1h by default
    CHECK(plain->starts_at < now);          // slack for a client clock ahead of the server's
    CHECK(plain->starts_at >= now - 60'000);

    auto two_hours = new_silence_window(now, "", "2h", "", error);
    REQUIRE(two_hours);
    CHECK(two_hours->ends_at == now + 2 * hour_ms);

    auto until = new_silence_window(now, "", "", "2026-03-01T13:30:00+01:00", error);
    REQUIRE(until);
    CHECK(until->ends_at == at("2026-03-01T12:30:00Z"));

    auto later = new_silence_window(now, "2026-03-02T08:00:00Z", "30m", "", error);
    REQUIRE(later);
    CHECK(later->starts_at == at("2026-03-02T08:00:00Z"));
    CHECK(later->ends_at == at("2026-03-02T08:30:00Z"));

    // A start in the past still gives the full duration from now.
    auto past_start = new_silence_window(now, "2026-03-01T09:00:00Z", "1h", "", error);
    REQUIRE(past_start);
    CHECK(past_start->ends_at == now + hour_ms);
}

TEST_CASE("ctl silence: invalid silence times")
{
    const time_ms now = at("2026-03-01T10:00:00Z");
    std::string error;
    CHECK_FALSE(new_silence_window(now, "", "2h", "2026-03-01T12:00:00Z", error));
    CHECK_THAT(error, Catch::Contains("--duration and --end"));
    CHECK_FALSE(new_silence_window(now, "", "2 hours", "", error));
    CHECK_THAT(error, Catch::Contains("--duration \"2 hours\""));
    CHECK_FALSE(new_silence_window(now, "", "0s", "", error));
    CHECK_THAT(error, Catch::Contains("longer than 0s"));
    CHECK_FALSE(new_silence_window(now, "", "100000000y", "", error));
    CHECK_FALSE(new_silence_window(now, "", "", "tomorrow", error));
    CHECK_THAT(error, Catch::Contains("--end \"tomorrow\" is not an RFC 3339 time"));
    CHECK_FALSE(new_silence_window(now, "", "", "2026-03-01T09:00:00Z", error));
    CHECK_THAT(error, Catch::Contains("not after the start"));
    CHECK_FALSE(new_silence_window(now, "2026-03-01T08:00:00Z", "", "2026-03-01T09:00:00Z", error));
    CHECK_THAT(error, Catch::Contains("in the past"));
    CHECK_FALSE(new_silence_window(now, "2026-03-03T00:00:00Z", "", "2026-03-02T00:00:00Z", error));
    CHECK_THAT(error, Catch::Contains("not after the start"));
}

TEST_CASE("ctl silence: update of end and comment")
{
    const time_ms now = at("2026-03-01T10:00:00Z");
    std::string error;
    silence active;
    active.id = "a1";
    active.starts_at = at("2026-03-01T09:00:00Z");
    active.ends_at = at("2026-03-01T11:00:00Z");
    active.comment = "old";
    REQUIRE(apply_silence_update(active, now, "3h", "", std::nullopt, error));
    CHECK(active.ends_at == now + 3 * hour_ms);
    CHECK(active.comment == "old");

    silence pending = active;
    pending.starts_at = at("2026-03-02T00:00:00Z");
    REQUIRE(apply_silence_update(pending, now, "3h", "", std::string("new reason"), error));
    CHECK(pending.ends_at == at("2026-03-02T03:00:00Z"));
    CHECK(pending.comment == "new reason");

    REQUIRE(apply_silence_update(active, now, "", "2026-03-05T00:00:00Z", std::nullopt, error));
    CHECK(active.ends_at == at("2026-03-05T00:00:00Z"));

    CHECK_FALSE(apply_silence_update(active, now, "", "", std::nullopt, error));
    CHECK_THAT(error, Catch::Contains("nothing to change"));
    CHECK_FALSE(apply_silence_update(active, now, "", "2026-03-01T09:30:00Z", std::nullopt, error));
    CHECK_THAT(error, Catch::Contains("in the past") && Catch::Contains("silence expire"));
    CHECK_FALSE(apply_silence_update(pending, now, "", "2026-03-01T23:00:00Z", std::nullopt, error));
    CHECK_THAT(error, Catch::Contains("not after the silence's start"));
    CHECK_FALSE(apply_silence_update(active, now, "", "", std::string("  "), error));
    CHECK_THAT(error, Catch::Contains("--comment is empty"));
}

TEST_CASE("ctl silence: POST body round trip")
{
    silence s;
    s.matchers = parse_ok({"DiskFull", "env!=dev", "instance=~db-.*", "job!~x|y"});
    s.starts_at = at("2026-03-01T10:00:00.250Z");
    s.ends_at = at("2026-03-01T12:00:00Z");
    s.created_by = "alice";
    s.comment = "disk swap";
    json body = postable_silence_json(s);
    CHECK_FALSE(body.contains("id"));
    CHECK(body["startsAt"] == "2026-03-01T10:00:00.250Z");
    CHECK(body["endsAt"] == "2026-03-01T12:00:00.000Z");
    CHECK(body["createdBy"] == "alice");
    CHECK(body["matchers"][0] == json({{"name", "alertname"}, {"value", "DiskFull"}, {"isRegex", false},
                                       {"isEqual", true}}));
    CHECK(body["matchers"][1]["isEqual"] == false);
    CHECK(body["matchers"][2]["isRegex"] == true);
    CHECK(body["matchers"][3] == json({{"name", "job"}, {"value", "x|y"}, {"isRegex", true}, {"isEqual", false}}));

    s.id = "abc";
    body = postable_silence_json(s);
    CHECK(body["id"] == "abc");
    auto parsed = parse_postable_silence(body.dump());
    REQUIRE(parsed.error.empty());
    CHECK(parsed.value.id == "abc");
    REQUIRE(parsed.value.matchers.size() == 4);
    CHECK(parsed.value.matchers[3].to_string() == s.matchers[3].to_string());
    CHECK(parsed.value.starts_at == s.starts_at);
    CHECK(parsed.value.ends_at == s.ends_at);
}

TEST_CASE("ctl silence: query filters percent-encoded")
{
    CHECK(silences_query_target({}) == "/api/v2/silences");
    CHECK(silences_query_target(parse_ok({"DiskFull", "instance=~db-.* 1&x"})) ==
          "/api/v2/silences?filter=alertname%3D%22DiskFull%22&filter=instance%3D~%22db-.%2A%201%26x%22");
    CHECK(percent_encode("a-Z_0.9~ /%\xC3\xA9") == "a-Z_0.9~%20%2F%25%C3%A9");
}

TEST_CASE("ctl silence: table alignment and control characters")
{
    std::string error;
    json list = json::array({gettable("0b6c", "active", "2026-03-01T10:00:00.250Z", "2026-03-01T12:00:00Z"),
                             gettable("d41f7a", "pending", "2026-03-02T00:00:00Z", "2026-03-02T01:00:00Z")});
    list[1]["comment"] = "line one\nline two\x1b[31m";
    list[1]["createdBy"] = "Zoë";
    list[1]["matchers"].push_back({{"name", "instance"}, {"value", "db-.*"}, {"isRegex", true}, {"isEqual", false}});
    auto parsed = parse_gettable_silences(list.dump(), error);
    INFO(error);
    REQUIRE(parsed);
    REQUIRE(parsed->size() == 2);
    CHECK((*parsed)[1].state == silence_state::pending);

    const std::string expected =
        "ID      Matchers                                Starts At             Ends At               Created By  "
        "Comment\n"
        "0b6c    alertname=\"DiskFull\"                    2026-03-01T10:00:00Z  2026-03-01T12:00:00Z  alice       "
        "disk swap\n"
        "d41f7a  alertname=\"DiskFull\" instance!~\"db-.*\"  2026-03-02T00:00:00Z  2026-03-02T01:00:00Z  Zoë         "
        "line one line two [31m\n";
    CHECK(format_silence_table(*parsed) == expected);
    CHECK(format_silence_table({}) == "ID  Matchers  Starts At  Ends At  Created By  Comment\n");
}

TEST_CASE("ctl silence: unexpected server responses")
{
    std::string error;
    CHECK_FALSE(parse_gettable_silences("<html>", error));
    CHECK_THAT(error, Catch::Contains("not JSON"));
    CHECK_FALSE(parse_gettable_silences("{}", error));
    CHECK_THAT(error, Catch::Contains("not a JSON array"));
    json bad_state = json::array({gettable("x", "sleeping", "2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z")});
    CHECK_FALSE(parse_gettable_silences(bad_state.dump(), error));
    CHECK_THAT(error, Catch::Contains("status.state"));
}

TEST_CASE("ctl silence: server error messages")
{
    CHECK(server_error_message(400, R"("silence x not found")") == "silence x not found");
    CHECK(server_error_message(401, "missing bearer token; send Authorization: Bearer <token>\n") ==
          "missing bearer token; send Authorization: Bearer <token>");
    CHECK(server_error_message(500, R"({"error":"boom"})") == R"({"error":"boom"})");
    CHECK(server_error_message(502, "") == "the server answered 502 with an empty body");
    CHECK(server_error_message(400, "\"a\\u001b[2Jb\"") == "a [2Jb");
    CHECK(server_error_message(400, std::string(10'000, 'x')).size() == 2003);
}

TEST_CASE("ctl silence: URLs other than http and https")
{
    std::string error;
    CHECK(make_http_transport("http://127.0.0.1:9793", "", "", std::chrono::seconds(1), error));
    CHECK(make_http_transport("HTTPS://tocsin.example:443/prefix/", "", "", std::chrono::seconds(1), error));
    CHECK(make_http_transport("http://[::1]:9793", "", "", std::chrono::seconds(1), error));
    CHECK_FALSE(make_http_transport("127.0.0.1:9793", "", "", std::chrono::seconds(1), error));
    CHECK_THAT(error, Catch::Contains("must start with http:// or https://"));
    CHECK_FALSE(make_http_transport("ftp://x", "", "", std::chrono::seconds(1), error));
    CHECK_FALSE(make_http_transport("http://", "", "", std::chrono::seconds(1), error));
    CHECK_FALSE(make_http_transport("http://user:pw@host", "", "", std::chrono::seconds(1), error));
    CHECK_FALSE(make_http_transport("http://host/?a=b", "", "", std::chrono::seconds(1), error));
    CHECK_FALSE(make_http_transport("http://host\r\nX: y", "", "", std::chrono::seconds(1), error));
}

TEST_CASE("ctl silence: add command")
{
    scripted_transport api;
    api.replies.push_back({200, R"({"silenceID":"new-id"})", ""});
    silence_command cmd;
    cmd.matchers = {"DiskFull", "instance=~db-.*"};
    cmd.author = "alice";
    cmd.comment = "disk swap";
    cmd.duration = "2h";
    std::ostringstream out;
    std::ostringstream err;
    const time_ms now = at("2026-03-01T10:00:00Z");
    CHECK(silence_add(cmd, api, now, out, err) == 0);
    CHECK(out.str() == "new-id\n");
    CHECK(err.str().empty());
    REQUIRE(api.requests.size() == 1);
    CHECK(api.requests[0].method == "POST");
    CHECK(api.requests[0].target == "/api/v2/silences");
    const json body = json::parse(api.requests[0].body);
    CHECK(body["endsAt"] == "2026-03-01T12:00:00.000Z");
    CHECK(body["matchers"].size() == 2);

    // The server's error, as `tocsinctl: <status>: <message>`.
    api.replies.push_back({400, R"("matchers[0]: every matcher matches the empty string")", ""});
    std::ostringstream err2;
    CHECK(silence_add(cmd, api, now, out, err2) == 1);
    CHECK(err2.str() == "tocsinctl: 400: matchers[0]: every matcher matches the empty string\n");

    // Usage errors go nowhere near the server.
    cmd.matchers = {"instance=~("};
    std::ostringstream err3;
    CHECK(silence_add(cmd, api, now, out, err3) == 2);
    CHECK_THAT(err3.str(), Catch::StartsWith("tocsinctl: invalid matcher \"instance=~(\""));
    cmd.matchers = {"DiskFull"};
    cmd.author.clear();
    CHECK(silence_add(cmd, api, now, out, err3) == 2);
    CHECK_THAT(err3.str(), Catch::Contains("pass --author"));
    CHECK(api.requests.size() == 2);
}

TEST_CASE("ctl silence: query command")
{
    json list = json::array({gettable("a1", "active", "2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z"),
                             gettable("p1", "pending", "2026-03-02T10:00:00Z", "2026-03-02T12:00:00Z"),
                             gettable("e1", "expired", "2026-02-01T10:00:00Z", "2026-02-01T12:00:00Z")});
    scripted_transport api;
    for (int i = 0; i < 3; ++i) {
        api.replies.push_back({200, list.dump(), ""});
    }
    silence_command cmd;
    cmd.matchers = {"DiskFull"};
    cmd.quiet = true;
    std::ostringstream out;
    std::ostringstream err;
    CHECK(silence_query(cmd, api, out, err) == 0);
    CHECK(out.str() == "a1\np1\n");
    CHECK(api.requests[0].target == "/api/v2/silences?filter=alertname%3D%22DiskFull%22");

    cmd.expired = true;
    std::ostringstream expired;
    CHECK(silence_query(cmd, api, expired, err) == 0);
    CHECK(expired.str() == "e1\n");

    cmd.quiet = false;
    cmd.expired = false;
    std::ostringstream table;
    CHECK(silence_query(cmd, api, table, err) == 0);
    CHECK_THAT(table.str(), Catch::StartsWith("ID  Matchers") && Catch::Contains("\na1  ") &&
                                Catch::Contains("\np1  ") && !Catch::Contains("e1"));
}

TEST_CASE("ctl silence: expire command")
{
    scripted_transport api;
    api.replies.push_back({200, "", ""});
    api.replies.push_back({404, R"("silence b/2 not found")", ""});
    api.replies.push_back({200, "", ""});
    silence_command cmd;
    cmd.ids = {"a1", "b/2", "c3"};
    std::ostringstream out;
    std::ostringstream err;
    CHECK(silence_expire(cmd, api, out, err) == 1);
    REQUIRE(api.requests.size() == 3);
    CHECK(api.requests[0].method == "DELETE");
    CHECK(api.requests[1].target == "/api/v2/silence/b%2F2");
    CHECK(err.str() == "tocsinctl: 404: silence b/2 not found\n");

    // Without a server, the first failure names the URL and the rest are skipped.
    api.requests.clear();
    api.replies.push_back({0, "", "cannot connect to http://127.0.0.1:1; ... --url"});
    std::ostringstream err2;
    CHECK(silence_expire(cmd, api, out, err2) == 1);
    CHECK(api.requests.size() == 1);
    CHECK_THAT(err2.str(), Catch::StartsWith("tocsinctl: cannot connect to http://127.0.0.1:1"));
}

TEST_CASE("ctl silence: update command")
{
    const time_ms now = at("2026-03-01T11:00:00Z");
    scripted_transport api;
    api.replies.push_back(
        {200, gettable("a1", "active", "2026-03-01T10:00:00.123Z", "2026-03-01T12:00:00Z").dump(), ""});
    // The server may return a new ID, and tocsinctl prints the ID it returned.
    api.replies.push_back({200, R"({"silenceID":"a2"})", ""});
    silence_command cmd;
    cmd.ids = {"a1"};
    cmd.duration = "4h";
    cmd.comment = "takes longer";
    std::ostringstream out;
    std::ostringstream err;
    CHECK(silence_update(cmd, api, now, out, err) == 0);
    INFO(err.str());
    CHECK(out.str() == "a2\n");
    REQUIRE(api.requests.size() == 2);
    CHECK(api.requests[0].method == "GET");
    CHECK(api.requests[0].target == "/api/v2/silence/a1");
    const json body = json::parse(api.requests[1].body);
    CHECK(body["id"] == "a1");
    CHECK(body["startsAt"] == "2026-03-01T10:00:00.123Z"); // unchanged, so the server updates in place
    CHECK(body["endsAt"] == "2026-03-01T15:00:00.000Z");
    CHECK(body["comment"] == "takes longer");
    CHECK(body["createdBy"] == "alice");

    // An expired silence cannot be updated; nothing is posted.
    api.requests.clear();
    api.replies.push_back(
        {200, gettable("e1", "expired", "2026-03-01T08:00:00Z", "2026-03-01T09:00:00Z").dump(), ""});
    std::ostringstream err2;
    cmd.ids = {"e1"};
    CHECK(silence_update(cmd, api, now, out, err2) == 1);
    CHECK(api.requests.size() == 1);
    CHECK_THAT(err2.str(), Catch::Contains("has expired"));

    // Bad arguments fail before any request.
    api.requests.clear();
    cmd.duration = "soon";
    std::ostringstream err3;
    CHECK(silence_update(cmd, api, now, out, err3) == 2);
    CHECK(api.requests.empty());
}
