#include "model/schema.hpp"

#include <catch2/catch.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "model/model_test_data.hpp"
#include "support/test_support.hpp"

using namespace tocsin::model;

namespace {

// Parses `text` and returns the diagnostics as one string. Sets `ok` to whether it loaded.
std::string load_errors(const std::string& text, bool& ok, const std::string& base = "")
{
    tocsin::diagnostics diags;
    const auto schemas = parse_model_schemas(text, "models.yml", base, diags);
    ok = schemas.has_value();
    CHECK(ok == diags.empty());
    return diags.to_string();
}

// A model with one feature, with `model_extra` lines in the model and `feature_extra` lines in
// the feature, each indented already.
std::string model_text(const std::string& model_extra, const std::string& feature_extra = "",
                       const std::string& type = "numeric")
{
    return "models:\n"
           "  - name: churn\n"
           "    task: binary_classification\n" +
           model_extra +
           "    features:\n"
           "      - name: age\n"
           "        type: " +
           type + "\n" + feature_extra;
}

void expect_rejected(const std::string& text, const std::string& needle, const std::string& base = "")
{
    INFO(text);
    bool ok = true;
    const std::string errors = load_errors(text, ok, base);
    INFO(errors);
    CHECK_FALSE(ok);
    CHECK(errors.find(needle) != std::string::npos);
    // Every message has a position: models.yml:LINE:COLUMN.
    CHECK(errors.find("models.yml:") == 0);
    CHECK(errors.find("models.yml:0:0") == std::string::npos);
}

} // namespace

