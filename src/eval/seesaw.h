#pragma once
// The seesaw table: each model's headline metric per task (AUC for binary
// tasks, RMSE for regression), its mean and spread over seeds, and whether it
// is up, down or within the seed noise against a baseline model (the
// single-task run). `mtrank compare` prints it and `mtrank report` draws it;
// both build it here, from metrics JSON records. No torch.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"

namespace mtrank::eval {

// One model's runs: the metrics JSON of each seed.
struct ModelRuns {
  std::string name;
  std::vector<nlohmann::json> runs;
};

struct SeesawCell {
  double mean = 0, spread = 0;  // over seeds; spread = max - min; NaN when a seed lacks the metric
  double gain_percent = 0;      // relative to the baseline, positive = better (not for the baseline)
  Change change = Change::kUnknown;
};

struct SeesawRow {
  std::string model;
  std::vector<SeesawCell> cells;  // one per SeesawTable::tasks
  std::string verdict;            // "baseline", "seesaw", "all tasks up", ...; "" without a baseline
  double train_rows_per_s = 0;    // mean over the seeds that record it; NaN if none does
  std::size_t seeds = 0;
};

struct SeesawTable {
  std::vector<std::string> tasks, metrics;  // task names (the first model's order) and their headline metric
  std::vector<SeesawRow> rows;              // one per model, in the given order
  int baseline = -1;                        // index into rows, -1 if no model has the baseline's name
  std::size_t seeds = 0;                    // fewest seeds of any model (1: the noise is unknown)
};

// Throws std::invalid_argument if `models` is empty or a model has no runs.
SeesawTable seesaw_table(const std::vector<ModelRuns>& models, const std::string& baseline);

// compare.json: {"models": {model: {task: {metric, spread, gain_percent, change}}}, "verdicts", "noise_rule"}.
nlohmann::json to_json(const SeesawTable& table);

// The rule behind up, down and within noise, in words (docs, compare.json, reports).
extern const char* const kNoiseRule;

}  // namespace mtrank::eval
