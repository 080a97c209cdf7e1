// Training: row optimizers, the multitask loss, the phased trainer, end to end runs, divergence.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/synth.h"
#include "model/model.h"
#include "model/model_dir.h"
#include "train/communicator.h"
#include "train/row_optimizer.h"
#include "train/trainer.h"
#include "test_util.h"
#include "torch_test_util.h"

using namespace mtrank;
using mtrank::testing::TempDir;
using namespace mtrank::testing;

TEST(RowOptimizer, UpdatesOnlyTouchedRowsLikeDenseAdamOnFirstStep) {
  torch::manual_seed(0);
  torch::Tensor table = torch::randn({10, 3});
  torch::Tensor reference = table.clone().requires_grad_(true);
  train::RowOptimizer opt(table, "adam", 0.1, 0.0);
  torch::Tensor ids = torch::tensor({1, 4, 7}, torch::kInt64);
  torch::Tensor grad = torch::randn({3, 3});
  const torch::Tensor before = table.clone();
  opt.step(ids, grad);
  // Dense Adam on a full-table gradient that is zero outside the rows.
  torch::optim::Adam dense({reference}, torch::optim::AdamOptions(0.1));
  reference.mutable_grad() = torch::zeros({10, 3}).index_copy(0, ids, grad);
  dense.step();
  for (int r : {0, 2, 3, 5, 6, 8, 9}) EXPECT_TRUE(torch::equal(table[r], before[r])) << r;
  for (int r : {1, 4, 7}) EXPECT_TRUE(torch::allclose(table[r], reference.detach()[r], 1e-6, 1e-6)) << r;
}

TEST(RowOptimizer, AdagradHandComputed) {
  torch::Tensor table = torch::zeros({2, 1});
  train::RowOptimizer opt(table, "adagrad", 0.5, 0.0);
  opt.step(torch::tensor({1}, torch::kInt64), torch::tensor({{2.0f}}));
  // acc = 4, w = 0 - 0.5 * 2 / (sqrt(4) + 1e-10) = -0.5
  EXPECT_NEAR(table[1].item<float>(), -0.5f, 1e-6);
  opt.step(torch::tensor({1}, torch::kInt64), torch::tensor({{2.0f}}));
  // acc = 8, w = -0.5 - 0.5 * 2 / sqrt(8)
  EXPECT_NEAR(table[1].item<float>(), -0.5f - 1.0f / std::sqrt(8.0f), 1e-6);
  EXPECT_EQ(table[0].item<float>(), 0.0f);
}

TEST(MultitaskLoss, IgnoresRowsOutsideTheSampleSpace) {
  std::vector<TaskConfig> tasks(2);
  tasks[1].type = TaskType::kRegression;
  tasks[1].weight = 0.5;
  torch::Tensor logits = torch::tensor({{0.0f, 1.0f}, {2.0f, 3.0f}, {-1.0f, 5.0f}});
  torch::Tensor labels = torch::tensor({{1.0f, 2.0f}, {0.0f, 0.0f}, {1.0f, 100.0f}});
  torch::Tensor mask = torch::tensor({{1.0f, 1.0f}, {1.0f, 0.0f}, {0.0f, 1.0f}});
  std::vector<double> per_task;
  const double total = train::multitask_loss(logits, labels, mask, tasks, &per_task).item<double>();
  auto bce = [](double z, double y) { return std::log1p(std::exp(-z)) + (1 - y) * z; };
  const double binary = (bce(0, 1) + bce(2, 0)) / 2;     // row 3 is outside the click sample space
  const double regression = ((1 - 2) * (1 - 2) + (5 - 100) * (5 - 100)) / 2.0;  // row 2 masked
  EXPECT_NEAR(per_task[0], binary, 1e-5);
  EXPECT_NEAR(per_task[1], regression, 1e-3);
  EXPECT_NEAR(total, binary + 0.5 * regression, 1e-3);
  // Changing a masked label changes nothing.
  labels[1][1] = 1e6;
  EXPECT_NEAR(train::multitask_loss(logits, labels, mask, tasks).item<double>(), total, 1e-3);
}

