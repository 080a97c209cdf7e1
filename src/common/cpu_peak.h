#pragma once
// Measured peak FP32 FLOP/s of one core: the physical limit sgemm is compared against.

namespace mtrank {

// The vector FMA unit the peak loop runs on.
enum class FmaIsa { kNone, kAvx2, kAvx512 };

// FP32 lanes per vector: AVX2 8 (ymm), AVX-512 16 (zmm), none 0.
int fma_lanes(FmaIsa isa);
// Architectural vector registers: AVX2 16 ymm, AVX-512 32 zmm, none 0.
int fma_vector_registers(FmaIsa isa);
// Independent accumulator chains the peak loop keeps in registers: enough to
// cover FMA latency (4-5 cycles) x 2 FMA ports, and few enough that the
// chains plus the two loop constants fit the register file without spilling.
int fma_chains(FmaIsa isa);
// Nominal FP32 FLOP per cycle of a core with `ports` FMA units of this ISA
// (lanes x 2 FLOP per FMA x ports): AVX2 with 2 ports 32, AVX-512 with 2 ports 64.
int fma_nominal_flop_per_cycle(FmaIsa isa, int ports);
const char* fma_isa_name(FmaIsa isa);

// Picks the widest unit the CPU has. `force` (the MTRANK_CPU_PEAK_ISA
// environment variable: "avx2" or "avx512", case-insensitive) selects a
// narrower or equal unit when the CPU has it; anything else, or a unit the CPU
// lacks, is ignored. Sets *forced when `force` was honoured.
FmaIsa pick_fma_isa(bool has_avx512f, bool has_avx2_fma, const char* force, bool* forced);

// The unit of this CPU that pick_fma_isa chooses, honouring MTRANK_CPU_PEAK_ISA.
FmaIsa cpu_fma_isa(bool* forced);

// Runs fma_chains(isa) independent FMA chains on `isa` for about `seconds`.
// Returns GFLOP/s, the best over sub-millisecond laps (a shared core loses
// laps to other processes; the best lap is its own speed); 0 for
// FmaIsa::kNone. The CPU must have `isa`.
double fma_peak_gflops(FmaIsa isa, double seconds);

// fma_peak_gflops(cpu_fma_isa(), seconds), naming the unit used.
double cpu_peak_gflops(double seconds, const char** unit);

// The core's clock in GHz while running scalar code, measured with a chain of
// dependent integer multiplies (3 cycles each) for about `seconds`, best lap:
// turbo is counted, unlike the TSC. A core that lowers its clock for wide
// vector code runs the FMA loop slower than this. 0 where not measurable
// (not x86-64).
double cpu_clock_ghz(double seconds);

}  // namespace mtrank
