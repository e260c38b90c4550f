// Saving and loading detector state: a loaded detector continues exactly where the saved one
// stood, and a blob that is truncated, corrupt, oversized or of another kind is refused
// without touching the detector.

#include "rules/detector.hpp"
#include "rules/state_codec.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace tocsin;
using namespace std::chrono_literals;

namespace {

constexpr time_ms minute_ms = 60'000;
// 2024-01-01T00:00:00Z.
constexpr time_ms start_ms = 1'704'067'200'000;

std::unique_ptr<detector> make(const detector_spec& spec)
{
    std::string error;
    auto d = make_detector(spec, error);
    INFO("error: " << error);
    REQUIRE(d != nullptr);
    return d;
}

std::string saved(const detector& d)
{
    std::string out;
    d.save(out);
    return out;
}

// A deterministic series with noise, a level shift from sample 300 to 420 and a spike at 500.
double value_at(std::int64_t i)
{
    double v = 100 + 5 * std::sin(static_cast<double>(i) * 0.37) + 2 * std::cos(static_cast<double>(i) * 1.3);
    if (i >= 300 && i < 420) {
        v += 60;
    }
    if (i == 500) {
        v += 200;
    }
    return v;
}

// Feeds samples [from, to) a minute apart, holding out the ones scored at 3 or more, as the
// engine does while a rule fires.
void feed(detector& d, std::int64_t from, std::int64_t to)
{
    for (std::int64_t i = from; i < to; ++i) {
        const time_ms t = start_ms + i * minute_ms;
        const double v = value_at(i);
        const detector_output out = d.score(t, v);
        d.learn(t, v, out.ready && out.score >= 3);
    }
}

bool same_bits(double a, double b)
{
    return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

// Scores and learns the same samples on both detectors and requires identical outputs.
void require_same_outputs(detector& a, detector& b, std::int64_t from, std::int64_t to)
{
    for (std::int64_t i = from; i < to; ++i) {
        const time_ms t = start_ms + i * minute_ms;
        const double v = value_at(i);
        const detector_output x = a.score(t, v);
        const detector_output y = b.score(t, v);
        INFO("sample " << i);
        REQUIRE(x.ready == y.ready);
        REQUIRE(same_bits(x.score, y.score));
        REQUIRE(same_bits(x.baseline, y.baseline));
        REQUIRE(same_bits(x.scale, y.scale));
        REQUIRE(same_bits(x.secondary, y.secondary));
        REQUIRE(x.samples == y.samples);
        REQUIRE(x.current_samples == y.current_samples);
        const bool held_out = x.ready && x.score >= 3;
        a.learn(t, v, held_out);
        b.learn(t, v, held_out);
    }
    REQUIRE(a.adaptations() == b.adaptations());
}

struct named_spec {
    const char* name;
    detector_spec spec;
};

std::vector<named_spec> specs()
{
    std::vector<named_spec> out;
    detector_spec base;
    base.min_samples = 20;
    base.window = 2h;
    base.lag = 5min;
    base.adapt_after = 30min;

    detector_spec s = base;
    out.push_back({"mean_sigma", s});

    s = base;
    s.kind = detector_kind::mad;
    out.push_back({"mad", s});

    s = base;
    s.kind = detector_kind::baseline;
    s.statistic = baseline_statistic::median;
    out.push_back({"baseline median", s});

    s = base;
    s.kind = detector_kind::baseline;
    s.statistic = baseline_statistic::mean;
    s.compare = baseline_compare::difference;
    out.push_back({"baseline mean", s});

    s = base;
    s.kind = detector_kind::baseline;
    s.fixed_value = 100;
    out.push_back({"baseline fixed", s});

    s = base;
    s.kind = detector_kind::ewma;
    s.half_life = 20min;
    out.push_back({"ewma", s});

    s = base;
    s.kind = detector_kind::seasonal;
    s.min_samples = 3;
    s.half_life = 24h;
    s.timezone = "Europe/Berlin";
    out.push_back({"seasonal hour_of_day", s});

    s.period = season::hour_of_week;
    s.min_samples = 1;
    out.push_back({"seasonal hour_of_week", s});

    detector_spec drift = base;
    drift.kind = detector_kind::psi;
    drift.window = 1h;
    drift.reference_window = 3h;
    drift.evaluate_every = 10min;
    drift.adapt_after = 2h;
    drift.bins = 5;
    out.push_back({"psi trailing", drift});

    s = drift;
    s.reference = drift_reference::fixed;
    out.push_back({"psi fixed", s});

    s = drift;
    s.kind = detector_kind::ks;
    s.ks_figure = ks_score::p_value;
    out.push_back({"ks trailing", s});

    s = drift;
    s.kind = detector_kind::ks;
    s.reference = drift_reference::file;
    auto data = std::make_shared<drift_reference_data>();
    data->file = "reference.txt";
    for (int i = 0; i < 200; ++i) {
        data->values.push_back(100 + 5 * std::sin(i * 0.21));
    }
    s.reference_data = data;
    out.push_back({"ks file", s});
    return out;
}

} // namespace

TEST_CASE("detector state: a loaded detector continues bit for bit")
{
    for (const auto& [name, spec] : specs()) {
        // Stops mid-shift (inside a held-out run) and after it, to cover both.
        for (const std::int64_t stop : {std::int64_t{350}, std::int64_t{460}}) {
            INFO(name << ", saved after sample " << stop);
            auto original = make(spec);
            feed(*original, 0, stop);
            const std::string blob = saved(*original);

            auto restored = make(spec);
            REQUIRE(restored->load(blob));
            CHECK(saved(*restored) == blob);
            CHECK(restored->adaptations() == original->adaptations());
            require_same_outputs(*original, *restored, stop, 700);
        }
    }
}

TEST_CASE("detector state: the shift and the spike run as without a restart")
{
    // The shift up and the return to the old level each adapt once, and the spike then
    // scores high, as they would without the restart.
    detector_spec spec;
    spec.min_samples = 20;
    spec.window = 2h;
    spec.adapt_after = 30min;
    auto original = make(spec);
    feed(*original, 0, 350);
    auto restored = make(spec);
    REQUIRE(restored->load(saved(*original)));
    feed(*restored, 350, 500);
    CHECK(restored->adaptations() == 2);
    const detector_output spike = restored->score(start_ms + 500 * minute_ms, value_at(500));
    CHECK(spike.ready);
    CHECK(spike.score > 10);
}

TEST_CASE("detector state: a fresh detector saves and loads too")
{
    for (const auto& [name, spec] : specs()) {
        INFO(name);
        auto fresh = make(spec);
        const std::string blob = saved(*fresh);
        auto other = make(spec);
        REQUIRE(other->load(blob));
        CHECK(saved(*other) == blob);
    }
}

TEST_CASE("detector state: truncated, extended or corrupt blobs leave the detector as it was")
{
    for (const auto& [name, spec] : specs()) {
        INFO(name);
        auto source = make(spec);
        feed(*source, 0, 200);
        const std::string blob = saved(*source);

        auto target = make(spec);
        feed(*target, 0, 50);
        const std::string before = saved(*target);

        // Every proper prefix is refused.
        for (std::size_t n = 0; n < blob.size(); ++n) {
            INFO("prefix of " << n << " of " << blob.size() << " bytes");
            REQUIRE_FALSE(target->load(std::string_view(blob).substr(0, n)));
        }
        REQUIRE(saved(*target) == before);

        // A byte past the end is refused.
        REQUIRE_FALSE(target->load(blob + '\0'));
        REQUIRE(saved(*target) == before);

        // A flip of any bit either is refused and changes nothing, or loads a state that
        // saves back to the flipped blob; no flip may crash (the sanitizer build checks).
        for (std::size_t i = 0; i < blob.size(); ++i) {
            for (int bit : {0, 7}) {
                std::string flipped = blob;
                flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
                auto probe = make(spec);
                feed(*probe, 0, 50);
                if (probe->load(flipped)) {
                    INFO("byte " << i << " bit " << bit);
                    CHECK(saved(*probe) == flipped);
                    // A loaded state must score without trouble.
                    const detector_output out = probe->score(start_ms + 1'000 * minute_ms, 100);
                    CHECK_FALSE(std::isnan(out.score));
                } else {
                    REQUIRE(saved(*probe) == before);
                }
            }
        }
    }
}

TEST_CASE("detector state: a blob of another kind or version is refused")
{
    const std::vector<named_spec> all = specs();
    for (const auto& [from_name, from_spec] : all) {
        auto from = make(from_spec);
        feed(*from, 0, 100);
        const std::string blob = saved(*from);
        for (const auto& [to_name, to_spec] : all) {
            if (std::string(from_name) == to_name) {
                continue;
            }
            INFO(from_name << " into " << to_name);
            auto to = make(to_spec);
            CHECK_FALSE(to->load(blob));
        }
        std::string later_version = blob;
        later_version[1] = static_cast<char>(later_version[1] + 1);
        auto same = make(from_spec);
        CHECK_FALSE(same->load(later_version));
    }
}

TEST_CASE("detector state: more samples than max_samples are refused")
{
    detector_spec large;
    large.min_samples = 5;
    large.window = 24h;
    auto source = make(large);
    feed(*source, 0, 200);
    const std::string blob = saved(*source);

    detector_spec small = large;
    small.max_samples = 50;
    auto target = make(small);
    CHECK_FALSE(target->load(blob));
    CHECK(make(large)->load(blob));
}

TEST_CASE("detector state: a huge count is refused before anything is allocated")
{
    detector_spec spec;
    spec.max_samples = std::numeric_limits<std::size_t>::max();
    std::string blob;
    detail::state_writer w(blob);
    w.header(detail::state_tag::mean_sigma, 1, 0);
    w.count(std::uint64_t{1} << 60);
    auto d = make(spec);
    CHECK_FALSE(d->load(blob));
}

TEST_CASE("detector state: a NaN sample value or time out of range is refused")
{
    detector_spec spec;
    spec.kind = detector_kind::mad;
    spec.lag = 0s;

    std::string nan_value;
    {
        detail::state_writer w(nan_value);
        w.header(detail::state_tag::mad, 1, 0);
        w.count(1);
        w.i64(start_ms);
        w.f64(std::numeric_limits<double>::quiet_NaN());
        w.count(0);      // pending
        w.boolean(false); // no held-out run
        w.count(0);
        w.i64(0);       // paused
        w.u64(0);       // adaptations
    }
    CHECK_FALSE(make(spec)->load(nan_value));

    std::string far_time;
    {
        detail::state_writer w(far_time);
        w.header(detail::state_tag::mad, 1, 0);
        w.count(1);
        w.i64(std::numeric_limits<std::int64_t>::max());
        w.f64(1);
        w.count(0);
        w.boolean(false);
        w.count(0);
        w.i64(0);
        w.u64(0);
    }
    CHECK_FALSE(make(spec)->load(far_time));

    // The same layout with a sane sample loads, so the two above fail for their value.
    std::string good;
    {
        detail::state_writer w(good);
        w.header(detail::state_tag::mad, 1, 0);
        w.count(1);
        w.i64(start_ms);
        w.f64(1);
        w.count(0);
        w.boolean(false);
        w.count(0);
        w.i64(0);
        w.u64(0);
    }
    CHECK(make(spec)->load(good));
}
