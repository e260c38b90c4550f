#include "rules/dynamic_loader.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "rules/drift_reference.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"
#include "rules/sample_time.hpp"

namespace tocsin {

namespace {

using std::chrono::milliseconds;

constexpr std::size_t max_samples_limit = 1'000'000;

// The keys each detector type reads, besides the ones every type reads.
struct type_keys {
    detector_kind kind;
    std::vector<std::string_view> keys;
};

const std::vector<std::string_view> common_keys = {"type",        "min_samples", "max_samples",
                                                   "adapt_after", "k",           "warm_start"};

const std::vector<type_keys>& keys_by_type()
{
    static const std::vector<type_keys> table = {
        {detector_kind::mean_sigma,
         {"window", "baseline_lag", "sigma_floor", "sigma_floor_ratio", "direction"}},
        {detector_kind::mad, {"window", "baseline_lag", "sigma_floor", "sigma_floor_ratio", "direction"}},
        {detector_kind::ewma, {"half_life", "sigma_floor", "sigma_floor_ratio", "direction"}},
        {detector_kind::seasonal,
         {"half_life", "season", "timezone", "sigma_floor", "sigma_floor_ratio", "direction"}},
        {detector_kind::baseline, {"value", "window", "baseline_lag", "statistic", "compare"}},
        {detector_kind::psi,
         {"window", "reference", "reference_window", "reference_file", "bins", "epsilon", "evaluate_every"}},
        {detector_kind::ks,
         {"window", "reference", "reference_window", "reference_file", "score", "evaluate_every"}},
    };
    return table;
}

const std::vector<std::string_view>& keys_of(detector_kind kind)
{
    for (const auto& entry : keys_by_type()) {
        if (entry.kind == kind) {
            return entry.keys;
        }
    }
    static const std::vector<std::string_view> none;
    return none;
}

std::string types_that_read(std::string_view key)
{
    std::string out;
    for (const auto& entry : keys_by_type()) {
        if (std::find(entry.keys.begin(), entry.keys.end(), key) != entry.keys.end()) {
            if (!out.empty()) {
                out += ", ";
            }
            out += to_string(entry.kind);
        }
    }
    return out;
}

// A relative path names a file next to the rule file.
std::string resolve_path(const std::string& dir, const std::string& name)
{
    if (name.empty() || name.front() == '/') {
        return name;
    }
    return dir + "/" + name;
}

std::optional<double> read_number(const YAML::Node& node, std::string_view field, yaml::checker& check)
{
    auto text = check.string(node, field);
    if (!text) {
        return std::nullopt;
    }
    std::string_view digits = *text;
    if (digits.starts_with("+")) {
        digits.remove_prefix(1);
    }
    double value = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || !std::isfinite(value)) {
        check.error(node, fmt::format("invalid {} {}; expected a finite number such as 1.5", field,
                                      promql::quote(*text)));
        return std::nullopt;
    }
    return value;
}

// Reads a choice among `names`; returns its index.
std::optional<std::size_t> read_choice(const YAML::Node& node, std::string_view field,
                                       std::initializer_list<std::string_view> names, yaml::checker& check)
{
    auto text = check.string(node, field);
    if (!text) {
        return std::nullopt;
    }
    std::size_t i = 0;
    std::string expected;
    for (std::string_view name : names) {
        if (*text == name) {
            return i;
        }
        expected += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ");
        expected += name;
        ++i;
    }
    check.error(node, fmt::format("invalid {} {}; expected {}", field, promql::quote(*text), expected));
    return std::nullopt;
}

class block_reader {
public:
    block_reader(const YAML::Node& node, yaml::checker& check) : node_(node), check_(check) {}

    YAML::Node get(std::string_view key) const { return yaml::checker::child(node_, key); }

    std::optional<milliseconds> duration(std::string_view key, bool allow_zero)
    {
        const YAML::Node n = get(key);
        if (!n.IsDefined()) {
            return std::nullopt;
        }
        auto d = check_.duration(n, fmt::format("dynamic.{}", key));
        if (d && (d->count() < 0 || (!allow_zero && d->count() == 0))) {
            check_.error(n, fmt::format("dynamic.{} must be {} 0; expected for example 1h", key,
                                        allow_zero ? "at least" : "greater than"));
            return std::nullopt;
        }
        return d;
    }

