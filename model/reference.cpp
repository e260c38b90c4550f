#include "model/reference.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "rules/drift.hpp"

namespace tocsin::model {

namespace {

void check_options(const reference_options& options)
{
    if (options.bins < 1 || options.bins > max_reference_bins) {
        throw std::invalid_argument("reference options: bins is " + std::to_string(options.bins) +
                                    "; expected 1 to " + std::to_string(max_reference_bins));
    }
    if (!(options.low_quantile >= 0 && options.low_quantile < options.high_quantile && options.high_quantile <= 1)) {
        throw std::invalid_argument("reference options: low_quantile " + std::to_string(options.low_quantile) +
                                    " and high_quantile " + std::to_string(options.high_quantile) +
                                    " must satisfy 0 <= low < high <= 1");
    }
    if (options.ks_points < 1 || options.ks_points > max_reference_ks_points) {
        throw std::invalid_argument("reference options: ks_points is " + std::to_string(options.ks_points) +
                                    "; expected 1 to " + std::to_string(max_reference_ks_points));
    }
    if (options.max_categories < 1 || options.max_categories > max_reference_categories) {
        throw std::invalid_argument("reference options: max_categories is " +
                                    std::to_string(options.max_categories) + "; expected 1 to " +
                                    std::to_string(max_reference_categories));
    }
    if (options.max_tracked_categories < options.max_categories) {
        throw std::invalid_argument("reference options: max_tracked_categories is below max_categories; "
                                    "raise max_tracked_categories");
    }
}

// numpy.quantile(sorted, q) with the default method "linear".
double linear_quantile(const std::vector<double>& sorted, double q)
{
    const double position = q * static_cast<double>(sorted.size() - 1);
    const auto below = static_cast<std::size_t>(std::floor(position));
    const double fraction = position - static_cast<double>(below);
    if (below + 1 >= sorted.size() || fraction == 0) {
        return sorted[below];
    }
    return sorted[below] + fraction * (sorted[below + 1] - sorted[below]);
}

// Keeps the max_categories most frequent categories, ties by name, and puts the rest in
// other_share.
void fill_categories(reference& ref, std::vector<std::pair<std::string, std::uint64_t>> counts,
                     std::uint64_t untracked, std::size_t max_categories)
{
    std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    const auto total = static_cast<double>(ref.count);
    std::uint64_t other = untracked;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        if (i < max_categories) {
            ref.categories.push_back(category_share{counts[i].first, static_cast<double>(counts[i].second) / total});
        } else {
            other += counts[i].second;
        }
    }
    ref.other_share = static_cast<double>(other) / total;
}

}  // namespace

reference build_numeric_reference(std::span<const double> values, const reference_options& options)
{
    check_options(options);
    if (values.empty()) {
        throw std::invalid_argument("numeric reference: no values; pass at least one finite value");
    }
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (!std::isfinite(values[i])) {
            throw std::invalid_argument("numeric reference: value at index " + std::to_string(i) +
                                        " is not finite; drop NaN and infinite values first");
        }
    }
    std::vector<double> sorted(values.begin(), values.end());
    std::sort(sorted.begin(), sorted.end());

    reference ref;
    ref.type = feature_type::numeric;
    ref.count = sorted.size();
    ref.edges = quantile_edges(sorted, options.bins);
    ref.shares = bin_shares(sorted, ref.edges);
    ref.low_quantile = options.low_quantile;
    ref.high_quantile = options.high_quantile;
    ref.low_value = linear_quantile(sorted, options.low_quantile);
    ref.high_value = linear_quantile(sorted, options.high_quantile);
    if (sorted.size() <= options.ks_points) {
        ref.ks_points = sorted;
    } else {
        ref.ks_points.reserve(options.ks_points);
        const auto n = static_cast<double>(sorted.size());
        for (std::size_t i = 0; i < options.ks_points; ++i) {
            const double rank = (static_cast<double>(i) + 0.5) * n / static_cast<double>(options.ks_points);
            ref.ks_points.push_back(sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(rank))]);
        }
    }
    return ref;
}

reference build_categorical_reference(std::span<const std::string> values, const reference_options& options)
{
    check_options(options);
    if (values.empty()) {
        throw std::invalid_argument("categorical reference: no values; pass at least one category");
    }
    std::unordered_map<std::string, std::uint64_t> counts;
    for (const std::string& value : values) {
        ++counts[value];
    }
    reference ref;
    ref.type = feature_type::categorical;
    ref.count = values.size();
    fill_categories(ref, {counts.begin(), counts.end()}, 0, options.max_categories);
    return ref;
}

