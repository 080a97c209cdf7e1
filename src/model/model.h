#pragma once
// Multi-task ranking models. Every model reads the same featurized input
// (FeatureInput: one fused embedding table + dense features) and returns one
// logit per task. Models are created by name through a registry, so adding a
// model is one file plus one registration.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "config/config.h"
#include "model/batch.h"

namespace mtrank::model {

// Sizes of the featurized input, from the fitted preprocessor.
struct InputShape {
  std::int64_t embedding_rows = 0;
  int num_categorical = 0, num_bags = 0, num_dense = 0, num_tasks = 0;
};

// The rows of the embedding table that a training batch touched, as a leaf
// tensor: autograd fills rows.grad(), and a row-wise optimizer updates only
// these rows of the table (never the whole table).
struct TouchedRows {
  torch::Tensor ids;   // [U] unique row ids into the table
  torch::Tensor rows;  // [U, D] leaf, requires_grad
};

struct ModelOutput {
  torch::Tensor logits;  // [B, T]
  torch::Tensor gates;   // [B, T, E] gate weights, for expert utilization (undefined if none)
};

// Embedding lookup for all categorical fields and multi-hot bags at once, concatenated with dense features.
class FeatureInputImpl : public torch::nn::Module {
 public:
  FeatureInputImpl(const InputShape& shape, std::int64_t embedding_dim);
  // `touched` non-null: gather the batch's unique rows as a leaf (training); else plain lookup.
  torch::Tensor forward(const Batch& batch, TouchedRows* touched);
  std::int64_t output_dim() const { return output_dim_; }
  torch::Tensor& table() { return table_; }

 private:
  torch::Tensor table_;  // [embedding_rows, D]; updated row-wise, outside dense optimizers
  InputShape shape_;
  std::int64_t dim_, output_dim_;
};
TORCH_MODULE(FeatureInput);

class RankingModel : public torch::nn::Module {
 public:
  virtual ModelOutput forward(const Batch& batch, TouchedRows* touched) = 0;
  virtual FeatureInput& input() = 0;
};

using ModelFactory = std::function<std::shared_ptr<RankingModel>(const ModelConfig&, const InputShape&)>;
std::map<std::string, ModelFactory>& model_registry();
std::shared_ptr<RankingModel> create_model(const ModelConfig& config, const InputShape& shape);

}  // namespace mtrank::model
