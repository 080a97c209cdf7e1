#include "model/blocks.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>

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

torch::Tensor hashed_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  if (p >= 1) return x * 0;
  const std::uint64_t seed = static_cast<std::uint64_t>(
      torch::randint(std::numeric_limits<std::int64_t>::max(), {1}, torch::kInt64).item<std::int64_t>());
  const std::uint32_t threshold = static_cast<std::uint32_t>(std::llround(p * 65536.0));
  const float keep = static_cast<float>(1.0 / (1.0 - threshold / 65536.0));
  torch::Tensor mask = torch::empty(x.sizes(), x.options().dtype(torch::kFloat32).requires_grad(false));
  float* m = mask.data_ptr<float>();
  const std::int64_t n = mask.numel(), words = (n + 3) / 4;
  at::parallel_for(0, words, 4096, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t w = begin; w < end; ++w) {
      std::uint64_t z = seed + static_cast<std::uint64_t>(w) * 0x9e3779b97f4a7c15ULL;  // splitmix64
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      z ^= z >> 31;
      for (std::int64_t j = 0; j < 4 && 4 * w + j < n; ++j)
        m[4 * w + j] = static_cast<std::uint32_t>((z >> (16 * j)) & 0xffff) >= threshold ? keep : 0.0f;
    }
  });
  return x * mask;
}

}  // namespace mtrank::model
