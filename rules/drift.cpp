#include "rules/drift.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <numeric>
#include <stdexcept>
#include <string>

namespace tocsin {

namespace {

using std::numbers::pi;

double clip_probability(double p) { return std::clamp(p, 0.0, 1.0); }

// ln(n! / n^n).
double log_factorial_over_power(double n) { return std::lgamma(n + 1) - n * std::log(n); }

// Exact two-sided p-value for n1 == n2 == n: P(D >= h / n). By the reflection principle
// this is 2 * sum_{k>=1} (-1)^(k+1) C(2n, n - k*h) / C(2n, n). Each ratio
// C(2n, n - k*h) / C(2n, n - (k-1)*h) is a product of h factors, so the alternating sum is
// nested from the innermost term outwards: P = 2 * r1 * (1 - r2 * (1 - r3 * ...)), which
// avoids cancellation between large binomials.
double equal_size_exact_p(std::int64_t n, std::int64_t h) {
    double nested = 0;
    for (std::int64_t k = n / h; k >= 1; --k) {
        // C(2n, n - k*h) / C(2n, n - (k-1)*h), whose numerator factors are lo + 1 .. lo + h.
        double ratio = 1;
        const std::int64_t lo = n - k * h;
        for (std::int64_t j = 0; j < h; ++j) {
            ratio *= static_cast<double>(lo + 1 + j) / static_cast<double>(n + (k - 1) * h + j + 1);
        }
        nested = ratio * (1 - nested);
    }
    return 2 * nested;
}

// Exact two-sided p-value for unequal sizes: P(D >= h / lcm). Under the null hypothesis every
// merge order of the two sorted samples is equally likely. A merge order is a lattice path
// from (0, 0) to (n1, n2), and at (i, j) with r = n1 + n2 - i - j values left it steps along i
// with probability (n1 - i) / r and along j with (n2 - j) / r. D >= h / lcm exactly when the
// path reaches a point with |i * n2g - j * n1g| >= h. The mass that first reaches such a point
// is summed directly, not taken as 1 - P(stay inside), so small p-values keep their relative
// precision.
double unequal_size_exact_p(std::int64_t n1, std::int64_t n2, std::int64_t g, std::int64_t h) {
    const std::int64_t n1g = n1 / g;
    const std::int64_t n2g = n2 / g;
    const auto outside = [&](std::int64_t i, std::int64_t j) {
        const std::int64_t diff = i * n2g - j * n1g;
        return diff >= h || -diff >= h;
    };

    std::vector<double> row(static_cast<std::size_t>(n2 + 1), 0.0);
    std::vector<double> next(static_cast<std::size_t>(n2 + 1), 0.0);
    row[0] = 1;
    double exited = 0;
    for (std::int64_t i = 0; i <= n1; ++i) {
        std::fill(next.begin(), next.end(), 0.0);
        for (std::int64_t j = 0; j <= n2; ++j) {
            const double mass = row[static_cast<std::size_t>(j)];
            if (mass == 0) {
                continue;
            }
            const std::int64_t remaining = n1 + n2 - i - j;
            if (remaining == 0) {
                continue;
            }
            const double step_i = static_cast<double>(n1 - i) / static_cast<double>(remaining);
            const double step_j = static_cast<double>(n2 - j) / static_cast<double>(remaining);
            if (step_j > 0) {
                if (outside(i, j + 1)) {
                    exited += mass * step_j;
                } else {
                    row[static_cast<std::size_t>(j + 1)] += mass * step_j;
                }
            }
            if (step_i > 0) {
                if (outside(i + 1, j)) {
                    exited += mass * step_i;
                } else {
                    next[static_cast<std::size_t>(j)] += mass * step_i;
                }
            }
        }
        row.swap(next);
    }
    return exited;
}

// One-sided Smirnov survival function P(D_n^+ >= x), exact, by the Birnbaum-Tingey sum
// x * sum_{j=0}^{floor(n(1-x))} C(n, j) (1 - x - j/n)^(n-j) (x + j/n)^(j-1),
// with each term evaluated in logarithms so that large n does not overflow.
double smirnov_sf(double n, double x) {
    if (x <= 0) {
        return 1;
    }
    if (x >= 1) {
        return 0;
    }
    const auto last = static_cast<std::int64_t>(std::floor(n * (1 - x)));
    const double log_n_factorial = std::lgamma(n + 1);
    double sum = 0;
    for (std::int64_t j = 0; j <= last; ++j) {
        const double jd = static_cast<double>(j);
        const double low = 1 - x - jd / n;
        const double high = x + jd / n;
        double log_term = log_n_factorial - std::lgamma(jd + 1) - std::lgamma(n - jd + 1) +
                          (jd - 1) * std::log(high);
        if (n - jd > 0) {
            if (low <= 0) {
                continue;
            }
            log_term += (n - jd) * std::log(low);
        }
        sum += std::exp(log_term);
    }
    return clip_probability(x * sum);
}

// Square matrix with a separate natural-log scale factor, so powers of it do not overflow.
struct scaled_matrix {
    std::size_t size = 0;
    std::vector<double> values;
    double log_scale = 0;

