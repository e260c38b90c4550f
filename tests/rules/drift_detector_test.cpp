// The psi and ks detectors: reference handling, warm-up, evaluation cadence and memory bounds.
// Their figures are checked against direct calls of the statistics in rules/drift.hpp. The
// reader of reference files is tested at the end.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <numbers>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "rules/detector.hpp"
#include "rules/detector_impl.hpp"
#include "rules/drift.hpp"
#include "rules/drift_reference.hpp"
#include "rules/file_read.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

constexpr time_ms second_ms = 1000;

// Normal variates from a seeded mt19937_64 by the Box-Muller transform. The standard fixes
// mt19937_64's output but not std::normal_distribution's, so this keeps the stream the same on
// every standard library.
class normal_source {
public:
    explicit normal_source(std::uint64_t seed) : engine_(seed) {}

    double next(double mean = 0, double sigma = 1)
    {
        if (spare_) {
            const double z = *spare_;
            spare_.reset();
            return mean + sigma * z;
        }
        // Uniform in (0, 1]: 53 random bits, shifted by one step so that log() never gets 0.
        const double u1 = (static_cast<double>(engine_() >> 11) + 1) * 0x1.0p-53;
        const double u2 = static_cast<double>(engine_() >> 11) * 0x1.0p-53;
        const double radius = std::sqrt(-2 * std::log(u1));
        const double angle = 2 * std::numbers::pi * u2;
        spare_ = radius * std::sin(angle);
        return mean + sigma * radius * std::cos(angle);
    }

private:
    std::mt19937_64 engine_;
    std::optional<double> spare_;
};

struct sample {
    time_ms t = 0;
    double value = 0;
    bool held_out = false;
};

// Values of the samples with from < t <= to, optionally without the held-out ones.
std::vector<double> values_between(const std::vector<sample>& samples, time_ms from, time_ms to,
                                   bool skip_held_out = false)
{
    std::vector<double> out;
    for (const auto& s : samples) {
        if (s.t > from && s.t <= to && !(skip_held_out && s.held_out)) {
            out.push_back(s.value);
        }
    }
    return out;
}

double expected_psi(const std::vector<double>& reference, const std::vector<double>& current, std::size_t bins,
                    double epsilon)
{
    const auto edges = quantile_edges(reference, bins);
    return psi(bin_shares(reference, edges), bin_shares(current, edges), epsilon);
}

detector_spec drift_spec(detector_kind kind, drift_reference reference, std::chrono::milliseconds window,
                         std::chrono::milliseconds reference_window)
{
    detector_spec spec;
    spec.kind = kind;
    spec.reference = reference;
    spec.window = window;
    spec.reference_window = reference_window;
    spec.min_samples = 30;
    spec.evaluate_every = 0ms;
    return spec;
}

std::unique_ptr<detector> make(const detector_spec& spec)
{
    std::string error;
    auto d = detail::make_drift_detector(spec, error);
    INFO(error);
    REQUIRE(d != nullptr);
    return d;
}

// Scores and then learns one sample, in the order the engine uses.
detector_output feed(detector& d, std::vector<sample>& history, time_ms t, double value, bool held_out = false)
{
    const auto out = d.score(t, value);
    d.learn(t, value, held_out);
    history.push_back({t, value, held_out});
    return out;
}

} // namespace

