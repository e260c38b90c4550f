#include "model/feature_window.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "model/model_test_data.hpp"
#include "rules/drift.hpp"

using namespace tocsin::model;
using namespace tocsin::model::testing;

namespace {

constexpr double tolerance = 1e-9;
constexpr tocsin::time_ms second = 1000;

std::shared_ptr<const reference> numeric_reference()
{
    return std::make_shared<const reference>(build_numeric_reference(reference_values));
}

feature_spec numeric_spec(std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt)
{
    return feature_spec{"latency", feature_type::numeric, min, max};
}

} // namespace

TEST_CASE("numeric quality and drift match numpy and scipy")
{
    feature_window window(numeric_spec(40.0, 70.0), numeric_reference());
    for (std::size_t i = 0; i < window_values.size(); ++i) {
        REQUIRE(window.add(static_cast<tocsin::time_ms>(i) * second, feature_value::number(window_values[i])));
    }
    window.add(90 * second, feature_value::null());
    window.add(91 * second, feature_value::null());
    window.add(92 * second, feature_value::null());
    window.add(93 * second, feature_value::text("12"));
    window.add(94 * second, feature_value::boolean(true));
    window.add(95 * second, feature_value::number(std::numeric_limits<double>::quiet_NaN()));

    const quality_summary q = window.quality();
    CHECK(q.values == 86);
    CHECK(q.missing == 3);
    CHECK(q.type_mismatches == 3);
    CHECK(q.valid == 80);
    // numpy: sum(w < 40) = 12, sum(w > 70) = 5; outside np.quantile(r, [0.005, 0.995]) = 7.
    CHECK(q.out_of_range == 17);
    CHECK(q.outliers == 7);
    CHECK(q.missing_rate == 3.0 / 86);
    CHECK(q.type_mismatch_rate == 3.0 / 86);
    CHECK(q.out_of_range_share == 17.0 / 80);
    CHECK(q.outlier_share == 7.0 / 80);
    CHECK_FALSE(q.unseen_rate.has_value());

    // numpy: bins by searchsorted(edges, v, side="right") - 1 clipped to [0, 9], then
    // sum((a - e) * log(a / e)). scipy: ks_2samp(window_values, reference_values).
    const drift_summary d = window.drift();
    CHECK(d.psi_count == 80);
    REQUIRE(d.psi.has_value());
    CHECK(std::abs(*d.psi - 0.19714096553190963) <= tolerance);
    REQUIRE(d.ks.has_value());
    CHECK(d.ks_sample_count == 80);
    CHECK(d.ks_reference_count == 200);
    CHECK(std::abs(d.ks->statistic - 0.1675) <= tolerance);
    CHECK(std::abs(d.ks->p_value - 0.07375851791217752) <= tolerance);
}

TEST_CASE("categorical quality and drift match numpy")
{
    auto ref = std::make_shared<const reference>(build_categorical_reference(category_reference_values));
    feature_window window(feature_spec{"country", feature_type::categorical, {}, {}}, ref);
    for (const std::string& value : category_window_values) {
        window.add(0, feature_value::text(value));
    }
    window.add(0, feature_value::null());
    window.add(0, feature_value::number(3));

    const quality_summary q = window.quality();
    CHECK(q.values == 52);
    CHECK(q.missing == 1);
    CHECK(q.type_mismatches == 1);
    CHECK(q.valid == 50);
    // "f" is not in the reference: 6 of 50.
    CHECK(q.unseen == 6);
    CHECK(q.unseen_rate == 6.0 / 50);
    CHECK_FALSE(q.outlier_share.has_value());

    // numpy over the bins a, b, c, d, e and "other": reference shares 0.44, 0.31, 0.12, 0.09,
    // 0.04, 0 (0 replaced by 1e-4) against window shares 0.26, 0.26, 0.12, 0.16, 0.08, 0.12.
    const drift_summary d = window.drift();
    REQUIRE(d.psi.has_value());
    CHECK(std::abs(*d.psi - 1.021592880559804) <= tolerance);
    CHECK_FALSE(d.ks.has_value());
}

TEST_CASE("boolean window counts true and false")
{
    reference_builder builder(feature_type::boolean);
    for (int i = 0; i < 10; ++i) {
        builder.add(feature_value::boolean(i < 3));
    }
    auto ref = std::make_shared<const reference>(builder.build());
    feature_window window(feature_spec{"vip", feature_type::boolean, {}, {}}, ref);
    for (int i = 0; i < 10; ++i) {
        window.add(0, feature_value::boolean(i < 3));
    }
    window.add(0, feature_value::text("true"));
    const quality_summary q = window.quality();
    CHECK(q.valid == 10);
    CHECK(q.type_mismatches == 1);
    CHECK(q.unseen == 0);
    REQUIRE(window.drift().psi.has_value());
    CHECK(std::abs(*window.drift().psi) <= tolerance);
}