TEST(MultitaskLoss, ScheduleAndUncertaintyWeightingByHand) {
  // The trainer's step calls multitask_loss with the epoch and its learned log-variances.
  std::vector<TaskConfig> tasks(2);
  tasks[0].weight = 2;
  tasks[0].weight_gamma = 0.5;
  tasks[1].type = TaskType::kRegression;
  torch::Tensor logits = torch::tensor({{0.0f, 1.0f}, {1.0f, 3.0f}});
  torch::Tensor labels = torch::tensor({{1.0f, 2.0f}, {0.0f, 1.0f}});
  torch::Tensor mask = torch::ones({2, 2});
  std::vector<double> l;
  train::multitask_loss(logits, labels, mask, tasks, &l);
  // Epoch index 2: w_0 = 2 * 0.5^2 = 0.5, w_1 = 1.
  EXPECT_NEAR(train::multitask_loss(logits, labels, mask, tasks, nullptr, 2).item<double>(), 0.5 * l[0] + l[1], 1e-5);
  const torch::Tensor s = torch::tensor({0.3f, -0.2f});
  EXPECT_NEAR(train::multitask_loss(logits, labels, mask, tasks, nullptr, 0, s).item<double>(),
              2 * (std::exp(-0.3) * l[0] + 0.3) + (std::exp(0.2) * l[1] - 0.2), 1e-5);
}

// End to end on the synthetic impression log: featurize, train, check it learned,
// save, reload, and predict identically.
class EndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = mtrank::testing::new_ranking_log_dir(/*rows=*/24000, /*seed=*/5, /*users=*/200, /*items=*/100,
                                                /*train_rows=*/20000);
  }
  static void TearDownTestSuite() { delete dir_; }

  static Config config() {
    Config c = parse_config(R"(
[[features]]
names = ["user_id", "item_id", "item_category", "device", "hour"]
type = "categorical"
[[features]]
name = "user_interests"
type = "multi_hot"
[[features]]
name = "price"
type = "numeric"
log1p = true
[[tasks]]
name = "click"
column = "click"
[[tasks]]
name = "like"
column = "like"
where = { column = "click", equals = ["1"] }
[model]
embedding_dim = 8
num_experts = 3
expert_hidden = [16]
tower_hidden = [8]
[train]
learning_rate = 0.003
batch_size = 256
epochs = 3
threads = 1
)",
                            "e2e.toml");
    return c;
  }

  static TempDir* dir_;
};
TempDir* EndToEnd::dir_ = nullptr;

TEST_F(EndToEnd, LearnsWellAboveChanceAndRoundTrips) {
  Config c = config();
  torch::manual_seed(1);
  at::set_num_threads(1);
  data::Preprocessor pre(c);
  pre.fit(dir_->file("train.csv"));
  data::FeaturizedData train = data::featurize_file(pre, dir_->file("train.csv"), true);
  data::FeaturizedData test = data::featurize_file(pre, dir_->file("test.csv"), true);
  auto net = model::create_model(c.model, model::input_shape(pre));
  train::TrainReport report = train::train_model(*net, c, train, nullptr, {});
  EXPECT_EQ(report.epochs.size(), 3u);
  EXPECT_LT(report.epochs.back().train_loss, report.epochs.front().train_loss);
  train::Predictions before;
  auto m = train::evaluate(*net, c, test, &before);
  EXPECT_GT(m[0].auc, 0.62) << "click";  // chance is 0.5; the generator's signal allows ~0.65
  EXPECT_GT(m[1].auc, 0.70) << "like";
  EXPECT_GT(m[1].count, 500);
  EXPECT_LT(m[1].count, test.rows());  // like only counts clicked rows
  EXPECT_NEAR(m[0].mean_prediction, m[0].positive_rate, 0.05);  // roughly calibrated
  ASSERT_EQ(before.expert_utilization.size(), 2u);

  const std::string model_dir = dir_->file("model");
  model::save_model_dir(model_dir, c, pre, *net, {{"format", "mtrank-model"}, {"version", 1}});
  EXPECT_FALSE(std::filesystem::exists(model_dir + ".tmp-" + std::to_string(::getpid())));
  model::LoadedModel loaded = model::load_model_dir(model_dir);
  data::FeaturizedData test2 = data::featurize_file(*loaded.preprocessor, dir_->file("test.csv"), true);
  EXPECT_EQ(test2.categorical, test.categorical);
  train::Predictions after = train::predict(*loaded.net, loaded.config, test2);
  EXPECT_EQ(after.values, before.values);  // bit-identical
}

TEST_F(EndToEnd, SameSeedSameModel) {
  Config c = config();
  c.train.epochs = 1;
  at::set_num_threads(1);
  std::vector<float> runs[2];
  for (auto& out : runs) {
    torch::manual_seed(c.train.seed);
    data::Preprocessor pre(c);
    pre.fit(dir_->file("train.csv"));
    data::FeaturizedData train = data::featurize_file(pre, dir_->file("train.csv"), true);
    auto net = model::create_model(c.model, model::input_shape(pre));
    train::train_model(*net, c, train, nullptr, {});
    out = train::predict(*net, c, train.slice(0, 500)).values;
  }
  EXPECT_EQ(runs[0], runs[1]);
}