TEST_CASE("drift stationary normal stream scores low")
{
    // A reference of 500 samples or more keeps the sampling noise of ten bins well below 0.1.
    auto psi_spec = drift_spec(detector_kind::psi, drift_reference::trailing, 1000s, 1000s);
    psi_spec.evaluate_every = 100s;
    psi_spec.min_samples = 500;
    auto ks_spec = drift_spec(detector_kind::ks, drift_reference::trailing, 1000s, 1000s);
    ks_spec.evaluate_every = 100s;
    ks_spec.min_samples = 500;
    ks_spec.ks_figure = ks_score::p_value;
    auto psi_detector = make(psi_spec);
    auto ks_detector = make(ks_spec);

    normal_source source(20240611);
    std::vector<sample> psi_history;
    std::vector<sample> ks_history;
    std::vector<double> p_values;
    for (time_ms i = 1; i <= 6000; ++i) {
        const time_ms t = i * second_ms;
        const double v = source.next(50, 5);
        const auto psi_out = feed(*psi_detector, psi_history, t, v);
        const auto ks_out = feed(*ks_detector, ks_history, t, v);
        REQUIRE(psi_out.ready == ks_out.ready);
        if (i % 100 == 0 && psi_out.ready) {
            INFO("t=" << i << "s psi=" << psi_out.score << " p=" << ks_out.score << " D=" << ks_out.secondary);
            CHECK(psi_out.score < 0.1);
            CHECK(ks_out.score > 0.01);
            CHECK(ks_out.secondary < 0.1);
            p_values.push_back(ks_out.score);
        }
    }
    // Ready from 1500 s, when the reference (t - 2000 s, t - 1000 s] holds 500 samples.
    REQUIRE(p_values.size() >= 40);
    std::sort(p_values.begin(), p_values.end());
    CHECK(p_values[p_values.size() / 2] > 0.2);
}

TEST_CASE("drift one sigma shift detected within window")
{
    const std::chrono::milliseconds window = 500s;
    auto psi_spec = drift_spec(detector_kind::psi, drift_reference::trailing, window, 1000s);
    psi_spec.evaluate_every = 10s;
    psi_spec.min_samples = 300;
    auto ks_spec = drift_spec(detector_kind::ks, drift_reference::trailing, window, 1000s);
    ks_spec.evaluate_every = 10s;
    ks_spec.min_samples = 300;
    auto psi_detector = make(psi_spec);
    auto ks_detector = make(ks_spec);

    normal_source source(7);
    const time_ms shift_at = 3000 * second_ms;
    std::optional<time_ms> psi_crossed;
    std::optional<time_ms> d_crossed;
    std::vector<sample> psi_history;
    std::vector<sample> ks_history;
    for (time_ms i = 1; i <= 4000; ++i) {
        const time_ms t = i * second_ms;
        const double v = source.next(t > shift_at ? 1.0 : 0.0, 1.0);
        const auto psi_out = feed(*psi_detector, psi_history, t, v);
        const auto ks_out = feed(*ks_detector, ks_history, t, v);
        if (t <= shift_at) {
            INFO("before the shift, t=" << i << "s");
            CHECK(psi_out.score < 0.25);
            CHECK(ks_out.score < 0.2);
            continue;
        }
        if (!psi_crossed && psi_out.ready && psi_out.score > 0.25) {
            psi_crossed = t;
        }
        if (!d_crossed && ks_out.ready && ks_out.score > 0.2) {
            d_crossed = t;
        }
    }
    REQUIRE(psi_crossed);
    REQUIRE(d_crossed);
    CHECK(*psi_crossed - shift_at <= window.count());
    CHECK(*d_crossed - shift_at <= window.count());
}

TEST_CASE("drift trailing figures equal direct statistics")
{
    const std::chrono::milliseconds window = 200s;
    const std::chrono::milliseconds reference_window = 300s;
    auto psi_spec = drift_spec(detector_kind::psi, drift_reference::trailing, window, reference_window);
    psi_spec.bins = 8;
    auto ks_spec = drift_spec(detector_kind::ks, drift_reference::trailing, window, reference_window);
    auto p_spec = ks_spec;
    p_spec.ks_figure = ks_score::p_value;
    auto psi_detector = make(psi_spec);
    auto ks_detector = make(ks_spec);
    auto p_detector = make(p_spec);

    normal_source source(99);
    std::mt19937_64 gaps(5);
    std::vector<sample> history;
    std::vector<sample> unused;
    time_ms t = 0;
    int checked = 0;
    for (int i = 0; i < 1500; ++i) {
        // Uneven spacing of 0.5 s to 1.5 s, with a mean shift after 900 samples.
        t += 500 + static_cast<time_ms>(gaps() % 1001);
        const double v = source.next(i > 900 ? 0.7 : 0.0, 1.0);
        const auto psi_out = feed(*psi_detector, history, t, v);
        const auto ks_out = feed(*ks_detector, unused, t, v);
        const auto p_out = feed(*p_detector, unused, t, v);
        if (!psi_out.ready || i % 25 != 0) {
            continue;
        }
        const auto current = values_between(history, t - window.count(), t);
        const auto reference =
            values_between(history, t - window.count() - reference_window.count(), t - window.count());
        INFO("sample " << i);
        CHECK(psi_out.samples == reference.size());
        CHECK(psi_out.current_samples == current.size());
        CHECK(psi_out.score == expected_psi(reference, current, 8, psi_spec.epsilon));
        CHECK(std::isnan(psi_out.secondary));
        CHECK(std::isnan(psi_out.baseline));
        CHECK(std::isnan(psi_out.scale));

        const auto ks = ks_2samp(reference, current);
        REQUIRE(ks);
        CHECK(ks_out.score == ks->statistic);
        CHECK(ks_out.secondary == ks->p_value);
        CHECK(p_out.score == ks->p_value);
        CHECK(p_out.secondary == ks->statistic);
        ++checked;
    }
    CHECK(checked > 40);
}

