#include "cli/commands.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/progress.h"
#include "common/system.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/hash.h"
#include "data/preprocessor.h"
#include "data/synth.h"
#include "eval/gbdt_baseline.h"
#include "eval/metric_registry.h"
#include "eval/metrics.h"
#include "serve/ranker.h"
#include "model/model_dir.h"
#include "train/trainer.h"
#include "train/warm_start.h"

namespace mtrank::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write_json_atomic(const std::string& path, const json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

std::string format_utilization(const Config& config, const std::vector<std::vector<double>>& u) {
  if (u.empty()) return "";
  const std::vector<std::string> labels = model::expert_labels(config.model, config.tasks);
  const bool by_kind = config.model.type == "cgc" || config.model.type == "ple";
  std::string out = by_kind ? "expert utilization (mean gate weight per task and expert: TASK:ownK are a task's own "
                              "experts, sharedK the shared ones, 0 where a gate cannot see; PLE: the last level):\n"
                            : "expert utilization (mean gate weight per task and expert):\n";
  int width = 6;
  for (const std::string& l : labels) width = std::max(width, static_cast<int>(std::min<std::size_t>(l.size(), 24)));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%-16s", "task");
  out += buf;
  for (std::size_t e = 0; e < u[0].size(); ++e) {
    std::snprintf(buf, sizeof buf, " %*s", width,
                  (e < labels.size() ? labels[e] : "e" + std::to_string(e)).substr(0, 24).c_str());
    out += buf;
  }
  out += "\n";
  for (std::size_t t = 0; t < u.size(); ++t) {
    std::snprintf(buf, sizeof buf, "%-16s", config.tasks[t].name.c_str());
    out += buf;
    for (double w : u[t]) {
      std::snprintf(buf, sizeof buf, " %*.3f", width, w);
      out += buf;
    }
    out += "\n";
  }
  return out;
}

json split_json(const Config& config, const std::vector<eval::TaskMetrics>& m, const train::Predictions& p) {
  json j{{"tasks", eval::to_json(m)}};
  if (!p.expert_utilization.empty()) {
    j["expert_utilization"] = p.expert_utilization;
    j["expert_names"] = model::expert_labels(config.model, config.tasks);
  }
  return j;
}

// Weights plus two optimizer moments (Adam) per parameter, in 4-byte floats,
// against the machine's memory: refused before anything is allocated.
void check_model_fits_in_memory(const Config& config, const model::InputShape& shape) {
  const model::ParameterEstimate e = model::estimate_parameters(config.model, shape);
  const double bytes = (e.embedding + e.dense) * 4.0 * 3.0;
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  if (memory <= 0 || bytes < 0.8 * memory) return;
  const std::string keys = e.embedding >= e.dense
                               ? "model.embedding_dim (" + std::to_string(config.model.embedding_dim) + ") times " +
                                     std::to_string(shape.embedding_rows) +
                                     " embedding rows: lower embedding_dim, a feature's hash_buckets, or raise min_count"
                               : "the layer sizes: lower model.expert_hidden, tower_hidden, bottom_hidden or the "
                                 "number of experts";
  throw ConfigError(config.source + ": this model needs about " + human_count(bytes) + "B to train (weights and " +
                    "optimizer state), more than this machine's " + human_count(memory) + "B; the largest part is " + keys);
}

}  // namespace

