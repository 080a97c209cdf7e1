// Where a sequential training step's time goes (issue 9): LRURec's ML-1M
// shape (batch 128, max_len 200, d 64, 2 blocks, 3,416 items), with random
// tokens and weights (the time does not depend on them), per phase:
// forward of the blocks, the loss (matryoshka_cross_entropy), backward, and
// the optimizer step; and the loss's FLOPs against measured sgemm.
//   build/bench/bench_sequential_step [--threads N] [--widths 8,16,32,64] [--block lrurec] [--steps 5]
//     [--batch 128] [--max-len 200] [--items 3416] [--positions P] [--sampled S]
// --positions: labelled positions a step (default every one; Beauty's short
// histories label about 770 of 128 x 50); --sampled S: the sampled softmax
// over the step's labels and S popularity draws (train/candidate_sampler.h)
// instead of the full one.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/system.h"
#include "model/matryoshka.h"
#include "model/sequential.h"
#include "train/candidate_sampler.h"

using namespace mtrank;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

int main(int argc, char** argv) {
  ensure_fast_blas(argc, argv);
  int threads = 1, steps = 5;
  std::int64_t batch = 128, L = 200, items = 3416;
  std::vector<std::int64_t> widths = {8, 16, 32, 64};
  std::string block = "lrurec";
  std::int64_t positions = -1, sampled = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--steps") steps = std::atoi(v.c_str());
    else if (a == "--batch") batch = std::atoll(v.c_str());
    else if (a == "--max-len") L = std::atoll(v.c_str());
    else if (a == "--items") items = std::atoll(v.c_str());
    else if (a == "--block") block = v;
    else if (a == "--positions") positions = std::atoll(v.c_str());
    else if (a == "--sampled") sampled = std::atoll(v.c_str());
    else if (a == "--widths") {
      widths.clear();
      for (char* p = std::strtok(const_cast<char*>(v.c_str()), ","); p; p = std::strtok(nullptr, ","))
        widths.push_back(std::atoll(p));
    }
  }
  configure_threads(threads);
  torch::manual_seed(1);
  model::SequentialOptions o;
  o.num_items = items;
  o.widths = widths;
  o.block = model::sequential_block(block);
  model::SequentialRecommender net(o);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.01));
  const torch::Tensor tokens = torch::randint(1, items + 1, {batch, L}, torch::kInt64);
  if (positions < 0 || positions > batch * L) positions = batch * L;
  const torch::Tensor labels = torch::randint(1, items + 1, {positions}, torch::kInt64);
  // Popularity: Zipf-like (item i drawn about 1 / i as often), as logs are.
  const torch::Tensor popular = (torch::rand({8 * positions}, torch::kDouble) * std::log(double(items))).exp().floor()
                                    .clamp(1, static_cast<double>(items)).to(torch::kInt64);
  const train::CandidateSampler sampler(popular.view({1, -1}), items, std::max<std::int64_t>(sampled, 1));
  double t_fwd = 0, t_loss = 0, t_bwd = 0, t_opt = 0, candidates = 0;
  for (int s = 0; s <= steps; ++s) {  // step 0 warms up
    const double t0 = now();
    const torch::Tensor hidden = net->forward(tokens).reshape({-1, widths.back()}).slice(0, 0, positions);
    const double t1 = now();
    torch::Tensor loss;
    if (sampled > 0) {
      const auto [cand, shift] = sampler.draw(labels.view({1, -1}));
      candidates += static_cast<double>(cand.numel()) / (steps + 1);
      loss = model::matryoshka_cross_entropy(hidden, net->items->weight.index_select(0, cand), shift,
                                             torch::searchsorted(cand, labels), widths);
    } else {
      loss = model::matryoshka_cross_entropy(hidden, net->items->weight, torch::Tensor(), labels, widths);
    }
    const double t2 = now();
    opt.zero_grad();
    loss.backward();
    const double t3 = now();
    opt.step();
    const double t4 = now();
    if (s == 0) continue;
    t_fwd += t1 - t0, t_loss += t2 - t1, t_bwd += t3 - t2, t_opt += t4 - t3;
  }
  const double total = (t_fwd + t_loss + t_bwd + t_opt) / steps;
  // The loss: one full-width product forward and two backward (grad H, grad E).
  const double columns = sampled > 0 ? candidates : static_cast<double>(items + 1);  // mean candidates a step
  const double loss_gflop = 3.0 * 2.0 * positions * columns * widths.back() / 1e9;
  std::printf("block %s, widths", block.c_str());
  for (auto w : widths) std::printf(" %lld", static_cast<long long>(w));
  std::printf(", batch %lld x %lld (%lld labelled), %lld items, %d threads, %s softmax", static_cast<long long>(batch),
              static_cast<long long>(L), static_cast<long long>(positions), static_cast<long long>(items), threads,
              sampled > 0 ? "sampled" : "full");
  if (sampled > 0) std::printf(" (%lld draws, %.0f candidates a step)", static_cast<long long>(sampled), candidates);
  std::printf("\n");
  std::printf("per step: %.3f s (%.2f steps/s): blocks forward %.3f, loss (fwd+grads) %.3f (%.1f GFLOP, %.1f GFLOP/s), "
              "backward of the blocks %.3f, optimizer %.3f\n",
              total, 1.0 / total, t_fwd / steps, t_loss / steps, loss_gflop, loss_gflop / (t_loss / steps),
              t_bwd / steps, t_opt / steps);
  return 0;
}
