#pragma once
// The data quality and drift state of one model version: one feature_window per declared
// feature (model/feature_window.hpp), all on the same time buckets.
//
// add_record() takes a record's features as (name, value) pairs. A declared feature that the
// record leaves out counts as missing. A name that is not declared is counted in
// unknown_feature_values() and otherwise ignored, and a name that repeats within a record is
// counted in repeated_feature_values() and its later values ignored. Names are matched by
// position first (the record's i-th name against the i-th declared feature), so a record in
// schema order needs no hash lookups, then through a hash table.
//
// Memory is fixed per model: the sum of its windows' memory_bytes() plus the schema. The
// references are shared and not counted.
//
// Thread safety: none. One thread at a time may use a monitor, or the caller locks.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/feature.hpp"
#include "model/feature_window.hpp"
#include "model/reference.hpp"

namespace tocsin::model {

struct named_feature_value {
    std::string_view name;
    feature_value value;
};

class model_monitor {
public:
    // `references` is empty or has one entry per feature, in the order of `features`; a null
    // entry means no reference for that feature. Throws std::invalid_argument when a feature
    // name is empty or repeats, when `references` has another size, or when a feature_window
    // rejects its spec, reference or options.
    model_monitor(std::string model, std::string version, std::vector<feature_spec> features,
                  std::vector<std::shared_ptr<const reference>> references, const window_options& options = {});

    // Counts one record. Returns false and counts nothing when the time is before the window
    // (late_records() counts these).
    bool add_record(time_ms time, std::span<const named_feature_value> features);

    // Moves every window forward to `now`, so quiet models expire old buckets.
    void advance_to(time_ms now);

    const std::string& model() const { return model_; }
    const std::string& version() const { return version_; }
    std::size_t feature_count() const { return windows_.size(); }
    const feature_window& feature(std::size_t index) const { return windows_[index]; }
    std::optional<std::size_t> find_feature(std::string_view name) const;

    std::uint64_t records() const { return records_; }
    std::uint64_t late_records() const { return late_records_; }
    std::uint64_t unknown_feature_values() const { return unknown_feature_values_; }
    std::uint64_t repeated_feature_values() const { return repeated_feature_values_; }

    // Approximate heap and object size in bytes, excluding the shared references.
    std::size_t memory_bytes() const;

private:
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
    };

    std::string model_;
    std::string version_;
    std::vector<feature_window> windows_;
    std::unordered_map<std::string, std::size_t, string_hash, std::equal_to<>> index_;
    // seen_[i] == record_serial_ when the current record set feature i.
    std::vector<std::uint64_t> seen_;
    std::uint64_t record_serial_ = 0;
    std::uint64_t records_ = 0;
    std::uint64_t late_records_ = 0;
    std::uint64_t unknown_feature_values_ = 0;
    std::uint64_t repeated_feature_values_ = 0;
};

}  // namespace tocsin::model