TEST_CASE("drift fixed reference is the first reference window")
{
    const std::chrono::milliseconds window = 100s;
    const std::chrono::milliseconds reference_window = 400s;
    auto spec = drift_spec(detector_kind::ks, drift_reference::fixed, window, reference_window);
    auto psi_spec = drift_spec(detector_kind::psi, drift_reference::fixed, window, reference_window);
    auto d = make(spec);
    auto psi_detector = make(psi_spec);

    normal_source source(3);
    std::vector<sample> history;
    std::vector<sample> unused;
    const time_ms first = 10 * second_ms;
    for (time_ms i = 0; i < 2000; ++i) {
        const time_ms t = first + i * second_ms;
        const double v = source.next(i > 1000 ? 2.0 : 0.0, 1.0);
        const auto out = feed(*d, history, t, v);
        const auto psi_out = feed(*psi_detector, unused, t, v);

        // The reference contains the samples of [first, first + 400 s). The current window
        // starts with the first sample after them and needs min_samples of its own.
        const bool expect_ready = t >= first + reference_window.count() + 29 * second_ms;
        INFO("t=" << t);
        REQUIRE(out.ready == expect_ready);
        if (!out.ready || i % 50 != 0) {
            continue;
        }
        const auto reference = values_between(history, first - 1, first + reference_window.count() - 1);
        const auto current =
            values_between(history, std::max(t - window.count(), first + reference_window.count() - 1), t);
        REQUIRE(reference.size() == 400);
        CHECK(out.samples == 400);
        CHECK(out.current_samples == current.size());
        const auto ks = ks_2samp(reference, current);
        REQUIRE(ks);
        CHECK(out.score == ks->statistic);
        CHECK(psi_out.score == expected_psi(reference, current, psi_spec.bins, psi_spec.epsilon));
    }
}

TEST_CASE("drift warm-up is not ready")
{
    auto spec = drift_spec(detector_kind::psi, drift_reference::trailing, 100s, 100s);
    spec.min_samples = 50;
    auto d = make(spec);
    std::vector<sample> history;

    // At 1 sample per second the first 100 s stay in the current window, so the reference is
    // empty until samples leave it.
    for (time_ms i = 1; i <= 100; ++i) {
        const auto out = feed(*d, history, i * second_ms, static_cast<double>(i % 7));
        INFO("t=" << i << "s");
        CHECK_FALSE(out.ready);
        CHECK(out.samples == 0);
        CHECK(out.current_samples == static_cast<std::size_t>(i));
    }
    // The reference reaches 50 samples when the sample of 150 s is scored.
    for (time_ms i = 101; i <= 160; ++i) {
        const auto out = feed(*d, history, i * second_ms, static_cast<double>(i % 7));
        INFO("t=" << i << "s samples=" << out.samples);
        CHECK(out.ready == (i >= 150));
    }
}

