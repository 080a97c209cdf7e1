#include "train/candidate_sampler.h"

namespace mtrank::train {

CandidateSampler::CandidateSampler(const torch::Tensor& labels, std::int64_t num_items, std::int64_t negatives)
    : negatives_(negatives) {
  const torch::Tensor flat = labels.reshape({-1});
  const torch::Tensor counts = torch::bincount(flat.masked_select(flat > 0), {}, num_items + 1).to(torch::kDouble);
  popularity_ = counts / counts.sum();
  log1m_popularity_ = torch::log1p(-popularity_);
  cumulative_ = torch::cumsum(popularity_, 0);
}

std::pair<torch::Tensor, torch::Tensor> CandidateSampler::draw(const torch::Tensor& labels) const {
  const torch::Tensor flat = labels.reshape({-1});
  const torch::Tensor targets = flat.masked_select(flat > 0);
  // Inverse-CDF draws: torch::multinomial refuses more than 2^24 categories,
  // the catalogs a sampled softmax is for. An item of popularity 0 (padding,
  // an item never a label) has no interval of its own, so it is never drawn.
  const torch::Tensor u = torch::rand({negatives_}, torch::kDouble) * cumulative_[-1];
  const torch::Tensor drawn =
      torch::searchsorted(cumulative_, u, /*out_int32=*/false, /*right=*/true).clamp_max(popularity_.size(0) - 1);
  const torch::Tensor candidates = std::get<0>(at::_unique(torch::cat({targets, drawn}), /*sorted=*/true));
  const double draws = static_cast<double>(targets.numel() + negatives_);
  const torch::Tensor inclusion = -torch::expm1(draws * log1m_popularity_.index_select(0, candidates));
  return {candidates, (-torch::log(inclusion)).to(torch::kFloat)};
}

}  // namespace mtrank::train
