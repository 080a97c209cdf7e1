// Out-of-core training data: featurizing into blocks on disk gives exactly the
// rows of featurizing in memory; a store is checked when opened and read; a
// streamed epoch visits every row once, in batches, holding a bounded buffer.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "config/config.h"
#include "data/block_store.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/training_rows.h"
#include "test_util.h"

using namespace mtrank;
using namespace mtrank::testing;

namespace {

const char* kConfig = R"(
[data]
group_column = "user"
weight_column = "w"
[[features]]
name = "user"
type = "categorical"
[[features]]
name = "tags"
type = "multi_hot"
[[features]]
name = "x"
type = "numeric"
transform = "none"
[[tasks]]
name = "click"
column = "click"
[[tasks]]
name = "like"
column = "like"
where = { column = "click", equals = ["1"] }
)";

class BlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config = parse_config(kConfig, "blocks.toml");
    std::string csv = "user,tags,x,w,click,like\n";
    std::mt19937 rng(3);
    for (int i = 0; i < 103; ++i) {
      std::string tags;
      for (int k = 0; k < static_cast<int>(rng() % 4); ++k) tags += (k ? "|" : "") + std::string(1, 'a' + rng() % 5);
      const int click = rng() % 3 == 0;
      csv += "u" + std::to_string(rng() % 9) + "," + tags + "," + std::to_string(i) + "," +
             std::to_string(0.5 + (i % 3)) + "," + std::to_string(click) + "," +
             (click ? std::to_string(rng() % 2) : "") + "\n";
    }
    path = dir.write("train.csv", csv);
    pre = std::make_unique<data::Preprocessor>(config);
    pre->fit(path);
  }
  data::BlockStore spill_all(std::int64_t block_rows, std::uint64_t spill_bytes, data::FeaturizedData* rest) {
    std::optional<data::BlockStore> store;
    data::IngestStats stats;
    *rest = data::featurize_file_spilling(
        *pre, path, true, spill_bytes, block_rows,
        [&](data::FeaturizedData& block) {
          if (!store) store = data::BlockStore::create(dir.file("store"), pre->num_categorical(), pre->num_bags(),
                                                       pre->num_dense(), pre->num_tasks());
          store->add(block);
        },
        &stats, false);
    EXPECT_EQ(stats.rows, 103);
    EXPECT_TRUE(store.has_value());
    store->finish();
    return data::BlockStore::open(dir.file("store"));
  }
  TempDir dir;
  Config config;
  std::string path;
  std::unique_ptr<data::Preprocessor> pre;
};

void expect_same_rows(const data::FeaturizedData& a, const data::FeaturizedData& b) {
  ASSERT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.categorical, b.categorical);
  EXPECT_EQ(a.dense, b.dense);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_EQ(a.bag_offsets, b.bag_offsets);
  EXPECT_EQ(a.bag_ids, b.bag_ids);
  EXPECT_EQ(a.bag_weights, b.bag_weights);
  EXPECT_EQ(a.groups, b.groups);
}

}  // namespace

TEST_F(BlockStoreTest, BlocksHoldExactlyTheRowsOfFeaturizingInMemory) {
  const data::FeaturizedData whole = data::featurize_file(*pre, path, true);
  data::FeaturizedData rest;
  const data::BlockStore store = spill_all(10, 0, &rest);  // everything to disk, 10 rows a block
  EXPECT_EQ(rest.rows(), 0);
  ASSERT_EQ(store.blocks(), 11u);  // 10 x 10 + 3
  EXPECT_EQ(store.block_rows(10), 3);
  data::FeaturizedData joined(pre->num_categorical(), pre->num_bags(), pre->num_dense(), pre->num_tasks());
  for (std::size_t i = 0; i < store.blocks(); ++i) joined.append(store.read(i, pre->embedding_rows()));
  expect_same_rows(joined, whole);
  EXPECT_EQ(store.rows(), 103);
  EXPECT_EQ(store.bytes(), whole.bytes() + 8 * (store.blocks() - 1));  // each block's bag offsets start at 0
  // The manifest's label statistics are those of the whole data.
  const auto counts = data::count_labels(whole);
  for (std::size_t t = 0; t < counts.size(); ++t) {
    EXPECT_EQ(store.label_counts()[t].positive, counts[t].positive);
    EXPECT_EQ(store.label_counts()[t].negative, counts[t].negative);
    EXPECT_EQ(store.label_counts()[t].unlabelled, counts[t].unlabelled);
    double label = 0, weight = 0;
    for (std::int64_t r = 0; r < whole.rows(); ++r) {
      const std::size_t i = static_cast<std::size_t>(r * 2) + t;
      label += static_cast<double>(whole.mask[i]) * whole.labels[i];
      weight += whole.mask[i];
    }
    EXPECT_DOUBLE_EQ(store.label_sums()[t], label);
    EXPECT_DOUBLE_EQ(store.weight_sums()[t], weight);
  }
  // select and slice agree; append undoes a split.
  std::vector<std::int64_t> rows{5, 0, 102, 5};
  const data::FeaturizedData picked = whole.select(rows.data(), 4);
  expect_same_rows(picked.slice(0, 1), whole.slice(5, 6));
  expect_same_rows(picked.slice(2, 3), whole.slice(102, 103));
}

