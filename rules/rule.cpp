#include "rules/rule.hpp"

#include <cmath>

#include <fmt/format.h>

namespace tocsin {

bool condition::holds(double value) const
{
    // Every comparison with NaN is false in IEEE 754 except !=, so NaN is excluded explicitly.
    if (std::isnan(value)) {
        return false;
    }
    switch (op) {
    case compare_op::greater: return value > threshold;
    case compare_op::greater_equal: return value >= threshold;
    case compare_op::less: return value < threshold;
    case compare_op::less_equal: return value <= threshold;
    case compare_op::equal: return value == threshold;
    case compare_op::not_equal: return value != threshold;
    }
    return false;
}

std::string condition::to_string() const
{
    const char* symbol = ">";
    switch (op) {
    case compare_op::greater: symbol = ">"; break;
    case compare_op::greater_equal: symbol = ">="; break;
    case compare_op::less: symbol = "<"; break;
    case compare_op::less_equal: symbol = "<="; break;
    case compare_op::equal: symbol = "=="; break;
    case compare_op::not_equal: symbol = "!="; break;
    }
    return fmt::format("{} {}", symbol, threshold);
}

const char* to_string(severity s)
{
    switch (s) {
    case severity::info: return "info";
    case severity::warning: return "warning";
    case severity::critical: return "critical";
    case severity::page: return "page";
    }
    return "unknown";
}

std::optional<severity> parse_severity(std::string_view name)
{
    if (name == "info") {
        return severity::info;
    }
    if (name == "warning") {
        return severity::warning;
    }
    if (name == "critical") {
        return severity::critical;
    }
    if (name == "page") {
        return severity::page;
    }
    return std::nullopt;
}

const char* to_string(transform_kind k)
{
    switch (k) {
    case transform_kind::none: return "none";
    case transform_kind::rate: return "rate";
    case transform_kind::increase: return "increase";
    case transform_kind::delta: return "delta";
    case transform_kind::avg: return "avg_over_time";
    case transform_kind::min: return "min_over_time";
    case transform_kind::max: return "max_over_time";
    case transform_kind::quantile: return "quantile_over_time";
    }
    return "unknown";
}

bool rule::selects(const label_set& series) const
{
    if (series.metric_name() != metric) {
        return false;
    }
    for (const auto& m : matchers) {
        if (!m.matches(series)) {
            return false;
        }
    }
    return true;
}

} // namespace tocsin
