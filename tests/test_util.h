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

// A new temporary directory holding a synthetic impression log of `rows` rows
// (same generative world for both files): train.csv has the first train_rows
// rows, test.csv the rest. The caller owns (deletes) it.
inline TempDir* new_ranking_log_dir(std::int64_t rows, std::uint64_t seed, int users, int items, long train_rows) {
  auto* dir = new TempDir();
  data::RankingSynthOptions options;
  options.rows = rows;
  options.seed = seed;
  options.users = users;
  options.items = items;
  data::write_ranking_synthetic(options, dir->file("all.csv"));
  std::ifstream in(dir->file("all.csv"));
  std::ofstream train(dir->file("train.csv")), test(dir->file("test.csv"));
  std::string line;
  std::getline(in, line);
  train << line << "\n";
  test << line << "\n";
  for (long i = 0; std::getline(in, line); ++i) (i < train_rows ? train : test) << line << "\n";
  return dir;
}

}  // namespace mtrank::testing
