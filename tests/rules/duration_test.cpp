#include <catch2/catch.hpp>

#include "rules/duration.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

std::chrono::milliseconds parse_ok(std::string_view text)
{
    std::string error;
    auto d = parse_duration(text, error);
    INFO(text << " -> " << error);
    REQUIRE(d.has_value());
    return *d;
}

std::string parse_error(std::string_view text)
{
    std::string error;
    auto d = parse_duration(text, error);
    INFO(text);
    CHECK_FALSE(d.has_value());
    CHECK_FALSE(error.empty());
    return error;
}

} // namespace

TEST_CASE("duration parses Prometheus units")
{
    CHECK(parse_ok("0s") == 0ms);
    CHECK(parse_ok("0") == 0ms);
    CHECK(parse_ok("500ms") == 500ms);
    CHECK(parse_ok("30s") == 30s);
    CHECK(parse_ok("5m") == 5min);
    CHECK(parse_ok("1h30m") == 90min);
    CHECK(parse_ok("2d") == 48h);
    CHECK(parse_ok("1w") == 168h);
    CHECK(parse_ok("1y") == 365 * 24h);
    CHECK(parse_ok("1h0m30s500ms") == 1h + 30s + 500ms);
    CHECK(parse_ok("90s") == 90s);
}

TEST_CASE("duration rejects malformed text")
{
    CHECK_THAT(parse_error(""), Catch::Contains("empty duration"));
    CHECK_THAT(parse_error("-5m"), Catch::Contains("negative"));
    CHECK_THAT(parse_error("five"), Catch::Contains("expected a number"));
    CHECK_THAT(parse_error("5"), Catch::Contains("missing unit"));
    CHECK_THAT(parse_error("1.5m"), Catch::Contains("fractions"));
    CHECK_THAT(parse_error("5x"), Catch::Contains("unknown unit \"x\""));
    CHECK_THAT(parse_error("5m1h"), Catch::Contains("out of order"));
    CHECK_THAT(parse_error("5m5m"), Catch::Contains("repeated"));
    CHECK_THAT(parse_error("1h "), Catch::Contains("spaces are not allowed"));
    CHECK_THAT(parse_error("5 m"), Catch::Contains("spaces are not allowed; write \"5m\""));
    CHECK_THAT(parse_error("5 min"), Catch::Contains("write \"5m\""));
    CHECK_THAT(parse_error("1h 30m"), Catch::Contains("write \"1h30m\""));
}

TEST_CASE("duration rejects overflow")
{
    CHECK_THAT(parse_error("300000000y"), Catch::Contains("too large"));
    CHECK_THAT(parse_error("99999999999999999999ms"), Catch::Contains("too large"));
    CHECK_THAT(parse_error("292471208y1000000w"), Catch::Contains("too large"));
    CHECK_THAT(parse_error("292471200y"), Catch::Contains("the maximum is 100y"));
    CHECK_THAT(parse_error("100y1d"), Catch::Contains("the maximum is 100y"));
}

TEST_CASE("duration accepts the 100 year maximum")
{
    std::string error;
    auto parsed = parse_duration("100y", error);
    REQUIRE(parsed);
    CHECK(parsed->count() == 100LL * 365 * 24 * 3600 * 1000);
}

TEST_CASE("duration formats with the largest units")
{
    CHECK(format_duration(0ms) == "0s");
    CHECK(format_duration(5min) == "5m");
    CHECK(format_duration(90min) == "1h30m");
    CHECK(format_duration(1500ms) == "1s500ms");
    CHECK(format_duration(48h) == "2d");
    CHECK(format_duration(14 * 24h) == "2w");
    CHECK(format_duration(-30s) == "-30s");
}

TEST_CASE("duration format round trips")
{
    for (std::string_view text : {"1y2w3d4h5m6s7ms", "1h30m", "500ms", "2d", "1w"}) {
        CHECK(format_duration(parse_ok(text)) == text);
    }
}
