// The hand-written kernels (issue 15) against the LibTorch formulation they
// replace (model::ReferenceKernels): the same values and gradients, and every
// model family trains to the same parameters both ways.
#include <algorithm>
#include <optional>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "config/config.h"
#include "config/model_families.h"
#include "model/blocks.h"
#include "model/model.h"
#include "torch_test_util.h"
#include "train/thread_governor.h"
#include "train/trainer.h"

using namespace mtrank;
using namespace mtrank::testing;

namespace {

// Values and gradients of mix_experts, fused and reference, for one input.
struct MixResult {
  torch::Tensor out, grad_gates, grad_experts;
};

MixResult run_mix(const torch::Tensor& gates0, const torch::Tensor& experts0, const torch::Tensor& selection,
                  const torch::Tensor& upstream, bool reference) {
  torch::Tensor gates = gates0.detach().clone().requires_grad_(true);
  torch::Tensor experts = experts0.detach().clone().requires_grad_(true);
  torch::Tensor out;
  {
    std::optional<model::ReferenceKernels> guard;
    if (reference) guard.emplace();
    out = model::mix_experts(gates, experts, selection);
  }
  (out * upstream).sum().backward();
  return {out.detach(), gates.grad(), experts.grad()};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << what << ": max difference " << (a - b).abs().max().item<float>();
}


// linear_relu's values and its input's, weight's and bias's gradients, fused or reference.
std::vector<torch::Tensor> run_linear_relu(const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0,
                                           const torch::Tensor& upstream, bool reference) {
  torch::Tensor x = x0.detach().clone().requires_grad_(true), w = w0.clone().requires_grad_(true),
                b = b0.clone().requires_grad_(true);
  torch::Tensor y;
  {
    std::optional<model::ReferenceKernels> guard;
    if (reference) guard.emplace();
    y = model::linear_relu(x, w, b);
  }
  (y * upstream).sum().backward();
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}

// The census MMoE's sizes: 8 experts of 16, towers of 8, 2 tasks.
Config census_sized_mmoe() {
  Config c;
  c.model = small_model("mmoe");
  c.model.set("num_experts", std::int64_t{8});
  c.model.set("expert_hidden", std::vector<std::int64_t>{16});
  c.model.set("tower_hidden", std::vector<std::int64_t>{8});
  c.tasks.resize(2);
  return c;
}

}  // namespace

TEST(MixExperts, EqualsTheBatchedMatmulInValueAndGradient) {
  torch::manual_seed(3);
  const std::int64_t B = 37, E = 5, H = 6;
  // Experts as one GEMM writes them ([B, E*H], read as [E, B, H]) and as a grouped MLP does ([E, B, H]).
  const torch::Tensor strided = torch::randn({B, E, H}).transpose(0, 1), dense = torch::randn({E, B, H});
  ASSERT_FALSE(strided.is_contiguous());
  struct Case {
    std::int64_t G, K;
    torch::Tensor selection;
  };
  const std::vector<Case> cases = {
      {3, E, torch::Tensor()},                                          // MMoE: every gate over every expert
      {1, E, torch::Tensor()},                                          // PLE's shared gate
      {2, 3, torch::tensor({{0, 1, 4}, {2, 3, 4}}, torch::kLong)},      // CGC: own experts and the shared one
      {2, 2, torch::tensor({{4, 4}, {0, 0}}, torch::kLong)},            // an expert named twice adds up
  };
  for (const auto& experts : {strided, dense})
    for (const auto& c : cases) {
      const torch::Tensor gates = torch::softmax(torch::randn({B, c.G, c.K}), -1);
      const torch::Tensor upstream = torch::randn({c.G, B, H});
      const MixResult fused = run_mix(gates, experts, c.selection, upstream, false);
      const MixResult reference = run_mix(gates, experts, c.selection, upstream, true);
      const std::string what = "G " + std::to_string(c.G) + ", K " + std::to_string(c.K);
      expect_close(fused.out, reference.out, what + " values");
      expect_close(fused.grad_gates, reference.grad_gates, what + " gates' gradient");
      expect_close(fused.grad_experts, reference.grad_experts, what + " experts' gradient");
    }
  // By hand: B = 1, two experts [1, 2] and [3, 4], gate weights 0.25 / 0.75 -> [2.5, 3.5].
  const MixResult hand = run_mix(torch::tensor({{{0.25f, 0.75f}}}), torch::tensor({{{1.0f, 2.0f}}, {{3.0f, 4.0f}}}),
                                 torch::Tensor(), torch::tensor({{{1.0f, 10.0f}}}), false);
  EXPECT_TRUE(torch::equal(hand.out, torch::tensor({{{2.5f, 3.5f}}})));
  EXPECT_TRUE(torch::equal(hand.grad_gates, torch::tensor({{{21.0f, 43.0f}}})));  // 1*1 + 10*2, 1*3 + 10*4
  EXPECT_TRUE(torch::equal(hand.grad_experts, torch::tensor({{{0.25f, 2.5f}}, {{0.75f, 7.5f}}})));
}

