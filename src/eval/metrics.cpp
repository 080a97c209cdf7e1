#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "eval/metric_registry.h"

namespace mtrank::eval {

double roc_auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  const std::size_t n = scores.size();
  // A NaN score has no rank: sorting it is undefined behaviour and the tie
  // loop below never advanced past it (training and eval hung forever).
  if (std::any_of(scores.begin(), scores.end(), [](float s) { return std::isnan(s); }))
    return std::numeric_limits<double>::quiet_NaN();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  // Mann-Whitney U with average ranks for tied scores.
  double positive_rank_sum = 0;
  std::size_t positives = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double avg_rank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1..j
    for (std::size_t k = i; k < j; ++k)
      if (labels[order[k]] > 0.5f) {
        positive_rank_sum += avg_rank;
        ++positives;
      }
    i = j;
  }
  const std::size_t negatives = n - positives;
  if (positives == 0 || negatives == 0) return std::numeric_limits<double>::quiet_NaN();
  const double p = static_cast<double>(positives);
  return (positive_rank_sum - p * (p + 1) / 2) / (p * static_cast<double>(negatives));
}

double logloss(const std::vector<float>& probs, const std::vector<float>& labels) {
  if (probs.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    const double p = std::clamp(static_cast<double>(probs[i]), 1e-7, 1 - 1e-7);
    sum -= labels[i] > 0.5f ? std::log(p) : std::log(1 - p);
  }
  return sum / static_cast<double>(probs.size());
}

double mean_squared_error(const std::vector<float>& preds, const std::vector<float>& labels) {
  if (preds.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (std::size_t i = 0; i < preds.size(); ++i) {
    const double d = static_cast<double>(preds[i]) - labels[i];
    sum += d * d;
  }
  return sum / static_cast<double>(preds.size());
}

double group_auc(const std::vector<float>& scores, const std::vector<float>& labels,
                 const std::vector<std::uint64_t>& groups, std::int64_t* groups_used) {
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return groups[a] < groups[b]; });
  double weighted = 0, weight = 0;
  std::int64_t used = 0;
  std::vector<float> s, y;
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    s.clear();
    y.clear();
    while (j < order.size() && groups[order[j]] == groups[order[i]]) {
      s.push_back(scores[order[j]]);
      y.push_back(labels[order[j]]);
      ++j;
    }
    const double auc = roc_auc(s, y);
    if (std::isfinite(auc)) {
      weighted += auc * static_cast<double>(s.size());
      weight += static_cast<double>(s.size());
      ++used;
    }
    i = j;
  }
  if (groups_used) *groups_used = used;
  return weight > 0 ? weighted / weight : std::numeric_limits<double>::quiet_NaN();
}

std::vector<TaskMetrics> evaluate_tasks(const std::vector<TaskConfig>& tasks, const std::vector<float>& preds,
                                        const std::vector<float>& labels, const std::vector<float>& mask,
                                        const std::vector<std::uint64_t>& groups) {
  const std::size_t T = tasks.size();
  const std::size_t rows = T ? preds.size() / T : 0;
  std::vector<TaskMetrics> out;
  std::vector<float> p, y;
  std::vector<std::uint64_t> g;
  for (std::size_t t = 0; t < T; ++t) {
    p.clear();
    y.clear();
    g.clear();
    for (std::size_t r = 0; r < rows; ++r)
      if (mask[r * T + t] > 0) {
        p.push_back(preds[r * T + t]);
        y.push_back(labels[r * T + t]);
        if (!groups.empty()) g.push_back(groups[r]);
      }
    TaskMetrics m;
    m.name = tasks[t].name;
    m.type = tasks[t].type;
    m.count = static_cast<std::int64_t>(p.size());
    const TaskRows task_rows{p, y, g};
    auto value = [&](const std::string& name) { return make_metric(name)->compute(task_rows); };
    if (m.type == TaskType::kBinary) {
      m.auc = value("auc");
      m.logloss = value("logloss");
      m.loss = m.logloss;
      const double n = std::max<double>(1, static_cast<double>(p.size()));
      m.positive_rate = std::accumulate(y.begin(), y.end(), 0.0) / n;
      m.mean_prediction = std::accumulate(p.begin(), p.end(), 0.0) / n;
      m.calibration = value("calibration");
      // GAUC's group count comes with it, so it is called directly (the registry's "gauc" is the same function).
      m.gauc = g.empty() ? std::numeric_limits<double>::quiet_NaN() : group_auc(p, y, g, &m.gauc_groups);
      m.reliability = reliability_curve(p, y);
    } else {
      m.mse = value("mse");
      m.rmse = value("rmse");
      m.loss = m.mse;
    }
    for (const std::string& name : tasks[t].metrics) m.extra.emplace_back(name, value(name));
    out.push_back(m);
  }
  return out;
}