int run_train(const TrainOptions& o) {
  Config config = load_config(o.configs);
  if (!o.train.empty()) config.data.train = o.train;
  if (!o.val.empty()) config.data.val = o.val;
  if (!o.test.empty()) config.data.test = o.test;
  if (o.seed >= 0) config.train.seed = static_cast<std::uint64_t>(o.seed);
  if (o.threads >= 0) config.train.threads = o.threads;
  if (config.data.train.empty())
    throw ConfigError(config.source + ": no training data: set data.train or pass --train FILE");
  {
    // The training file is read twice (fit, then featurize): a FIFO or <(...) hung or read as empty.
    std::error_code ec;
    if (fs::exists(config.data.train, ec) && !fs::is_regular_file(config.data.train, ec))
      throw DataError(config.data.train + ": training data must be a regular file (it is read twice: to fit the "
                                          "preprocessing, then to featurize); save the stream to a file first");
  }
  // Every output is checked before any work: a bad --out or --metrics-out
  // used to fail only after a whole epoch, or after training.
  model::check_model_output_dir(o.out);
  check_output_file(o.metrics_out, "--metrics-out");
  eval::check_task_metrics(config);
  try {  // found now, not when the trained model is first served
    serve::ScoreFormula::parse(config.serve.score, config.tasks);
  } catch (const ConfigError& e) {
    throw ConfigError(config.source + ": key 'serve.score': " + e.what());
  }
  const bool progress = !o.quiet;
  const int threads = configure_threads(static_cast<int>(config.train.threads));
  torch::manual_seed(config.train.seed);

  Progress fit_timer("fit preprocessing", 0, "rows", false);
  std::optional<model::LoadedModel> previous;
  if (!o.warm_start.empty()) previous = model::load_model_dir(o.warm_start);
  data::Preprocessor pre(config);
  bool fit_cached = false;
  if (previous) pre.fit(config.data.train, previous->preprocessor.get());  // vocabularies grow from the old model's
  else fit_cached = data::fit_preprocessing(pre, config.data.train);
  const double fit_seconds = fit_timer.elapsed_seconds();
  if (progress)
    std::fprintf(stderr, "%s preprocessing of %s in %s: %d categorical, %d multi-hot, %d numeric features, "
                         "%lld embedding rows\n",
                 fit_cached ? "loaded cached" : "fitted", config.data.train.c_str(), human_seconds(fit_seconds).c_str(),
                 pre.num_categorical(), pre.num_bags(),
                 pre.num_dense(), static_cast<long long>(pre.embedding_rows()));

  data::IngestStats train_stats;
  data::FeaturizedData train_data = data::load_featurized(pre, config.data.train, true, &train_stats, progress);
  {
    const std::string label_report = data::check_label_counts(config, config.data.train, train_data);
    if (progress) std::fprintf(stderr, "%s", label_report.c_str());
  }
  data::FeaturizedData val_data, test_data;
  if (!config.data.val.empty()) val_data = data::load_featurized(pre, config.data.val, true, nullptr, progress);
  if (!config.data.test.empty()) test_data = data::load_featurized(pre, config.data.test, true, nullptr, progress);

  check_model_fits_in_memory(config, model::input_shape(pre));
  auto net = model::create_model(config.model, model::input_shape(pre));
  if (previous) {
    const train::WarmStartReport w = train::warm_start(*net, pre, *previous);
    std::fprintf(stderr,
                 "warm start from %s: %lld table rows kept, %lld new rows, %lld dense tensors kept, %lld re-initialized\n",
                 o.warm_start.c_str(), static_cast<long long>(w.rows_copied), static_cast<long long>(w.rows_new),
                 static_cast<long long>(w.params_copied), static_cast<long long>(w.params_skipped));
  }
  std::int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  if (progress)
    std::fprintf(stderr, "model %s: %s parameters, %d threads, %lld training rows\n", config.model.type.c_str(),
                 human_count(static_cast<double>(params)).c_str(), threads, static_cast<long long>(train_data.rows()));

  train::TrainOptions topts;
  topts.show_progress = progress;
  topts.checkpoint_path = o.out + ".checkpoint";
  topts.resume = o.resume;
  topts.threads = threads;
  {
    // Everything that defines the run except the thread count.
    Config identity = config;
    identity.train.threads = 0;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(data::hash_string(to_toml(identity) + pre.to_json().dump(), 7)));
    topts.fingerprint = hex;
  }
  train::TrainReport report =
      train::train_model(*net, config, train_data, config.data.val.empty() ? nullptr : &val_data, topts);

  json metrics;
  metrics["model"] = config.model.type;
  metrics["parameters"] = params;
  metrics["threads"] = threads;
  metrics["seed"] = config.train.seed;
  if (report.threads_at_start > 0 && report.threads_at_start != threads)
    metrics["threads_at_start"] = report.threads_at_start;  // resumed with another thread count
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
    train::check_finite_predictions(p, std::string(name) + " split");  // never write a model that predicts NaN
    splits[name] = split_json(config, m, p);
    if (o.tables) {
      std::printf("\n%s metrics (%s):\n%s", name,
                  name == std::string("val") ? config.data.val.c_str() : config.data.test.c_str(),
                  eval::format_table(m).c_str());
      if (std::string(name) == "test") std::printf("%s", format_utilization(config, p.expert_utilization).c_str());
    }
    headline = name;
  }
  metrics["splits"] = splits;
  // "tasks" holds the test metrics when there is a test file, else validation.
  if (headline) {
    metrics["tasks"] = splits[headline]["tasks"];
    metrics["metrics_split"] = headline;
    if (splits[headline].contains("expert_utilization")) {
      metrics["expert_utilization"] = splits[headline]["expert_utilization"];
      metrics["expert_names"] = splits[headline]["expert_names"];
    }
  }

  // The model's version: what it was trained from (fingerprint) and when.
  char created[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(created, sizeof created, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
  json meta{{"format", "mtrank-model"}, {"version", 1}, {"model", config.model.type}, {"tasks", json::array()},
            {"model_version", topts.fingerprint + "-" + created}, {"training", metrics}};
  for (const auto& t : config.tasks) meta["tasks"].push_back({{"name", t.name}, {"type", to_string(t.type)}});
  model::save_model_dir(o.out, config, pre, *net, meta);
  // The finished model supersedes the checkpoint.
  std::error_code ec;
  fs::remove(topts.checkpoint_path, ec);
  if (!o.metrics_out.empty()) write_json_atomic(o.metrics_out, metrics);
  std::fprintf(o.quiet ? stderr : stdout, "%smodel written to %s (%d epochs, best %d, %s rows/s)\n", o.quiet ? "" : "\n", o.out.c_str(),
              static_cast<int>(report.epochs.size()), report.best_epoch, human_count(report.train_rows_per_s).c_str());
  return 0;
}

// A loaded model that predicts NaN (weights and statistics were checked at
// load, so this is a defect) is a model error, never -nan rows with exit 0.
void refuse_non_finite(const train::Predictions& p, const std::string& model_dir) {
  try {
    train::check_finite_predictions(p, model_dir);
  } catch (const TrainingError& e) {
    throw ModelError(e.what());
  }
}

int run_eval(const EvalOptions& o) {
  check_output_file(o.metrics_out, "--metrics-out");
  configure_threads(o.threads);
  model::LoadedModel m = model::load_model_dir(o.model);
  eval::check_task_metrics(m.config);
  data::IngestStats stats;
  data::FeaturizedData d = data::load_featurized(*m.preprocessor, o.data, true, &stats, true);
  train::Predictions p;
  auto metrics = train::evaluate(*m.net, m.config, d, &p);
  refuse_non_finite(p, o.model);
  std::printf("%s", eval::format_table(metrics).c_str());
  std::printf("%s", format_utilization(m.config, p.expert_utilization).c_str());
  if (!o.metrics_out.empty()) {
    json j = split_json(m.config, metrics, p);
    j["rows"] = d.rows();
    j["skipped_rows"] = stats.skipped;
    write_json_atomic(o.metrics_out, j);
  }
  return 0;
}

int run_predict(const PredictOptions& o) {
  check_output_file(o.out, "--out");
  configure_threads(o.threads);
  model::LoadedModel m = model::load_model_dir(o.model);
  data::IngestStats stats;
  data::FeaturizedData d = data::featurize_file(*m.preprocessor, o.data, false, &stats, true, /*allow_skip=*/false);
  train::Predictions p = train::predict(*m.net, m.config, d);
  refuse_non_finite(p, o.model);
  AtomicFile out(o.out);
  std::FILE* f = out.get();
  for (std::size_t t = 0; t < m.config.tasks.size(); ++t)
    std::fprintf(f, "%s%s", t ? "," : "", m.config.tasks[t].name.c_str());
  std::fputc('\n', f);
  for (std::int64_t r = 0; r < p.rows; ++r)
    for (int t = 0; t < p.tasks; ++t) std::fprintf(f, "%.7g%c", p.values[r * p.tasks + t], t + 1 == p.tasks ? '\n' : ',');
  out.commit();
  std::fprintf(stderr, "wrote %lld predictions to %s\n", static_cast<long long>(p.rows), o.out.c_str());
  return 0;
}

namespace {

// A compare config with the overlays and the --train/--val/--test overrides applied.
Config resolve_compare_config(const CompareOptions& o, const std::string& cfg) {
  std::vector<std::string> files{cfg};
  files.insert(files.end(), o.overlays.begin(), o.overlays.end());
  Config config = load_config(files);
  for (auto [path, value] : {std::pair{&config.data.train, o.train}, {&config.data.val, o.val},
                             {&config.data.test, o.test}})
    if (!value.empty()) *path = value;
  eval::check_task_metrics(config);
  return config;
}

// Results in `dir` are reused only while they came from the same `identity`
// (its config.toml): otherwise the folder is emptied, saying that `what` changed.
void keep_results_while_identical(const fs::path& dir, const std::string& identity, const std::string& what) {
  const fs::path identity_file = dir / "config.toml";
  if (fs::exists(identity_file)) {
    std::ifstream in(identity_file);
    std::stringstream old;
    old << in.rdbuf();
    if (old.str() != identity) {
      std::fprintf(stderr, "compare: %s changed since the results in %s were trained; training again\n", what.c_str(),
                   dir.c_str());
      fs::remove_all(dir);
    }
  }
  fs::create_directories(dir);
  write_file_atomic(identity_file.string(), identity);
}

// The xgboost baseline of `compare --gbdt`: one metrics JSON per seed, in the
// keys compare reads from a model's ("tasks", "train_rows_per_s"), reused
// from `dir` while the first config and the trees' settings are unchanged.
std::vector<json> gbdt_runs(const CompareOptions& o, const fs::path& dir) {
  Config config = resolve_compare_config(o, o.configs.front());
  if (config.data.val.empty())
    throw ConfigError(config.source + ": --gbdt tunes the trees on the validation split: set data.val or pass --val");
  const eval::GbdtOptions defaults;
  std::string settings = "xgboost " + eval::xgboost_version() + ", depths";
  for (int d : defaults.max_depths) settings += " " + std::to_string(d);
  settings += ", eta " + std::to_string(defaults.eta) + ", rounds " + std::to_string(defaults.max_rounds) +
              ", early stop " + std::to_string(defaults.early_stopping_rounds) + ", subsample " +
              std::to_string(defaults.subsample) + ", colsample " + std::to_string(defaults.colsample_bytree) + "\n";
  Config identity_config = config;
  identity_config.train.threads = 0;
  identity_config.train.seed = 0;
  identity_config.model = ModelConfig{};  // the trees read the features, data and tasks, not the model
  keep_results_while_identical(dir, "# trees baseline: " + settings + to_toml(identity_config),
                               "the data or tasks of " + o.configs.front());
  std::vector<json> runs;
  std::optional<data::Preprocessor> pre;
  data::FeaturizedData train, val, test;
  for (std::int64_t seed : o.seeds) {
    const fs::path metrics_file = dir / ("seed" + std::to_string(seed) + ".json");
    if (!fs::exists(metrics_file)) {
      if (!pre) {  // the data is read once for every seed
        pre.emplace(config);
        data::fit_preprocessing(*pre, config.data.train);
        train = data::load_featurized(*pre, config.data.train, true);
        val = data::load_featurized(*pre, config.data.val, true);
        if (!config.data.test.empty()) test = data::load_featurized(*pre, config.data.test, true);
      }
      std::fprintf(stderr, "compare: training xgboost per task, seed %lld\n", static_cast<long long>(seed));
      eval::GbdtOptions options = defaults;
      options.seed = static_cast<std::uint64_t>(seed);
      options.threads = o.threads;
      const bool on_test = !config.data.test.empty();
      const data::FeaturizedData& scored = on_test ? test : val;
      const eval::GbdtResult r = eval::fit_gbdt(*pre, config.tasks, train, val, scored, options);
      const auto m = eval::evaluate_tasks(config.tasks, r.predictions, scored.labels, scored.mask, scored.groups);
      json run{{"model", "xgboost"},
               {"xgboost_version", eval::xgboost_version()},
               {"seed", seed},
               {"threads", o.threads},
               {"train_rows", train.rows()},
               {"train_seconds", r.seconds},
               // Training rows over the whole fit's seconds, tuning of every task included.
               {"train_rows_per_s", r.seconds > 0 ? train.rows() / r.seconds : 0.0},
               {"features", r.features},
               {"categorical_features", r.categorical_features},
               {"tasks", eval::to_json(m)},
               {"metrics_split", on_test ? "test" : "val"},
               {"trees", json::object()}};
      for (const eval::GbdtTaskFit& f : r.fits)
        run["trees"][f.task] = {{"max_depth", f.max_depth}, {"rounds", f.rounds}, {"val_loss", f.val_loss},
                                {"train_rows", f.train_rows}};
      write_json_atomic(metrics_file.string(), run);
    }
    std::ifstream in(metrics_file);
    runs.push_back(json::parse(in));
  }
  return runs;
}

}  // namespace

int run_compare(const CompareOptions& o) {
  struct Result {
    std::string name;
    std::vector<json> runs;  // metrics JSON per seed
  };
  std::vector<Result> results;
  fs::create_directories(o.out_dir);
  for (const std::string& cfg : o.configs) {
    Result r{fs::path(cfg).stem().string(), {}};
    for (const Result& other : results)
      if (other.name == r.name)
        throw ConfigError(cfg + ": two configs are named '" + r.name + "'; rename one (a model is named after its file)");
    const fs::path dir = fs::path(o.out_dir) / r.name;
    // Results are reused only if they came from the same config (after overlays and overrides).
    Config resolved = resolve_compare_config(o, cfg);
    resolved.train.threads = 0;
    resolved.train.seed = 0;
    keep_results_while_identical(dir, to_toml(resolved), cfg);
    for (std::int64_t seed : o.seeds) {
      const fs::path metrics = dir / ("seed" + std::to_string(seed) + ".json");
      if (!fs::exists(metrics)) {
        fs::create_directories(dir);
        std::fprintf(stderr, "compare: training %s, seed %lld\n", r.name.c_str(), static_cast<long long>(seed));
        TrainOptions t;
        t.configs = {cfg};
        t.configs.insert(t.configs.end(), o.overlays.begin(), o.overlays.end());
        t.out = (dir / ("seed" + std::to_string(seed) + "-model")).string();
        t.metrics_out = metrics.string();
        t.train = o.train;
        t.val = o.val;
        t.test = o.test;
        t.seed = seed;
        t.threads = o.threads;
        t.quiet = true;
        t.tables = false;
        run_train(t);
      }
      std::ifstream in(metrics);
      r.runs.push_back(json::parse(in));
    }
    results.push_back(std::move(r));
  }
  if (o.gbdt) {
    for (const Result& other : results)
      if (other.name == "xgboost")
        throw ConfigError("a config is named 'xgboost', the name of the --gbdt row; rename it");
    results.push_back({"xgboost", gbdt_runs(o, fs::path(o.out_dir) / "xgboost")});
  }
  // Tasks and their metric: AUC for binary (higher is better), RMSE for regression (lower is better).
  const json& first = results.front().runs.front()["tasks"];
  std::vector<std::pair<std::string, std::string>> tasks;
  for (const auto& [name, m] : first.items()) tasks.emplace_back(name, m.contains("auc") ? "auc" : "rmse");
  auto stats = [&](const Result& r, const std::string& task, const std::string& metric) {
    std::vector<double> v;
    for (const json& run : r.runs) {
      // A metric is null when undefined (e.g. a test split with one class): it becomes NaN, not an error.
      const json* m = run.contains("tasks") && run["tasks"].contains(task) ? &run["tasks"][task] : nullptr;
      v.push_back(m && m->contains(metric) && (*m)[metric].is_number() ? (*m)[metric].get<double>()
                                                                      : std::numeric_limits<double>::quiet_NaN());
    }
    double mean = 0;
    for (double x : v) mean += x / static_cast<double>(v.size());
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return std::make_pair(mean, *hi - *lo);
  };
  const Result* base = nullptr;
  for (const Result& r : results)
    if (r.name == o.baseline) base = &r;
  json summary = json::object();
  std::vector<std::vector<std::string>> table;
  std::vector<std::string> header{"model"};
  for (const auto& [task, metric] : tasks) header.push_back(task + " " + metric + " (spread)" + (base ? " gain" : ""));
  if (base) header.push_back("verdict");
  header.push_back("train rows/s");
  table.push_back(header);
  // A task is up or down only when the difference exceeds the seed noise
  // (eval::compare_to_baseline); within it, never a seesaw (issue 13.4).
  const bool one_seed = o.seeds.size() < 2;
  for (const Result& r : results) {
    std::vector<std::string> row{r.name};
    std::vector<eval::Change> changes;
    for (const auto& [task, metric] : tasks) {
      const auto [mean, spread] = stats(r, task, metric);
      json& entry = summary["models"][r.name][task];
      entry[metric] = mean;
      entry["spread"] = spread;
      std::string gain;
      if (base && &r != base) {
        const auto [b, base_spread] = stats(*base, task, metric);
        const bool higher_is_better = eval::make_metric(metric)->higher_is_better();
        const double rel = (higher_is_better ? mean - b : b - mean) / b * 100;  // positive = better
        const eval::Change c = eval::compare_to_baseline(mean, spread, b, base_spread, higher_is_better, o.seeds.size());
        changes.push_back(c);
        char g[48];
        std::snprintf(g, sizeof g, " %+.2f%%%s", rel,
                      c == eval::Change::kUp ? " up" : c == eval::Change::kDown ? " down" : c == eval::Change::kWithinNoise ? " ~" : "");
        gain = g;
        entry["gain_percent"] = rel;
        entry["change"] = eval::to_string(c);
      }
      char cell[128];
      std::snprintf(cell, sizeof cell, "%.4f (%.4f)%s", mean, spread, gain.c_str());
      row.push_back(cell);
    }
    if (base) {
      const std::string v = &r == base ? "baseline" : eval::verdict(changes);
      row.push_back(v);
      summary["verdicts"][r.name] = v;
    }
    double rows = 0;
    for (const json& run : r.runs) rows += run["train_rows_per_s"].get<double>() / static_cast<double>(r.runs.size());
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.0f", rows);
    row.push_back(rate);
    table.push_back(row);
  }
  std::vector<std::size_t> width(header.size(), 0);
  for (const auto& row : table)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  for (std::size_t i = 0; i < table.size(); ++i) {
    std::string line;
    for (std::size_t c = 0; c < table[i].size(); ++c) {
      if (o.markdown) line += "| " + table[i][c] + " ";
      else line += (c ? "  " : "") + table[i][c] + std::string(width[c] - table[i][c].size(), ' ');
    }
    std::printf("%s\n", o.markdown ? (line + "|").c_str() : line.c_str());
    if (o.markdown && i == 0) {
      std::string rule;
      for (std::size_t c = 0; c < header.size(); ++c) rule += "|---";
      std::printf("%s|\n", rule.c_str());
    }
  }
  if (!base && !o.baseline.empty())
    std::printf("(no '%s' config among the models: gains are not shown)\n", o.baseline.c_str());
  if (base)
    std::printf("%s\n", one_seed ? "(one seed: the seed noise is unknown, so no task is called up or down)"
                                  : "(up/down: the difference of the means exceeds the larger seed spread of the two "
                                    "models; ~: within noise)");
  summary["noise_rule"] = "a task is up or down when the difference of the means over seeds exceeds the larger "
                          "of the two models' spreads (max - min over seeds), else within noise";
  write_json_atomic((fs::path(o.out_dir) / "compare.json").string(), summary);
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
  t.configs = {config_path.string()};
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
      "  build/mtrank serve --model %s   (then POST candidates to http://127.0.0.1:8080/v1/rank; README)\n"
      "  edit %s (docs/config.md lists every key) and run\n"
      "  build/mtrank train --config %s --out %s\n"
      "  real data: build/mtrank train --config examples/census/mmoe.toml --out census-model (see README)\n",
      t.out.c_str(), t.test.c_str(), t.out.c_str(), t.test.c_str(), (dir / "predictions.csv").c_str(), t.out.c_str(),
      config_path.c_str(), config_path.c_str(), t.out.c_str());
  return 0;
}

}  // namespace mtrank::cli
