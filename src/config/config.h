#pragma once
// The run configuration, parsed from TOML into plain structs (no torch here).
// Every key is documented in docs/config.md. Unknown keys and wrong types are
// errors that name the key and its line, so typos never pass silently.
#include <cstdint>
#include <map>
#include <string>
#include <variant>
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
  // Ordered categories read as numbers ("1 - 10%" -> 1, "11 - 23%" -> 2):
  // `value_map` gives each value its number, `value_order` numbers values 0,
  // 1, 2, ... in order. Stored as the map. A value not in it is a bad row.
  std::vector<std::pair<std::string, double>> value_map;
  std::int64_t quantiles = 100;
  MissingPolicy missing = MissingPolicy::kMean;
  // cross: the categorical columns whose values are crossed
  std::vector<std::string> columns;
  // A selection-bias feature (position in the list, device): read from the
  // training data, but always treated as missing when serving, where the
  // position is not known yet (YouTube's ranker). Not for cross features.
  bool bias = false;
  // A name that model components select fields by (model/model.h InputField):
  // "item", "user", "context", ... ("" = none). Bias features are in the
  // group "bias" as well.
  std::string group;
};

struct TaskConfig {
  std::string name;
  TaskType type = TaskType::kBinary;
  std::string column;
  std::vector<std::string> positive;  // binary: positive values; empty = column holds 0/1
  // Set when `positive` is one numeric comparison such as "> 0" or ">= 3": a
  // row is positive when its label (a number) satisfies it.
  std::string positive_op;  // "", ">", ">=", "<", "<=", "==", "!="
  double positive_threshold = 0;
  double weight = 1.0;
  double weight_gamma = 1.0;  // PLE schedule: weight at epoch t (0-based) = weight * weight_gamma^t
  // Sample space: the task only counts rows where `where_column` is one of `where_equals`.
  std::string where_column;
  std::vector<std::string> where_equals;
  LabelMissing missing = LabelMissing::kSkip;
  // Evaluation metrics beyond the task type's defaults, by name
  // (eval/metric_registry.h), e.g. "ndcg@10", "recall@20", "mrr".
  std::vector<std::string> metrics;
};

// The files of one data set: paths or glob patterns ("logs/day-*.csv.gz"),
// read in turn as one log (data::expand_files). Empty: no such data set.
// One path converts to it implicitly: the common data set of one file.
struct FileList : std::vector<std::string> {
  using std::vector<std::string>::vector;
  FileList() = default;
  FileList(std::vector<std::string> files) : std::vector<std::string>(std::move(files)) {}
  FileList(std::string path) {  // "": no file
    if (!path.empty()) push_back(std::move(path));
  }
  FileList(const char* path) : FileList(std::string(path)) {}
};

// A file list for messages: its entries joined by " + ", or for more than
// three the first and last with the count between.
std::string describe(const FileList& files);

struct DataConfig {
  FileList train, val, test;
  char delimiter = 0;  // 0 = by extension
  std::vector<std::string> missing_values = {""};  // numeric fields / labels that mean "missing"
  // Label values that mean "no label" on top of missing_values, so a missing
  // label never silently becomes a negative (docs/config.md).
  std::vector<std::string> missing_labels = {"", "NA", "N/A", "na", "n/a", "NaN", "nan", "null", "NULL", "None", "?"};
  BadRowPolicy on_bad_row = BadRowPolicy::kError;
  std::int64_t max_bad_rows = 1000;
  std::string cache_dir;  // "" = no binary cache
  // Training data larger than this, featurized, is streamed from disk in
  // blocks instead of held in memory (0 = half the memory this process may
  // use: the machine's, or its cgroup's limit). `train --stream` always streams.
  std::int64_t memory_budget_mb = 0;
  std::int64_t shuffle_buffer_rows = 1 << 20;  // streamed: rows shuffled together in memory
  std::int64_t block_rows = 1 << 16;           // streamed: rows per block on disk
  std::string group_column;  // optional: rows with the same value form a group (user) for GAUC
  // Optional: a per-row weight (>= 0) multiplying the row's loss in every task,
  // e.g. inverse propensities (IPS). Each task's loss is then the weighted mean.
  std::string weight_column;
  std::uint64_t hash_seed = 0x6d7472616e6bULL;
  std::int64_t quantile_sample = 1 << 20;  // reservoir size per numeric column when fitting
  // Sequential models only: item side information (data/item_features.h).
  std::string items;                      // an item table (CSV/TSV with a header) for learned item features
  std::vector<std::string> item_vectors;  // files of frozen item vectors (.npy or text), concatenated
};

