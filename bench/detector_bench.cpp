// Detector benchmark: CPU time per sample and memory per series of each detector type.
//
// Every series gets a seeded stream of the same shape, generated before any timing. Its value
// is a level between 100 and 140, plus a daily cycle of 20% of the level, plus normal noise
// with a standard deviation of 5% of the level. About one sample in 500 adds a spike of 150%
// of the level.
// Samples are fed in rounds, one sample of every series per round, so each call touches the
// state of another series, as in the daemon. For each detector type it measures:
//
//   alone   make_detector() per series, then score() and learn() for every sample. A sample
//           whose score meets the rule's warning tier is learnt as held out, as the engine does.
//   engine  a rule set with one dynamic rule of that type, the samples fed through
//           engine::ingest() on a manual clock, with take_events() after each round (tick() is
//           not called). A static rule on the same stream is printed as the reference line.
//   memory  memory_bytes() averaged over the series after the stream, and the engine's
//           stats().detector_bytes and stats().state_bytes divided by its series.
//
// The specs come from rule YAML through the rule loader, so every key not set here has the
// loader's default (for seasonal, half_life 7d for hour_of_day and 28d for hour_of_week).
// psi and ks compute their figure only once evaluate_every (the default 1m) has passed, so
// most samples only update the windows. A second run with evaluate_every 0 over
// --compute-series series gives the CPU time of one computation.
//
// NOTE: a psi or ks computation costs more as the reference grows (ks computes an exact p-value
// in O(R * W) for up to 10,000 samples). With the default 24h trailing reference at 15 s
// spacing, streams longer than a few hours take hours of CPU time over thousands of series, so
// measure psi and ks with fewer series (--type psi --type ks --series 10).
//
// Times are process CPU time (clock_gettime with CLOCK_PROCESS_CPUTIME_ID), so time spent
// waiting for a core on a shared machine does not count. Build in Release and run:
//
//   cmake --build BUILD --target detector_bench
//   BUILD/bench/detector_bench [--series N] [--samples N] [--type NAME]... [--window 1h]
//                              [--spacing-ms 15000] [--compute-series N] [--seed N]

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numbers>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rules/detector.hpp"
#include "rules/duration.hpp"
#include "rules/engine.hpp"
#include "rules/rule_loader.hpp"

using namespace tocsin;

namespace {

// The detector configurations measured. `dynamic_keys` is the body of the rule's `dynamic:`
// block without `window`, which --window sets for the types that read it.
struct bench_type {
    const char* name;
    const char* dynamic_keys;
    bool reads_window;
    double warning_above; // the rule's only tier is warning "> warning_above"
};

// Sigma-like scores fire at 3 sigma and psi and ks at 0.2. A baseline ratio fires at 1.8 times
// the baseline, which only the spikes reach.
constexpr bench_type all_types[] = {
    {"mean_sigma", "type: mean_sigma", true, 3},
    {"ewma", "type: ewma", false, 3},
    {"mad", "type: mad", true, 3},
    {"seasonal_hour_of_day", "type: seasonal, season: hour_of_day", false, 3},
    {"seasonal_hour_of_week", "type: seasonal, season: hour_of_week", false, 3},
    {"baseline_median", "type: baseline, statistic: median", true, 1.8},
    {"baseline_mean", "type: baseline, statistic: mean", true, 1.8},
    {"baseline_fixed", "type: baseline, value: 120", true, 1.8},
    {"psi", "type: psi", true, 0.2},
    {"ks", "type: ks", true, 0.2},
};

// The static reference rule fires above this value, which only the spikes reach.
constexpr double static_warning_above = 180;

constexpr time_ms stream_start_ms = 1'700'000'000'000; // 2023-11-14T22:13:20Z

struct options {
    std::size_t series = 10'000;
    std::size_t samples = 1'000; // per series
    std::vector<const bench_type*> types;
    std::chrono::milliseconds window{std::chrono::hours(1)};
    std::int64_t spacing_ms = 15'000;
    std::size_t compute_series = 100;
    std::uint64_t seed = 1;
};

// ---- Command line ----

bool parse_count(const char* text, std::uint64_t& out)
{
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0' || value == 0 || text[0] == '-') {
        return false;
    }
    out = value;
    return true;
}

