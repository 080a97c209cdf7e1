// A sequential model from config to model directory: training on a generated
// log learns it at every width, the saved model scores a log exactly as
// training evaluated it, and the config and data mistakes are named.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "config/config.h"
#include "model/sequential.h"
#include "model/sequential_dir.h"
#include "test_util.h"
#include "train/candidate_sampler.h"
#include "train/sequential_run.h"

using namespace mtrank;

namespace {

// `user item` lines whose items follow a hidden Markov chain: after item i
// comes (7 i + 3) mod 40 + 1 with probability 0.8, else a uniform one.
// External item ids are 1000 + i, so the vocabulary really maps them.
std::string markov_log(int users, int events, unsigned seed) {
  std::mt19937 rng(seed);
  std::ostringstream out;
  for (int u = 0; u < users; ++u) {
    int item = static_cast<int>(rng() % 40) + 1;
    for (int e = 0; e < events; ++e) {
      out << u << ' ' << 1000 + item << '\n';
      item = rng() % 10 < 8 ? (7 * item + 3) % 40 + 1 : static_cast<int>(rng() % 40) + 1;
    }
  }
  return out.str();
}

const char* kConfig = R"(
[sequential]
block = "lrurec"
widths = [4, 8, 16]
blocks = 1
dropout = 0.1
max_len = 16
exclude = "none"  # the chain repeats items, so the target is often in the window

[train]
learning_rate = 3e-3
weight_decay = 0.01
batch_size = 32
epochs = 100
eval_every_steps = 25
patience = 4
monitor = "ndcg@10"
threads = 1
)";

// kConfig with `keys` added to its [sequential] section.
std::string with_sequential_keys(const std::string& keys) {
  std::string text = kConfig;
  return text.insert(text.find("[train]"), keys);
}

