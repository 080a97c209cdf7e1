#pragma once
// A gradient-boosted trees baseline (xgboost, through its C API), one booster
// per task, on the same featurized rows the deep models see. It is the model
// every ranker is compared with, so `compare --gbdt` puts it in the table.
// No torch here.
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace mtrank::data {
class FeaturizedData;
class Preprocessor;
}  // namespace mtrank::data

namespace mtrank::eval {

struct GbdtOptions {
  // Tuned on the validation split: every depth is boosted until the validation
  // loss has not improved for `early_stopping_rounds`, and the (depth, rounds)
  // with the lowest validation loss is kept.
  std::vector<int> max_depths{4, 6, 8};
  double eta = 0.1;
  int max_rounds = 2000;
  int early_stopping_rounds = 50;
  double subsample = 0.8, colsample_bytree = 0.8;  // row and column sampling: what the seed changes
  double min_child_weight = 1;
  int max_cat_to_onehot = 4;  // categories above this split by partition (xgboost's categorical splits)
  int threads = 0;            // 0 = all cores
  std::uint64_t seed = 0;
};

struct GbdtTaskFit {
  std::string task;
  int max_depth = 0;
  int rounds = 0;          // boosting rounds kept (the best validation iteration + 1)
  double val_loss = 0;     // validation logloss (binary) or RMSE (regression) at those rounds
  std::int64_t train_rows = 0;  // rows in the task's sample space with a label
};

struct GbdtResult {
  std::vector<float> predictions;  // [rows of `predict_on` x tasks]: probabilities for binary tasks
  std::vector<GbdtTaskFit> fits;
  int features = 0;             // columns given to xgboost
  int categorical_features = 0;  // of them, categorical (feature_type "c")
  double seconds = 0;            // the whole fit, tuning included
};

// Trains one booster per task on `train` (only rows in the task's sample
// space with a label), tunes it on `val`, and predicts `predict_on`.
// Categorical and cross fields are given as categories (their per-field id:
// 0 is out-of-vocabulary), numeric fields as numbers; multi-hot fields are
// left out (xgboost has no bag type). Throws std::runtime_error with
// xgboost's message on failure.
GbdtResult fit_gbdt(const data::Preprocessor& pre, const std::vector<TaskConfig>& tasks,
                    const data::FeaturizedData& train, const data::FeaturizedData& val,
                    const data::FeaturizedData& predict_on, const GbdtOptions& options);

// The xgboost version linked, e.g. "1.7.4".
std::string xgboost_version();

}  // namespace mtrank::eval
