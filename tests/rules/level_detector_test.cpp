#include "rules/detector.hpp"
#include "rules/detector_impl.hpp"
#include "rules/timezone.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

constexpr time_ms second_ms = 1000;
constexpr time_ms minute_ms = 60 * second_ms;
constexpr time_ms hour_ms = 60 * minute_ms;
constexpr time_ms day_ms = 24 * hour_ms;

// 2024-01-01T00:00:00Z, a Monday.
constexpr time_ms jan_1_2024 = 1'704'067'200'000;
// 2024-03-31T00:00:00Z: Europe/Berlin moves from CET (+1) to CEST (+2) at 01:00Z.
constexpr time_ms mar_31_2024 = 1'711'843'200'000;
// 2024-10-27T00:00:00Z: Europe/Berlin moves from CEST (+2) back to CET (+1) at 01:00Z.
constexpr time_ms oct_27_2024 = 1'729'987'200'000;

std::unique_ptr<detector> make(const detector_spec& spec)
{
    std::string error;
    auto d = detail::make_level_detector(spec, error);
    INFO("error: " << error);
    REQUIRE(d != nullptr);
    return d;
}

// Small deterministic noise in [-1, 1].
double wiggle(std::int64_t i)
{
    return std::sin(static_cast<double>(i) * 0.7);
}

double brute_median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

} // namespace

TEST_CASE("time zone: unknown name is an error")
{
    std::string error;
    CHECK_FALSE(time_zone::locate("Mars/Olympus_Mons", error));
    CHECK(error.find("Mars/Olympus_Mons") != std::string::npos);
    CHECK(error.find("IANA") != std::string::npos);
}

TEST_CASE("time zone: UTC fields and hour of week")
{
    std::string error;
    auto utc = time_zone::locate("UTC", error);
    REQUIRE(utc);
    const local_fields f = utc->local_at(jan_1_2024 + 13 * hour_ms + 5 * minute_ms + 7 * second_ms + 9);
    CHECK(f.year == 2024);
    CHECK(f.month == 1);
    CHECK(f.day == 1);
    CHECK(f.weekday == 1); // Monday
    CHECK(f.hour == 13);
    CHECK(f.minute == 5);
    CHECK(f.second == 7);
    CHECK(f.millisecond == 9);

    local_time_cache cache(*utc);
    CHECK(cache.hour_of_week(jan_1_2024) == 0);
    CHECK(cache.hour_of_week(jan_1_2024 + 6 * day_ms + 23 * hour_ms) == 167); // Sunday 23:00
    CHECK(cache.hour_of_week(jan_1_2024 + 7 * day_ms) == 0);
    CHECK(cache.hour_of_week(jan_1_2024 - hour_ms) == 167);
    CHECK(cache.hour_of_day(-1) == 23); // 1969-12-31T23:59:59.999Z
}

TEST_CASE("time zone: Berlin hours across DST changes")
{
    std::string error;
    auto berlin = time_zone::locate("Europe/Berlin", error);
    REQUIRE(berlin);
    local_time_cache cache(*berlin);

    // Spring: local 02:00-03:00 does not exist.
    CHECK(cache.hour_of_day(mar_31_2024 + 30 * minute_ms) == 1);
    CHECK(cache.hour_of_day(mar_31_2024 + hour_ms - 1) == 1);
    CHECK(cache.hour_of_day(mar_31_2024 + hour_ms) == 3);
    CHECK(cache.hour_of_day(mar_31_2024 + 90 * minute_ms) == 3);
    CHECK(berlin->offset_at(mar_31_2024).utc_offset == 1h);
    CHECK(berlin->offset_at(mar_31_2024 + hour_ms).utc_offset == 2h);
    CHECK(berlin->offset_at(mar_31_2024 + hour_ms).dst_save != 0min);

    // Autumn: local 02:00-03:00 happens twice.
    CHECK(cache.hour_of_day(oct_27_2024 + 30 * minute_ms) == 2);
    CHECK(cache.hour_of_day(oct_27_2024 + 90 * minute_ms) == 2);
    CHECK(cache.hour_of_day(oct_27_2024 + 150 * minute_ms) == 3);
    // Sunday 27 October, 02:30 local either way: hour 6 * 24 + 2 of the ISO week.
    CHECK(cache.hour_of_week(oct_27_2024 + 90 * minute_ms) == 146);
    const local_fields f = berlin->local_at(oct_27_2024 + 90 * minute_ms);
    CHECK(f.utc_offset == 1h);
    CHECK(f.day == 27);
    CHECK(f.weekday == 0);
}

