#pragma once
// LRURec (Yue et al., WSDM 2024), issue 9's sequential recommender: item
// embeddings, LRU blocks, and scores over every item (reference.md section 4).
//   input:  LayerNorm(Dropout(E[x]))              (no positional embedding)
//   block:  x = LN(Dropout(Re(C h)) + x)           (post-LN around the LRU)
//           x = LN(Dropout(W2 Dropout(GELU(W1 x))) + x)   (FFN of 4d)
//   scores: x . E^T + b                            (input and output tables shared)
// Item 0 is padding. The fMRLRec block and Matryoshka widths build on this.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "model/lru.h"

namespace mtrank::model {

struct LruRecOptions {
  std::int64_t num_items = 0;  // ids 1..num_items; 0 = padding
  std::int64_t dim = 64;
  int blocks = 2;
  double dropout = 0.2;
  double r_min = 0.8, r_max = 0.99;
};

class LruBlockImpl : public torch::nn::Module {
 public:
  LruBlockImpl(std::int64_t dim, double dropout, double r_min, double r_max);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  LruLayer lru{nullptr};

 private:
  torch::nn::LayerNorm lru_norm{nullptr}, ffn_norm{nullptr};
  torch::nn::Linear w1{nullptr}, w2{nullptr};
  double dropout_;
};
TORCH_MODULE(LruBlock);

class LruRecImpl : public torch::nn::Module {
 public:
  explicit LruRecImpl(const LruRecOptions& options);
  // tokens [B, L] (0 = padding, on the left) -> hidden states [B, L, dim].
  torch::Tensor forward(const torch::Tensor& tokens);
  // Scores of every item id (0 included) at each position: [B, L, num_items + 1].
  torch::Tensor scores(const torch::Tensor& hidden);
  // Full-softmax cross-entropy over the items at every position whose label
  // is not 0 (padding), averaged over those positions.
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& labels);
  const LruRecOptions& options() const { return options_; }

 private:
  LruRecOptions options_;
  torch::nn::Embedding items{nullptr};
  torch::nn::LayerNorm input_norm{nullptr};
  torch::Tensor item_bias_;
  std::vector<LruBlock> blocks_;
};
TORCH_MODULE(LruRec);

}  // namespace mtrank::model
