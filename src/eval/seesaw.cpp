#include "eval/seesaw.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "eval/metric_registry.h"

namespace mtrank::eval {

const char* const kNoiseRule =
    "a task is up or down when the difference of the means over seeds exceeds the larger of the two models' spreads "
    "(max - min over seeds), else within noise";

namespace {

// A metric is null when undefined (e.g. a test split with one class): NaN, not an error.
double metric_of(const nlohmann::json& run, const std::string& task, const std::string& metric) {
  const auto tasks = run.find("tasks");
  if (tasks == run.end() || !tasks->is_object()) return std::numeric_limits<double>::quiet_NaN();
  const auto t = tasks->find(task);
  if (t == tasks->end() || !t->is_object()) return std::numeric_limits<double>::quiet_NaN();
  const auto m = t->find(metric);
  return m != t->end() && m->is_number() ? m->get<double>() : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

SeesawTable seesaw_table(const std::vector<ModelRuns>& models, const std::string& baseline) {
  if (models.empty()) throw std::invalid_argument("seesaw table: no models");
  for (const ModelRuns& m : models)
    if (m.runs.empty()) throw std::invalid_argument("seesaw table: model '" + m.name + "' has no runs");
  SeesawTable table;
  // Tasks and their metric: AUC for binary (higher is better), RMSE for regression (lower is better).
  const nlohmann::json& first = models.front().runs.front();
  if (first.contains("tasks") && first["tasks"].is_object())
    for (const auto& [name, m] : first["tasks"].items()) {
      table.tasks.push_back(name);
      table.metrics.push_back(m.is_object() && m.value("type", "binary") == "regression" ? "rmse" : "auc");
    }
  table.seeds = models.front().runs.size();
  for (std::size_t i = 0; i < models.size(); ++i) {
    table.seeds = std::min(table.seeds, models[i].runs.size());
    if (models[i].name == baseline) table.baseline = static_cast<int>(i);
  }
  auto stats = [&](const ModelRuns& model, std::size_t t) {
    std::vector<double> v;
    for (const nlohmann::json& run : model.runs) v.push_back(metric_of(run, table.tasks[t], table.metrics[t]));
    double mean = 0;
    for (double x : v) mean += x / static_cast<double>(v.size());
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    SeesawCell cell;
    cell.mean = mean;
    cell.spread = *hi - *lo;
    return cell;
  };
  for (std::size_t i = 0; i < models.size(); ++i) {
    SeesawRow row;
    row.model = models[i].name;
    row.seeds = models[i].runs.size();
    std::vector<Change> changes;
    for (std::size_t t = 0; t < table.tasks.size(); ++t) {
      SeesawCell cell = stats(models[i], t);
      if (table.baseline >= 0 && static_cast<int>(i) != table.baseline) {
        const SeesawCell base = stats(models[static_cast<std::size_t>(table.baseline)], t);
        const bool higher_is_better = make_metric(table.metrics[t])->higher_is_better();
        cell.gain_percent = (higher_is_better ? cell.mean - base.mean : base.mean - cell.mean) / base.mean * 100;
        // Up or down only when the difference exceeds the seed noise; within it, never a seesaw (issue 13.4).
        cell.change = compare_to_baseline(cell.mean, cell.spread, base.mean, base.spread, higher_is_better,
                                          std::min(row.seeds, models[static_cast<std::size_t>(table.baseline)].runs.size()));
        changes.push_back(cell.change);
      }
      row.cells.push_back(cell);
    }
    if (table.baseline >= 0) row.verdict = static_cast<int>(i) == table.baseline ? "baseline" : verdict(changes);
    // Mean over the runs that record it (a foreign record may not): a missing one is not a zero.
    std::size_t timed = 0;
    for (const nlohmann::json& run : models[i].runs)
      if (run.contains("train_rows_per_s") && run["train_rows_per_s"].is_number()) {
        row.train_rows_per_s += run["train_rows_per_s"].get<double>();
        ++timed;
      }
    row.train_rows_per_s = timed ? row.train_rows_per_s / static_cast<double>(timed)
                                 : std::numeric_limits<double>::quiet_NaN();
    table.rows.push_back(std::move(row));
  }
  return table;
}

nlohmann::json to_json(const SeesawTable& table) {
  nlohmann::json summary = nlohmann::json::object();
  for (std::size_t i = 0; i < table.rows.size(); ++i) {
    const SeesawRow& row = table.rows[i];
    for (std::size_t t = 0; t < table.tasks.size(); ++t) {
      nlohmann::json& entry = summary["models"][row.model][table.tasks[t]];
      entry[table.metrics[t]] = row.cells[t].mean;
      entry["spread"] = row.cells[t].spread;
      if (table.baseline >= 0 && static_cast<int>(i) != table.baseline) {
        entry["gain_percent"] = row.cells[t].gain_percent;
        entry["change"] = to_string(row.cells[t].change);
      }
    }
    if (table.baseline >= 0) summary["verdicts"][row.model] = row.verdict;
  }
  summary["noise_rule"] = kNoiseRule;
  return summary;
}

}  // namespace mtrank::eval