reference_builder::reference_builder(feature_type type, const reference_options& options)
    : type_(type), options_(options), sketch_(options.sketch_epsilon)
{
    check_options(options);
}

bool reference_builder::add(const feature_value& value)
{
    switch (type_) {
    case feature_type::numeric:
        if (value.type() != feature_value::kind::number || !std::isfinite(value.number_value())) {
            return false;
        }
        sketch_.add(value.number_value());
        break;
    case feature_type::categorical: {
        if (value.type() != feature_value::kind::text) {
            return false;
        }
        const std::string name(value.text_value());
        const auto found = category_counts_.find(name);
        if (found != category_counts_.end()) {
            ++found->second;
        } else if (category_counts_.size() < options_.max_tracked_categories) {
            category_counts_.emplace(name, 1);
        } else {
            ++untracked_count_;
        }
        break;
    }
    case feature_type::boolean:
        if (value.type() != feature_value::kind::boolean) {
            return false;
        }
        ++category_counts_[value.boolean_value() ? "true" : "false"];
        break;
    }
    ++count_;
    return true;
}

reference reference_builder::build() const
{
    if (count_ == 0) {
        throw std::logic_error("reference builder: no values were added; add values before build()");
    }
    reference ref;
    ref.type = type_;
    ref.count = count_;
    if (type_ != feature_type::numeric) {
        fill_categories(ref, {category_counts_.begin(), category_counts_.end()}, untracked_count_,
                        options_.max_categories);
        return ref;
    }

    const std::size_t bins = options_.bins;
    ref.edges.resize(bins + 1);
    for (std::size_t k = 0; k <= bins; ++k) {
        ref.edges[k] = *sketch_.quantile(static_cast<double>(k) / static_cast<double>(bins));
        if (k > 0) {
            ref.edges[k] = std::max(ref.edges[k], ref.edges[k - 1]);
        }
    }
    // Bin k is [edges[k], edges[k + 1]), and the last bin also takes everything above. The
    // estimated counts below each edge telescope to the total. Estimates need not be
    // monotone, so a negative difference is clipped to 0 and the shares renormalised.
    const auto n = static_cast<double>(count_);
    ref.shares.assign(bins, 0.0);
    double total = 0;
    for (std::size_t k = 0; k < bins; ++k) {
        const double below_left = k == 0 ? 0.0 : sketch_.count_below(ref.edges[k]);
        const double below_right = k + 1 == bins ? n : sketch_.count_below(ref.edges[k + 1]);
        const double in_bin = std::max(0.0, below_right - below_left);
        ref.shares[k] = in_bin;
        total += in_bin;
    }
    for (double& share : ref.shares) {
        share /= total;
    }

    ref.low_quantile = options_.low_quantile;
    ref.high_quantile = options_.high_quantile;
    ref.low_value = *sketch_.quantile(options_.low_quantile);
    ref.high_value = *sketch_.quantile(options_.high_quantile);
    const std::size_t points = static_cast<std::size_t>(std::min<std::uint64_t>(options_.ks_points, count_));
    ref.ks_points.reserve(points);
    for (std::size_t i = 0; i < points; ++i) {
        ref.ks_points.push_back(*sketch_.quantile((static_cast<double>(i) + 0.5) / static_cast<double>(points)));
    }
    std::sort(ref.ks_points.begin(), ref.ks_points.end());
    return ref;
}

// ---- JSON ----

nlohmann::json to_json(const reference& ref)
{
    nlohmann::json out = {
        {"format_version", reference_format_version},
        {"type", std::string(to_string(ref.type))},
        {"count", ref.count},
    };
    if (ref.type == feature_type::numeric) {
        out["edges"] = ref.edges;
        out["shares"] = ref.shares;
        out["low_quantile"] = ref.low_quantile;
        out["low_value"] = ref.low_value;
        out["high_quantile"] = ref.high_quantile;
        out["high_value"] = ref.high_value;
        out["ks_points"] = ref.ks_points;
        return out;
    }
    nlohmann::json categories = nlohmann::json::array();
    for (const category_share& category : ref.categories) {
        categories.push_back({{"name", category.name}, {"share", category.share}});
    }
    out["categories"] = std::move(categories);
    out["other_share"] = ref.other_share;
    return out;
}

