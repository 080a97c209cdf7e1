#include "model/objective.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mtrank::model {
namespace {

// Binary cross-entropy on logits (log-sigmoid form: stable for large |z|).
class BinaryObjective : public Objective {
 public:
  torch::Tensor row_loss(const torch::Tensor& z, const torch::Tensor& y) const override {
    return torch::binary_cross_entropy_with_logits(z, y, {}, {}, at::Reduction::None);
  }
  torch::Tensor value(const torch::Tensor& z) const override { return torch::sigmoid(z); }
  std::vector<std::string> default_metrics() const override { return {"auc", "logloss", "calibration"}; }
  double initial_logit(double rate) const override {
    const double p = std::min(std::max(rate, 1e-6), 1.0 - 1e-6);  // a class absent from training: a finite logit
    return std::log(p / (1.0 - p));
  }
};

// Squared error on the raw output.
class RegressionObjective : public Objective {
 public:
  torch::Tensor row_loss(const torch::Tensor& z, const torch::Tensor& y) const override { return (z - y).square(); }
  torch::Tensor value(const torch::Tensor& z) const override { return z; }
  std::vector<std::string> default_metrics() const override { return {"mse", "rmse"}; }
  double initial_logit(double mean) const override { return mean; }
};

std::map<std::string, std::unique_ptr<Objective>> make_registry() {
  std::map<std::string, std::unique_ptr<Objective>> r;
  r.emplace("binary", std::make_unique<BinaryObjective>());
  r.emplace("regression", std::make_unique<RegressionObjective>());
  return r;
}

}  // namespace

const std::map<std::string, std::unique_ptr<Objective>>& objective_registry() {
  static const auto registry = make_registry();
  return registry;
}

const Objective& objective_for(TaskType type) {
  const auto it = objective_registry().find(to_string(type));
  if (it == objective_registry().end()) throw std::logic_error(std::string("no objective for task type ") + to_string(type));
  return *it->second;
}

}  // namespace mtrank::model
