#pragma once
// Measured peak FP32 FLOP/s of one core: the physical limit sgemm is compared against.

namespace mtrank {

// Runs independent FMA chains on the widest vector unit available for about
// `seconds`. Returns GFLOP/s and names the unit used; 0 if no FMA unit.
double cpu_peak_gflops(double seconds, const char** unit);

}  // namespace mtrank
