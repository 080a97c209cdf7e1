#pragma once
// The run configuration, parsed from TOML into plain structs (no torch here).
// Every key is documented in docs/config.md. Unknown keys and wrong types are
// errors that name the key and its line, so typos never pass silently.
#include <cstdint>
#include <string>
#include <vector>

namespace mtrank {

enum class FeatureType { kNumeric, kCategorical, kMultiHot, kCross };
enum class NumericTransform { kQuantile, kStandardize, kNone };
enum class MissingPolicy { kMean, kZero, kError };
enum class Pooling { kSum, kMean };
enum class TaskType { kBinary, kRegression };
enum class LabelMissing { kSkip, kError };
enum class BadRowPolicy { kError, kSkip };

struct FeatureConfig {
  std::string name;  // input column; for a cross feature, its own name
  FeatureType type = FeatureType::kCategorical;
  // categorical, multi_hot: a vocabulary of values seen >= min_count times, or hashing.
  std::int64_t min_count = 1;
  std::int64_t hash_buckets = 0;  // > 0 means hash into this many buckets (required for cross)
  std::string separator = "|";    // multi_hot
  Pooling pooling = Pooling::kMean;
  // numeric
  NumericTransform transform = NumericTransform::kQuantile;
  bool log1p = false;
  std::int64_t quantiles = 100;
  MissingPolicy missing = MissingPolicy::kMean;
  // cross: the categorical columns whose values are crossed
  std::vector<std::string> columns;
};

struct TaskConfig {
  std::string name;
  TaskType type = TaskType::kBinary;
  std::string column;
  std::vector<std::string> positive;  // binary: positive values; empty = column holds 0/1
  double weight = 1.0;
  // Sample space: the task only counts rows where `where_column` is one of `where_equals`.
  std::string where_column;
  std::vector<std::string> where_equals;
  LabelMissing missing = LabelMissing::kSkip;
};

struct DataConfig {
  std::string train, val, test;
  char delimiter = 0;  // 0 = by extension
  std::vector<std::string> missing_values = {""};  // numeric fields / labels that mean "missing"
  BadRowPolicy on_bad_row = BadRowPolicy::kError;
  std::int64_t max_bad_rows = 1000;
  std::string cache_dir;  // "" = no binary cache
  std::uint64_t hash_seed = 0x6d7472616e6bULL;
  std::int64_t quantile_sample = 1 << 20;  // reservoir size per numeric column when fitting
};

struct ModelConfig {
  std::string type = "mmoe";
  std::int64_t embedding_dim = 8;
  std::int64_t num_experts = 4;
  std::vector<std::int64_t> expert_hidden = {32};
  std::vector<std::int64_t> tower_hidden = {16};
  double dropout = 0.0;
};

struct TrainConfig {
  std::string optimizer = "adam";  // adam | adagrad
  double learning_rate = 1e-3;
  double weight_decay = 0.0;
  std::int64_t batch_size = 1024;
  std::int64_t epochs = 10;
  std::int64_t patience = 3;  // early stopping: epochs without validation improvement
  std::uint64_t seed = 42;
  std::int64_t threads = 0;  // 0 = all cores
  std::int64_t eval_batch_size = 8192;
};

struct Config {
  DataConfig data;
  std::vector<FeatureConfig> features;
  std::vector<TaskConfig> tasks;
  ModelConfig model;
  TrainConfig train;
  std::string source;  // file name used in error messages
  std::string text;    // the TOML text, stored in model directories
};

// Parses and validates; throws ConfigError naming the source, key and line.
Config parse_config(const std::string& text, const std::string& source_name);
Config load_config(const std::string& path);

const char* to_string(FeatureType t);
const char* to_string(TaskType t);

}  // namespace mtrank
