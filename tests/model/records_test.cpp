#include "model/records.hpp"

#include <catch2/catch.hpp>

#include <string>

#include "model/schema.hpp"
#include "rules/json_depth.hpp"

using namespace tocsin::model;

namespace {

schema_set test_schemas()
{
    const std::string text = R"(
models:
  - name: churn
    task: binary_classification
    features:
      - {name: age, type: numeric}
      - {name: plan, type: categorical}
      - {name: vip, type: boolean}
    prediction: {type: score, classes: [stay, churn]}
  - name: fraud
    task: binary_classification
    features: []
    prediction: {type: class, classes: [legit, fraud]}
  - name: price
    task: regression
    features: [{name: rooms, type: numeric}]
)";
    tocsin::diagnostics diags;
    auto schemas = parse_model_schemas(text, "models.yml", "", diags);
    INFO(diags.to_string());
    REQUIRE(schemas);
    return std::move(*schemas);
}

const schema_set& schemas()
{
    static const schema_set loaded = test_schemas();
    return loaded;
}

std::string record(const std::string& features = R"({"age": 41, "plan": "pro", "vip": true})",
                   const std::string& extra = R"("prediction": 0.8)")
{
    return R"({"model": "churn", "version": "v1", "timestamp": 1714564800000, "id": "r1", "features": )" + features +
           ", " + extra + "}";
}

const record_error* error_at(const record_batch& batch, std::size_t index)
{
    for (const record_error& error : batch.errors) {
        if (error.index == index) {
            return &error;
        }
    }
    return nullptr;
}

// The message of the only error of a one-record body.
std::string single_error(const std::string& body)
{
    const record_batch batch = parse_records("[" + body + "]", "application/json", schemas());
    INFO(body);
    REQUIRE(batch.status == body_status::ok);
    REQUIRE(batch.items.empty());
    REQUIRE(batch.errors.size() == 1);
    CHECK(batch.errors[0].index == 0);
    return batch.errors[0].message;
}

bool printable_ascii(const std::string& text)
{
    for (const char c : text) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
            return false;
        }
    }
    return true;
}

} // namespace

TEST_CASE("records parse from a JSON array")
{
    const std::string body =
        "[" + record() + ",\n" +
        R"({"model": "churn", "version": "v2", "timestamp": "2024-05-01T14:00:00.250+02:00",
            "features": {"age": null, "plan": 3, "extra": "x"}, "prediction": 0})" +
        "]";
    const record_batch batch = parse_records(body, "application/json; charset=utf-8", schemas());
    REQUIRE(batch.status == body_status::ok);
    CHECK(batch.errors.empty());
    REQUIRE(batch.items.size() == 2);

    const parsed_record& first = batch.items[0];
    CHECK(first.index == 0);
    CHECK(first.model == "churn");
    CHECK(first.version == "v1");
    CHECK(first.time == 1'714'564'800'000);
    CHECK(first.id == "r1");
    CHECK(first.prediction_number == 0.8);
    REQUIRE(first.features.size() == 3);
    const auto views = first.views();
    CHECK(views[0].name == "age");
    CHECK(views[0].value.number_value() == 41);
    CHECK(views[1].value.text_value() == "pro");
    CHECK(views[2].value.boolean_value());

    const parsed_record& second = batch.items[1];
    CHECK(second.index == 1);
    CHECK(second.time == 1'714'564'800'250);
    CHECK_FALSE(second.id.has_value());
    // A value of the wrong type and an undeclared feature are kept for the quality figures.
    // Features come in name order.
    REQUIRE(second.features.size() == 3);
    CHECK(second.features[0].name == "age");
    CHECK(second.features[0].value.kind == feature_value::kind::null);
    CHECK(second.features[1].name == "extra");
    CHECK(second.features[1].value.text == "x");
    CHECK(second.features[2].name == "plan");
    CHECK(second.features[2].value.kind == feature_value::kind::number);

    const record_batch empty = parse_records(" [ ] ", "", schemas());
    CHECK(empty.status == body_status::ok);
    CHECK(empty.items.empty());
    CHECK(empty.errors.empty());
}

