#include "model/quantile_sketch.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace tocsin::model {

quantile_sketch::quantile_sketch(double epsilon) : epsilon_(epsilon)
{
    if (!(epsilon > 0 && epsilon < 0.5)) {
        throw std::invalid_argument("quantile sketch: epsilon is " + std::to_string(epsilon) +
                                    "; expected a rank error between 0 and 0.5, such as 0.001");
    }
    // A batch of about 1/epsilon values keeps the merge cost per value near a constant.
    buffer_capacity_ = std::max<std::size_t>(256, static_cast<std::size_t>(std::ceil(1 / epsilon)));
    buffer_.reserve(buffer_capacity_);
}

void quantile_sketch::add(double value)
{
    if (!std::isfinite(value)) {
        throw std::invalid_argument("quantile sketch: value " + std::to_string(value) +
                                    " is not finite; drop NaN and infinite values first");
    }
    buffer_.push_back(value);
    ++count_;
    if (buffer_.size() >= buffer_capacity_) {
        flush();
    }
}

void quantile_sketch::flush() const
{
    if (buffer_.empty()) {
        return;
    }
    std::sort(buffer_.begin(), buffer_.end());

    scratch_.clear();
    scratch_.reserve(tuples_.size() + buffer_.size());
    std::size_t t = 0;
    for (const double value : buffer_) {
        // Old tuples with v <= value come first, so a new value goes after its equals.
        while (t < tuples_.size() && tuples_[t].value <= value) {
            scratch_.push_back(tuples_[t]);
            ++t;
        }
        // Below the old minimum or above the old maximum the rank is exact. Otherwise the
        // value lies between the previous tuple and tuple t, and its rank bounds are theirs.
        const bool exact = t == 0 || t == tuples_.size();
        const std::uint64_t delta = exact ? 0 : tuples_[t].g + tuples_[t].delta - 1;
        scratch_.push_back(tuple{value, 1, delta});
    }
    while (t < tuples_.size()) {
        scratch_.push_back(tuples_[t]);
        ++t;
    }
    tuples_.swap(scratch_);
    merged_count_ += buffer_.size();
    buffer_.clear();
    combine();
}

void quantile_sketch::combine() const
{
    if (tuples_.size() < 3) {
        return;
    }
    const auto limit = static_cast<std::uint64_t>(std::floor(2 * epsilon_ * static_cast<double>(merged_count_)));

    // Walk from the right and fold a tuple into its right neighbour while g + g' + delta' stays
    // within the limit. The first tuple (the minimum) and the last (the maximum) always stay.
    scratch_.clear();
    tuple right = tuples_.back();
    for (std::size_t i = tuples_.size() - 2; i >= 1; --i) {
        const tuple& current = tuples_[i];
        if (current.g + right.g + right.delta <= limit) {
            right.g += current.g;
        } else {
            scratch_.push_back(right);
            right = current;
        }
    }
    scratch_.push_back(right);
    scratch_.push_back(tuples_.front());
    std::reverse(scratch_.begin(), scratch_.end());
    tuples_.swap(scratch_);
}

std::optional<double> quantile_sketch::quantile(double q) const
{
    if (!(q >= 0 && q <= 1)) {
        throw std::invalid_argument("quantile sketch: quantile " + std::to_string(q) + " is outside [0, 1]");
    }
    flush();
    if (tuples_.empty()) {
        return std::nullopt;
    }
    const double n = static_cast<double>(merged_count_);
    const double target = std::max(1.0, std::ceil(q * n));

    // Pick the tuple whose rank interval [rmin, rmax] is nearest the target on its worse side.
    double rmin = 0;
    double best_error = std::numeric_limits<double>::infinity();
    double best_value = tuples_.front().value;
    for (const tuple& entry : tuples_) {
        rmin += static_cast<double>(entry.g);
        const double rmax = rmin + static_cast<double>(entry.delta);
        const double error = std::max(target - rmin, rmax - target);
        if (error < best_error) {
            best_error = error;
            best_value = entry.value;
        }
        if (rmin > target) {
            break;
        }
    }
    return best_value;
}

double quantile_sketch::count_below(double value) const
{
    flush();
    if (tuples_.empty() || value <= tuples_.front().value) {
        return 0;
    }
    if (value > tuples_.back().value) {
        return static_cast<double>(merged_count_);
    }
    // The last tuple below `value` has rank >= rmin, and the next tuple (>= value) has rank
    // <= rmax, so the count lies in [rmin_below, rmax_next - 1]. Return the midpoint.
    double rmin = 0;
    for (const tuple& entry : tuples_) {
        if (entry.value >= value) {
            const double rmax_next = rmin + static_cast<double>(entry.g + entry.delta);
            return (rmin + rmax_next - 1) / 2;
        }
        rmin += static_cast<double>(entry.g);
    }
    return static_cast<double>(merged_count_);
}

std::size_t quantile_sketch::tuple_count() const
{
    flush();
    return tuples_.size();
}

std::size_t quantile_sketch::memory_bytes() const
{
    return sizeof(*this) + (tuples_.capacity() + scratch_.capacity()) * sizeof(tuple) +
           buffer_.capacity() * sizeof(double);
}

}  // namespace tocsin::model
