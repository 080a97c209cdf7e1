#include "train/thread_governor.h"

#include <algorithm>
#include <numeric>

namespace mtrank::train {

namespace {
double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }
}  // namespace

int ThreadGovernor::next() const {
  if (all_ <= 1) return 1;
  if (step_ < kProbe) return 1;
  if (step_ < 2 * kProbe) return all_;
  return chosen_;
}

void ThreadGovernor::took(double seconds) {
  const int used = next();
  (used == 1 ? steps_on_one_ : steps_on_all_) += 1;
  if (all_ <= 1) return;
  // The first step of each probe is not counted: it pays for the switch
  // (waking or parking the pool's threads, caches filled by other cores).
  if (step_ > 0 && step_ < kProbe) one_.push_back(seconds);
  else if (step_ > kProbe && step_ < 2 * kProbe) many_.push_back(seconds);
  // The mean, not the median: under load a few steps take several times the
  // others (a time slice lost at a region's end), and throughput is the total.
  if (step_ + 1 == 2 * kProbe) {
    const int previous = chosen_;
    chosen_ = mean(many_) < mean(one_) ? all_ : 1;
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
