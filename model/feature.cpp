#include "model/feature.hpp"

namespace tocsin::model {

std::string_view to_string(feature_type type)
{
    switch (type) {
    case feature_type::numeric:
        return "numeric";
    case feature_type::categorical:
        return "categorical";
    case feature_type::boolean:
        return "boolean";
    }
    return "numeric";
}

std::optional<feature_type> parse_feature_type(std::string_view text)
{
    if (text == "numeric") {
        return feature_type::numeric;
    }
    if (text == "categorical") {
        return feature_type::categorical;
    }
    if (text == "boolean") {
        return feature_type::boolean;
    }
    return std::nullopt;
}

}  // namespace tocsin::model
