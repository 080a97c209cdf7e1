// mtrank doctor: which BLAS is loaded, and how fast sgemm runs through LibTorch.
// A silent fallback to the reference BLAS or to a pthread OpenBLAS costs 5-30x.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <torch/torch.h>

#include "cli/commands.h"
#include "common/cpu_peak.h"
#include "common/system.h"
#include "data/block_store.h"

namespace mtrank::cli {

namespace {
double measure_sgemm(int n, int threads, double seconds) {
  configure_threads(threads);
  torch::InferenceMode guard;
  torch::Tensor a = torch::rand({n, n}), b = torch::rand({n, n}), c = torch::empty({n, n});
  torch::mm_out(c, a, b);  // warm-up: page in, pick kernels
  int reps = 0;
  auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds || reps < 3) {
    torch::mm_out(c, a, b);
    ++reps;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return 2.0 * n * n * static_cast<double>(n) * reps / elapsed / 1e9;
}
}  // namespace

int run_doctor(const DoctorOptions& o) {
  BlasInfo blas = blas_info();
  std::printf("BLAS library:     %s\n", blas.library.empty() ? "(none found in process maps)" : blas.library.c_str());
  std::printf("OpenBLAS core:    %s\n", blas.core.empty() ? "(not OpenBLAS)" : blas.core.c_str());
  std::printf("OpenBLAS config:  %s\n", blas.config.empty() ? "-" : blas.config.c_str());
  const bool openmp = blas.config.find("USE_OPENMP") != std::string::npos;
  if (!blas.core.empty() && !openmp)
    std::printf("WARNING: this OpenBLAS is not the OpenMP build; it fights LibTorch's OpenMP threads.\n"
                "         Run scripts/setup.sh (installs libopenblas0-openmp and selects it).\n");
  if (blas.library.find("openblas") == std::string::npos && blas.library.find("mkl") == std::string::npos)
    std::printf("WARNING: not an optimized BLAS; expect 5-30x slower training. Run scripts/setup.sh.\n");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::printf("cores:            %d\n", cores);
  // What training streams past by default (data.memory_budget_mb = 0): half
  // of the machine's memory or of this process's cgroup limit.
  std::printf("memory budget:    %.0f MB (half the memory this process may use; data.memory_budget_mb)\n",
              static_cast<double>(data::default_memory_budget_bytes()) / (1 << 20));
  std::printf("sgemm %dx%dx%d through LibTorch:\n", o.size, o.size, o.size);
  double one = 0;
  for (int t = 1; t <= cores; t *= 2) {
    const double g = measure_sgemm(o.size, t, o.seconds);
    if (t == 1) one = g;
    std::printf("  %d thread%s %8.1f GFLOP/s\n", t, t == 1 ? ": " : "s:", g);
    if (t * 2 > cores && t != cores) {
      const double gc = measure_sgemm(o.size, cores, o.seconds);
      std::printf("  %d threads: %8.1f GFLOP/s\n", cores, gc);
    }
  }
  // The peak loop runs on the widest FMA unit; MTRANK_CPU_PEAK_ISA=avx2 forces
  // the AVX2 loop on an AVX-512 CPU (to check that loop where it is not the default).
  bool forced = false;
  const FmaIsa isa = cpu_fma_isa(&forced);
  const double peak = fma_peak_gflops(isa, o.seconds);
  if (peak > 0) {
    std::printf("core FP32 peak (%s loop, %d chains, 1 thread%s): %.1f GFLOP/s; 1-thread sgemm reaches %.0f%% of it\n",
                fma_isa_name(isa), fma_chains(isa), forced ? ", forced by MTRANK_CPU_PEAK_ISA" : "", peak,
                100 * one / peak);
    const double ghz = cpu_clock_ghz(std::min(o.seconds, 1.0));
    if (ghz > 0)
      std::printf("core clock (dependent imul chain): %.2f GHz, so the peak is %.1f FLOP/cycle"
                  " (%s: %d with 2 FMA units, %d with 1)\n",
                  ghz, peak / ghz, fma_isa_name(isa), fma_nominal_flop_per_cycle(isa, 2),
                  fma_nominal_flop_per_cycle(isa, 1));
    if (forced && std::getenv("OPENBLAS_CORETYPE") == nullptr)
      std::printf("(the sgemm uses the BLAS's own kernel: set OPENBLAS_CORETYPE=Haswell too to compare AVX2 with AVX2)\n");
    else if (one > 1.05 * peak)
      std::printf("WARNING: 1-thread sgemm above the measured peak: the peak loop under-measures on this CPU.\n");
  }
  if (one < 50)
    std::printf("WARNING: 1-thread sgemm below 50 GFLOP/s. Check that libblas.so.3 points at the OpenMP\n"
                "         OpenBLAS (update-alternatives --display libblas.so.3-x86_64-linux-gnu), or try\n"
                "         OPENBLAS_CORETYPE=Haswell or SkylakeX.\n");
  else
    std::printf("OK\n");
  return 0;
}

}  // namespace mtrank::cli
