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
#include "model/matryoshka.h"

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

// fMRLRec (Lai et al., EMNLP Findings 2024): the same recurrence in pre-LN
// blocks whose every linear is a Matryoshka linear over `widths` and whose
// LayerNorms are per chunk, so the width-s model is exactly the prefix:
//   block:  h = x + Dropout(LRU(LN1(x)));  y = h + Dropout(W2(SiLU(Wg z) * Dropout(W1 z))), z = LN2(h)
//   output: a final per-chunk LayerNorm; width-s scores x[:s] . E[:, :s]^T (no bias).
// The item table is read by prefix too, as input and output.
struct FmrlRecOptions {
  std::int64_t num_items = 0;
  std::vector<std::int64_t> widths = {8, 16, 32, 64};  // the last is the full width D
  int blocks = 2;
  double dropout = 0.2;
  double r_min = 0.0, r_max = 0.1;
};

class FmrlBlockImpl : public torch::nn::Module {
 public:
  FmrlBlockImpl(const std::vector<std::int64_t>& widths, double dropout, double r_min, double r_max);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

 private:
  ChunkedLayerNorm norm1{nullptr}, norm2{nullptr};
  LruLayer lru{nullptr};
  MatryoshkaLinear w1{nullptr}, wg{nullptr}, w2{nullptr};
  double dropout_;
};
TORCH_MODULE(FmrlBlock);

class FmrlRecImpl : public torch::nn::Module {
 public:
  explicit FmrlRecImpl(const FmrlRecOptions& options);
  torch::Tensor forward(const torch::Tensor& tokens);  // [B, L] -> [B, L, D]
  // Every width's scores at once: [widths, B, L, num_items + 1]. Width i's
  // are width i-1's plus the next chunk's product, so all widths cost one
  // full-width product.
  torch::Tensor scores_by_width(const torch::Tensor& hidden);
  // Full-softmax cross-entropy at every non-pad label for every width, mean over widths.
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& labels);
  torch::nn::Embedding items{nullptr};
  const FmrlRecOptions& options() const { return options_; }

 private:
  FmrlRecOptions options_;
  ChunkedLayerNorm final_norm{nullptr};
  std::vector<FmrlBlock> blocks_;
};
TORCH_MODULE(FmrlRec);

}  // namespace mtrank::model
