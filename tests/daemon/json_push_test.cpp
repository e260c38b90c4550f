#include <cmath>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon/engine_fixture.hpp"
#include "daemon/ingest.hpp"

using namespace tocsin;
using tocsin::test::engine_fixture;
using json = nlohmann::json;

namespace {

constexpr time_ms t0 = engine_fixture::start_ms;

struct push_fixture : engine_fixture {
    using engine_fixture::engine_fixture;

    ingest_outcome push(const std::string& body)
    {
        return ingest_json(body, eng, limits, counters, clock.now_ms());
    }

    ingest_outcome push(const json& body) { return push(body.dump()); }
};

json response_of(const ingest_outcome& out)
{
    REQUIRE(out.content_type == "application/json");
    return json::parse(out.body);
}

} // namespace

TEST_CASE("json push: valid batch gives 200")
{
    push_fixture f;
    std::string body = R"({"samples":[
        {"labels":{"__name__":"cpu","host":"a"},"value":93.5,"timestamp_ms":1733000000000},
        {"labels":{"host":"b","__name__":"cpu"},"value":12,"timestamp_ms":1733000000000}]})";

    ingest_outcome out = f.push(body);

    CHECK(out.http_status == 200);
    json response = response_of(out);
    CHECK(response["accepted"] == 2);
    CHECK(response["rejected"] == 0);
    CHECK(response["errors"].empty());
    CHECK(f.counters.samples_accepted == 2);
    CHECK(f.eng.stats().series == 2);
    auto alert = f.find_alert("HighCpu", "host", "a");
    REQUIRE(alert);
    CHECK(alert->value == 93.5);
    CHECK(alert->last_sample_at == 1733000000000);
}

TEST_CASE("json push: metric shortcut names the series")
{
    push_fixture f;
    ingest_outcome out = f.push(json{{"samples", {{{"metric", "cpu"}, {"labels", {{"host", "a"}}}, {"value", 95}}}}});

    CHECK(out.http_status == 200);
    CHECK(f.find_alert("HighCpu", "host", "a"));
}

TEST_CASE("json push: equal metric and __name__")
{
    push_fixture f;
    ingest_outcome out = f.push(
        json{{"samples", {{{"metric", "cpu"}, {"labels", {{"__name__", "cpu"}, {"host", "a"}}}, {"value", 95}}}}});

    CHECK(out.http_status == 200);
    CHECK(f.eng.stats().series == 1);
}

TEST_CASE("json push: conflicting metric and __name__")
{
    push_fixture f;
    ingest_outcome out = f.push(
        json{{"samples", {{{"metric", "cpu"}, {"labels", {{"__name__", "mem"}}}, {"value", 95}}}}});

    CHECK(out.http_status == 400);
    json response = response_of(out);
    CHECK(response["rejected"] == 1);
    CHECK_THAT(response["errors"][0]["error"].get<std::string>(),
               Catch::Contains("label name \"__name__\" appears more than once"));
    CHECK(f.rejected(reject_reason::duplicate_label_name) == 1);
}

TEST_CASE("json push: label order is irrelevant")
{
    push_fixture f;
    REQUIRE(f.push(std::string(R"({"samples":[{"labels":{"zone":"z","host":"a","__name__":"cpu"},"value":1,"timestamp_ms":1}]})"))
                .http_status == 200);
    REQUIRE(f.push(std::string(R"({"samples":[{"labels":{"__name__":"cpu","host":"a","zone":"z"},"value":2,"timestamp_ms":2}]})"))
                .http_status == 200);

    CHECK(f.eng.stats().series == 1);
    CHECK(f.counters.samples_accepted == 2);
}

TEST_CASE("json push: special value strings accepted")
{
    push_fixture f;
    for (std::string text : {"NaN", "+Inf", "-Inf", "Inf"}) {
        ingest_outcome out = f.push(json{{"samples", {{{"metric", "gauge"}, {"labels", {{"v", text}}}, {"value", text}}}}});
        INFO(text);
        CHECK(out.http_status == 200);
    }
    CHECK(f.counters.samples_accepted == 4);
}

TEST_CASE("json push: infinity is non-numeric")
{
    push_fixture f;
    REQUIRE(f.push(json{{"samples", {{{"metric", "cpu"}, {"labels", {{"host", "a"}}}, {"value", "+Inf"}}}}})
                .http_status == 200);

    CHECK(f.eng.stats().non_numeric_samples == 1);
    CHECK_FALSE(f.find_alert("HighCpu", "host", "a"));
}

