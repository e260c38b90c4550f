#pragma once
// Model schemas: which models tocsind monitors, their features, their references and their
// windows, loaded from YAML.
//
//   models:
//     - name: churn
//       task: binary_classification        # or regression
//       threshold: 0.5                     # binary_classification only, default 0.5
//       window: {duration: 1h, buckets: 60}
//       performance_window: {max_pairs: 10000, max_age: 1d}
//       outcome_horizon: 1d                # how long a record waits for its outcome
//       max_pending: 100000                # records waiting for an outcome
//       max_versions: 8                    # versions monitored at once
//       features:
//         - name: age
//           type: numeric                  # numeric | categorical | boolean
//           range: [0, 120]                # numeric only; either bound may be null
//           reference: {file: ref/churn.jsonl}
//         - name: country
//           type: categorical
//           categories: [de, fr, it]       # categorical only
//           reference: {period: {first: 7d}}
//       prediction:
//         type: score                      # score | class | number
//         classes: [stay, churn]           # optional: outcome and class strings, positive last
//         reference: {stored: ref/churn-v3-prediction.json}
//
// A reference is one of:
//   file     a JSON-lines file of reference records, one record object per line in the format of
//            model/records.hpp (only "features" and "prediction" are read). The reference is
//            built exactly from the values of the feature (build_numeric_reference and
//            build_categorical_reference in model/reference.hpp).
//   stored   a frozen reference in the JSON of model/reference.hpp, for example one that
//            model_registry::export_references wrote.
//   period   {first: 7d}: the values of the first 7 days after a version was first seen,
//            through the quantile sketch, then frozen (model/registry.hpp).
// Relative paths are resolved against the folder of the schema file. File and stored
// references are read when the schema loads, so a missing or malformed one is a load error.
//
// Declared categories: a categorical feature with `categories` and no reference (or during its
// reference period) gets unseen_category_rate against the declared list, and no PSI. A file or
// stored reference of a categorical feature must only hold declared categories.
//
// Every error is reported as file:line:column with the value and the fix, all of them in one
// pass (rules/yaml_check.hpp).
//
// Thread safety: a schema_set is a plain value; share it as std::shared_ptr<const schema_set>.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/feature.hpp"
#include "model/feature_window.hpp"
#include "model/performance_window.hpp"
#include "model/reference.hpp"
#include "rules/diagnostics.hpp"

namespace tocsin::model {

// Limits of a schema file.
inline constexpr std::size_t max_schema_models = 1000;
inline constexpr std::size_t max_schema_features = 1000;
inline constexpr std::size_t max_schema_name_bytes = 128;
inline constexpr std::size_t max_schema_categories = max_reference_categories;
inline constexpr std::size_t max_schema_category_bytes = 256;
inline constexpr std::uint64_t max_schema_pending = 10'000'000;
inline constexpr std::uint64_t max_schema_pairs = 10'000'000;
inline constexpr std::uint64_t max_schema_versions = 1000;
// Durations (window, max_age, outcome_horizon, period) are at most 400 days.
inline constexpr std::chrono::milliseconds max_schema_duration{400LL * 24 * 3600 * 1000};

// The form of a prediction in records.
enum class prediction_type : std::uint8_t {
    // binary_classification: a probability of the positive class in [0, 1].
    score,
    // binary_classification: the predicted class, 0 or 1, false or true, or one of `classes`.
    class_label,
    // regression: a finite number.
    number,
};

// Returns "score", "class" or "number".
std::string_view to_string(prediction_type type);

struct reference_source {
    enum class kind : std::uint8_t { none, file, stored, period };
    kind type = kind::none;
    // file and stored: the path as resolved against the schema file's folder.
    std::string path;
    // period: its length.
    time_ms period_ms = 0;
    // file and stored: the reference, read at load. Null when the file held no valid value of
    // this feature (then the feature has no reference).
    std::shared_ptr<const reference> loaded;
};

struct feature_schema {
    feature_spec spec;
    // Declared categories of a categorical feature, in schema order. Empty when not declared.
    std::vector<std::string> categories;
    reference_source reference;
};

struct prediction_schema {
    prediction_type type = prediction_type::score;
    // Empty, or [negative, positive]: class strings in predictions and outcomes map to 0 and 1.
    std::vector<std::string> classes;
    reference_source reference;
};

struct model_schema {
    std::string name;
    prediction_task task = prediction_task::binary_classification;
    double threshold = 0.5;
    window_options window;
    performance_window_options performance;
    time_ms outcome_horizon_ms = 24LL * 3600 * 1000;
    std::size_t max_pending = 100'000;
    std::size_t max_versions = 8;
    std::vector<feature_schema> features;
    prediction_schema prediction;
    // Where the model is declared, for messages.
    std::string file;
    int line = 0;

    // The feature's position, or std::nullopt.
    std::optional<std::size_t> find_feature(std::string_view name) const;
    // True when some feature or the prediction has a period reference.
    bool has_period_reference() const;
};

struct schema_set {
    std::vector<model_schema> models;
    // Model name -> position in models. parse_model_schemas fills it; call reindex() after
    // changing models by hand.
    std::map<std::string, std::size_t, std::less<>> by_name;

    const model_schema* find(std::string_view name) const;
    void reindex();
};

// Parses a schema document. `file` names it in diagnostics and `base_folder` resolves relative
// reference paths. Returns std::nullopt when diags got at least one error.
std::optional<schema_set> parse_model_schemas(std::string_view text, const std::string& file,
                                              const std::string& base_folder, diagnostics& diags);

// Reads and parses a schema file (at most 16 MiB), resolving references against its folder.
std::optional<schema_set> load_model_schemas(const std::string& path, diagnostics& diags);

}  // namespace tocsin::model
