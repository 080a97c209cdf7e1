// Next-item evaluation: ranks with exclusions on a hand-checked case, and the
// metrics from ranks equal the registry's on the same lists.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "eval/metric_registry.h"
#include "eval/next_item.h"

using namespace mtrank::eval;

TEST(NextItem, RankLeavesOutPaddingAndTheInputWindow) {
  // ids 0..5; scores: 0 (pad) 9, 1: 0.1, 2: 0.5, 3: 0.9, 4: 0.7, 5: 0.3
  const std::vector<float> s = {9, 0.1f, 0.5f, 0.9f, 0.7f, 0.3f};
  EXPECT_EQ(next_item_rank(s.data(), 6, 2, {}), 2);      // 3 and 4 above it; the pad's 9 does not count
  EXPECT_EQ(next_item_rank(s.data(), 6, 2, {3, 3}), 1);  // 3 is in the input window
  EXPECT_EQ(next_item_rank(s.data(), 6, 3, {}), 0);
  EXPECT_EQ(next_item_rank(s.data(), 6, 4, {4, 1}), 3);  // a left-out target ranks after the 3 kept items (2, 3, 5)
  EXPECT_THROW(next_item_rank(s.data(), 6, 6, {}), std::out_of_range);
  EXPECT_THROW(next_item_rank(s.data(), 6, 0, {}), std::out_of_range);  // padding is no target
  // Ties: items scored equal to the target rank above it, so a constant score earns nothing.
  const std::vector<float> tie = {0, 1, 1, 1};
  EXPECT_EQ(next_item_rank(tie.data(), 4, 2, {}), 2);
  EXPECT_EQ(next_item_rank(tie.data(), 4, 2, {1}), 1);
}

TEST(NextItem, MetricsFromRanksByHand) {
  const std::vector<std::int64_t> ranks = {0, 1, 4, 12};
  EXPECT_DOUBLE_EQ(ndcg_from_ranks(ranks, 5), (1.0 + 1.0 / std::log2(3.0) + 1.0 / std::log2(6.0)) / 4);
  EXPECT_DOUBLE_EQ(recall_from_ranks(ranks, 5), 0.75);
  EXPECT_DOUBLE_EQ(recall_from_ranks(ranks, 1), 0.25);
  EXPECT_DOUBLE_EQ(mrr_from_ranks(ranks), (1.0 + 0.5 + 0.2 + 1.0 / 13) / 4);
  EXPECT_TRUE(std::isnan(ndcg_from_ranks({}, 10)));
}

TEST(NextItem, EqualsTheRegistrysNdcgAndRecallWithOneRelevantItem) {
  // Each user's list: every item scored, label 1 on the target; the registry
  // ranks within groups. Its NDCG@K and Recall@K equal the rank formulas.
  const int n = 7;
  const std::vector<std::vector<float>> users = {{0, 0.2f, 0.9f, 0.1f, 0.5f, 0.3f, 0.8f},
                                                 {0, 0.6f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f}};
  const std::vector<int> targets = {4, 6};
  std::vector<float> scores, labels;
  std::vector<std::uint64_t> groups;
  std::vector<std::int64_t> ranks;
  for (std::size_t u = 0; u < users.size(); ++u) {
    ranks.push_back(next_item_rank(users[u].data(), n, targets[u], {}));
    for (int i = 1; i < n; ++i) {  // padding is not an item
      scores.push_back(users[u][static_cast<std::size_t>(i)]);
      labels.push_back(i == targets[u] ? 1.0f : 0.0f);
      groups.push_back(u);
    }
  }
  const TaskRows rows{scores, labels, groups};
  for (int k : {1, 3, 5}) {
    EXPECT_NEAR(ndcg_at(rows, k), ndcg_from_ranks(ranks, k), 1e-12) << k;
    EXPECT_NEAR(recall_at(rows, k), recall_from_ranks(ranks, k), 1e-12) << k;
  }
  EXPECT_NEAR(mean_reciprocal_rank(rows), mrr_from_ranks(ranks), 1e-12);
}
