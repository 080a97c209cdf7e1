// The LRU layer: ring initialization, the parallel scan against the plain
// recurrence with and without padding, padding kept out of real positions,
// and the one-step update equal to the scan.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/lru.h"

using namespace mtrank;

namespace {
// The recurrence one position at a time, as the scan defines it:
// h_0 = u_0, h_t = u_t + lambda h_{t-1} m_{t-1}.
torch::Tensor recurrence(const torch::Tensor& u, const torch::Tensor& lambda, const torch::Tensor& mask) {
  std::vector<torch::Tensor> out;
  torch::Tensor h = torch::zeros_like(u.select(1, 0));
  for (std::int64_t t = 0; t < u.size(1); ++t) {
    const torch::Tensor carry = t == 0 ? torch::zeros({u.size(0), 1}) : mask.select(1, t - 1).unsqueeze(1).to(torch::kFloat);
    h = u.select(1, t) + lambda * h * carry;
    out.push_back(h);
  }
  return torch::stack(out, 1);
}

torch::Tensor left_padded_mask(std::int64_t L, const std::vector<std::int64_t>& pads) {
  torch::Tensor m = torch::ones({static_cast<std::int64_t>(pads.size()), L});
  for (std::size_t b = 0; b < pads.size(); ++b) m[static_cast<std::int64_t>(b)].slice(0, 0, pads[b]).zero_();
  return m;
}
}  // namespace

TEST(Lru, RingInitialization) {
  torch::manual_seed(0);
  model::LruLayer layer(8, 16, 0.8, 0.99);
  const torch::Tensor modulus = torch::abs(layer->lambda());
  EXPECT_GE(modulus.min().item<double>(), 0.8 - 1e-6);
  EXPECT_LE(modulus.max().item<double>(), 0.99 + 1e-6);
  for (const auto& p : layer->named_parameters()) {
    if (p.key() == "lambda_gamma_log") {
      EXPECT_TRUE(torch::allclose(torch::exp(p.value()), torch::sqrt(1 - modulus * modulus), 1e-5, 1e-6));
    }
  }
}

TEST(Lru, ScanEqualsTheRecurrenceWithAndWithoutPadding) {
  torch::manual_seed(1);
  const std::int64_t N = 6;
  const torch::Tensor lambda = torch::polar(torch::rand({N}) * 0.5 + 0.45, torch::rand({N}) * 6.28);
  for (std::int64_t L : {1, 2, 8, 16}) {
    const torch::Tensor u = torch::complex(torch::randn({3, L, N}), torch::randn({3, L, N}));
    const torch::Tensor mask = left_padded_mask(L, {0, L / 2, L - 1});
    const torch::Tensor scan = model::lru_scan(u, lambda, mask), loop = recurrence(u, lambda, mask);
    EXPECT_TRUE(torch::allclose(torch::view_as_real(scan), torch::view_as_real(loop), 1e-5, 1e-5)) << "L = " << L;
  }
  EXPECT_THROW(model::lru_scan(torch::zeros({1, 6, N}, torch::kComplexFloat), lambda, torch::ones({1, 6})),
               std::invalid_argument);
}

