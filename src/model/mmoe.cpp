#include "model/mmoe.h"

#include <cmath>

namespace mtrank::model {

namespace {
// nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
torch::Tensor linear_init(std::vector<std::int64_t> shape, std::int64_t fan_in) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return torch::empty(shape).uniform_(-bound, bound);
}
}  // namespace

GroupedMLPImpl::GroupedMLPImpl(std::int64_t groups, std::int64_t in, const std::vector<std::int64_t>& sizes,
                               bool relu_last)
    : relu_last_(relu_last) {
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    weights_.push_back(register_parameter("w" + std::to_string(i), linear_init({groups, in, sizes[i]}, in)));
    biases_.push_back(register_parameter("b" + std::to_string(i), linear_init({groups, 1, sizes[i]}, in)));
    in = sizes[i];
  }
}

torch::Tensor GroupedMLPImpl::forward(torch::Tensor x) {
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    x = torch::baddbmm(biases_[i], x, weights_[i]);
    if (relu_last_ || i + 1 < weights_.size()) x = torch::relu(x);
  }
  return x;
}

MMoE::MMoE(const ModelConfig& config, const InputShape& shape)
    : experts_(config.num_experts), tasks_(shape.num_tasks), hidden0_(config.expert_hidden.front()),
      dropout_(config.dropout) {
  input_ = register_module("input", FeatureInput(shape, config.embedding_dim));
  const std::int64_t in = input_->output_dim();
  expert_w0_ = register_parameter("expert_w0", linear_init({in, experts_ * hidden0_}, in));
  expert_b0_ = register_parameter("expert_b0", linear_init({experts_ * hidden0_}, in));
  std::vector<std::int64_t> rest(config.expert_hidden.begin() + 1, config.expert_hidden.end());
  expert_rest_ = register_module("experts", GroupedMLP(experts_, hidden0_, rest, /*relu_last=*/true));
  gate_w_ = register_parameter("gate_w", linear_init({in, tasks_ * experts_}, in));
  gate_b_ = register_parameter("gate_b", linear_init({tasks_ * experts_}, in));
  std::vector<std::int64_t> tower = config.tower_hidden;
  tower.push_back(1);
  towers_ = register_module("towers", GroupedMLP(tasks_, config.expert_hidden.back(), tower, /*relu_last=*/false));
}

ModelOutput MMoE::forward(const Batch& batch, TouchedRows* touched) {
  const std::int64_t B = batch.size;
  torch::Tensor x = input_->forward(batch, touched);                                 // [B, in]
  torch::Tensor h = torch::relu(torch::addmm(expert_b0_, x, expert_w0_));            // [B, E*h0]
  h = h.view({B, experts_, hidden0_}).transpose(0, 1);                               // [E, B, h0]
  h = expert_rest_->forward(h);                                                      // [E, B, h]
  if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
  torch::Tensor gates = torch::softmax(torch::addmm(gate_b_, x, gate_w_).view({B, tasks_, experts_}), -1);
  torch::Tensor mixed = torch::bmm(gates, h.transpose(0, 1));                        // [B, T, h]
  torch::Tensor logits = towers_->forward(mixed.transpose(0, 1));                    // [T, B, 1]
  return {logits.squeeze(-1).transpose(0, 1), gates};
}

std::shared_ptr<RankingModel> make_mmoe(const ModelConfig& config, const InputShape& shape) {
  return std::make_shared<MMoE>(config, shape);
}

}  // namespace mtrank::model
