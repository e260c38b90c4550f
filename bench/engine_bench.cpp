// In-process rule engine benchmark: ingest speed and memory per series.
//
// Builds `--series N` series bench_metric{job="bench", series="<i>"} under one tiered rule
// (warning "> 80", critical "> 95", for 1m, no window) and feeds `--samples M` samples in
// rounds over all series, 15 s of sample time apart. Each series' value moves every six
// rounds, so alerts go pending, fire and resolve along the way. The alert limits are raised
// to the series count, so that no alert is held back. Prints samples/s,
// ns/sample, peak RSS, the engine's state estimate per series and the events produced.

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "rules/engine.hpp"

using namespace tocsin;

namespace {

struct options {
    std::size_t series = 100'000;
    std::size_t samples = 1'000'000;
};

bool parse_count(const char* text, std::size_t& out)
{
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0' || value == 0) {
        return false;
    }
    out = static_cast<std::size_t>(value);
    return true;
}

bool parse_options(int argc, char** argv, options& opts)
{
    for (int i = 1; i < argc; ++i) {
        const bool has_value = i + 1 < argc;
        if (std::strcmp(argv[i], "--series") == 0 && has_value && parse_count(argv[i + 1], opts.series)) {
            ++i;
        } else if (std::strcmp(argv[i], "--samples") == 0 && has_value && parse_count(argv[i + 1], opts.samples)) {
            ++i;
        } else {
            std::fprintf(stderr,
                         "invalid argument: %s\nusage: engine_bench [--series N] [--samples M] "
                         "(positive integers; defaults 100000 and 1000000)\n",
                         argv[i]);
            return false;
        }
    }
    return true;
}

std::shared_ptr<const rule_set> bench_rules()
{
    auto r = std::make_shared<rule>();
    r->name = "BenchHigh";
    r->group = "bench";
    r->metric = "bench_metric";
    tier warning;
    warning.level = severity::warning;
    warning.when = condition{compare_op::greater, 80};
    warning.for_duration = std::chrono::minutes(1);
    tier critical = warning;
    critical.level = severity::critical;
    critical.when = condition{compare_op::greater, 95};
    r->tiers = {warning, critical};
    r->definition_hash = 1;
    auto set = std::make_shared<rule_set>();
    set->rules.push_back(r);
    return set;
}

long peak_rss_kib()
{
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

// User plus system CPU time of the process. Unlike wall time, it leaves out the time the
// process waited for a core on a busy machine.
double cpu_seconds()
{
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

} // namespace

int main(int argc, char** argv)
{
    options opts;
    if (!parse_options(argc, argv, opts)) {
        return 2;
    }

    // Label storage for the whole run, built before timing starts, like a decoded request.
    std::vector<std::string> ids(opts.series);
    for (std::size_t i = 0; i < opts.series; ++i) {
        ids[i] = std::to_string(i);
    }
    const long rss_before_kib = peak_rss_kib();

    manual_clock clock(1'700'000'000'000);
    engine_limits limits;
    limits.max_series = opts.series;
    limits.per_rule_max_alerts = opts.series;
    limits.max_active_alerts = opts.series;
    engine eng(bench_rules(), limits, clock);

    std::size_t events = 0;
    std::size_t done = 0;
    const time_ms start_ms = clock.now_ms();
    const auto started = std::chrono::steady_clock::now();
    const double cpu_started = cpu_seconds();
    for (std::size_t round = 0; done < opts.samples; ++round) {
        const time_ms t = start_ms + static_cast<time_ms>(round) * 15'000;
        clock.set_ms(t);
        for (std::size_t i = 0; i < opts.series && done < opts.samples; ++i, ++done) {
            const label_view labels[] = {{"__name__", "bench_metric"}, {"job", "bench"}, {"series", ids[i]}};
            const double value = static_cast<double>((i + (round / 6) * 37) % 100);
            eng.ingest(labels, t, value);
        }
        events += eng.take_events().size();
        eng.tick();
        events += eng.take_events().size();
    }
    const auto elapsed = std::chrono::steady_clock::now() - started;
    const double seconds = std::chrono::duration<double>(elapsed).count();
    const double cpu = cpu_seconds() - cpu_started;

    const engine_stats st = eng.stats();
    const double per_series = st.series ? static_cast<double>(st.state_bytes) / static_cast<double>(st.series) : 0;
    const double labels_per_series =
        st.series ? static_cast<double>(st.label_bytes) / static_cast<double>(st.series) : 0;
    std::printf("series:                  %zu\n", st.series);
    std::printf("samples:                 %zu\n", done);
    std::printf("seconds:                 %.3f\n", seconds);
    std::printf("samples/s:               %.0f\n", static_cast<double>(done) / seconds);
    std::printf("ns/sample:               %.1f\n", seconds * 1e9 / static_cast<double>(done));
    std::printf("CPU seconds:             %.3f (%.0f samples per CPU second)\n", cpu,
                static_cast<double>(done) / cpu);
    std::printf("peak RSS:                %.1f MiB (%.1f MiB before the engine)\n",
                static_cast<double>(peak_rss_kib()) / 1024, static_cast<double>(rss_before_kib) / 1024);
    std::printf("state bytes/series:      %.1f (%.1f without packed labels)\n", per_series,
                per_series - labels_per_series);
    std::printf("events:                  %zu\n", events);
    std::printf("pending/firing at end:   %zu/%zu\n", st.pending, st.firing);
    return 0;
}
