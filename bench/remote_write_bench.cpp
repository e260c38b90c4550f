// Ingest benchmark: remote_write requests built the way Prometheus sends them (one sample per
// TimeSeries entry, 2,000 entries per request, snappy block compression), fed either
// in-process through ingest_remote_write() or over HTTP to a running tocsind.
//
//   remote_write_bench [--series 100000] [--samples 1000000]
//   remote_write_bench --url http://127.0.0.1:9793/api/v1/write --pid PID [--connections 4]
//
// In-process mode loads one tiered rule that selects every series and prints samples/s,
// ns/sample, peak RSS and engine state bytes per series. HTTP mode prints the client-side
// rate and, with --pid, the server's peak RSS from /proc/PID/status.

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <snappy.h>

#include "daemon/ingest.hpp"
#include "proto/remote.pb.h"
#include "rules/rule_loader.hpp"

namespace {

using namespace tocsin;

struct options {
    std::size_t series = 100'000;
    std::size_t samples = 1'000'000;
    std::size_t batch = 2'000;
    std::string url;
    int pid = 0;
    int connections = 4;
};

const char* bench_rules = R"(groups:
  - name: bench
    rules:
      - alert: BenchHigh
        expr: bench_metric
        for: 1m
        tiers:
          warning: "> 80"
          critical: "> 95"
)";

// The value of a series moves every six rounds, so some alerts go pending, fire and resolve
// while most series stay quiet, as in bench/engine_bench.cpp.
double value_for(std::size_t series, std::size_t round)
{
    return static_cast<double>((series + (round / 6) * 37) % 100);
}

double cpu_seconds_self()
{
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Sample rounds are this far apart in sample time.
constexpr std::int64_t round_ms = 15'000;

std::size_t round_count(const options& opt)
{
    return (opt.samples + opt.series - 1) / opt.series;
}

// Builds compressed requests whose first round is stamped `base_ms`. Shard s contains the series
// with index % shards == s, in round order, so each series' samples stay in timestamp order
// within its shard.
std::vector<std::vector<std::string>> build_requests(const options& opt, int shards, std::int64_t base_ms)
{
    std::vector<std::vector<std::string>> out(static_cast<std::size_t>(shards));
    const std::size_t rounds = round_count(opt);
    std::vector<prometheus::WriteRequest> pending(static_cast<std::size_t>(shards));
    std::size_t produced = 0;

    auto flush = [&](std::size_t shard) {
        auto& request = pending[shard];
        if (request.timeseries_size() == 0) {
            return;
        }
        std::string raw = request.SerializeAsString();
        std::string compressed;
        snappy::Compress(raw.data(), raw.size(), &compressed);
        out[shard].push_back(std::move(compressed));
        request.Clear();
    };

    for (std::size_t round = 0; round < rounds && produced < opt.samples; ++round) {
        for (std::size_t i = 0; i < opt.series && produced < opt.samples; ++i, ++produced) {
            std::size_t shard = i % static_cast<std::size_t>(shards);
            auto* ts = pending[shard].add_timeseries();
            auto add_label = [&](const char* name, const std::string& value) {
                auto* l = ts->add_labels();
                l->set_name(name);
                l->set_value(value);
            };
            add_label("__name__", "bench_metric");
            add_label("instance", "host-" + std::to_string(i % 1000));
            add_label("job", "bench");
            add_label("series", std::to_string(i));
            auto* sample = ts->add_samples();
            sample->set_timestamp(base_ms + static_cast<std::int64_t>(round) * round_ms);
            sample->set_value(value_for(i, round));
            if (static_cast<std::size_t>(pending[shard].timeseries_size()) >= opt.batch) {
                flush(shard);
            }
        }
    }
    for (std::size_t s = 0; s < pending.size(); ++s) {
        flush(s);
    }
    return out;
}

long peak_rss_kib_self()
{
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

std::string proc_status_field(int pid, const std::string& field)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            auto value = line.substr(field.size() + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            return value;
        }
    }
    return "unknown";
}

