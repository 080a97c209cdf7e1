#pragma once
// Mini-batch training of a RankingModel with a masked, weighted multi-task
// loss; evaluation each epoch; early stopping on the validation loss;
// checkpoints each epoch that a later run can resume from exactly.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "data/dataset.h"
#include "data/training_rows.h"
#include "eval/metrics.h"
#include "model/model.h"

namespace mtrank::train {

// Per-task loss over the rows in the task's sample space (mask), averaged over
// those rows (PLE's delta-masked loss): one loss tensor per task. A
// data-parallel rank passes `global_counts`, each task's row count (mask sum)
// in the whole global batch: its share of the sum is divided by that, so the
// ranks' losses add up to the global batch's loss.
std::vector<torch::Tensor> task_losses(const torch::Tensor& logits, const torch::Tensor& labels,
                                       const torch::Tensor& mask, const std::vector<TaskConfig>& tasks,
                                       const std::vector<double>* global_counts = nullptr);
// The training loss: sum_k w_k(t) * L_k with PLE's schedule w_k(t) for
// epoch t (task_weight), or with learned log-variances s_k (uncertainty
// weighting) sum_k w_k(t) * (exp(-s_k) L_k + s_k). The trainer's step calls
// exactly this. `global_counts` and `ranks`: one rank's share of a
// data-parallel batch of that many ranks (task_losses).
torch::Tensor multitask_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& mask,
                             const std::vector<TaskConfig>& tasks, std::vector<double>* per_task = nullptr,
                             int epoch_index = 0, const torch::Tensor& log_variances = {},
                             const std::vector<double>* global_counts = nullptr, int ranks = 1);

// w_k(t) = w_k0 * gamma_k^t for epoch t = 0, 1, ... (PLE).
double task_weight(const TaskConfig& task, int epoch_index);

struct EpochLog {
  int epoch = 0;
  double train_loss = 0, val_loss = 0, seconds = 0, rows_per_s = 0, learning_rate = 0;
  double sync_seconds = 0;  // a data-parallel run: time spent exchanging gradients (and sharded rows) with the other ranks
  std::vector<double> train_task_loss;  // per task: its masked mean loss, averaged over the epoch's batches
  std::vector<eval::TaskMetrics> val;
};

struct TrainReport {
  std::vector<EpochLog> epochs;
  int best_epoch = 0;
  bool early_stopped = false, resumed = false;
  double seconds = 0, train_rows_per_s = 0;
  std::vector<double> task_log_variances;  // uncertainty weighting only
  int threads_at_start = 0;                 // threads of the first run (differs from options.threads after a resume)
  // TrainOptions::adapt_threads took effect (a step gave the same bits on 1
  // and on every thread), and how many steps ran on each.
  bool threads_adapted = false;
  std::int64_t steps_on_one_thread = 0, steps_on_all_threads = 0;
};

struct TrainOptions {
  bool show_progress = false;
  // Checkpoint written atomically after every epoch ("" = none). With `resume`,
  // training continues from it; it must exist and carry the same fingerprint.
  std::string checkpoint_path;
  bool resume = false;
  // Identifies the model and data a checkpoint belongs to (config, fitted
  // preprocessing); a checkpoint with another fingerprint is refused.
  std::string fingerprint;
  // Threads this run trains with, recorded in the checkpoint: a resume with
  // another count is reported (TrainReport::threads_at_start), since the sums
  // then reduce in another order and results match only to rounding.
  int threads = 0;
  // One process on several threads: each period of steps runs on one thread
  // or on all, whichever its first steps timed faster (ThreadGovernor), if a
  // step gives the same bits on both (checked on the first batch); else
  // every step runs on all. Never changes the model, only the speed.
  bool adapt_threads = false;
  // Called after each epoch, after the checkpoint is written; returning false
  // stops training there (the checkpoint then resumes from that epoch).
  // In a data-parallel run what it returns must agree on every rank (it
  // decides collectives). The primary writes checkpoint_path; with sharded
  // tables every other rank r writes its rows to checkpoint_path + ".rankR"
  // and resumes from it.
  std::function<bool(const EpochLog&)> on_epoch_end;
  // Data-parallel runs: embedding-row gradients travel with the dense ones,
  // scattered into the whole table, when table rows x (width + 1) is at most
  // this many floats (one exchange a step); larger tables use a sparse sum.
  std::int64_t dense_row_exchange_floats = 1 << 18;
};

