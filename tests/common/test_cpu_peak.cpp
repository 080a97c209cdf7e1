// The FMA peak loop's choices: lanes, registers, chains and the unit picked.
// No timing thresholds: the measured figures are in docs/benchmarks.md.
#include <gtest/gtest.h>

#include "common/cpu_peak.h"

using namespace mtrank;

TEST(CpuPeak, LanesRegistersAndNominalFlopPerCycle) {
  EXPECT_EQ(fma_lanes(FmaIsa::kAvx2), 8);
  EXPECT_EQ(fma_lanes(FmaIsa::kAvx512), 16);
  EXPECT_EQ(fma_lanes(FmaIsa::kNone), 0);
  EXPECT_EQ(fma_vector_registers(FmaIsa::kAvx2), 16);
  EXPECT_EQ(fma_vector_registers(FmaIsa::kAvx512), 32);
  EXPECT_EQ(fma_nominal_flop_per_cycle(FmaIsa::kAvx2, 2), 32);
  EXPECT_EQ(fma_nominal_flop_per_cycle(FmaIsa::kAvx512, 2), 64);
  EXPECT_EQ(fma_nominal_flop_per_cycle(FmaIsa::kAvx512, 1), 32);
  EXPECT_EQ(fma_nominal_flop_per_cycle(FmaIsa::kNone, 2), 0);
}

TEST(CpuPeak, ChainsCoverLatencyAndFitTheRegisters) {
  for (FmaIsa isa : {FmaIsa::kAvx2, FmaIsa::kAvx512}) {
    SCOPED_TRACE(fma_isa_name(isa));
    // FMA latency up to 5 cycles x 2 ports: at least 10 chains in flight.
    EXPECT_GE(fma_chains(isa), 10);
    // The chains plus the multiplier and the addend stay in registers (16 AVX2
    // chains spilled two of them and measured 74.7 instead of 95.8 GFLOP/s).
    EXPECT_LE(fma_chains(isa) + 2, fma_vector_registers(isa));
  }
  EXPECT_EQ(fma_chains(FmaIsa::kNone), 0);
}

TEST(CpuPeak, PicksTheWidestUnitUnlessForced) {
  bool forced = true;
  EXPECT_EQ(pick_fma_isa(true, true, nullptr, &forced), FmaIsa::kAvx512);
  EXPECT_FALSE(forced);
  EXPECT_EQ(pick_fma_isa(false, true, nullptr, &forced), FmaIsa::kAvx2);
  EXPECT_EQ(pick_fma_isa(false, false, nullptr, &forced), FmaIsa::kNone);
  EXPECT_EQ(pick_fma_isa(true, true, "AVX2", &forced), FmaIsa::kAvx2);
  EXPECT_TRUE(forced);
  EXPECT_EQ(pick_fma_isa(true, true, "avx512", &forced), FmaIsa::kAvx512);
  EXPECT_TRUE(forced);
  // A unit the CPU lacks, or an unknown name, is ignored.
  EXPECT_EQ(pick_fma_isa(false, true, "avx512", &forced), FmaIsa::kAvx2);
  EXPECT_FALSE(forced);
  EXPECT_EQ(pick_fma_isa(true, true, "sse", &forced), FmaIsa::kAvx512);
  EXPECT_FALSE(forced);
  EXPECT_EQ(pick_fma_isa(true, true, "", &forced), FmaIsa::kAvx512);
  EXPECT_FALSE(forced);
}

TEST(CpuPeak, RunsOnThisCpu) {
  bool forced = false;
  const FmaIsa isa = cpu_fma_isa(&forced);
  if (isa == FmaIsa::kNone) GTEST_SKIP() << "no FMA unit";
  EXPECT_GT(fma_peak_gflops(isa, 0.001), 0);
  if (isa == FmaIsa::kAvx512) {
    EXPECT_GT(fma_peak_gflops(FmaIsa::kAvx2, 0.001), 0);
  }
  EXPECT_EQ(fma_peak_gflops(FmaIsa::kNone, 0.001), 0);
}
