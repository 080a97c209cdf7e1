// The model zoo: every family's shapes, gradients, gates; CGC/PLE structure;
// FTRL against hand-computed steps; schedules; resume; each model learns.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "config/config.h"
#include "config/model_families.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/synth.h"
#include "model/blocks.h"
#include "model/model.h"
#include "test_util.h"
#include "torch_test_util.h"
#include "train/ftrl.h"
#include "model/model_dir.h"
#include "train/row_optimizer.h"
#include "train/trainer.h"
#include "train/warm_start.h"

using namespace mtrank;
using namespace mtrank::testing;

namespace {
// Every model family the config accepts (config/model_families.h).
const std::vector<std::string> kAllModels = model_family_names();

ModelConfig zoo_config(const std::string& type) {
  ModelConfig m = small_model(type);  // the family's defaults, as a config naming only the type gets them
  if (m.has("bottom_hidden") && !m.integers("bottom_hidden").empty()) m.set("bottom_hidden", std::vector<std::int64_t>{12});
  set_where_taken(m, "specific_experts", std::int64_t{2});
  set_where_taken(m, "shared_experts", std::int64_t{1});
  return m;
}
}  // namespace

class EveryModel : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryModel, ShapesGradientsAndGates) {
  torch::manual_seed(0);
  auto net = model::create_model(zoo_config(GetParam()), small_shape());
  RandomBatch rb(11);
  model::TouchedRows touched;
  model::ModelOutput out = net->forward(rb.batch, &touched);
  EXPECT_EQ(out.logits.sizes(), (std::vector<std::int64_t>{11, 2}));
  train::multitask_loss(out.logits, rb.batch.labels, rb.batch.mask, std::vector<TaskConfig>(2)).backward();
  for (const auto& p : net->named_parameters()) {
    if (!p.value().requires_grad()) continue;  // sparse tables: updated row-wise
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
  ASSERT_EQ(touched.rows.size(), net->sparse_tables().size());
  for (const auto& rows : touched.rows) EXPECT_GT(rows.grad().abs().sum().item<double>(), 0);
  if (out.gates.defined()) {
    EXPECT_EQ(out.gates.size(0), 11);
    EXPECT_EQ(out.gates.size(1), 2);
    EXPECT_TRUE(torch::allclose(out.gates.sum(-1), torch::ones({11, 2}), 1e-5, 1e-5));
  }
  // Training-mode lookup (gathered rows) and inference lookup agree.
  net->eval();
  model::TouchedRows again;
  EXPECT_TRUE(torch::allclose(net->forward(rb.batch, &again).logits, net->forward(rb.batch, nullptr).logits, 1e-5, 1e-5));
}

TEST_P(EveryModel, OutputBiasMovesEachTaskLogitByItsChange) {
  // set_output_bias sets the constant of each task's logit: raising it by d
  // raises that task's logit by exactly d in every row (ESMM: the CTR task;
  // its CTCVR logit is CTR x CVR and moves with both).
  torch::manual_seed(0);
  auto net = model::create_model(zoo_config(GetParam()), small_shape());
  net->eval();
  RandomBatch rb(7);
  net->set_output_bias({-1.0, -2.0});
  const torch::Tensor a = net->forward(rb.batch, nullptr).logits;
  net->set_output_bias({-0.5, -3.0});
  const torch::Tensor b = net->forward(rb.batch, nullptr).logits;
  EXPECT_TRUE(torch::allclose(b.select(1, 0) - a.select(1, 0), torch::full({7}, 0.5), 1e-5, 1e-5));
  if (GetParam() == "esmm") {
    EXPECT_TRUE((b.select(1, 1) < a.select(1, 1)).all().item<bool>());  // CTCVR fell -2 -> -3 while CTR rose
  } else {
    EXPECT_TRUE(torch::allclose(b.select(1, 1) - a.select(1, 1), torch::full({7}, -1.0), 1e-5, 1e-5));
  }
}

TEST(Towers, OutputBiasIsTheLogitOfAZeroInput) {
  model::Towers towers(3, 4, std::vector<std::int64_t>{});
  towers->set_output_bias({-2.0, 0.0, 4.5});
  const torch::Tensor z = towers->forward(torch::zeros({3, 2, 4}));
  EXPECT_TRUE(torch::equal(z, torch::tensor({{-2.0f, 0.0f, 4.5f}, {-2.0f, 0.0f, 4.5f}})));
  EXPECT_THROW(towers->set_output_bias({1.0}), std::logic_error);
}

TEST(Esmm, OutputBiasStartsCvrAtCtcvrOverCtr) {
  // CTR 0.2 with CTCVR 0.05, then 0.1: the CVR tower's constant moves from
  // logit(0.25) to logit(0.5), and the CTR tower's stays.
  torch::manual_seed(0);
  model::InputShape shape = small_shape();
  shape.num_tasks = 3;  // click, click-and-convert, convert
  auto net = model::create_model(zoo_config("esmm"), shape);
  net->eval();
  RandomBatch rb(3, 3);
  const auto logit = [](double p) { return std::log(p / (1 - p)); };
  net->set_output_bias({logit(0.2), logit(0.05), 0.0});
  const torch::Tensor a = net->forward(rb.batch, nullptr).logits;
  net->set_output_bias({logit(0.2), logit(0.1), 0.0});
  const torch::Tensor b = net->forward(rb.batch, nullptr).logits;
  EXPECT_TRUE(torch::equal(a.select(1, 0), b.select(1, 0)));
  EXPECT_TRUE(torch::allclose(b.select(1, 2) - a.select(1, 2), torch::full({3}, logit(0.5) - logit(0.25)), 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Zoo, EveryModel, ::testing::ValuesIn(kAllModels));

TEST(OMoE, OneGateSharedByAllTasks) {
  torch::manual_seed(0);
  auto net = model::create_model(zoo_config("omoe"), small_shape());
  RandomBatch rb(5);
  torch::Tensor g = net->forward(rb.batch, nullptr).gates;
  EXPECT_TRUE(torch::equal(g.select(1, 0), g.select(1, 1)));
}

TEST(SingleTask, TasksShareNoParameters) {
  torch::manual_seed(0);
  auto net = model::create_model(zoo_config("single_task"), small_shape());
  RandomBatch rb(6);
  model::TouchedRows touched;
  model::ModelOutput out = net->forward(rb.batch, &touched);
  out.logits.select(1, 0).sum().backward();  // task 0 only
  // Embedding copies: task 0 owns columns [0, D), task 1 [D, 2D).
  const torch::Tensor grad = touched.rows[0].grad();
  EXPECT_GT(grad.slice(1, 0, 4).abs().sum().item<double>(), 0);
  EXPECT_EQ(grad.slice(1, 4, 8).abs().sum().item<double>(), 0);
  for (const auto& p : net->named_parameters())
    if (p.value().grad().defined() && p.value().dim() == 3) {  // grouped [tasks, in, out]
      EXPECT_EQ(p.value().grad()[1].abs().sum().item<double>(), 0) << p.key();
    }
}

TEST(CGC, GatesSeeOnlyTheirOwnAndSharedExperts) {
  torch::manual_seed(0);
  auto net = model::create_model(zoo_config("cgc"), small_shape());  // 2 tasks x 2 specific + 1 shared = 5 experts
  net->eval();
  RandomBatch rb(7);
  model::ModelOutput out = net->forward(rb.batch, nullptr);
  ASSERT_EQ(out.gates.size(2), 5);
  // Task 0 sees experts 0, 1 and 4; task 1 sees 2, 3 and 4.
  EXPECT_EQ(out.gates.select(1, 0).slice(1, 2, 4).abs().sum().item<double>(), 0);
  EXPECT_EQ(out.gates.select(1, 1).slice(1, 0, 2).abs().sum().item<double>(), 0);
  EXPECT_GT(out.gates.select(1, 0).select(1, 4).min().item<double>(), 0);
  // Changing task 1's expert weights moves task 1's output and leaves task 0's alone.
  torch::Tensor before = out.logits.clone();
  {
    torch::NoGradGuard ng;
    for (auto& p : net->named_parameters())
      if (p.key() == "level0.w0") p.value().slice(1, 2 * 8, 4 * 8).add_(0.5);  // experts 2, 3 of width 8
  }
  torch::Tensor after = net->forward(rb.batch, nullptr).logits;
  EXPECT_TRUE(torch::equal(after.select(1, 0), before.select(1, 0)));
  EXPECT_FALSE(torch::allclose(after.select(1, 1), before.select(1, 1)));
}

TEST(PLE, OneLevelEqualsCGC) {
  ModelConfig cgc = zoo_config("cgc"), ple = zoo_config("ple");
  ple.set("levels", std::int64_t{1});
  torch::manual_seed(3);
  auto a = model::create_model(cgc, small_shape());
  torch::manual_seed(3);
  auto b = model::create_model(ple, small_shape());
  RandomBatch rb(9);
  a->eval();
  b->eval();
  EXPECT_TRUE(torch::equal(a->forward(rb.batch, nullptr).logits, b->forward(rb.batch, nullptr).logits));
  EXPECT_EQ(a->named_parameters().keys(), b->named_parameters().keys());
}

TEST(PLE, SharedPathFeedsTheNextLevel) {
  torch::manual_seed(0);
  auto net = model::create_model(zoo_config("ple"), small_shape());
  std::vector<std::string> keys = net->named_parameters().keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "level0.shared_gate_w"), keys.end());
  EXPECT_EQ(std::find(keys.begin(), keys.end(), "level1.shared_gate_w"), keys.end());  // last level: no shared gate
  EXPECT_NE(std::find(keys.begin(), keys.end(), "level1.w0_task"), keys.end());
}

TEST(GateDropout, RenormalizesAndIsOffInEval) {
  torch::manual_seed(0);
  torch::Tensor g = torch::softmax(torch::randn({1000, 2, 4}), -1);
  torch::Tensor d = model::gate_dropout(g, 0.5, true);
  EXPECT_TRUE(torch::allclose(d.sum(-1), torch::ones({1000, 2}), 1e-5, 1e-5));
  EXPECT_GT((d == 0).sum().item<std::int64_t>(), 1000);
  EXPECT_TRUE(torch::equal(model::gate_dropout(g, 0.5, false), g));
}

TEST(Ftrl, HandComputedStepsAndL1Zeroing) {
  // alpha 0.1, beta 1, l1 0.5. Step 1, g = 1: n = 1, sigma = 10, z = 1, w = -(1 - 0.5) / ((1 + 1) / 0.1) = -0.025.
  // Step 2, g = -2: n = 5, sigma = (sqrt 5 - 1) / 0.1, z = 1 - 2 - sigma * w, w = -(z + 0.5) / ((1 + sqrt 5) / 0.1).
  torch::Tensor w = torch::zeros({1}, torch::requires_grad());
  train::Ftrl opt({w}, train::FtrlOptions(0.1).beta(1.0).l1(0.5));
  w.mutable_grad() = torch::tensor({1.0f});
  opt.step();
  EXPECT_NEAR(w.item<float>(), -0.025f, 1e-7);
  w.mutable_grad() = torch::tensor({-2.0f});
  opt.step();
  const double sigma = (std::sqrt(5.0) - 1) / 0.1, z = 1 - 2 - sigma * -0.025;
  EXPECT_NEAR(w.item<float>(), -(z + 0.5) / ((1 + std::sqrt(5.0)) / 0.1), 1e-6);
  // Strong L1: |z| = 1 <= 2 keeps the weight at exactly zero.
  torch::Tensor v = torch::zeros({1}, torch::requires_grad());
  train::Ftrl sparse({v}, train::FtrlOptions(0.1).l1(2.0));
  v.mutable_grad() = torch::tensor({1.0f});
  sparse.step();
  EXPECT_EQ(v.item<float>(), 0.0f);
  // L2 shrinks: w = -(1 - 0.5) / (20 + 10).
  torch::Tensor u = torch::zeros({1}, torch::requires_grad());
  train::Ftrl l2({u}, train::FtrlOptions(0.1).l1(0.5).l2(10.0));
  u.mutable_grad() = torch::tensor({1.0f});
  l2.step();
  EXPECT_NEAR(u.item<float>(), -0.5f / 30.0f, 1e-7);
}

TEST(Ftrl, RowWiseMatchesTheOptimizerOnTouchedRows) {
  torch::Tensor table = torch::zeros({4, 2});
  train::RowOptimizer rows(table, "ftrl", 0.0, 0.0, {0.1, 1.0, 0.5, 0.0});
  rows.step(torch::tensor({2}, torch::kInt64), torch::tensor({{1.0f, 0.2f}}));
  EXPECT_NEAR(table[2][0].item<float>(), -0.025f, 1e-7);
  EXPECT_EQ(table[2][1].item<float>(), 0.0f);  // |z| = 0.2 <= l1: zero
  EXPECT_EQ(table[0].abs().sum().item<float>(), 0.0f);
}

TEST(Ftrl, StartsFromExistingWeights) {
  // Warm start: weights copied into a table must survive FTRL's first steps.
  // With a zero gradient nothing should move; with L1, a weight of 0.3 is kept too.
  torch::Tensor table = torch::tensor({{0.3f, -0.2f}, {0.0f, 0.05f}});
  const torch::Tensor before = table.clone();
  train::RowOptimizer rows(table, "ftrl", 0.0, 0.0, {0.05, 1.0, 0.01, 0.1});
  rows.step(torch::tensor({0, 1}, torch::kInt64), torch::zeros({2, 2}));
  EXPECT_TRUE(torch::allclose(table, before, 1e-6, 1e-7));
  torch::Tensor bias = torch::tensor({0.7f}).requires_grad_();
  train::Ftrl opt({bias}, train::FtrlOptions(0.05).l1(0.01));
  bias.mutable_grad() = torch::zeros({1});
  opt.step();
  EXPECT_NEAR(bias.item<float>(), 0.7f, 1e-6);
}

TEST(LossWeights, PleScheduleByEpoch) {
  TaskConfig t;
  t.weight = 2.0;
  t.weight_gamma = 0.5;
  EXPECT_DOUBLE_EQ(train::task_weight(t, 0), 2.0);
  EXPECT_DOUBLE_EQ(train::task_weight(t, 3), 0.25);
}

// Small end-to-end runs on the synthetic impression log.
class ZooTraining : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = mtrank::testing::new_ranking_log_dir(/*rows=*/16000, /*seed=*/11, /*users=*/150, /*items=*/80,
                                                /*train_rows=*/13000);
  }
  static void TearDownTestSuite() { delete dir_; }

  // Click, then like on clicked rows. ESMM's tasks are click, click-and-like over
  // every impression (an empty like is a 0 there: no missing values), then like on clicked rows,
  // evaluated but not trained (weight 0): its pCVR.
  static std::string tasks(const std::string& type) {
    const std::string click = "[[tasks]]\nname = \"click\"\ncolumn = \"click\"\n";
    const std::string like = "[[tasks]]\nname = \"like\"\ncolumn = \"like\"\nwhere = { column = \"click\", equals = [\"1\"] }\n";
    if (type != "esmm") return click + like;
    return "[data]\nmissing_labels = []\nmissing_values = []\n" + click +
           "[[tasks]]\nname = \"click_and_like\"\ncolumn = \"like\"\npositive = [\"1\"]\n" + like + "weight = 0\n";
  }
  // The task whose AUC the zoo checks as "like": for ESMM, its pCVR on clicked rows.
  static std::size_t like_task(const std::string& type) { return type == "esmm" ? 2 : 1; }

  static Config config(const std::string& type) {
    Config c = parse_config(R"(
[[features]]
names = ["user_id", "item_id", "item_category", "device", "hour"]
type = "categorical"
[[features]]
name = "user_interests"
type = "multi_hot"
[[features]]
name = "cat_x_device"
type = "cross"
columns = ["item_category", "device"]
hash_buckets = 64
[[features]]
name = "price"
type = "numeric"
log1p = true
[train]
learning_rate = 0.003
batch_size = 256
epochs = 2
)" + tasks(type),
                            "zoo.toml");
    c.model = zoo_config(type);
    c.model.set("embedding_dim", std::int64_t{8});
    set_where_taken(c.model, "expert_hidden", std::vector<std::int64_t>{16});
    c.model.set("tower_hidden", std::vector<std::int64_t>{8});
    if (type == "single_task" || type == "shared_bottom" || type == "wide_deep")
      c.model.set("bottom_hidden", std::vector<std::int64_t>{32});
    return c;
  }

  struct Run {
    std::shared_ptr<model::RankingModel> net;
    std::unique_ptr<data::Preprocessor> pre;
    data::FeaturizedData train, test;
  };
  static Run prepare(const Config& c) {
    Run r;
    torch::manual_seed(c.train.seed);
    at::set_num_threads(1);
    r.pre = std::make_unique<data::Preprocessor>(c);
    r.pre->fit(dir_->file("train.csv"));
    r.train = data::featurize_file(*r.pre, dir_->file("train.csv"), true);
    r.test = data::featurize_file(*r.pre, dir_->file("test.csv"), true);
    r.net = model::create_model(c.model, model::input_shape(*r.pre));
    return r;
  }
  static TempDir* dir_;
};
TempDir* ZooTraining::dir_ = nullptr;

