#include "train/run.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>

#include "common/error.h"
#include "common/progress.h"
#include "common/system.h"
#include "data/record_reader.h"
#include "data/hash.h"
#include "data/preprocessor.h"
#include "model/model.h"
#include "model/model_dir.h"
#include "data/block_store.h"
#include "data/training_rows.h"
#include "train/communicator.h"
#include "train/warm_start.h"

namespace mtrank::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Weights plus two optimizer moments (Adam) per parameter, in 4-byte floats,
// for each of this machine's workers, against the machine's memory: refused
// before anything is allocated. With tables sharded over the workers, each
// builds the whole model first but keeps its share of the tables' moments.
void check_model_fits_in_memory(const Config& config, const model::InputShape& shape, const DistributedEnv& env) {
  const model::ParameterEstimate e = model::estimate_parameters(config.model, shape);
  const double table_share =
      config.train.table_sharding == "row" ? 1.0 / static_cast<double>(std::max(env.world_size, 1)) : 1.0;
  const double bytes = (e.embedding * (1.0 + 2.0 * table_share) + e.dense * 3.0) * 4.0 *
                       static_cast<double>(std::max(env.local_world_size, 1));
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  if (memory <= 0 || bytes < 0.8 * memory) return;
  const std::string keys = e.embedding >= e.dense
                               ? "model.embedding_dim (" + std::to_string(config.model.integer("embedding_dim")) + ") times " +
                                     std::to_string(shape.embedding_rows) +
                                     " embedding rows: lower embedding_dim, a feature's hash_buckets, or raise min_count"
                               : "the layer sizes: lower model.expert_hidden, tower_hidden, bottom_hidden or the "
                                 "number of experts";
  throw ConfigError(config.source + ": this model needs about " + human_count(bytes) + "B to train (weights and " +
                    "optimizer state" + (env.local_world_size > 1 ? ", in each of this machine's workers" : std::string()) +
                    "), more than this machine's " + human_count(memory) + "B; the largest part is " + keys);
}


void check_training_file(const Config& config) {
  if (config.data.train.empty())
    throw ConfigError(config.source + ": no training data: set data.train or pass --train FILE");
  // The training files are read twice (fit, then featurize): a FIFO or <(...) hung or read as empty.
  std::error_code ec;
  for (const std::string& file : config.data.train)
    if (fs::exists(file, ec) && !fs::is_regular_file(file, ec))
      throw DataError(file + ": training data must be a regular file (it is read twice: to fit the "
                             "preprocessing, then to featurize); save the stream to a file first");
}

// Everything that defines the run except the thread count: config and fitted preprocessing.
std::string run_fingerprint(const Config& config, const data::Preprocessor& pre) {
  Config identity = config;
  identity.train.threads = 0;
  identity.train.adapt_threads = TrainConfig{}.adapt_threads;  // speed only
  identity.data.memory_budget_mb = 0;  // decides where rows live; run_training adds whether they were streamed
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(data::hash_string(to_toml(identity) + pre.to_json().dump(), 7)));
  return hex;
}

}  // namespace

SplitRecord evaluate_split(model::RankingModel& net, const Config& config, const data::FeaturizedData& data,
                           const std::string& name, const std::string& path) {
  Predictions p;
  SplitRecord split;
  split.name = name;
  split.path = path;
  split.tasks = evaluate(net, config, data, &p);
  check_finite_predictions(p, path);  // "FILE: the model predicts nan for row R ..."
  split.expert_utilization = p.expert_utilization;
  if (!p.expert_utilization.empty()) split.expert_names = model::expert_labels(config.model, config.tasks);
  return split;
}

json to_json(const SplitRecord& split) {
  json j{{"tasks", eval::to_json(split.tasks)}};
  if (!split.expert_utilization.empty()) {
    j["expert_utilization"] = split.expert_utilization;
    j["expert_names"] = split.expert_names;
  }
  return j;
}

