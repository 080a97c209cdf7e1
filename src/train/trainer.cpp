#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>

#include "common/progress.h"
#include "model/batch.h"
#include "train/row_optimizer.h"

namespace mtrank::train {

torch::Tensor multitask_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& mask,
                             const std::vector<TaskConfig>& tasks, std::vector<double>* per_task) {
  torch::Tensor total = torch::zeros({}, logits.options());
  if (per_task) per_task->assign(tasks.size(), 0.0);
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const auto k = static_cast<std::int64_t>(t);
    torch::Tensor m = mask.select(1, k);
    torch::Tensor z = logits.select(1, k), y = labels.select(1, k);
    torch::Tensor elementwise = tasks[t].type == TaskType::kBinary
                                    ? torch::binary_cross_entropy_with_logits(z, y, {}, {}, at::Reduction::None)
                                    : (z - y).square();
    torch::Tensor task_loss = (elementwise * m).sum() / m.sum().clamp_min(1.0);
    if (per_task) (*per_task)[t] = task_loss.item<double>();
    total = total + tasks[t].weight * task_loss;
  }
  return total;
}

Predictions predict(model::RankingModel& net, const Config& config, const data::FeaturizedData& data) {
  torch::InferenceMode guard;
  net.eval();
  Predictions out;
  out.rows = data.rows();
  out.tasks = data.num_tasks();
  out.values.resize(static_cast<std::size_t>(out.rows * out.tasks));
  model::BatchBuilder builder;
  torch::Tensor gate_sum;
  const std::int64_t bs = config.train.eval_batch_size;
  for (std::int64_t begin = 0; begin < data.rows(); begin += bs) {
    const std::int64_t n = std::min(bs, data.rows() - begin);
    model::Batch batch = builder.build_range(data, begin, n);
    model::ModelOutput o = net.forward(batch, nullptr);
    std::vector<torch::Tensor> cols;
    for (int t = 0; t < out.tasks; ++t) {
      torch::Tensor z = o.logits.select(1, t);
      cols.push_back(config.tasks[t].type == TaskType::kBinary ? torch::sigmoid(z) : z);
    }
    torch::Tensor p = torch::stack(cols, 1).contiguous();
    std::copy_n(p.data_ptr<float>(), n * out.tasks, out.values.data() + begin * out.tasks);
    if (o.gates.defined()) {
      torch::Tensor s = o.gates.sum(0).to(torch::kFloat64);
      gate_sum = gate_sum.defined() ? gate_sum + s : s;
    }
  }
  if (gate_sum.defined() && data.rows() > 0) {
    gate_sum = (gate_sum / static_cast<double>(data.rows())).contiguous();
    for (std::int64_t t = 0; t < gate_sum.size(0); ++t) {
      const double* row = gate_sum[t].data_ptr<double>();
      out.expert_utilization.emplace_back(row, row + gate_sum.size(1));
    }
  }
  return out;
}

std::vector<eval::TaskMetrics> evaluate(model::RankingModel& net, const Config& config,
                                        const data::FeaturizedData& data, Predictions* predictions) {
  Predictions p = predict(net, config, data);
  std::vector<eval::TaskMetrics> m = eval::evaluate_tasks(config.tasks, p.values, data.labels, data.mask);
  if (predictions) *predictions = std::move(p);
  return m;
}

namespace {
double weighted_loss(const std::vector<TaskConfig>& tasks, const std::vector<eval::TaskMetrics>& m) {
  double s = 0;
  for (std::size_t t = 0; t < tasks.size(); ++t)
    if (m[t].count > 0) s += tasks[t].weight * m[t].loss;
  return s;
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net.parameters()) out.push_back(p.detach().clone());
  return out;
}

void restore(torch::nn::Module& net, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  auto params = net.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
}
}  // namespace

