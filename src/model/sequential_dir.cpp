#include "model/sequential_dir.h"

#include <filesystem>

#include "common/error.h"
#include "model/model.h"
#include "model/model_dir.h"
#include "model/sequential.h"

namespace mtrank::model {

nlohmann::json to_json(const ItemFeatureSizes& sizes) {
  return {{"buckets", sizes.buckets}, {"entries", sizes.entries}, {"vector_dim", sizes.vector_dim}};
}

std::shared_ptr<SequentialRecommenderImpl> create_sequential_model(const SequentialConfig& config,
                                                                   std::int64_t num_items,
                                                                   const ItemFeatureSizes& features) {
  SequentialOptions o;
  o.item_ids = config.item_ids;
  o.feature_buckets = features.buckets;
  o.feature_entries = features.entries;
  o.vector_dim = features.vector_dim;
  o.num_items = num_items;
  o.widths = config.widths;
  o.block = sequential_block(config.block);
  o.blocks = static_cast<int>(config.blocks);
  o.dropout = config.dropout;
  o.r_min = config.r_min;
  o.r_max = config.r_max;
  try {
    return std::make_shared<SequentialRecommenderImpl>(o);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("[sequential]: ") + e.what());
  }
}

void save_sequential_model_dir(const std::string& dir, const Config& config, const data::ItemVocabulary& items,
                               SequentialRecommenderImpl& net, nlohmann::json meta) {
  check_model_output_dir(dir);
  for (const auto& p : net.parameters())
    if (!torch::isfinite(p).all().item<bool>())
      throw TrainingError(dir + ": the model's weights hold NaN or infinity; not written");
  meta["format"] = "mtrank-model";
  meta["kind"] = "sequential";
  const SequentialOptions& o = net.options();
  meta["item_features"] = to_json(ItemFeatureSizes{o.feature_buckets, o.feature_entries, o.vector_dim});
  std::map<std::string, std::string> files;
  files.emplace("weights.pt", serialize_weights(net, dir));
  files.emplace("config.toml", to_toml(config));
  files.emplace("items.json", items.to_json().dump());
  files.emplace("meta.json", meta.dump(2) + "\n");
  write_model_files(dir, files);
}

LoadedSequentialModel load_sequential_model_dir(const std::string& dir) {
  const std::filesystem::path root(dir);
  ModelFiles read = read_model_files(dir, {"config.toml", "items.json", "weights.pt"});
  if (!is_sequential_model(read.meta))
    throw ModelError(dir + ": a ranking model; this command needs a sequential (next-item) model");
  LoadedSequentialModel m;
  m.meta = std::move(read.meta);
  try {
    m.config = parse_config(read.files["config.toml"], (root / "config.toml").string());
  } catch (const ConfigError& e) {
    throw ModelError(std::string("corrupt model config: ") + e.what());
  }
  if (!m.config.sequential.enabled) throw ModelError((root / "config.toml").string() + ": has no [sequential] section");
  const std::string items_path = (root / "items.json").string();
  try {
    m.items = data::ItemVocabulary::from_json(nlohmann::json::parse(read.files["items.json"]));
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(items_path + ": corrupt: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw ModelError(items_path + ": " + e.what());
  }
  if (m.items.size() < 1) throw ModelError(items_path + ": holds no items");
  ItemFeatureSizes sizes;
  const std::string meta_path = (root / "meta.json").string();
  if (const auto it = m.meta.find("item_features"); it != m.meta.end()) {
    try {
      sizes.buckets = it->at("buckets").get<std::int64_t>();
      sizes.entries = it->at("entries").get<std::int64_t>();
      sizes.vector_dim = it->at("vector_dim").get<std::int64_t>();
    } catch (const nlohmann::json::exception& e) {
      throw ModelError(meta_path + ": corrupt item_features: " + e.what());
    }
    if (sizes.buckets < 0 || sizes.entries < 0 || sizes.vector_dim < 0 || (sizes.buckets == 0 && sizes.entries > 0))
      throw ModelError(meta_path + ": corrupt item_features: " + it->dump());
  }
  try {
    m.net = create_sequential_model(m.config.sequential, m.items.size(), sizes);
  } catch (const ConfigError& e) {
    throw ModelError(std::string("corrupt model config: ") + e.what());
  }
  load_weights(*m.net, read.files["weights.pt"], (root / "weights.pt").string());
  try {
    m.net->check_item_features();
  } catch (const std::invalid_argument& e) {
    throw ModelError((root / "weights.pt").string() + ": corrupt item features: " + e.what());
  }
  m.net->eval();
  return m;
}

}  // namespace mtrank::model
