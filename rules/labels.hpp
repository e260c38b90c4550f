#pragma once
// Label sets and their 64-bit fingerprints.
//
// A label set is sorted by name (byte order) with unique names and no empty values, the form
// Prometheus sends and expects. The fingerprint hashes that sorted form, so equal sets have
// equal fingerprints no matter which path (remote_write, JSON push, restore) built them.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tocsin {

struct label {
    std::string name;
    std::string value;
    bool operator==(const label&) const = default;
};

// A label borrowed from a request buffer; used on the ingest path to avoid copies.
struct label_view {
    std::string_view name;
    std::string_view value;
};

// Hash of a sorted label sequence. Stable across processes and versions of this build,
// because it is persisted with alert state.
std::uint64_t fingerprint_of(std::span<const label_view> sorted);

class label_set {
public:
    label_set() = default;
    // Sorts by name. Duplicate names keep the last value; empty values are dropped,
    // because Prometheus treats an empty value as an absent label.
    explicit label_set(std::vector<label> labels);
    label_set(std::initializer_list<label> labels);

    const std::vector<label>& items() const { return labels_; }
    bool empty() const { return labels_.empty(); }
    std::size_t size() const { return labels_.size(); }

    // Returns the value of `name`, or "" when the label is absent.
    std::string_view get(std::string_view name) const;
    std::string_view metric_name() const { return get("__name__"); }

    // Returns a copy with `name` set to `value` (removed when `value` is empty).
    label_set with(std::string_view name, std::string_view value) const;
    label_set without(std::string_view name) const;

    std::uint64_t fingerprint() const { return fingerprint_; }

    // Prometheus notation: {a="1", b="2"}, with names quoted when they are not
    // legacy identifiers ({"service.name"="x"}).
    std::string to_string() const;

    bool equals(std::span<const label_view> sorted) const;
    bool operator==(const label_set& other) const { return labels_ == other.labels_; }

private:
    void finish();

    std::vector<label> labels_;
    std::uint64_t fingerprint_ = 0;
};

// True when `name` matches the legacy Prometheus label name pattern [a-zA-Z_][a-zA-Z0-9_]*.
bool is_legacy_label_name(std::string_view name);

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool is_valid_utf8(std::string_view text);

} // namespace tocsin
