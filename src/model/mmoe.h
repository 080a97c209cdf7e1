#pragma once
// Mixture-of-experts models (Ma et al., KDD 2018). Experts are shared by all
// tasks; MMoE gives each task its own softmax gate, OMoE one gate for all.
// An optional shared bottom layer under the experts gives the YouTube ranker
// (Zhao et al., RecSys 2019), and gate dropout with renormalization fights
// gate polarization.
#include "model/blocks.h"
#include "model/model.h"

namespace mtrank::model {

class MixtureOfExperts : public RankingModel {
 public:
  MixtureOfExperts(const ModelConfig& config, const InputShape& shape, bool one_gate);

 protected:
  ModelOutput forward_deep(const torch::Tensor& x) override;
  void set_output_bias(const std::vector<double>& task_logits) override { towers_->set_output_bias(task_logits); }

 private:
  GroupedMLP bottom_{nullptr};
  ExpertBank experts_{nullptr};
  Towers towers_{nullptr};
  torch::Tensor gate_w_, gate_b_;
  std::int64_t num_experts_, num_gates_;
  double dropout_, gate_dropout_;
};

std::shared_ptr<RankingModel> make_mmoe(const ModelConfig& config, const InputShape& shape);

}  // namespace mtrank::model
