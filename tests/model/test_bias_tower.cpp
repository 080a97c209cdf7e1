// The shallow bias tower (model/bias_tower.h): it recovers a known position
// curve from a simulated log, the main model never sees the bias features,
// position dropout replaces the share it is told to, and with the bias
// features missing (serving) the score does not depend on position.
#include <cmath>
#include <map>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/record_reader.h"
#include "data/simulate.h"
#include "model/model.h"
#include "test_util.h"
#include "torch_test_util.h"
#include "train/trainer.h"

using namespace mtrank;
using namespace mtrank::testing;

namespace {

const char *kConfig = R"(
[data]
group_column = "session"
[[features]]
names = ["user", "item"]
type = "categorical"
[[features]]
names = ["position", "device"]
type = "categorical"
bias = true
[[tasks]]
name = "click"
column = "click"
[[tasks]]
name = "like"
column = "like"
where = { column = "click", equals = ["1"] }
[model]
type = "mmoe"
embedding_dim = 8
num_experts = 2
expert_hidden = [16]
tower_hidden = [8]
[model.bias_tower]
hidden = [8]
position_dropout = 0.1
[train]
learning_rate = 0.01
batch_size = 256
epochs = 4
)";

// 40 users x 60 items, each user rating 20 items.
std::string ratings_csv() {
  std::string out = "userId,movieId,rating\n";
  for (int u = 0; u < 40; ++u)
    for (int k = 0; k < 20; ++k) {
      const int i = (u * 7 + k * 3) % 60;
      out += std::to_string(u) + "," + std::to_string(i) + "," +
             std::to_string(0.5 + ((u + 2 * i) % 10) * 0.5) + "\n";
    }
  return out;
}

class BiasTower : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    data::SimulateOptions o;
    o.ratings = dir_->write("ratings.csv", ratings_csv());
    o.out_dir = dir_->file("sim");
    o.sessions = 20000;
    o.positions = 5;
    o.click_model = data::ClickModel::kAdditive; // the bias a tower's added
                                                 // logit models exactly
    o.logger =
        "random"; // every item at every position: the bias is identifiable
    o.title_column = o.year_column = o.genres_column = "";
    o.quiet = true;
    o.mf_epochs = 10;
    data::simulate_impressions(o);
  }
  static void TearDownTestSuite() { delete dir_; }

  struct Run {
    Config config;
    std::unique_ptr<data::Preprocessor> pre;
    std::shared_ptr<model::RankingModel> net;
    data::FeaturizedData train;
  };
  // `tower_keys`: more [model.bias_tower] keys; `model_keys`: more [model] keys.
  static Run prepare(const std::string &tower_keys = "", const std::string &model_keys = "") {
    Run r;
    std::string text = kConfig;
    text.insert(text.find("[train]"), tower_keys);
    text.insert(text.find("[model]\n") + 8, model_keys);
    r.config = parse_config(text, "tower.toml");
    torch::manual_seed(1);
    at::set_num_threads(1);
    r.pre = std::make_unique<data::Preprocessor>(r.config);
    r.pre->fit(dir_->file("sim/train.csv"));
    r.train = data::featurize_file(*r.pre, dir_->file("sim/train.csv"), true);
    r.net = model::create_model(r.config.model, model::input_shape(*r.pre));
    return r;
  }
  static TempDir *dir_;
};
TempDir *BiasTower::dir_ = nullptr;

TEST_F(BiasTower, RecoversTheSimulatedPositionCurve) {
  Run r = prepare();
  train::train_model(*r.net, r.config, r.train, nullptr, {});
  const std::vector<float> bias =
      train::bias_logits(*r.net, r.config, r.train, 0);
  ASSERT_EQ(static_cast<std::int64_t>(bias.size()), r.train.rows());
  // The log's position and the truth's examination, row for row.
  data::RecordReader log(dir_->file("sim/train.csv")),
      truth(dir_->file("sim/train.truth.csv"));
  std::vector<std::string_view> f;
  std::map<int, double> learned, true_log_theta, n;
  for (std::size_t row = 0; log.next(f); ++row) {
    const int position = std::stoi(std::string(f[5]));
    ASSERT_TRUE(truth.next(f));
    learned[position] += bias[row];
    true_log_theta[position] += std::log(std::stod(std::string(f[5])));
    n[position] += 1;
  }
  ASSERT_EQ(n.size(), 5u);
  const double l1 = learned[1] / n[1], t1 = true_log_theta[1] / n[1];
  double previous = 1e9;
  for (int k = 1; k <= 5; ++k) {
    const double l = learned[k] / n[k] - l1, t = true_log_theta[k] / n[k] - t1;
    EXPECT_NEAR(l, t, 0.25)
        << "position " << k; // log theta_5 - log theta_1 = -1.6 at eta = 1
    EXPECT_LT(l, previous) << "position " << k; // falls with position
    previous = l;
  }
}

