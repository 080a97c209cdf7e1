// Item indexes and the Matryoshka funnel (issue 12): exact search on a
// hand-checked case, the approximate indexes against exact search, the
// funnel equal to exact search when it keeps everything and close to it when
// it keeps a shortlist of a Matryoshka-like table, exclusions, bad settings.
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "retrieve/item_index.h"

using namespace mtrank::retrieve;

namespace {

// rows items (row 0 padding) of `dim` features whose j-th feature has
// standard deviation 1 / sqrt(j + 1): like a trained Matryoshka table, the
// leading features carry most of each score.
ItemTable matryoshka_like(std::int64_t rows, std::int64_t dim, bool bias, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  ItemTable t;
  t.rows = rows;
  t.dim = dim;
  t.vectors.resize(static_cast<std::size_t>(rows * dim));
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < dim; ++j)
      t.vectors[static_cast<std::size_t>(i * dim + j)] = normal(rng) / std::sqrt(static_cast<float>(j + 1));
  if (bias)
    for (std::int64_t i = 0; i < rows; ++i) t.bias.push_back(0.3f * normal(rng));
  return t;
}

std::vector<float> queries_like(const ItemTable& t, std::int64_t count, unsigned seed) {
  ItemTable q = matryoshka_like(count, t.dim, false, seed);
  return q.vectors;
}

// Every item's score by brute force, best first (ties by id), item 0 and `exclude` left out.
Hits brute_force(const ItemTable& t, const float* q, std::int64_t width, std::size_t k,
                 const std::vector<std::int64_t>& exclude = {}) {
  Hits all;
  for (std::int64_t i = 1; i < t.rows; ++i) {
    if (std::find(exclude.begin(), exclude.end(), i) != exclude.end()) continue;
    float s = t.bias_of(i);
    for (std::int64_t j = 0; j < width; ++j) s += q[j] * t.row(i)[j];
    all.push_back({i, s});
  }
  std::sort(all.begin(), all.end(), [](const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.item < b.item); });
  all.resize(std::min(k, all.size()));
  return all;
}

}  // namespace

TEST(ItemIndex, ExactSearchRanksAHandCheckedTableWithBiasAtEveryWidth) {
  // Items 1..4 of width 2 (row 0 padding, never returned even with the top score).
  ItemTable t;
  t.rows = 5;
  t.dim = 2;
  t.vectors = {9, 9, /*1*/ 1, 0, /*2*/ 0, 1, /*3*/ 2, -3, /*4*/ -1, 2};
  t.bias = {5, 0, 0.5f, 0, 0};
  const float q[2] = {1, 1};
  // Width 2: item 1: 1, item 2: 1 + 0.5 = 1.5, item 3: -1, item 4: 1. Ties (1 and 4) by either order.
  const auto full = make_index("exact", t)->search(q, 1, 2, 3);
  ASSERT_EQ(full[0].size(), 3u);
  EXPECT_EQ(full[0][0].item, 2);
  EXPECT_FLOAT_EQ(full[0][0].score, 1.5f);
  EXPECT_FLOAT_EQ(full[0][1].score, 1.0f);
  EXPECT_FLOAT_EQ(full[0][2].score, 1.0f);
  // Width 1 reads only the first feature: item 3: 2, item 1: 1, item 2: 0.5, item 4: -1.
  IndexOptions o;
  o.width = 1;
  const auto prefix = make_index("exact", t, o)->search(q, 1, 2, 4);
  ASSERT_EQ(prefix[0].size(), 4u);
  EXPECT_EQ(prefix[0][0].item, 3);
  EXPECT_EQ(prefix[0][1].item, 1);
  EXPECT_EQ(prefix[0][2].item, 2);
  EXPECT_EQ(prefix[0][3].item, 4);
  EXPECT_FLOAT_EQ(prefix[0][2].score, 0.5f);
  // Excluding item 3 (a history item) moves the rest up; asking for more than there are returns what is left.
  const std::vector<std::vector<std::int64_t>> history = {{3}};
  const auto excluded = make_index("exact", t, o)->search(q, 1, 2, 10, &history);
  ASSERT_EQ(excluded[0].size(), 3u);
  EXPECT_EQ(excluded[0][0].item, 1);
}

