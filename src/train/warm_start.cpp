#include "train/warm_start.h"

#include <map>

namespace mtrank::train {

namespace {
// The order and kinds of the model's inputs and outputs. Dense layers read
// inputs by position, so they carry over only when this is unchanged.
std::string layout(const Config& c) {
  std::string s;
  // A bias feature goes to the bias tower, not the deep part, when there is one.
  for (const FeatureConfig& f : c.features) s += f.name + ":" + to_string(f.type) + (f.bias ? ":bias" : "") + ";";
  s += "|";
  for (const TaskConfig& t : c.tasks) s += t.name + ":" + to_string(t.type) + ";";
  return s + "|" + std::to_string(c.model.integer("embedding_dim")) + (c.model.bias_tower.enabled ? "|tower" : "");
}

// A hashed field's buckets mean the same values only with the same seed and inputs.
bool same_hashing(const FeatureConfig& a, const FeatureConfig& b, const Config& ca, const Config& cb) {
  return a.hash_buckets == b.hash_buckets && a.columns == b.columns && ca.data.hash_seed == cb.data.hash_seed;
}
}  // namespace

WarmStartReport warm_start(model::RankingModel& net, const data::Preprocessor& pre, const model::LoadedModel& old) {
  torch::NoGradGuard no_grad;
  WarmStartReport report;
  // Row map from the old fused table to the new one, field by field (matched by name).
  std::vector<std::int64_t> from, to;
  for (const auto* fields : {&pre.categorical_fields(), &pre.bag_fields()})
    for (const auto& f : *fields) {
      const auto* prev = old.preprocessor->find_field(f.feature.name);
      std::int64_t shared = 0;
      if (prev && f.feature.hash_buckets > 0 && same_hashing(f.feature, prev->feature, pre.config(), old.config)) {
        shared = f.size;  // the same buckets
      } else if (prev && f.feature.hash_buckets == 0 && prev->feature.hash_buckets == 0) {
        // Old ids carry over only if the old vocabulary is a prefix of the new one
        // (it is when the new one was fitted with the old as its base).
        bool prefix = prev->vocab.size() <= f.vocab.size();
        for (std::size_t i = 0; prefix && i < prev->vocab.values().size(); ++i)
          prefix = f.vocab.lookup(prev->vocab.values()[i]) == static_cast<std::int64_t>(i) + 1;
        if (prefix) shared = prev->size;  // the old vocabulary and the OOV row
      }
      for (std::int64_t i = 0; i < shared; ++i) {
        from.push_back(prev->offset + i);
        to.push_back(f.offset + i);
      }
      report.rows_new += f.size - shared;
    }
  const torch::Tensor src = torch::tensor(from, torch::kInt64), dst = torch::tensor(to, torch::kInt64);
  auto old_tables = old.net->sparse_tables();
  std::map<std::string, torch::Tensor> old_by_name;
  for (auto& t : old_tables) old_by_name[t.name] = t.table;
  for (auto& t : net.sparse_tables()) {
    auto it = old_by_name.find(t.name);
    if (it == old_by_name.end() || it->second.size(1) != t.table.size(1) || from.empty()) continue;
    t.table.index_copy_(0, dst, it->second.index_select(0, src));
    report.rows_copied += static_cast<std::int64_t>(from.size());
  }
  // Dense parameters by name and shape, and only if inputs and tasks are laid
  // out as before; sparse tables were handled above.
  const bool same_layout = layout(pre.config()) == layout(old.config);
  auto old_params = old.net->named_parameters();
  for (auto& p : net.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const torch::Tensor* prev = old_params.find(p.key());
    if (same_layout && prev && prev->sizes() == p.value().sizes()) {
      p.value().copy_(*prev);
      ++report.params_copied;
    } else {
      ++report.params_skipped;
    }
  }
  return report;
}

}  // namespace mtrank::train
