#pragma once
// Feature values of an inference record and the declared schema of a model's features.
//
// A feature_value is a small view: a text value points into the caller's buffer and must stay
// valid while the value is in use, so a record can be passed without copying its strings.
// A record states each feature as null, a number, a string or a boolean. A feature that the
// record leaves out counts as missing, like a null.
//
// Thread safety: the types are plain values. Concurrent reads are safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rules/clock.hpp"

namespace tocsin::model {

using tocsin::time_ms;

// The declared type of a feature. A boolean feature is monitored like a categorical one with
// the two categories "false" and "true".
enum class feature_type : std::uint8_t { numeric, categorical, boolean };

// Returns "numeric", "categorical" or "boolean".
std::string_view to_string(feature_type type);

// Parses the names that to_string returns. Returns std::nullopt for any other text.
std::optional<feature_type> parse_feature_type(std::string_view text);

// One feature's value in a record.
class feature_value {
public:
    enum class kind : std::uint8_t { null, number, text, boolean };

    static feature_value null() { return feature_value{}; }
    static feature_value number(double v)
    {
        feature_value out;
        out.kind_ = kind::number;
        out.number_ = v;
        return out;
    }
    // The value refers to `v`, which must outlive it.
    static feature_value text(std::string_view v)
    {
        feature_value out;
        out.kind_ = kind::text;
        out.text_ = v;
        return out;
    }
    static feature_value boolean(bool v)
    {
        feature_value out;
        out.kind_ = kind::boolean;
        out.boolean_ = v;
        return out;
    }

    kind type() const { return kind_; }
    // Each accessor returns the stored value only for its own kind, and 0, "" or false otherwise.
    double number_value() const { return kind_ == kind::number ? number_ : 0.0; }
    std::string_view text_value() const { return kind_ == kind::text ? text_ : std::string_view{}; }
    bool boolean_value() const { return kind_ == kind::boolean && boolean_; }

private:
    std::string_view text_;
    double number_ = 0;
    kind kind_ = kind::null;
    bool boolean_ = false;
};

// The declared schema of one feature.
struct feature_spec {
    std::string name;
    feature_type type = feature_type::numeric;
    // Declared valid range of a numeric feature, inclusive. A value below min or above max
    // counts as out of range. Either bound may be absent.
    std::optional<double> min;
    std::optional<double> max;
};

}  // namespace tocsin::model