TEST_F(BiasTower, MainModelIgnoresBiasFeaturesAndServingIgnoresPosition) {
  Run r = prepare();
  r.net->eval();
  torch::NoGradGuard no_grad;
  data::FeaturizedData rows = r.train.slice(0, 64);
  const int slot = model::input_shape(*r.pre).field("position")->slot;
  const std::int64_t position_2 = r.pre->find_field("position")->offset + 2;
  data::FeaturizedData moved = rows;
  for (std::int64_t i = 0; i < moved.rows(); ++i)
    moved.categorical[i * moved.num_categorical() + slot] = position_2;
  model::BatchBuilder b1, b2;
  const model::Batch a = b1.build_range(rows, 0, rows.rows()),
                     b = b2.build_range(moved, 0, moved.rows());
  // The logits differ by the tower's bias alone: the deep part does not read
  // the position.
  const torch::Tensor deep_a =
      r.net->forward(a, nullptr).logits - r.net->bias_logits(a);
  const torch::Tensor deep_b =
      r.net->forward(b, nullptr).logits - r.net->bias_logits(b);
  EXPECT_TRUE(torch::allclose(deep_a, deep_b, 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(r.net->forward(a, nullptr).logits,
                               r.net->forward(b, nullptr).logits));
  // Served (bias features missing): every row gets the empty ids, so the
  // tower adds one constant and the ranking is the deep part's.
  r.pre->read_bias_as_missing(rows);
  model::BatchBuilder b3;
  const model::Batch served = b3.build_range(rows, 0, rows.rows());
  const torch::Tensor served_bias = r.net->bias_logits(served).select(1, 0);
  EXPECT_TRUE(torch::allclose(served_bias, served_bias[0].expand_as(served_bias)));
  EXPECT_TRUE(torch::allclose(r.net->forward(served, nullptr).logits - r.net->bias_logits(served), deep_a, 1e-5, 1e-6));
  // Only the biased task (click, the one without a sample space) gets a bias.
  const torch::Tensor bias = r.net->bias_logits(a);
  EXPECT_TRUE(torch::equal(bias.select(1, 1), torch::zeros({a.size})));
  EXPECT_GT(bias.select(1, 0).abs().sum().item<float>(), 0);
}

TEST_F(BiasTower, TheWidePartLeavesTheBiasFeaturesToTheTower) {
  // With wide = true the wide part reads every sparse id but the bias
  // features': the tower is their only reader, so moving the position moves
  // the logits by the tower's bias alone, whatever the wide weights are.
  Run r = prepare("", "wide = true\n");
  r.net->eval();
  torch::NoGradGuard no_grad;
  bool found = false;
  for (auto &p : r.net->named_parameters())
    if (p.key() == "wide.table") p.value().uniform_(-1, 1), found = true;
  ASSERT_TRUE(found);
  data::FeaturizedData rows = r.train.slice(0, 32), moved = rows;
  const int slot = model::input_shape(*r.pre).field("position")->slot;
  const std::int64_t position_3 = r.pre->find_field("position")->offset + 3;
  for (std::int64_t i = 0; i < moved.rows(); ++i)
    moved.categorical[i * moved.num_categorical() + slot] = position_3;
  model::BatchBuilder b1, b2;
  const model::Batch a = b1.build_range(rows, 0, rows.rows()), b = b2.build_range(moved, 0, moved.rows());
  const torch::Tensor rest_a = r.net->forward(a, nullptr).logits - r.net->bias_logits(a);
  const torch::Tensor rest_b = r.net->forward(b, nullptr).logits - r.net->bias_logits(b);
  EXPECT_TRUE(torch::allclose(rest_a, rest_b, 1e-5, 1e-6));
  // The other sparse fields still count: moving the item moves the wide logit.
  const int item_slot = model::input_shape(*r.pre).field("item")->slot;
  data::FeaturizedData other_item = rows;
  for (std::int64_t i = 0; i < other_item.rows(); ++i)
    other_item.categorical[i * other_item.num_categorical() + item_slot] = r.pre->find_field("item")->offset + 1;
  model::BatchBuilder b3;
  const model::Batch c = b3.build_range(other_item, 0, other_item.rows());
  EXPECT_FALSE(torch::allclose(r.net->forward(c, nullptr).logits - r.net->bias_logits(c), rest_a, 1e-5, 1e-6));
}

TEST_F(BiasTower, PositionDropoutReplacesItsShareInTrainingOnly) {
  Run r = prepare("");
  r.config.model.bias_tower.position_dropout = 0.3;
  r.net = model::create_model(r.config.model, model::input_shape(*r.pre));
  const model::InputShape shape = model::input_shape(*r.pre);
  const model::InputField &position = *shape.field("position");
  const model::InputField &device = *shape.field("device");
  model::BatchBuilder builder;
  const model::Batch batch = builder.build_range(
      r.train, 0, std::min<std::int64_t>(r.train.rows(), 20000));
  ASSERT_EQ(batch.categorical.select(1, position.slot)
                .eq(position.empty_id)
                .sum()
                .item<std::int64_t>(),
            0);
  r.net->train();
  const torch::Tensor ids = r.net->categorical_ids(batch);
  const double share = ids.select(1, position.slot)
                           .eq(position.empty_id)
                           .to(torch::kDouble)
                           .mean()
                           .item<double>();
  EXPECT_NEAR(share, 0.3, 0.02);
  // The device drops out in the same rows: the row reads as served.
  const torch::Tensor dropped = ids.select(1, position.slot).eq(position.empty_id);
  EXPECT_TRUE(torch::equal(ids.select(1, device.slot).eq(device.empty_id), dropped));
  // Nothing else changes.
  const torch::Tensor other =
      torch::ones({ids.size(1)}, torch::kBool)
          .index_fill_(0, torch::tensor({position.slot, device.slot}), false);
  EXPECT_TRUE(
      torch::equal(ids.index({torch::indexing::Slice(), other}),
                   batch.categorical.index({torch::indexing::Slice(), other})));
  r.net->eval();
  EXPECT_TRUE(torch::equal(r.net->categorical_ids(batch), batch.categorical));
}

TEST_F(BiasTower, PalTrainsTheProductAndServesClickGivenSeen) {
  Run r = prepare("kind = \"pal\"\n");
  ASSERT_EQ(r.config.model.bias_tower.kind, "pal");
  // Training: the click logit is the logit of sigmoid(seen) x sigmoid(main),
  // exactly.
  model::BatchBuilder builder;
  const model::Batch batch = builder.build_range(r.train, 0, 256);
  r.net->eval();
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor logits = r.net->forward(batch, nullptr).logits;
    const torch::Tensor log_seen =
        r.net->bias_logits(batch); // PAL: log P(seen)
    // The same weights as an additive tower: its logit is main + seen, so main
    // = logit - seen.
    Run additive = prepare();
    auto pal_params = r.net->named_parameters();
    for (const auto &p : additive.net->named_parameters())
      p.value().copy_(pal_params[p.key()]);
    additive.net->eval();
    const torch::Tensor main = additive.net->forward(batch, nullptr).logits -
                               additive.net->bias_logits(batch);
    EXPECT_TRUE(torch::allclose(
        torch::log_sigmoid(additive.net->bias_logits(batch).select(1, 0)),
        log_seen.select(1, 0)));
    const torch::Tensor product =
        torch::exp(log_seen.select(1, 0)) * torch::sigmoid(main.select(1, 0));
    EXPECT_TRUE(torch::allclose(torch::sigmoid(logits.select(1, 0)), product,
                                1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(logits.select(1, 1),
                                main.select(1, 1))); // like is not biased
  }
  // Trained (at a learning rate where it does not collapse), it predicts
  // clicks.
  r.config.train.learning_rate = 0.002;
  train::train_model(*r.net, r.config, r.train, nullptr, {});
  auto m = train::evaluate(*r.net, r.config, r.train);
  EXPECT_GT(m[0].auc, 0.6);
}

TEST(BiasTowerConfig, MistakesAreNamed) {
  auto error = [](const std::string &text) {
    try {
      parse_config(text, "t.toml");
    } catch (const ConfigError &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string base =
      "[[features]]\nname = \"item\"\ntype = \"categorical\"\n[[tasks]]\nname "
      "= \"click\"\ncolumn = \"click\"\n";
  EXPECT_NE(error(base + "[model.bias_tower]\n")
                .find("no [[features]] entry has bias = true"),
            std::string::npos);
  const std::string with_bias =
      base +
      "[[features]]\nname = \"pos\"\ntype = \"categorical\"\nbias = true\n";
  const std::string numeric_bias = with_bias + "[[features]]\nname = \"rank\"\ntype = \"numeric\"\nbias = true\n";
  EXPECT_NE(error(numeric_bias + "[model.bias_tower]\n").find("'rank' is numeric, not categorical"), std::string::npos);
  EXPECT_EQ(error(numeric_bias + "[model.bias_tower]\nposition_dropout = 0\n"), "no error");
  EXPECT_NE(error(with_bias + "[model.bias_tower]\ntasks = [\"klick\"]\n").find("no task is named 'klick'"),
            std::string::npos);
  EXPECT_NE(error(with_bias + "[[tasks]]\nname = \"t\"\ntype = \"regression\"\ncolumn = \"t\"\n[model.bias_tower]\nkind = \"pal\"\n")
                .find("task 't' is not binary"),
            std::string::npos);
  EXPECT_EQ(error(with_bias + "[model.bias_tower]\n"), "no error");
  const Config c = parse_config(with_bias + "[model.bias_tower]\nkind = \"pal\"\n", "t.toml");
  EXPECT_EQ(c.model.bias_tower.task_indices, std::vector<int>{0});
  // Round trip through the stored config.
  const Config back = parse_config(to_toml(c), "back.toml");
  EXPECT_TRUE(back.model.bias_tower.enabled);
  EXPECT_EQ(back.model.bias_tower.kind, "pal");
  EXPECT_EQ(to_toml(back), to_toml(c));
}

} // namespace
