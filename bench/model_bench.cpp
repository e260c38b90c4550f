// Model monitoring benchmark: CPU time per record through the data quality and drift updates
// of one model (model/model_monitor.hpp), and the memory of that model's state.
//
// The model has --features features (default 50), alternately numeric and categorical. Each
// numeric feature draws from normal(mean, 10) with its own mean, and each categorical one from
// 20 categories with Zipf-like weights. Every feature has a reference built exactly from
// 10,000 draws (10 quantile bins, 1,000 KS points). A numeric feature has a declared range, and
// about 2 % of its values are missing. The stream uses 4,096 distinct records, generated
// before timing and fed in a cycle in schema order, 2 ms of record time apart, so the default
// 1 h window of 60 buckets fills after 1.8 million records and then slides.
//
// It prints:
//   records/s        --records records through model_monitor::add_record(), CPU time
//   ns per feature   the same time per feature value
//   bytes per model  model_monitor::memory_bytes() after the stream (references excluded,
//                    their JSON size printed separately)
//   query            quality() and drift() of every feature (PSI and KS with exact p-value)
//   sketch           values/s through quantile_sketch::add() at epsilon 0.001
//
// Times are process CPU time (clock_gettime with CLOCK_PROCESS_CPUTIME_ID). Build in Release
// and run:
//
//   cmake --build BUILD --target model_bench
//   BUILD/bench/model_bench [--records N] [--features N] [--seed N]

#include <time.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model_monitor.hpp"
#include "model/quantile_sketch.hpp"
#include "model/reference.hpp"

using namespace tocsin::model;

namespace {

struct options {
    std::size_t records = 2'000'000;
    std::size_t features = 50;
    std::uint64_t seed = 1;
};

constexpr std::size_t distinct_records = 4096;
constexpr std::size_t category_count = 20;
constexpr std::size_t reference_size = 10'000;

double cpu_seconds()
{
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

bool parse_options(int argc, char** argv, options& opts)
{
    for (int i = 1; i < argc; ++i) {
        const std::string_view flag = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "missing value after %s\n", argv[i]);
            return false;
        }
        char* end = nullptr;
        const unsigned long long value = std::strtoull(argv[++i], &end, 10);
        if (end == argv[i] || *end != '\0' || value == 0) {
            std::fprintf(stderr, "invalid value %s for %s; expected a positive integer\n", argv[i], argv[i - 1]);
            return false;
        }
        if (flag == "--records") {
            opts.records = value;
        } else if (flag == "--features") {
            opts.features = value;
        } else if (flag == "--seed") {
            opts.seed = value;
        } else {
            std::fprintf(stderr, "unknown argument %s\nusage: model_bench [--records N] [--features N] [--seed N]\n",
                         argv[i - 1]);
            return false;
        }
    }
    return true;
}

// Category names of feature f: "f<f>_c<k>".
std::vector<std::string> category_names(std::size_t feature)
{
    std::vector<std::string> names;
    for (std::size_t k = 0; k < category_count; ++k) {
        names.push_back("f" + std::to_string(feature) + "_c" + std::to_string(k));
    }
    return names;
}

} // namespace

