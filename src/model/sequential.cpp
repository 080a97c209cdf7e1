#include "model/sequential.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "model/blocks.h"

namespace mtrank::model {
namespace F = torch::nn::functional;

LruBlockImpl::LruBlockImpl(std::int64_t dim, double dropout, double r_min, double r_max) : dropout_(dropout) {
  lru = register_module("lru", LruLayer(dim, 2 * dim, r_min, r_max));
  lru_norm = register_module("lru_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  w1 = register_module("w1", torch::nn::Linear(dim, 4 * dim));
  w2 = register_module("w2", torch::nn::Linear(4 * dim, dim));
  ffn_norm = register_module("ffn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  for (torch::Tensor p : {w1->weight, w1->bias, w2->weight, w2->bias}) truncated_normal_(p);
}

torch::Tensor LruBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const bool train = is_training();
  torch::Tensor h = lru_norm(F::dropout(lru->forward(x, mask), F::DropoutFuncOptions().p(dropout_).training(train)) + x);
  const torch::Tensor inner = F::dropout(F::gelu(w1(h)), F::DropoutFuncOptions().p(dropout_).training(train));
  return ffn_norm(F::dropout(w2(inner), F::DropoutFuncOptions().p(dropout_).training(train)) + h);
}

LruRecImpl::LruRecImpl(const LruRecOptions& options) : options_(options) {
  if (options.num_items < 1 || options.dim < 1 || options.blocks < 1)
    throw std::invalid_argument("LruRec: num_items, dim and blocks must be >= 1");
  items = register_module("items", torch::nn::Embedding(options.num_items + 1, options.dim));
  truncated_normal_(items->weight);
  input_norm = register_module("input_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({options.dim})));
  item_bias_ = register_parameter("item_bias", torch::zeros({options.num_items + 1}));
  for (int b = 0; b < options.blocks; ++b)
    blocks_.push_back(register_module("block" + std::to_string(b),
                                      LruBlock(options.dim, options.dropout, options.r_min, options.r_max)));
}

torch::Tensor LruRecImpl::forward(const torch::Tensor& tokens) {
  const torch::Tensor mask = tokens > 0;
  torch::Tensor x = input_norm(
      F::dropout(items(tokens), F::DropoutFuncOptions().p(options_.dropout).training(is_training())));
  for (auto& block : blocks_) x = block->forward(x, mask);
  return x;
}

torch::Tensor LruRecImpl::scores(const torch::Tensor& hidden) {
  return torch::matmul(hidden, items->weight.t()) + item_bias_;
}

torch::Tensor LruRecImpl::loss(const torch::Tensor& tokens, const torch::Tensor& labels) {
  const torch::Tensor logits = scores(forward(tokens));
  return F::cross_entropy(logits.reshape({-1, logits.size(-1)}), labels.reshape({-1}),
                          F::CrossEntropyFuncOptions().ignore_index(0));
}

FmrlBlockImpl::FmrlBlockImpl(const std::vector<std::int64_t>& widths, double dropout, double r_min, double r_max)
    : dropout_(dropout) {
  const std::int64_t D = widths.back();
  norm1 = register_module("norm1", ChunkedLayerNorm(widths));
  lru = register_module("lru", LruLayer(D, D, r_min, r_max, widths));
  norm2 = register_module("norm2", ChunkedLayerNorm(widths));
  w1 = register_module("w1", MatryoshkaLinear(widths, widths));
  wg = register_module("wg", MatryoshkaLinear(widths, widths));
  w2 = register_module("w2", MatryoshkaLinear(widths, widths));
}

torch::Tensor FmrlBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const auto drop = F::DropoutFuncOptions().p(dropout_).training(is_training());  // elementwise: prefix-closed
  const torch::Tensor h = x + F::dropout(lru->forward(norm1(x), mask), drop);
  const torch::Tensor z = norm2(h);
  const torch::Tensor gated = F::silu(wg(z)) * F::dropout(w1(z), drop);
  return h + F::dropout(w2(gated), drop);
}

FmrlRecImpl::FmrlRecImpl(const FmrlRecOptions& options) : options_(options) {
  check_widths(options.widths);
  if (options.num_items < 1 || options.blocks < 1) throw std::invalid_argument("FmrlRec: num_items and blocks must be >= 1");
  items = register_module("items", torch::nn::Embedding(options.num_items + 1, options.widths.back()));
  truncated_normal_(items->weight);
  for (int b = 0; b < options.blocks; ++b)
    blocks_.push_back(register_module("block" + std::to_string(b),
                                      FmrlBlock(options.widths, options.dropout, options.r_min, options.r_max)));
  final_norm = register_module("final_norm", ChunkedLayerNorm(options.widths));
}

torch::Tensor FmrlRecImpl::forward(const torch::Tensor& tokens) {
  const torch::Tensor mask = tokens > 0;
  torch::Tensor x = F::dropout(items(tokens), F::DropoutFuncOptions().p(options_.dropout).training(is_training()));
  for (auto& block : blocks_) x = block->forward(x, mask);
  return final_norm(x);
}

torch::Tensor FmrlRecImpl::scores_by_width(const torch::Tensor& hidden) {
  std::vector<torch::Tensor> out;
  torch::Tensor running;
  std::int64_t begin = 0;
  for (std::int64_t w : options_.widths) {
    const torch::Tensor part =
        torch::matmul(hidden.slice(-1, begin, w), items->weight.slice(1, begin, w).t());
    running = running.defined() ? running + part : part;
    out.push_back(running);
    begin = w;
  }
  return torch::stack(out, 0);
}

torch::Tensor FmrlRecImpl::loss(const torch::Tensor& tokens, const torch::Tensor& labels) {
  const torch::Tensor logits = scores_by_width(forward(tokens));  // [W, B, L, V]
  const std::int64_t W = logits.size(0), V = logits.size(-1);
  return F::cross_entropy(logits.reshape({-1, V}), labels.reshape({-1}).repeat({W}),
                          F::CrossEntropyFuncOptions().ignore_index(0));
}

}  // namespace mtrank::model
