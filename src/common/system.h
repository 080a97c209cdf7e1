#pragma once
// Process-level set-up that decides speed: threads and the BLAS in use.
#include <string>

namespace mtrank {

// Sets LibTorch's intra-op threads (OpenMP, and so OpenMP OpenBLAS) to n; 0 = all cores.
// LibTorch from Debian defaults to 1 thread here, so every command calls this.
// It also calls configure_allocator().
int configure_threads(int n);

// This thread's OpenMP thread count (which ATen and the OpenMP OpenBLAS
// read) set to `threads` while it lives (0: left as it is) and put back when
// it leaves scope, errors included. Cheap, unlike at::set_num_threads, which
// rebuilds thread pools (15 ms a call): the kernels and the adaptive thread
// count switch per product or per step.
class ScopedThreadCount {
 public:
  explicit ScopedThreadCount(int threads = 0);
  ~ScopedThreadCount();
  ScopedThreadCount(const ScopedThreadCount&) = delete;
  ScopedThreadCount& operator=(const ScopedThreadCount&) = delete;

 private:
  int previous_;
};

// Keeps tensor buffers up to 32 MB in malloc's heap instead of fresh mmaps.
// glibc maps every allocation over 128 KB anew (until its adaptive threshold
// catches up) and the kernel zero-fills each page on first touch. Measured in
// docs/benchmarks.md (large MMoE: training 56% -> 65% of roofline).
void configure_allocator();

struct BlasInfo {
  std::string library;  // path of the loaded BLAS shared object
  std::string core;     // OpenBLAS kernel family in use, "" if not OpenBLAS
  std::string config;   // OpenBLAS build configuration
};
BlasInfo blas_info();

// OpenBLAS 0.3.21 can misdetect recent CPUs as pre-AVX2 cores (measured 3-5x
// slower). OpenBLAS reads OPENBLAS_CORETYPE only when it is loaded, so if it
// picked such a core on a CPU with AVX2/AVX-512, re-execute this program once
// with the right core type. Returns normally when nothing needs fixing.
void ensure_fast_blas(int argc, char** argv);

}  // namespace mtrank
