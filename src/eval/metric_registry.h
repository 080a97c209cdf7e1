#pragma once
// Metrics by name: "auc", "gauc", "logloss", "rmse", "mse", "calibration",
// "ndcg@10", "recall@20", "mrr", ... `eval`, `compare` and the reports find
// every metric here. Adding one is a function plus one line in the table in
// metric_registry.cpp. No torch.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mtrank::eval {

// The rows of one task inside its sample space: scores (probabilities for
// binary tasks), labels, and per row the hash of its group (the user, or the
// query), empty when the data has no group column.
struct TaskRows {
  const std::vector<float>& scores;
  const std::vector<float>& labels;
  const std::vector<std::uint64_t>& groups;
};

class Metric {
 public:
  virtual ~Metric() = default;
  virtual double compute(const TaskRows& rows) const = 0;
  // Lists of one relevant item each (next-item prediction), given as that
  // item's 0-based rank in every list: NDCG@K, Recall@K and MRR only; others
  // throw std::invalid_argument.
  virtual double compute_from_ranks(const std::vector<std::int64_t>& ranks) const = 0;
  const std::string& name() const { return name_; }  // as asked for, e.g. "ndcg@10"
  bool higher_is_better() const { return higher_is_better_; }

 protected:
  Metric(std::string name, bool higher_is_better) : name_(std::move(name)), higher_is_better_(higher_is_better) {}

 private:
  std::string name_;
  bool higher_is_better_;
};

struct MetricSpec {
  std::string name;       // without the cut-off: "ndcg"
  bool takes_cutoff;      // written name@K, K >= 1
  bool higher_is_better;
  std::string doc;        // one line for docs and errors
  std::function<double(const TaskRows&, int cutoff)> compute;
  // From the ranks of one relevant item per list; empty if the metric needs scores.
  std::function<double(const std::vector<std::int64_t>& ranks, int cutoff)> from_ranks = {};
};

// Every registered metric, in the order docs and --help list them.
const std::vector<MetricSpec>& metric_registry();

// "ndcg@10" -> the metric. Throws std::invalid_argument naming the known
// metrics when the name is unknown, lacks or has a cut-off it should not, or
// the cut-off is not a positive integer.
std::unique_ptr<Metric> make_metric(const std::string& name);

// Ranking metrics group rows by TaskRows::groups (all rows are one list when
// there are no groups); within a list, rows are ranked by score, best first,
// and a tie puts the less relevant row first (so a constant score earns no
// credit). A row is relevant when its label is > 0; NDCG's gain is 2^label - 1
// (graded labels such as ratings; a label above 1023 overflows the gain, so
// rank by a binary task or a small grade, not by seconds). Any NaN score: NaN.
// Lists without a relevant row are left out of the mean; NaN if none is left.
double ndcg_at(const TaskRows& rows, int k);
double recall_at(const TaskRows& rows, int k);
double mean_reciprocal_rank(const TaskRows& rows);

}  // namespace mtrank::eval