TEST_F(ZooTraining, EveryModelLearnsWellAboveChance) {
  for (const std::string& type : kAllModels) {
    Config c = config(type);
    Run r = prepare(c);
    train::train_model(*r.net, c, r.train, nullptr, {});
    auto m = train::evaluate(*r.net, c, r.test);
    EXPECT_GT(m[0].auc, 0.60) << type << " click";
    EXPECT_GT(m[like_task(type)].auc, 0.65) << type << " like";
  }
}

TEST_F(ZooTraining, ResumeEqualsUninterrupted) {
  for (const char* type : {"mmoe", "wide_deep"}) {
    Config c = config(type);
    c.train.epochs = 3;
    c.train.lr_decay = "cosine";
    c.train.warmup_steps = 20;
    set_where_taken(c.model, "gate_dropout", 0.1);  // uses the torch RNG: its state must be restored too
    c.model.set("dropout", 0.1);
    const std::string ckpt = dir_->file(std::string(type) + ".ckpt");
    Run full = prepare(c);
    const train::TrainReport uninterrupted = train::train_model(*full.net, c, full.train, &full.test, {});
    Run part = prepare(c);
    train::TrainOptions stop_early;
    stop_early.checkpoint_path = ckpt;
    stop_early.on_epoch_end = [](const train::EpochLog& e) { return e.epoch < 1; };  // "interrupted" after epoch 1
    train::train_model(*part.net, c, part.train, &part.test, stop_early);
    Run resumed = prepare(c);  // a fresh process: new model, new trainer
    train::TrainOptions resume;
    resume.checkpoint_path = ckpt;
    resume.resume = true;
    train::TrainReport report = train::train_model(*resumed.net, c, resumed.train, &resumed.test, resume);
    EXPECT_TRUE(report.resumed);
    EXPECT_EQ(report.epochs.size(), 3u);
    EXPECT_EQ(train::predict(*resumed.net, c, resumed.test).values, train::predict(*full.net, c, full.test).values)
        << type;
    // The history too, epoch 1 (from the checkpoint) included: losses per
    // task, learning rate and validation metrics, exactly.
    ASSERT_EQ(uninterrupted.epochs.size(), 3u);
    for (std::size_t e = 0; e < 3; ++e) {
      const train::EpochLog &a = report.epochs[e], &b = uninterrupted.epochs[e];
      EXPECT_EQ(a.train_loss, b.train_loss) << type << " epoch " << e + 1;
      EXPECT_EQ(a.val_loss, b.val_loss) << type << " epoch " << e + 1;
      EXPECT_EQ(a.learning_rate, b.learning_rate) << type << " epoch " << e + 1;
      EXPECT_EQ(a.train_task_loss, b.train_task_loss) << type << " epoch " << e + 1;
      ASSERT_EQ(a.train_task_loss.size(), c.tasks.size());
      EXPECT_EQ(eval::to_json(a.val).dump(), eval::to_json(b.val).dump()) << type << " epoch " << e + 1;
      EXPECT_FALSE(a.val.empty());
    }
  }
}