TEST_CASE("drift fixed reference waits for min_samples")
{
    auto spec = drift_spec(detector_kind::ks, drift_reference::fixed, 100s, 10s);
    spec.min_samples = 50;
    auto d = make(spec);
    std::vector<sample> history;

    // 10 samples fall in the first 10 s, so the reference goes on collecting until it holds 50
    // (the samples of 0 s to 49 s). Then the current window needs 50 samples of its own.
    for (time_ms i = 0; i < 99; ++i) {
        const auto out = feed(*d, history, i * second_ms, static_cast<double>(i % 5));
        INFO("t=" << i << "s");
        CHECK_FALSE(out.ready);
        CHECK(out.samples == std::min<std::size_t>(static_cast<std::size_t>(i), 50));
    }
    const auto out = feed(*d, history, 99 * second_ms, 1.0);
    CHECK(out.ready);
    CHECK(out.samples == 50);
    CHECK(out.current_samples == 50);
}

TEST_CASE("drift trailing reference excludes held-out samples")
{
    const std::chrono::milliseconds window = 100s;
    auto spec = drift_spec(detector_kind::ks, drift_reference::trailing, window, 1000s);
    auto with_held_out = make(spec);
    auto without_held_out = make(spec);

    normal_source source(11);
    std::vector<sample> history;
    std::vector<sample> unused;
    std::size_t held_out_count = 0;
    detector_output last;
    detector_output last_unheld;
    time_ms t = 0;
    for (time_ms i = 1; i <= 600; ++i) {
        t = i * second_ms;
        // Samples 200 s to 259 s drift far away and are held out, as a firing rule's would be.
        const bool drifting = i >= 200 && i < 260;
        const double v = drifting ? source.next(10, 1) : source.next();
        held_out_count += drifting ? 1 : 0;
        last = feed(*with_held_out, history, t, v, drifting);
        last_unheld = feed(*without_held_out, unused, t, v, false);
    }
    const auto reference = values_between(history, t - window.count() - 1000 * second_ms, t - window.count(), true);
    const auto current = values_between(history, t - window.count(), t);
    REQUIRE(last.ready);
    CHECK(last.samples == 500 - held_out_count);
    CHECK(last_unheld.samples == 500);
    const auto ks = ks_2samp(reference, current);
    REQUIRE(ks);
    CHECK(last.score == ks->statistic);
    // The held-out samples would have raised D if they had entered the reference.
    CHECK(last_unheld.score > last.score);
}

TEST_CASE("drift trailing reference outlasts a long held-out drift")
{
    auto spec = drift_spec(detector_kind::ks, drift_reference::trailing, 100s, 200s);
    auto d = make(spec);

    normal_source source(12);
    std::vector<sample> history;
    for (time_ms i = 1; i <= 400; ++i) {
        feed(*d, history, i * second_ms, source.next());
    }
    // Every later sample is held out. Without adapt_after the reference keeps its newest
    // min_samples normal samples, so the drift stays visible instead of warming up again.
    detector_output out;
    for (time_ms i = 401; i <= 1400; ++i) {
        out = feed(*d, history, i * second_ms, source.next(5, 1), true);
        INFO("t=" << i << "s");
        REQUIRE(out.ready);
    }
    CHECK(out.samples == 30);
    CHECK(out.score == 1.0);
    const auto ks = ks_2samp(values_between(history, 370 * second_ms, 400 * second_ms),
                             values_between(history, 1300 * second_ms, 1400 * second_ms));
    REQUIRE(ks);
    CHECK(out.secondary == ks->p_value);
}

TEST_CASE("drift evaluate_every keeps the figure between computations")
{
    auto spec = drift_spec(detector_kind::psi, drift_reference::trailing, 100s, 200s);
    spec.evaluate_every = 60s;
    auto d = make(spec);

    normal_source source(21);
    std::vector<sample> history;
    std::optional<time_ms> computed_at;
    double figure = 0;
    int computations = 0;
    for (time_ms i = 1; i <= 1000; ++i) {
        const time_ms t = i * second_ms;
        // A slowly rising mean, so that every fresh computation gives another figure.
        const auto out = feed(*d, history, t, source.next(static_cast<double>(i) / 300, 1));
        if (!out.ready) {
            continue;
        }
        if (!computed_at) {
            computed_at = t;
            figure = out.score;
            ++computations;
            continue;
        }
        INFO("t=" << i << "s, last computation at " << *computed_at / second_ms << "s");
        if (t - *computed_at < 60 * second_ms) {
            CHECK(out.score == figure);
            continue;
        }
        // Due again: the figure is that of the two windows as they stand now.
        const auto current = values_between(history, t - 100 * second_ms, t);
        const auto reference = values_between(history, t - 300 * second_ms, t - 100 * second_ms);
        CHECK(out.score == expected_psi(reference, current, spec.bins, spec.epsilon));
        CHECK(out.score != figure);
        computed_at = t;
        figure = out.score;
        ++computations;
    }
    CHECK(computations >= 10);
}

