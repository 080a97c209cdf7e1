#include "config/model_families.h"

namespace mtrank {
namespace {

using Report = std::function<void(const char*, const std::string&)>;

// Single-task, Shared-Bottom and Wide & Deep put their shared (or per-task) layers in bottom_hidden.
void bottom_defaults(ModelConfig& m) { m.bottom_hidden = {64}; }
void bottom_check(const ModelConfig& m, const std::vector<TaskConfig>&, const Report& report) {
  if (m.bottom_hidden.empty()) report("bottom_hidden", "needs at least one layer for " + m.type);
}
void extraction_check(const ModelConfig& m, const std::vector<TaskConfig>&, const Report& report) {
  if (m.specific_experts + m.shared_experts == 0) report("specific_experts", "cgc/ple need at least one expert");
}

std::vector<ModelFamily> make_families() {
  auto none = [](ModelConfig&) {};
  auto no_check = [](const ModelConfig&, const std::vector<TaskConfig>&, const Report&) {};
  return {
      {"single_task", "every task its own embeddings, bottom and tower: nothing is shared (the baseline of seesaw tables)",
       bottom_defaults, bottom_check},
      {"shared_bottom", "one shared bottom network (bottom_hidden) with a tower per task", bottom_defaults, bottom_check},
      {"omoe", "experts mixed by one gate shared by all tasks", none, no_check},
      {"mmoe", "experts mixed by one softmax gate per task (Ma et al. 2018)", none, no_check},
      {"cgc", "task-specific and shared experts, one gate per task (PLE with one level)", none,
       [](const ModelConfig& m, const std::vector<TaskConfig>& tasks, const Report& report) {
         extraction_check(m, tasks, report);
         if (m.levels != 1) report("levels", "cgc has one level; use type = \"ple\"");
       }},
      {"ple", "cgc levels stacked with a shared path between them (Tang et al. 2020)",
       [](ModelConfig& m) { m.levels = 2; }, extraction_check},
      {"wide_deep", "shared_bottom plus the wide part (always on)",
       [](ModelConfig& m) {
         bottom_defaults(m);
         m.wide = true;
       },
       [](const ModelConfig& m, const std::vector<TaskConfig>& tasks, const Report& report) {
         bottom_check(m, tasks, report);
         if (!m.wide) report("wide", "wide_deep always has its wide part");
       }},
      {"esmm",
       "CTR and CVR towers over shared embeddings, pCTCVR = pCTR x pCVR trained on all impressions (Ma et al. 2018); "
       "tasks: click, click and conversion, optionally conversion",
       none,
       [](const ModelConfig& m, const std::vector<TaskConfig>& tasks, const Report& report) {
         if (m.wide) report("wide", "esmm has no wide part: it would break pCTCVR = pCTR x pCVR");
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