TEST(Lru, HandWrittenRecurrenceEqualsTheScanInValueAndGradients) {
  // lru_recurrence (what the layer trains with) against lru_scan, whose
  // gradients LibTorch's autograd derives: the same states, and the same
  // gradients of a real loss with respect to u and lambda, with padding.
  torch::manual_seed(7);
  const std::int64_t N = 5, L = 16;
  const torch::Tensor lambda0 = torch::polar(torch::rand({N}) * 0.5 + 0.45, torch::rand({N}) * 6.28);
  const torch::Tensor u0 = torch::complex(torch::randn({3, L, N}), torch::randn({3, L, N}));
  const torch::Tensor mask = left_padded_mask(L, {0, 5, L - 1});
  const torch::Tensor weights = torch::randn({3, L, N, 2});
  torch::Tensor u1 = u0.clone().requires_grad_(), l1 = lambda0.clone().requires_grad_();
  torch::Tensor u2 = u0.clone().requires_grad_(), l2 = lambda0.clone().requires_grad_();
  const torch::Tensor mine = model::lru_recurrence(u1, l1, mask), scan = model::lru_scan(u2, l2, mask);
  EXPECT_TRUE(torch::allclose(torch::view_as_real(mine), torch::view_as_real(scan), 1e-5, 1e-5));
  (torch::view_as_real(mine) * weights).sum().backward();
  (torch::view_as_real(scan) * weights).sum().backward();
  EXPECT_TRUE(torch::allclose(torch::view_as_real(u1.grad()), torch::view_as_real(u2.grad()), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(torch::view_as_real(l1.grad()), torch::view_as_real(l2.grad()), 1e-4, 1e-4));
}

TEST(Lru, PaddingNeverReachesARealPositionAndLengthsNeedNotBePowersOfTwo) {
  // A real position's state is the sum over earlier real positions only:
  // h_t = sum_s lambda^(t-s) u_s from the first real position, whatever the
  // padded inputs are; at a length of 13 too.
  torch::manual_seed(2);
  model::LruLayer layer(4, 8, 0.5, 0.9);
  torch::Tensor x = torch::randn({2, 13, 4});
  const torch::Tensor mask = left_padded_mask(13, {0, 5});
  const torch::Tensor y = layer->forward(x, mask);
  torch::Tensor other = x.clone();
  other[1].slice(0, 0, 5).normal_();  // new values at row 1's padded positions
  const torch::Tensor z = layer->forward(other, mask);
  EXPECT_TRUE(torch::allclose(y[1].slice(0, 5), z[1].slice(0, 5), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(y[0], z[0]));
  // Row 1 from its first real position equals the same events unpadded.
  const torch::Tensor alone = layer->forward(x[1].slice(0, 5).unsqueeze(0), torch::ones({1, 8}));
  EXPECT_TRUE(torch::allclose(alone[0], y[1].slice(0, 5), 1e-5, 1e-6));
}

TEST(Lru, OneStepUpdateEqualsTheScan) {
  torch::manual_seed(3);
  model::LruLayer layer(4, 8, 0.8, 0.99);
  const torch::Tensor x = torch::randn({2, 9, 4});
  const torch::Tensor scan = layer->states(x, torch::ones({2, 9}));
  torch::Tensor h = torch::zeros({2, 8}, torch::kComplexFloat);
  for (std::int64_t t = 0; t < 9; ++t) {
    h = layer->step(h, x.select(1, t));
    EXPECT_TRUE(torch::allclose(torch::view_as_real(h), torch::view_as_real(scan.select(1, t)), 1e-5, 1e-5)) << t;
    EXPECT_TRUE(torch::allclose(layer->output(h), layer->forward(x, torch::ones({2, 9})).select(1, t), 1e-5, 1e-5));
  }
}

TEST(Lru, GradientsReachEveryParameter) {
  torch::manual_seed(4);
  model::LruLayer layer(4, 8, 0.8, 0.99);
  layer->forward(torch::randn({2, 5, 4}), left_padded_mask(5, {0, 2})).square().sum().backward();
  for (const auto& p : layer->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
}

TEST(Lru, MatryoshkaWidthsKeepThePrefixClosed) {
  // With widths, B and C are block lower-triangular: the first 4 outputs
  // read only the first 4 inputs, through the (diagonal) recurrence too; with
  // a state of 2d (LRURec), state chunk i has twice the width of chunk i.
  for (std::int64_t state : {8, 16}) {
    SCOPED_TRACE(state);
    torch::manual_seed(5);
    model::LruLayer layer(8, state, 0.0, 0.1, std::vector<std::int64_t>{4, 8});
    const torch::Tensor x = torch::randn({2, 6, 8}), mask = left_padded_mask(6, {0, 2});
    const torch::Tensor y = layer->forward(x, mask);
    torch::Tensor changed = x.clone();
    changed.slice(2, 4).normal_();
    const torch::Tensor z = layer->forward(changed, mask);
    EXPECT_TRUE(torch::allclose(z.slice(2, 0, 4), y.slice(2, 0, 4), 1e-6, 1e-6));
    EXPECT_FALSE(torch::allclose(z.slice(2, 4), y.slice(2, 4), 1e-3, 1e-3));
    // The first state chunk (state / 2 of it) reads only the first 4 inputs.
    const torch::Tensor h = layer->states(x, mask), g = layer->states(changed, mask);
    EXPECT_TRUE(torch::allclose(torch::view_as_real(g.slice(2, 0, state / 2)),
                                torch::view_as_real(h.slice(2, 0, state / 2)), 1e-6, 1e-6));
  }
  EXPECT_THROW(model::LruLayer(8, 12, 0.0, 0.1, std::vector<std::int64_t>{4, 8}), std::invalid_argument);  // not a multiple of d
}
