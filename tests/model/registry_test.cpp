#include "model/registry.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "model/records.hpp"
#include "model/schema.hpp"

using namespace tocsin::model;
using tocsin::time_ms;

namespace {

constexpr time_ms t0 = 1'714'564'800'000; // 2024-05-01T12:00:00Z
constexpr time_ms minute = 60'000;
constexpr time_ms hour = 60 * minute;

std::shared_ptr<const schema_set> load(const std::string& text)
{
    tocsin::diagnostics diags;
    auto schemas = parse_model_schemas(text, "models.yml", "", diags);
    INFO(diags.to_string());
    REQUIRE(schemas);
    return std::make_shared<const schema_set>(std::move(*schemas));
}

const char* const join_schema = R"(
models:
  - name: churn
    task: binary_classification
    outcome_horizon: 1h
    max_pending: 3
    max_versions: 2
    features:
      - {name: age, type: numeric, range: [0, 120]}
      - {name: plan, type: categorical, categories: [basic, pro]}
    prediction: {type: score}
  - name: price
    task: regression
    features: []
)";

parsed_record make_record(std::string version, std::optional<std::string> id, double score, time_ms time,
                          std::size_t index = 0)
{
    parsed_record r;
    r.index = index;
    r.model = "churn";
    r.version = std::move(version);
    r.id = std::move(id);
    r.time = time;
    r.features.push_back({"age", {feature_value::kind::number, 40, "", false}});
    r.features.push_back({"plan", {feature_value::kind::text, 0, "pro", false}});
    r.prediction = {feature_value::kind::number, score, "", false};
    r.prediction_number = score;
    return r;
}

parsed_outcome make_outcome(std::string id, double outcome, time_ms time, std::optional<std::string> version = {})
{
    parsed_outcome o;
    o.model = "churn";
    o.id = std::move(id);
    o.outcome = outcome;
    o.time = time;
    o.version = std::move(version);
    return o;
}

std::optional<double> value(const std::vector<snapshot_row>& rows, const std::string& version,
                            const std::string& feature, const std::string& metric, const std::string& model = "churn")
{
    for (const snapshot_row& row : rows) {
        if (row.model == model && row.version == version && row.feature == feature && row.metric == metric) {
            return row.value;
        }
    }
    return std::nullopt;
}

} // namespace

TEST_CASE("outcomes join to pending predictions within the horizon")
{
    model_registry registry(load(join_schema));
    const std::vector<parsed_record> records = {make_record("v1", "a", 0.9, t0), make_record("v1", "b", 0.2, t0),
                                                make_record("v1", std::nullopt, 0.4, t0)};
    const ingest_result added = registry.add_records(records, t0);
    CHECK(added.accepted == 3);
    CHECK(added.errors.empty());
    CHECK(registry.counters("churn")->pending == 2);

    const std::vector<parsed_outcome> outcomes = {make_outcome("a", 1, t0 + minute), make_outcome("a", 1, t0 + minute),
                                                  make_outcome("zz", 0, t0 + minute),
                                                  make_outcome("b", 1, t0 + minute)};
    const ingest_result joined = registry.add_outcomes(outcomes, t0 + minute);
    CHECK(joined.accepted == 4);
    CHECK(joined.joined == 2);
    CHECK(joined.duplicates == 1);
    CHECK(joined.unmatched == 1);
    const join_counters& c = *registry.counters("churn");
    CHECK(c.joined == 2);
    CHECK(c.duplicate_outcomes == 1);
    CHECK(c.unmatched == 1);
    CHECK(c.pending == 0);

    registry.tick(t0 + minute);
    const auto rows = registry.snapshot();
    CHECK(value(rows, "v1", "", "pairs") == 2);
    // a: 0.9 -> 1 (true positive), b: 0.2 -> 1 (false negative).
    CHECK(value(rows, "v1", "", "accuracy") == 0.5);
    CHECK(value(rows, "v1", "", "precision") == 1.0);
    CHECK(value(rows, "v1", "", "recall") == 0.5);
    // One outcome class only: no AUC.
    CHECK_FALSE(value(rows, "v1", "", "auc"));
    CHECK(value(rows, "v1", "", "log_loss") == Approx((-std::log(0.9) - std::log(0.2)) / 2));
    CHECK(value(rows, "", "", "joined_total") == 2);
    CHECK(value(rows, "", "", "duplicate_outcomes_total") == 1);
    CHECK(value(rows, "", "", "unmatched_total") == 1);
    CHECK(value(rows, "v1", "", "records_total") == 3);
    CHECK(value(rows, "v1", "age", "missing_rate") == 0.0);
    CHECK(value(rows, "v1", "age", "out_of_range_share") == 0.0);
    // Declared categories without a reference: unseen rate against the list, and no PSI.
    CHECK(value(rows, "v1", "plan", "unseen_category_rate") == 0.0);
    CHECK_FALSE(value(rows, "v1", "plan", "psi"));
    CHECK_FALSE(value(rows, "v1", "age", "psi"));
    // Rows of the regression model exist for its counters only.
    CHECK(value(rows, "", "", "pending", "price") == 0);
    CHECK_FALSE(value(rows, "v1", "", "rmse", "price"));
}