TEST(MixExperts, RefusesASelectionOutsideTheExperts) {
  const torch::Tensor gates = torch::ones({2, 1, 2}), experts = torch::ones({3, 2, 4});
  EXPECT_THROW(model::mix_experts(gates, experts, torch::tensor({{0, 3}}, torch::kLong)), c10::Error);
  EXPECT_THROW(model::mix_experts(gates, experts), c10::Error);  // K 2 without a selection needs 2 experts
}

TEST(LinearRelu, EqualsAddmmThenReluInValueAndGradient) {
  torch::manual_seed(5);
  // x dense and as a strided view ([in, B] transposed); about half the pre-activations are negative.
  for (const torch::Tensor& x0 : {torch::randn({37, 9}), torch::randn({9, 37}).t()}) {
    const torch::Tensor w0 = torch::randn({9, 21}), b0 = torch::randn({21}), upstream = torch::randn({37, 21});
    const std::vector<std::vector<torch::Tensor>> r = {run_linear_relu(x0, w0, b0, upstream, false),
                                                        run_linear_relu(x0, w0, b0, upstream, true)};
    const char* names[] = {"values", "input's gradient", "weight's gradient", "bias's gradient"};
    for (int i = 0; i < 4; ++i) expect_close(r[0][i], r[1][i], names[i]);
    EXPECT_GT((r[0][0] == 0).sum().item<int>(), 37 * 21 / 4);  // the ReLU cut a good share
    torch::NoGradGuard no_grad;  // inference: one product instead of chunks, the same values
    expect_close(model::linear_relu(x0, w0, b0), r[0][0], "values without autograd");
  }
}

// One-wide inputs and outputs: x.t() and w.t() are then [1, K] or [K, 1]
// views whose strides pass both of BLAS's layouts (a wrong lead once made
// OpenBLAS refuse the call and left the product uninitialized).
TEST(LinearRelu, OneWideInputsAndOutputs) {
  torch::manual_seed(6);
  for (auto [in, out] : {std::pair<std::int64_t, std::int64_t>{1, 21}, {9, 1}, {1, 1}}) {
    const torch::Tensor x0 = torch::randn({37, in}), w0 = torch::randn({in, out}), b0 = torch::randn({out}),
                        upstream = torch::randn({37, out});
    const std::vector<std::vector<torch::Tensor>> r = {run_linear_relu(x0, w0, b0, upstream, false),
                                                        run_linear_relu(x0, w0, b0, upstream, true)};
    for (int i = 0; i < 4; ++i) expect_close(r[0][i], r[1][i], "in " + std::to_string(in) + ", out " + std::to_string(out) + ", part " + std::to_string(i));
  }
}

class EveryFamily : public ::testing::TestWithParam<std::string> {};

