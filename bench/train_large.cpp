// bench_train_large: training and scoring throughput of a large MMoE against
// the sgemm roofline measured in the same process.
//   build/bench/bench_train_large [threads=1] [batch=1024] [rows=65536] [serving chunk=128]
// Model (the model-zoo issue's "large configuration"): 26 categorical fields
// with 100,000-row tables of dim 16, 13 numeric features, MMoE with 8 experts
// 429-256-128, towers [64], 2 binary tasks. Data is random (ids uniform),
// generated in memory: this measures the model and optimizer, not ingest.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include <torch/torch.h>

#include "common/system.h"
#include "config/config.h"
#include "data/dataset.h"
#include "model/batch.h"
#include "model/model.h"
#include "train/trainer.h"

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double sgemm_gflops(int n) {
  torch::InferenceMode guard;
  torch::Tensor a = torch::rand({n, n}), b = torch::rand({n, n}), c = torch::empty({n, n});
  torch::mm_out(c, a, b);
  int reps = 0;
  const double t0 = now();
  while (now() - t0 < 2.0 || reps < 3) {
    torch::mm_out(c, a, b);
    ++reps;
  }
  return 2.0 * n * n * static_cast<double>(n) * reps / (now() - t0) / 1e9;
}
}  // namespace

int main(int argc, char** argv) {
  // As mtrank itself does (cli/main.cpp): a misdetected OpenBLAS core (Prescott on some VMs) is 5x slower.
  mtrank::ensure_fast_blas(argc, argv);
  const int threads = argc > 1 ? std::stoi(argv[1]) : 1;
  const std::int64_t batch = argc > 2 ? std::stoll(argv[2]) : 1024;
  const std::int64_t rows = argc > 3 ? std::stoll(argv[3]) : 65536;
  constexpr int kFields = 26, kDense = 13, kTasks = 2, kDim = 16;
  constexpr std::int64_t kVocab = 100000;
  mtrank::configure_threads(threads);
  torch::manual_seed(0);

  mtrank::data::FeaturizedData d(kFields, 0, kDense, kTasks);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  d.reserve(rows);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int f = 0; f < kFields; ++f) d.categorical.push_back(f * kVocab + static_cast<std::int64_t>(rng() % kVocab));
    for (int k = 0; k < kDense; ++k) d.dense.push_back(normal(rng));
    for (int t = 0; t < kTasks; ++t) {
      d.labels.push_back(static_cast<float>(rng() & 1));
      d.mask.push_back(1);
    }
    d.commit_row();
  }

  mtrank::Config config;
  config.tasks.resize(kTasks);
  config.tasks[0].name = "click";
  config.tasks[1].name = "like";
  config.model = mtrank::model_defaults("mmoe");
  config.model.set("embedding_dim", std::int64_t{kDim});
  config.model.set("num_experts", std::int64_t{8});
  config.model.set("expert_hidden", std::vector<std::int64_t>{256, 128});
  config.model.set("tower_hidden", std::vector<std::int64_t>{64});
  config.train.batch_size = batch;
  config.train.epochs = 1;
  config.train.eval_batch_size = batch;
  const mtrank::model::InputShape shape{kFields * kVocab, kFields, 0, kDense, kTasks, {}};
  auto net = mtrank::model::create_model(config.model, shape);
  std::int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();

  // Multiply-adds per row, forward: experts, gates, towers.
  const double in = kFields * kDim + kDense;
  const double macs = 8 * (in * 256 + 256 * 128) + in * 8 * kTasks + 8 * 128 * kTasks + kTasks * (128 * 64 + 64);
  const double forward_flop = 2 * macs, train_flop = 3 * forward_flop;  // backward = 2x forward

  const double gflops = sgemm_gflops(1024);
  // Warm-up epoch on a slice, then the measured one.
  mtrank::train::train_model(*net, config, d.slice(0, std::min<std::int64_t>(rows, 4 * batch)), nullptr, {});
  const double t0 = now();
  mtrank::train::train_model(*net, config, d, nullptr, {});
  const double train_s = now() - t0;
  const double t1 = now();
  mtrank::train::predict(*net, config, d);
  const double predict_s = now() - t1;

  const double train_rate = rows / train_s, predict_rate = rows / predict_s;
  std::printf("large MMoE: %.1fM parameters, %.2f MFLOP/row forward, %.2f MFLOP/row training; %d thread%s, batch %lld\n",
              params / 1e6, forward_flop / 1e6, train_flop / 1e6, threads, threads == 1 ? "" : "s",
              static_cast<long long>(batch));
  std::printf("sgemm 1024^3 in this process: %.1f GFLOP/s\n", gflops);
  std::printf("%-10s %12s %12s %12s %10s\n", "", "rows/s", "GFLOP/s", "roofline", "of roof");
  std::printf("%-10s %12.0f %12.1f %12.0f %9.0f%%\n", "training", train_rate, train_rate * train_flop / 1e9,
              gflops * 1e9 / train_flop, 100 * train_rate * train_flop / 1e9 / gflops);
  std::printf("%-10s %12.0f %12.1f %12.0f %9.0f%%\n", "scoring", predict_rate, predict_rate * forward_flop / 1e9,
              gflops * 1e9 / forward_flop, 100 * predict_rate * forward_flop / 1e9 / gflops);

  // Serving-sized requests: the model part of Ranker::rank_json, the same
  // function: rows copied in chunks of at most `chunk`, scored in parallel on
  // the pool (one chunk on 1 thread). Parsing and featurizing are measured on
  // census by bench_serve_latency. p50 and p99 over 300 requests.
  const std::int64_t chunk = argc > 4 ? std::stoll(argv[4]) : 128;
  std::printf("\nscoring one request (N candidates, chunks of at most %lld):\n%10s %10s %10s %12s %9s\n",
              static_cast<long long>(chunk), "candidates", "p50 ms", "p99 ms", "roofline ms", "of roof");
  net->eval();
  for (std::int64_t n : {50, 200, 1000}) {
    std::vector<double> ms;
    std::vector<float> values(static_cast<std::size_t>(n * kTasks));
    for (int r = 0; r < 320; ++r) {
      const std::int64_t start = (r * 997) % (rows - n);
      const double t0 = now();
      mtrank::model::score_in_chunks(*net, config.tasks, n, chunk,
                                     [&](std::int64_t b, std::int64_t e) { return d.slice(start + b, start + e); },
                                     values.data());
      if (!(values[0] >= 0 && values[0] <= 1)) return 1;
      if (r >= 20) ms.push_back((now() - t0) * 1e3);
    }
    std::sort(ms.begin(), ms.end());
    const double roof = n * forward_flop / (gflops * 1e9) * 1e3;
    std::printf("%10lld %10.3f %10.3f %12.3f %8.0f%%\n", static_cast<long long>(n), ms[ms.size() / 2],
                ms[ms.size() * 99 / 100], roof, 100 * roof / ms[ms.size() / 2]);
  }
  return 0;
}
