#include "common/system.h"

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include <ATen/Parallel.h>
#include <omp.h>

namespace mtrank {

void configure_allocator() {
#ifdef __GLIBC__
  // Explicit values also turn off glibc's adaptive threshold, so the first
  // requests after start-up are as fast as the rest.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);   // glibc's maximum on 64-bit
  mallopt(M_TRIM_THRESHOLD, 256 << 20);  // give memory back only past 256 MB free at the top
#endif
}

int configure_threads(int n) {
  configure_allocator();
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  return n;
}

ScopedThreadCount::ScopedThreadCount(int threads) : previous_(omp_get_max_threads()) {
  if (threads > 0 && threads != previous_) omp_set_num_threads(threads);
}

ScopedThreadCount::~ScopedThreadCount() {
  if (omp_get_max_threads() != previous_) omp_set_num_threads(previous_);
}

BlasInfo blas_info() {
  BlasInfo info;
  using NameFn = char* (*)();
  if (auto core = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) info.core = core();
  if (auto config = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) info.config = config();
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    std::string path = line.substr(pos);
    if (path.find("blas") != std::string::npos || path.find("mkl") != std::string::npos) {
      info.library = path;
      break;
    }
  }
  return info;
}

void ensure_fast_blas(int argc, char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("MTRANK_NO_BLAS_FIX")) return;
  const std::string core = blas_info().core;
  if (core.empty()) return;
  static const char* kOldCores[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai",
                                    "Barcelona", "Opteron", "Bobcat", "Bulldozer", "Piledriver", "Steamroller",
                                    "Excavator", "Sandybridge", "Unknown"};
  bool old = false;
  for (const char* c : kOldCores) old = old || strcasecmp(core.c_str(), c) == 0;
  if (!old) return;
  const char* target = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : nullptr;
  if (!target) return;
  setenv("OPENBLAS_CORETYPE", target, 1);
  execv("/proc/self/exe", argv);  // only returns on failure: then carry on with the slow kernel
  (void)argc;
}

}  // namespace mtrank
