// bench_train_distributed: data-parallel training throughput and where the
// time goes, against one process, on this machine.
//   build/bench/bench_train_distributed MODEL WORKERS THREADS_PER_WORKER [batch=1024] [rows=32768] [replicated|row]
// MODEL: "large" (bench_train_large's MMoE: 26 tables of 100,000 x 16, 8
// experts 429-256-128; its rows go by sparse sum) or "census" (torch-rechub's
// census MMoE sizes: 525 x 4 table, 8 experts [16], towers [8]; its rows go in
// the dense message). Random data, the same on every rank. With WORKERS > 1 it
// launches WORKERS copies of itself through mtrank's launcher (torchrun's
// environment), as `mtrank train --nproc-per-node` does. Rank 0 prints rows/s,
// the time spent exchanging gradients per step, the bytes each step sends, and
// the latency and bandwidth of the collectives measured in the same run: the
// constants of the scaling model in docs/benchmarks.md. The last argument is
// train.table_sharding; every rank prints its peak RSS.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>

#include <torch/torch.h>

#include "common/system.h"
#include "config/config.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/communicator.h"
#include "train/launcher.h"
#include "train/trainer.h"

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Shape {
  int fields, dense;
  std::int64_t vocab, dim;
  std::vector<std::int64_t> experts, towers;
};
}  // namespace

int main(int argc, char** argv) {
  mtrank::ensure_fast_blas(argc, argv);
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s large|census WORKERS THREADS_PER_WORKER [batch=1024] [rows=32768] [replicated|row]\n",
                 argv[0]);
    return 2;
  }
  const std::string model = argv[1];
  const int workers = std::stoi(argv[2]), threads = std::stoi(argv[3]);
  const std::int64_t batch = argc > 4 ? std::stoll(argv[4]) : 1024;
  const std::int64_t rows = argc > 5 ? std::stoll(argv[5]) : 32768;
  const std::string sharding = argc > 6 ? argv[6] : "replicated";
  mtrank::train::DistributedEnv env = mtrank::train::DistributedEnv::from_environment();
  if (workers > 1 && !env.distributed()) {
    mtrank::train::LaunchOptions launch;
    launch.workers = workers;
    for (int i = 1; i < argc; ++i) launch.arguments.push_back(argv[i]);
    return mtrank::train::launch_local_workers(launch);
  }
  const Shape s = model == "census" ? Shape{29, 7, 18, 4, {16}, {8}} : Shape{26, 13, 100000, 16, {256, 128}, {64}};
  constexpr int kTasks = 2;
  mtrank::configure_threads(threads);
  env.timeout = std::chrono::seconds(120);
  std::unique_ptr<mtrank::train::Communicator> comm = mtrank::train::make_communicator(env);
  const bool primary = comm->is_primary();

  mtrank::data::FeaturizedData d(s.fields, 0, s.dense, kTasks);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  d.reserve(rows);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int f = 0; f < s.fields; ++f) d.categorical.push_back(f * s.vocab + static_cast<std::int64_t>(rng() % s.vocab));
    for (int k = 0; k < s.dense; ++k) d.dense.push_back(normal(rng));
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
  config.model.set("embedding_dim", s.dim);
  config.model.set("num_experts", std::int64_t{8});
  config.model.set("expert_hidden", s.experts);
  config.model.set("tower_hidden", s.towers);
  config.train.batch_size = batch;  // the global batch, split among the workers
  config.train.epochs = 1;
  config.train.table_sharding = sharding;
  const mtrank::model::InputShape shape{s.fields * s.vocab, s.fields, 0, s.dense, kTasks, {}};
  torch::manual_seed(0);
  auto net = mtrank::model::create_model(config.model, shape);
  std::int64_t dense_params = 0, table_floats = 0;
  for (const auto& p : net->parameters()) (p.requires_grad() ? dense_params : table_floats) += p.numel();

  // Warm-up on a slice, then the measured epoch (a trainer runs its epochs once).
  mtrank::train::Trainer(*net, config, comm.get()).run(d.slice(0, std::min<std::int64_t>(rows, 4 * batch)), nullptr, {});
  mtrank::train::Trainer trainer(*net, config, comm.get());
  const double t0 = now();
  const mtrank::train::TrainReport report = trainer.run(d, nullptr, {});
  const double seconds = now() - t0;
  const double steps = std::ceil(static_cast<double>(rows) / static_cast<double>(batch));

  // The collectives alone: a small sum (latency) and an 8 MB one (bandwidth).
  double latency_us = 0, bandwidth = 0;
  if (comm->world_size() > 1) {
    std::vector<double> one{1.0};
    for (int i = 0; i < 20; ++i) comm->sum(one);
    double t = now();
    for (int i = 0; i < 200; ++i) comm->sum(one);
    latency_us = (now() - t) / 200 * 1e6;
    std::vector<torch::Tensor> big{torch::ones({2 << 20})};
    comm->sum_dense(big);
    t = now();
    for (int i = 0; i < 10; ++i) comm->sum_dense(big);
    bandwidth = 8.0 * (2 << 20) * 10 / (now() - t) / 1e9;  // GB/s of buffer summed
  }
  // Rows a rank's share of a global batch touches (random ids: the shuffled
  // batches touch as many), whose gradients a sparse sum sends.
  double touched = 0;
  {
    const int n = comm->world_size();
    int counted = 0;
    for (std::int64_t b = 0; b + batch <= rows && counted < 8; b += batch, ++counted) {
      std::vector<std::int64_t> ids;
      for (std::int64_t r = b + comm->rank(); r < b + batch; r += n)
        for (int f = 0; f < s.fields; ++f) ids.push_back(d.categorical[static_cast<std::size_t>(r * s.fields + f)]);
      std::sort(ids.begin(), ids.end());
      touched += static_cast<double>(std::unique(ids.begin(), ids.end()) - ids.begin());
    }
    touched /= std::max(counted, 1);
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("rank %d: peak RSS %.0f MB\n", comm->rank(), usage.ru_maxrss / 1024.0);
  if (!primary) return 0;
  const double sync = report.epochs.empty() ? 0 : report.epochs.back().sync_seconds;
  std::printf("%s MMoE: %.2fM dense parameters, %.1fM table floats; %d worker%s x %d thread%s, global batch %lld, "
              "tables %s\n",
              model.c_str(), dense_params / 1e6, table_floats / 1e6, comm->world_size(),
              comm->world_size() == 1 ? "" : "s", threads, threads == 1 ? "" : "s", static_cast<long long>(batch),
              sharding.c_str());
  std::printf("training: %.0f rows/s, %.2f ms a step, of which exchanging gradients %.2f ms (%.0f%%)\n",
              rows / seconds, seconds / steps * 1e3, sync / steps * 1e3, 100 * sync / seconds);
  std::printf("dense message per step: %.2f MB; rows one rank touches per step: %.0f (%.2f MB of ids and gradients)\n",
              (dense_params + 4.0) * 4 / 1e6, touched, touched * (8.0 + 4.0 * static_cast<double>(s.dim)) / 1e6);
  if (comm->world_size() > 1)
    std::printf("collectives: small sum %.0f us; 8 MB sum %.2f GB/s\n", latency_us, bandwidth);
  return 0;
}