namespace {
std::vector<torch::Tensor> parameters_of(model::RankingModel& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net.parameters()) out.push_back(p.detach().clone());
  return out;
}
}  // namespace

TEST(Trainer, PhasesOneByOneEqualAStep) {
  Config c;
  c.model = small_model();
  c.tasks.resize(2);
  c.train.clip_grad_norm = 0.5;  // the clipping phase does something
  at::set_num_threads(1);
  RandomBatch rb(32);
  torch::manual_seed(4);
  auto a = model::create_model(c.model, small_shape());
  torch::manual_seed(4);
  auto b = model::create_model(c.model, small_shape());
  train::Trainer ta(*a, c), tb(*b, c);
  const auto initial = parameters_of(*a);
  for (int i = 0; i < 3; ++i) {
    const double loss = ta.step(rb.batch, 1, i + 1);
    train::StepState st = tb.forward_loss(rb.batch, 0);
    EXPECT_EQ(st.value, loss);
    tb.backward(st);
    tb.synchronize_gradients(st);
    tb.clip_gradients(st);
    tb.apply(st);
  }
  const auto pa = parameters_of(*a), pb = parameters_of(*b);
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  int changed = 0;
  for (std::size_t i = 0; i < pa.size(); ++i) changed += !torch::equal(pa[i], initial[i]);
  EXPECT_EQ(changed, static_cast<int>(pa.size()));  // every parameter trained (the table row-wise)
}

TEST(Training, DivergenceStopsNamingEpochAndStep) {
  // Issue 14.1: learning_rate = 1e12 gave NaN scores and the AUC loop hung forever.
  TempDir dir;
  Config c = parse_config(
      "[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[features]]\nname=\"x\"\ntype=\"numeric\"\n"
      "[[tasks]]\nname=\"y\"\ncolumn=\"y\"\n[train]\nlearning_rate = 1e12\nbatch_size = 4\nepochs = 2\n",
      "diverge.toml");
  std::string csv = "a,x,y\n";
  for (int i = 0; i < 64; ++i) csv += std::string(i % 3 ? "u" : "v") + "," + std::to_string(i) + "," + std::to_string(i % 2) + "\n";
  const std::string path = dir.write("d.csv", csv);
  data::Preprocessor pre(c);
  pre.fit(path);
  data::FeaturizedData d = data::featurize_file(pre, path, true);
  auto net = model::create_model(c.model, model::input_shape(pre));
  try {
    train::train_model(*net, c, d, &d, {});
    FAIL() << "expected TrainingError";
  } catch (const TrainingError& e) {
    const std::string m = e.what();
    EXPECT_TRUE(m.find("training diverged at epoch 1, step ") != std::string::npos ||
                m.find("epoch 1: the validation loss is not a finite number") != std::string::npos)
        << m;
  }
}

TEST(InitialTaskLogits, EachTaskStartsAtItsMaskedTrainingMean) {
  // click: 1 of 4 rows positive; rating: 4 and 5 on the two rows in its sample space.
  Config c = parse_config(R"(
[[features]]
name = "a"
type = "categorical"
[[tasks]]
name = "click"
column = "click"
[[tasks]]
name = "rating"
type = "regression"
column = "rating"
where = { column = "click", equals = ["1"] }
[[tasks]]
name = "never"
column = "never"
)",
                          "init.toml");
  data::FeaturizedData d(0, 0, 0, 3);
  d.labels = {1, 4, 0, /**/ 0, 5, 0, /**/ 0, 9, 0, /**/ 0, 0, 0};
  d.mask = {1, 1, 0, /**/ 1, 1, 0, /**/ 1, 0, 0, /**/ 1, 0, 0};  // the 9 is outside rating's sample space
  const std::vector<double> z = train::initial_task_logits(c, d);
  ASSERT_EQ(z.size(), 3u);
  EXPECT_NEAR(z[0], std::log(0.25 / 0.75), 1e-12);
  EXPECT_DOUBLE_EQ(z[1], 4.5);
  EXPECT_DOUBLE_EQ(z[2], 0.0);  // no labelled row: left at 0
  // With data.weight_column the mask carries weights: the weighted mean, as the loss.
  d.mask = {3, 1, 0, /**/ 1, 0.5, 0, /**/ 0, 0, 0, /**/ 0, 0, 0};  // click: (3 x 1) / 4; rating: (4 + 0.5 x 5) / 1.5
  const std::vector<double> w = train::initial_task_logits(c, d);
  EXPECT_NEAR(w[0], std::log(0.75 / 0.25), 1e-12);
  EXPECT_NEAR(w[1], 6.5 / 1.5, 1e-12);
}

