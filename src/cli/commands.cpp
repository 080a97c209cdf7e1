#include "cli/commands.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/progress.h"
#include "common/system.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/synth.h"
#include "eval/metrics.h"
#include "train/model_dir.h"
#include "train/trainer.h"

namespace mtrank::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write_json_atomic(const std::string& path, const json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

std::string format_utilization(const std::vector<TaskConfig>& tasks, const std::vector<std::vector<double>>& u) {
  if (u.empty()) return "";
  std::string out = "expert utilization (mean gate weight per task and expert):\n";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%-16s", "task");
  out += buf;
  for (std::size_t e = 0; e < u[0].size(); ++e) {
    std::snprintf(buf, sizeof buf, " %6s", ("e" + std::to_string(e)).c_str());
    out += buf;
  }
  out += "\n";
  for (std::size_t t = 0; t < u.size(); ++t) {
    std::snprintf(buf, sizeof buf, "%-16s", tasks[t].name.c_str());
    out += buf;
    for (double w : u[t]) {
      std::snprintf(buf, sizeof buf, " %6.3f", w);
      out += buf;
    }
    out += "\n";
  }
  return out;
}

json split_json(const std::vector<eval::TaskMetrics>& m, const train::Predictions& p) {
  json j{{"tasks", eval::to_json(m)}};
  if (!p.expert_utilization.empty()) j["expert_utilization"] = p.expert_utilization;
  return j;
}

}  // namespace

int run_train(const TrainOptions& o) {
  Config config = load_config(o.config);
  if (!o.train.empty()) config.data.train = o.train;
  if (!o.val.empty()) config.data.val = o.val;
  if (!o.test.empty()) config.data.test = o.test;
  if (o.seed >= 0) config.train.seed = static_cast<std::uint64_t>(o.seed);
  if (o.threads >= 0) config.train.threads = o.threads;
  if (config.data.train.empty())
    throw ConfigError(o.config + ": no training data: set data.train or pass --train FILE");
  const bool progress = !o.quiet;
  const int threads = configure_threads(static_cast<int>(config.train.threads));
  torch::manual_seed(config.train.seed);

  Progress fit_timer("fit preprocessing", 0, "rows", false);
  data::Preprocessor pre(config);
  const bool fit_cached = data::fit_preprocessing(pre, config.data.train);
  const double fit_seconds = fit_timer.elapsed_seconds();
  if (progress)
    std::fprintf(stderr, "%s preprocessing of %s in %s: %d categorical, %d multi-hot, %d numeric features, "
                         "%lld embedding rows\n",
                 fit_cached ? "loaded cached" : "fitted", config.data.train.c_str(), human_seconds(fit_seconds).c_str(),
                 pre.num_categorical(), pre.num_bags(),
                 pre.num_dense(), static_cast<long long>(pre.embedding_rows()));

  data::IngestStats train_stats;
  data::FeaturizedData train_data = data::load_featurized(pre, config.data.train, true, &train_stats, progress);
  data::FeaturizedData val_data, test_data;
  if (!config.data.val.empty()) val_data = data::load_featurized(pre, config.data.val, true, nullptr, progress);
  if (!config.data.test.empty()) test_data = data::load_featurized(pre, config.data.test, true, nullptr, progress);

  auto net = model::create_model(config.model, train::input_shape(pre));
  std::int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  if (progress)
    std::fprintf(stderr, "model %s: %s parameters, %d threads, %lld training rows\n", config.model.type.c_str(),
                 human_count(static_cast<double>(params)).c_str(), threads, static_cast<long long>(train_data.rows()));

  train::TrainOptions topts;
  topts.show_progress = progress;
  topts.checkpoint_path = o.out + ".checkpoint";
  topts.resume = o.resume;
  train::TrainReport report =
      train::train_model(*net, config, train_data, config.data.val.empty() ? nullptr : &val_data, topts);

  json metrics;
  metrics["model"] = config.model.type;
  metrics["parameters"] = params;
  metrics["threads"] = threads;
  metrics["seed"] = config.train.seed;
  metrics["epochs"] = static_cast<int>(report.epochs.size());
  metrics["best_epoch"] = report.best_epoch;
  metrics["early_stopped"] = report.early_stopped;
  metrics["train_rows"] = train_data.rows();
  metrics["train_seconds"] = report.seconds;
  metrics["train_rows_per_s"] = report.train_rows_per_s;
  metrics["fit_seconds"] = fit_seconds;
  metrics["ingest_rows_per_s"] =
      train_stats.from_cache || train_stats.seconds <= 0 ? json(nullptr) : json(train_stats.rows / train_stats.seconds);
  metrics["ingest_from_cache"] = train_stats.from_cache;
  metrics["history"] = json::array();
  for (const auto& e : report.epochs)
    metrics["history"].push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"val_loss", e.val_loss},
                                  {"seconds", e.seconds}, {"rows_per_s", e.rows_per_s}});

  json splits = json::object();
  const std::pair<const char*, const data::FeaturizedData*> evals[] = {
      {"val", config.data.val.empty() ? nullptr : &val_data}, {"test", config.data.test.empty() ? nullptr : &test_data}};
  const char* headline = nullptr;
  for (const auto& [name, d] : evals) {
    if (!d) continue;
    train::Predictions p;
    auto m = train::evaluate(*net, config, *d, &p);
    splits[name] = split_json(m, p);
    std::printf("\n%s metrics (%s):\n%s", name, name == std::string("val") ? config.data.val.c_str() : config.data.test.c_str(),
                eval::format_table(m).c_str());
    if (std::string(name) == "test") std::printf("%s", format_utilization(config.tasks, p.expert_utilization).c_str());
    headline = name;
  }
  metrics["splits"] = splits;
  // "tasks" holds the test metrics when there is a test file, else validation.
  if (headline) {
    metrics["tasks"] = splits[headline]["tasks"];
    metrics["metrics_split"] = headline;
    if (splits[headline].contains("expert_utilization"))
      metrics["expert_utilization"] = splits[headline]["expert_utilization"];
  }

  json meta{{"format", "mtrank-model"}, {"version", 1}, {"model", config.model.type}, {"tasks", json::array()},
            {"training", metrics}};
  for (const auto& t : config.tasks) meta["tasks"].push_back({{"name", t.name}, {"type", to_string(t.type)}});
  train::save_model_dir(o.out, config, pre, *net, meta);
  // The finished model supersedes the checkpoint.
  std::error_code ec;
  fs::remove(topts.checkpoint_path, ec);
  if (!o.metrics_out.empty()) write_json_atomic(o.metrics_out, metrics);
  std::printf("\nmodel written to %s (%d epochs, best %d, %s rows/s)\n", o.out.c_str(),
              static_cast<int>(report.epochs.size()), report.best_epoch, human_count(report.train_rows_per_s).c_str());
  return 0;
}

