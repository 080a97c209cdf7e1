#pragma once
// The sequential recommender of issue 9 (reference.md section 4): item
// embeddings, LRU blocks, and scores over every item, in two block styles,
// each optionally Matryoshka over `widths` (fMRLRec), so one trained model of
// width D holds working models of every listed width.
//
//   lrurec  (LRURec, Yue et al. WSDM 2024):
//     input:  LN(Dropout(E[x]))                       (no positional embedding)
//     block:  x = LN(Dropout(Re(C h)) + x)            (post-LN around the LRU, state 2d)
//             x = LN(Dropout(W2 Dropout(GELU(W1 x))) + x)   (FFN of 4d)
//     scores: x . E^T + b                             (tables shared, per-item bias)
//   fmrlrec (fMRLRec, Lai et al. EMNLP Findings 2024):
//     block:  h = x + Dropout(LRU(LN1(x)))            (pre-LN, state d)
//             y = h + Dropout(W2(SiLU(Wg z) * Dropout(W1 z))), z = LN2(h)
//     output: a final LN; scores x . E^T (no bias)
//
// With several widths every linear is a Matryoshka linear and every LayerNorm
// is per chunk, so the first s features of every layer read only the first s
// inputs: the width-s scores x[:s] . E[:, :s]^T (+ b) are exactly those of the
// width-s model. With one width (D) the layers are ordinary ones. Item 0 is
// padding.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/lru.h"
#include "model/matryoshka.h"

namespace mtrank::model {

enum class SequentialBlock { kLruRec, kFmrlRec };

struct SequentialOptions {
  std::int64_t num_items = 0;                // ids 1..num_items; 0 = padding
  std::vector<std::int64_t> widths = {64};   // increasing; the last is the full width D
  SequentialBlock block = SequentialBlock::kLruRec;
  int blocks = 2;
  double dropout = 0.2;
  double r_min = 0.8, r_max = 0.99;  // the LRU's ring (fMRLRec: 0, 0.1)
  // The item representation (the sum of the parts there are; at least one):
  bool item_ids = true;               // learned id embeddings [num_items + 1, D]
  std::int64_t feature_buckets = 0;   // > 0: learned embeddings [buckets, D] of each item's bag of terms
  std::int64_t feature_entries = 0;   //       the bags' total number of terms
  std::int64_t vector_dim = 0;        // > 0: frozen vectors [num_items + 1, vector_dim], projected to D
};

// Where users are in the recurrence, for inference one event at a time (a
// live user state): each block's LRU state [users, state] (complex64), zero
// before the first event. Everything else in a block is per position, so this
// is all the history a block keeps.
struct SequentialState {
  std::vector<torch::Tensor> lru;  // one per block
};

class SequentialRecommenderImpl : public torch::nn::Module {
 public:
  explicit SequentialRecommenderImpl(const SequentialOptions& options);  // throws std::invalid_argument
  // The item features the options declare (data/item_features.h): each
  // item's bag of term buckets (offsets [num_items + 2], ids, weights) and the
  // frozen vectors (row-major [num_items + 1, vector_dim]). Throws
  // std::invalid_argument when a size differs from the options'.
  void set_item_features(const std::vector<std::int64_t>& bag_offsets, const std::vector<std::int64_t>& bag_ids,
                         const std::vector<float>& bag_weights, const std::vector<float>& vectors);
  // Throws std::invalid_argument when the item feature buffers (as loaded
  // from a file) are not valid: offsets not increasing from 0 to the entries,
  // a term outside the buckets, a weight or vector value that is not finite.
  void check_item_features() const;
  // Every item's representation [num_items + 1, D]: what embeds the input
  // and what the hidden states are scored against.
  torch::Tensor item_table();
  // tokens [B, L] (0 = padding, on the left) -> hidden states [B, L, D].
  torch::Tensor forward(const torch::Tensor& tokens);
  // The same with item_table() computed already (evaluation computes it once).
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& table);
  // The state of `users` users before any event.
  SequentialState initial_state(std::int64_t users) const;
  // One event per user: items [users] (ids 1..num_items) advance `state` in
  // place; returns the hidden states [users, D] at the new event, equal (to
  // rounding; tested) to forward's last position over every event so far
  // with no window limit. O(d^2) a block, whatever the history's length.
  // The model must be in eval mode; throws std::invalid_argument otherwise,
  // for a state of another model and for an id outside the items.
  torch::Tensor step(SequentialState& state, const torch::Tensor& items, torch::Tensor table = {});
  // Every width's scores of every item id (0 included): hidden [..., D] ->
  // [widths, ..., num_items + 1]. Width i's are width i-1's plus the next
  // chunk's product, so all widths cost one full-width product. `table` is
  // item_table(), when the caller has it already.
  torch::Tensor scores_by_width(const torch::Tensor& hidden, torch::Tensor table = {});
  // Full-softmax cross-entropy at every position whose label is not 0, for
  // every width, mean over widths (one width: LRURec's loss).
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& labels);
  // Sampled softmax: the same loss over `candidates` only (sorted unique item
  // ids [C] holding every label of the batch), each candidate's logit
  // shifted by `logit_shift` [C] (the log-Q correction, -log of its expected
  // count). Costs C instead of num_items + 1 columns.
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& labels, const torch::Tensor& candidates,
                     const torch::Tensor& logit_shift);
  const SequentialOptions& options() const { return options_; }
  // LRURec's per-item output bias [num_items + 1]; undefined for fMRLRec's
  // block and for a model without ids.
  const torch::Tensor& item_bias() const { return item_bias_; }
  torch::nn::Embedding items{nullptr};  // when options().item_ids

 private:
  SequentialOptions options_;
  torch::Tensor term_embeddings_, bag_ids_, bag_offsets_, bag_weights_;  // learned item features
  torch::Tensor frozen_vectors_;                                        // frozen vectors (a buffer)
  torch::nn::Linear vector_projector{nullptr};
  ChunkedLayerNorm input_norm{nullptr}, final_norm{nullptr};  // lrurec / fmrlrec
  torch::Tensor item_bias_;                                   // lrurec
  std::vector<std::shared_ptr<torch::nn::Module>> blocks_;
};
TORCH_MODULE(SequentialRecommender);

// The index of `width` in `widths`; throws std::invalid_argument naming the
// widths there are when it is not one of them.
std::size_t width_index(const std::vector<std::int64_t>& widths, std::int64_t width);

// The width-`width` model alone (width one of net's widths): the same block
// with the widths up to `width`, every tensor the leading slice of net's
// (every layer is prefix-closed, so that is the whole width-s model). Its
// scores equal net's width-s scores up to summation order. Throws
// std::invalid_argument for a width net does not have.
SequentialRecommender extract_width(SequentialRecommenderImpl& net, std::int64_t width);

// "lrurec" / "fmrlrec"; throws std::invalid_argument for another name.
SequentialBlock sequential_block(const std::string& name);
const char* to_string(SequentialBlock block);

}  // namespace mtrank::model
