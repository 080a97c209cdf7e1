#pragma once
// Timing helpers the latency benches share.
#include <algorithm>
#include <chrono>
#include <vector>

namespace mtrank::bench {

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The q-quantile (0..1) of the samples, by the nearest lower rank.
inline double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

}  // namespace mtrank::bench
