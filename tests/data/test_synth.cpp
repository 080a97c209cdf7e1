// Synthetic data: the MMoE paper's generator.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/record_reader.h"
#include "data/synth.h"
#include "test_util.h"

using namespace mtrank;

namespace {
double label_correlation(const std::string& path) {
  data::RecordReader reader(path);
  const auto& h = reader.header();
  const std::size_t i1 = h.size() - 2, i2 = h.size() - 1;
  EXPECT_EQ(h[i1], "y1");
  EXPECT_EQ(h[i2], "y2");
  std::vector<std::string_view> f;
  double n = 0, s1 = 0, s2 = 0, s11 = 0, s22 = 0, s12 = 0;
  while (reader.next(f)) {
    const double a = std::stod(std::string(f[i1])), b = std::stod(std::string(f[i2]));
    n += 1;
    s1 += a;
    s2 += b;
    s11 += a * a;
    s22 += b * b;
    s12 += a * b;
  }
  const double cov = s12 / n - s1 / n * s2 / n;
  return cov / std::sqrt((s11 / n - s1 / n * s1 / n) * (s22 / n - s2 / n * s2 / n));
}
}  // namespace

TEST(MmoeSynthetic, LabelCorrelationFallsWithTaskCorrelation) {
  mtrank::testing::TempDir dir;
  std::vector<double> observed;
  for (double p : {1.0, 0.9, 0.5, 0.0}) {
    data::MmoeSynthOptions o;
    o.rows = 4000;
    o.correlation = p;
    o.seed = 3;
    o.dim = 20;
    const std::string path = dir.file("s.csv");
    data::write_mmoe_synthetic(o, path);
    observed.push_back(label_correlation(path));
  }
  EXPECT_GT(observed[0], 0.99);  // identical tasks up to label noise
  for (std::size_t i = 1; i < observed.size(); ++i) EXPECT_LT(observed[i], observed[i - 1]) << i;
  EXPECT_LT(std::abs(observed[3]), 0.2);
}

TEST(MmoeSynthetic, ColumnsAndDeterminism) {
  mtrank::testing::TempDir dir;
  data::MmoeSynthOptions o;
  o.rows = 10;
  o.dim = 5;
  data::write_mmoe_synthetic(o, dir.file("a.csv"));
  data::write_mmoe_synthetic(o, dir.file("b.csv"));
  data::RecordReader a(dir.file("a.csv")), b(dir.file("b.csv"));
  EXPECT_EQ(a.header(), (std::vector<std::string>{"x0", "x1", "x2", "x3", "x4", "y1", "y2"}));
  std::vector<std::string_view> fa, fb;
  int rows = 0;
  while (a.next(fa)) {
    ASSERT_TRUE(b.next(fb));
    EXPECT_EQ(std::vector<std::string>(fa.begin(), fa.end()), std::vector<std::string>(fb.begin(), fb.end()));
    ++rows;
  }
  EXPECT_EQ(rows, 10);
}