TEST_CASE("a batch keeps its good records and reports each bad one by index")
{
    const std::string body = "[" + record() + ",\n" +                                          // 0 good
                             R"({"model": "nope", "version": "v1", "timestamp": 1714564800000, "features": {},
                                 "prediction": 0.5})" + ",\n" +                                 // 1 unknown model
                             record(R"({"age": 1e400})") + ",\n" +                              // 2 overflow
                             R"({"model": "churn", "timestamp": 1714564800000, "features": {}, "prediction": 0.5})" +
                             ",\n" +                                                            // 3 no version
                             record(R"({"age": [1, 2]})") + ",\n" +                             // 4 array value
                             record(R"({})", R"("prediction": 1.5)") + ",\n" +                   // 5 bad score
                             R"({"model": "churn", "version": "v1", "timestamp": "yesterday", "features": {},
                                 "prediction": 0.1})" + ",\n" +                                 // 6 bad time
                             R"("just text")" + ",\n" +                                          // 7 not an object
                             record() + "]";                                                     // 8 good

    const record_batch batch = parse_records(body, "", schemas());
    REQUIRE(batch.status == body_status::ok);
    REQUIRE(batch.items.size() == 2);
    CHECK(batch.items[0].index == 0);
    CHECK(batch.items[1].index == 8);

    REQUIRE(batch.errors.size() == 7);
    for (const record_error& error : batch.errors) {
        CHECK(printable_ascii(error.message));
    }
    REQUIRE(error_at(batch, 1));
    CHECK(error_at(batch, 1)->message ==
          "unknown model \"nope\"; declare it in the model schema file or fix the name");
    REQUIRE(error_at(batch, 2));
    CHECK(error_at(batch, 2)->message.find("number \"1e400\" is outside the range of a double") != std::string::npos);
    REQUIRE(error_at(batch, 3));
    CHECK(error_at(batch, 3)->message == "field \"version\" is missing; add it as a string");
    REQUIRE(error_at(batch, 4));
    CHECK(error_at(batch, 4)->message ==
          "feature \"age\" is a JSON array; send a number, a string, a boolean or null");
    REQUIRE(error_at(batch, 5));
    CHECK(error_at(batch, 5)->message.find("prediction 1.5 is not a score") != std::string::npos);
    REQUIRE(error_at(batch, 6));
    CHECK(error_at(batch, 6)->message.find("timestamp \"yesterday\" is not RFC 3339") != std::string::npos);
    REQUIRE(error_at(batch, 7));
    CHECK(error_at(batch, 7)->message == "the record is a JSON string; send an object");
}

TEST_CASE("records parse from newline-delimited JSON with line numbers in errors")
{
    const std::string body = record() + "\n\n" + record("{}", R"("prediction": "maybe")") + "\r\n" +
                             "{\"model\": \"churn\", \"version\": \n" + record() + "\n";
    for (const std::string content_type : {"application/x-ndjson", ""}) {
        const record_batch batch = parse_records(body, content_type, schemas());
        REQUIRE(batch.status == body_status::ok);
        REQUIRE(batch.items.size() == 2);
        CHECK(batch.items[0].index == 0);
        CHECK(batch.items[1].index == 3);
        REQUIRE(batch.errors.size() == 2);
        CHECK(batch.errors[0].index == 1);
        CHECK(batch.errors[0].message ==
              "line 3: prediction \"maybe\" is not a score; send the probability of the positive class, a number "
              "from 0 to 1");
        CHECK(batch.errors[1].index == 2);
        CHECK(batch.errors[1].message.find("line 4: invalid JSON") == 0);
    }
    // Declared as an array, NDJSON is not one.
    const record_batch wrong = parse_records(body, "application/json", schemas());
    CHECK(wrong.status == body_status::malformed);
    CHECK(wrong.body_error.find("must be a JSON array") != std::string::npos);
}