namespace {

// Each reader returns false and sets `error` when the field is missing or invalid.
class json_reader {
public:
    json_reader(const nlohmann::json& object, std::string& error) : object_(object), error_(error) {}

    const nlohmann::json* field(const char* name, const char* expected)
    {
        const auto found = object_.find(name);
        if (found == object_.end()) {
            fail(name, "is missing", expected);
            return nullptr;
        }
        return &*found;
    }

    bool fail(const std::string& name, const std::string& problem, const std::string& expected)
    {
        error_ = "reference: field \"" + name + "\" " + problem + "; expected " + expected;
        return false;
    }

    bool read_number(const char* name, double& out, const char* expected = "a finite number")
    {
        const nlohmann::json* value = field(name, expected);
        if (value == nullptr) {
            return false;
        }
        if (!value->is_number() || !std::isfinite(value->get<double>())) {
            return fail(name, "is " + value->dump(), expected);
        }
        out = value->get<double>();
        return true;
    }

    bool read_share(const std::string& name, const nlohmann::json& value, double& out)
    {
        if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0 ||
            value.get<double>() > 1) {
            return fail(name, "is " + value.dump(), "a share between 0 and 1");
        }
        out = value.get<double>();
        return true;
    }

    // Reads an array of finite numbers that do not decrease, with min_size to max_size entries.
    bool read_sorted_numbers(const char* name, std::vector<double>& out, std::size_t min_size, std::size_t max_size)
    {
        const std::string expected = "an array of " + std::to_string(min_size) + " to " + std::to_string(max_size) +
                                     " finite numbers in non-decreasing order";
        const nlohmann::json* value = field(name, expected.c_str());
        if (value == nullptr) {
            return false;
        }
        if (!value->is_array() || value->size() < min_size || value->size() > max_size) {
            return fail(name, value->is_array() ? "has " + std::to_string(value->size()) + " entries" : "is not an array",
                        expected);
        }
        out.clear();
        for (std::size_t i = 0; i < value->size(); ++i) {
            const nlohmann::json& entry = (*value)[i];
            if (!entry.is_number() || !std::isfinite(entry.get<double>())) {
                return fail(std::string(name) + "[" + std::to_string(i) + "]", "is " + entry.dump(), "a finite number");
            }
            if (!out.empty() && entry.get<double>() < out.back()) {
                return fail(std::string(name) + "[" + std::to_string(i) + "]",
                            "is " + entry.dump() + ", below the entry before it", expected);
            }
            out.push_back(entry.get<double>());
        }
        return true;
    }

private:
    const nlohmann::json& object_;
    std::string& error_;
};

bool shares_sum_to_one(json_reader& reader, const char* name, double sum)
{
    if (std::abs(sum - 1) > reference_share_tolerance) {
        return reader.fail(name, "sum to " + std::to_string(sum),
                           "shares that sum to 1 within " + std::to_string(reference_share_tolerance));
    }
    return true;
}

bool read_numeric(json_reader& reader, reference& ref)
{
    if (!reader.read_sorted_numbers("edges", ref.edges, 2, max_reference_bins + 1)) {
        return false;
    }
    const std::size_t bins = ref.edges.size() - 1;
    const nlohmann::json* shares = reader.field("shares", "an array with one share per bin");
    if (shares == nullptr) {
        return false;
    }
    if (!shares->is_array() || shares->size() != bins) {
        return reader.fail("shares", shares->is_array() ? "has " + std::to_string(shares->size()) + " entries" : "is not an array",
                           "an array of " + std::to_string(bins) + " shares, one fewer than \"edges\"");
    }
    double sum = 0;
    ref.shares.resize(bins);
    for (std::size_t i = 0; i < bins; ++i) {
        if (!reader.read_share("shares[" + std::to_string(i) + "]", (*shares)[i], ref.shares[i])) {
            return false;
        }
        sum += ref.shares[i];
    }
    if (!shares_sum_to_one(reader, "shares", sum)) {
        return false;
    }

    if (!reader.read_number("low_quantile", ref.low_quantile, "a number in [0, 1]") ||
        !reader.read_number("high_quantile", ref.high_quantile, "a number in [0, 1]") ||
        !reader.read_number("low_value", ref.low_value) || !reader.read_number("high_value", ref.high_value)) {
        return false;
    }
    if (!(ref.low_quantile >= 0 && ref.low_quantile < ref.high_quantile && ref.high_quantile <= 1)) {
        return reader.fail("low_quantile", "is " + std::to_string(ref.low_quantile) + " with high_quantile " +
                                               std::to_string(ref.high_quantile),
                           "0 <= low_quantile < high_quantile <= 1");
    }
    if (ref.low_value > ref.high_value) {
        return reader.fail("low_value", "is above high_value", "low_value <= high_value");
    }
    return reader.read_sorted_numbers("ks_points", ref.ks_points, 1, max_reference_ks_points);
}

