#pragma once
// Self-metrics in the Prometheus text exposition format 0.0.4.

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace tocsin {

// Request latency in seconds with fixed buckets from 0.5 ms to 10 s.
class latency_histogram {
public:
    static constexpr std::array<double, 11> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                   0.05,   0.1,   0.25,   1.0,   10.0};
    void observe(double seconds);

    std::array<std::uint64_t, bounds.size()> buckets{}; // not cumulative
    std::uint64_t count = 0;
    double sum = 0;
};

// Builds one exposition. Families must be written whole, one after the other.
class metrics_writer {
public:
    using labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, labels label_pairs, double value);
    void sample(std::string_view name, double value) { sample(name, {}, value); }
    // Writes name_bucket/_sum/_count lines; `extra` labels go before `le`.
    void histogram(std::string_view name, labels extra, const latency_histogram& h);

    const std::string& text() const { return out_; }

private:
    std::string out_;
};

// A label value escaped for the text format (backslash, double quote, newline).
std::string escape_label_value(std::string_view value);

// Formats a sample value the way Prometheus parses it: NaN, +Inf, -Inf or the shortest
// round-trip decimal.
std::string format_sample_value(double value);

} // namespace tocsin

namespace tocsin {

// Writes the standard process_* families (CPU seconds, resident and virtual memory, open and
// maximum file descriptors, start time) from /proc/self, as Prometheus client libraries do.
void write_process_metrics(metrics_writer& w, double start_time_seconds);

} // namespace tocsin
