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
    // A mask of weights gives the weighted mean, also when the weights sum to less than 1.
    const torch::Tensor w = torch::full({10}, 0.1);
    const model::MaskedLoss weighted = objective->loss(z, y, w);
    EXPECT_NEAR(weighted.mean().item<double>(), objective->loss(z, y, torch::ones({10})).mean().item<double>(), 1e-6)
        << name;
  }
}

TEST(Objective, InitialLogitPredictsTheTrainingMean) {
  const model::Objective& binary = model::objective_for(TaskType::kBinary);
  EXPECT_NEAR(binary.initial_logit(0.2), std::log(0.25), 1e-12);  // sigmoid(log(1/4)) = 0.2
  EXPECT_DOUBLE_EQ(binary.initial_logit(0.5), 0.0);
  // A class absent from training gives a large finite logit, not infinity.
  EXPECT_NEAR(binary.initial_logit(0.0), std::log(1e-6 / (1 - 1e-6)), 1e-9);
  EXPECT_NEAR(binary.initial_logit(1.0), -std::log(1e-6 / (1 - 1e-6)), 1e-6);
  EXPECT_DOUBLE_EQ(model::objective_for(TaskType::kRegression).initial_logit(4.19), 4.19);
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
  model::InputShape shape{500, 3, 1, 2, 2, {}};
  for (const std::string& type : model_family_names()) {
    // Two tasks, as the shape says (ESMM needs at least two).
    Config c = parse_config(std::string("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\n"
                                        "column=\"y\"\n[[tasks]]\nname=\"z\"\ncolumn=\"z\"\n[model]\ntype=\"") +
                                type + "\"\n" + (model_defaults(type).has("expert_hidden") ? "expert_hidden=[16,8]\n" : ""),
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

namespace {

// A config with every kind of field, groups and a bias feature; fitted on a few rows.
struct FieldsFixture {
  TempDir dir;
  Config config;
  std::unique_ptr<data::Preprocessor> pre;
  FieldsFixture() {
    const std::string data = dir.write("d.csv",
                                       "user,item,tags,position,price,click\n"
                                       "u1,i1,a|b,1,3.5,1\nu2,i2,b,2,1.0,0\nu1,i3,a,3,2.0,0\nu3,i1,c|a,1,9.0,1\n");
    config = parse_config(
        "[data]\ntrain = \"" + data + "\"\nmissing_values = [\"\"]\n"
        "[[features]]\nname = \"user\"\ntype = \"categorical\"\ngroup = \"user\"\n"
        "[[features]]\nname = \"item\"\ntype = \"categorical\"\ngroup = \"item\"\n"
        "[[features]]\nname = \"tags\"\ntype = \"multi_hot\"\ngroup = \"item\"\n"
        "[[features]]\nname = \"position\"\ntype = \"categorical\"\nbias = true\n"
        "[[features]]\nname = \"price\"\ntype = \"numeric\"\ngroup = \"item\"\n"
        "[[tasks]]\nname = \"click\"\ntype = \"binary\"\ncolumn = \"click\"\n"
        "[model]\ntype = \"mmoe\"\nembedding_dim = 3\nnum_experts = 2\nexpert_hidden = [4]\ntower_hidden = [2]\n",
        "fields.toml");
    pre = std::make_unique<data::Preprocessor>(config);
    pre->fit(data);
  }
};

// A bias tower in miniature: a linear layer over the bias fields only.
class BiasFieldsHead : public model::AdditiveHead {
 public:
  BiasFieldsHead(const model::InputShape& shape, std::int64_t dim) : fields_(shape.fields_in_group("bias")), dim_(dim) {
    linear_ = register_module("linear", torch::nn::Linear(static_cast<std::int64_t>(fields_.size()) * dim, shape.num_tasks));
  }
  torch::Tensor forward(const model::HeadInput& in) override {
    return linear_->forward(model::select_fields(in.features, in.shape, fields_, dim_)[0]);
  }

 private:
  std::vector<const model::InputField*> fields_;
  std::int64_t dim_;
  torch::nn::Linear linear_{nullptr};
};

}  // namespace

TEST(InputFields, NamesKindsGroupsAndColumnsFollowThePreprocessor) {
  FieldsFixture fx;
  const model::InputShape shape = model::input_shape(*fx.pre);
  ASSERT_EQ(shape.fields.size(), 5u);
  // Categorical fields (in config order), then bags, then dense columns.
  const model::InputField* user = shape.field("user");
  const model::InputField* position = shape.field("position");
  const model::InputField* tags = shape.field("tags");
  const model::InputField* price = shape.field("price");
  ASSERT_TRUE(user && position && tags && price);
  EXPECT_EQ(shape.field("nope"), nullptr);
  EXPECT_EQ(user->kind, model::FieldKind::kCategorical);
  EXPECT_EQ(position->slot, 2);
  EXPECT_EQ(tags->kind, model::FieldKind::kBag);
  EXPECT_EQ(price->kind, model::FieldKind::kDense);
  EXPECT_EQ(position->groups, (std::vector<std::string>{"bias"}));
  std::vector<std::string> item;
  for (const model::InputField* f : shape.fields_in_group("item")) item.push_back(f->name);
  EXPECT_EQ(item, (std::vector<std::string>{"item", "tags", "price"}));
  // Each field's rows in the fused table are the preprocessor's.
  const auto* pre_tags = fx.pre->find_field("tags");
  ASSERT_NE(pre_tags, nullptr);
  EXPECT_EQ(tags->offset, pre_tags->offset);
  EXPECT_EQ(tags->size, pre_tags->size);
  // Columns of FeatureInput's output with D = 3: 3 categorical fields, 1 bag, 1 dense.
  EXPECT_EQ(model::feature_columns(shape, *position, 3), (std::pair<std::int64_t, std::int64_t>{6, 9}));
  EXPECT_EQ(model::feature_columns(shape, *tags, 3), (std::pair<std::int64_t, std::int64_t>{9, 12}));
  EXPECT_EQ(model::feature_columns(shape, *price, 3), (std::pair<std::int64_t, std::int64_t>{12, 13}));

  // A field's columns are its embedding rows: the position column of row r is table[position id of r].
  torch::manual_seed(0);
  auto net = model::create_model(fx.config.model, shape);
  net->eval();
  data::FeaturizedData d = data::featurize_file(*fx.pre, fx.config.data.train, true);
  model::BatchBuilder builder;
  model::Batch batch = builder.build_range(d, 0, d.rows());
  const model::SparseLookup lookup{batch.categorical.reshape({-1}), batch.bag_ids, false};
  torch::NoGradGuard no_grad;
  const torch::Tensor features = net->input()->forward(batch, lookup, torch::Tensor());
  const torch::Tensor picked = model::select_fields(features, shape, {position, price}, 3);
  ASSERT_EQ(picked.sizes(), (std::vector<std::int64_t>{1, d.rows(), 4}));
  const torch::Tensor ids = batch.categorical.select(1, position->slot);
  EXPECT_TRUE(torch::equal(picked[0].slice(1, 0, 3), net->input()->table().index_select(0, ids)));
  EXPECT_TRUE(torch::equal(picked[0].slice(1, 3, 4), batch.dense.slice(1, 0, 1)));
}

TEST(AdditiveHeads, AHeadAddsItsLogitsAndTrainsOnlyThroughItsFields) {
  FieldsFixture fx;
  const model::InputShape shape = model::input_shape(*fx.pre);
  torch::manual_seed(0);
  auto net = model::create_model(fx.config.model, shape);
  data::FeaturizedData d = data::featurize_file(*fx.pre, fx.config.data.train, true);
  model::BatchBuilder builder;
  model::Batch batch = builder.build_range(d, 0, d.rows());
  net->eval();
  const torch::Tensor without = net->forward(batch, nullptr).logits.detach().clone();
  auto head = std::make_shared<BiasFieldsHead>(net->shape(), 3);
  net->add_head("bias_tower", head);
  const torch::Tensor with = net->forward(batch, nullptr).logits.detach();
  // Exactly additive: the model's logits plus the head's own output.
  const model::SparseLookup lookup{batch.categorical.reshape({-1}), batch.bag_ids, false};
  const torch::Tensor features = net->input()->forward(batch, lookup, torch::Tensor());
  const torch::Tensor none;
  const torch::Tensor own = head->forward({batch, lookup, none, features, net->shape()}).detach();
  EXPECT_TRUE(torch::allclose(with, without + own, 1e-6, 1e-6));
  // Its parameters are saved under its name and trained with the deep optimizer.
  EXPECT_NE(net->named_parameters().find("bias_tower.linear.weight"), nullptr);
  EXPECT_TRUE(net->wide_dense_parameters().empty());
  // Backpropagating the head's output alone reaches the rows of the bias field and nothing else.
  net->train();
  model::TouchedRows touched;
  net->forward(batch, &touched);  // gathers the touched rows
  const torch::Tensor rows = touched.rows[0];
  // Where the batch's ids point among the touched rows, as RankingModel::forward computes it.
  const torch::Tensor inverse =
      std::get<1>(at::_unique(torch::cat({batch.categorical.reshape({-1}), batch.bag_ids}), true, true));
  const std::int64_t ncat = batch.categorical.numel();
  const model::SparseLookup train_lookup{inverse.slice(0, 0, ncat), inverse.slice(0, ncat), true};
  const torch::Tensor train_features = net->input()->forward(batch, train_lookup, rows);
  head->forward({batch, train_lookup, none, train_features, net->shape()}).sum().backward();
  const model::InputField* position = net->shape().field("position");
  const torch::Tensor ids = touched.ids;
  const torch::Tensor in_position = (ids >= position->offset) & (ids < position->offset + position->size);
  const torch::Tensor grad_norm = rows.grad().abs().sum(1);
  EXPECT_GT(grad_norm.masked_select(in_position).sum().item<double>(), 0);
  EXPECT_EQ(grad_norm.masked_select(~in_position).sum().item<double>(), 0);

  // One training step moves the head's weights (they are in the deep optimizer's parameters).
  train::Trainer trainer(*net, fx.config);
  const torch::Tensor before = head->named_parameters()["linear.weight"].detach().clone();
  trainer.step(batch, 1, 1);
  EXPECT_FALSE(torch::equal(before, head->named_parameters()["linear.weight"]));
}

TEST(SelectRows, EqualsIndexSelectInValueAndGradientBitForBit) {
  torch::manual_seed(3);
  const torch::Tensor rows = torch::randn({50, 4});
  const torch::Tensor ids = torch::randint(0, 50, {3000}, torch::kLong);  // many repeats, as a batch has
  const torch::Tensor upstream = torch::randn({3000, 4});
  torch::Tensor a = rows.clone().requires_grad_(true), b = rows.clone().requires_grad_(true);
  const torch::Tensor ya = model::select_rows(a, ids), yb = b.index_select(0, ids);
  EXPECT_TRUE(torch::equal(ya, yb));
  (ya * upstream).sum().backward();
  (yb * upstream).sum().backward();
  EXPECT_TRUE(torch::equal(a.grad(), b.grad()));
  EXPECT_THROW(model::select_rows(a, ids.to(torch::kInt)), c10::Error);
}

TEST(UniqueIds, EqualsAtUniqueOnSmallAndLargeTables) {
  torch::manual_seed(5);
  for (std::int64_t rows : {std::int64_t{60}, std::int64_t{1} << 30}) {  // marking, and the hash-set path
    const torch::Tensor ids = torch::randint(0, std::min<std::int64_t>(rows, 60), {5000}, torch::kLong);
    const auto [unique, inverse] = model::unique_ids(ids, rows);
    const auto [want_unique, want_inverse] = at::_unique(ids, true, true);
    EXPECT_TRUE(torch::equal(unique, want_unique)) << rows;
    EXPECT_TRUE(torch::equal(inverse, want_inverse)) << rows;
  }
  EXPECT_THROW(model::unique_ids(torch::tensor({std::int64_t{3}, std::int64_t{60}}), 60), c10::Error);
  EXPECT_EQ(model::unique_ids(torch::empty({0}, torch::kLong), 10).first.numel(), 0);
}