class Communicator;

// One optimizer step's state between its phases.
struct StepState {
  // Embedding rows the batch read. After synchronization the ids are every
  // rank's (replicated tables) or this rank's local rows that any rank touched
  // (train.table_sharding = "row").
  model::TouchedRows touched;
  std::vector<torch::Tensor> row_grads;  // per sparse table: touched rows' gradients (backward, then synchronized)
  torch::Tensor loss;          // the multitask loss (multitask_loss)
  double value = 0;            // its value
  std::vector<double> task_losses;  // each task's masked mean loss in the batch (unweighted)
};

// Training in phases, so each can be tested and a data-parallel run can
// synchronize between them: forward_loss -> backward -> synchronize_gradients
// (the communicator) -> clip_gradients -> apply. step() runs them in order;
// run() runs epochs of steps with evaluation, early stopping and checkpoints.
// Only the primary process (communicator rank 0) writes checkpoints and shows
// progress.
class Trainer {
 public:
  // `communicator` null: a single process (LocalCommunicator). Both must
  // outlive the trainer. With several processes, rank 0's initial weights are
  // broadcast to the others here, so every replica starts the same.
  Trainer(model::RankingModel& net, const Config& config, Communicator* communicator = nullptr);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Forward pass and loss of one batch; epoch_index (0-based) sets PLE's
  // weights. In a data-parallel run `batch` is this rank's share of the
  // global batch and `global_task_counts` that batch's per-task row counts
  // (multitask_loss); with one process both may be left out.
  StepState forward_loss(const model::Batch& batch, int epoch_index,
                         const std::vector<double>* global_task_counts = nullptr);
  void backward(StepState& step);              // clears the gradients, then backpropagates
  void synchronize_gradients(StepState& step);  // sums gradients over processes (Communicator)
  void clip_gradients(StepState& step);        // train.clip_grad_norm over the deep part, if set
  void apply(StepState& step);                 // every optimizer steps
  // All phases; throws TrainingError naming epoch (1-based) and step if the loss is not finite.
  // The returned loss is the global batch's (summed over processes).
  double step(const model::Batch& batch, int epoch, std::int64_t step_in_epoch,
              const std::vector<double>* global_task_counts = nullptr);
  void set_learning_rate(double lr);
  // With train.table_sharding = "row" and several processes, rank 0's model
  // is whole afterwards (it evaluates and writes it); another rank's sparse
  // tables keep only its rows (ids % world_size == rank, at id / world_size).
  TrainReport run(const data::FeaturizedData& train, const data::FeaturizedData* val, const TrainOptions& options);
  // The same, reading the training rows from `train` (in memory or streamed from disk: data/training_rows.h).
  TrainReport run(data::TrainingRows& train, const data::FeaturizedData* val, const TrainOptions& options);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Per task (config order), Objective::initial_logit of its masked mean label
// in `train`: the constant each task's output starts at
// (RankingModel::set_output_bias). A task without labelled rows gets 0.
std::vector<double> initial_task_logits(const Config& config, const data::FeaturizedData& train);
// The same from per-task mask-weighted label sums and weight sums (data::BlockStore's).
std::vector<double> initial_task_logits(const Config& config, const std::vector<double>& label_sums,
                                        const std::vector<double>& weight_sums);

TrainReport train_model(model::RankingModel& net, const Config& config, const data::FeaturizedData& train,
                        const data::FeaturizedData* val, const TrainOptions& options);

struct Predictions {
  std::int64_t rows = 0;
  int tasks = 0;
  std::vector<float> values;                            // [rows x tasks]: probabilities (binary) or values (regression)
  std::vector<std::vector<double>> expert_utilization;  // [tasks][experts] mean gate weight, empty if no gates
};

Predictions predict(model::RankingModel& net, const Config& config, const data::FeaturizedData& data);
// The bias tower's logit of `task` for every row, [rows]; empty without a tower.
std::vector<float> bias_logits(model::RankingModel& net, const Config& config, const data::FeaturizedData& data,
                               int task);

// Throws TrainingError naming `what` and the first row if any prediction is NaN or infinite.
void check_finite_predictions(const Predictions& p, const std::string& what);

std::vector<eval::TaskMetrics> evaluate(model::RankingModel& net, const Config& config,
                                        const data::FeaturizedData& data, Predictions* predictions = nullptr);

}  // namespace mtrank::train
