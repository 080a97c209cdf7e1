#include "model/model.h"

#include "common/error.h"
#include "model/mmoe.h"

namespace mtrank::model {

FeatureInputImpl::FeatureInputImpl(const InputShape& shape, std::int64_t embedding_dim)
    : shape_(shape), dim_(embedding_dim) {
  // Small uniform init: embeddings start near zero so no field dominates early.
  table_ = register_parameter("table", torch::empty({std::max<std::int64_t>(shape.embedding_rows, 1), dim_})
                                           .uniform_(-0.05, 0.05),
                              /*requires_grad=*/false);
  output_dim_ = (shape.num_categorical + shape.num_bags) * dim_ + shape.num_dense;
}

torch::Tensor FeatureInputImpl::forward(const Batch& batch, TouchedRows* touched) {
  const std::int64_t B = batch.size;
  std::vector<torch::Tensor> parts;
  const std::int64_t ncat = B * shape_.num_categorical;
  if (touched) {
    torch::Tensor all = shape_.num_bags > 0 ? torch::cat({batch.categorical.reshape({-1}), batch.bag_ids})
                                            : batch.categorical.reshape({-1});
    auto [unique, inverse] = at::_unique(all, /*sorted=*/true, /*return_inverse=*/true);
    touched->ids = unique;
    touched->rows = table_.index_select(0, unique).detach().requires_grad_(true);
    if (shape_.num_categorical > 0)
      parts.push_back(touched->rows.index_select(0, inverse.slice(0, 0, ncat)).view({B, -1}));
    if (shape_.num_bags > 0)
      parts.push_back(std::get<0>(torch::embedding_bag(touched->rows, inverse.slice(0, ncat), batch.bag_offsets,
                                                       /*scale_grad_by_freq=*/false, /*mode=sum*/ 0,
                                                       /*sparse=*/false, batch.bag_weights,
                                                       /*include_last_offset=*/true))
                          .view({B, -1}));
  } else {
    if (shape_.num_categorical > 0)
      parts.push_back(table_.index_select(0, batch.categorical.reshape({-1})).view({B, -1}));
    if (shape_.num_bags > 0)
      parts.push_back(std::get<0>(torch::embedding_bag(table_, batch.bag_ids, batch.bag_offsets, false, 0, false,
                                                       batch.bag_weights, true))
                          .view({B, -1}));
  }
  if (shape_.num_dense > 0) parts.push_back(batch.dense);
  return torch::cat(parts, 1);
}

std::map<std::string, ModelFactory>& model_registry() {
  // Built-in models are listed here (not via static initializers, which a
  // static library link may drop). Adding a model: its file plus one line.
  static std::map<std::string, ModelFactory> registry = {
      {"mmoe", make_mmoe},
  };
  return registry;
}

std::shared_ptr<RankingModel> create_model(const ModelConfig& config, const InputShape& shape) {
  auto& registry = model_registry();
  auto it = registry.find(config.type);
  if (it == registry.end()) throw ConfigError("model.type: unknown model '" + config.type + "'");
  return it->second(config, shape);
}

}  // namespace mtrank::model
