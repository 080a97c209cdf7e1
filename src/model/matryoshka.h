#pragma once
// Full-scale Matryoshka layers (fMRLRec; reference.md section 4), issue 9:
// with widths s_0 < s_1 < ... < s_m = D, a layer's output chunk
// [s_{i-1}, s_i) reads only the input prefix [0, s_i), so the first s
// outputs of every layer depend only on the first s inputs, and the width-s
// model is exactly the prefix of the full one.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace mtrank::model {

// Checks widths: strictly increasing, positive, the last one the full width.
// Throws std::invalid_argument naming the problem.
void check_widths(const std::vector<std::int64_t>& widths);

// A D_in x D_out linear whose weight is block lower-triangular over the
// widths of both sides (the same number of widths): output chunk i reads
// the input prefix [0, in_widths[i]). Each chunk starts as nn.Linear would
// with fan-in in_widths[i] (fMRLRec builds one nn.Linear per chunk).
class MatryoshkaLinearImpl : public torch::nn::Module {
 public:
  MatryoshkaLinearImpl(std::vector<std::int64_t> in_widths, std::vector<std::int64_t> out_widths, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  // The width-`level` layer alone: weight [out_widths[level], in_widths[level]] and bias, as an ordinary linear.
  std::pair<torch::Tensor, torch::Tensor> extract(std::size_t level) const;
  const torch::Tensor& weight() const { return weight_; }

 private:
  std::vector<std::int64_t> in_widths_, out_widths_;
  torch::Tensor weight_, bias_, mask_;  // weight and mask [D_out, D_in]
};
TORCH_MODULE(MatryoshkaLinear);

// LayerNorm per chunk: [0, s_0), [s_0, s_1), ... normalized separately, each
// with its own affine, so the first s features' norm does not read the rest.
class ChunkedLayerNormImpl : public torch::nn::Module {
 public:
  explicit ChunkedLayerNormImpl(std::vector<std::int64_t> widths, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<std::int64_t> widths_;
  std::vector<torch::nn::LayerNorm> norms_;
};
TORCH_MODULE(ChunkedLayerNorm);

}  // namespace mtrank::model

namespace mtrank::model {

// The Matryoshka softmax loss of fMRLRec, fused: for widths s_0 < ... < s_m
// = D, width k's logits are bias + H[:, :s_k] E[:, :s_k]^T, and the loss is
// the mean over widths of the mean full-softmax cross-entropy over the P
// rows of H [P, D] against targets [P] (ids into E's rows [V, D]). The same
// value and gradients as materializing every width's logits and calling
// cross_entropy, but computed in blocks of rows: the gradients are formed in
// the forward pass (the loss is the last node, so they only scale by the
// incoming gradient), every width reuses the previous width's logits plus one
// chunk's product, and no [widths x P x V] tensor is ever held, only
// [widths x block x V]. `bias` [V] may be undefined.
torch::Tensor matryoshka_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& table, const torch::Tensor& bias,
                                       const torch::Tensor& targets, const std::vector<std::int64_t>& widths);

}  // namespace mtrank::model