TEST_CASE("mean_sigma: lagged warm-up, flat hour and step")
{
    detector_spec spec;
    spec.kind = detector_kind::mean_sigma;
    spec.window = 1h;
    spec.lag = 5min;
    spec.sigma_floor = 1.0;
    spec.min_samples = 30;
    auto d = make(spec);

    for (time_ms t = 0; t < hour_ms; t += 15 * second_ms) {
        const detector_output out = d->score(t, 100);
        INFO("t = " << t << " ms");
        if (t < 12 * minute_ms + 30 * second_ms) {
            CHECK_FALSE(out.ready);
        } else {
            CHECK(out.ready);
            CHECK(out.score == 0.0);
            CHECK(out.baseline == 100.0);
        }
        if (t == 12 * minute_ms + 30 * second_ms) {
            CHECK(out.samples == 30);
        }
        d->learn(t, 100, false);
    }

    const detector_output step = d->score(hour_ms, 150);
    REQUIRE(step.ready);
    CHECK(step.score == 50.0);
    CHECK(std::isfinite(step.score));
    CHECK(step.baseline == 100.0);
    CHECK(step.scale == 1.0);
    // [60m - 1h, 60m - 5m) contains the samples of 0 .. 54m45s.
    CHECK(step.samples == 220);
}

TEST_CASE("mean_sigma: direction signs the score")
{
    detector_spec spec;
    spec.kind = detector_kind::mean_sigma;
    spec.min_samples = 2;
    spec.sigma_floor = 2.0;
    spec.sigma_floor_ratio = 0;
    for (const auto& [side, expected] : {std::pair{direction::above, -3.0}, std::pair{direction::below, 3.0},
                                         std::pair{direction::both, 3.0}}) {
        spec.side = side;
        auto d = make(spec);
        d->learn(0, 10, false);
        d->learn(1000, 10, false);
        const detector_output out = d->score(2000, 4);
        CHECK(out.score == expected);
        if (side != direction::above) {
            CHECK(value_at_score(spec, out, 3.0, true) == 4.0);
        }
    }
}

TEST_CASE("mean_sigma: sums stay accurate far from zero")
{
    detector_spec spec;
    spec.kind = detector_kind::mean_sigma;
    spec.window = 10min;
    spec.min_samples = 2;
    spec.sigma_floor_ratio = 0;
    auto d = make(spec);

    // Values near 1e9 with unit noise, through many turnovers of the window, compared with
    // a two-pass computation over the same window.
    std::mt19937_64 rng(7);
    std::normal_distribution<double> noise(0, 1);
    std::vector<std::pair<time_ms, double>> history;
    for (std::int64_t i = 0; i < 20'000; ++i) {
        const time_ms t = i * 15 * second_ms;
        const double level = i < 10'000 ? 1e9 : 5e3;
        const double v = level + noise(rng);
        const detector_output out = d->score(t, v);
        if (i % 997 == 0 && i > 100) {
            std::vector<double> window;
            for (const auto& [s, x] : history) {
                if (s >= t - 10 * minute_ms) {
                    window.push_back(x);
                }
            }
            double mean = 0;
            for (double x : window) {
                mean += x;
            }
            mean /= static_cast<double>(window.size());
            double squares = 0;
            for (double x : window) {
                squares += (x - mean) * (x - mean);
            }
            const double sigma = std::sqrt(squares / static_cast<double>(window.size() - 1));
            INFO("i = " << i);
            CHECK(out.samples == window.size());
            CHECK(out.baseline == Approx(mean).epsilon(1e-12));
            CHECK(out.scale == Approx(sigma).epsilon(1e-6));
        }
        d->learn(t, v, false);
        history.emplace_back(t, v);
    }
}

