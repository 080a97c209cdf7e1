#include <gtest/gtest.h>

#include <cmath>

#include "eval/seesaw.h"

using namespace mtrank;
using nlohmann::json;

namespace {

json run(double click_auc, double time_rmse, double rows_per_s) {
  return json{{"tasks", {{"click", {{"type", "binary"}, {"auc", click_auc}}},
                         {"watch_time", {{"type", "regression"}, {"rmse", time_rmse}}}}},
              {"train_rows_per_s", rows_per_s}};
}

}  // namespace

TEST(Seesaw, MeansSpreadsGainsAndVerdictsAgainstTheBaseline) {
  const std::vector<eval::ModelRuns> models{
      {"single_task", {run(0.70, 2.0, 100), run(0.72, 2.2, 300)}},
      // click: mean 0.76 against 0.71; the difference 0.05 exceeds both spreads (0.02): up.
      // watch_time: mean 2.3 vs 2.1, spreads 0.2 and 0.2: 0.2 is not above 0.2: within noise.
      {"mmoe", {run(0.75, 2.2, 50), run(0.77, 2.4, 150)}},
      // click down by 0.06 (> 0.02), watch_time up (1.5 vs 2.1, lower is better): a seesaw.
      {"ple", {run(0.65, 1.5, 10), run(0.65, 1.5, 10)}}};
  const eval::SeesawTable t = eval::seesaw_table(models, "single_task");
  ASSERT_EQ(t.tasks, (std::vector<std::string>{"click", "watch_time"}));
  ASSERT_EQ(t.metrics, (std::vector<std::string>{"auc", "rmse"}));
  EXPECT_EQ(t.baseline, 0);
  EXPECT_EQ(t.seeds, 2u);
  EXPECT_EQ(t.rows[0].verdict, "baseline");
  EXPECT_DOUBLE_EQ(t.rows[0].train_rows_per_s, 200);
  EXPECT_NEAR(t.rows[1].cells[0].mean, 0.76, 1e-12);
  EXPECT_NEAR(t.rows[1].cells[0].spread, 0.02, 1e-12);
  EXPECT_NEAR(t.rows[1].cells[0].gain_percent, (0.76 - 0.71) / 0.71 * 100, 1e-9);
  EXPECT_EQ(t.rows[1].cells[0].change, eval::Change::kUp);
  EXPECT_EQ(t.rows[1].cells[1].change, eval::Change::kWithinNoise);
  EXPECT_NEAR(t.rows[1].cells[1].gain_percent, (2.1 - 2.3) / 2.1 * 100, 1e-9);  // positive = better: here worse
  EXPECT_EQ(t.rows[1].verdict, "some up, rest within noise");
  EXPECT_EQ(t.rows[2].cells[0].change, eval::Change::kDown);
  EXPECT_EQ(t.rows[2].cells[1].change, eval::Change::kUp);
  EXPECT_EQ(t.rows[2].verdict, "seesaw");

  const json j = eval::to_json(t);
  EXPECT_EQ(j["verdicts"]["ple"], "seesaw");
  EXPECT_EQ(j["models"]["mmoe"]["click"]["change"], "up");
  EXPECT_NEAR(j["models"]["mmoe"]["click"]["auc"].get<double>(), 0.76, 1e-12);
  EXPECT_FALSE(j["models"]["single_task"]["click"].contains("change"));
  EXPECT_EQ(j["noise_rule"], eval::kNoiseRule);
}

TEST(Seesaw, WithoutTheBaselineOrWithAMissingMetric) {
  json no_auc = run(0.7, 2.0, 1);
  no_auc["tasks"]["click"]["auc"] = nullptr;  // undefined (one class in the split): NaN, not an error
  const eval::SeesawTable t = eval::seesaw_table({{"mmoe", {no_auc}}}, "single_task");
  EXPECT_EQ(t.baseline, -1);
  EXPECT_TRUE(std::isnan(t.rows[0].cells[0].mean));
  EXPECT_EQ(t.rows[0].verdict, "");
  EXPECT_FALSE(eval::to_json(t).contains("verdicts"));
  EXPECT_THROW(eval::seesaw_table({}, "single_task"), std::invalid_argument);
  EXPECT_THROW(eval::seesaw_table({{"mmoe", {}}}, "single_task"), std::invalid_argument);
}