TEST(ItemIndex, ExactSearchEqualsBruteForceWithPerQueryExclusions) {
  std::vector<std::vector<std::int64_t>> exclude(40);
  for (int i = 0; i < 40; ++i)
    for (int j = 0; j < i; ++j) exclude[static_cast<std::size_t>(i)].push_back(1 + (i * 37 + j * 101) % 3000);
  // Without a bias the full width reads the table's own rows; else a copy of the prefix and the bias.
  for (const auto& [bias, width] : std::vector<std::pair<bool, std::int64_t>>{{true, 8}, {true, 32}, {false, 8}, {false, 32}}) {
    SCOPED_TRACE((bias ? "bias, width " : "no bias, width ") + std::to_string(width));
    const ItemTable t = matryoshka_like(3001, 32, bias, 1);
    const std::vector<float> q = queries_like(t, 40, 2);  // >= 20 queries: faiss takes its sgemm path
    IndexOptions o;
    o.width = width;
    const auto index = make_index("exact", t, o);
    EXPECT_EQ(index->width(), width);
    const auto found = index->search(q.data(), 40, 32, 10, &exclude);
    for (int i = 0; i < 40; ++i) {
      const Hits want = brute_force(t, q.data() + i * 32, width, 10, exclude[static_cast<std::size_t>(i)]);
      // And one query at a time: the sgemv and heap path of a served request.
      const std::vector<std::vector<std::int64_t>> own = {exclude[static_cast<std::size_t>(i)]};
      const Hits alone = index->search(q.data() + i * 32, 1, 32, 10, &own)[0];
      ASSERT_EQ(found[static_cast<std::size_t>(i)].size(), 10u);
      ASSERT_EQ(alone.size(), 10u);
      for (std::size_t r = 0; r < 10; ++r) {
        EXPECT_EQ(found[static_cast<std::size_t>(i)][r].item, want[r].item) << "query " << i << " rank " << r;
        EXPECT_NEAR(found[static_cast<std::size_t>(i)][r].score, want[r].score, 1e-4);
        EXPECT_EQ(alone[r].item, want[r].item) << "one query " << i << " rank " << r;
        EXPECT_NEAR(alone[r].score, want[r].score, 1e-4);
      }
    }
  }
}

TEST(ItemIndex, HnswAndIvfFindWhatExactSearchFinds) {
  const ItemTable t = matryoshka_like(4001, 16, true, 3);
  const std::vector<float> q = queries_like(t, 50, 4);
  const auto truth = make_index("exact", t)->search(q.data(), 50, 16, 10);
  IndexOptions o;
  o.hnsw_ef_search = 256;
  EXPECT_GE(recall_at(make_index("hnsw", t, o)->search(q.data(), 50, 16, 10), truth, 10), 0.97);
  o.hnsw_ef_search = 16;  // a k beyond efSearch is still answered in full
  for (const Hits& hits : make_index("hnsw", t, o)->search(q.data(), 50, 16, 100)) EXPECT_EQ(hits.size(), 100u);
  // Every list probed: IVF is exhaustive, so exactly exact.
  o.ivf_lists = 16;
  o.ivf_probe = 16;
  EXPECT_DOUBLE_EQ(recall_at(make_index("ivf", t, o)->search(q.data(), 50, 16, 10), truth, 10), 1.0);
  o.ivf_probe = 1;  // one list of 16: a real approximation, far from exact
  const double one_list = recall_at(make_index("ivf", t, o)->search(q.data(), 50, 16, 10), truth, 10);
  EXPECT_LT(one_list, 0.9);
  EXPECT_GT(one_list, 0.05);
}

TEST(ItemIndex, FunnelKeepingEverythingIsExactAndAShortlistNearlySo) {
  const ItemTable t = matryoshka_like(5001, 64, true, 5);
  const std::vector<float> q = queries_like(t, 30, 6);
  std::vector<std::vector<std::int64_t>> exclude(30, std::vector<std::int64_t>{1, 2, 3});
  const auto truth = make_index("exact", t)->search(q.data(), 30, 64, 10, &exclude);
  IndexOptions o;
  o.funnel_widths = {8, 32, 64};
  o.funnel_keep = {5000, 5000};
  const auto index = make_index("funnel", t, o);
  EXPECT_EQ(index->width(), 64);
  const auto all = index->search(q.data(), 30, 64, 10, &exclude);
  EXPECT_DOUBLE_EQ(recall_at(all, truth, 10), 1.0);
  for (int i = 0; i < 30; ++i)  // rescored to the full width's exact scores
    for (std::size_t r = 0; r < 10; ++r)
      EXPECT_NEAR(all[static_cast<std::size_t>(i)][r].score, truth[static_cast<std::size_t>(i)][r].score, 1e-4);
  o.funnel_keep = {500, 100};  // 10% of the catalog at width 8, then 100 at width 32
  const auto shortlist = make_index("funnel", t, o)->search(q.data(), 30, 64, 10, &exclude);
  const double recall = recall_at(shortlist, truth, 10);
  EXPECT_GE(recall, 0.9);
  for (const Hits& hits : shortlist) {
    ASSERT_EQ(hits.size(), 10u);
    for (const Hit& h : hits) EXPECT_GT(h.item, 3);  // exclusions hold through every stage
  }
  // The same funnel over an HNSW first stage.
  o.funnel_first = "hnsw";
  EXPECT_GE(recall_at(make_index("funnel", t, o)->search(q.data(), 30, 64, 10, &exclude), truth, 10), recall - 0.05);
}

