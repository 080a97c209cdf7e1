#include "report/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "eval/seesaw.h"
#include "report/svg.h"

namespace mtrank::report {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Field access that names the file and key of what is wrong.
struct Reader {
  const std::string& source;
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw DataError(source + ": key '" + key + "' " + what + " (is it a metrics JSON from 'mtrank train --metrics-out'?)");
  }
  double number(const json& j, const std::string& key, const std::string& path, bool required) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) fail(path, "is missing");
      return kNaN;
    }
    if (!it->is_number()) fail(path, "is not a number");
    return it->get<double>();
  }
  std::string text(const json& j, const std::string& key, const std::string& path, const std::string& fallback) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_string()) fail(path, "is not a string");
    return it->get<std::string>();
  }
  bool flag(const json& j, const std::string& key, const std::string& path, bool fallback) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(path, "is not true or false");
    return it->get<bool>();
  }
  const json* object(const json& j, const std::string& key, const std::string& path, bool required) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) fail(path, "is missing");
      return nullptr;
    }
    if (!it->is_object()) fail(path, "is not an object");
    return &*it;
  }
  std::vector<eval::TaskMetrics> tasks(const json& j, const std::string& path) const {
    try {
      return eval::task_metrics_from_json(j);
    } catch (const std::invalid_argument& e) {
      fail(path, std::string("is not task metrics: ") + e.what());
    }
  }
};

json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path.string() + ": cannot read the file");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw DataError(path.string() + ": not valid JSON: " + e.what());
  }
}

bool is_seed_file(const fs::path& p) {
  const std::string name = p.filename().string();
  return p.extension() == ".json" && name.rfind("seed", 0) == 0 && name.size() > 9 &&
         std::all_of(name.begin() + 4, name.end() - 5, [](char c) { return c >= '0' && c <= '9'; });
}

// Runs of one argument, in a stable order (compare folders sorted by name, seeds by number).
std::vector<Run> runs_of(const std::string& label, const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw DataError(path.string() + ": no such file or directory (give a metrics JSON, a model directory or a "
                                    "compare --out-dir folder)");
  std::vector<Run> out;
  if (!fs::is_directory(path, ec)) {
    const json j = read_json_file(path);
    out.push_back(parse_run(j, label, path.string()));
    if (label.empty()) out.back().label = out.back().model;
    return out;
  }
  if (fs::exists(path / "meta.json")) {
    // A model directory: its meta.json carries the run's metrics under "training".
    const fs::path meta = path / "meta.json";
    const json j = read_json_file(meta);
    if (!j.is_object() || j.value("format", "") != "mtrank-model")
      throw DataError(meta.string() + ": not an mtrank model's meta.json (no \"format\": \"mtrank-model\")");
    if (!j.contains("training") || !j["training"].is_object())
      throw DataError(meta.string() + ": key 'training' is missing (a model written by an older mtrank); "
                                      "pass the run's --metrics-out file instead");
    out.push_back(parse_run(j["training"], label, meta.string()));
    if (label.empty()) out.back().label = out.back().model;
    return out;
  }
  if (fs::exists(path / "compare.json")) {
    std::vector<fs::path> models;
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_directory()) models.push_back(entry.path());
    std::sort(models.begin(), models.end());
    for (const fs::path& dir : models) {
      std::vector<std::pair<long long, fs::path>> seeds;
      for (const auto& entry : fs::directory_iterator(dir))
        if (entry.is_regular_file() && is_seed_file(entry.path())) {
          const std::string name = entry.path().filename().string();
          seeds.emplace_back(std::stoll(name.substr(4, name.size() - 9)), entry.path());
        }
      std::sort(seeds.begin(), seeds.end());
      for (const auto& [seed, file] : seeds) {
        const std::string model_label = (label.empty() ? "" : label + "/") + dir.filename().string();
        out.push_back(parse_run(read_json_file(file), model_label, file.string()));
      }
    }
    if (out.empty()) throw DataError(path.string() + ": a compare folder without any MODEL/seedN.json run");
    return out;
  }
  throw DataError(path.string() + ": a directory that is neither a model directory (meta.json) nor a compare "
                                  "--out-dir folder (compare.json)");
}

// ---- page pieces ----------------------------------------------------------

std::string cell(const std::string& text, const char* cls = nullptr) {
  return std::string("<td") + (cls ? std::string(" class=\"") + cls + "\"" : "") + ">" + escape(text) + "</td>";
}

std::string mean_and_spread(const std::vector<double>& values) {
  std::vector<double> finite;
  for (double v : values)
    if (std::isfinite(v)) finite.push_back(v);
  if (finite.empty()) return "-";
  double mean = 0;
  for (double v : finite) mean += v / static_cast<double>(finite.size());
  std::string text = format_number(mean);
  if (finite.size() > 1) {
    const auto [lo, hi] = std::minmax_element(finite.begin(), finite.end());
    text += " \u00b1" + format_number((*hi - *lo) / 2, 2);
  }
  return text;
}

// The value of a named metric in a task's metrics (the fixed fields and the configured ones).
double metric_value(const eval::TaskMetrics& m, const std::string& name) {
  if (name == "rows") return static_cast<double>(m.count);
  if (m.type == TaskType::kBinary) {
    if (name == "auc") return m.auc;
    if (name == "gauc") return m.gauc;
    if (name == "logloss") return m.logloss;
    if (name == "calibration") return m.calibration;
    if (name == "positive_rate") return m.positive_rate;
  } else {
    if (name == "rmse") return m.rmse;
    if (name == "mse") return m.mse;
  }
  for (const auto& [key, v] : m.extra)
    if (key == name) return v;
  return kNaN;
}

