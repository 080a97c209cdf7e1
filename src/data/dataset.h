#pragma once
// Featurized rows in flat columnar arrays, ready to hand to the model without
// per-row objects, plus ingestion from text files and a binary cache.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"

namespace mtrank::data {

class Preprocessor;

class FeaturizedData {
 public:
  FeaturizedData() = default;
  FeaturizedData(int num_categorical, int num_bags, int num_dense, int num_tasks);

  std::int64_t rows() const { return rows_; }
  int num_categorical() const { return num_categorical_; }
  int num_bags() const { return num_bags_; }
  int num_dense() const { return num_dense_; }
  int num_tasks() const { return num_tasks_; }

  // Row-major arrays: [rows x num_categorical], [rows x num_dense], [rows x num_tasks].
  std::vector<std::int64_t> categorical;
  std::vector<float> dense;
  std::vector<float> labels;
  std::vector<float> mask;  // 1 = the row counts for that task
  // Multi-hot bags in CSR form: bag (row r, field f) holds ids
  // bag_ids[bag_offsets[r*num_bags+f] .. bag_offsets[r*num_bags+f+1]).
  std::vector<std::int64_t> bag_offsets = {0};
  std::vector<std::int64_t> bag_ids;
  std::vector<float> bag_weights;  // 1 for sum pooling, 1/len for mean pooling
  std::vector<std::uint64_t> groups;  // per row: hash of data.group_column (empty if none), for GAUC

  // Append protocol used by Preprocessor::transform: begin, write, then commit or roll back.
  struct Mark {
    std::size_t categorical, dense, labels, bag_offsets, bag_ids, groups;
  };
  Mark mark() const {
    return {categorical.size(), dense.size(), labels.size(), bag_offsets.size(), bag_ids.size(), groups.size()};
  }
  void rollback(const Mark& m);
  void commit_row() { ++rows_; }

  void reserve(std::int64_t rows);
  // Keeps only rows [begin, end): used for tests and small subsets.
  FeaturizedData slice(std::int64_t begin, std::int64_t end) const;
  // Rows rows[0..n), in that order.
  FeaturizedData select(const std::int64_t* rows, std::int64_t n) const;
  // Appends `other`'s rows (the same shape; both with or both without groups).
  void append(const FeaturizedData& other);
  // Bytes the arrays hold, and the bytes they have allocated (capacity: up to
  // twice as much while vectors grow by doubling).
  std::uint64_t bytes() const;
  std::uint64_t capacity_bytes() const;
  // No rows, the arrays' capacity kept (a buffer refilled again and again).
  void clear();
  void shrink_to_fit();  // capacity down to the rows held
  // Capacity for `rows` rows with `bag_entries` bag ids in all.
  void reserve(std::int64_t rows, std::int64_t bag_entries);

  void save(const std::string& path) const;  // atomic: temporary file, then rename
  // Throws DataError if corrupt: sizes, offsets, the checksum, and (if
  // embedding_rows >= 0) every id against the table are checked.
  static FeaturizedData load(const std::string& path, std::int64_t embedding_rows = -1);

 private:
  std::int64_t rows_ = 0;
  int num_categorical_ = 0, num_bags_ = 0, num_dense_ = 0, num_tasks_ = 0;
};

struct IngestStats {
  std::int64_t rows = 0;
  std::int64_t skipped = 0;    // bad rows skipped by policy
  double seconds = 0;
  std::uint64_t bytes = 0;     // decompressed bytes parsed
  bool from_cache = false;
};

// The functions below read a data set: one file or several read in turn as
// one log (FileList: paths or glob patterns, data::expand_files).

// Replaces the patterns of data.train, val and test by the files they match,
// once per run: fitting, featurizing and the caches then read the same files
// even if a matching file appears meanwhile, and the model's config.toml
// names the files it was trained on.
void expand_data_sets(DataConfig& data);

// Reads and featurizes a whole data set (streaming). Labels are optional when
// `require_labels` is false. Bad rows follow config.data.on_bad_row.
// With `allow_skip` false, a bad row is an error whatever data.on_bad_row says
// (predict: its output rows must line up with the input rows).
FeaturizedData featurize_file(const Preprocessor& pre, const FileList& files, bool require_labels,
                              IngestStats* stats = nullptr, bool show_progress = false, bool allow_skip = true);

// The same streaming pass, for data of any size: whenever the rows featurized
// so far hold `spill_bytes` or more, `spill` receives them (and should move
// them out, e.g. to disk: data/block_store.h) and featurizing continues into an
// empty FeaturizedData. Returns what was never spilled. With `spill_bytes`
// 0 every `block_rows` rows are spilled, so nothing stays in memory.
FeaturizedData featurize_file_spilling(const Preprocessor& pre, const FileList& files, bool require_labels,
                                       std::uint64_t spill_bytes, std::int64_t block_rows,
                                       const std::function<void(FeaturizedData&)>& spill, IngestStats* stats,
                                       bool show_progress);

// Fits `pre` on the training data, or loads the fit from config.data.cache_dir
// when the files and config are unchanged. Returns true if it came from the cache.
bool fit_preprocessing(Preprocessor& pre, const FileList& train_files);

// Same as featurize_file, but reuses a binary cache in config.data.cache_dir when the files,
// their sizes and mtimes, and the fitted preprocessing are unchanged.
FeaturizedData load_featurized(const Preprocessor& pre, const FileList& files, bool require_labels,
                               IngestStats* stats = nullptr, bool show_progress = false);

// Per task, how the training rows split: labelled positive / negative
// (binary) or labelled (regression), and rows that leave the task's loss
// (label missing, or outside its sample space).
struct LabelCounts {
  std::int64_t positive = 0, negative = 0, labelled = 0, unlabelled = 0;
};
std::vector<LabelCounts> count_labels(const FeaturizedData& data);

// The `k` most frequent raw values of `column` in a data set, most frequent first
// (for an error that shows the user what a label column really holds).
std::vector<std::pair<std::string, std::int64_t>> most_frequent_values(const FileList& files, char delimiter,
                                                                       const std::string& column, std::size_t k);

// Refuses (ConfigError) a binary task with no positive or no negative
// training rows, or a task with no labelled rows, naming its most frequent
// values so a typo in `positive` shows; returns one line per task to report.
std::string check_label_counts(const Config& config, const FileList& train_files, const FeaturizedData& train);
std::string check_label_counts(const Config& config, const FileList& train_files,
                               const std::vector<LabelCounts>& counts);

}  // namespace mtrank::data