const bench_type* find_type(std::string_view name)
{
    for (const bench_type& type : all_types) {
        if (name == type.name) {
            return &type;
        }
    }
    return nullptr;
}

void print_usage()
{
    std::string names;
    for (const bench_type& type : all_types) {
        names += names.empty() ? "" : ", ";
        names += type.name;
    }
    std::fprintf(stderr,
                 "usage: detector_bench [--series N] [--samples N] [--type NAME]... [--window DURATION]\n"
                 "                      [--spacing-ms N] [--compute-series N] [--seed N]\n"
                 "  --series N          series fed round-robin (default 10000)\n"
                 "  --samples N         samples per series (default 1000)\n"
                 "  --type NAME         detector type to measure, repeatable (default all): %s\n"
                 "  --window DURATION   dynamic.window of mean_sigma, mad, baseline, psi, ks (default 1h)\n"
                 "  --spacing-ms N      sample time between two samples of a series, in ms (default 15000)\n"
                 "  --compute-series N  series of the psi/ks run with evaluate_every 0 (default 100)\n"
                 "  --seed N            seed of the generated stream (default 1)\n",
                 names.c_str());
}

// Parses argv into `opts`. Prints what is wrong and the usage, and returns false, on a bad
// argument.
bool parse_options(int argc, char** argv, options& opts)
{
    for (int i = 1; i < argc; ++i) {
        const std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            print_usage();
            return false;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "missing value after %s\n", argv[i]);
            print_usage();
            return false;
        }
        const char* value = argv[++i];
        std::uint64_t count = 0;
        bool valid = true;
        if (flag == "--series" || flag == "--samples" || flag == "--spacing-ms" || flag == "--compute-series" ||
            flag == "--seed") {
            valid = parse_count(value, count);
            if (flag == "--series") {
                opts.series = count;
            } else if (flag == "--samples") {
                opts.samples = count;
            } else if (flag == "--spacing-ms") {
                opts.spacing_ms = static_cast<std::int64_t>(count);
            } else if (flag == "--compute-series") {
                opts.compute_series = count;
            } else {
                opts.seed = count;
            }
        } else if (flag == "--type") {
            const bench_type* type = find_type(value);
            valid = type != nullptr;
            opts.types.push_back(type);
        } else if (flag == "--window") {
            std::string error;
            const auto window = parse_duration(value, error);
            valid = window && window->count() > 0;
            opts.window = window.value_or(std::chrono::milliseconds(0));
        } else {
            std::fprintf(stderr, "unknown argument %s\n", argv[i - 1]);
            print_usage();
            return false;
        }
        if (!valid) {
            std::fprintf(stderr, "invalid value %s for %s\n", value, argv[i - 1]);
            print_usage();
            return false;
        }
    }
    if (opts.types.empty()) {
        for (const bench_type& type : all_types) {
            opts.types.push_back(&type);
        }
    }
    return true;
}

// ---- Machine and build ----

double cpu_seconds()
{
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The CPUs this process may run on, as nproc counts them.
int usable_cpus()
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return -1;
    }
    return CPU_COUNT(&set);
}

std::string cpu_model()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(line.find_first_not_of(' ', colon + 1));
        }
    }
    return "unknown (no model name in /proc/cpuinfo)";
}

// CMake's build type does not reach the sources, so the macros it sets stand in for it.
std::string build_description()
{
    std::string text;
#ifdef __OPTIMIZE__
    text = "optimized";
#else
    text = "NOT optimized (configure with -DCMAKE_BUILD_TYPE=Release)";
#endif
#ifdef NDEBUG
    text += ", NDEBUG";
#else
    text += ", assertions on";
#endif
    text += ", compiler " __VERSION__;
    return text;
}

// ---- The stream ----

// values[round * series + i] is the sample of series i in round `round`, at
// stream_start_ms + round * spacing_ms.
struct sample_stream {
    std::size_t series = 0;
    std::size_t rounds = 0;
    std::int64_t spacing_ms = 0;
    std::vector<double> values;

    time_ms time_of(std::size_t round) const
    {
        return stream_start_ms + static_cast<time_ms>(round) * spacing_ms;
    }
    double value(std::size_t round, std::size_t series_index) const { return values[round * series + series_index]; }
};