TEST_CASE("json push: timestamp defaults to now")
{
    push_fixture f;
    REQUIRE(f.push(json{{"samples", {{{"metric", "cpu"}, {"value", 95}}}}}).http_status == 200);

    // A sample at the same instant is a duplicate, which shows that `now` was used.
    ingest_outcome out = f.push(json{{"samples", {{{"metric", "cpu"}, {"value", 95}, {"timestamp_ms", t0}}}}});

    CHECK(out.http_status == 200);
    CHECK(f.rejected(reject_reason::duplicate_sample) == 1);
}

TEST_CASE("json push: bad samples rejected individually")
{
    push_fixture f;
    std::string body = R"({"samples":[
        {"labels":{"__name__":"cpu","host":3},"value":1},
        {"labels":{"__name__":"cpu","host":"b"}},
        {"labels":{"__name__":"cpu","host":"c"},"value":1,"unit":"percent"},
        {"labels":{"__name__":"cpu","host":"d"},"value":"high"},
        {"labels":{"__name__":"cpu","host":"e"},"value":1,"timestamp_ms":1.5},
        {"labels":{"host":"f"},"value":1},
        "cpu",
        {"labels":{"__name__":"cpu","host":"a"},"value":95}]})";

    ingest_outcome out = f.push(body);

    CHECK(out.http_status == 400);
    json response = response_of(out);
    CHECK(response["accepted"] == 1);
    CHECK(response["rejected"] == 7);
    REQUIRE(response["errors"].size() == 7);
    auto error_at = [&](std::size_t i) {
        CHECK(response["errors"][i]["index"] == i);
        return response["errors"][i]["error"].get<std::string>();
    };
    CHECK_THAT(error_at(0), Catch::Contains("label \"host\" has a number value 3"));
    CHECK_THAT(error_at(1), Catch::Contains("no \"value\""));
    CHECK_THAT(error_at(2), Catch::Contains("unknown field \"unit\""));
    CHECK_THAT(error_at(3), Catch::Contains("\"high\" is not a number"));
    CHECK_THAT(error_at(4), Catch::Contains("\"timestamp_ms\" must be an integer"));
    CHECK_THAT(error_at(5), Catch::Contains("has no __name__ label"));
    CHECK_THAT(error_at(6), Catch::Contains("sample must be a JSON object, got string"));
    CHECK(f.rejected(reject_reason::malformed) == 6);
    CHECK(f.rejected(reject_reason::missing_metric_name) == 1);
    CHECK(f.find_alert("HighCpu", "host", "a"));
}

TEST_CASE("json push: non-JSON body gives 400")
{
    push_fixture f;
    ingest_outcome out = f.push(std::string("cpu{host=\"a\"} 95"));

    CHECK(out.http_status == 400);
    json response = response_of(out);
    std::string error = response["error"];
    CHECK_THAT(error, Catch::StartsWith("body is not valid JSON: parse error at line 1, column 1"));
    CHECK_THAT(error, Catch::Contains(R"(expected {"samples":[)"));
}

TEST_CASE("json push: wrong body shape gives 400")
{
    push_fixture f;
    for (std::string body : {R"([{"metric":"cpu","value":1}])", R"({"metric":"cpu","value":1})",
                             R"({"samples":{"metric":"cpu"}})", R"({})"}) {
        ingest_outcome out = f.push(body);
        INFO(body);
        CHECK(out.http_status == 400);
        std::string error = response_of(out)["error"];
        CHECK_THAT(error, Catch::Contains(R"(expected {"samples":[)"));
    }
    CHECK_THAT(response_of(f.push(std::string("[1]")))["error"].get<std::string>(),
               Catch::Contains("must be a JSON object, got array"));
    CHECK_THAT(response_of(f.push(std::string(R"({"sample":[]})")))["error"].get<std::string>(),
               Catch::Contains("unknown top-level field \"sample\""));
    CHECK_THAT(response_of(f.push(std::string(R"({"samples":5})")))["error"].get<std::string>(),
               Catch::Contains("no \"samples\" array"));
    CHECK(f.eng.stats().series == 0);
}

TEST_CASE("json push: empty samples accepted")
{
    push_fixture f;
    ingest_outcome out = f.push(std::string(R"({"samples":[]})"));
    CHECK(out.http_status == 200);
    CHECK(response_of(out)["accepted"] == 0);
}

