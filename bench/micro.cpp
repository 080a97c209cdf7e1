// bench_micro: the single-op measurements behind design choices in the serving
// and training paths (docs/benchmarks.md), with Google Benchmark.
//   [BENCH_THREADS=N] build/bench/bench_micro [Google Benchmark flags]   (1 thread by default)
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <simdjson.h>
#include <torch/torch.h>

#include "common/system.h"
#include "model/blocks.h"
#include "model/model.h"

namespace {
// The large MMoE's first expert layer: [rows x 429] x [429 x 8*256] + bias.
constexpr std::int64_t kIn = 429, kExpertsWidth = 8 * 256;

void first_layer_args(benchmark::internal::Benchmark* b) { b->Arg(50)->Arg(200)->Arg(1000); }

void set_flops(benchmark::State& state, std::int64_t rows) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * kIn * kExpertsWidth * state.iterations(),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// The GEMM alone (into one reused output), against the 1024^3 sgemm roofline.
void BM_FirstExpertLayer(benchmark::State& state) {
  torch::InferenceMode guard;
  const std::int64_t rows = state.range(0);
  const torch::Tensor x = torch::randn({rows, kIn}), w = torch::randn({kIn, kExpertsWidth}),
                      b = torch::randn({kExpertsWidth});
  torch::Tensor out = torch::empty({rows, kExpertsWidth});
  for (auto _ : state) torch::addmm_out(out, b, x, w);
  set_flops(state, rows);
}
BENCHMARK(BM_FirstExpertLayer)->Apply(first_layer_args)->Unit(benchmark::kMicrosecond);

// The census MMoE's experts in training (issue 15): [1024 x 135] x [135 x 8*16]
// + bias, ReLU, mixed by 2 gates, forward and backward; arg 1: LibTorch's ops
// (model::ReferenceKernels), arg 0: the hand-written kernels.
void BM_CensusExpertsTrainingStep(benchmark::State& state) {
  std::optional<mtrank::model::ReferenceKernels> reference;
  if (state.range(0)) reference.emplace();
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({1024, 135}).requires_grad_(true), w = (torch::randn({135, 128}) / 12).requires_grad_(true),
                      b = torch::randn({128}).requires_grad_(true),
                      gates = torch::softmax(torch::randn({1024, 2, 8}), -1).requires_grad_(true),
                      upstream = torch::randn({2, 1024, 16});
  for (auto _ : state) {
    const torch::Tensor h = mtrank::model::linear_relu(x, w, b).view({1024, 8, 16}).transpose(0, 1);
    (mtrank::model::mix_experts(gates, h) * upstream).sum().backward();
    for (torch::Tensor t : {x, w, b, gates}) t.mutable_grad().reset();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(6.0 * 1024 * 135 * 128 * state.iterations(), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_CensusExpertsTrainingStep)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// 200 candidates x 26 fields = 5,200 rows of 16 floats from the large MMoE's
// 2.6M-row (166 MB) embedding table, at random.
struct GatherInput {
  torch::Tensor table = torch::randn({26 * 100000, 16});
  std::vector<torch::Tensor> ids;
  GatherInput() {
    for (int i = 0; i < 64; ++i) ids.push_back(torch::randint(table.size(0), {5200}, torch::kLong));
  }
};

void BM_GatherIndexSelect(benchmark::State& state) {
  torch::InferenceMode guard;
  static GatherInput in;
  std::size_t r = 0;
  for (auto _ : state) benchmark::DoNotOptimize(in.table.index_select(0, in.ids[r++ % in.ids.size()]));
}
BENCHMARK(BM_GatherIndexSelect)->Unit(benchmark::kMicrosecond);

void BM_GatherRowsPrefetched(benchmark::State& state) {
  torch::InferenceMode guard;
  static GatherInput in;
  std::size_t r = 0;
  for (auto _ : state) benchmark::DoNotOptimize(mtrank::model::gather_rows(in.table, in.ids[r++ % in.ids.size()]));
}
BENCHMARK(BM_GatherRowsPrefetched)->Unit(benchmark::kMicrosecond);

// A request body shaped like a census one: 200 candidates of 39 string
// features (keys of 8 to 20 characters, values of 2 to 30).
const std::string& request_body() {
  static const std::string body = [] {
    std::mt19937 rng(1);
    auto text = [&](std::size_t lo, std::size_t hi) {
      std::string s(lo + rng() % (hi - lo + 1), ' ');
      for (char& c : s) c = static_cast<char>('a' + rng() % 26);
      return s;
    };
    std::vector<std::string> keys;
    for (int k = 0; k < 39; ++k) keys.push_back(text(8, 20));
    std::string b = R"({"candidates": [)";
    for (int i = 0; i < 200; ++i) {
      b += i ? ", {" : "{";
      for (int k = 0; k < 39; ++k) b += (k ? ", \"" : "\"") + keys[k] + "\": \"" + text(2, 30) + "\"";
      b += "}";
    }
    return b + R"(], "top_k": 100})";
  }();
  return body;
}

// Parse and read every key and string value: what RequestParser::parse does.
void BM_ParseRequestDom(benchmark::State& state) {
  simdjson::dom::parser parser;
  const std::string& body = request_body();
  for (auto _ : state) {
    std::size_t sink = 0;
    simdjson::dom::element root = parser.parse(body);
    for (simdjson::dom::element c : simdjson::dom::array(root["candidates"]))
      for (auto field : simdjson::dom::object(c)) {
        std::string_view v;
        if (!field.value.get_string().get(v)) sink += field.key.size() + v.size();
      }
    benchmark::DoNotOptimize(sink);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
  state.counters["body KB"] = static_cast<double>(body.size()) / 1000;
}
BENCHMARK(BM_ParseRequestDom)->Unit(benchmark::kMicrosecond);

void BM_ParseRequestOnDemand(benchmark::State& state) {
  simdjson::ondemand::parser parser;
  const simdjson::padded_string body(request_body());
  for (auto _ : state) {
    std::size_t sink = 0;
    simdjson::ondemand::document doc = parser.iterate(body);
    for (auto top : doc.get_object()) {
      if (std::string_view(top.unescaped_key()) != "candidates") continue;
      for (auto c : top.value().get_array())
        for (auto field : c.get_object()) {
          const std::string_view key = field.unescaped_key();
          std::string_view v;
          if (!field.value().get_string().get(v)) sink += key.size() + v.size();
        }
    }
    benchmark::DoNotOptimize(sink);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ParseRequestOnDemand)->Unit(benchmark::kMicrosecond);
// The census MMoE's merged first layer (experts and gates, N = 8*16 + 2*8 = 144)
// and its two backward GEMMs, arg: 0 forward, 1 input gradient, 2 weight gradient.
void BM_CensusFirstLayerGemm(benchmark::State& state) {
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({1024, 135}), w = torch::randn({135, 144}), g = torch::randn({1024, 144});
  for (auto _ : state) {
    if (state.range(0) == 0) benchmark::DoNotOptimize(torch::mm(x, w));
    if (state.range(0) == 1) benchmark::DoNotOptimize(torch::mm(g, w.t()));
    if (state.range(0) == 2) benchmark::DoNotOptimize(torch::mm(x.t(), g));
    if (state.range(0) >= 3) {
      const int parts = at::get_num_threads();
      torch::Tensor out = state.range(0) == 5 ? torch::empty({144, 135}) : torch::empty({1024, state.range(0) == 3 ? 144 : 135});
      at::parallel_for(0, parts, 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t p = b; p < e; ++p) {
          const std::int64_t rows = out.size(0), lo = rows * p / parts, hi = rows * (p + 1) / parts;
          torch::Tensor o = out.narrow(0, lo, hi - lo);
          if (state.range(0) == 3) torch::mm_out(o, x.narrow(0, lo, hi - lo), w);
          if (state.range(0) == 4) torch::mm_out(o, g.narrow(0, lo, hi - lo), w.t());
          if (state.range(0) == 5) torch::mm_out(o, g.t().narrow(0, lo, hi - lo), x);
        }
      });
    }
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 1024 * 135 * 144 * state.iterations(), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_CensusFirstLayerGemm)->DenseRange(0, 5)->Unit(benchmark::kMicrosecond);
}  // namespace

int main(int argc, char** argv) {
  // As mtrank itself does (cli/main.cpp): a misdetected OpenBLAS core (Prescott on some VMs) is 5x slower.
  mtrank::ensure_fast_blas(argc, argv);
  // One thread unless BENCH_THREADS says otherwise.
  mtrank::configure_threads(std::getenv("BENCH_THREADS") ? std::atoi(std::getenv("BENCH_THREADS")) : 1);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
