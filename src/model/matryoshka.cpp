#include "model/matryoshka.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>

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

// exp(x) for x <= 0 in plain arithmetic (Cephes' expf: x = n ln2 + r, a
// degree-6 polynomial in r, 2^n from the exponent bits; relative error about
// 1e-7), so the softmax loops below vectorize. LibTorch's exp on this build
// costs about 1 ns an element and its softmax more; this is the loss's
// largest elementwise cost (W x positions x items exps a step).
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  // Round to nearest by adding and removing 1.5 * 2^23 (no floor call, which
  // would keep the loop from vectorizing); |r| <= ln2 / 2 either way.
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  return y * __builtin_bit_cast(float, (static_cast<std::int32_t>(n) + 127) << 23);
}

// One row of the loss: chunks[k] (V floats) holds chunk k's product on entry
// and S_k = sum over widths j >= k of (softmax_j - onehot(target)) on return,
// where width j's logits are bias + chunks[0] + ... + chunks[j]. Returns the
// sum over widths of logsumexp_j - logit_j[target]. x: V floats of scratch.
// Each pass runs over one row (a few KB to a few hundred KB), in cache.
__attribute__((target_clones("avx512f", "avx2", "default"))) double softmax_row(float* const* chunks, int widths,
                                                                               std::int64_t V, const float* bias,
                                                                               std::int64_t target, float* x) {
  if (bias) std::copy(bias, bias + V, x);
  else std::fill(x, x + V, 0.0f);
  double loss = 0;
  for (int k = 0; k < widths; ++k) {
    float* c = chunks[k];
    float top = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : top)
    for (std::int64_t v = 0; v < V; ++v) {
      x[v] += c[v];
      top = x[v] > top ? x[v] : top;
    }
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t v = 0; v < V; ++v) {
      const float e = exp_nonpositive(x[v] - top);
      c[v] = e;
      sum += e;
    }
    const float inverse = 1.0f / sum;
#pragma omp simd
    for (std::int64_t v = 0; v < V; ++v) c[v] *= inverse;
    loss += std::log(static_cast<double>(sum)) + top - x[target];
  }
  chunks[widths - 1][target] -= 1.0f;
  for (int k = widths - 2; k >= 0; --k) {
    float* c = chunks[k];
    const float* next = chunks[k + 1];
#pragma omp simd
    for (std::int64_t v = 0; v < V; ++v) c[v] += next[v];
    c[target] -= 1.0f;
  }
  return loss;
}