nlohmann::json to_json(const std::vector<TaskMetrics>& metrics) {
  nlohmann::json tasks = nlohmann::json::object();
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  for (const TaskMetrics& m : metrics) {
    nlohmann::json j{{"type", to_string(m.type)}, {"count", m.count}};
    if (m.type == TaskType::kBinary) {
      j["auc"] = num(m.auc);
      j["logloss"] = num(m.logloss);
      j["positive_rate"] = num(m.positive_rate);
      j["mean_prediction"] = num(m.mean_prediction);
      j["calibration"] = num(m.calibration);
      if (std::isfinite(m.gauc)) {
        j["gauc"] = m.gauc;
        j["gauc_groups"] = m.gauc_groups;
      }
    } else {
      j["mse"] = num(m.mse);
      j["rmse"] = num(m.rmse);
    }
    for (const auto& [name, v] : m.extra) j[name] = num(v);
    if (!m.reliability.empty()) {
      nlohmann::json pred = nlohmann::json::array(), rate = nlohmann::json::array(), rows = nlohmann::json::array();
      for (const ReliabilityBin& b : m.reliability) {
        pred.push_back(b.mean_prediction);
        rate.push_back(b.positive_rate);
        rows.push_back(b.rows);
      }
      j["reliability"] = {{"mean_prediction", pred}, {"positive_rate", rate}, {"rows", rows}};
    }
    tasks[m.name] = j;
  }
  return tasks;
}

std::vector<ReliabilityBin> reliability_curve(const std::vector<float>& probs, const std::vector<float>& labels,
                                              int bins) {
  const std::size_t n = probs.size();
  std::vector<ReliabilityBin> out;
  if (n == 0 || bins < 1) return out;
  for (float p : probs)
    if (!std::isfinite(p)) return out;
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return probs[a] < probs[b]; });
  const std::size_t count = std::min(n, static_cast<std::size_t>(bins));
  for (std::size_t b = 0; b < count; ++b) {
    const std::size_t begin = b * n / count, end = (b + 1) * n / count;
    ReliabilityBin bin;
    for (std::size_t i = begin; i < end; ++i) {
      bin.mean_prediction += probs[order[i]];
      bin.positive_rate += labels[order[i]] > 0.5f ? 1.0 : 0.0;
    }
    bin.rows = static_cast<std::int64_t>(end - begin);
    bin.mean_prediction /= static_cast<double>(bin.rows);
    bin.positive_rate /= static_cast<double>(bin.rows);
    out.push_back(bin);
  }
  return out;
}