TEST_F(ZooTraining, ResumeRefusesACheckpointOfAnotherRun) {
  Config c = config("mmoe");
  c.train.epochs = 1;
  const std::string ckpt = dir_->file("other.ckpt");
  Run a = prepare(c);
  train::TrainOptions write;
  write.checkpoint_path = ckpt;
  write.fingerprint = "run-a";
  train::train_model(*a.net, c, a.train, nullptr, write);
  Run b = prepare(c);
  train::TrainOptions resume = write;
  resume.resume = true;
  resume.fingerprint = "run-b";
  try {
    train::train_model(*b.net, c, b.train, nullptr, resume);
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to another config"), std::string::npos) << e.what();
  }
}

TEST_F(ZooTraining, UncertaintyWeightingLearnsLogVariances) {
  Config c = config("mmoe");
  c.train.loss_weighting = "uncertainty";
  c.train.epochs = 1;
  Run r = prepare(c);
  train::TrainReport report = train::train_model(*r.net, c, r.train, nullptr, {});
  ASSERT_EQ(report.task_log_variances.size(), 2u);
  EXPECT_NE(report.task_log_variances[0], 0.0);
  EXPECT_NE(report.task_log_variances[0], report.task_log_variances[1]);
}

TEST_F(ZooTraining, FtrlL1MakesTheWidePartSparse) {
  auto zero_fraction = [](double l1) {
    Config c = config("wide_deep");
    c.train.ftrl_l1 = l1;
    c.train.epochs = 1;
    Run r = prepare(c);
    train::train_model(*r.net, c, r.train, nullptr, {});
    torch::Tensor wide = r.net->sparse_tables()[1].table;
    return (wide == 0).to(torch::kFloat64).mean().item<double>();
  };
  const double dense = zero_fraction(0.0), sparse = zero_fraction(0.5);
  EXPECT_LT(dense, 0.2);   // without L1 nearly every touched weight moves
  EXPECT_GT(sparse, 0.9);  // with L1 most are exactly zero
  EXPECT_LT(sparse, 1.0);  // but the strongest ids keep weights
}