TEST_CASE("model schema loads every field and applies defaults")
{
    tocsin::test::temp_dir dir;
    dir.write("ref.jsonl", "{\"features\": {\"age\": 30, \"plan\": \"basic\", \"vip\": true}, \"prediction\": 0.2}\n"
                           "\n"
                           "{\"features\": {\"age\": 50, \"plan\": \"pro\", \"vip\": false}, \"prediction\": 0.7}\n"
                           "{\"features\": {\"age\": \"n/a\", \"plan\": null}, \"prediction\": 0.4}\n");
    const reference stored = build_numeric_reference(tocsin::model::testing::reference_values);
    dir.write("income.json", to_json(stored).dump());

    const std::string text = R"(
models:
  - name: churn
    task: binary_classification
    threshold: 0.3
    window: {duration: 2h, buckets: 120, ks_sample_size: 500}
    performance_window: {max_pairs: 5000, max_age: 1d}
    outcome_horizon: 6h
    max_pending: 1000
    max_versions: 3
    features:
      - name: age
        type: numeric
        range: [0, 120]
        reference: {file: ref.jsonl}
      - name: plan
        type: categorical
        categories: [basic, pro, team]
        reference: {file: ref.jsonl}
      - name: vip
        type: boolean
        reference: {period: {first: 7d}}
      - name: income
        type: numeric
        range: [~, 1e6]
        reference: {stored: income.json}
    prediction:
      type: score
      classes: [stay, churn]
      reference: {file: ref.jsonl}
  - name: price
    task: regression
    features: []
)";
    tocsin::diagnostics diags;
    const auto schemas = parse_model_schemas(text, "models.yml", dir.path().string(), diags);
    INFO(diags.to_string());
    REQUIRE(schemas);
    REQUIRE(schemas->models.size() == 2);

    const model_schema& churn = *schemas->find("churn");
    CHECK(churn.task == prediction_task::binary_classification);
    CHECK(churn.threshold == 0.3);
    CHECK(churn.performance.threshold == 0.3);
    CHECK(churn.window.duration_ms == 7'200'000);
    CHECK(churn.window.bucket_count == 120);
    CHECK(churn.window.ks_sample_size == 500);
    CHECK(churn.performance.max_pairs == 5000);
    CHECK(churn.performance.max_age_ms == 86'400'000);
    CHECK(churn.outcome_horizon_ms == 21'600'000);
    CHECK(churn.max_pending == 1000);
    CHECK(churn.max_versions == 3);
    CHECK(churn.has_period_reference());
    REQUIRE(churn.features.size() == 4);

    const feature_schema& age = churn.features[0];
    CHECK(age.spec.min == 0.0);
    CHECK(age.spec.max == 120.0);
    REQUIRE(age.reference.loaded);
    // "n/a" is not a numeric value, so two values made the reference.
    CHECK(age.reference.loaded->count == 2);
    CHECK(age.reference.loaded->type == feature_type::numeric);

    const feature_schema& plan = churn.features[1];
    CHECK(plan.categories == std::vector<std::string>{"basic", "pro", "team"});
    REQUIRE(plan.reference.loaded);
    CHECK(plan.reference.loaded->categories.size() == 2);

    CHECK(churn.features[2].reference.type == reference_source::kind::period);
    CHECK(churn.features[2].reference.period_ms == 7 * 86'400'000LL);
    CHECK_FALSE(churn.features[2].reference.loaded);

    const feature_schema& income = churn.features[3];
    CHECK_FALSE(income.spec.min.has_value());
    CHECK(income.spec.max == 1e6);
    REQUIRE(income.reference.loaded);
    CHECK(*income.reference.loaded == stored);

    CHECK(churn.prediction.type == prediction_type::score);
    CHECK(churn.prediction.classes == std::vector<std::string>{"stay", "churn"});
    REQUIRE(churn.prediction.reference.loaded);
    CHECK(churn.prediction.reference.loaded->count == 3);

    const model_schema& price = *schemas->find("price");
    CHECK(price.task == prediction_task::regression);
    CHECK(price.prediction.type == prediction_type::number);
    CHECK(price.threshold == 0.5);
    CHECK(price.window.duration_ms == 3'600'000);
    CHECK(price.window.bucket_count == 60);
    CHECK(price.performance.max_pairs == 10'000);
    CHECK(price.outcome_horizon_ms == 86'400'000);
    CHECK(price.max_pending == 100'000);
    CHECK(price.features.empty());
    CHECK_FALSE(price.has_period_reference());
    CHECK(schemas->find("nope") == nullptr);
}

TEST_CASE("model schema file loads from disk with paths relative to its folder")
{
    tocsin::test::temp_dir dir;
    dir.write("ref.jsonl", "{\"features\": {\"age\": 30}}\n{\"features\": {\"age\": 31}}\n");
    const std::string path = dir.write("models.yml", model_text("", "        reference: {file: ref.jsonl}\n"));
    tocsin::diagnostics diags;
    const auto schemas = load_model_schemas(path, diags);
    INFO(diags.to_string());
    REQUIRE(schemas);
    CHECK(schemas->models[0].features[0].reference.loaded->count == 2);

    tocsin::diagnostics missing;
    CHECK_FALSE(load_model_schemas(dir.path().string() + "/absent.yml", missing));
    CHECK(missing.to_string().find("cannot read the model schema file") != std::string::npos);

    bool ok = false;
    load_errors("", ok);
    CHECK(ok);
}

TEST_CASE("model schema rejects every malformed document with its position")
{
    expect_rejected("models: [\n", "invalid YAML");
    expect_rejected("- a\n", "a model schema file must be a mapping");
    expect_rejected("other: 1\n", "missing field \"models\"");
    expect_rejected("models: {}\nextra: 1\n", "unknown field \"extra\"");
    expect_rejected("models: {a: 1}\n", "models must be a sequence");
    expect_rejected("models:\n  - 3\n", "model must be a mapping");
}

TEST_CASE("model schema rejects every malformed model field")
{
    expect_rejected("models:\n  - task: regression\n    features: []\n", "model needs a name");
    expect_rejected("models:\n  - name: \"\"\n    task: regression\n    features: []\n", "use 1 to 128 bytes");
    expect_rejected("models:\n  - name: " + std::string(129, 'm') + "\n    task: regression\n    features: []\n",
                    "has 129 bytes");
    expect_rejected("models:\n  - name: \"a\\tb\"\n    task: regression\n    features: []\n", "control character");
    expect_rejected("models:\n  - {name: a, task: regression, features: []}\n  - {name: a, task: regression, "
                    "features: []}\n",
                    "model \"a\" is declared twice");
    expect_rejected("models:\n  - name: a\n    features: []\n", "needs a task");
    expect_rejected("models:\n  - name: a\n    task: ranking\n    features: []\n",
                    "task is \"ranking\"; expected regression or binary_classification");
    expect_rejected("models:\n  - name: a\n    task: regression\n", "needs features");
    expect_rejected("models:\n  - name: a\n    task: regression\n    features: []\n    colour: red\n",
                    "unknown field \"colour\" in model");
    expect_rejected("models:\n  - name: a\n    task: regression\n    task: regression\n    features: []\n",
                    "field \"task\" appears twice");

    expect_rejected(model_text("    threshold: 1.5\n"), "threshold is 1.5; expected a score from 0 to 1");
    expect_rejected(model_text("    threshold: .nan\n"), "threshold must be a finite number");
    expect_rejected(model_text("    threshold: high\n"), "threshold must be a finite number");
    expect_rejected("models:\n  - name: a\n    task: regression\n    threshold: 0.5\n    features: []\n",
                    "threshold applies to binary_classification");
    expect_rejected(model_text("    window: 1h\n"), "window must be a mapping");
    expect_rejected(model_text("    window: {duration: 0s}\n"), "window.duration is 0s; expected 1ms to 400d");
    expect_rejected(model_text("    window: {duration: 500d}\n"), "expected 1ms to 400d");
    expect_rejected(model_text("    window: {duration: soon}\n"), "window.duration");
    expect_rejected(model_text("    window: {buckets: 0}\n"), "window.buckets is 0; expected 1 to 10000");
    expect_rejected(model_text("    window: {buckets: 10001}\n"), "window.buckets is 10001");
    expect_rejected(model_text("    window: {duration: 10ms, buckets: 60}\n"), "give each bucket at least 1ms");
    expect_rejected(model_text("    window: {ks_sample_size: 0}\n"), "window.ks_sample_size is 0");
    expect_rejected(model_text("    window: {width: 1h}\n"), "unknown field \"width\" in window");
    expect_rejected(model_text("    performance_window: {max_pairs: 0}\n"), "performance_window.max_pairs is 0");
    expect_rejected(model_text("    performance_window: {max_age: -1h}\n"), "performance_window.max_age");
    expect_rejected(model_text("    outcome_horizon: 0s\n"), "outcome_horizon is 0s");
    expect_rejected(model_text("    max_pending: 0\n"), "max_pending is 0; expected 1 to 10000000");
    expect_rejected(model_text("    max_pending: 99999999999\n"), "max_pending is 99999999999");
    expect_rejected(model_text("    max_pending: many\n"), "max_pending must be a non-negative integer");
    expect_rejected(model_text("    max_versions: 0\n"), "max_versions is 0");
}

TEST_CASE("model schema rejects too many features")
{
    std::string text = "models:\n  - name: wide\n    task: regression\n    features:\n";
    for (int i = 0; i <= 1000; ++i) {
        text += "      - {name: f" + std::to_string(i) + ", type: numeric}\n";
    }
    expect_rejected(text, "declares 1001 features, more than the limit of 1000");
}

TEST_CASE("model schema rejects every malformed feature")
{
    expect_rejected("models:\n  - name: a\n    task: regression\n    features: [{type: numeric}]\n",
                    "feature needs a name");
    expect_rejected("models:\n  - name: a\n    task: regression\n    features: [{name: x}]\n",
                    "feature \"x\" needs a type");
    expect_rejected("models:\n  - name: a\n    task: regression\n    features: [{name: x, type: text}]\n",
                    "has type \"text\"; expected numeric, categorical or boolean");
    expect_rejected("models:\n  - name: a\n    task: regression\n    features:\n      - {name: x, type: numeric}\n"
                    "      - {name: x, type: boolean}\n",
                    "feature \"x\" is declared twice");
    expect_rejected(model_text("", "        unit: years\n"), "unknown field \"unit\" in feature");
    expect_rejected(model_text("", "        range: [0, 1]\n", "categorical"), "range applies to numeric features");
    expect_rejected(model_text("", "        range: [0]\n"), "range must be [min, max]");
    expect_rejected(model_text("", "        range: 5\n"), "range must be [min, max]");
    expect_rejected(model_text("", "        range: [10, 0]\n"), "range has min 10 above max 0; swap them");
    expect_rejected(model_text("", "        range: [zero, 1]\n"), "range min must be a finite number");
    expect_rejected(model_text("", "        categories: [a]\n"), "categories apply to categorical features");
    expect_rejected(model_text("", "        categories: [a, a]\n", "categorical"), "category \"a\" is listed twice");
    expect_rejected(model_text("", "        categories: []\n", "categorical"), "declares 0 categories");
    expect_rejected(model_text("", "        categories: a\n", "categorical"), "categories must be a sequence");
    expect_rejected(model_text("", "        categories: [\"\"]\n", "categorical"), "use 1 to 256 bytes");
    expect_rejected(model_text("", "        categories: [[a]]\n", "categorical"), "category must be a string");
}

TEST_CASE("model schema rejects every malformed reference")
{
    tocsin::test::temp_dir dir;
    const std::string base = dir.path().string();
    dir.write("empty.jsonl", "\n{\"features\": {\"other\": 1}}\n");
    dir.write("broken.jsonl", "{\"features\": {\"age\": 1}}\n{\"features\": {\"age\": \n");
    dir.write("array.jsonl", "[1, 2]\n");
    dir.write("deep.jsonl", std::string(100, '[') + std::string(100, ']') + "\n");
    dir.write("bad.json", "{\"format_version\": 1, \"type\": \"numeric\"}");
    dir.write("cats.json", to_json(build_categorical_reference(std::vector<std::string>{"a", "b", "z"})).dump());
    dir.write("plans.jsonl", "{\"features\": {\"age\": \"a\"}}\n{\"features\": {\"age\": \"q\"}}\n");

    expect_rejected(model_text("", "        reference: stored.json\n"), "reference must be a mapping");
    expect_rejected(model_text("", "        reference: {}\n"), "exactly one of file, stored or period, got 0");
    expect_rejected(model_text("", "        reference: {file: a, stored: b}\n"), "got 2");
    expect_rejected(model_text("", "        reference: {url: x}\n"), "unknown field \"url\"");
    expect_rejected(model_text("", "        reference: {period: 7d}\n"), "period must be a mapping");
    expect_rejected(model_text("", "        reference: {period: {}}\n"), "needs first, such as {first: 7d}");
    expect_rejected(model_text("", "        reference: {period: {first: 0s}}\n"), "period.first is 0s");
    expect_rejected(model_text("", "        reference: {period: {last: 7d}}\n"), "unknown field \"last\"");
    expect_rejected(model_text("", "        reference: {file: \"\"}\n"), "has an empty path");
    expect_rejected(model_text("", "        reference: {file: [a]}\n"), "reference.file must be a string");
    expect_rejected(model_text("", "        reference: {file: absent.jsonl}\n"), "cannot read the reference records",
                    base);
    expect_rejected(model_text("", "        reference: {file: empty.jsonl}\n"),
                    "hold no numeric value of feature \"age\"", base);
    expect_rejected(model_text("", "        reference: {file: broken.jsonl}\n"), "broken.jsonl:2: invalid JSON",
                    base);
    expect_rejected(model_text("", "        reference: {file: array.jsonl}\n"), "array.jsonl:1: expected a record",
                    base);
    expect_rejected(model_text("", "        reference: {file: deep.jsonl}\n"), "nests more than 8 deep", base);
    expect_rejected(model_text("", "        reference: {stored: absent.json}\n"),
                    "cannot read the stored reference", base);
    expect_rejected(model_text("", "        reference: {stored: bad.json}\n"), "the stored reference", base);
    expect_rejected(model_text("", "        reference: {stored: cats.json}\n"),
                    "is categorical but the values are numeric", base);
    expect_rejected(model_text("", "        categories: [a, b]\n        reference: {stored: cats.json}\n",
                               "categorical"),
                    "has category \"z\", which is not declared", base);
    expect_rejected(model_text("", "        categories: [a, b]\n        reference: {file: plans.jsonl}\n",
                               "categorical"),
                    "the category \"q\", which is not declared", base);
}

TEST_CASE("model schema rejects every malformed prediction")
{
    const std::string tail = "    prediction:\n";
    expect_rejected(model_text("") + "    prediction: score\n", "prediction must be a mapping");
    expect_rejected(model_text("") + tail + "      type: number\n",
                    "prediction.type is number but the task is binary_classification");
    expect_rejected(model_text("") + tail + "      type: label\n", "prediction.type is \"label\"");
    expect_rejected("models:\n  - name: a\n    task: regression\n    features: []\n    prediction: {type: score}\n",
                    "prediction.type is score but the task is regression");
    expect_rejected("models:\n  - name: a\n    task: regression\n    features: []\n    prediction: {classes: [a, b]}\n",
                    "prediction.classes applies to binary_classification");
    expect_rejected(model_text("") + tail + "      classes: [a]\n", "prediction.classes must be [negative, positive]");
    expect_rejected(model_text("") + tail + "      classes: [a, a]\n", "names one class twice");
    expect_rejected(model_text("") + tail + "      colour: red\n", "unknown field \"colour\" in prediction");
    expect_rejected(model_text("") + tail + "      reference: {}\n", "prediction.reference must have exactly one");
}

TEST_CASE("model schema reports all errors of a file in one pass")
{
    bool ok = true;
    const std::string errors = load_errors(model_text("    threshold: 2\n    max_pending: 0\n",
                                                      "        range: [5, 1]\n"),
                                           ok);
    CHECK_FALSE(ok);
    CHECK(errors.find("threshold is 2") != std::string::npos);
    CHECK(errors.find("max_pending is 0") != std::string::npos);
    CHECK(errors.find("swap them") != std::string::npos);
    // Lines point at the values: threshold on line 4.
    CHECK(errors.find("models.yml:4:16: threshold is 2") != std::string::npos);
}