TEST_CASE("pending records expire after the horizon")
{
    model_registry registry(load(join_schema));
    registry.add_records(std::vector<parsed_record>{make_record("v1", "a", 0.9, t0)}, t0);
    registry.add_records(std::vector<parsed_record>{make_record("v1", "b", 0.9, t0 + 30 * minute)}, t0 + 30 * minute);
    registry.tick(t0 + hour - 1);
    CHECK(registry.counters("churn")->expired == 0);
    registry.tick(t0 + hour);
    CHECK(registry.counters("churn")->expired == 1);
    CHECK(registry.counters("churn")->pending == 1);

    const ingest_result late = registry.add_outcomes(std::vector<parsed_outcome>{make_outcome("a", 1, t0 + hour)},
                                                     t0 + hour);
    CHECK(late.unmatched == 1);
    const ingest_result in_time = registry.add_outcomes(std::vector<parsed_outcome>{make_outcome("b", 1, t0 + hour)},
                                                        t0 + hour);
    CHECK(in_time.joined == 1);
    registry.tick(t0 + 2 * hour);
    CHECK(registry.counters("churn")->expired == 1);
    CHECK(value(registry.snapshot(), "", "", "expired_total") == 1);
}

TEST_CASE("the pending buffer is bounded and keeps the first of duplicate ids")
{
    model_registry registry(load(join_schema));
    std::vector<parsed_record> records;
    for (int i = 0; i < 5; ++i) {
        records.push_back(make_record("v1", "r" + std::to_string(i), 0.9, t0));
    }
    // r4 again with another prediction: a duplicate.
    records.push_back(make_record("v1", "r4", 0.1, t0));
    const ingest_result added = registry.add_records(records, t0);
    CHECK(added.accepted == 6);
    CHECK(added.duplicates == 1);
    const join_counters& c = *registry.counters("churn");
    CHECK(c.pending == 3);
    CHECK(c.pending_evicted == 2);
    CHECK(c.duplicate_record_ids == 1);

    const ingest_result outcomes = registry.add_outcomes(
        std::vector<parsed_outcome>{make_outcome("r0", 1, t0), make_outcome("r4", 1, t0)}, t0);
    CHECK(outcomes.unmatched == 1);
    CHECK(outcomes.joined == 1);
    registry.tick(t0);
    // r4 joined with its first prediction, 0.9.
    CHECK(value(registry.snapshot(), "v1", "", "accuracy") == 1.0);

    // Joined entries leave the arrival queue without growing it past the bound.
    for (int round = 0; round < 3000; ++round) {
        const std::string id = "x" + std::to_string(round);
        registry.add_records(std::vector<parsed_record>{make_record("v1", id, 0.9, t0)}, t0);
        registry.add_outcomes(std::vector<parsed_outcome>{make_outcome(id, 1, t0)}, t0);
    }
    CHECK(c.joined == 3001);
    CHECK(registry.memory_bytes() < 2'000'000);
}

