#include "model/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace tocsin::model {

namespace {

void check_sizes(std::span<const double> predictions, std::span<const double> outcomes)
{
    if (predictions.size() != outcomes.size()) {
        throw std::invalid_argument("model metrics: " + std::to_string(predictions.size()) +
                                    " predictions but " + std::to_string(outcomes.size()) +
                                    " outcomes; pass one outcome per prediction");
    }
}

void check_finite(std::span<const double> values, const char* field)
{
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (!std::isfinite(values[i])) {
            throw std::invalid_argument(std::string("model metrics: ") + field + " at index " +
                                        std::to_string(i) + " is not finite (" + std::to_string(values[i]) +
                                        "); drop NaN and infinite values before computing metrics");
        }
    }
}

void check_binary_outcomes(std::span<const double> outcomes)
{
    check_finite(outcomes, "outcome");
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        if (outcomes[i] != 0.0 && outcomes[i] != 1.0) {
            throw std::invalid_argument("model metrics: binary outcome at index " + std::to_string(i) +
                                        " is " + std::to_string(outcomes[i]) + "; expected 0 or 1");
        }
    }
}

metric_result empty_result() { return metric_result{std::nullopt, 0, metric_status::empty}; }

metric_result ratio_or_zero(std::uint64_t numerator, std::uint64_t denominator, std::size_t count)
{
    if (denominator == 0) {
        return metric_result{0.0, count, metric_status::zero_division};
    }
    return metric_result{static_cast<double>(numerator) / static_cast<double>(denominator), count,
                         metric_status::ok};
}

}  // namespace

regression_metrics compute_regression_metrics(std::span<const double> predictions,
                                              std::span<const double> outcomes)
{
    check_sizes(predictions, outcomes);
    check_finite(predictions, "prediction");
    check_finite(outcomes, "outcome");
    if (predictions.empty()) {
        return {empty_result(), empty_result()};
    }

    double squared = 0;
    double absolute = 0;
    for (std::size_t i = 0; i < predictions.size(); ++i) {
        const double error = outcomes[i] - predictions[i];
        squared += error * error;
        absolute += std::abs(error);
    }
    const auto n = static_cast<double>(predictions.size());
    return {metric_result{std::sqrt(squared / n), predictions.size(), metric_status::ok},
            metric_result{absolute / n, predictions.size(), metric_status::ok}};
}

metric_result compute_roc_auc(std::span<const double> scores, std::span<const double> outcomes)
{
    check_sizes(scores, outcomes);
    check_finite(scores, "score");
    check_binary_outcomes(outcomes);
    if (scores.empty()) {
        return empty_result();
    }

    std::vector<std::size_t> order(scores.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });

    // Lower the threshold one distinct score at a time. Each step adds the trapezoid between
    // the previous (fp, tp) point and the new one, in counts. Dividing by P * N at the end
    // gives the area in rates. Counts stay exact in doubles below 2^53 pairs.
    double true_positives = 0;
    double false_positives = 0;
    double area = 0;
    std::size_t k = 0;
    while (k < order.size()) {
        const double threshold = scores[order[k]];
        const double previous_tp = true_positives;
        const double previous_fp = false_positives;
        while (k < order.size() && scores[order[k]] == threshold) {
            if (outcomes[order[k]] == 1.0) {
                true_positives += 1;
            } else {
                false_positives += 1;
            }
            ++k;
        }
        area += (false_positives - previous_fp) * (true_positives + previous_tp) / 2;
    }
    if (true_positives == 0 || false_positives == 0) {
        return metric_result{std::nullopt, scores.size(), metric_status::single_class};
    }
    return metric_result{area / (true_positives * false_positives), scores.size(), metric_status::ok};
}

metric_result compute_log_loss(std::span<const double> scores, std::span<const double> outcomes)
{
    check_sizes(scores, outcomes);
    check_finite(scores, "score");
    check_binary_outcomes(outcomes);
    for (std::size_t i = 0; i < scores.size(); ++i) {
        if (scores[i] < 0.0 || scores[i] > 1.0) {
            throw std::invalid_argument("model metrics: score at index " + std::to_string(i) + " is " +
                                        std::to_string(scores[i]) +
                                        "; log loss needs a probability in [0, 1]");
        }
    }
    if (scores.empty()) {
        return empty_result();
    }

    double total = 0;
    for (std::size_t i = 0; i < scores.size(); ++i) {
        // The same operations as sklearn 1.2: clip, form [1 - p, p], divide by its sum.
        const double p = std::clamp(scores[i], log_loss_epsilon, 1 - log_loss_epsilon);
        const double negative = 1 - p;
        const double sum = negative + p;
        const double chosen = outcomes[i] == 1.0 ? p / sum : negative / sum;
        total -= std::log(chosen);
    }
    return metric_result{total / static_cast<double>(scores.size()), scores.size(), metric_status::ok};
}

confusion_counts count_confusion(std::span<const double> scores, std::span<const double> outcomes,
                                 double threshold)
{
    check_sizes(scores, outcomes);
    check_finite(scores, "score");
    check_binary_outcomes(outcomes);
    if (!std::isfinite(threshold)) {
        throw std::invalid_argument("model metrics: threshold " + std::to_string(threshold) +
                                    " is not finite; pass a finite decision threshold");
    }
    confusion_counts counts;
    for (std::size_t i = 0; i < scores.size(); ++i) {
        const bool predicted = scores[i] >= threshold;
        const bool actual = outcomes[i] == 1.0;
        if (predicted && actual) {
            ++counts.true_positives;
        } else if (predicted) {
            ++counts.false_positives;
        } else if (actual) {
            ++counts.false_negatives;
        } else {
            ++counts.true_negatives;
        }
    }
    return counts;
}

threshold_metrics compute_threshold_metrics(const confusion_counts& counts)
{
    const std::uint64_t total = counts.total();
    if (total == 0) {
        return {empty_result(), empty_result(), empty_result(), empty_result()};
    }
    const auto count = static_cast<std::size_t>(total);

    threshold_metrics out;
    out.accuracy = ratio_or_zero(counts.true_positives + counts.true_negatives, total, count);
    out.precision = ratio_or_zero(counts.true_positives, counts.true_positives + counts.false_positives, count);
    out.recall = ratio_or_zero(counts.true_positives, counts.true_positives + counts.false_negatives, count);

    // sklearn 1.2 calls F1 ill-defined only when there are neither actual nor predicted
    // positives. With either, F1 = 2 P R / (P + R), and 0 when P + R is 0.
    if (out.precision.status == metric_status::zero_division && out.recall.status == metric_status::zero_division) {
        out.f1 = metric_result{0.0, count, metric_status::zero_division};
        return out;
    }
    const double precision = *out.precision.value;
    const double recall = *out.recall.value;
    const double denominator = precision + recall;
    out.f1 = metric_result{denominator == 0 ? 0.0 : 2 * precision * recall / denominator, count, metric_status::ok};
    return out;
}

threshold_metrics compute_threshold_metrics(std::span<const double> scores,
                                            std::span<const double> outcomes, double threshold)
{
    return compute_threshold_metrics(count_confusion(scores, outcomes, threshold));
}

}  // namespace tocsin::model
