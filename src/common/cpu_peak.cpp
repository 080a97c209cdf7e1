#include "common/cpu_peak.h"

#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <strings.h>

namespace mtrank {

namespace {
// The chains must stay in registers: one that spills goes through a store and
// a reload each FMA, adding the store-forwarding latency to its chain, and the
// loop then measures memory latency rather than FMA throughput. Each chain
// needs one register and the loop two more (the multiplier, and the addend
// unless the compiler folds it into a memory operand). AVX2 has 16 ymm: 12
// chains + 2 = 14. AVX-512 has 32 zmm: 24 chains + 2 = 26. Both are above the
// 8 to 10 chains that FMA latency (4 to 5 cycles) x 2 ports needs.
constexpr int kAvx2Chains = 12;
constexpr int kAvx512Chains = 24;
constexpr int kInner = 100000;

// The best rate over short laps (under a millisecond to a few): on a shared
// machine a lap that lost the core to another process or to the host is
// slower, never faster, so the best lap is the core's own speed.
class BestRate {
 public:
  bool done(double seconds) const { return total_ >= seconds; }
  void lap(std::int64_t iterations) {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    total_ += dt;
    if (dt > 0 && iterations / dt > best_) best_ = iterations / dt;
  }
  double per_second() const { return best_; }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  double total_ = 0, best_ = 0;
};

__attribute__((target("avx512f"))) double peak_avx512(double seconds) {
  constexpr int kChains = kAvx512Chains;
  __m512 acc[kChains];
  for (auto& a : acc) a = _mm512_set1_ps(1.0f);
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-6f);
  BestRate best;
  while (!best.done(seconds)) {
    for (int r = 0; r < kInner; ++r) {
#pragma GCC unroll 32
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], mul, add);
    }
    best.lap(kInner);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return 2.0 * 16 * kChains * best.per_second() / 1e9;
}

__attribute__((target("avx2,fma"))) double peak_avx2(double seconds) {
  constexpr int kChains = kAvx2Chains;
  __m256 acc[kChains];
  for (auto& a : acc) a = _mm256_set1_ps(1.0f);
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-6f);
  BestRate best;
  while (!best.done(seconds)) {
    for (int r = 0; r < kInner; ++r) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], mul, add);
    }
    best.lap(kInner);
  }
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return 2.0 * 8 * kChains * best.per_second() / 1e9;
}
}  // namespace

int fma_lanes(FmaIsa isa) {
  switch (isa) {
    case FmaIsa::kAvx2: return 8;
    case FmaIsa::kAvx512: return 16;
    case FmaIsa::kNone: break;
  }
  return 0;
}

int fma_vector_registers(FmaIsa isa) {
  switch (isa) {
    case FmaIsa::kAvx2: return 16;
    case FmaIsa::kAvx512: return 32;
    case FmaIsa::kNone: break;
  }
  return 0;
}

int fma_chains(FmaIsa isa) {
  switch (isa) {
    case FmaIsa::kAvx2: return kAvx2Chains;
    case FmaIsa::kAvx512: return kAvx512Chains;
    case FmaIsa::kNone: break;
  }
  return 0;
}

int fma_nominal_flop_per_cycle(FmaIsa isa, int ports) { return fma_lanes(isa) * 2 * ports; }

const char* fma_isa_name(FmaIsa isa) {
  switch (isa) {
    case FmaIsa::kAvx2: return "AVX2 FMA";
    case FmaIsa::kAvx512: return "AVX-512 FMA";
    case FmaIsa::kNone: break;
  }
  return "none";
}

FmaIsa pick_fma_isa(bool has_avx512f, bool has_avx2_fma, const char* force, bool* forced) {
  *forced = false;
  if (force != nullptr) {
    if (strcasecmp(force, "avx2") == 0 && has_avx2_fma) {
      *forced = true;
      return FmaIsa::kAvx2;
    }
    if (strcasecmp(force, "avx512") == 0 && has_avx512f) {
      *forced = true;
      return FmaIsa::kAvx512;
    }
  }
  if (has_avx512f) return FmaIsa::kAvx512;
  if (has_avx2_fma) return FmaIsa::kAvx2;
  return FmaIsa::kNone;
}

FmaIsa cpu_fma_isa(bool* forced) {
  return pick_fma_isa(__builtin_cpu_supports("avx512f"),
                      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
                      std::getenv("MTRANK_CPU_PEAK_ISA"), forced);
}

double fma_peak_gflops(FmaIsa isa, double seconds) {
  switch (isa) {
    case FmaIsa::kAvx512: return peak_avx512(seconds);
    case FmaIsa::kAvx2: return peak_avx2(seconds);
    case FmaIsa::kNone: break;
  }
  return 0;
}

double cpu_peak_gflops(double seconds, const char** unit) {
  bool forced = false;
  const FmaIsa isa = cpu_fma_isa(&forced);
  *unit = fma_isa_name(isa);
  return fma_peak_gflops(isa, seconds);
}

double cpu_clock_ghz(double seconds) {
#if defined(__x86_64__)
  // 8 dependent imuls per iteration, 3 cycles each on every x86-64 core since
  // Nehalem and on AMD Zen: 24 cycles per iteration. (A chain of `add imm`
  // would not do: recent Intel cores fold some of them at rename.)
  constexpr std::int64_t kIters = 100000;  // 2.4M cycles, about 1 ms a lap
  constexpr double kCyclesPerIter = 8 * 3;
  std::uint64_t x = 3, m = 1;
  BestRate best;
  while (!best.done(seconds)) {
    std::int64_t n = kIters;
    asm volatile(
        "1:\n\t"
        "imul %[m], %[x]\n\t"
        "imul %[m], %[x]\n\t"
        "imul %[m], %[x]\n\t"
        "imul %[m], %[x]\n\t"
        "imul %[m], %[x]\n\t"
        "imul %[m], %[x]\n\t"
        "imul %[m], %[x]\n\t"
        "imul %[m], %[x]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [x] "+r"(x), [n] "+r"(n)
        : [m] "r"(m)
        : "cc");
    best.lap(kIters);
  }
  (void)x;
  return kCyclesPerIter * best.per_second() / 1e9;
#else
  (void)seconds;
  return 0;
#endif
}

}  // namespace mtrank
