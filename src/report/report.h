#pragma once
// `mtrank report`: one self-contained HTML file (inline SVG, no network, no
// JavaScript needed) drawn from run records: learning curves per task, the
// metrics table, expert utilization as a heat map, a reliability diagram per
// binary task and, for several models, the seesaw table against the
// single-task run. No torch: it reads the metrics JSON that training writes.
// A later issue adds its plots here as one more section function.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"

namespace mtrank::report {

struct EpochRecord {
  double epoch = 0, train_loss = 0, val_loss = 0, learning_rate = 0;  // NaN where the record lacks one
  std::vector<std::pair<std::string, double>> train_task_loss;  // by task name
  std::vector<eval::TaskMetrics> val;                           // empty without validation data
};

// A sequential (next-item) run's validation point.
struct StepRecord {
  double step = 0, seconds = 0, train_loss = 0;   // NaN where the record lacks one
  std::vector<std::pair<std::string, double>> val;  // full width: ndcg@10, recall@10, ...
};

// The metrics of one width of a sequential run.
struct WidthRecord {
  std::int64_t width = 0;
  std::int64_t parameters = 0;  // the width-s model's; 0 where the record lacks it
  std::vector<std::pair<std::string, double>> metrics;
};

// One training run, read from its metrics JSON.
struct Run {
  std::string label;   // the model it is a seed of (runs with one label are averaged over seeds)
  std::string source;  // the file it was read from
  std::string model;   // the model family
  std::int64_t seed = -1;  // -1: the record has none
  std::int64_t parameters = 0;
  int best_epoch = 0;
  bool early_stopped = false;
  double train_rows_per_s = 0;
  std::string metrics_split;               // "test" or "val": the split of `tasks`
  std::vector<std::string> task_names;     // config order (the rows of expert_utilization)
  std::vector<eval::TaskMetrics> tasks;    // metrics on metrics_split
  std::vector<EpochRecord> history;
  std::vector<std::vector<double>> expert_utilization;  // [tasks][experts]; empty without gates
  std::vector<std::string> expert_names;
  nlohmann::json record;  // as read (the seesaw table reads it)
  // `mtrank eval --truth`'s "truth" (NDCG on the true grades, the learned bias
  // by position, the simulation's options); null in training records.
  nlohmann::json truth;
  // A sequential (next-item) record (kind "sequential"): its test metrics by
  // width and its validation curve by step instead of tasks and epochs.
  bool sequential = false;
  std::vector<WidthRecord> widths;  // increasing width
  std::vector<StepRecord> steps;
  std::int64_t best_step = 0, total_steps = 0;
  std::string monitor;
};

// Reads one metrics JSON record (`mtrank train --metrics-out`, compare's
// seedN.json, or a model directory's meta.json "training"). Throws DataError
// naming `source` and the key that is missing or of the wrong kind.
Run parse_run(const nlohmann::json& record, const std::string& label, const std::string& source);

// The command line's RUN_OR_MODEL arguments: each is PATH or LABEL=PATH, where
// PATH is a metrics JSON file, a model directory, or a `compare --out-dir`
// folder (compare.json beside one folder per model holding seedN.json; each
// folder's name is its label). Without a label a run is labelled by its model
// family. Throws DataError naming the path: missing, unreadable, not JSON,
// not a run record, or two runs with one label and one seed.
std::vector<Run> load_runs(const std::vector<std::string>& arguments);

struct ReportOptions {
  std::string title = "mtrank report";
  std::string baseline = "single_task";  // the label every other model is compared with
};

// The whole page, well-formed XHTML. Each plot is a <figure data-plot="KIND">
// (learning-curve, calibration, expert-utilization; position-bias and
// ndcg-by-logger for eval --truth records; validation-curve and width for
// sequential runs, width-comparison across sequential models) and the seesaw
// table a <table data-plot="seesaw">, so tests and scripts can find them.
std::string render_report(const std::vector<Run>& runs, const ReportOptions& options);

}  // namespace mtrank::report