TEST_F(ZooTraining, WarmStartKeepsSharedRowsAndGrowsVocabularies) {
  Config c = config("wide_deep");  // embeddings and wide weights
  c.train.epochs = 1;
  Run old = prepare(c);
  train::train_model(*old.net, c, old.train, nullptr, {});
  const std::string old_dir = dir_->file("old-model");
  model::save_model_dir(old_dir, c, *old.pre, *old.net, {{"format", "mtrank-model"}, {"version", 1}});
  model::LoadedModel previous = model::load_model_dir(old_dir);

  // Newer data: the test rows, every 10th with an item the old model never saw.
  const std::string newer = dir_->file("newer.csv");
  {
    std::ifstream in(dir_->file("test.csv"));
    std::ofstream out(newer);
    std::string line;
    std::getline(in, line);
    out << line << "\n";
    for (int i = 0; std::getline(in, line); ++i) {
      if (i % 10 == 0) line = line.substr(0, line.find(',')) + ",brand_new" + line.substr(line.find(',', line.find(',') + 1));
      out << line << "\n";
    }
  }
  data::Preprocessor pre(c);
  pre.fit(newer, previous.preprocessor.get());
  const auto* old_items = previous.preprocessor->find_field("item_id");
  const auto* new_items = pre.find_field("item_id");
  ASSERT_GT(new_items->size, old_items->size);  // grew
  for (std::size_t i = 0; i < old_items->vocab.values().size(); ++i)  // old ids unchanged
    EXPECT_EQ(new_items->vocab.lookup(old_items->vocab.values()[i]), static_cast<std::int64_t>(i) + 1);
  EXPECT_GT(new_items->vocab.lookup("brand_new"), old_items->vocab.size() - 1);

  auto net = model::create_model(c.model, model::input_shape(pre));
  train::WarmStartReport w = train::warm_start(*net, pre, previous);
  EXPECT_GT(w.rows_copied, 0);
  EXPECT_GT(w.rows_new, 0);
  EXPECT_EQ(w.params_skipped, 0);
  auto old_tables = previous.net->sparse_tables();
  auto new_tables = net->sparse_tables();
  for (std::size_t t = 0; t < new_tables.size(); ++t)
    for (std::int64_t i = 0; i < old_items->size; ++i)
      EXPECT_TRUE(torch::equal(new_tables[t].table[new_items->offset + i], old_tables[t].table[old_items->offset + i]))
          << new_tables[t].name << " row " << i;
  const std::int64_t brand_new = new_items->offset + new_items->vocab.lookup("brand_new");
  EXPECT_EQ(new_tables[1].table[brand_new].abs().sum().item<float>(), 0.0f);  // fresh wide weight
  auto old_params = previous.net->named_parameters();
  for (const auto& p : net->named_parameters()) {
    if (p.value().requires_grad()) {
      EXPECT_TRUE(torch::equal(p.value(), *old_params.find(p.key()))) << p.key();
    }
  }
  // And it keeps learning on the new data.
  data::FeaturizedData newer_data = data::featurize_file(pre, newer, true);
  train::train_model(*net, c, newer_data, nullptr, {});
  EXPECT_GT(train::evaluate(*net, c, newer_data)[0].auc, 0.6);
}

