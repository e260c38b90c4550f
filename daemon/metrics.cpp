#include "daemon/metrics.hpp"

#include <cmath>

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
