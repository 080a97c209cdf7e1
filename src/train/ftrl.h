#pragma once
// FTRL-Proximal (McMahan et al., KDD 2013), the optimizer of Wide & Deep's wide
// part. LibTorch has none. Per coordinate, with gradient g:
//   sigma = (sqrt(n + g^2) - sqrt(n)) / alpha
//   z    += g - sigma * w
//   n    += g^2
//   w     = 0                                                  if |z| <= l1
//         = -(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)   otherwise
// L1 sets weights to exactly zero: the sparse, memorizing linear model.
#include <torch/torch.h>

namespace mtrank::train {

struct FtrlHyper {
  double alpha = 0.05, beta = 1.0, l1 = 0.0, l2 = 0.0;
};

// One FTRL step on matching tensors, in place (w, z, n). Used by the
// optimizer below and, on gathered rows, by the row-wise table optimizer.
void ftrl_update(torch::Tensor& w, const torch::Tensor& g, torch::Tensor& z, torch::Tensor& n, const FtrlHyper& h);

// FTRL derives weights from z and n, so its state must start consistent with
// the weights it is given (warm start), or the first step would discard them:
// with n = 0, z = -w (beta/alpha + l2) - sign(w) l1 gives back w exactly.
torch::Tensor ftrl_initial_z(const torch::Tensor& w, const FtrlHyper& h);

struct FtrlOptions : public torch::optim::OptimizerCloneableOptions<FtrlOptions> {
  FtrlOptions(double alpha = 0.05) : alpha_(alpha) {}
  TORCH_ARG(double, alpha);
  TORCH_ARG(double, beta) = 1.0;
  TORCH_ARG(double, l1) = 0.0;
  TORCH_ARG(double, l2) = 0.0;
  double get_lr() const override { return alpha_; }
  void set_lr(const double lr) override { alpha_ = lr; }
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

// A torch::optim::Optimizer, so it sits beside Adam and Adagrad as a parameter group's optimizer.
class Ftrl : public torch::optim::Optimizer {
 public:
  Ftrl(std::vector<torch::Tensor> params, FtrlOptions options = {});
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  std::vector<torch::Tensor> z_, n_;  // per parameter, in param order
};

}  // namespace mtrank::train