TEST_CASE("record fields are checked one by one")
{
    CHECK(single_error(record("{}", R"("prediction": 0.1, "score": 1)")) ==
          "unknown field \"score\"; expected model, version, timestamp, id, features, prediction");
    CHECK(single_error(R"({"model": 5, "version": "v", "timestamp": 1714564800000, "features": {}, "prediction": 0})") ==
          "field \"model\" is a JSON number; send a string");
    CHECK(single_error(R"({"model": "churn", "version": "", "timestamp": 1714564800000, "features": {},
                           "prediction": 0})") == "field \"version\" is empty; send a non-empty string");
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": 1714564800, "features": {},
                           "prediction": 0})")
              .find("timestamp 1714564800 is before 1973 in Unix milliseconds; if it is in seconds, multiply it by "
                    "1000") == 0);
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": 1714564800000.5, "features": {},
                           "prediction": 0})")
              .find("has a fraction") != std::string::npos);
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": 1e30, "features": {}, "prediction": 0})")
              .find("is out of range") != std::string::npos);
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": true, "features": {}, "prediction": 0})") ==
          "field \"timestamp\" is a JSON boolean; send RFC 3339 text or Unix milliseconds");
    CHECK(single_error(R"({"model": "churn", "version": "v", "features": {}, "prediction": 0})")
              .find("field \"timestamp\" is missing") == 0);
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": "2024-02-30T00:00:00Z", "features": {},
                           "prediction": 0})")
              .find("no such day") != std::string::npos);
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": "2024-05-01 12:00:00", "features": {},
                           "prediction": 0})")
              .find("is not RFC 3339") != std::string::npos);
    CHECK(single_error(record("5")) == "field \"features\" is a JSON number; send an object of feature names and values");
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": 1714564800000, "prediction": 0})") ==
          "field \"features\" is missing; add an object of feature names and values");
    CHECK(single_error(record(R"({"": 1})")).find("feature name \"\" has 0 bytes") == 0);
    CHECK(single_error(record("{}", R"("id": 7)")).find("key \"id\" appears twice") == 0);
    CHECK(single_error(R"({"model": "churn", "version": "v", "timestamp": 1714564800000, "features": {}})") ==
          "field \"prediction\" is missing; add the model's score");
    CHECK(single_error(record("{}", R"("prediction": "0.5")")).find("prediction \"0.5\" is not a score") == 0);
}

TEST_CASE("predictions follow the schema's prediction type")
{
    const std::string fraud = R"({"model": "fraud", "version": "v", "timestamp": 1714564800000, "features": {},
                                  "prediction": )";
    const record_batch batch = parse_records("[" + fraud + "\"fraud\"}," + fraud + "\"legit\"}," + fraud + "true}," +
                                                 fraud + "0}," + fraud + "2}]",
                                             "", schemas());
    REQUIRE(batch.items.size() == 4);
    CHECK(batch.items[0].prediction_number == 1);
    CHECK(batch.items[0].prediction.text == "fraud");
    CHECK(batch.items[1].prediction_number == 0);
    CHECK(batch.items[2].prediction_number == 1);
    CHECK(batch.items[2].prediction.text == "1");
    CHECK(batch.items[3].prediction_number == 0);
    REQUIRE(batch.errors.size() == 1);
    CHECK(batch.errors[0].index == 4);
    CHECK(batch.errors[0].message ==
          "prediction 2 is not a class; send 0 or 1, false or true, \"legit\" or \"fraud\"");

    const std::string price = R"({"model": "price", "version": "v", "timestamp": 1714564800000, "features": {},
                                  "prediction": )";
    const record_batch numbers = parse_records("[" + price + "-1e300}," + price + "\"12\"}]", "", schemas());
    REQUIRE(numbers.items.size() == 1);
    CHECK(numbers.items[0].prediction_number == -1e300);
    REQUIRE(numbers.errors.size() == 1);
    CHECK(numbers.errors[0].message == "prediction is a JSON string; send a number");
}