TEST_CASE("drift memory stays bounded by max_samples")
{
    auto spec = drift_spec(detector_kind::ks, drift_reference::trailing, 1h, 1h);
    spec.max_samples = 500;
    spec.evaluate_every = 1s;
    auto d = make(spec);

    normal_source source(1);
    std::vector<sample> unused;
    std::size_t memory_at_half = 0;
    const time_ms count = 10 * 500;
    for (time_ms i = 1; i <= count; ++i) {
        // Ten samples per second, so both windows would hold every sample without the cap.
        const auto out = feed(*d, unused, i * 100, source.next());
        CHECK(out.samples <= 500);
        CHECK(out.current_samples <= 500);
        if (i == count / 2) {
            memory_at_half = d->memory_bytes();
        }
        unused.clear();
    }
    // Per sample: 24 bytes in the current window, 16 in the reference and 8 in each buffer of
    // the computation.
    CHECK(d->memory_bytes() <= sizeof(void*) * 64 + 500 * 64);
    CHECK(d->memory_bytes() == memory_at_half);
    const auto out = d->score(count * 100 + 100, 0.0);
    CHECK(out.ready);
    CHECK(out.samples == 500);
    CHECK(out.current_samples == 500);
}

TEST_CASE("drift adapts after a sustained held-out shift")
{
    for (const auto reference : {drift_reference::fixed, drift_reference::trailing}) {
        auto spec = drift_spec(detector_kind::psi, reference, 200s, 400s);
        spec.adapt_after = 300s;
        auto d = make(spec);

        normal_source source(4);
        std::vector<sample> history;
        std::optional<time_ms> run_start;
        std::optional<time_ms> adapted_run_start;
        std::optional<time_ms> adapted_at;
        for (time_ms i = 1; i <= 2000; ++i) {
            const time_ms t = i * second_ms;
            const double v = source.next(i > 1000 ? 3.0 : 0.0, 1.0);
            const auto out = d->score(t, v);
            // The engine holds out a sample whose score meets the lowest tier.
            const bool held_out = out.ready && out.score > 0.25;
            d->learn(t, v, held_out);
            if (!held_out) {
                run_start.reset();
            } else if (!run_start) {
                run_start = t;
            }
            if (d->adaptations() == 1 && !adapted_at) {
                adapted_at = t;
                adapted_run_start = run_start;
            }
        }
        INFO("reference " << static_cast<int>(reference));
        REQUIRE(adapted_at);
        REQUIRE(adapted_run_start);
        CHECK(*adapted_run_start > 1000 * second_ms);
        CHECK(*adapted_at - *adapted_run_start == 300 * second_ms);
        CHECK(d->adaptations() == 1);
        const auto out = d->score(2001 * second_ms, source.next(3.0, 1.0));
        CHECK(out.ready);
        CHECK(out.score < 0.25);
    }
}