class MatryoshkaCrossEntropy : public torch::autograd::Function<MatryoshkaCrossEntropy> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& table, const torch::Tensor& bias, const torch::Tensor& targets,
                               const std::vector<std::int64_t>& widths) {
    const std::int64_t P = hidden.size(0), V = table.size(0);
    const int W = static_cast<int>(widths.size());
    const bool has_bias = bias.numel() > 0;  // an empty tensor stands for none (apply needs defined inputs)
    const torch::Tensor h = hidden.detach().contiguous().to(torch::kFloat32), t = targets.contiguous().to(torch::kInt64);
    const torch::Tensor b = has_bias ? bias.detach().contiguous() : torch::Tensor();
    // Each chunk's columns of H and E as contiguous matrices: BLAS runs
    // small-K products on strided slices at a third of the speed.
    std::vector<torch::Tensor> e_chunks, grad_e_chunks;
    std::vector<std::int64_t> lo(static_cast<std::size_t>(W)), hi(static_cast<std::size_t>(W));
    for (int k = 0; k < W; ++k) {
      lo[k] = k == 0 ? 0 : widths[static_cast<std::size_t>(k - 1)];
      hi[k] = widths[static_cast<std::size_t>(k)];
      e_chunks.push_back(table.detach().slice(1, lo[k], hi[k]).contiguous());
      grad_e_chunks.push_back(torch::zeros({V, hi[k] - lo[k]}, table.options()));
    }
    torch::Tensor grad_h = torch::empty_like(h);
    // Blocks of about 256k logits per width: the products are GEMMs of
    // useful size, and the softmax reads one row at a time. Threads take
    // whole blocks (their BLAS calls then run on one thread each): a second
    // thread inside each block's small products made a step slower, not
    // faster (bench/sequential_step.cpp, docs/benchmarks.md).
    const std::int64_t rows = std::clamp<std::int64_t>((std::int64_t{1} << 18) / std::max<std::int64_t>(V, 1), 16, 1024);
    const std::int64_t blocks = (P + rows - 1) / rows;
    const double scale = 1.0 / static_cast<double>(W * std::max<std::int64_t>(P, 1));
    // Per thread: its share of the E and bias gradients and of the loss.
    const int threads = at::get_num_threads();
    std::vector<std::vector<torch::Tensor>> grad_e_parts(static_cast<std::size_t>(threads));
    std::vector<torch::Tensor> grad_b_parts(static_cast<std::size_t>(threads));
    std::vector<double> block_loss(static_cast<std::size_t>(blocks), 0.0);
    at::parallel_for(0, blocks, 1, [&](std::int64_t first, std::int64_t last) {
      // Grad mode is per thread, and autograd turns it off only on the
      // calling one: without this, the other threads' ops on `h` (which
      // requires grad) would record graphs, racing on the shared grad_h.
      torch::NoGradGuard no_grad;
      const std::size_t thread = static_cast<std::size_t>(at::get_thread_num());
      std::vector<torch::Tensor>& grad_e_part = grad_e_parts[thread];
      if (grad_e_part.empty())
        for (int k = 0; k < W; ++k) grad_e_part.push_back(torch::zeros({V, hi[k] - lo[k]}, table.options()));
      if (has_bias && !grad_b_parts[thread].defined()) grad_b_parts[thread] = torch::zeros_like(b);
      std::vector<torch::Tensor> products(static_cast<std::size_t>(W)), h_chunks(static_cast<std::size_t>(W));
      std::vector<float> scratch(static_cast<std::size_t>(V));
      std::vector<float*> chunks(static_cast<std::size_t>(W));
      for (std::int64_t block = first; block < last; ++block) {
        const std::int64_t r0 = block * rows, r1 = std::min(P, r0 + rows), R = r1 - r0;
        for (int k = 0; k < W; ++k) {
          h_chunks[k] = h.slice(0, r0, r1).slice(1, lo[k], hi[k]).contiguous();
          products[k] = torch::mm(h_chunks[k], e_chunks[k].t());  // [R, V], contiguous
        }
        const std::int64_t* target = t.data_ptr<std::int64_t>() + r0;
        double loss = 0;
        for (std::int64_t r = 0; r < R; ++r) {
          for (int k = 0; k < W; ++k) chunks[k] = products[k].data_ptr<float>() + r * V;
          loss += softmax_row(chunks.data(), W, V, has_bias ? b.data_ptr<float>() : nullptr, target[r], scratch.data());
        }
        block_loss[static_cast<std::size_t>(block)] = loss;
        // products[k] now holds S_k, the gradient of chunk k's product.
        for (int k = 0; k < W; ++k) {
          grad_h.slice(0, r0, r1).slice(1, lo[k], hi[k]).copy_(torch::mm(products[k], e_chunks[k]).mul_(scale));
          grad_e_part[k].addmm_(products[k].t(), h_chunks[k], 1.0, scale);
        }
        if (has_bias) grad_b_parts[thread].add_(products[0].sum(0), scale);
      }
    });
    double loss = 0;
    for (double l : block_loss) loss += l;  // in block order: the same sum for any thread count
    for (const auto& part : grad_e_parts)
      for (int k = 0; k < static_cast<int>(part.size()); ++k) grad_e_chunks[k].add_(part[k]);
    torch::Tensor grad_b = has_bias ? torch::zeros_like(b) : torch::zeros({0}, h.options());
    for (const auto& part : grad_b_parts)
      if (part.defined()) grad_b.add_(part);
    torch::Tensor grad_e = torch::cat(grad_e_chunks, 1);
    ctx->save_for_backward({grad_h, grad_e, grad_b});
    return torch::tensor(loss * scale, h.options());
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
  // The kernel indexes rows of the table by target: one out of range would write past its buffers.
  if (targets.numel() > 0 && (targets.min().item<std::int64_t>() < 0 || targets.max().item<std::int64_t>() >= table.size(0)))
    throw std::invalid_argument("matryoshka_cross_entropy: a target outside the table's " + std::to_string(table.size(0)) +
                                " rows");
  return MatryoshkaCrossEntropy::apply(hidden, table, bias.defined() ? bias : torch::zeros({0}, hidden.options()), targets,
                                       widths);
}

}  // namespace mtrank::model
