#pragma once
// The model monitoring state of a tocsind. Each version seen of each model in the schemas
// (model/schema.hpp) has a model_monitor (data quality and drift of the features), a
// feature_window of the predictions (prediction drift) and a performance_window (metrics over
// joined prediction and outcome pairs). Each model has a buffer of records waiting for their
// outcome.
//
// Records (model/records.hpp) create a version's state on first sight. When a model already
// has max_versions versions, the least recently seen one is dropped (versions_evicted_total).
// NOTE: a client that sends many made-up versions thus pushes out the real ones. The record
// format has no authentication of its own, so the endpoint's bearer token is the guard.
//
// Outcomes are joined by record id, per model: a record with an id waits in the model's pending
// buffer until its outcome arrives, at most outcome_horizon after it arrived (then it counts as
// expired) and at most max_pending records at once (a new record then pushes out the oldest,
// pending_evicted_total). A record whose id is already pending counts as a duplicate and is not
// queued again (the first prediction stays). An outcome whose id is not pending counts as
// unmatched, or as a duplicate when the id was joined recently (the last max_pending joined
// ids are remembered). An outcome that names another version than the pending record's counts
// as unmatched and leaves the record pending. A joined pair enters the version's
// performance_window at the time `now` of the join.
//
// References: file and stored references come loaded with the schema. A period reference
// ({first: 7d}) collects the feature's values from records whose timestamp is within the
// period after the version's first record, through reference_builder (quantile sketch, see
// model/reference.hpp for its error bound), and freezes when `now` or a record's timestamp
// passes the period's end. Freezing rebuilds the version's windows with the new references, so
// quality figures restart from an empty window then (cumulative counters carry over). A
// feature with no valid value in its period stays without a reference. A categorical feature
// with declared categories and no reference has unseen_category_rate against its declared list
// (and no PSI). export_reference() returns a version's frozen reference as model/reference.hpp
// JSON, for a `stored:` reference in the schema.
//
// Time: every call takes `now` from the caller (milliseconds since the epoch), so tests drive
// time by hand. A record or outcome more than max_future_ms after `now` is rejected, because a
// far-future time would move a window forward and empty it.
//
// Memory per version: the monitor's memory_bytes() (model/model_monitor.hpp) plus about 24
// bytes per stored pair plus, during a reference period, one quantile sketch per numeric
// feature (tens of kB each, model/quantile_sketch.hpp) and up to max_tracked_categories names
// per categorical feature. Per model: up to max_pending pending records and as many remembered
// joined ids. memory_bytes() estimates it.
//
// Thread safety: none. The daemon holds one lock around every call.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/feature_window.hpp"
#include "model/model_monitor.hpp"
#include "model/performance_window.hpp"
#include "model/records.hpp"
#include "model/reference.hpp"
#include "model/schema.hpp"

namespace tocsin::model {

struct registry_options {
    // Records and outcomes may be at most this far after `now`.
    time_ms max_future_ms = 5 * 60 * 1000;
    // PSI's replacement for empty shares (tocsin::psi).
    double psi_epsilon = 1e-4;
    // Options of the references built from reference periods.
    reference_options period_reference = [] {
        reference_options o;
        o.max_tracked_categories = 10'000;
        return o;
    }();
};

struct ingest_result {
    // Records or outcomes counted.
    std::size_t accepted = 0;
    // Rejected items, with their batch index (parsed_record::index, parsed_outcome::index).
    std::vector<record_error> errors;
    // Records whose id was already pending; outcomes whose id was already joined.
    std::size_t duplicates = 0;
    // Outcomes: joined to a pending record, and not matched to one.
    std::size_t joined = 0;
    std::size_t unmatched = 0;
};

// One figure, labelled for a series. feature is empty for figures of the whole version
// (performance, prediction drift, counters), and version is empty for figures of the model
// (its pending buffer).
struct snapshot_row {
    std::string model;
    std::string version;
    std::string feature;
    std::string metric;
    double value = 0;
    // Values or pairs the figure was computed over (the count itself for counters).
    std::uint64_t samples = 0;
};

// Counters of one model's outcome join, cumulative since the registry started.
struct join_counters {
    std::uint64_t pending = 0;
    std::uint64_t joined = 0;
    std::uint64_t expired = 0;
    std::uint64_t unmatched = 0;
    std::uint64_t duplicate_record_ids = 0;
    std::uint64_t duplicate_outcomes = 0;
    std::uint64_t pending_evicted = 0;
    std::uint64_t versions_evicted = 0;
    std::uint64_t rejected_records = 0;
    std::uint64_t rejected_outcomes = 0;
};

class model_registry {
public:
    // Throws std::invalid_argument when schemas is null.
    explicit model_registry(std::shared_ptr<const schema_set> schemas, registry_options options = {});
    ~model_registry();
    model_registry(const model_registry&) = delete;
    model_registry& operator=(const model_registry&) = delete;

    // Counts parsed records (parse_records) at time `now`. Records of models that the schemas
    // do not hold, and records too far in the future, are rejected.
    ingest_result add_records(std::span<const parsed_record> records, time_ms now);

    // Joins parsed outcomes (parse_outcomes) to pending records at time `now`.
    ingest_result add_outcomes(std::span<const parsed_outcome> outcomes, time_ms now);

    // Expires pending records, freezes reference periods that have ended and moves every window
    // to `now`. Call it periodically (every few seconds) and before snapshot().
    void tick(time_ms now);

    // Returns the current figures, one row each, for models in schema order and versions by
    // name. The metrics are:
    //   per feature: missing_rate, type_mismatch_rate, out_of_range_share, outlier_share,
    //                unseen_category_rate, psi, ks_statistic, ks_p_value
    //   per version: prediction_psi, prediction_ks_statistic, prediction_ks_p_value;
    //                rmse, mae (regression); auc, log_loss, accuracy, precision, recall, f1
    //                (binary); pairs, records_total, late_records_total,
    //                unknown_feature_values_total, reference_period_active (1 while a
    //                period collects)
    //   per model:   pending, joined_total, expired_total, unmatched_total,
    //                duplicate_record_ids_total, duplicate_outcomes_total,
    //                pending_evicted_total, versions_evicted_total, rejected_records_total,
    //                rejected_outcomes_total
    // A figure that has no value (no values in the window, no reference, one outcome class for
    // AUC) has no row.
    std::vector<snapshot_row> snapshot() const;

    // The frozen or loaded reference of a feature of a version as model/reference.hpp JSON
    // (to_json), or of its predictions when `feature` is empty. std::nullopt when the model,
    // version or feature is unknown, or it has no reference (yet).
    std::optional<nlohmann::json> export_reference(std::string_view model, std::string_view version,
                                                   std::string_view feature) const;

    // Versions currently monitored for a model, by name.
    std::vector<std::string> versions(std::string_view model) const;
    // The join counters of a model, or null for an unknown one.
    const join_counters* counters(std::string_view model) const;

    // Approximate heap size in bytes, excluding the schemas and shared references.
    std::size_t memory_bytes() const;

    const schema_set& schemas() const { return *schemas_; }

private:
    struct version_state;
    struct model_state;

    version_state* find_or_create_version(model_state& model, const std::string& version, time_ms time);
    void rebuild_windows(const model_state& model, version_state& state);
    void freeze_due(const model_state& model, version_state& state, time_ms now);
    void expire_pending(model_state& model, time_ms now);
    void remember_joined(model_state& model, const std::string& id);

    std::shared_ptr<const schema_set> schemas_;
    registry_options options_;
    std::vector<std::unique_ptr<model_state>> models_;
};

}  // namespace tocsin::model
