#pragma once
// Building blocks shared by the model families. Each computes a whole group
// of networks (experts, towers) with a few large matmuls instead of a loop of
// small modules: on small models per-op overhead dominates, on large ones the
// GEMMs get bigger and closer to BLAS peak.
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace mtrank::model {

// nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch::Tensor linear_init(std::vector<std::int64_t> shape, std::int64_t fan_in);

// LRURec's initialization (of every weight but LayerNorm's and the LRU's
// lambda): a normal of standard deviation `std` truncated to +-2 std, drawn
// by inverting the CDF on the uniform range the truncation leaves. In place.
void truncated_normal_(torch::Tensor t, double std = 0.02);

// Inverted dropout (zero with probability p, else scale by 1 / (1 - p)) whose
// mask comes from a counter-based hash (splitmix64 of a seed drawn from
// LibTorch's generator, plus the element's index) instead of LibTorch's
// bernoulli: the same mask for any thread count, reproducible under
// torch::manual_seed, and about 20x faster here (LibTorch's dropout: 110 ms
// for 6.5M elements on one thread; bench/sequential_step.cpp). p is rounded
// to a multiple of 2^-16. Identity when !training or p == 0.
torch::Tensor hashed_dropout(const torch::Tensor& x, double p, bool training);

// G independent MLPs applied with baddbmm: input [G, B, in] -> [G, B, out].
// ReLU after every layer, or after every layer but the last.
class GroupedMLPImpl : public torch::nn::Module {
 public:
  GroupedMLPImpl(std::int64_t groups, std::int64_t in, const std::vector<std::int64_t>& sizes, bool relu_last);
  torch::Tensor forward(torch::Tensor x);
  std::int64_t output_dim() const { return out_; }
  torch::Tensor& last_bias() { return biases_.back(); }  // [G, 1, out]

 private:
  std::vector<torch::Tensor> weights_, biases_;
  bool relu_last_;
  std::int64_t out_;
};
TORCH_MODULE(GroupedMLP);

// E experts (MLPs with ReLU) over one shared input [B, in] -> [E, B, h].
// The first layer of all experts is ONE GEMM with the weights concatenated
// ([in, E*h0]); deeper layers are batched matmuls over experts.
class ExpertBankImpl : public torch::nn::Module {
 public:
  ExpertBankImpl(std::int64_t experts, std::int64_t in, const std::vector<std::int64_t>& hidden);
  torch::Tensor forward(const torch::Tensor& x);
  // The experts [E, B, h] and x gate_w + gate_b, with the gates' GEMM merged
  // into the experts' first one (linear_relu_and_linear).
  std::pair<torch::Tensor, torch::Tensor> forward_with_gates(const torch::Tensor& x, const torch::Tensor& gate_w,
                                                             const torch::Tensor& gate_b);

 private:
  torch::Tensor w0_, b0_;
  GroupedMLP rest_{nullptr};
  std::int64_t experts_, hidden0_;
};
TORCH_MODULE(ExpertBank);

// One tower per task, as a grouped MLP ending in one logit: [T, B, in] -> [B, T].
class TowersImpl : public torch::nn::Module {
 public:
  TowersImpl(std::int64_t tasks, std::int64_t in, const std::vector<std::int64_t>& hidden);
  torch::Tensor forward(const torch::Tensor& x);
  // Sets each tower's output bias (the constant of its logit), one per tower.
  void set_output_bias(const std::vector<double>& logits);

 private:
  GroupedMLP mlp_{nullptr};
};
TORCH_MODULE(Towers);

// The gated mixture of a group of experts, one output per gate:
//   out[g, b, :] = sum_k gates[b, g, k] * experts[selection[g, k], b, :]
// gates [B, G, K]; experts [E, B, H], any strides with H contiguous (so the
// [B, E*H] output of one expert GEMM is read in place); selection [G, K]
// int64 expert numbers, or undefined for k itself (K == E). Returns
// [G, B, H]. Forward and backward are written by hand: as LibTorch's bmm (B
// products of [G, K] x [K, H]) they were 18% of a census MMoE step (issue
// 15), while the arithmetic is B*G*K*H multiply-adds. Each row b is computed
// by one thread in a fixed order, so results do not depend on the thread
// count.
torch::Tensor mix_experts(const torch::Tensor& gates, const torch::Tensor& experts,
                          const torch::Tensor& selection = torch::Tensor());

// relu(x w + b) for x [B, in], w [in, out], b [out]: the GEMM through BLAS,
// then the bias and the ReLU in one pass; backward masks the gradient and
// sums the bias's in one pass, then two GEMMs. LibTorch's addmm, relu and
// their backward (which expands the bias, and whose threshold_backward ran at
// about 50 us per [1024, 128]) cost more on the census MMoE's experts.
torch::Tensor linear_relu(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// (relu(x w_relu + b_relu), x w_plain + b_plain) from ONE GEMM of x with
// [w_relu | w_plain], forward and backward: the experts' first layer and the
// gates that read the same input. The gates alone are narrow GEMMs (N = 16
// for census) that BLAS runs far below its peak.
std::pair<torch::Tensor, torch::Tensor> linear_relu_and_linear(const torch::Tensor& x, const torch::Tensor& w_relu,
                                                               const torch::Tensor& b_relu, const torch::Tensor& w_plain,
                                                               const torch::Tensor& b_plain);

// While one lives, this thread's hand-written kernels (mix_experts, ...)
// compute through LibTorch's ops instead, the formulation they replace: tests
// train every family both ways and compare.
class ReferenceKernels {
 public:
  ReferenceKernels();
  ~ReferenceKernels();
  ReferenceKernels(const ReferenceKernels&) = delete;
  ReferenceKernels& operator=(const ReferenceKernels&) = delete;
  static bool active();

 private:
  bool previous_;
};

// YouTube's fix for gate polarization: in training, drop each gate weight with
// probability p, then renormalize each gate to sum to one. gates: [..., E].
torch::Tensor gate_dropout(const torch::Tensor& gates, double p, bool training);

}  // namespace mtrank::model