int main(int argc, char** argv)
{
    options opts;
    if (!parse_options(argc, argv, opts)) {
        return 2;
    }
    std::mt19937_64 random(opts.seed);

    // Zipf-like category weights 1/(k+1).
    std::vector<double> weights;
    for (std::size_t k = 0; k < category_count; ++k) {
        weights.push_back(1.0 / static_cast<double>(k + 1));
    }
    std::discrete_distribution<std::size_t> pick_category(weights.begin(), weights.end());

    std::vector<feature_spec> specs;
    std::vector<std::shared_ptr<const reference>> references;
    std::vector<std::vector<std::string>> names(opts.features);
    std::size_t reference_json_bytes = 0;
    for (std::size_t f = 0; f < opts.features; ++f) {
        const bool numeric = f % 2 == 0;
        const std::string name = "feature_" + std::to_string(f);
        if (numeric) {
            const double mean = 10.0 * static_cast<double>(f);
            specs.push_back({name, feature_type::numeric, mean - 50, mean + 50});
            std::normal_distribution<double> normal(mean, 10);
            std::vector<double> values(reference_size);
            for (double& v : values) {
                v = normal(random);
            }
            references.push_back(std::make_shared<const reference>(build_numeric_reference(values)));
        } else {
            specs.push_back({name, feature_type::categorical, {}, {}});
            names[f] = category_names(f);
            std::vector<std::string> values(reference_size);
            for (std::string& v : values) {
                v = names[f][pick_category(random)];
            }
            references.push_back(std::make_shared<const reference>(build_categorical_reference(values)));
        }
        reference_json_bytes += to_json(*references.back()).dump().size();
    }

    // The records: distinct_records x features values. Names and category texts point into
    // specs and names, which outlive the stream.
    std::vector<named_feature_value> records(distinct_records * opts.features);
    std::uniform_real_distribution<double> unit(0, 1);
    for (std::size_t r = 0; r < distinct_records; ++r) {
        for (std::size_t f = 0; f < opts.features; ++f) {
            named_feature_value& entry = records[r * opts.features + f];
            entry.name = specs[f].name;
            if (f % 2 == 0) {
                std::normal_distribution<double> normal(10.0 * static_cast<double>(f) + 2, 11);
                entry.value = unit(random) < 0.02 ? feature_value::null() : feature_value::number(normal(random));
            } else {
                entry.value = feature_value::text(names[f][pick_category(random)]);
            }
        }
    }

    model_monitor monitor("bench", "v1", specs, references);
    const double started = cpu_seconds();
    for (std::size_t i = 0; i < opts.records; ++i) {
        const std::size_t r = i % distinct_records;
        const std::span<const named_feature_value> record(&records[r * opts.features], opts.features);
        monitor.add_record(static_cast<tocsin::time_ms>(i) * 2, record);
    }
    const double feed_seconds = cpu_seconds() - started;

    const double query_started = cpu_seconds();
    double checksum = 0;
    for (std::size_t f = 0; f < monitor.feature_count(); ++f) {
        const quality_summary q = monitor.feature(f).quality();
        const drift_summary d = monitor.feature(f).drift();
        checksum += q.missing_rate.value_or(0) + d.psi.value_or(0) + (d.ks ? d.ks->statistic : 0);
    }
    const double query_seconds = cpu_seconds() - query_started;

    quantile_sketch sketch(0.001);
    std::normal_distribution<double> normal(0, 1);
    std::vector<double> sketch_values(2'000'000);
    for (double& v : sketch_values) {
        v = normal(random);
    }
    const double sketch_started = cpu_seconds();
    for (double v : sketch_values) {
        sketch.add(v);
    }
    checksum += *sketch.quantile(0.5);
    const double sketch_seconds = cpu_seconds() - sketch_started;

    std::printf("model_bench: %zu records of %zu features (%zu numeric, %zu categorical), seed %llu\n", opts.records,
                opts.features, (opts.features + 1) / 2, opts.features / 2, static_cast<unsigned long long>(opts.seed));
    std::printf("  records/s        %.0f (%.3f s CPU)\n", static_cast<double>(opts.records) / feed_seconds,
                feed_seconds);
    std::printf("  ns per feature   %.1f\n",
                feed_seconds * 1e9 / (static_cast<double>(opts.records) * static_cast<double>(opts.features)));
    std::printf("  bytes per model  %zu (references: %zu bytes as JSON, shared)\n", monitor.memory_bytes(),
                reference_json_bytes);
    std::printf("  query            %.2f ms for quality() and drift() of all %zu features\n", query_seconds * 1e3,
                monitor.feature_count());
    std::printf("  sketch           %.0f values/s, %zu tuples after %zu values\n",
                static_cast<double>(sketch_values.size()) / sketch_seconds, sketch.tuple_count(),
                sketch_values.size());
    std::printf("  late records     %llu, checksum %.6f\n", static_cast<unsigned long long>(monitor.late_records()),
                checksum);
    return 0;
}
