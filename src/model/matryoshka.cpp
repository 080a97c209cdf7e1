#include "model/matryoshka.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace mtrank::model {

void check_widths(const std::vector<std::int64_t>& widths) {
  if (widths.empty()) throw std::invalid_argument("Matryoshka widths: none given");
  for (std::size_t i = 0; i < widths.size(); ++i) {
    if (widths[i] < 1) throw std::invalid_argument("Matryoshka widths: " + std::to_string(widths[i]) + " is not >= 1");
    if (i > 0 && widths[i] <= widths[i - 1])
      throw std::invalid_argument("Matryoshka widths: must increase, got " + std::to_string(widths[i - 1]) + " then " +
                                  std::to_string(widths[i]));
  }
}

MatryoshkaLinearImpl::MatryoshkaLinearImpl(std::vector<std::int64_t> in_widths, std::vector<std::int64_t> out_widths,
                                           bool bias)
    : in_widths_(std::move(in_widths)), out_widths_(std::move(out_widths)) {
  check_widths(in_widths_);
  check_widths(out_widths_);
  if (in_widths_.size() != out_widths_.size())
    throw std::invalid_argument("MatryoshkaLinear: " + std::to_string(in_widths_.size()) + " input widths and " +
                                std::to_string(out_widths_.size()) + " output widths");
  const std::int64_t in = in_widths_.back(), out = out_widths_.back();
  torch::Tensor w = torch::zeros({out, in}), b = torch::zeros({out}), m = torch::zeros({out, in});
  std::int64_t row = 0;
  for (std::size_t i = 0; i < out_widths_.size(); ++i) {
    const std::int64_t rows = out_widths_[i] - row, fan_in = in_widths_[i];
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    w.slice(0, row, row + rows).slice(1, 0, fan_in).uniform_(-bound, bound);
    b.slice(0, row, row + rows).uniform_(-bound, bound);
    m.slice(0, row, row + rows).slice(1, 0, fan_in).fill_(1.0);
    row += rows;
  }
  weight_ = register_parameter("weight", w);
  if (bias) bias_ = register_parameter("bias", b);
  mask_ = register_buffer("mask", m);
}

torch::Tensor MatryoshkaLinearImpl::forward(const torch::Tensor& x) {
  // The mask keeps the blocks above the diagonal at zero in the forward pass
  // and their gradients at zero in the backward pass.
  return torch::nn::functional::linear(x, weight_ * mask_, bias_);
}

std::pair<torch::Tensor, torch::Tensor> MatryoshkaLinearImpl::extract(std::size_t level) const {
  const std::int64_t out = out_widths_.at(level), in = in_widths_.at(level);
  torch::Tensor w = (weight_ * mask_).slice(0, 0, out).slice(1, 0, in).clone();
  return {w, bias_.defined() ? bias_.slice(0, 0, out).clone() : torch::Tensor()};
}

ChunkedLayerNormImpl::ChunkedLayerNormImpl(std::vector<std::int64_t> widths, double eps) : widths_(std::move(widths)) {
  check_widths(widths_);
  std::int64_t begin = 0;
  for (std::size_t i = 0; i < widths_.size(); ++i) {
    norms_.push_back(register_module("chunk" + std::to_string(i),
                                     torch::nn::LayerNorm(torch::nn::LayerNormOptions({widths_[i] - begin}).eps(eps))));
    begin = widths_[i];
  }
}

torch::Tensor ChunkedLayerNormImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> parts;
  std::int64_t begin = 0;
  for (std::size_t i = 0; i < widths_.size(); ++i) {
    parts.push_back(norms_[i](x.slice(-1, begin, widths_[i])));
    begin = widths_[i];
  }
  return torch::cat(parts, -1);
}

}  // namespace mtrank::model
