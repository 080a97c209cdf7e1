#include "model/lsa.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace mtrank::model {
namespace {

// X M for CSR X [n, T] and dense M [T, q] -> [n, q].
torch::Tensor times(const data::SparseMatrix& x, const torch::Tensor& dense) {
  const torch::Tensor m = dense.contiguous();  // QR's factors come column-major
  const std::int64_t q = m.size(1);
  torch::Tensor out = torch::zeros({x.rows, q});
  const float* mp = m.data_ptr<float>();
  float* op = out.data_ptr<float>();
  for (std::int64_t i = 0; i < x.rows; ++i)
    for (std::int64_t k = x.indptr[i]; k < x.indptr[i + 1]; ++k) {
      const float v = x.values[k];
      const float* row = mp + static_cast<std::int64_t>(x.indices[k]) * q;
      for (std::int64_t c = 0; c < q; ++c) op[i * q + c] += v * row[c];
    }
  return out;
}

// X^T M for CSR X [n, T] and dense M [n, q] -> [T, q].
torch::Tensor transpose_times(const data::SparseMatrix& x, const torch::Tensor& dense) {
  const torch::Tensor m = dense.contiguous();
  const std::int64_t q = m.size(1);
  torch::Tensor out = torch::zeros({x.cols, q});
  const float* mp = m.data_ptr<float>();
  float* op = out.data_ptr<float>();
  for (std::int64_t i = 0; i < x.rows; ++i)
    for (std::int64_t k = x.indptr[i]; k < x.indptr[i + 1]; ++k) {
      const float v = x.values[k];
      float* row = op + static_cast<std::int64_t>(x.indices[k]) * q;
      for (std::int64_t c = 0; c < q; ++c) row[c] += v * mp[i * q + c];
    }
  return out;
}

torch::Tensor orthonormal(const torch::Tensor& y) { return std::get<0>(torch::linalg_qr(y)); }

}  // namespace

torch::Tensor truncated_svd(const data::SparseMatrix& x, std::int64_t dim, int power_iterations, std::uint64_t seed) {
  const std::int64_t limit = std::min(x.rows, x.cols);
  if (dim < 1 || dim > limit)
    throw std::invalid_argument("truncated_svd: dim " + std::to_string(dim) + " must be from 1 to min(items, terms) = " +
                                std::to_string(limit));
  torch::NoGradGuard no_grad;
  const std::int64_t q = std::min(limit, dim + 10);
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  torch::Tensor q_basis = orthonormal(times(x, torch::randn({x.cols, q}, gen, torch::kFloat32)));  // [n, q]
  for (int i = 0; i < power_iterations; ++i)
    q_basis = orthonormal(times(x, orthonormal(transpose_times(x, q_basis))));
  const torch::Tensor b = transpose_times(x, q_basis).t();  // Q^T X [q, T]
  const auto [u_b, s, vh] = torch::linalg_svd(b, false);
  torch::Tensor u = torch::matmul(q_basis, u_b).slice(1, 0, dim);  // [n, dim]
  // Deterministic signs: each column's largest-magnitude entry positive.
  const torch::Tensor largest = u.abs().argmax(0);
  const torch::Tensor signs = torch::sign(u.gather(0, largest.unsqueeze(0))).squeeze(0);
  return (u * (signs + (signs == 0).to(torch::kFloat32))) * s.slice(0, 0, dim);
}

}  // namespace mtrank::model
