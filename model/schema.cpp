#include "model/schema.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/records.hpp"
#include "rules/file_read.hpp"
#include "rules/json_depth.hpp"
#include "rules/yaml_check.hpp"

namespace tocsin::model {

namespace {

constexpr std::string_view tasks_help = "expected regression or binary_classification";
// Nesting allowed in a line of a reference records file.
constexpr int max_reference_line_depth = 8;

// A value that a reference file feeds to one feature or to the prediction.
struct reference_target {
    reference_source* source = nullptr;
    feature_type type = feature_type::numeric;
    // Empty for the prediction.
    std::string feature;
    const std::vector<std::string>* categories = nullptr;
    YAML::Mark mark;
    std::vector<double> numbers;
    std::vector<std::string> texts;
};

class schema_loader {
public:
    schema_loader(std::string_view text, const std::string& file, const std::string& base_folder, diagnostics& diags)
        : text_(text), base_(base_folder), check_(file, diags)
    {
    }

    std::optional<schema_set> load();

private:
    void load_model(const YAML::Node& node, schema_set& out, std::set<std::string>& names);
    std::optional<std::string> name(const YAML::Node& node, std::string_view field);
    std::optional<double> number(const YAML::Node& node, std::string_view field);
    std::optional<time_ms> positive_duration(const YAML::Node& node, std::string_view field, bool allow_zero);
    std::optional<std::uint64_t> bounded_count(const YAML::Node& node, std::string_view field, std::uint64_t low,
                                               std::uint64_t high);
    void load_window(const YAML::Node& node, model_schema& model);
    void load_performance(const YAML::Node& node, model_schema& model);
    void load_feature(const YAML::Node& node, model_schema& model, std::set<std::string>& names);
    void load_prediction(const YAML::Node& node, model_schema& model);
    void load_reference(const YAML::Node& node, std::string_view what, reference_source& out);
    void load_reference_files(model_schema& model, const std::vector<YAML::Mark>& feature_marks,
                              const YAML::Mark& prediction_mark);
    void read_reference_file(const std::string& path, std::vector<reference_target*>& targets);
    void load_stored(reference_source& source, feature_type type, const std::vector<std::string>* categories,
                     const YAML::Mark& mark, std::string_view what);
    std::string resolve(const std::string& path) const;

    std::string_view text_;
    std::string base_;
    yaml::checker check_;
    // The reference node of each feature of the model being loaded, for messages.
    std::vector<YAML::Mark> reference_marks_;
    YAML::Mark prediction_reference_mark_;
};

std::optional<schema_set> schema_loader::load()
{
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text_));
    } catch (const YAML::Exception& e) {
        check_.error(e.mark, fmt::format("invalid YAML: {}; check the indentation and quoting here", e.msg));
        return std::nullopt;
    }
    schema_set out;
    if (root.IsNull()) {
        return out;
    }
    if (!check_.expect_map(root, "a model schema file")) {
        return std::nullopt;
    }
    check_.check_keys(root, "model schema file", {"models"});
    const YAML::Node list = yaml::checker::child(root, "models");
    if (!list.IsDefined()) {
        check_.error(root, "missing field \"models\" in the model schema file; expected models: [{name: ..., task: "
                           "..., features: [...]}]");
        return std::nullopt;
    }
    if (!list.IsNull() && check_.expect_sequence(list, "models")) {
        if (list.size() > max_schema_models) {
            check_.error(list, fmt::format("{} models declared, more than the limit of {}; split the fleet across "
                                           "tocsind instances",
                                           list.size(), max_schema_models));
        } else {
            std::set<std::string> names;
            for (const YAML::Node& model : list) {
                load_model(model, out, names);
            }
        }
    }
    if (check_.error_count() > 0) {
        return std::nullopt;
    }
    out.reindex();
    return out;
}

std::optional<std::string> schema_loader::name(const YAML::Node& node, std::string_view field)
{
    auto text = check_.string(node, field);
    if (!text) {
        return std::nullopt;
    }
    if (text->empty() || text->size() > max_schema_name_bytes) {
        check_.error(node, fmt::format("{} {} has {} bytes; use 1 to {} bytes", field, quote_value(*text),
                                       text->size(), max_schema_name_bytes));
        return std::nullopt;
    }
    for (const char c : *text) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            check_.error(node, fmt::format("{} {} holds a control character; use printable characters", field,
                                           quote_value(*text)));
            return std::nullopt;
        }
    }
    return text;
}