    double& at(std::size_t r, std::size_t c) { return values[r * size + c]; }
    double at(std::size_t r, std::size_t c) const { return values[r * size + c]; }
};

scaled_matrix multiply(const scaled_matrix& a, const scaled_matrix& b) {
    scaled_matrix out{a.size, std::vector<double>(a.size * a.size, 0.0), a.log_scale + b.log_scale};
    for (std::size_t r = 0; r < a.size; ++r) {
        for (std::size_t k = 0; k < a.size; ++k) {
            const double left = a.at(r, k);
            if (left == 0) {
                continue;
            }
            for (std::size_t c = 0; c < a.size; ++c) {
                out.at(r, c) += left * b.at(k, c);
            }
        }
    }
    const double largest = *std::max_element(out.values.begin(), out.values.end());
    if (largest > 0) {
        for (double& v : out.values) {
            v /= largest;
        }
        out.log_scale += std::log(largest);
    }
    return out;
}

// Kolmogorov CDF P(D_n < x) by Durbin's matrix method, as scipy 1.10's _kolmogn_DMTW computes
// it: the (k, k) entry of H^n times n! / n^n, with k = floor(n x) + 1 and H of size 2k - 1.
// Exact up to rounding.
double kolmogorov_cdf_durbin(double n, double x) {
    const double t = n * x;
    const auto k = static_cast<std::size_t>(std::floor(t)) + 1;
    const std::size_t m = 2 * k - 1;
    const double h = static_cast<double>(k) - t;

    scaled_matrix base{m, std::vector<double>(m * m, 0.0), 0};
    for (std::size_t r = 0; r < m; ++r) {
        for (std::size_t c = 0; c < m; ++c) {
            base.at(r, c) = r + 1 >= c ? 1.0 : 0.0;
        }
    }
    for (std::size_t r = 0; r < m; ++r) {
        base.at(r, 0) -= std::pow(h, static_cast<double>(r + 1));
        base.at(m - 1, r) -= std::pow(h, static_cast<double>(m - r));
    }
    if (2 * h - 1 > 0) {
        base.at(m - 1, 0) += std::pow(2 * h - 1, static_cast<double>(m));
    }
    for (std::size_t r = 0; r < m; ++r) {
        for (std::size_t c = 0; c <= r + 1 && c < m; ++c) {
            // Divide by (r - c + 1)!.
            base.at(r, c) /= std::tgamma(static_cast<double>(r - c + 2));
        }
    }

    scaled_matrix result{m, std::vector<double>(m * m, 0.0), 0};
    for (std::size_t r = 0; r < m; ++r) {
        result.at(r, r) = 1;
    }
    for (auto power = static_cast<std::uint64_t>(n); power > 0; power >>= 1) {
        if (power & 1) {
            result = multiply(result, base);
        }
        if (power > 1) {
            base = multiply(base, base);
        }
    }
    const double centre = result.at(k - 1, k - 1);
    if (centre <= 0) {
        return 0;
    }
    return clip_probability(
        std::exp(std::log(centre) + result.log_scale + log_factorial_over_power(n)));
}

// Kolmogorov CDF P(D_n <= x) by the Pelz-Good asymptotic series, as scipy 1.10's
// _kolmogn_PelzGood computes it: K0(z) + K1(z)/sqrt(n) + K2(z)/n + K3(z)/n^1.5 with
// z = sqrt(n) x, each K_i written as a theta series in q = exp(-pi^2 / (8 z^2)).
double kolmogorov_cdf_pelz_good(double n, double x) {
    const double z = std::sqrt(n) * x;
    const double z2 = z * z;
    const double z4 = z2 * z2;
    const double z6 = z4 * z2;
    const double pi2 = pi * pi;
    const double pi4 = pi2 * pi2;
    const double pi6 = pi4 * pi2;
    const double log_q = -pi2 / (8 * z2);
    // Below exp(-708) q underflows, and the CDF is 0 to double precision.
    if (log_q < -708) {
        return 0;
    }

    const auto terms = static_cast<int>(std::ceil(16 * z / pi));
    double k0 = 0;
    double k1 = 0;
    double k2 = 0;
    double k3 = 0;
    for (int k = 1; k <= terms; ++k) {
        const double m = 2.0 * k - 1;
        const double m2 = m * m;
        const double m4 = m2 * m2;
        const double m6 = m4 * m2;
        const double weight = std::exp(log_q * m2);
        k0 += weight;
        k1 += weight * (-z2 + pi2 / 4 * m2);
        k2 += weight * ((6 * z6 + 2 * z4) + (2 * z4 - 5 * z2) * pi2 / 4 * m2 +
                        pi4 * (1 - 2 * z2) / 16 * m4);
        k3 += weight * ((-30 * z6 - 90 * z4 * z4) + pi2 * (135 * z4 - 96 * z6) / 4 * m2 +
                        pi4 * (-60 * z2 + 212 * z4) / 16 * m4 + pi6 * (5 - 30 * z2) / 64 * m6);
    }
    const double root_two_pi = std::sqrt(2 * pi);
    k0 *= root_two_pi / z;
    k1 *= root_two_pi / (6 * z4);
    k2 *= root_two_pi / (72 * z6 * z);
    k3 *= root_two_pi / (6480 * z6 * z4);

    // K2 and K3 also carry a series over all integers k in exp(-pi^2 k^2 / (2 z^2)).
    double k2_extra = 0;
    double k3_extra = 0;
    for (int k = 1; k <= terms; ++k) {
        const double kk = static_cast<double>(k) * k;
        const double weight = kk * std::exp(-pi2 * kk / (2 * z2));
        k2_extra += weight;
        k3_extra += (3 * z2 - pi2 * kk) * weight;
    }
    k2 += k2_extra * pi2 * root_two_pi / (-36 * z2 * z);
    k3 += k3_extra * pi2 * root_two_pi / (216 * z6);

    return k0 + k1 / std::sqrt(n) + k2 / n + k3 / (n * std::sqrt(n));
}

// Survival function P(D_n >= x) of the two-sided one-sample Kolmogorov statistic, choosing
// among closed forms, the exact Smirnov sum, the Durbin matrix and the Pelz-Good series by
// the same thresholds on n, n x and n x^2 as scipy 1.10's kstwo.sf (scipy/stats/_ksstats.py,
// which takes them from Simard and L'Ecuyer, 2011).
double kolmogorov_sf(double n, double x) {
    if (x >= 1) {
        return 0;
    }
    if (x <= 0) {
        return 1;
    }

    const double t = n * x;
    if (t <= 1) {
        if (t <= 0.5) {
            return 1;
        }
        // Ruben-Gambino: for 1/(2n) < x <= 1/n the CDF is n!/n^n (2t - 1)^n.
        const double cdf = std::exp(log_factorial_over_power(n) + n * std::log(2 * t - 1));
        return clip_probability(1 - cdf);
    }

    if (t >= n - 1) {
        return clip_probability(2 * std::pow(1 - x, n));
    }
    // For x >= 0.5 the two one-sided tails cannot both be reached, so the SF is twice one.
    if (x >= 0.5) {
        return clip_probability(2 * smirnov_sf(n, x));
    }

    const double nx2 = t * x;
    if (n <= 140) {
        // NOTE: scipy uses Pomeranz's recursion for 0.754693 < n x^2 <= 4. The Durbin
        // matrix computes the same exact CDF, so only rounding differs.
        if (nx2 <= 4) {
            return clip_probability(1 - kolmogorov_cdf_durbin(n, x));
        }
        return clip_probability(2 * smirnov_sf(n, x));
    }

    if (nx2 >= 370) {
        return 0;
    }
    if (nx2 >= 2.2) {
        return clip_probability(2 * smirnov_sf(n, x));
    }

    double cdf = 0;
    if (n <= 100000 && n * std::pow(x, 1.5) <= 1.4) {
        cdf = kolmogorov_cdf_durbin(n, x);
    } else {
        cdf = kolmogorov_cdf_pelz_good(n, x);
    }
    return clip_probability(1 - cdf);
}

}  // namespace

std::optional<ks_result> ks_2samp(std::span<const double> a, std::span<const double> b) {
    if (a.empty() || b.empty()) {
        return std::nullopt;
    }
    std::vector<double> sorted_a(a.begin(), a.end());
    std::vector<double> sorted_b(b.begin(), b.end());
    std::sort(sorted_a.begin(), sorted_a.end());
    std::sort(sorted_b.begin(), sorted_b.end());
    const auto n1 = static_cast<std::int64_t>(sorted_a.size());
    const auto n2 = static_cast<std::int64_t>(sorted_b.size());

    // Walk both samples in order. After all copies of a value are taken from both sides,
    // F_a - F_b = i/n1 - j/n2 = (i*n2 - j*n1) / (n1*n2); the integer numerator keeps D exact.
    std::int64_t max_gap = 0;
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < sorted_a.size() && j < sorted_b.size()) {
        const double value = std::min(sorted_a[i], sorted_b[j]);
        while (i < sorted_a.size() && sorted_a[i] == value) {
            ++i;
        }
        while (j < sorted_b.size() && sorted_b[j] == value) {
            ++j;
        }
        const std::int64_t gap = static_cast<std::int64_t>(i) * n2 - static_cast<std::int64_t>(j) * n1;
        max_gap = std::max(max_gap, gap < 0 ? -gap : gap);
    }
    // Once one sample is used up, the other's CDF only rises towards 1, so the gap shrinks.