TEST_CASE("drift file reference of bins and of values")
{
    auto bins = std::make_shared<drift_reference_data>();
    bins->file = "bins.json";
    bins->edges = {-1, 0, 1};
    bins->shares = {0.5, 0.5};
    auto spec = drift_spec(detector_kind::psi, drift_reference::file, 100s, 100s);
    spec.reference_data = bins;
    spec.adapt_after = 10s;
    auto d = make(spec);

    std::vector<sample> history;
    detector_output out;
    for (time_ms i = 1; i <= 50; ++i) {
        // Three quarters of the values fall in the upper bin.
        out = feed(*d, history, i * second_ms, i % 4 == 0 ? -0.5 : 0.5, true);
    }
    REQUIRE(out.ready);
    CHECK(out.samples == 0);
    CHECK(out.current_samples == 50);
    const auto current = values_between(history, 0, 50 * second_ms);
    const std::vector<double> edges = {-1, 0, 1};
    CHECK(out.score == psi(bins->shares, bin_shares(current, edges), spec.epsilon));
    // A file reference does not adapt.
    CHECK(d->adaptations() == 0);

    auto values = std::make_shared<drift_reference_data>();
    values->file = "values.txt";
    normal_source source(8);
    for (int i = 0; i < 300; ++i) {
        values->values.push_back(source.next());
    }
    auto ks_spec = drift_spec(detector_kind::ks, drift_reference::file, 100s, 100s);
    ks_spec.reference_data = values;
    auto psi_spec = drift_spec(detector_kind::psi, drift_reference::file, 100s, 100s);
    psi_spec.reference_data = values;
    auto ks_detector = make(ks_spec);
    auto psi_detector = make(psi_spec);
    std::vector<sample> file_history;
    std::vector<sample> unused;
    detector_output ks_out;
    detector_output psi_out;
    for (time_ms i = 1; i <= 80; ++i) {
        const double v = source.next(0.5, 1);
        ks_out = feed(*ks_detector, file_history, i * second_ms, v);
        psi_out = feed(*psi_detector, unused, i * second_ms, v);
        CHECK(ks_out.ready == (i >= 30));
    }
    const auto file_current = values_between(file_history, 0, 80 * second_ms);
    const auto ks = ks_2samp(values->values, file_current);
    REQUIRE(ks);
    CHECK(ks_out.samples == 300);
    CHECK(ks_out.score == ks->statistic);
    CHECK(psi_out.score == expected_psi(values->values, file_current, psi_spec.bins, psi_spec.epsilon));
}

TEST_CASE("drift warm start fills both windows")
{
    auto history_data = std::make_shared<warm_start_data>();
    history_data->file = "history.csv";
    normal_source source(31);
    std::vector<sample> history;
    for (time_ms i = 1; i <= 600; ++i) {
        const double v = source.next();
        history_data->samples.emplace_back(i * second_ms, v);
        history.push_back({i * second_ms, v, false});
    }
    // Out of order and non-finite history is skipped.
    history_data->samples.emplace_back(300 * second_ms, 50.0);
    history_data->samples.emplace_back(601 * second_ms, std::numeric_limits<double>::quiet_NaN());

    auto spec = drift_spec(detector_kind::ks, drift_reference::trailing, 100s, 400s);
    spec.warm_start = history_data;
    auto d = make(spec);
    const auto out = feed(*d, history, 601 * second_ms, source.next());
    REQUIRE(out.ready);
    const auto reference = values_between(history, 101 * second_ms, 501 * second_ms);
    const auto current = values_between(history, 501 * second_ms, 601 * second_ms);
    CHECK(out.samples == 400);
    CHECK(out.current_samples == 100);
    const auto ks = ks_2samp(reference, current);
    REQUIRE(ks);
    CHECK(out.score == ks->statistic);
}

