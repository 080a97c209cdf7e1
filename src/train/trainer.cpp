#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

#include <omp.h>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/progress.h"
#include "common/system.h"
#include "model/batch.h"
#include "model/objective.h"
#include "train/checkpoint_io.h"
#include "train/communicator.h"
#include "train/ftrl.h"
#include "train/fused_adam.h"
#include "train/row_optimizer.h"
#include "train/thread_governor.h"

namespace mtrank::train {


std::vector<torch::Tensor> task_losses(const torch::Tensor& logits, const torch::Tensor& labels,
                                       const torch::Tensor& mask, const std::vector<TaskConfig>& tasks,
                                       const std::vector<double>* global_counts) {
  std::vector<torch::Tensor> out;
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const auto k = static_cast<std::int64_t>(t);
    const model::MaskedLoss l =
        model::objective_for(tasks[t].type).loss(logits.select(1, k), labels.select(1, k), mask.select(1, k));
    // The same clamp as MaskedLoss::mean: an empty task gives 0, not NaN.
    out.push_back(global_counts ? l.sum / std::max((*global_counts)[t], 1e-12) : l.mean());
  }
  return out;
}

torch::Tensor multitask_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& mask,
                             const std::vector<TaskConfig>& tasks, std::vector<double>* per_task, int epoch_index,
                             const torch::Tensor& log_variances, const std::vector<double>* global_counts,
                             int ranks) {
  std::vector<torch::Tensor> losses = task_losses(logits, labels, mask, tasks, global_counts);
  torch::Tensor total = torch::zeros({}, logits.options());
  if (per_task) per_task->clear();
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    if (per_task) per_task->push_back(losses[t].item<double>());
    const double w = task_weight(tasks[t], epoch_index);
    if (log_variances.defined()) {
      // Uncertainty weighting (Kendall et al. 2018): exp(-s_k) L_k + s_k, s_k = log sigma_k^2 learned.
      // Each of `ranks` processes adds its share of s_k, so their losses add up to one s_k.
      const auto k = static_cast<std::int64_t>(t);
      total = total + w * (torch::exp(-log_variances[k]) * losses[t] + log_variances[k] / static_cast<double>(ranks));
    } else {
      total = total + w * losses[t];
    }
  }
  return total;
}

double task_weight(const TaskConfig& task, int epoch_index) {
  return task.weight * std::pow(task.weight_gamma, static_cast<double>(epoch_index));
}

void check_finite_predictions(const Predictions& p, const std::string& what) {
  for (std::size_t i = 0; i < p.values.size(); ++i)
    if (!std::isfinite(p.values[i]))
      throw TrainingError(what + ": the model predicts " + std::to_string(p.values[i]) + " for row " +
                          std::to_string(i / static_cast<std::size_t>(std::max(p.tasks, 1)) + 1) +
                          "; a model that predicts NaN or infinity is not written");
}

namespace {
// Predictions of rows [first, last) of `data`. `exchange_chunks` > 0: the
// model reads its rows through its row fetch (tables sharded row-wise over
// processes), in exactly that many chunks, empty ones too, since every
// process takes part in every chunk's exchange.
Predictions predict_rows(model::RankingModel& net, const Config& config, const data::FeaturizedData& data,
                         std::int64_t first, std::int64_t last, std::int64_t exchange_chunks = 0) {
  // The fetched rows are autograd leaves: no InferenceMode there.
  std::optional<torch::InferenceMode> inference;
  std::optional<torch::NoGradGuard> no_grad;
  if (exchange_chunks > 0) no_grad.emplace();
  else inference.emplace();
  net.eval();
  Predictions out;
  out.rows = last - first;
  out.tasks = data.num_tasks();
  out.values.resize(static_cast<std::size_t>(out.rows * out.tasks));
  model::BatchBuilder builder;
  torch::Tensor gate_sum;
  const std::int64_t bs = config.train.eval_batch_size;
  const std::int64_t chunks = exchange_chunks > 0 ? exchange_chunks : (last - first + bs - 1) / bs;
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t begin = std::min(last, first + c * bs);
    const std::int64_t n = std::min(bs, last - begin);
    model::Batch batch = builder.build_range(data, begin, n);
    model::TouchedRows touched;
    model::ModelOutput o = net.forward(batch, exchange_chunks > 0 ? &touched : nullptr);
    torch::Tensor p = model::task_values(o.logits, config.tasks);
    std::copy_n(p.data_ptr<float>(), n * out.tasks, out.values.data() + (begin - first) * out.tasks);
    if (o.gates.defined()) {
      torch::Tensor s = o.gates.sum(0).to(torch::kFloat64);
      gate_sum = gate_sum.defined() ? gate_sum + s : s;
    }
  }
  if (gate_sum.defined() && out.rows > 0) {
    gate_sum = (gate_sum / static_cast<double>(out.rows)).contiguous();
    for (std::int64_t t = 0; t < gate_sum.size(0); ++t) {
      const double* row = gate_sum[t].data_ptr<double>();
      out.expert_utilization.emplace_back(row, row + gate_sum.size(1));
    }
  }
  return out;
}
}  // namespace

Predictions predict(model::RankingModel& net, const Config& config, const data::FeaturizedData& data) {
  return predict_rows(net, config, data, 0, data.rows());
}

std::vector<float> bias_logits(model::RankingModel& net, const Config& config, const data::FeaturizedData& data,
                               int task) {
  torch::InferenceMode guard;
  net.eval();
  std::vector<float> out;
  model::BatchBuilder builder;
  const std::int64_t bs = config.train.eval_batch_size;
  for (std::int64_t begin = 0; begin < data.rows(); begin += bs) {
    const std::int64_t n = std::min(bs, data.rows() - begin);
    const torch::Tensor b = net.bias_logits(builder.build_range(data, begin, n));
    if (!b.defined()) return {};
    const torch::Tensor column = b.select(1, task).contiguous();
    out.insert(out.end(), column.data_ptr<float>(), column.data_ptr<float>() + n);
  }
  return out;
}

std::vector<eval::TaskMetrics> evaluate(model::RankingModel& net, const Config& config,
                                        const data::FeaturizedData& data, Predictions* predictions) {
  Predictions p = predict(net, config, data);
  std::vector<eval::TaskMetrics> m =
      eval::evaluate_tasks(config.tasks, p.values, data.labels, data.mask, data.groups);
  if (predictions) *predictions = std::move(p);
  return m;
}

std::vector<double> initial_task_logits(const Config& config, const std::vector<double>& label_sums,
                                        const std::vector<double>& weight_sums) {
  std::vector<double> logits(config.tasks.size(), 0.0);
  for (std::size_t t = 0; t < logits.size(); ++t)
    if (weight_sums[t] > 0)
      logits[t] = model::objective_for(config.tasks[t].type).initial_logit(label_sums[t] / weight_sums[t]);
  return logits;
}

std::vector<double> initial_task_logits(const Config& config, const data::FeaturizedData& train) {
  const std::size_t T = config.tasks.size();
  std::vector<double> sum(T, 0.0), count(T, 0.0);
  for (std::size_t i = 0; i < train.labels.size(); ++i)
    if (train.mask[i] > 0) {  // the mask carries data.weight_column's weight: a weighted mean, as the loss
      sum[i % T] += static_cast<double>(train.mask[i]) * train.labels[i];
      count[i % T] += train.mask[i];
    }
  std::vector<double> logits(T, 0.0);
  for (std::size_t t = 0; t < T; ++t)
    if (count[t] > 0) logits[t] = model::objective_for(config.tasks[t].type).initial_logit(sum[t] / count[t]);
  return logits;
}

