#pragma once
// Shared helpers for tests that need LibTorch.
#include <random>

#include <torch/torch.h>

#include "config/config.h"
#include "data/dataset.h"
#include "model/batch.h"
#include "model/model.h"

namespace mtrank::testing {

inline model::InputShape small_shape() { return {50, 3, 1, 2, 2, {}}; }

// A random batch for the small shape: 3 categorical fields, 1 bag field, 2 dense, 2 tasks.
struct RandomBatch {
  data::FeaturizedData d{3, 1, 2, 2};
  model::BatchBuilder builder;
  model::Batch batch;
  explicit RandomBatch(int rows, int seed = 0) {
    std::mt19937 rng(seed);
    for (int r = 0; r < rows; ++r) {
      for (int f = 0; f < 3; ++f) d.categorical.push_back(f * 10 + rng() % 10);
      const int n = rng() % 3;
      for (int i = 0; i < n; ++i) {
        d.bag_ids.push_back(30 + rng() % 20);
        d.bag_weights.push_back(1.0f / n);
      }
      d.bag_offsets.push_back(static_cast<std::int64_t>(d.bag_ids.size()));
      d.dense.push_back(static_cast<float>(rng() % 100) / 100);
      d.dense.push_back(static_cast<float>(rng() % 100) / 100);
      d.labels.push_back(static_cast<float>(rng() % 2));
      d.labels.push_back(static_cast<float>(rng() % 2));
      d.mask.push_back(1);
      d.mask.push_back(1);
      d.commit_row();
    }
    batch = builder.build_range(d, 0, rows);
  }
};

// Sets `key` where the family takes it: sizes meant "wherever they apply".
inline void set_where_taken(ModelConfig& m, const std::string& key, ModelValue value) {
  if (m.has(key)) m.set(key, std::move(value));
}

// A small model of `type` (an MMoE unless named).
inline ModelConfig small_model(const std::string& type = "mmoe") {
  ModelConfig m = model_defaults(type);
  using Layers = std::vector<std::int64_t>;
  set_where_taken(m, "embedding_dim", std::int64_t{4});
  set_where_taken(m, "num_experts", std::int64_t{3});
  set_where_taken(m, "expert_hidden", Layers{8, 6});
  set_where_taken(m, "tower_hidden", Layers{5});
  return m;
}

}  // namespace mtrank::testing