// The ConfigError parsing `text` gives, or "no error".
std::string error_of(const std::string& text) {
  try {
    parse_config(text, "bad.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(SequentialConfig, ParsesRoundTripsAndRefusesRankingSections) {
  const Config c = parse_config(kConfig, "seq.toml");
  ASSERT_TRUE(c.sequential.enabled);
  EXPECT_EQ(c.sequential.widths, (std::vector<std::int64_t>{4, 8, 16}));
  EXPECT_EQ(c.train.optimizer, "adamw");  // the default with [sequential]
  EXPECT_EQ(c.train.eval_batch_size, 256);
  EXPECT_EQ(c.train.eval_every_steps, 25);
  const Config again = parse_config(to_toml(c), "again.toml");
  EXPECT_EQ(to_toml(again), to_toml(c));
  EXPECT_TRUE(again.sequential.enabled);
  EXPECT_NE(error_of(std::string(kConfig) + "[[features]]\nname = \"x\"\n").find("has no [[features]]"), std::string::npos);
  EXPECT_NE(error_of("[sequential]\nwidths = [16, 8]\n").find("must increase"), std::string::npos);
  EXPECT_NE(error_of("[sequential]\n[train]\nmonitor = \"auc\"\n").find("is not one of ndcg@5"), std::string::npos);
  // A cut-off validation does not compute would never improve: refused too.
  EXPECT_NE(error_of("[sequential]\n[train]\nmonitor = \"recall@50\"\n").find("is not one of"), std::string::npos);
  for (const std::string& name : train::next_item_metric_names()) {  // every computed metric is accepted
    Config c = parse_config("[sequential]\n[train]\nmonitor = \"" + name + "\"\n", "ok.toml");
    EXPECT_EQ(c.train.monitor, name);
  }
  EXPECT_NE(error_of("[sequential]\n[train]\noptimizer = \"adagrad\"\n").find("adamw"), std::string::npos);
  EXPECT_NE(error_of("[data]\nval = \"v.txt\"\n[sequential]\n").find("leave-one-out"), std::string::npos);
  // The sequential-only keys are refused for a ranking model.
  const std::string ranking = error_of("[[features]]\nname = \"a\"\ntype = \"categorical\"\n[[tasks]]\nname = \"t\"\ncolumn = \"c\"\n[train]\nmax_steps = 3\n");
  EXPECT_NE(ranking.find("[sequential] models only"), std::string::npos) << ranking;
}

TEST(SequentialConfig, ServeKeysChooseTheRetrievalIndex) {
  const Config c = parse_config(std::string(kConfig) + "[serve]\nindex = \"funnel\"\nfunnel_widths = [4, 16]\nfunnel_keep = [50]\n",
                                "seq.toml");
  EXPECT_EQ(c.serve.index, "funnel");
  EXPECT_EQ(c.serve.funnel_widths, (std::vector<std::int64_t>{4, 16}));
  EXPECT_EQ(c.serve.funnel_keep, (std::vector<std::int64_t>{50}));
  const Config again = parse_config(to_toml(c), "again.toml");
  EXPECT_EQ(to_toml(again), to_toml(c));
  EXPECT_EQ(again.serve.funnel_keep, c.serve.funnel_keep);
  EXPECT_EQ(parse_config(kConfig, "seq.toml").serve.index, "exact");  // the default
  EXPECT_NE(error_of(std::string(kConfig) + "[serve]\nfunnel_widths = [4, 8, 16]\nfunnel_keep = [50]\n").find("one shortlist size per funnel stage but the last (2)"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kConfig) + "[serve]\nscore = \"sum\"\n").find("is a ranking model's key"), std::string::npos);
  const std::string ranking =
      error_of("[[features]]\nname = \"a\"\ntype = \"categorical\"\n[[tasks]]\nname = \"t\"\ncolumn = \"c\"\n[serve]\nindex = \"hnsw\"\n");
  EXPECT_NE(ranking.find("is a [sequential] model's retrieval key"), std::string::npos) << ranking;
}

TEST(SequentialRun, LearnsAGeneratedLogAtEveryWidthAndTheSavedModelScoresItTheSame) {
  mtrank::testing::TempDir dir;
  const std::string log = dir.write("log.txt", markov_log(240, 20, 3));
  train::SequentialRunRequest request;
  request.config = parse_config(kConfig, "seq.toml");
  request.config.data.train = log;
  request.config.train.max_steps = 200;
  request.out = dir.file("model");
  request.show_progress = false;
  const train::SequentialRunRecord run = train::run_sequential_training(request);
  EXPECT_EQ(run.users, 240);
  EXPECT_EQ(run.items, 40);
  EXPECT_EQ(run.steps, 200);  // max_steps bounds it (or early stopping stops sooner)
  ASSERT_EQ(run.splits.size(), 2u);
  const train::NextItemRecord& test = run.splits[1];
  ASSERT_EQ(test.widths.size(), 3u);
  // Chance NDCG@10 over about 40 items is about 0.12; the chain's 80% bounds
  // it near 0.8. Every width learns; measured 0.52 / 0.57 / 0.80.
  for (const train::WidthMetrics& w : test.widths) {
    EXPECT_GT(w.value("ndcg@10"), 0.35) << "width " << w.width;
  }
  EXPECT_GT(test.widths.back().value("ndcg@10"), 0.6);
  const nlohmann::json metrics = train::to_metrics_json(run);
  for (const char* width : {"4", "8", "16"}) EXPECT_TRUE(metrics["widths"][width].contains("recall@10")) << width;
  EXPECT_DOUBLE_EQ(metrics["tasks"]["next_item"]["ndcg@10"].get<double>(), test.widths.back().value("ndcg@10"));
  // The saved model, loaded, evaluates the log exactly as training did.
  model::LoadedSequentialModel m = model::load_sequential_model_dir(request.out);
  EXPECT_EQ(m.items.size(), 40);
  std::int64_t unknown = -1;
  const train::NextItemRecord again = train::evaluate_log(*m.net, m.config, m.items, log, &unknown);
  EXPECT_EQ(unknown, 0);
  for (std::size_t k = 0; k < 3; ++k)
    for (std::size_t i = 0; i < test.widths[k].metrics.size(); ++i)
      EXPECT_DOUBLE_EQ(again.widths[k].metrics[i].second, test.widths[k].metrics[i].second)
          << test.widths[k].metrics[i].first << " at width " << test.widths[k].width;
  // Unknown items in a log are skipped and counted.
  const std::string other = dir.write("other.txt", "0 1001\n0 1002\n0 99999\n0 1003\n0 1004\n");
  const train::NextItemRecord partial = train::evaluate_log(*m.net, m.config, m.items, other, &unknown);
  EXPECT_EQ(unknown, 1);
  EXPECT_EQ(partial.users, 1);
}

// A run interrupted after a validation and resumed from its checkpoint ends
// with exactly the uninterrupted run's weights, validation curve and metrics:
// mid-epoch (the epoch's order restored) and at an epoch's end (the next
// order drawn from the restored generator), with dropout, the sampled
// softmax (its draws) and a warm-up plus cosine schedule.
TEST(SequentialRun, AResumedRunEndsExactlyAsTheUninterruptedOne) {
  mtrank::testing::TempDir dir;
  const std::string log = dir.write("log.txt", markov_log(120, 20, 5));
  auto request_for = [&](const std::string& out, const std::string& softmax) {
    train::SequentialRunRequest request;
    request.config = parse_config(with_sequential_keys(softmax), "seq.toml");
    request.config.data.train = log;
    request.config.train.max_steps = 30;
    request.config.train.eval_every_steps = 5;  // 4 steps an epoch (120 windows, batch 32): validations mid-epoch
    request.config.train.warmup_steps = 4;
    request.config.train.lr_decay = "cosine";
    request.out = dir.file(out);
    request.show_progress = false;
    return request;
  };
  auto strip_timing = [](nlohmann::json m) {
    for (const char* key : {"read_seconds", "train_seconds", "validation_seconds", "steps_per_s", "resumed"}) m.erase(key);
    for (auto& p : m["history"]) p.erase("seconds");
    return m;
  };
  for (const std::string softmax : {"", "softmax = \"sampled\"\nnegatives = 10\n"}) {
    SCOPED_TRACE(softmax.empty() ? "full softmax" : "sampled softmax");
    torch::manual_seed(99);  // the run seeds LibTorch itself: what came before must not matter
    const train::SequentialRunRecord whole = train::run_sequential_training(request_for("whole" + std::to_string(softmax.size()), softmax));
    EXPECT_FALSE(std::filesystem::exists(dir.file("whole" + std::to_string(softmax.size()) + ".checkpoint")));
    for (const std::int64_t stop_at : {10, 20}) {  // step 10 is mid-epoch 3, step 20 the end of epoch 5
      const std::string out = "cut" + std::to_string(softmax.size()) + "_" + std::to_string(stop_at);
      train::SequentialRunRequest first = request_for(out, softmax);
      first.after_checkpoint = [&](const train::ValidationPoint& p) {
        if (p.step == stop_at) throw std::runtime_error("interrupted");
      };
      EXPECT_THROW(train::run_sequential_training(first), std::runtime_error);
      EXPECT_FALSE(std::filesystem::exists(first.out));  // no model directory from an interrupted run
      ASSERT_TRUE(std::filesystem::exists(first.out + ".checkpoint"));
      torch::manual_seed(12345);
      train::SequentialRunRequest again = request_for(out, softmax);
      again.resume = true;
      std::vector<std::int64_t> validated;  // the steps the resumed run validates: only those after the cut
      again.after_checkpoint = [&](const train::ValidationPoint& p) { validated.push_back(p.step); };
      const train::SequentialRunRecord resumed = train::run_sequential_training(again);
      EXPECT_TRUE(resumed.resumed);
      std::vector<std::int64_t> after_cut;
      for (std::int64_t step = stop_at + 5; step <= 30; step += 5) after_cut.push_back(step);
      EXPECT_EQ(validated, after_cut);
      EXPECT_EQ(strip_timing(train::to_metrics_json(resumed)), strip_timing(train::to_metrics_json(whole))) << stop_at;
      EXPECT_FALSE(std::filesystem::exists(again.out + ".checkpoint"));  // the model supersedes it
      const auto a = model::load_sequential_model_dir(again.out).net->parameters();
      const auto b = model::load_sequential_model_dir(dir.file("whole" + std::to_string(softmax.size()))).net->parameters();
      ASSERT_EQ(a.size(), b.size());
      for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
    }
  }
  // A run interrupted right after the validation that stopped it early
  // resumes to its end without another step.
  {
    train::SequentialRunRequest whole = request_for("stopping_whole", "");
    whole.config.train.patience = 1;
    whole.config.train.learning_rate = 3e-2;  // overshoots: a validation soon fails to improve
    const train::SequentialRunRecord ended = train::run_sequential_training(whole);
    ASSERT_TRUE(ended.early_stopped);
    const std::int64_t last = ended.history.back().step;
    train::SequentialRunRequest first = request_for("stopping", "");
    first.config = whole.config;
    first.after_checkpoint = [&](const train::ValidationPoint& p) {
      if (p.step == last) throw std::runtime_error("interrupted");
    };
    EXPECT_THROW(train::run_sequential_training(first), std::runtime_error);
    train::SequentialRunRequest again = request_for("stopping", "");
    again.config = whole.config;
    again.resume = true;
    int validations = 0;
    again.after_checkpoint = [&](const train::ValidationPoint&) { ++validations; };
    const train::SequentialRunRecord resumed = train::run_sequential_training(again);
    EXPECT_EQ(validations, 0);
    EXPECT_TRUE(resumed.early_stopped);
    EXPECT_EQ(strip_timing(train::to_metrics_json(resumed)), strip_timing(train::to_metrics_json(ended)));
  }
  // A checkpoint of another config, or none, is refused by name.
  train::SequentialRunRequest first = request_for("other", "");
  first.after_checkpoint = [](const train::ValidationPoint&) { throw std::runtime_error("interrupted"); };
  EXPECT_THROW(train::run_sequential_training(first), std::runtime_error);
  train::SequentialRunRequest changed = request_for("other", "");
  changed.config.train.learning_rate = 1e-2;
  changed.resume = true;
  try {
    train::run_sequential_training(changed);
    FAIL() << "resumed another config's checkpoint";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to another config or training log"), std::string::npos) << e.what();
  }
  train::SequentialRunRequest other_log = request_for("other", "");
  other_log.config.data.train = dir.write("log2.txt", markov_log(120, 20, 6));  // the same config, another log
  other_log.resume = true;
  try {
    train::run_sequential_training(other_log);
    FAIL() << "resumed another log's checkpoint";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to another config or training log"), std::string::npos) << e.what();
  }
  train::SequentialRunRequest none = request_for("never", "");
  none.resume = true;
  try {
    train::run_sequential_training(none);
    FAIL() << "resumed without a checkpoint";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("no checkpoint to resume from"), std::string::npos) << e.what();
  }
  // A corrupt checkpoint is refused, not loaded.
  {
    std::ofstream(dir.file("other.checkpoint"), std::ios::binary | std::ios::trunc) << "not a checkpoint";
  }
  train::SequentialRunRequest corrupt = request_for("other", "");
  corrupt.resume = true;
  EXPECT_THROW(train::run_sequential_training(corrupt), ModelError);
}

