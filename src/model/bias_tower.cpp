#include "model/bias_tower.h"

namespace mtrank::model {

BiasTowerHead::BiasTowerHead(const BiasTowerConfig& config, const InputShape& shape, std::int64_t embedding_dim)
    : shape_(shape), embedding_dim_(embedding_dim) {
  fields_ = shape_.fields_in_group("bias");
  std::int64_t in = 0;
  for (const InputField* f : fields_) {
    const auto [begin, end] = feature_columns(shape_, *f, embedding_dim_);
    in += end - begin;
  }
  std::vector<std::int64_t> columns(config.task_indices.begin(), config.task_indices.end());
  task_columns_ = torch::tensor(columns, torch::kInt64);
  std::vector<std::int64_t> sizes = config.hidden;
  sizes.push_back(static_cast<std::int64_t>(columns.size()));
  mlp_ = register_module("mlp", GroupedMLP(1, std::max<std::int64_t>(in, 1), sizes, /*relu_last=*/false));
}

torch::Tensor BiasTowerHead::forward(const HeadInput& in) {
  // Copy 0 of the features: single-task models keep one embedding copy per task, the tower reads the first.
  const torch::Tensor x = select_fields(in.features.slice(0, 0, 1), shape_, fields_, embedding_dim_);  // [1, B, in]
  const torch::Tensor bias = mlp_->forward(x).squeeze(0);                                              // [B, k]
  if (bias.size(1) == shape_.num_tasks) return bias;
  return torch::zeros({bias.size(0), shape_.num_tasks}, bias.options()).index_copy(1, task_columns_, bias);
}

}  // namespace mtrank::model