int run_in_process(const options& opt)
{
    diagnostics diags;
    auto groups = load_rule_text(bench_rules, "bench.yaml", diags);
    if (!diags.empty()) {
        std::fprintf(stderr, "%s", diags.to_string().c_str());
        return 1;
    }
    auto rules = make_rule_set(std::move(groups));
    manual_clock clock(1'700'000'000'000);
    engine_limits limits;
    limits.max_series = opt.series * 2;
    limits.per_rule_max_alerts = opt.series * 2;
    limits.max_active_alerts = opt.series * 2;
    engine eng(rules, limits, clock);
    ingest_limits ingest;
    ingest.max_samples_per_request = opt.batch;
    ingest_counters counters;

    auto requests = build_requests(opt, 1, clock.now_ms())[0];
    long rss_before = peak_rss_kib_self();

    auto start = std::chrono::steady_clock::now();
    const double cpu_start = cpu_seconds_self();
    std::size_t events = 0;
    for (const auto& body : requests) {
        auto outcome = ingest_remote_write(body, "application/x-protobuf", "snappy", eng, ingest, counters);
        if (outcome.http_status != 204) {
            std::fprintf(stderr, "unexpected status %d: %s\n", outcome.http_status, outcome.body.c_str());
            return 1;
        }
        events += eng.take_events().size();
    }
    auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu = cpu_seconds_self() - cpu_start;

    auto stats = eng.stats();
    const double samples = static_cast<double>(counters.samples_accepted);
    std::printf("mode: in-process (decode + validate + evaluate), 1 thread\n");
    std::printf("series: %zu  samples: %.0f  requests: %zu\n", stats.series, samples, requests.size());
    std::printf("samples/s: %.0f\n", samples / elapsed);
    std::printf("ns/sample: %.1f\n", elapsed * 1e9 / samples);
    std::printf("CPU seconds: %.3f (%.0f samples per CPU second)\n", cpu, samples / cpu);
    std::printf("alert events: %zu  firing now: %zu  pending now: %zu\n", events, stats.firing, stats.pending);
    std::printf("engine state bytes per series: %.1f (%.1f without label strings)\n",
                static_cast<double>(stats.state_bytes) / static_cast<double>(stats.series),
                static_cast<double>(stats.state_bytes - stats.label_bytes) / static_cast<double>(stats.series));
    std::printf("peak RSS: %.1f MiB (%.1f MiB before ingest, requests held in memory)\n",
                static_cast<double>(peak_rss_kib_self()) / 1024.0, static_cast<double>(rss_before) / 1024.0);
    return 0;
}

int run_http(const options& opt)
{
    auto scheme_end = opt.url.find("://");
    auto host_start = scheme_end == std::string::npos ? 0 : scheme_end + 3;
    auto path_start = opt.url.find('/', host_start);
    std::string host_port = opt.url.substr(host_start, path_start - host_start);
    std::string path = path_start == std::string::npos ? "/api/v1/write" : opt.url.substr(path_start);
    auto colon = host_port.rfind(':');
    std::string host = host_port.substr(0, colon);
    int port = colon == std::string::npos ? 80 : std::stoi(host_port.substr(colon + 1));

    // tocsind rejects timestamps far from its clock (limits.max_future_skew and max_sample_age),
    // so the rounds end at the current time.
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    const auto rounds = static_cast<std::int64_t>(round_count(opt));
    auto shards = build_requests(opt, opt.connections, now_ms - (rounds - 1) * round_ms);
    std::vector<std::size_t> failures(shards.size());
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (std::size_t s = 0; s < shards.size(); ++s) {
        workers.emplace_back([&, s] {
            httplib::Client client(host, port);
            client.set_keep_alive(true);
            // Without TCP_NODELAY the separate header and body writes wait on delayed ACKs.
            client.set_tcp_nodelay(true);
            httplib::Headers headers = {{"Content-Encoding", "snappy"},
                                        {"X-Prometheus-Remote-Write-Version", "0.1.0"},
                                        {"User-Agent", "tocsin-remote-write-bench"}};
            for (const auto& body : shards[s]) {
                auto result = client.Post(path, headers, body, "application/x-protobuf");
                if (!result || result->status / 100 != 2) {
                    ++failures[s];
                }
            }
        });
    }
    for (auto& w : workers) {
        w.join();
    }
    auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::size_t failed = 0;
    std::size_t requests = 0;
    for (std::size_t s = 0; s < shards.size(); ++s) {
        failed += failures[s];
        requests += shards[s].size();
    }
    std::printf("mode: HTTP remote_write to %s, %d connections\n", opt.url.c_str(), opt.connections);
    std::printf("samples: %zu  requests: %zu  failed requests: %zu\n", opt.samples, requests, failed);
    std::printf("samples/s: %.0f\n", static_cast<double>(opt.samples) / elapsed);
    std::printf("ns/sample: %.1f\n", elapsed * 1e9 / static_cast<double>(opt.samples));
    if (opt.pid > 0) {
        std::printf("server peak RSS (VmHWM): %s  current RSS (VmRSS): %s\n",
                    proc_status_field(opt.pid, "VmHWM").c_str(), proc_status_field(opt.pid, "VmRSS").c_str());
    }
    return failed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    options opt;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", arg.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--series") {
            opt.series = std::stoul(next());
        } else if (arg == "--samples") {
            opt.samples = std::stoul(next());
        } else if (arg == "--url") {
            opt.url = next();
        } else if (arg == "--pid") {
            opt.pid = std::stoi(next());
        } else if (arg == "--connections") {
            opt.connections = std::stoi(next());
        } else {
            std::fprintf(stderr,
                         "usage: %s [--series N] [--samples N] [--url URL [--pid PID] [--connections N]]\n",
                         argv[0]);
            return 2;
        }
    }
    if (opt.series == 0 || opt.samples == 0 || opt.connections <= 0) {
        std::fprintf(stderr, "--series, --samples and --connections must be positive\n");
        return 2;
    }
    return opt.url.empty() ? run_in_process(opt) : run_http(opt);
}
