#include "model/registry.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tocsin::model {

namespace {

// Per-feature reference state of a version.
struct feature_reference {
    std::shared_ptr<const reference> ref;
    // The reference lists the declared categories with made-up shares: unseen_category_rate is
    // meaningful, PSI is not.
    bool synthetic = false;
    // Period references: collecting until period_end.
    std::unique_ptr<reference_builder> builder;
    time_ms period_end = 0;
};

feature_type prediction_feature_type(const model_schema& schema)
{
    return schema.prediction.type == prediction_type::class_label ? feature_type::categorical : feature_type::numeric;
}

std::shared_ptr<const reference> declared_categories_reference(const feature_schema& feature)
{
    if (feature.spec.type != feature_type::categorical || feature.categories.empty()) {
        return nullptr;
    }
    auto ref = std::make_shared<reference>();
    ref->type = feature_type::categorical;
    const double share = 1.0 / static_cast<double>(feature.categories.size());
    for (const std::string& name : feature.categories) {
        ref->categories.push_back({name, share});
    }
    return ref;
}

}  // namespace

struct model_registry::version_state {
    std::string version;
    time_ms first_seen = 0;
    time_ms last_seen = 0;
    // One per feature, then one for the prediction.
    std::vector<feature_reference> references;
    std::unique_ptr<model_monitor> monitor;
    std::unique_ptr<feature_window> predictions;
    std::unique_ptr<performance_window> performance;
    // Counts of monitors replaced when a reference froze.
    std::uint64_t carried_records = 0;
    std::uint64_t carried_late = 0;
    std::uint64_t carried_unknown = 0;

    bool collecting() const
    {
        return std::any_of(references.begin(), references.end(), [](const feature_reference& r) {
            return r.builder != nullptr;
        });
    }
};

struct pending_record {
    std::string version;
    double prediction = 0;
    time_ms arrived = 0;
    std::uint64_t serial = 0;
};

struct pending_order {
    time_ms arrived = 0;
    std::uint64_t serial = 0;
    std::string id;
};

struct model_registry::model_state {
    const model_schema* schema = nullptr;
    // Loaded or declared references, one per feature, then one for the prediction.
    std::vector<feature_reference> base;
    std::map<std::string, std::unique_ptr<version_state>, std::less<>> versions;

    std::unordered_map<std::string, pending_record> pending;
    // Pending ids in arrival order. Entries whose serial no longer matches were joined, and
    // are skipped and compacted away.
    std::deque<pending_order> order;
    std::uint64_t next_serial = 0;
    std::unordered_set<std::string> joined_ids;
    std::deque<std::string> joined_order;
    join_counters counters;
};

model_registry::model_registry(std::shared_ptr<const schema_set> schemas, registry_options options)
    : schemas_(std::move(schemas)), options_(options)
{
    if (!schemas_) {
        throw std::invalid_argument("model registry: no schemas; load the model schema file first");
    }
    for (const model_schema& schema : schemas_->models) {
        auto state = std::make_unique<model_state>();
        state->schema = &schema;
        for (const feature_schema& feature : schema.features) {
            feature_reference base;
            if (feature.reference.loaded) {
                base.ref = feature.reference.loaded;
            } else if (auto declared = declared_categories_reference(feature)) {
                base.ref = std::move(declared);
                base.synthetic = true;
            }
            state->base.push_back(std::move(base));
        }
        feature_reference prediction;
        prediction.ref = schema.prediction.reference.loaded;
        state->base.push_back(std::move(prediction));
        models_.push_back(std::move(state));
    }
}

model_registry::~model_registry() = default;

void model_registry::rebuild_windows(const model_state& model, version_state& state)
{
    const model_schema& schema = *model.schema;
    if (state.monitor) {
        state.carried_records += state.monitor->records();
        state.carried_late += state.monitor->late_records();
        state.carried_unknown += state.monitor->unknown_feature_values();
    }
    std::vector<feature_spec> specs;
    std::vector<std::shared_ptr<const reference>> refs;
    specs.reserve(schema.features.size());
    refs.reserve(schema.features.size());
    for (std::size_t i = 0; i < schema.features.size(); ++i) {
        specs.push_back(schema.features[i].spec);
        refs.push_back(state.references[i].ref);
    }
    state.monitor = std::make_unique<model_monitor>(schema.name, state.version, std::move(specs), std::move(refs),
                                                    schema.window);
    feature_spec prediction{"prediction", prediction_feature_type(schema), {}, {}};
    state.predictions = std::make_unique<feature_window>(std::move(prediction), state.references.back().ref,
                                                         schema.window);
}