// Five training steps (Adam, clipping, the sparse rows) with the fused kernels
// and with LibTorch's: the same losses and parameters to float rounding.
TEST_P(EveryFamily, TrainsAsTheLibTorchFormulation) {
  Config c;
  c.model = small_model(GetParam());
  set_where_taken(c.model, "specific_experts", std::int64_t{2});
  set_where_taken(c.model, "shared_experts", std::int64_t{1});
  set_where_taken(c.model, "levels", std::int64_t{2});
  c.tasks.resize(2);
  c.train.clip_grad_norm = 0.5;
  at::set_num_threads(1);
  RandomBatch rb(64);
  std::vector<std::vector<torch::Tensor>> params(2);
  std::vector<std::vector<double>> losses(2);
  for (int reference = 0; reference < 2; ++reference) {
    std::optional<model::ReferenceKernels> guard;
    if (reference) guard.emplace();
    torch::manual_seed(4);
    auto net = model::create_model(c.model, small_shape());
    train::Trainer trainer(*net, c);
    for (int i = 0; i < 5; ++i) losses[reference].push_back(trainer.step(rb.batch, 1, i + 1));
    for (const auto& p : net->parameters()) params[reference].push_back(p.detach().clone());
  }
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(losses[0][i], losses[1][i], 1e-6) << "step " << i + 1;
  ASSERT_EQ(params[0].size(), params[1].size());
  for (std::size_t i = 0; i < params[0].size(); ++i) expect_close(params[0][i], params[1][i], "parameter " + std::to_string(i));
}

INSTANTIATE_TEST_SUITE_P(Fused, EveryFamily, ::testing::ValuesIn(model_family_names()),
                         [](const auto& info) { return info.param; });

// The census MMoE's sizes (8 experts of 16, towers of 8, batch 1024): every
// op of a training step gives the same bits at 1 and at 2 threads (products
// in chunks set by their shapes, hand-written kernels on one thread at this
// size, ATen's reductions below their parallel grain).
TEST(FusedKernels, CensusSizedTrainingIsTheSameAtOneAndTwoThreads) {
  Config c = census_sized_mmoe();
  RandomBatch rb(1024);
  std::vector<std::vector<torch::Tensor>> params(2);
  std::vector<std::vector<double>> losses(2);
  for (int threads = 1; threads <= 2; ++threads) {
    at::set_num_threads(threads);
    torch::manual_seed(4);
    auto net = model::create_model(c.model, small_shape());
    train::Trainer trainer(*net, c);
    for (int i = 0; i < 3; ++i) losses[threads - 1].push_back(trainer.step(rb.batch, 1, i + 1));
    for (const auto& p : net->parameters()) params[threads - 1].push_back(p.detach().clone());
  }
  at::set_num_threads(1);
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(params[0].size(), params[1].size());
  for (std::size_t i = 0; i < params[0].size(); ++i) EXPECT_TRUE(torch::equal(params[0][i], params[1][i])) << "parameter " << i;
}