TEST_CASE("mad: median and scale match a brute-force computation")
{
    detector_spec spec;
    spec.kind = detector_kind::mad;
    spec.window = 30min;
    spec.lag = 2min;
    spec.min_samples = 1;
    spec.sigma_floor = 0;
    spec.sigma_floor_ratio = 0;
    auto d = make(spec);

    std::mt19937_64 rng(11);
    std::uniform_int_distribution<int> gap_s(1, 40);
    std::lognormal_distribution<double> value(2.0, 1.0);
    std::uniform_int_distribution<int> tie(0, 9);
    std::vector<std::pair<time_ms, double>> history;
    time_ms t = 0;
    for (int i = 0; i < 4000; ++i) {
        t += gap_s(rng) * second_ms;
        // Every tenth value repeats a rounded one, so ties are covered.
        const double v = tie(rng) == 0 ? 7.0 : value(rng);
        const detector_output out = d->score(t, v);

        std::vector<double> window;
        for (const auto& [s, x] : history) {
            if (s >= t - 30 * minute_ms && s < t - 2 * minute_ms) {
                window.push_back(x);
            }
        }
        INFO("i = " << i << ", t = " << t);
        REQUIRE(out.samples == window.size());
        if (!window.empty()) {
            const double median = brute_median(window);
            std::vector<double> deviations;
            for (double x : window) {
                deviations.push_back(std::abs(x - median));
            }
            const double scale = std::max(1.4826 * brute_median(deviations), detector_spec::min_scale);
            CHECK(out.baseline == median);
            CHECK(out.scale == Approx(scale).epsilon(1e-15));
        }
        d->learn(t, v, false);
        history.emplace_back(t, v);
    }
}

TEST_CASE("mad: flat baseline scores an equal value 0")
{
    detector_spec spec;
    spec.kind = detector_kind::mad;
    spec.min_samples = 5;
    spec.sigma_floor = 0;
    spec.sigma_floor_ratio = 0;
    auto d = make(spec);
    for (int i = 0; i < 10; ++i) {
        d->learn(i * 15 * second_ms, 0.1, false);
    }
    const detector_output same = d->score(10 * 15 * second_ms, 0.1);
    REQUIRE(same.ready);
    CHECK(same.score == 0.0);
    const detector_output other = d->score(10 * 15 * second_ms, 0.2);
    CHECK(std::isfinite(other.score));
    CHECK(other.score > 1e6);
}

TEST_CASE("ewma: irregular gap equals a chain of updates")
{
    detector_spec spec;
    spec.kind = detector_kind::ewma;
    spec.half_life = 1h;
    spec.min_samples = 1;
    spec.sigma_floor = 0;
    spec.sigma_floor_ratio = 0;

    auto gap = make(spec);
    gap->learn(0, 10, false);
    gap->learn(2 * hour_ms, 30, false);

    auto chain = make(spec);
    chain->learn(0, 10, false);
    chain->learn(hour_ms, 30, false);
    chain->learn(2 * hour_ms, 30, false);

    const detector_output a = gap->score(3 * hour_ms, 0);
    const detector_output b = chain->score(3 * hour_ms, 0);
    // alpha = 1 - 2^-2 = 0.75: mean 10 + 0.75 * 20 = 25, variance 0.25 * 0.75 * 20^2 = 75.
    CHECK(a.baseline == Approx(25.0).epsilon(1e-12));
    CHECK(b.baseline == Approx(25.0).epsilon(1e-12));
    CHECK(a.scale == Approx(std::sqrt(75.0)).epsilon(1e-12));
    CHECK(b.scale == Approx(std::sqrt(75.0)).epsilon(1e-12));
}

