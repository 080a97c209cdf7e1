#pragma once
// What a task type optimizes and reports: its loss, with the masked sum and
// the row count kept apart (so per-task means can be formed after the sums of
// several processes are added), the transform from the model's output to the
// task value, and its default metrics. One objective per task type,
// registered by the type's name; adding a task type is one file plus one
// line in objective.cpp.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"

namespace mtrank::model {

// A task's loss over a batch: the sum over the rows in its sample space and
// their count. mean() is the task's masked mean (PLE's delta-masked loss).
struct MaskedLoss {
  torch::Tensor sum;    // scalar
  torch::Tensor count;  // scalar: rows in the sample space (mask sum)
  // count is the sum of the rows' weights (data.weight_column; 1 each without
  // it), which may be below 1: clamped only so an empty task gives 0, not NaN.
  torch::Tensor mean() const { return sum / count.clamp_min(1e-12); }
};

class Objective {
 public:
  virtual ~Objective() = default;
  // Per-row loss of logits [B] against labels [B] (no mask).
  virtual torch::Tensor row_loss(const torch::Tensor& logits, const torch::Tensor& labels) const = 0;
  // Task values from logits: probabilities (binary), the output itself (regression).
  virtual torch::Tensor value(const torch::Tensor& logits) const = 0;
  // The metrics every evaluation reports for the task (eval/metric_registry.h names).
  virtual std::vector<std::string> default_metrics() const = 0;
  // The constant logit that predicts `label_mean` (the task's masked training
  // mean): each task's output starts there, so no head has to build its
  // offset out of the shared layers (RankingModel::set_output_bias).
  virtual double initial_logit(double label_mean) const = 0;

  MaskedLoss loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& mask) const {
    return {(row_loss(logits, labels) * mask).sum(), mask.sum()};
  }
};

// Objectives by task type name ("binary", "regression").
const std::map<std::string, std::unique_ptr<Objective>>& objective_registry();
const Objective& objective_for(TaskType type);

}  // namespace mtrank::model