std::vector<TaskMetrics> task_metrics_from_json(const nlohmann::json& tasks) {
  if (!tasks.is_object()) throw std::invalid_argument("task metrics: not a JSON object of tasks");
  std::vector<TaskMetrics> out;
  for (const auto& [name, j] : tasks.items()) {
    auto fail = [&name = name](const std::string& key, const char* want) {
      return std::invalid_argument("task '" + name + "': key '" + key + "' is not " + want);
    };
    if (!j.is_object()) throw fail("", "an object");
    auto number = [&](const std::string& key, double fallback) {
      const auto it = j.find(key);
      if (it == j.end()) return fallback;
      if (it->is_null()) return std::numeric_limits<double>::quiet_NaN();
      if (!it->is_number()) throw fail(key, "a number");
      return it->get<double>();
    };
    TaskMetrics m;
    m.name = name;
    const auto type = j.find("type");
    if (type == j.end() || !type->is_string() || (*type != "binary" && *type != "regression"))
      throw fail("type", "\"binary\" or \"regression\"");
    m.type = *type == "binary" ? TaskType::kBinary : TaskType::kRegression;
    m.count = static_cast<std::int64_t>(number("count", 0));
    m.auc = number("auc", 0);
    m.logloss = number("logloss", 0);
    m.positive_rate = number("positive_rate", 0);
    m.mean_prediction = number("mean_prediction", 0);
    m.calibration = number("calibration", 0);
    m.gauc = number("gauc", std::numeric_limits<double>::quiet_NaN());
    m.gauc_groups = static_cast<std::int64_t>(number("gauc_groups", 0));
    m.mse = number("mse", 0);
    m.rmse = number("rmse", 0);
    m.loss = m.type == TaskType::kBinary ? m.logloss : m.mse;
    // The keys to_json writes for the task's type; any other is a configured
    // metric (a binary task may ask for "rmse", a regression task for "auc").
    static const std::vector<std::string> kBinary{"type",        "count", "auc",         "logloss",    "positive_rate",
                                                  "mean_prediction", "calibration", "gauc", "gauc_groups", "reliability"};
    static const std::vector<std::string> kRegression{"type", "count", "mse", "rmse"};
    const std::vector<std::string>& fixed = m.type == TaskType::kBinary ? kBinary : kRegression;
    for (const auto& [key, v] : j.items()) {
      // to_json writes the fixed gauc only when it is finite: a null one is a configured metric.
      const bool configured_gauc = key == "gauc" && v.is_null();
      if (!configured_gauc && std::find(fixed.begin(), fixed.end(), key) != fixed.end()) continue;
      m.extra.emplace_back(key, number(key, 0));
    }
    if (const auto r = j.find("reliability"); r != j.end()) {
      const auto pred = r->find("mean_prediction"), rate = r->find("positive_rate"), rows = r->find("rows");
      if (!r->is_object() || pred == r->end() || rate == r->end() || rows == r->end() || !pred->is_array() ||
          !rate->is_array() || !rows->is_array() || pred->size() != rate->size() || pred->size() != rows->size())
        throw fail("reliability", "{mean_prediction, positive_rate, rows} of equal-length arrays");
      for (std::size_t b = 0; b < pred->size(); ++b) {
        if (!(*pred)[b].is_number() || !(*rate)[b].is_number() || !(*rows)[b].is_number_integer())
          throw fail("reliability", "numbers (and integer row counts)");
        m.reliability.push_back({(*pred)[b].get<double>(), (*rate)[b].get<double>(), (*rows)[b].get<std::int64_t>()});
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string format_table(const std::vector<TaskMetrics>& metrics) {
  const bool gauc = std::any_of(metrics.begin(), metrics.end(), [](const TaskMetrics& m) { return std::isfinite(m.gauc); });
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-16s %-10s %9s %9s %9s %9s %9s %9s%s\n", "task", "type", "count", "auc", "logloss",
                "rmse", "pos_rate", "calib", gauc ? "      gauc" : "");
  out += line;
  for (const TaskMetrics& m : metrics) {
    if (m.type == TaskType::kBinary)
      std::snprintf(line, sizeof line, "%-16s %-10s %9lld %9.4f %9.4f %9s %9.4f %9.3f", m.name.c_str(), "binary",
                    static_cast<long long>(m.count), m.auc, m.logloss, "-", m.positive_rate, m.calibration);
    else
      std::snprintf(line, sizeof line, "%-16s %-10s %9lld %9s %9s %9.4f %9s %9s", m.name.c_str(), "regression",
                    static_cast<long long>(m.count), "-", "-", m.rmse, "-", "-");
    out += line;
    if (gauc) {
      if (std::isfinite(m.gauc)) std::snprintf(line, sizeof line, " %9.4f", m.gauc);
      else std::snprintf(line, sizeof line, " %9s", "-");
      out += line;
    }
    out += "\n";
  }
  for (const TaskMetrics& m : metrics) {
    if (m.extra.empty()) continue;
    std::snprintf(line, sizeof line, "%-16s", m.name.c_str());
    out += line;
    for (const auto& [name, v] : m.extra) {
      std::snprintf(line, sizeof line, " %s %.4f", name.c_str(), v);
      out += line;
    }
    out += "\n";
  }
  return out;
}

void check_task_metrics(const Config& config) {
  for (std::size_t t = 0; t < config.tasks.size(); ++t)
    for (const std::string& name : config.tasks[t].metrics) {
      try {
        make_metric(name);
      } catch (const std::invalid_argument& e) {
        throw ConfigError(config.source + ": key 'tasks[" + std::to_string(t) + "].metrics': " + e.what());
      }
    }
}

namespace {
// The metrics evaluate_tasks computes for every task of a type (besides its `metrics`).
bool always_computed(TaskType type, const std::string& metric, bool has_groups) {
  if (metric == "loss") return true;
  if (type == TaskType::kBinary)
    return metric == "auc" || metric == "logloss" || metric == "calibration" || (metric == "gauc" && has_groups);
  return metric == "mse" || metric == "rmse";
}
}  // namespace

Monitor resolve_monitor(const Config& config) {
  const std::string& text = config.train.monitor;
  Monitor m;
  if (text == "loss") return m;
  const std::string where = config.source + ": key 'train.monitor' = \"" + text + "\": ";
  const std::size_t dot = text.rfind('.');
  std::string tasks;
  for (const auto& t : config.tasks) tasks += (tasks.empty() ? "" : ", ") + t.name;
  if (dot == std::string::npos || dot == 0 || dot + 1 == text.size())
    throw ConfigError(where + "must be \"loss\" (the weighted sum of the tasks' validation losses) or "
                      "\"TASK.METRIC\", e.g. \"" + (config.tasks.empty() ? std::string("click") : config.tasks[0].name) +
                      ".auc\" (tasks: " + tasks + ")");
  const std::string task = text.substr(0, dot);
  m.metric = text.substr(dot + 1);
  for (std::size_t t = 0; t < config.tasks.size(); ++t)
    if (config.tasks[t].name == task) m.task = static_cast<int>(t);
  if (m.task < 0) throw ConfigError(where + "no task is named \"" + task + "\" (tasks: " + tasks + ")");
  const TaskConfig& tc = config.tasks[static_cast<std::size_t>(m.task)];
  if (m.metric == "loss") return m;
  if (m.metric == "calibration")
    throw ConfigError(where + "calibration is best at 1, neither higher nor lower: monitor \"" + task +
                      ".logloss\" (which calibration is part of) or \"" + task + ".auc\"");
  try {
    m.higher_is_better = make_metric(m.metric)->higher_is_better();
  } catch (const std::invalid_argument& e) {
    throw ConfigError(where + e.what());
  }
  const bool listed = std::find(tc.metrics.begin(), tc.metrics.end(), m.metric) != tc.metrics.end();
  if (!listed && !always_computed(tc.type, m.metric, !config.data.group_column.empty()))
    throw ConfigError(where + "task \"" + task + "\" does not compute " + m.metric +
                      " on validation data: add it to the task's metrics (metrics = [\"" + m.metric + "\"])" +
                      (m.metric == "gauc" ? " and set data.group_column" : ""));
  return m;
}

double monitored_value(const Monitor& monitor, const std::vector<TaskConfig>& tasks,
                       const std::vector<TaskMetrics>& metrics) {
  if (monitor.task < 0) {
    double s = 0;
    for (std::size_t t = 0; t < tasks.size(); ++t)
      if (metrics[t].count > 0) s += tasks[t].weight * metrics[t].loss;
    return s;
  }
  const TaskMetrics& m = metrics[static_cast<std::size_t>(monitor.task)];
  const std::string& name = monitor.metric;
  for (const auto& [key, value] : m.extra)
    if (key == name) return value;
  if (name == "loss") return m.count > 0 ? m.loss : std::numeric_limits<double>::quiet_NaN();
  if (name == "auc") return m.auc;
  if (name == "gauc") return m.gauc;
  if (name == "logloss") return m.logloss;
  if (name == "calibration") return m.calibration;
  if (name == "mse") return m.mse;
  if (name == "rmse") return m.rmse;
  return std::numeric_limits<double>::quiet_NaN();
}

Change compare_to_baseline(double mean, double spread, double base_mean, double base_spread, bool higher_is_better,
                           std::size_t seeds) {
  if (seeds < 2 || !std::isfinite(mean) || !std::isfinite(base_mean)) return Change::kUnknown;
  const double diff = higher_is_better ? mean - base_mean : base_mean - mean;  // positive = better
  const double noise = std::max(spread, base_spread);
  return diff > noise ? Change::kUp : diff < -noise ? Change::kDown : Change::kWithinNoise;
}

std::string verdict(const std::vector<Change>& tasks) {
  std::size_t up = 0, down = 0, unknown = 0;
  for (Change c : tasks) {
    up += c == Change::kUp;
    down += c == Change::kDown;
    unknown += c == Change::kUnknown;
  }
  if (unknown > 0) return "noise unknown";
  if (up > 0 && down > 0) return "seesaw";
  if (up == tasks.size()) return "all tasks up";
  if (down == tasks.size()) return "all tasks down";
  if (up > 0) return "some up, rest within noise";
  if (down > 0) return "some down, rest within noise";
  return "within noise";
}

const char* to_string(Change c) {
  switch (c) {
    case Change::kUp: return "up";
    case Change::kDown: return "down";
    case Change::kWithinNoise: return "within noise";
    case Change::kUnknown: return "unknown";
  }
  return "?";
}

}  // namespace mtrank::eval