TEST_CASE("ewma: state matches the closed form")
{
    detector_spec spec;
    spec.kind = detector_kind::ewma;
    spec.half_life = 20min;
    spec.min_samples = 50;
    spec.sigma_floor = 0;
    spec.sigma_floor_ratio = 0;
    auto d = make(spec);

    std::mt19937_64 rng(3);
    std::uniform_int_distribution<int> gap_s(1, 600);
    std::normal_distribution<double> value(40, 5);
    std::vector<std::pair<time_ms, double>> samples;
    time_ms t = 0;
    for (int i = 0; i < 200; ++i) {
        t += gap_s(rng) * second_ms;
        const double v = value(rng);
        const detector_output out = d->score(t, v);
        CHECK(out.ready == (i >= 50));
        d->learn(t, v, false);
        samples.emplace_back(t, v);
    }

    // Weight of sample i: alpha_i * prod_{j > i} (1 - alpha_j), with alpha_0 = 1 and
    // 1 - alpha_j = 2^(-(t_j - t_{j-1}) / half_life), so prod_{j > i} = 2^(-(t_n - t_i) / h).
    const double h = static_cast<double>(20 * minute_ms);
    const time_ms last = samples.back().first;
    std::vector<double> weights;
    for (std::size_t i = 0; i < samples.size(); ++i) {
        const double alpha = i == 0 ? 1.0 : 1 - std::pow(2.0, -static_cast<double>(samples[i].first - samples[i - 1].first) / h);
        weights.push_back(alpha * std::pow(2.0, -static_cast<double>(last - samples[i].first) / h));
    }
    double mean = 0;
    for (std::size_t i = 0; i < samples.size(); ++i) {
        mean += weights[i] * samples[i].second;
    }
    double variance = 0;
    for (std::size_t i = 0; i < samples.size(); ++i) {
        variance += weights[i] * (samples[i].second - mean) * (samples[i].second - mean);
    }
    const detector_output out = d->score(t + 1, 0);
    CHECK(out.samples == 200);
    CHECK(out.baseline == Approx(mean).epsilon(1e-10));
    CHECK(out.scale == Approx(std::sqrt(variance)).epsilon(1e-9));
}

TEST_CASE("seasonal: daily pattern scores per hour")
{
    detector_spec spec;
    spec.kind = detector_kind::seasonal;
    spec.half_life = 72h;
    spec.min_samples = 30;
    spec.sigma_floor = 0.5;
    spec.sigma_floor_ratio = 0;
    auto d = make(spec);

    auto pattern = [](time_ms t) {
        const double day_phase = static_cast<double>(t % day_ms) / static_cast<double>(day_ms);
        return 100 + 20 * std::sin(2 * std::numbers::pi * day_phase);
    };

    std::int64_t i = 0;
    // The first hour of the first day: slot 0 is not ready before 30 samples.
    CHECK_FALSE(d->score(jan_1_2024, pattern(jan_1_2024)).ready);
    for (time_ms t = jan_1_2024; t < jan_1_2024 + 7 * day_ms; t += minute_ms, ++i) {
        d->learn(t, pattern(t) + 0.3 * wiggle(i), false);
    }

    double worst_normal = 0;
    for (time_ms t = jan_1_2024 + 7 * day_ms; t < jan_1_2024 + 8 * day_ms; t += 7 * minute_ms) {
        const detector_output out = d->score(t, pattern(t));
        REQUIRE(out.ready);
        worst_normal = std::max(worst_normal, out.score);
    }
    CHECK(worst_normal < 3);

    // 06:30Z is near the daily peak (about 119); 81 belongs to 18:30Z.
    const time_ms morning = jan_1_2024 + 7 * day_ms + 6 * hour_ms + 30 * minute_ms;
    const detector_output off = d->score(morning, pattern(morning + 12 * hour_ms));
    CHECK(off.ready);
    CHECK(off.score > 10);
    CHECK(std::abs(off.baseline - pattern(morning)) < 2);
}

TEST_CASE("seasonal: Berlin slots follow the DST change")
{
    detector_spec spec;
    spec.kind = detector_kind::seasonal;
    spec.timezone = "Europe/Berlin";
    spec.half_life = 48h;
    spec.min_samples = 10;
    spec.sigma_floor = 1;
    spec.sigma_floor_ratio = 0;
    auto d = make(spec);

    // The value is 10 * the local hour; Berlin is UTC+1 before 2024-03-31T01:00Z and UTC+2 after.
    auto local_hour = [](time_ms t) {
        const time_ms offset = t < mar_31_2024 + hour_ms ? hour_ms : 2 * hour_ms;
        return ((t + offset) % day_ms) / hour_ms;
    };
    for (time_ms t = mar_31_2024 - 10 * day_ms; t < mar_31_2024 + 3 * day_ms; t += 5 * minute_ms) {
        d->learn(t, 10.0 * static_cast<double>(local_hour(t)), false);
    }

    for (time_ms t = mar_31_2024 + 3 * day_ms; t < mar_31_2024 + 4 * day_ms; t += 10 * minute_ms) {
        const time_ms utc_hour = (t % day_ms) / hour_ms;
        const double summer = 10.0 * static_cast<double>(local_hour(t));
        const double winter = 10.0 * static_cast<double>((utc_hour + 1) % 24);
        INFO("UTC hour " << utc_hour);
        const detector_output right = d->score(t, summer);
        REQUIRE(right.ready);
        CHECK(right.score < 1);
        CHECK(d->score(t, winter).score > 5);
    }
}