namespace {

// Learning rate of the scheduled optimizers: linear warm-up over the first
// steps, then exponential or cosine decay by epoch.
double scheduled_lr(const TrainConfig& tc, std::int64_t global_step, int epoch_index) {
  double lr = tc.learning_rate;
  if (tc.lr_decay == "exponential") lr *= std::pow(tc.lr_decay_rate, epoch_index);
  if (tc.lr_decay == "cosine") lr *= 0.5 * (1 + std::cos(M_PI * epoch_index / static_cast<double>(tc.epochs)));
  if (global_step < tc.warmup_steps) lr *= static_cast<double>(global_step + 1) / static_cast<double>(tc.warmup_steps);
  return lr;
}

}  // namespace

// Everything a run needs to continue exactly where it stopped.
class Trainer::Impl {
 public:
  Impl(model::RankingModel& net, const Config& config, Communicator& communicator)
      : net_(net), config_(config), tc_(config.train), communicator_(communicator),
        monitor_(eval::resolve_monitor(config)) {
    sharded_ = tc_.table_sharding == "row" && communicator_.world_size() > 1;
    if (sharded_) {
      // The id space every table shares; a rank's own table may already be
      // its rows only (the model of an earlier sharded run).
      table_rows_ = std::max<std::int64_t>(net.shape().embedding_rows, 1);
      const std::vector<torch::Tensor> params = net.parameters();
      for (const model::SparseTable& t : net.sparse_tables())
        for (std::size_t i = 0; i < params.size(); ++i)
          if (params[i].unsafeGetTensorImpl() == t.table.unsafeGetTensorImpl()) table_params_.push_back(i);
    }
    if (communicator_.world_size() > 1) {
      // Every replica starts from rank 0's weights (they agree already when
      // every rank seeds alike; this makes it so whatever the seeding), before
      // any optimizer derives state from them (FTRL's z). Sharded tables:
      // each rank receives its rows of rank 0's.
      std::vector<torch::Tensor> params = net.parameters(), dense;
      for (std::size_t i = 0; i < params.size(); ++i)
        if (std::find(table_params_.begin(), table_params_.end(), i) == table_params_.end()) dense.push_back(params[i]);
      communicator_.broadcast(dense);
      if (sharded_) scatter_tables_from_primary();  // before the row optimizers: their state is born shard-sized
    }
    std::vector<torch::Tensor> wide_dense = net.wide_dense_parameters();
    auto is_wide = [&](const torch::Tensor& p) {
      return std::any_of(wide_dense.begin(), wide_dense.end(),
                         [&](const torch::Tensor& w) { return w.unsafeGetTensorImpl() == p.unsafeGetTensorImpl(); });
    };
    std::vector<torch::Tensor> deep;
    for (const auto& p : net.parameters())
      if (p.requires_grad() && !is_wide(p)) deep.push_back(p);
    deep_params_ = deep;
    deep_ = make_optimizer(tc_.optimizer, deep, tc_.learning_rate, tc_.weight_decay);
    if (tc_.loss_weighting == "uncertainty") {
      // Loss parameters, not model weights: their own optimizer, no weight decay or clipping.
      log_vars_ = torch::zeros({static_cast<std::int64_t>(config.tasks.size())}, torch::requires_grad());
      loss_ = std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{log_vars_},
                                                   torch::optim::AdamOptions(tc_.learning_rate));
    }
    const FtrlHyper ftrl{tc_.ftrl_alpha, tc_.ftrl_beta, tc_.ftrl_l1, tc_.ftrl_l2};
    if (!wide_dense.empty())
      wide_ = tc_.wide_optimizer == "ftrl"
                  ? std::make_unique<Ftrl>(wide_dense, FtrlOptions(ftrl.alpha).beta(ftrl.beta).l1(ftrl.l1).l2(ftrl.l2))
                  : make_optimizer(tc_.wide_optimizer, wide_dense, tc_.learning_rate, 0.0);
    if (!sharded_)
      for (const model::SparseTable& t : net.sparse_tables()) table_rows_ = std::max(table_rows_, t.table.size(0));
    for (const model::SparseTable& t : net.sparse_tables()) {
      const std::string kind = t.wide ? tc_.wide_optimizer : tc_.optimizer;
      rows_.emplace_back(t.table, kind, tc_.learning_rate, t.wide ? 0.0 : tc_.weight_decay, ftrl);
      scheduled_rows_.push_back(kind != "ftrl");
      wide_rows_.push_back(t.wide);
    }
    rng_.seed(tc_.seed);
    // Last: nothing after it can throw, so the model never keeps a fetch into
    // a trainer that failed to construct.
    if (sharded_) net_.set_row_fetch([this](const torch::Tensor& ids) { return fetch_rows(ids); });
  }

  ~Impl() {
    if (sharded_) net_.set_row_fetch(nullptr);  // it points here
  }

  TrainReport run(data::TrainingRows& train, const data::FeaturizedData* val, const TrainOptions& o) {
    TrainReport report;
    report.threads_at_start = o.threads;
    dense_row_exchange_floats_ = o.dense_row_exchange_floats;
    const bool primary = communicator_.is_primary();  // the one process that shows progress and writes checkpoints
    const bool show_progress = o.show_progress && primary;
    if (o.resume && !o.checkpoint_path.empty()) {
      // Rank 0 reads the checkpoint and sends it to the others, so a run
      // across machines resumes without a shared file system.
      std::string bytes;
      if (primary) bytes = read_checkpoint_bytes(o.checkpoint_path);
      communicator_.broadcast(bytes);
      if (bytes.empty())
        throw ModelError(o.checkpoint_path + ": no checkpoint to resume from (train without --resume first)");
      load_checkpoint(bytes, o.checkpoint_path, o.fingerprint, report);
      if (sharded_) load_own_shard(o.checkpoint_path, o.fingerprint);  // rank 0's bytes held rank 0's rows
      report.resumed = true;
      if (primary && report.threads_at_start > 0 && report.threads_at_start != o.threads)
        std::fprintf(stderr,
                     "warning: resuming with %d threads; the run started with %d. Results match an uninterrupted run "
                     "only to floating-point rounding (sums reduce in another order); the metrics record both\n",
                     o.threads, report.threads_at_start);
      if (show_progress)
        std::fprintf(stderr, "resumed from %s after epoch %d\n", o.checkpoint_path.c_str(), epochs_done_);
    }
    std::vector<std::int64_t> share;
    const int ranks = communicator_.world_size(), rank = communicator_.rank();
    std::vector<double> counts;
    model::BatchBuilder builder;
    bool stopped = stopped_;
    // Adaptive threads (o.adapt_threads): decided on the first batch, kept for the run.
    const int all_threads = omp_get_max_threads();
    const ScopedThreadCount restore_threads;  // an error in a 1-thread step leaves the count as it was
    bool adapt_checked = !(o.adapt_threads && ranks == 1 && all_threads > 1);
    std::optional<ThreadGovernor> governor;
    for (int epoch = epochs_done_ + 1; epoch <= tc_.epochs && !stopped; ++epoch) {
      net_.train();
      // Ranks draw their own dropout masks, as the rows of one batch would;
      // reseeded each epoch so a resumed run draws what it would have.
      if (ranks > 1)
        torch::manual_seed(tc_.seed * 1000003ULL + static_cast<std::uint64_t>(rank) * 7919ULL +
                           static_cast<std::uint64_t>(epoch));
      Progress progress("epoch " + std::to_string(epoch) + "/" + std::to_string(tc_.epochs),
                        static_cast<std::uint64_t>(train.rows()), "rows", show_progress);
      double loss_sum = 0, lr = tc_.learning_rate;
      std::int64_t batches = 0;
      task_loss_sums_.assign(config_.tasks.size(), 0.0);
      sync_seconds_ = 0;
      std::int64_t done = 0;
      // Every rank draws the same order (the same seed and state): the same global batches.
      train.epoch(rng_, tc_.batch_size, [&](const data::FeaturizedData& rows, const std::int64_t* order, std::int64_t n) {
        lr = scheduled_lr(tc_, global_step_, epoch - 1);
        set_learning_rate(lr);
        if (ranks == 1) {
          model::Batch batch = builder.build(rows, order, n);
          if (!adapt_checked) {
            adapt_checked = true;
            if (same_bits_on_one_and_all_threads(batch, epoch - 1, all_threads)) governor.emplace(all_threads);
            else if (show_progress)
              std::fprintf(stderr, "threads: a step of this model gives other bits on 1 and %d threads; training on %d\n",
                           all_threads, all_threads);
          }
          if (governor) {
            omp_set_num_threads(governor->next());  // ATen and OpenBLAS read it (at::set_num_threads rebuilds pools)
            const auto started = std::chrono::steady_clock::now();
            loss_sum += step(batch, epoch, batches + 1, nullptr);
            governor->took(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
          } else {
            loss_sum += step(batch, epoch, batches + 1, nullptr);
          }
        } else {
          // A strided share of the global batch; the loss divides by the
          // global batch's task counts, which every rank reads from its data.
          share.clear();
          for (std::int64_t i = rank; i < n; i += ranks) share.push_back(order[i]);
          global_task_counts(rows, order, n, counts);
          model::Batch batch = builder.build(rows, share.data(), static_cast<std::int64_t>(share.size()));
          loss_sum += step(batch, epoch, batches + 1, &counts);
        }
        ++batches;
        ++global_step_;
        done += n;
        if ((batches & 7) == 0) {
          char extra[48];
          std::snprintf(extra, sizeof extra, "loss %.4f", loss_sum / static_cast<double>(batches));
          progress.update(static_cast<std::uint64_t>(done), extra);
        }
      });
      if (governor) omp_set_num_threads(all_threads);  // validation and the rest run on every thread
      EpochLog log;
      log.epoch = epoch;
      log.seconds = progress.elapsed_seconds();
      log.train_loss = loss_sum / static_cast<double>(std::max<std::int64_t>(batches, 1));
      for (double sum : task_loss_sums_) log.train_task_loss.push_back(sum / static_cast<double>(std::max<std::int64_t>(batches, 1)));
      log.rows_per_s = static_cast<double>(train.rows()) / std::max(log.seconds, 1e-9);
      log.learning_rate = lr;
      log.sync_seconds = sync_seconds_;
      char extra[160];
      double monitored = log.train_loss;  // without validation data nothing is monitored: the last epoch is kept
      if (val) {
        log.val = evaluate_everywhere(*val);
        log.val_loss = eval::monitored_value(eval::Monitor{}, config_.tasks, log.val);
        if (!std::isfinite(log.val_loss))
          throw TrainingError("epoch " + std::to_string(epoch) +
                              ": the validation loss is not a finite number (the model predicts NaN or infinity); "
                              "lower train.learning_rate or set train.clip_grad_norm; no model was written");
        monitored = eval::monitored_value(monitor_, config_.tasks, log.val);
        if (!std::isfinite(monitored))
          throw TrainingError("epoch " + std::to_string(epoch) + ": train.monitor = \"" + tc_.monitor +
                              "\" is not defined on the validation data (an AUC needs both classes, a GAUC a group "
                              "with both); monitor another figure or use validation data that has them; no model "
                              "was written");
        if (monitor_.task < 0)
          std::snprintf(extra, sizeof extra, "train loss %.4f  val loss %.4f", log.train_loss, log.val_loss);
        else
          std::snprintf(extra, sizeof extra, "train loss %.4f  val loss %.4f  %s %.4f", log.train_loss, log.val_loss,
                        tc_.monitor.c_str(), monitored);
      } else {
        std::snprintf(extra, sizeof extra, "train loss %.4f", log.train_loss);
      }
      progress.finish(extra);
      // Lower is better for the score: a metric where higher is better is negated.
      const double score = monitor_.higher_is_better ? -monitored : monitored;
      if (!val) {
        best_epoch_ = epoch;  // without validation data the last epoch is the model kept
      } else if (score < best_score_) {
        best_score_ = score;
        best_epoch_ = epoch;
        since_best_ = 0;
        // At the last epoch the weights in hand are the ones kept: no copy
        // (a copy of a large model's weights is a third of its memory). The
        // old copy goes first, so two never coexist.
        best_params_.clear();
        if (epoch < tc_.epochs) best_params_ = snapshot();
      } else if (val && tc_.patience > 0 && ++since_best_ >= tc_.patience) {
        stopped_ = stopped = true;
        report.early_stopped = true;
        if (show_progress)
          std::fprintf(stderr, "early stopping: no improvement of the validation %s for %lld epochs; keeping epoch %d\n",
                       tc_.monitor.c_str(), static_cast<long long>(tc_.patience), best_epoch_);
      }
      epochs_done_ = epoch;
      report.epochs.push_back(log);
      if (!o.checkpoint_path.empty()) {
        // Sharded tables: rank 0's checkpoint holds its rows, and every other
        // rank writes its rows beside it (shard_checkpoint_path), on its own
        // disk: no rank ever holds the whole tables and their state.
        if (primary) save_checkpoint(o.checkpoint_path, o.fingerprint, report);
        else if (sharded_) save_shard(shard_checkpoint_path(o.checkpoint_path, communicator_.rank()), o.fingerprint);
      }
      if (o.on_epoch_end && !o.on_epoch_end(log)) break;
    }
    report.early_stopped = report.early_stopped || stopped_;
    if (!best_params_.empty()) restore(best_params_);
    if (sharded_) {
      best_params_.clear();  // restored: not worth gathering
      unshard_tables();  // rank 0 holds the whole model, to evaluate and write it; the others their rows
    }
    report.best_epoch = best_epoch_;
    report.threads_adapted = governor.has_value();
    if (governor) {
      report.steps_on_one_thread = governor->steps_on_one();
      report.steps_on_all_threads = governor->steps_on_all();
    }
    double seconds = 0, rows = 0;
    for (const auto& e : report.epochs) {
      seconds += e.seconds;
      rows += e.rows_per_s * e.seconds;
    }
    report.seconds = seconds;
    report.train_rows_per_s = rows / std::max(seconds, 1e-9);
    if (log_vars_.defined())
      for (std::int64_t t = 0; t < log_vars_.size(0); ++t) report.task_log_variances.push_back(log_vars_[t].item<double>());
    return report;
  }

  // (Every member is public: only Trainer, which forwards its phases here, sees this class.)
  void clip_gradients(StepState& st) {
    if (tc_.clip_grad_norm > 0) clip(st);
  }

  static std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& kind,
                                                                  std::vector<torch::Tensor> params, double lr,
                                                                  double weight_decay) {
    if (kind == "adam")
      return std::make_unique<FusedAdam>(params, torch::optim::AdamOptions(lr).weight_decay(weight_decay));
    if (kind == "adagrad")
      return std::make_unique<torch::optim::Adagrad>(params,
                                                     torch::optim::AdagradOptions(lr).weight_decay(weight_decay));
    return nullptr;  // ftrl: built by the caller with its own hyper-parameters
  }

  void set_learning_rate(double lr) {
    for (auto& g : deep_->param_groups()) g.options().set_lr(lr);
    if (wide_ && tc_.wide_optimizer != "ftrl")
      for (auto& g : wide_->param_groups()) g.options().set_lr(lr);
    for (std::size_t i = 0; i < rows_.size(); ++i)
      if (scheduled_rows_[i]) rows_[i].set_learning_rate(lr);
  }

  StepState forward_loss(const model::Batch& batch, int epoch_index, const std::vector<double>* global_counts) {
    // A share's mean loss summed over ranks would be N times the gradient.
    if (communicator_.world_size() > 1 && !global_counts)
      throw std::logic_error("Trainer::forward_loss: a data-parallel step needs the global batch's task counts");
    StepState st;
    model::ModelOutput out = net_.forward(batch, &st.touched);
    // The loss the tests check (multitask_loss) is this loss.
    st.loss = multitask_loss(out.logits, batch.labels, batch.mask, config_.tasks, &st.task_losses, epoch_index, log_vars_,
                             global_counts, communicator_.world_size());
    st.value = st.loss.item<double>();
    return st;
  }

  // Whether a training step's loss and every gradient come out the same on
  // one thread and on `threads` (a forward and backward each, nothing
  // applied; the random generator is put back, so the run draws what it
  // would have). Where they do, the thread count changes only the speed.
  bool same_bits_on_one_and_all_threads(const model::Batch& batch, int epoch_index, int threads) {
    auto generator = at::detail::getDefaultCPUGenerator();
    const torch::Tensor state = generator.get_state();
    bool finite = true;
    auto run_on = [&](int n) {
      const ScopedThreadCount on(n);
      generator.set_state(state);
      StepState st = forward_loss(batch, epoch_index, nullptr);
      finite = finite && std::isfinite(st.value);
      backward(st);
      clip_gradients(st);  // the clipping norm's sums are part of the step
      std::vector<torch::Tensor> out{torch::tensor(st.value, torch::kFloat64)};
      for (const auto& p : net_.parameters())
        if (p.grad().defined()) out.push_back(p.grad().clone());
      if (log_vars_.defined() && log_vars_.grad().defined()) out.push_back(log_vars_.grad().clone());
      for (const auto& g : st.row_grads)
        if (g.defined()) out.push_back(g.clone());
      return out;
    };
    const std::vector<torch::Tensor> one = run_on(1), all = run_on(threads);
    generator.set_state(state);
    if (!finite) return true;  // undecided: the step itself stops with the divergence error
    if (one.size() != all.size()) return false;
    for (std::size_t i = 0; i < one.size(); ++i)
      if (!torch::equal(one[i], all[i])) return false;
    return true;
  }

  // Each task's row count (mask sum) in the global batch order[0..n).
  void global_task_counts(const data::FeaturizedData& data, const std::int64_t* rows, std::int64_t n,
                          std::vector<double>& counts) const {
    const std::size_t T = config_.tasks.size();
    counts.assign(T, 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
      const float* m = data.mask.data() + static_cast<std::size_t>(rows[i]) * T;
      for (std::size_t t = 0; t < T; ++t) counts[t] += m[t];
    }
  }

  // Validation metrics, the same on every rank: each rank predicts a slice of
  // the rows, the predictions are gathered, and every rank computes the
  // metrics of all of them (an AUC is not the mean of per-rank AUCs).
  std::vector<eval::TaskMetrics> evaluate_everywhere(const data::FeaturizedData& data) {
    const int ranks = communicator_.world_size();
    if (ranks == 1) return evaluate(net_, config_, data);
    const std::int64_t slice = (data.rows() + ranks - 1) / ranks;
    const std::int64_t first = std::min(data.rows(), slice * communicator_.rank());
    const std::int64_t last = std::min(data.rows(), first + slice);
    // Sharded tables: every rank joins every chunk's row exchange.
    const std::int64_t chunks = sharded_ ? std::max<std::int64_t>(1, (slice + tc_.eval_batch_size - 1) / tc_.eval_batch_size) : 0;
    const std::vector<float> all =
        communicator_.gather_all(predict_rows(net_, config_, data, first, last, chunks).values);
    return eval::evaluate_tasks(config_.tasks, all, data.labels, data.mask, data.groups);
  }

  void backward(StepState& st) {
    deep_->zero_grad();
    if (wide_) wide_->zero_grad();
    if (loss_) loss_->zero_grad();
    st.loss.backward();
    st.row_grads.clear();
    for (const auto& rows : st.touched.rows) st.row_grads.push_back(rows.grad());
  }

  // Sums every gradient over the ranks, and the step's loss values with
  // them. The dense gradients travel in one message with one flag per tensor
  // (a gradient any rank has is one every rank applies, as one process would)
  // and the loss values. The touched embedding rows' gradients travel in the
  // same message, scattered into the whole table, when the table is small
  // (census: 525 rows): one exchange per step instead of the three a sparse
  // sum takes (sizes, ids, rows). A large table's rows go by sparse sum. Both
  // decisions depend only on shapes every rank shares, so the ranks agree.
  void synchronize_gradients(StepState& st) {
    if (communicator_.world_size() == 1) return;
    const auto started = std::chrono::steady_clock::now();
    exchange_gradients(st);
    sync_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }

  void exchange_gradients(StepState& st) {
    std::vector<torch::Tensor> params;
    for (const auto& p : net_.parameters())
      if (p.requires_grad()) params.push_back(p);
    if (log_vars_.defined()) params.push_back(log_vars_);
    const std::size_t P = params.size(), R = st.row_grads.size(), V = 1 + st.task_losses.size();
    std::vector<torch::Tensor> dense;
    // [P flags | R flags | loss value and per-task losses]
    torch::Tensor small = torch::zeros({static_cast<std::int64_t>(P + R + V)}, torch::kFloat32);
    float* sm = small.data_ptr<float>();
    for (std::size_t i = 0; i < P; ++i) {
      const bool has = params[i].grad().defined();
      sm[i] = has ? 1.0f : 0.0f;
      dense.push_back(has ? params[i].mutable_grad() : torch::zeros_like(params[i]));
    }
    for (std::size_t i = 0; i < R; ++i) sm[P + i] = st.row_grads[i].defined() ? 1.0f : 0.0f;
    sm[P + R] = static_cast<float>(st.value);
    for (std::size_t t = 0; t < st.task_losses.size(); ++t) sm[P + R + 1 + t] = static_cast<float>(st.task_losses[t]);
    dense.push_back(small);
    // Row gradients side by side: [U, sum of widths], zeros for a table without.
    std::vector<torch::Tensor> parts;
    std::int64_t width = 0;
    const std::int64_t U = st.touched.ids.defined() ? st.touched.ids.size(0) : 0;
    for (std::size_t i = 0; i < R; ++i) {
      parts.push_back(st.row_grads[i].defined() ? st.row_grads[i]
                                                : torch::zeros({U, st.touched.rows[i].size(1)}, torch::kFloat32));
      width += parts.back().size(1);
    }
    const bool rows_in_dense = !sharded_ && R > 0 && table_rows_ * (width + 1) <= dense_row_exchange_floats_;
    torch::Tensor table_grad;  // [table_rows, width + 1]: the last column counts the ranks that touched the row
    if (rows_in_dense) {
      table_grad = torch::zeros({table_rows_, width + 1}, torch::kFloat32);
      parts.push_back(torch::ones({U, 1}, torch::kFloat32));
      table_grad.index_copy_(0, st.touched.ids, torch::cat(parts, 1));
      parts.pop_back();
      dense.push_back(table_grad);
    }
    communicator_.sum_dense(dense);
    for (std::size_t i = 0; i < P; ++i)
      if (sm[i] > 0 && !params[i].grad().defined()) params[i].mutable_grad() = dense[i];
    st.value = sm[P + R];
    for (std::size_t t = 0; t < st.task_losses.size(); ++t) st.task_losses[t] = sm[P + R + 1 + t];
    if (R == 0) return;
    torch::Tensor rows;
    if (rows_in_dense) {
      st.touched.ids = table_grad.select(1, width).gt(0).nonzero().reshape({-1});
      rows = table_grad.index_select(0, st.touched.ids).narrow(1, 0, width);
    } else if (sharded_) {
      rows = torch::cat(parts, 1);
      send_row_gradients_to_owners(st.touched.ids, rows);
    } else {
      rows = torch::cat(parts, 1);
      communicator_.sum_rows(st.touched.ids, rows, table_rows_);
    }
    std::int64_t column = 0;
    for (std::size_t i = 0; i < R; ++i) {
      const std::int64_t w = parts[i].size(1);
      st.row_grads[i] = sm[P + i] > 0 ? rows.narrow(1, column, w).contiguous() : torch::Tensor();
      column += w;
    }
  }

  void apply(StepState& st) {
    deep_->step();
    if (wide_) wide_->step();
    if (loss_) loss_->step();
    for (std::size_t i = 0; i < rows_.size(); ++i)
      if (st.row_grads[i].defined()) rows_[i].step(st.touched.ids, st.row_grads[i]);
  }

  // One optimizer step; `epoch` (1-based) and `step_in_epoch` name it in errors.
  double step(const model::Batch& batch, int epoch, std::int64_t step_in_epoch, const std::vector<double>* counts) {
    StepState st = forward_loss(batch, epoch - 1, counts);
    const bool one_process = communicator_.world_size() == 1;
    // Several processes learn the global batch's loss with its gradients (one
    // exchange), so each stops alike on a non-finite one before applying it.
    if (one_process) check_finite_loss(st.value, epoch, step_in_epoch);
    backward(st);
    synchronize_gradients(st);
    if (!one_process) check_finite_loss(st.value, epoch, step_in_epoch);
    task_loss_sums_.resize(st.task_losses.size(), 0.0);
    for (std::size_t t = 0; t < st.task_losses.size(); ++t) task_loss_sums_[t] += st.task_losses[t];
    clip_gradients(st);
    apply(st);
    return st.value;
  }

  void check_finite_loss(double value, int epoch, std::int64_t step_in_epoch) const {
    if (!std::isfinite(value)) {
      char msg[512];
      std::snprintf(msg, sizeof msg,
                    "training diverged at epoch %d, step %lld: the loss is %g. Lower train.learning_rate (now %g), "
                    "set train.clip_grad_norm, or look for extreme values in the numeric features "
                    "(transform = \"quantile\" is robust to them); no model was written",
                    epoch, static_cast<long long>(step_in_epoch), value, tc_.learning_rate);
      throw TrainingError(msg);
    }
  }

  // Clips the global norm of the deep part's gradients (dense parameters and touched embedding rows).
  void clip(StepState& st) {
    std::vector<torch::Tensor> grads;
    for (const auto& p : deep_params_)
      if (p.grad().defined()) grads.push_back(p.grad());
    const std::size_t dense = grads.size();
    for (std::size_t i = 0; i < rows_.size(); ++i)
      if (!wide_rows_[i] && st.row_grads[i].defined()) grads.push_back(st.row_grads[i]);
    std::vector<double> squares{0.0, 0.0};  // dense (the same on every rank), rows
    for (std::size_t i = 0; i < grads.size(); ++i) squares[i < dense ? 0 : 1] += grads[i].pow(2).sum().item<double>();
    if (sharded_) {
      std::vector<double> rows{squares[1]};  // each rank holds the gradients of its own rows
      communicator_.sum(rows);
      squares[1] = rows[0];
    }
    const double total = std::sqrt(squares[0] + squares[1]);
    if (total > tc_.clip_grad_norm) {
      const double scale = tc_.clip_grad_norm / (total + 1e-12);
      for (auto& g : grads) g.mul_(scale);
    }
  }

  // ---- Row-wise sharded tables (train.table_sharding = "row") ----
  // Rank r of W keeps row i of every sparse table, and its optimizer state,
  // when i % W == r, at local row i / W. A step fetches its unique rows from
  // their owners (fetch_rows: ids there, rows back), and after the backward
  // sends each row's gradient to its owner (send_row_gradients_to_owners),
  // which sums what every rank sent and updates its rows: each row gets the
  // global gradient, the update the replicated scheme applies. Validation
  // reads rows the same way. Each rank checkpoints its own rows
  // (save_shard); the end of training puts the whole tables back together on
  // rank 0, to test and write the model (unshard_tables).

  // Rows rank r holds of every table: ids r, r + W, r + 2W, ... below table_rows_.
  std::int64_t rows_held_by(int rank) const {
    const int W = communicator_.world_size();
    return (table_rows_ - rank + W - 1) / W;
  }

  // Positions of `ids` (ascending) grouped by owner, and how many each owner has.
  void group_by_owner(const torch::Tensor& ids) {
    const int W = communicator_.world_size();
    const std::int64_t U = ids.size(0);
    const std::int64_t* id = ids.data_ptr<std::int64_t>();
    request_.sent.assign(static_cast<std::size_t>(W), 0);
    for (std::int64_t i = 0; i < U; ++i) ++request_.sent[static_cast<std::size_t>(id[i] % W)];
    std::vector<std::int64_t> next(static_cast<std::size_t>(W), 0);
    for (int d = 1; d < W; ++d) next[static_cast<std::size_t>(d)] = next[static_cast<std::size_t>(d - 1)] + request_.sent[static_cast<std::size_t>(d - 1)];
    request_.order = torch::empty({U}, torch::kInt64);
    std::int64_t* order = request_.order.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < U; ++i) order[next[static_cast<std::size_t>(id[i] % W)]++] = i;
  }

  // Splits `grouped` [rows, width] (rows in owner or rank order) into one flat part per rank.
  static std::vector<torch::Tensor> split_rows(const torch::Tensor& grouped, const std::vector<std::int64_t>& counts) {
    std::vector<torch::Tensor> parts;
    std::int64_t offset = 0;
    for (std::int64_t c : counts) {
      parts.push_back(grouped.narrow(0, offset, c).reshape({-1}));
      offset += c;
    }
    return parts;
  }

  // The rows of every sparse table at `ids` (this step's unique ids, ascending), from their owners.
  std::vector<torch::Tensor> fetch_rows(const torch::Tensor& ids) {
    const auto started = std::chrono::steady_clock::now();
    const int W = communicator_.world_size();
    group_by_owner(ids);
    const torch::Tensor grouped = ids.index_select(0, request_.order);
    const std::vector<torch::Tensor> asked = communicator_.all_to_all(split_rows(grouped.view({-1, 1}), request_.sent));
    request_.received.clear();
    for (const auto& a : asked) request_.received.push_back(a.numel());
    torch::Tensor local = torch::cat(asked);
    std::int64_t* l = local.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < local.numel(); ++i) l[i] /= W;
    request_.received_local = local;
    std::vector<torch::Tensor> columns;
    std::vector<std::int64_t> widths;
    for (const model::SparseTable& t : net_.sparse_tables()) {
      columns.push_back(t.table.index_select(0, local));
      widths.push_back(t.table.size(1));
    }
    const torch::Tensor rows = torch::cat(columns, 1);
    const std::int64_t width = rows.size(1), U = ids.size(0);
    std::vector<std::int64_t> expected;
    for (std::int64_t c : request_.sent) expected.push_back(c * width);
    const std::vector<torch::Tensor> got = communicator_.all_to_all(split_rows(rows, request_.received), &expected);
    torch::Tensor mine = torch::empty({U, width}, torch::kFloat32);
    mine.index_copy_(0, request_.order, torch::cat(got).view({U, width}));
    std::vector<torch::Tensor> out;
    std::int64_t column = 0;
    for (std::int64_t w : widths) {
      out.push_back(mine.narrow(1, column, w).contiguous());
      column += w;
    }
    sync_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return out;
  }

  // `ids`, `rows` [U, width]: this rank's gradients of the rows fetch_rows
  // fetched this step. Replaced by the local rows this rank owns that any
  // rank touched, ascending, and their gradients summed in rank order.
  void send_row_gradients_to_owners(torch::Tensor& ids, torch::Tensor& rows) {
    const std::int64_t width = rows.size(1);
    std::vector<std::int64_t> expected;
    for (std::int64_t c : request_.received) expected.push_back(c * width);
    const torch::Tensor grouped = rows.contiguous().index_select(0, request_.order);
    const torch::Tensor got = torch::cat(communicator_.all_to_all(split_rows(grouped, request_.sent), &expected));
    const std::int64_t n = request_.received_local.numel();
    auto [unique, inverse] = model::unique_ids(request_.received_local, std::max<std::int64_t>(rows_held_by(0), 1));
    torch::Tensor summed = torch::zeros({unique.size(0), width}, torch::kFloat32);
    const float* g = got.data_ptr<float>();
    const std::int64_t* at = inverse.data_ptr<std::int64_t>();
    float* out = summed.data_ptr<float>();
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < width; ++k) out[at[i] * width + k] += g[i * width + k];
    ids = unique;
    rows = summed;
  }

  // Every tensor with a row per table row: the tables (shared by the model
  // and the row optimizers), the row optimizers' state, the kept best
  // weights' copies of the tables.
  std::vector<torch::Tensor> row_tensors(bool optimizer_state) {
    std::vector<torch::Tensor> out;
    for (const model::SparseTable& t : net_.sparse_tables()) out.push_back(t.table);
    if (optimizer_state)
      for (const RowOptimizer& r : rows_)
        for (const torch::Tensor& state : r.row_state()) out.push_back(state);
    for (std::size_t i : table_params_)
      if (i < best_params_.size()) out.push_back(best_params_[i]);
    return out;
  }

  // Every rank's rows of rank 0's tables, sent in slices (rank r's local row
  // j is rank 0's row j * W + r); the tables become those rows in place.
  void scatter_tables_from_primary() {
    torch::NoGradGuard no_grad;
    const int W = communicator_.world_size(), me = communicator_.rank();
    constexpr std::int64_t kSlice = 1 << 16;
    const std::int64_t largest = rows_held_by(0);  // rank 0 holds the most
    for (const model::SparseTable& st : net_.sparse_tables()) {
      torch::Tensor t = st.table;
      if (me == 0 && t.size(0) != table_rows_)
        throw std::logic_error("row-wise sharding: rank 0's table " + st.name + " is not whole");
      const std::int64_t width = t.size(1);
      torch::Tensor part = torch::empty({rows_held_by(me), width}, torch::kFloat32);
      for (std::int64_t first = 0; first < largest; first += kSlice) {
        std::vector<torch::Tensor> send(static_cast<std::size_t>(W), torch::empty({0}, torch::kFloat32));
        if (me == 0)
          for (int r = 0; r < W; ++r) {
            const std::int64_t n = std::max<std::int64_t>(0, std::min(first + kSlice, rows_held_by(r)) - first);
            const std::int64_t begin = first * W + r;
            send[static_cast<std::size_t>(r)] =
                t.index_select(0, torch::arange(begin, begin + n * W, W, torch::kInt64)).reshape({-1});
          }
        const torch::Tensor got = communicator_.all_to_all(send)[0].view({-1, width});
        if (got.size(0) > 0) part.narrow(0, first, got.size(0)).copy_(got);
      }
      t.set_(part);
    }
  }

  // Puts the whole tables back together on rank 0, which tests and writes
  // the model; the other ranks keep their rows (a collective: every rank
  // sends its rows to rank 0 in slices, so rank 0's transient is the whole
  // table plus one slice, not a copy per rank).
  void unshard_tables() {
    torch::NoGradGuard no_grad;
    const int W = communicator_.world_size();
    const bool primary = communicator_.is_primary();
    constexpr std::int64_t kSlice = 1 << 16;               // rows a rank sends per message
    const std::int64_t largest = rows_held_by(0);  // rank 0 holds the most
    for (torch::Tensor t : row_tensors(false)) {
      const std::int64_t width = t.size(1), mine = t.size(0);
      torch::Tensor whole = primary ? torch::empty({table_rows_, width}, torch::kFloat32) : torch::Tensor();
      for (std::int64_t first = 0; first < largest; first += kSlice) {
        const std::int64_t n = std::max<std::int64_t>(0, std::min(first + kSlice, mine) - first);
        std::vector<torch::Tensor> send(static_cast<std::size_t>(W), torch::empty({0}, torch::kFloat32));
        if (n > 0) send[0] = t.narrow(0, first, n).reshape({-1});
        const std::vector<torch::Tensor> got = communicator_.all_to_all(send);
        if (!primary) continue;
        for (int r = 0; r < W; ++r) {
          const torch::Tensor rows = got[static_cast<std::size_t>(r)].view({-1, width});
          const std::int64_t begin = first * W + r;  // rank r's local row `first` is row first * W + r
          whole.index_copy_(0, torch::arange(begin, begin + rows.size(0) * W, W, torch::kInt64), rows);
        }
      }
      if (primary) t.set_(whole);
    }
    net_.set_row_fetch(nullptr);
  }

  std::vector<torch::Tensor> snapshot() {
    std::vector<torch::Tensor> out;
    for (const auto& p : net_.parameters()) out.push_back(p.detach().clone());
    return out;
  }

  void restore(const std::vector<torch::Tensor>& saved) {
    torch::NoGradGuard no_grad;
    auto params = net_.parameters();
    for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
  }

  void save_checkpoint(const std::string& path, const std::string& fingerprint, const TrainReport& report) {
    torch::serialize::OutputArchive a;
    a.write("fingerprint", bytes_tensor(fingerprint), true);
    torch::serialize::OutputArchive model, deep, wide, best;
    net_.save(model);
    a.write("model", model);
    deep_->save(deep);
    a.write("deep_optimizer", deep);
    if (wide_) {
      wide_->save(wide);
      a.write("wide_optimizer", wide);
    }
    for (std::size_t i = 0; i < rows_.size(); ++i) rows_[i].save(a, "rows" + std::to_string(i));
    if (log_vars_.defined()) {
      torch::serialize::OutputArchive loss;
      loss_->save(loss);
      a.write("loss_optimizer", loss);
      a.write("log_vars", log_vars_.detach(), true);
    }
    for (std::size_t i = 0; i < best_params_.size(); ++i) best.write("p" + std::to_string(i), best_params_[i], true);
    a.write("best_params", best);
    a.write("counters", torch::tensor({static_cast<std::int64_t>(epochs_done_), static_cast<std::int64_t>(best_epoch_),
                                       static_cast<std::int64_t>(since_best_), global_step_,
                                       static_cast<std::int64_t>(best_params_.size()),
                                       static_cast<std::int64_t>(stopped_)}),
            true);
    a.write("best_score", torch::tensor({best_score_}, torch::kFloat64), true);
    std::ostringstream rng;
    rng << rng_;
    a.write("shuffle_rng", bytes_tensor(rng.str()), true);
    a.write("torch_rng", at::detail::getDefaultCPUGenerator().get_state(), true);
    std::vector<double> history;  // full precision, one row of 6 per epoch
    for (const auto& e : report.epochs)
      history.insert(history.end(), {static_cast<double>(e.epoch), e.train_loss, e.val_loss, e.seconds, e.rows_per_s,
                                     e.learning_rate});
    a.write("history", torch::tensor(history, torch::kFloat64), true);
    // What the 6 numbers leave out, so that a resumed run's metrics equal an
    // uninterrupted run's: each epoch's per-task train losses and validation
    // metrics, as JSON (doubles round-trip exactly).
    nlohmann::json epochs = nlohmann::json::array();
    for (const auto& e : report.epochs)
      epochs.push_back({{"train_task_loss", e.train_task_loss}, {"val", eval::to_json(e.val)}, {"sync_seconds", e.sync_seconds}});
    a.write("history_details", bytes_tensor(epochs.dump()), true);
    a.write("threads", torch::tensor({static_cast<std::int64_t>(report.threads_at_start)}), true);
    a.write("world_size", torch::tensor({static_cast<std::int64_t>(communicator_.world_size())}), true);
    if (sharded_) a.write("sharded_over", torch::tensor({static_cast<std::int64_t>(communicator_.world_size())}), true);
    write_archive_atomic(a, path);
  }

  // ---- Sharded checkpoints: rank r > 0 keeps its rows in PATH.rankR ----
  static std::string shard_checkpoint_path(const std::string& path, int rank) {
    return path + ".rank" + std::to_string(rank);
  }

  // This rank's row tensors (row_tensors(true): tables, row optimizer state,
  // the best weights' tables) with the epoch and step they belong to.
  void save_shard(const std::string& path, const std::string& fingerprint) {
    torch::serialize::OutputArchive a;
    a.write("fingerprint", bytes_tensor(fingerprint), true);
    a.write("shard", torch::tensor({static_cast<std::int64_t>(communicator_.rank()),
                                    static_cast<std::int64_t>(communicator_.world_size()),
                                    static_cast<std::int64_t>(epochs_done_), global_step_}),
            true);
    const std::vector<torch::Tensor> tensors = row_tensors(true);
    for (std::size_t i = 0; i < tensors.size(); ++i) a.write("t" + std::to_string(i), tensors[i], true);
    write_archive_atomic(a, path);
  }

  // After load_checkpoint of rank 0's bytes: a rank > 0 replaces rank 0's
  // rows with its own from its shard file. Every rank learns whether every
  // rank could (one sum), so all stop alike when one file is missing or of
  // another epoch (a run killed while the files were written).
  void load_own_shard(const std::string& checkpoint_path, const std::string& fingerprint) {
    std::string problem;
    if (communicator_.rank() > 0) {
      const std::string path = shard_checkpoint_path(checkpoint_path, communicator_.rank());
      try {
        const std::string bytes = read_checkpoint_bytes(path);
        if (bytes.empty()) throw ModelError(path + ": this worker's rows of the checkpoint are missing (with sharded "
                                                   "tables every worker resumes where it ran, from its own file)");
        torch::serialize::InputArchive a;
        a.load_from(bytes.data(), bytes.size());
        torch::Tensor stored, shard;
        a.read("fingerprint", stored, true);
        if (tensor_bytes(stored) != fingerprint)
          throw ModelError(path + ": this worker's rows belong to another config or training data");
        a.read("shard", shard, true);
        const std::int64_t* h = shard.data_ptr<std::int64_t>();
        if (shard.numel() != 4 || h[0] != communicator_.rank() || h[1] != communicator_.world_size())
          throw ModelError(path + ": rows of another worker or worker count");
        if (h[2] != epochs_done_ || h[3] != global_step_)
          throw ModelError(path + ": rows of epoch " + std::to_string(h[2]) + ", but rank 0's checkpoint is of epoch " +
                           std::to_string(epochs_done_) + " (a run stopped while writing them): train without --resume");
        torch::NoGradGuard no_grad;
        const std::int64_t mine = rows_held_by(communicator_.rank());
        std::vector<torch::Tensor> tensors = row_tensors(true);  // rank 0's rows, from its checkpoint
        for (std::size_t i = 0; i < tensors.size(); ++i) {
          torch::Tensor t;
          a.read("t" + std::to_string(i), t, true);
          if (t.dim() != 2 || t.size(0) != mine || t.size(1) != tensors[i].size(1))
            throw ModelError(path + ": rows of another shape");
          tensors[i].set_(t);
        }
      } catch (const ModelError& e) {
        problem = e.what();
      } catch (const c10::Error& e) {
        problem = path + ": corrupt checkpoint rows: " + e.what_without_backtrace();
      }
    }
    std::vector<double> failed{problem.empty() ? 0.0 : 1.0};
    communicator_.sum(failed);
    if (!problem.empty()) throw ModelError(problem);
    if (failed[0] > 0)
      throw ModelError(checkpoint_path + ": another worker could not read its rows of the checkpoint (its error is above)");
  }

  // The checkpoint file's bytes, or "" when there is none.
  static std::string read_checkpoint_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
  }

  void load_checkpoint(const std::string& bytes, const std::string& path, const std::string& fingerprint,
                       TrainReport& report) {
    try {
      torch::serialize::InputArchive a;
      a.load_from(bytes.data(), bytes.size());
      // LibTorch resizes tensors on load instead of checking shapes, so a
      // checkpoint of another config or data would load "successfully".
      torch::Tensor stored;
      a.read("fingerprint", stored, true);
      const std::string theirs = tensor_bytes(stored);
      if (theirs != fingerprint && (theirs == fingerprint + "-streamed" || theirs + "-streamed" == fingerprint))
        throw ModelError(path + ": this checkpoint is of a run whose training rows were " +
                         (theirs.size() > fingerprint.size() ? "streamed from disk: resume with --stream"
                                                             : "in memory: resume without --stream (or raise data.memory_budget_mb)"));
      if (theirs != fingerprint)
        throw ModelError(path + ": this checkpoint belongs to another config or training data; delete it or train "
                                "without --resume");
      torch::serialize::InputArchive model, deep, wide, best;
      a.read("model", model);
      net_.load(model);
      a.read("deep_optimizer", deep);
      deep_->load(deep);
      if (wide_) {
        a.read("wide_optimizer", wide);
        wide_->load(wide);
      }
      for (std::size_t i = 0; i < rows_.size(); ++i) rows_[i].load(a, "rows" + std::to_string(i));
      if (log_vars_.defined()) {
        torch::serialize::InputArchive loss;
        a.read("loss_optimizer", loss);
        loss_->load(loss);
        torch::Tensor lv;
        a.read("log_vars", lv, true);
        torch::NoGradGuard no_grad;
        log_vars_.copy_(lv);
      }
      torch::Tensor counters, best_score, shuffle, torch_rng, history;
      a.read("counters", counters, true);
      a.read("best_score", best_score, true);
      a.read("shuffle_rng", shuffle, true);
      a.read("torch_rng", torch_rng, true);
      a.read("history", history, true);
      torch::Tensor threads;
      report.threads_at_start = a.try_read("threads", threads, true) ? static_cast<int>(threads[0].item<std::int64_t>()) : 0;
      torch::Tensor world, sharded_over;
      const int saved_world = a.try_read("world_size", world, true) ? static_cast<int>(world[0].item<std::int64_t>()) : 1;
      const std::int64_t saved_shards = a.try_read("sharded_over", sharded_over, true) ? sharded_over[0].item<std::int64_t>() : 0;
      if (saved_shards != (sharded_ ? communicator_.world_size() : 0))
        throw ModelError(path + ": this checkpoint's tables are " +
                         (saved_shards > 0 ? "sharded over " + std::to_string(saved_shards) + " workers"
                                           : std::string("whole")) +
                         "; resume with " + (saved_shards > 0 ? std::to_string(saved_shards) + " workers" : std::string("one process or replicated tables")));
      if (saved_world != communicator_.world_size() && communicator_.is_primary())
        std::fprintf(stderr,
                     "warning: resuming with %d workers a run that trained with %d: the sums reduce in another order, "
                     "so results match an uninterrupted run only to floating-point rounding\n",
                     communicator_.world_size(), saved_world);
      epochs_done_ = static_cast<int>(counters[0].item<std::int64_t>());
      best_epoch_ = static_cast<int>(counters[1].item<std::int64_t>());
      since_best_ = static_cast<int>(counters[2].item<std::int64_t>());
      global_step_ = counters[3].item<std::int64_t>();
      const std::int64_t nbest = counters[4].item<std::int64_t>();
      stopped_ = counters[5].item<std::int64_t>() != 0;
      best_score_ = best_score[0].item<double>();
      a.read("best_params", best);
      best_params_.assign(static_cast<std::size_t>(nbest), torch::Tensor());
      for (std::int64_t i = 0; i < nbest; ++i) best.read("p" + std::to_string(i), best_params_[i], true);
      std::istringstream rng(tensor_bytes(shuffle));
      rng >> rng_;
      set_torch_generator_state(torch_rng);
      const double* h = history.data_ptr<double>();
      for (std::int64_t i = 0; i + 6 <= history.numel(); i += 6) {
        EpochLog e;
        e.epoch = static_cast<int>(h[i]);
        e.train_loss = h[i + 1];
        e.val_loss = h[i + 2];
        e.seconds = h[i + 3];
        e.rows_per_s = h[i + 4];
        e.learning_rate = h[i + 5];
        report.epochs.push_back(e);
      }
      torch::Tensor details;
      if (a.try_read("history_details", details, true)) {  // absent in checkpoints of earlier versions
        const nlohmann::json epochs = nlohmann::json::parse(tensor_bytes(details), nullptr, false);
        if (!epochs.is_array() || epochs.size() != report.epochs.size())
          throw ModelError(path + ": corrupt checkpoint: its per-epoch history does not match its epoch count");
        try {
          for (std::size_t i = 0; i < epochs.size(); ++i) {
            report.epochs[i].train_task_loss = epochs[i].at("train_task_loss").get<std::vector<double>>();
            report.epochs[i].val = eval::task_metrics_from_json(epochs[i].at("val"));
            report.epochs[i].sync_seconds = epochs[i].value("sync_seconds", 0.0);
          }
        } catch (const std::exception& e) {
          throw ModelError(path + ": corrupt checkpoint: epoch history: " + e.what());
        }
      }
    } catch (const c10::Error& e) {
      throw ModelError(path + ": corrupt checkpoint or one from another config: " + e.what_without_backtrace());
    }
  }

  model::RankingModel& net_;
  const Config& config_;
  const TrainConfig& tc_;
  Communicator& communicator_;
  std::unique_ptr<torch::optim::Optimizer> deep_, wide_, loss_;
  std::vector<torch::Tensor> deep_params_;
  std::vector<RowOptimizer> rows_;
  std::vector<bool> scheduled_rows_, wide_rows_;
  torch::Tensor log_vars_;
  std::mt19937_64 rng_;
  std::vector<torch::Tensor> best_params_;
  double best_score_ = std::numeric_limits<double>::infinity();
  eval::Monitor monitor_;
  int best_epoch_ = 0, since_best_ = 0, epochs_done_ = 0;
  std::int64_t global_step_ = 0;
  std::int64_t table_rows_ = 0;  // rows of the largest sparse table: the id space of TouchedRows
  std::int64_t dense_row_exchange_floats_ = TrainOptions{}.dense_row_exchange_floats;
  std::vector<double> task_loss_sums_;  // this epoch's per-task batch losses, summed by step()
  double sync_seconds_ = 0;             // this epoch's time in synchronize_gradients
  bool stopped_ = false;
  bool sharded_ = false;                 // train.table_sharding = "row" with several ranks
  std::vector<std::size_t> table_params_;  // indices in net_.parameters() of the sparse tables
  struct ShardRequest {                    // this step's row fetch, kept for its gradients
    torch::Tensor order;                   // positions in the unique ids, grouped by owner
    std::vector<std::int64_t> sent;        // ids asked of each owner
    std::vector<std::int64_t> received;    // ids each rank asked of this one
    torch::Tensor received_local;          // their local rows here, in rank order
  } request_;
};

