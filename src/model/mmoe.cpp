#include "model/mmoe.h"

namespace mtrank::model {

MixtureOfExperts::MixtureOfExperts(const ModelConfig& config, const InputShape& shape, bool one_gate)
    : RankingModel(config, shape), num_experts_(config.integer("num_experts")), num_gates_(one_gate ? 1 : shape.num_tasks),
      dropout_(config.number("dropout")), gate_dropout_(config.number("gate_dropout")) {
  std::int64_t in = input_dim();
  if (!config.integers("bottom_hidden").empty()) {
    bottom_ = register_module("bottom", GroupedMLP(1, in, config.integers("bottom_hidden"), true));
    in = bottom_->output_dim();
  }
  experts_ = register_module("experts", ExpertBank(num_experts_, in, config.integers("expert_hidden")));
  gate_w_ = register_parameter("gate_w", linear_init({in, num_gates_ * num_experts_}, in));
  gate_b_ = register_parameter("gate_b", linear_init({num_gates_ * num_experts_}, in));
  towers_ = register_module("towers", Towers(shape.num_tasks, config.integers("expert_hidden").back(), config.integers("tower_hidden")));
}

ModelOutput MixtureOfExperts::forward_deep(const torch::Tensor& input) {
  torch::Tensor x = bottom_ ? bottom_->forward(input)[0] : input[0];  // [B, in]
  const std::int64_t B = x.size(0), T = shape_.num_tasks;
  auto [h, gate_logits] = experts_->forward_with_gates(x, gate_w_, gate_b_);  // [E, B, h], [B, gates * E]
  if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
  torch::Tensor gates = torch::softmax(gate_logits.view({B, num_gates_, num_experts_}), -1);
  gates = gate_dropout(gates, gate_dropout_, is_training());
  if (num_gates_ == 1) gates = gates.expand({B, T, num_experts_});
  return {towers_->forward(mix_experts(gates, h)), gates};  // towers over [T, B, h]
}

std::shared_ptr<RankingModel> make_mmoe(const ModelConfig& config, const InputShape& shape) {
  return std::make_shared<MixtureOfExperts>(config, shape, config.type == "omoe");
}

}  // namespace mtrank::model