TEST_CASE("outcomes for another version stay unmatched, and versions are bounded")
{
    model_registry registry(load(join_schema));
    registry.add_records(std::vector<parsed_record>{make_record("v1", "a", 0.9, t0)}, t0);
    CHECK(registry.add_outcomes(std::vector<parsed_outcome>{make_outcome("a", 1, t0, "v2")}, t0).unmatched == 1);
    CHECK(registry.add_outcomes(std::vector<parsed_outcome>{make_outcome("a", 1, t0, "v1")}, t0).joined == 1);

    registry.add_records(std::vector<parsed_record>{make_record("v2", "b", 0.9, t0 + 1)}, t0 + 1);
    registry.add_records(std::vector<parsed_record>{make_record("v1", "c", 0.9, t0 + 2)}, t0 + 2);
    CHECK(registry.versions("churn") == std::vector<std::string>{"v1", "v2"});
    // A third version pushes out the least recently seen one, v2; its pending record can no
    // longer join.
    registry.add_records(std::vector<parsed_record>{make_record("v3", std::nullopt, 0.9, t0 + 3)}, t0 + 3);
    CHECK(registry.versions("churn") == std::vector<std::string>{"v1", "v3"});
    CHECK(registry.counters("churn")->versions_evicted == 1);
    CHECK(registry.add_outcomes(std::vector<parsed_outcome>{make_outcome("b", 1, t0 + 4)}, t0 + 4).unmatched == 1);
}

TEST_CASE("records and outcomes far in the future or of unknown models are rejected")
{
    model_registry registry(load(join_schema));
    const ingest_result result = registry.add_records(
        std::vector<parsed_record>{make_record("v1", "a", 0.9, t0 + 10 * minute, 0), make_record("v1", "b", 0.9, t0, 1)},
        t0);
    CHECK(result.accepted == 1);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].index == 0);
    CHECK(result.errors[0].message.find("timestamp is 600 s after the server's time") == 0);
    CHECK(registry.counters("churn")->rejected_records == 1);

    const ingest_result outcomes = registry.add_outcomes(
        std::vector<parsed_outcome>{make_outcome("b", 1, t0 + hour)}, t0);
    REQUIRE(outcomes.errors.size() == 1);
    CHECK(registry.counters("churn")->rejected_outcomes == 1);

    parsed_record other = make_record("v1", "a", 0.9, t0);
    other.model = "other";
    CHECK(registry.add_records(std::vector<parsed_record>{other}, t0).errors.size() == 1);
    CHECK(registry.counters("other") == nullptr);
    CHECK_THROWS_AS(model_registry(nullptr), std::invalid_argument);
}

