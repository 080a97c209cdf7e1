#pragma once
// A small sequential model for the serving tests: trained briefly on 200
// users whose items (external ids 1001..1040) mostly follow a chain.
#include <random>
#include <sstream>
#include <string>

#include "config/config.h"
#include "test_util.h"
#include "train/sequential_run.h"

namespace mtrank::testing {

inline std::string trained_sequential_model(const TempDir& dir, const std::string& name = "model") {
  std::mt19937 rng(5);
  std::ostringstream log;
  for (int u = 0; u < 200; ++u) {
    int item = static_cast<int>(rng() % 40) + 1;
    for (int e = 0; e < 20; ++e) {
      log << u << ' ' << 1000 + item << '\n';
      item = rng() % 10 < 8 ? (7 * item + 3) % 40 + 1 : static_cast<int>(rng() % 40) + 1;
    }
  }
  train::SequentialRunRequest request;
  request.config = parse_config(R"(
[sequential]
widths = [4, 8, 16]
blocks = 1
max_len = 16
[train]
batch_size = 32
max_steps = 10
eval_every_steps = 10
)", "seq.toml");
  request.config.data.train = dir.write("log.txt", log.str());
  request.out = dir.file(name);
  request.show_progress = false;
  train::run_sequential_training(request);
  return request.out;
}

}  // namespace mtrank::testing