int run_eval(const EvalOptions& o) {
  configure_threads(o.threads);
  train::LoadedModel m = train::load_model_dir(o.model);
  data::IngestStats stats;
  data::FeaturizedData d = data::load_featurized(*m.preprocessor, o.data, true, &stats, true);
  train::Predictions p;
  auto metrics = train::evaluate(*m.net, m.config, d, &p);
  std::printf("%s", eval::format_table(metrics).c_str());
  std::printf("%s", format_utilization(m.config.tasks, p.expert_utilization).c_str());
  if (!o.metrics_out.empty()) {
    json j = split_json(metrics, p);
    j["rows"] = d.rows();
    j["skipped_rows"] = stats.skipped;
    write_json_atomic(o.metrics_out, j);
  }
  return 0;
}

int run_predict(const PredictOptions& o) {
  configure_threads(o.threads);
  train::LoadedModel m = train::load_model_dir(o.model);
  data::IngestStats stats;
  data::FeaturizedData d = data::featurize_file(*m.preprocessor, o.data, false, &stats, true);
  train::Predictions p = train::predict(*m.net, m.config, d);
  AtomicFile out(o.out);
  std::FILE* f = out.get();
  for (std::size_t t = 0; t < m.config.tasks.size(); ++t)
    std::fprintf(f, "%s%s", t ? "," : "", m.config.tasks[t].name.c_str());
  std::fputc('\n', f);
  for (std::int64_t r = 0; r < p.rows; ++r)
    for (int t = 0; t < p.tasks; ++t) std::fprintf(f, "%.7g%c", p.values[r * p.tasks + t], t + 1 == p.tasks ? '\n' : ',');
  out.commit();
  std::fprintf(stderr, "wrote %lld predictions to %s%s\n", static_cast<long long>(p.rows), o.out.c_str(),
               stats.skipped ? " (bad input rows were skipped: output rows do not line up with input rows)" : "");
  return 0;
}

