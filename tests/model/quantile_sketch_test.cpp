#include "model/quantile_sketch.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace tocsin::model;

namespace {

// Distance from the target rank max(1, ceil(q n)) to the nearest rank that `value` has in the
// sorted input, 0 when one of its ranks is the target.
double rank_error(const std::vector<double>& sorted, double value, double q)
{
    const double n = static_cast<double>(sorted.size());
    const double target = std::max(1.0, std::ceil(q * n));
    const auto first = static_cast<double>(std::lower_bound(sorted.begin(), sorted.end(), value) - sorted.begin()) + 1;
    const auto last = static_cast<double>(std::upper_bound(sorted.begin(), sorted.end(), value) - sorted.begin());
    if (first > last) {
        return n;  // not an input value at all
    }
    return target < first ? first - target : (target > last ? target - last : 0.0);
}

// Checks quantile() at q = 0, 0.001, ..., 1 and count_below() at 1000 probes against the bound.
void check_bound(const std::vector<double>& values, double epsilon)
{
    quantile_sketch sketch(epsilon);
    for (double v : values) {
        sketch.add(v);
    }
    std::vector<double> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    const double allowed = epsilon * static_cast<double>(values.size());
    REQUIRE(sketch.count() == values.size());

    double worst_quantile = 0;
    for (int k = 0; k <= 1000; ++k) {
        const double q = k / 1000.0;
        const double value = *sketch.quantile(q);
        worst_quantile = std::max(worst_quantile, rank_error(sorted, value, q));
    }
    CHECK(worst_quantile <= allowed);
    CHECK(*sketch.quantile(0) == sorted.front());
    CHECK(*sketch.quantile(1) == sorted.back());

    double worst_count = 0;
    for (int k = 0; k < 1000; ++k) {
        const double probe = sorted[static_cast<std::size_t>(k) * sorted.size() / 1000] + (k % 2 == 0 ? 0.0 : 1e-9);
        const auto exact = static_cast<double>(std::lower_bound(sorted.begin(), sorted.end(), probe) - sorted.begin());
        worst_count = std::max(worst_count, std::abs(sketch.count_below(probe) - exact));
    }
    CHECK(worst_count <= allowed);
    INFO("tuples " << sketch.tuple_count());
    CHECK(sketch.tuple_count() < values.size());
}

} // namespace

TEST_CASE("quantile sketch meets its rank bound on seeded data")
{
    std::mt19937_64 random(20240601);
    const std::size_t n = 200'000;

    std::vector<double> uniform(n);
    std::uniform_real_distribution<double> unit(0, 1);
    for (double& v : uniform) {
        v = unit(random);
    }
    std::vector<double> lognormal(n);
    std::lognormal_distribution<double> skewed(0, 1.5);
    for (double& v : lognormal) {
        v = skewed(random);
    }
    std::vector<double> ties(n);
    std::uniform_int_distribution<int> digit(0, 9);
    for (double& v : ties) {
        v = digit(random);
    }
    std::vector<double> ascending = uniform;
    std::sort(ascending.begin(), ascending.end());
    std::vector<double> descending(ascending.rbegin(), ascending.rend());

    for (double epsilon : {0.01, 0.001}) {
        SECTION("uniform, epsilon " + std::to_string(epsilon)) { check_bound(uniform, epsilon); }
        SECTION("lognormal, epsilon " + std::to_string(epsilon)) { check_bound(lognormal, epsilon); }
        SECTION("ten distinct values, epsilon " + std::to_string(epsilon)) { check_bound(ties, epsilon); }
        SECTION("ascending, epsilon " + std::to_string(epsilon)) { check_bound(ascending, epsilon); }
        SECTION("descending, epsilon " + std::to_string(epsilon)) { check_bound(descending, epsilon); }
    }
}

TEST_CASE("quantile sketch is small")
{
    std::mt19937_64 random(7);
    std::uniform_real_distribution<double> unit(0, 1);
    quantile_sketch sketch(0.001);
    for (int i = 0; i < 1'000'000; ++i) {
        sketch.add(unit(random));
    }
    INFO("tuples " << sketch.tuple_count() << ", bytes " << sketch.memory_bytes());
    CHECK(sketch.tuple_count() <= 5000);
}

TEST_CASE("quantile sketch small inputs are exact")
{
    quantile_sketch sketch(0.01);
    CHECK_FALSE(sketch.quantile(0.5).has_value());
    CHECK(sketch.count_below(3) == 0);
    for (double v : {5.0, 1.0, 3.0, 2.0, 4.0}) {
        sketch.add(v);
    }
    CHECK(sketch.quantile(0.0) == 1.0);
    CHECK(sketch.quantile(0.4) == 2.0);
    CHECK(sketch.quantile(0.5) == 3.0);
    CHECK(sketch.quantile(1.0) == 5.0);
    CHECK(sketch.count_below(3.0) == 2.0);
    CHECK(sketch.count_below(100.0) == 5.0);
}

TEST_CASE("quantile sketch rejects bad arguments")
{
    CHECK_THROWS_AS(quantile_sketch(0.0), std::invalid_argument);
    CHECK_THROWS_AS(quantile_sketch(0.5), std::invalid_argument);
    quantile_sketch sketch;
    CHECK_THROWS_AS(sketch.add(std::nan("")), std::invalid_argument);
    CHECK_THROWS_AS(sketch.add(INFINITY), std::invalid_argument);
    CHECK_THROWS_AS(sketch.quantile(1.5), std::invalid_argument);
    CHECK(sketch.count() == 0);
}