TEST_CASE("seasonal: unknown time zone is rejected")
{
    detector_spec spec;
    spec.kind = detector_kind::seasonal;
    spec.timezone = "Europe/Atlantis";
    std::string error;
    CHECK(detail::make_level_detector(spec, error) == nullptr);
    CHECK(error.find("Europe/Atlantis") != std::string::npos);
}

TEST_CASE("baseline: ratio against the trailing median")
{
    detector_spec spec;
    spec.kind = detector_kind::baseline;
    spec.window = 24h;
    spec.min_samples = 3;
    auto d = make(spec);
    const double history[] = {0.96, 0.94, 0.95, 0.99, 0.91};
    for (int i = 0; i < 5; ++i) {
        d->learn(i * hour_ms, history[i], false);
    }
    const detector_output out = d->score(5 * hour_ms, 0.90);
    REQUIRE(out.ready);
    CHECK(out.baseline == 0.95);
    CHECK(out.score == Approx(0.90 / 0.95).epsilon(1e-15));
    CHECK(out.score == Approx(0.947368).margin(1e-6));
    CHECK(std::isnan(out.scale));
    CHECK(value_at_score(spec, out, 0.95) == Approx(0.9025));

    spec.compare = baseline_compare::difference;
    spec.statistic = baseline_statistic::mean;
    auto diff = make(spec);
    for (int i = 0; i < 5; ++i) {
        diff->learn(i * hour_ms, history[i], false);
    }
    const detector_output by_mean = diff->score(5 * hour_ms, 0.90);
    CHECK(by_mean.baseline == Approx(0.95));
    CHECK(by_mean.score == Approx(-0.05));
}

TEST_CASE("baseline: fixed value and zero baseline")
{
    detector_spec spec;
    spec.kind = detector_kind::baseline;
    spec.fixed_value = 0.95;
    auto fixed = make(spec);
    const detector_output out = fixed->score(0, 0.9);
    CHECK(out.ready);
    CHECK(out.baseline == 0.95);
    CHECK(out.score == Approx(0.947368).margin(1e-6));

    spec.fixed_value = 0.0;
    auto zero = make(spec);
    CHECK(zero->score(0, 0.0).score == 1.0);
    CHECK(zero->score(0, 3.0).score == 1e12);
    CHECK(zero->score(0, -3.0).score == -1e12);
    spec.fixed_value = 1e-300;
    auto tiny = make(spec);
    CHECK(tiny->score(0, 1e300).score == 1e12);
}

namespace {

struct step_result {
    double before_step = 0;
    double max_during_run = 0;
    double min_during_run = 1e300;
    double after_adapt_after = 0;
    double baseline_during_run = 0;
    std::uint64_t adaptations = 0;
};

// Feeds a level of 100 (with noise) for two days, then 150 for 12 hours, holding samples out
// while they score above `lowest_tier`. `distance` maps a score to its distance from normal.
step_result run_step(const detector_spec& spec, double lowest_tier, double (*distance)(double))
{
    auto d = make(spec);
    const time_ms step_at = 2 * day_ms;
    step_result r;
    std::int64_t i = 0;
    for (time_ms t = 0; t < step_at + 12 * hour_ms; t += 15 * second_ms, ++i) {
        const double v = (t < step_at ? 100.0 : 150.0) + wiggle(i);
        const detector_output out = d->score(t, v);
        const double x = distance(out.score);
        d->learn(t, v, out.ready && x > lowest_tier);
        if (t == step_at - 15 * second_ms) {
            r.before_step = x;
        }
        if (t >= step_at && t < step_at + 6 * hour_ms - 15 * second_ms) {
            r.max_during_run = std::max(r.max_during_run, x);
            r.min_during_run = std::min(r.min_during_run, x);
        }
        if (t == step_at + 5 * hour_ms) {
            r.baseline_during_run = out.baseline;
        }
        if (t > step_at + 6 * hour_ms + 30 * second_ms) {
            r.after_adapt_after = std::max(r.after_adapt_after, x);
        }
    }
    r.adaptations = d->adaptations();
    return r;
}

double as_is(double score)
{
    return score;
}

double ratio_distance(double score)
{
    return std::abs(score - 1);
}

} // namespace