TEST_CASE("drift factory rejects unusable specs")
{
    std::string error;

    auto no_data = drift_spec(detector_kind::psi, drift_reference::file, 100s, 100s);
    CHECK(detail::make_drift_detector(no_data, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("reference_file"));

    auto bins_only = std::make_shared<drift_reference_data>();
    bins_only->file = "bins.json";
    bins_only->edges = {0, 1};
    bins_only->shares = {1};
    auto ks_bins = drift_spec(detector_kind::ks, drift_reference::file, 100s, 100s);
    ks_bins.reference_data = bins_only;
    CHECK(detail::make_drift_detector(ks_bins, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("bins.json") && Catch::Contains("raw values"));

    // One bin, or bins that all sit on one point, give a PSI of 0 whatever the values.
    auto psi_one_bin = drift_spec(detector_kind::psi, drift_reference::file, 100s, 100s);
    psi_one_bin.reference_data = bins_only;
    CHECK(detail::make_drift_detector(psi_one_bin, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("at least two shares"));
    auto flat = std::make_shared<drift_reference_data>();
    flat->file = "flat.json";
    flat->edges = {1, 1, 1};
    flat->shares = {0.5, 0.5};
    psi_one_bin.reference_data = flat;
    CHECK(detail::make_drift_detector(psi_one_bin, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("every edge at 1"));

    auto few = std::make_shared<drift_reference_data>();
    few->file = "few.txt";
    few->values = {1, 2, 3};
    auto ks_few = drift_spec(detector_kind::ks, drift_reference::file, 100s, 100s);
    ks_few.reference_data = few;
    CHECK(detail::make_drift_detector(ks_few, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("few.txt") && Catch::Contains("min_samples"));

    auto never_ready = drift_spec(detector_kind::ks, drift_reference::trailing, 100s, 100s);
    never_ready.min_samples = 200;
    never_ready.max_samples = 100;
    CHECK(detail::make_drift_detector(never_ready, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("max_samples"));

    auto no_window = drift_spec(detector_kind::psi, drift_reference::trailing, 0s, 100s);
    CHECK(detail::make_drift_detector(no_window, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("window"));

    auto level = drift_spec(detector_kind::mean_sigma, drift_reference::trailing, 100s, 100s);
    CHECK(detail::make_drift_detector(level, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("mean_sigma"));
}

// Reference files.

namespace {

std::optional<drift_reference_data> read_text(const test::temp_dir& dir, const std::string& name,
                                              const std::string& content, std::string& error)
{
    return read_drift_reference(dir.write(name, content), error);
}

} // namespace

TEST_CASE("drift reference reads JSON bins")
{
    test::temp_dir dir;
    std::string error;
    const auto data = read_text(dir, "bins.json", R"({"edges": [0, 1.5, 3, 3, 10], "shares": [0.25, 0.5, 0, 0.25]})",
                                error);
    INFO(error);
    REQUIRE(data);
    CHECK(data->edges == std::vector<double>{0, 1.5, 3, 3, 10});
    CHECK(data->shares == std::vector<double>{0.25, 0.5, 0, 0.25});
    CHECK(data->values.empty());
    CHECK_THAT(data->file, Catch::EndsWith("bins.json"));
}

TEST_CASE("drift reference reads JSON values")
{
    test::temp_dir dir;
    std::string error;
    const auto data = read_text(dir, "values.json", "\n  {\"values\": [1, -2.5, 3e2, 0]}\n", error);
    INFO(error);
    REQUIRE(data);
    CHECK(data->values == std::vector<double>{1, -2.5, 300, 0});
    CHECK(data->edges.empty());
    CHECK(data->shares.empty());
}

TEST_CASE("drift reference reads one number per line")
{
    test::temp_dir dir;
    std::string error;

    const auto plain = read_text(dir, "plain.txt", "1\n2.5\n\n-3e-2\n+4\n", error);
    INFO(error);
    REQUIRE(plain);
    CHECK(plain->values == std::vector<double>{1, 2.5, -0.03, 4});

    // A spreadsheet export: byte order mark, header line, CRLF line ends, no final newline.
    const auto csv = read_text(dir, "latency.csv", "\xEF\xBB\xBFlatency_ms\r\n12.5\r\n  13 \r\n14", error);
    INFO(error);
    REQUIRE(csv);
    CHECK(csv->values == std::vector<double>{12.5, 13, 14});
}

TEST_CASE("drift reference rejects hostile text")
{
    test::temp_dir dir;
    struct hostile_case {
        std::string name;
        std::string content;
        std::vector<std::string> expected;
    };
    const std::vector<hostile_case> cases = {
        {"nan.txt", "1\nnan\n3\n", {"nan.txt:2:", "not finite"}},
        {"inf.txt", "1\n2\n-inf\n", {"inf.txt:3:", "not finite"}},
        {"overflow.txt", "1e999\n", {"overflow.txt:1:", "out of the range"}},
        {"word.txt", "value\n1\nabc\n", {"word.txt:3:", "\"abc\" is not a number"}},
        {"typo.txt", "1.5x\n2\n", {"typo.txt:1:", "\"1.5x\" is not a number"}},
        {"two_fields.csv", "t,v\n1,2\n", {"two_fields.csv:2:", "more than one field"}},
        {"header_only.csv", "value\n", {"header_only.csv", "holds no values"}},
        {"empty.txt", "", {"empty.txt", "is empty"}},
        {"blank.txt", " \n\n\t\n", {"blank.txt", "is empty"}},
    };
    for (const auto& c : cases) {
        std::string error;
        INFO(c.name);
        CHECK_FALSE(read_text(dir, c.name, c.content, error));
        for (const auto& part : c.expected) {
            CHECK_THAT(error, Catch::Contains(part));
        }
    }
}

TEST_CASE("drift reference rejects hostile JSON")
{
    test::temp_dir dir;
    struct hostile_case {
        std::string name;
        std::string content;
        std::vector<std::string> expected;
    };
    const std::vector<hostile_case> cases = {
        {"nan.json", R"({"values": [1, "NaN"]})", {"nan.json", "values[1]", "string", "finite number"}},
        {"null.json", R"({"values": [1, null]})", {"values[1] is null"}},
        {"overflow.json", R"({"values": [1, 1e999]})", {"overflow.json"}},
        {"empty_values.json", R"({"values": []})", {"\"values\" is empty"}},
        {"not_array.json", R"({"values": 3})", {"\"values\" is number", "expected an array"}},
        {"lengths.json", R"({"edges": [0, 1, 2], "shares": [0.2, 0.3, 0.5]})",
         {"3 edges for 3 shares", "one more edge than shares"}},
        {"sum.json", R"({"edges": [0, 1, 2], "shares": [0.5, 0.6]})", {"sum to 1.1", "within 1e-06"}},
        {"negative.json", R"({"edges": [0, 1, 2], "shares": [1.5, -0.5]})", {"shares[1]", "negative"}},
        {"descending.json", R"({"edges": [0, 2, 1], "shares": [0.5, 0.5]})", {"edges[2]", "ascending"}},
        {"no_shares.json", R"({"edges": [0, 1]})", {"\"shares\" is missing"}},
        {"both.json", R"({"values": [1], "edges": [0, 1], "shares": [1]})", {"both"}},
        {"unknown.json", R"({"value": [1]})", {"unknown field \"value\""}},
        {"array.json", "[1, 2, 3]", {"is array"}},
        {"syntax.json", "{\"values\": [1,\n 2,,]}", {"invalid JSON", "line 2"}},
        {"deep.json", std::string(100000, '['), {"invalid JSON"}},
    };
    for (const auto& c : cases) {
        std::string error;
        INFO(c.name);
        CHECK_FALSE(read_text(dir, c.name, c.content, error));
        INFO(error);
        CHECK_THAT(error, Catch::Contains(c.name));
        for (const auto& part : c.expected) {
            CHECK_THAT(error, Catch::Contains(part));
        }
    }
}

TEST_CASE("drift reference rejects special and huge files")
{
    test::temp_dir dir;
    std::string error;

    CHECK_FALSE(read_drift_reference((dir.path() / "missing.txt").string(), error));
    CHECK_THAT(error, Catch::Contains("missing.txt") && Catch::Contains("No such file"));

    CHECK_FALSE(read_drift_reference(dir.path().string(), error));
    CHECK_THAT(error, Catch::Contains("folder"));

    const auto fifo = (dir.path() / "fifo.txt").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_FALSE(read_drift_reference(fifo, error));
    CHECK_THAT(error, Catch::Contains("fifo.txt") && Catch::Contains("FIFO"));

    CHECK_FALSE(read_drift_reference("/dev/zero", error));
    CHECK_THAT(error, Catch::Contains("character device"));

    // A sparse file larger than the limit is rejected before anything is read.
    const auto huge = dir.write("huge.txt", "1\n");
    std::filesystem::resize_file(huge, max_config_file_bytes + 1);
    CHECK_FALSE(read_drift_reference(huge, error));
    CHECK_THAT(error, Catch::Contains("huge.txt") && Catch::Contains("bytes"));

    // Within the byte limit but over the count limit.
    std::string many;
    many.reserve(2 * (max_drift_reference_values + 1));
    for (std::size_t i = 0; i <= max_drift_reference_values; ++i) {
        many += "0\n";
    }
    CHECK_FALSE(read_text(dir, "many.txt", many, error));
    CHECK_THAT(error, Catch::Contains("many.txt:100001:") && Catch::Contains("more than 100000 values"));
}
