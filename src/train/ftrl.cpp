#include "train/ftrl.h"

namespace mtrank::train {

void ftrl_update(torch::Tensor& w, const torch::Tensor& g, torch::Tensor& z, torch::Tensor& n, const FtrlHyper& h) {
  torch::NoGradGuard no_grad;
  torch::Tensor n_new = n + g * g;
  torch::Tensor sigma = (n_new.sqrt() - n.sqrt()) / h.alpha;
  z.add_(g - sigma * w);
  n.copy_(n_new);
  torch::Tensor denom = (h.beta + n.sqrt()) / h.alpha + h.l2;
  torch::Tensor shrunk = -(z - z.sign() * h.l1) / denom;
  w.copy_(torch::where(z.abs() <= h.l1, torch::zeros_like(w), shrunk));
}

torch::Tensor ftrl_initial_z(const torch::Tensor& w, const FtrlHyper& h) {
  torch::NoGradGuard no_grad;
  return -w * (h.beta / h.alpha + h.l2) - w.sign() * h.l1;
}

void FtrlOptions::serialize(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  archive.read("alpha", v);
  alpha_ = v.toDouble();
  archive.read("beta", v);
  beta_ = v.toDouble();
  archive.read("l1", v);
  l1_ = v.toDouble();
  archive.read("l2", v);
  l2_ = v.toDouble();
}

void FtrlOptions::serialize(torch::serialize::OutputArchive& archive) const {
  archive.write("alpha", c10::IValue(alpha_));
  archive.write("beta", c10::IValue(beta_));
  archive.write("l1", c10::IValue(l1_));
  archive.write("l2", c10::IValue(l2_));
}

Ftrl::Ftrl(std::vector<torch::Tensor> params, FtrlOptions options)
    : torch::optim::Optimizer({torch::optim::OptimizerParamGroup(params)}, std::make_unique<FtrlOptions>(options)) {
  const FtrlHyper h{options.alpha(), options.beta(), options.l1(), options.l2()};
  for (const auto& p : params) {
    z_.push_back(ftrl_initial_z(p.detach(), h));
    n_.push_back(torch::zeros_like(p));
  }
}

torch::Tensor Ftrl::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  const auto& o = static_cast<const FtrlOptions&>(param_groups_.at(0).options());
  const FtrlHyper h{o.alpha(), o.beta(), o.l1(), o.l2()};
  auto& params = param_groups_.at(0).params();
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!params[i].grad().defined()) continue;
    torch::Tensor w = params[i].detach();
    ftrl_update(w, params[i].grad(), z_[i], n_[i], h);
  }
  return loss;
}

void Ftrl::save(torch::serialize::OutputArchive& archive) const {
  for (std::size_t i = 0; i < z_.size(); ++i) {
    archive.write("z" + std::to_string(i), z_[i], /*is_buffer=*/true);
    archive.write("n" + std::to_string(i), n_[i], /*is_buffer=*/true);
  }
}

void Ftrl::load(torch::serialize::InputArchive& archive) {
  for (std::size_t i = 0; i < z_.size(); ++i) {
    archive.read("z" + std::to_string(i), z_[i], /*is_buffer=*/true);
    archive.read("n" + std::to_string(i), n_[i], /*is_buffer=*/true);
  }
}

}  // namespace mtrank::train