TEST_CASE("hostile record bodies are bounded")
{
    record_limits limits;
    limits.max_body_bytes = 4096;
    limits.max_records = 3;

    SECTION("body size")
    {
        const record_batch batch = parse_records(std::string(4097, ' '), "", schemas(), limits);
        CHECK(batch.status == body_status::too_large);
        CHECK(batch.body_error == "the body has 4097 bytes, more than the limit of 4096; send smaller batches");
    }
    SECTION("records per batch, as an array and as NDJSON")
    {
        const std::string four = "[" + record() + "," + record() + "," + record() + "," + record() + "]";
        const record_batch array = parse_records(four, "", schemas(), limits);
        CHECK(array.status == body_status::malformed);
        CHECK(array.body_error == "the body holds more than 3 records; send at most 3 per request");
        const std::string lines = record() + "\n" + record() + "\n" + record() + "\n" + record() + "\n";
        CHECK(parse_records(lines, "", schemas(), limits).status == body_status::malformed);
        const std::string three = record() + "\n" + record() + "\n" + record() + "\n";
        CHECK(parse_records(three, "", schemas(), limits).items.size() == 3);
    }
    SECTION("deep nesting")
    {
        const std::string deep = "[" + record("{\"age\": " + std::string(50, '[') + std::string(50, ']') + "}") + "]";
        const record_batch array = parse_records(deep, "", schemas());
        CHECK(array.status == body_status::malformed);
        CHECK(array.body_error == "the body nests arrays and objects more than 8 deep; send flat records");
        const record_batch lines = parse_records(deep.substr(1, deep.size() - 2), "application/x-ndjson", schemas());
        CHECK(lines.status == body_status::malformed);
        // A million brackets stop at the limit without recursion.
        const std::string bomb(1'000'000, '[');
        CHECK(parse_records(bomb, "", schemas()).status == body_status::malformed);
        CHECK(parse_records(std::string(1'000'000, '{'), "", schemas()).status == body_status::malformed);
        CHECK(tocsin::json_nesting_depth(bomb) == 1'000'000);
    }
    SECTION("unbalanced and trailing text")
    {
        CHECK(parse_records("[" + record(), "", schemas()).body_error ==
              "the body ends before the array is closed; close every bracket and brace");
        CHECK(parse_records("[\"abc", "", schemas()).body_error ==
              "the body ends inside a string; close the string and the array");
        CHECK(parse_records("[{]", "", schemas()).body_error.find("unbalanced ']'") == 0);
        CHECK(parse_records("[] []", "", schemas()).body_error.find("unexpected text after the array") == 0);
        const record_batch extra_comma = parse_records("[" + record() + ",]", "", schemas());
        REQUIRE(extra_comma.errors.size() == 1);
        CHECK(extra_comma.errors[0].index == 1);
        CHECK(extra_comma.errors[0].message == "empty element; remove the extra comma");
    }
    SECTION("huge numbers")
    {
        const record_batch batch = parse_records(
            "[" + record(R"({"age": 1.7e308})") + "," + record(R"({"age": 123456789012345678901234567890})") + "," +
                record(R"({"age": -1e400})") + "," + record(R"({"age": 1e-400})") + "]",
            "", schemas());
        REQUIRE(batch.items.size() == 3);
        CHECK(batch.items[0].features[0].value.number == 1.7e308);
        CHECK(batch.items[1].features[0].value.number == Approx(1.2345678901234568e29));
        // An underflow reads as 0, which is finite.
        CHECK(batch.items[2].features[0].value.number == 0.0);
        REQUIRE(batch.errors.size() == 1);
        CHECK(batch.errors[0].index == 2);
        CHECK(batch.errors[0].message.find("\"-1e400\" is outside the range of a double") != std::string::npos);
    }
    SECTION("invalid UTF-8")
    {
        const std::string bad = record("{\"plan\": \"caf\xC3\x28\"}");
        const std::string overlong = record("{\"plan\": \"\xC0\xAF\"}");
        const std::string name = record("{\"\xFF\xFE\": 1}");
        const record_batch batch =
            parse_records("[" + bad + "," + overlong + "," + name + "," + record("{\"plan\": \"caf\xC3\xA9\"}") + "]",
                          "", schemas());
        REQUIRE(batch.items.size() == 1);
        CHECK(batch.items[0].index == 3);
        CHECK(batch.items[0].features[0].value.text == "caf\xC3\xA9");
        REQUIRE(batch.errors.size() == 3);
        for (const record_error& error : batch.errors) {
            INFO(error.message);
            CHECK(error.message.find("invalid JSON at byte") == 0);
            CHECK(error.message.find("ill-formed UTF-8") != std::string::npos);
            CHECK(printable_ascii(error.message));
        }
    }
    SECTION("10,000 features")
    {
        std::string features = "{";
        for (int i = 0; i < 10'000; ++i) {
            features += (i == 0 ? "\"f" : ", \"f") + std::to_string(i) + "\": " + std::to_string(i);
        }
        features += "}";
        CHECK(single_error(record(features)) ==
              "the record has 10000 features, more than the limit of 1000; send at most 1000");
    }
    SECTION("over-long strings")
    {
        CHECK(single_error(record("{\"plan\": \"" + std::string(2000, 'x') + "\"}")) ==
              "feature \"plan\" has a string of 2000 bytes, more than the limit of 1024; shorten it");
        const std::string long_id = std::string(300, 'i');
        CHECK(single_error(R"({"model": "churn", "version": "v", "id": ")" + long_id +
                           R"(", "timestamp": 1714564800000, "features": {}, "prediction": 0})")
                  .find("field \"id\" has 300 bytes (\"iiii") == 0);
        CHECK(single_error(record("{\"" + std::string(300, 'n') + "\": 1}")).find("has 300 bytes; send names of 1 to 256") !=
              std::string::npos);
        CHECK(single_error(R"({"model": ")" + std::string(5000, 'm') +
                           R"(", "version": "v", "timestamp": 1714564800000, "features": {}, "prediction": 0})")
                  .find("... (5000 bytes)") != std::string::npos);
    }
    SECTION("duplicate keys")
    {
        CHECK(single_error(record(R"({"age": 1, "age": 2})")) ==
              "key \"age\" appears twice in one object; send each key once");
        CHECK(single_error(R"({"model": "churn", "model": "fraud", "version": "v", "timestamp": 1714564800000,
                               "features": {}, "prediction": 0})") ==
              "key \"model\" appears twice in one object; send each key once");
    }
    SECTION("control characters and escapes in values are shown escaped")
    {
        const std::string message = single_error(R"({"model": "a\u0000b\n\"", "version": "v",
                                                     "timestamp": 1714564800000, "features": {}, "prediction": 0})");
        CHECK(message == "unknown model \"a\\x00b\\x0a\\x22\"; declare it in the model schema file or fix the name");
    }
}

