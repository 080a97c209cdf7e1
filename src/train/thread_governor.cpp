#include "train/thread_governor.h"

#include <algorithm>

namespace mtrank::train {

namespace {
double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}
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
  if (step_ < kProbe) one_.push_back(seconds);
  else if (step_ < 2 * kProbe) many_.push_back(seconds);
  if (step_ + 1 == 2 * kProbe) chosen_ = median(many_) < median(one_) ? all_ : 1;
  if (++step_ == kPeriod) {
    step_ = 0;
    one_.clear();
    many_.clear();
  }
}

}  // namespace mtrank::train
