#pragma once
// Evaluation metrics (no torch): exact ROC AUC with ties, logloss, MSE/RMSE.
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"

namespace mtrank::eval {

// Exact AUC: probability that a random positive scores above a random negative,
// ties counting one half (average ranks). NaN if a class is absent.
double roc_auc(const std::vector<float>& scores, const std::vector<float>& labels);
// Mean binary cross-entropy of probabilities, clipped to [1e-7, 1-1e-7].
double logloss(const std::vector<float>& probs, const std::vector<float>& labels);
double mean_squared_error(const std::vector<float>& preds, const std::vector<float>& labels);

// One bin of a reliability (calibration) diagram: rows grouped by their
// predicted probability, their mean prediction against their positive rate.
struct ReliabilityBin {
  double mean_prediction = 0, positive_rate = 0;
  std::int64_t rows = 0;
};
// Equal-count bins: the rows sorted by probability, cut into `bins`
// consecutive groups of (nearly) equal size, so that every point of the
// diagram rests on as many rows and a skewed task (a few percent positives)
// still gets bins where its predictions are. Fewer bins than rows if there
// are fewer rows; empty without rows or if a probability is not finite.
std::vector<ReliabilityBin> reliability_curve(const std::vector<float>& probs, const std::vector<float>& labels,
                                              int bins = 10);

struct TaskMetrics {
  std::string name;
  TaskType type = TaskType::kBinary;
  std::int64_t count = 0;  // rows in the task's sample space with a label
  double auc = 0, logloss = 0, positive_rate = 0, mean_prediction = 0;  // binary
  double calibration = 0;  // mean prediction / mean label (1 = calibrated on average)
  double gauc = std::numeric_limits<double>::quiet_NaN();  // per-group AUC averaged by rows; NaN without groups
  std::int64_t gauc_groups = 0;  // groups with both classes (the ones GAUC averages over)
  double mse = 0, rmse = 0;                                              // regression
  double loss = 0;  // the training loss of the task on this data (logloss or mse)
  // The task's configured metrics (TaskConfig::metrics), by name, in its order.
  std::vector<std::pair<std::string, double>> extra;
  std::vector<ReliabilityBin> reliability;  // binary: 10 equal-count bins (reliability_curve)
};

// Throws ConfigError naming the config and the task's `metrics` key if a name
// is not a registered metric (eval/metric_registry.h): called before any work.
void check_task_metrics(const Config& config);

// Group AUC: AUC within each group (user) that has both classes, averaged
// weighted by the group's row count. NaN if no group has both classes.
double group_auc(const std::vector<float>& scores, const std::vector<float>& labels,
                 const std::vector<std::uint64_t>& groups, std::int64_t* groups_used = nullptr);

// preds/labels/mask are row-major [rows x tasks]; preds are probabilities for binary tasks.
// groups: per row group ids for GAUC and the ranking metrics, or empty. Every
// metric is computed through the registry (eval/metric_registry.h).
std::vector<TaskMetrics> evaluate_tasks(const std::vector<TaskConfig>& tasks, const std::vector<float>& preds,
                                        const std::vector<float>& labels, const std::vector<float>& mask,
                                        const std::vector<std::uint64_t>& groups = {});

// {task: {"type", "count", metrics..., "reliability": {"mean_prediction": [..], "positive_rate": [..], "rows": [..]}}};
// a metric that is not finite is null.
nlohmann::json to_json(const std::vector<TaskMetrics>& metrics);
// The inverse of to_json (null reads back as NaN; `extra` comes back in the
// JSON's key order). Throws std::invalid_argument naming the task and key of
// a value of the wrong kind.
std::vector<TaskMetrics> task_metrics_from_json(const nlohmann::json& tasks);
// A fixed-width table for the terminal.
std::string format_table(const std::vector<TaskMetrics>& metrics);

// The validation figure that early stopping and the kept epoch follow
// (train.monitor): "loss", the task-weighted sum of the tasks' losses, or
// "TASK.METRIC" with METRIC "loss" (that task's logloss or MSE), one the task
// always has (binary: auc, logloss, calibration, and gauc with
// data.group_column; regression: mse, rmse), or one listed in the task's
// `metrics` (ndcg@10, ...).
struct Monitor {
  int task = -1;           // -1: the weighted sum of the losses
  std::string metric = "loss";
  bool higher_is_better = false;
};
// Throws ConfigError naming train.monitor and what it may be: called before any work.
Monitor resolve_monitor(const Config& config);
// The monitored figure of one validation pass (NaN if the metric is undefined there, e.g. AUC of one class).
double monitored_value(const Monitor& monitor, const std::vector<TaskConfig>& tasks,
                       const std::vector<TaskMetrics>& metrics);

// Whether a model's task metric is up, down or within the seed noise against
// a baseline: up or down only when the difference of the means exceeds the
// larger of the two spreads (max - min over seeds). Unknown with one seed.
enum class Change { kUp, kDown, kWithinNoise, kUnknown };
Change compare_to_baseline(double mean, double spread, double base_mean, double base_spread, bool higher_is_better,
                           std::size_t seeds);
// The model's verdict over its tasks: "seesaw", "all tasks up", "within noise", ...
std::string verdict(const std::vector<Change>& tasks);
const char* to_string(Change c);

}  // namespace mtrank::eval
