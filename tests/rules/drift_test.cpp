#include "rules/drift.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

using namespace tocsin;

namespace {

// Deterministic sample: v_i = fmod(i * step, 1) * scale + shift for i = 0 .. n-1. Python
// computes the same doubles with numpy.fmod(numpy.arange(n, dtype=float) * step, 1.0) * scale
// + shift, because every step is one correctly rounded IEEE operation.
std::vector<double> fractional_sequence(std::size_t n, double step, double scale = 1.0, double shift = 0.0) {
    std::vector<double> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = std::fmod(static_cast<double>(i) * step, 1.0) * scale + shift;
    }
    return out;
}

struct ks_expectation {
    std::string name;
    std::vector<double> a;
    std::vector<double> b;
    double statistic;
    double p_value;
    bool exact;
};

void check_against_scipy(const ks_expectation& c) {
    INFO(c.name << ": n1=" << c.a.size() << " n2=" << c.b.size());
    const auto result = ks_2samp(c.a, c.b);
    REQUIRE(result.has_value());
    CHECK(std::abs(result->statistic - c.statistic) <= 1e-12);
    CHECK(result->exact == c.exact);
    INFO("p_value=" << result->p_value << " expected=" << c.p_value);
    CHECK(std::abs(result->p_value - c.p_value) <= 1e-6 * c.p_value);
}

}  // namespace

// The expected statistics and p-values come from scipy.stats.ks_2samp(a, b) (scipy 1.10.1,
// numpy 1.24.2, Debian 12) with the default method='auto', for the same inputs.
TEST_CASE("ks_2samp exact small samples match scipy") {
    const std::vector<ks_expectation> cases = {
        {"equal sizes", {0.2, 1.4, 2.1, 3.3, 4.8, 5.0}, {1.1, 2.5, 3.9, 4.2, 6.3, 7.7},
         0.3333333333333333, 0.9307359307359307, true},
        {"unequal sizes", {0.5, 1.7, 2.2, 3.9, 4.1, 5.6, 6.8},
         {1.0, 1.2, 2.9, 3.1, 3.3, 4.4, 5.0, 5.5, 6.0, 7.2, 8.4}, 0.2597402597402597,
         0.8702237305178483, true},
        {"ties across samples", {1, 1, 2, 2, 3, 3, 4}, {2, 2, 3, 3, 3, 5}, 0.2857142857142857,
         0.8717948717948717, true},
        {"separated equal sizes", {1, 2, 3, 4, 5}, {10, 11, 12, 13, 14}, 1.0, 0.007936507936507936,
         true},
        {"separated unequal sizes", {1, 2, 3, 4, 5, 6}, {10, 11, 12, 13, 14, 15, 16, 17}, 1.0,
         0.0006660006660006659, true},
    };
    for (const auto& c : cases) {
        check_against_scipy(c);
    }
}

TEST_CASE("ks_2samp identical samples give D 0 and p 1") {
    const std::vector<double> a = {3.0, 1.0, 2.0, 2.0, 5.0};
    const auto result = ks_2samp(a, a);
    REQUIRE(result.has_value());
    CHECK(result->statistic == 0.0);
    CHECK(result->p_value == 1.0);
}

TEST_CASE("ks_2samp exact up to 10000 values matches scipy") {
    const std::vector<ks_expectation> cases = {
        {"200 and 300 values", fractional_sequence(200, 0.37), fractional_sequence(300, 0.61, 0.9, 0.05),
         0.055, 0.8474071044972649, true},
        // 0.37 repeats every 100 values, so this sample is heavily tied.
        {"10000 and 400 values", fractional_sequence(10000, 0.37), fractional_sequence(400, 0.61, 0.85),
         0.15, 5.151232994382978e-08, true},
    };
    for (const auto& c : cases) {
        check_against_scipy(c);
    }
}

