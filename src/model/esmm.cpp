#include "model/esmm.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace mtrank::model {

Esmm::Esmm(const ModelConfig& config, const InputShape& shape) : RankingModel(config, shape), dropout_(config.number("dropout")) {
  if (shape.num_tasks != 2 && shape.num_tasks != 3)
    throw ConfigError("model.type = \"esmm\" needs 2 or 3 tasks, in this order: click (all impressions), click and "
                      "conversion (all impressions), and optionally conversion (where click = 1, weight 0); this "
                      "config has " + std::to_string(shape.num_tasks));
  towers_ = register_module("towers", Towers(2, input_dim(), config.integers("tower_hidden")));
}

torch::Tensor product_logit(const torch::Tensor& a, const torch::Tensor& b) {
  return -torch::logsumexp(torch::stack({-a, -b, -a - b}, 0), 0);
}

ModelOutput Esmm::forward_deep(const torch::Tensor& x) {
  torch::Tensor h = x;  // [1, B, in]: the shared embeddings and dense features
  if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
  const torch::Tensor z = towers_->forward(h.expand({2, h.size(1), h.size(2)}));  // [B, 2]: CTR and CVR logits
  const torch::Tensor ctr = z.select(1, 0), cvr = z.select(1, 1);
  const torch::Tensor ctcvr = product_logit(ctr, cvr);
  std::vector<torch::Tensor> columns{ctr, ctcvr};
  if (shape_.num_tasks == 3) columns.push_back(cvr);
  return {torch::stack(columns, 1), {}};
}

// The towers are CTR and CVR, the tasks click, click-and-convert (CTR x CVR)
// and optionally CVR: CVR starts at P(convert | click) = CTCVR / CTR.
void Esmm::set_output_bias(const std::vector<double>& task_logits) {
  const auto sigmoid = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
  const double ctr = sigmoid(task_logits.at(0)), ctcvr = sigmoid(task_logits.at(1));
  const double cvr = std::min(std::max(ctcvr / ctr, 1e-6), 1.0 - 1e-6);
  towers_->set_output_bias({task_logits[0], std::log(cvr / (1.0 - cvr))});
}

std::shared_ptr<RankingModel> make_esmm(const ModelConfig& config, const InputShape& shape) {
  return std::make_shared<Esmm>(config, shape);
}

}  // namespace mtrank::model
