#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "rules/template.hpp"

using namespace tocsin;

namespace {

std::string render(std::string_view source, double value = 0,
                   const label_set& labels = label_set{{"instance", "web-1"}, {"service.name", "checkout"}})
{
    text_template t;
    std::string error;
    INFO(source << " -> " << error);
    REQUIRE(text_template::parse(source, t, error));
    return t.render(labels, value);
}

std::string parse_error(std::string_view source)
{
    text_template t;
    std::string error;
    INFO(source);
    CHECK_FALSE(text_template::parse(source, t, error));
    return error;
}

} // namespace

TEST_CASE("template renders literal text")
{
    text_template t;
    std::string error;
    REQUIRE(text_template::parse("plain text", t, error));
    CHECK(t.is_literal());
    CHECK(t.render({}, 1) == "plain text");
    CHECK(t.source() == "plain text");
}

TEST_CASE("template renders labels and value")
{
    CHECK(render("CPU on {{ $labels.instance }}") == "CPU on web-1");
    CHECK(render("{{ .Labels.instance }}") == "web-1");
    CHECK(render(R"({{ index $labels "service.name" }})") == "checkout");
    CHECK(render("[{{ $labels.missing }}]") == "[]");
    CHECK(render("{{ $value }}", 0.25) == "0.25");
    CHECK(render("{{ .Value }}", 42) == "42");
    CHECK(render("{{$value}}", 1e6) == "1000000");
    CHECK(render("{{ $value }}", 1e21) == "1e+21");
    CHECK(render("{{ $value }}", 0.00001) == "1e-05");
    CHECK(render("{{ $value }}", std::nan("")) == "NaN");
    CHECK(render("{{ $value }}", -std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("template applies functions and pipelines")
{
    CHECK(render("{{ $value | humanize }}", 1234567) == "1.235M");
    CHECK(render("{{ humanize $value }}", 0.001) == "1m");
    CHECK(render("{{ $value | humanizePercentage }}", 0.8523) == "85.23%");
    CHECK(render("{{ $value | humanize1024 }}", 2048) == "2ki");
    CHECK(render("{{ $value | humanizeDuration }}", 3723) == "1h 2m 3s");
    CHECK(render(R"({{ printf "%.2f" $value }})", 3.14159) == "3.14");
    CHECK(render(R"({{ $value | printf "%.1f%%" }})", 99.44) == "99.4%");
    CHECK(render(R"({{ printf "%s!" $labels.instance }})") == "web-1!");
    CHECK(render(R"(id={{ printf "%q" $labels.instance }})") == "id=\"web-1\"");
}

TEST_CASE("template trims around dash markers and skips comments")
{
    CHECK(render("a  {{- $labels.instance -}}  b") == "aweb-1b");
    CHECK(render("a{{/* note */}}b") == "ab");
}

TEST_CASE("template rejects unknown names")
{
    CHECK_THAT(parse_error("{{ $value | humanise }}"), Catch::Contains("unknown function \"humanise\""));
    CHECK_THAT(parse_error("{{ $lables.instance }}"), Catch::Contains("unknown variable \"$lables\""));
    CHECK_THAT(parse_error("{{ $externalLabels.x }}"), Catch::Contains("$externalLabels"));
    CHECK_THAT(parse_error("{{ toUpper $labels.x }}"), Catch::Contains("unknown function \"toUpper\""));
}

TEST_CASE("template errors name the column")
{
    CHECK_THAT(parse_error("abc {{ $value | nope }}"), Catch::Contains("at column 17"));
    CHECK_THAT(parse_error("{{ $labels.x"), Catch::Contains("unclosed action at column 1"));
}

TEST_CASE("template rejects unsupported constructs")
{
    CHECK_THAT(parse_error("{{ if $value }}x{{ end }}"), Catch::Contains("unsupported action \"if\""));
    CHECK_THAT(parse_error("{{ $labels }}"), Catch::Contains("needs a label name"));
    CHECK_THAT(parse_error("{{ }}"), Catch::Contains("empty action"));
    CHECK_THAT(parse_error(R"({{ printf "%d" $value }})"), Catch::Contains("%d"));
    CHECK_THAT(parse_error(R"({{ printf "%f %f" $value }})"), Catch::Contains("more than one verb"));
    CHECK_THAT(parse_error(R"({{ printf "%f" $labels.x }})"), Catch::Contains("label value"));
    CHECK_THAT(parse_error("{{ $value | humanize | humanize1024 }}"), Catch::Contains("only one function"));
    CHECK_THAT(parse_error("{{ humanize }}"), Catch::Contains("needs an argument"));
    CHECK_THAT(parse_error("{{ $value.x }}"), Catch::Contains("no field"));
}

TEST_CASE("humanize uses SI prefixes")
{
    CHECK(humanize(0) == "0");
    CHECK(humanize(1) == "1");
    CHECK(humanize(999) == "999");
    CHECK(humanize(1000) == "1k");
    CHECK(humanize(1234567) == "1.235M");
    CHECK(humanize(2.5e9) == "2.5G");
    CHECK(humanize(3e12) == "3T");
    CHECK(humanize(4e15) == "4P");
    CHECK(humanize(5e18) == "5E");
    CHECK(humanize(-1500) == "-1.5k");
    CHECK(humanize(0.5) == "500m");
    CHECK(humanize(0.001) == "1m");
    CHECK(humanize(2e-6) == "2u");
    CHECK(humanize(3e-9) == "3n");
    CHECK(humanize(4e-12) == "4p");
    CHECK(humanize(std::nan("")) == "NaN");
    CHECK(humanize(std::numeric_limits<double>::infinity()) == "+Inf");
}

TEST_CASE("humanize1024 uses binary prefixes")
{
    CHECK(humanize_1024(1) == "1");
    CHECK(humanize_1024(1023) == "1023");
    CHECK(humanize_1024(1024) == "1ki");
    CHECK(humanize_1024(1536) == "1.5ki");
    CHECK(humanize_1024(1048576) == "1Mi");
    CHECK(humanize_1024(3.0 * 1073741824.0) == "3Gi");
    CHECK(humanize_1024(1099511627776.0) == "1Ti");
    CHECK(humanize_1024(0.5) == "0.5");
}

TEST_CASE("humanizePercentage multiplies by 100")
{
    CHECK(humanize_percentage(0.5) == "50%");
    CHECK(humanize_percentage(0.12345) == "12.35%");
    CHECK(humanize_percentage(1) == "100%");
    CHECK(humanize_percentage(0) == "0%");
}

TEST_CASE("humanizeDuration formats seconds")
{
    CHECK(humanize_duration(0) == "0s");
    CHECK(humanize_duration(1.5) == "1.5s");
    CHECK(humanize_duration(0.15) == "150ms");
    CHECK(humanize_duration(0.000002) == "2us");
    CHECK(humanize_duration(59) == "59s");
    CHECK(humanize_duration(60) == "1m 0s");
    CHECK(humanize_duration(3723) == "1h 2m 3s");
    CHECK(humanize_duration(90061) == "1d 1h 1m 1s");
    CHECK(humanize_duration(-3723) == "-1h 2m 3s");
    CHECK(humanize_duration(std::nan("")) == "NaN");
}
