#pragma once
// Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): shared experts, one
// softmax gate and one tower per task. Experts run as one GEMM (first layer,
// weights of all experts concatenated) plus batched matmuls for deeper layers,
// towers as batched matmuls over tasks: a handful of large ops instead of
// many small modules, which is where small models lose their time.
#include "model/model.h"

namespace mtrank::model {

// Stacked per-group linear layers applied with baddbmm: input [G, B, in] -> [G, B, out].
class GroupedMLPImpl : public torch::nn::Module {
 public:
  GroupedMLPImpl(std::int64_t groups, std::int64_t in, const std::vector<std::int64_t>& sizes, bool relu_last);
  torch::Tensor forward(torch::Tensor x);

 private:
  std::vector<torch::Tensor> weights_, biases_;
  bool relu_last_;
};
TORCH_MODULE(GroupedMLP);

class MMoE : public RankingModel {
 public:
  MMoE(const ModelConfig& config, const InputShape& shape);
  ModelOutput forward(const Batch& batch, TouchedRows* touched) override;
  FeatureInput& input() override { return input_; }

 private:
  FeatureInput input_{nullptr};
  torch::Tensor expert_w0_, expert_b0_, gate_w_, gate_b_;
  GroupedMLP expert_rest_{nullptr}, towers_{nullptr};
  std::int64_t experts_, tasks_, hidden0_;
  double dropout_;
};

std::shared_ptr<RankingModel> make_mmoe(const ModelConfig& config, const InputShape& shape);

}  // namespace mtrank::model
