#include "eval/next_item.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mtrank::eval {

std::int64_t next_item_rank(const float* scores, std::int64_t n, std::int32_t target,
                            const std::vector<std::int32_t>& excluded) {
  if (target < 1 || target >= n)
    throw std::out_of_range("next_item_rank: target " + std::to_string(target) + " is not an item id 1.." +
                            std::to_string(n - 1) + " (0 is padding: a user without a target has none to rank)");
  std::vector<char> out(static_cast<std::size_t>(n), 0);
  out[0] = 1;  // padding
  for (std::int32_t id : excluded)
    if (id >= 0 && id < n) out[static_cast<std::size_t>(id)] = 1;
  std::int64_t kept = 0, higher = 0;
  const float s = scores[target];
  for (std::int64_t i = 0; i < n; ++i) {
    if (out[static_cast<std::size_t>(i)]) continue;
    ++kept;
    if (i != target) higher += scores[i] >= s;  // an equal score ranks above the target
  }
  // Left out, or NaN: after every kept item.
  if (out[static_cast<std::size_t>(target)] || std::isnan(s)) return kept;
  return higher;
}

double ndcg_from_ranks(const std::vector<std::int64_t>& ranks, int k) {
  if (ranks.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (std::int64_t r : ranks)
    if (r < k) sum += 1.0 / std::log2(static_cast<double>(r) + 2.0);
  return sum / static_cast<double>(ranks.size());
}

double recall_from_ranks(const std::vector<std::int64_t>& ranks, int k) {
  if (ranks.empty()) return std::numeric_limits<double>::quiet_NaN();
  double hits = 0;
  for (std::int64_t r : ranks) hits += r < k;
  return hits / static_cast<double>(ranks.size());
}

double mrr_from_ranks(const std::vector<std::int64_t>& ranks) {
  if (ranks.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (std::int64_t r : ranks) sum += 1.0 / (static_cast<double>(r) + 1.0);
  return sum / static_cast<double>(ranks.size());
}

}  // namespace mtrank::eval
