#pragma once
// Progressive Layered Extraction (Tang et al., RecSys 2020). Each level has
// task-specific experts and shared experts. Task k's gate mixes only its own
// and the shared experts; a shared gate mixes all experts and feeds the next
// level's shared path. CGC is PLE with one level.
//
// All experts of a level run together: at level 1 every expert reads the same
// input, so their first layers are one GEMM; at deeper levels the task experts
// are one batched matmul over tasks. Gates see their experts through a fixed
// index map, so masking is a gather, not a loop.
#include "model/blocks.h"
#include "model/model.h"

namespace mtrank::model {

class ExtractionLayerImpl : public torch::nn::Module {
 public:
  ExtractionLayerImpl(std::int64_t tasks, std::int64_t specific, std::int64_t shared, std::int64_t in,
                      const std::vector<std::int64_t>& hidden, bool first, bool last);
  // first level: x [B, in]; later: task inputs [T, B, in] and shared input [B, in].
  // Returns task outputs [T, B, h], the shared output [B, h] (undefined on the
  // last level) and the task gates [B, T, specific + shared].
  struct Output {
    torch::Tensor tasks, shared, gates;
  };
  Output forward(const torch::Tensor& task_in, const torch::Tensor& shared_in, double gate_dropout_p);
  const torch::Tensor& selection() const { return selection_; }  // [T, K] expert ids each task gate sees
  std::int64_t total_experts() const { return tasks_ * specific_ + shared_; }

 private:
  std::int64_t tasks_, specific_, shared_, hidden0_;
  bool first_, last_;
  // Level 1: one GEMM for every expert's first layer. Later levels: task
  // experts per task (batched), shared experts on the shared input.
  torch::Tensor w0_all_, b0_all_, w0_task_, b0_task_, w0_shared_, b0_shared_;
  GroupedMLP rest_{nullptr};
  torch::Tensor gate_w_, gate_b_, shared_gate_w_, shared_gate_b_;
  torch::Tensor selection_;
};
TORCH_MODULE(ExtractionLayer);

class Ple : public RankingModel {
 public:
  Ple(const ModelConfig& config, const InputShape& shape);

 protected:
  ModelOutput forward_deep(const torch::Tensor& x) override;
  void set_output_bias(const std::vector<double>& task_logits) override { towers_->set_output_bias(task_logits); }

 private:
  std::vector<ExtractionLayer> levels_;
  Towers towers_{nullptr};
  double dropout_, gate_dropout_;
};

std::shared_ptr<RankingModel> make_ple(const ModelConfig& config, const InputShape& shape);

}  // namespace mtrank::model