TEST_F(ZooTraining, ResumeWithAnotherThreadCountIsRecorded) {
  // Issue 14 (low): --resume with a different --threads was accepted silently
  // and the metrics reported only the new count.
  Config c = config("mmoe");
  c.train.epochs = 2;
  const std::string ckpt = dir_->file("threads.ckpt");
  Run part = prepare(c);
  train::TrainOptions first;
  first.checkpoint_path = ckpt;
  first.threads = 1;
  first.on_epoch_end = [](const train::EpochLog& e) { return e.epoch < 1; };
  train::train_model(*part.net, c, part.train, nullptr, first);
  Run resumed = prepare(c);
  train::TrainOptions again = first;
  again.resume = true;
  again.threads = 2;
  again.on_epoch_end = nullptr;
  const train::TrainReport report = train::train_model(*resumed.net, c, resumed.train, nullptr, again);
  EXPECT_EQ(report.threads_at_start, 1);
}

TEST(ModelFamilies, EveryFamilyHasAConstructorAndEveryConstructorAFamily) {
  std::vector<std::string> constructors;
  for (const auto& [name, factory] : model::model_registry()) constructors.push_back(name);
  std::vector<std::string> families = model_family_names();
  std::sort(families.begin(), families.end());
  EXPECT_EQ(constructors, families);  // model_registry is a std::map: sorted
}