TEST_F(BlockStoreTest, SpillingStartsAtTheBudgetAndSplitsWhatWasInMemoryIntoBlocks) {
  const data::FeaturizedData whole = data::featurize_file(*pre, path, true);
  // Under the budget: all in memory, no block written.
  data::FeaturizedData rest = data::featurize_file_spilling(
      *pre, path, true, 4 * whole.bytes(), 16, [&](data::FeaturizedData&) { FAIL(); }, nullptr, false);
  expect_same_rows(rest, whole);
  // Over it after about 30 rows: those go out in blocks of 16, then every later row.
  const std::uint64_t budget = whole.slice(0, 30).bytes();
  const data::BlockStore store = spill_all(16, budget, &rest);
  EXPECT_EQ(rest.rows(), 0);
  data::FeaturizedData joined(pre->num_categorical(), pre->num_bags(), pre->num_dense(), pre->num_tasks());
  for (std::size_t i = 0; i < store.blocks(); ++i) {
    EXPECT_LE(store.block_rows(i), 16) << i;
    joined.append(store.read(i));
  }
  expect_same_rows(joined, whole);
}

TEST_F(BlockStoreTest, AnUnfinishedOrDamagedStoreIsRefusedNamingIt) {
  data::FeaturizedData rest;
  spill_all(25, 0, &rest);
  const std::string store = dir.file("store");
  {  // a damaged block: its checksum fails when read
    std::fstream f(store + "/block-000001.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  const data::BlockStore opened = data::BlockStore::open(store);
  EXPECT_NO_THROW(opened.read(0));
  try {
    opened.read(1);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("block-000001.bin"), std::string::npos) << e.what();
  }
  std::filesystem::remove(store + "/block-000002.bin");
  EXPECT_THROW(data::BlockStore::open(store), DataError);  // a block is missing
  std::filesystem::remove(store + "/manifest.json");
  try {
    data::BlockStore::open(store);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("not a finished store"), std::string::npos) << e.what();
  }
}

TEST_F(BlockStoreTest, AStreamedEpochVisitsEveryRowOnceInBatchesWithABoundedBuffer) {
  data::FeaturizedData rest;
  const data::BlockStore store = spill_all(10, 0, &rest);
  const data::FeaturizedData whole = data::featurize_file(*pre, path, true);
  for (const std::int64_t buffer : {1, 25, 1000}) {
    data::StreamedRows rows(store, buffer, pre->embedding_rows());
    std::mt19937_64 rng(7);
    std::vector<std::int64_t> orders[2];
    for (auto& seen : orders) {
      std::vector<std::int64_t> sizes;
      rows.epoch(rng, 8, [&](const data::FeaturizedData& d, const std::int64_t* order, std::int64_t n) {
        sizes.push_back(n);
        for (std::int64_t i = 0; i < n; ++i) seen.push_back(static_cast<std::int64_t>(d.dense[order[i]]));  // x = row
      });
      std::vector<std::int64_t> sorted = seen;
      std::sort(sorted.begin(), sorted.end());
      std::vector<std::int64_t> all(103);
      std::iota(all.begin(), all.end(), 0);
      EXPECT_EQ(sorted, all) << buffer;  // every row once
      for (std::size_t i = 0; i + 1 < sizes.size(); ++i) EXPECT_EQ(sizes[i], 8) << buffer;  // full batches but the last
    }
    EXPECT_NE(orders[0], orders[1]);  // another order each epoch
    // Memory: the buffer, plus a block, plus fewer than a batch left over.
    EXPECT_LE(rows.peak_rows(), std::max<std::int64_t>(buffer, 1) + 10 + 7) << buffer;
  }
}

