#pragma once
// ESMM, the Entire Space Multi-task Model (Ma et al., SIGIR 2018): a CTR tower
// and a CVR tower over the shared embeddings, trained on every impression
// through pCTCVR = pCTR x pCVR, so the CVR tower never trains on the clicked
// rows alone (the sample selection bias of a CVR model) and shares the
// embeddings with the far larger CTR task.
//
// Tasks, in config order: 0 = click (pCTR), 1 = click and conversion over all
// impressions (pCTCVR), and optionally 2 = conversion (pCVR), whose loss
// weight is usually 0 and whose metrics are read on clicked rows (its `where`).
// The model's outputs are logits like every family's: task 1's is
// logit(pCTR x pCVR), so the binary objective's cross-entropy on it is the
// paper's loss on pCTCVR and its sigmoid is pCTCVR, in training, `predict`
// and serving alike.
#include "model/blocks.h"
#include "model/model.h"

namespace mtrank::model {

class Esmm : public RankingModel {
 public:
  Esmm(const ModelConfig& config, const InputShape& shape);

 protected:
  ModelOutput forward_deep(const torch::Tensor& x) override;
  void set_output_bias(const std::vector<double>& task_logits) override;

 private:
  Towers towers_{nullptr};  // [0] CTR, [1] CVR
  double dropout_;
};

// logit(sigmoid(a) x sigmoid(b)) = -logsumexp(-a, -b, -a - b), exactly: with
// p = 1 / ((1 + e^-a)(1 + e^-b)), p / (1 - p) = 1 / (e^-a + e^-b + e^-a-b).
// Stable for any a, b, with gradients to both everywhere.
torch::Tensor product_logit(const torch::Tensor& a, const torch::Tensor& b);

std::shared_ptr<RankingModel> make_esmm(const ModelConfig& config, const InputShape& shape);

}  // namespace mtrank::model