    std::optional<double> number(std::string_view key, double low, double high)
    {
        const YAML::Node n = get(key);
        if (!n.IsDefined()) {
            return std::nullopt;
        }
        auto v = read_number(n, fmt::format("dynamic.{}", key), check_);
        if (v && (*v < low || *v > high)) {
            check_.error(n, fmt::format("dynamic.{} {} is out of range; expected a number from {} to {}", key, *v,
                                        low, high));
            return std::nullopt;
        }
        return v;
    }

    std::optional<std::size_t> count(std::string_view key, std::size_t low, std::size_t high)
    {
        const YAML::Node n = get(key);
        if (!n.IsDefined()) {
            return std::nullopt;
        }
        auto v = check_.count(n, fmt::format("dynamic.{}", key));
        if (v && (*v < low || *v > high)) {
            check_.error(n, fmt::format("dynamic.{} {} is out of range; expected a whole number from {} to {}", key,
                                        *v, low, high));
            return std::nullopt;
        }
        return v ? std::optional<std::size_t>(static_cast<std::size_t>(*v)) : std::nullopt;
    }

    std::optional<std::size_t> choice(std::string_view key, std::initializer_list<std::string_view> names)
    {
        const YAML::Node n = get(key);
        if (!n.IsDefined()) {
            return std::nullopt;
        }
        return read_choice(n, fmt::format("dynamic.{}", key), names, check_);
    }

private:
    const YAML::Node& node_;
    yaml::checker& check_;
};

} // namespace