namespace {
LocalCommunicator& local_communicator() {
  static LocalCommunicator local;  // stateless
  return local;
}
}  // namespace

Trainer::Trainer(model::RankingModel& net, const Config& config, Communicator* communicator)
    : impl_(std::make_unique<Impl>(net, config, communicator ? *communicator : local_communicator())) {}
Trainer::~Trainer() = default;
StepState Trainer::forward_loss(const model::Batch& batch, int epoch_index, const std::vector<double>* global_task_counts) {
  return impl_->forward_loss(batch, epoch_index, global_task_counts);
}
void Trainer::backward(StepState& step) { impl_->backward(step); }
void Trainer::synchronize_gradients(StepState& step) { impl_->synchronize_gradients(step); }
void Trainer::clip_gradients(StepState& step) { impl_->clip_gradients(step); }
void Trainer::apply(StepState& step) { impl_->apply(step); }
double Trainer::step(const model::Batch& batch, int epoch, std::int64_t step_in_epoch,
                     const std::vector<double>* global_task_counts) {
  return impl_->step(batch, epoch, step_in_epoch, global_task_counts);
}
void Trainer::set_learning_rate(double lr) { impl_->set_learning_rate(lr); }
TrainReport Trainer::run(const data::FeaturizedData& train, const data::FeaturizedData* val, const TrainOptions& options) {
  data::InMemoryRows rows(train);
  return impl_->run(rows, val, options);
}
TrainReport Trainer::run(data::TrainingRows& train, const data::FeaturizedData* val, const TrainOptions& options) {
  return impl_->run(train, val, options);
}

TrainReport train_model(model::RankingModel& net, const Config& config, const data::FeaturizedData& train,
                        const data::FeaturizedData* val, const TrainOptions& options) {
  Trainer trainer(net, config);
  return trainer.run(train, val, options);
}

}  // namespace mtrank::train
