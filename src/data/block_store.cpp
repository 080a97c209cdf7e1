#include "data/block_store.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/error.h"

namespace mtrank::data {

namespace fs = std::filesystem;

BlockStore BlockStore::create(const std::string& dir, int num_categorical, int num_bags, int num_dense, int num_tasks) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw DataError(dir + ": cannot create the directory for featurized blocks: " + ec.message());
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "manifest.json" || name.rfind("block-", 0) == 0) fs::remove(entry.path(), ec);
  }
  BlockStore s;
  s.dir_ = dir;
  s.shape_[0] = num_categorical;
  s.shape_[1] = num_bags;
  s.shape_[2] = num_dense;
  s.shape_[3] = num_tasks;
  s.counts_.assign(static_cast<std::size_t>(num_tasks), {});
  s.label_sums_.assign(static_cast<std::size_t>(num_tasks), 0.0);
  s.weight_sums_.assign(static_cast<std::size_t>(num_tasks), 0.0);
  return s;
}

std::string BlockStore::block_path(std::size_t i) const {
  char name[32];
  std::snprintf(name, sizeof name, "block-%06zu.bin", i);
  return (fs::path(dir_) / name).string();
}

void BlockStore::add(const FeaturizedData& block) {
  block.save(block_path(block_rows_.size()));
  block_rows_.push_back(block.rows());
  rows_ += block.rows();
  bytes_ += block.bytes();
  bag_entries_ += static_cast<std::int64_t>(block.bag_ids.size());
  const std::vector<LabelCounts> c = count_labels(block);
  const std::size_t T = static_cast<std::size_t>(shape_[3]);
  for (std::size_t t = 0; t < T; ++t) {
    counts_[t].positive += c[t].positive;
    counts_[t].negative += c[t].negative;
    counts_[t].labelled += c[t].labelled;
    counts_[t].unlabelled += c[t].unlabelled;
  }
  for (std::size_t i = 0; i < block.labels.size(); ++i)
    if (block.mask[i] > 0) {
      label_sums_[i % T] += static_cast<double>(block.mask[i]) * block.labels[i];
      weight_sums_[i % T] += block.mask[i];
    }
}

void BlockStore::finish() {
  nlohmann::json tasks = nlohmann::json::array();
  for (std::size_t t = 0; t < counts_.size(); ++t)
    tasks.push_back({{"positive", counts_[t].positive}, {"negative", counts_[t].negative},
                     {"labelled", counts_[t].labelled}, {"unlabelled", counts_[t].unlabelled},
                     {"label_sum", label_sums_[t]}, {"weight_sum", weight_sums_[t]}});
  // Version 2: blocks in the cache format of 4-byte ids; a version 1 store is featurized again.
  const nlohmann::json m{{"format", "mtrank-blocks"}, {"version", 2},
                         {"shape", {shape_[0], shape_[1], shape_[2], shape_[3]}},
                         {"rows", rows_}, {"bytes", bytes_}, {"bag_entries", bag_entries_},
                         {"block_rows", block_rows_}, {"tasks", tasks}};
  write_file_atomic((fs::path(dir_) / "manifest.json").string(), m.dump());
}

BlockStore BlockStore::open(const std::string& dir) {
  const std::string path = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(path);
  if (!in) throw DataError(dir + ": no manifest.json: not a finished store of featurized blocks");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json m = nlohmann::json::parse(text.str(), nullptr, false);
  BlockStore s;
  s.dir_ = dir;
  try {
    if (m.is_discarded() || m.at("format") != "mtrank-blocks") throw std::runtime_error("format");
    if (m.at("version") != 2)
      throw DataError(dir + ": featurized blocks of another mtrank version (" + m.at("version").dump() +
                      ", this one reads 2)");
    for (int i = 0; i < 4; ++i) s.shape_[i] = m.at("shape").at(static_cast<std::size_t>(i)).get<int>();
    s.rows_ = m.at("rows").get<std::int64_t>();
    s.bytes_ = m.at("bytes").get<std::uint64_t>();
    s.bag_entries_ = m.at("bag_entries").get<std::int64_t>();
    s.block_rows_ = m.at("block_rows").get<std::vector<std::int64_t>>();
    for (const auto& t : m.at("tasks")) {
      s.counts_.push_back({t.at("positive").get<std::int64_t>(), t.at("negative").get<std::int64_t>(),
                           t.at("labelled").get<std::int64_t>(), t.at("unlabelled").get<std::int64_t>()});
      s.label_sums_.push_back(t.at("label_sum").get<double>());
      s.weight_sums_.push_back(t.at("weight_sum").get<double>());
    }
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError(path + ": corrupt manifest of featurized blocks (" + e.what() + "); delete " + dir + " to rebuild");
  }
  std::int64_t total = 0;
  for (std::size_t i = 0; i < s.block_rows_.size(); ++i) {
    total += s.block_rows_[i];
    if (!fs::exists(s.block_path(i)))
      throw DataError(s.block_path(i) + ": a featurized block is missing; delete " + dir + " to rebuild");
  }
  if (total != s.rows_ || s.counts_.size() != static_cast<std::size_t>(s.shape_[3]))
    throw DataError(path + ": corrupt manifest of featurized blocks (row counts); delete " + dir + " to rebuild");
  return s;
}

FeaturizedData BlockStore::read(std::size_t i, std::int64_t embedding_rows) const {
  FeaturizedData d = FeaturizedData::load(block_path(i), embedding_rows);
  if (d.rows() != block_rows_[i] || d.num_categorical() != shape_[0] || d.num_bags() != shape_[1] ||
      d.num_dense() != shape_[2] || d.num_tasks() != shape_[3])
    throw DataError(block_path(i) + ": this featurized block does not match its store's manifest; delete " + dir_ +
                    " to rebuild");
  return d;
}

namespace {
// The lowest memory limit on this process's cgroup and its ancestors
// (/proc/self/cgroup: "0::/path" for v2, "N:...memory...:/path" for v1).
std::uint64_t cgroup_memory_limit() {
  std::uint64_t limit = ~std::uint64_t{0};
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line)) {
    const std::size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    fs::path path = line.substr(b + 1);
    std::string root, file;
    if (controllers.empty()) {
      root = "/sys/fs/cgroup";
      file = "memory.max";
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      root = "/sys/fs/cgroup/memory";
      file = "memory.limit_in_bytes";
    } else {
      continue;
    }
    for (;;) {  // the cgroup and every ancestor up to the root
      std::ifstream in(fs::path(root) / path.relative_path() / file);
      std::string text;
      if (in >> text && !text.empty() && std::isdigit(static_cast<unsigned char>(text[0])))
        limit = std::min<std::uint64_t>(limit, std::stoull(text));
      if (path == path.root_path() || path.empty()) break;
      path = path.parent_path();
    }
  }
  return limit;
}
}  // namespace

std::uint64_t default_memory_budget_bytes() {
  const std::uint64_t physical =
      static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(::sysconf(_SC_PAGE_SIZE));
  return std::min(physical, cgroup_memory_limit()) / 2;
}

std::uint64_t memory_budget_bytes(const DataConfig& data) {
  return data.memory_budget_mb > 0 ? static_cast<std::uint64_t>(data.memory_budget_mb) << 20
                                   : default_memory_budget_bytes();
}

}  // namespace mtrank::data
