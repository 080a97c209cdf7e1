#pragma once
// Training and evaluation of a sequential (next-item) model (issue 9): from a
// [sequential] config and one interaction log to a trained, evaluated and
// saved model directory, as LRURec trains and evaluates: leave-one-out
// split, training windows, AdamW, validation every N steps with early
// stopping on a ranking metric at full width, then every width's metrics on
// validation and test. `mtrank train` calls it for a [sequential] config.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "data/sequences.h"

namespace mtrank::model {
class SequentialRecommenderImpl;
}

namespace mtrank::train {

class Communicator;

// NDCG@5/10/20, Recall@5/10/20 and MRR: what every next-item evaluation reports.
const std::vector<std::string>& next_item_metric_names();

// Reads a log by its name: `user item` lines for .txt and .txt.gz
// (data::read_user_item_lines), else a CSV/TSV table with the columns of
// [sequential] (data::read_interaction_table).
// Several files are read in turn as one log; they must all be of one kind.
data::Interactions read_interactions(const SequentialConfig& config, const FileList& files);
bool is_user_item_log(const FileList& files);  // every file .txt or .txt.gz: read as `user item` lines

// The evaluation cases of a split: each user's input history and target.
struct NextItemCases {
  std::vector<std::vector<std::int32_t>> inputs;
  std::vector<std::int32_t> targets;
};
// Validation: the training history predicts the second-last item. Test: the
// training history plus the validation item predicts the last. Users without
// a target are left out.
NextItemCases validation_cases(const data::LeaveOneOut& split);
NextItemCases test_cases(const data::LeaveOneOut& split);

struct WidthMetrics {
  std::int64_t width = 0;
  std::vector<std::pair<std::string, double>> metrics;  // next_item_metric_names() order
  double value(const std::string& name) const;          // NaN if absent
};
struct NextItemRecord {
  std::string name, path;  // "val" / "test", the log
  std::int64_t users = 0;
  std::vector<WidthMetrics> widths;  // every Matryoshka width, increasing; the last is the full model
};

// Scores every item at the last position of each case's input window (its
// last max_len items) at every width, ranks the target with the window's
// items left out unless `exclude_history` is false (padding always is), and
// computes the metrics through the metric registry. Batches of batch_size
// users; eval mode, no gradients.
// With a communicator of several processes, each ranks a slice of the users
// and all get the metrics of every user.
NextItemRecord evaluate_next_item(model::SequentialRecommenderImpl& net, const NextItemCases& cases, int max_len,
                                  bool exclude_history, std::int64_t batch_size, const std::string& name,
                                  const std::string& path, Communicator* communicator = nullptr);
nlohmann::json to_json(const NextItemRecord& record);  // {"users": n, "widths": {"8": {"ndcg@10": ..}, ..}}

// Evaluates a trained model on a log (the test split of its leave-one-out,
// as training reports it). Items the model does not know are dropped from the
// histories and counted in *unknown_events.
NextItemRecord evaluate_log(model::SequentialRecommenderImpl& net, const Config& config,
                            const data::ItemVocabulary& items, const std::string& path, std::int64_t* unknown_events);

// The k best items (model ids, with their scores, best first) to follow
// `history` (model ids, oldest first; its last max_len items are the input)
// at `width` (one of the model's widths; 0 = full), leaving out every item
// of the history and padding. Throws std::invalid_argument for a width the
// model does not have.
std::vector<std::pair<std::int32_t, float>> recommend(model::SequentialRecommenderImpl& net,
                                                      const std::vector<std::int32_t>& history, int max_len,
                                                      std::int64_t width, std::int64_t k);

struct ValidationPoint;

// A checkpoint is written atomically to OUT.checkpoint after every
// validation (model, AdamW state, the kept best weights, early-stopping
// counters, the epoch's order and LibTorch's generator), and removed once the
// model directory is written. With `resume`, training continues from it
// exactly: the resumed run ends with the weights and metrics of the
// uninterrupted one (at the same thread count).
struct SequentialRunRequest {
  Config config;  // resolved, with [sequential]
  std::string out;
  bool show_progress = true;
  bool resume = false;
  // Called after each checkpoint is written (tests interrupt a run from it).
  std::function<void(const ValidationPoint&)> after_checkpoint;
  // Join the data-parallel run the environment describes (WORLD_SIZE > 1;
  // mtrank train sets it), and how long a collective may wait for the others.
  bool join_distributed = false;
  std::chrono::seconds distributed_timeout{300};
};

struct ValidationPoint {
  std::int64_t step = 0;
  int epoch = 0;               // 1-based
  double train_loss = 0;       // mean batch loss since the previous validation
  double learning_rate = 0;
  double seconds = 0;          // training time so far (validation excluded)
  std::vector<std::pair<std::string, double>> val;  // full width
};

// What the item side information covered (data/item_features.h), for the
// run's output: which items had a table row or a vector.
struct ItemFeatureSummary {
  std::int64_t buckets = 0, entries = 0, items_without_row = 0, items_without_terms = 0, table_rows_unused = 0;
  std::vector<std::int64_t> vector_dims, items_without_vector, vector_rows_unused;  // per file
};

struct SequentialRunRecord {
  Config config;
  ItemFeatureSummary item_features;
  std::int64_t parameters = 0, users = 0, items = 0, events = 0, train_samples = 0, users_train_only = 0;
  int threads = 0;      // per process
  int world_size = 1;   // processes of a data-parallel run
  bool primary = true;  // rank 0: it alone writes the checkpoint and the model (the others return after the evaluation)
  double read_seconds = 0, train_seconds = 0, validation_seconds = 0;
  std::int64_t steps = 0, best_step = 0;
  std::vector<std::int64_t> parameters_by_width;  // the exported width-s model's, per width
  double mean_candidates = 0;  // softmax = "sampled": items scored per training step, on average
  bool early_stopped = false;
  bool resumed = false;  // continued from a checkpoint (--resume)
  std::vector<ValidationPoint> history;
  std::vector<NextItemRecord> splits;  // val, test: with the kept (best) weights
};

// Throws ConfigError, DataError, ModelError or TrainingError with a message for the user.
SequentialRunRecord run_sequential_training(const SequentialRunRequest& request);

// The metrics JSON: model, kind "sequential", widths (the test split's
// {"8": {...}, ...}), tasks (the full width's as one task "next_item", as
// ranking models list theirs), splits, history, and the run's figures.
nlohmann::json to_metrics_json(const SequentialRunRecord& record);

// A run record (to_metrics_json's) for the exported model of `widths` (the
// leading widths of the run's) with `parameters`: the metrics of those widths
// only (exactly the exported model's), the full width's validation curve left out.
nlohmann::json exported_record(const nlohmann::json& record, const std::vector<std::int64_t>& widths,
                               std::int64_t parameters);

}  // namespace mtrank::train