const eval::TaskMetrics* find_task(const std::vector<eval::TaskMetrics>& tasks, const std::string& name) {
  for (const auto& t : tasks)
    if (t.name == name) return &t;
  return nullptr;
}

struct Group {
  std::string label;
  std::vector<const Run*> runs;
};

std::vector<Group> group_by_label(const std::vector<Run>& runs) {
  std::vector<Group> groups;
  for (const Run& r : runs) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.label == r.label; });
    if (it == groups.end()) groups.push_back({r.label, {&r}});
    else it->runs.push_back(&r);
  }
  return groups;
}

// An id for a group's section: its position makes it unique ("a_b" and "a-b" differ).
std::string id_of(const std::string& text, std::size_t index) {
  std::string id = std::to_string(index) + "-";
  for (char c : text) id += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  return id;
}

std::string runs_table(const std::vector<Run>& runs) {
  std::string s = "<table class=\"runs\">\n<tr><th>model</th><th>family</th><th>seed</th><th>parameters</th>"
                  "<th>epochs (kept)</th><th>train rows/s</th><th>metrics on</th><th>record</th></tr>\n";
  for (const Run& r : runs) {
    s += "<tr>" + cell(r.label) + cell(r.model) + cell(r.seed >= 0 ? std::to_string(r.seed) : "-", "num") +
         cell(std::to_string(r.parameters), "num") +
         cell(r.sequential ? std::to_string(r.total_steps) + " steps (" + std::to_string(r.best_step) + ")" +
                                 (r.early_stopped ? ", stopped early" : "")
                           : std::to_string(r.history.size()) + " (" + std::to_string(r.best_epoch) + ")" +
                                 (r.early_stopped ? ", stopped early" : ""),
              "num") +
         cell(std::isfinite(r.train_rows_per_s) ? std::to_string(std::llround(r.train_rows_per_s)) : "-", "num") + cell(r.metrics_split) + cell(r.source, "path") +
         "</tr>\n";
  }
  return s + "</table>\n";
}

std::string seesaw_section(const std::vector<Group>& groups, const ReportOptions& options) {
  std::vector<eval::ModelRuns> models;
  for (const Group& g : groups) {
    eval::ModelRuns m{g.label, {}};
    for (const Run* r : g.runs) m.runs.push_back(r->record);
    models.push_back(std::move(m));
  }
  const eval::SeesawTable t = eval::seesaw_table(models, options.baseline);
  std::string s = "<section id=\"seesaw\">\n<h2>Seesaw table</h2>\n";
  if (t.baseline < 0)
    s += "<p class=\"note\">No run is labelled '" + escape(options.baseline) +
         "' (the single-task baseline), so gains are not shown. Label one with " + escape(options.baseline) +
         "=PATH or pass --baseline LABEL.</p>\n";
  s += "<table class=\"seesaw\" data-plot=\"seesaw\">\n<tr><th>model</th><th>seeds</th>";
  for (std::size_t k = 0; k < t.tasks.size(); ++k) s += "<th>" + escape(t.tasks[k] + " " + t.metrics[k]) + "</th>";
  if (t.baseline >= 0) s += "<th>verdict</th>";
  s += "</tr>\n";
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    const eval::SeesawRow& row = t.rows[i];
    s += "<tr>" + cell(row.model) + cell(std::to_string(row.seeds), "num");
    for (const eval::SeesawCell& c : row.cells) {
      std::string text = format_number(c.mean) + " (" + format_number(c.spread, 2) + ")";
      const char* cls = "num";
      if (t.baseline >= 0 && static_cast<int>(i) != t.baseline) {
        char gain[32];
        std::snprintf(gain, sizeof gain, " %+.2f%%", c.gain_percent);
        text += gain;
        if (c.change == eval::Change::kUp) text += " up", cls = "num up";
        else if (c.change == eval::Change::kDown) text += " down", cls = "num down";
        else if (c.change == eval::Change::kWithinNoise) text += " ~";
      }
      s += cell(text, cls);
    }
    if (t.baseline >= 0) s += cell(row.verdict);
    s += "</tr>\n";
  }
  s += "</table>\n<p class=\"note\">Each cell: the mean over seeds of the task's headline metric (AUC, higher is "
       "better; RMSE, lower is better) on each run's metrics split, (max - min over seeds) and the relative gain over "
       "the baseline. " +
       escape(std::string("Rule: ") + eval::kNoiseRule) + ".";
  if (t.seeds < 2) s += " With one seed the noise is unknown, so no task is called up or down.";
  return s + "</p>\n</section>\n";
}

