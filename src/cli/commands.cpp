#include "cli/commands.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <cstdio>
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
#include "data/item_features.h"
#include "data/preprocessor.h"
#include "data/record_reader.h"
#include "data/synth.h"
#include "eval/gbdt_baseline.h"
#include "eval/metric_registry.h"
#include "eval/metrics.h"
#include "eval/seesaw.h"
#include "serve/ranker.h"
#include "serve/retriever.h"
#include "model/model_dir.h"
#include "data/item_text.h"
#include "model/lsa.h"
#include "model/sequential.h"
#include "model/sequential_dir.h"
#include "report/report.h"
#include "train/communicator.h"
#include "train/launcher.h"
#include "train/run.h"
#include "train/sequential_run.h"
#include "train/trainer.h"

namespace mtrank::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// MODEL_DIR -> MODEL_DIR-report.html, the report the "what next" lines suggest.
std::string report_path_for(std::string model_dir) {
  while (model_dir.size() > 1 && model_dir.back() == '/') model_dir.pop_back();
  return model_dir + "-report.html";
}

// [serve] score is found now, not when the trained model is first served.
void check_score_formula(const Config& config) {
  try {
    serve::ScoreFormula::parse(config.serve.score, config.tasks);
  } catch (const ConfigError& e) {
    throw ConfigError(config.source + ": key 'serve.score': " + e.what());
  }
}

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

}  // namespace

namespace {
void print_next_item_table(const train::NextItemRecord& split) {
  std::printf("\n%s metrics (%s, %lld users):\n%-8s", split.name.c_str(), split.path.c_str(),
              static_cast<long long>(split.users), "width");
  for (const std::string& m : train::next_item_metric_names()) std::printf(" %10s", m.c_str());
  std::printf("\n");
  for (const train::WidthMetrics& w : split.widths) {
    std::printf("%-8lld", static_cast<long long>(w.width));
    for (const auto& [name, v] : w.metrics) std::printf(" %10.4f", v);
    std::printf("\n");
  }
}

int run_train_sequential(const TrainOptions& o, Config config) {
  if (o.stream)
    throw ConfigError("--stream streams a ranking model's featurized rows; a [sequential] model holds its interaction "
                      "histories in memory (4 bytes an event)");
  if (!o.warm_start.empty())
    throw ConfigError("--warm-start is not available for [sequential] models yet; train from scratch, or --resume an "
                      "interrupted run");
  train::SequentialRunRequest request;
  request.config = std::move(config);
  request.out = o.out;
  request.show_progress = !o.quiet;
  request.resume = o.resume;
  request.join_distributed = true;
  request.distributed_timeout = std::chrono::seconds(o.dist_timeout);
  const train::SequentialRunRecord run = train::run_sequential_training(request);
  if (!run.primary) return 0;  // a data-parallel worker other than rank 0: rank 0 reports and writes
  if (o.tables)
    for (const train::NextItemRecord& split : run.splits) print_next_item_table(split);
  if (!o.metrics_out.empty()) write_json_atomic(o.metrics_out, train::to_metrics_json(run));
  std::fprintf(o.quiet ? stderr : stdout, "%smodel written to %s (%lld steps, best %lld, %.2f steps/s)\n",
               o.quiet ? "" : "\n", o.out.c_str(), static_cast<long long>(run.steps),
               static_cast<long long>(run.best_step), run.train_seconds > 0 ? run.steps / run.train_seconds : 0.0);
  if (o.what_next && !o.quiet)
    std::printf("\nWhat next:\n  build/mtrank eval --model %s --data LOG   (every width's metrics on a log)\n",
                o.out.c_str());
  return 0;
}
}  // namespace