RunRecord run_training(const RunRequest& request) {
  RunRecord run;
  run.config = request.config;
  data::expand_data_sets(run.config.data);
  const Config& config = run.config;
  check_training_file(config);
  eval::check_task_metrics(config);  // a misspelt metric is refused now, not after training
  eval::resolve_monitor(config);     // and so is a train.monitor that names no task or metric
  if (config.train.monitor != "loss" && config.data.val.empty() && request.show_progress)
    std::fprintf(stderr, "warning: train.monitor = \"%s\" needs validation data (--val); without it the last epoch is kept\n",
                 config.train.monitor.c_str());
  // With WORLD_SIZE > 1 (mtrank train --nproc-per-node, torchrun, a
  // scheduler) this process is one worker of a data-parallel run: it joins the
  // others now, so a misconfigured run fails before any work.
  DistributedEnv env = request.join_distributed ? DistributedEnv::from_environment() : DistributedEnv{};
  env.timeout = request.distributed_timeout;
  std::unique_ptr<Communicator> communicator = make_communicator(env);
  run.world_size = env.world_size;
  run.primary = communicator->is_primary();
  // Checked before any work (a bad --out used to fail only after a whole
  // epoch), by the one process that writes it.
  if (run.primary) model::check_model_output_dir(request.out);
  const bool progress = request.show_progress && run.primary;  // rank 0 alone reports
  run.threads = configure_threads(env.threads_per_worker(static_cast<int>(config.train.threads)));
  torch::manual_seed(config.train.seed);

  Progress fit_timer("fit preprocessing", 0, "rows", false);
  std::optional<model::LoadedModel> previous;
  if (!request.warm_start.empty()) previous = model::load_model_dir(request.warm_start);
  data::Preprocessor pre(config);
  if (previous) pre.fit(config.data.train, previous->preprocessor.get());  // vocabularies grow from the old model's
  else run.fit_from_cache = data::fit_preprocessing(pre, config.data.train);
  run.fit_seconds = fit_timer.elapsed_seconds();
  if (progress)
    std::fprintf(stderr, "%s preprocessing of %s in %s: %d categorical, %d multi-hot, %d numeric features, "
                         "%lld embedding rows\n",
                 run.fit_from_cache ? "loaded cached" : "fitted", describe(config.data.train).c_str(),
                 human_seconds(run.fit_seconds).c_str(), pre.num_categorical(), pre.num_bags(), pre.num_dense(),
                 static_cast<long long>(pre.embedding_rows()));

  // In memory, or streamed from blocks on disk when featurized it would pass
  // the memory budget (or with --stream).
  // The default budget (half this machine's or cgroup's memory) is shared by
  // the workers on this machine, as its cores are.
  const std::string rank_suffix = env.distributed() ? ".rank" + std::to_string(env.rank) : "";
  std::uint64_t budget = request.stream ? 0 : data::memory_budget_bytes(config.data);
  if (config.data.memory_budget_mb == 0) budget /= static_cast<std::uint64_t>(env.local_world_size);
  std::string out = request.out;
  while (out.size() > 1 && out.back() == '/') out.pop_back();  // "model/" -> "model.blocks", not "model/.blocks"
  const std::string temporary_dir = out + ".blocks" + rank_suffix;
  // A temporary store goes when the run ends, also when featurizing fails
  // half way (a bad row, a full disk): only the store's own files.
  struct RemoveTemporaryStore {
    std::string dir;
    bool armed;
    ~RemoveTemporaryStore() {
      if (!armed) return;
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name == "manifest.json" || name.rfind("block-", 0) == 0) fs::remove(entry.path(), ec);
      }
      fs::remove(dir, ec);  // only if now empty
    }
  } remove_temporary_store{temporary_dir, config.data.cache_dir.empty()};
  data::TrainingSet train_set = data::load_training_set(pre, config.data.train, budget, temporary_dir, rank_suffix,
                                                        &run.train_ingest, progress);
  const data::FeaturizedData& train_data = train_set.in_memory;
  run.train_rows = train_set.rows();
  run.streamed = train_set.blocks.has_value();
  if (progress && run.streamed)
    std::fprintf(stderr, "streaming %lld training rows (%sB featurized) from %zu blocks in %s, shuffled %lld rows at a time\n",
                 static_cast<long long>(run.train_rows), human_count(static_cast<double>(train_set.blocks->bytes())).c_str(),
                 train_set.blocks->blocks(), train_set.blocks->dir().c_str(),
                 static_cast<long long>(config.data.shuffle_buffer_rows));
  {
    const std::string label_report = data::check_label_counts(config, config.data.train, train_set.label_counts());
    if (progress) std::fprintf(stderr, "%s", label_report.c_str());
  }
  data::FeaturizedData val_data, test_data;
  if (!config.data.val.empty()) val_data = data::load_featurized(pre, config.data.val, true, nullptr, progress);
  if (!config.data.test.empty()) test_data = data::load_featurized(pre, config.data.test, true, nullptr, progress);

  check_model_fits_in_memory(config, model::input_shape(pre), env);
  auto net = model::create_model(config.model, model::input_shape(pre));
  // Each task starts at its training mean (a warm start or --resume then overwrites it).
  net->set_output_bias(run.streamed ? initial_task_logits(config, train_set.blocks->label_sums(), train_set.blocks->weight_sums())
                                    : initial_task_logits(config, train_data));
  if (previous) {
    const WarmStartReport w = warm_start(*net, pre, *previous);
    if (progress)
      std::fprintf(stderr,
                 "warm start from %s: %lld table rows kept, %lld new rows, %lld dense tensors kept, %lld re-initialized\n",
                 request.warm_start.c_str(), static_cast<long long>(w.rows_copied), static_cast<long long>(w.rows_new),
                 static_cast<long long>(w.params_copied), static_cast<long long>(w.params_skipped));
  }
  for (const auto& p : net->parameters()) run.parameters += p.numel();
  run.train_matmul_flops_per_row = net->training_matmul_flops_per_row();
  if (progress)
    std::fprintf(stderr, "model %s: %s parameters, %d threads%s, %lld training rows\n", config.model.type.c_str(),
                 human_count(static_cast<double>(run.parameters)).c_str(), run.threads,
                 env.distributed() ? (" in each of " + std::to_string(env.world_size) + " workers").c_str() : "",
                 static_cast<long long>(run.train_rows));

  // Workers that read other data or another config would exchange mismatched messages.
  check_same_on_every_rank(*communicator,
                           run_fingerprint(config, pre) + "|" + std::to_string(run.train_rows) + "|" +
                               std::to_string(val_data.rows()) + "|" + std::to_string(run.streamed),
                           "the config and training data (rows, fitted preprocessing)");
  TrainOptions topts;
  topts.show_progress = progress;
  topts.checkpoint_path = request.out + ".checkpoint";
  topts.resume = request.resume;
  topts.threads = run.threads;
  // A streamed run shuffles otherwise: its checkpoint resumes only a streamed run.
  topts.fingerprint = run.fingerprint = run_fingerprint(config, pre) + (run.streamed ? "-streamed" : "");
  topts.adapt_threads = config.train.adapt_threads;
  {
    Trainer trainer(*net, config, communicator.get());
    std::unique_ptr<data::TrainingRows> rows;
    if (run.streamed)
      rows = std::make_unique<data::StreamedRows>(*train_set.blocks, config.data.shuffle_buffer_rows, pre.embedding_rows());
    else
      rows = std::make_unique<data::InMemoryRows>(train_data);
    run.report = trainer.run(*rows, config.data.val.empty() ? nullptr : &val_data, topts);
    if (run.streamed) run.peak_buffer_rows = static_cast<data::StreamedRows&>(*rows).peak_rows();
  }
  // The replicas are identical: rank 0 alone evaluates and writes the model.
  if (!run.primary) return run;

  const std::pair<const char*, const data::FeaturizedData*> evals[] = {
      {"val", config.data.val.empty() ? nullptr : &val_data}, {"test", config.data.test.empty() ? nullptr : &test_data}};
  for (const auto& [name, d] : evals) {
    if (!d) continue;
    // Never write a model that predicts NaN: evaluate_split refuses it.
    run.splits.push_back(
        evaluate_split(*net, config, *d, name, describe(name == std::string("val") ? config.data.val : config.data.test)));
    run.headline_split = static_cast<int>(run.splits.size()) - 1;  // test if there is one, else val
  }

  // The model's version: what it was trained from (fingerprint) and when.
  char created[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(created, sizeof created, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
  run.model_version = run.fingerprint + "-" + created;
  json meta{{"format", "mtrank-model"}, {"version", 1}, {"model", config.model.type}, {"tasks", json::array()},
            {"model_version", run.model_version}, {"training", to_metrics_json(run)}};
  for (const auto& t : config.tasks) meta["tasks"].push_back({{"name", t.name}, {"type", to_string(t.type)}});
  model::save_model_dir(request.out, config, pre, *net, meta);
  // The finished model supersedes the checkpoint, and with sharded tables the
  // other workers' rows beside it (on this machine; another machine's stay,
  // and no later --resume reads them without rank 0's file).
  std::error_code ec;
  fs::remove(topts.checkpoint_path, ec);
  if (config.train.table_sharding == "row")
    for (int r = 1; r < env.world_size; ++r) fs::remove(topts.checkpoint_path + ".rank" + std::to_string(r), ec);
  return run;
}

json to_metrics_json(const RunRecord& run) {
  const TrainReport& report = run.report;
  json metrics;
  metrics["model"] = run.config.model.type;
  metrics["parameters"] = run.parameters;
  metrics["threads"] = run.threads;
  metrics["world_size"] = run.world_size;  // processes of a data-parallel run (1: one process)
  metrics["seed"] = run.config.train.seed;
  if (report.threads_at_start > 0 && report.threads_at_start != run.threads)
    metrics["threads_at_start"] = report.threads_at_start;  // resumed with another thread count
  metrics["epochs"] = static_cast<int>(report.epochs.size());
  metrics["best_epoch"] = report.best_epoch;
  metrics["early_stopped"] = report.early_stopped;
  metrics["train_rows"] = run.train_rows;
  metrics["streamed"] = run.streamed;  // training rows read from blocks on disk (data.memory_budget_mb, --stream)
  if (run.streamed) metrics["peak_buffer_rows"] = run.peak_buffer_rows;
  metrics["train_seconds"] = report.seconds;
  metrics["train_rows_per_s"] = report.train_rows_per_s;
  metrics["train_matmul_flops_per_row"] = run.train_matmul_flops_per_row;  // over sgemm GFLOP/s: the roofline
  // train.adapt_threads: whether it took effect, and the steps run on one thread and on all.
  metrics["adaptive_threads"] = {{"enabled", report.threads_adapted},
                                 {"steps_on_one_thread", report.steps_on_one_thread},
                                 {"steps_on_all_threads", report.steps_on_all_threads}};
  metrics["fit_seconds"] = run.fit_seconds;
  const data::IngestStats& ingest = run.train_ingest;
  metrics["ingest_rows_per_s"] = ingest.from_cache || ingest.seconds <= 0 ? json(nullptr) : json(ingest.rows / ingest.seconds);
  metrics["ingest_from_cache"] = ingest.from_cache;
  metrics["task_names"] = json::array();  // config order: the rows of expert_utilization
  for (const TaskConfig& t : run.config.tasks) metrics["task_names"].push_back(t.name);
  metrics["history"] = json::array();
  for (const auto& e : report.epochs) {
    json h{{"epoch", e.epoch},   {"train_loss", e.train_loss}, {"val_loss", e.val_loss},
           {"seconds", e.seconds}, {"rows_per_s", e.rows_per_s}, {"learning_rate", e.learning_rate}};
    if (run.world_size > 1) h["sync_seconds"] = e.sync_seconds;  // of `seconds`, exchanging gradients
    if (e.train_task_loss.size() == run.config.tasks.size()) {
      json per_task = json::object();
      for (std::size_t t = 0; t < e.train_task_loss.size(); ++t) per_task[run.config.tasks[t].name] = e.train_task_loss[t];
      h["train_task_loss"] = per_task;  // each task's masked mean loss, averaged over the epoch's batches
    }
    if (!e.val.empty()) h["val"] = eval::to_json(e.val);  // this epoch's validation metrics per task
    metrics["history"].push_back(std::move(h));
  }
  json splits = json::object();
  for (const SplitRecord& split : run.splits) splits[split.name] = to_json(split);
  metrics["splits"] = splits;
  // "tasks" holds the test metrics when there is a test file, else validation.
  if (run.headline_split >= 0) {
    const SplitRecord& headline = run.splits[static_cast<std::size_t>(run.headline_split)];
    const json& h = splits[headline.name];
    metrics["tasks"] = h["tasks"];
    metrics["metrics_split"] = headline.name;
    if (h.contains("expert_utilization")) {
      metrics["expert_utilization"] = h["expert_utilization"];
      metrics["expert_names"] = h["expert_names"];
    }
  }
  return metrics;
}

}  // namespace mtrank::train
