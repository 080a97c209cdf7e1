// In-process ranking: served scores equal offline predictions; order, top_k,
// context vs candidate values; bad requests name the field.
#include <cmath>
#include <fstream>

#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/record_reader.h"
#include "model/model.h"
#include "serve/ranker.h"
#include "test_util.h"
#include "model/model_dir.h"
#include "train/trainer.h"

using namespace mtrank;
using mtrank::testing::TempDir;
using nlohmann::json;

const char* const kConfig = R"(
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
hash_buckets = 32
[[features]]
name = "price"
type = "numeric"
log1p = true
[[tasks]]
name = "click"
column = "click"
[[tasks]]
name = "watch_time"
type = "regression"
column = "watch_time"
where = { column = "click", equals = ["1"] }
[model]
type = "cgc"
wide = true
[train]
epochs = 1
threads = 1
)";

class Serving : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = mtrank::testing::new_ranking_log_dir(/*rows=*/6000, /*seed=*/21, /*users=*/100, /*items=*/50,
                                                /*train_rows=*/5000);
    train_model_dir(kConfig, "model");
  }
  // Trains a small model on the synthetic log and saves it under dir_/name.
  static void train_model_dir(const std::string& config_text, const std::string& name) {
    Config c = parse_config(config_text, "serve.toml");
    torch::manual_seed(1);
    data::Preprocessor pre(c);
    pre.fit(dir_->file("train.csv"));
    data::FeaturizedData train = data::featurize_file(pre, dir_->file("train.csv"), true);
    auto net = model::create_model(c.model, model::input_shape(pre));
    train::train_model(*net, c, train, nullptr, {});
    model::save_model_dir(dir_->file(name), c, pre, *net,
                          {{"format", "mtrank-model"}, {"version", 1}, {"model_version", "test-1"}});
  }
  static void TearDownTestSuite() { delete dir_; }

  static serve::Ranker ranker(serve::RankerOptions options = {}) {
    return serve::Ranker(model::load_model_dir(dir_->file("model")), options, "census-test");
  }

  // The first n test rows as candidates (labels left out), with `hour` moved to
  // the context for every third candidate; also returns the rows as a CSV.
  static std::string request(int n, std::string* csv, int top_k = 0) {
    data::RecordReader reader(dir_->file("test.csv"));
    std::vector<std::string_view> f;
    const auto& h = reader.header();
    json cands = json::array();
    std::string out = "user_id,item_id,item_category,device,user_interests,price,hour\n";
    for (int i = 0; i < n && reader.next(f); ++i) {
      json c = json::object();
      for (std::size_t k = 0; k < 7; ++k) {
        if (h[k] == "hour" && i % 3 == 0) continue;  // comes from the context
        if (h[k] == "price") c[h[k]] = std::stod(std::string(f[k]));  // a JSON number
        else c[h[k]] = std::string(f[k]);
      }
      cands.push_back(c);
      for (std::size_t k = 0; k < 7; ++k)
        out += (k ? "," : "") + (h[k] == "hour" && i % 3 == 0 ? std::string("7") : std::string(f[k]));
      out += "\n";
    }
    if (csv) *csv = out;
    json r{{"context", {{"hour", "7"}}}, {"candidates", cands}};
    if (top_k > 0) r["top_k"] = top_k;
    return r.dump();
  }
  static TempDir* dir_;
};
TempDir* Serving::dir_ = nullptr;

