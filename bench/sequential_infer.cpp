// Inference of a sequential model (issue 9): scoring every item for one
// user at each Matryoshka width, with the width-s model alone
// (model::extract_width, what `mtrank export` writes), p50 and p99 over
// repeated requests; and one LRU layer's one-step state update per new
// event. LRURec's ML-1M shape by default (d 64, widths 8/16/32/64, 2 blocks,
// max_len 200, 3,416 items); random weights (the time does not depend on them).
//   build/bench/bench_sequential_infer [--threads 1] [--items 3416] [--max-len 200] [--reps 200]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/system.h"
#include "model/lru.h"
#include "model/sequential.h"

using namespace mtrank;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}
}  // namespace

int main(int argc, char** argv) {
  ensure_fast_blas(argc, argv);
  int threads = 1, reps = 200;
  std::int64_t items = 3416, L = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--items") items = std::atoll(v.c_str());
    else if (a == "--max-len") L = std::atoll(v.c_str());
    else if (a == "--reps") reps = std::atoi(v.c_str());
  }
  configure_threads(threads);
  torch::manual_seed(1);
  model::SequentialOptions o;
  o.num_items = items;
  o.widths = {8, 16, 32, 64};
  model::SequentialRecommender full(o);
  full->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor tokens = torch::randint(1, items + 1, {1, L}, torch::kInt64);
  std::printf("one user, window %lld, %lld items, %d threads: forward of the window, then every item's score\n",
              static_cast<long long>(L), static_cast<long long>(items), threads);
  std::printf("%-6s %12s %10s %10s %14s\n", "width", "parameters", "p50 ms", "p99 ms", "scoring MFLOP");
  for (std::int64_t w : o.widths) {
    model::SequentialRecommender net = model::extract_width(*full, w);
    std::int64_t parameters = 0;
    for (const auto& p : net->parameters()) parameters += p.numel();
    std::vector<double> times;
    for (int r = 0; r < reps + 10; ++r) {
      const double t0 = now();
      const torch::Tensor scores = net->scores_by_width(net->forward(tokens).select(1, L - 1));
      const torch::Tensor best = std::get<1>(scores[-1].topk(10));
      if (r >= 10) times.push_back(now() - t0);
      if (best.numel() != 10) return 1;
    }
    std::printf("%-6lld %12lld %10.3f %10.3f %14.2f\n", static_cast<long long>(w), static_cast<long long>(parameters),
                percentile(times, 0.5) * 1e3, percentile(times, 0.99) * 1e3, 2.0 * (items + 1) * w / 1e6);
  }
  // One LRU layer's state update for a new event (LRURec: state 2d = 128), batch of one user.
  model::LruLayer layer(64, 128, 0.8, 0.99);
  torch::Tensor h = torch::zeros({1, 128}, torch::kComplexFloat);
  const torch::Tensor x = torch::randn({1, 64});
  std::vector<double> times;
  for (int r = 0; r < reps * 10 + 100; ++r) {
    const double t0 = now();
    h = layer->step(h, x);
    const torch::Tensor y = layer->output(h);
    if (r >= 100) times.push_back(now() - t0);
    if (y.numel() != 64) return 1;
  }
  std::printf("one-step LRU update and output (d 64, state 128): p50 %.1f us, p99 %.1f us (%.3f MFLOP)\n",
              percentile(times, 0.5) * 1e6, percentile(times, 0.99) * 1e6, (2.0 * 2 * 64 * 128 * 2) / 1e6);
  return 0;
}
