#include "model/model_monitor.hpp"

#include <stdexcept>

namespace tocsin::model {

model_monitor::model_monitor(std::string model, std::string version, std::vector<feature_spec> features,
                             std::vector<std::shared_ptr<const reference>> references, const window_options& options)
    : model_(std::move(model)), version_(std::move(version))
{
    if (!references.empty() && references.size() != features.size()) {
        throw std::invalid_argument("model monitor " + model_ + " " + version_ + ": " +
                                    std::to_string(references.size()) + " references for " +
                                    std::to_string(features.size()) +
                                    " features; pass one per feature (null for none) or none at all");
    }
    windows_.reserve(features.size());
    for (std::size_t i = 0; i < features.size(); ++i) {
        if (features[i].name.empty()) {
            throw std::invalid_argument("model monitor " + model_ + " " + version_ + ": feature " + std::to_string(i) +
                                        " has an empty name; name every feature");
        }
        if (!index_.emplace(features[i].name, i).second) {
            throw std::invalid_argument("model monitor " + model_ + " " + version_ + ": feature \"" +
                                        features[i].name + "\" is declared twice; declare each feature once");
        }
        windows_.emplace_back(std::move(features[i]), references.empty() ? nullptr : references[i], options);
    }
    seen_.assign(windows_.size(), 0);
}

std::optional<std::size_t> model_monitor::find_feature(std::string_view name) const
{
    const auto found = index_.find(name);
    if (found == index_.end()) {
        return std::nullopt;
    }
    return found->second;
}

bool model_monitor::add_record(time_ms time, std::span<const named_feature_value> features)
{
    // All windows share one bucket layout, so the first one decides whether the record is late.
    if (!windows_.empty()) {
        const auto start = windows_.front().window_start();
        if (start && time < *start) {
            ++late_records_;
            return false;
        }
    }
    ++records_;
    ++record_serial_;

    for (std::size_t i = 0; i < features.size(); ++i) {
        const named_feature_value& entry = features[i];
        std::size_t index = i;
        if (i >= windows_.size() || windows_[i].spec().name != entry.name) {
            const auto found = index_.find(entry.name);
            if (found == index_.end()) {
                ++unknown_feature_values_;
                continue;
            }
            index = found->second;
        }
        if (seen_[index] == record_serial_) {
            ++repeated_feature_values_;
            continue;
        }
        seen_[index] = record_serial_;
        windows_[index].add(time, entry.value);
    }

    for (std::size_t i = 0; i < windows_.size(); ++i) {
        if (seen_[i] != record_serial_) {
            windows_[i].add(time, feature_value::null());
        }
    }
    return true;
}

void model_monitor::advance_to(time_ms now)
{
    for (feature_window& window : windows_) {
        window.advance_to(now);
    }
}

std::size_t model_monitor::memory_bytes() const
{
    std::size_t bytes = sizeof(*this) + model_.capacity() + version_.capacity() +
                        seen_.capacity() * sizeof(std::uint64_t) + index_.bucket_count() * sizeof(void*);
    for (const feature_window& window : windows_) {
        // The window's own memory_bytes() counts sizeof(feature_window), which the vector holds.
        bytes += window.memory_bytes();
    }
    for (const auto& [name, position] : index_) {
        bytes += sizeof(std::pair<const std::string, std::size_t>) + 2 * sizeof(void*) +
                 (name.size() > 15 ? name.capacity() + 1 : 0);
        (void)position;
    }
    return bytes;
}

}  // namespace tocsin::model
