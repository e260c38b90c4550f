#include "model/performance_window.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace tocsin::model {

performance_window::performance_window(performance_window_options options) : options_(options)
{
    if (options_.max_pairs == 0) {
        throw std::invalid_argument("performance window: max_pairs is 0; set it to at least 1");
    }
    if (options_.max_age_ms < 0) {
        throw std::invalid_argument("performance window: max_age_ms is " + std::to_string(options_.max_age_ms) +
                                    "; set it to 0 (count bound only) or a positive age");
    }
    if (!std::isfinite(options_.threshold)) {
        throw std::invalid_argument("performance window: threshold is not finite; set a finite threshold");
    }
}

void performance_window::check_pair(double prediction, double outcome) const
{
    if (!std::isfinite(prediction) || !std::isfinite(outcome)) {
        throw std::invalid_argument("performance window: prediction " + std::to_string(prediction) + " or outcome " +
                                    std::to_string(outcome) + " is not finite; drop the pair");
    }
    if (options_.task == prediction_task::binary_classification) {
        if (outcome != 0.0 && outcome != 1.0) {
            throw std::invalid_argument("performance window: binary outcome is " + std::to_string(outcome) +
                                        "; expected 0 or 1");
        }
        if (prediction < 0.0 || prediction > 1.0) {
            throw std::invalid_argument("performance window: binary score is " + std::to_string(prediction) +
                                        "; expected a probability in [0, 1]");
        }
    }
}

void performance_window::count(const stored_pair& pair, int sign)
{
    if (options_.task == prediction_task::regression) {
        const double error = pair.outcome - pair.prediction;
        sum_squared_error_ += sign * error * error;
        sum_absolute_error_ += sign * std::abs(error);
        return;
    }
    const bool predicted = pair.prediction >= options_.threshold;
    const bool actual = pair.outcome == 1.0;
    std::uint64_t& cell = predicted ? (actual ? confusion_.true_positives : confusion_.false_positives)
                                    : (actual ? confusion_.false_negatives : confusion_.true_negatives);
    if (sign > 0) {
        ++cell;
    } else {
        --cell;
    }
}

void performance_window::recompute_sums()
{
    sum_squared_error_ = 0;
    sum_absolute_error_ = 0;
    for (const stored_pair& pair : pairs_) {
        const double error = pair.outcome - pair.prediction;
        sum_squared_error_ += error * error;
        sum_absolute_error_ += std::abs(error);
    }
    evictions_since_recompute_ = 0;
}

void performance_window::evict_front()
{
    count(pairs_.front(), -1);
    pairs_.pop_front();
    if (options_.task == prediction_task::regression && ++evictions_since_recompute_ >= pairs_.size()) {
        recompute_sums();
    }
}

void performance_window::add(time_ms time, double prediction, double outcome)
{
    check_pair(prediction, outcome);
    if (pairs_.empty() || time > newest_time_) {
        newest_time_ = time;
    }
    pairs_.push_back(stored_pair{newest_time_, prediction, outcome});
    count(pairs_.back(), +1);
    while (pairs_.size() > options_.max_pairs) {
        evict_front();
    }
    expire(newest_time_);
}

void performance_window::expire(time_ms now)
{
    if (options_.max_age_ms == 0) {
        return;
    }
    const time_ms oldest_kept = now - options_.max_age_ms;
    while (!pairs_.empty() && pairs_.front().time < oldest_kept) {
        evict_front();
    }
}

regression_metrics performance_window::regression() const
{
    if (pairs_.empty()) {
        return {metric_result{std::nullopt, 0, metric_status::empty}, metric_result{std::nullopt, 0, metric_status::empty}};
    }
    const auto n = static_cast<double>(pairs_.size());
    // Subtraction can leave a tiny negative sum where the true sum is 0.
    const double squared = std::max(sum_squared_error_, 0.0);
    const double absolute = std::max(sum_absolute_error_, 0.0);
    return {metric_result{std::sqrt(squared / n), pairs_.size(), metric_status::ok},
            metric_result{absolute / n, pairs_.size(), metric_status::ok}};
}

threshold_metrics performance_window::classification() const { return compute_threshold_metrics(confusion_); }

metric_result performance_window::roc_auc() const
{
    std::vector<double> scores;
    std::vector<double> outcomes;
    scores.reserve(pairs_.size());
    outcomes.reserve(pairs_.size());
    for (const stored_pair& pair : pairs_) {
        scores.push_back(pair.prediction);
        outcomes.push_back(pair.outcome);
    }
    return compute_roc_auc(scores, outcomes);
}

metric_result performance_window::log_loss() const
{
    std::vector<double> scores;
    std::vector<double> outcomes;
    scores.reserve(pairs_.size());
    outcomes.reserve(pairs_.size());
    for (const stored_pair& pair : pairs_) {
        scores.push_back(pair.prediction);
        outcomes.push_back(pair.outcome);
    }
    return compute_log_loss(scores, outcomes);
}

std::size_t performance_window::memory_bytes() const { return sizeof(*this) + pairs_.size() * sizeof(stored_pair); }

}  // namespace tocsin::model