std::optional<double> schema_loader::number(const YAML::Node& node, std::string_view field)
{
    if (!node.IsScalar()) {
        check_.error(node, fmt::format("{} must be a number, got {}", field, yaml::describe(node)));
        return std::nullopt;
    }
    const std::string& text = node.Scalar();
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
        check_.error(node, fmt::format("{} must be a finite number such as 0.5, got {}", field, quote_value(text)));
        return std::nullopt;
    }
    return value;
}

std::optional<time_ms> schema_loader::positive_duration(const YAML::Node& node, std::string_view field,
                                                        bool allow_zero)
{
    const auto d = check_.duration(node, field);
    if (!d) {
        return std::nullopt;
    }
    if ((!allow_zero && d->count() <= 0) || *d > max_schema_duration) {
        check_.error(node, fmt::format("{} is {}; expected {} to 400d", field, node.Scalar(),
                                       allow_zero ? "0s" : "1ms"));
        return std::nullopt;
    }
    return d->count();
}

std::optional<std::uint64_t> schema_loader::bounded_count(const YAML::Node& node, std::string_view field,
                                                          std::uint64_t low, std::uint64_t high)
{
    const auto value = check_.count(node, field);
    if (!value) {
        return std::nullopt;
    }
    if (*value < low || *value > high) {
        check_.error(node, fmt::format("{} is {}; expected {} to {}", field, *value, low, high));
        return std::nullopt;
    }
    return value;
}

std::string schema_loader::resolve(const std::string& path) const
{
    const std::filesystem::path p(path);
    if (p.is_absolute() || base_.empty()) {
        return path;
    }
    return (std::filesystem::path(base_) / p).lexically_normal().string();
}

