#pragma once
// Whether the next training step runs on all of its threads or on one
// (issue 15). On an idle machine two threads train the census MMoE faster
// than one; when another process holds a core, two are several times slower
// (each parallel region waits for the thread that shares its core). So every
// period of steps starts by timing kProbe steps on one thread and kProbe on
// all, and runs the rest of the period on the one with the lower mean step
// time. The trainer uses it only where a step gives the same bits on one
// thread and on all (checked on the first batch), so the choice changes the
// speed, never the model.
#include <cstdint>
#include <vector>

namespace mtrank::train {

class ThreadGovernor {
 public:
  static constexpr int kProbe = 9;  // the first of each is not timed
  // A period starts at kPeriod steps and doubles, up to kLongestPeriod, each
  // time the probes choose as the last ones did: a steady machine is probed
  // ever less often, a change brings the next probe back to kPeriod.
  static constexpr std::int64_t kPeriod = 256, kLongestPeriod = 4096;
  // Steps on one thread before the first probe: a run's first steps pay for
  // allocations and cold caches, which made one thread look slow once.
  static constexpr std::int64_t kWarmup = 16;

  explicit ThreadGovernor(int threads) : all_(threads), chosen_(threads) {}
  // The thread count for the next step.
  int next() const;
  // The step that next() chose took `seconds`.
  void took(double seconds);
  int threads() const { return all_; }
  std::int64_t steps_on_one() const { return steps_on_one_; }
  std::int64_t steps_on_all() const { return steps_on_all_; }

 private:
  int all_, chosen_;
  std::int64_t step_ = 0;  // within the period
  std::int64_t period_ = kPeriod;
  bool decided_ = false;
  std::int64_t warmup_left_ = kWarmup;  // a choice was made before (the first one does not lengthen the period)
  std::vector<double> one_, many_;
  std::int64_t steps_on_one_ = 0, steps_on_all_ = 0;
};

}  // namespace mtrank::train
