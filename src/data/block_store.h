#pragma once
// A featurized data set on disk in blocks of rows, for training data larger
// than memory: DIR/block-NNNNNN.bin (each one FeaturizedData::save file, with
// its own checksum, read and checked alone) and DIR/manifest.json (shape, rows
// per block, per-task label statistics), written last, so a store without a
// manifest is incomplete and never read. Written in one streaming pass
// (featurize_file_spilling), read a block at a time (data/training_rows.h).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace mtrank::data {

class BlockStore {
 public:
  // An empty store in `dir`, replacing whatever was there (the directory is
  // created; its old blocks and manifest are removed).
  static BlockStore create(const std::string& dir, int num_categorical, int num_bags, int num_dense, int num_tasks);
  // A finished store. Throws DataError naming the directory if the manifest is
  // missing (an unfinished store), unreadable, or disagrees with the blocks' sizes.
  static BlockStore open(const std::string& dir);

  void add(const FeaturizedData& block);  // written atomically as the next block
  void finish();                          // writes the manifest: the store is complete

  const std::string& dir() const { return dir_; }
  std::int64_t rows() const { return rows_; }
  std::size_t blocks() const { return block_rows_.size(); }
  std::int64_t block_rows(std::size_t i) const { return block_rows_[i]; }
  std::uint64_t bytes() const { return bytes_; }  // featurized bytes of all blocks, as FeaturizedData::bytes counts
  std::int64_t bag_entries() const { return bag_entries_; }  // multi-hot ids in all blocks
  // Block i, checked (FeaturizedData::load: sizes, offsets, checksum, ids
  // against embedding_rows when >= 0); its row count against the manifest's.
  FeaturizedData read(std::size_t i, std::int64_t embedding_rows = -1) const;
  // Per task: how the rows split (count_labels), and the mask-weighted label
  // sum and weight sum (the task's weighted label mean, for initial logits).
  const std::vector<LabelCounts>& label_counts() const { return counts_; }
  const std::vector<double>& label_sums() const { return label_sums_; }
  const std::vector<double>& weight_sums() const { return weight_sums_; }
  int num_categorical() const { return shape_[0]; }
  int num_bags() const { return shape_[1]; }
  int num_dense() const { return shape_[2]; }
  int num_tasks() const { return shape_[3]; }

 private:
  std::string block_path(std::size_t i) const;
  std::string dir_;
  int shape_[4] = {0, 0, 0, 0};
  std::int64_t rows_ = 0;
  std::uint64_t bytes_ = 0;
  std::int64_t bag_entries_ = 0;
  std::vector<std::int64_t> block_rows_;
  std::vector<LabelCounts> counts_;
  std::vector<double> label_sums_, weight_sums_;
};

// Half the memory this process may use: the machine's physical memory, or
// its cgroup's limit (memory.max, v2; memory.limit_in_bytes, v1) if lower.
std::uint64_t default_memory_budget_bytes();
// data.memory_budget_mb in bytes (0: default_memory_budget_bytes()).
std::uint64_t memory_budget_bytes(const DataConfig& data);

// A training set: in memory, or (when featurized it passes the budget) a
// finished BlockStore on disk. `temporary`: the store is this run's alone
// (no cache_dir): remove it when done.
struct TrainingSet {
  FeaturizedData in_memory;
  std::optional<BlockStore> blocks;
  bool temporary = false;
  std::int64_t rows() const { return blocks ? blocks->rows() : in_memory.rows(); }
  std::vector<LabelCounts> label_counts() const { return blocks ? blocks->label_counts() : count_labels(in_memory); }
};

// Featurizes the training data in one streaming pass. The rows stay in memory
// while they hold at most `budget_bytes`; past that, what is in memory and
// every later row go to a BlockStore (0: every row, as `train --stream`). The
// store lives in config.data.cache_dir, keyed like the binary cache, and is
// reused by later runs (`store_suffix` appended to its name: one per
// data-parallel rank); without a cache_dir, in `temporary_dir`. In memory,
// the binary cache is used as load_featurized uses it.
TrainingSet load_training_set(const Preprocessor& pre, const FileList& files, std::uint64_t budget_bytes,
                              const std::string& temporary_dir, const std::string& store_suffix, IngestStats* stats,
                              bool show_progress);

}  // namespace mtrank::data