TEST_CASE("json push: too many samples rejected")
{
    push_fixture f;
    f.limits.max_samples_per_request = 2;
    json samples = json::array();
    for (int i = 0; i < 3; ++i) {
        samples.push_back({{"metric", "cpu"}, {"labels", {{"host", "h" + std::to_string(i)}}}, {"value", 95}});
    }

    ingest_outcome out = f.push(json{{"samples", samples}});

    CHECK(out.http_status == 400);
    json response = response_of(out);
    CHECK(response["rejected"] == 3);
    CHECK_THAT(response["error"].get<std::string>(), Catch::Contains("3 samples"));
    CHECK_THAT(response["error"].get<std::string>(), Catch::Contains("limits.max_samples_per_request (2)"));
    CHECK(f.eng.stats().series == 0);
}

TEST_CASE("json push: UTF-8 names accepted")
{
    push_fixture f;
    ingest_outcome out = f.push(json{{"samples",
                                      {{{"metric", "latency_seconds"},
                                        {"labels", {{"service.name", "checkout"}, {"host.name", "web-02"}, {"zone", "東京"}}},
                                        {"value", 2.5}}}}});

    CHECK(out.http_status == 200);
    auto alert = f.find_alert("CheckoutLatency", "host.name", "web-02");
    REQUIRE(alert);
    CHECK(alert->labels.get("zone") == "東京");
}

TEST_CASE("json push: blank label name rejected")
{
    push_fixture f;
    ingest_outcome out = f.push(json{{"samples",
                                      {{{"metric", "cpu"}, {"labels", {{"  ", "x"}}}, {"value", 1}},
                                       {{"metric", "cpu"}, {"labels", {{"\u00a0", "x"}}}, {"value", 1}},
                                       {{"metric", "cpu"}, {"labels", {{"host", "a"}}}, {"value", 95}}}}});

    CHECK(out.http_status == 400);
    json response = response_of(out);
    CHECK(response["accepted"] == 1);
    CHECK_THAT(response["errors"][0]["error"].get<std::string>(), Catch::Contains("label name \"  \""));
    CHECK(f.rejected(reject_reason::invalid_label_name) == 2);
}

TEST_CASE("json push: label limits apply")
{
    push_fixture f;
    f.limits.max_labels_per_series = 2;
    f.limits.max_label_value_bytes = 4;
    ingest_outcome out = f.push(json{{"samples",
                                      {{{"metric", "cpu"}, {"labels", {{"a", "1"}, {"b", "2"}}}, {"value", 1}},
                                       {{"metric", "cpu"}, {"labels", {{"host", "toolong"}}}, {"value", 1}}}}});

    CHECK(out.http_status == 400);
    json response = response_of(out);
    CHECK_THAT(response["errors"][0]["error"].get<std::string>(), Catch::Contains("limits.max_labels_per_series (2)"));
    CHECK_THAT(response["errors"][1]["error"].get<std::string>(), Catch::Contains("limits.max_label_value_bytes (4)"));
}

TEST_CASE("json push: invalid UTF-8 gives 400")
{
    push_fixture f;
    std::string body = "{\"samples\":[{\"metric\":\"cpu\",\"labels\":{\"zone\":\"\xc3\x28\"},\"value\":1}]}";

    ingest_outcome out = f.push(body);

    CHECK(out.http_status == 400);
    CHECK(is_valid_utf8(out.body));
    CHECK_THAT(response_of(out)["error"].get<std::string>(), Catch::Contains("not valid JSON"));
}

TEST_CASE("json push: error list is capped")
{
    push_fixture f;
    json samples = json::array();
    for (int i = 0; i < 12; ++i) {
        samples.push_back({{"labels", {{"host", "h"}}}, {"value", 1}});
    }

    json response = response_of(f.push(json{{"samples", samples}}));

    CHECK(response["rejected"] == 12);
    CHECK(response["errors"].size() == 10);
    CHECK(response["errors_omitted"] == 2);
}

TEST_CASE("json push: deep nesting rejected")
{
    push_fixture f;
    std::string body = R"({"samples":[{"labels":)" + std::string(100, '[') + std::string(100, ']') + "}]}";

    ingest_outcome out = f.push(body);

    CHECK(out.http_status == 400);
    CHECK_THAT(response_of(out)["error"].get<std::string>(), Catch::Contains("deeper than"));
}

TEST_CASE("json push: out-of-order sample rejected")
{
    push_fixture f;
    REQUIRE(f.push(json{{"samples", {{{"metric", "cpu"}, {"value", 1}, {"timestamp_ms", t0}}}}}).http_status == 200);

    ingest_outcome out = f.push(json{{"samples", {{{"metric", "cpu"}, {"value", 1}, {"timestamp_ms", t0 - 1}}}}});

    CHECK(out.http_status == 400);
    CHECK(f.rejected(reject_reason::out_of_order) == 1);
}