TEST_F(Serving, ScoresEqualOfflinePredictionsAndAreOrdered) {
  serve::RankerOptions options;
  options.chunk_size = 7;  // several chunks, scored in parallel
  auto r = ranker(options);
  std::string csv;
  const std::string body = request(50, &csv);
  serve::RankResult result = r.rank_json(body);
  ASSERT_EQ(result.results.size(), 50u);
  // Offline: the same effective rows through featurize_file + predict.
  model::LoadedModel m = model::load_model_dir(dir_->file("model"));
  data::FeaturizedData d = data::featurize_file(*m.preprocessor, dir_->write("rows.csv", csv), false);
  train::Predictions p = train::predict(*m.net, m.config, d);
  for (const auto& c : result.results)
    for (int t = 0; t < 2; ++t) EXPECT_NEAR(c.tasks[t], p.values[c.index * 2 + t], 1e-5) << c.index << " " << t;
  for (std::size_t i = 1; i < result.results.size(); ++i) EXPECT_GE(result.results[i - 1].score, result.results[i].score);
  // Default formula: the sum of the task values.
  EXPECT_NEAR(result.results[0].score, result.results[0].tasks[0] + result.results[0].tasks[1], 1e-6);
  // The response body.
  json j = json::parse(r.to_json(result));
  EXPECT_EQ(j["model"]["name"], "census-test");
  EXPECT_EQ(j["model"]["version"], "test-1");
  ASSERT_EQ(j["results"].size(), 50u);
  for (std::size_t i = 0; i < 50; ++i) {  // written without a JSON tree: every value reads back
    const auto& c = j["results"][i];
    EXPECT_EQ(c.size(), 3u);
    EXPECT_EQ(c["index"].get<std::int64_t>(), result.results[i].index);
    EXPECT_EQ(c["score"].get<double>(), result.results[i].score);
    ASSERT_EQ(c["tasks"].size(), 2u);
    EXPECT_FLOAT_EQ(c["tasks"]["click"].get<float>(), result.results[i].tasks[0]);
    EXPECT_FLOAT_EQ(c["tasks"]["watch_time"].get<float>(), result.results[i].tasks[1]);
  }
  // Names are escaped; an empty result is an empty list.
  serve::Ranker odd(model::load_model_dir(dir_->file("model")), {}, "we\"ird\\name");
  json e = json::parse(odd.to_json(serve::RankResult{}));
  EXPECT_EQ(e["model"]["name"], "we\"ird\\name");
  EXPECT_TRUE(e["results"].is_array() && e["results"].empty());
}

TEST_F(Serving, BiasFeaturesAreMissingWhenServing) {
  // `device` as a selection-bias feature: trained on, never used when serving.
  std::string config = kConfig;
  const std::string names = R"(names = ["user_id", "item_id", "item_category", "device", "hour"])";
  ASSERT_NE(config.find(names), std::string::npos);
  config.replace(config.find(names), names.size(),
                 R"(names = ["user_id", "item_id", "item_category", "hour"]
type = "categorical"
[[features]]
name = "device"
bias = true)");  // the original's next line, type = "categorical", now types `device`
  const std::string cross = R"(columns = ["item_category", "device"])";
  ASSERT_NE(config.find(cross), std::string::npos);
  config.replace(config.find(cross), cross.size(), R"(columns = ["item_category", "hour"])");  // no cross over a bias column
  // As a feature of the model (missing at serving), and through YouTube's
  // shallow tower (switched off at serving).
  for (const std::string tower : {"", "\n[model.bias_tower]\nenabled = true\ntasks = [\"click\"]\n"}) {
  SCOPED_TRACE(tower.empty() ? "bias feature" : "bias tower");
  const std::string name = tower.empty() ? "model-bias" : "model-bias-tower";
  train_model_dir(config + tower, name);
  serve::Ranker r(model::load_model_dir(dir_->file(name)), {}, "bias");
  std::string csv;
  json body = json::parse(request(40, &csv));
  const serve::RankResult logged = r.rank_json(body.dump());
  for (auto& c : body["candidates"]) c["device"] = "some-other-device";
  const serve::RankResult other = r.rank_json(body.dump());
  for (auto& c : body["candidates"]) c.erase("device");
  const serve::RankResult absent = r.rank_json(body.dump());
  ASSERT_EQ(logged.results.size(), 40u);
  for (std::size_t i = 0; i < logged.results.size(); ++i) {
    EXPECT_EQ(logged.results[i].tasks, other.results[i].tasks);
    EXPECT_EQ(logged.results[i].tasks, absent.results[i].tasks);
  }
  // Offline prediction sees the column; with it blanked it scores as the server does.
  std::string blanked;
  std::stringstream lines(csv);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string x; std::getline(fields, x, ',');) f.push_back(x);
    if (!blanked.empty()) f[3] = "";  // device, after the header
    for (std::size_t k = 0; k < f.size(); ++k) blanked += (k ? "," : "") + f[k];
    blanked += "\n";
  }
  model::LoadedModel m = model::load_model_dir(dir_->file(name));
  ASSERT_EQ(m.config.model.bias_tower.enabled, !tower.empty());
  data::FeaturizedData d = data::featurize_file(*m.preprocessor, dir_->write("blanked.csv", blanked), false);
  train::Predictions p = train::predict(*m.net, m.config, d);
  for (const auto& c : logged.results)
    for (int t = 0; t < 2; ++t) EXPECT_NEAR(c.tasks[t], p.values[c.index * 2 + t], 1e-5) << c.index << " " << t;
  // ... and differently from the logged rows: the feature was learned, not dropped.
  data::FeaturizedData with_device = data::featurize_file(*m.preprocessor, dir_->write("logged.csv", csv), false);
  train::Predictions q = train::predict(*m.net, m.config, with_device);
  double diff = 0;
  for (std::size_t i = 0; i < q.values.size(); ++i) diff += std::abs(q.values[i] - p.values[i]);
  EXPECT_GT(diff, 1e-4);
  }
}