std::optional<dynamic_block> load_dynamic_block(const YAML::Node& node, const std::string& rule_dir,
                                                yaml::checker& check)
{
    if (!check.expect_map(node, "dynamic")) {
        return std::nullopt;
    }
    const std::size_t errors_before = check.error_count();
    dynamic_block out;
    detector_spec& spec = out.spec;

    const YAML::Node type = yaml::checker::child(node, "type");
    if (!type.IsDefined()) {
        check.error(node, "missing field \"type\" in dynamic; expected one of mean_sigma, ewma, mad, seasonal, "
                          "baseline, psi, ks");
        return std::nullopt;
    }
    auto type_name = check.string(type, "dynamic.type");
    if (!type_name) {
        return std::nullopt;
    }
    auto kind = parse_detector_kind(*type_name);
    if (!kind) {
        check.error(type, fmt::format("unknown dynamic.type {}; expected one of mean_sigma, ewma, mad, seasonal, "
                                      "baseline, psi, ks",
                                      promql::quote(*type_name)));
        return std::nullopt;
    }
    spec.kind = *kind;

    // Keys that another type reads are reported by name, so that a copied block tells what to
    // remove rather than just "unknown key".
    const auto& own = keys_of(spec.kind);
    std::vector<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        if (!key.IsScalar()) {
            continue;
        }
        const std::string& name = key.Scalar();
        if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
            check.error(key, fmt::format("dynamic.{} appears twice; keep one", name));
            continue;
        }
        seen.push_back(name);
        if (std::find(common_keys.begin(), common_keys.end(), name) != common_keys.end() ||
            std::find(own.begin(), own.end(), name) != own.end()) {
            continue;
        }
        const std::string readers = types_that_read(name);
        if (!readers.empty()) {
            check.error(key, fmt::format("dynamic.{} does not apply to type {}; it is read by {}; remove it", name,
                                         to_string(spec.kind), readers));
        } else {
            std::string allowed;
            for (auto k : common_keys) {
                allowed += (allowed.empty() ? "" : ", ") + std::string(k);
            }
            for (auto k : own) {
                allowed += ", " + std::string(k);
            }
            check.error(key, fmt::format("unknown key {} in dynamic of type {}; expected one of {}",
                                         promql::quote(name), to_string(spec.kind), allowed));
        }
    }

    block_reader read(node, check);
    const bool drift = spec.kind == detector_kind::psi || spec.kind == detector_kind::ks;

    if (auto v = read.count("min_samples", 1, max_samples_limit)) {
        spec.min_samples = *v;
    }
    if (auto v = read.count("max_samples", 2, max_samples_limit)) {
        spec.max_samples = *v;
    }
    if (spec.max_samples < spec.min_samples) {
        check.error(read.get("max_samples").IsDefined() ? read.get("max_samples") : node,
                    fmt::format("dynamic.max_samples {} is below min_samples {}; the baseline could never warm up; "
                                "raise max_samples or lower min_samples",
                                spec.max_samples, spec.min_samples));
    }
    if (auto v = read.duration("adapt_after", true)) {
        spec.adapt_after = *v;
    }
    if (const YAML::Node n = read.get("k"); n.IsDefined()) {
        if (auto v = read_number(n, "dynamic.k", check)) {
            if (*v <= 0) {
                // A score of 0 means "equal to the baseline", so k <= 0 fires on normal values.
                check.error(n, fmt::format("dynamic.k is {}; expected a positive number of deviations such as 3",
                                           *v));
            } else {
                out.k = *v;
                out.k_mark = n.Mark();
            }
        }
    }
    if (auto v = read.choice("direction", {"above", "below", "both"})) {
        spec.side = static_cast<direction>(*v);
    }
    if (auto v = read.duration("window", false)) {
        spec.window = *v;
    }
    if (auto v = read.duration("baseline_lag", true)) {
        spec.lag = *v;
    }
    const bool windowed = spec.kind == detector_kind::mean_sigma || spec.kind == detector_kind::mad ||
                          spec.kind == detector_kind::baseline;
    if (windowed && spec.lag >= spec.window) {
        check.error(read.get("baseline_lag").IsDefined() ? read.get("baseline_lag") : node,
                    fmt::format("dynamic.baseline_lag {} is not shorter than window {}, so the baseline would "
                                "be empty; make the lag shorter than the window",
                                format_duration(spec.lag), format_duration(spec.window)));
    }
    if (auto v = read.number("sigma_floor", 0, 1e300)) {
        spec.sigma_floor = *v;
    }
    if (auto v = read.number("sigma_floor_ratio", 0, 10)) {
        spec.sigma_floor_ratio = *v;
    }
    if (auto v = read.choice("season", {"hour_of_day", "hour_of_week"})) {
        spec.period = static_cast<season>(*v);
    }
    if (spec.kind == detector_kind::seasonal) {
        // A slot sees one stretch of values a day (or a week), so its memory must span several.
        spec.half_life = spec.period == season::hour_of_day ? std::chrono::hours(24 * 7) : std::chrono::hours(24 * 28);
    }
    if (auto v = read.duration("half_life", false)) {
        spec.half_life = *v;
    }
    if (const YAML::Node n = read.get("timezone"); n.IsDefined()) {
        if (auto v = check.string(n, "dynamic.timezone")) {
            spec.timezone = *v;
        }
    }
    if (auto v = read.number("value", -1e300, 1e300)) {
        spec.fixed_value = *v;
    }
    if (auto v = read.choice("statistic", {"median", "mean"})) {
        spec.statistic = static_cast<baseline_statistic>(*v);
    }
    if (auto v = read.choice("compare", {"ratio", "difference"})) {
        spec.compare = static_cast<baseline_compare>(*v);
    }
    if (spec.kind == detector_kind::baseline && spec.fixed_value && *spec.fixed_value == 0 &&
        spec.compare == baseline_compare::ratio) {
        check.error(read.get("value"), "dynamic.value 0 with compare: ratio divides by zero; use compare: "
                                       "difference or a non-zero value");
    }
    if (auto v = read.choice("reference", {"fixed", "trailing", "file"})) {
        spec.reference = static_cast<drift_reference>(*v);
    }
    if (const YAML::Node n = read.get("reference_file"); n.IsDefined()) {
        if (read.get("reference").IsDefined() && spec.reference != drift_reference::file) {
            check.error(n, "dynamic.reference_file needs reference: file (or no reference key); remove one of them");
        } else if (auto name = check.string(n, "dynamic.reference_file")) {
            std::string problem;
            if (auto data = read_drift_reference(resolve_path(rule_dir, *name), problem)) {
                if (spec.kind == detector_kind::ks && data->values.empty()) {
                    check.error(n, fmt::format("dynamic.reference_file {} holds bins, but ks needs the reference "
                                               "values themselves; give a file of values",
                                               promql::quote(*name)));
                } else {
                    spec.reference = drift_reference::file;
                    spec.reference_data = std::make_shared<const drift_reference_data>(std::move(*data));
                }
            } else {
                check.error(n, fmt::format("dynamic.reference_file: {}", problem));
            }
        }
    } else if (spec.reference == drift_reference::file) {
        check.error(read.get("reference"), "dynamic.reference: file needs reference_file: PATH, the reference "
                                           "histogram or values");
    }
    if (const YAML::Node n = read.get("warm_start"); n.IsDefined()) {
        if (auto name = check.string(n, "dynamic.warm_start")) {
            std::string problem;
            if (auto rows = read_timestamp_value_file(resolve_path(rule_dir, *name), max_samples_limit, problem)) {
                auto data = std::make_shared<warm_start_data>();
                data->file = *name;
                data->samples = std::move(*rows);
                spec.warm_start = std::move(data);
            } else {
                check.error(n, fmt::format("dynamic.warm_start: {}", problem));
            }
        }
    }
    if (auto v = read.duration("reference_window", false)) {
        spec.reference_window = *v;
    }
    if (auto v = read.count("bins", 2, 1000)) {
        spec.bins = *v;
    }
    if (auto v = read.number("epsilon", 1e-12, 0.1)) {
        if (*v <= 0) {
            check.error(read.get("epsilon"), "dynamic.epsilon must be greater than 0; expected for example 0.0001");
        } else {
            spec.epsilon = *v;
        }
    }
    if (auto v = read.choice("score", {"statistic", "p_value"})) {
        spec.ks_figure = static_cast<ks_score>(*v);
    }
    if (auto v = read.duration("evaluate_every", true)) {
        spec.evaluate_every = *v;
    }
    if (!drift) {
        spec.evaluate_every = milliseconds(0);
    }

    if (check.error_count() != errors_before) {
        return std::nullopt;
    }
    // Conditions that only the detector itself can judge (a time zone name, for example).
    std::string problem;
    if (!make_detector(spec, problem)) {
        // The detector's messages start with the key they concern (dynamic.timezone: ...).
        check.error(node, problem.starts_with("dynamic.") ? problem : fmt::format("dynamic: {}", problem));
        return std::nullopt;
    }
    return out;
}

