#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "rules/window.hpp"

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

transform make_transform(transform_kind kind, milliseconds window, bool extrapolate = true)
{
    transform x;
    x.kind = kind;
    x.window = window;
    x.extrapolate = extrapolate;
    return x;
}

// Counter samples every 15 s with a restart between t=30s and t=45s.
const double counter_values[] = {100, 110, 120, 5, 15, 25, 35, 45};

std::vector<std::optional<double>> run(const transform& x, std::span<const double> values, time_ms step)
{
    sample_window w;
    std::vector<double> scratch;
    std::vector<std::optional<double>> out;
    for (std::size_t i = 0; i < values.size(); ++i) {
        const time_ms t = static_cast<time_ms>(i) * step;
        w.push(t, values[i], x.window);
        out.push_back(evaluate_window(w, x, t, scratch));
    }
    return out;
}

} // namespace

TEST_CASE("window: raw increase across a counter reset")
{
    const auto out = run(make_transform(transform_kind::increase, 1min, false), counter_values, 15'000);
    CHECK_FALSE(out[0]);
    REQUIRE(out[5]);
    CHECK(*out[5] == 35); // t=75s: 10 + 5 + 10 + 10
    REQUIRE(out[6]);
    CHECK(*out[6] == 35); // t=90s
    REQUIRE(out[7]);
    CHECK(*out[7] == 40); // t=105s: the reset pair (30s, 45s) is outside [45s, 105s]
    for (std::size_t i = 1; i < 8; ++i) {
        REQUIRE(out[i]);
        CHECK(*out[i] >= 0);
        CHECK(*out[i] <= 50);
    }
}

TEST_CASE("window: extrapolated increase stays bounded across a counter reset")
{
    const auto out = run(make_transform(transform_kind::increase, 1min, true), counter_values, 15'000);
    for (std::size_t i = 1; i < 8; ++i) {
        REQUIRE(out[i]);
        CHECK(*out[i] >= 0);
        CHECK(*out[i] <= 60);
    }
    // t=45s: samples span 45 s of the 60 s window; the start gap (15 s) is within 1.1 sample
    // intervals, so the increase of 25 is extrapolated to the full minute.
    CHECK(*out[3] == Approx(25.0 * 60 / 45));
    // A window covered edge to edge needs no extrapolation.
    CHECK(*out[5] == Approx(35));
}

TEST_CASE("window: extrapolation stops where a counter would reach zero")
{
    // A counter that started 2 s before its first sample: to_zero = 10 s * 2 / 10 = 2 s.
    transform x = make_transform(transform_kind::increase, 1min, true);
    sample_window w;
    std::vector<double> scratch;
    w.push(30'000, 2, x.window);
    w.push(40'000, 12, x.window);
    const auto v = evaluate_window(w, x, 40'000, scratch);
    REQUIRE(v);
    CHECK(*v == Approx(10.0 * 12 / 10));
}

TEST_CASE("window: rate per second")
{
    sample_window w;
    std::vector<double> scratch;
    const transform raw = make_transform(transform_kind::rate, 1min, false);
    const transform extrapolated = make_transform(transform_kind::rate, 1min, true);
    for (int i = 0; i <= 4; ++i) {
        w.push(i * 15'000, i * 150.0, raw.window);
    }
    CHECK(*evaluate_window(w, raw, 60'000, scratch) == Approx(10));
    CHECK(*evaluate_window(w, extrapolated, 60'000, scratch) == Approx(10));
}

TEST_CASE("window: delta does not correct for resets")
{
    const auto out = run(make_transform(transform_kind::delta, 1min, false), counter_values, 15'000);
    REQUIRE(out[5]);
    CHECK(*out[5] == 25 - 110);
}

TEST_CASE("window: both ends are inclusive")
{
    sample_window w;
    std::vector<double> scratch;
    const transform x = make_transform(transform_kind::increase, 1min, false);
    w.push(0, 1, x.window);
    w.push(60'000, 4, x.window);
    auto v = evaluate_window(w, x, 60'000, scratch);
    REQUIRE(v);
    CHECK(*v == 3);
    // One millisecond later the first sample has left the window.
    w.push(60'001, 5, x.window);
    CHECK(w.size() == 2);
    v = evaluate_window(w, x, 60'001, scratch);
    REQUIRE(v);
    CHECK(*v == 1);
}

TEST_CASE("window: fewer than two samples give no rate")
{
    sample_window w;
    std::vector<double> scratch;
    const transform x = make_transform(transform_kind::rate, 1min);
    CHECK_FALSE(evaluate_window(w, x, 0, scratch));
    w.push(0, 1, x.window);
    CHECK_FALSE(evaluate_window(w, x, 0, scratch));
    w.push(120'000, 2, x.window);
    CHECK_FALSE(evaluate_window(w, x, 120'000, scratch));
}

TEST_CASE("window: aggregations skip NaN")
{
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double values[] = {3, 5, nan, 2};
    sample_window w;
    std::vector<double> scratch;
    for (int i = 0; i < 4; ++i) {
        w.push(i * 10'000, values[i], 1min);
    }
    auto at = [&](transform_kind kind, double q = 0.5) {
        transform x = make_transform(kind, 1min);
        x.quantile = q;
        return evaluate_window(w, x, 30'000, scratch);
    };
    CHECK(*at(transform_kind::avg) == Approx(3.3333).epsilon(1e-4));
    CHECK(*at(transform_kind::min) == 2);
    CHECK(*at(transform_kind::max) == 5);
    CHECK(*at(transform_kind::quantile, 0.5) == 3);
    CHECK(*at(transform_kind::quantile, 0) == 2);
    CHECK(*at(transform_kind::quantile, 1) == 5);
    CHECK(*at(transform_kind::quantile, 0.75) == Approx(4));
    CHECK_FALSE(at(transform_kind::none));
}

TEST_CASE("window: only NaN gives no value")
{
    sample_window w;
    std::vector<double> scratch;
    w.push(0, std::numeric_limits<double>::quiet_NaN(), 1min);
    CHECK_FALSE(evaluate_window(w, make_transform(transform_kind::avg, 1min), 0, scratch));
    CHECK_FALSE(evaluate_window(w, make_transform(transform_kind::max, 1min), 0, scratch));
}

TEST_CASE("window: ring buffer keeps order while growing and evicting")
{
    sample_window w;
    for (int i = 0; i < 1000; ++i) {
        w.push(i * 1'000, i, 100s);
    }
    REQUIRE(w.size() == 101);
    for (std::size_t i = 0; i < w.size(); ++i) {
        CHECK(w[i].t == static_cast<time_ms>(899 + i) * 1'000);
    }
    const std::size_t bytes = w.capacity_bytes();
    for (int i = 1000; i < 5000; ++i) {
        w.push(i * 1'000, i, 100s);
    }
    CHECK(w.capacity_bytes() == bytes);
}

TEST_CASE("window: sample count is capped")
{
    sample_window w;
    const auto n = static_cast<int>(sample_window::max_samples) + 10;
    for (int i = 0; i < n; ++i) {
        w.push(i, i, 1h);
    }
    CHECK(w.size() == sample_window::max_samples);
    CHECK(w[0].t == 10);
}