std::string metrics_table(const Group& g) {
  std::vector<std::string> tasks;
  for (const Run* r : g.runs)
    for (const auto& m : r->tasks)
      if (std::find(tasks.begin(), tasks.end(), m.name) == tasks.end()) tasks.push_back(m.name);
  // Columns: the fixed metrics any task has, then the configured ones.
  std::vector<std::string> columns{"rows", "auc", "gauc", "logloss", "calibration", "rmse", "mse"};
  for (const Run* r : g.runs)
    for (const auto& m : r->tasks)
      for (const auto& [key, v] : m.extra)
        if (std::find(columns.begin(), columns.end(), key) == columns.end()) columns.push_back(key);
  std::vector<std::string> used;
  for (const std::string& c : columns) {
    bool any = false;
    for (const Run* r : g.runs)
      for (const auto& m : r->tasks) any = any || std::isfinite(metric_value(m, c));
    if (any) used.push_back(c);
  }
  const std::string split = g.runs.front()->metrics_split;
  std::string s = "<table class=\"metrics\" data-plot=\"metrics\">\n<tr><th>task</th><th>type</th>";
  for (const std::string& c : used) s += "<th>" + escape(c) + "</th>";
  s += "</tr>\n";
  for (const std::string& task : tasks) {
    std::string type = "";
    s += "<tr>" + cell(task);
    std::string cells;
    for (const std::string& c : used) {
      std::vector<double> values;
      for (const Run* r : g.runs)
        if (const eval::TaskMetrics* m = find_task(r->tasks, task)) {
          values.push_back(metric_value(*m, c));
          type = to_string(m->type);
        }
      cells += cell(c == "rows" ? format_number(values.empty() ? kNaN : values.front(), 10) : mean_and_spread(values), "num");
    }
    s += cell(type) + cells + "</tr>\n";
  }
  s += "</table>\n<p class=\"note\">On the " + escape(split.empty() ? "evaluated" : split) + " split, with the kept "
       "(best) epoch's weights" + (g.runs.size() > 1 ? "; mean \u00b1 half the range over " +
                                                           std::to_string(g.runs.size()) + " seeds" : std::string()) +
       ".</p>\n";
  return s;
}

std::string seed_name(const Run& r, const Group& g) {
  if (g.runs.size() < 2) return "";
  if (r.seed >= 0) return "seed " + std::to_string(r.seed) + " ";
  const auto at = std::find(g.runs.begin(), g.runs.end(), &r) - g.runs.begin();
  return "run " + std::to_string(at + 1) + " ";  // a record without a seed
}

std::string learning_curves(const Group& g, const std::vector<std::string>& tasks) {
  std::string s;
  const bool one = g.runs.size() == 1;
  for (const std::string& task : tasks) {
    LineChart loss{task + ": loss by epoch", "epoch", "loss", {}, std::nullopt, "", false, true};
    LineChart metric{"", "epoch", "", {}, std::nullopt, "", false, true};
    bool regression = false;
    for (std::size_t i = 0; i < g.runs.size(); ++i) {
      const Run& r = *g.runs[i];
      if (const eval::TaskMetrics* m = find_task(r.tasks, task)) regression = m->type == TaskType::kRegression;
      // One color per seed: train solid, validation dashed.
      Series train{seed_name(r, g) + "train", {}, {}, palette(i), false, false};
      Series val{seed_name(r, g) + "validation", {}, {}, palette(i), true, false};
      Series quality{seed_name(r, g) + "validation", {}, {}, palette(i), false, true};
      for (const EpochRecord& e : r.history) {
        double tl = kNaN;
        for (const auto& [name, v] : e.train_task_loss)
          if (name == task) tl = v;
        train.x.push_back(e.epoch);
        train.y.push_back(tl);
        const eval::TaskMetrics* vm = find_task(e.val, task);
        val.x.push_back(e.epoch);
        val.y.push_back(vm ? vm->loss : kNaN);
        quality.x.push_back(e.epoch);
        quality.y.push_back(vm ? (vm->type == TaskType::kRegression ? vm->rmse : vm->auc) : kNaN);
      }
      loss.series.push_back(std::move(train));
      loss.series.push_back(std::move(val));
      metric.series.push_back(std::move(quality));
    }
    metric.title = task + (regression ? ": validation RMSE by epoch" : ": validation AUC by epoch");
    metric.y_label = regression ? "RMSE" : "AUC";
    if (one && g.runs.front()->best_epoch > 0) {
      loss.x_marker = metric.x_marker = g.runs.front()->best_epoch;
      loss.x_marker_label = metric.x_marker_label = "kept";
    }
    bool any = false;
    for (const auto& series : loss.series)
      for (double y : series.y) any = any || std::isfinite(y);
    s += "<figure class=\"plot\" data-plot=\"learning-curve\" data-task=\"" + escape(task) + "\">\n";
    if (!any)
      s += "<p class=\"note\">No per-task history in this record (written by an mtrank before per-task losses "
           "were recorded).</p>\n";
    s += render_line_chart(loss) + render_line_chart(metric);
    s += "<figcaption>" + escape(task) +
         ": the task's own loss (logloss or MSE, unweighted) on the training batches (solid) and on the validation "
         "split (dashed), and its validation metric.</figcaption>\n</figure>\n";
  }
  return s;
}

std::string calibration_plots(const Group& g, const std::vector<std::string>& tasks) {
  std::string s;
  for (const std::string& task : tasks) {
    LineChart chart{task + ": reliability", "mean prediction", "observed positive rate", {}, std::nullopt, "", true,
                    false};
    bool binary = false;
    for (std::size_t i = 0; i < g.runs.size(); ++i) {
      const eval::TaskMetrics* m = find_task(g.runs[i]->tasks, task);
      if (!m || m->type != TaskType::kBinary) continue;
      binary = true;
      const std::string name = seed_name(*g.runs[i], g);
      Series points{name.empty() ? "bins of equal row count" : name.substr(0, name.size() - 1), {}, {}, palette(i), false,
                    true};
      for (const eval::ReliabilityBin& b : m->reliability) {
        points.x.push_back(b.mean_prediction);
        points.y.push_back(b.positive_rate);
      }
      chart.series.push_back(std::move(points));
    }
    if (!binary) continue;
    s += "<figure class=\"plot single\" data-plot=\"calibration\" data-task=\"" + escape(task) + "\">\n";
    bool any = false;
    for (const auto& series : chart.series) any = any || !series.x.empty();
    if (!any) s += "<p class=\"note\">No reliability bins in this record (written by an older mtrank).</p>\n";
    s += render_line_chart(chart);
    s += "<figcaption>" + escape(task) +
         ": rows sorted by predicted probability in ten bins of equal size; a calibrated model lies on the "
         "diagonal.</figcaption>\n</figure>\n";
  }
  return s;
}

