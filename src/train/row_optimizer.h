#pragma once
// Row-wise optimizers for embedding tables: update only the rows a batch
// touched. A dense optimizer over a large table spends most of a step on rows
// the batch never saw (measured: 65% of the step), and LibTorch's Adam rejects
// sparse gradients, so this is ours.
#include <torch/torch.h>

#include "config/config.h"

namespace mtrank::train {

class RowOptimizer {
 public:
  RowOptimizer(torch::Tensor table, const TrainConfig& config);
  // rows: the touched rows (leaf) with .grad(); ids: their row ids (unique).
  void step(const torch::Tensor& ids, const torch::Tensor& grad);
  // State for checkpoints.
  std::vector<torch::Tensor> state() const { return {first_, second_}; }

 private:
  torch::Tensor table_, first_, second_;
  bool adam_;
  double lr_, weight_decay_, beta1_ = 0.9, beta2_ = 0.999, eps_;
  std::int64_t step_ = 0;
};

}  // namespace mtrank::train
