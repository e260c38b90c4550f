#include <catch2/catch.hpp>

#include "rules/labels.hpp"
#include "rules/matcher.hpp"

using namespace tocsin;

namespace {

label_matcher parse_ok(std::string_view text)
{
    std::string error;
    auto m = label_matcher::parse(text, error);
    INFO(text << " -> " << error);
    REQUIRE(m.has_value());
    CHECK(error.empty());
    return *m;
}

std::string parse_error(std::string_view text)
{
    std::string error;
    auto m = label_matcher::parse(text, error);
    INFO(text);
    CHECK_FALSE(m.has_value());
    CHECK_FALSE(error.empty());
    return error;
}

} // namespace

TEST_CASE("matcher regex is anchored at both ends")
{
    const auto m = parse_ok(R"(instance=~"web")");
    CHECK(m.matches("web"));
    CHECK_FALSE(m.matches("web-2"));
    CHECK_FALSE(m.matches("myweb"));
    CHECK_FALSE(m.matches("WEB"));
    CHECK_FALSE(m.matches(""));
}

TEST_CASE("matcher negative regex is anchored")
{
    const auto m = parse_ok(R"(instance!~"web-.*")");
    CHECK_FALSE(m.matches("web-1"));
    CHECK_FALSE(m.matches("web-"));
    CHECK(m.matches("myweb-1"));
    CHECK(m.matches("web"));
    CHECK(m.matches(""));
}

TEST_CASE("matcher alternation is anchored as a whole")
{
    const auto m = parse_ok(R"(env=~"prod|stage")");
    CHECK(m.matches("prod"));
    CHECK(m.matches("stage"));
    CHECK_FALSE(m.matches("preprod"));
    CHECK_FALSE(m.matches("production"));
    CHECK_FALSE(m.matches("stage2"));
}

TEST_CASE("matcher on absent label sees empty string")
{
    const auto m = parse_ok(R"(abc=~".*abc")");
    const label_set without{{"__name__", "up"}, {"job", "x"}};
    const label_set with{{"__name__", "up"}, {"abc", "xabc"}};
    CHECK_FALSE(m.matches(without));
    CHECK(m.matches(with));

    const auto empty = parse_ok(R"(abc="")");
    CHECK(empty.matches(without));
    CHECK_FALSE(empty.matches(with));

    const auto any = parse_ok(R"(abc=~".*")");
    CHECK(any.matches(without));
}

TEST_CASE("matcher dot matches newline")
{
    const auto m = parse_ok(R"(msg=~"a.b")");
    CHECK(m.matches("a\nb"));
}

TEST_CASE("matcher equality and inequality")
{
    const auto eq = parse_ok(R"(job="node")");
    CHECK(eq.op() == match_op::equal);
    CHECK(eq.matches("node"));
    CHECK_FALSE(eq.matches("node2"));

    const auto ne = parse_ok(R"(job != "node")");
    CHECK(ne.op() == match_op::not_equal);
    CHECK(ne.matches("api"));
    CHECK_FALSE(ne.matches("node"));
}

TEST_CASE("matcher accepts unquoted value for equality")
{
    const auto m = parse_ok("severity=critical");
    CHECK(m.name() == "severity");
    CHECK(m.value() == "critical");
    CHECK(m.matches("critical"));

    const auto ne = parse_ok("severity!=info");
    CHECK(ne.op() == match_op::not_equal);
    CHECK(ne.value() == "info");
}

TEST_CASE("matcher accepts quoted UTF-8 name")
{
    const auto m = parse_ok(R"("service.name"="checkout")");
    CHECK(m.name() == "service.name");
    CHECK(m.value() == "checkout");
    const label_set series{{"__name__", "x"}, {"service.name", "checkout"}};
    CHECK(m.matches(series));
    CHECK(m.to_string() == R"("service.name"="checkout")");

    const auto unicode = parse_ok("\"r\xC3\xA9gion\"=\"eu\"");
    CHECK(unicode.name() == "r\xC3\xA9gion");
}