TEST_CASE("ring buckets slide at bucket resolution")
{
    window_options options;
    options.duration_ms = 60 * second;
    options.bucket_count = 6;
    feature_window window(numeric_spec(), nullptr, options);
    CHECK_FALSE(window.window_start().has_value());

    // One value per second for a minute: buckets of 10 s each hold 10 values.
    for (int i = 0; i < 60; ++i) {
        REQUIRE(window.add(i * second, feature_value::number(i)));
    }
    CHECK(window.quality().values == 60);
    CHECK(window.window_start() == 0);

    // At 59.999 s the value of 0 s is still in. At 60 s the first bucket (0 to 9.999 s) leaves,
    // so a value leaves between 50 s and 60 s after its time.
    window.advance_to(59'999);
    CHECK(window.quality().values == 60);
    window.advance_to(60'000);
    CHECK(window.quality().values == 50);
    CHECK(window.window_start() == 10'000);

    // A value before the window is late and not counted; one in the oldest bucket is counted.
    CHECK_FALSE(window.add(9'999, feature_value::number(1)));
    CHECK(window.late_values() == 1);
    CHECK(window.add(10'000, feature_value::number(1)));
    CHECK(window.quality().values == 51);

    // An earlier time does not move the window back.
    window.advance_to(0);
    CHECK(window.quality().values == 51);

    window.advance_to(85'000);
    CHECK(window.window_start() == 30'000);
    CHECK(window.quality().values == 30);

    // A jump of more than the window clears every bucket once.
    window.advance_to(10'000'000);
    CHECK(window.quality().values == 0);
    CHECK(window.quality().missing_rate == std::nullopt);
    CHECK(window.add(10'000'001, feature_value::null()));
    CHECK(window.quality().missing == 1);
}

TEST_CASE("drift bins expire with their buckets")
{
    window_options options;
    options.duration_ms = 60 * second;
    options.bucket_count = 6;
    feature_window window(numeric_spec(), numeric_reference(), options);
    for (double value : window_values) {
        window.add(0, feature_value::number(value));
    }
    for (double value : reference_values) {
        window.add(30 * second, feature_value::number(value));
    }
    CHECK(window.drift().psi_count == 280);
    CHECK(window.drift().ks_sample_count == 280);

    // After the bucket at 0 s leaves, the window holds the reference values only.
    window.advance_to(65 * second);
    const drift_summary d = window.drift();
    CHECK(d.psi_count == 200);
    REQUIRE(d.psi.has_value());
    CHECK(std::abs(*d.psi) <= tolerance);
    CHECK(d.ks_sample_count == 200);
    REQUIRE(d.ks.has_value());
    CHECK(d.ks->statistic == 0.0);
    CHECK(d.ks->p_value == 1.0);
}

TEST_CASE("ks sample keeps the most recent values")
{
    window_options options;
    options.ks_sample_size = 50;
    feature_window window(numeric_spec(), numeric_reference(), options);
    for (std::size_t i = 0; i < window_values.size(); ++i) {
        window.add(static_cast<tocsin::time_ms>(i), feature_value::number(window_values[i]));
    }
    const drift_summary d = window.drift();
    CHECK(d.psi_count == 80);
    CHECK(d.ks_sample_count == 50);
    const std::vector<double> recent(window_values.end() - 50, window_values.end());
    const auto expected = tocsin::ks_2samp(recent, reference_values);
    REQUIRE(d.ks.has_value());
    CHECK(d.ks->statistic == expected->statistic);
    CHECK(d.ks->p_value == expected->p_value);
}

TEST_CASE("window without reference keeps quality only")
{
    feature_window window(numeric_spec(0.0, 1.0), nullptr);
    window.add(0, feature_value::number(0.5));
    window.add(0, feature_value::number(2));
    CHECK(window.quality().out_of_range_share == 0.5);
    CHECK_FALSE(window.quality().outlier_share.has_value());
    CHECK_FALSE(window.drift().psi.has_value());
    CHECK_FALSE(window.drift().ks.has_value());
}

TEST_CASE("feature window rejects bad setup")
{
    window_options bad_buckets;
    bad_buckets.bucket_count = 0;
    CHECK_THROWS_AS(feature_window(numeric_spec(), nullptr, bad_buckets), std::invalid_argument);
    window_options short_window;
    short_window.duration_ms = 10;
    CHECK_THROWS_AS(feature_window(numeric_spec(), nullptr, short_window), std::invalid_argument);
    CHECK_THROWS_AS(feature_window(numeric_spec(5.0, 1.0), nullptr), std::invalid_argument);
    auto categorical = std::make_shared<const reference>(build_categorical_reference(category_reference_values));
    CHECK_THROWS_WITH(feature_window(numeric_spec(), categorical),
                      Catch::Contains("the reference is categorical but the feature is numeric"));
    feature_window window(numeric_spec(), nullptr);
    CHECK_THROWS_AS(window.drift(0.0), std::invalid_argument);
}

TEST_CASE("feature window memory is fixed")
{
    feature_window window(numeric_spec(), numeric_reference());
    const std::size_t before = window.memory_bytes();
    // 60 buckets of 7 + 10 counters, and a KS ring of 1000 values and times.
    CHECK(before >= 60 * 17 * 4 + 1000 * 16);
    for (int i = 0; i < 100'000; ++i) {
        window.add(i * 100, feature_value::number(i % 97));
    }
    CHECK(window.memory_bytes() == before);
}