void schema_loader::load_window(const YAML::Node& node, model_schema& model)
{
    if (!check_.expect_map(node, "window")) {
        return;
    }
    check_.check_keys(node, "window", {"duration", "buckets", "ks_sample_size"});
    if (const YAML::Node d = yaml::checker::child(node, "duration"); d.IsDefined()) {
        if (const auto v = positive_duration(d, "window.duration", false)) {
            model.window.duration_ms = *v;
        }
    }
    if (const YAML::Node b = yaml::checker::child(node, "buckets"); b.IsDefined()) {
        if (const auto v = bounded_count(b, "window.buckets", 1, 10'000)) {
            model.window.bucket_count = *v;
        }
    }
    if (const YAML::Node k = yaml::checker::child(node, "ks_sample_size"); k.IsDefined()) {
        if (const auto v = bounded_count(k, "window.ks_sample_size", 1, ks_max_exact_n)) {
            model.window.ks_sample_size = *v;
        }
    }
    if (model.window.duration_ms < static_cast<time_ms>(model.window.bucket_count)) {
        check_.error(node, fmt::format("window.duration is {} ms for {} buckets; give each bucket at least 1ms",
                                       model.window.duration_ms, model.window.bucket_count));
    }
}

void schema_loader::load_performance(const YAML::Node& node, model_schema& model)
{
    if (!check_.expect_map(node, "performance_window")) {
        return;
    }
    check_.check_keys(node, "performance_window", {"max_pairs", "max_age"});
    if (const YAML::Node p = yaml::checker::child(node, "max_pairs"); p.IsDefined()) {
        if (const auto v = bounded_count(p, "performance_window.max_pairs", 1, max_schema_pairs)) {
            model.performance.max_pairs = *v;
        }
    }
    if (const YAML::Node a = yaml::checker::child(node, "max_age"); a.IsDefined()) {
        if (const auto v = positive_duration(a, "performance_window.max_age", true)) {
            model.performance.max_age_ms = *v;
        }
    }
}

void schema_loader::load_reference(const YAML::Node& node, std::string_view what, reference_source& out)
{
    const std::string field = fmt::format("{}.reference", what);
    if (!check_.expect_map(node, field)) {
        return;
    }
    check_.check_keys(node, field, {"file", "stored", "period"});
    const YAML::Node file = yaml::checker::child(node, "file");
    const YAML::Node stored = yaml::checker::child(node, "stored");
    const YAML::Node period = yaml::checker::child(node, "period");
    const int given = int(file.IsDefined()) + int(stored.IsDefined()) + int(period.IsDefined());
    if (given != 1) {
        check_.error(node, fmt::format("{} must have exactly one of file, stored or period, got {}", field, given));
        return;
    }
    if (period.IsDefined()) {
        if (!check_.expect_map(period, field + ".period")) {
            return;
        }
        check_.check_keys(period, field + ".period", {"first"});
        const YAML::Node first = yaml::checker::child(period, "first");
        if (!first.IsDefined()) {
            check_.error(period, fmt::format("{}.period needs first, such as {{first: 7d}}", field));
            return;
        }
        if (const auto v = positive_duration(first, field + ".period.first", false)) {
            out.type = reference_source::kind::period;
            out.period_ms = *v;
        }
        return;
    }
    const YAML::Node path_node = file.IsDefined() ? file : stored;
    const auto path = check_.string(path_node, field + (file.IsDefined() ? ".file" : ".stored"));
    if (!path) {
        return;
    }
    if (path->empty()) {
        check_.error(path_node, fmt::format("{} has an empty path; give the path of the file", field));
        return;
    }
    out.type = file.IsDefined() ? reference_source::kind::file : reference_source::kind::stored;
    out.path = resolve(*path);
}

void schema_loader::load_feature(const YAML::Node& node, model_schema& model, std::set<std::string>& names)
{
    const std::size_t position = model.features.size();
    reference_marks_.push_back(node.Mark());
    if (!check_.expect_map(node, "feature")) {
        return;
    }
    check_.check_keys(node, "feature", {"name", "type", "range", "categories", "reference"});
    feature_schema feature;
    const YAML::Node name_node = yaml::checker::child(node, "name");
    if (!name_node.IsDefined()) {
        check_.error(node, "feature needs a name");
        return;
    }
    const auto feature_name = name(name_node, "feature name");
    if (!feature_name) {
        return;
    }
    if (!names.insert(*feature_name).second) {
        check_.error(name_node, fmt::format("feature {} is declared twice in model {}; declare each feature once",
                                            quote_value(*feature_name), quote_value(model.name)));
        return;
    }
    feature.spec.name = *feature_name;
    const std::string what = fmt::format("feature {}", quote_value(*feature_name));

    const YAML::Node type_node = yaml::checker::child(node, "type");
    if (!type_node.IsDefined()) {
        check_.error(node, fmt::format("{} needs a type: numeric, categorical or boolean", what));
        return;
    }
    const auto type_text = check_.string(type_node, "type");
    if (!type_text) {
        return;
    }
    const auto type = parse_feature_type(*type_text);
    if (!type) {
        check_.error(type_node, fmt::format("{} has type {}; expected numeric, categorical or boolean", what,
                                            quote_value(*type_text)));
        return;
    }
    feature.spec.type = *type;

    if (const YAML::Node range = yaml::checker::child(node, "range"); range.IsDefined()) {
        if (*type != feature_type::numeric) {
            check_.error(range, fmt::format("{} is {}, but range applies to numeric features; remove it", what,
                                            *type_text));
        } else if (!range.IsSequence() || range.size() != 2) {
            check_.error(range, fmt::format("{} range must be [min, max] (either may be null), got {}", what,
                                            yaml::describe(range)));
        } else {
            if (!range[0].IsNull()) {
                feature.spec.min = number(range[0], "range min");
            }
            if (!range[1].IsNull()) {
                feature.spec.max = number(range[1], "range max");
            }
            if (feature.spec.min && feature.spec.max && *feature.spec.min > *feature.spec.max) {
                check_.error(range, fmt::format("{} range has min {} above max {}; swap them", what,
                                                *feature.spec.min, *feature.spec.max));
            }
        }
    }

    if (const YAML::Node categories = yaml::checker::child(node, "categories"); categories.IsDefined()) {
        if (*type != feature_type::categorical) {
            check_.error(categories, fmt::format("{} is {}, but categories apply to categorical features; remove "
                                                 "them",
                                                 what, *type_text));
        } else if (check_.expect_sequence(categories, "categories")) {
            if (categories.size() == 0 || categories.size() > max_schema_categories) {
                check_.error(categories, fmt::format("{} declares {} categories; declare 1 to {}", what,
                                                     categories.size(), max_schema_categories));
            } else {
                std::set<std::string> seen;
                for (const YAML::Node& category : categories) {
                    const auto text = check_.string(category, "category");
                    if (!text) {
                        continue;
                    }
                    if (text->empty() || text->size() > max_schema_category_bytes) {
                        check_.error(category, fmt::format("category {} has {} bytes; use 1 to {} bytes",
                                                           quote_value(*text), text->size(),
                                                           max_schema_category_bytes));
                    } else if (!seen.insert(*text).second) {
                        check_.error(category, fmt::format("category {} is listed twice; list each category once",
                                                           quote_value(*text)));
                    } else {
                        feature.categories.push_back(*text);
                    }
                }
            }
        }
    }

    if (const YAML::Node ref = yaml::checker::child(node, "reference"); ref.IsDefined()) {
        reference_marks_[position] = ref.Mark();
        load_reference(ref, what, feature.reference);
    }
    model.features.push_back(std::move(feature));
}

void schema_loader::load_prediction(const YAML::Node& node, model_schema& model)
{
    const bool regression = model.task == prediction_task::regression;
    model.prediction.type = regression ? prediction_type::number : prediction_type::score;
    if (!node.IsDefined()) {
        return;
    }
    prediction_reference_mark_ = node.Mark();
    if (!check_.expect_map(node, "prediction")) {
        return;
    }
    check_.check_keys(node, "prediction", {"type", "classes", "reference"});
    if (const YAML::Node type = yaml::checker::child(node, "type"); type.IsDefined()) {
        const auto text = check_.string(type, "prediction.type");
        if (text) {
            if (*text == "score" || *text == "class") {
                if (regression) {
                    check_.error(type, fmt::format("prediction.type is {} but the task is regression; use number",
                                                   *text));
                }
                model.prediction.type = *text == "score" ? prediction_type::score : prediction_type::class_label;
            } else if (*text == "number") {
                if (!regression) {
                    check_.error(type, "prediction.type is number but the task is binary_classification; use score "
                                       "(a probability) or class");
                }
                model.prediction.type = prediction_type::number;
            } else {
                check_.error(type, fmt::format("prediction.type is {}; expected score, class or number",
                                               quote_value(*text)));
            }
        }
    }
    if (const YAML::Node classes = yaml::checker::child(node, "classes"); classes.IsDefined()) {
        if (regression) {
            check_.error(classes, "prediction.classes applies to binary_classification; remove it");
        } else if (!classes.IsSequence() || classes.size() != 2) {
            check_.error(classes, fmt::format("prediction.classes must be [negative, positive], two strings, got {}",
                                              yaml::describe(classes)));
        } else {
            const auto negative = name(classes[0], "negative class");
            const auto positive = name(classes[1], "positive class");
            if (negative && positive && *negative == *positive) {
                check_.error(classes, "prediction.classes names one class twice; give the negative and the positive "
                                      "class");
            } else if (negative && positive) {
                model.prediction.classes = {*negative, *positive};
            }
        }
    }
    if (const YAML::Node ref = yaml::checker::child(node, "reference"); ref.IsDefined()) {
        prediction_reference_mark_ = ref.Mark();
        load_reference(ref, "prediction", model.prediction.reference);
    }
}

void schema_loader::load_model(const YAML::Node& node, schema_set& out, std::set<std::string>& names)
{
    if (!check_.expect_map(node, "model")) {
        return;
    }
    check_.check_keys(node, "model", {"name", "task", "threshold", "window", "performance_window", "outcome_horizon",
                                      "max_pending", "max_versions", "features", "prediction"});
    const std::size_t errors_before = check_.error_count();
    model_schema model;
    model.file = check_.file();
    model.line = node.Mark().line + 1;
    const YAML::Node name_node = yaml::checker::child(node, "name");
    if (!name_node.IsDefined()) {
        check_.error(node, "model needs a name");
        return;
    }
    const auto model_name = name(name_node, "model name");
    if (!model_name) {
        return;
    }
    if (!names.insert(*model_name).second) {
        check_.error(name_node, fmt::format("model {} is declared twice; declare each model once",
                                            quote_value(*model_name)));
        return;
    }
    model.name = *model_name;

    const YAML::Node task = yaml::checker::child(node, "task");
    if (!task.IsDefined()) {
        check_.error(node, fmt::format("model {} needs a task; {}", quote_value(model.name), tasks_help));
        return;
    }
    if (const auto text = check_.string(task, "task")) {
        if (*text == "regression") {
            model.task = prediction_task::regression;
        } else if (*text == "binary_classification") {
            model.task = prediction_task::binary_classification;
        } else {
            check_.error(task, fmt::format("task is {}; {}", quote_value(*text), tasks_help));
            return;
        }
    }
    if (const YAML::Node t = yaml::checker::child(node, "threshold"); t.IsDefined()) {
        if (model.task == prediction_task::regression) {
            check_.error(t, "threshold applies to binary_classification; remove it");
        } else if (const auto v = number(t, "threshold")) {
            if (*v < 0 || *v > 1) {
                check_.error(t, fmt::format("threshold is {}; expected a score from 0 to 1", *v));
            } else {
                model.threshold = *v;
            }
        }
    }
    model.performance.task = model.task;
    model.performance.threshold = model.threshold;
    if (const YAML::Node w = yaml::checker::child(node, "window"); w.IsDefined()) {
        load_window(w, model);
    }
    if (const YAML::Node p = yaml::checker::child(node, "performance_window"); p.IsDefined()) {
        load_performance(p, model);
    }
    if (const YAML::Node h = yaml::checker::child(node, "outcome_horizon"); h.IsDefined()) {
        if (const auto v = positive_duration(h, "outcome_horizon", false)) {
            model.outcome_horizon_ms = *v;
        }
    }
    if (const YAML::Node m = yaml::checker::child(node, "max_pending"); m.IsDefined()) {
        if (const auto v = bounded_count(m, "max_pending", 1, max_schema_pending)) {
            model.max_pending = *v;
        }
    }
    if (const YAML::Node m = yaml::checker::child(node, "max_versions"); m.IsDefined()) {
        if (const auto v = bounded_count(m, "max_versions", 1, max_schema_versions)) {
            model.max_versions = *v;
        }
    }

    reference_marks_.clear();
    prediction_reference_mark_ = node.Mark();
    const YAML::Node features = yaml::checker::child(node, "features");
    if (!features.IsDefined()) {
        check_.error(node, fmt::format("model {} needs features: a list of {{name, type}}, or [] for none",
                                       quote_value(model.name)));
    } else if (!features.IsNull() && check_.expect_sequence(features, "features")) {
        if (features.size() > max_schema_features) {
            check_.error(features, fmt::format("model {} declares {} features, more than the limit of {}; monitor "
                                               "the most important ones",
                                               quote_value(model.name), features.size(), max_schema_features));
        } else {
            std::set<std::string> feature_names;
            for (const YAML::Node& feature : features) {
                load_feature(feature, model, feature_names);
            }
        }
    }
    load_prediction(yaml::checker::child(node, "prediction"), model);

    if (check_.error_count() == errors_before) {
        load_reference_files(model, reference_marks_, prediction_reference_mark_);
    }
    out.models.push_back(std::move(model));
}

void schema_loader::load_stored(reference_source& source, feature_type type,
                                const std::vector<std::string>* categories, const YAML::Mark& mark,
                                std::string_view what)
{
    std::string content;
    std::string problem;
    if (!read_regular_file(source.path, max_config_file_bytes, content, problem)) {
        check_.error(mark, fmt::format("{}: cannot read the stored reference {}: {}", what, source.path, problem));
        return;
    }
    auto ref = parse_reference(content, problem);
    if (!ref) {
        check_.error(mark, fmt::format("{}: the stored reference {} is invalid: {}", what, source.path, problem));
        return;
    }
    if (ref->type != type) {
        check_.error(mark, fmt::format("{}: the stored reference {} is {} but the values are {}; store a reference "
                                       "of the right type",
                                       what, source.path, to_string(ref->type), to_string(type)));
        return;
    }
    if (categories != nullptr && !categories->empty()) {
        for (const category_share& category : ref->categories) {
            if (std::find(categories->begin(), categories->end(), category.name) == categories->end()) {
                check_.error(mark, fmt::format("{}: the stored reference {} has category {}, which is not declared; "
                                               "add it to categories or rebuild the reference",
                                               what, source.path, quote_value(category.name)));
                return;
            }
        }
    }
    source.loaded = std::make_shared<const reference>(std::move(*ref));
}

void schema_loader::read_reference_file(const std::string& path, std::vector<reference_target*>& targets)
{
    const YAML::Mark& mark = targets.front()->mark;
    std::string content;
    std::string problem;
    if (!read_regular_file(path, max_config_file_bytes, content, problem)) {
        check_.error(mark, fmt::format("cannot read the reference records {}: {}", path, problem));
        return;
    }
    std::string_view rest = content;
    std::size_t line = 0;
    while (!rest.empty()) {
        ++line;
        const auto end = rest.find('\n');
        std::string_view text = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        if (text.find_first_not_of(" \t\r") == std::string_view::npos) {
            continue;
        }
        if (json_nesting_depth(text) > max_reference_line_depth) {
            check_.error(mark, fmt::format("{}:{}: the record nests more than {} deep; write one flat record per "
                                           "line",
                                           path, line, max_reference_line_depth));
            return;
        }
        nlohmann::json record;
        try {
            record = nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            check_.error(mark, fmt::format("{}:{}: invalid JSON ({}); write one record object per line", path, line,
                                           quote_value(e.what())));
            return;
        }
        const auto features = record.is_object() ? record.find("features") : record.end();
        if (!record.is_object() || (features != record.end() && !features->is_object())) {
            check_.error(mark, fmt::format("{}:{}: expected a record such as {{\"features\": {{\"age\": 41}}, "
                                           "\"prediction\": 0.8}}",
                                           path, line));
            return;
        }
        for (reference_target* target : targets) {
            const nlohmann::json* value = nullptr;
            if (target->feature.empty()) {
                const auto found = record.find("prediction");
                value = found == record.end() ? nullptr : &*found;
            } else if (features != record.end()) {
                const auto found = features->find(target->feature);
                value = found == features->end() ? nullptr : &*found;
            }
            if (value == nullptr || value->is_null()) {
                continue;
            }
            // Values of another type are not reference values: they would count as type
            // mismatches in a window.
            switch (target->type) {
            case feature_type::numeric:
                if (value->is_number()) {
                    target->numbers.push_back(value->get<double>());
                }
                break;
            case feature_type::categorical:
                if (value->is_string()) {
                    target->texts.push_back(value->get<std::string>());
                } else if (target->feature.empty() && (value->is_boolean() || value->is_number())) {
                    // A class prediction given as 0/1 or false/true is monitored as "0" or "1".
                    const bool one = value->is_boolean() ? value->get<bool>() : value->get<double>() == 1.0;
                    target->texts.push_back(one ? "1" : "0");
                }
                break;
            case feature_type::boolean:
                if (value->is_boolean()) {
                    target->texts.push_back(value->get<bool>() ? "true" : "false");
                }
                break;
            }
        }
    }
}

void schema_loader::load_reference_files(model_schema& model, const std::vector<YAML::Mark>& feature_marks,
                                         const YAML::Mark& prediction_mark)
{
    std::vector<reference_target> targets;
    targets.reserve(model.features.size() + 1);
    for (std::size_t i = 0; i < model.features.size(); ++i) {
        feature_schema& feature = model.features[i];
        const std::string what = fmt::format("model {} feature {}", quote_value(model.name),
                                             quote_value(feature.spec.name));
        if (feature.reference.type == reference_source::kind::stored) {
            load_stored(feature.reference, feature.spec.type, &feature.categories, feature_marks[i], what);
        } else if (feature.reference.type == reference_source::kind::file) {
            targets.push_back({&feature.reference, feature.spec.type, feature.spec.name, &feature.categories,
                               feature_marks[i], {}, {}});
        }
    }
    const feature_type value_type = model.prediction.type == prediction_type::class_label
                                              ? feature_type::categorical
                                              : feature_type::numeric;
    if (model.prediction.reference.type == reference_source::kind::stored) {
        load_stored(model.prediction.reference, value_type, nullptr, prediction_mark,
                    fmt::format("model {} prediction", quote_value(model.name)));
    } else if (model.prediction.reference.type == reference_source::kind::file) {
        targets.push_back({&model.prediction.reference, value_type, "", nullptr, prediction_mark, {}, {}});
    }

    std::map<std::string, std::vector<reference_target*>> by_path;
    for (reference_target& target : targets) {
        by_path[target.source->path].push_back(&target);
    }
    for (auto& [path, list] : by_path) {
        const std::size_t errors_before = check_.error_count();
        read_reference_file(path, list);
        if (check_.error_count() != errors_before) {
            continue;
        }
        for (reference_target* target : list) {
            const std::string what = target->feature.empty() ? std::string("the prediction")
                                                              : "feature " + quote_value(target->feature);
            if (target->numbers.empty() && target->texts.empty()) {
                check_.error(target->mark, fmt::format("the reference records {} hold no {} value of {}; add "
                                                       "records that have it, or remove the reference",
                                                       path, to_string(target->type), what));
                continue;
            }
            reference ref;
            if (target->type == feature_type::numeric) {
                ref = build_numeric_reference(target->numbers);
            } else {
                ref = build_categorical_reference(target->texts);
                ref.type = target->type;
            }
            if (target->categories != nullptr && !target->categories->empty()) {
                for (const category_share& category : ref.categories) {
                    const auto& declared = *target->categories;
                    if (std::find(declared.begin(), declared.end(), category.name) == declared.end()) {
                        check_.error(target->mark, fmt::format("the reference records {} give {} the category {}, "
                                                               "which is not declared; add it to categories or fix "
                                                               "the records",
                                                               path, what, quote_value(category.name)));
                        break;
                    }
                }
            }
            target->source->loaded = std::make_shared<const reference>(std::move(ref));
        }
    }
}

}  // namespace

