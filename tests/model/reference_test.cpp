#include "model/reference.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model_test_data.hpp"
#include "rules/drift.hpp"

using namespace tocsin::model;
using namespace tocsin::model::testing;

namespace {

constexpr double tolerance = 1e-9;

std::string reject(const nlohmann::json& json)
{
    std::string error;
    const auto parsed = reference_from_json(json, error);
    CHECK_FALSE(parsed.has_value());
    return error;
}

} // namespace

TEST_CASE("numeric reference matches numpy quantiles")
{
    const reference ref = build_numeric_reference(reference_values);
    CHECK(ref.type == feature_type::numeric);
    CHECK(ref.count == 200);

    // numpy.quantile(r, numpy.linspace(0, 1, 11)) and numpy.quantile(r, [0.005, 0.995]).
    const std::vector<double> edges = {24.96,  35.974999999999994, 39.198, 42.624,
                                       46.344, 48.34,              50.970000000000006, 54.23800000000001,
                                       57.598000000000006, 61.141000000000005, 76.2};
    REQUIRE(ref.edges.size() == edges.size());
    for (std::size_t i = 0; i < edges.size(); ++i) {
        INFO("edge " << i);
        CHECK(std::abs(ref.edges[i] - edges[i]) <= tolerance);
    }
    const std::vector<double> shares = {0.1, 0.1, 0.1, 0.1, 0.095, 0.105, 0.1, 0.1, 0.1, 0.1};
    REQUIRE(ref.shares.size() == shares.size());
    for (std::size_t i = 0; i < shares.size(); ++i) {
        INFO("share " << i);
        CHECK(std::abs(ref.shares[i] - shares[i]) <= tolerance);
    }
    CHECK(std::abs(ref.low_value - 26.22365) <= tolerance);
    CHECK(std::abs(ref.high_value - 74.95625) <= tolerance);

    std::vector<double> sorted = reference_values;
    std::sort(sorted.begin(), sorted.end());
    CHECK(ref.ks_points == sorted);
}

TEST_CASE("numeric reference subsamples ks points")
{
    reference_options options;
    options.ks_points = 50;
    const reference ref = build_numeric_reference(reference_values, options);
    std::vector<double> sorted = reference_values;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(ref.ks_points.size() == 50);
    // Ranks (i + 0.5) * 200 / 50 = 4i + 2.
    for (std::size_t i = 0; i < 50; ++i) {
        CHECK(ref.ks_points[i] == sorted[4 * i + 2]);
    }
}

TEST_CASE("categorical reference keeps the most frequent")
{
    const reference all = build_categorical_reference(category_reference_values);
    REQUIRE(all.categories.size() == 5);
    CHECK(all.categories[0].name == "a");
    CHECK(all.categories[0].share == 0.44);
    CHECK(all.categories[4].name == "e");
    CHECK(all.categories[4].share == 0.04);
    CHECK(all.other_share == 0.0);

    reference_options options;
    options.max_categories = 3;
    const reference top = build_categorical_reference(category_reference_values, options);
    REQUIRE(top.categories.size() == 3);
    CHECK(top.categories[2].name == "c");
    CHECK(std::abs(top.other_share - 0.13) <= tolerance);
}

TEST_CASE("reference builders reject bad input")
{
    const std::vector<double> none;
    CHECK_THROWS_AS(build_numeric_reference(none), std::invalid_argument);
    const std::vector<double> with_nan = {1.0, std::nan("")};
    CHECK_THROWS_WITH(build_numeric_reference(with_nan), Catch::Contains("index 1 is not finite"));
    reference_options no_bins;
    no_bins.bins = 0;
    CHECK_THROWS_AS(build_numeric_reference(reference_values, no_bins), std::invalid_argument);
    reference_options inverted;
    inverted.low_quantile = 0.9;
    inverted.high_quantile = 0.1;
    CHECK_THROWS_AS(build_numeric_reference(reference_values, inverted), std::invalid_argument);
    CHECK_THROWS_AS(reference_builder(feature_type::numeric).build(), std::logic_error);
}

