#pragma once
// Label and annotation templates, a subset of Prometheus' Go templates:
//   {{ $labels.instance }}   {{ index $labels "service.name" }}   {{ $value }}
//   {{ $value | humanize }}  humanize1024, humanizePercentage, humanizeDuration
//   {{ printf "%.2f" $value }}
//   {{ $score }} {{ $baseline }}   what a dynamic rule measured the value against
// Templates are parsed when rules load, so an unknown variable or function is a load error,
// never a failure at send time.

#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "rules/labels.hpp"

namespace tocsin {

class text_template {
public:
    // Parses `source`. On failure returns false and sets `error` to a message that names the
    // bad part and the column within the template.
    static bool parse(std::string_view source, text_template& out, std::string& error);

    // Renders with the alert's labels and value, and for dynamic rules the score and baseline
    // ($score, $baseline; NaN otherwise). Missing labels render as "".
    std::string render(const label_set& labels, double value,
                       double score = std::numeric_limits<double>::quiet_NaN(),
                       double baseline = std::numeric_limits<double>::quiet_NaN()) const;

    const std::string& source() const { return source_; }
    bool is_literal() const;

    struct piece;

private:
    std::string source_;
    std::vector<piece> pieces_;
};

struct text_template::piece {
    enum class kind { literal, label, value } what = kind::literal;
    std::string text;        // literal text, the label name, or for value: "", "score" or "baseline"
    std::string function;    // "", humanize, humanize1024, humanizePercentage, humanizeDuration, printf
    std::string format;      // printf format
};

// Formats like Prometheus' humanize: 1234567 -> "1.235M", 0.001 -> "1m".
std::string humanize(double value);
std::string humanize_1024(double value);
std::string humanize_percentage(double value);
std::string humanize_duration(double seconds);

} // namespace tocsin