namespace {

constexpr std::uint64_t fnv_offset = 14695981039346656037ull;

// FNV-1a, 64 bits, continued from `hash` over `size` bytes.
std::uint64_t fnv_bytes(std::uint64_t hash, const void* data, std::size_t size)
{
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) {
        hash ^= bytes[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

std::uint64_t content_hash(std::uint64_t hash, std::span<const double> values)
{
    return fnv_bytes(hash, values.data(), values.size() * sizeof(double));
}

} // namespace

std::string canonical_text(const detector_spec& s)
{
    std::string text = fmt::format(
        "dynamic type={} side={} min={} max={} window={} lag={} floor={} floor_ratio={} half_life={} season={} "
        "tz={} adapt={} statistic={} compare={} reference={} reference_window={} bins={} epsilon={} ks={} "
        "every={}",
        to_string(s.kind), static_cast<int>(s.side), s.min_samples, s.max_samples, s.window.count(), s.lag.count(),
        s.sigma_floor, s.sigma_floor_ratio, s.half_life.count(), static_cast<int>(s.period), s.timezone,
        s.adapt_after.count(), static_cast<int>(s.statistic), static_cast<int>(s.compare),
        static_cast<int>(s.reference), s.reference_window.count(), s.bins, s.epsilon, static_cast<int>(s.ks_figure),
        s.evaluate_every.count());
    if (s.fixed_value) {
        text += fmt::format(" value={}", *s.fixed_value);
    }
    // The contents of the files count too, so a reload after a file changed restarts the
    // detector with the new reference or history.
    if (s.reference_data) {
        const drift_reference_data& d = *s.reference_data;
        text += fmt::format(" reference_file={} edges={} shares={} values={} content={:016x}", d.file, d.edges.size(),
                            d.shares.size(), d.values.size(),
                            content_hash(content_hash(content_hash(fnv_offset, d.edges), d.shares), d.values));
    }
    if (s.warm_start) {
        std::uint64_t hash = fnv_offset;
        for (const auto& [t, v] : s.warm_start->samples) {
            hash = content_hash(hash, std::span<const double>(&v, 1));
            hash = fnv_bytes(hash, &t, sizeof t);
        }
        text += fmt::format(" warm_start={} samples={} content={:016x}", s.warm_start->file,
                            s.warm_start->samples.size(), hash);
    }
    return text;
}

} // namespace tocsin

namespace tocsin {

std::uint64_t detector_spec_hash(const detector_spec& spec)
{
    const std::string text = canonical_text(spec);
    return fnv_bytes(fnv_offset, text.data(), text.size());
}

} // namespace tocsin