// One value of a [model] key (model_families.h ModelKey gives its kind).
using ModelValue = std::variant<bool, std::int64_t, double, std::vector<std::int64_t>>;

// [model.bias_tower]: YouTube's shallow tower for selection bias (Zhao et al.
// 2019). A small MLP over the bias features (`bias = true`: position, device)
// whose logit is added to the chosen tasks' logits in training; the main
// model then does not see the bias features. At serving the bias features are
// missing, so the tower adds the same constant to every candidate and the
// ranking does not depend on position. Any family but esmm.
struct BiasTowerConfig {
  bool enabled = false;
  // Tasks whose logits get the bias; default: the tasks trained on all
  // impressions (no sample space), i.e. the engagement tasks a position biases.
  std::vector<std::string> tasks;
  std::vector<int> task_indices;  // resolved from `tasks` at parse time, in task order
  std::vector<std::int64_t> hidden = {16};
  // Share of training rows whose bias features all read as their empty value,
  // as at serving (YouTube drops the position in 10%): the main model cannot
  // lean on the tower, and the tower's serving state (every bias feature
  // missing) is trained, not its initial value. Needs categorical bias features.
  double position_dropout = 0.1;
  // "additive": the tower's logit is added (YouTube). "pal": position-aware
  // learning (Guo et al. 2019), P(click) = P(seen | bias features) x
  // P(click | seen). Served, the bias features are missing, so P(seen) is one
  // constant and the ranking is P(click | seen)'s.
  std::string kind = "additive";
};

// [model]: the family and the values of every key that family takes
// (model_families.h), defaults filled in. A key the family does not declare
// is not here: reading one is a programming error (std::logic_error), which
// the zoo tests catch for every family.
struct ModelConfig {
  std::string type = "mmoe";  // a name of model_families()
  std::map<std::string, ModelValue> values;
  BiasTowerConfig bias_tower;  // a head any family but esmm can carry, not a family key

  bool has(const std::string& key) const { return values.count(key) > 0; }
  std::int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;
  bool boolean(const std::string& key) const;
  const std::vector<std::int64_t>& integers(const std::string& key) const;
  // Sets a declared key (code that builds configs: tests, benchmarks); the
  // value must have the key's kind. Not checked against the key's range.
  void set(const std::string& key, ModelValue value);
  // False when the family has no such key (e.g. `wide` for esmm).
  bool flag(const std::string& key) const { return has(key) && boolean(key); }
};

// The [model] section of `type` with every key at its family's default;
// throws ConfigError for an unknown type.
ModelConfig model_defaults(const std::string& type);

struct TrainConfig {
  std::string optimizer = "adam";  // deep part: adam | adagrad; sequential models: adamw
  double learning_rate = 1e-3;
  double weight_decay = 0.0;
  // Wide part: FTRL-Proximal (McMahan et al. 2013) with L1 and L2, or the deep optimizer.
  std::string wide_optimizer = "ftrl";  // ftrl | adam | adagrad
  double ftrl_alpha = 0.05, ftrl_beta = 1.0, ftrl_l1 = 0.0, ftrl_l2 = 0.0;
  // Learning-rate schedule of the deep part: linear warm-up, then decay per epoch.
  std::int64_t warmup_steps = 0;
  std::string lr_decay = "none";  // none | exponential | cosine
  double lr_decay_rate = 1.0;     // exponential: lr *= rate each epoch
  double clip_grad_norm = 0.0;    // 0 = off
  std::string loss_weighting = "fixed";  // fixed | uncertainty (learned log-variances)
  std::int64_t batch_size = 1024;
  std::int64_t epochs = 10;
  std::int64_t patience = 3;  // early stopping: epochs without validation improvement
  // The validation figure early stopping and the kept epoch follow: "loss"
  // (the weighted sum of the tasks' losses) or "TASK.METRIC" (eval::resolve_monitor).
  std::string monitor = "loss";
  std::uint64_t seed = 42;
  std::int64_t threads = 0;  // 0 = all cores
  // Ranking models in one process: each period of steps runs on one thread or
  // on `threads`, whichever its first steps timed faster, where a step gives
  // the same bits on both (train::ThreadGovernor): only the speed changes.
  bool adapt_threads = true;
  std::int64_t eval_batch_size = 8192;
  // Data-parallel runs of ranking models: "replicated" (every worker holds
  // every sparse table and its optimizer state) or "row" (worker r holds the
  // rows id % workers == r; ids, rows and gradients go by alltoall), for
  // tables too large to replicate (docs/distributed.md).
  std::string table_sharding = "replicated";
  // Sequential models only (written to TOML only with [sequential]):
  double adam_eps = 1e-8;
  std::int64_t eval_every_steps = 0;  // validate every N optimizer steps (0 = after each epoch); patience counts validations
  std::int64_t max_steps = 0;         // stop after N steps (0 = none); validation and test still run
};

