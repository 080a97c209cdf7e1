#include "model/matryoshka.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
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

namespace mtrank::model {
namespace {

class MatryoshkaCrossEntropy : public torch::autograd::Function<MatryoshkaCrossEntropy> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& table, const torch::Tensor& bias, const torch::Tensor& targets,
                               const std::vector<std::int64_t>& widths) {
    const std::int64_t P = hidden.size(0), V = table.size(0), W = static_cast<std::int64_t>(widths.size());
    const bool has_bias = bias.numel() > 0;  // an empty tensor stands for none (apply needs defined inputs)
    const torch::Tensor h = hidden.contiguous(), e = table.contiguous();
    torch::Tensor grad_h = torch::zeros_like(h), grad_e = torch::zeros_like(e);
    torch::Tensor grad_b = has_bias ? torch::zeros_like(bias) : torch::Tensor();
    // Blocks of about 256k logits per width: big enough for efficient GEMMs,
    // small enough that a block's logits stay in the caches (fastest of
    // 64k..4M on ML-1M's shape: bench/sequential_step.cpp).
    const std::int64_t rows = std::clamp<std::int64_t>((std::int64_t{1} << 18) / std::max<std::int64_t>(V, 1), 16, 2048);
    const double scale = 1.0 / static_cast<double>(W * std::max<std::int64_t>(P, 1));
    double loss = 0;
    std::vector<torch::Tensor> probs(static_cast<std::size_t>(W));
    for (std::int64_t r0 = 0; r0 < P; r0 += rows) {
      const std::int64_t r1 = std::min(P, r0 + rows);
      const torch::Tensor hb = h.slice(0, r0, r1), tb = targets.slice(0, r0, r1).unsqueeze(1);
      torch::Tensor running;
      std::int64_t begin = 0;
      for (std::int64_t k = 0; k < W; ++k) {
        const std::int64_t end = widths[static_cast<std::size_t>(k)];
        const torch::Tensor chunk = hb.slice(1, begin, end), rows_e = e.slice(1, begin, end);
        if (!running.defined())
          running = has_bias ? torch::addmm(bias, chunk, rows_e.t()) : torch::mm(chunk, rows_e.t());
        else
          running = torch::addmm(running, chunk, rows_e.t());
        // softmax and the loss of this width, lse - logit[target], with one exp pass.
        const torch::Tensor top = std::get<0>(running.max(1, true));
        torch::Tensor p = (running - top).exp_();
        const torch::Tensor sum = p.sum(1, true);
        loss += (top + sum.log() - running.gather(1, tb)).sum().item<double>();
        probs[static_cast<std::size_t>(k)] = p.div_(sum);
        begin = end;
      }
      // d loss / d (chunk j's product) = sum over widths k >= j of (p_k - onehot), scaled.
      torch::Tensor suffix;
      for (std::int64_t k = W - 1; k >= 0; --k) {
        torch::Tensor& p = probs[static_cast<std::size_t>(k)];
        p.scatter_add_(1, tb, torch::full({r1 - r0, 1}, -1.0f, p.options()));
        if (suffix.defined()) suffix.add_(p);
        else suffix = p;
        const std::int64_t lo = k == 0 ? 0 : widths[static_cast<std::size_t>(k - 1)], hi = widths[static_cast<std::size_t>(k)];
        grad_h.slice(0, r0, r1).slice(1, lo, hi).addmm_(suffix, e.slice(1, lo, hi), 0.0, scale);
        grad_e.slice(1, lo, hi).addmm_(suffix.t(), hb.slice(1, lo, hi), 1.0, scale);
      }
      if (has_bias) grad_b.add_(suffix.sum(0), scale);
    }
    ctx->save_for_backward({grad_h, grad_e, has_bias ? grad_b : torch::zeros({0}, hidden.options())});
    return torch::tensor(loss * scale, hidden.options());
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_output) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor g = grad_output[0];
    return {saved[0] * g, saved[1] * g, saved[2].numel() > 0 ? saved[2] * g : torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor matryoshka_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& table, const torch::Tensor& bias,
                                       const torch::Tensor& targets, const std::vector<std::int64_t>& widths) {
  check_widths(widths);
  if (hidden.dim() != 2 || table.dim() != 2 || hidden.size(1) != widths.back() || table.size(1) != widths.back())
    throw std::invalid_argument("matryoshka_cross_entropy: hidden [P, D] and table [V, D] with D the last width");
  return MatryoshkaCrossEntropy::apply(hidden, table, bias.defined() ? bias : torch::zeros({0}, hidden.options()), targets,
                                       widths);
}

}  // namespace mtrank::model