model_registry::version_state* model_registry::find_or_create_version(model_state& model,
                                                                     const std::string& version, time_ms time)
{
    const auto found = model.versions.find(version);
    if (found != model.versions.end()) {
        return found->second.get();
    }
    const model_schema& schema = *model.schema;
    if (model.versions.size() >= schema.max_versions) {
        auto oldest = model.versions.begin();
        for (auto it = model.versions.begin(); it != model.versions.end(); ++it) {
            if (it->second->last_seen < oldest->second->last_seen) {
                oldest = it;
            }
        }
        model.versions.erase(oldest);
        ++model.counters.versions_evicted;
    }
    auto state = std::make_unique<version_state>();
    state->version = version;
    state->first_seen = time;
    state->last_seen = time;
    for (std::size_t i = 0; i <= schema.features.size(); ++i) {
        const reference_source& source =
            i < schema.features.size() ? schema.features[i].reference : schema.prediction.reference;
        feature_reference ref;
        ref.ref = model.base[i].ref;
        ref.synthetic = model.base[i].synthetic;
        if (source.type == reference_source::kind::period) {
            const feature_type type =
                i < schema.features.size() ? schema.features[i].spec.type : prediction_feature_type(schema);
            ref.builder = std::make_unique<reference_builder>(type, options_.period_reference);
            ref.period_end = time > std::numeric_limits<time_ms>::max() - source.period_ms
                                 ? std::numeric_limits<time_ms>::max()
                                 : time + source.period_ms;
        }
        state->references.push_back(std::move(ref));
    }
    performance_window_options performance = schema.performance;
    performance.task = schema.task;
    performance.threshold = schema.threshold;
    state->performance = std::make_unique<performance_window>(performance);
    rebuild_windows(model, *state);
    version_state* out = state.get();
    model.versions.emplace(version, std::move(state));
    return out;
}

void model_registry::freeze_due(const model_state& model, version_state& state, time_ms now)
{
    bool changed = false;
    for (feature_reference& ref : state.references) {
        if (!ref.builder || now < ref.period_end) {
            continue;
        }
        if (ref.builder->count() > 0) {
            ref.ref = std::make_shared<const reference>(ref.builder->build());
            ref.synthetic = false;
            changed = true;
        }
        ref.builder.reset();
    }
    if (changed) {
        rebuild_windows(model, state);
    }
}

void model_registry::expire_pending(model_state& model, time_ms now)
{
    const time_ms horizon = model.schema->outcome_horizon_ms;
    while (!model.order.empty() && model.order.front().arrived <= now - horizon) {
        const pending_order& front = model.order.front();
        const auto found = model.pending.find(front.id);
        if (found != model.pending.end() && found->second.serial == front.serial) {
            model.pending.erase(found);
            ++model.counters.expired;
        }
        model.order.pop_front();
    }
    model.counters.pending = model.pending.size();
}

void model_registry::remember_joined(model_state& model, const std::string& id)
{
    if (!model.joined_ids.insert(id).second) {
        return;
    }
    model.joined_order.push_back(id);
    while (model.joined_order.size() > model.schema->max_pending) {
        model.joined_ids.erase(model.joined_order.front());
        model.joined_order.pop_front();
    }
}

