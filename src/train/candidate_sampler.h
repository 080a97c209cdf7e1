#pragma once
// The candidates of a sampled softmax for sequential models (issue 9,
// sequential.softmax = "sampled"), with their log-Q correction.
#include <cstdint>
#include <utility>

#include <torch/torch.h>

namespace mtrank::train {

// Sampled softmax's candidates (sequential.softmax = "sampled"): the batch's
// labels and `negatives` items drawn with replacement by the training labels'
// popularity f, deduplicated. Each candidate's logit is shifted by minus the
// log of its probability of being in the set, 1 - (1 - f_j)^(P + S) for P
// labels and S draws (the labels follow f in expectation): the log-Q
// correction, applied to the true and the sampled items alike as
// TensorFlow's sampled_softmax_loss does with expected counts. Popularity
// rather than uniform draws: frequent items are the hard negatives a
// next-item model confuses, and with uniform draws the correction could not
// tell the batch's labels (popular by construction) from the rest.
class CandidateSampler {
 public:
  // labels [N, L]: every training window's labels (0 = none), whose counts are the popularity.
  CandidateSampler(const torch::Tensor& labels, std::int64_t num_items, std::int64_t negatives);
  // (candidates [C] sorted unique, logit shifts [C]) for a batch's labels [B, L];
  // draws from torch's default generator (seeded by train.seed).
  std::pair<torch::Tensor, torch::Tensor> draw(const torch::Tensor& labels) const;

 private:
  std::int64_t negatives_;
  torch::Tensor popularity_, log1m_popularity_, cumulative_;  // [num_items + 1], double
};

}  // namespace mtrank::train
