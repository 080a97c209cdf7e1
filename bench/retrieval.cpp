// Retrieval (issue 12): recall@10 of each item index against exact search at
// the full width, and queries/s, one query at a time (a serving request) and
// in one batch. Two sources of items and queries:
//   generated:  --items N --dim D (default 1,000,000 x 256): a Matryoshka-like
//               table (feature j has standard deviation 1/sqrt(j+1), so the
//               leading features carry most of a score, as in a trained
//               Matryoshka model) and queries drawn the same way; speed is
//               what this measures, recall only on that assumption
//   a model:    --model DIR --data LOG: a trained sequential model's item
//               table (mtrank train) and its test users' queries (the hidden
//               state after their input window), the window's items excluded
//               as in LRURec's protocol
//   build/bench/bench_retrieval [--items 1000000] [--dim 256] [--queries 200] [--threads 1]
//                               [--shortlist 1000,4000] [--hnsw 1] [--ivf 1] [--ivf-lists 4 sqrt(N)] [--ivf-probe 16]
//                               [--model DIR --data LOG]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <omp.h>
#include <torch/torch.h>

#include "bench_util.h"
#include "common/system.h"
#include "model/sequential.h"
#include "model/sequential_dir.h"
#include "retrieve/item_index.h"
#include "serve/retriever.h"
#include "train/sequential_run.h"

using namespace mtrank;

namespace {
using bench::now;
using bench::percentile;
std::vector<std::int64_t> parse_list(const std::string& s) {
  std::vector<std::int64_t> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(std::atoll(part.c_str()));
  return out;
}

struct Source {
  retrieve::ItemTable table;
  std::vector<float> queries;
  std::int64_t count = 0;
  std::vector<std::vector<std::int64_t>> exclude;  // empty: none
  std::vector<std::int64_t> widths;                // the Matryoshka widths to try
  std::string name;
};

Source generated(std::int64_t items, std::int64_t dim, std::int64_t count) {
  Source s;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> scale(static_cast<std::size_t>(dim));
  for (std::int64_t j = 0; j < dim; ++j) scale[static_cast<std::size_t>(j)] = 1.0f / std::sqrt(static_cast<float>(j + 1));
  s.table.rows = items + 1;
  s.table.dim = dim;
  s.table.vectors.resize(static_cast<std::size_t>((items + 1) * dim));
  for (std::size_t i = 0; i < s.table.vectors.size(); ++i) s.table.vectors[i] = normal(rng) * scale[i % dim];
  s.queries.resize(static_cast<std::size_t>(count * dim));
  for (std::size_t i = 0; i < s.queries.size(); ++i) s.queries[i] = normal(rng) * scale[i % dim];
  s.count = count;
  for (std::int64_t w = 16; w < dim; w *= 2) s.widths.push_back(w);
  s.widths.push_back(dim);
  s.name = "generated " + std::to_string(items) + " x " + std::to_string(dim);
  return s;
}

Source from_model(const std::string& dir, const std::string& log, std::int64_t count) {
  model::LoadedSequentialModel m = model::load_sequential_model_dir(dir);
  std::int64_t unknown = 0;
  data::Interactions x = train::read_interactions(m.config.sequential, log);
  std::vector<std::string> names;
  for (auto& h : x.histories) {
    names.clear();
    for (std::int32_t id : h) names.push_back(x.items.external(id));
    h = data::map_items(m.items, names, &unknown);
  }
  const train::NextItemCases cases = train::test_cases(data::leave_one_out(x));
  Source s;
  s.table = serve::item_table_of(*m.net);
  const auto max_len = static_cast<int>(m.config.sequential.max_len);
  std::vector<std::vector<std::int32_t>> inputs(cases.inputs.begin(),
                                                cases.inputs.begin() + std::min<std::size_t>(cases.inputs.size(), count));
  s.queries = serve::queries_of(*m.net, inputs, max_len, 256, &s.table);
  s.count = static_cast<std::int64_t>(inputs.size());
  for (const auto& h : inputs) {
    std::vector<std::int64_t> window;
    for (std::int32_t id : data::input_window(h, max_len))
      if (id > 0) window.push_back(id);
    s.exclude.push_back(window);
  }
  s.widths = m.net->options().widths;
  s.name = dir + " (" + std::to_string(s.table.rows - 1) + " items x " + std::to_string(s.table.dim) + ")";
  return s;
}

struct Timing {
  double p50_ms, p99_ms, single_qps, batch_qps;
};

Timing time_index(const retrieve::ItemIndex& index, const Source& s, std::int64_t k, std::vector<retrieve::Hits>* found) {
  const auto* exclude = s.exclude.empty() ? nullptr : &s.exclude;
  std::vector<double> times;
  found->assign(static_cast<std::size_t>(s.count), {});
  double total = 0;
  for (std::int64_t q = 0; q < s.count; ++q) {
    std::vector<std::vector<std::int64_t>> one;
    if (exclude) one.push_back((*exclude)[static_cast<std::size_t>(q)]);
    const double t0 = now();
    auto hits = index.search(s.queries.data() + q * s.table.dim, 1, s.table.dim, k, exclude ? &one : nullptr);
    const double t = now() - t0;
    times.push_back(t);
    total += t;
    (*found)[static_cast<std::size_t>(q)] = std::move(hits[0]);
  }
  const double t0 = now();
  const auto batch = index.search(s.queries.data(), s.count, s.table.dim, k, exclude);
  const double batch_time = now() - t0;
  if (batch.size() != static_cast<std::size_t>(s.count)) std::exit(1);
  return {percentile(times, 0.5) * 1e3, percentile(times, 0.99) * 1e3, static_cast<double>(s.count) / total,
          static_cast<double>(s.count) / batch_time};
}

}  // namespace