ingest_result model_registry::add_records(std::span<const parsed_record> records, time_ms now)
{
    ingest_result result;
    for (const parsed_record& record : records) {
        const auto position = schemas_->by_name.find(record.model);
        if (position == schemas_->by_name.end()) {
            result.errors.push_back({record.index, fmt::format("unknown model {}; declare it in the model schema "
                                                               "file or fix the name",
                                                               quote_value(record.model))});
            continue;
        }
        model_state& model = *models_[position->second];
        if (record.time > now + options_.max_future_ms) {
            ++model.counters.rejected_records;
            result.errors.push_back({record.index, fmt::format("timestamp is {} s after the server's time; send "
                                                               "the time the prediction was made and check the "
                                                               "clock",
                                                               (record.time - now) / 1000)});
            continue;
        }
        version_state& state = *find_or_create_version(model, record.version, record.time);
        state.last_seen = std::max(state.last_seen, record.time);
        freeze_due(model, state, std::max(now, record.time));

        const std::vector<named_feature_value> views = record.views();
        state.monitor->add_record(record.time, views);
        state.predictions->add(record.time, record.prediction.view());

        // Reference periods: the values of records within the period.
        const model_schema& schema = *model.schema;
        if (state.collecting()) {
            for (const named_feature_value& view : views) {
                const auto index = state.monitor->find_feature(view.name);
                if (index) {
                    feature_reference& ref = state.references[*index];
                    if (ref.builder && record.time < ref.period_end) {
                        ref.builder->add(view.value);
                    }
                }
            }
            feature_reference& ref = state.references.back();
            if (ref.builder && record.time < ref.period_end) {
                ref.builder->add(record.prediction.view());
            }
        }

        if (record.id) {
            if (model.pending.contains(*record.id)) {
                ++model.counters.duplicate_record_ids;
                ++result.duplicates;
            } else {
                while (model.pending.size() >= schema.max_pending && !model.order.empty()) {
                    const pending_order& front = model.order.front();
                    const auto found = model.pending.find(front.id);
                    if (found != model.pending.end() && found->second.serial == front.serial) {
                        model.pending.erase(found);
                        ++model.counters.pending_evicted;
                    }
                    model.order.pop_front();
                }
                const std::uint64_t serial = ++model.next_serial;
                model.pending.emplace(*record.id, pending_record{record.version, record.prediction_number, now, serial});
                model.order.push_back({now, serial, *record.id});
            }
        }
        ++result.accepted;
    }
    for (auto& model : models_) {
        model->counters.pending = model->pending.size();
    }
    return result;
}

ingest_result model_registry::add_outcomes(std::span<const parsed_outcome> outcomes, time_ms now)
{
    ingest_result result;
    for (const parsed_outcome& outcome : outcomes) {
        const auto position = schemas_->by_name.find(outcome.model);
        if (position == schemas_->by_name.end()) {
            result.errors.push_back({outcome.index, fmt::format("unknown model {}; declare it in the model schema "
                                                                "file or fix the name",
                                                                quote_value(outcome.model))});
            continue;
        }
        model_state& model = *models_[position->second];
        if (outcome.time > now + options_.max_future_ms) {
            ++model.counters.rejected_outcomes;
            result.errors.push_back({outcome.index, fmt::format("timestamp is {} s after the server's time; send "
                                                                "the time the outcome was observed and check the "
                                                                "clock",
                                                                (outcome.time - now) / 1000)});
            continue;
        }
        ++result.accepted;
        const auto found = model.pending.find(outcome.id);
        if (found == model.pending.end()) {
            if (model.joined_ids.contains(outcome.id)) {
                ++model.counters.duplicate_outcomes;
                ++result.duplicates;
            } else {
                ++model.counters.unmatched;
                ++result.unmatched;
            }
            continue;
        }
        const pending_record& pending = found->second;
        if (outcome.version && *outcome.version != pending.version) {
            ++model.counters.unmatched;
            ++result.unmatched;
            continue;
        }
        const auto version = model.versions.find(pending.version);
        if (version == model.versions.end()) {
            // The version was evicted while its record waited.
            ++model.counters.unmatched;
            ++result.unmatched;
            model.pending.erase(found);
            continue;
        }
        try {
            version->second->performance->add(now, pending.prediction, outcome.outcome);
        } catch (const std::invalid_argument& e) {
            --result.accepted;
            ++model.counters.rejected_outcomes;
            result.errors.push_back({outcome.index, e.what()});
            continue;
        }
        ++model.counters.joined;
        ++result.joined;
        remember_joined(model, outcome.id);
        model.pending.erase(found);
        // Joined entries stay in `order` until they expire; compact when they dominate.
        if (model.order.size() > 2 * model.pending.size() + 1024) {
            std::erase_if(model.order, [&model](const pending_order& entry) {
                const auto live = model.pending.find(entry.id);
                return live == model.pending.end() || live->second.serial != entry.serial;
            });
        }
    }
    for (auto& model : models_) {
        model->counters.pending = model->pending.size();
    }
    return result;
}

