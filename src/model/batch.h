#pragma once
// A mini-batch as tensors. BatchBuilder gathers rows of FeaturizedData into
// reusable buffers and wraps them with torch::from_blob (no per-batch allocation
// of the host arrays). A Batch aliases its builder's buffers: use it before the
// next build() call.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "data/dataset.h"

namespace mtrank::model {

struct Batch {
  std::int64_t size = 0;
  torch::Tensor categorical;  // [B, F] int64, ids into the fused embedding table
  torch::Tensor bag_ids;      // [nnz] int64
  torch::Tensor bag_offsets;  // [B * num_bags + 1] int64 (include_last_offset form)
  torch::Tensor bag_weights;  // [nnz] float
  torch::Tensor dense;        // [B, num_dense] float
  torch::Tensor labels;       // [B, T] float
  torch::Tensor mask;         // [B, T] float
};

class BatchBuilder {
 public:
  // Rows `rows[0..n)` of `data`, in that order.
  Batch build(const data::FeaturizedData& data, const std::int64_t* rows, std::int64_t n);
  // Contiguous rows [begin, begin + n).
  Batch build_range(const data::FeaturizedData& data, std::int64_t begin, std::int64_t n);

 private:
  std::vector<std::int64_t> categorical_, bag_ids_, bag_offsets_, index_;
  std::vector<float> bag_weights_, dense_, labels_, mask_;
};

}  // namespace mtrank::model
