#include "config/model_families.h"

#include "common/error.h"

namespace mtrank {
namespace {

using Report = std::function<void(const char*, const std::string&)>;
using Layers = std::vector<std::int64_t>;

// The keys families share, one declaration each.
constexpr double kMaxLayer = 1 << 16;
ModelKey embedding_dim() { return {"embedding_dim", std::int64_t{8}, 1, 1 << 12}; }
ModelKey bottom_hidden(Layers layers, bool nonempty) {
  ModelKey k{"bottom_hidden", std::move(layers), 1, kMaxLayer};
  k.nonempty = nonempty;
  return k;
}
ModelKey expert_hidden() {
  ModelKey k{"expert_hidden", Layers{32}, 1, kMaxLayer};
  k.nonempty = true;
  return k;
}
ModelKey tower_hidden() { return {"tower_hidden", Layers{16}, 1, kMaxLayer}; }
ModelKey num_experts() { return {"num_experts", std::int64_t{4}, 1, 1024}; }
ModelKey specific_experts() { return {"specific_experts", std::int64_t{1}, 0, 1024}; }
ModelKey shared_experts() { return {"shared_experts", std::int64_t{1}, 0, 1024}; }
ModelKey levels(std::int64_t n) { return {"levels", n, 1, 64}; }
ModelKey fraction(const char* name) {
  ModelKey k{name, 0.0, 0.0};
  k.below = 1.0;
  return k;
}
ModelKey wide(bool on) { return {"wide", on}; }

// Single-task, Shared-Bottom and Wide & Deep: their shared (or per-task) layers are bottom_hidden.
std::vector<ModelKey> bottom_keys(bool wide_on) {
  return {embedding_dim(), bottom_hidden({64}, true), tower_hidden(), fraction("dropout"), wide(wide_on)};
}
// OMoE and MMoE: experts over an optional shared bottom (the YouTube ranker).
std::vector<ModelKey> expert_keys() {
  return {embedding_dim(), bottom_hidden({}, false), num_experts(),          expert_hidden(),
          tower_hidden(),  fraction("dropout"),      fraction("gate_dropout"), wide(false)};
}
std::vector<ModelKey> extraction_keys(std::int64_t default_levels) {
  return {embedding_dim(),      specific_experts(),       shared_experts(),         levels(default_levels),
          expert_hidden(),      tower_hidden(),           fraction("dropout"), fraction("gate_dropout"), wide(false)};
}

void extraction_check(const ModelConfig& m, const std::vector<TaskConfig>&, const Report& report) {
  if (m.integer("specific_experts") + m.integer("shared_experts") == 0)
    report("specific_experts", "cgc/ple need at least one expert");
}

std::vector<ModelFamily> make_families() {
  auto no_check = [](const ModelConfig&, const std::vector<TaskConfig>&, const Report&) {};
  return {
      {"single_task", "every task its own embeddings, bottom and tower: nothing is shared (the baseline of seesaw tables)",
       bottom_keys(false), no_check},
      {"shared_bottom", "one shared bottom network (bottom_hidden) with a tower per task", bottom_keys(false), no_check},
      {"omoe", "experts mixed by one gate shared by all tasks", expert_keys(), no_check},
      {"mmoe", "experts mixed by one softmax gate per task (Ma et al. 2018)", expert_keys(), no_check},
      {"cgc", "task-specific and shared experts, one gate per task (PLE with one level)", extraction_keys(1),
       [](const ModelConfig& m, const std::vector<TaskConfig>& tasks, const Report& report) {
         extraction_check(m, tasks, report);
         if (m.integer("levels") != 1) report("levels", "cgc has one level; use type = \"ple\"");
       }},
      {"ple", "cgc levels stacked with a shared path between them (Tang et al. 2020)", extraction_keys(2),
       extraction_check},
      {"wide_deep", "shared_bottom plus the wide part (always on)", bottom_keys(true),
       [](const ModelConfig& m, const std::vector<TaskConfig>&, const Report& report) {
         if (!m.boolean("wide")) report("wide", "wide_deep always has its wide part");
       }},
      {"esmm",
       "CTR and CVR towers over shared embeddings, pCTCVR = pCTR x pCVR trained on all impressions (Ma et al. 2018); "
       "tasks: click, click and conversion, optionally conversion",
       // No `wide`: a wide logit added to both towers would break pCTCVR = pCTR x pCVR.
       {embedding_dim(), tower_hidden(), fraction("dropout")},
       [](const ModelConfig&, const std::vector<TaskConfig>& tasks, const Report& report) {
         bool binary = tasks.size() == 2 || tasks.size() == 3;
         for (const TaskConfig& t : tasks) binary = binary && t.type == TaskType::kBinary;
         if (!binary)
           report("type", "esmm needs 2 or 3 binary tasks, in this order: click (all impressions), click and "
                          "conversion (all impressions), optionally conversion (where click = 1, weight 0); this "
                          "config has " + std::to_string(tasks.size()) + " tasks");
       }},
  };
}

}  // namespace

const std::vector<ModelFamily>& model_families() {
  static const std::vector<ModelFamily> families = make_families();
  return families;
}

const ModelFamily* find_model_family(const std::string& name) {
  for (const ModelFamily& f : model_families())
    if (f.name == name) return &f;
  return nullptr;
}

std::vector<std::string> model_family_names() {
  std::vector<std::string> names;
  for (const ModelFamily& f : model_families()) names.push_back(f.name);
  return names;
}

}  // namespace mtrank

namespace mtrank {

ModelConfig model_defaults(const std::string& type) {
  const ModelFamily* family = find_model_family(type);
  if (!family) throw ConfigError("model.type: unknown model family '" + type + "'");
  ModelConfig m;
  m.type = type;
  for (const ModelKey& k : family->keys) m.values[k.name] = k.default_value;
  return m;
}

}  // namespace mtrank
