#pragma once
// Subcommand implementations. main.cpp only parses the command line.
#include <cstdint>
#include <string>
#include <vector>

namespace mtrank::cli {

struct TrainOptions {
  std::vector<std::string> configs;  // merged in order, later files win
  std::string out, metrics_out;
  // Data sets: files or quoted glob patterns ("logs/day-*.csv.gz"), read in turn as one.
  std::vector<std::string> train, val, test;
  int threads = -1;          // -1 = from config
  std::int64_t seed = -1;    // -1 = from config
  std::int64_t max_steps = -1;  // -1 = from config (train.max_steps; sequential models)
  std::string items;            // sequential models: the item table (overrides data.items)
  std::vector<std::string> item_vectors;  // sequential models: vector files (override data.item_vectors)
  bool quiet = false;          // no progress bars (metric tables still print)
  bool tables = true;          // print the metric tables (compare turns them off)
  bool resume = false;        // continue from MODEL_DIR's checkpoint
  std::string warm_start;     // initialize from this model directory
  bool what_next = true;      // end with the "what next" commands (report, eval, serve)
  bool stream = false;        // stream the training rows from disk (out of core) whatever their size
  int nproc_per_node = 1;     // > 1: launch that many local workers of one data-parallel run
  int dist_timeout = 300;     // seconds a data-parallel collective may wait for the other workers
  std::vector<std::string> worker_arguments;  // the command line without --nproc-per-node, for the workers
};
int run_train(const TrainOptions& o);

struct EvalOptions {
  std::string model, data, metrics_out;
  int threads = 0;
  bool as_served = false;  // bias features read as missing, as `mtrank serve` reads them
  // Ground truth row for row with --data (mtrank simulate's DIR/test.truth.csv):
  // NDCG of the served ranking against `truth_column`, and the learned bias by position.
  std::string truth, truth_column = "grade";
  std::string rank_by;  // a task name, or "" = the model's [serve] score formula
  std::int64_t max_len = 0;  // sequential models: the input window (0 = the model's max_len)
};
int run_eval(const EvalOptions& o);

struct PredictOptions {
  std::string model, data, out;
  int threads = 0;
};
int run_predict(const PredictOptions& o);

struct ExportOptions {
  std::string model, out;
  std::int64_t width = 0;
};
// Writes a sequential model's width-W model alone (model::extract_width).
int run_export(const ExportOptions& o);

struct RecommendOptions {
  std::string model, history;  // history: external item ids, oldest first, separated by spaces or commas
  std::int64_t width = 0;      // 0 = full
  std::int64_t k = 10;
  bool json = false;
};
// Prints the top k items to follow a history, the history's items left out.
int run_recommend(const RecommendOptions& o);

struct ItemVectorsOptions {
  std::string items, id_column = "item", out;
  std::vector<std::string> text_columns;
  std::int64_t dim = 64;
  int min_df = 2;
  bool bigrams = true;
  int power_iterations = 5;
  std::uint64_t seed = 0;
};
// LSA item vectors from item text: TF-IDF of word uni- and bigrams, then a
// truncated SVD; writes `item<TAB>v1 v2 ...` lines.
int run_item_vectors(const ItemVectorsOptions& o);

struct QuickstartOptions {
  std::string dir = "mtrank-quickstart";
  int threads = 0;
  std::int64_t rows = 60000;
};
int run_quickstart(const QuickstartOptions& o);

struct CompareOptions {
  std::vector<std::string> configs;   // one model per config; its name is the file name without .toml
  std::vector<std::string> overlays;  // applied on top of every config (e.g. census group2.toml)
  std::vector<std::int64_t> seeds = {1, 2, 3};
  std::string out_dir = "mtrank-compare";
  std::string baseline = "single_task";
  std::vector<std::string> train, val, test;  // as TrainOptions
  int threads = 0;
  bool markdown = false;
  bool gbdt = false;  // also an xgboost row: one booster per task on the first config's features
};
// Trains each config for each seed (reusing results already in out_dir) and
// prints each task's test metric per model next to the single-task baseline.
int run_compare(const CompareOptions& o);

struct ReportOptions {
  std::vector<std::string> runs;  // RUN_OR_MODEL arguments (report/report.h: load_runs)
  std::string out = "report.html";
  std::string title = "mtrank report";
  std::string baseline = "single_task";
};
// Writes one self-contained HTML report of the runs (atomically) and names it.
int run_report(const ReportOptions& o);

struct DoctorOptions {
  int size = 1024;
  double seconds = 1.0;
};
int run_doctor(const DoctorOptions& o);

// The quickstart's config, embedded in the binary.
extern const char* const kQuickstartConfig;

}  // namespace mtrank::cli
