// Matryoshka layers: the prefix property (exact), extraction of a width, the
// block structure's gradients, per-chunk LayerNorm.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/item_text.h"
#include "model/lsa.h"
#include "model/matryoshka.h"

using namespace mtrank;

TEST(Matryoshka, PrefixOutputsReadOnlyThePrefixAndEqualTheExtractedLayer) {
  torch::manual_seed(0);
  const std::vector<std::int64_t> widths = {2, 4, 8};
  model::MatryoshkaLinear layer(widths, widths);
  const torch::Tensor x = torch::randn({5, 8});
  const torch::Tensor y = layer->forward(x);
  for (std::size_t level = 0; level < widths.size(); ++level) {
    const std::int64_t s = widths[level];
    torch::Tensor changed = x.clone();
    changed.slice(1, s).normal_();  // everything past the prefix
    EXPECT_TRUE(torch::equal(layer->forward(changed).slice(1, 0, s), y.slice(1, 0, s))) << s;
    const auto [w, b] = layer->extract(level);
    EXPECT_EQ(w.sizes(), (std::vector<std::int64_t>{s, s}));
    EXPECT_TRUE(torch::allclose(torch::nn::functional::linear(x.slice(1, 0, s), w, b), y.slice(1, 0, s), 1e-6, 1e-6));
  }
  // Blocks above the diagonal get no gradient; the ones the mask keeps do.
  layer->forward(x).sum().backward();
  const torch::Tensor g = layer->named_parameters()["weight"].grad();
  EXPECT_EQ(g.slice(0, 0, 2).slice(1, 2).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(g.slice(0, 2, 4).slice(1, 4).abs().sum().item<float>(), 0.0f);
  EXPECT_GT(g.slice(0, 4).abs().sum().item<float>(), 0.0f);
  using W = std::vector<std::int64_t>;
  EXPECT_THROW(model::MatryoshkaLinear(W{2, 2}, W{2, 4}), std::invalid_argument);  // not increasing
  EXPECT_THROW(model::MatryoshkaLinear(W{2, 4}, W{4}), std::invalid_argument);     // different counts
}

TEST(Matryoshka, ChunkedLayerNormNormalizesEachChunkAlone) {
  torch::manual_seed(1);
  model::ChunkedLayerNorm norm(std::vector<std::int64_t>{2, 4, 8});
  const torch::Tensor x = torch::randn({3, 8}) * 5 + 2;
  const torch::Tensor y = norm->forward(x);
  for (auto [a, b] : {std::pair<int, int>{0, 2}, {2, 4}, {4, 8}}) {
    const torch::Tensor part = x.slice(1, a, b);
    const torch::Tensor expected = (part - part.mean(-1, true)) / torch::sqrt(part.var(-1, false, true) + 1e-5);
    EXPECT_TRUE(torch::allclose(y.slice(1, a, b), expected, 1e-4, 1e-5)) << a;
  }
  torch::Tensor changed = x.clone();
  changed.slice(1, 4).normal_();
  EXPECT_TRUE(torch::equal(norm->forward(changed).slice(1, 0, 4), y.slice(1, 0, 4)));
}

TEST(MatryoshkaCrossEntropy, EqualsEveryWidthsLogitsThroughCrossEntropy) {
  // The fused loss and its gradients against the plain computation: every
  // width's logits materialized, cross_entropy over all of them, mean over
  // widths. With and without the per-item bias; with V = 9 the 70 rows are
  // one block, with V = 70000 blocks of 16 rows (the least), so five.
  // On 2 threads too: the threads take blocks, and grad mode must be off on
  // every one of them (it is per thread).
  for (int threads : {1, 2})
  for (std::int64_t V : {9, 70000}) {
    for (bool with_bias : {false, true}) {
      at::set_num_threads(threads);
      SCOPED_TRACE(std::to_string(V) + (with_bias ? " with bias" : "") + ", threads " + std::to_string(threads));
      torch::manual_seed(3);
      const std::vector<std::int64_t> widths = {2, 4, 8};
      const std::int64_t P = 70;
      const torch::Tensor h0 = torch::randn({P, 8}), e0 = torch::randn({V, 8}) * 0.5, b0 = torch::randn({V});
      const torch::Tensor targets = torch::randint(V, {P}, torch::kInt64);
      torch::Tensor h1 = h0.clone().requires_grad_(), e1 = e0.clone().requires_grad_(), b1 = b0.clone().requires_grad_();
      torch::Tensor h2 = h0.clone().requires_grad_(), e2 = e0.clone().requires_grad_(), b2 = b0.clone().requires_grad_();
      const torch::Tensor fused = model::matryoshka_cross_entropy(h1, e1, with_bias ? b1 : torch::Tensor(), targets, widths);
      std::vector<torch::Tensor> losses;
      for (std::int64_t w : widths) {
        torch::Tensor logits = torch::matmul(h2.slice(1, 0, w), e2.slice(1, 0, w).t());
        if (with_bias) logits = logits + b2;
        losses.push_back(torch::nn::functional::cross_entropy(logits, targets));
      }
      const torch::Tensor plain = torch::stack(losses).mean();
      EXPECT_NEAR(fused.item<double>(), plain.item<double>(), 1e-4 * std::abs(plain.item<double>()));
      (fused * 3).backward();
      (plain * 3).backward();
      EXPECT_TRUE(torch::allclose(h1.grad(), h2.grad(), 1e-4, 1e-6));
      EXPECT_TRUE(torch::allclose(e1.grad(), e2.grad(), 1e-4, 1e-6));
      if (with_bias) {
        EXPECT_TRUE(torch::allclose(b1.grad(), b2.grad(), 1e-4, 1e-6));
      }
    }
  }
  at::set_num_threads(1);
}

TEST(Lsa, TruncatedSvdMatchesTheExactSvd) {
  // A random sparse 60 x 40 matrix: the randomized SVD's top 5 singular
  // values and directions against LAPACK's exact SVD of the dense matrix.
  torch::manual_seed(2);
  const torch::Tensor dense = torch::rand({60, 40}) * (torch::rand({60, 40}) < 0.2).to(torch::kFloat32);
  data::SparseMatrix x;
  x.rows = 60, x.cols = 40;
  x.indptr.push_back(0);
  for (std::int64_t i = 0; i < 60; ++i) {
    for (std::int64_t j = 0; j < 40; ++j)
      if (dense[i][j].item<float>() != 0) {
        x.indices.push_back(static_cast<std::int32_t>(j));
        x.values.push_back(dense[i][j].item<float>());
      }
    x.indptr.push_back(static_cast<std::int64_t>(x.indices.size()));
  }
  const torch::Tensor us = model::truncated_svd(x, 5, 5, 7);
  ASSERT_EQ(us.sizes(), (std::vector<std::int64_t>{60, 5}));
  const auto [u, s, vh] = torch::linalg_svd(dense, false);
  for (std::int64_t k = 0; k < 5; ++k) {
    const torch::Tensor column = us.select(1, k);
    EXPECT_NEAR(column.norm().item<double>(), s[k].item<double>(), 1e-3 * s[k].item<double>()) << k;
    // Same direction up to sign.
    EXPECT_NEAR(std::abs(torch::dot(column / column.norm(), u.select(1, k)).item<double>()), 1.0, 1e-3) << k;
  }
  EXPECT_TRUE(torch::equal(model::truncated_svd(x, 5, 5, 7), us));  // deterministic for a seed
  EXPECT_THROW(model::truncated_svd(x, 41, 5, 7), std::invalid_argument);
}

TEST(MatryoshkaCrossEntropy, RefusesATargetOutsideTheTable) {
  const torch::Tensor h = torch::randn({3, 8}), e = torch::randn({5, 8});
  EXPECT_THROW(model::matryoshka_cross_entropy(h, e, {}, torch::tensor({0, 4, 5}, torch::kInt64), {4, 8}),
               std::invalid_argument);
  EXPECT_THROW(model::matryoshka_cross_entropy(h, e, {}, torch::tensor({0, -1, 2}, torch::kInt64), {4, 8}),
               std::invalid_argument);
  EXPECT_NO_THROW(model::matryoshka_cross_entropy(h, e, {}, torch::tensor({0, 4, 2}, torch::kInt64), {4, 8}));
}
