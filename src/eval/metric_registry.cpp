#include "eval/metric_registry.h"

#include "eval/next_item.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "eval/metrics.h"

namespace mtrank::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double calibration(const TaskRows& r) {
  const double n = std::max<double>(1, static_cast<double>(r.labels.size()));
  const double mean_label = std::accumulate(r.labels.begin(), r.labels.end(), 0.0) / n;
  const double mean_score = std::accumulate(r.scores.begin(), r.scores.end(), 0.0) / n;
  return mean_label > 0 ? mean_score / mean_label : kNaN;
}

// Calls visit(begin, end) for each ranked list: `order` holds row indices,
// grouped, and within a group best score first, ties less relevant first.
template <class Visit>
void for_each_list(const TaskRows& r, Visit visit) {
  std::vector<std::size_t> order(r.scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  const bool grouped = !r.groups.empty();
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (grouped && r.groups[a] != r.groups[b]) return r.groups[a] < r.groups[b];
    if (r.scores[a] != r.scores[b]) return r.scores[a] > r.scores[b];
    if (r.labels[a] != r.labels[b]) return r.labels[a] < r.labels[b];
    return a < b;
  });
  std::size_t begin = 0;
  while (begin < order.size()) {
    std::size_t end = grouped ? begin + 1 : order.size();  // without groups, all rows are one list
    while (end < order.size() && r.groups[order[end]] == r.groups[order[begin]]) ++end;
    visit(order.data() + begin, order.data() + end);
    begin = end;
  }
}

// Mean over lists with a relevant row of per_list(first, last).
template <class PerList>
double mean_over_lists(const TaskRows& r, PerList per_list) {
  // A NaN score has no rank (and would break the sort's ordering): undefined, like roc_auc.
  for (float s : r.scores)
    if (std::isnan(s)) return kNaN;
  double sum = 0;
  std::int64_t lists = 0;
  for_each_list(r, [&](const std::size_t* first, const std::size_t* last) {
    if (std::none_of(first, last, [&](std::size_t i) { return r.labels[i] > 0; })) return;
    sum += per_list(first, last);
    ++lists;
  });
  return lists ? sum / static_cast<double>(lists) : kNaN;
}

std::vector<MetricSpec> make_registry() {
  return {
      {"auc", false, true, "ROC AUC, ties counting one half",
       [](const TaskRows& r, int) { return roc_auc(r.scores, r.labels); }},
      {"gauc", false, true, "AUC within each group (data.group_column), averaged weighted by rows",
       [](const TaskRows& r, int) { return r.groups.empty() ? kNaN : group_auc(r.scores, r.labels, r.groups); }},
      {"logloss", false, false, "mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]",
       [](const TaskRows& r, int) { return logloss(r.scores, r.labels); }},
      {"calibration", false, true, "mean prediction / mean label (1 = calibrated on average)",
       [](const TaskRows& r, int) { return calibration(r); }},
      {"mse", false, false, "mean squared error", [](const TaskRows& r, int) {
         return mean_squared_error(r.scores, r.labels);
       }},
      {"rmse", false, false, "root mean squared error",
       [](const TaskRows& r, int) { return std::sqrt(mean_squared_error(r.scores, r.labels)); }},
      {"ndcg", true, true, "NDCG@K per group (gain 2^label - 1), averaged over groups with a relevant row", ndcg_at,
       ndcg_from_ranks},
      {"recall", true, true, "share of a group's relevant rows in its top K, averaged over groups", recall_at,
       recall_from_ranks},
      {"mrr", false, true, "1 / rank of a group's best-ranked relevant row, averaged over groups",
       [](const TaskRows& r, int) { return mean_reciprocal_rank(r); },
       [](const std::vector<std::int64_t>& ranks, int) { return mrr_from_ranks(ranks); }},
  };
}

class RegisteredMetric : public Metric {
 public:
  RegisteredMetric(std::string name, const MetricSpec& spec, int cutoff)
      : Metric(std::move(name), spec.higher_is_better), spec_(spec), cutoff_(cutoff) {}
  double compute(const TaskRows& rows) const override { return spec_.compute(rows, cutoff_); }
  double compute_from_ranks(const std::vector<std::int64_t>& ranks) const override {
    if (!spec_.from_ranks) throw std::invalid_argument("metric '" + name() + "' needs scores, not ranks");
    return spec_.from_ranks(ranks, cutoff_);
  }

 private:
  const MetricSpec& spec_;
  int cutoff_;
};

std::string known_metrics() {
  std::string out;
  for (const MetricSpec& s : metric_registry()) out += (out.empty() ? "" : ", ") + s.name + (s.takes_cutoff ? "@K" : "");
  return out;
}

}  // namespace

const std::vector<MetricSpec>& metric_registry() {
  static const std::vector<MetricSpec> registry = make_registry();
  return registry;
}

std::unique_ptr<Metric> make_metric(const std::string& name) {
  const std::size_t at = name.find('@');
  const std::string base = name.substr(0, at);
  for (const MetricSpec& spec : metric_registry()) {
    if (spec.name != base) continue;
    if (!spec.takes_cutoff) {
      if (at != std::string::npos) throw std::invalid_argument("metric '" + name + "': " + base + " takes no cut-off");
      return std::make_unique<RegisteredMetric>(name, spec, 0);
    }
    int k = 0;
    const char* first = name.data() + (at == std::string::npos ? name.size() : at + 1);
    const char* last = name.data() + name.size();
    const auto [ptr, ec] = std::from_chars(first, last, k);
    if (at == std::string::npos || ec != std::errc() || ptr != last || first == last || k < 1)
      throw std::invalid_argument("metric '" + name + "': write " + base + "@K with a cut-off K >= 1, e.g. " + base +
                                  "@10");
    return std::make_unique<RegisteredMetric>(name, spec, k);
  }
  throw std::invalid_argument("unknown metric '" + name + "'; known: " + known_metrics());
}

double ndcg_at(const TaskRows& r, int k) {
  auto gain = [&](std::size_t i) { return r.labels[i] > 0 ? std::exp2(static_cast<double>(r.labels[i])) - 1 : 0.0; };
  return mean_over_lists(r, [&](const std::size_t* first, const std::size_t* last) {
    const std::size_t n = static_cast<std::size_t>(last - first);
    std::vector<double> ideal;
    double dcg = 0;
    for (std::size_t i = 0; i < n; ++i) {
      ideal.push_back(gain(first[i]));
      if (i < static_cast<std::size_t>(k)) dcg += gain(first[i]) / std::log2(static_cast<double>(i) + 2);
    }
    std::sort(ideal.begin(), ideal.end(), std::greater<>());
    double idcg = 0;
    for (std::size_t i = 0; i < n && i < static_cast<std::size_t>(k); ++i)
      idcg += ideal[i] / std::log2(static_cast<double>(i) + 2);
    return dcg / idcg;
  });
}

double recall_at(const TaskRows& r, int k) {
  return mean_over_lists(r, [&](const std::size_t* first, const std::size_t* last) {
    double relevant = 0, found = 0;
    for (const std::size_t* p = first; p != last; ++p)
      if (r.labels[*p] > 0) {
        ++relevant;
        if (p - first < k) ++found;
      }
    return found / relevant;
  });
}

double mean_reciprocal_rank(const TaskRows& r) {
  return mean_over_lists(r, [&](const std::size_t* first, const std::size_t* last) {
    for (const std::size_t* p = first; p != last; ++p)
      if (r.labels[*p] > 0) return 1.0 / static_cast<double>(p - first + 1);
    return 0.0;
  });
}

}  // namespace mtrank::eval
