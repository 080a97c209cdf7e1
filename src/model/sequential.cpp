#include "model/sequential.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "model/blocks.h"

namespace mtrank::model {
namespace F = torch::nn::functional;
namespace {

std::vector<std::int64_t> scaled(const std::vector<std::int64_t>& widths, std::int64_t factor) {
  std::vector<std::int64_t> out;
  for (std::int64_t w : widths) out.push_back(w * factor);
  return out;
}

// LRURec's block: post-LN around the LRU (state 2d) and a GELU FFN of 4d.
class LruRecBlockImpl : public torch::nn::Module {
 public:
  LruRecBlockImpl(const std::vector<std::int64_t>& widths, double dropout, double r_min, double r_max)
      : dropout_(dropout) {
    const std::int64_t d = widths.back();
    const bool nested = widths.size() > 1;
    lru = register_module("lru", LruLayer(d, 2 * d, r_min, r_max, nested ? widths : std::vector<std::int64_t>{}));
    lru_norm = register_module("lru_norm", ChunkedLayerNorm(widths));
    w1 = register_module("w1", MatryoshkaLinear(widths, scaled(widths, 4)));
    w2 = register_module("w2", MatryoshkaLinear(scaled(widths, 4), widths));
    ffn_norm = register_module("ffn_norm", ChunkedLayerNorm(widths));
    // LRURec initializes every weight and bias but LayerNorm's and lambda's
    // with a truncated normal (std 0.02, clipped at +-0.04).
    for (MatryoshkaLinear* l : {&w1, &w2})
      for (torch::Tensor p : (*l)->parameters()) truncated_normal_(p);
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask) { return around_lru(lru->forward(x, mask), x); }
  // One event: x [B, d] advances the LRU state [B, 2d] in place.
  torch::Tensor step(torch::Tensor& state, const torch::Tensor& x) {
    state = lru->step(state, x);
    return around_lru(lru->output(state), x);
  }
  std::int64_t state_size() const { return lru->state_size(); }

 private:
  // Everything but the recurrence is per position: forward and step share it.
  torch::Tensor around_lru(const torch::Tensor& y, const torch::Tensor& x) {
    const bool train = is_training();
    const torch::Tensor h = lru_norm(hashed_dropout(y, dropout_, train) + x);
    const torch::Tensor inner = hashed_dropout(F::gelu(w1(h)), dropout_, train);
    return ffn_norm(hashed_dropout(w2(inner), dropout_, train) + h);
  }
  LruLayer lru{nullptr};
  ChunkedLayerNorm lru_norm{nullptr}, ffn_norm{nullptr};
  MatryoshkaLinear w1{nullptr}, w2{nullptr};
  double dropout_;
};
TORCH_MODULE(LruRecBlock);

// fMRLRec's block: pre-LN, LRU state d, gated SiLU FFN of d.
class FmrlRecBlockImpl : public torch::nn::Module {
 public:
  FmrlRecBlockImpl(const std::vector<std::int64_t>& widths, double dropout, double r_min, double r_max)
      : dropout_(dropout) {
    const std::int64_t d = widths.back();
    norm1 = register_module("norm1", ChunkedLayerNorm(widths));
    lru = register_module("lru", LruLayer(d, d, r_min, r_max, widths.size() > 1 ? widths : std::vector<std::int64_t>{}));
    norm2 = register_module("norm2", ChunkedLayerNorm(widths));
    w1 = register_module("w1", MatryoshkaLinear(widths, widths));
    wg = register_module("wg", MatryoshkaLinear(widths, widths));
    w2 = register_module("w2", MatryoshkaLinear(widths, widths));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask) {
    return around_lru(lru->forward(norm1(x), mask), x);
  }
  // One event: x [B, d] advances the LRU state [B, d] in place.
  torch::Tensor step(torch::Tensor& state, const torch::Tensor& x) {
    state = lru->step(state, norm1(x));
    return around_lru(lru->output(state), x);
  }
  std::int64_t state_size() const { return lru->state_size(); }