TEST(Monitor, ResolvesTaskAndMetricAndRefusesWhatValidationDoesNotCompute) {
  const std::string base = R"(
[[features]]
name = "a"
type = "categorical"
[[tasks]]
name = "click"
column = "click"
metrics = ["ndcg@10"]
[[tasks]]
name = "rating"
type = "regression"
column = "rating"
[train]
)";
  const auto monitor = [&](const std::string& m) {
    return eval::resolve_monitor(parse_config(base + "monitor = \"" + m + "\"\n", "m.toml"));
  };
  EXPECT_EQ(monitor("loss").task, -1);
  EXPECT_EQ(monitor("rating.rmse").task, 1);
  EXPECT_FALSE(monitor("rating.rmse").higher_is_better);
  EXPECT_TRUE(monitor("click.auc").higher_is_better);
  EXPECT_TRUE(monitor("click.ndcg@10").higher_is_better);  // listed in the task's metrics
  EXPECT_FALSE(monitor("click.loss").higher_is_better);
  const auto refused = [&](const std::string& m, const std::string& says) {
    try {
      monitor(m);
      ADD_FAILURE() << m << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("train.monitor"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refused("auc", "TASK.METRIC");
  refused("like.auc", "no task is named \"like\" (tasks: click, rating)");
  refused("click.bogus", "unknown metric 'bogus'");
  refused("click.calibration", "best at 1");
  refused("click.recall@5", "add it to the task's metrics");
  refused("click.gauc", "data.group_column");
  refused("rating.auc", "add it to the task's metrics");

  // monitored_value reads the figure of that task; "loss" is the weighted sum.
  Config c = parse_config(base, "m.toml");
  c.tasks[1].weight = 0.5;
  std::vector<eval::TaskMetrics> m(2);
  m[0].count = m[1].count = 10;
  m[0].loss = 0.4;
  m[0].auc = 0.7;
  m[0].extra = {{"ndcg@10", 0.8}};
  m[1].loss = m[1].mse = 2.0;
  m[1].rmse = std::sqrt(2.0);
  EXPECT_DOUBLE_EQ(eval::monitored_value(eval::Monitor{}, c.tasks, m), 0.4 + 0.5 * 2.0);
  c.train.monitor = "click.ndcg@10";
  EXPECT_DOUBLE_EQ(eval::monitored_value(eval::resolve_monitor(c), c.tasks, m), 0.8);
  c.train.monitor = "rating.rmse";
  EXPECT_DOUBLE_EQ(eval::monitored_value(eval::resolve_monitor(c), c.tasks, m), std::sqrt(2.0));
}

TEST_F(EndToEnd, KeepsTheEpochBestByTheMonitoredFigure) {
  // Without early stopping every epoch runs; the weights kept are the epoch's
  // where the monitored validation figure is best (highest AUC, lowest loss).
  data::FeaturizedData train, val;
  for (const std::string monitor : {"like.auc", "click.loss"}) {
    Config c = config();
    c.train.epochs = 4;
    c.train.patience = 0;
    c.train.learning_rate = 0.01;
    c.train.monitor = monitor;
    torch::manual_seed(2);
    at::set_num_threads(1);
    data::Preprocessor pre(c);
    pre.fit(dir_->file("train.csv"));
    train = data::featurize_file(pre, dir_->file("train.csv"), true).slice(0, 4000);
    val = data::featurize_file(pre, dir_->file("test.csv"), true);
    auto net = model::create_model(c.model, model::input_shape(pre));
    const train::TrainReport report = train::train_model(*net, c, train, &val, {});
    ASSERT_EQ(report.epochs.size(), 4u);
    const eval::Monitor m = eval::resolve_monitor(c);
    int best = 0;
    double best_value = 0;
    for (const auto& e : report.epochs) {
      const double v = eval::monitored_value(m, c.tasks, e.val);
      if (best == 0 || (m.higher_is_better ? v > best_value : v < best_value)) best = e.epoch, best_value = v;
    }
    EXPECT_EQ(report.best_epoch, best) << monitor;
    const double kept = eval::monitored_value(m, c.tasks, train::evaluate(*net, c, val));
    EXPECT_NEAR(kept, best_value, 1e-9) << monitor << ": the kept weights are that epoch's";
  }
}
