// Inference of a sequential model (issue 9): scoring every item for one
// user at each Matryoshka width, with the width-s model alone
// (model::extract_width, what `mtrank export` writes), p50 and p99 over
// repeated requests; and the whole model's one-step state update per new
// event, alone and with the scores. LRURec's ML-1M shape by default (d 64, widths 8/16/32/64, 2 blocks,
// max_len 200, 3,416 items); random weights (the time does not depend on them).
//   build/bench/bench_sequential_infer [--threads 1] [--items 3416] [--max-len 200] [--reps 200]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "bench_util.h"
#include "common/system.h"
#include "model/sequential.h"

using namespace mtrank;

namespace {
using bench::now;
using bench::percentile;
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
  // A new event for a live user (issue 12): the whole model's one-step update
  // (every block's LRU state, LayerNorms and FFN at the new position), alone
  // and followed by every item's score and the top 10, at each width.
  std::printf("\none new event for one user: the whole model's one-step update (%d blocks)\n", o.blocks);
  std::printf("%-6s %14s %14s %16s %16s\n", "width", "step p50 us", "step p99 us", "+ scores p50 us", "step MFLOP");
  for (std::int64_t w : o.widths) {
    model::SequentialRecommender net = model::extract_width(*full, w);
    const torch::Tensor table = net->item_table();
    model::SequentialState state = net->initial_state(1);
    std::vector<double> step_times, request_times;
    for (int r = 0; r < reps * 5 + 100; ++r) {
      const torch::Tensor item = torch::randint(1, items + 1, {1}, torch::kInt64);
      const double t0 = now();
      const torch::Tensor hidden = net->step(state, item, table);
      const double t1 = now();
      const torch::Tensor best = std::get<1>(net->scores_by_width(hidden, table)[-1].topk(10));
      const double t2 = now();
      if (r >= 100) {
        step_times.push_back(t1 - t0);
        request_times.push_back(t2 - t0);
      }
      if (best.numel() != 10) return 1;
    }
    // LRURec's block a position: B and C (complex, state 2w) 16 w^2, the FFN of 4w 16 w^2.
    std::printf("%-6lld %14.1f %14.1f %16.1f %16.3f\n", static_cast<long long>(w), percentile(step_times, 0.5) * 1e6,
                percentile(step_times, 0.99) * 1e6, percentile(request_times, 0.5) * 1e6,
                o.blocks * 32.0 * static_cast<double>(w * w) / 1e6);
  }
  return 0;
}
