#pragma once
// The model families a config can name in [model] type. Each family owns its
// config section: the keys it takes (with their defaults and ranges, which
// drive parsing, to_toml and the docs check), its doc line and its checks.
// Torch-free, so configs parse without the model layer; the model layer
// registers each family's constructor under the same name
// (model::model_registry), and a test keeps the two lists equal.
// Adding a family: its network file in src/model/, one entry here (reusing
// the shared keys below or declaring its own), one line in model_registry().
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "config/config.h"

namespace mtrank {

// One key of a family's [model] section. The default's alternative is the
// key's kind: bool, integer, number or array of integers.
struct ModelKey {
  std::string name;
  ModelValue default_value;
  double min = 0;  // integers and each array element: at least this; numbers too
  // Integers and array elements: at most this. 2^62, not INT64_MAX: that rounds up
  // to 2^63 as a double, and converting 2^63 back to int64 is undefined.
  double max = 4611686018427387904.0;
  double below = std::numeric_limits<double>::infinity();  // numbers: must stay below this (dropout < 1)
  bool nonempty = false;  // arrays: at least one element
};

struct ModelFamily {
  std::string name;
  std::string doc;  // one line, as docs/config.md lists the family
  // Every [model] key the family reads besides `type`, in the order
  // to_toml writes them and docs/config.md lists them.
  std::vector<ModelKey> keys;
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
