#include "model/feature_window.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace tocsin::model {

namespace {

std::int64_t floor_divide(std::int64_t a, std::int64_t b)
{
    const std::int64_t quotient = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? quotient - 1 : quotient;
}

std::size_t ring_slot(std::int64_t bucket, std::size_t bucket_count)
{
    const auto count = static_cast<std::int64_t>(bucket_count);
    return static_cast<std::size_t>(((bucket % count) + count) % count);
}

std::optional<double> rate(std::uint64_t numerator, std::uint64_t denominator)
{
    if (denominator == 0) {
        return std::nullopt;
    }
    return static_cast<double>(numerator) / static_cast<double>(denominator);
}

}  // namespace

feature_window::feature_window(feature_spec spec, std::shared_ptr<const reference> ref, const window_options& options)
    : spec_(std::move(spec)), reference_(std::move(ref)), bucket_count_(options.bucket_count)
{
    if (options.bucket_count < 1 || options.bucket_count > 10'000) {
        throw std::invalid_argument("feature window " + spec_.name + ": bucket_count is " +
                                    std::to_string(options.bucket_count) + "; expected 1 to 10000");
    }
    if (options.duration_ms < static_cast<time_ms>(options.bucket_count)) {
        throw std::invalid_argument("feature window " + spec_.name + ": duration_ms is " +
                                    std::to_string(options.duration_ms) +
                                    "; expected at least one millisecond per bucket");
    }
    if (options.ks_sample_size < 1 || options.ks_sample_size > ks_max_exact_n) {
        throw std::invalid_argument("feature window " + spec_.name + ": ks_sample_size is " +
                                    std::to_string(options.ks_sample_size) + "; expected 1 to " +
                                    std::to_string(ks_max_exact_n));
    }
    if (spec_.min && spec_.max && *spec_.min > *spec_.max) {
        throw std::invalid_argument("feature window " + spec_.name + ": declared min is above max; swap them");
    }
    if (reference_ && reference_->type != spec_.type) {
        throw std::invalid_argument("feature window " + spec_.name + ": the reference is " +
                                    std::string(to_string(reference_->type)) + " but the feature is " +
                                    std::string(to_string(spec_.type)) + "; pass a reference of the feature's type");
    }
    bucket_width_ = options.duration_ms / static_cast<time_ms>(options.bucket_count);

    if (reference_) {
        if (spec_.type == feature_type::numeric) {
            bin_count_ = reference_->bin_count();
            ks_values_.resize(options.ks_sample_size);
            ks_times_.resize(options.ks_sample_size);
        } else {
            // One bin per reference category, and a last one for all other categories.
            bin_count_ = reference_->categories.size() + 1;
            for (std::size_t i = 0; i < reference_->categories.size(); ++i) {
                const std::string& name = reference_->categories[i].name;
                category_bins_.emplace(name, static_cast<std::uint32_t>(i));
                if (name == "false") {
                    false_bin_ = i;
                } else if (name == "true") {
                    true_bin_ = i;
                }
            }
        }
    }
    stride_ = fixed_counters + bin_count_;
    counts_.assign(bucket_count_ * stride_, 0);
    totals_.assign(stride_, 0);
}

void feature_window::advance_bucket(std::int64_t bucket)
{
    if (!started_) {
        started_ = true;
        head_bucket_ = bucket;
        return;
    }
    if (bucket <= head_bucket_) {
        return;
    }
    // Every bucket between the old head and the new one leaves the ring: subtract it from
    // the totals and clear it. After bucket_count steps the whole ring is clear.
    const auto steps = static_cast<std::int64_t>(
        std::min<std::uint64_t>(static_cast<std::uint64_t>(bucket - head_bucket_), bucket_count_));
    for (std::int64_t k = 1; k <= steps; ++k) {
        std::uint32_t* slot = &counts_[ring_slot(head_bucket_ + k, bucket_count_) * stride_];
        for (std::size_t i = 0; i < stride_; ++i) {
            totals_[i] -= slot[i];
            slot[i] = 0;
        }
    }
    head_bucket_ = bucket;
}

void feature_window::advance_to(time_ms now)
{
    if (started_) {
        advance_bucket(floor_divide(now, bucket_width_));
    }
}

std::optional<time_ms> feature_window::window_start() const
{
    if (!started_) {
        return std::nullopt;
    }
    return (head_bucket_ - static_cast<std::int64_t>(bucket_count_) + 1) * bucket_width_;
}

void feature_window::increment(std::uint32_t* bucket, std::size_t index)
{
    ++bucket[index];
    ++totals_[index];
}

void feature_window::count_number(std::uint32_t* bucket, time_ms time, double value)
{
    increment(bucket, valid_counter);
    if ((spec_.min && value < *spec_.min) || (spec_.max && value > *spec_.max)) {
        increment(bucket, out_of_range_counter);
    }
    if (!reference_) {
        return;
    }
    if (value < reference_->low_value || value > reference_->high_value) {
        increment(bucket, outlier_counter);
    }
    // The same bin as tocsin::bin_shares: the last bin whose left edge is <= value, clamped
    // to the first and last bins.
    const std::vector<double>& edges = reference_->edges;
    const auto above = static_cast<std::size_t>(std::upper_bound(edges.begin(), edges.end(), value) - edges.begin());
    const std::size_t bin = above == 0 ? 0 : std::min(above - 1, bin_count_ - 1);
    increment(bucket, fixed_counters + bin);

    ks_values_[ks_next_] = value;
    ks_times_[ks_next_] = time;
    ks_next_ = (ks_next_ + 1) % ks_values_.size();
    ks_filled_ = std::min(ks_filled_ + 1, ks_values_.size());
}

