#pragma once
// Fitted preprocessing: turns a raw record (strings) into model inputs, exactly
// the same way at training, evaluation, prediction and serving time.
//
// Output layout of one row (see FeaturizedData):
//   - one id per categorical or cross field, already offset into ONE fused
//     embedding table (so the model does a single lookup for all fields);
//   - one bag of ids per multi-hot field (CSR), with pooling weights;
//   - one float per numeric field;
//   - one label and one mask (1 = counts in this task's loss/metrics) per task.
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"

namespace mtrank::data {

// Category value -> id. Id 0 is the out-of-vocabulary id; known values are 1..size()-1,
// ordered by training count (descending), ties by value, so ids are deterministic.
// Value -> id (1-based) of a vocabulary whose values live in a deque:
// open addressing with linear probing over 32-byte slots that hold the
// value's hash, its id and, for values of up to 19 bytes, the value itself,
// so finding a short value reads one cache line. std::unordered_map<
// std::string_view> read three (bucket, node, the string) and took 78% of
// fitting 26 fields of about 70,000 values each (perf, docs/benchmarks.md).
class ValueIndex {
 public:
  // 0 if absent. `values`: the vocabulary's values, id i at values[i - 1].
  std::int64_t find(std::string_view value, const std::deque<std::string>& values) const;
  void insert(std::string_view value, std::int64_t id);  // value absent; id >= 1
  void clear();
  void reserve(std::size_t n);

 private:
  static constexpr std::size_t kInline = 19;
  static constexpr std::uint8_t kLong = 255;  // the value is longer: compare with values[id - 1]
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t id = 0;  // 0: empty
    std::uint8_t length = 0;
    char bytes[kInline] = {};
  };
  void grow(std::size_t slots);
  std::vector<Slot> slots_;
  std::size_t used_ = 0;
};

class Vocabulary {
 public:
  Vocabulary() = default;
  Vocabulary(const Vocabulary& other) { *this = other; }
  Vocabulary& operator=(const Vocabulary& other);
  Vocabulary(Vocabulary&&) = default;
  Vocabulary& operator=(Vocabulary&&) = default;

  void count(std::string_view value);              // while fitting
  // Keeps values seen >= min_count times. With a base vocabulary (warm start), its
  // values come first in their old order whatever their count, so old ids stay valid.
  void finalize(std::int64_t min_count, const Vocabulary* base = nullptr);
  std::int64_t lookup(std::string_view value) const { return ids_.find(value, values_); }  // 0 if unknown
  std::int64_t size() const { return static_cast<std::int64_t>(values_.size()) + 1; }  // incl. OOV
  const std::deque<std::string>& values() const { return values_; }  // id i+1 is values()[i]
  void assign(std::vector<std::string> values);  // from a saved model

 private:
  std::deque<std::string> values_;  // id i is values_[i - 1]; ids_ compares long values against them
  ValueIndex ids_;
  std::vector<std::int64_t> counts_;  // while fitting, indexed like values_
};

// Maps a value to (i-1)/(n-1) for the i-th of n training quantiles (Wide & Deep).
// Boundaries are deduplicated, so heavy ties (e.g. 95% zeros) form one bucket.
class QuantileNormalizer {
 public:
  void fit(std::vector<double> sample, std::int64_t num_quantiles);
  double transform(double x) const;
  const std::vector<double>& boundaries() const { return boundaries_; }
  void set_boundaries(std::vector<double> b) { boundaries_ = std::move(b); }

 private:
  std::vector<double> boundaries_;
};

// A record that cannot be featurized: which input column and why.
struct RowError {
  int column;  // 0-based input column index, -1 if not about one column
  std::string message;
};

class FeaturizedData;

// Column indices of one file's header for the preprocessor's features and labels.
struct ColumnBinding {
  std::size_t num_columns = 0;
  std::vector<int> categorical;              // per categorical/cross field: column, or -1 for cross
  std::vector<std::vector<int>> cross;       // per categorical/cross field: crossed columns
  std::vector<int> bag;                      // per multi-hot field
  std::vector<int> dense;                    // per numeric field
  std::vector<int> label;                    // per task; -1 if the file has no label column
  std::vector<int> where;                    // per task: sample-space column, -1 if none
  int group = -1;                            // data.group_column, -1 if none or absent
  int weight = -1;                           // data.weight_column, -1 if none or absent
};

class Preprocessor {
 public:
  explicit Preprocessor(const Config& config);

  // Fits vocabularies, quantiles and moments on the training data (one streaming
  // pass over its files, data::expand_files).
  // With a base (warm start from an older model), vocabularies grow: the base's
  // values keep their ids and new values are appended.
  void fit(const FileList& train_files, const Preprocessor* base = nullptr);

  nlohmann::json to_json() const;
  void load_json(const nlohmann::json& j);  // throws ModelError on mismatch with the config