TEST_F(Serving, AbsentFeaturesUseTheConfiguredMissingValue) {
  // With data.missing_values = ["NA"], an absent numeric feature must read as
  // "NA" (missing), not as "" (which would be a bad number).
  train_model_dir(std::string("[data]\nmissing_values = [\"NA\"]\n") + kConfig, "model-na");
  serve::Ranker r(model::load_model_dir(dir_->file("model-na")), {}, "na");
  json body = json::parse(request(5, nullptr));
  json explicit_body = body;
  for (auto& c : body["candidates"]) {
    c.erase("price");
    c.erase("user_interests");
  }
  // What "missing" means per feature: "NA" for the numeric one; the multi-hot
  // one is an empty bag (not the one-value bag {"NA"}).
  for (auto& c : explicit_body["candidates"]) {
    c["price"] = "NA";
    c["user_interests"] = "";
  }
  const serve::RankResult result = r.rank_json(body.dump());
  const serve::RankResult expected = r.rank_json(explicit_body.dump());
  ASSERT_EQ(result.results.size(), 5u);
  for (std::size_t i = 0; i < result.results.size(); ++i) {
    EXPECT_TRUE(std::isfinite(result.results[i].score));
    EXPECT_EQ(result.results[i].index, expected.results[i].index);
    EXPECT_EQ(result.results[i].tasks, expected.results[i].tasks);
  }
}

TEST_F(Serving, ScoreFormulaFromTheModelConfigUnlessOverridden) {
  train_model_dir(std::string(kConfig) + "[serve]\nscore = \"product:click=1,watch_time=0.5\"\n", "model-formula");
  const std::string body = request(20, nullptr);
  serve::Ranker from_config(model::load_model_dir(dir_->file("model-formula")), {}, "f");
  for (const auto& c : from_config.rank_json(body).results)
    EXPECT_NEAR(c.score, c.tasks[0] * std::pow(std::max(c.tasks[1], 1e-12f), 0.5), 1e-5);
  serve::RankerOptions options;
  options.score = "sum:click=2";
  serve::Ranker overridden(model::load_model_dir(dir_->file("model-formula")), options, "f");
  for (const auto& c : overridden.rank_json(body).results) EXPECT_NEAR(c.score, 2 * c.tasks[0], 1e-6);
}

TEST_F(Serving, ParallelChunksGiveTheSameResult) {
  // Chunks run on the thread pool: each worker must see the request parsed on the calling thread.
  serve::RankerOptions options;
  options.chunk_size = 5;
  auto r = ranker(options);
  const std::string body = request(60, nullptr);
  at::set_num_threads(1);
  serve::RankResult one = r.rank_json(body);
  at::set_num_threads(2);
  serve::RankResult two = r.rank_json(body);
  serve::RankResult again = r.rank_json(body);
  at::set_num_threads(1);
  // One thread scores the list as one chunk, two threads in chunks of 5: GEMMs
  // of other shapes round differently, so values agree to float precision.
  ASSERT_EQ(one.results.size(), 60u);
  ASSERT_EQ(two.results.size(), 60u);
  std::vector<const serve::RankedCandidate*> by_index(60);
  for (const auto& c : one.results) by_index[static_cast<std::size_t>(c.index)] = &c;
  for (std::size_t i = 0; i < two.results.size(); ++i) {
    const serve::RankedCandidate& c = two.results[i];
    ASSERT_NE(by_index[static_cast<std::size_t>(c.index)], nullptr);
    for (int t = 0; t < 2; ++t) EXPECT_NEAR(c.tasks[t], by_index[static_cast<std::size_t>(c.index)]->tasks[t], 1e-6);
    EXPECT_EQ(again.results[i].tasks, c.tasks);  // same threads, same chunks: bit for bit
  }
}