TEST(SequentialRun, NamesWhatIsWrongWithTheData) {
  mtrank::testing::TempDir dir;
  train::SequentialRunRequest request;
  request.config = parse_config(kConfig, "seq.toml");
  request.out = dir.file("model");
  request.show_progress = false;
  request.config.data.train = dir.write("short.txt", "1 5\n1 6\n2 7\n");  // nobody has 3 events
  try {
    train::run_sequential_training(request);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("3 or more events"), std::string::npos) << e.what();
  }
  request.config.data.train = dir.write("bad.txt", "1 5\n1 x\n");
  try {
    train::run_sequential_training(request);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.txt:2"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(request.out));  // nothing written
}

TEST(SequentialRun, AnExportedWidthScoresAsThatWidthOfTheFullModelAndRecommendLeavesTheHistoryOut) {
  mtrank::testing::TempDir dir;
  const std::string log = dir.write("log.txt", markov_log(120, 20, 4));
  train::SequentialRunRequest request;
  request.config = parse_config(kConfig, "seq.toml");
  request.config.data.train = log;
  request.config.train.max_steps = 60;
  request.out = dir.file("model");
  request.show_progress = false;
  const train::SequentialRunRecord run = train::run_sequential_training(request);
  model::LoadedSequentialModel full = model::load_sequential_model_dir(request.out);
  model::SequentialRecommender small = model::extract_width(*full.net, 8);
  EXPECT_EQ(small->options().widths, (std::vector<std::int64_t>{4, 8}));
  std::int64_t full_parameters = 0, small_parameters = 0;
  for (const auto& p : full.net->parameters()) full_parameters += p.numel();
  for (const auto& p : small->parameters()) small_parameters += p.numel();
  EXPECT_LT(small_parameters, full_parameters / 2);
  // Scores: the width-8 model's widths 4 and 8 against the full model's.
  torch::NoGradGuard no_grad;
  const torch::Tensor tokens = torch::tensor({0, 0, 3, 5, 7, 2, 1, 4, 4, 9, 12, 6}, torch::kInt64).view({1, 12});
  const torch::Tensor a = full.net->scores_by_width(full.net->forward(tokens));
  const torch::Tensor b = small->scores_by_width(small->forward(tokens));
  EXPECT_TRUE(torch::allclose(b[0], a[0], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(b[1], a[1], 1e-5, 1e-5));
  // Metrics on the log: the exported model's are the full model's width-8 ones.
  Config small_config = full.config;
  small_config.sequential.widths = {4, 8};
  const train::NextItemRecord exported = train::evaluate_log(*small, small_config, full.items, log, nullptr);
  const train::NextItemRecord& test = run.splits[1];
  for (std::size_t k = 0; k < 2; ++k)
    for (std::size_t i = 0; i < test.widths[k].metrics.size(); ++i)
      EXPECT_NEAR(exported.widths[k].metrics[i].second, test.widths[k].metrics[i].second, 1e-12)
          << test.widths[k].metrics[i].first << " at width " << test.widths[k].width;
  EXPECT_THROW(model::extract_width(*full.net, 5), std::invalid_argument);
  // recommend: best first, never an item of the history, at the asked width.
  const std::vector<std::int32_t> history = {3, 5, 7, 3};
  const auto top = train::recommend(*full.net, history, 16, 8, 5);
  ASSERT_EQ(top.size(), 5u);
  const torch::Tensor width8 = full.net->scores_by_width(full.net->forward(
      torch::tensor(data::input_window(history, 16), torch::kInt32).to(torch::kInt64).view({1, 16})))[1][0][15];
  for (std::size_t i = 0; i < top.size(); ++i) {
    EXPECT_TRUE(top[i].first != 3 && top[i].first != 5 && top[i].first != 7 && top[i].first != 0) << top[i].first;
    EXPECT_FLOAT_EQ(top[i].second, width8[top[i].first].item<float>());
    if (i > 0) {
      EXPECT_GE(top[i - 1].second, top[i].second);
    }
  }
  EXPECT_EQ(train::recommend(*full.net, history, 16, 0, 100).size(), 40u - 3u);  // every item but the history's
  EXPECT_THROW(train::recommend(*full.net, history, 16, 6, 5), std::invalid_argument);
}

TEST(SequentialConfig, ItemSideInformationKeys) {
  const Config c = parse_config(with_sequential_keys(R"(
text_columns = ["title"]
multi_hot_columns = ["genres"]
item_ids = false
feature_buckets = 1024
)") + "[data]\nitems = \"items.tsv\"\nitem_vectors = [\"a.npy\", \"b.tsv\"]\n",
                                "seq.toml");
  EXPECT_EQ(c.data.items, "items.tsv");
  EXPECT_EQ(c.data.item_vectors, (std::vector<std::string>{"a.npy", "b.tsv"}));
  EXPECT_FALSE(c.sequential.item_ids);
  EXPECT_EQ(c.sequential.feature_buckets, 1024);
  const Config again = parse_config(to_toml(c), "again.toml");
  EXPECT_EQ(to_toml(again), to_toml(c));
  EXPECT_EQ(again.data.item_vectors, c.data.item_vectors);
  std::string e = error_of("[data]\nitems = \"i.tsv\"\n[sequential]\n");
  EXPECT_NE(e.find("reads none of its columns"), std::string::npos) << e;
  // Columns without a table, or no representation at all, may be completed by
  // train --items / --item-vectors, so the run refuses them.
  mtrank::testing::TempDir dir;
  train::SequentialRunRequest request;
  request.config = parse_config("[sequential]\ntext_columns = [\"title\"]\n", "seq.toml");
  request.config.data.train = dir.write("log.txt", markov_log(10, 5, 1));
  request.out = dir.file("model");
  request.show_progress = false;
  const auto run_error = [&] {
    try {
      train::run_sequential_training(request);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  e = run_error();
  EXPECT_NE(e.find("set data.items or pass --items FILE"), std::string::npos) << e;
  request.config = parse_config("[sequential]\nitem_ids = false\n", "seq.toml");
  request.config.data.train = dir.file("log.txt");
  e = run_error();
  EXPECT_NE(e.find("no representation"), std::string::npos) << e;
  e = error_of("[data]\nitem_vectors = [\"v.tsv\"]\n[[features]]\nname = \"a\"\n[[tasks]]\nname = \"t\"\ncolumn = \"c\"\n");
  EXPECT_NE(e.find("[sequential] models only"), std::string::npos) << e;
}

TEST(SequentialRun, LearnsFromItemFeaturesAndFrozenVectorsWithoutIdsAndServesThemFromTheModelDirectory) {
  // The Markov log's items carry a unique title word each ("tok<i>") and one
  // of 5 genres; the vectors are random but fixed. Without ids, identity comes
  // from the title bag.
  mtrank::testing::TempDir dir;
  const std::string log = dir.write("log.txt", markov_log(240, 20, 3));
  std::string table = "item\ttitle\tgenres\n", text_vectors, wide_vectors;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  for (int i = 1; i <= 41; ++i) {  // item 1041 is not in the log: its row and vector go unused
    table += std::to_string(1000 + i) + "\tThe tok" + std::to_string(i) + "\tg" + std::to_string(i % 5) + "|all\n";
    text_vectors += std::to_string(1000 + i) + "\t";
    for (int d = 0; d < 4; ++d) text_vectors += (d ? " " : "") + std::to_string(normal(rng));
    text_vectors += "\n";
  }
  train::SequentialRunRequest request;
  request.config = parse_config(with_sequential_keys("item_ids = false\ntext_columns = [\"title\"]\n"
                                                     "multi_hot_columns = [\"genres\"]\nfeature_buckets = 4096\n") +
                                    "[data]\nitems = \"x\"\n",
                                "seq.toml");
  request.config.data.train = log;
  request.config.data.items = dir.write("items.tsv", table);
  request.config.data.item_vectors = {dir.write("vectors.tsv", text_vectors)};
  request.config.train.max_steps = 200;
  request.out = dir.file("model");
  request.show_progress = false;
  const train::SequentialRunRecord run = train::run_sequential_training(request);
  EXPECT_EQ(run.item_features.items_without_row, 0);
  EXPECT_EQ(run.item_features.table_rows_unused, 1);
  EXPECT_EQ(run.item_features.entries, 40 * 5);  // the, tok<i>, "the tok<i>", g<i % 5>, all
  EXPECT_EQ(run.item_features.vector_dims, (std::vector<std::int64_t>{4}));
  EXPECT_EQ(run.item_features.vector_rows_unused, (std::vector<std::int64_t>{1}));
  const train::NextItemRecord& test = run.splits[1];
  EXPECT_GT(test.widths.back().value("ndcg@10"), 0.5);  // chance about 0.12
  const nlohmann::json metrics = train::to_metrics_json(run);
  EXPECT_EQ(metrics["item_features"]["ids"], false);
  EXPECT_EQ(metrics["item_features"]["terms"], 200);
  // The model directory holds the features: evaluation needs neither file.
  std::filesystem::remove(request.config.data.items);
  std::filesystem::remove(request.config.data.item_vectors[0]);
  model::LoadedSequentialModel m = model::load_sequential_model_dir(request.out);
  EXPECT_EQ(m.net->options().feature_entries, 200);
  EXPECT_EQ(m.net->options().vector_dim, 4);
  const train::NextItemRecord again = train::evaluate_log(*m.net, m.config, m.items, log, nullptr);
  for (std::size_t k = 0; k < 3; ++k)
    for (std::size_t i = 0; i < test.widths[k].metrics.size(); ++i)
      EXPECT_DOUBLE_EQ(again.widths[k].metrics[i].second, test.widths[k].metrics[i].second);
  // A vector file with a short row is named by file and line; nothing is written.
  request.config.data.items = dir.write("items.tsv", table);
  request.config.data.item_vectors = {dir.write("short.tsv", "1001\t1 2 3\n1002\t1 2\n")};
  request.out = dir.file("model2");
  try {
    train::run_sequential_training(request);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("short.tsv:2: item '1002' has 2 values"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(request.out));
}

TEST(CandidateSampler, TheBatchLabelsAndDrawsByPopularityWithTheLogQShift) {
  // Training labels: item 1 twice, item 2 once (f = 2/3, 1/3; items 0 and 3 never).
  const train::CandidateSampler sampler(torch::tensor({0, 1, 1, 2}, torch::kInt64).view({1, 4}), 3, 2);
  torch::manual_seed(1);
  const auto [candidates, shift] = sampler.draw(torch::tensor({0, 2, 1}, torch::kInt64).view({1, 3}));
  // Labels 1 and 2 are candidates; draws come from {1, 2} only. Shift:
  // -log(1 - (1 - f)^(P + S)) with P = 2 labels and S = 2 draws.
  EXPECT_TRUE(torch::equal(candidates, torch::tensor({1, 2}, torch::kInt64)));
  EXPECT_NEAR(shift[0].item<double>(), -std::log(1 - std::pow(1.0 / 3, 4)), 1e-6);
  EXPECT_NEAR(shift[1].item<double>(), -std::log(1 - std::pow(2.0 / 3, 4)), 1e-6);
  // With a larger catalog the draws add items, never item 0 or an unseen one.
  std::vector<std::int64_t> many;
  for (int i = 0; i < 400; ++i) many.push_back(i % 40 + 1);
  const train::CandidateSampler popular(torch::tensor(many).view({4, 100}), 50, 30);
  const auto [c, s] = popular.draw(torch::tensor({0, 0, 5}, torch::kInt64).view({1, 3}));
  EXPECT_GT(c.numel(), 1);
  EXPECT_LE(c.numel(), 31);
  EXPECT_GE(c.min().item<std::int64_t>(), 1);
  EXPECT_LE(c.max().item<std::int64_t>(), 40);
  EXPECT_TRUE((c == 5).any().item<bool>());
  EXPECT_TRUE(torch::isfinite(s).all().item<bool>());
}

TEST(SequentialRun, SampledSoftmaxLearnsTheGeneratedLog) {
  mtrank::testing::TempDir dir;
  train::SequentialRunRequest request;
  request.config = parse_config(with_sequential_keys("softmax = \"sampled\"\nnegatives = 8\n"), "seq.toml");
  request.config.data.train = dir.write("log.txt", markov_log(240, 20, 3));
  request.config.train.max_steps = 200;
  request.out = dir.file("model");
  request.show_progress = false;
  const train::SequentialRunRecord run = train::run_sequential_training(request);
  // 32 windows of 16 labels hold most of the 40 items, so the candidates are
  // most of the catalog here; the point is the sampled path end to end.
  EXPECT_GT(run.mean_candidates, 8);
  EXPECT_LE(run.mean_candidates, 40);
  EXPECT_GT(run.splits[1].widths.back().value("ndcg@10"), 0.5);  // chance about 0.12
  const nlohmann::json metrics = train::to_metrics_json(run);
  EXPECT_EQ(metrics["softmax"], "sampled");
  EXPECT_EQ(metrics["negatives"], 8);
}
