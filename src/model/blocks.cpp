#include "model/blocks.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace mtrank::model {

void truncated_normal_(torch::Tensor t, double std) {
  torch::NoGradGuard no_grad;
  const double lo = (1.0 + std::erf(-2.0 / std::sqrt(2.0))) / 2.0, hi = (1.0 + std::erf(2.0 / std::sqrt(2.0))) / 2.0;
  t.uniform_(2 * lo - 1, 2 * hi - 1).erfinv_().mul_(std * std::sqrt(2.0));
}

torch::Tensor linear_init(std::vector<std::int64_t> shape, std::int64_t fan_in) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return torch::empty(shape).uniform_(-bound, bound);
}

GroupedMLPImpl::GroupedMLPImpl(std::int64_t groups, std::int64_t in, const std::vector<std::int64_t>& sizes,
                               bool relu_last)
    : relu_last_(relu_last), out_(in) {
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    weights_.push_back(register_parameter("w" + std::to_string(i), linear_init({groups, in, sizes[i]}, in)));
    biases_.push_back(register_parameter("b" + std::to_string(i), linear_init({groups, 1, sizes[i]}, in)));
    in = sizes[i];
  }
  out_ = in;
}

torch::Tensor GroupedMLPImpl::forward(torch::Tensor x) {
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    x = torch::baddbmm(biases_[i], x, weights_[i]);
    if (relu_last_ || i + 1 < weights_.size()) x = torch::relu(x);
  }
  return x;
}

ExpertBankImpl::ExpertBankImpl(std::int64_t experts, std::int64_t in, const std::vector<std::int64_t>& hidden)
    : experts_(experts), hidden0_(hidden.front()) {
  w0_ = register_parameter("w0", linear_init({in, experts_ * hidden0_}, in));
  b0_ = register_parameter("b0", linear_init({experts_ * hidden0_}, in));
  rest_ = register_module("rest", GroupedMLP(experts_, hidden0_, std::vector<std::int64_t>(hidden.begin() + 1, hidden.end()), true));
}

torch::Tensor ExpertBankImpl::forward(const torch::Tensor& x) {
  const std::int64_t B = x.size(0);
  torch::Tensor h = torch::relu(torch::addmm(b0_, x, w0_));        // [B, E*h0]
  h = h.view({B, experts_, hidden0_}).transpose(0, 1);              // [E, B, h0]
  return rest_->forward(h);                                         // [E, B, h]
}

TowersImpl::TowersImpl(std::int64_t tasks, std::int64_t in, const std::vector<std::int64_t>& hidden) {
  std::vector<std::int64_t> sizes = hidden;
  sizes.push_back(1);
  mlp_ = register_module("mlp", GroupedMLP(tasks, in, sizes, /*relu_last=*/false));
}

void TowersImpl::set_output_bias(const std::vector<double>& logits) {
  torch::NoGradGuard no_grad;
  torch::Tensor& b = mlp_->last_bias();  // [T, 1, 1]
  if (static_cast<std::int64_t>(logits.size()) != b.size(0))
    throw std::logic_error("Towers::set_output_bias: " + std::to_string(logits.size()) + " values for " +
                           std::to_string(b.size(0)) + " towers");
  for (std::size_t t = 0; t < logits.size(); ++t) b[static_cast<std::int64_t>(t)].fill_(logits[t]);
}

torch::Tensor TowersImpl::forward(const torch::Tensor& x) { return mlp_->forward(x).squeeze(-1).transpose(0, 1); }

torch::Tensor gate_dropout(const torch::Tensor& gates, double p, bool training) {
  if (!training || p <= 0) return gates;
  torch::Tensor keep = torch::bernoulli(torch::full_like(gates, 1.0 - p));
  torch::Tensor kept = gates * keep;
  // If every expert of a gate was dropped, keep that gate as it was.
  torch::Tensor total = kept.sum(-1, /*keepdim=*/true);
  return torch::where(total > 0, kept / total.clamp_min(1e-12), gates);
}

}  // namespace mtrank::model
