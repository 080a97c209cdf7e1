#include "train/row_optimizer.h"

#include <cmath>

#include <ATen/Parallel.h>

namespace mtrank::train {

namespace {
// Rows ahead to prefetch: touched rows are scattered over tables much larger
// than the caches, so the update is bound by DRAM latency, not arithmetic.
constexpr std::int64_t kPrefetch = 8;
}  // namespace

RowOptimizer::RowOptimizer(torch::Tensor table, const std::string& kind, double learning_rate, double weight_decay,
                           FtrlHyper ftrl)
    : kind_(kind == "adam" ? Kind::kAdam : kind == "adagrad" ? Kind::kAdagrad : Kind::kFtrl), table_(std::move(table)),
      lr_(learning_rate), weight_decay_(weight_decay), eps_(kind_ == Kind::kAdam ? 1e-8 : 1e-10), ftrl_(ftrl) {
  // FTRL keeps z in first_ and n in second_; z starts consistent with the table (warm start).
  first_ = kind_ == Kind::kFtrl ? ftrl_initial_z(table_, ftrl_) : torch::zeros_like(table_);
  if (kind_ != Kind::kAdagrad) second_ = torch::zeros_like(table_);
}

void RowOptimizer::step(const torch::Tensor& ids, const torch::Tensor& grad_in) {
  torch::NoGradGuard no_grad;
  ++step_;
  if (kind_ != Kind::kFtrl) {
    // Adam and AdaGrad in one fused pass per touched row, prefetching rows
    // ahead: read w, its moments and g once, write them once. The tensor-op
    // version (gather and scatter each table) took 8.9 ms per step of the large
    // MMoE (26k touched rows x 16, 1 thread); this takes 5.4 ms.
    const torch::Tensor g = grad_in.contiguous();
    const std::int64_t* id = ids.data_ptr<std::int64_t>();
    const float* gp = g.data_ptr<float>();
    float* wp = table_.data_ptr<float>();
    float* m1 = first_.data_ptr<float>();
    float* m2 = second_.defined() ? second_.data_ptr<float>() : nullptr;
    const std::int64_t width = table_.size(1);
    const float lr = static_cast<float>(lr_), wd = static_cast<float>(weight_decay_), eps = static_cast<float>(eps_);
    const float b1 = static_cast<float>(beta1_), b2 = static_cast<float>(beta2_);
    const float bc1 = static_cast<float>(1 - std::pow(beta1_, static_cast<double>(step_)));
    const float bc2 = static_cast<float>(1 - std::pow(beta2_, static_cast<double>(step_)));
    const bool adam = kind_ == Kind::kAdam;
    at::parallel_for(0, ids.size(0), 256, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        if (i + kPrefetch < end) {
          const std::int64_t ahead = id[i + kPrefetch] * width;
          __builtin_prefetch(wp + ahead, 1);
          __builtin_prefetch(m1 + ahead, 1);
          if (m2) __builtin_prefetch(m2 + ahead, 1);
        }
        const std::int64_t row = id[i] * width;
        float* w = wp + row;
        float* a = m1 + row;
        const float* gi = gp + i * width;
        if (adam) {
          // "Lazy" Adam: untouched rows' moments are not decayed; bias correction uses the global step.
          float* v = m2 + row;
          for (std::int64_t k = 0; k < width; ++k) {
            const float gk = gi[k] + wd * w[k];
            a[k] = b1 * a[k] + (1 - b1) * gk;
            v[k] = b2 * v[k] + (1 - b2) * gk * gk;
            w[k] -= lr / bc1 * a[k] / (std::sqrt(v[k] / bc2) + eps);
          }
        } else {
          // AdaGrad, as torch::optim::Adagrad (initial accumulator 0).
          for (std::int64_t k = 0; k < width; ++k) {
            const float gk = gi[k] + wd * w[k];
            a[k] += gk * gk;
            w[k] -= lr * gk / (std::sqrt(a[k]) + eps);
          }
        }
      }
    });
    return;
  }
  torch::Tensor w = table_.index_select(0, ids);
  {
    // FTRL's own L2 (ftrl_l2) is the regularizer here; z and n live in first_ and second_.
    torch::Tensor z = first_.index_select(0, ids), n = second_.index_select(0, ids);
    ftrl_update(w, grad_in, z, n, ftrl_);
    first_.index_copy_(0, ids, z);
    second_.index_copy_(0, ids, n);
    table_.index_copy_(0, ids, w);
  }
}

void RowOptimizer::save(torch::serialize::OutputArchive& archive, const std::string& prefix) const {
  archive.write(prefix + ".step", torch::tensor(step_), true);
  archive.write(prefix + ".first", first_, true);
  if (second_.defined()) archive.write(prefix + ".second", second_, true);
}

void RowOptimizer::load(torch::serialize::InputArchive& archive, const std::string& prefix) {
  torch::Tensor step;
  archive.read(prefix + ".step", step, true);
  step_ = step.item<std::int64_t>();
  archive.read(prefix + ".first", first_, true);
  if (second_.defined()) archive.read(prefix + ".second", second_, true);
}

}  // namespace mtrank::train
