#pragma once
// Warm start (Wide & Deep's continuous training): initialize a new model from
// one trained on older data. Shared categories keep their embedding rows and
// wide weights (the new vocabulary extends the old one, so old ids are
// unchanged); new categories start fresh; dense parameters are copied where
// name and shape match, if features and tasks are in the same order as before
// (dense layers read their inputs by position).
#include <cstdint>
#include <string>

#include "data/preprocessor.h"
#include "model/model.h"
#include "model/model_dir.h"

namespace mtrank::train {

struct WarmStartReport {
  std::int64_t rows_copied = 0;    // sparse-table rows (embeddings, wide weights) taken over
  std::int64_t rows_new = 0;       // rows of categories the old model did not know
  std::int64_t params_copied = 0;  // dense parameter tensors taken over
  std::int64_t params_skipped = 0; // dense tensors whose shape changed (e.g. new features)
};

WarmStartReport warm_start(model::RankingModel& net, const data::Preprocessor& pre, const model::LoadedModel& old);

}  // namespace mtrank::train
