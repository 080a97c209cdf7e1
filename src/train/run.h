#pragma once
// The training run as a library call: from a resolved config to a trained,
// evaluated and saved model, returning a typed record of everything that
// happened. `mtrank train` and `mtrank compare` call it; one function writes
// the record as the metrics JSON (and the model's meta.json "training").
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "data/dataset.h"
#include "eval/metrics.h"
#include "train/trainer.h"

namespace mtrank::train {

struct RunRequest {
  Config config;              // resolved: overlays and command-line overrides applied
  std::string out;            // model directory to write (replaced only if it is one)
  bool resume = false;        // continue from out + ".checkpoint"
  std::string warm_start;     // initialize from this model directory ("" = none)
  bool stream = false;        // stream the training rows from disk whatever their size (train --stream)
  bool show_progress = true;  // progress bars and progress lines on stderr (rank 0 of a data-parallel run)
  // Join the data-parallel run the environment describes (WORLD_SIZE > 1:
  // mtrank train sets it; other callers, compare and benchmarks, train alone),
  // and how long a collective may wait for the other workers before failing.
  bool join_distributed = false;
  std::chrono::seconds distributed_timeout{300};
};

// Metrics of one evaluated split.
struct SplitRecord {
  std::string name;  // "val" or "test"
  std::string path;
  std::vector<eval::TaskMetrics> tasks;
  std::vector<std::vector<double>> expert_utilization;  // [tasks][experts], empty without gates
  std::vector<std::string> expert_names;
};

struct RunRecord {
  Config config;
  std::int64_t parameters = 0;
  std::int64_t train_matmul_flops_per_row = 0;  // RankingModel::training_matmul_flops_per_row
  int threads = 0;     // per process
  int world_size = 1;  // processes of a data-parallel run
  bool primary = true;  // rank 0: it alone evaluates the splits and writes the model (the others return after training)
  std::int64_t train_rows = 0;
  bool streamed = false;              // the training rows were streamed from blocks on disk
  std::int64_t peak_buffer_rows = 0;  // streamed: the most training rows held in memory at once
  double fit_seconds = 0;
  bool fit_from_cache = false;
  data::IngestStats train_ingest;
  TrainReport report;               // every epoch: train and validation loss, learning rate, validation metrics
  std::vector<SplitRecord> splits;  // evaluated after training, with the kept (best) weights
  int headline_split = -1;          // index into splits of the headline metrics (test if given, else val)
  std::string fingerprint;          // config and fitted preprocessing, for checkpoints and the model version
  std::string model_version;        // fingerprint-UTC time
};

// Evaluates `data` (read from `path`, called `name`) with the model; throws
// TrainingError naming the file and row if any prediction is not finite.
SplitRecord evaluate_split(model::RankingModel& net, const Config& config, const data::FeaturizedData& data,
                           const std::string& name, const std::string& path);
// {"tasks": ..., "expert_utilization": ..., "expert_names": ...}
nlohmann::json to_json(const SplitRecord& split);

// Validates, fits the preprocessing, featurizes, trains, evaluates and
// saves the model to request.out. Throws ConfigError, DataError, ModelError
// or TrainingError with a message for the user.
RunRecord run_training(const RunRequest& request);

// The metrics JSON of a run: model, parameters, threads, world_size, seed, epochs,
// best_epoch, early_stopped, train_rows, streamed, peak_buffer_rows (streamed runs), train_seconds, train_rows_per_s,
// train_matmul_flops_per_row, fit_seconds, ingest_rows_per_s, ingest_from_cache, task_names (config
// order), history (per epoch: epoch, train_loss, val_loss, learning_rate, sync_seconds (data-parallel runs),
// seconds, rows_per_s, train_task_loss per task, and "val" task metrics when
// there is validation data), splits, tasks (with reliability bins for binary
// tasks), metrics_split, expert_utilization, expert_names.
nlohmann::json to_metrics_json(const RunRecord& record);

}  // namespace mtrank::train