void model_registry::tick(time_ms now)
{
    for (auto& model : models_) {
        expire_pending(*model, now);
        for (auto& [name, state] : model->versions) {
            freeze_due(*model, *state, now);
            state->monitor->advance_to(now);
            state->predictions->advance_to(now);
            state->performance->expire(now);
        }
    }
}

namespace {

void add_row(std::vector<snapshot_row>& rows, const model_schema& schema, std::string_view version,
             std::string_view feature, std::string_view metric, const std::optional<double>& value,
             std::uint64_t samples)
{
    if (value) {
        rows.push_back({schema.name, std::string(version), std::string(feature), std::string(metric), *value, samples});
    }
}

void add_metric(std::vector<snapshot_row>& rows, const model_schema& schema, std::string_view version,
                std::string_view metric, const metric_result& result)
{
    add_row(rows, schema, version, "", metric, result.value, result.count);
}

}  // namespace

std::vector<snapshot_row> model_registry::snapshot() const
{
    std::vector<snapshot_row> rows;
    for (const auto& model : models_) {
        const model_schema& schema = *model->schema;
        for (const auto& [version, state] : model->versions) {
            const model_monitor& monitor = *state->monitor;
            for (std::size_t i = 0; i < monitor.feature_count(); ++i) {
                const feature_window& window = monitor.feature(i);
                const std::string& name = window.spec().name;
                const quality_summary quality = window.quality();
                add_row(rows, schema, version, name, "missing_rate", quality.missing_rate, quality.values);
                add_row(rows, schema, version, name, "type_mismatch_rate", quality.type_mismatch_rate, quality.values);
                add_row(rows, schema, version, name, "out_of_range_share", quality.out_of_range_share, quality.valid);
                add_row(rows, schema, version, name, "outlier_share", quality.outlier_share, quality.valid);
                add_row(rows, schema, version, name, "unseen_category_rate", quality.unseen_rate, quality.valid);
                if (state->references[i].synthetic) {
                    continue;
                }
                const drift_summary drift = window.drift(options_.psi_epsilon);
                add_row(rows, schema, version, name, "psi", drift.psi, drift.psi_count);
                if (drift.ks) {
                    add_row(rows, schema, version, name, "ks_statistic", drift.ks->statistic, drift.ks_sample_count);
                    add_row(rows, schema, version, name, "ks_p_value", drift.ks->p_value, drift.ks_sample_count);
                }
            }
            const drift_summary prediction = state->predictions->drift(options_.psi_epsilon);
            add_row(rows, schema, version, "", "prediction_psi", prediction.psi, prediction.psi_count);
            if (prediction.ks) {
                add_row(rows, schema, version, "", "prediction_ks_statistic", prediction.ks->statistic,
                        prediction.ks_sample_count);
                add_row(rows, schema, version, "", "prediction_ks_p_value", prediction.ks->p_value,
                        prediction.ks_sample_count);
            }
            const performance_window& performance = *state->performance;
            if (schema.task == prediction_task::regression) {
                const regression_metrics metrics = performance.regression();
                add_metric(rows, schema, version, "rmse", metrics.rmse);
                add_metric(rows, schema, version, "mae", metrics.mae);
            } else if (performance.size() > 0) {
                add_metric(rows, schema, version, "auc", performance.roc_auc());
                add_metric(rows, schema, version, "log_loss", performance.log_loss());
                const threshold_metrics metrics = performance.classification();
                add_metric(rows, schema, version, "accuracy", metrics.accuracy);
                add_metric(rows, schema, version, "precision", metrics.precision);
                add_metric(rows, schema, version, "recall", metrics.recall);
                add_metric(rows, schema, version, "f1", metrics.f1);
            }
            const auto pairs = static_cast<std::uint64_t>(performance.size());
            add_row(rows, schema, version, "", "pairs", static_cast<double>(pairs), pairs);
            const std::uint64_t records = state->carried_records + monitor.records();
            const std::uint64_t late = state->carried_late + monitor.late_records();
            const std::uint64_t unknown = state->carried_unknown + monitor.unknown_feature_values();
            add_row(rows, schema, version, "", "records_total", static_cast<double>(records), records);
            add_row(rows, schema, version, "", "late_records_total", static_cast<double>(late), late);
            add_row(rows, schema, version, "", "unknown_feature_values_total", static_cast<double>(unknown), unknown);
            add_row(rows, schema, version, "", "reference_period_active", state->collecting() ? 1.0 : 0.0, 1);
        }
        const join_counters& c = model->counters;
        const std::pair<const char*, std::uint64_t> counters[] = {
            {"pending", model->pending.size()},
            {"joined_total", c.joined},
            {"expired_total", c.expired},
            {"unmatched_total", c.unmatched},
            {"duplicate_record_ids_total", c.duplicate_record_ids},
            {"duplicate_outcomes_total", c.duplicate_outcomes},
            {"pending_evicted_total", c.pending_evicted},
            {"versions_evicted_total", c.versions_evicted},
            {"rejected_records_total", c.rejected_records},
            {"rejected_outcomes_total", c.rejected_outcomes},
        };
        for (const auto& [metric, count] : counters) {
            add_row(rows, schema, "", "", metric, static_cast<double>(count), count);
        }
    }
    return rows;
}