const char* const kQuickstartConfig = R"toml(# mtrank quickstart: an MMoE over a synthetic impression log.
# Every key is documented in docs/config.md.
[data]
train = "train.csv"
val = "val.csv"
test = "test.csv"

[[features]]
names = ["user_id", "item_id"]
type = "categorical"
min_count = 2             # rarer ids share the out-of-vocabulary id

[[features]]
names = ["item_category", "device", "hour"]
type = "categorical"

[[features]]
name = "user_interests"
type = "multi_hot"        # "c3|c7": a bag of categories, mean-pooled
separator = "|"
pooling = "mean"

[[features]]
name = "category_x_device"
type = "cross"
columns = ["item_category", "device"]
hash_buckets = 64

[[features]]
name = "price"
type = "numeric"
log1p = true
transform = "quantile"    # Wide & Deep: map to [0,1] by the training CDF
quantiles = 32

[[tasks]]
name = "click"
type = "binary"
column = "click"

[[tasks]]
name = "like"
type = "binary"
column = "like"
where = { column = "click", equals = ["1"] }   # sample space: clicked rows only

[[tasks]]
name = "watch_time"
type = "regression"
column = "watch_time"
weight = 0.001            # watch time is in seconds: scale its MSE down
where = { column = "click", equals = ["1"] }

[model]
type = "mmoe"
embedding_dim = 8
num_experts = 4
expert_hidden = [32]
tower_hidden = [16]

[train]
optimizer = "adam"
learning_rate = 0.003
batch_size = 512
epochs = 8
patience = 2
seed = 42
)toml";

int run_quickstart(const QuickstartOptions& o) {
  const fs::path dir(o.dir);
  fs::create_directories(dir);
  std::printf("mtrank quickstart: generating a synthetic impression log of %lld rows in %s/\n",
              static_cast<long long>(o.rows), dir.c_str());
  std::fflush(stdout);
  const fs::path all = dir / "all.csv";
  data::write_ranking_synthetic({o.rows, 7, 200, 100, 12}, all.string());
  // Split by row index: 8/10 train, 1/10 validation, 1/10 test.
  {
    std::ifstream in(all);
    std::ofstream train(dir / "train.csv"), val(dir / "val.csv"), test(dir / "test.csv");
    std::string line;
    std::getline(in, line);
    train << line << "\n";
    val << line << "\n";
    test << line << "\n";
    for (std::int64_t i = 0; std::getline(in, line); ++i) (i % 10 < 8 ? train : i % 10 == 8 ? val : test) << line << "\n";
  }
  fs::remove(all);
  const fs::path config_path = dir / "quickstart.toml";
  {
    std::ofstream cfg(config_path);
    cfg << kQuickstartConfig;
  }
  TrainOptions t;
  t.config = config_path.string();
  t.out = (dir / "model").string();
  t.train = (dir / "train.csv").string();
  t.val = (dir / "val.csv").string();
  t.test = (dir / "test.csv").string();
  t.metrics_out = (dir / "metrics.json").string();
  t.threads = o.threads;
  const int rc = run_train(t);
  if (rc != 0) return rc;
  std::printf(
      "\nWhat next:\n"
      "  build/mtrank eval --model %s --data %s\n"
      "  build/mtrank predict --model %s --data %s --out %s\n"
      "  edit %s (docs/config.md lists every key) and run\n"
      "  build/mtrank train --config %s --out %s\n"
      "  real data: build/mtrank train --config examples/census/mmoe.toml --out census-model (see README)\n",
      t.out.c_str(), t.test.c_str(), t.out.c_str(), t.test.c_str(), (dir / "predictions.csv").c_str(),
      config_path.c_str(), config_path.c_str(), t.out.c_str());
  return 0;
}

}  // namespace mtrank::cli