TEST_F(Serving, KeyOrderDoesNotMatter) {
  // The parser guesses each key's column from the previous object's key order;
  // a guess that misses must fall back to the lookup, in any order.
  auto r = ranker();
  const json sorted = json::parse(request(40, nullptr));
  nlohmann::ordered_json shuffled = nlohmann::ordered_json::object();
  shuffled["context"] = sorted["context"];
  shuffled["candidates"] = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < sorted["candidates"].size(); ++i) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : sorted["candidates"][i].items()) keys.push_back(k);
    std::rotate(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(i % keys.size()), keys.end());
    if (i % 4 == 3) std::reverse(keys.begin(), keys.end());
    nlohmann::ordered_json c = nlohmann::ordered_json::object();
    for (const auto& k : keys) c[k] = sorted["candidates"][i][k];
    shuffled["candidates"].push_back(c);
  }
  const serve::RankResult a = r.rank_json(sorted.dump());
  const serve::RankResult b = r.rank_json(shuffled.dump());
  ASSERT_EQ(a.results.size(), b.results.size());
  for (std::size_t i = 0; i < a.results.size(); ++i) {
    EXPECT_EQ(a.results[i].index, b.results[i].index);
    EXPECT_EQ(a.results[i].tasks, b.results[i].tasks);
  }
}