TEST_CASE("json push: timestamps far from the clock rejected")
{
    engine_limits engine_config;
    engine_config.max_future_skew = std::chrono::minutes(10);
    engine_config.max_sample_age = std::chrono::hours(24);
    push_fixture f(engine_config);

    ingest_outcome out = f.push(json{{"samples",
                                      {{{"metric", "cpu"}, {"value", 95}, {"timestamp_ms", t0 - 25 * 3'600'000LL}},
                                       {{"metric", "cpu"}, {"value", 95}, {"timestamp_ms", t0 + 11 * 60'000LL}},
                                       {{"metric", "cpu"}, {"value", 95}}}}});

    CHECK(out.http_status == 400);
    const json response = response_of(out);
    CHECK(response["accepted"] == 1);
    CHECK(response["rejected"] == 2);
    REQUIRE(response["errors"].size() == 2);
    CHECK(response["errors"][0]["index"] == 0);
    CHECK_THAT(response["errors"][0]["error"].get<std::string>(), Catch::Contains("limits.max_sample_age (1d)"));
    CHECK(response["errors"][1]["index"] == 1);
    CHECK_THAT(response["errors"][1]["error"].get<std::string>(),
               Catch::Contains("11m ahead of the server time") && Catch::Contains("limits.max_future_skew (10m)"));
    CHECK(f.rejected(reject_reason::too_old) == 1);
    CHECK(f.rejected(reject_reason::too_far_in_future) == 1);
}

TEST_CASE("json push: repeated keys rejected")
{
    push_fixture f;
    ingest_outcome top = f.push(std::string(
        R"({"samples":[{"metric":"cpu","labels":{"host":"a"},"value":95}],"samples":[]})"));
    CHECK(top.http_status == 400);
    CHECK_THAT(response_of(top)["error"].get<std::string>(), Catch::Contains(R"(key "samples" appears twice)"));

    ingest_outcome inner = f.push(std::string(R"({"samples":[{"metric":"cpu","value":1,"value":2}]})"));
    CHECK(inner.http_status == 400);
    CHECK_THAT(response_of(inner)["error"].get<std::string>(), Catch::Contains(R"(key "value" appears twice)"));
    CHECK(f.eng.stats().samples_evaluated == 0);
}

TEST_CASE("json push: numbers beyond double range give 400")
{
    push_fixture f;
    for (std::string number : {"1e400", "-1e400"}) {
        ingest_outcome out =
            f.push(R"({"samples":[{"metric":"cpu","labels":{"host":"a"},"value":)" + number + "}]}");
        CHECK(out.http_status == 400);
        CHECK_THAT(response_of(out)["error"].get<std::string>(), Catch::Contains(number));
    }
    ingest_outcome stamp = f.push(std::string(R"({"samples":[{"metric":"cpu","value":1,"timestamp_ms":1e400}]})"));
    CHECK(stamp.http_status == 400);
}

TEST_CASE("json push: long array of objects is checked in one pass")
{
    // 200,000 empty objects took seconds with a parser callback, whose cost grows with the
    // square of the array length; the first pass rejects the count without building them.
    push_fixture f;
    f.limits.max_samples_per_request = 1000;
    std::string body = R"({"samples":[)";
    for (int i = 0; i < 200000; ++i) {
        body += i == 0 ? "{}" : ",{}";
    }
    body += "]}";
    ingest_outcome out = f.push(body);
    CHECK(out.http_status == 400);
    CHECK(response_of(out)["rejected"] == 200000);
}

TEST_CASE("json push: timestamps beyond the supported range name it")
{
    push_fixture f;
    f.eng.set_limits(engine_limits{}); // max_future_skew and max_sample_age off
    for (std::string stamp : {"2000000000000000", "-2000000000000000"}) {
        ingest_outcome out =
            f.push(R"({"samples":[{"metric":"cpu","labels":{"host":"a"},"value":95,"timestamp_ms":)" + stamp + "}]}");
        CHECK(out.http_status == 400);
        const std::string error = response_of(out)["errors"][0]["error"];
        CHECK_THAT(error, Catch::Contains("outside the supported range") && Catch::Contains(stamp));
        CHECK_THAT(error, !Catch::Contains("limits.max_"));
    }
}
