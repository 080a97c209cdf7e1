#pragma once
// Synthetic data generators (no torch).
#include <cstdint>
#include <string>

namespace mtrank::data {

// The MMoE paper's generator (Ma et al. 2018, section 3.2): two regression
// tasks whose relatedness is set by the Pearson correlation p of their
// weight vectors. Columns x0..x{d-1}, y1, y2.
struct MmoeSynthOptions {
  std::int64_t rows = 10000;
  double correlation = 0.9;  // p in [-1, 1]
  std::uint64_t seed = 1;
  int dim = 100;             // d
  double scale = 1.0;        // c
  int sin_terms = 10;        // m
  double noise_variance = 0.01;
};
void write_mmoe_synthetic(const MmoeSynthOptions& options, const std::string& path);

// A small recommender impression log with known structure, used by the
// quickstart and end-to-end tests: users, items, categories, a multi-hot
// interest list, prices; tasks click (binary), like (binary, only clicked
// rows) and watch_time (regression, only clicked rows, empty otherwise).
struct RankingSynthOptions {
  std::int64_t rows = 20000;
  std::uint64_t seed = 1;
  int users = 1000, items = 300, categories = 12;
};
void write_ranking_synthetic(const RankingSynthOptions& options, const std::string& path);

}  // namespace mtrank::data
