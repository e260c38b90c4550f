#include "model/metrics.hpp"
#include "model/performance_window.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <span>
#include <stdexcept>
#include <vector>

using namespace tocsin::model;

// Every expected value below was computed with scikit-learn 1.2.1 and numpy 1.24.2 (the
// Debian 12 packages) from the same literal arrays:
//   rmse      mean_squared_error(y, p, squared=False)
//   mae       mean_absolute_error(y, p)
//   auc       roc_auc_score(y, s)
//   log loss  log_loss(y, s), with labels=[0, 1] for a one-class set
//   threshold accuracy_score, precision_score, recall_score, f1_score of (s >= t)
// The data came from numpy.random.default_rng(20240601), rounded to few decimals.

namespace {

constexpr double tolerance = 1e-9;

const std::vector<double> regression_outcomes = {
    11.944, 11.408, 8.071,  6.465, 9.566, 13.61, 14.001, 12.725, 11.04,  14.8,  13.699, 9.339, 6.814, 8.906,
    8.74,   12.063, 4.303,  9.426, 15.014, 7.239, 7.725, 9.747, 5.747, 9.611, 9.953,  9.986, 7.034, 8.903,
    11.961, 7.856,  11.642, 11.967, 5.719, 8.064, 11.966, 11.48, 10.538, 8.954, 10.326, 15.624};
const std::vector<double> regression_predictions = {
    11.612, 12.277, 7.446, 6.168, 10.538, 12.216, 13.637, 11.81, 9.752,  15.064, 15.559, 9.671, 6.241, 6.729,
    9.968,  12.379, 3.356, 10.718, 17.375, 4.792, 8.61,   11.016, 6.618, 12.014, 10.891, 8.631, 12.734, 9.122,
    14.184, 10.805, 12.964, 9.27, 3.163, 7.048, 12.017, 9.397, 9.132, 8.286, 9.613, 15.907};

// Scores with one decimal, so most scores tie with others.
const std::vector<double> binary_outcomes = {
    0, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1,
    1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
const std::vector<double> binary_scores = {
    0.4, 0.3, 0.4, 0.6, 0.2, 0.4, 0.3, 0.5, 0.0, 0.8, 0.8, 0.8, 0.5, 0.7, 0.8, 0.6, 0.8, 0.8, 0.6, 0.9,
    0.2, 0.9, 0.4, 0.1, 0.3, 0.5, 0.4, 0.8, 0.4, 0.8, 0.8, 0.7, 0.6, 0.4, 0.6, 0.6, 0.1, 0.3, 0.5, 0.7,
    0.5, 0.7, 0.2, 0.4, 0.7, 0.6, 0.3, 0.0, 0.4, 0.5, 0.4, 0.7, 0.5, 0.8, 0.8, 0.4, 0.5, 0.5, 0.4, 0.2};

void check_value(const metric_result& result, double expected, std::size_t count)
{
    REQUIRE(result.value.has_value());
    CHECK(result.status == metric_status::ok);
    CHECK(result.count == count);
    INFO("value=" << *result.value << " expected=" << expected);
    CHECK(std::abs(*result.value - expected) <= tolerance);
}

template <typename T>
std::span<const T> last(const std::vector<T>& values, std::size_t n)
{
    return std::span<const T>(values).subspan(values.size() - n);
}

} // namespace

TEST_CASE("regression metrics match sklearn")
{
    const regression_metrics m = compute_regression_metrics(regression_predictions, regression_outcomes);
    check_value(m.rmse, 1.6812407174464934, 40);
    check_value(m.mae, 1.3114999999999999, 40);
}

TEST_CASE("roc auc with tied scores matches sklearn")
{
    check_value(compute_roc_auc(binary_scores, binary_outcomes), 0.9019138755980862, 60);
    check_value(compute_roc_auc(last(binary_scores, 25), last(binary_outcomes, 25)), 0.9133333333333333, 25);
}

TEST_CASE("roc auc of one class is undefined")
{
    const std::vector<double> scores = {0.87, 0.83, 0.04, 0.36, 0.78, 0.46, 0.23, 0.74, 0.55, 0.12, 0.34, 0.8};
    const std::vector<double> ones(scores.size(), 1.0);
    const std::vector<double> zeros(scores.size(), 0.0);

    // sklearn raises "Only one class present in y_true. ROC AUC score is not defined in that case."
    const metric_result positives = compute_roc_auc(scores, ones);
    CHECK_FALSE(positives.value.has_value());
    CHECK(positives.status == metric_status::single_class);
    CHECK(positives.count == 12);
    const metric_result negatives = compute_roc_auc(scores, zeros);
    CHECK_FALSE(negatives.value.has_value());
    CHECK(negatives.status == metric_status::single_class);

    // log_loss(y, s, labels=[0, 1]) is defined for one class.
    check_value(compute_log_loss(scores, ones), 0.948495306600616, 12);

    const threshold_metrics t = compute_threshold_metrics(scores, ones, 0.5);
    check_value(t.accuracy, 0.5, 12);
    check_value(t.precision, 1.0, 12);
    check_value(t.recall, 0.5, 12);
    check_value(t.f1, 0.6666666666666666, 12);
}

TEST_CASE("log loss matches sklearn")
{
    check_value(compute_log_loss(binary_scores, binary_outcomes), 0.46151137122242475, 60);
    check_value(compute_log_loss(last(binary_scores, 25), last(binary_outcomes, 25)), 0.48356168634372637, 25);
}

TEST_CASE("log loss clips extreme probabilities like sklearn")
{
    // Certain and wrong predictions, values below eps and one ulp below 1.
    const std::vector<double> outcomes = {1, 0, 0, 1, 1, 0, 1, 0};
    const std::vector<double> scores = {1.0, 0.0, 1.0, 0.0, 1e-17, 0.9999999999999999, 0.5, 2e-16};
    check_value(compute_log_loss(scores, outcomes), 18.10847009212857, 8);
    CHECK(log_loss_epsilon == 2.220446049250313e-16);
}

TEST_CASE("threshold metrics match sklearn")
{
    const threshold_metrics half = compute_threshold_metrics(binary_scores, binary_outcomes, 0.5);
    check_value(half.accuracy, 0.7833333333333333, 60);
    check_value(half.precision, 0.8571428571428571, 60);
    check_value(half.recall, 0.7894736842105263, 60);
    check_value(half.f1, 0.8219178082191781, 60);

    const threshold_metrics high = compute_threshold_metrics(binary_scores, binary_outcomes, 0.7);
    check_value(high.accuracy, 0.6833333333333333, 60);
    check_value(high.precision, 1.0, 60);
    check_value(high.recall, 0.5, 60);
    check_value(high.f1, 0.6666666666666666, 60);
}

TEST_CASE("threshold metrics zero division returns 0")
{
    // Nothing predicted positive: sklearn warns "Precision is ill-defined and being set to 0.0"
    // and returns precision 0, recall 0 and F1 0, without an F-score warning.
    const threshold_metrics none_predicted =
        compute_threshold_metrics(std::vector<double>{0.1, 0.2, 0.3, 0.4, 0.45}, std::vector<double>{0, 1, 0, 1, 0}, 0.5);
    CHECK(none_predicted.precision.status == metric_status::zero_division);
    CHECK(none_predicted.precision.value == 0.0);
    CHECK(none_predicted.recall.status == metric_status::ok);
    CHECK(none_predicted.recall.value == 0.0);
    CHECK(none_predicted.f1.status == metric_status::ok);
    CHECK(none_predicted.f1.value == 0.0);

    // Neither actual nor predicted positives: sklearn warns for precision, recall and F-score.
    const threshold_metrics no_positives =
        compute_threshold_metrics(std::vector<double>{0.1, 0.2, 0.3, 0.4}, std::vector<double>{0, 0, 0, 0}, 0.5);
    CHECK(no_positives.precision.status == metric_status::zero_division);
    CHECK(no_positives.recall.status == metric_status::zero_division);
    CHECK(no_positives.f1.status == metric_status::zero_division);
    CHECK(no_positives.f1.value == 0.0);
    CHECK(no_positives.accuracy.value == 1.0);

    // Every prediction wrong: precision and recall are 0 without a warning, and so is F1.
    const threshold_metrics all_wrong =
        compute_threshold_metrics(std::vector<double>{0.1, 0.9, 0.8, 0.2}, std::vector<double>{1, 0, 0, 1}, 0.5);
    CHECK(all_wrong.precision.status == metric_status::ok);
    CHECK(all_wrong.recall.status == metric_status::ok);
    CHECK(all_wrong.f1.status == metric_status::ok);
    CHECK(all_wrong.f1.value == 0.0);
}

TEST_CASE("metrics of empty input are empty")
{
    const std::vector<double> none;
    const regression_metrics r = compute_regression_metrics(none, none);
    CHECK(r.rmse.status == metric_status::empty);
    CHECK_FALSE(r.rmse.value.has_value());
    CHECK(r.mae.status == metric_status::empty);
    CHECK(compute_roc_auc(none, none).status == metric_status::empty);
    CHECK(compute_log_loss(none, none).status == metric_status::empty);
    const threshold_metrics t = compute_threshold_metrics(none, none, 0.5);
    CHECK(t.accuracy.status == metric_status::empty);
    CHECK(t.f1.status == metric_status::empty);
    CHECK(t.f1.count == 0);
}

TEST_CASE("metrics reject invalid input")
{
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    CHECK_THROWS_AS(compute_regression_metrics(std::vector<double>{1, nan}, std::vector<double>{1, 2}),
                    std::invalid_argument);
    CHECK_THROWS_AS(compute_regression_metrics(std::vector<double>{1, 2}, std::vector<double>{inf, 2}),
                    std::invalid_argument);
    CHECK_THROWS_AS(compute_regression_metrics(std::vector<double>{1}, std::vector<double>{1, 2}),
                    std::invalid_argument);
    CHECK_THROWS_AS(compute_roc_auc(std::vector<double>{0.5, nan}, std::vector<double>{0, 1}), std::invalid_argument);
    CHECK_THROWS_AS(compute_roc_auc(std::vector<double>{0.5, 0.2}, std::vector<double>{0, 2}), std::invalid_argument);
    CHECK_THROWS_AS(compute_roc_auc(std::vector<double>{0.5, 0.2}, std::vector<double>{0, nan}), std::invalid_argument);
    CHECK_THROWS_AS(compute_log_loss(std::vector<double>{0.5, 1.5}, std::vector<double>{0, 1}), std::invalid_argument);
    CHECK_THROWS_AS(compute_log_loss(std::vector<double>{nan}, std::vector<double>{1}), std::invalid_argument);
    CHECK_THROWS_AS(compute_threshold_metrics(std::vector<double>{0.5}, std::vector<double>{1}, nan),
                    std::invalid_argument);
    CHECK_THROWS_WITH(compute_roc_auc(std::vector<double>{0.5, nan}, std::vector<double>{0, 1}),
                      Catch::Contains("score at index 1 is not finite"));
}

TEST_CASE("performance window by count matches sklearn")
{
    performance_window_options options;
    options.task = prediction_task::binary_classification;
    options.max_pairs = 25;
    performance_window window(options);
    for (std::size_t i = 0; i < binary_scores.size(); ++i) {
        window.add(static_cast<tocsin::time_ms>(i) * 1000, binary_scores[i], binary_outcomes[i]);
    }
    CHECK(window.size() == 25);
    check_value(window.roc_auc(), 0.9133333333333333, 25);
    check_value(window.log_loss(), 0.48356168634372637, 25);

    const threshold_metrics incremental = window.classification();
    const threshold_metrics exact = compute_threshold_metrics(last(binary_scores, 25), last(binary_outcomes, 25), 0.5);
    CHECK(incremental.accuracy.value == exact.accuracy.value);
    CHECK(incremental.precision.value == exact.precision.value);
    CHECK(incremental.recall.value == exact.recall.value);
    CHECK(incremental.f1.value == exact.f1.value);
    CHECK(incremental.f1.count == 25);
}

TEST_CASE("performance window regression matches sklearn")
{
    performance_window_options options;
    options.task = prediction_task::regression;
    options.max_pairs = 25;
    performance_window window(options);
    CHECK(window.regression().rmse.status == metric_status::empty);
    for (std::size_t i = 0; i < regression_outcomes.size(); ++i) {
        window.add(static_cast<tocsin::time_ms>(i), regression_predictions[i], regression_outcomes[i]);
    }
    const regression_metrics m = window.regression();
    check_value(m.rmse, 1.9594565368999641, 25);
    check_value(m.mae, 1.5588, 25);
}

TEST_CASE("performance window drops pairs by age")
{
    performance_window_options options;
    options.task = prediction_task::regression;
    options.max_pairs = 1000;
    options.max_age_ms = 10'000;
    performance_window window(options);
    // One pair per second: at t = 39 s the pairs of 29 s to 39 s remain, the last 11.
    for (std::size_t i = 0; i < regression_outcomes.size(); ++i) {
        window.add(static_cast<tocsin::time_ms>(i) * 1000, regression_predictions[i], regression_outcomes[i]);
    }
    CHECK(window.size() == 11);
    const regression_metrics exact =
        compute_regression_metrics(last(regression_predictions, 11), last(regression_outcomes, 11));
    check_value(window.regression().rmse, *exact.rmse.value, 11);
    check_value(window.regression().mae, *exact.mae.value, 11);

    // A pair with an older time is stored as the newest, so it is not dropped early.
    window.add(5'000, 1.0, 1.0);
    CHECK(window.size() == 12);

    // Expiry keeps pairs with time >= now - max_age_ms.
    window.expire(39'000);
    CHECK(window.size() == 12);
    window.expire(48'999);
    CHECK(window.size() == 2);
    window.expire(49'001);
    CHECK(window.size() == 0);
    CHECK(window.regression().mae.status == metric_status::empty);
}

TEST_CASE("performance window keeps sums accurate over long runs")
{
    performance_window_options options;
    options.task = prediction_task::regression;
    options.max_pairs = 40;
    performance_window window(options);
    // Many evictions of large errors, then two windows of small ones: once the large errors
    // have left, the next recomputation restores full precision. Sums that were never
    // recomputed would have lost the small errors to rounding.
    for (int i = 0; i < 1013; ++i) {
        window.add(0, 1e7 + i, 0.0);
    }
    for (int round = 0; round < 2; ++round) {
        for (std::size_t i = 0; i < regression_outcomes.size(); ++i) {
            window.add(0, regression_predictions[i], regression_outcomes[i]);
        }
    }
    check_value(window.regression().rmse, 1.6812407174464934, 40);
    check_value(window.regression().mae, 1.3114999999999999, 40);
}

TEST_CASE("performance window rejects invalid pairs")
{
    const double nan = std::numeric_limits<double>::quiet_NaN();
    performance_window binary(performance_window_options{});
    CHECK_THROWS_AS(binary.add(0, nan, 1), std::invalid_argument);
    CHECK_THROWS_AS(binary.add(0, 0.5, nan), std::invalid_argument);
    CHECK_THROWS_AS(binary.add(0, 0.5, 0.5), std::invalid_argument);
    CHECK_THROWS_AS(binary.add(0, 1.5, 1), std::invalid_argument);
    CHECK(binary.size() == 0);
    CHECK(binary.roc_auc().status == metric_status::empty);
    CHECK(binary.classification().accuracy.status == metric_status::empty);

    performance_window_options zero;
    zero.max_pairs = 0;
    CHECK_THROWS_AS(performance_window(zero), std::invalid_argument);
}

TEST_CASE("performance window of one class reports no auc")
{
    performance_window window(performance_window_options{});
    window.add(0, 0.9, 1);
    window.add(1, 0.2, 1);
    CHECK(window.roc_auc().status == metric_status::single_class);
    CHECK(window.roc_auc().count == 2);
    window.add(2, 0.1, 0);
    check_value(window.roc_auc(), 1.0, 3);
}