bool read_categorical(json_reader& reader, reference& ref)
{
    const char* expected = "an array of objects {\"name\": string, \"share\": number}";
    const nlohmann::json* categories = reader.field("categories", expected);
    if (categories == nullptr) {
        return false;
    }
    if (!categories->is_array() || categories->size() > max_reference_categories) {
        return reader.fail("categories", categories->is_array() ? "has " + std::to_string(categories->size()) + " entries"
                                                                : "is not an array",
                           std::string(expected) + " with at most " + std::to_string(max_reference_categories) +
                               " entries");
    }
    double sum = 0;
    std::unordered_set<std::string> names;
    for (std::size_t i = 0; i < categories->size(); ++i) {
        const nlohmann::json& entry = (*categories)[i];
        const std::string where = "categories[" + std::to_string(i) + "]";
        if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() || !entry.contains("share")) {
            return reader.fail(where, "is " + entry.dump(), "an object {\"name\": string, \"share\": number}");
        }
        category_share category;
        category.name = entry["name"].get<std::string>();
        if (!reader.read_share(where + ".share", entry["share"], category.share)) {
            return false;
        }
        if (!names.insert(category.name).second) {
            return reader.fail(where + ".name", "repeats \"" + category.name + "\"", "each category once");
        }
        if (ref.type == feature_type::boolean && category.name != "false" && category.name != "true") {
            return reader.fail(where + ".name", "is \"" + category.name + "\"",
                               "\"false\" or \"true\" in a boolean reference");
        }
        sum += category.share;
        ref.categories.push_back(std::move(category));
    }
    const nlohmann::json* other = reader.field("other_share", "a share between 0 and 1");
    if (other == nullptr || !reader.read_share("other_share", *other, ref.other_share)) {
        return false;
    }
    return shares_sum_to_one(reader, "categories", sum + ref.other_share);
}

}  // namespace

std::optional<reference> reference_from_json(const nlohmann::json& json, std::string& error)
{
    if (!json.is_object()) {
        error = "reference: the document is " + std::string(json.type_name()) + "; expected a JSON object";
        return std::nullopt;
    }
    json_reader reader(json, error);

    const nlohmann::json* version = reader.field("format_version", "1");
    if (version == nullptr) {
        return std::nullopt;
    }
    if (!version->is_number_integer() || version->get<std::int64_t>() != reference_format_version) {
        reader.fail("format_version", "is " + version->dump(),
                    std::to_string(reference_format_version) + ", the only version this tocsin reads");
        return std::nullopt;
    }

    reference ref;
    const nlohmann::json* type = reader.field("type", "\"numeric\", \"categorical\" or \"boolean\"");
    if (type == nullptr) {
        return std::nullopt;
    }
    const auto parsed_type = type->is_string() ? parse_feature_type(type->get<std::string>()) : std::nullopt;
    if (!parsed_type) {
        reader.fail("type", "is " + type->dump(), "\"numeric\", \"categorical\" or \"boolean\"");
        return std::nullopt;
    }
    ref.type = *parsed_type;

    const nlohmann::json* count = reader.field("count", "a positive integer");
    if (count == nullptr) {
        return std::nullopt;
    }
    if (!count->is_number_unsigned() || count->get<std::uint64_t>() == 0) {
        reader.fail("count", "is " + count->dump(), "a positive integer, the number of reference values");
        return std::nullopt;
    }
    ref.count = count->get<std::uint64_t>();

    const bool ok = ref.type == feature_type::numeric ? read_numeric(reader, ref) : read_categorical(reader, ref);
    if (!ok) {
        return std::nullopt;
    }
    error.clear();
    return ref;
}

std::optional<reference> parse_reference(std::string_view text, std::string& error)
{
    nlohmann::json json;
    try {
        json = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        error = "reference: invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what();
        return std::nullopt;
    }
    return reference_from_json(json, error);
}

}  // namespace tocsin::model