std::string_view to_string(prediction_type type)
{
    switch (type) {
    case prediction_type::score:
        return "score";
    case prediction_type::class_label:
        return "class";
    case prediction_type::number:
        return "number";
    }
    return "score";
}

std::optional<std::size_t> model_schema::find_feature(std::string_view feature) const
{
    for (std::size_t i = 0; i < features.size(); ++i) {
        if (features[i].spec.name == feature) {
            return i;
        }
    }
    return std::nullopt;
}

bool model_schema::has_period_reference() const
{
    if (prediction.reference.type == reference_source::kind::period) {
        return true;
    }
    for (const feature_schema& feature : features) {
        if (feature.reference.type == reference_source::kind::period) {
            return true;
        }
    }
    return false;
}

const model_schema* schema_set::find(std::string_view name) const
{
    const auto found = by_name.find(name);
    return found == by_name.end() ? nullptr : &models[found->second];
}

void schema_set::reindex()
{
    by_name.clear();
    for (std::size_t i = 0; i < models.size(); ++i) {
        by_name.emplace(models[i].name, i);
    }
}

std::optional<schema_set> parse_model_schemas(std::string_view text, const std::string& file,
                                              const std::string& base_folder, diagnostics& diags)
{
    return schema_loader(text, file, base_folder, diags).load();
}

std::optional<schema_set> load_model_schemas(const std::string& path, diagnostics& diags)
{
    std::string content;
    std::string problem;
    if (!read_regular_file(path, max_config_file_bytes, content, problem)) {
        diags.add(path, 0, 0, fmt::format("cannot read the model schema file: {}", problem));
        return std::nullopt;
    }
    const std::string base = std::filesystem::path(path).parent_path().string();
    return parse_model_schemas(content, path, base, diags);
}

}  // namespace tocsin::model
