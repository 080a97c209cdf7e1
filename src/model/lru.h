#pragma once
// The Linear Recurrent Unit (Orvieto et al. 2023) as LRURec and fMRLRec use it
// (reference.md section 4), issue 9's sequential backbone:
//   h_t = lambda * h_{t-1} + gamma * (B x_t),   y_t = Re(C h_t)
// with a complex diagonal lambda = exp(-exp(nu_log) + i exp(theta_log)) in a
// ring r_min <= |lambda| <= r_max, gamma = sqrt(1 - |lambda|^2), complex B
// and C with biases. Training runs the recurrence over whole sequences
// (lru_recurrence; lru_scan is LRURec's parallel scan by recursive doubling
// over the sequence left-padded to a power of two, with the same result); a
// mask keeps padded positions out of every real position's state. Inference
// can advance one event at a time (step), with the same result.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace mtrank::model {

class LruLayerImpl : public torch::nn::Module {
 public:
  // d: input and output width; state: complex state size (LRURec: 2d).
  // widths (Matryoshka; the last = d, state a multiple r of d): B and C are
  // Matryoshka linears over widths and r x widths, so the first s outputs read
  // only the first s inputs (the recurrence is diagonal, so the state keeps
  // the prefix property).
  LruLayerImpl(std::int64_t d, std::int64_t state, double r_min, double r_max,
               const std::vector<std::int64_t>& widths = {});

  // x [B, L, d] real, mask [B, L] (1 = a real position, 0 = padding, which
  // sits on the left): y [B, L, d] = Re(C h) + c at every position.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  // The states h [B, L, state] (complex) of the scan; padded positions carry
  // nothing into later ones.
  torch::Tensor states(const torch::Tensor& x, const torch::Tensor& mask);
  // One event: h_t from h_{t-1} [B, state] (complex; zeros before the first
  // event) and x_t [B, d]. Returns h_t; output(h_t) gives y_t.
  torch::Tensor step(const torch::Tensor& previous, const torch::Tensor& x);
  torch::Tensor output(const torch::Tensor& h);  // Re(C h) + c, h [..., state] -> [..., d]
  torch::Tensor lambda() const;                  // [state] complex
  std::int64_t state_size() const { return state_; }

  // Parameters named "lambda_*" (nu_log, theta_log, gamma_log) take no weight
  // decay and keep their ring initialization (LRURec).
 private:
  torch::Tensor input(const torch::Tensor& x);  // gamma * (B x + b) [..., state] complex
  std::int64_t d_, state_;
  torch::Tensor nu_log_, theta_log_, gamma_log_;
  torch::Tensor b_re_, b_im_, b_bias_re_, b_bias_im_;  // B: [state, d], bias [state]
  torch::Tensor c_re_, c_im_, c_bias_;                 // C: [d, state], bias (real part) [d]
  torch::Tensor in_mask_, out_mask_;                   // with widths: 1 where a row of B / C may read a column
};
TORCH_MODULE(LruLayer);

// The recurrence the layer trains and infers with: h_t = u_t + m_{t-1} lambda
// h_{t-1}, left to right per sequence, and its backward pass right to left,
// each one pass over [B, L, N] (written by hand: a custom autograd function).
// u [B, L, N] complex64 of any length L, lambda [N], mask [B, L] (a padded
// position carries nothing forward). Equal to lru_scan to rounding (tested);
// on a CPU of few cores its O(L) work beats the scan's O(L log L) in
// separate tensor ops: bench/sequential_step.cpp, docs/benchmarks.md.
torch::Tensor lru_recurrence(const torch::Tensor& u, const torch::Tensor& lambda, const torch::Tensor& mask);

// The recurrence by recursive doubling (LRURec's lru_parallel): u [B, L, N]
// complex with L a power of two, lambda [N] complex, mask [B, L]. At step
// l = 2^i the second half of every l-block adds lambda^1..lambda^(l/2) times
// the last state of its first half, times that position's mask.
torch::Tensor lru_scan(const torch::Tensor& u, const torch::Tensor& lambda, const torch::Tensor& mask);

}  // namespace mtrank::model