TEST_CASE("hygiene: a sustained step becomes normal after adapt_after")
{
    for (const detector_kind kind :
         {detector_kind::mean_sigma, detector_kind::mad, detector_kind::ewma, detector_kind::seasonal}) {
        detector_spec spec;
        spec.kind = kind;
        spec.window = 1h;
        spec.lag = 5min;
        spec.sigma_floor = 1.0;
        spec.half_life = kind == detector_kind::seasonal ? 24h : 1h;
        spec.adapt_after = 6h;
        INFO("kind " << to_string(kind));

        const step_result adapting = run_step(spec, 3, as_is);
        CHECK(adapting.before_step < 3);
        CHECK(adapting.min_during_run > 30);
        // Held-out samples leave the baseline where it was.
        CHECK(std::abs(adapting.baseline_during_run - 100) < 1);
        CHECK(adapting.after_adapt_after < 3);
        CHECK(adapting.adaptations == 1);

        spec.adapt_after = 0ms;
        const step_result never = run_step(spec, 3, as_is);
        CHECK(never.min_during_run > 30);
        CHECK(never.after_adapt_after > 30);
        CHECK(never.adaptations == 0);
    }
}

TEST_CASE("hygiene: baseline kind adapts its trailing median")
{
    detector_spec spec;
    spec.kind = detector_kind::baseline;
    spec.window = 1h;
    spec.lag = 5min;
    spec.adapt_after = 6h;
    const step_result adapting = run_step(spec, 0.1, ratio_distance);
    CHECK(adapting.min_during_run > 0.4);
    CHECK(std::abs(adapting.baseline_during_run - 100) < 1);
    CHECK(adapting.after_adapt_after < 0.05);
    CHECK(adapting.adaptations == 1);

    spec.adapt_after = 0ms;
    const step_result never = run_step(spec, 0.1, ratio_distance);
    CHECK(never.after_adapt_after > 0.4);
}

TEST_CASE("hygiene: baseline frozen during a long run")
{
    detector_spec spec;
    spec.kind = detector_kind::mean_sigma;
    spec.window = 1h;
    spec.lag = 5min;
    spec.sigma_floor = 1;
    spec.adapt_after = 6h;
    auto d = make(spec);
    for (time_ms t = 0; t < 2 * hour_ms; t += 15 * second_ms) {
        d->learn(t, 100, false);
    }
    // Three hours held out, longer than the window: the baseline must neither empty nor age.
    for (time_ms t = 2 * hour_ms; t < 5 * hour_ms; t += 15 * second_ms) {
        const detector_output out = d->score(t, 300);
        REQUIRE(out.ready);
        CHECK(out.samples == 220);
        CHECK(out.score == 200.0);
        d->learn(t, 300, true);
    }
    // Back to normal: the pre-anomaly baseline is still there and slides on from there.
    for (time_ms t = 5 * hour_ms; t < 6 * hour_ms; t += 15 * second_ms) {
        const detector_output out = d->score(t, 100);
        REQUIRE(out.ready);
        CHECK(out.score == 0.0);
        CHECK(out.baseline == 100.0);
        d->learn(t, 100, false);
    }
    CHECK(d->adaptations() == 0);
}

TEST_CASE("hygiene: a learnt sample breaks the held-out run")
{
    detector_spec spec;
    spec.kind = detector_kind::mean_sigma;
    spec.window = 4h;
    spec.min_samples = 10;
    spec.sigma_floor = 1;
    spec.adapt_after = 1h;
    auto d = make(spec);
    for (time_ms t = 0; t < hour_ms; t += minute_ms) {
        d->learn(t, 100, false);
    }
    for (time_ms t = hour_ms; t < 3 * hour_ms; t += minute_ms) {
        // Every 50 minutes one sample is learnt, so no run lasts an hour.
        const bool break_run = (t / minute_ms) % 50 == 0;
        d->learn(t, break_run ? 100 : 150, !break_run);
    }
    CHECK(d->adaptations() == 0);
    const detector_output out = d->score(3 * hour_ms, 100);
    REQUIRE(out.ready);
    CHECK(out.score == 0.0);
    CHECK(out.samples == 62);
}

