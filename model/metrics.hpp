#pragma once
// Exact performance metrics of a model over a set of (prediction, outcome) pairs, computed as
// scikit-learn 1.2 computes them (checked against scikit-learn 1.2.1 and numpy 1.24.2, the
// versions in Debian 12):
//
//   regression   RMSE (mean_squared_error(squared=False)) and MAE (mean_absolute_error)
//   binary       ROC AUC (roc_auc_score), log loss (log_loss), and accuracy, precision,
//                recall and F1 of the prediction `score >= threshold`
//
// Every result carries its sample count and a status. The status gives the reason a value is absent
// (no pairs, or ROC AUC with one outcome class) or why it is a convention rather than a
// measurement (precision, recall or F1 with a zero denominator is 0, as sklearn's default
// zero_division="warn" returns after its warning).
//
// Inputs: predictions and outcomes of one pair share an index. Every number must be finite.
// Binary outcomes are 0 or 1. Scores may be any finite number for ROC AUC and the threshold
// metrics, and must be probabilities in [0, 1] for log loss. A violation throws
// std::invalid_argument that names the index and the value.
//
// Thread safety: all functions are reentrant and share no state.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>

namespace tocsin::model {

// The reason a metric has no value, or has a conventional one.
enum class metric_status : std::uint8_t {
    ok,
    // No pairs. The value is absent.
    empty,
    // ROC AUC over outcomes of one class only. The value is absent, where sklearn raises
    // ValueError("Only one class present in y_true. ROC AUC score is not defined in that case.").
    single_class,
    // Precision, recall or F1 with a zero denominator. The value is 0.
    zero_division,
};

struct metric_result {
    std::optional<double> value;
    // Pairs the metric was computed over.
    std::size_t count = 0;
    metric_status status = metric_status::ok;
};

struct regression_metrics {
    metric_result rmse;
    metric_result mae;
};

// Confusion matrix counts of the binary prediction `score >= threshold`, positive class 1.
struct confusion_counts {
    std::uint64_t true_positives = 0;
    std::uint64_t false_positives = 0;
    std::uint64_t true_negatives = 0;
    std::uint64_t false_negatives = 0;

    std::uint64_t total() const { return true_positives + false_positives + true_negatives + false_negatives; }
};

struct threshold_metrics {
    metric_result accuracy;
    metric_result precision;
    metric_result recall;
    metric_result f1;
};

// Probabilities are clipped to [log_loss_epsilon, 1 - log_loss_epsilon] before the logarithm,
// as sklearn 1.2's log_loss with its default eps="auto" does for float64 input
// (np.finfo(np.float64).eps = 2.220446049250313e-16).
inline constexpr double log_loss_epsilon = std::numeric_limits<double>::epsilon();

// Computes RMSE and MAE. Throws std::invalid_argument when the spans differ in length or hold
// a value that is not finite.
regression_metrics compute_regression_metrics(std::span<const double> predictions,
                                              std::span<const double> outcomes);

// Computes the area under the ROC curve by the trapezoid rule over the distinct score
// thresholds, so tied scores form one step, as sklearn's roc_auc_score. Costs O(n log n).
metric_result compute_roc_auc(std::span<const double> scores, std::span<const double> outcomes);

// Computes the mean of -ln(p) over the probabilities p that the pairs gave their outcomes, with
// sklearn 1.2's clipping and renormalisation: p is clipped to [eps, 1 - eps], then both class
// probabilities are divided by their sum. An all-one-class set is valid here (sklearn needs
// labels=[0, 1] for it).
metric_result compute_log_loss(std::span<const double> scores, std::span<const double> outcomes);

// Counts the confusion matrix of `score >= threshold` against the outcomes. Throws
// std::invalid_argument for a threshold that is not finite.
confusion_counts count_confusion(std::span<const double> scores, std::span<const double> outcomes,
                                 double threshold);

// Computes accuracy, precision, recall and F1 from confusion counts. A zero denominator gives
// 0 with status zero_division: precision with no predicted positives, recall with no actual
// positives, and F1 with neither. Otherwise F1 is 2PR / (P + R), or 0 with status ok when
// P + R is 0. sklearn 1.2 returns the same values and warns in the same cases.
threshold_metrics compute_threshold_metrics(const confusion_counts& counts);

// Counts the confusion matrix and computes the metrics of `score >= threshold`.
threshold_metrics compute_threshold_metrics(std::span<const double> scores,
                                            std::span<const double> outcomes, double threshold);

}  // namespace tocsin::model
