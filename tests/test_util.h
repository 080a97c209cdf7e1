#pragma once
// Helpers for tests: temporary files that clean up after themselves.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "data/synth.h"

namespace mtrank::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("mtrank-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream out(file(name), std::ios::binary);
    out << text;
    return file(name);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Writes a synthetic impression log (same generative world for both files) to
// dir/train.csv (the first train_rows rows) and dir/test.csv (the rest).
inline void write_ranking_split(const TempDir& dir, const data::RankingSynthOptions& options, long train_rows) {
  data::write_ranking_synthetic(options, dir.file("all.csv"));
  std::ifstream in(dir.file("all.csv"));
  std::ofstream train(dir.file("train.csv")), test(dir.file("test.csv"));
  std::string line;
  std::getline(in, line);
  train << line << "\n";
  test << line << "\n";
  for (long i = 0; std::getline(in, line); ++i) (i < train_rows ? train : test) << line << "\n";
}

}  // namespace mtrank::testing