sample_stream make_stream(const options& opts)
{
    sample_stream stream;
    stream.series = opts.series;
    stream.rounds = opts.samples;
    stream.spacing_ms = opts.spacing_ms;
    stream.values.resize(opts.series * opts.samples);

    std::mt19937_64 random(opts.seed);
    std::normal_distribution<double> noise(0.0, 1.0);
    std::bernoulli_distribution spike(1.0 / 500);
    std::uniform_real_distribution<double> phase(0.0, 2 * std::numbers::pi);

    std::vector<double> level(opts.series);
    std::vector<double> cycle_phase(opts.series);
    for (std::size_t i = 0; i < opts.series; ++i) {
        level[i] = 100.0 + 10.0 * static_cast<double>(i % 5);
        cycle_phase[i] = phase(random);
    }
    constexpr double day_ms = 86'400'000.0;
    for (std::size_t round = 0; round < stream.rounds; ++round) {
        const double day_angle = 2 * std::numbers::pi * static_cast<double>(stream.time_of(round)) / day_ms;
        for (std::size_t i = 0; i < opts.series; ++i) {
            double v = level[i] * (1.0 + 0.2 * std::sin(day_angle + cycle_phase[i]) + 0.05 * noise(random));
            if (spike(random)) {
                v += 1.5 * level[i];
            }
            stream.values[round * opts.series + i] = v;
        }
    }
    return stream;
}

// ---- Rules and specs ----

std::string dynamic_rule_yaml(const bench_type& type, const options& opts)
{
    std::string keys = type.dynamic_keys;
    if (type.reads_window) {
        keys += ", window: " + format_duration(opts.window);
    }
    return "groups:\n"
           "  - name: bench\n"
           "    rules:\n"
           "      - alert: BenchDynamic\n"
           "        expr: bench_metric{job=\"bench\"}\n"
           "        dynamic: {" +
           keys +
           "}\n"
           "        tiers:\n"
           "          warning: \"> " +
           std::to_string(type.warning_above) + "\"\n";
}

std::string static_rule_yaml()
{
    return "groups:\n"
           "  - name: bench\n"
           "    rules:\n"
           "      - alert: BenchStatic\n"
           "        expr: bench_metric{job=\"bench\"}\n"
           "        tiers:\n"
           "          warning: \"> " +
           std::to_string(static_warning_above) + "\"\n";
}

// Loads rule text through the rule loader. Prints the diagnostics and returns nullptr when the
// text does not load.
std::shared_ptr<const rule_set> load_rules(const std::string& text)
{
    diagnostics diags;
    std::vector<rule_group> groups = load_rule_text(text, "detector_bench.yaml", diags);
    if (!diags.empty()) {
        std::fprintf(stderr, "the generated rule did not load:\n%s\n%s", text.c_str(), diags.to_string().c_str());
        return nullptr;
    }
    return make_rule_set(std::move(groups));
}

// ---- Detector alone ----

struct detector_result {
    double ns_per_sample = 0;
    double bytes_per_series = 0;
    std::uint64_t ready_outputs = 0; // score() calls that returned ready
    std::size_t ready_series = 0;    // series whose last output was ready
    detector_output last_output;     // of the last sample of the last series, for the window sizes
};

// Runs one detector per series over the first `series` series of the stream.
detector_result run_detectors(const detector_spec& spec, double warning_above, const sample_stream& stream,
                              std::size_t series)
{
    std::vector<std::unique_ptr<detector>> detectors(series);
    for (auto& d : detectors) {
        std::string error;
        d = make_detector(spec, error);
        if (!d) {
            std::fprintf(stderr, "make_detector failed: %s\n", error.c_str());
            std::exit(1);
        }
    }
    std::vector<unsigned char> last_ready(series, 0);

    detector_result result;
    const double started = cpu_seconds();
    for (std::size_t round = 0; round < stream.rounds; ++round) {
        const time_ms t = stream.time_of(round);
        for (std::size_t i = 0; i < series; ++i) {
            const double v = stream.value(round, i);
            const detector_output out = detectors[i]->score(t, v);
            const bool held_out = out.ready && out.score > warning_above;
            detectors[i]->learn(t, v, held_out);
            result.ready_outputs += out.ready ? 1 : 0;
            last_ready[i] = out.ready ? 1 : 0;
            if (round + 1 == stream.rounds) {
                result.last_output = out;
            }
        }
    }
    const double cpu = cpu_seconds() - started;

    const double samples = static_cast<double>(series) * static_cast<double>(stream.rounds);
    result.ns_per_sample = cpu * 1e9 / samples;
    std::size_t bytes = 0;
    for (const auto& d : detectors) {
        bytes += d->memory_bytes();
    }
    result.bytes_per_series = static_cast<double>(bytes) / static_cast<double>(series);
    for (unsigned char ready : last_ready) {
        result.ready_series += ready;
    }
    return result;
}