int main(int argc, char** argv) {
  ensure_fast_blas(argc, argv);
  int threads = 1, ivf_lists = 0, ivf_probe = 16;
  bool hnsw = true, ivf = true;
  std::int64_t items = 1000000, dim = 256, count = 200, k = 10;
  std::string model_dir, log;
  std::vector<std::int64_t> shortlists = {1000, 4000};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--items") items = std::atoll(v.c_str());
    else if (a == "--dim") dim = std::atoll(v.c_str());
    else if (a == "--queries") count = std::atoll(v.c_str());
    else if (a == "--shortlist") shortlists = parse_list(v);
    else if (a == "--hnsw") hnsw = std::atoi(v.c_str()) != 0;
    else if (a == "--ivf") ivf = std::atoi(v.c_str()) != 0;
    else if (a == "--ivf-lists") ivf_lists = std::atoi(v.c_str());
    else if (a == "--ivf-probe") ivf_probe = std::atoi(v.c_str());
    else if (a == "--model") model_dir = v;
    else if (a == "--data") log = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  configure_threads(threads);
  omp_set_num_threads(threads);  // faiss's own parallel loops
  const double load0 = now();
  const Source s = model_dir.empty() ? generated(items, dim, count) : from_model(model_dir, log, count);
  std::printf("%s, %lld queries, k %lld, %d threads (made in %.1f s)\n", s.name.c_str(), static_cast<long long>(s.count),
              static_cast<long long>(k), threads, now() - load0);
  std::printf("%-64s %9s %10s %9s %9s %11s %11s %8s\n", "method", "build s", "recall@10", "p50 ms", "p99 ms",
              "1-query q/s", "batch q/s", "speedup");
  const std::int64_t D = s.table.dim;
  std::vector<retrieve::Hits> truth, found;
  double exact_qps = 0;
  const auto report = [&](const std::string& kind, const retrieve::IndexOptions& o) {
    const double b0 = now();
    const auto index = retrieve::make_index(kind, s.table, o);
    const double build = now() - b0;
    const Timing t = time_index(*index, s, k, &found);
    const bool is_truth = truth.empty();
    if (is_truth) {
      truth = found;
      exact_qps = t.single_qps;
    }
    std::printf("%-64s %9.1f %10.4f %9.3f %9.3f %11.1f %11.1f %7.1fx\n", index->describe().c_str(), build,
                retrieve::recall_at(found, truth, static_cast<std::size_t>(k)), t.p50_ms, t.p99_ms, t.single_qps,
                t.batch_qps, t.single_qps / exact_qps);
    std::fflush(stdout);
  };
  retrieve::IndexOptions o;
  report("exact", o);  // the truth: every item at the full width
  for (std::int64_t w : s.widths)
    if (w < D) {
      o.width = w;
      report("exact", o);
    }
  o.width = 0;
  // Funnels: a shortlist at a small width, then straight to the full width
  // (two stages), or through every wider width, each stage keeping a quarter.
  for (std::size_t first = 0; first + 1 < s.widths.size() && first < 2; ++first)
    for (std::int64_t shortlist : shortlists) {
      if (shortlist >= s.table.rows - 1) continue;
      o.funnel_first = "exact";
      o.funnel_widths = {s.widths[first], D};
      o.funnel_keep = {shortlist};
      report("funnel", o);
      if (s.widths.size() - first <= 2) continue;
      o.funnel_widths.assign(s.widths.begin() + static_cast<std::ptrdiff_t>(first), s.widths.end());
      o.funnel_keep.clear();
      std::int64_t keep = shortlist;
      for (std::size_t i = 0; i + 1 < o.funnel_widths.size(); ++i, keep = std::max(k, keep / 4)) o.funnel_keep.push_back(keep);
      report("funnel", o);
    }
  o.funnel_widths.clear();
  o.funnel_keep.clear();
  o.ivf_lists = ivf_lists;
  o.ivf_probe = ivf_probe;
  if (ivf) report("ivf", o);
  if (hnsw) {
    // HNSW at the smallest width as a two-stage funnel's first stage (a
    // full-width graph of a large catalog takes long to build on two cores).
    o.funnel_widths = {s.widths.front(), D};
    o.funnel_keep = {shortlists.front()};
    o.funnel_first = "hnsw";
    o.hnsw_ef_search = static_cast<int>(shortlists.front());
    report("funnel", o);
  }
  return 0;
}