    const std::int64_t g = std::gcd(n1, n2);
    // D = h / lcm(n1, n2) with lcm = n1 * n2 / g, so h is an integer.
    const std::int64_t h = max_gap / g;
    ks_result result;
    result.statistic = static_cast<double>(max_gap) / (static_cast<double>(n1) * static_cast<double>(n2));

    if (std::max(sorted_a.size(), sorted_b.size()) <= ks_max_exact_n) {
        result.exact = true;
        if (h == 0) {
            result.p_value = 1;
        } else if (n1 == n2) {
            result.p_value = clip_probability(equal_size_exact_p(n1, h));
        } else {
            result.p_value = clip_probability(unequal_size_exact_p(n1, n2, g, h));
        }
        return result;
    }

    result.exact = false;
    const double effective_n =
        std::nearbyint(static_cast<double>(n1) * static_cast<double>(n2) / static_cast<double>(n1 + n2));
    result.p_value = kolmogorov_sf(effective_n, result.statistic);
    return result;
}

double psi(std::span<const double> expected_shares, std::span<const double> actual_shares,
           double epsilon) {
    if (expected_shares.size() != actual_shares.size()) {
        throw std::invalid_argument("psi: expected_shares has " + std::to_string(expected_shares.size()) +
                                    " bins but actual_shares has " + std::to_string(actual_shares.size()) +
                                    "; bin both on the same edges");
    }
    if (!(epsilon > 0)) {
        throw std::invalid_argument("psi: epsilon must be positive, got " + std::to_string(epsilon));
    }
    double total = 0;
    for (std::size_t k = 0; k < expected_shares.size(); ++k) {
        const double e = expected_shares[k] > 0 ? expected_shares[k] : epsilon;
        const double a = actual_shares[k] > 0 ? actual_shares[k] : epsilon;
        total += (a - e) * std::log(a / e);
    }
    return total;
}