std::optional<nlohmann::json> model_registry::export_reference(std::string_view model, std::string_view version,
                                                               std::string_view feature) const
{
    const auto position = schemas_->by_name.find(model);
    if (position == schemas_->by_name.end()) {
        return std::nullopt;
    }
    const model_state& state = *models_[position->second];
    const auto found = state.versions.find(version);
    if (found == state.versions.end()) {
        return std::nullopt;
    }
    std::size_t index = state.schema->features.size();
    if (!feature.empty()) {
        const auto position_in_schema = state.schema->find_feature(feature);
        if (!position_in_schema) {
            return std::nullopt;
        }
        index = *position_in_schema;
    }
    const feature_reference& ref = found->second->references[index];
    if (!ref.ref || ref.synthetic) {
        return std::nullopt;
    }
    return to_json(*ref.ref);
}

std::vector<std::string> model_registry::versions(std::string_view model) const
{
    std::vector<std::string> out;
    const auto position = schemas_->by_name.find(model);
    if (position != schemas_->by_name.end()) {
        for (const auto& [name, state] : models_[position->second]->versions) {
            out.push_back(name);
        }
    }
    return out;
}

const join_counters* model_registry::counters(std::string_view model) const
{
    const auto position = schemas_->by_name.find(model);
    return position == schemas_->by_name.end() ? nullptr : &models_[position->second]->counters;
}

std::size_t model_registry::memory_bytes() const
{
    std::size_t bytes = sizeof(*this) + models_.capacity() * sizeof(void*);
    for (const auto& model : models_) {
        bytes += sizeof(model_state) + model->base.capacity() * sizeof(feature_reference);
        for (const auto& [id, pending] : model->pending) {
            bytes += sizeof(std::pair<const std::string, pending_record>) + 2 * sizeof(void*) + id.capacity() +
                     pending.version.capacity();
        }
        bytes += model->pending.bucket_count() * sizeof(void*);
        for (const pending_order& entry : model->order) {
            bytes += sizeof(pending_order) + entry.id.capacity();
        }
        for (const std::string& id : model->joined_order) {
            // The id in the deque and in the set.
            bytes += 2 * (sizeof(std::string) + id.capacity()) + 2 * sizeof(void*);
        }
        for (const auto& [name, state] : model->versions) {
            bytes += sizeof(version_state) + name.capacity() + state->monitor->memory_bytes() +
                     state->predictions->memory_bytes() + state->performance->memory_bytes() +
                     state->references.capacity() * sizeof(feature_reference);
            for (const feature_reference& ref : state->references) {
                if (ref.builder) {
                    // reference_builder does not report its size: count 64 KiB for its sketch or
                    // category table, the size of a sketch with epsilon 0.001 after a million values.
                    bytes += sizeof(reference_builder) + 64 * 1024;
                }
            }
        }
    }
    return bytes;
}

}  // namespace tocsin::model
