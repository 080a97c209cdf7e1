#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/hash.h"
#include "data/preprocessor.h"
#include "test_util.h"

using namespace mtrank;
using mtrank::data::FeaturizedData;
using mtrank::data::Preprocessor;
using mtrank::testing::TempDir;

TEST(Vocabulary, OrdersByCountThenValueAndAppliesMinCount) {
  data::Vocabulary v;
  for (const char* s : {"b", "a", "c", "b", "a", "b", "d"}) v.count(s);
  v.finalize(2);
  ASSERT_EQ(v.size(), 3);  // OOV + b + a
  EXPECT_EQ(v.lookup("b"), 1);
  EXPECT_EQ(v.lookup("a"), 2);
  EXPECT_EQ(v.lookup("c"), 0);  // below min_count: out of vocabulary
  EXPECT_EQ(v.lookup("never seen"), 0);
}

// The index behind the vocabulary: short values held in its slots, long ones
// compared with the vocabulary's strings, through growth, copies and moves.
TEST(Vocabulary, FindsEveryValueShortAndLongThroughGrowthAndCopies) {
  data::Vocabulary v;
  std::vector<std::string> values;
  for (int i = 0; i < 5000; ++i) {
    values.push_back(std::to_string(i * 7919));                                   // short: held inline
    values.push_back("a value longer than nineteen bytes #" + std::to_string(i));  // long
  }
  values.push_back("");                     // the empty value is a value too
  values.push_back(std::string(19, 'x'));   // exactly the inline limit
  values.push_back(std::string(20, 'x'));   // one past it
  for (const auto& s : values) v.count(s);
  for (const auto& s : values) v.count(s);  // seen twice: found, not added again
  v.finalize(2);
  ASSERT_EQ(v.size(), static_cast<std::int64_t>(values.size()) + 1);
  std::vector<bool> seen(values.size() + 1, false);
  for (const auto& s : values) {
    const std::int64_t id = v.lookup(s);
    ASSERT_GT(id, 0) << s;
    EXPECT_EQ(v.values()[static_cast<std::size_t>(id - 1)], s);
    EXPECT_FALSE(seen[static_cast<std::size_t>(id)]) << s;
    seen[static_cast<std::size_t>(id)] = true;
  }
  EXPECT_EQ(v.lookup("a value longer than nineteen bytes #5000"), 0);
  EXPECT_EQ(v.lookup(std::string(21, 'x')), 0);
  EXPECT_EQ(v.lookup("7918"), 0);
  const data::Vocabulary copy = v;
  data::Vocabulary moved = data::Vocabulary(copy);
  for (const auto& s : {values[0], values[1], values.back()}) {
    EXPECT_EQ(copy.lookup(s), v.lookup(s));
    EXPECT_EQ(moved.lookup(s), v.lookup(s));
  }
}

TEST(QuantileNormalizer, HandComputedEqualFrequencyBuckets) {
  data::QuantileNormalizer q;
  q.fit({8, 7, 6, 5, 4, 3, 2, 1}, 4);  // buckets {1,2} {3,4} {5,6} {7,8}
  EXPECT_EQ(q.boundaries(), (std::vector<double>{2, 4, 6}));
  EXPECT_DOUBLE_EQ(q.transform(1), 0.0);
  EXPECT_DOUBLE_EQ(q.transform(2), 0.0);
  EXPECT_DOUBLE_EQ(q.transform(3), 1.0 / 3);
  EXPECT_DOUBLE_EQ(q.transform(6), 2.0 / 3);
  EXPECT_DOUBLE_EQ(q.transform(8), 1.0);
  EXPECT_DOUBLE_EQ(q.transform(-100), 0.0);  // below training range
  EXPECT_DOUBLE_EQ(q.transform(100), 1.0);   // above
}

TEST(QuantileNormalizer, HeavyTiesFormOneBucket) {
  data::QuantileNormalizer q;
  std::vector<double> v(95, 0.0);
  for (int i = 1; i <= 5; ++i) v.push_back(i * 100.0);
  q.fit(v, 10);  // every decile boundary is 0: zeros -> 0, anything above -> 1
  EXPECT_EQ(q.boundaries(), (std::vector<double>{0}));
  EXPECT_DOUBLE_EQ(q.transform(0), 0.0);
  EXPECT_DOUBLE_EQ(q.transform(100), 1.0);
  q.fit(v, 100);  // percentiles 96..99 separate the tail
  EXPECT_EQ(q.boundaries(), (std::vector<double>{0, 100, 200, 300, 400}));
  EXPECT_DOUBLE_EQ(q.transform(0), 0.0);
  EXPECT_DOUBLE_EQ(q.transform(100), 0.2);
  EXPECT_DOUBLE_EQ(q.transform(500), 1.0);
}

