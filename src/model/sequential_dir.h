#pragma once
// A sequential (next-item) model directory (issue 9), written and read with
// the mechanics of every model directory (model_dir.h: durable files, a
// manifest, an atomic swap):
//   config.toml   the training config ([data], [sequential], [train])
//   items.json    the item vocabulary: external item ids in model id order (1..n)
//   weights.pt    the network
//   meta.json     format mtrank-model, kind "sequential", widths, training
//                 summary, and "item_features" (the sizes of the item features
//                 weights.pt holds: their values are buffers there, so a model
//                 needs no item table or vector file to be served)
// Torch-free: the network is an opaque pointer.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "data/sequences.h"

namespace mtrank::model {

class SequentialRecommenderImpl;

struct LoadedSequentialModel {
  Config config;
  data::ItemVocabulary items;
  std::shared_ptr<SequentialRecommenderImpl> net;  // in eval mode
  nlohmann::json meta;
};

// The sizes of a model's item features (0 = none): the term buckets and
// total terms of the items' bags, and the width of the frozen vectors.
struct ItemFeatureSizes {
  std::int64_t buckets = 0, entries = 0, vector_dim = 0;
};
nlohmann::json to_json(const ItemFeatureSizes& sizes);

// Builds the network a config describes over `num_items` items (throws
// ConfigError on bad widths or an empty item representation).
std::shared_ptr<SequentialRecommenderImpl> create_sequential_model(const SequentialConfig& config, std::int64_t num_items,
                                                                   const ItemFeatureSizes& features = {});

// Refuses (TrainingError) weights that are not finite. `meta` gets format and kind.
void save_sequential_model_dir(const std::string& dir, const Config& config, const data::ItemVocabulary& items,
                               SequentialRecommenderImpl& net, nlohmann::json meta);
LoadedSequentialModel load_sequential_model_dir(const std::string& dir);  // throws ModelError naming the file

}  // namespace mtrank::model
