#include "train/fused_adam.h"

#include <cmath>

#include <ATen/Parallel.h>

#include "model/blocks.h"

namespace mtrank::train {

torch::Tensor FusedAdam::step(LossClosure closure) {
  if (model::ReferenceKernels::active()) return torch::optim::Adam::step(std::move(closure));
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    TORCH_CHECK(!options.amsgrad(), "FusedAdam: amsgrad is not supported");
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "FusedAdam: sparse gradients are not supported (sparse tables use RowOptimizer)");
      TORCH_CHECK(p.scalar_type() == torch::kFloat && p.is_contiguous() && p.grad().is_contiguous(),
                  "FusedAdam: contiguous float parameters and gradients");
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto found = state_.find(key);
      if (found == state_.end()) {  // as Adam creates it
        auto state = std::make_unique<torch::optim::AdamParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = state_.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<torch::optim::AdamParamState&>(*found->second);
      state.step(state.step() + 1);
      const double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
      const double bias_correction1 = 1 - std::pow(beta1, state.step());
      const double bias_correction2 = 1 - std::pow(beta2, state.step());
      // The scalars as ATen casts them for float tensors.
      const float b1 = static_cast<float>(beta1), one_minus_b1 = static_cast<float>(1 - beta1);
      const float b2 = static_cast<float>(beta2), one_minus_b2 = static_cast<float>(1 - beta2);
      const float decay = static_cast<float>(options.weight_decay()), eps = static_cast<float>(options.eps());
      const float root_bc2 = static_cast<float>(std::sqrt(bias_correction2));
      const float step_size = static_cast<float>(-options.lr() / bias_correction1);
      // State loaded from a checkpoint is checked before it is written through raw pointers.
      TORCH_CHECK(state.exp_avg().numel() == p.numel() && state.exp_avg_sq().numel() == p.numel() &&
                      state.exp_avg().is_contiguous() && state.exp_avg_sq().is_contiguous() &&
                      state.exp_avg().scalar_type() == torch::kFloat && state.exp_avg_sq().scalar_type() == torch::kFloat,
                  "FusedAdam: optimizer state of another shape than its parameter ", p.sizes());
      float* w = p.data_ptr<float>();
      const float* g = p.grad().data_ptr<float>();
      float* m = state.exp_avg().data_ptr<float>();
      float* v = state.exp_avg_sq().data_ptr<float>();
      at::parallel_for(0, p.numel(), 1 << 15, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
          const float grad = decay != 0 ? g[i] + decay * w[i] : g[i];
          m[i] = m[i] * b1 + one_minus_b1 * grad;
          v[i] = v[i] * b2 + one_minus_b2 * grad * grad;
          w[i] += (step_size * m[i]) / (std::sqrt(v[i]) / root_bc2 + eps);  // addcdiv's order
        }
      });
    }
  }
  return loss;
}

}  // namespace mtrank::train
