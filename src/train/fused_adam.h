#pragma once
// LibTorch's Adam with its whole update in one pass per parameter (issue 15).
// torch::optim::Adam spends about ten ATen ops per parameter per step (with
// type conversions of its scalar arguments): on a small model such as the
// census MMoE that is a sizeable share of a 2 ms step. The state is Adam's
// own (AdamParamState under the same keys), so checkpoints are unchanged and
// either class resumes the other's. The arithmetic is the same as Adam's, in
// float; roundings may differ in the last bit (ATen fuses some multiply-adds).
// Under model::ReferenceKernels it runs torch::optim::Adam's step.
#include <torch/torch.h>

namespace mtrank::train {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace mtrank::train
