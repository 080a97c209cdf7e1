#include "train/thread_governor.h"

#include <algorithm>
#include <numeric>

namespace mtrank::train {

namespace {
double mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}
}  // namespace

int ThreadGovernor::next() const {
  if (all_ <= 1 || warmup_left_ > 0) return 1;
  if (step_ < kProbe) return 1;
  if (step_ < 2 * kProbe) return all_;
  return chosen_;
}

void ThreadGovernor::took(double seconds) {
  const int used = next();
  (used == 1 ? steps_on_one_ : steps_on_all_) += 1;
  if (all_ <= 1) return;
  if (warmup_left_ > 0) {
    --warmup_left_;
    return;
  }
  // The first step of each probe is not counted: it pays for the switch
  // (waking or parking the pool's threads, caches filled by other cores).
  if (step_ > 0 && step_ < kProbe) one_.push_back(seconds);
  else if (step_ > kProbe && step_ < 2 * kProbe) many_.push_back(seconds);
  // The mean, not the median: under load a few steps take several times the
  // others (a time slice lost at a region's end), and throughput is the total.
  // The probe on all threads stops at once when one of its steps (the first
  // included) takes over 2 one-thread steps, or when its steps took longer
  // than the whole one-thread probe: under load a step on all threads can
  // take 5 to 8 one-thread steps, and the probe then cost a third of an epoch.
  const double one_mean = mean(one_), one_total = one_mean * static_cast<double>(kProbe - 1);
  const bool probing_all = step_ >= kProbe && step_ + 1 < 2 * kProbe;
  const bool lost_early = probing_all && (seconds > 2 * one_mean ||
                                          std::accumulate(many_.begin(), many_.end(), 0.0) > one_total);
  if (step_ + 1 == 2 * kProbe || lost_early) {
    const int previous = chosen_;
    chosen_ = !lost_early && mean(many_) < mean(one_) ? all_ : 1;
    if (lost_early) step_ = 2 * kProbe - 1;  // the period goes on from the probe's end
    period_ = decided_ && chosen_ == previous ? std::min(2 * period_, kLongestPeriod) : kPeriod;
    decided_ = true;
  }
  if (++step_ >= period_) {
    step_ = 0;
    one_.clear();
    many_.clear();
  }
}

}  // namespace mtrank::train