TEST(Hashing, StableAcrossBuildsAndSeeds) {
  // These constants pin the hash function: changing it would silently remap saved models' buckets.
  EXPECT_EQ(data::hash_string("netflix", 0), 15485588058823102527ULL);
  EXPECT_EQ(data::hash_string("netflix", 7), 12326316001841718169ULL);
  EXPECT_NE(data::hash_string("a", 0), data::hash_string("b", 0));
}

namespace {
const char* kConfig = R"(
[data]
missing_values = ["", "NA"]

[[features]]
name = "country"
type = "categorical"
min_count = 2

[[features]]
name = "app"
type = "categorical"
hash_buckets = 16

[[features]]
name = "tags"
type = "multi_hot"
separator = "|"
pooling = "mean"

[[features]]
name = "country_x_app"
type = "cross"
columns = ["country", "app"]
hash_buckets = 8

[[features]]
name = "age"
type = "numeric"
transform = "standardize"

[[tasks]]
name = "click"
column = "click"

[[tasks]]
name = "like"
column = "like"
where = { column = "click", equals = ["1"] }

[[tasks]]
name = "rating"
type = "regression"
column = "rating"
)";

const char* kTrain =
    "country,app,tags,age,click,like,rating\n"
    "us,maps,a|b,10,1,1,4.5\n"
    "us,mail,b,20,0,,3\n"
    "de,maps,,30,1,0,NA\n"
    "fr,\"ma,ps\",a|a|c,NA,0,,2\n";
}  // namespace

class PreprocessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config = parse_config(kConfig, "test.toml");
    train_path = dir.write("train.csv", kTrain);
    pre = std::make_unique<Preprocessor>(config);
    pre->fit(train_path);
  }
  TempDir dir;
  Config config;
  std::string train_path;
  std::unique_ptr<Preprocessor> pre;
};

TEST_F(PreprocessorTest, LayoutAndOffsets) {
  EXPECT_EQ(pre->num_categorical(), 3);  // country, app, cross
  EXPECT_EQ(pre->num_bags(), 1);
  EXPECT_EQ(pre->num_dense(), 1);
  const auto& cats = pre->categorical_fields();
  EXPECT_EQ(cats[0].offset, 0);
  EXPECT_EQ(cats[0].size, 2);  // OOV + "us" (the only value seen twice)
  EXPECT_EQ(cats[1].offset, 2);
  EXPECT_EQ(cats[1].size, 16);
  EXPECT_EQ(cats[2].offset, 18);
  EXPECT_EQ(cats[2].size, 8);
  EXPECT_EQ(pre->bag_fields()[0].offset, 26);
  EXPECT_EQ(pre->bag_fields()[0].size, 4);  // OOV + a, b, c
  EXPECT_EQ(pre->embedding_rows(), 30);
}

TEST_F(PreprocessorTest, FeaturizesExactValues) {
  data::FeaturizedData d = data::featurize_file(*pre, train_path, true);
  ASSERT_EQ(d.rows(), 4);
  // country: "us" -> 1, others out of vocabulary -> 0 (offset 0).
  EXPECT_EQ(d.categorical[0 * 3], 1);
  EXPECT_EQ(d.categorical[2 * 3], 0);
  // hashed app lands in [2, 18), the same value the same bucket.
  EXPECT_EQ(d.categorical[0 * 3 + 1], d.categorical[2 * 3 + 1]);
  EXPECT_EQ(d.categorical[0 * 3 + 1],
            2 + static_cast<std::int64_t>(data::hash_string("maps", config.data.hash_seed) % 16));
  for (int r = 0; r < 4; ++r) {
    EXPECT_GE(d.categorical[r * 3 + 2], 18);
    EXPECT_LT(d.categorical[r * 3 + 2], 26);
  }
  // Multi-hot: "a|b" -> 2 ids with weight 1/2; "" -> empty bag; "a|a|c" -> 3 ids with weight 1/3.
  EXPECT_EQ(d.bag_offsets, (std::vector<std::int64_t>{0, 2, 3, 3, 6}));
  EXPECT_FLOAT_EQ(d.bag_weights[0], 0.5f);
  EXPECT_FLOAT_EQ(d.bag_weights[5], 1.0f / 3);
  // Numeric standardize: values 10, 20, 30 -> mean 20, std sqrt(200/3); missing -> mean -> 0.
  const double sd = std::sqrt(200.0 / 3);
  EXPECT_NEAR(d.dense[0], -10 / sd, 1e-6);
  EXPECT_NEAR(d.dense[2], 10 / sd, 1e-6);
  EXPECT_NEAR(d.dense[3], 0.0, 1e-6);
  // Labels and masks: like only counts where click == 1; rating missing (NA) is masked.
  EXPECT_EQ(d.labels, (std::vector<float>{1, 1, 4.5f, 0, 0, 3, 1, 0, 0, 0, 0, 2}));
  EXPECT_EQ(d.mask, (std::vector<float>{1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1}));
}

