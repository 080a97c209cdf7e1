#pragma once
// The model families a config can name in [model] type, each with its doc
// line, its defaults and its checks. Torch-free, so configs parse without the
// model layer; the model layer registers each family's constructor under the
// same name (model::model_registry), and a test keeps the two lists equal.
// Adding a family: its network file in src/model/, one entry here, one line
// in model_registry().
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"

namespace mtrank {

struct ModelFamily {
  std::string name;
  std::string doc;  // one line, as docs/config.md lists the family
  // Applied before the [model] keys are read: what this family changes of ModelConfig's defaults.
  std::function<void(ModelConfig&)> defaults;
  // After the keys are read, with the config's tasks; report(key, message)
  // throws a ConfigError at that [model] key's line.
  std::function<void(const ModelConfig&, const std::vector<TaskConfig>& tasks,
                     const std::function<void(const char* key, const std::string& message)>& report)>
      check;
};

// In the order docs and errors list them.
const std::vector<ModelFamily>& model_families();
const ModelFamily* find_model_family(const std::string& name);  // null if unknown
std::vector<std::string> model_family_names();

}  // namespace mtrank
