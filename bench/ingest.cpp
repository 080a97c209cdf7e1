// bench_ingest: rows/s to read, to featurize, and to load from the binary cache.
//   build/bench/bench_ingest CONFIG.toml DATA_FILE [repeats]
// The preprocessing is fitted on DATA_FILE first (not timed in the featurize figure).
// One thread: ingestion is single-threaded by design (one streaming pass).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/record_reader.h"

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename F>
double best_of(int repeats, F&& f) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CONFIG.toml DATA_FILE [repeats=5]\n", argv[0]);
    return 2;
  }
  try {
    const int repeats = argc > 3 ? std::stoi(argv[3]) : 5;
    mtrank::Config config = mtrank::load_config(argv[1]);
    config.data.cache_dir.clear();
    const std::string path = argv[2];
    const double fit_s = best_of(1, [&] { mtrank::data::Preprocessor(config).fit(path); });
    mtrank::data::Preprocessor pre(config);
    pre.fit(path);

    std::int64_t rows = 0;
    std::uint64_t bytes = 0;
    const double read_s = best_of(repeats, [&] {
      mtrank::data::RecordReader reader(path, mtrank::data::ReaderOptions{config.data.delimiter});
      std::vector<std::string_view> fields;
      rows = 0;
      while (reader.next(fields)) ++rows;
      bytes = reader.bytes_read();
    });
    mtrank::data::FeaturizedData data;
    const double featurize_s = best_of(repeats, [&] { data = mtrank::data::featurize_file(pre, path, true); });
    const std::string cache = (std::filesystem::temp_directory_path() / "mtrank-bench-ingest.bin").string();
    data.save(cache);
    const double cache_s = best_of(repeats, [&] { data = mtrank::data::FeaturizedData::load(cache); });
    const auto cache_bytes = std::filesystem::file_size(cache);
    std::filesystem::remove(cache);

    std::printf("file: %s (%lld rows, %.1f MB decompressed, %d columns used)\n", path.c_str(),
                static_cast<long long>(rows), static_cast<double>(bytes) / 1e6,
                pre.num_categorical() + pre.num_bags() + pre.num_dense() + pre.num_tasks());
    std::printf("%-34s %10s %12s %10s\n", "stage (best of N, 1 thread)", "seconds", "rows/s", "MB/s");
    auto line = [&](const char* name, double s, double mb) {
      std::printf("%-34s %10.4f %12.0f %10.1f\n", name, s, static_cast<double>(rows) / s, mb / s);
    };
    line("fit preprocessing (1 pass)", fit_s, static_cast<double>(bytes) / 1e6);
    line("read + parse only", read_s, static_cast<double>(bytes) / 1e6);
    line("read + parse + featurize", featurize_s, static_cast<double>(bytes) / 1e6);
    line("load binary cache", cache_s, static_cast<double>(cache_bytes) / 1e6);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
