#pragma once
// YouTube's shallow tower for selection bias (Zhao et al. 2019, reference.md
// sections 1 and 5) as an additive head: an MLP over the bias features'
// embeddings (position, device) to one logit per biased task, added to those
// tasks' logits. The main model does not see the bias features
// (RankingModel), training drops the position out in a share of rows, and at
// serving the bias features are missing, so the tower adds one constant per
// task to every candidate: the ranking is the main model's.
#include <torch/torch.h>

#include "config/config.h"
#include "model/blocks.h"
#include "model/model.h"

namespace mtrank::model {

class BiasTowerHead : public AdditiveHead {
 public:
  BiasTowerHead(const BiasTowerConfig& config, const InputShape& shape, std::int64_t embedding_dim);
  torch::Tensor forward(const HeadInput& input) override;  // [B, T], zero outside the biased tasks

 private:
  InputShape shape_;
  std::vector<const InputField*> fields_;  // the bias fields, pointing into shape_
  std::int64_t embedding_dim_;
  torch::Tensor task_columns_;  // [k] int64: the biased tasks
  GroupedMLP mlp_{nullptr};     // bias features -> hidden -> k logits
};

}  // namespace mtrank::model
