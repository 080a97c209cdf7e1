// The gradient-boosted trees baseline (xgboost): categories are given as
// categories, each task trains on its own labelled rows, tuning stops early on
// the validation split, and a seed reproduces a fit.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <sstream>

#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "eval/gbdt_baseline.h"
#include "eval/metrics.h"
#include "test_util.h"

using namespace mtrank;
using mtrank::testing::TempDir;

namespace {

const char* const kConfig = R"(
[[features]]
name = "colour"
type = "categorical"
[[features]]
name = "x"
type = "numeric"
transform = "standardize"
[[tasks]]
name = "buy"
column = "buy"
positive = ["1"]
[[tasks]]
name = "amount"
type = "regression"
column = "amount"
)";

// buy = 1 exactly when the colour is in a fixed half of 30 colours, chosen so
// that no threshold on the colour's id separates them, then flipped with
// probability `flip`; amount = 3x + noise, and missing (empty) on every third row.
std::string make_rows(int rows, std::uint64_t seed, double flip) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> colour(0, 29);
  std::normal_distribution<double> normal(0, 1);
  std::ostringstream out;
  out << "colour,x,buy,amount\n";
  for (int i = 0; i < rows; ++i) {
    const int c = colour(rng);
    const double x = normal(rng);
    const bool buy = ((c * 7919 % 30) < 15) != (std::uniform_real_distribution<double>(0, 1)(rng) < flip);
    out << "c" << c << "," << x << "," << (buy ? 1 : 0) << ",";
    if (i % 3 != 0) out << 3 * x + 0.1 * normal(rng);
    out << "\n";
  }
  return out.str();
}

struct Split {
  data::FeaturizedData train, val, test;
};

}  // namespace

class Gbdt : public ::testing::Test {
 protected:
  void SetUp() override {
    config = parse_config(kConfig, "gbdt.toml");
    pre = std::make_unique<data::Preprocessor>(config);
    pre->fit(dir.write("train.csv", make_rows(3000, 1, 0.1)));
    s.train = data::featurize_file(*pre, dir.file("train.csv"), true);
    s.val = data::featurize_file(*pre, dir.write("val.csv", make_rows(1000, 2, 0.1)), true);
    s.test = data::featurize_file(*pre, dir.write("test.csv", make_rows(1000, 3, 0)), true);
  }
  std::vector<eval::TaskMetrics> metrics(const eval::GbdtResult& r) const {
    return eval::evaluate_tasks(config.tasks, r.predictions, s.test.labels, s.test.mask);
  }
  TempDir dir;
  Config config;
  std::unique_ptr<data::Preprocessor> pre;
  Split s;
};

TEST_F(Gbdt, OneStumpSplitsACategorySetThatNoThresholdSplits) {
  // One round of depth 1: a single split. Only a split on a set of categories
  // (xgboost's partition split, given feature_type "c") separates the classes.
  eval::GbdtOptions o;
  o.max_depths = {1};
  o.max_rounds = 1;
  o.subsample = o.colsample_bytree = 1;
  o.threads = 1;
  const eval::GbdtResult r = eval::fit_gbdt(*pre, config.tasks, s.train, s.val, s.test, o);
  EXPECT_EQ(r.features, 2);
  EXPECT_EQ(r.categorical_features, 1);
  EXPECT_DOUBLE_EQ(metrics(r)[0].auc, 1.0);
  // The best threshold on the category ids (ordered by frequency) is far from that.
  std::vector<float> ids, labels;
  for (std::int64_t i = 0; i < s.test.rows(); ++i) {
    ids.push_back(static_cast<float>(s.test.categorical[i]));
    labels.push_back(s.test.labels[i * 2]);
  }
  const double id_auc = eval::roc_auc(ids, labels);
  EXPECT_LT(std::max(id_auc, 1 - id_auc), 0.8);
}

TEST_F(Gbdt, EachTaskTrainsOnItsLabelledRowsAndStopsEarly) {
  eval::GbdtOptions o;
  o.max_depths = {2, 3};
  o.max_rounds = 400;
  o.early_stopping_rounds = 10;
  o.threads = 1;
  const eval::GbdtResult r = eval::fit_gbdt(*pre, config.tasks, s.train, s.val, s.test, o);
  ASSERT_EQ(r.fits.size(), 2u);
  EXPECT_EQ(r.fits[0].train_rows, 3000);
  EXPECT_EQ(r.fits[1].train_rows, 2000);  // every third amount is missing
  for (const auto& f : r.fits) {
    EXPECT_GT(f.rounds, 0);
    EXPECT_TRUE(f.max_depth == 2 || f.max_depth == 3);
  }
  // With 10% of its labels flipped, the buy task overfits soon: the
  // validation loss stops it long before the cap.
  EXPECT_LT(r.fits[0].rounds, o.max_rounds / 2);
  const auto m = metrics(r);
  EXPECT_GT(m[0].auc, 0.99);  // the test labels are clean
  EXPECT_LT(m[1].rmse, 0.3);  // labels have stddev 3; the noise is 0.1
  EXPECT_NEAR(r.fits[1].val_loss, m[1].rmse, 0.1);
}

TEST_F(Gbdt, ASeedReproducesAFitAndAnotherSeedChangesIt) {
  eval::GbdtOptions o;
  o.max_depths = {3};
  o.max_rounds = 30;
  o.threads = 2;
  o.seed = 5;
  const eval::GbdtResult a = eval::fit_gbdt(*pre, config.tasks, s.train, s.val, s.test, o);
  const eval::GbdtResult b = eval::fit_gbdt(*pre, config.tasks, s.train, s.val, s.test, o);
  EXPECT_EQ(a.predictions, b.predictions);
  o.seed = 6;
  const eval::GbdtResult c = eval::fit_gbdt(*pre, config.tasks, s.train, s.val, s.test, o);
  EXPECT_NE(a.predictions, c.predictions);  // row and column sampling follow the seed
}

TEST(GbdtVersion, IsTheLinkedLibrary) { EXPECT_EQ(eval::xgboost_version().rfind("1.", 0), 0u); }
