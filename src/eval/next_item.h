#pragma once
// Next-item evaluation as LRURec does it (no torch): the target's rank among
// all items by the model's scores at the last position, with the items of the
// input window (and padding, id 0) left out of the ranking. A target that is
// itself left out ranks last. Ties rank the target last among its equals (as
// the metric registry does: a constant score earns nothing).
#include <cstdint>
#include <vector>

namespace mtrank::eval {

// scores: one per item id 0..n-1; excluded: ids left out (repeats are fine).
// The 0-based rank of `target` (1..n-1; 0 is padding, never a target: throws
// std::out_of_range) among the ids not excluded.
std::int64_t next_item_rank(const float* scores, std::int64_t n, std::int32_t target,
                            const std::vector<std::int32_t>& excluded);

// From 0-based ranks: NDCG@K = mean of 1 / log2(rank + 2) over ranks < K (one
// relevant item), Recall@K = share of ranks < K, MRR = mean of 1 / (rank + 1).
double ndcg_from_ranks(const std::vector<std::int64_t>& ranks, int k);
double recall_from_ranks(const std::vector<std::int64_t>& ranks, int k);
double mrr_from_ranks(const std::vector<std::int64_t>& ranks);

}  // namespace mtrank::eval
