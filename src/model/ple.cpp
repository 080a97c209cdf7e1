#include "model/ple.h"

namespace mtrank::model {

ExtractionLayerImpl::ExtractionLayerImpl(std::int64_t tasks, std::int64_t specific, std::int64_t shared,
                                         std::int64_t in, const std::vector<std::int64_t>& hidden, bool first,
                                         bool last)
    : tasks_(tasks), specific_(specific), shared_(shared), hidden0_(hidden.front()), first_(first), last_(last) {
  const std::int64_t E = total_experts(), K = specific + shared, h0 = hidden0_;
  if (first_) {
    w0_all_ = register_parameter("w0", linear_init({in, E * h0}, in));
    b0_all_ = register_parameter("b0", linear_init({E * h0}, in));
    gate_w_ = register_parameter("gate_w", linear_init({in, tasks * K}, in));
    gate_b_ = register_parameter("gate_b", linear_init({tasks * K}, in));
  } else {
    if (specific > 0) {
      w0_task_ = register_parameter("w0_task", linear_init({tasks, in, specific * h0}, in));
      b0_task_ = register_parameter("b0_task", linear_init({tasks, 1, specific * h0}, in));
    }
    if (shared > 0) {
      w0_shared_ = register_parameter("w0_shared", linear_init({in, shared * h0}, in));
      b0_shared_ = register_parameter("b0_shared", linear_init({shared * h0}, in));
    }
    gate_w_ = register_parameter("gate_w", linear_init({tasks, in, K}, in));
    gate_b_ = register_parameter("gate_b", linear_init({tasks, 1, K}, in));
  }
  rest_ = register_module("rest", GroupedMLP(E, h0, std::vector<std::int64_t>(hidden.begin() + 1, hidden.end()), true));
  if (!last_) {
    shared_gate_w_ = register_parameter("shared_gate_w", linear_init({in, E}, in));
    shared_gate_b_ = register_parameter("shared_gate_b", linear_init({E}, in));
  }
  // Experts are numbered task 0's, task 1's, ..., then the shared ones.
  std::vector<std::int64_t> sel;
  for (std::int64_t t = 0; t < tasks; ++t) {
    for (std::int64_t i = 0; i < specific; ++i) sel.push_back(t * specific + i);
    for (std::int64_t i = 0; i < shared; ++i) sel.push_back(tasks * specific + i);
  }
  selection_ = register_buffer("selection", torch::tensor(sel, torch::kInt64).view({tasks, K}));
}

ExtractionLayerImpl::Output ExtractionLayerImpl::forward(const torch::Tensor& task_in, const torch::Tensor& shared_in,
                                                         double gate_dropout_p) {
  const std::int64_t T = tasks_, K = specific_ + shared_, E = total_experts();
  const std::int64_t B = shared_in.size(0);
  // First expert layer for all experts -> [E, B, h0].
  torch::Tensor h, first_gate_logits;  // first level: [B, T*K (+ E: the shared gate)] from the experts' product
  if (first_) {
    // The gates read the experts' input: one product for all (linear_relu_and_linear).
    const torch::Tensor gate_w = last_ ? gate_w_ : torch::cat({gate_w_, shared_gate_w_}, 1);
    const torch::Tensor gate_b = last_ ? gate_b_ : torch::cat({gate_b_, shared_gate_b_});
    auto [experts, gate_logits] = linear_relu_and_linear(shared_in, w0_all_, b0_all_, gate_w, gate_b);
    h = experts.view({B, E, hidden0_}).transpose(0, 1);
    first_gate_logits = gate_logits;
  } else {
    std::vector<torch::Tensor> parts;
    if (specific_ > 0)  // [T, B, s*h0] -> [T*s, B, h0]
      parts.push_back(torch::relu(torch::baddbmm(b0_task_, task_in, w0_task_))
                          .view({T, B, specific_, hidden0_})
                          .permute({0, 2, 1, 3})
                          .reshape({T * specific_, B, hidden0_}));
    if (shared_ > 0)
      parts.push_back(
          linear_relu(shared_in, w0_shared_, b0_shared_).view({B, shared_, hidden0_}).transpose(0, 1));
    h = torch::cat(parts, 0);
  }
  h = rest_->forward(h);  // [E, B, h]

  // Task gates: softmax over each task's own + shared experts.
  torch::Tensor logits = first_ ? first_gate_logits.narrow(1, 0, T * K).view({B, T, K})
                                : torch::baddbmm(gate_b_, task_in, gate_w_).transpose(0, 1);  // [B, T, K]
  torch::Tensor gates = gate_dropout(torch::softmax(logits, -1), gate_dropout_p, is_training());
  // Each task's gate mixes its own and the shared experts: [T, B, H].
  Output out{mix_experts(gates, h, selection_), {}, gates};
  if (!last_) {
    const torch::Tensor shared_logits = first_ ? first_gate_logits.narrow(1, T * K, E)
                                               : torch::addmm(shared_gate_b_, shared_in, shared_gate_w_);
    torch::Tensor sg = gate_dropout(torch::softmax(shared_logits, -1), gate_dropout_p, is_training());  // [B, E]
    out.shared = mix_experts(sg.unsqueeze(1), h).squeeze(0);  // [B, H]
  }
  return out;
}

Ple::Ple(const ModelConfig& config, const InputShape& shape)
    : RankingModel(config, shape), dropout_(config.number("dropout")), gate_dropout_(config.number("gate_dropout")) {
  std::int64_t in = input_dim();
  for (std::int64_t l = 0; l < config.integer("levels"); ++l) {
    levels_.push_back(register_module(
        "level" + std::to_string(l), ExtractionLayer(shape.num_tasks, config.integer("specific_experts"), config.integer("shared_experts"),
                                                     in, config.integers("expert_hidden"), l == 0, l + 1 == config.integer("levels"))));
    in = config.integers("expert_hidden").back();
  }
  towers_ = register_module("towers", Towers(shape.num_tasks, in, config.integers("tower_hidden")));
}

ModelOutput Ple::forward_deep(const torch::Tensor& x) {
  torch::Tensor tasks, shared = x[0], gates;
  for (auto& level : levels_) {
    auto out = level->forward(tasks, shared, gate_dropout_);
    tasks = out.tasks;
    shared = out.shared;
    gates = out.gates;
  }
  if (dropout_ > 0) tasks = torch::dropout(tasks, dropout_, is_training());
  // Report the last level's gates over all of its experts (zeros where a gate cannot see).
  const auto& last = levels_.back();
  const std::int64_t B = gates.size(0), T = gates.size(1);
  torch::Tensor full = torch::zeros({B, T, last->total_experts()}, gates.options())
                           .scatter(2, last->selection().unsqueeze(0).expand({B, T, gates.size(2)}), gates);
  return {towers_->forward(tasks), full};
}

std::shared_ptr<RankingModel> make_ple(const ModelConfig& config, const InputShape& shape) {
  return std::make_shared<Ple>(config, shape);
}

}  // namespace mtrank::model
