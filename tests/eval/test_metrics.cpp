// Metrics by hand, evaluation of masked tasks, the seesaw noise rule.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "eval/metrics.h"
#include "test_util.h"

using namespace mtrank;

TEST(Metrics, AucHandComputed) {
  EXPECT_DOUBLE_EQ(eval::roc_auc({0.1f, 0.4f, 0.35f, 0.8f}, {0, 0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(eval::roc_auc({0.9f, 0.8f, 0.1f}, {1, 1, 0}), 1.0);
  EXPECT_DOUBLE_EQ(eval::roc_auc({0.9f, 0.8f, 0.1f}, {0, 0, 1}), 0.0);
}

TEST(Metrics, NanScoresGiveNanAucAndNeverHang) {
  // Issue 14.1: the tie loop never advanced past a NaN score (training and eval hung).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(eval::roc_auc({0.1f, nan, 0.7f, nan}, {0, 1, 1, 0})));
  std::vector<std::uint64_t> groups{1, 1, 2, 2};
  std::int64_t used = -1;
  // A group with a NaN score has no AUC and is left out, like a one-class group.
  EXPECT_DOUBLE_EQ(eval::group_auc({0.1f, nan, 0.7f, 0.2f}, {0, 1, 1, 0}, groups, &used), 1.0);
  EXPECT_EQ(used, 1);
}

TEST(Metrics, AucCountsTiesAsHalf) {
  EXPECT_DOUBLE_EQ(eval::roc_auc({0.5f, 0.5f, 0.5f, 0.5f}, {0, 1, 0, 1}), 0.5);
  // pairs (pos, neg): (0.5, 0.2)=1, (0.5, 0.5)=0.5, (0.9, 0.2)=1, (0.9, 0.5)=1 -> 3.5 / 4
  EXPECT_DOUBLE_EQ(eval::roc_auc({0.2f, 0.5f, 0.5f, 0.9f}, {0, 0, 1, 1}), 0.875);
  EXPECT_TRUE(std::isnan(eval::roc_auc({0.2f, 0.3f}, {1, 1})));
}

TEST(Metrics, LoglossAndMse) {
  EXPECT_NEAR(eval::logloss({0.5f}, {1}), std::log(2.0), 1e-9);
  EXPECT_NEAR(eval::logloss({0.8f, 0.1f}, {1, 0}), -(std::log(0.8) + std::log(0.9)) / 2, 1e-6);
  EXPECT_NEAR(eval::logloss({0.0f}, {1}), -std::log(1e-7), 1e-6);  // clipped, finite
  EXPECT_DOUBLE_EQ(eval::mean_squared_error({1, 2, 3}, {1, 0, 6}), (0 + 4 + 9) / 3.0);
}

TEST(Metrics, EvaluateTasksUsesOnlyMaskedRows) {
  std::vector<TaskConfig> tasks(2);
  tasks[0].name = "click";
  tasks[1].name = "watch";
  tasks[1].type = TaskType::kRegression;
  // rows x tasks
  std::vector<float> preds = {0.9f, 10, 0.2f, 99, 0.7f, 4};
  std::vector<float> labels = {1, 12, 0, 0, 0, 4};
  std::vector<float> mask = {1, 1, 1, 0, 1, 1};
  auto m = eval::evaluate_tasks(tasks, preds, labels, mask);
  EXPECT_EQ(m[0].count, 3);
  EXPECT_DOUBLE_EQ(m[0].auc, 1.0);
  EXPECT_EQ(m[1].count, 2);
  EXPECT_DOUBLE_EQ(m[1].mse, (4.0 + 0.0) / 2);  // the masked row (99 vs 0) does not count
  EXPECT_DOUBLE_EQ(m[1].rmse, std::sqrt(2.0));
}

TEST(Metrics, GroupAucWeightsGroupsByRowsAndSkipsOneClassGroups) {
  // Group 1 (3 rows): AUC 1.0. Group 2 (2 rows): AUC 0.0. Group 3: one class only, skipped.
  const std::vector<float> scores = {0.9f, 0.1f, 0.2f, 0.3f, 0.8f, 0.5f, 0.6f};
  const std::vector<float> labels = {1, 0, 0, 1, 0, 1, 1};
  const std::vector<std::uint64_t> groups = {1, 1, 1, 2, 2, 3, 3};
  std::int64_t used = 0;
  EXPECT_DOUBLE_EQ(eval::group_auc(scores, labels, groups, &used), (3 * 1.0 + 2 * 0.0) / 5);
  EXPECT_EQ(used, 2);
  std::vector<TaskConfig> tasks(1);
  auto m = eval::evaluate_tasks(tasks, scores, labels, std::vector<float>(7, 1.0f), groups);
  EXPECT_DOUBLE_EQ(m[0].gauc, 0.6);
  EXPECT_NEAR(m[0].calibration, (3.4 / 7) / (4.0 / 7), 1e-6);
}

TEST(Metrics, ConfiguredMetricsAreComputedPerTaskAndWritten) {
  // The group test's rows: group 1 ranks its positive first, group 2 second, group 3 first.
  const std::vector<float> scores = {0.9f, 0.1f, 0.2f, 0.3f, 0.8f, 0.5f, 0.6f};
  const std::vector<float> labels = {1, 0, 0, 1, 0, 1, 1};
  const std::vector<std::uint64_t> groups = {1, 1, 1, 2, 2, 3, 3};
  std::vector<TaskConfig> tasks(1);
  tasks[0].name = "click";
  tasks[0].metrics = {"mrr", "recall@1"};
  auto m = eval::evaluate_tasks(tasks, scores, labels, std::vector<float>(7, 1.0f), groups);
  ASSERT_EQ(m[0].extra.size(), 2u);
  EXPECT_EQ(m[0].extra[0].first, "mrr");
  EXPECT_DOUBLE_EQ(m[0].extra[0].second, (1 + 0.5 + 1) / 3);
  EXPECT_DOUBLE_EQ(m[0].extra[1].second, (1 + 0 + 0.5) / 3);  // group 3: one of its two positives in the top 1
  const nlohmann::json j = eval::to_json(m);
  EXPECT_DOUBLE_EQ(j["click"]["mrr"].get<double>(), (1 + 0.5 + 1) / 3);
  EXPECT_TRUE(j["click"].contains("recall@1"));
  EXPECT_NE(eval::format_table(m).find("mrr 0.8333"), std::string::npos);
}

TEST(Metrics, UnknownConfiguredMetricIsAConfigErrorNamingTheKey) {
  Config c;
  c.source = "m.toml";
  c.tasks.resize(2);
  c.tasks[1].metrics = {"ndcg@10", "ncdg@10"};
  try {
    eval::check_task_metrics(c);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("m.toml: key 'tasks[1].metrics': unknown metric 'ncdg@10'"), std::string::npos)
        << e.what();
  }
  c.tasks[1].metrics = {"ndcg@10", "recall@20", "mrr"};
  EXPECT_NO_THROW(eval::check_task_metrics(c));
}

TEST(Compare, DifferencesWithinTheSeedSpreadAreNotASeesaw) {
  // Issue 13.4: differences inside the seed noise were called "seesaw" or "all tasks down".
  using eval::Change;
  // AUC 0.9410 vs 0.9416, spreads 0.0010 and 0.0004: within noise.
  EXPECT_EQ(eval::compare_to_baseline(0.9410, 0.0010, 0.9416, 0.0004, true, 3), Change::kWithinNoise);
  EXPECT_EQ(eval::compare_to_baseline(0.9440, 0.0010, 0.9416, 0.0004, true, 3), Change::kUp);
  EXPECT_EQ(eval::compare_to_baseline(0.9390, 0.0010, 0.9416, 0.0004, true, 3), Change::kDown);
  // RMSE: lower is better.
  EXPECT_EQ(eval::compare_to_baseline(1.10, 0.01, 1.20, 0.02, false, 3), Change::kUp);
  EXPECT_EQ(eval::compare_to_baseline(0.95, 0.0, 0.94, 0.0, true, 1), Change::kUnknown);
  EXPECT_EQ(eval::verdict({Change::kUp, Change::kWithinNoise}), "some up, rest within noise");
  EXPECT_EQ(eval::verdict({Change::kWithinNoise, Change::kDown}), "some down, rest within noise");
  EXPECT_EQ(eval::verdict({Change::kUp, Change::kDown}), "seesaw");
  EXPECT_EQ(eval::verdict({Change::kWithinNoise, Change::kWithinNoise}), "within noise");
  EXPECT_EQ(eval::verdict({Change::kUp, Change::kUp}), "all tasks up");
  EXPECT_EQ(eval::verdict({Change::kUnknown, Change::kUp}), "noise unknown");
}

TEST(Metrics, ReliabilityCurveHasEqualCountBinsInPredictionOrder) {
  // 5 rows, 2 bins: rows 0-1 and 2-4 of the sorted order (b * n / bins).
  const std::vector<float> p{0.9f, 0.1f, 0.5f, 0.2f, 0.7f}, y{1, 0, 1, 1, 0};
  const auto bins = eval::reliability_curve(p, y, 2);
  ASSERT_EQ(bins.size(), 2u);
  EXPECT_EQ(bins[0].rows, 2);  // 0.1 (0), 0.2 (1)
  EXPECT_NEAR(bins[0].mean_prediction, 0.15, 1e-7);
  EXPECT_DOUBLE_EQ(bins[0].positive_rate, 0.5);
  EXPECT_EQ(bins[1].rows, 3);  // 0.5 (1), 0.7 (0), 0.9 (1)
  EXPECT_NEAR(bins[1].mean_prediction, 0.7, 1e-7);
  EXPECT_NEAR(bins[1].positive_rate, 2.0 / 3, 1e-12);
  EXPECT_EQ(eval::reliability_curve(p, y, 10).size(), 5u);  // no more bins than rows
  EXPECT_TRUE(eval::reliability_curve({}, {}, 10).empty());
  EXPECT_TRUE(eval::reliability_curve({0.5f, std::nanf("")}, {1, 0}, 10).empty());
}

TEST(Metrics, TaskMetricsRoundTripThroughJson) {
  TaskConfig click, time;
  click.name = "click";
  click.metrics = {"ndcg@2"};
  time.name = "watch_time";
  time.type = TaskType::kRegression;
  const std::vector<float> preds{0.9f, 3.0f, 0.2f, 1.0f, 0.6f, 2.0f, 0.4f, 5.0f};
  const std::vector<float> labels{1, 2.5f, 0, 1.5f, 1, 2, 0, 4};
  const std::vector<float> mask(8, 1.0f);
  const auto metrics = eval::evaluate_tasks({click, time}, preds, labels, mask);
  ASSERT_EQ(metrics[0].reliability.size(), 4u);
  EXPECT_TRUE(metrics[1].reliability.empty());  // regression: no reliability diagram
  const nlohmann::json j = eval::to_json(metrics);
  EXPECT_EQ(j["click"]["reliability"]["rows"], nlohmann::json({1, 1, 1, 1}));
  const auto back = eval::task_metrics_from_json(j);
  EXPECT_EQ(eval::to_json(back).dump(), j.dump());
  ASSERT_EQ(back[0].extra.size(), 1u);
  EXPECT_EQ(back[0].extra[0].first, "ndcg@2");
  EXPECT_TRUE(std::isnan(back[0].gauc));  // absent: no groups
  // Configured metrics whose names are another type's fixed keys survive the
  // round trip: a binary task's "rmse" (Brier), and "gauc" without groups (null).
  TaskConfig brier = click;
  brier.metrics = {"rmse", "gauc"};
  const nlohmann::json k = eval::to_json(eval::evaluate_tasks({brier, time}, preds, labels, mask));
  ASSERT_TRUE(k["click"].contains("rmse"));
  ASSERT_TRUE(k["click"]["gauc"].is_null());
  EXPECT_EQ(eval::to_json(eval::task_metrics_from_json(k)).dump(), k.dump());
  nlohmann::json bad = j;
  bad["click"]["auc"] = "high";
  try {
    eval::task_metrics_from_json(bad);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "task 'click': key 'auc' is not a number");
  }
  bad = j;
  bad["click"]["reliability"]["rows"] = {1, 1};
  EXPECT_THROW(eval::task_metrics_from_json(bad), std::invalid_argument);
}
