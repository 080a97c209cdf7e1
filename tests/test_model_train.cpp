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
#include "model/mmoe.h"
#include "model/objective.h"
#include "test_util.h"
#include "torch_test_util.h"
#include "model/model_dir.h"
#include "train/communicator.h"
#include "train/row_optimizer.h"
#include "train/trainer.h"

using namespace mtrank;
using mtrank::testing::TempDir;
using namespace mtrank::testing;


TEST(MMoE, OutputShapesAndGatesSumToOne) {
  torch::manual_seed(0);
  auto net = model::create_model(small_model(), small_shape());
  RandomBatch rb(7);
  model::ModelOutput out = net->forward(rb.batch, nullptr);
  EXPECT_EQ(out.logits.sizes(), (std::vector<std::int64_t>{7, 2}));
  EXPECT_EQ(out.gates.sizes(), (std::vector<std::int64_t>{7, 2, 3}));
  EXPECT_TRUE(torch::allclose(out.gates.sum(-1), torch::ones({7, 2})));
  EXPECT_EQ(net->input()->output_dim(), (3 + 1) * 4 + 2);
}

TEST(MMoE, GradientsReachEveryParameterAndTouchedRows) {
  torch::manual_seed(0);
  auto net = model::create_model(small_model(), small_shape());
  RandomBatch rb(16);
  model::TouchedRows touched;
  model::ModelOutput out = net->forward(rb.batch, &touched);
  train::multitask_loss(out.logits, rb.batch.labels, rb.batch.mask, std::vector<TaskConfig>(2)).backward();
  for (const auto& p : net->named_parameters()) {
    if (!p.value().requires_grad()) continue;  // the embedding table: updated row-wise
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
  ASSERT_EQ(touched.rows.size(), 1u);  // embeddings only: no wide part
  ASSERT_TRUE(touched.rows[0].grad().defined());
  EXPECT_EQ(touched.rows[0].size(0), touched.ids.size(0));
  EXPECT_GT(touched.rows[0].grad().abs().sum().item<double>(), 0);
  // Touched rows are exactly the unique ids of the batch.
  auto all = torch::cat({rb.batch.categorical.reshape({-1}), rb.batch.bag_ids});
  EXPECT_TRUE(torch::equal(touched.ids, std::get<0>(at::_unique(all))));
}

TEST(MMoE, TrainingAndInferenceLookupsAgree) {
  torch::manual_seed(0);
  auto net = model::create_model(small_model(), small_shape());
  net->eval();
  RandomBatch rb(9);
  model::TouchedRows touched;
  auto a = net->forward(rb.batch, &touched).logits;
  auto b = net->forward(rb.batch, nullptr).logits;
  EXPECT_TRUE(torch::allclose(a, b, 1e-6, 1e-6));
}

TEST(GatherRows, EqualsIndexSelectAndRefusesIdsOutsideTheTable) {
  torch::manual_seed(0);
  const torch::Tensor table = torch::randn({50, 3});
  const torch::Tensor ids = torch::randint(50, {40}, torch::kLong);  // more than the prefetch distance, repeats
  EXPECT_TRUE(torch::equal(model::gather_rows(table, ids), table.index_select(0, ids)));
  EXPECT_EQ(model::gather_rows(table, torch::empty({0}, torch::kLong)).size(0), 0);
  EXPECT_THROW(model::gather_rows(table, torch::tensor({std::int64_t{3}, std::int64_t{50}})), c10::Error);
  EXPECT_THROW(model::gather_rows(table, torch::tensor({std::int64_t{-1}})), c10::Error);
}

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

TEST(Objective, MaskedLossSumsOverPartsGiveTheWholeMean) {
  // Sums and counts of two halves added, then divided: the mean over all rows
  // (what summing across processes needs; a mean of per-part means is not it).
  torch::manual_seed(3);
  torch::Tensor z = torch::randn({10}), y = (torch::rand({10}) > 0.5).to(torch::kFloat), m = torch::ones({10});
  m[7] = 0;
  m[8] = 0;
  for (const auto& [name, objective] : model::objective_registry()) {
    const model::MaskedLoss whole = objective->loss(z, y, m);
    const model::MaskedLoss a = objective->loss(z.slice(0, 0, 3), y.slice(0, 0, 3), m.slice(0, 0, 3));
    const model::MaskedLoss b = objective->loss(z.slice(0, 3), y.slice(0, 3), m.slice(0, 3));
    EXPECT_NEAR(((a.sum + b.sum) / (a.count + b.count)).item<double>(), whole.mean().item<double>(), 1e-6) << name;
    EXPECT_EQ(whole.count.item<double>(), 8) << name;
  }
}

TEST(Objective, EvaluationReportsEveryDefaultMetricOfTheTaskType) {
  for (TaskType type : {TaskType::kBinary, TaskType::kRegression}) {
    std::vector<TaskConfig> tasks(1);
    tasks[0].name = "t";
    tasks[0].type = type;
    const auto m = eval::evaluate_tasks(tasks, {0.2f, 0.7f, 0.4f}, {0, 1, 1}, {1, 1, 1});
    const nlohmann::json j = eval::to_json(m)["t"];
    for (const std::string& name : model::objective_for(type).default_metrics())
      EXPECT_TRUE(j.contains(name)) << to_string(type) << " lacks " << name;
  }
  // The value transform is the one predictions and serving use.
  const torch::Tensor z = torch::tensor({{0.0f, 2.0f}});
  std::vector<TaskConfig> tasks(2);
  tasks[1].type = TaskType::kRegression;
  const torch::Tensor v = model::task_values(z, tasks);
  EXPECT_FLOAT_EQ(v[0][0].item<float>(), 0.5f);
  EXPECT_FLOAT_EQ(v[0][1].item<float>(), 2.0f);
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
// A second process of a two-process run whose partner saw the same batches:
// the average of two equal gradients is the gradient itself, so training
// must equal a single process's, while this rank (not the primary) writes no
// checkpoint.
struct SecondOfTwoRanks : train::Communicator {
  int rank() const override { return 1; }
  int world_size() const override { return 2; }
  void average_gradients(std::vector<torch::Tensor>& dense, model::TouchedRows& touched) override {
    ++calls;
    dense_tensors = dense.size();
    touched_tables = touched.rows.size();
  }
  void sum(std::vector<double>&) override {}
  int calls = 0;
  std::size_t dense_tensors = 0, touched_tables = 0;
};
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

TEST(Trainer, OnlyThePrimaryWritesCheckpointsAndSynchronizationSitsInTheStep) {
  TempDir dir;
  Config c;
  c.model = small_model();
  c.tasks.resize(2);
  c.train.epochs = 2;
  c.train.batch_size = 16;
  at::set_num_threads(1);
  RandomBatch rb(64);
  std::vector<torch::Tensor> weights[2];
  for (int run = 0; run < 2; ++run) {
    torch::manual_seed(9);
    auto net = model::create_model(c.model, small_shape());
    SecondOfTwoRanks second;
    train::Trainer t(*net, c, run == 1 ? &second : nullptr);
    train::TrainOptions o;
    o.checkpoint_path = dir.file("run" + std::to_string(run) + ".checkpoint");
    t.run(rb.d, nullptr, o);
    EXPECT_EQ(std::filesystem::exists(o.checkpoint_path), run == 0) << run;
    if (run == 1) {
      EXPECT_EQ(second.calls, 2 * 4);  // every step of 2 epochs of 64 rows in batches of 16
      EXPECT_GT(second.dense_tensors, 0u);
      EXPECT_EQ(second.touched_tables, 1u);
    }
    weights[run] = parameters_of(*net);
  }
  for (std::size_t i = 0; i < weights[0].size(); ++i) EXPECT_TRUE(torch::equal(weights[0][i], weights[1][i])) << i;
  EXPECT_EQ(train::make_communicator("local")->world_size(), 1);
  EXPECT_THROW(train::make_communicator("gloo2"), std::invalid_argument);
}

TEST(ModelDir, CorruptOrMissingFilesGiveClearErrors) {
  TempDir dir;
  auto error = [](const std::string& path) {
    try {
      model::load_model_dir(path);
    } catch (const ModelError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error(dir.file("nope")).find("not a directory"), std::string::npos);
  std::filesystem::create_directories(dir.file("m"));
  EXPECT_NE(error(dir.file("m")).find("meta.json: missing"), std::string::npos);
  dir.write("m/meta.json", "{not json");
  EXPECT_NE(error(dir.file("m")).find("meta.json: corrupt"), std::string::npos);
}

TEST(ModelDir, TruncatedWeightsAreRefused) {
  TempDir dir;
  Config c = parse_config("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\ncolumn=\"y\"\n", "c.toml");
  const std::string csv = dir.write("d.csv", "a,y\nx,1\nz,0\n");
  data::Preprocessor pre(c);
  pre.fit(csv);
  auto net = model::create_model(c.model, model::input_shape(pre));
  model::save_model_dir(dir.file("m"), c, pre, *net, {{"format", "mtrank-model"}, {"version", 1}});
  const std::string weights = dir.file("m/weights.pt");
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) / 2);
  try {
    model::load_model_dir(dir.file("m"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {  // issue 14.5: the manifest catches it before LibTorch reads a byte
    EXPECT_NE(std::string(e.what()).find("weights.pt: does not match manifest.json"), std::string::npos) << e.what();
  }
  std::filesystem::remove(dir.file("m/manifest.json"));  // a model from before the manifest
  try {
    model::load_model_dir(dir.file("m"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("weights.pt: corrupt"), std::string::npos) << e.what();
  }
}

namespace {
// A fitted, untrained one-feature model and what saving it needs: enough for
// model-directory tests. Tests bind its parts: auto& [dir, c, pre, net, meta] = tiny;
struct TinyModel {
  TempDir dir;
  Config c = parse_config("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\ncolumn=\"y\"\n", "c.toml");
  data::Preprocessor pre{c};
  std::shared_ptr<model::RankingModel> net;
  nlohmann::json meta{{"format", "mtrank-model"}, {"version", 1}};
  TinyModel() {
    pre.fit(dir.write("d.csv", "a,y\nx,1\nz,0\n"));
    net = model::create_model(c.model, model::input_shape(pre));
  }
};
}  // namespace

TEST(ModelDir, ReplacesOnlyAModelDirectory) {
  // Issue 14.4: --out PATH deleted a folder of user files, or a file, and exited 0.
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  std::filesystem::create_directories(dir.file("user"));
  dir.write("user/notes.txt", "precious");
  dir.write("file", "precious");
  for (const char* target : {"user", "file"}) {
    EXPECT_THROW(model::save_model_dir(dir.file(target), c, pre, *net, meta), ConfigError) << target;
  }
  EXPECT_TRUE(std::filesystem::exists(dir.file("user/notes.txt")));
  EXPECT_TRUE(std::filesystem::is_regular_file(dir.file("file")));
  // A model directory is replaced; stale litter of a crashed earlier save (a dead pid) is cleaned.
  model::save_model_dir(dir.file("m"), c, pre, *net, meta);
  std::filesystem::create_directories(dir.file("m.tmp-999999999"));
  std::filesystem::create_directories(dir.file("m.old-999999999"));
  model::save_model_dir(dir.file("m"), c, pre, *net, meta);
  EXPECT_TRUE(model::is_model_dir(dir.file("m")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.tmp-999999999")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.old-999999999")));
  EXPECT_THROW(model::check_model_output_dir(dir.file("no/such/m")), ConfigError);
}

TEST(ModelDir, NonFiniteWeightsAreNeverWrittenOrLoaded) {
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  model::save_model_dir(dir.file("good"), c, pre, *net, meta);
  {
    torch::NoGradGuard no_grad;
    net->parameters()[0].view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  }
  EXPECT_THROW(model::save_model_dir(dir.file("bad"), c, pre, *net, meta), TrainingError);
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad")));
  // Weights made NaN behind mtrank's back are refused at load.
  torch::serialize::OutputArchive archive;
  net->save(archive);
  archive.save_to(dir.file("good/weights.pt"));
  std::filesystem::remove(dir.file("good/manifest.json"));  // past the manifest check
  EXPECT_THROW(model::load_model_dir(dir.file("good")), ModelError);
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

TEST(ModelDir, WeightsOfAnotherConfigAreRefusedAtLoad) {
  // Issue 14.14: LibTorch resized the tensors, the load "succeeded", and scoring
  // failed later with a shape error (exit 1; a backtrace in a 422 body).
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  model::save_model_dir(dir.file("m"), c, pre, *net, meta);
  Config other = c;
  other.model.expert_hidden = {48};
  dir.write("m/config.toml", to_toml(other));
  EXPECT_THROW(model::load_model_dir(dir.file("m")), ModelError);  // the manifest: config.toml changed
  std::filesystem::remove(dir.file("m/manifest.json"));            // past it, the shapes are checked
  try {
    model::load_model_dir(dir.file("m"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("weights.pt: tensor '"), std::string::npos) << m;
    EXPECT_NE(m.find("the weights belong to another config"), std::string::npos) << m;
    EXPECT_EQ(m.find("Exception raised from"), std::string::npos) << m;
  }
}

TEST(ModelSize, EstimateIsAnUpperBoundForEveryModelType) {
  // The memory check (issue 14.13) must never refuse a model by underestimating it.
  model::InputShape shape{500, 3, 1, 2, 2};
  for (const char* type : {"single_task", "shared_bottom", "omoe", "mmoe", "cgc", "ple", "wide_deep"}) {
    Config c = parse_config(std::string("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\n"
                                        "column=\"y\"\n[model]\ntype=\"") + type + "\"\nexpert_hidden=[16,8]\n",
                            "size.toml");
    auto net = model::create_model(c.model, shape);
    double actual = 0;
    for (const auto& p : net->parameters()) actual += static_cast<double>(p.numel());
    const model::ParameterEstimate e = model::estimate_parameters(c.model, shape);
    EXPECT_LE(actual, e.embedding + e.dense) << type;
    EXPECT_GE(actual * 4, e.embedding + e.dense) << type;  // and not wildly above
  }
}

TEST(ModelDir, FilesFromTwoSavesNeverLoadTogether) {
  // Issue 14.5: a reload racing a new save served old preprocessing with new
  // weights. Every file is checked against the manifest written with it.
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  data::Preprocessor other(c);
  other.fit(dir.write("e.csv", "a,y\nx,1\nz,0\nw,1\nv,0\n"));
  model::save_model_dir(dir.file("a"), c, pre, *net, meta);
  auto net2 = model::create_model(c.model, model::input_shape(other));
  model::save_model_dir(dir.file("b"), c, other, *net2, meta);
  EXPECT_NO_THROW(model::load_model_dir(dir.file("a")));
  std::filesystem::copy_file(dir.file("b/preprocess.json"), dir.file("a/preprocess.json"),
                             std::filesystem::copy_options::overwrite_existing);
  try {
    model::load_model_dir(dir.file("a"));
    FAIL() << "a mixed directory loaded";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("preprocess.json: does not match manifest.json"), std::string::npos) << e.what();
  }
  // The training run's cache_dir is not used by eval/predict of a loaded model.
  Config cached = c;
  cached.data.cache_dir = dir.file("somewhere-else");
  model::save_model_dir(dir.file("c"), cached, pre, *net, meta);
  EXPECT_EQ(model::load_model_dir(dir.file("c")).config.data.cache_dir, "");
  EXPECT_EQ(model::load_model_dir(dir.file("c")).preprocessor->config().data.cache_dir, "");
  // meta.json with wrong types: exit 4 with the file named, not a bare JSON error.
  dir.write("b/meta.json", "{\"format\": 7}");
  EXPECT_THROW(model::load_model_dir(dir.file("b")), ModelError);
  dir.write("b/meta.json", "[1, 2]");
  EXPECT_THROW(model::load_model_dir(dir.file("b")), ModelError);
}