TEST_CASE("matcher decodes escapes in quoted values")
{
    CHECK(parse_ok(R"(a="x\"y")").value() == "x\"y");
    CHECK(parse_ok(R"(a="back\\slash")").value() == "back\\slash");
    CHECK(parse_ok(R"(a="tab\there")").value() == "tab\there");
    CHECK(parse_ok(R"(a="\u00e9")").value() == "\xC3\xA9");
    CHECK(parse_ok(R"(a='single "quoted"')").value() == "single \"quoted\"");
    CHECK(parse_ok(R"(a=`raw\d+`)").value() == "raw\\d+");
    // A regex escape survives as a backslash followed by the character.
    const auto re = parse_ok(R"(path=~"/api/v1/\\w+")");
    CHECK(re.matches("/api/v1/write"));
    CHECK_FALSE(re.matches("/api/v1/"));
}

TEST_CASE("matcher rejects missing value")
{
    CHECK_THAT(parse_error("foo="), Catch::Contains("missing value"));
    CHECK_THAT(parse_error("foo=~"), Catch::Contains("missing value"));
    CHECK_THAT(parse_error("foo!="), Catch::Contains("missing value"));
}

TEST_CASE("matcher rejects empty and blank names")
{
    CHECK_THAT(parse_error(R"(""="x")"), Catch::Contains("empty label name"));
    CHECK_THAT(parse_error(R"("  "="x")"), Catch::Contains("only whitespace"));
    CHECK_THAT(parse_error(R"(="x")"), Catch::Contains("label name"));
}

TEST_CASE("matcher rejects invalid UTF-8")
{
    CHECK_THAT(parse_error("a=\"\xFF\""), Catch::Contains("UTF-8"));
    CHECK_THAT(parse_error("\"\xC3\"=\"x\""), Catch::Contains("UTF-8"));
    CHECK_THAT(parse_error(R"(a="\xff")"), Catch::Contains("UTF-8"));
}

TEST_CASE("matcher rejects malformed input")
{
    CHECK_THAT(parse_error("a=\"line\nbreak\""), Catch::Contains("newline"));
    CHECK_THAT(parse_error(R"(a=~"(")"), Catch::Contains("invalid regex"));
    CHECK_THAT(parse_error(R"(a=~web)"), Catch::Contains("must be quoted"));
    CHECK_THAT(parse_error(R"(a=="x")"), Catch::Contains("'=='"));
    CHECK_THAT(parse_error(R"(a "x")"), Catch::Contains("missing operator"));
    CHECK_THAT(parse_error(R"(a="x)"), Catch::Contains("unterminated"));
    CHECK_THAT(parse_error(R"(a="x" b="y")"), Catch::Contains("unexpected text"));
    CHECK_THAT(parse_error(R"(a="\q")"), Catch::Contains("unknown escape"));
}

TEST_CASE("matcher make reports bad regex")
{
    std::string error;
    CHECK_FALSE(label_matcher::make("a", match_op::regex, "[", error).has_value());
    CHECK_THAT(error, Catch::Contains("invalid regex"));

    // The reason quotes the pattern as written, not the anchored form the matcher compiles.
    error.clear();
    CHECK_FALSE(label_matcher::make("q", match_op::regex, "q[1-", error).has_value());
    CHECK_THAT(error, Catch::Contains("missing ]") && Catch::Contains("[1-"));
    CHECK_THAT(error, !Catch::Contains("(?s:"));
    CHECK_THAT(error, !Catch::Contains("1-)"));

    error.clear();
    auto m = label_matcher::make("a", match_op::not_regex, "x+", error);
    REQUIRE(m.has_value());
    CHECK(m->matches("y"));
    CHECK_FALSE(m->matches("xxx"));
}

TEST_CASE("matcher to_string round trips")
{
    for (std::string_view text : {R"(job="node")", R"(a!~"x\"y")", R"("service.name"=~"check.*")", R"(b!="")"}) {
        const auto m = parse_ok(text);
        const auto again = parse_ok(m.to_string());
        CHECK(again.name() == m.name());
        CHECK(again.op() == m.op());
        CHECK(again.value() == m.value());
    }
    const auto newline = parse_ok(R"(a="line\nbreak")");
    CHECK(newline.value() == "line\nbreak");
    CHECK(newline.to_string() == R"(a="line\nbreak")");
}