int run_train(const TrainOptions& o) {
  Config config = load_config(o.configs);
  if (!o.train.empty()) config.data.train = o.train;
  if (!o.val.empty()) config.data.val = o.val;
  if (!o.test.empty()) config.data.test = o.test;
  if (o.seed >= 0) config.train.seed = static_cast<std::uint64_t>(o.seed);
  if (o.threads >= 0) config.train.threads = o.threads;
  if (o.max_steps >= 0) {
    if (!config.sequential.enabled)
      throw ConfigError("--max-steps bounds a [sequential] model's training; ranking models train by train.epochs");
    config.train.max_steps = o.max_steps;
  }
  if (!o.items.empty() || !o.item_vectors.empty()) {
    if (!config.sequential.enabled)
      throw ConfigError("--items and --item-vectors give a [sequential] model item side information; a ranking "
                        "model reads item columns from its data rows ([[features]])");
    if (!o.items.empty()) config.data.items = o.items;
    if (!o.item_vectors.empty()) config.data.item_vectors = o.item_vectors;
  }
  // Every output is checked before any work: a bad --metrics-out used to
  // fail only after training (the model directory is checked by the run).
  check_output_file(o.metrics_out, "--metrics-out");
  if (o.nproc_per_node > 1) {
    if (train::DistributedEnv::from_environment().distributed())
      throw ConfigError("--nproc-per-node starts the workers itself, and WORLD_SIZE is already set (this process is "
                        "a worker of torchrun or a scheduler): drop one of them");
    if (!config.sequential.enabled) check_score_formula(config);
    train::LaunchOptions launch;
    launch.workers = o.nproc_per_node;
    launch.arguments = o.worker_arguments;
    return train::launch_local_workers(launch);
  }
  if (config.sequential.enabled) return run_train_sequential(o, std::move(config));
  check_score_formula(config);
  train::RunRequest request;
  request.config = std::move(config);
  request.out = o.out;
  request.resume = o.resume;
  request.warm_start = o.warm_start;
  request.stream = o.stream;
  request.show_progress = !o.quiet;
  request.join_distributed = true;
  request.distributed_timeout = std::chrono::seconds(o.dist_timeout);
  const train::RunRecord run = train::run_training(request);
  if (!run.primary) return 0;  // a data-parallel worker other than rank 0: rank 0 reports and writes
  if (o.tables)
    for (const train::SplitRecord& split : run.splits) {
      std::printf("\n%s metrics (%s):\n%s", split.name.c_str(), split.path.c_str(), eval::format_table(split.tasks).c_str());
      if (split.name == "test") std::printf("%s", format_utilization(run.config, split.expert_utilization).c_str());
    }
  if (!o.metrics_out.empty()) write_json_atomic(o.metrics_out, train::to_metrics_json(run));
  std::fprintf(o.quiet ? stderr : stdout, "%smodel written to %s (%d epochs, best %d, %s rows/s)\n", o.quiet ? "" : "\n",
               o.out.c_str(), static_cast<int>(run.report.epochs.size()), run.report.best_epoch,
               human_count(run.report.train_rows_per_s).c_str());
  if (o.what_next && !o.quiet) {
    const std::string report = report_path_for(o.out);
    std::printf("\nWhat next:\n"
                "  build/mtrank report %s --out %s   (learning curves, metrics, calibration, experts)\n"
                "  build/mtrank eval --model %s --data FILE\n"
                "  build/mtrank serve --model %s\n",
                o.out.c_str(), report.c_str(), o.out.c_str(), o.out.c_str());
  }
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

namespace {

// Spearman's rank correlation (ties get their mean rank).
double rank_correlation(const std::vector<double>& a, const std::vector<double>& b) {
  auto ranks = [](const std::vector<double>& v) {
    std::vector<std::size_t> order(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return v[x] < v[y]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < order.size();) {
      std::size_t j = i;
      while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
      for (std::size_t k = i; k <= j; ++k) r[order[k]] = (static_cast<double>(i + j) / 2) + 1;
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += ra[i] / n, mb += rb[i] / n;
  double cov = 0, va = 0, vb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    cov += (ra[i] - ma) * (rb[i] - mb);
    va += (ra[i] - ma) * (ra[i] - ma);
    vb += (rb[i] - mb) * (rb[i] - mb);
  }
  return va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : std::nan("");
}

// The served ranking against ground truth (mtrank simulate): NDCG of the
// ranking mtrank serve would give (bias features missing) on the true grades,
// and the bias tower's learned bias by position against the true log
// examination probability.
json evaluate_against_truth(const EvalOptions& o, model::LoadedModel& m, const data::FeaturizedData& logged,
                            const data::IngestStats& stats) {
  if (stats.skipped > 0)
    throw DataError(o.data + ": " + std::to_string(stats.skipped) +
                    " rows were skipped, so --truth rows no longer line up with the data rows");
  if (logged.groups.empty())
    throw ConfigError(o.model + ": --truth ranks within lists, and the model's config has no data.group_column");
  std::vector<float> grade;
  std::vector<int> position;
  std::vector<double> log_examined;
  {
    data::RecordReader reader(o.truth);
    auto column = [&](const std::string& name) {
      const auto& h = reader.header();
      const auto it = std::find(h.begin(), h.end(), name);
      return it == h.end() ? -1 : static_cast<int>(it - h.begin());
    };
    const int cg = column(o.truth_column), cp = column("position"), ce = column("p_examined");
    if (cg < 0) throw DataError(o.truth + ": no column '" + o.truth_column + "' (name it with --truth-column)");
    std::vector<std::string_view> f;
    while (reader.next(f)) {
      double g = 0;
      auto number = [&](int c, double& x) {
        const std::string text = c < static_cast<int>(f.size()) ? std::string(f[c]) : std::string();
        char* end = nullptr;
        x = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(x))
          throw DataError(o.truth + ":" + std::to_string(reader.line()) + ":" + std::to_string(c + 1) +
                          ": not a number");
      };
      number(cg, g);
      grade.push_back(static_cast<float>(g));
      if (cp >= 0 && ce >= 0) {
        double p = 0, e = 0;
        number(cp, p);
        number(ce, e);
        position.push_back(static_cast<int>(p));
        log_examined.push_back(e > 0 ? std::log(e) : std::nan(""));
      }
    }
  }
  if (static_cast<std::int64_t>(grade.size()) != logged.rows())
    throw DataError(o.truth + ": " + std::to_string(grade.size()) + " rows, but " + o.data + " has " +
                    std::to_string(logged.rows()) + ": give the truth file written beside the data");
  data::FeaturizedData served = logged;
  m.preprocessor->read_bias_as_missing(served);
  const train::Predictions p = train::predict(*m.net, m.config, served);
  refuse_non_finite(p, o.model);
  std::vector<float> scores(static_cast<std::size_t>(p.rows));
  std::string rank_by = o.rank_by;
  if (!rank_by.empty()) {
    int task = -1;
    for (std::size_t t = 0; t < m.config.tasks.size(); ++t)
      if (m.config.tasks[t].name == rank_by) task = static_cast<int>(t);
    if (task < 0) throw ConfigError("--rank-by: the model has no task '" + rank_by + "'");
    for (std::int64_t r = 0; r < p.rows; ++r) scores[r] = p.values[r * p.tasks + task];
  } else {
    rank_by = m.config.serve.score.empty() ? "sum of all tasks" : m.config.serve.score;
    const serve::ScoreFormula formula = serve::ScoreFormula::parse(m.config.serve.score, m.config.tasks);
    for (std::int64_t r = 0; r < p.rows; ++r)
      scores[r] = static_cast<float>(formula.combine(p.values.data() + r * p.tasks));
  }
  json out{{"rank_by", rank_by}, {"truth", o.truth}, {"truth_column", o.truth_column}};
  // The simulation's settings, when the truth came from mtrank simulate (its simulation.json beside it).
  if (std::ifstream sim(std::filesystem::path(o.truth).parent_path() / "simulation.json"); sim) {
    try {
      out["simulation"] = json::parse(sim).at("options");
    } catch (const json::exception&) {
    }  // not a simulation record: the truth stands alone
  }
  std::printf("\nranking as served (bias features missing), by %s, against %s of %s:\n", rank_by.c_str(),
              o.truth_column.c_str(), o.truth.c_str());
  for (int k : {5, 10}) {
    const double v = eval::ndcg_at({scores, grade, logged.groups}, k);
    out["ndcg@" + std::to_string(k)] = v;
    std::printf("  ndcg@%d %.4f\n", k, v);
  }
  const BiasTowerConfig& tower = m.config.model.bias_tower;
  if (tower.enabled && !position.empty()) {
    const int task = tower.task_indices.front();
    const std::vector<float> bias = train::bias_logits(*m.net, m.config, logged, task);
    std::map<int, std::pair<double, double>> sums;  // position -> (learned, true) sums
    std::map<int, double> counts;
    for (std::size_t r = 0; r < bias.size(); ++r) {
      if (std::isnan(log_examined[r])) continue;
      sums[position[r]].first += bias[r];
      sums[position[r]].second += log_examined[r];
      counts[position[r]] += 1;
    }
    std::vector<double> learned, truth;
    json rows = json::array();
    std::printf("learned bias of task '%s' by position (relative to the first), against the true log examination:\n",
                m.config.tasks[task].name.c_str());
    std::printf("  position   learned  true_log_theta\n");
    double learned0 = 0, truth0 = 0;
    for (const auto& [pos, s] : sums) {
      const double l = s.first / counts[pos], t = s.second / counts[pos];
      if (learned.empty()) learned0 = l, truth0 = t;
      learned.push_back(l - learned0);
      truth.push_back(t - truth0);
      rows.push_back({{"position", pos}, {"learned", l - learned0}, {"true_log_theta", t - truth0}});
      std::printf("  %8d  %8.3f  %14.3f\n", pos, l - learned0, t - truth0);
    }
    const double rho = learned.size() > 1 ? rank_correlation(learned, truth) : std::nan("");
    bool monotone = true;
    for (std::size_t k = 1; k < learned.size(); ++k) monotone = monotone && learned[k] <= learned[k - 1];
    std::printf("  rank correlation %.3f, %s\n", rho, monotone ? "monotone (falls with position)" : "not monotone");
    out["bias_task"] = m.config.tasks[task].name;
    out["bias_by_position"] = rows;
    out["bias_rank_correlation"] = rho;
    out["bias_monotone"] = monotone;
  }
  return out;
}

}  // namespace

int run_eval(const EvalOptions& o) {
  check_output_file(o.metrics_out, "--metrics-out");
  configure_threads(o.threads);
  if (model::is_sequential_model(model::read_model_files(o.model, {}).meta)) {
    if (o.as_served || !o.truth.empty() || !o.rank_by.empty())
      throw ConfigError("--as-served, --truth and --rank-by are for ranking models; " + o.model +
                        " is a sequential (next-item) model");
    model::LoadedSequentialModel m = model::load_sequential_model_dir(o.model);
    if (o.max_len < 0) throw ConfigError("--max-len: must be at least 1 (or 0 for the model's)");
    if (o.max_len > 0) m.config.sequential.max_len = o.max_len;
    std::int64_t unknown = 0;
    train::NextItemRecord split;
    try {
      split = train::evaluate_log(*m.net, m.config, m.items, o.data, &unknown);
    } catch (const TrainingError& e) {  // weights were checked at load: a model defect
      throw ModelError(e.what());
    }
    if (unknown > 0)
      std::fprintf(stderr, "%s: %lld events with items %s does not know were skipped\n", o.data.c_str(),
                   static_cast<long long>(unknown), o.model.c_str());
    print_next_item_table(split);
    if (!o.metrics_out.empty()) {
      json j = train::to_json(split);
      j["model"] = m.config.sequential.block;
      j["kind"] = "sequential";
      j["unknown_events"] = unknown;
      write_json_atomic(o.metrics_out, j);
    }
    return 0;
  }
  if (o.max_len != 0) throw ConfigError("--max-len is for sequential models; " + o.model + " is a ranking model");
  model::LoadedModel m = model::load_model_dir(o.model);
  eval::check_task_metrics(m.config);
  data::IngestStats stats;
  data::FeaturizedData d = data::load_featurized(*m.preprocessor, {o.data}, true, &stats, true);
  json truth;
  if (!o.truth.empty()) truth = evaluate_against_truth(o, m, d, stats);
  if (o.as_served) m.preprocessor->read_bias_as_missing(d);
  train::SplitRecord split;
  try {
    split = train::evaluate_split(*m.net, m.config, d, "data", o.data);
  } catch (const TrainingError& e) {  // weights and statistics were checked at load: a model defect
    throw ModelError(e.what());
  }
  std::printf("%s", eval::format_table(split.tasks).c_str());
  std::printf("%s", format_utilization(m.config, split.expert_utilization).c_str());
  if (!o.metrics_out.empty()) {
    json j = train::to_json(split);
    j["rows"] = d.rows();
    j["skipped_rows"] = stats.skipped;
    j["model"] = m.config.model.type;
    j["as_served"] = o.as_served;
    if (!truth.is_null()) j["truth"] = truth;
    write_json_atomic(o.metrics_out, j);
  }
  return 0;
}

int run_export(const ExportOptions& o) {
  model::check_model_output_dir(o.out);
  model::LoadedSequentialModel m = model::load_sequential_model_dir(o.model);
  model::SequentialRecommender small{nullptr};
  try {
    small = model::extract_width(*m.net, o.width);
  } catch (const std::invalid_argument& e) {
    throw ConfigError("--width: " + std::string(e.what()));
  }
  Config config = m.config;
  config.sequential.widths = small->options().widths;
  json meta = m.meta;
  meta["widths"] = config.sequential.widths;
  meta["exported_from"] = {{"model", o.model}, {"widths", m.config.sequential.widths}, {"width", o.width}};
  std::int64_t before = 0, after = 0;
  for (const auto& p : m.net->parameters()) before += p.numel();
  for (const auto& p : small->parameters()) after += p.numel();
  // The full model's record covers widths this model does not have.
  if (meta.contains("training") && meta["training"].is_object())
    meta["training"] = train::exported_record(meta["training"], config.sequential.widths, after);
  model::save_sequential_model_dir(o.out, config, m.items, *small, meta);
  std::printf("width-%lld model written to %s: %s parameters (the full model: %s)\n", static_cast<long long>(o.width),
              o.out.c_str(), human_count(static_cast<double>(after)).c_str(), human_count(static_cast<double>(before)).c_str());
  return 0;
}

int run_recommend(const RecommendOptions& o) {
  model::LoadedSequentialModel m = model::load_sequential_model_dir(o.model);
  std::vector<std::string> names;
  std::string token;
  for (char c : o.history + " ") {
    if (c == ' ' || c == ',' || c == '\t') {
      if (!token.empty()) names.push_back(token);
      token.clear();
    } else {
      token += c;
    }
  }
  std::int64_t unknown = 0;
  const std::vector<std::int32_t> history = serve::known_items(m, names, &unknown);
  if (unknown > 0)
    std::fprintf(stderr, "%lld of the %zu history items are unknown to %s and were skipped\n",
                 static_cast<long long>(unknown), names.size(), o.model.c_str());
  if (o.k < 1) throw ConfigError("-k " + std::to_string(o.k) + ": must be at least 1");
  std::vector<std::pair<std::int32_t, float>> top;
  try {
    top = train::recommend(*m.net, history, static_cast<int>(m.config.sequential.max_len), o.width, o.k);
  } catch (const std::invalid_argument& e) {
    throw ConfigError("--width: " + std::string(e.what()));
  }
  if (o.json) {
    json items = json::array();
    for (const auto& [id, score] : top) items.push_back({{"item", m.items.external(id)}, {"score", score}});
    std::printf("%s\n", json{{"items", items}, {"unknown_history_items", unknown}}.dump().c_str());
  } else {
    for (std::size_t i = 0; i < top.size(); ++i)
      std::printf("%zu\t%s\t%.6g\n", i + 1, m.items.external(top[i].first).c_str(), top[i].second);
  }
  return 0;
}

int run_item_vectors(const ItemVectorsOptions& o) {
  check_output_file(o.out, "--out");
  if (o.text_columns.empty()) throw ConfigError("--text-columns: name at least one column of " + o.items);
  if (o.min_df < 1) throw ConfigError("--min-df " + std::to_string(o.min_df) + ": must be at least 1");
  const data::ItemText items = data::read_item_text(o.items, o.id_column, o.text_columns);
  if (o.out.size() >= 4 && o.out.compare(o.out.size() - 4, 4, ".npy") == 0)  // before the SVD, not after
    for (std::size_t i = 0; i < items.ids.size(); ++i)
      if (!data::fits_float32_id(items.ids[i]))
        throw DataError(o.items + ": item '" + items.ids[i] + "' (row " + std::to_string(i + 1) +
                        ") is not an integer below 2^24, which the float32 id column of --out " + o.out +
                        " cannot hold exactly; write text vectors (another suffix than .npy)");
  const data::TfIdf tfidf = data::tf_idf(items.texts, o.min_df, o.bigrams);
  if (tfidf.matrix.cols == 0)
    throw ConfigError("--min-df " + std::to_string(o.min_df) + ": no term is in that many of the " +
                      std::to_string(tfidf.matrix.rows) + " items; lower it");
  const std::int64_t limit = std::min<std::int64_t>(tfidf.matrix.rows, tfidf.matrix.cols);
  if (o.dim < 1 || o.dim > limit)
    throw ConfigError("--dim " + std::to_string(o.dim) + ": must be from 1 to " + std::to_string(limit) + " (" +
                      std::to_string(tfidf.matrix.rows) + " items, " + std::to_string(tfidf.matrix.cols) +
                      " terms seen in at least --min-df " + std::to_string(o.min_df) + " items)");
  const torch::Tensor vectors = model::truncated_svd(tfidf.matrix, o.dim, o.power_iterations, o.seed).contiguous();
  data::ItemVectors out;
  out.ids = items.ids;
  out.dim = o.dim;
  out.values.assign(vectors.data_ptr<float>(), vectors.data_ptr<float>() + vectors.numel());
  std::int64_t empty_rows = 0;
  for (std::int64_t i = 0; i < tfidf.matrix.rows; ++i) empty_rows += tfidf.matrix.indptr[i] == tfidf.matrix.indptr[i + 1];
  data::write_item_vectors(o.out, out);
  std::printf("%lld item vectors of %lld dimensions written to %s (%lld terms; %lld items with no kept term are zero "
              "vectors)\n",
              static_cast<long long>(tfidf.matrix.rows), static_cast<long long>(o.dim), o.out.c_str(),
              static_cast<long long>(tfidf.matrix.cols), static_cast<long long>(empty_rows));
  return 0;
}

int run_predict(const PredictOptions& o) {
  check_output_file(o.out, "--out");
  configure_threads(o.threads);
  model::LoadedModel m = model::load_model_dir(o.model);
  data::IngestStats stats;
  data::FeaturizedData d = data::featurize_file(*m.preprocessor, {o.data}, false, &stats, true, /*allow_skip=*/false);
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
  // The files, not the patterns, identify a compare run's results: a new day's file is another run.
  data::expand_data_sets(config.data);
  eval::check_task_metrics(config);
  check_score_formula(config);
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
  identity_config.model = model_defaults("mmoe");  // the trees read the features, data and tasks, not the model
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
        train::RunRequest request;
        request.config = resolve_compare_config(o, cfg);
        request.config.train.seed = static_cast<std::uint64_t>(seed);
        request.config.train.threads = o.threads;
        request.out = (dir / ("seed" + std::to_string(seed) + "-model")).string();
        request.show_progress = false;
        write_json_atomic(metrics.string(), train::to_metrics_json(train::run_training(request)));
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
  std::vector<eval::ModelRuns> models;
  for (Result& r : results) models.push_back({r.name, std::move(r.runs)});
  const eval::SeesawTable seesaw = eval::seesaw_table(models, o.baseline);
  const bool base = seesaw.baseline >= 0;
  std::vector<std::vector<std::string>> table;
  std::vector<std::string> header{"model"};
  for (std::size_t t = 0; t < seesaw.tasks.size(); ++t)
    header.push_back(seesaw.tasks[t] + " " + seesaw.metrics[t] + " (spread)" + (base ? " gain" : ""));
  if (base) header.push_back("verdict");
  header.push_back("train rows/s");
  table.push_back(header);
  const bool one_seed = o.seeds.size() < 2;
  for (std::size_t i = 0; i < seesaw.rows.size(); ++i) {
    const eval::SeesawRow& r = seesaw.rows[i];
    std::vector<std::string> row{r.model};
    for (const eval::SeesawCell& c : r.cells) {
      std::string gain;
      if (base && static_cast<int>(i) != seesaw.baseline) {
        char g[48];
        std::snprintf(g, sizeof g, " %+.2f%%%s", c.gain_percent,
                      c.change == eval::Change::kUp ? " up" : c.change == eval::Change::kDown ? " down"
                                                        : c.change == eval::Change::kWithinNoise ? " ~" : "");
        gain = g;
      }
      char cell[128];
      std::snprintf(cell, sizeof cell, "%.4f (%.4f)%s", c.mean, c.spread, gain.c_str());
      row.push_back(cell);
    }
    if (base) row.push_back(r.verdict);
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.0f", r.train_rows_per_s);
    row.push_back(std::isfinite(r.train_rows_per_s) ? rate : "-");
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
  write_json_atomic((fs::path(o.out_dir) / "compare.json").string(), eval::to_json(seesaw));
  return 0;
}

int run_report(const ReportOptions& o) {
  check_output_file(o.out, "--out");
  const std::vector<report::Run> runs = report::load_runs(o.runs);
  report::ReportOptions options;
  options.title = o.title;
  options.baseline = o.baseline;
  write_file_atomic(o.out, report::render_report(runs, options));
  std::size_t models = 0;
  std::vector<std::string> seen;
  for (const report::Run& r : runs)
    if (std::find(seen.begin(), seen.end(), r.label) == seen.end()) seen.push_back(r.label), ++models;
  std::printf("wrote %s: %zu run%s of %zu model%s (open it in a browser; it needs no network)\n", o.out.c_str(),
              runs.size(), runs.size() == 1 ? "" : "s", models, models == 1 ? "" : "s");
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
  t.train = {(dir / "train.csv").string()};
  t.val = {(dir / "val.csv").string()};
  t.test = {(dir / "test.csv").string()};
  t.metrics_out = (dir / "metrics.json").string();
  t.threads = o.threads;
  t.what_next = false;  // the quickstart's own list follows
  const int rc = run_train(t);
  if (rc != 0) return rc;
  std::printf(
      "\nWhat next:\n"
      "  build/mtrank report %s --out %s   (learning curves, metrics, calibration, experts)\n"
      "  build/mtrank eval --model %s --data %s\n"
      "  build/mtrank predict --model %s --data %s --out %s\n"
      "  build/mtrank serve --model %s   (then POST candidates to http://127.0.0.1:8080/v1/rank; README)\n"
      "  edit %s (docs/config.md lists every key) and run\n"
      "  build/mtrank train --config %s --out %s\n"
      "  real data: build/mtrank train --config examples/census/mmoe.toml --out census-model (see README)\n",
      t.out.c_str(), report_path_for(t.out).c_str(), t.out.c_str(), t.test[0].c_str(), t.out.c_str(), t.test[0].c_str(),
      (dir / "predictions.csv").c_str(), t.out.c_str(),
      config_path.c_str(), config_path.c_str(), t.out.c_str());
  return 0;
}

}  // namespace mtrank::cli
