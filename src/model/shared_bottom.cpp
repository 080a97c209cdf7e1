#include "model/shared_bottom.h"

namespace mtrank::model {

SharedBottom::SharedBottom(const ModelConfig& config, const InputShape& shape)
    : RankingModel(config, shape), dropout_(config.number("dropout")) {
  bottom_ = register_module("bottom", GroupedMLP(1, input_dim(), config.integers("bottom_hidden"), true));
  towers_ = register_module("towers", Towers(shape.num_tasks, bottom_->output_dim(), config.integers("tower_hidden")));
}

ModelOutput SharedBottom::forward_deep(const torch::Tensor& x) {
  torch::Tensor h = bottom_->forward(x);  // [1, B, h]
  if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
  return {towers_->forward(h.expand({shape_.num_tasks, h.size(1), h.size(2)})), {}};
}

SingleTask::SingleTask(const ModelConfig& config, const InputShape& shape)
    : RankingModel(config, shape, /*embedding_copies=*/shape.num_tasks), dropout_(config.number("dropout")) {
  bottoms_ = register_module("bottoms", GroupedMLP(shape.num_tasks, input_dim(), config.integers("bottom_hidden"), true));
  towers_ = register_module("towers", Towers(shape.num_tasks, bottoms_->output_dim(), config.integers("tower_hidden")));
}

ModelOutput SingleTask::forward_deep(const torch::Tensor& x) {
  torch::Tensor h = bottoms_->forward(x);  // [T, B, h]
  if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
  return {towers_->forward(h), {}};
}

std::shared_ptr<RankingModel> make_shared_bottom(const ModelConfig& config, const InputShape& shape) {
  return std::make_shared<SharedBottom>(config, shape);
}

std::shared_ptr<RankingModel> make_wide_deep(const ModelConfig& config, const InputShape& shape) {
  return std::make_shared<SharedBottom>(config, shape);  // its config always has wide = true (model_families.cpp)
}

std::shared_ptr<RankingModel> make_single_task(const ModelConfig& config, const InputShape& shape) {
  return std::make_shared<SingleTask>(config, shape);
}

}  // namespace mtrank::model
