// The report module: chart geometry on hand-checked cases, record parsing and
// its errors, the argument forms of `mtrank report`, and the page's contents.
// tests/report/report_chromium_test.sh renders a real report in Chromium.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "report/report.h"
#include "report/svg.h"
#include "test_util.h"

using namespace mtrank;
using nlohmann::json;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

json task(const std::string& type, double metric, std::int64_t rows = 100) {
  json t{{"type", type}, {"count", rows}};
  if (type == "binary") {
    t["auc"] = metric;
    t["logloss"] = 0.5;
    t["calibration"] = 1.0;
    t["reliability"] = {{"mean_prediction", {0.1, 0.5}}, {"positive_rate", {0.2, 0.4}}, {"rows", {50, 50}}};
  } else {
    t["rmse"] = metric;
    t["mse"] = metric * metric;
  }
  return t;
}

// A metrics JSON as `mtrank train --metrics-out` writes it (the keys the report reads).
json record(const std::string& model, int seed, double click_auc, double time_rmse, bool gates) {
  json r{{"model", model},
         {"seed", seed},
         {"parameters", 1000},
         {"best_epoch", 2},
         {"early_stopped", false},
         {"train_rows_per_s", 5000.0},
         {"metrics_split", "test"},
         {"task_names", {"click", "watch_time"}},
         {"tasks", {{"click", task("binary", click_auc)}, {"watch_time", task("regression", time_rmse)}}}};
  for (int e = 1; e <= 2; ++e)
    r["history"].push_back({{"epoch", e},
                            {"train_loss", 1.0 / e},
                            {"val_loss", 1.1 / e},
                            {"learning_rate", 0.01},
                            {"train_task_loss", {{"click", 0.6 / e}, {"watch_time", 2.0 / e}}},
                            {"val", {{"click", task("binary", 0.6 + 0.05 * e)}, {"watch_time", task("regression", 3.0 / e)}}}});
  if (gates) {
    r["expert_utilization"] = {{0.75, 0.25}, {0.5, 0.5}};
    r["expert_names"] = {"e0", "e1"};
  }
  return r;
}

}  // namespace

