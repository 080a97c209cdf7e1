#pragma once
// `mtrank train --nproc-per-node N`: a small built-in launcher, like torchrun's
// for one machine. It starts N copies of this program as the workers of one
// data-parallel run with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT; rank 0 hosts the
// store), waits for them, and on the first worker that fails stops the others
// and returns that worker's exit code. Torch-free.
#include <chrono>
#include <string>
#include <vector>

namespace mtrank::train {

struct LaunchOptions {
  int workers = 2;
  // Arguments of each worker's command line (without the program name).
  std::vector<std::string> arguments;
  // After the first failure, how long the others get to stop on SIGTERM before SIGKILL.
  std::chrono::seconds grace{10};
};

// Runs the workers to completion. Returns 0 when all succeed; otherwise the
// first failing worker's exit code (128 + signal if a signal killed it), after
// printing which rank failed. Throws std::runtime_error if a worker cannot start.
int launch_local_workers(const LaunchOptions& options);

// A TCP port on the loopback interface that was free a moment ago.
int free_local_port();

}  // namespace mtrank::train
