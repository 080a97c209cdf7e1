#include "train/row_optimizer.h"

#include <cmath>

namespace mtrank::train {

RowOptimizer::RowOptimizer(torch::Tensor table, const std::string& kind, double learning_rate, double weight_decay,
                           FtrlHyper ftrl)
    : kind_(kind == "adam" ? Kind::kAdam : kind == "adagrad" ? Kind::kAdagrad : Kind::kFtrl), table_(std::move(table)),
      lr_(learning_rate), weight_decay_(weight_decay), eps_(kind_ == Kind::kAdam ? 1e-8 : 1e-10), ftrl_(ftrl) {
  first_ = torch::zeros_like(table_);
  if (kind_ != Kind::kAdagrad) second_ = torch::zeros_like(table_);
}

void RowOptimizer::step(const torch::Tensor& ids, const torch::Tensor& grad_in) {
  torch::NoGradGuard no_grad;
  ++step_;
  torch::Tensor w = table_.index_select(0, ids);
  if (kind_ == Kind::kFtrl) {
    // FTRL's own L2 (ftrl_l2) is the regularizer here; z and n live in first_ and second_.
    torch::Tensor z = first_.index_select(0, ids), n = second_.index_select(0, ids);
    ftrl_update(w, grad_in, z, n, ftrl_);
    first_.index_copy_(0, ids, z);
    second_.index_copy_(0, ids, n);
    table_.index_copy_(0, ids, w);
    return;
  }
  torch::Tensor g = weight_decay_ > 0 ? grad_in + weight_decay_ * w : grad_in;
  if (kind_ == Kind::kAdam) {
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

void RowOptimizer::save(torch::serialize::OutputArchive& archive, const std::string& prefix) const {
  archive.write(prefix + ".step", torch::tensor(step_), true);
  archive.write(prefix + ".first", first_, true);
  if (second_.defined()) archive.write(prefix + ".second", second_, true);
}

void RowOptimizer::load(torch::serialize::InputArchive& archive, const std::string& prefix) {
  torch::Tensor step;
  archive.read(prefix + ".step", step, true);
  step_ = step.item<std::int64_t>();
  archive.read(prefix + ".first", first_, true);
  if (second_.defined()) archive.read(prefix + ".second", second_, true);
}

}  // namespace mtrank::train