// ---- Whole engine ----

struct engine_result {
    double ns_per_sample = 0;
    double detector_bytes_per_series = 0;
    double state_bytes_per_series = 0;
    std::size_t warming_up = 0;
    std::size_t rejected = 0; // samples ingest() did not accept; expected to be 0
    std::size_t events = 0;
};

engine_result run_engine(std::shared_ptr<const rule_set> rules, const sample_stream& stream,
                         const std::vector<std::string>& series_ids)
{
    manual_clock clock(stream.time_of(0));
    engine_limits limits;
    limits.max_series = stream.series;
    limits.per_rule_max_alerts = stream.series;
    limits.max_active_alerts = stream.series;
    engine eng(std::move(rules), limits, clock);

    engine_result result;
    const double started = cpu_seconds();
    for (std::size_t round = 0; round < stream.rounds; ++round) {
        const time_ms t = stream.time_of(round);
        clock.set_ms(t);
        for (std::size_t i = 0; i < stream.series; ++i) {
            const label_view labels[] = {{"__name__", "bench_metric"}, {"job", "bench"}, {"series", series_ids[i]}};
            if (eng.ingest(labels, t, stream.value(round, i)) != ingest_status::accepted) {
                ++result.rejected;
            }
        }
        result.events += eng.take_events().size();
    }
    const double cpu = cpu_seconds() - started;

    const double samples = static_cast<double>(stream.series) * static_cast<double>(stream.rounds);
    result.ns_per_sample = cpu * 1e9 / samples;
    const engine_stats st = eng.stats();
    const double series = st.series ? static_cast<double>(st.series) : 1.0;
    result.detector_bytes_per_series = static_cast<double>(st.detector_bytes) / series;
    result.state_bytes_per_series = static_cast<double>(st.state_bytes) / series;
    result.warming_up = st.warming_up;
    return result;
}

// ---- Report ----

void print_header(const options& opts)
{
    const double sample_time_ms = static_cast<double>(opts.samples - 1) * static_cast<double>(opts.spacing_ms);
    std::printf("detector_bench: CPU time per sample and memory per series of each detector type\n");
    std::printf("machine:    %d usable CPUs (nproc), %s\n", usable_cpus(), cpu_model().c_str());
    std::printf("build:      %s\n", build_description().c_str());
    std::printf("stream:     %zu series x %zu samples = %zu samples, %lld ms apart (%s of sample time), seed %llu\n",
                opts.series, opts.samples, opts.series * opts.samples, static_cast<long long>(opts.spacing_ms),
                format_duration(std::chrono::milliseconds(static_cast<std::int64_t>(sample_time_ms))).c_str(),
                static_cast<unsigned long long>(opts.seed));
    std::printf("detectors:  window %s (mean_sigma, mad, baseline, psi, ks); every other key at the rule "
                "loader's default\n\n",
                format_duration(opts.window).c_str());
}

void print_table_head()
{
    std::printf("%-22s %10s %10s %11s %11s %11s %9s %9s\n", "type", "alone", "engine", "alone", "engine det",
                "engine all", "ready", "engine");
    std::printf("%-22s %10s %10s %11s %11s %11s %9s %9s\n", "", "ns/sample", "ns/sample", "B/series", "B/series",
                "B/series", "series", "events");
}

void print_row(const bench_type& type, const detector_result& alone, const engine_result& whole, std::size_t series)
{
    std::printf("%-22s %10.1f %10.1f %11.0f %11.0f %11.0f %9zu %9zu\n", type.name, alone.ns_per_sample,
                whole.ns_per_sample, alone.bytes_per_series, whole.detector_bytes_per_series,
                whole.state_bytes_per_series, alone.ready_series, whole.events);
    if (whole.rejected != 0 || series - whole.warming_up != alone.ready_series) {
        std::printf("  note: engine rejected %zu samples; %zu series ready in the engine\n", whole.rejected,
                    series - whole.warming_up);
    }
}