// [sequential]: a next-item recommender over interaction histories (issue 9,
// model/sequential.h) instead of a ranker over feature rows. A config with it
// has no [[features]], [[tasks]] or [model]; data.train is one log, split
// leave-one-out (data/sequences.h).
struct SequentialConfig {
  bool enabled = false;
  std::string block = "lrurec";  // lrurec | fmrlrec
  // Matryoshka widths, increasing; the last is the model width D. One width:
  // an ordinary (not nested) model.
  std::vector<std::int64_t> widths = {64};
  std::int64_t blocks = 2;
  double dropout = 0.2;
  double r_min = 0.8, r_max = 0.99;  // the LRU's ring; fmrlrec's defaults are 0 and 0.1
  std::int64_t max_len = 200;        // input window
  std::int64_t window_step = 0;      // training windows step back by this (0 = max_len)
  // Ranking at evaluation: "history" leaves out the input window's items
  // (LRURec), "none" ranks every item (fMRLRec).
  std::string exclude = "history";
  // Training loss: "full" softmax over every item, or "sampled": over the
  // batch's labels and `negatives` items drawn by training popularity, with
  // the log-Q correction (for catalogs too large for a full softmax).
  std::string softmax = "full";
  std::int64_t negatives = 1024;
  // Columns of a CSV/TSV interaction log; `user item` lines (.txt) need none.
  std::string user_column = "user", item_column = "item", time_column = "timestamp";
  // The item representation, the sum of: learned id embeddings (item_ids),
  // learned embeddings of the item table's (data.items) text and multi-hot
  // columns, and the trainable projection of the frozen vectors of
  // data.item_vectors. The same table embeds the input and scores the output.
  bool item_ids = true;
  std::string item_id_column = "item";           // the id column of data.items
  std::vector<std::string> text_columns;         // hashed word uni- and bigram bags
  std::vector<std::string> multi_hot_columns;    // hashed '|'-separated values
  std::int64_t feature_buckets = 1 << 16;        // hash space of those terms
};

struct ServeConfig {
  // How `mtrank serve` combines task predictions into the ranking score, e.g.
  // "sum:click=1,like=0.5" or "product:click=1,watch_time=0.3" (serve/ranker.h).
  // "" = the sum of all tasks. `serve --score` overrides it.
  std::string score;
  // A sequential model's retrieval when `serve --retrieval` serves it (each
  // overridden by the serve flag of the same name): the item index
  // (exact | funnel | hnsw | ivf, checked by serve against the index
  // registry), and the funnel's stage widths (increasing to the full width;
  // empty = the smallest and the full width) and shortlist sizes (one per
  // stage but the last; empty = 1000 each).
  std::string index = "exact";
  std::vector<std::int64_t> funnel_widths, funnel_keep;
};

struct Config {
  DataConfig data;
  std::vector<FeatureConfig> features;
  std::vector<TaskConfig> tasks;
  ModelConfig model = model_defaults("mmoe");
  TrainConfig train;
  ServeConfig serve;
  SequentialConfig sequential;
  std::string source;  // file name used in error messages
};

// Parses and validates; throws ConfigError naming the source, key and line.
struct ParseOptions {
  // Keys of other model families in [model] are skipped instead of refused:
  // for model directories written when every family's keys were stored.
  bool ignore_other_family_keys = false;
};
Config parse_config(const std::string& text, const std::string& source_name, const ParseOptions& options = {});
Config load_config(const std::string& path);
// Several config files merged in order (tables merge key by key, later files
// win); each file may also say `extends = "base.toml"`. Relative data paths
// are relative to the file that names them.
Config load_config(const std::vector<std::string>& paths);

// The whole configuration as TOML, every key explicit: what a model directory
// stores, so it reproduces the structs exactly (including command-line overrides).
std::string to_toml(const Config& config);

// Parses a comparison such as "> 0" or ">=3.5"; false if `text` is not one.
bool parse_comparison(const std::string& text, std::string& op, double& threshold);
// Whether `value` satisfies `op threshold`.
bool compare_value(double value, const std::string& op, double threshold);

const char* to_string(FeatureType t);
const char* to_string(TaskType t);

}  // namespace mtrank