TrainReport train_model(model::RankingModel& net, const Config& config, const data::FeaturizedData& train,
                        const data::FeaturizedData* val, bool show_progress) {
  const TrainConfig& tc = config.train;
  std::vector<torch::Tensor> dense_params;
  for (const auto& p : net.parameters())
    if (p.requires_grad()) dense_params.push_back(p);
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (tc.optimizer == "adam")
    optimizer = std::make_unique<torch::optim::Adam>(
        dense_params, torch::optim::AdamOptions(tc.learning_rate).weight_decay(tc.weight_decay));
  else
    optimizer = std::make_unique<torch::optim::Adagrad>(
        dense_params, torch::optim::AdagradOptions(tc.learning_rate).weight_decay(tc.weight_decay));
  RowOptimizer embedding_optimizer(net.input()->table(), tc);

  std::mt19937_64 rng(tc.seed);
  std::vector<std::int64_t> order(static_cast<std::size_t>(train.rows()));
  std::iota(order.begin(), order.end(), 0);
  model::BatchBuilder builder;
  TrainReport report;
  double best = std::numeric_limits<double>::infinity();
  std::vector<torch::Tensor> best_params;
  int since_best = 0;
  double train_seconds = 0;
  std::int64_t train_rows = 0;

  for (int epoch = 1; epoch <= tc.epochs; ++epoch) {
    net.train();
    std::shuffle(order.begin(), order.end(), rng);
    Progress progress("epoch " + std::to_string(epoch) + "/" + std::to_string(tc.epochs),
                      static_cast<std::uint64_t>(train.rows()), "rows", show_progress);
    double loss_sum = 0;
    std::int64_t batches = 0;
    for (std::int64_t begin = 0; begin < train.rows(); begin += tc.batch_size) {
      const std::int64_t n = std::min(tc.batch_size, train.rows() - begin);
      model::Batch batch = builder.build(train, order.data() + begin, n);
      model::TouchedRows touched;
      model::ModelOutput out = net.forward(batch, &touched);
      torch::Tensor loss = multitask_loss(out.logits, batch.labels, batch.mask, config.tasks);
      optimizer->zero_grad();
      loss.backward();
      optimizer->step();
      if (touched.rows.grad().defined()) embedding_optimizer.step(touched.ids, touched.rows.grad());
      loss_sum += loss.item<double>();
      ++batches;
      if ((batches & 7) == 0) {
        char extra[48];
        std::snprintf(extra, sizeof extra, "loss %.4f", loss_sum / static_cast<double>(batches));
        progress.update(static_cast<std::uint64_t>(begin + n), extra);
      }
    }
    EpochLog log;
    log.epoch = epoch;
    log.seconds = progress.elapsed_seconds();
    log.train_loss = loss_sum / static_cast<double>(std::max<std::int64_t>(batches, 1));
    log.rows_per_s = static_cast<double>(train.rows()) / std::max(log.seconds, 1e-9);
    train_seconds += log.seconds;
    train_rows += train.rows();
    char extra[96];
    if (val) {
      log.val = evaluate(net, config, *val);
      log.val_loss = weighted_loss(config.tasks, log.val);
      std::snprintf(extra, sizeof extra, "train loss %.4f  val loss %.4f", log.train_loss, log.val_loss);
    } else {
      std::snprintf(extra, sizeof extra, "train loss %.4f", log.train_loss);
    }
    progress.finish(extra);
    const double score = val ? log.val_loss : log.train_loss;
    report.epochs.push_back(std::move(log));
    if (score < best) {
      best = score;
      report.best_epoch = epoch;
      since_best = 0;
      if (val) best_params = snapshot(net);
    } else if (val && tc.patience > 0 && ++since_best >= tc.patience) {
      report.early_stopped = true;
      if (show_progress)
        std::fprintf(stderr, "early stopping: no validation improvement for %lld epochs; keeping epoch %d\n",
                     static_cast<long long>(tc.patience), report.best_epoch);
      break;
    }
  }
  if (!best_params.empty()) restore(net, best_params);
  report.seconds = train_seconds;
  report.train_rows_per_s = static_cast<double>(train_rows) / std::max(train_seconds, 1e-9);
  return report;
}

}  // namespace mtrank::train