TEST_CASE("outcomes parse and map classes to 0 and 1")
{
    const std::string body = R"([
        {"model": "churn", "version": "v1", "id": "a", "outcome": 1, "timestamp": 1714564800000},
        {"model": "churn", "id": "b", "outcome": "stay", "timestamp": "2024-05-01T12:00:00Z"},
        {"model": "churn", "id": "c", "outcome": true, "timestamp": 1714564800000},
        {"model": "churn", "id": "d", "outcome": 0.5, "timestamp": 1714564800000},
        {"model": "churn", "outcome": 1, "timestamp": 1714564800000},
        {"model": "price", "id": "e", "outcome": 251000.5, "timestamp": 1714564800000},
        {"model": "price", "id": "f", "outcome": "high", "timestamp": 1714564800000},
        {"model": "churn", "id": "g", "outcome": 1, "timestamp": 1714564800000, "prediction": 1},
        {"model": "churn", "id": "h", "timestamp": 1714564800000}
    ])";
    const outcome_batch batch = parse_outcomes(body, "", schemas());
    REQUIRE(batch.status == body_status::ok);
    REQUIRE(batch.items.size() == 4);
    CHECK(batch.items[0].version == "v1");
    CHECK(batch.items[0].id == "a");
    CHECK(batch.items[0].outcome == 1);
    CHECK_FALSE(batch.items[1].version.has_value());
    CHECK(batch.items[1].outcome == 0);
    CHECK(batch.items[1].time == 1'714'564'800'000);
    CHECK(batch.items[2].outcome == 1);
    CHECK(batch.items[3].index == 5);
    CHECK(batch.items[3].outcome == 251000.5);
    REQUIRE(batch.errors.size() == 5);
    CHECK(batch.errors[0].index == 3);
    CHECK(batch.errors[0].message == "outcome 0.5 is not a class; send 0 or 1, false or true, \"stay\" or \"churn\"");
    CHECK(batch.errors[1].message == "field \"id\" is missing; add it as a string");
    CHECK(batch.errors[2].message == "outcome is a JSON string; send the observed number");
    CHECK(batch.errors[3].message == "unknown field \"prediction\"; expected model, version, timestamp, id, outcome");
    CHECK(batch.errors[4].message == "field \"outcome\" is missing; add the observed value");
}

TEST_CASE("RFC 3339 timestamps")
{
    std::string error;
    CHECK(parse_rfc3339("2024-05-01T12:00:00Z", error) == 1'714'564'800'000);
    CHECK(parse_rfc3339("2024-05-01t12:00:00z", error) == 1'714'564'800'000);
    CHECK(parse_rfc3339("2024-05-01T14:00:00.123456789+02:00", error) == 1'714'564'800'123);
    CHECK(parse_rfc3339("2024-05-01T07:00:00-05:00", error) == 1'714'564'800'000);
    CHECK_FALSE(parse_rfc3339("2024-05-01T12:00:00", error));
    CHECK(error.find("is not RFC 3339") != std::string::npos);
    CHECK_FALSE(parse_rfc3339("2024-05-01T12:00:00+0200", error));
    CHECK_FALSE(parse_rfc3339("2024-05-01T25:00:00Z", error));
    CHECK(error.find("invalid time of day") != std::string::npos);
    CHECK_FALSE(parse_rfc3339("1960-01-01T00:00:00Z", error));
    CHECK(error.find("before 1973") != std::string::npos);
    CHECK_FALSE(parse_rfc3339("", error));
    CHECK_FALSE(parse_rfc3339("2024-05-01T12:00:00.Z", error));
}