std::string expert_heat_map(const Group& g) {
  // The mean gate weight over the group's seeds (runs without gates are left out).
  std::vector<std::vector<double>> sum;
  std::vector<std::vector<int>> seen;  // runs that gave each cell
  std::vector<std::string> rows, columns;
  int count = 0;
  for (const Run* r : g.runs) {
    if (r->expert_utilization.empty()) continue;
    if (count == 0) {
      sum.assign(r->expert_utilization.size(), std::vector<double>(r->expert_utilization.front().size(), 0.0));
      columns = r->expert_names;
      rows = r->task_names;
    }
    if (r->expert_utilization.size() != sum.size() || r->expert_utilization.front().size() != sum.front().size())
      continue;  // another architecture under the same label: not averaged
    if (seen.empty()) seen.assign(sum.size(), std::vector<int>(sum.front().size(), 0));
    for (std::size_t t = 0; t < sum.size(); ++t)
      for (std::size_t e = 0; e < sum[t].size() && e < r->expert_utilization[t].size(); ++e) {
        sum[t][e] += r->expert_utilization[t][e];
        ++seen[t][e];
      }
    ++count;
  }
  if (count == 0) return "";
  // A cell no run gave (a ragged row) is drawn as missing, not as 0.
  for (std::size_t t = 0; t < sum.size(); ++t)
    for (std::size_t e = 0; e < sum[t].size(); ++e) sum[t][e] = seen[t][e] ? sum[t][e] / seen[t][e] : kNaN;
  if (rows.size() != sum.size()) {
    rows.clear();
    for (std::size_t t = 0; t < sum.size(); ++t) rows.push_back("task " + std::to_string(t + 1));
  }
  if (columns.size() != sum.front().size()) {
    columns.clear();
    for (std::size_t e = 0; e < sum.front().size(); ++e) columns.push_back("expert " + std::to_string(e + 1));
  }
  HeatMap map{g.label + ": expert utilization", rows, columns, sum};
  return "<figure class=\"plot\" data-plot=\"expert-utilization\">\n" + render_heat_map(map) +
         "<figcaption>Mean gate weight each task gives each expert on the metrics split (per cent; each row sums to "
         "100 per gate)" +
         (count > 1 ? ", averaged over " + std::to_string(count) + " seeds" : std::string()) +
         ". A column no task uses is an expert that collapsed.</figcaption>\n</figure>\n";
}

// A number of a JSON object, NaN when absent, null (how JSON writes NaN) or not a number.
std::string text_or(const json& j, const char* key, const std::string& fallback) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}
double number_or_nan(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : kNaN;
}

// "pbm, eta 1, medium logger": a simulation's setting, from an eval --truth record.
std::string setting_of(const Run& r) {
  const json& sim = r.truth.contains("simulation") ? r.truth["simulation"] : json::object();
  if (!sim.is_object() || !sim.contains("click_model")) return "";
  return text_or(sim, "click_model", "?") + ", eta " + format_number(number_or_nan(sim, "eta")) + ", " +
         text_or(sim, "logger", "?") + " logger";
}

// Position bias against simulated truth (eval --truth records): the learned
// bias by position beside the true log examination, per run; and NDCG@10 of
// each method against the logger's strength, per click model and eta.
std::string position_bias_section(const std::vector<Run>& runs) {
  std::string curves;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Run& r = runs[i];
    if (!r.truth.is_object() || !r.truth.contains("bias_by_position") || !r.truth["bias_by_position"].is_array()) continue;
    const std::string setting = setting_of(r);
    LineChart chart{r.label + (setting.empty() ? "" : " (" + setting + ")"), "position",
                    "bias relative to position 1", {}, std::nullopt, "", false, true};
    Series learned{"learned (" + (r.truth.contains("bias_task") && r.truth["bias_task"].is_string() ? r.truth["bias_task"].get<std::string>() : std::string("task")) + ")", {}, {}, palette(0), false, true};
    Series truth{"true log theta", {}, {}, palette(1), true, true};
    for (const json& row : r.truth["bias_by_position"]) {
      if (!row.is_object()) continue;
      learned.x.push_back(number_or_nan(row, "position"));
      learned.y.push_back(number_or_nan(row, "learned"));
      truth.x.push_back(number_or_nan(row, "position"));
      truth.y.push_back(number_or_nan(row, "true_log_theta"));
    }
    chart.series = {learned, truth};
    curves += "<figure class=\"plot single\" data-plot=\"position-bias\">" + render_line_chart(chart) +
              "<figcaption>Rank correlation " + format_number(number_or_nan(r.truth, "bias_rank_correlation"), 3) +
              (r.truth.contains("bias_monotone") && r.truth["bias_monotone"].is_boolean() && r.truth["bias_monotone"].get<bool>()
                   ? "; falls with position"
                   : "; not monotone") + ". " +
              escape(r.source) + "</figcaption></figure>\n";
  }
  // NDCG@10 by logger strength: one chart per (click model, eta), one series per label.
  const std::vector<std::string> loggers{"weak", "medium", "strong"};
  std::map<std::string, std::map<std::string, std::map<int, std::vector<double>>>> ndcg;  // setting -> label -> logger
  for (const Run& r : runs) {
    if (!r.truth.is_object() || !r.truth.contains("simulation") || !r.truth["simulation"].is_object()) continue;
    const json& sim = r.truth["simulation"];
    const auto it = std::find(loggers.begin(), loggers.end(), text_or(sim, "logger", ""));
    const double v = number_or_nan(r.truth, "ndcg@10");
    if (it == loggers.end() || !std::isfinite(v)) continue;
    const std::string key = text_or(sim, "click_model", "?") + ", eta " + format_number(number_or_nan(sim, "eta"));
    ndcg[key][r.label][static_cast<int>(it - loggers.begin()) + 1].push_back(v);
  }
  std::string by_logger;
  for (const auto& [key, labels] : ndcg) {
    std::set<int> seen;
    for (const auto& [label, values] : labels)
      for (const auto& [logger, v] : values) seen.insert(logger);
    if (seen.size() < 2) continue;
    LineChart chart{"NDCG@10 on true grades (" + key + ")", "logger: 1 weak, 2 medium, 3 strong", "NDCG@10", {},
                    std::nullopt, "", false, true};
    std::size_t color = 0;
    for (const auto& [label, values] : labels) {
      Series s{label, {}, {}, palette(color++), label == "oracle", true};
      for (const auto& [logger, v] : values) {
        s.x.push_back(logger);
        double sum = 0;
        for (double x : v) sum += x;
        s.y.push_back(sum / static_cast<double>(v.size()));
      }
      chart.series.push_back(std::move(s));
    }
    by_logger += "<figure class=\"plot single\" data-plot=\"ndcg-by-logger\">" + render_line_chart(chart) +
                 "<figcaption>Served ranking (bias features missing) on held-out users, mean over seeds.</figcaption>"
                 "</figure>\n";
  }
  if (curves.empty() && by_logger.empty()) return "";
  return "<section id=\"position-bias\">\n<h2>Position bias against simulated truth</h2>\n" + by_logger + curves +
         "</section>\n";
}