TEST_F(PreprocessorTest, UnknownCategoriesMapToOutOfVocabulary) {
  std::string p = dir.write("eval.csv", "country,app,tags,age,click,like,rating\nzz,new,zz|a,5,0,,1\n");
  data::FeaturizedData d = data::featurize_file(*pre, p, true);
  EXPECT_EQ(d.categorical[0], 0);
  EXPECT_EQ(d.bag_ids[0], 26);  // OOV of the tags table
}

TEST_F(PreprocessorTest, SaveLoadJsonRoundTrip) {
  Preprocessor copy(config);
  copy.load_json(nlohmann::json::parse(pre->to_json().dump()));
  data::FeaturizedData a = data::featurize_file(*pre, train_path, true);
  data::FeaturizedData b = data::featurize_file(copy, train_path, true);
  EXPECT_EQ(a.categorical, b.categorical);
  EXPECT_EQ(a.bag_ids, b.bag_ids);
  EXPECT_EQ(a.dense, b.dense);
}

TEST_F(PreprocessorTest, LabelsOptionalForPrediction) {
  std::string p = dir.write("pred.csv", "age,tags,app,country\n1,a,maps,us\n");
  data::FeaturizedData d = data::featurize_file(*pre, p, /*require_labels=*/false);
  EXPECT_EQ(d.rows(), 1);
  EXPECT_EQ(d.mask, (std::vector<float>{0, 0, 0}));
  EXPECT_THROW(data::featurize_file(*pre, p, true), DataError);
}

