// bench_write_large_log: writes an impression log in the shape of the
// model-zoo issue's large configuration (bench/large_mmoe.toml), so the large
// MMoE can be trained from a file by `mtrank train`, in memory or out of core.
//   build/bench/bench_write_large_log ROWS OUT.csv [seed=1]
// Columns: c0..c25 categorical (ids 0..99,999, Zipf-like so tables see hot and
// cold rows), n0..n12 numeric (standard normal), click and like (0/1). The
// labels carry a planted signal a model can learn, so AUC measures something:
// each task's logit is a sum of per-(field, id) effects, drawn from a hash, plus
// a linear term in the numeric columns; like shares half its effects with click.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

#include "data/hash.h"

namespace {
constexpr int kFields = 26, kNumeric = 13;
constexpr std::uint64_t kVocab = 100000;

// A fixed effect in [-1, 1) for (task, field, id), from a hash: no table to hold.
double effect(int task, int field, std::uint64_t id) {
  const std::uint64_t h = mtrank::data::hash_string(std::to_string(task) + ":" + std::to_string(field) + ":" +
                                                        std::to_string(id),
                                                    7);
  return static_cast<double>(h >> 11) / 4503599627370496.0 - 1.0;  // 2^52: [0, 2) - 1
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ROWS OUT.csv [seed]\n", argv[0]);
    return 2;
  }
  const long long rows = std::stoll(argv[1]);
  const std::string out_path = argv[2];
  const std::uint64_t seed = argc > 3 ? std::stoull(argv[3]) : 1;
  std::FILE* out = std::fopen(out_path.c_str(), "w");
  if (!out) {
    std::perror(out_path.c_str());
    return 1;
  }
  std::string line;
  for (int f = 0; f < kFields; ++f) line += "c" + std::to_string(f) + ",";
  for (int k = 0; k < kNumeric; ++k) line += "n" + std::to_string(k) + ",";
  line += "click,like\n";
  std::fputs(line.c_str(), out);

  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  // Zipf-like ids by inverse transform of a power law with exponent 1.1 over [1, kVocab].
  const double a = 1.0 - 1.1;
  const double top = std::pow(static_cast<double>(kVocab), a);
  char buf[64];
  for (long long r = 0; r < rows; ++r) {
    line.clear();
    double logit[2] = {-1.0, -2.0};
    for (int f = 0; f < kFields; ++f) {
      const double u = uniform(rng);
      const auto id = static_cast<std::uint64_t>(std::pow(1.0 + u * (top - 1.0), 1.0 / a)) % kVocab;
      const double e = effect(0, f, id);
      logit[0] += 0.35 * e;
      logit[1] += 0.35 * (f % 2 == 0 ? e : effect(1, f, id));
      line += std::to_string(id);
      line += ',';
    }
    for (int k = 0; k < kNumeric; ++k) {
      const double x = normal(rng);
      logit[0] += 0.15 * x * (k % 3 == 0 ? 1 : -0.5);
      logit[1] += 0.15 * x * (k % 2 == 0 ? 1 : -1);
      std::snprintf(buf, sizeof buf, "%.4f,", x);
      line += buf;
    }
    for (int t = 0; t < 2; ++t) {
      const double p = 1.0 / (1.0 + std::exp(-logit[t]));
      line += uniform(rng) < p ? '1' : '0';
      line += t == 0 ? ',' : '\n';
    }
    if (std::fputs(line.c_str(), out) < 0) {
      std::perror(out_path.c_str());
      return 1;
    }
  }
  if (std::fclose(out) != 0) {
    std::perror(out_path.c_str());
    return 1;
  }
  return 0;
}