 private:
  torch::Tensor around_lru(const torch::Tensor& y, const torch::Tensor& x) {
    const bool train = is_training();  // dropout is elementwise: prefix-closed
    const torch::Tensor h = x + hashed_dropout(y, dropout_, train);
    const torch::Tensor z = norm2(h);
    const torch::Tensor gated = F::silu(wg(z)) * hashed_dropout(w1(z), dropout_, train);
    return h + hashed_dropout(w2(gated), dropout_, train);
  }
  ChunkedLayerNorm norm1{nullptr}, norm2{nullptr};
  LruLayer lru{nullptr};
  MatryoshkaLinear w1{nullptr}, wg{nullptr}, w2{nullptr};
  double dropout_;
};
TORCH_MODULE(FmrlRecBlock);

}  // namespace

std::size_t width_index(const std::vector<std::int64_t>& widths, std::int64_t width) {
  const auto it = std::find(widths.begin(), widths.end(), width);
  if (it != widths.end()) return static_cast<std::size_t>(it - widths.begin());
  std::string list;
  for (std::int64_t w : widths) list += (list.empty() ? "" : ", ") + std::to_string(w);
  throw std::invalid_argument("width " + std::to_string(width) + " is not one of the model's widths (" + list + ")");
}

SequentialRecommender extract_width(SequentialRecommenderImpl& net, std::int64_t width) {
  SequentialOptions o = net.options();
  o.widths.resize(width_index(o.widths, width) + 1);
  SequentialRecommender small(o);
  torch::NoGradGuard no_grad;
  const auto copy_prefix = [](torch::Tensor& to, const torch::Tensor& from) {
    torch::Tensor view = from;
    for (std::int64_t d = 0; d < to.dim(); ++d) view = view.slice(d, 0, to.size(d));
    to.copy_(view);
  };
  auto big_params = net.named_parameters();
  for (auto& p : small->named_parameters()) copy_prefix(p.value(), big_params[p.key()]);
  auto big_buffers = net.named_buffers();
  for (auto& b : small->named_buffers()) copy_prefix(b.value(), big_buffers[b.key()]);
  small->eval();
  return small;
}

SequentialBlock sequential_block(const std::string& name) {
  if (name == "lrurec") return SequentialBlock::kLruRec;
  if (name == "fmrlrec") return SequentialBlock::kFmrlRec;
  throw std::invalid_argument("unknown sequential block '" + name + "' (lrurec, fmrlrec)");
}

const char* to_string(SequentialBlock block) { return block == SequentialBlock::kLruRec ? "lrurec" : "fmrlrec"; }

SequentialRecommenderImpl::SequentialRecommenderImpl(const SequentialOptions& options) : options_(options) {
  check_widths(options.widths);
  if (options.num_items < 1 || options.blocks < 1)
    throw std::invalid_argument("SequentialRecommender: num_items and blocks must be >= 1");
  const std::int64_t d = options.widths.back();
  if (!options.item_ids && options.feature_buckets < 1 && options.vector_dim < 1)
    throw std::invalid_argument("SequentialRecommender: no item representation (no ids, features or vectors)");
  if (options.feature_buckets < 0 || options.feature_entries < 0 || options.vector_dim < 0)
    throw std::invalid_argument("SequentialRecommender: negative item feature sizes");
  if (options.item_ids) {
    items = register_module("items", torch::nn::Embedding(options.num_items + 1, d));
    truncated_normal_(items->weight);
  }
  if (options.feature_buckets > 0) {
    term_embeddings_ = register_parameter("item_terms", torch::empty({options.feature_buckets, d}));
    truncated_normal_(term_embeddings_);
    bag_offsets_ = register_buffer("item_bag_offsets", torch::zeros({options.num_items + 1}, torch::kInt64));
    bag_ids_ = register_buffer("item_bag_ids", torch::zeros({options.feature_entries}, torch::kInt64));
    bag_weights_ = register_buffer("item_bag_weights", torch::zeros({options.feature_entries}));
  }
  if (options.vector_dim > 0) {
    frozen_vectors_ = register_buffer("item_vectors", torch::zeros({options.num_items + 1, options.vector_dim}));
    vector_projector = register_module("vector_projector", torch::nn::Linear(options.vector_dim, d));
  }
  const bool lrurec = options.block == SequentialBlock::kLruRec;
  if (lrurec) {
    input_norm = register_module("input_norm", ChunkedLayerNorm(options.widths));
    // A per-item bias is an id parameter: a model without ids has none.
    if (options.item_ids) item_bias_ = register_parameter("item_bias", torch::zeros({options.num_items + 1}));
  }
  for (int b = 0; b < options.blocks; ++b) {
    const std::string name = "block" + std::to_string(b);
    if (lrurec)
      blocks_.push_back(register_module(name, LruRecBlock(options.widths, options.dropout, options.r_min, options.r_max)));
    else
      blocks_.push_back(register_module(name, FmrlRecBlock(options.widths, options.dropout, options.r_min, options.r_max)));
  }
  if (!lrurec) final_norm = register_module("final_norm", ChunkedLayerNorm(options.widths));
}

void SequentialRecommenderImpl::set_item_features(const std::vector<std::int64_t>& bag_offsets,
                                                  const std::vector<std::int64_t>& bag_ids,
                                                  const std::vector<float>& bag_weights, const std::vector<float>& vectors) {
  const auto n = static_cast<std::size_t>(options_.num_items + 1);
  torch::NoGradGuard no_grad;
  if (options_.feature_buckets > 0) {
    if (bag_offsets.size() != n + 1 || bag_ids.size() != static_cast<std::size_t>(options_.feature_entries) ||
        bag_weights.size() != bag_ids.size() || bag_offsets.back() != static_cast<std::int64_t>(bag_ids.size()))
      throw std::invalid_argument("set_item_features: the bags do not match the model's items and feature entries");
    for (std::int64_t id : bag_ids)
      if (id < 0 || id >= options_.feature_buckets) throw std::invalid_argument("set_item_features: a term outside the buckets");
    // embedding_bag takes each bag's start; the last bag ends at the end.
    bag_offsets_.copy_(torch::tensor(std::vector<std::int64_t>(bag_offsets.begin(), bag_offsets.end() - 1)));
    if (!bag_ids.empty()) {
      bag_ids_.copy_(torch::tensor(bag_ids));
      bag_weights_.copy_(torch::tensor(bag_weights));
    }
  } else if (!bag_ids.empty()) {
    throw std::invalid_argument("set_item_features: bags given to a model without item features");
  }
  if (options_.vector_dim > 0) {
    if (vectors.size() != n * static_cast<std::size_t>(options_.vector_dim))
      throw std::invalid_argument("set_item_features: the vectors do not match the model's items and vector_dim");
    frozen_vectors_.copy_(torch::from_blob(const_cast<float*>(vectors.data()),
                                           {options_.num_items + 1, options_.vector_dim}));
  } else if (!vectors.empty()) {
    throw std::invalid_argument("set_item_features: vectors given to a model without vectors");
  }
}

void SequentialRecommenderImpl::check_item_features() const {
  if (bag_offsets_.defined()) {
    const torch::Tensor steps = bag_offsets_.slice(0, 1) - bag_offsets_.slice(0, 0, -1);
    if (bag_offsets_[0].item<std::int64_t>() != 0 || (steps < 0).any().item<bool>() ||
        bag_offsets_[-1].item<std::int64_t>() > options_.feature_entries)
      throw std::invalid_argument("item_bag_offsets do not increase from 0 within the feature entries");
    if (bag_ids_.numel() > 0 &&
        (bag_ids_.min().item<std::int64_t>() < 0 || bag_ids_.max().item<std::int64_t>() >= options_.feature_buckets))
      throw std::invalid_argument("item_bag_ids holds a term outside the " + std::to_string(options_.feature_buckets) +
                                  " buckets");
    if (!torch::isfinite(bag_weights_).all().item<bool>()) throw std::invalid_argument("item_bag_weights holds NaN or infinity");
  }
  if (frozen_vectors_.defined() && !torch::isfinite(frozen_vectors_).all().item<bool>())
    throw std::invalid_argument("item_vectors holds NaN or infinity");
}

torch::Tensor SequentialRecommenderImpl::item_table() {
  torch::Tensor table;
  const auto add = [&](const torch::Tensor& part) { table = table.defined() ? table + part : part; };
  if (items) add(items->weight);
  if (term_embeddings_.defined())
    add(std::get<0>(torch::embedding_bag(term_embeddings_, bag_ids_, bag_offsets_, /*scale_grad_by_freq=*/false,
                                         /*mode=sum*/ 0, /*sparse=*/false, bag_weights_)));
  if (vector_projector) add(vector_projector(frozen_vectors_));
  return table;
}

torch::Tensor SequentialRecommenderImpl::forward(const torch::Tensor& tokens) {
  return forward(tokens, item_table());
}

torch::Tensor SequentialRecommenderImpl::forward(const torch::Tensor& tokens, const torch::Tensor& table) {
  const torch::Tensor mask = tokens > 0;
  torch::Tensor x = hashed_dropout(torch::embedding(table, tokens), options_.dropout, is_training());
  const bool lrurec = options_.block == SequentialBlock::kLruRec;
  if (lrurec) x = input_norm(x);
  for (auto& block : blocks_) {
    if (lrurec) x = std::static_pointer_cast<LruRecBlockImpl>(block)->forward(x, mask);
    else x = std::static_pointer_cast<FmrlRecBlockImpl>(block)->forward(x, mask);
  }
  return lrurec ? x : final_norm(x);
}

SequentialState SequentialRecommenderImpl::initial_state(std::int64_t users) const {
  SequentialState state;
  const bool lrurec = options_.block == SequentialBlock::kLruRec;
  for (const auto& block : blocks_) {
    const std::int64_t size = lrurec ? std::static_pointer_cast<LruRecBlockImpl>(block)->state_size()
                                     : std::static_pointer_cast<FmrlRecBlockImpl>(block)->state_size();
    state.lru.push_back(torch::zeros({users, size}, torch::kComplexFloat));
  }
  return state;
}

torch::Tensor SequentialRecommenderImpl::step(SequentialState& state, const torch::Tensor& items, torch::Tensor table) {
  if (is_training()) throw std::invalid_argument("SequentialRecommender::step: the model is in training mode (call eval())");
  if (state.lru.size() != blocks_.size())
    throw std::invalid_argument("SequentialRecommender::step: the state has " + std::to_string(state.lru.size()) +
                                " blocks, the model " + std::to_string(blocks_.size()));
  if (items.dim() != 1 || items.size(0) != state.lru.front().size(0))
    throw std::invalid_argument("SequentialRecommender::step: one item per user of the state is needed");
  if (items.numel() > 0 && (items.min().item<std::int64_t>() < 1 || items.max().item<std::int64_t>() > options_.num_items))
    throw std::invalid_argument("SequentialRecommender::step: an item id outside 1.." + std::to_string(options_.num_items));
  if (!table.defined()) table = item_table();
  torch::Tensor x = torch::embedding(table, items);  // no dropout: inference only
  const bool lrurec = options_.block == SequentialBlock::kLruRec;
  if (lrurec) x = input_norm(x);
  for (std::size_t b = 0; b < blocks_.size(); ++b) {
    if (lrurec) x = std::static_pointer_cast<LruRecBlockImpl>(blocks_[b])->step(state.lru[b], x);
    else x = std::static_pointer_cast<FmrlRecBlockImpl>(blocks_[b])->step(state.lru[b], x);
  }
  return lrurec ? x : final_norm(x);
}

torch::Tensor SequentialRecommenderImpl::scores_by_width(const torch::Tensor& hidden, torch::Tensor table) {
  if (!table.defined()) table = item_table();
  std::vector<torch::Tensor> out;
  torch::Tensor running = item_bias_.defined() ? item_bias_ : torch::Tensor();
  std::int64_t begin = 0;
  for (std::int64_t w : options_.widths) {
    const torch::Tensor part = torch::matmul(hidden.slice(-1, begin, w), table.slice(1, begin, w).t());
    running = running.defined() ? running + part : part;
    out.push_back(running);
    begin = w;
  }
  return torch::stack(out, 0);
}

torch::Tensor SequentialRecommenderImpl::loss(const torch::Tensor& tokens, const torch::Tensor& labels) {
  return loss(tokens, labels, torch::Tensor(), torch::Tensor());
}

torch::Tensor SequentialRecommenderImpl::loss(const torch::Tensor& tokens, const torch::Tensor& labels,
                                              const torch::Tensor& candidates, const torch::Tensor& logit_shift) {
  // Only labelled positions are scored: padding costs no item product.
  const torch::Tensor table = item_table();
  const torch::Tensor hidden = forward(tokens, table);
  const torch::Tensor flat_labels = labels.reshape({-1});
  const torch::Tensor keep = flat_labels.nonzero().squeeze(1);
  const torch::Tensor h = hidden.reshape({-1, hidden.size(-1)}).index_select(0, keep);
  const torch::Tensor target = flat_labels.index_select(0, keep);
  if (!candidates.defined()) return matryoshka_cross_entropy(h, table, item_bias_, target, options_.widths);
  // A label's column is its place among the sorted candidates.
  const torch::Tensor column = torch::searchsorted(candidates, target);
  const torch::Tensor bias = item_bias_.defined() ? item_bias_.index_select(0, candidates) + logit_shift : logit_shift;
  return matryoshka_cross_entropy(h, table.index_select(0, candidates), bias, column, options_.widths);
}

}  // namespace mtrank::model