TEST(ItemIndex, BadSettingsAreRefusedWithWhatToFix) {
  const ItemTable t = matryoshka_like(101, 16, false, 7);
  const auto message = [&](const std::string& kind, const IndexOptions& o) {
    try {
      make_index(kind, t, o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("annoy", {}).find("exact, hnsw, ivf, funnel"), std::string::npos);
  IndexOptions o;
  o.width = 17;
  EXPECT_NE(message("exact", o).find("1..16"), std::string::npos);
  o = {};
  o.funnel_widths = {4, 8};
  o.funnel_keep = {10};
  EXPECT_NE(message("funnel", o).find("table's width 16"), std::string::npos);
  o.funnel_widths = {4, 16};
  o.funnel_keep = {};
  EXPECT_NE(message("funnel", o).find("one size per stage"), std::string::npos);
  o.funnel_widths = {8, 4, 16};
  o.funnel_keep = {10, 5};
  EXPECT_NE(message("funnel", o).find("increase"), std::string::npos);
  o = {};
  o.ivf_lists = 500;
  EXPECT_NE(message("ivf", o).find("500 lists for 100 items"), std::string::npos);
  // Defaults hold on a tiny catalog; k of 0, negative or beyond the items is answered.
  const ItemTable tiny = matryoshka_like(6, 16, true, 8);
  const std::vector<float> tq = queries_like(tiny, 2, 9);
  IndexOptions funnel;
  funnel.funnel_widths = {4, 16};
  funnel.funnel_keep = {3};
  for (const std::string kind : {"exact", "hnsw", "ivf", "funnel"}) {
    const auto index = make_index(kind, tiny, funnel);
    EXPECT_EQ(index->search(tq.data(), 2, 16, 100)[0].size(), 5u) << kind;
    EXPECT_EQ(index->search(tq.data(), 2, 16, std::numeric_limits<std::int64_t>::max())[1].size(), 5u) << kind;
    EXPECT_TRUE(index->search(tq.data(), 2, 16, 0)[0].empty()) << kind;
    EXPECT_TRUE(index->search(tq.data(), 2, 16, -3)[1].empty()) << kind;
  }
  const auto index = make_index("exact", t);
  const float q[8] = {};
  EXPECT_THROW(index->search(q, 1, 8, 5), std::invalid_argument);  // queries narrower than the index
}

TEST(ItemIndex, NaNScoresNeverBreakTheOrder) {
  // A model with broken weights: item 2's second feature is NaN, so its
  // width-1 score is a number and its full score NaN. Exact search (one
  // query) leaves it out; the funnel shortlists it at width 1 and then ranks
  // it last (its comparator once had no order with NaN), and neither crashes.
  ItemTable t;
  t.rows = 5;
  t.dim = 2;
  t.vectors = {0, 0, /*1*/ 1, 0, /*2*/ 1.5f, std::nanf(""), /*3*/ 2, 0, /*4*/ 0, 3};
  const float q[2] = {1, 1};
  const Hits exact = make_index("exact", t)->search(q, 1, 2, 4)[0];
  ASSERT_EQ(exact.size(), 3u);
  EXPECT_EQ(exact[0].item, 4);
  EXPECT_EQ(exact[1].item, 3);
  EXPECT_EQ(exact[2].item, 1);
  IndexOptions o;
  o.funnel_widths = {1, 2};
  o.funnel_keep = {4};
  const Hits funnel = make_index("funnel", t, o)->search(q, 1, 2, 4)[0];
  ASSERT_EQ(funnel.size(), 4u);
  EXPECT_EQ(funnel[0].item, 4);
  EXPECT_EQ(funnel[1].item, 3);
  EXPECT_EQ(funnel[2].item, 1);
  EXPECT_EQ(funnel[3].item, 2);  // NaN last
  EXPECT_TRUE(std::isnan(funnel[3].score));
}
