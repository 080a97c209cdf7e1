#pragma once
// Shared-Bottom (one shared network, a tower per task), its single-task
// counterpart (every task its own embeddings, bottom and tower: the baseline
// of seesaw tables), and Wide & Deep (a shared-bottom deep part plus the wide
// part of RankingModel).
#include "model/blocks.h"
#include "model/model.h"

namespace mtrank::model {

class SharedBottom : public RankingModel {
 public:
  SharedBottom(const ModelConfig& config, const InputShape& shape);

 protected:
  ModelOutput forward_deep(const torch::Tensor& x) override;
  void set_output_bias(const std::vector<double>& task_logits) override { towers_->set_output_bias(task_logits); }

 private:
  GroupedMLP bottom_{nullptr};
  Towers towers_{nullptr};
  double dropout_;
};

// T independent networks trained side by side: separate embedding copies,
// bottoms and towers, so no parameter is shared between tasks.
class SingleTask : public RankingModel {
 public:
  SingleTask(const ModelConfig& config, const InputShape& shape);

 protected:
  ModelOutput forward_deep(const torch::Tensor& x) override;
  void set_output_bias(const std::vector<double>& task_logits) override { towers_->set_output_bias(task_logits); }

 private:
  GroupedMLP bottoms_{nullptr};
  Towers towers_{nullptr};
  double dropout_;
};

std::shared_ptr<RankingModel> make_shared_bottom(const ModelConfig& config, const InputShape& shape);
std::shared_ptr<RankingModel> make_single_task(const ModelConfig& config, const InputShape& shape);
// A shared-bottom deep part with the wide part always on.
std::shared_ptr<RankingModel> make_wide_deep(const ModelConfig& config, const InputShape& shape);

}  // namespace mtrank::model