TEST_CASE("streaming reference stays within the sketch bound")
{
    std::mt19937_64 random(42);
    std::normal_distribution<double> normal(100, 15);
    std::vector<double> values(200'000);
    reference_options options;
    options.sketch_epsilon = 0.001;
    reference_builder builder(feature_type::numeric, options);
    std::size_t accepted = 0;
    for (double& v : values) {
        v = std::round(normal(random) * 10) / 10;  // one decimal, so values tie
        accepted += builder.add(feature_value::number(v)) ? 1 : 0;
    }
    CHECK(accepted == values.size());
    CHECK_FALSE(builder.add(feature_value::text("x")));
    CHECK_FALSE(builder.add(feature_value::number(std::nan(""))));
    const reference ref = builder.build();
    CHECK(ref.count == values.size());

    std::vector<double> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    const double n = static_cast<double>(sorted.size());
    const double allowed = options.sketch_epsilon * n;
    const auto rank_error = [&](double value, double q) {
        const double target = std::max(1.0, std::ceil(q * n));
        const auto first = static_cast<double>(std::lower_bound(sorted.begin(), sorted.end(), value) - sorted.begin()) + 1;
        const auto last = static_cast<double>(std::upper_bound(sorted.begin(), sorted.end(), value) - sorted.begin());
        return target < first ? first - target : (target > last ? target - last : 0.0);
    };
    for (std::size_t k = 0; k < ref.edges.size(); ++k) {
        INFO("edge " << k << " = " << ref.edges[k]);
        CHECK(rank_error(ref.edges[k], static_cast<double>(k) / 10) <= allowed);
    }
    CHECK(rank_error(ref.low_value, 0.005) <= allowed);
    CHECK(rank_error(ref.high_value, 0.995) <= allowed);
    CHECK(ref.edges.front() == sorted.front());
    CHECK(ref.edges.back() == sorted.back());

    // Shares against the true shares of the same bins.
    const std::vector<double> exact = tocsin::bin_shares(sorted, ref.edges);
    double sum = 0;
    for (std::size_t k = 0; k < exact.size(); ++k) {
        INFO("bin " << k << " share " << ref.shares[k] << " exact " << exact[k]);
        CHECK(std::abs(ref.shares[k] - exact[k]) <= 2 * options.sketch_epsilon);
        sum += ref.shares[k];
    }
    CHECK(std::abs(sum - 1) <= 1e-12);
    CHECK(ref.ks_points.size() == options.ks_points);
    CHECK(std::is_sorted(ref.ks_points.begin(), ref.ks_points.end()));
}

TEST_CASE("reference json round trip")
{
    const std::vector<reference> references = {
        build_numeric_reference(reference_values),
        build_categorical_reference(category_reference_values),
    };
    for (const reference& ref : references) {
        const std::string text = to_json(ref).dump();
        std::string error;
        const auto parsed = parse_reference(text, error);
        INFO(error);
        REQUIRE(parsed.has_value());
        CHECK(*parsed == ref);
        CHECK(error.empty());
    }

    reference_builder flags(feature_type::boolean);
    flags.add(feature_value::boolean(true));
    flags.add(feature_value::boolean(false));
    const reference boolean = flags.build();
    std::string error;
    const auto parsed = reference_from_json(to_json(boolean), error);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == boolean);
}

TEST_CASE("reference json rejects malformed input")
{
    const nlohmann::json numeric = to_json(build_numeric_reference(reference_values));
    const nlohmann::json categorical = to_json(build_categorical_reference(category_reference_values));

    std::string error;
    CHECK_FALSE(parse_reference("{\"type\": ", error).has_value());
    CHECK_THAT(error, Catch::StartsWith("reference: invalid JSON at byte"));

    CHECK_THAT(reject(nlohmann::json::array()), Catch::Contains("the document is array; expected a JSON object"));

    nlohmann::json j = numeric;
    j.erase("format_version");
    CHECK_THAT(reject(j), Catch::Contains("field \"format_version\" is missing"));
    j = numeric;
    j["format_version"] = 2;
    CHECK_THAT(reject(j), Catch::Contains("field \"format_version\" is 2; expected 1"));

    j = numeric;
    j["type"] = "text";
    CHECK_THAT(reject(j), Catch::Contains("field \"type\" is \"text\"; expected \"numeric\", \"categorical\" or \"boolean\""));

    j = numeric;
    j["count"] = -5;
    CHECK_THAT(reject(j), Catch::Contains("field \"count\" is -5; expected a positive integer"));

    j = numeric;
    j["edges"][3] = 10.0;
    CHECK_THAT(reject(j), Catch::Contains("field \"edges[3]\" is 10.0, below the entry before it"));

    j = numeric;
    j["edges"][0] = "low";
    CHECK_THAT(reject(j), Catch::Contains("field \"edges[0]\" is \"low\"; expected a finite number"));

    j = numeric;
    j["shares"].erase(0);
    CHECK_THAT(reject(j), Catch::Contains("field \"shares\" has 9 entries; expected an array of 10 shares"));

    j = numeric;
    j["shares"][0] = 0.5;
    CHECK_THAT(reject(j), Catch::Contains("field \"shares\" sum to 1.4"));

    j = numeric;
    j["shares"][0] = -0.1;
    CHECK_THAT(reject(j), Catch::Contains("field \"shares[0]\" is -0.1; expected a share between 0 and 1"));

    j = numeric;
    j.erase("high_value");
    CHECK_THAT(reject(j), Catch::Contains("field \"high_value\" is missing; expected a finite number"));

    j = numeric;
    j["low_value"] = 1000;
    CHECK_THAT(reject(j), Catch::Contains("field \"low_value\" is above high_value"));

    j = numeric;
    j["ks_points"] = nlohmann::json::array();
    CHECK_THAT(reject(j), Catch::Contains("field \"ks_points\" has 0 entries"));

    j = categorical;
    j["categories"][1]["name"] = "a";
    CHECK_THAT(reject(j), Catch::Contains("field \"categories[1].name\" repeats \"a\""));

    j = categorical;
    j["categories"][0] = "a";
    CHECK_THAT(reject(j), Catch::Contains("field \"categories[0]\" is \"a\"; expected an object"));

    j = categorical;
    j["other_share"] = 0.5;
    CHECK_THAT(reject(j), Catch::Contains("field \"categories\" sum to 1.5"));

    j = categorical;
    j["type"] = "boolean";
    CHECK_THAT(reject(j), Catch::Contains("field \"categories[0].name\" is \"a\"; expected \"false\" or \"true\""));
}