std::vector<double> quantile_edges(std::span<const double> reference, std::size_t bins) {
    if (reference.empty() || bins == 0) {
        return {};
    }
    std::vector<double> sorted(reference.begin(), reference.end());
    std::sort(sorted.begin(), sorted.end());
    const double last_index = static_cast<double>(sorted.size() - 1);

    std::vector<double> edges(bins + 1);
    for (std::size_t k = 0; k <= bins; ++k) {
        // Quantile k/bins sits at fractional index k/bins * (size - 1).
        const double position = last_index * static_cast<double>(k) / static_cast<double>(bins);
        const auto below = static_cast<std::size_t>(std::floor(position));
        const double fraction = position - static_cast<double>(below);
        if (below + 1 >= sorted.size() || fraction == 0) {
            edges[k] = sorted[below];
        } else {
            edges[k] = sorted[below] + fraction * (sorted[below + 1] - sorted[below]);
        }
    }
    // Interpolation rounding must not make edges decrease.
    for (std::size_t k = 1; k <= bins; ++k) {
        edges[k] = std::max(edges[k], edges[k - 1]);
    }
    return edges;
}

std::vector<double> bin_shares(std::span<const double> values, std::span<const double> edges) {
    if (edges.size() < 2) {
        return {};
    }
    const std::size_t bins = edges.size() - 1;
    std::vector<double> shares(bins, 0.0);
    if (values.empty()) {
        return shares;
    }
    for (const double v : values) {
        // upper_bound finds the first edge > v, so the bin is the last one whose left edge <= v.
        const auto above = static_cast<std::size_t>(std::upper_bound(edges.begin(), edges.end(), v) - edges.begin());
        const std::size_t bin = above == 0 ? 0 : std::min(above - 1, bins - 1);
        shares[bin] += 1;
    }
    for (double& s : shares) {
        s /= static_cast<double>(values.size());
    }
    return shares;
}

}  // namespace tocsin
