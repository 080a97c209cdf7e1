// Matryoshka layers: the prefix property (exact), extraction of a width, the
// block structure's gradients, per-chunk LayerNorm.
#include <gtest/gtest.h>
#include <torch/torch.h>

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