TEST_CASE("a period reference collects, freezes and exports")
{
    const auto schemas = load(R"(
models:
  - name: churn
    task: binary_classification
    window: {duration: 10m, buckets: 10}
    features:
      - {name: age, type: numeric, reference: {period: {first: 1h}}}
      - {name: vip, type: boolean, reference: {period: {first: 1h}}}
      - {name: note, type: categorical, reference: {period: {first: 1h}}}
    prediction: {type: score, reference: {period: {first: 1h}}}
)");
    model_registry registry(schemas);
    std::mt19937_64 rng(7);
    std::normal_distribution<double> age(40, 5);
    for (time_ms t = t0; t < t0 + 2 * hour; t += 10'000) {
        parsed_record r = make_record("v1", std::nullopt, 0.3, t);
        r.features = {{"age", {feature_value::kind::number, age(rng), "", false}},
                      {"vip", {feature_value::kind::boolean, 0, "", t % 30'000 == 0}}};
        registry.add_records(std::vector<parsed_record>{r}, t);
        if (t == t0 + 30 * minute) {
            registry.tick(t);
            const auto rows = registry.snapshot();
            CHECK(value(rows, "v1", "", "reference_period_active") == 1);
            CHECK_FALSE(value(rows, "v1", "age", "psi"));
            CHECK_FALSE(registry.export_reference("churn", "v1", "age"));
        }
    }
    registry.tick(t0 + 2 * hour);
    const auto rows = registry.snapshot();
    CHECK(value(rows, "v1", "", "reference_period_active") == 0);
    // 720 records over two hours: the counter carries over the rebuild at the freeze.
    CHECK(value(rows, "v1", "", "records_total") == 720);
    REQUIRE(value(rows, "v1", "age", "psi"));
    CHECK(*value(rows, "v1", "age", "psi") < 0.1);
    CHECK(value(rows, "v1", "age", "ks_p_value"));
    CHECK(value(rows, "v1", "vip", "psi") < 0.05);
    CHECK(value(rows, "v1", "", "prediction_psi") < 0.05);
    // "note" never had a value, so it has no reference.
    CHECK_FALSE(value(rows, "v1", "note", "psi"));
    CHECK_FALSE(registry.export_reference("churn", "v1", "note"));

    const auto exported = registry.export_reference("churn", "v1", "age");
    REQUIRE(exported);
    std::string error;
    const auto ref = reference_from_json(*exported, error);
    INFO(error);
    REQUIRE(ref);
    CHECK(ref->count == 360);
    CHECK(ref->low_value == Approx(40 - 2.576 * 5).margin(3));
    const auto vip = registry.export_reference("churn", "v1", "vip");
    REQUIRE(vip);
    CHECK((*vip)["type"] == "boolean");
    CHECK(registry.export_reference("churn", "v1", ""));
    CHECK_FALSE(registry.export_reference("churn", "v9", "age"));
    CHECK_FALSE(registry.export_reference("churn", "v1", "zip"));
    CHECK_FALSE(registry.export_reference("nope", "v1", "age"));
}

TEST_CASE("regression pairs give RMSE and MAE")
{
    model_registry registry(load(join_schema));
    parsed_record r = make_record("v1", "p1", 0, t0);
    r.model = "price";
    r.features.clear();
    r.prediction_number = 100;
    parsed_record s = r;
    s.id = "p2";
    s.prediction_number = 200;
    registry.add_records(std::vector<parsed_record>{r, s}, t0);
    parsed_outcome a = make_outcome("p1", 103, t0);
    a.model = "price";
    parsed_outcome b = make_outcome("p2", 196, t0);
    b.model = "price";
    CHECK(registry.add_outcomes(std::vector<parsed_outcome>{a, b}, t0).joined == 2);
    const auto rows = registry.snapshot();
    CHECK(value(rows, "v1", "", "mae", "price") == 3.5);
    CHECK(value(rows, "v1", "", "rmse", "price") == Approx(std::sqrt((9.0 + 16.0) / 2)));
}

namespace {

const char* const stream_schema = R"(
models:
  - name: churn
    task: binary_classification
    window: {duration: 1h, buckets: 60}
    performance_window: {max_pairs: 5000, max_age: 1h}
    outcome_horizon: 2h
    features:
      - {name: income, type: numeric, reference: {period: {first: 6h}}}
      - {name: tenure, type: numeric, range: [0, 600], reference: {period: {first: 6h}}}
      - {name: plan, type: categorical, categories: [basic, pro, team], reference: {period: {first: 6h}}}
      - {name: vip, type: boolean, reference: {period: {first: 6h}}}
    prediction: {type: score, reference: {period: {first: 6h}}}
)";

// A seeded stream of one model's records (every 5 s) and their outcomes (5 minutes later). From
// `change` on, income shifts by two standard deviations, tenure arrives as null, and the model
// is right half of the time instead of 90 %.
class churn_stream {
public:
    churn_stream(time_ms change) : change_(change) {}

    std::string records_body(time_ms from, time_ms to)
    {
        std::string body;
        for (time_ms t = from; t < to; t += 5000) {
            const bool changed = t >= change_;
            const bool label = coin_(rng_) < 0.5;
            const bool right = coin_(rng_) < (changed ? 0.5 : 0.9);
            const bool predicted = right ? label : !label;
            const double score = predicted ? 0.5 + 0.5 * coin_(rng_) : 0.49 * coin_(rng_);
            const double u = coin_(rng_);
            nlohmann::json record = {
                {"model", "churn"},
                {"version", "v7"},
                {"timestamp", t},
                {"id", "r" + std::to_string(t)},
                {"features",
                 {{"income", 50 + 10 * normal_(rng_) + (changed ? 20 : 0)},
                  {"tenure", changed ? nlohmann::json(nullptr) : nlohmann::json(24 + 6 * normal_(rng_))},
                  {"plan", u < 0.5 ? "basic" : (u < 0.8 ? "pro" : "team")},
                  {"vip", coin_(rng_) < 0.2}}},
                {"prediction", score}};
            body += record.dump() + "\n";
            labels_.emplace_back(t, label);
        }
        return body;
    }

    // Outcomes of the records made before `before`, not sent yet.
    std::string outcomes_body(time_ms before)
    {
        std::string body;
        while (sent_ < labels_.size() && labels_[sent_].first < before) {
            const auto& [t, label] = labels_[sent_++];
            body += nlohmann::json{{"model", "churn"}, {"id", "r" + std::to_string(t)}, {"outcome", label ? 1 : 0},
                                   {"timestamp", t + 5 * minute}}
                        .dump() +
                    "\n";
        }
        return body;
    }

private:
    time_ms change_;
    std::mt19937_64 rng_{20240501};
    std::uniform_real_distribution<double> coin_{0.0, 1.0};
    std::normal_distribution<double> normal_{0.0, 1.0};
    std::vector<std::pair<time_ms, bool>> labels_;
    std::size_t sent_ = 0;
};

} // namespace

TEST_CASE("end to end: drift, an emptied feature and an accuracy drop show after the change only")
{
    const auto schemas = load(stream_schema);
    model_registry registry(schemas);
    const time_ms change = t0 + 9 * hour;
    churn_stream stream(change);

    std::optional<double> accuracy_before;
    for (time_ms now = t0 + minute; now <= t0 + 10 * hour + 10 * minute; now += minute) {
        const record_batch records = parse_records(stream.records_body(now - minute, now), "application/x-ndjson",
                                                   *schemas);
        REQUIRE(records.errors.empty());
        REQUIRE(registry.add_records(records.items, now).errors.empty());
        const outcome_batch outcomes = parse_outcomes(stream.outcomes_body(now - 5 * minute), "", *schemas);
        REQUIRE(outcomes.errors.empty());
        const ingest_result joined = registry.add_outcomes(outcomes.items, now);
        REQUIRE(joined.unmatched == 0);
        registry.tick(now);

        // Nothing shows in the three hours before the change, once the references froze and a
        // full window passed.
        if (now >= t0 + 7 * hour && now <= change && now % (10 * minute) == 0) {
            INFO("minutes after start: " << (now - t0) / minute);
            const auto rows = registry.snapshot();
            for (const char* feature : {"income", "tenure", "plan", "vip"}) {
                INFO(feature);
                REQUIRE(value(rows, "v7", feature, "psi"));
                CHECK(*value(rows, "v7", feature, "psi") < 0.1);
                CHECK(*value(rows, "v7", feature, "missing_rate") == 0.0);
            }
            CHECK(*value(rows, "v7", "income", "ks_statistic") < 0.1);
            CHECK(*value(rows, "v7", "tenure", "out_of_range_share") == 0.0);
            CHECK(*value(rows, "v7", "", "prediction_psi") < 0.1);
            const double accuracy = *value(rows, "v7", "", "accuracy");
            CHECK(accuracy > 0.85);
            CHECK(*value(rows, "v7", "", "auc") > 0.85);
            accuracy_before = accuracy;
        }
    }
    REQUIRE(accuracy_before);

    // Seventy minutes after the change: the feature window and the performance window hold
    // post-change data only.
    const auto rows = registry.snapshot();
    CHECK(*value(rows, "v7", "income", "psi") > 0.25);
    CHECK(*value(rows, "v7", "income", "ks_statistic") > 0.5);
    CHECK(*value(rows, "v7", "income", "ks_p_value") < 1e-6);
    for (const char* feature : {"plan", "vip"}) {
        INFO(feature);
        CHECK(*value(rows, "v7", feature, "psi") < 0.25);
        CHECK(*value(rows, "v7", feature, "missing_rate") < 0.01);
    }
    CHECK(*value(rows, "v7", "income", "missing_rate") < 0.01);
    // tenure arrives empty: no valid value to bin, so no PSI, and missing_rate 1.
    CHECK_FALSE(value(rows, "v7", "tenure", "psi"));
    CHECK(*value(rows, "v7", "tenure", "missing_rate") > 0.99);
    const double accuracy_after = *value(rows, "v7", "", "accuracy");
    CHECK(accuracy_after < 0.65);
    CHECK(*accuracy_before - accuracy_after > 0.25);
    CHECK(value(rows, "", "", "expired_total") == 0);
    CHECK(value(rows, "", "", "unmatched_total") == 0);
    CHECK(*value(rows, "", "", "joined_total") > 7000);
    CHECK(*value(rows, "v7", "", "pairs") == Approx(720).margin(15));
}