const char* const kStyle = R"css(
body { font: 14px/1.45 "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222; margin: 24px auto; max-width: 1000px; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ccc; }
h3 { font-size: 16px; margin-top: 22px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.up { background: #e5f5e0; } td.down { background: #fde0dd; } td.path { font-family: monospace; font-size: 12px; }
figure.plot { display: inline-block; margin: 8px 12px 8px 0; vertical-align: top; }
figure.plot figcaption { max-width: 920px; font-size: 12px; color: #555; }
figure.single figcaption { max-width: 460px; }
svg.chart { font: 11px "DejaVu Sans", Helvetica, Arial, sans-serif; background: #fff; }
svg .chart-title { font-size: 13px; font-weight: bold; } svg .grid { stroke: #e6e6e6; }
svg .frame { fill: none; stroke: #888; } svg .line { stroke-width: 2; } svg .diagonal { stroke: #999; stroke-dasharray: 4 3; }
svg .marker { stroke: #666; stroke-dasharray: 2 3; } svg .legend-swatch { stroke-width: 2; }
p.note { color: #555; font-size: 13px; }
)css";

// ---- sequential (next-item) runs -------------------------------------------

double named(const std::vector<std::pair<std::string, double>>& metrics, const std::string& name) {
  for (const auto& [key, v] : metrics)
    if (key == name) return v;
  return kNaN;
}

const WidthRecord* find_width(const Run& r, std::int64_t width) {
  for (const WidthRecord& w : r.widths)
    if (w.width == width) return &w;
  return nullptr;
}

std::vector<std::int64_t> widths_of(const Group& g) {
  std::vector<std::int64_t> widths;
  for (const Run* r : g.runs)
    for (const WidthRecord& w : r->widths)
      if (std::find(widths.begin(), widths.end(), w.width) == widths.end()) widths.push_back(w.width);
  std::sort(widths.begin(), widths.end());
  return widths;
}

// The group's mean of a metric at a width over the seeds that have it.
double mean_at(const Group& g, std::int64_t width, const std::string& metric) {
  double sum = 0;
  int n = 0;
  for (const Run* r : g.runs)
    if (const WidthRecord* w = find_width(*r, width))
      if (const double v = named(w->metrics, metric); std::isfinite(v)) sum += v, ++n;
  return n ? sum / n : kNaN;
}

std::int64_t parameters_at(const Group& g, std::int64_t width) {
  for (const Run* r : g.runs)
    if (const WidthRecord* w = find_width(*r, width); w && w->parameters > 0) return w->parameters;
  return 0;
}

std::string width_table(const Group& g) {
  std::vector<std::string> columns;
  for (const Run* r : g.runs)
    for (const WidthRecord& w : r->widths)
      for (const auto& [name, v] : w.metrics)
        if (std::find(columns.begin(), columns.end(), name) == columns.end()) columns.push_back(name);
  // LRURec's order: NDCG, then Recall, each by cut-off, then MRR; anything else after.
  const std::vector<std::string> order{"ndcg@5", "ndcg@10", "ndcg@20", "recall@5", "recall@10", "recall@20", "mrr"};
  std::stable_sort(columns.begin(), columns.end(), [&](const std::string& a, const std::string& b) {
    return std::find(order.begin(), order.end(), a) < std::find(order.begin(), order.end(), b);
  });
  std::string s = "<table class=\"metrics\" data-plot=\"width-metrics\">\n<tr><th>width</th><th>parameters</th>";
  for (const std::string& c : columns) s += "<th>" + escape(c) + "</th>";
  s += "</tr>\n";
  for (std::int64_t width : widths_of(g)) {
    const std::int64_t params = parameters_at(g, width);
    s += "<tr>" + cell(std::to_string(width), "num") + cell(params > 0 ? std::to_string(params) : "-", "num");
    for (const std::string& c : columns) {
      std::vector<double> values;
      for (const Run* r : g.runs)
        if (const WidthRecord* w = find_width(*r, width)) values.push_back(named(w->metrics, c));
      s += cell(mean_and_spread(values), "num");
    }
    s += "</tr>\n";
  }
  const std::string split = g.runs.front()->metrics_split;
  return s + "</table>\n<p class=\"note\">Next-item metrics on the " + escape(split.empty() ? "test" : split) +
         " split at every width of the model (each width's scores are exactly those of the exported width-s model, "
         "whose parameters the second column gives), with the kept (best) step's weights" +
         (g.runs.size() > 1 ? "; mean \u00b1 half the range over " + std::to_string(g.runs.size()) + " seeds"
                            : std::string()) +
         ".</p>\n";
}

std::string validation_curve(const Group& g) {
  LineChart loss{"training loss by step", "step", "loss (mean over widths)", {}, std::nullopt, "", false, true};
  LineChart quality{"", "step", "", {}, std::nullopt, "", false, true};
  const std::string monitor = g.runs.front()->monitor.empty() ? "ndcg@10" : g.runs.front()->monitor;
  std::vector<std::string> metrics{monitor};
  for (const char* m : {"ndcg@10", "recall@10"})
    if (monitor != m) metrics.push_back(m);
  for (std::size_t i = 0; i < g.runs.size(); ++i) {
    const Run& r = *g.runs[i];
    Series train{seed_name(r, g) + "train", {}, {}, palette(i), false, true};
    for (const StepRecord& p : r.steps) {
      train.x.push_back(p.step);
      train.y.push_back(p.train_loss);
    }
    loss.series.push_back(std::move(train));
    for (std::size_t k = 0; k < metrics.size(); ++k) {
      Series v{seed_name(r, g) + metrics[k], {}, {}, palette(g.runs.size() == 1 ? k : i), k > 0, true};
      for (const StepRecord& p : r.steps) {
        v.x.push_back(p.step);
        v.y.push_back(named(p.val, metrics[k]));
      }
      quality.series.push_back(std::move(v));
    }
  }
  quality.title = "validation at full width by step";
  quality.y_label = "metric";
  if (g.runs.size() == 1 && g.runs.front()->best_step > 0) {
    loss.x_marker = quality.x_marker = static_cast<double>(g.runs.front()->best_step);
    loss.x_marker_label = quality.x_marker_label = "kept";
  }
  return "<figure class=\"plot\" data-plot=\"validation-curve\">\n" + render_line_chart(loss) +
         render_line_chart(quality) +
         "<figcaption>The mean training loss between validations, and the validation metrics at full width (" +
         escape(monitor) + " decides early stopping and the kept weights).</figcaption>\n</figure>\n";
}

// NDCG@10 and Recall@10 against width and against the width's parameters,
// one series per group (a single-width model is a point).
std::string width_charts(const std::vector<const Group*>& groups, const char* kind, const std::string& caption) {
  std::string charts;
  for (const bool by_parameters : {false, true}) {
    for (const char* metric : {"ndcg@10", "recall@10"}) {
      LineChart chart{std::string(metric) + (by_parameters ? " by parameters" : " by width"),
                      by_parameters ? "parameters of the width's model" : "width", metric, {}, std::nullopt, "",
                      false, false};
      bool any = false;
      for (std::size_t i = 0; i < groups.size(); ++i) {
        Series series{groups.size() > 1 ? groups[i]->label : std::string(metric), {}, {}, palette(i), false, true};
        for (std::int64_t width : widths_of(*groups[i])) {
          const double x = by_parameters ? static_cast<double>(parameters_at(*groups[i], width)) : static_cast<double>(width);
          if (!(x > 0)) continue;
          series.x.push_back(x);
          series.y.push_back(mean_at(*groups[i], width, metric));
          any = true;
        }
        chart.series.push_back(std::move(series));
      }
      if (any) charts += render_line_chart(chart);
    }
  }
  return "<figure class=\"plot\" data-plot=\"" + std::string(kind) + "\">\n" + charts + "<figcaption>" +
         escape(caption) + "</figcaption>\n</figure>\n";
}

// A sequential run: "widths" {"8": {metric: value}}, "parameters_by_width",
// "history" [{step, seconds, train_loss, val: {metric: value}}].
Run parse_sequential_run(const json& record, Run run, const Reader& read) {
  run.sequential = true;
  run.train_rows_per_s = kNaN;  // steps, not rows
  if (const auto seed = record.find("seed"); seed != record.end() && !seed->is_null()) {
    if (!seed->is_number_integer()) read.fail("seed", "is not an integer");
    run.seed = seed->get<std::int64_t>();
  }
  const double params = read.number(record, "parameters", "parameters", false);
  run.parameters = std::isfinite(params) ? static_cast<std::int64_t>(params) : 0;
  run.early_stopped = read.flag(record, "early_stopped", "early_stopped", false);
  run.metrics_split = read.text(record, "metrics_split", "metrics_split", "test");
  run.monitor = read.text(record, "monitor", "monitor", "");
  const double best = read.number(record, "best_step", "best_step", false);
  run.best_step = std::isfinite(best) ? static_cast<std::int64_t>(best) : 0;
  const double total = read.number(record, "steps", "steps", false);
  run.total_steps = std::isfinite(total) ? static_cast<std::int64_t>(total) : 0;
  const auto metrics_of = [&](const json& j, const std::string& at) {
    std::vector<std::pair<std::string, double>> out;
    for (const auto& [name, v] : j.items()) {
      if (!v.is_number() && !v.is_null()) read.fail(at + "." + name, "is not a number");
      out.emplace_back(name, v.is_number() ? v.get<double>() : kNaN);
    }
    return out;
  };
  const json* widths = read.object(record, "widths", "widths", true);
  const json* params_by_width = read.object(record, "parameters_by_width", "parameters_by_width", false);
  for (const auto& [key, metrics] : widths->items()) {
    WidthRecord w;
    const bool digits = !key.empty() && key.size() <= 9 &&
                        std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
    w.width = digits ? std::stoll(key) : 0;
    if (w.width < 1) read.fail("widths." + key, "is not a width (a positive integer key)");
    if (!metrics.is_object()) read.fail("widths." + key, "is not an object of metrics");
    w.metrics = metrics_of(metrics, "widths." + key);
    if (params_by_width) {
      const double p = read.number(*params_by_width, key, "parameters_by_width." + key, false);
      w.parameters = std::isfinite(p) ? static_cast<std::int64_t>(p) : 0;
    }
    run.widths.push_back(std::move(w));
  }
  std::sort(run.widths.begin(), run.widths.end(), [](const WidthRecord& a, const WidthRecord& b) { return a.width < b.width; });
  if (const auto h = record.find("history"); h != record.end() && !h->is_null()) {
    if (!h->is_array()) read.fail("history", "is not an array");
    for (std::size_t i = 0; i < h->size(); ++i) {
      const json& e = (*h)[i];
      const std::string at = "history[" + std::to_string(i) + "]";
      if (!e.is_object()) read.fail(at, "is not an object");
      StepRecord p;
      p.step = read.number(e, "step", at + ".step", true);
      p.seconds = read.number(e, "seconds", at + ".seconds", false);
      p.train_loss = read.number(e, "train_loss", at + ".train_loss", false);
      if (const json* val = read.object(e, "val", at + ".val", false)) p.val = metrics_of(*val, at + ".val");
      run.steps.push_back(std::move(p));
    }
  }
  return run;
}

}  // namespace

Run parse_run(const json& record, const std::string& label, const std::string& source) {
  const Reader read{source};
  if (!record.is_object()) read.fail("", "is not a JSON object");
  Run run;
  run.label = label;
  run.source = source;
  run.record = record;
  const auto model = record.find("model");
  if (model == record.end() || !model->is_string()) read.fail("model", "is missing or not a string");
  run.model = model->get<std::string>();
  if (read.text(record, "kind", "kind", "") == "sequential") return parse_sequential_run(record, std::move(run), read);
  if (const auto seed = record.find("seed"); seed != record.end() && !seed->is_null()) {
    if (!seed->is_number_integer()) read.fail("seed", "is not an integer");
    run.seed = seed->get<std::int64_t>();
  }
  const double params = read.number(record, "parameters", "parameters", false);
  run.parameters = std::isfinite(params) ? static_cast<std::int64_t>(params) : 0;
  const double best = read.number(record, "best_epoch", "best_epoch", false);
  run.best_epoch = std::isfinite(best) ? static_cast<int>(best) : 0;
  run.early_stopped = read.flag(record, "early_stopped", "early_stopped", false);
  run.train_rows_per_s = read.number(record, "train_rows_per_s", "train_rows_per_s", false);
  run.metrics_split = record.contains("metrics_split") && record["metrics_split"].is_string()
                          ? record["metrics_split"].get<std::string>()
                          : "";
  run.tasks = read.tasks(*read.object(record, "tasks", "tasks", true), "tasks");
  if (record.contains("task_names") && record["task_names"].is_array())
    for (const json& n : record["task_names"])
      if (n.is_string()) run.task_names.push_back(n.get<std::string>());
  if (const auto h = record.find("history"); h != record.end()) {
    if (!h->is_array()) read.fail("history", "is not an array");
    for (std::size_t i = 0; i < h->size(); ++i) {
      const json& e = (*h)[i];
      const std::string at = "history[" + std::to_string(i) + "]";
      if (!e.is_object()) read.fail(at, "is not an object");
      EpochRecord epoch;
      epoch.epoch = read.number(e, "epoch", at + ".epoch", true);
      epoch.train_loss = read.number(e, "train_loss", at + ".train_loss", false);
      epoch.val_loss = read.number(e, "val_loss", at + ".val_loss", false);
      epoch.learning_rate = read.number(e, "learning_rate", at + ".learning_rate", false);
      if (const json* per_task = read.object(e, "train_task_loss", at + ".train_task_loss", false))
        for (const auto& [name, v] : per_task->items()) {
          if (!v.is_number() && !v.is_null()) read.fail(at + ".train_task_loss." + name, "is not a number");
          epoch.train_task_loss.emplace_back(name, v.is_number() ? v.get<double>() : kNaN);
        }
      if (const json* val = read.object(e, "val", at + ".val", false)) epoch.val = read.tasks(*val, at + ".val");
      run.history.push_back(std::move(epoch));
    }
  }
  if (const auto t = record.find("truth"); t != record.end() && t->is_object()) run.truth = *t;
  if (const auto u = record.find("expert_utilization"); u != record.end() && !u->is_null()) {
    try {
      run.expert_utilization = u->get<std::vector<std::vector<double>>>();
      if (record.contains("expert_names")) run.expert_names = record["expert_names"].get<std::vector<std::string>>();
    } catch (const json::exception&) {
      read.fail("expert_utilization", "is not a [tasks][experts] array of numbers with expert_names strings");
    }
  }
  return run;
}

std::vector<Run> load_runs(const std::vector<std::string>& arguments) {
  std::vector<Run> runs;
  for (const std::string& arg : arguments) {
    std::string label;
    fs::path path(arg);
    const auto eq = arg.find('=');
    std::error_code ec;
    if (eq != std::string::npos && eq > 0 && !fs::exists(path, ec)) {
      label = arg.substr(0, eq);
      path = arg.substr(eq + 1);
    }
    for (Run& r : runs_of(label, path)) runs.push_back(std::move(r));
  }
  if (runs.empty()) throw DataError("no runs to report on: give metrics JSON files, model directories or compare folders");
  for (std::size_t i = 0; i < runs.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (runs[i].label == runs[j].label && runs[i].sequential != runs[j].sequential)
        throw DataError(runs[j].source + " and " + runs[i].source + ": one label '" + runs[i].label +
                        "' for a ranking and a sequential run; label them apart");
      else if (runs[i].label == runs[j].label && runs[i].seed >= 0 && runs[i].seed == runs[j].seed)
        throw DataError(runs[j].source + " and " + runs[i].source + ": two runs of '" + runs[i].label +
                        "' with seed " + std::to_string(runs[i].seed) +
                        " (runs with one label are seeds of one model); label them apart, e.g. " + runs[i].label +
                        "_b=" + runs[i].source);
  return runs;
}

std::string render_report(const std::vector<Run>& runs, const ReportOptions& options) {
  std::vector<Group> groups = group_by_label(runs);
  // The baseline first: the seesaw table reads down from it.
  std::stable_partition(groups.begin(), groups.end(), [&](const Group& g) { return g.label == options.baseline; });
  std::string s;
  s += "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  s += "<title>" + escape(options.title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  s += "<h1>" + escape(options.title) + "</h1>\n";
  s += "<p class=\"note\">" + std::to_string(runs.size()) + " run" + (runs.size() == 1 ? "" : "s") + " of " +
       std::to_string(groups.size()) + " model" + (groups.size() == 1 ? "" : "s") +
       ". Written by <code>mtrank report</code>; every plot is inline SVG.</p>\n";
  std::size_t ranking_groups = 0, sequential_groups = 0;
  for (const Group& g : groups) ++(g.runs.front()->sequential ? sequential_groups : ranking_groups);
  s += "<nav><p>";
  if (ranking_groups > 1) s += "<a href=\"#seesaw\">seesaw table</a> \u00b7 ";
  if (sequential_groups > 1) s += "<a href=\"#width-comparison\">quality by width</a> \u00b7 ";
  for (std::size_t i = 0; i < groups.size(); ++i)
    s += std::string(i ? " \u00b7 " : "") + "<a href=\"#model-" + id_of(groups[i].label, i) + "\">" +
         escape(groups[i].label) + "</a>";
  s += "</p></nav>\n<h2>Runs</h2>\n" + runs_table(runs);
  // Sequential models have no tasks to compare in a seesaw table: theirs is the width comparison.
  std::vector<Group> ranking;
  std::vector<const Group*> sequential;
  for (const Group& g : groups)
    if (g.runs.front()->sequential) sequential.push_back(&g);
    else ranking.push_back(g);
  if (ranking.size() > 1) s += seesaw_section(ranking, options);
  if (sequential.size() > 1)
    s += "<section id=\"width-comparison\">\n<h2>Next-item quality by width</h2>\n" +
         width_charts(sequential, "width-comparison",
                      "Test NDCG@10 and Recall@10 of every sequential model at each of its widths, against the width "
                      "and against the parameters of the width's model (a model trained at one width is one point).") +
         "</section>\n";
  s += position_bias_section(runs);
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const Group& g = groups[gi];
    if (g.runs.front()->sequential) {
      s += "<section class=\"model\" id=\"model-" + id_of(g.label, gi) + "\">\n<h2>" + escape(g.label) + " <small>(" +
           escape(g.runs.front()->model) + ", next item)</small></h2>\n";
      s += "<h3>Metrics by width</h3>\n" + width_table(g);
      const bool curve = std::any_of(g.runs.begin(), g.runs.end(), [](const Run* r) { return !r->steps.empty(); });
      if (curve) s += "<h3>Validation curve</h3>\n" + validation_curve(g);
      s += "<h3>Width plot</h3>\n" +
           width_charts({&g}, "width",
                        "Test NDCG@10 and Recall@10 at each width of this one trained model, against the width and "
                        "against the parameters of the exported width-s model.");
      s += "</section>\n";
      continue;
    }
    std::vector<std::string> tasks;
    for (const Run* r : g.runs)
      for (const auto& m : r->tasks)
        if (std::find(tasks.begin(), tasks.end(), m.name) == tasks.end()) tasks.push_back(m.name);
    // Config order where the record has it.
    const std::vector<std::string>& order = g.runs.front()->task_names;
    std::stable_sort(tasks.begin(), tasks.end(), [&](const std::string& a, const std::string& b) {
      auto rank = [&](const std::string& t) { return std::find(order.begin(), order.end(), t) - order.begin(); };
      return rank(a) < rank(b);
    });
    s += "<section class=\"model\" id=\"model-" + id_of(g.label, gi) + "\">\n<h2>" + escape(g.label) + " <small>(" +
         escape(g.runs.front()->model) + ")</small></h2>\n";
    s += "<h3>Metrics</h3>\n" + metrics_table(g);
    s += "<h3>Learning curves</h3>\n" + learning_curves(g, tasks);
    const std::string calibration = calibration_plots(g, tasks);
    if (!calibration.empty()) s += "<h3>Calibration</h3>\n" + calibration;
    const std::string experts = expert_heat_map(g);
    if (!experts.empty()) s += "<h3>Expert utilization</h3>\n" + experts;
    s += "</section>\n";
  }
  s += "</body>\n</html>\n";
  return s;
}

}  // namespace mtrank::report