  // Finds the needed columns in a header; throws DataError naming a missing column.
  // Label columns may be absent when `require_labels` is false (prediction).
  ColumnBinding bind(const std::vector<std::string>& header, const std::string& path, bool require_labels) const;

  // Remembers, per categorical and numeric feature, the last raw value and its
  // featurized result, so a value repeated from row to row is not looked up or
  // parsed again. Serving passes one through a request's candidates: a
  // context value (the same for every candidate) is featurized once. The
  // remembered views must stay valid while the memo is used: a request's
  // parsed values do; a file reader's line buffer, reused per row, does not.
  struct Memo {
    std::vector<std::string_view> categorical_raw, dense_raw;
    std::vector<std::int64_t> categorical_id;
    std::vector<float> dense_value;
  };

  // The features that read only some columns (a catalog's item columns), so
  // that part of a row is featurized once and copied into every row that
  // shares it: per categorical (and cross), multi-hot and numeric field, 1 if
  // each column the field reads is marked in `columns` (by the binding's
  // column index).
  struct FeatureSplit {
    std::vector<char> categorical, bag, dense;
  };
  FeatureSplit split_features(const ColumnBinding& b, const std::vector<char>& columns) const;
  // A row written in two parts, by a split:
  //   from == nullptr: the split's features from the fields, every other
  //     feature as 0 (an empty bag), so they are not read: a row's item side alone;
  //   from != nullptr: the split's features copied from row `row` of `from`
  //     (an item side written so before), every other feature from the fields.
  // The second gives exactly the row a whole transform would.
  struct SplitRow {
    const FeatureSplit* split = nullptr;
    const FeaturizedData* from = nullptr;
    std::int64_t row = 0;
  };

  // Appends one featurized row to `out`. Throws RowError; then `out` is unchanged.
  void transform(const ColumnBinding& b, const std::vector<std::string_view>& fields, FeaturizedData& out,
                 Memo* memo = nullptr, const SplitRow* split = nullptr) const;

  std::int64_t embedding_rows() const { return embedding_rows_; }
  int num_categorical() const { return static_cast<int>(categorical_.size()); }
  int num_bags() const { return static_cast<int>(bags_.size()); }
  int num_dense() const { return static_cast<int>(dense_.size()); }
  int num_tasks() const { return static_cast<int>(config_.tasks.size()); }
  const Config& config() const { return config_; }
  bool is_missing(std::string_view v) const;        // a missing feature value (data.missing_values)
  bool is_missing_label(std::string_view v) const;  // also data.missing_labels

  // Per-field info for reports.
  struct CategoricalField {
    FeatureConfig feature;
    Vocabulary vocab;  // unused when hashed
    std::int64_t offset = 0, size = 0;
  };
  struct DenseField {
    FeatureConfig feature;
    QuantileNormalizer quantiles;
    double mean = 0, stddev = 1;
  };
  const std::vector<CategoricalField>& categorical_fields() const { return categorical_; }
  const std::vector<CategoricalField>& bag_fields() const { return bags_; }
  const std::vector<DenseField>& dense_fields() const { return dense_; }
  const CategoricalField* find_field(const std::string& name) const;  // categorical, cross or multi-hot
  // Rewrites featurized rows as `mtrank serve` reads them: every bias feature
  // (position, device) missing. Categorical and numeric bias features; throws
  // DataError for a multi-hot one.
  void read_bias_as_missing(FeaturizedData& data) const;
  // The id a categorical field gives its empty value "" (what a bias feature reads at serving).
  std::int64_t empty_value_id(const CategoricalField& f) const { return category_id(f, ""); }

 private:
  static bool numeric_input(const FeatureConfig& f, std::string_view raw, double& x, std::string& why);
  // Throws ModelError naming `source` if a fitted statistic is not finite or a stddev not positive.
  void check_fitted(const std::string& source) const;
  std::int64_t category_id(const CategoricalField& f, std::string_view value) const;
  double dense_value(const DenseField& f, std::string_view raw, int column) const;
  void assign_offsets();

  Config config_;
  std::vector<CategoricalField> categorical_;  // categorical and cross features, config order
  std::vector<CategoricalField> bags_;         // multi-hot features
  std::vector<DenseField> dense_;              // numeric features
  std::int64_t embedding_rows_ = 0;
};

// Parses a finite float; returns false for junk, NaN or infinity.
bool parse_finite(std::string_view s, double& out);

// At most 40 bytes of a raw value for an error message, with control and
// non-ASCII bytes escaped (\xNN), so a message is always short, valid UTF-8.
std::string printable(std::string_view raw);

bool valid_utf8(std::string_view s);
std::string to_hex(std::string_view bytes);
std::string from_hex(std::string_view hex);  // throws ModelError on a malformed value

// For a "missing column" error: the closest header names to `wanted` first
// ("did you mean"), then every column of the header.
std::string describe_header(const std::vector<std::string>& header, const std::string& wanted);

}  // namespace mtrank::data
