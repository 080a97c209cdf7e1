#pragma once
// Mini-batch training of a RankingModel with a masked, weighted multi-task
// loss; evaluation each epoch; early stopping on the validation loss.
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "data/dataset.h"
#include "eval/metrics.h"
#include "model/model.h"

namespace mtrank::train {

// Per-task loss over the rows in the task's sample space (mask), averaged over
// those rows (PLE's delta-masked loss), weighted by task weight, summed.
// Returns the total; per_task (if given) gets each task's unweighted loss.
torch::Tensor multitask_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& mask,
                             const std::vector<TaskConfig>& tasks, std::vector<double>* per_task = nullptr);

struct EpochLog {
  int epoch = 0;
  double train_loss = 0, val_loss = 0, seconds = 0, rows_per_s = 0;
  std::vector<eval::TaskMetrics> val;
};

struct TrainReport {
  std::vector<EpochLog> epochs;
  int best_epoch = 0;
  bool early_stopped = false;
  double seconds = 0, train_rows_per_s = 0;
};

TrainReport train_model(model::RankingModel& net, const Config& config, const data::FeaturizedData& train,
                        const data::FeaturizedData* val, bool show_progress);

struct Predictions {
  std::int64_t rows = 0;
  int tasks = 0;
  std::vector<float> values;                // [rows x tasks]: probabilities (binary) or values (regression)
  std::vector<std::vector<double>> expert_utilization;  // [tasks][experts] mean gate weight, empty if no gates
};

Predictions predict(model::RankingModel& net, const Config& config, const data::FeaturizedData& data);

std::vector<eval::TaskMetrics> evaluate(model::RankingModel& net, const Config& config,
                                        const data::FeaturizedData& data, Predictions* predictions = nullptr);

}  // namespace mtrank::train