// Each large case reaches a different branch of the Kolmogorov survival function at
// n = round(n1 * n2 / (n1 + n2)).
TEST_CASE("ks_2samp asymptotic above 10000 values matches scipy") {
    const auto reference_10001 = fractional_sequence(10001, 0.6180339887);
    const auto reference_12000 = fractional_sequence(12000, 0.6180339887);
    const std::vector<ks_expectation> cases = {
        // n = 50, n*D^2 = 0.84: exact CDF by matrix (scipy uses Pomeranz's recursion).
        {"n 50 matrix", reference_10001, fractional_sequence(50, 0.7548776662, 0.88), 0.12948705129487048,
         0.34176783461157034, false},
        // n = 50, n*D^2 = 4.7: twice the one-sided Smirnov tail.
        {"n 50 smirnov", reference_10001, fractional_sequence(50, 0.7548776662, 0.7), 0.30756924307569244,
         0.0001070067710976698, false},
        // n = 5739, n*D^2 = 0.03: matrix CDF, which is 0 to double precision.
        {"n 5739 tiny D", reference_12000, fractional_sequence(11000, 0.7548776662, 0.998),
         0.0022500000000000853, 1.0, false},
        // n = 5739, n*D^2 = 0.59: Pelz-Good series.
        {"n 5739 pelz-good", reference_12000, fractional_sequence(11000, 0.7548776662, 0.99),
         0.010151515151515134, 0.5915797639194605, false},
        // n = 5739, n*D^2 = 2.3 and 5.2: twice the one-sided Smirnov tail.
        {"n 5739 smirnov", reference_12000, fractional_sequence(11000, 0.7548776662, 0.98),
         0.020083333333333342, 0.019254343663002226, false},
        {"n 5739 smirnov small p", reference_12000, fractional_sequence(11000, 0.7548776662, 0.97),
         0.030075757575757534, 6.061106424837335e-05, false},
        // n = 8571, n*D^2 = 343: a p-value near the bottom of the double range.
        {"n 8571 far apart", fractional_sequence(20000, 0.6180339887),
         fractional_sequence(15000, 0.7548776662, 0.8), 0.19999999999999996, 5.729994082099583e-301, false},
    };
    for (const auto& c : cases) {
        check_against_scipy(c);
    }
}

TEST_CASE("ks_2samp symmetric in its arguments") {
    const std::vector<double> a = {0.5, 1.7, 2.2, 3.9, 4.1, 5.6, 6.8};
    const std::vector<double> b = {1.0, 1.2, 2.9, 3.1, 3.3, 4.4, 5.0, 5.5, 6.0, 7.2, 8.4};
    const auto forward = ks_2samp(a, b);
    const auto backward = ks_2samp(b, a);
    REQUIRE(forward.has_value());
    REQUIRE(backward.has_value());
    CHECK(forward->statistic == backward->statistic);
    CHECK(std::abs(forward->p_value - backward->p_value) <= 1e-12);
}

TEST_CASE("ks_2samp empty input returns nullopt") {
    const std::vector<double> values = {1.0, 2.0};
    const std::vector<double> empty;
    CHECK_FALSE(ks_2samp(values, empty).has_value());
    CHECK_FALSE(ks_2samp(empty, values).has_value());
    CHECK_FALSE(ks_2samp(empty, empty).has_value());
}

TEST_CASE("psi hand-computed value") {
    const std::vector<double> expected = {0.5, 0.5};
    const std::vector<double> actual = {0.25, 0.75};
    // (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5) = 0.25 ln 3.
    CHECK(psi(expected, actual) == Approx(0.25 * std::log(3.0)).epsilon(1e-12));
}

TEST_CASE("psi identical shares give zero") {
    const std::vector<double> shares = {0.1, 0.2, 0.3, 0.4};
    CHECK(psi(shares, shares) == 0.0);
}

TEST_CASE("psi empty bins use epsilon") {
    const std::vector<double> expected = {0.5, 0.5, 0.0};
    const std::vector<double> actual = {0.5, 0.4, 0.1};
    const double term_two = (0.4 - 0.5) * std::log(0.4 / 0.5);
    const double term_three_default = (0.1 - 1e-4) * std::log(0.1 / 1e-4);
    CHECK(psi(expected, actual) == Approx(term_two + term_three_default).epsilon(1e-12));

    const double term_three_custom = (0.1 - 1e-3) * std::log(0.1 / 1e-3);
    CHECK(psi(expected, actual, 1e-3) == Approx(term_two + term_three_custom).epsilon(1e-12));
}

TEST_CASE("psi empty in both gives zero term") {
    const std::vector<double> expected = {0.5, 0.5, 0.0};
    const std::vector<double> actual = {0.5, 0.5, 0.0};
    CHECK(psi(expected, actual) == 0.0);
}

