#pragma once
// A sliding window of (prediction, outcome) pairs of one model version, with its performance
// metrics.
//
// The window keeps at most max_pairs pairs and, when max_age_ms is set, only the pairs whose
// time is within max_age_ms of the newest pair's time: a pair leaves when either bound drops
// it. Each add() costs O(1) amortized, and the window updates these incrementally:
//
//   regression   RMSE and MAE, from running sums of squared and absolute errors. The sums are
//                recomputed from the stored pairs after as many evictions as the window has
//                pairs (O(n) once per n evictions), so the rounding error of subtraction does
//                not accumulate: it is about n * 2^-52 times the largest squared error added or
//                evicted since the last recomputation, and a burst of large errors stops
//                mattering at the first recomputation after it has left the window.
//   binary       accuracy, precision, recall and F1 at the threshold, from exact confusion
//                counts.
//
// ROC AUC and log loss are recomputed over the stored pairs on each call: roc_auc() sorts a
// copy of the scores in O(n log n) time and O(n) memory, log_loss() takes O(n).
// The metrics match compute_regression_metrics, compute_roc_auc, compute_log_loss and
// compute_threshold_metrics (model/metrics.hpp) over the same pairs to rounding.
//
// Time is the caller's time of each pair, in milliseconds since the epoch (usually when the
// outcome became known). Pairs are expected in non-decreasing time. A pair older than the
// newest is stored with the newest time, so the window's order is its insertion order.
// Memory: about 24 bytes per stored pair (std::deque), bounded by max_pairs.
//
// Thread safety: none. One thread at a time may use a window, or the caller locks.

#include <cstddef>
#include <cstdint>
#include <deque>

#include "model/feature.hpp"
#include "model/metrics.hpp"

namespace tocsin::model {

enum class prediction_task : std::uint8_t {
    // The prediction is a number and the outcome the observed number.
    regression,
    // The prediction is a score (usually the probability of class 1) or a class 0 or 1, and
    // the outcome is 0 or 1.
    binary_classification,
};

struct performance_window_options {
    prediction_task task = prediction_task::binary_classification;
    // Maximum count of stored pairs. Must be at least 1.
    std::size_t max_pairs = 10'000;
    // Maximum age of a pair relative to the newest, in milliseconds. 0 keeps pairs by count only.
    time_ms max_age_ms = 0;
    // A score >= threshold predicts class 1. Binary classification only.
    double threshold = 0.5;
};

class performance_window {
public:
    // Throws std::invalid_argument when max_pairs is 0, max_age_ms is negative or the
    // threshold is not finite.
    explicit performance_window(performance_window_options options);

    // Adds one pair and drops the pairs that leave the window. Throws std::invalid_argument for
    // a value that is not finite, a binary outcome other than 0 or 1, or a binary score outside
    // [0, 1] (log loss needs probabilities), and leaves the window unchanged then.
    void add(time_ms time, double prediction, double outcome);

    // Drops the pairs older than now - max_age_ms, for a window that gets no pairs for a while.
    // Does nothing when max_age_ms is 0.
    void expire(time_ms now);

    std::size_t size() const { return pairs_.size(); }
    const performance_window_options& options() const { return options_; }

    // Regression: RMSE and MAE, incremental. Both are empty for an empty window.
    regression_metrics regression() const;
    // Binary classification: confusion counts and the metrics at the threshold, incremental.
    const confusion_counts& confusion() const { return confusion_; }
    threshold_metrics classification() const;
    // Binary classification: recomputed over the window on each call.
    metric_result roc_auc() const;
    metric_result log_loss() const;

    // Approximate heap and object size in bytes.
    std::size_t memory_bytes() const;

private:
    struct stored_pair {
        time_ms time;
        double prediction;
        double outcome;
    };

    void check_pair(double prediction, double outcome) const;
    void count(const stored_pair& pair, int sign);
    void evict_front();
    void recompute_sums();

    performance_window_options options_;
    std::deque<stored_pair> pairs_;
    time_ms newest_time_ = 0;
    double sum_squared_error_ = 0;
    double sum_absolute_error_ = 0;
    std::size_t evictions_since_recompute_ = 0;
    confusion_counts confusion_;
};

}  // namespace tocsin::model