namespace {
std::string data_error(const Preprocessor& pre, const std::string& path) {
  try {
    data::featurize_file(pre, path, true);
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_F(PreprocessorTest, BadInputErrorsNameFileLineAndColumn) {
  const std::string header = "country,app,tags,age,click,like,rating\n";
  std::string e = data_error(*pre, dir.write("a.csv", header + "us,maps,a,1,0,,1\nus,maps,a,abc,0,,1\n"));
  EXPECT_NE(e.find("a.csv:3: column 4 ('age'): 'abc' is not a finite number"), std::string::npos) << e;
  e = data_error(*pre, dir.write("b.csv", header + "us,maps,a,1,0\n"));
  EXPECT_NE(e.find("b.csv:2: expected 7 fields, found 5"), std::string::npos) << e;
  e = data_error(*pre, dir.write("c.csv", header + "us,maps,a,nan,0,,1\n"));
  EXPECT_NE(e.find("c.csv:2: column 4 ('age'): 'nan' is not a finite number"), std::string::npos) << e;
  e = data_error(*pre, dir.write("d.csv", header + "us,maps,a,inf,0,,1\n"));
  EXPECT_NE(e.find("'inf' is not a finite number"), std::string::npos) << e;
  e = data_error(*pre, dir.write("e.csv", header + "us,maps,a,1,2,,1\n"));
  EXPECT_NE(e.find("e.csv:2: column 5 ('click'): label of binary task 'click' must be 0 or 1"), std::string::npos) << e;
  e = data_error(*pre, dir.write("f.csv", "country,app,tags,click,like,rating\nus,maps,a,0,,1\n"));
  EXPECT_NE(e.find("f.csv:1: missing column 'age' (numeric feature)"), std::string::npos) << e;
  e = data_error(*pre, dir.write("g.csv", ""));
  EXPECT_NE(e.find("g.csv: file is empty"), std::string::npos) << e;
  e = data_error(*pre, dir.write("h.csv", header));
  EXPECT_NE(e.find("h.csv: no data rows"), std::string::npos) << e;
}

TEST_F(PreprocessorTest, SkipPolicyCountsAndStopsPastLimit) {
  Config c = config;
  c.data.on_bad_row = BadRowPolicy::kSkip;
  c.data.max_bad_rows = 2;
  Preprocessor p(c);
  p.fit(train_path);
  const std::string header = "country,app,tags,age,click,like,rating\n";
  data::IngestStats stats;
  data::FeaturizedData d =
      data::featurize_file(p, dir.write("s.csv", header + "us,maps,a,1,0,,1\nbad\nus,maps,a,x,0,,1\nde,m,a,2,1,1,1\n"),
                           true, &stats);
  EXPECT_EQ(d.rows(), 2);
  EXPECT_EQ(stats.skipped, 2);
  std::string e = data_error(p, dir.write("t.csv", header + "bad\nbad\nbad\nus,maps,a,1,0,,1\n"));
  EXPECT_NE(e.find("t.csv:4"), std::string::npos) << e;
  EXPECT_NE(e.find("more than data.max_bad_rows = 2"), std::string::npos) << e;
}

TEST_F(PreprocessorTest, BinaryCacheRoundTripAndCorruption) {
  data::FeaturizedData a = data::featurize_file(*pre, train_path, true);
  const std::string cache = dir.file("cache.bin");
  a.save(cache);
  data::FeaturizedData b = data::FeaturizedData::load(cache);
  EXPECT_EQ(b.rows(), a.rows());
  EXPECT_EQ(b.categorical, a.categorical);
  EXPECT_EQ(b.dense, a.dense);
  EXPECT_EQ(b.bag_offsets, a.bag_offsets);
  EXPECT_EQ(b.bag_weights, a.bag_weights);
  EXPECT_EQ(b.labels, a.labels);
  EXPECT_EQ(b.mask, a.mask);
  std::filesystem::resize_file(cache, std::filesystem::file_size(cache) - 5);
  EXPECT_THROW(data::FeaturizedData::load(cache), DataError);
}

TEST_F(PreprocessorTest, BinaryCacheStoresIdsInFourBytesWhenTheyFit) {
  data::FeaturizedData a = data::featurize_file(*pre, train_path, true);
  a.save(dir.file("narrow.bin"));
  data::FeaturizedData wide = a;
  wide.categorical[1] = std::int64_t{1} << 40;  // one id past 2^31: every id takes 8 bytes
  wide.save(dir.file("wide.bin"));
  const auto id_count = static_cast<std::uintmax_t>(a.categorical.size() + a.bag_ids.size());
  EXPECT_EQ(std::filesystem::file_size(dir.file("wide.bin")) - std::filesystem::file_size(dir.file("narrow.bin")),
            4 * id_count);
  EXPECT_EQ(data::FeaturizedData::load(dir.file("narrow.bin")).categorical, a.categorical);
  EXPECT_EQ(data::FeaturizedData::load(dir.file("narrow.bin")).bag_ids, a.bag_ids);
  EXPECT_EQ(data::FeaturizedData::load(dir.file("wide.bin")).categorical, wide.categorical);
}

TEST_F(PreprocessorTest, CachedLoadEqualsParsing) {
  Config c = config;
  c.data.cache_dir = dir.file("cache");
  Preprocessor p(c), refit(c);
  EXPECT_FALSE(data::fit_preprocessing(p, train_path));     // fitted, then cached
  EXPECT_TRUE(data::fit_preprocessing(refit, train_path));  // loaded: no text parsed
  EXPECT_EQ(refit.to_json(), p.to_json());
  data::IngestStats first, second;
  data::FeaturizedData a = data::load_featurized(p, train_path, true, &first);
  data::FeaturizedData b = data::load_featurized(p, train_path, true, &second);
  EXPECT_FALSE(first.from_cache);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(a.categorical, b.categorical);
  EXPECT_EQ(a.labels, b.labels);
}

TEST(PreprocessorMemo, SameRowsWithAndWithoutTheMemo) {
  // Numeric features only (no categorical one), values repeated and changing
  // from row to row, the same views and equal text in other buffers.
  TempDir dir;
  Config c = parse_config(R"(
[[features]]
names = ["x", "y"]
type = "numeric"
transform = "standardize"
[[tasks]]
name = "click"
column = "click"
)", "memo.toml");
  Preprocessor pre(c);
  pre.fit(dir.write("train.csv", "x,y,click\n1,10,0\n2,20,1\n3,30,0\n"));
  const auto binding = pre.bind({"x", "y"}, "rows", false);
  const std::vector<std::string> xs = {"1", "1", "2", "2", "", "3"}, ys = {"10", "10", "10", "30", "30", ""};
  FeaturizedData plain(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
  FeaturizedData memoized = plain;
  const std::vector<std::string> x_copies = xs;  // equal text at other addresses, alive as long as the memo
  Preprocessor::Memo memo;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    pre.transform(binding, {xs[i], ys[i]}, plain);
    pre.transform(binding, {i % 2 ? std::string_view(x_copies[i]) : std::string_view(xs[i]), ys[i]}, memoized, &memo);
  }
  EXPECT_EQ(memoized.dense, plain.dense);
  EXPECT_EQ(memoized.rows(), 6);
}

TEST(PreprocessorSplit, ItemSideWrittenOnceThenCopiedGivesTheWholeRow) {
  // Every kind of feature, some reading only item columns (item, genre,
  // tags, year), some the context (hour, price) and a cross of both; rows
  // written whole must equal rows whose item side was featurized before, in
  // another order, and copied.
  TempDir dir;
  Config c = parse_config(R"(
[[features]]
names = ["item", "genre", "hour"]
type = "categorical"
[[features]]
name = "tags"
type = "multi_hot"
[[features]]
names = ["year", "price"]
type = "numeric"
transform = "standardize"
[[features]]
name = "genre_x_hour"
type = "cross"
columns = ["genre", "hour"]
hash_buckets = 32
[[features]]
name = "item_x_genre"
type = "cross"
columns = ["item", "genre"]
hash_buckets = 32
[[tasks]]
name = "click"
column = "click"
)", "split.toml");
  Preprocessor pre(c);
  pre.fit(dir.write("train.csv",
                    "item,genre,hour,tags,year,price,click\n"
                    "a,g1,7,x|y,1990,3,0\nb,g2,8,y,2000,4,1\nc,g1,9,,2010,5,0\nd,g3,7,x|z|y,1995,6,1\n"));
  const std::vector<std::string> columns = {"item", "genre", "hour", "tags", "year", "price"};
  const auto binding = pre.bind(columns, "rows", false);
  const std::vector<char> item_columns = {1, 1, 0, 1, 1, 0};
  const Preprocessor::FeatureSplit split = pre.split_features(binding, item_columns);
  // Config order: item, genre, hour, genre_x_hour, item_x_genre; one bag; year, price.
  EXPECT_EQ(split.categorical, (std::vector<char>{1, 1, 0, 0, 1}));
  EXPECT_EQ(split.bag, (std::vector<char>{1}));
  EXPECT_EQ(split.dense, (std::vector<char>{1, 0}));

  const std::vector<std::vector<std::string>> items = {
      {"a", "g1", "x|y", "1990"}, {"b", "g2", "y", "2000"}, {"zz", "g9", "", "1980"}, {"d", "g3", "x|z|y|w", "1995"}};
  FeaturizedData item_rows(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
  const Preprocessor::SplitRow write{&split, nullptr, 0};
  for (const auto& it : items) pre.transform(binding, {it[0], it[1], "", it[2], it[3], ""}, item_rows, nullptr, &write);
  EXPECT_EQ(item_rows.rows(), 4);
  EXPECT_EQ(item_rows.categorical[2], 0);  // hour: not written
  EXPECT_EQ(item_rows.dense[1], 0.0f);     // price: not written

  FeaturizedData whole(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
  FeaturizedData copied = whole;
  const std::vector<std::pair<std::size_t, std::pair<std::string, std::string>>> requests = {
      {3, {"7", "2.5"}}, {0, {"8", ""}}, {2, {"23", "9"}}, {3, {"9", "3"}}, {1, {"7", "4"}}};
  Preprocessor::Memo memo;
  for (const auto& [row, context] : requests) {
    const auto& it = items[row];
    const std::vector<std::string_view> fields = {it[0], it[1], context.first, it[2], it[3], context.second};
    pre.transform(binding, fields, whole);
    const Preprocessor::SplitRow read{&split, &item_rows, static_cast<std::int64_t>(row)};
    pre.transform(binding, fields, copied, &memo, &read);
  }
  EXPECT_EQ(copied.rows(), whole.rows());
  EXPECT_EQ(copied.categorical, whole.categorical);
  EXPECT_EQ(copied.bag_offsets, whole.bag_offsets);
  EXPECT_EQ(copied.bag_ids, whole.bag_ids);
  EXPECT_EQ(copied.bag_weights, whole.bag_weights);
  EXPECT_EQ(copied.dense, whole.dense);
  EXPECT_EQ(copied.mask, whole.mask);
}

namespace {
// One binary task over a label column `y`, one numeric feature `x`.
Config label_config(const std::string& task_extra, const std::string& numeric = "transform = \"standardize\"") {
  return parse_config("[[features]]\nname = \"x\"\ntype = \"numeric\"\n" + numeric +
                          "\n[[tasks]]\nname = \"t\"\ncolumn = \"y\"\n" + task_extra + "\n",
                      "labels.toml");
}
}  // namespace

TEST(Labels, UsualMissingMarkersAreMissingNotNegative) {
  // Issue 13.3: with `positive` set, "NA" used to become a negative.
  TempDir dir;
  const std::string path = dir.write("l.csv", "x,y\n1,yes\n2,no\n3,NA\n4,\n5,?\n6,null\n");
  Preprocessor pre(label_config("positive = [\"yes\"]"));
  pre.fit(path);
  FeaturizedData d = data::featurize_file(pre, path, true);
  EXPECT_EQ(d.labels, (std::vector<float>{1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(d.mask, (std::vector<float>{1, 1, 0, 0, 0, 0}));
  // A 0/1 task reads them as missing too, instead of failing on "NA".
  Preprocessor plain(label_config(""));
  plain.fit(path);
  const std::string numeric = dir.write("n.csv", "x,y\n1,1\n2,NA\n3,0\n");
  d = data::featurize_file(plain, numeric, true);
  EXPECT_EQ(d.mask, (std::vector<float>{1, 0, 1}));
  // A value listed as positive is a label even if it is a usual marker.
  Preprocessor listed(label_config("positive = [\"?\"]"));
  listed.fit(path);
  d = data::featurize_file(listed, path, true);
  EXPECT_EQ(d.mask, (std::vector<float>{1, 1, 0, 0, 1, 0}));
  EXPECT_EQ(d.labels[4], 1.0f);
}

TEST(Labels, WeightColumnScalesEveryTaskMaskAndBadWeightsAreNamed) {
  // data.weight_column: the mask carries the row's weight (0 outside a task's
  // sample space stays 0); a weight that is not a finite number >= 0 is a bad
  // row named by file, line and column.
  TempDir dir;
  const std::string path = dir.write("w.csv", "x,y,c,w\n1,1,1,2.5\n2,0,0,1\n3,1,0,0\n4,NA,1,4\n");
  Config c = parse_config(R"(
[data]
weight_column = "w"
[[features]]
name = "x"
type = "numeric"
[[tasks]]
name = "t"
column = "y"
[[tasks]]
name = "on_c"
column = "y"
where = { column = "c", equals = ["1"] }
)",
                          "w.toml");
  Preprocessor pre(c);
  pre.fit(path);
  FeaturizedData d = data::featurize_file(pre, path, true);
  EXPECT_EQ(d.mask, (std::vector<float>{2.5f, 2.5f, 1, 0, 0, 0, 0, 0}));
  // Prediction files need no weight column, and do not read one that is there.
  const std::string unweighted = dir.write("p.csv", "x\n1\n");
  EXPECT_EQ(data::featurize_file(pre, unweighted, false).rows(), 1);
  EXPECT_EQ(data::featurize_file(pre, dir.write("pw.csv", "x,w\n1,NA\n"), false).rows(), 1);
  // A weight column read as a feature would leak the label (an inverse propensity is 1 on unclicked rows).
  try {
    parse_config("[data]\nweight_column = \"w\"\n[[features]]\nnames = [\"x\", \"w\"]\ntype = \"categorical\"\n"
                 "[[tasks]]\nname = \"t\"\ncolumn = \"y\"\n", "leak.toml");
    ADD_FAILURE() << "a weight column read as a feature was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.weight_column"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("leak"), std::string::npos) << e.what();
  }
  for (const std::string bad : {"-1", "abc", "", "inf"}) {
    const std::string f = dir.write("bad.csv", "x,y,c,w\n1,1,1,1\n2,0,1," + bad + "\n");
    try {
      data::featurize_file(pre, f, true);
      ADD_FAILURE() << "weight '" << bad << "' accepted";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.csv:3"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("column 4"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("data.weight_column"), std::string::npos) << e.what();
    }
  }
  // Training files must have it.
  const std::string missing = dir.write("m.csv", "x,y,c\n1,1,1\n");
  EXPECT_THROW(data::featurize_file(pre, missing, true), DataError);
}

TEST(Labels, PositiveComparisonOnCounts) {
  TempDir dir;
  const std::string path = dir.write("c.csv", "x,y\n1,0\n2,3\n3,1\n4,NA\n");
  Preprocessor pre(label_config("positive = \"> 0\""));
  pre.fit(path);
  FeaturizedData d = data::featurize_file(pre, path, true);
  EXPECT_EQ(d.labels, (std::vector<float>{0, 1, 1, 0}));
  EXPECT_EQ(d.mask, (std::vector<float>{1, 1, 1, 0}));
  const std::string bad = dir.write("b.csv", "x,y\n1,many\n");
  try {
    data::featurize_file(pre, bad, true);
    FAIL() << "a non-number under a comparison must be refused";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("b.csv:2: column 2 ('y'): label 'many' of task 't' is not a finite number "
                                         "in the 32-bit float range (positive = \"> 0\" compares numbers)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Labels, BadLabelMessageSaysWhatEachOptionDoes) {
  // Issue 13.11: a string label in a 0/1 task now mentions `positive`, and
  // says that on_bad_row = "skip" drops the row for every task.
  TempDir dir;
  const std::string path = dir.write("s.csv", "x,y\n1,1\n2,clicked\n");
  Preprocessor pre(label_config(""));
  pre.fit(path);
  try {
    data::featurize_file(pre, path, true);
    FAIL();
  } catch (const DataError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("positive = [\"clicked\"]"), std::string::npos) << m;
    EXPECT_NE(m.find("data.missing_labels"), std::string::npos) << m;
    EXPECT_NE(m.find("data.on_bad_row = \"skip\" to drop bad rows, for every task"), std::string::npos) << m;
  }
}

TEST(NumericFit, OutliersBeyondFloatRangeAreBadRowsAndMomentsStayFinite) {
  // Issue 14.1/14.7: 1e200 in a standardized column made the moments overflow
  // (two values of 1e308 gave mean: null) and training diverge.
  TempDir dir;
  Preprocessor pre(label_config(""));
  try {
    pre.fit(dir.write("o.csv", "x,y\n1,0\n1e200,1\n"));
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("o.csv:3: column 1 ('x'): '1e200' is outside the 32-bit float range"),
              std::string::npos)
        << e.what();
  }
  // Large but representable values: Welford's moments are exact here.
  const std::string big = dir.write("big.csv", "x,y\n1e38,0\n3e38,1\n");
  pre.fit(big);
  const auto& f = pre.dense_fields()[0];
  EXPECT_DOUBLE_EQ(f.mean, 2e38);
  EXPECT_DOUBLE_EQ(f.stddev, 1e38);
  FeaturizedData d = data::featurize_file(pre, big, true);
  EXPECT_EQ(d.dense, (std::vector<float>{-1.0f, 1.0f}));
}

TEST(NumericFit, NonFiniteOrZeroFittedStatisticsAreRefusedAtLoad) {
  // Issue 14.1: stddev = 0 in a fitted preprocessing file made predict write -nan.
  TempDir dir;
  Preprocessor pre(label_config(""));
  pre.fit(dir.write("f.csv", "x,y\n1,0\n2,1\n"));
  for (const char* field : {"stddev", "mean"}) {
    nlohmann::json j = pre.to_json();
    j["numeric"][0][field] = std::string(field) == "stddev" ? 0.0 : 1e308 * 10;  // inf is written as null
    Preprocessor loaded(label_config(""));
    EXPECT_THROW(loaded.load_json(nlohmann::json::parse(j.dump())), ModelError) << field;
  }
  nlohmann::json j = pre.to_json();
  Preprocessor quantiles(label_config("", "transform = \"quantile\""));
  quantiles.fit(dir.write("q.csv", "x,y\n1,0\n2,1\n3,0\n4,1\n"));
  j = quantiles.to_json();
  j["numeric"][0]["boundaries"] = {2.0, 1.0};
  Preprocessor loaded(label_config("", "transform = \"quantile\""));
  EXPECT_THROW(loaded.load_json(j), ModelError);
}

TEST(Header, MissingColumnSuggestsClosestAndListsAll) {
  // Issue 13.10: only the first 12 header names were listed.
  TempDir dir;
  std::string header = "y";
  for (int i = 0; i < 20; ++i) header += ",col" + std::to_string(i);
  header += ",X_value";
  Preprocessor pre(label_config(""));
  try {
    pre.fit(dir.write("h.csv", header + "\n" + "0" + std::string(21, ',') + "\n"));
    FAIL();
  } catch (const DataError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("h.csv:1: missing column 'x' (numeric feature); did you mean"), std::string::npos) << m;
    EXPECT_NE(m.find("The header has 22 columns: y, col0,"), std::string::npos) << m;
    EXPECT_NE(m.find("col19, X_value"), std::string::npos) << m;
  }
  // A column the model reads that appears twice is refused (first-wins was silent).
  try {
    pre.fit(dir.write("d.csv", "x,y,x\n1,0,2\n"));
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("column 'x' (numeric feature) appears twice in the header, as columns 1 and 3"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(PreprocessorTest, RandomCacheCorruptionsAreRefusedNeverCrash) {
  // Issue 14.8: 6 of 60 random corruptions segfaulted eval and train (unchecked
  // interior offsets), and a bad count allocated 4.3 GB first.
  data::FeaturizedData a = data::featurize_file(*pre, train_path, true);
  const std::string cache = dir.file("cache.bin");
  a.save(cache);
  std::string bytes;
  {
    std::ifstream in(cache, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::mt19937 rng(7);
  int refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string damaged = bytes;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    if (damaged == bytes) continue;
    dir.write("bad.bin", damaged);
    try {
      data::FeaturizedData d = data::FeaturizedData::load(dir.file("bad.bin"), pre->embedding_rows());
      ADD_FAILURE() << "trial " << trial << ": a damaged cache loaded";
    } catch (const DataError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 250);
  // A huge count is refused before allocating (the count of the first array sits after the header).
  std::string huge = bytes;
  const std::uint64_t count = std::uint64_t{1} << 39;
  std::memcpy(&huge[8 + 4 + 40], &count, sizeof count);
  dir.write("huge.bin", huge);
  EXPECT_THROW(data::FeaturizedData::load(dir.file("huge.bin")), DataError);
}

TEST(Vocabulary, BytesThatAreNotUtf8RoundTripThroughTheModelFile) {
  // Issue 14.9: one Latin-1 byte stopped training with a bare JSON UTF-8 error.
  TempDir dir;
  Config c = parse_config("[[features]]\nname = \"city\"\ntype = \"categorical\"\n[[tasks]]\nname = \"t\"\ncolumn = \"y\"\n",
                          "latin1.toml");
  const std::string latin1 = "M\xfcnchen", utf8 = "M\xc3\xbcnchen";
  const std::string path = dir.write("l.csv", "city,y\n" + latin1 + ",1\n" + utf8 + ",0\n" + latin1 + ",0\n");
  Preprocessor pre(c);
  pre.fit(path);
  const std::string saved = pre.to_json().dump();  // threw type_error 316 before
  Preprocessor loaded(c);
  loaded.load_json(nlohmann::json::parse(saved));
  FeaturizedData a = data::featurize_file(pre, path, true), b = data::featurize_file(loaded, path, true);
  EXPECT_EQ(a.categorical, b.categorical);
  EXPECT_NE(a.categorical[0], a.categorical[1]);  // the two spellings stay two values
  EXPECT_EQ(a.categorical[0], a.categorical[2]);
  EXPECT_TRUE(data::valid_utf8(utf8));
  EXPECT_FALSE(data::valid_utf8(latin1));
  EXPECT_FALSE(data::valid_utf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(data::valid_utf8("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(data::valid_utf8("\xe2\x82"));      // truncated
  EXPECT_EQ(data::from_hex(data::to_hex(latin1)), latin1);
}

TEST_F(PreprocessorTest, PredictNeverSkipsARow) {
  // Issue 14 (low): predict with on_bad_row = "skip" misaligned output rows with input rows.
  Config c = config;
  c.data.on_bad_row = BadRowPolicy::kSkip;
  Preprocessor p(c);
  p.fit(train_path);
  const std::string path = dir.write("p.csv", "country,app,tags,age\nus,maps,a,1\nus,maps,a,x\n");
  EXPECT_EQ(data::featurize_file(p, path, false).rows(), 1);  // eval and train may skip
  try {
    data::featurize_file(p, path, false, nullptr, false, /*allow_skip=*/false);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("p.csv:3: column 4 ('age'): 'x' is not a finite number (predict never skips"),
              std::string::npos)
        << e.what();
  }
}

TEST(FuzzFindings, LabelBeyondFloatRangeAndEmptyFeatureName) {
  // fuzz/findings/csv-label-beyond-float.csv: 1e39 became an infinite label.
  TempDir dir;
  const std::string path = dir.write("l.csv", "x,y\n1,0\n2,1\n");
  Preprocessor pre(label_config("", "transform = \"standardize\"\n[[tasks]]\nname = \"r\"\ntype = \"regression\"\ncolumn = \"z\""));
  const std::string bad = dir.write("b.csv", "x,y,z\n1,0,1\n2,1,1e39\n");
  pre.fit(dir.write("ok.csv", "x,y,z\n1,0,1\n2,1,3\n"));
  try {
    data::featurize_file(pre, bad, true);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("b.csv:3: column 3 ('z'): label '1e39' of task 'r' is not a finite number in "
                                         "the 32-bit float range"),
              std::string::npos)
        << e.what();
  }
  // fuzz/findings/config-empty-feature-name.toml: names = [""] trained, then its stored config did not load.
  EXPECT_THROW(parse_config("[[features]]\nnames = [\"\"]\ntype = \"categorical\"\n[[tasks]]\nname = \"t\"\ncolumn = \"y\"\n",
                            "empty.toml"),
               ConfigError);
}

TEST(NumericFit, OrderedCategoriesAsNumbers) {
  // Issue 13.13: bands such as "1 - 10%", "11 - 23%" as numbers, by order or by map.
  TempDir dir;
  const std::string path = dir.write("b.csv", "x,y\n1 - 10%,0\n11 - 23%,1\n24 - 50%,1\n,0\n");
  Preprocessor order(label_config("", "transform = \"none\"\nvalue_order = [\"1 - 10%\", \"11 - 23%\", \"24 - 50%\"]"));
  order.fit(path);
  FeaturizedData d = data::featurize_file(order, path, true);
  EXPECT_EQ(d.dense, (std::vector<float>{0, 1, 2, 1}));  // the missing value takes the mean
  Preprocessor map(label_config("", "transform = \"none\"\nvalue_map = { \"1 - 10%\" = 5.5, \"11 - 23%\" = 17, \"24 - 50%\" = 37 }"));
  map.fit(path);
  d = data::featurize_file(map, path, true);
  EXPECT_FLOAT_EQ(d.dense[0], 5.5f);
  EXPECT_FLOAT_EQ(d.dense[2], 37.0f);
  // The stored config keeps the map; an unlisted value is a bad row naming it.
  Config back = parse_config(to_toml(order.config()), "stored.toml");
  EXPECT_EQ(back.features[0].value_map, order.config().features[0].value_map);
  try {
    data::featurize_file(order, dir.write("u.csv", "x,y\n51 - 100%,1\n"), true);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("'51 - 100%' is not one of the feature's value_map / value_order values"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(label_config("", "value_order = [\"a\", \"a\"]"), ConfigError);
  EXPECT_THROW(label_config("", "value_map = { a = \"one\" }"), ConfigError);
}