TEST_F(Serving, TopKAndProductFormula) {
  serve::RankerOptions options;
  options.score = "product:click=1,watch_time=0.5";
  auto r = ranker(options);
  serve::RankResult all = r.rank_json(request(30, nullptr));
  serve::RankResult top = r.rank_json(request(30, nullptr, 5));
  ASSERT_EQ(top.results.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(top.results[i].index, all.results[i].index);
  // The next request without top_k gets every candidate. (Regression: the parsed
  // request is reused per thread, and the last top_k stuck to it.)
  EXPECT_EQ(r.rank_json(request(30, nullptr)).results.size(), 30u);
  const auto& c = top.results[0];
  EXPECT_NEAR(c.score, c.tasks[0] * std::pow(std::max(c.tasks[1], 1e-12f), 0.5), 1e-5);
}

TEST_F(Serving, BadRequestsNameTheField) {
  auto r = ranker();
  auto error = [&](const std::string& body) {
    try {
      r.rank_json(body);
    } catch (const serve::RequestError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error("{not json").find("malformed JSON"), std::string::npos);
  EXPECT_NE(error("[1,2]").find("must be a JSON object"), std::string::npos);
  EXPECT_NE(error("{}").find("candidates: missing"), std::string::npos);
  EXPECT_NE(error(R"({"candidates": 3})").find("candidates: must be a list"), std::string::npos);
  EXPECT_NE(error(R"({"candidates": [{"price": 1}, {"colour": "red"}]})").find("candidates[1].colour: unknown feature"),
            std::string::npos);
  EXPECT_NE(error(R"({"candidates": [{"price": 1}, {"price": "abc"}]})").find("candidates[1].price: 'abc' is not a finite number"),
            std::string::npos);
  EXPECT_NE(error(R"({"candidates": [{"price": [1]}]})").find("candidates[0].price: must be a string"), std::string::npos);
  EXPECT_NE(error(R"({"candidates": [], "top_k": 0})").find("top_k: must be a positive integer"), std::string::npos);
  EXPECT_NE(error(R"({"candidates": [], "topk": 3})").find("topk: unknown field"), std::string::npos);
  EXPECT_NE(error(R"({"context": 5, "candidates": []})").find("context: must be an object"), std::string::npos);
  // Duplicate keys are refused at both levels rather than read first-wins or last-wins.
  EXPECT_NE(error(R"({"candidates": [], "candidates": [{"price": 1}]})").find("candidates: given twice"), std::string::npos);
  EXPECT_NE(error(R"({"top_k": 1, "candidates": [], "top_k": 2})").find("top_k: given twice"), std::string::npos);
  EXPECT_NE(error(R"({"candidates": [{"price": 1}, {"price": 1, "price": 2}]})").find("candidates[1].price: given twice"),
            std::string::npos);
  EXPECT_NE(error(R"({"context": {"price": 1, "price": 1}, "candidates": []})").find("context.price: given twice"),
            std::string::npos);
  // The same key in different objects, and in context and a candidate, is fine.
  EXPECT_EQ(r.rank_json(R"({"context": {"price": 1}, "candidates": [{"price": 2}, {"price": 3}]})").results.size(), 2u);
  serve::RankerOptions small;
  small.max_candidates = 2;
  EXPECT_THROW(ranker(small).rank_json(R"({"candidates": [{}, {}, {}]})"), serve::RequestError);
  // Unknown features can be ignored by policy; missing features use the model's missing-value policy.
  serve::RankerOptions lenient;
  lenient.ignore_unknown_features = true;
  EXPECT_EQ(ranker(lenient).rank_json(R"({"candidates": [{"colour": "red"}, {"price": null}]})").results.size(), 2u);
  EXPECT_EQ(r.rank_json(R"({"candidates": []})").results.size(), 0u);
  // A bad value featurized in a parallel chunk on another thread reaches the caller as the same error.
  {
    serve::RankerOptions chunked;
    chunked.chunk_size = 3;
    auto rc = ranker(chunked);
    std::string body = R"({"candidates": [)";
    for (int i = 0; i < 12; ++i) body += std::string(i ? "," : "") + (i == 10 ? R"({"price": "x"})" : R"({"price": 1})");
    body += "]}";
    at::set_num_threads(2);
    std::string message = "no error";
    try {
      rc.rank_json(body);
    } catch (const serve::RequestError& e) {
      message = e.what();
    }
    at::set_num_threads(1);
    EXPECT_NE(message.find("candidates[10].price: 'x' is not a finite number"), std::string::npos) << message;
  }
  // Repeated keys are refused even in long runs of them. (Regression: number texts
  // were views into a vector that reallocated when a request had more numbers
  // than columns; now many candidates give many numbers, all of which must stay valid.)
  std::string repeated = R"({"candidates": [{)";
  for (int i = 0; i < 200; ++i) repeated += R"("price": )" + std::to_string(i) + ".5, ";
  repeated += R"("price": 3}]})";
  EXPECT_NE(error(repeated).find("candidates[0].price: given twice"), std::string::npos);
  std::string many = R"({"candidates": [)";
  for (int i = 0; i < 300; ++i) many += std::string(i ? ", " : "") + R"({"price": 3.25})";
  many += "]}";
  serve::RankResult rr = r.rank_json(many);
  ASSERT_EQ(rr.results.size(), 300u);
  for (const auto& c : rr.results) EXPECT_EQ(c.tasks, rr.results[0].tasks);
}

TEST(ScoreFormula, ParsesAndRejects) {
  std::vector<TaskConfig> tasks(2);
  tasks[0].name = "click";
  tasks[1].name = "like";
  serve::ScoreFormula f = serve::ScoreFormula::parse("sum:click=2,like=0.5", tasks);
  const float v[2] = {0.5f, 0.2f};
  EXPECT_DOUBLE_EQ(f.combine(v), 2 * 0.5 + 0.5 * 0.2f);
  EXPECT_NEAR(serve::ScoreFormula::parse("product:click,like=2", tasks).combine(v), 0.5 * 0.2 * 0.2, 1e-6);
  EXPECT_THROW(serve::ScoreFormula::parse("max:click", tasks), ConfigError);
  EXPECT_THROW(serve::ScoreFormula::parse("sum:ctr=1", tasks), ConfigError);
  EXPECT_THROW(serve::ScoreFormula::parse("sum:click=abc", tasks), ConfigError);
  // Issue 14 (low): "sum:" was accepted and scored everything 0.
  EXPECT_THROW(serve::ScoreFormula::parse("sum:", tasks), ConfigError);
  EXPECT_THROW(serve::ScoreFormula::parse("product:click=0", tasks), ConfigError);
  EXPECT_DOUBLE_EQ(serve::ScoreFormula::parse("sum", tasks).combine(v), 0.5 + 0.2f);
}
