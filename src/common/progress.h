#pragma once
// A terminal progress bar with rate and ETA. Draws only when stderr is a
// terminal (logs in CI stay clean); finish() always prints one summary line
// unless quiet.
#include <chrono>
#include <cstdint>
#include <string>

namespace mtrank {

class Progress {
 public:
  // total = 0 means unknown (no ETA, no bar).
  Progress(std::string label, std::uint64_t total, std::string unit, bool enabled = true);
  ~Progress();
  void update(std::uint64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");
  double elapsed_seconds() const;

 private:
  void draw(std::uint64_t done, const std::string& extra, bool final_line);
  std::string label_, unit_;
  std::uint64_t total_;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::uint64_t last_done_ = 0;
};

// "1.23M", "45.6k" style.
std::string human_count(double v);
std::string human_seconds(double s);

}  // namespace mtrank
