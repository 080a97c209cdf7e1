#pragma once
// Latent semantic analysis item vectors (issue 9): the truncated SVD of an
// item x term TF-IDF matrix (data/item_text.h), so items with similar text get
// similar vectors. What `mtrank item-vectors` writes: frozen item vectors
// from text when no pretrained encoder is at hand (none ships in Debian).
#include <cstdint>

#include <torch/torch.h>

#include "data/item_text.h"

namespace mtrank::model {

// The rows' coordinates on the top `dim` singular directions, U_k S_k
// [rows, dim] (what scikit-learn's TruncatedSVD.fit_transform returns), by
// randomized SVD (Halko, Martinsson and Tropp 2011): a Gaussian sketch of
// dim + 10 columns, `power_iterations` QR-normalized power iterations, then
// the exact SVD of the small projected matrix. Each column's sign makes its
// largest-magnitude entry positive, so the result is deterministic for a
// seed. Throws std::invalid_argument when dim exceeds min(rows, cols).
torch::Tensor truncated_svd(const data::SparseMatrix& x, std::int64_t dim, int power_iterations = 5,
                            std::uint64_t seed = 0);

}  // namespace mtrank::model