void print_legend()
{
    std::printf("\nalone: make_detector() per series, score() + learn() per sample. engine: engine::ingest() per "
                "sample\n(take_events() each round included). B/series: alone = memory_bytes(); engine det = "
                "stats().detector_bytes;\nengine all = stats().state_bytes (labels and alert state included), each "
                "divided by the series.\nready series: series whose detector scored the last sample (no longer "
                "warming up).\nengine events: alert events (pending, firing, resolved, ...) the engine produced; "
                "each costs engine time.\n");
}

// The psi/ks figures measured apart: the CPU time of one computation.
struct compute_row {
    const bench_type* type;
    std::chrono::milliseconds evaluate_every; // of the main run
    detector_result every_sample;             // evaluate_every 0
    std::size_t series;
};

void print_compute_table(const std::vector<compute_row>& rows, const options& opts)
{
    if (rows.empty()) {
        return;
    }
    std::printf("\npsi and ks: cost of one computation (a run with evaluate_every 0 over %zu series x %zu samples)\n",
                rows.front().series, opts.samples);
    std::printf("%-6s %15s %15s %13s %12s %12s\n", "type", "main run every", "ns/computation", "computations",
                "reference", "current");
    for (const compute_row& row : rows) {
        const detector_result& r = row.every_sample;
        const double samples = static_cast<double>(row.series) * static_cast<double>(opts.samples);
        const double ns_per_computation =
            r.ready_outputs ? r.ns_per_sample * samples / static_cast<double>(r.ready_outputs) : 0;
        std::printf("%-6s %15s %15.0f %13llu %12zu %12zu\n", row.type->name, format_duration(row.evaluate_every).c_str(),
                    ns_per_computation, static_cast<unsigned long long>(r.ready_outputs), r.last_output.samples,
                    r.last_output.current_samples);
    }
    std::printf("ns/computation: CPU time of the run divided by the samples that computed (ready outputs); it\n"
                "includes score() and learn() of the warm-up samples, so it slightly overstates. reference and\n"
                "current: samples of the last series at the end of the stream.\n");
}

} // namespace

int main(int argc, char** argv)
{
    options opts;
    if (!parse_options(argc, argv, opts)) {
        return 2;
    }
    opts.compute_series = std::min(opts.compute_series, opts.series);
    print_header(opts);

    const sample_stream stream = make_stream(opts);
    std::vector<std::string> series_ids(opts.series);
    for (std::size_t i = 0; i < opts.series; ++i) {
        series_ids[i] = std::to_string(i);
    }

    print_table_head();
    std::vector<compute_row> compute_rows;
    for (const bench_type* type : opts.types) {
        const auto rules = load_rules(dynamic_rule_yaml(*type, opts));
        if (!rules) {
            return 1;
        }
        const detector_spec& spec = *rules->rules.at(0)->dynamic;
        const detector_result alone = run_detectors(spec, type->warning_above, stream, opts.series);
        const engine_result whole = run_engine(rules, stream, series_ids);
        print_row(*type, alone, whole, opts.series);

        if (spec.kind == detector_kind::psi || spec.kind == detector_kind::ks) {
            detector_spec every_sample = spec;
            every_sample.evaluate_every = std::chrono::milliseconds(0);
            compute_rows.push_back(
                {type, spec.evaluate_every,
                 run_detectors(every_sample, type->warning_above, stream, opts.compute_series), opts.compute_series});
        }
        std::fflush(stdout);
    }

    const auto static_rules = load_rules(static_rule_yaml());
    if (!static_rules) {
        return 1;
    }
    const engine_result reference = run_engine(static_rules, stream, series_ids);
    std::printf("%-22s %10s %10.1f %11s %11s %11.0f %9s %9zu\n", "static (no detector)", "-",
                reference.ns_per_sample, "-", "-", reference.state_bytes_per_series, "-", reference.events);

    print_legend();
    print_compute_table(compute_rows, opts);
    return 0;
}