TEST_CASE("warm start: history is learnt at construction")
{
    auto history = std::make_shared<warm_start_data>();
    for (time_ms t = 0; t < hour_ms; t += 15 * second_ms) {
        history->samples.emplace_back(t, 42.0);
    }
    for (const detector_kind kind : {detector_kind::mean_sigma, detector_kind::ewma, detector_kind::mad,
                                     detector_kind::seasonal, detector_kind::baseline}) {
        detector_spec spec;
        spec.kind = kind;
        spec.warm_start = history;
        INFO("kind " << to_string(kind));
        auto d = make(spec);
        // Just before 01:00, so that the seasonal slot is still hour 0.
        const detector_output out = d->score(hour_ms - 10 * second_ms, 42.0);
        CHECK(out.ready);
        CHECK(out.baseline == 42.0);
    }
}

TEST_CASE("max_samples: memory stays bounded")
{
    for (const detector_kind kind : {detector_kind::mean_sigma, detector_kind::mad, detector_kind::baseline,
                                     detector_kind::ewma, detector_kind::seasonal}) {
        detector_spec spec;
        spec.kind = kind;
        spec.max_samples = 500;
        spec.window = 24h;
        spec.lag = 1h;
        spec.adapt_after = 48h;
        INFO("kind " << to_string(kind));
        auto d = make(spec);

        // 10x max_samples learnt, then 10x held out (also bounded), all within one window.
        std::size_t after_learning = 0;
        for (int i = 0; i < 10'000; ++i) {
            const time_ms t = i * second_ms;
            const bool held_out = i >= 5000;
            d->score(t, 1.0 + i % 7);
            d->learn(t, 1.0 + i % 7, held_out);
            if (i == 4999) {
                after_learning = d->memory_bytes();
            }
        }
        const std::size_t bytes = d->memory_bytes();
        // Three rings of at most 500 samples of 16 bytes and 500 sorted doubles, plus the object.
        CHECK(bytes <= 3 * 500 * 16 + 500 * 8 + 512);
        CHECK(after_learning <= bytes);
        if (kind == detector_kind::mean_sigma || kind == detector_kind::mad || kind == detector_kind::baseline) {
            CHECK(d->score(10'000 * second_ms, 1).samples == 500);
        }
    }
}

TEST_CASE("scores stay finite for extreme values")
{
    for (const detector_kind kind : {detector_kind::mean_sigma, detector_kind::mad, detector_kind::baseline,
                                     detector_kind::ewma, detector_kind::seasonal}) {
        for (const direction side : {direction::above, direction::below, direction::both}) {
            detector_spec spec;
            spec.kind = kind;
            spec.side = side;
            spec.min_samples = 2;
            spec.sigma_floor_ratio = 0;
            INFO("kind " << to_string(kind));
            auto d = make(spec);
            const double values[] = {1e308, -1e308, 1e-308, 0, 1e308, -1e308, 5e307, -5e307, 1e154, 0};
            time_ms t = 0;
            for (const double v : values) {
                t += 15 * second_ms;
                const detector_output out = d->score(t, v);
                CHECK(std::isfinite(out.score));
                d->learn(t, v, false);
            }
        }
    }
}

TEST_CASE("spec errors name the value")
{
    detector_spec spec;
    spec.kind = detector_kind::mean_sigma;
    spec.window = 5min;
    spec.lag = 5min;
    std::string error;
    CHECK(detail::make_level_detector(spec, error) == nullptr);
    CHECK(error.find("baseline_lag (5m)") != std::string::npos);

    spec.kind = detector_kind::ewma;
    spec.half_life = 0ms;
    error.clear();
    CHECK(detail::make_level_detector(spec, error) == nullptr);
    CHECK(error.find("half_life") != std::string::npos);
}
