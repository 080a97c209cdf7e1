#include "model/batch.h"

#include <numeric>

namespace mtrank::model {

namespace {
template <typename T>
torch::Tensor wrap(std::vector<T>& v, std::vector<std::int64_t> shape, torch::Dtype dtype) {
  return torch::from_blob(v.data(), shape, torch::TensorOptions().dtype(dtype));
}
}  // namespace

Batch BatchBuilder::build_range(const data::FeaturizedData& data, std::int64_t begin, std::int64_t n) {
  index_.resize(n);
  std::iota(index_.begin(), index_.end(), begin);
  return build(data, index_.data(), n);
}

Batch BatchBuilder::build(const data::FeaturizedData& d, const std::int64_t* rows, std::int64_t n) {
  const int F = d.num_categorical(), NB = d.num_bags(), ND = d.num_dense(), T = d.num_tasks();
  categorical_.resize(n * F);
  dense_.resize(n * ND);
  labels_.resize(n * T);
  mask_.resize(n * T);
  bag_offsets_.assign(1, 0);
  bag_ids_.clear();
  bag_weights_.clear();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = rows[i];
    std::copy_n(d.categorical.data() + r * F, F, categorical_.data() + i * F);
    std::copy_n(d.dense.data() + r * ND, ND, dense_.data() + i * ND);
    std::copy_n(d.labels.data() + r * T, T, labels_.data() + i * T);
    std::copy_n(d.mask.data() + r * T, T, mask_.data() + i * T);
    for (int b = 0; b < NB; ++b) {
      const std::int64_t lo = d.bag_offsets[r * NB + b], hi = d.bag_offsets[r * NB + b + 1];
      bag_ids_.insert(bag_ids_.end(), d.bag_ids.begin() + lo, d.bag_ids.begin() + hi);
      bag_weights_.insert(bag_weights_.end(), d.bag_weights.begin() + lo, d.bag_weights.begin() + hi);
      bag_offsets_.push_back(static_cast<std::int64_t>(bag_ids_.size()));
    }
  }
  Batch b;
  b.size = n;
  b.categorical = wrap(categorical_, {n, F}, torch::kInt64);
  b.dense = wrap(dense_, {n, ND}, torch::kFloat32);
  b.labels = wrap(labels_, {n, T}, torch::kFloat32);
  b.mask = wrap(mask_, {n, T}, torch::kFloat32);
  b.bag_offsets = wrap(bag_offsets_, {static_cast<std::int64_t>(bag_offsets_.size())}, torch::kInt64);
  b.bag_ids = wrap(bag_ids_, {static_cast<std::int64_t>(bag_ids_.size())}, torch::kInt64);
  b.bag_weights = wrap(bag_weights_, {static_cast<std::int64_t>(bag_weights_.size())}, torch::kFloat32);
  return b;
}

}  // namespace mtrank::model