TEST_CASE("psi rejects mismatched bins and bad epsilon") {
    const std::vector<double> two = {0.5, 0.5};
    const std::vector<double> three = {0.2, 0.3, 0.5};
    CHECK_THROWS_AS(psi(two, three), std::invalid_argument);
    CHECK_THROWS_AS(psi(two, two, 0.0), std::invalid_argument);
    CHECK_THROWS_AS(psi(two, two, -1.0), std::invalid_argument);
}

TEST_CASE("quantile_edges interpolate like numpy") {
    const std::vector<double> reference = {4, 1, 3, 2, 5};
    const auto edges = quantile_edges(reference, 4);
    REQUIRE(edges.size() == 5);
    CHECK(edges[0] == 1.0);
    CHECK(edges[1] == 2.0);
    CHECK(edges[2] == 3.0);
    CHECK(edges[3] == 4.0);
    CHECK(edges[4] == 5.0);

    // numpy.quantile([1, 2, 3, 4], 0.5) is 2.5, halfway between the two middle values.
    const std::vector<double> four = {1, 2, 3, 4};
    const auto halves = quantile_edges(four, 2);
    REQUIRE(halves.size() == 3);
    CHECK(halves[0] == 1.0);
    CHECK(halves[1] == 2.5);
    CHECK(halves[2] == 4.0);
}

TEST_CASE("quantile_edges empty input or zero bins") {
    const std::vector<double> reference = {1, 2, 3};
    const std::vector<double> empty;
    CHECK(quantile_edges(empty, 4).empty());
    CHECK(quantile_edges(reference, 0).empty());
}

TEST_CASE("bin_shares left-closed bins and closed last bin") {
    const std::vector<double> edges = {0, 1, 2, 3};
    // 1.0 opens the second bin; 3.0 closes the last bin.
    const std::vector<double> values = {0.0, 0.5, 1.0, 2.5, 3.0};
    const auto shares = bin_shares(values, edges);
    REQUIRE(shares.size() == 3);
    CHECK(shares[0] == Approx(0.4));
    CHECK(shares[1] == Approx(0.2));
    CHECK(shares[2] == Approx(0.4));
}

TEST_CASE("bin_shares clamps values outside the edges") {
    const std::vector<double> edges = {0, 1, 2};
    const std::vector<double> values = {-5.0, 7.0, 1.5, 0.5};
    const auto shares = bin_shares(values, edges);
    REQUIRE(shares.size() == 2);
    CHECK(shares[0] == Approx(0.5));
    CHECK(shares[1] == Approx(0.5));
}

TEST_CASE("bin_shares repeated edges leave a bin empty") {
    const std::vector<double> edges = {0, 1, 1, 2};
    const std::vector<double> values = {0.5, 1.0, 1.5};
    const auto shares = bin_shares(values, edges);
    REQUIRE(shares.size() == 3);
    CHECK(shares[0] == Approx(1.0 / 3));
    CHECK(shares[1] == 0.0);
    CHECK(shares[2] == Approx(2.0 / 3));
}

TEST_CASE("bin_shares empty values or too few edges") {
    const std::vector<double> edges = {0, 1, 2};
    const std::vector<double> empty;
    const auto shares = bin_shares(empty, edges);
    REQUIRE(shares.size() == 2);
    CHECK(shares[0] == 0.0);
    CHECK(shares[1] == 0.0);
    const std::vector<double> one_edge = {0};
    const std::vector<double> values = {0.5};
    CHECK(bin_shares(values, one_edge).empty());
}

TEST_CASE("psi of a window binned on reference quantiles") {
    const auto reference = fractional_sequence(1000, 0.6180339887);
    const auto edges = quantile_edges(reference, 10);
    const auto expected = bin_shares(reference, edges);
    double total = 0;
    for (const double s : expected) {
        total += s;
    }
    CHECK(total == Approx(1.0));
    CHECK(psi(expected, expected) == 0.0);

    // Squeezing the window into the lower half of the range is a major shift.
    const auto shifted = fractional_sequence(1000, 0.7548776662, 0.5);
    const auto actual = bin_shares(shifted, edges);
    CHECK(psi(expected, actual) > 0.25);
}
