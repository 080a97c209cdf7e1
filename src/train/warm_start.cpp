#include "train/warm_start.h"

#include <map>

namespace mtrank::train {

WarmStartReport warm_start(model::RankingModel& net, const data::Preprocessor& pre, const LoadedModel& old) {
  torch::NoGradGuard no_grad;
  WarmStartReport report;
  // Row map from the old fused table to the new one, field by field (matched by name).
  std::vector<std::int64_t> from, to;
  for (const auto* fields : {&pre.categorical_fields(), &pre.bag_fields()})
    for (const auto& f : *fields) {
      const auto* prev = old.preprocessor->find_field(f.feature.name);
      std::int64_t shared = 0;
      if (prev && prev->feature.hash_buckets == f.feature.hash_buckets)
        shared = f.feature.hash_buckets > 0 ? f.size : prev->size;  // same buckets, or the old vocabulary (+ OOV)
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
  // Dense parameters by name and shape; sparse tables were handled above.
  auto old_params = old.net->named_parameters();
  for (auto& p : net.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const torch::Tensor* prev = old_params.find(p.key());
    if (prev && prev->sizes() == p.value().sizes()) {
      p.value().copy_(*prev);
      ++report.params_copied;
    } else {
      ++report.params_skipped;
    }
  }
  return report;
}

}  // namespace mtrank::train
