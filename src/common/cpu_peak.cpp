#include "common/cpu_peak.h"

#include <immintrin.h>

#include <chrono>
#include <cstdint>

namespace mtrank {

namespace {
// 16 independent accumulators hide the FMA latency (4 cycles x 2 pipes on
// current cores) so the loop is bound by FMA throughput alone.
constexpr int kChains = 16;
constexpr int kInner = 100000;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

__attribute__((target("avx512f"))) double peak_avx512(double seconds) {
  __m512 acc[kChains];
  for (auto& a : acc) a = _mm512_set1_ps(1.0f);
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-6f);
  std::int64_t iterations = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int r = 0; r < kInner; ++r)
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], mul, add);
    iterations += kInner;
    elapsed = seconds_since(start);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return 2.0 * 16 * kChains * static_cast<double>(iterations) / elapsed / 1e9;
}

__attribute__((target("avx2,fma"))) double peak_avx2(double seconds) {
  __m256 acc[kChains];
  for (auto& a : acc) a = _mm256_set1_ps(1.0f);
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-6f);
  std::int64_t iterations = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int r = 0; r < kInner; ++r)
      for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], mul, add);
    iterations += kInner;
    elapsed = seconds_since(start);
  }
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return 2.0 * 8 * kChains * static_cast<double>(iterations) / elapsed / 1e9;
}
}  // namespace

double cpu_peak_gflops(double seconds, const char** unit) {
  if (__builtin_cpu_supports("avx512f")) {
    *unit = "AVX-512 FMA";
    return peak_avx512(seconds);
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    *unit = "AVX2 FMA";
    return peak_avx2(seconds);
  }
  *unit = "none";
  return 0;
}

}  // namespace mtrank
