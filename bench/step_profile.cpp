// Where one training step's time goes, op by op (issue 15): fits and
// featurizes a config's training data, takes warm-up steps, times STEPS steps
// plain, then records STEPS more with LibTorch's profiler and prints each
// op's self time per step (its time minus the ops it called), forward and
// backward ops alike, largest first, with the share of the profiled step.
//   build/bench/bench_step_profile CONFIG [STEPS=50] [THREADS=1] [TOP=30]
// The data is the config's data.train (relative to the config). The profiler
// adds its own cost per op, so the plain ms/step is the one to quote; the
// shares say where the time goes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "common/system.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "model/batch.h"
#include "model/model.h"
#include "train/trainer.h"

using namespace mtrank;

int main(int argc, char** argv) {
  // As mtrank itself does (cli/main.cpp): a misdetected OpenBLAS core (Prescott on some VMs) is 5x slower.
  mtrank::ensure_fast_blas(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CONFIG [STEPS=50] [THREADS=1] [TOP=30]\n", argv[0]);
    return 2;
  }
  const int steps = argc > 2 ? std::atoi(argv[2]) : 50;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 1;
  const std::size_t top = argc > 4 ? static_cast<std::size_t>(std::atoi(argv[4])) : 30;
  configure_threads(threads);
  Config config = load_config(argv[1]);
  data::Preprocessor pre(config);
  data::fit_preprocessing(pre, config.data.train);
  const data::FeaturizedData train = data::load_featurized(pre, config.data.train, true);
  torch::manual_seed(1);
  auto net = model::create_model(config.model, model::input_shape(pre));
  net->train();
  train::Trainer trainer(*net, config);
  std::vector<std::int64_t> order(static_cast<std::size_t>(train.rows()));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(1);
  std::shuffle(order.begin(), order.end(), rng);
  const std::int64_t batch = config.train.batch_size;
  const std::int64_t batches = std::max<std::int64_t>(train.rows() / batch, 1);
  model::BatchBuilder builder;
  std::int64_t next = 0;
  auto step = [&] {
    const std::int64_t begin = (next++ % batches) * batch;
    model::Batch b = builder.build(train, order.data() + begin, std::min(batch, train.rows() - begin));
    trainer.step(b, 1, next);
  };
  for (int i = 0; i < 20; ++i) step();  // warm-up: allocator and BLAS buffers
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double plain_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
  const std::string trace = "/tmp/mtrank-step-profile.json";
  {
    torch::autograd::profiler::RecordProfile guard(trace);
    for (int i = 0; i < steps; ++i) step();
  }
  // The trace: one complete event ("ph": "X") per op call, nested in time on its thread.
  std::ifstream in(trace);
  const nlohmann::json events = nlohmann::json::parse(in);
  struct Event {
    std::string name;
    double ts, dur;
    std::int64_t tid;
  };
  std::vector<Event> all;
  for (const auto& e : events)
    if (e.value("ph", "") == "X")
      all.push_back({e.value("name", "?"), e.value("ts", 0.0), e.value("dur", 0.0),
                     e.contains("tid") && e["tid"].is_number() ? e["tid"].get<std::int64_t>() : 0});
  std::sort(all.begin(), all.end(), [](const Event& a, const Event& b) {
    return a.tid != b.tid ? a.tid < b.tid : a.ts != b.ts ? a.ts < b.ts : a.dur > b.dur;
  });
  std::map<std::string, std::pair<double, std::int64_t>> self;  // name -> (self us, calls)
  std::vector<std::pair<std::size_t, double>> stack;            // (event, its children's time)
  double top_level = 0;
  auto pop = [&] {
    const Event& e = all[stack.back().first];
    auto& s = self[e.name];
    s.first += e.dur - stack.back().second;
    s.second += 1;
    stack.pop_back();
    if (!stack.empty()) stack.back().second += e.dur;
    else top_level += e.dur;
  };
  std::int64_t tid = -1;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].tid != tid) {
      while (!stack.empty()) pop();
      tid = all[i].tid;
    }
    while (!stack.empty() && all[stack.back().first].ts + all[stack.back().first].dur <= all[i].ts) pop();
    stack.emplace_back(i, 0.0);
  }
  while (!stack.empty()) pop();
  std::vector<std::pair<std::string, std::pair<double, std::int64_t>>> rows(self.begin(), self.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  double total_self = 0;
  std::int64_t calls = 0;
  for (const auto& r : rows) {
    total_self += r.second.first;
    calls += r.second.second;
  }
  std::printf("%s: batch %lld, %d threads; %.3f ms per step unprofiled, %.3f ms profiled (ops' time), "
              "%.0f op calls per step\n",
              argv[1], static_cast<long long>(batch), threads, plain_ms, top_level / 1000.0 / steps,
              static_cast<double>(calls) / steps);
  std::printf("%-44s %10s %14s %7s\n", "op", "calls/step", "self us/step", "share");
  for (std::size_t i = 0; i < std::min(top, rows.size()); ++i)
    std::printf("%-44s %10.1f %14.1f %6.1f%%\n", rows[i].first.substr(0, 44).c_str(),
                static_cast<double>(rows[i].second.second) / steps, rows[i].second.first / steps,
                100.0 * rows[i].second.first / total_self);
  return 0;
}