TEST(ReportSvg, TicksEscapesAndNumbers) {
  EXPECT_EQ(report::nice_ticks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  EXPECT_EQ(report::nice_ticks(1, 8, 5), (std::vector<double>{2, 4, 6, 8}));
  EXPECT_EQ(report::nice_ticks(3, 3, 5), (std::vector<double>{3}));
  EXPECT_TRUE(report::nice_ticks(0, std::nan(""), 5).empty());
  // Two values an ulp apart (a loss flat at ln 2): one tick, not an endless loop.
  EXPECT_EQ(report::nice_ticks(0.6931471805599453, 0.6931471805599454, 5).size(), 1u);
  EXPECT_EQ(report::escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  EXPECT_EQ(report::escape(std::string("x\x01y")), "x?y");  // not allowed in XML at all
  // UTF-8 passes; a Latin-1 byte, a truncated sequence, an overlong form or U+FFFF become U+FFFD.
  EXPECT_EQ(report::escape("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(report::escape("caf\xE9"), "caf\xEF\xBF\xBD");
  EXPECT_EQ(report::escape("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(report::escape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(report::escape("\xEF\xBF\xBF"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(report::format_number(0.123456), "0.1235");
  EXPECT_EQ(report::format_number(std::nan("")), "-");
  EXPECT_EQ(report::format_number(2.5e-6), "2.500e-06");
}

TEST(ReportSvg, LineChartMapsDataToThePlotArea) {
  report::LineChart chart;
  chart.title = "t";
  // x 1..2 spans the plot's width (62..446); y 0..1 its height (246..30).
  chart.series.push_back({"a", {1, 2}, {0, 1}, "#000000", false, false});
  // A non-finite point is a gap: two polylines.
  chart.series.push_back({"b", {1, 1.5, 2}, {0.5, std::nan(""), 0.5}, "#111111", true, false});
  const std::string svg = report::render_line_chart(chart);
  EXPECT_NE(svg.find("points=\"62.0,246.0 446.0,30.0\""), std::string::npos) << svg;
  EXPECT_EQ(count(svg, "<polyline"), 3u);
  EXPECT_NE(svg.find("points=\"62.0,138.0\""), std::string::npos);
  EXPECT_EQ(count(svg, "data-series=\"b\""), 1u);
  EXPECT_NE(svg.find("stroke-dasharray=\"5 3\""), std::string::npos);
  // A series flat to the last bits is drawn mid-plot, not in an endless tick loop.
  report::LineChart flat;
  flat.series.push_back({"f", {1, 2}, {0.6931471805599453, 0.6931471805599454}, "#000000", false, false});
  EXPECT_EQ(count(report::render_line_chart(flat), "<polyline"), 1u);
  // The reliability form: square axes from 0, and the diagonal.
  chart.identity = true;
  chart.series = {{"r", {0.05, 0.25}, {0.1, 0.3}, "#000000", false, true}};
  const std::string diagram = report::render_line_chart(chart);
  EXPECT_EQ(count(diagram, "class=\"diagonal\""), 1u);
  EXPECT_EQ(count(diagram, "<circle"), 2u);
  // Axes 0..0.3 (the largest value rounded up to a tenth): (0.25, 0.3) sits at x = 62 + 384 * 0.25 / 0.3.
  EXPECT_NE(diagram.find("cx=\"382.0\" cy=\"30.0\""), std::string::npos) << diagram;
}

TEST(ReportSvg, HeatMapHasACellPerTaskAndExpert) {
  const std::string svg = report::render_heat_map({"gates", {"click", "like"}, {"e0", "e1", "e2"},
                                                   {{0.5, 0.25, 0.25}, {0.1, 0.1, 0.8}}});
  EXPECT_EQ(count(svg, "<rect class=\"cell\""), 6u);
  EXPECT_NE(svg.find(">80</text>"), std::string::npos);  // per cent of the gate
  EXPECT_NE(svg.find("like, e2: 0.8"), std::string::npos);
}

TEST(Report, ParseRunNamesTheFileAndKeyOfBadRecords) {
  const report::Run run = report::parse_run(record("mmoe", 1, 0.7, 2.0, true), "mmoe", "a.json");
  EXPECT_EQ(run.model, "mmoe");
  ASSERT_EQ(run.history.size(), 2u);
  EXPECT_EQ(run.history[1].train_task_loss, (std::vector<std::pair<std::string, double>>{{"click", 0.3}, {"watch_time", 1.0}}));
  EXPECT_EQ(run.history[1].val.size(), 2u);
  EXPECT_EQ(run.tasks[0].reliability.size(), 2u);
  EXPECT_EQ(run.task_names, (std::vector<std::string>{"click", "watch_time"}));
  auto error_of = [](const json& j) {
    try {
      report::parse_run(j, "x", "runs/a.json");
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  json bad = record("mmoe", 1, 0.7, 2.0, false);
  bad.erase("tasks");
  EXPECT_EQ(error_of(bad).rfind("runs/a.json: key 'tasks' is missing", 0), 0u) << error_of(bad);
  bad = record("mmoe", 1, 0.7, 2.0, false);
  bad["history"][1]["epoch"] = "two";
  EXPECT_EQ(error_of(bad).rfind("runs/a.json: key 'history[1].epoch' is not a number", 0), 0u) << error_of(bad);
  bad = record("mmoe", 1, 0.7, 2.0, false);
  bad["tasks"]["click"]["auc"] = true;
  EXPECT_NE(error_of(bad).find("key 'tasks' is not task metrics: task 'click': key 'auc' is not a number"),
            std::string::npos)
      << error_of(bad);
  EXPECT_NE(error_of(json::array()).find("is not a JSON object"), std::string::npos);
  bad = record("mmoe", 1, 0.7, 2.0, true);
  bad["expert_utilization"] = "lots";
  EXPECT_NE(error_of(bad).find("key 'expert_utilization'"), std::string::npos);
}

TEST(Report, LoadsFilesModelDirectoriesAndCompareFolders) {
  mtrank::testing::TempDir dir;
  namespace fs = std::filesystem;
  dir.write("a.json", record("mmoe", 5, 0.7, 2.0, true).dump());
  fs::create_directories(dir.path() / "model");
  dir.write("model/meta.json", json{{"format", "mtrank-model"}, {"training", record("ple", 3, 0.7, 2.0, true)}}.dump());
  fs::create_directories(dir.path() / "cmp/single_task");
  fs::create_directories(dir.path() / "cmp/mmoe");
  fs::create_directories(dir.path() / "cmp/mmoe/seed1-model");  // compare's model folders are not runs
  dir.write("cmp/compare.json", "{}");
  dir.write("cmp/single_task/seed2.json", record("single_task", 2, 0.70, 2.0, false).dump());
  dir.write("cmp/single_task/seed10.json", record("single_task", 10, 0.70, 2.0, false).dump());
  dir.write("cmp/mmoe/seed1.json", record("mmoe", 1, 0.70, 2.0, true).dump());
  const auto runs = report::load_runs({dir.file("a.json"), "best=" + dir.file("model"), dir.file("cmp")});
  ASSERT_EQ(runs.size(), 5u);
  EXPECT_EQ(runs[0].label, "mmoe");  // labelled by its family
  EXPECT_EQ(runs[1].label, "best");
  EXPECT_EQ(runs[1].model, "ple");
  EXPECT_EQ(runs[1].source, dir.file("model/meta.json"));
  EXPECT_EQ(runs[2].label, "mmoe");  // folders sorted, seeds by number
  EXPECT_EQ(runs[3].label, "single_task");
  EXPECT_EQ(runs[3].seed, 2);
  EXPECT_EQ(runs[4].seed, 10);

  auto error_of = [](const std::vector<std::string>& args) {
    try {
      report::load_runs(args);
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // b.json and cmp/mmoe/seed1.json are both "mmoe" seed 1.
  dir.write("b.json", record("mmoe", 1, 0.7, 2.0, true).dump());
  EXPECT_NE(error_of({dir.file("b.json"), dir.file("cmp")}).find("two runs of 'mmoe' with seed 1"), std::string::npos);
  EXPECT_NE(error_of({dir.file("nope.json")}).find("nope.json: no such file or directory"), std::string::npos);
  dir.write("broken.json", "{\"model\": ");
  EXPECT_NE(error_of({dir.file("broken.json")}).find("broken.json: not valid JSON"), std::string::npos);
  fs::create_directories(dir.path() / "empty");
  EXPECT_NE(error_of({dir.file("empty")}).find("neither a model directory"), std::string::npos);
  dir.write("model/meta.json", json{{"format", "mtrank-model"}}.dump());
  EXPECT_NE(error_of({dir.file("model")}).find("key 'training' is missing"), std::string::npos);
}

TEST(Report, PageHasEveryPlotTheSeesawTableAndEscapesNames) {
  std::vector<report::Run> runs;
  for (int seed : {1, 2}) {
    runs.push_back(report::parse_run(record("single_task", seed, 0.70 + 0.001 * seed, 2.0, false), "single_task", "s.json"));
    runs.push_back(report::parse_run(record("mmoe", seed, 0.75 + 0.001 * seed, 2.1, true), "mmoe", "m.json"));
  }
  const std::string page = report::render_report(runs, {});
  // Per model: a learning-curve figure per task, a reliability diagram per binary task; experts where there are gates.
  EXPECT_EQ(count(page, "data-plot=\"learning-curve\""), 4u);
  EXPECT_EQ(count(page, "data-plot=\"calibration\""), 2u);
  EXPECT_EQ(count(page, "data-plot=\"expert-utilization\""), 1u);
  EXPECT_EQ(count(page, "data-plot=\"seesaw\""), 1u);
  EXPECT_EQ(count(page, "data-plot=\"metrics\""), 2u);
  // mmoe: click 0.7515 vs 0.7015 (spreads 0.001): up; watch_time RMSE 2.1 vs 2.0 (spreads 0): down.
  EXPECT_NE(page.find("<td>seesaw</td>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"num up\">0.7515 (0.001) +7.13% up</td>"), std::string::npos) << page;
  EXPECT_NE(page.find("<td class=\"num down\">2.1 (0) -5.00% down</td>"), std::string::npos);
  // One line per seed in the learning curves.
  EXPECT_NE(page.find("data-series=\"seed 2 validation\""), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);  // no JavaScript

  // A task or label named like markup is text, never markup.
  json evil = record("mmoe", 1, 0.7, 2.0, false);
  evil["tasks"]["<script>x</script>"] = evil["tasks"]["click"];
  const std::string escaped =
      report::render_report({report::parse_run(evil, "a&b", "e.json")}, {"<i>t</i>", "single_task"});
  EXPECT_EQ(escaped.find("<script>"), std::string::npos);
  EXPECT_EQ(escaped.find("<i>"), std::string::npos);
  EXPECT_NE(escaped.find("&lt;script&gt;x&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(escaped.find("a&amp;b"), std::string::npos);
  EXPECT_EQ(count(escaped, "data-plot=\"seesaw\""), 0u);  // one model: nothing to compare

  // Several models without the baseline: the table, with a note saying how to name one.
  std::vector<report::Run> two{runs[1], report::parse_run(record("ple", 1, 0.7, 2.0, false), "ple", "p.json")};
  const std::string unlabelled = report::render_report(two, {});
  EXPECT_NE(unlabelled.find("No run is labelled 'single_task'"), std::string::npos);
  EXPECT_EQ(count(unlabelled, "data-plot=\"seesaw\""), 1u);
}

TEST(Report, PositionBiasSectionFromEvalTruthRecords) {
  // eval --truth records: per method and logger, NDCG@10 and (with a tower) the learned bias by position.
  std::vector<report::Run> runs;
  const std::vector<std::pair<std::string, double>> loggers{{"weak", 0.80}, {"medium", 0.84}, {"strong", 0.86}};
  for (const auto& [logger, ndcg] : loggers)
    for (const std::string method : {"naive", "tower"}) {
      json r = record("mmoe", 1, 0.7, 2.0, false);
      r.erase("seed");  // eval records have no seed
      r["truth"] = {{"ndcg@10", ndcg + (method == "tower" ? 0.05 : 0.0)},
                    {"simulation", {{"click_model", "pbm"}, {"eta", 1.0}, {"logger", logger}}}};
      if (method == "tower") {
        r["truth"]["bias_task"] = "click";
        r["truth"]["bias_rank_correlation"] = 1.0;
        r["truth"]["bias_monotone"] = true;
        for (int k = 1; k <= 3; ++k)
          r["truth"]["bias_by_position"].push_back(
              {{"position", k}, {"learned", -0.5 * (k - 1)}, {"true_log_theta", -std::log(static_cast<double>(k))}});
      }
      runs.push_back(report::parse_run(r, method, method + "-" + logger + ".json"));
    }
  const std::string page = report::render_report(runs, {});
  EXPECT_EQ(count(page, "data-plot=\"position-bias\""), 3u);   // one per tower run
  EXPECT_EQ(count(page, "data-plot=\"ndcg-by-logger\""), 1u);  // one setting: pbm, eta 1
  EXPECT_NE(page.find("NDCG@10 on true grades (pbm, eta 1)"), std::string::npos);
  EXPECT_NE(page.find("tower (pbm, eta 1, medium logger)"), std::string::npos);
  EXPECT_NE(page.find("data-series=\"true log theta\""), std::string::npos);
  // NaN is written as null (a flat truth curve has no rank correlation): the page still renders.
  json flat = runs[1].record;
  flat["truth"]["bias_rank_correlation"] = nullptr;
  flat["truth"]["ndcg@10"] = nullptr;
  const std::string with_null = report::render_report({report::parse_run(flat, "tower", "flat.json")}, {});
  EXPECT_EQ(count(with_null, "data-plot=\"position-bias\""), 1u);
  EXPECT_NE(with_null.find("Rank correlation -"), std::string::npos);
  // Training records alone have no such section.
  EXPECT_EQ(report::render_report({report::parse_run(record("mmoe", 1, 0.7, 2.0, false), "m", "m.json")}, {})
                .find("position-bias"),
            std::string::npos);
}

namespace {
// A sequential metrics JSON as `mtrank train` writes it for a [sequential] config.
json sequential_record(const std::vector<int>& widths, double top_ndcg) {
  json r{{"model", "lrurec"}, {"kind", "sequential"}, {"seed", 42}, {"parameters", 5000}, {"steps", 1000},
         {"best_step", 500}, {"early_stopped", true}, {"monitor", "recall@10"}, {"metrics_split", "test"}};
  for (std::size_t i = 0; i < widths.size(); ++i) {
    const double scale = static_cast<double>(i + 1) / static_cast<double>(widths.size());
    const std::string w = std::to_string(widths[i]);
    r["widths"][w] = {{"ndcg@10", top_ndcg * scale}, {"recall@10", 2 * top_ndcg * scale}, {"mrr", top_ndcg * scale / 2}};
    r["parameters_by_width"][w] = 100 * widths[i];
  }
  for (int step : {500, 1000})
    r["history"].push_back({{"step", step}, {"seconds", step / 10.0}, {"train_loss", 8000.0 / step},
                            {"val", {{"ndcg@10", step / 5000.0}, {"recall@10", step / 2500.0}}}});
  return r;
}
}  // namespace

TEST(Report, SequentialRunsHaveMetricsByWidthTheValidationCurveAndTheWidthPlot) {
  const report::Run nested = report::parse_run(sequential_record({16, 8}, 0.2), "nested", "n.json");
  ASSERT_TRUE(nested.sequential);
  ASSERT_EQ(nested.widths.size(), 2u);
  EXPECT_EQ(nested.widths[0].width, 8);  // sorted by width
  EXPECT_EQ(nested.widths[0].parameters, 800);
  EXPECT_EQ(nested.steps.size(), 2u);
  EXPECT_EQ(nested.best_step, 500);
  const report::Run single = report::parse_run(sequential_record({16}, 0.21), "independent16", "i.json");
  const std::string page = report::render_report({nested, single}, {});
  EXPECT_EQ(count(page, "data-plot=\"width-metrics\""), 2u);
  EXPECT_EQ(count(page, "data-plot=\"validation-curve\""), 2u);
  EXPECT_EQ(count(page, "data-plot=\"width\""), 2u);
  EXPECT_EQ(count(page, "data-plot=\"width-comparison\""), 1u);
  EXPECT_EQ(count(page, "data-plot=\"seesaw\""), 0u);  // no tasks to compare
  EXPECT_EQ(count(page, "href=\"#seesaw\""), 0u);
  // Width 8's row (listed second in the record): 800 parameters, then
  // NDCG@10, Recall@10 and MRR in LRURec's order.
  EXPECT_NE(page.find("<td class=\"num\">8</td><td class=\"num\">800</td><td class=\"num\">0.2</td><td class=\"num\">0.4</td>"
                      "<td class=\"num\">0.1</td>"),
            std::string::npos);
  EXPECT_NE(page.find("1000 steps (500), stopped early"), std::string::npos);
  // Bad records are named by file and key.
  json bad = sequential_record({8}, 0.1);
  bad["widths"]["wide"] = json::object();
  try {
    report::parse_run(bad, "x", "bad.json");
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json: key 'widths.wide' is not a width"), std::string::npos) << e.what();
  }
  bad = sequential_record({8}, 0.1);
  bad["monitor"] = 7;
  try {
    report::parse_run(bad, "x", "bad.json");
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json: key 'monitor' is not a string"), std::string::npos) << e.what();
  }
  // One label for a ranking and a sequential run is refused.
  mtrank::testing::TempDir dir;
  const std::string a = dir.write("a.json", sequential_record({8}, 0.1).dump());
  const std::string b = dir.write("b.json", record("mmoe", 1, 0.7, 2.0, false).dump());
  try {
    report::load_runs({"m=" + a, "m=" + b});
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("one label 'm' for a ranking and a sequential run"), std::string::npos) << e.what();
  }
  bad = sequential_record({8}, 0.1);
  bad["history"][0]["val"]["ndcg@10"] = "high";
  try {
    report::parse_run(bad, "x", "bad.json");
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'history[0].val.ndcg@10' is not a number"), std::string::npos) << e.what();
  }
}
