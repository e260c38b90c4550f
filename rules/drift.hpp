#pragma once
// Statistics for distribution drift between a reference sample and a current window: the
// two-sample Kolmogorov-Smirnov test and the Population Stability Index (PSI) over the
// reference's quantile bins.
//
// Every function is pure and works on its arguments only. Inputs must be finite: callers drop
// NaN and infinite values first, because neither test has a meaning for them.
//
// Thread safety: all functions are reentrant and share no state.

#include <cstddef>
#include <optional>
#include <span>
#include <vector>

namespace tocsin {

struct ks_result {
    // D = max |F_a(x) - F_b(x)| over the two empirical CDFs, in [0, 1].
    double statistic = 0;
    // Two-sided p-value of D under the null hypothesis that a and b come from one
    // continuous distribution.
    double p_value = 1;
    // True when p_value is the exact finite-sample probability, false when it is the
    // large-sample approximation.
    bool exact = true;
};

// Sample size above which ks_2samp switches from the exact p-value to the approximation,
// as scipy.stats.ks_2samp's method='auto' does (scipy 1.10: MAX_AUTO_N = 10000).
inline constexpr std::size_t ks_max_exact_n = 10000;

// Computes the two-sample, two-sided Kolmogorov-Smirnov test, matching
// scipy.stats.ks_2samp(a, b) with method='auto' (checked against scipy 1.10.1).
// When max(a.size(), b.size()) <= ks_max_exact_n the p-value is exact: the probability
// that a uniformly random merge order of the two samples reaches D. Above that it is the
// survival function of the one-sample Kolmogorov distribution of D_n at n = round(n1 * n2 /
// (n1 + n2)), as scipy's kstwo.sf. Ties are handled as scipy does: the empirical CDFs are
// right-continuous, so equal values step together.
// Returns std::nullopt when a or b is empty. Values must be finite. The function copies and
// sorts both inputs, and the exact p-value takes O(n1 * n2) time with O(n2) memory.
std::optional<ks_result> ks_2samp(std::span<const double> a, std::span<const double> b);

// Computes the Population Stability Index sum((a_i - e_i) * ln(a_i / e_i)) over bins, where
// e and a are the expected (reference) and actual (current) shares of each bin. A share of 0
// or less is replaced by epsilon, so an empty bin adds a finite term. Identical shares give 0.
// A common rule of thumb reads below 0.1 as no shift, 0.1 to 0.25 as moderate, above 0.25 as major.
// Throws std::invalid_argument when the spans differ in length or epsilon is not positive.
double psi(std::span<const double> expected_shares, std::span<const double> actual_shares,
           double epsilon = 1e-4);

// Returns bins + 1 bin edges at the reference's quantiles 0, 1/bins, ..., 1, interpolated
// linearly between order statistics (numpy.quantile's default method). Edges do not
// decrease. Heavy ties in the reference give repeated edges and so empty bins. Returns an
// empty vector when the reference is empty or bins is 0.
std::vector<double> quantile_edges(std::span<const double> reference, std::size_t bins);

// Returns the share of values in each of the edges.size() - 1 bins. Bin i is the
// left-closed interval [edges[i], edges[i + 1]), except the last bin, which is closed
// [edges[n - 2], edges[n - 1]]. A value below the first edge counts in the first bin and a
// value above the last edge in the last bin, so the shares of a non-empty input sum to 1.
// With repeated edges a value goes to the last bin whose left edge is <= the value.
// Returns all zeros when values is empty, and an empty vector when edges has fewer than 2
// entries. Edges must not decrease.
std::vector<double> bin_shares(std::span<const double> values, std::span<const double> edges);

}  // namespace tocsin
