#include "daemon/metrics.hpp"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

namespace tocsin {

void latency_histogram::observe(double seconds)
{
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        if (seconds <= bounds[i]) {
            ++buckets[i];
            break;
        }
    }
    ++count;
    sum += seconds;
}

std::string escape_label_value(std::string_view value)
{
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

std::string format_sample_value(double value)
{
    if (std::isnan(value)) {
        return "NaN";
    }
    if (std::isinf(value)) {
        return value > 0 ? "+Inf" : "-Inf";
    }
    return fmt::format("{}", value);
}

void metrics_writer::family(std::string_view name, std::string_view type, std::string_view help)
{
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void metrics_writer::sample(std::string_view name, labels label_pairs, double value)
{
    out_ += name;
    if (label_pairs.size() > 0) {
        out_ += '{';
        bool first = true;
        for (const auto& [key, val] : label_pairs) {
            if (!first) {
                out_ += ',';
            }
            first = false;
            out_ += fmt::format("{}=\"{}\"", key, escape_label_value(val));
        }
        out_ += '}';
    }
    out_ += ' ';
    out_ += format_sample_value(value);
    out_ += '\n';
}

void metrics_writer::histogram(std::string_view name, labels extra, const latency_histogram& h)
{
    std::string prefix;
    for (const auto& [key, val] : extra) {
        prefix += fmt::format("{}=\"{}\",", key, escape_label_value(val));
    }
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.bounds.size(); ++i) {
        cumulative += h.buckets[i];
        out_ += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, prefix, h.bounds[i], cumulative);
    }
    out_ += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, prefix, h.count);
    std::string label_block;
    if (!prefix.empty()) {
        prefix.pop_back();
        label_block = "{" + prefix + "}";
    }
    out_ += fmt::format("{}_sum{} {}\n", name, label_block, format_sample_value(h.sum));
    out_ += fmt::format("{}_count{} {}\n", name, label_block, h.count);
}

} // namespace tocsin

namespace tocsin {

namespace {

// Returns the value in kB of a "Name:   123 kB" line of /proc/self/status, or -1.
double status_kib(const std::string& status, std::string_view field)
{
    auto pos = status.find(field);
    if (pos == std::string::npos) {
        return -1;
    }
    return std::strtod(status.c_str() + pos + field.size(), nullptr);
}

std::string read_small_file(const char* path)
{
    std::ifstream in(path);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
}

} // namespace

void write_process_metrics(metrics_writer& w, double start_time_seconds)
{
    // /proc/self/stat: fields 14 and 15 (utime, stime) in clock ticks, after the command name
    // in parentheses, which may itself contain spaces.
    auto stat = read_small_file("/proc/self/stat");
    auto close_paren = stat.rfind(')');
    if (close_paren != std::string::npos) {
        std::istringstream fields(stat.substr(close_paren + 2));
        std::string skip;
        for (int i = 3; i <= 13; ++i) {
            fields >> skip;
        }
        double utime = 0;
        double stime = 0;
        fields >> utime >> stime;
        const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
        w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        w.sample("process_cpu_seconds_total", (utime + stime) / ticks);
    }

    auto status = read_small_file("/proc/self/status");
    double rss = status_kib(status, "VmRSS:");
    double vsize = status_kib(status, "VmSize:");
    if (rss >= 0) {
        w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        w.sample("process_resident_memory_bytes", rss * 1024);
    }
    if (vsize >= 0) {
        w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        w.sample("process_virtual_memory_bytes", vsize * 1024);
    }

    std::error_code ec;
    std::size_t open_fds = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        ++open_fds;
    }
    w.family("process_open_fds", "gauge", "Number of open file descriptors.");
    w.sample("process_open_fds", static_cast<double>(open_fds));
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        w.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
        w.sample("process_max_fds", static_cast<double>(limit.rlim_cur));
    }
    w.family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.");
    w.sample("process_start_time_seconds", start_time_seconds);
}

} // namespace tocsin
