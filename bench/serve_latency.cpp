// bench_serve_latency: in-process ranking latency (JSON parse, featurize with
// the saved preprocessing, chunked scoring, sort) for requests built from real
// rows; and, apart, p50 of writing the response body (Ranker::to_json).
//   build/bench/bench_serve_latency MODEL_DIR DATA_FILE [threads=1] [chunk=64] [requests=400] [context=0]
// context=K: the model's first K input columns come once per request in
// "context" (a user's features), taken from the request's first row; the
// candidates carry the rest.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/system.h"
#include "data/record_reader.h"
#include "serve/ranker.h"
#include "model/model.h"
#include "model/model_dir.h"

int main(int argc, char** argv) {
  // As mtrank itself does (cli/main.cpp): a misdetected OpenBLAS core (Prescott on some VMs) is 5x slower.
  mtrank::ensure_fast_blas(argc, argv);
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR DATA_FILE [threads=1] [chunk=64] [requests=400] [context=0]\n", argv[0]);
    return 2;
  }
  const int threads = argc > 3 ? std::stoi(argv[3]) : 1;
  mtrank::serve::RankerOptions options;
  options.chunk_size = argc > 4 ? std::stoll(argv[4]) : 64;
  const int requests = argc > 5 ? std::stoi(argv[5]) : 400;
  const std::size_t context_columns = argc > 6 ? std::stoul(argv[6]) : 0;
  mtrank::configure_threads(threads);
  mtrank::serve::Ranker ranker(mtrank::model::load_model_dir(argv[1]), options, "bench");

  // Candidate objects from the file's rows: the model's input columns, raw values.
  std::vector<nlohmann::json> rows;
  mtrank::data::RecordReader reader(argv[2]);
  std::vector<int> index;
  for (const auto& c : ranker.input_columns())
    index.push_back(static_cast<int>(std::find(reader.header().begin(), reader.header().end(), c) - reader.header().begin()));
  std::vector<std::string_view> f;
  while (rows.size() < 5000 && reader.next(f)) {
    nlohmann::json c = nlohmann::json::object();
    for (std::size_t k = 0; k < index.size(); ++k) c[ranker.input_columns()[k]] = std::string(f[index[k]]);
    rows.push_back(std::move(c));
  }
  std::mt19937 rng(1);
  std::printf("model %s, %d thread%s, chunk %lld, %d requests per size, %zu of %zu columns in the context\n", argv[1],
              threads, threads == 1 ? "" : "s", static_cast<long long>(options.chunk_size), requests,
              std::min(context_columns, ranker.input_columns().size()), ranker.input_columns().size());
  std::printf("%10s %10s %10s %10s %14s %12s\n", "candidates", "p50 ms", "p99 ms", "mean ms", "candidates/s",
              "response ms");
  for (int n : {50, 200, 1000}) {
    std::vector<std::string> bodies;
    for (int r = 0; r < 16; ++r) {
      nlohmann::json cands = nlohmann::json::array();
      const std::size_t start = rng() % (rows.size() - n);
      nlohmann::json context = nlohmann::json::object();
      for (std::size_t k = 0; k < context_columns && k < ranker.input_columns().size(); ++k)
        context[ranker.input_columns()[k]] = rows[start][ranker.input_columns()[k]];
      for (int i = 0; i < n; ++i) {
        nlohmann::json c = rows[start + i];
        for (const auto& [key, value] : context.items()) c.erase(key);
        cands.push_back(std::move(c));
      }
      bodies.push_back(nlohmann::json{{"context", context}, {"candidates", cands}, {"top_k", 100}}.dump());
    }
    std::vector<double> ms, response_ms;
    for (int r = 0; r < requests + 20; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      auto result = ranker.rank_json(bodies[r % bodies.size()]);
      const auto t1 = std::chrono::steady_clock::now();
      const std::string response = ranker.to_json(result);  // the HTTP response body (top_k 100 results)
      const auto t2 = std::chrono::steady_clock::now();
      if (r >= 20) {  // after warm-up
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        response_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      }
      if (result.results.empty() || response.empty()) return 1;
    }
    std::sort(ms.begin(), ms.end());
    std::sort(response_ms.begin(), response_ms.end());
    double mean = 0;
    for (double x : ms) mean += x / ms.size();
    std::printf("%10d %10.3f %10.3f %10.3f %14.0f %12.3f\n", n, ms[ms.size() / 2], ms[ms.size() * 99 / 100], mean,
                n / mean * 1e3, response_ms[response_ms.size() / 2]);
  }
  return 0;
}
