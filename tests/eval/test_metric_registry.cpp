// Metrics by name (eval/metric_registry.h): hand-checked values of the ranking
// metrics, ties, groups, graded labels, and the errors for bad names.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/metric_registry.h"
#include "eval/metrics.h"

using namespace mtrank::eval;

namespace {
double metric(const std::string& name, const std::vector<float>& scores, const std::vector<float>& labels,
              const std::vector<std::uint64_t>& groups = {}) {
  return make_metric(name)->compute(TaskRows{scores, labels, groups});
}
std::string error_of(const std::string& name) {
  try {
    make_metric(name);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(MetricRegistry, RankingMetricsOfOneListByHand) {
  // Ranked: 0.9 (0), 0.8 (1), 0.7 (0), 0.6 (1).
  const std::vector<float> s{0.7f, 0.9f, 0.6f, 0.8f}, y{0, 0, 1, 1};
  // DCG@4 = 1/log2(3) + 1/log2(5); IDCG@4 = 1 + 1/log2(3).
  const double dcg = 1 / std::log2(3.0) + 1 / std::log2(5.0), idcg = 1 + 1 / std::log2(3.0);
  EXPECT_NEAR(metric("ndcg@4", s, y), dcg / idcg, 1e-12);
  EXPECT_NEAR(metric("ndcg@10", s, y), dcg / idcg, 1e-12);  // K beyond the list
  EXPECT_NEAR(metric("ndcg@2", s, y), (1 / std::log2(3.0)) / idcg, 1e-12);
  EXPECT_DOUBLE_EQ(metric("ndcg@1", s, y), 0.0);
  EXPECT_DOUBLE_EQ(metric("recall@1", s, y), 0.0);
  EXPECT_DOUBLE_EQ(metric("recall@2", s, y), 0.5);
  EXPECT_DOUBLE_EQ(metric("recall@4", s, y), 1.0);
  EXPECT_DOUBLE_EQ(metric("mrr", s, y), 0.5);
}

TEST(MetricRegistry, GroupsAreListsAndListsWithoutARelevantRowAreLeftOut) {
  // Group 7: relevant row ranked first. Group 3: ranked second. Group 9: none relevant.
  const std::vector<float> s{0.9f, 0.1f, 0.1f, 0.2f, 0.5f, 0.4f}, y{1, 0, 1, 0, 0, 0};
  const std::vector<std::uint64_t> g{7, 7, 3, 3, 9, 9};
  EXPECT_DOUBLE_EQ(metric("mrr", s, y, g), (1.0 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(metric("recall@1", s, y, g), 0.5);
  EXPECT_NEAR(metric("ndcg@2", s, y, g), (1.0 + 1 / std::log2(3.0)) / 2, 1e-12);
  // A NaN score has no rank: undefined (and never an out-of-order sort).
  EXPECT_TRUE(std::isnan(metric("ndcg@2", {std::nanf(""), 0.1f, 0.3f}, {1, 0, 1})));
  EXPECT_TRUE(std::isnan(metric("mrr", {0.2f, std::nanf("")}, {1, 0}, {1, 1})));
  // No list with a relevant row: undefined.
  EXPECT_TRUE(std::isnan(metric("mrr", {0.1f, 0.2f}, {0, 0})));
}

TEST(MetricRegistry, TiesRankTheLessRelevantRowFirst) {
  // A constant score earns no credit for the order the rows came in.
  EXPECT_DOUBLE_EQ(metric("mrr", {0.5f, 0.5f, 0.5f}, {1, 0, 0}), 1.0 / 3);
  EXPECT_DOUBLE_EQ(metric("recall@2", {0.5f, 0.5f, 0.5f}, {1, 0, 0}), 0.0);
}

TEST(MetricRegistry, NdcgGainIsTwoToTheLabelMinusOne) {
  // Labels 3 and 1, ranked 1 first: DCG = 1 + 7/log2(3), IDCG = 7 + 1/log2(3).
  const double l3 = std::log2(3.0);
  EXPECT_NEAR(metric("ndcg@2", {0.9f, 0.1f}, {1, 3}), (1 + 7 / l3) / (7 + 1 / l3), 1e-12);
}

TEST(MetricRegistry, PointwiseMetricsAreTheEvaluationFunctions) {
  const std::vector<float> s{0.2f, 0.7f, 0.4f, 0.9f}, y{0, 1, 1, 0};
  EXPECT_DOUBLE_EQ(metric("auc", s, y), roc_auc(s, y));
  EXPECT_DOUBLE_EQ(metric("logloss", s, y), logloss(s, y));
  EXPECT_DOUBLE_EQ(metric("mse", s, y), mean_squared_error(s, y));
  EXPECT_DOUBLE_EQ(metric("rmse", s, y), std::sqrt(mean_squared_error(s, y)));
  EXPECT_NEAR(metric("calibration", s, y), (0.2 + 0.7 + 0.4 + 0.9) / 2, 1e-6);
  EXPECT_TRUE(std::isnan(metric("gauc", s, y)));  // no groups
  EXPECT_DOUBLE_EQ(metric("gauc", s, y, {1, 1, 2, 2}), group_auc(s, y, {1, 1, 2, 2}));
  EXPECT_TRUE(make_metric("auc")->higher_is_better());
  EXPECT_FALSE(make_metric("rmse")->higher_is_better());
  EXPECT_EQ(make_metric("recall@20")->name(), "recall@20");
}

TEST(MetricRegistry, BadNamesSayWhatIsKnown) {
  EXPECT_NE(error_of("ndgc@10").find("unknown metric 'ndgc@10'; known: auc, gauc, logloss"), std::string::npos);
  EXPECT_NE(error_of("ndgc@10").find("ndcg@K"), std::string::npos);
  EXPECT_NE(error_of("ndcg").find("write ndcg@K"), std::string::npos);
  EXPECT_NE(error_of("recall@0").find("K >= 1"), std::string::npos);
  EXPECT_NE(error_of("recall@2x").find("K >= 1"), std::string::npos);
  EXPECT_NE(error_of("recall@").find("K >= 1"), std::string::npos);
  EXPECT_NE(error_of("auc@5").find("auc takes no cut-off"), std::string::npos);
}