void feature_window::count_category(std::uint32_t* bucket, std::optional<std::size_t> category)
{
    increment(bucket, valid_counter);
    if (!reference_) {
        return;
    }
    if (!category) {
        increment(bucket, unseen_counter);
        increment(bucket, fixed_counters + bin_count_ - 1);
        return;
    }
    increment(bucket, fixed_counters + *category);
}

bool feature_window::add(time_ms time, const feature_value& value)
{
    const std::int64_t bucket = floor_divide(time, bucket_width_);
    if (started_ && bucket <= head_bucket_ - static_cast<std::int64_t>(bucket_count_)) {
        ++late_values_;
        return false;
    }
    advance_bucket(bucket);
    std::uint32_t* slot = &counts_[ring_slot(bucket, bucket_count_) * stride_];
    if (slot[values_counter] == std::numeric_limits<std::uint32_t>::max()) {
        ++dropped_values_;
        return false;
    }
    increment(slot, values_counter);

    const feature_value::kind kind = value.type();
    if (kind == feature_value::kind::null) {
        increment(slot, missing_counter);
        return true;
    }
    switch (spec_.type) {
    case feature_type::numeric:
        if (kind != feature_value::kind::number || !std::isfinite(value.number_value())) {
            increment(slot, mismatch_counter);
        } else {
            count_number(slot, time, value.number_value());
        }
        break;
    case feature_type::categorical:
        if (kind != feature_value::kind::text) {
            increment(slot, mismatch_counter);
        } else {
            const auto found = category_bins_.find(value.text_value());
            count_category(slot, found == category_bins_.end() ? std::nullopt
                                                               : std::optional<std::size_t>(found->second));
        }
        break;
    case feature_type::boolean:
        if (kind != feature_value::kind::boolean) {
            increment(slot, mismatch_counter);
        } else {
            count_category(slot, value.boolean_value() ? true_bin_ : false_bin_);
        }
        break;
    }
    return true;
}

quality_summary feature_window::quality() const
{
    quality_summary out;
    out.values = totals_[values_counter];
    out.missing = totals_[missing_counter];
    out.type_mismatches = totals_[mismatch_counter];
    out.valid = totals_[valid_counter];
    out.out_of_range = totals_[out_of_range_counter];
    out.outliers = totals_[outlier_counter];
    out.unseen = totals_[unseen_counter];

    out.missing_rate = rate(out.missing, out.values);
    out.type_mismatch_rate = rate(out.type_mismatches, out.values);
    const bool numeric = spec_.type == feature_type::numeric;
    if (numeric && (spec_.min || spec_.max)) {
        out.out_of_range_share = rate(out.out_of_range, out.valid);
    }
    if (numeric && reference_) {
        out.outlier_share = rate(out.outliers, out.valid);
    }
    if (!numeric && reference_) {
        out.unseen_rate = rate(out.unseen, out.valid);
    }
    return out;
}

drift_summary feature_window::drift(double psi_epsilon) const
{
    if (!(psi_epsilon > 0)) {
        throw std::invalid_argument("feature window " + spec_.name + ": psi_epsilon must be positive");
    }
    drift_summary out;
    if (!reference_) {
        return out;
    }

    std::uint64_t binned = 0;
    for (std::size_t i = 0; i < bin_count_; ++i) {
        binned += totals_[fixed_counters + i];
    }
    out.psi_count = binned;
    if (binned > 0) {
        std::vector<double> expected;
        std::vector<double> actual(bin_count_);
        if (spec_.type == feature_type::numeric) {
            expected = reference_->shares;
        } else {
            for (const category_share& category : reference_->categories) {
                expected.push_back(category.share);
            }
            expected.push_back(reference_->other_share);
        }
        for (std::size_t i = 0; i < bin_count_; ++i) {
            actual[i] = static_cast<double>(totals_[fixed_counters + i]) / static_cast<double>(binned);
        }
        out.psi = tocsin::psi(expected, actual, psi_epsilon);
    }

    if (spec_.type != feature_type::numeric || ks_filled_ == 0) {
        return out;
    }
    const time_ms start = *window_start();
    std::vector<double> sample;
    sample.reserve(ks_filled_);
    for (std::size_t i = 0; i < ks_filled_; ++i) {
        if (ks_times_[i] >= start) {
            sample.push_back(ks_values_[i]);
        }
    }
    out.ks_sample_count = sample.size();
    out.ks_reference_count = reference_->ks_points.size();
    if (!sample.empty()) {
        out.ks = tocsin::ks_2samp(sample, reference_->ks_points);
    }
    return out;
}

std::size_t feature_window::memory_bytes() const
{
    std::size_t bytes = sizeof(*this) + spec_.name.capacity() + counts_.capacity() * sizeof(std::uint32_t) +
                        totals_.capacity() * sizeof(std::uint64_t) + ks_values_.capacity() * sizeof(double) +
                        ks_times_.capacity() * sizeof(time_ms);
    // Estimate of an unordered_map node: the pair, the next pointer and the cached hash, plus
    // one bucket pointer per bucket. Names longer than the small-string buffer add their size.
    for (const auto& [name, bin] : category_bins_) {
        bytes += sizeof(std::pair<const std::string, std::uint32_t>) + 2 * sizeof(void*) +
                 (name.size() > 15 ? name.capacity() + 1 : 0);
        (void)bin;
    }
    bytes += category_bins_.bucket_count() * sizeof(void*);
    return bytes;
}

}  // namespace tocsin::model