TEST_F(BlockStoreTest, TheSameSeedStreamsTheSameOrderAndAnErrorMidEpochStopsCleanly) {
  data::FeaturizedData rest;
  const data::BlockStore store = spill_all(10, 0, &rest);
  const auto order_of = [&](std::uint64_t seed) {
    data::StreamedRows rows(store, 25, -1);
    std::mt19937_64 rng(seed);
    std::vector<float> seen;
    rows.epoch(rng, 8, [&](const data::FeaturizedData& d, const std::int64_t* order, std::int64_t n) {
      for (std::int64_t i = 0; i < n; ++i) seen.push_back(d.dense[order[i]]);
    });
    return seen;
  };
  EXPECT_EQ(order_of(5), order_of(5));  // a resumed run (the RNG state restored) draws the same batches
  EXPECT_NE(order_of(5), order_of(6));
  // The trainer throws from a batch (a diverged loss): the read-ahead thread stops, nothing hangs.
  data::StreamedRows rows(store, 25, -1);
  std::mt19937_64 rng(1);
  int batches = 0;
  EXPECT_THROW(rows.epoch(rng, 8,
                          [&](const data::FeaturizedData&, const std::int64_t*, std::int64_t) {
                            if (++batches == 2) throw std::runtime_error("diverged");
                          }),
               std::runtime_error);
}

// One data set in several files (a glob or a list) is the concatenated file:
// the same fitted preprocessing, the same rows, also through the caches; a file
// more that the pattern matches is another data set for the caches.
TEST_F(BlockStoreTest, SeveralFilesAreOneDataSet) {
  std::ifstream in(path);
  std::string header, line;
  std::getline(in, header);
  std::string parts[3];
  for (int i = 0; std::getline(in, line); ++i) parts[i < 40 ? 0 : i < 41 ? 1 : 2] += line + "\n";
  std::filesystem::create_directories(dir.file("parts"));
  for (int p = 0; p < 3; ++p) dir.write("parts/part-" + std::to_string(p + 1) + ".csv", header + "\n" + parts[p]);
  const FileList glob{dir.file("parts/part-*.csv")};
  const FileList list{dir.file("parts/part-1.csv"), dir.file("parts/part-2.csv"), dir.file("parts/part-3.csv")};
  for (const FileList& files : {glob, list}) {
    data::Preprocessor fitted(config);
    fitted.fit(files);
    EXPECT_EQ(fitted.to_json(), pre->to_json());
    expect_same_rows(data::featurize_file(fitted, files, true), data::featurize_file(*pre, path, true));
  }
  // Through the binary cache and the block store: the same rows, and a part
  // added later is seen, not served from the cache of the old parts.
  Config cached = config;
  cached.data.cache_dir = dir.file("cache");
  data::Preprocessor pre_cached(cached);
  EXPECT_FALSE(data::fit_preprocessing(pre_cached, glob));
  EXPECT_TRUE(data::fit_preprocessing(pre_cached, glob));
  expect_same_rows(data::load_featurized(pre_cached, glob, true), data::featurize_file(*pre, path, true));
  data::IngestStats stats;
  expect_same_rows(data::load_featurized(pre_cached, glob, true, &stats), data::featurize_file(*pre, path, true));
  EXPECT_TRUE(stats.from_cache);
  const data::TrainingSet streamed = data::load_training_set(pre_cached, glob, 0, "", "", &stats, false);
  ASSERT_TRUE(streamed.blocks.has_value());
  EXPECT_EQ(streamed.blocks->rows(), 103);
  dir.write("parts/part-4.csv", header + "\nu1,a,7,1.5,1,1\n");
  expect_same_rows(data::load_featurized(pre_cached, glob, true, &stats).slice(0, 103),
                   data::featurize_file(*pre, path, true));
  EXPECT_FALSE(stats.from_cache);
  EXPECT_EQ(stats.rows, 104);
  EXPECT_FALSE(data::fit_preprocessing(pre_cached, glob));
}
