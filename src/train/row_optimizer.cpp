#include "train/row_optimizer.h"

#include <cmath>

namespace mtrank::train {

RowOptimizer::RowOptimizer(torch::Tensor table, const TrainConfig& config)
    : table_(std::move(table)), adam_(config.optimizer == "adam"), lr_(config.learning_rate),
      weight_decay_(config.weight_decay), eps_(adam_ ? 1e-8 : 1e-10) {
  first_ = torch::zeros_like(table_);
  if (adam_) second_ = torch::zeros_like(table_);
}

void RowOptimizer::step(const torch::Tensor& ids, const torch::Tensor& grad_in) {
  torch::NoGradGuard no_grad;
  ++step_;
  torch::Tensor w = table_.index_select(0, ids);
  torch::Tensor g = weight_decay_ > 0 ? grad_in + weight_decay_ * w : grad_in;
  if (adam_) {
    // "Lazy" Adam: moments of untouched rows are not decayed; bias correction uses the global step.
    torch::Tensor m = first_.index_select(0, ids).mul_(beta1_).add_(g, 1 - beta1_);
    torch::Tensor v = second_.index_select(0, ids).mul_(beta2_).addcmul_(g, g, 1 - beta2_);
    first_.index_copy_(0, ids, m);
    second_.index_copy_(0, ids, v);
    const double bc1 = 1 - std::pow(beta1_, static_cast<double>(step_));
    const double bc2 = 1 - std::pow(beta2_, static_cast<double>(step_));
    w.addcdiv_(m, v.div(bc2).sqrt_().add_(eps_), -lr_ / bc1);
  } else {
    // AdaGrad, as torch::optim::Adagrad (initial accumulator 0).
    torch::Tensor acc = first_.index_select(0, ids).addcmul_(g, g);
    first_.index_copy_(0, ids, acc);
    w.addcdiv_(g, acc.sqrt().add_(eps_), -lr_);
  }
  table_.index_copy_(0, ids, w);
}

}  // namespace mtrank::train