TEST(ThreadGovernor, ProbesBothCountsEachPeriodAndRunsTheFaster) {
  using train::ThreadGovernor;
  ThreadGovernor g(2);
  for (std::int64_t i = 0; i < ThreadGovernor::kWarmup; ++i) {  // warm-up: one thread, not timed
    EXPECT_EQ(g.next(), 1);
    g.took(100.0);
  }
  auto period = [&](double one_thread_s, double two_threads_s) {
    std::vector<int> used;
    for (std::int64_t i = 0; i < ThreadGovernor::kPeriod; ++i) {
      used.push_back(g.next());
      g.took(used.back() == 1 ? one_thread_s : two_threads_s);
    }
    return used;
  };
  const auto count = [](const std::vector<int>& v, int n) { return std::count(v.begin(), v.end(), n); };
  constexpr int P = ThreadGovernor::kProbe;
  // Idle: 2 threads faster -> after the probe steps (P on 1, P on 2), all on 2.
  auto used = period(1.0, 0.6);
  EXPECT_EQ(std::vector<int>(used.begin(), used.begin() + 2 * P), [] {
    std::vector<int> v(2 * P, 2);
    std::fill(v.begin(), v.begin() + P, 1);
    return v;
  }());
  EXPECT_EQ(count(used, 1), P);
  // Loaded: 2 threads slower -> the rest of the period on 1. Their probe
  // stops once it took longer than the whole 1-thread probe (8 timed steps
  // of 1.0): the first untimed step, then 5 timed ones of 1.9 (9.5 > 8).
  used = period(1.0, 1.9);
  EXPECT_EQ(count(used, 2), 6);
  EXPECT_EQ(g.steps_on_one(), ThreadGovernor::kWarmup + P + ThreadGovernor::kPeriod - 6);
  EXPECT_EQ(g.steps_on_all(), ThreadGovernor::kPeriod - P + 6);
  // Over twice as slow (a lost time slice): the probe stops after its first step.
  used = period(1.0, 2.5);
  EXPECT_EQ(count(used, 2), 1);
  // The choice held twice running: the next period is twice as long, so the
  // probes come ever less often on a steady machine.
  ThreadGovernor steady(2);
  for (std::int64_t i = 0; i < ThreadGovernor::kWarmup; ++i) steady.took(1.0);
  std::vector<std::int64_t> probe_starts;
  for (std::int64_t i = 0; i < 8 * ThreadGovernor::kPeriod; ++i) {
    const int n = steady.next();
    if (n == 1 && (probe_starts.empty() || probe_starts.back() != i - 1)) probe_starts.push_back(i);
    if (n == 1 && !probe_starts.empty() && probe_starts.back() == i - 1) probe_starts.back() = i;  // extend the run
    steady.took(n == 1 ? 1.0 : 0.5);
  }
  ASSERT_GE(probe_starts.size(), 3u);
  // Probes (runs of 1-thread steps) end at P - 1, then after periods of 256 (held at first: 512), 1024, ...
  EXPECT_EQ(probe_starts[0], P - 1);
  EXPECT_EQ(probe_starts[1], ThreadGovernor::kPeriod + P - 1);
  EXPECT_EQ(probe_starts[2], ThreadGovernor::kPeriod + 2 * ThreadGovernor::kPeriod + P - 1);
  // One thread only: never probes.
  ThreadGovernor single(1);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(single.next(), 1);
    single.took(1.0);
  }
}

// train.adapt_threads changes the speed, never the model: a census-sized MMoE
// run with it equals the run on 2 threads without it, bit for bit.
TEST(ThreadGovernor, AdaptedRunEqualsTheFixedThreadRun) {
  Config c = census_sized_mmoe();
  c.train.batch_size = 256;
  c.train.epochs = 3;  // 48 steps: the warm-up, then a probe on 1 and on 2 threads
  c.train.clip_grad_norm = 0.5;  // its norm's sums are part of what must come out the same
  RandomBatch rb(4096);
  std::vector<std::vector<torch::Tensor>> params(2);
  std::vector<train::TrainReport> reports;
  for (int adapt = 0; adapt < 2; ++adapt) {
    at::set_num_threads(2);
    torch::manual_seed(4);
    auto net = model::create_model(c.model, small_shape());
    train::Trainer trainer(*net, c);
    train::TrainOptions o;
    o.adapt_threads = adapt == 1;
    reports.push_back(trainer.run(rb.d, nullptr, o));
    for (const auto& p : net->parameters()) params[adapt].push_back(p.detach().clone());
  }
  at::set_num_threads(1);
  EXPECT_FALSE(reports[0].threads_adapted);
  EXPECT_TRUE(reports[1].threads_adapted);
  EXPECT_EQ(reports[1].steps_on_one_thread + reports[1].steps_on_all_threads, 3 * 4096 / 256);
  EXPECT_GE(reports[1].steps_on_one_thread, train::ThreadGovernor::kWarmup);  // the warm-up
  EXPECT_GE(reports[1].steps_on_all_threads, 1);                               // a probe on 2
  ASSERT_EQ(params[0].size(), params[1].size());
  for (std::size_t i = 0; i < params[0].size(); ++i) EXPECT_TRUE(torch::equal(params[0][i], params[1][i])) << "parameter " << i;
}
