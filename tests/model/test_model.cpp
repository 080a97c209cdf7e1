// Models: shapes, gradients, lookups, objectives, size estimates.
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
#include "config/model_families.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/synth.h"
#include "eval/metrics.h"
#include "model/esmm.h"
#include "model/mmoe.h"
#include "model/model.h"
#include "model/objective.h"
#include "train/trainer.h"
#include "test_util.h"
#include "torch_test_util.h"

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

TEST(ModelSize, EstimateIsAnUpperBoundForEveryModelType) {
  // The memory check (issue 14.13) must never refuse a model by underestimating it.
  model::InputShape shape{500, 3, 1, 2, 2};
  for (const std::string& type : model_family_names()) {
    // Two tasks, as the shape says (ESMM needs at least two).
    Config c = parse_config(std::string("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\n"
                                        "column=\"y\"\n[[tasks]]\nname=\"z\"\ncolumn=\"z\"\n[model]\ntype=\"") +
                                type + "\"\nexpert_hidden=[16,8]\n",
                            "size.toml");
    auto net = model::create_model(c.model, shape);
    double actual = 0;
    for (const auto& p : net->parameters()) actual += static_cast<double>(p.numel());
    const model::ParameterEstimate e = model::estimate_parameters(c.model, shape);
    EXPECT_LE(actual, e.embedding + e.dense) << type;
    EXPECT_GE(actual * 4, e.embedding + e.dense) << type;  // and not wildly above
  }
}

TEST(Esmm, CtcvrIsTheProductOfCtrAndCvrInEveryOutput) {
  // Task values (what predict and serving return): pCTCVR = pCTR x pCVR exactly.
  torch::manual_seed(2);
  ModelConfig m = small_model();
  m.type = "esmm";
  model::InputShape shape = small_shape();
  shape.num_tasks = 3;
  auto net = model::create_model(m, shape);
  RandomBatch rb(64);
  std::vector<TaskConfig> tasks(3);
  const torch::Tensor v = model::task_values(net->forward(rb.batch, nullptr).logits, tasks);
  EXPECT_TRUE(torch::allclose(v.select(1, 1), v.select(1, 0) * v.select(1, 2), 1e-5, 1e-7));
  // The logit of a product of probabilities, from its log, by hand.
  const torch::Tensor a = torch::tensor({-3.0f, 0.0f, 2.0f, 8.0f}), b = torch::tensor({1.0f, -2.0f, 0.5f, 9.0f});
  const torch::Tensor p = torch::sigmoid(a) * torch::sigmoid(b);
  EXPECT_TRUE(torch::allclose(model::product_logit(a, b), torch::log(p / (1 - p)), 1e-4, 1e-4));
  // Large logits: finite, and the gradient reaches both (a clamp would cut it).
  const torch::Tensor big_a = torch::tensor({30.0f}, torch::requires_grad()), big_b = torch::tensor({40.0f}, torch::requires_grad());
  const torch::Tensor z = model::product_logit(big_a, big_b);
  z.backward();
  EXPECT_TRUE(torch::isfinite(z).all().item<bool>());
  EXPECT_GT(big_a.grad().item<float>(), 0);
  EXPECT_GT(big_b.grad().item<float>(), 0);
  // Training reaches both towers through the click-and-conversion loss alone.
  tasks[0].weight = 0;
  tasks[2].weight = 0;
  model::TouchedRows touched;
  train::multitask_loss(net->forward(rb.batch, &touched).logits, rb.batch.labels.repeat({1, 2}).slice(1, 0, 3),
                        torch::ones({64, 3}), tasks)
      .backward();
  // The towers are one grouped MLP ([2, in, out] weights): tower 0 (CTR) and tower 1 (CVR) each get gradient.
  int checked = 0;
  for (const auto& param : net->named_parameters())
    if (param.value().requires_grad() && param.key().find("towers") != std::string::npos) {
      ASSERT_EQ(param.value().size(0), 2) << param.key();
      EXPECT_GT(param.value().grad().select(0, 0).abs().sum().item<double>(), 0) << param.key() << " CTR tower";
      EXPECT_GT(param.value().grad().select(0, 1).abs().sum().item<double>(), 0) << param.key() << " CVR tower";
      ++checked;
    }
  EXPECT_GT(checked, 0);
}

TEST(Esmm, RefusesTaskCountsItCannotMapAndAWidePart) {
  ModelConfig m = small_model();
  m.type = "esmm";
  model::InputShape shape = small_shape();
  shape.num_tasks = 1;
  try {
    model::create_model(m, shape);
    FAIL() << "one task accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("needs 2 or 3 tasks"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_config("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\ncolumn=\"y\"\n"
                            "[model]\ntype=\"esmm\"\nwide=true\n", "e.toml"),
               ConfigError);
}
