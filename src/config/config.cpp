#include "config/config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "common/error.h"
#include "config/model_families.h"

namespace mtrank {
namespace {

// Where each key of a merged config was written: toml++ does not copy a node's
// source region when a node is copied, so merging (extends, overlays) loses
// it. Keyed by key path ("train.epochs", "features[2].type").
using Origins = std::map<std::string, std::pair<std::string, std::uint32_t>>;

void record_origins(const toml::node& node, const std::string& key_path, Origins& origins) {
  if (node.source().path && node.source().begin.line > 0)
    origins[key_path] = {*node.source().path, node.source().begin.line};
  if (const toml::table* t = node.as_table())
    for (const auto& [k, v] : *t) record_origins(v, key_path.empty() ? std::string(k.str()) : key_path + "." + std::string(k.str()), origins);
  if (const toml::array* a = node.as_array())
    for (std::size_t i = 0; i < a->size(); ++i) record_origins((*a)[i], key_path + "[" + std::to_string(i) + "]", origins);
}

struct SourceInfo {
  std::string name;                // the file (or files) for messages without a better place
  const Origins* origins = nullptr;  // set for merged configs

  // "file:line" of the key at `key_path` (or of its table), as precisely as known.
  std::string where(const toml::node* node, const std::string& key_path) const {
    if (node && node->source().path && node->source().begin.line > 0)
      return *node->source().path + ":" + std::to_string(node->source().begin.line);
    if (origins) {
      for (std::string p = key_path;;) {
        if (auto it = origins->find(p); it != origins->end())
          return it->second.first + ":" + std::to_string(it->second.second);
        const std::size_t cut = p.find_last_of(".[");
        if (cut == std::string::npos || cut == 0) break;
        p.resize(cut);  // the enclosing table: at least the right file
      }
    }
    return name;
  }
};

// Reads one TOML table strictly: every key must be consumed, or it is reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, const SourceInfo& source)
      : table_(table), path_(std::move(path)), source_(source) {}

  ~TableReader() noexcept(false) {
    if (std::uncaught_exceptions() == 0) check_unknown();
  }

  std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  [[noreturn]] void fail(const toml::node* node, const std::string& key, const std::string& what) const {
    throw ConfigError(source_.where(node, node ? key_path(key) : path_) + ": key '" + key_path(key) + "': " + what);
  }

  const toml::node* get(const std::string& key) {
    seen_.insert(key);
    return table_.get(key);
  }

  bool has(const std::string& key) const { return table_.contains(key); }

  std::string string(const std::string& key, const std::string& fallback, bool required = false) {
    const toml::node* n = get(key);
    if (!n) {
      if (required) fail(nullptr, key, "is required");
      return fallback;
    }
    if (!n->is_string()) fail(n, key, std::string("must be a string, got ") + type_name(*n));
    return n->as_string()->get();
  }

  std::string choice(const std::string& key, const std::string& fallback, std::initializer_list<const char*> allowed) {
    return choice(key, fallback, std::vector<std::string>(allowed.begin(), allowed.end()));
  }
  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& allowed) {
    std::string v = string(key, fallback);
    for (const std::string& a : allowed)
      if (v == a) return v;
    std::string list;
    for (const std::string& a : allowed) list += std::string(list.empty() ? "" : ", ") + "\"" + a + "\"";
    fail(get(key), key, "\"" + v + "\" is not one of " + list);
  }

  // Sizes have an upper bound too: quantiles = 1e12 hung the fit, and huge
  // layers died with a raw allocator error.
  std::int64_t integer(const std::string& key, std::int64_t fallback, std::int64_t min_value,
                       std::int64_t max_value = std::numeric_limits<std::int64_t>::max()) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    if (!n->is_integer()) fail(n, key, std::string("must be an integer, got ") + type_name(*n));
    std::int64_t v = n->as_integer()->get();
    if (v < min_value) fail(n, key, "must be at least " + std::to_string(min_value) + ", got " + std::to_string(v));
    if (v > max_value) fail(n, key, "must be at most " + std::to_string(max_value) + ", got " + std::to_string(v));
    return v;
  }

  double number(const std::string& key, double fallback, double min_value) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    double v;
    if (n->is_floating_point()) v = n->as_floating_point()->get();
    else if (n->is_integer()) v = static_cast<double>(n->as_integer()->get());
    else fail(n, key, std::string("must be a number, got ") + type_name(*n));
    // inf and nan are valid TOML; as a learning rate or weight they poison training.
    if (!std::isfinite(v)) fail(n, key, "must be a finite number");
    if (!(v >= min_value)) fail(n, key, "must be at least " + std::to_string(min_value));
    return v;
  }

  bool boolean(const std::string& key, bool fallback) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    if (!n->is_boolean()) fail(n, key, std::string("must be true or false, got ") + type_name(*n));
    return n->as_boolean()->get();
  }

  std::vector<std::string> strings(const std::string& key, std::vector<std::string> fallback) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    if (n->is_string()) return {n->as_string()->get()};
    if (!n->is_array()) fail(n, key, std::string("must be an array of strings, got ") + type_name(*n));
    std::vector<std::string> out;
    for (const toml::node& e : *n->as_array()) {
      if (!e.is_string()) fail(&e, key, "must be an array of strings");
      out.emplace_back(e.as_string()->get());
    }
    return out;
  }

  std::vector<std::int64_t> integers(const std::string& key, std::vector<std::int64_t> fallback, std::int64_t min_value,
                                     std::int64_t max_value) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    if (!n->is_array()) fail(n, key, std::string("must be an array of integers, got ") + type_name(*n));
    std::vector<std::int64_t> out;
    for (const toml::node& e : *n->as_array()) {
      if (!e.is_integer() || e.as_integer()->get() < min_value || e.as_integer()->get() > max_value)
        fail(&e, key, "must be an array of integers from " + std::to_string(min_value) + " to " + std::to_string(max_value));
      out.push_back(e.as_integer()->get());
    }
    return out;
  }

  const toml::table* subtable(const std::string& key) {
    const toml::node* n = get(key);
    if (!n) return nullptr;
    if (!n->is_table()) fail(n, key, std::string("must be a table, got ") + type_name(*n));
    return n->as_table();
  }

  const toml::array* array_of_tables(const std::string& key) {
    const toml::node* n = get(key);
    if (!n) return nullptr;
    if (!n->is_array_of_tables()) fail(n, key, "must be an array of tables ([[" + key_path(key) + "]])");
    return n->as_array();
  }

  const SourceInfo& source() const { return source_; }
  const std::string& path() const { return path_; }

 private:
  static const char* type_name(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::array: return "an array";
      case toml::node_type::table: return "a table";
      default: return "a date/time";
    }
  }

  void check_unknown() const {
    for (const auto& [k, v] : table_) {
      std::string key(k.str());
      if (!seen_.count(key)) {
        throw ConfigError(source_.where(&v, key_path(key)) + ": unknown key '" + key_path(key) +
                          "' (see docs/config.md for the keys this section takes)");
      }
    }
  }

  const toml::table& table_;
  std::string path_;
  const SourceInfo& source_;
  std::set<std::string> seen_;
};

template <typename Enum>
Enum pick(const std::string& value, std::initializer_list<std::pair<const char*, Enum>> options) {
  for (const auto& [name, e] : options)
    if (value == name) return e;
  return options.begin()->second;  // unreachable: choice() validated the value
}

void parse_features(TableReader& root, Config& cfg) {
  const toml::array* features = root.array_of_tables("features");
  if (!features || features->empty())
    root.fail(nullptr, "features", "at least one [[features]] entry is required");
  std::set<std::string> names;
  std::size_t i = 0;
  for (const toml::node& node : *features) {
    TableReader t(*node.as_table(), "features[" + std::to_string(i++) + "]", root.source());
    FeatureConfig f;
    if (!t.has("type")) t.fail(nullptr, "type", "is required (numeric, categorical, multi_hot or cross)");
    std::string type = t.choice("type", "", {"numeric", "categorical", "multi_hot", "cross"});
    f.type = pick<FeatureType>(type, {{"numeric", FeatureType::kNumeric},
                                      {"categorical", FeatureType::kCategorical},
                                      {"multi_hot", FeatureType::kMultiHot},
                                      {"cross", FeatureType::kCross}});
    if (t.has("name") && t.has("names"))
      t.fail(t.get("names"), "names", "an entry takes 'name' (one feature) or 'names' (several), not both");
    std::vector<std::string> feature_names = t.strings("names", {});
    std::string single = t.string("name", "");
    if (!single.empty()) feature_names.insert(feature_names.begin(), single);
    if (feature_names.empty()) t.fail(nullptr, "name", "each [[features]] entry needs 'name' or 'names'");
    for (const std::string& n : feature_names)  // names = [""] trained, then its stored config did not load (fuzzing)
      if (n.empty()) t.fail(t.get(t.has("names") ? "names" : "name"), t.has("names") ? "names" : "name", "a feature name cannot be empty");
    if (f.type == FeatureType::kNumeric) {
      f.transform = pick<NumericTransform>(t.choice("transform", "quantile", {"quantile", "standardize", "none"}),
                                           {{"quantile", NumericTransform::kQuantile},
                                            {"standardize", NumericTransform::kStandardize},
                                            {"none", NumericTransform::kNone}});
      f.log1p = t.boolean("log1p", false);
      if (const toml::node* order = t.get("value_order")) {
        if (t.has("value_map"))
          t.fail(order, "value_order", "give 'value_order' or 'value_map', not both");
        const std::vector<std::string> values = t.strings("value_order", {});
        for (std::size_t k = 0; k < values.size(); ++k) f.value_map.emplace_back(values[k], static_cast<double>(k));
        if (values.empty()) t.fail(order, "value_order", "needs at least one value");
      }
      if (const toml::table* map = t.subtable("value_map")) {
        for (const auto& [k, v] : *map) {
          const std::string key(k.str());
          const double x = v.is_integer() ? static_cast<double>(v.as_integer()->get())
                           : v.is_floating_point() ? v.as_floating_point()->get()
                                                   : std::numeric_limits<double>::quiet_NaN();
          if (!std::isfinite(x))
            t.fail(&v, "value_map", "value '" + key + "' must map to a finite number");
          f.value_map.emplace_back(key, x);
        }
        if (f.value_map.empty()) t.fail(t.get("value_map"), "value_map", "needs at least one value");
      }
      // Sorted by value, as a stored TOML table is: the config round-trips exactly.
      std::sort(f.value_map.begin(), f.value_map.end());
      for (std::size_t a = 1; a < f.value_map.size(); ++a)
        if (f.value_map[a].first == f.value_map[a - 1].first)
          t.fail(t.get("value_order"), "value_order", "value '" + f.value_map[a].first + "' is listed twice");
      f.quantiles = t.integer("quantiles", 100, 2, 1 << 16);
      f.missing = pick<MissingPolicy>(t.choice("missing", "mean", {"mean", "zero", "error"}),
                                      {{"mean", MissingPolicy::kMean},
                                       {"zero", MissingPolicy::kZero},
                                       {"error", MissingPolicy::kError}});
    } else {
      f.min_count = t.integer("min_count", 1, 1);
      f.hash_buckets = t.integer("hash_buckets", 0, 0, std::int64_t{1} << 32);
      if (f.type == FeatureType::kMultiHot) {
        f.separator = t.string("separator", "|");
        if (f.separator.size() != 1) t.fail(t.get("separator"), "separator", "must be a single character");
        f.pooling = pick<Pooling>(t.choice("pooling", "mean", {"mean", "sum"}),
                                  {{"mean", Pooling::kMean}, {"sum", Pooling::kSum}});
      }
      if (f.type == FeatureType::kCross) {
        f.columns = t.strings("columns", {});
        if (f.columns.size() < 2) t.fail(t.get("columns"), "columns", "a cross needs at least two columns");
        if (f.hash_buckets == 0) t.fail(nullptr, "hash_buckets", "is required for a cross feature (e.g. 10000)");
        if (feature_names.size() != 1) t.fail(nullptr, "names", "a cross feature takes one 'name'");
      }
    }
    f.bias = t.boolean("bias", false);
    f.group = t.string("group", "");
    if (f.group == "bias")
      t.fail(t.get("group"), "group", "\"bias\" is the group of the bias features: set bias = true instead");
    if (f.bias && f.type == FeatureType::kCross)
      t.fail(t.get("bias"), "bias",
             "a cross feature cannot be a bias feature: bias features are single columns (categorical, multi_hot or "
             "numeric), and a cross must not read them");
    if (f.bias && f.type == FeatureType::kNumeric && f.missing == MissingPolicy::kError)
      t.fail(t.get("bias"), "bias",
             "a bias feature is treated as missing when serving, so it needs missing = \"mean\" or \"zero\", not \"error\"");
    if (f.bias && f.type == FeatureType::kNumeric && cfg.data.missing_values.empty())
      t.fail(t.get("bias"), "bias",
             "a numeric bias feature is treated as missing when serving, which needs data.missing_values to name a "
             "missing value (e.g. [\"\"])");
    for (const std::string& n : feature_names) {
      if (!names.insert(n).second) t.fail(nullptr, "name", "feature '" + n + "' is declared twice");
      FeatureConfig copy = f;
      copy.name = n;
      cfg.features.push_back(std::move(copy));
    }
  }
  // A cross over a bias column would see the real value in training and a
  // missing one when serving: a bucket it never trained.
  for (const FeatureConfig& cross : cfg.features)
    for (const std::string& column : cross.columns)
      for (const FeatureConfig& f : cfg.features)
        if (f.bias && f.name == column)
          root.fail(nullptr, "features", "cross '" + cross.name + "' reads '" + column +
                                             "', a bias feature (missing when serving): leave bias columns out of crosses");
}

const toml::array* root_features(TableReader& root) { return root.array_of_tables("features"); }

void parse_tasks(TableReader& root, Config& cfg) {
  const toml::array* tasks = root.array_of_tables("tasks");
  if (!tasks || tasks->empty()) root.fail(nullptr, "tasks", "at least one [[tasks]] entry is required");
  std::set<std::string> names;
  std::size_t i = 0;
  for (const toml::node& node : *tasks) {
    TableReader t(*node.as_table(), "tasks[" + std::to_string(i++) + "]", root.source());
    TaskConfig task;
    task.name = t.string("name", "", true);
    if (!names.insert(task.name).second) t.fail(t.get("name"), "name", "task '" + task.name + "' is declared twice");
    task.type = pick<TaskType>(t.choice("type", "binary", {"binary", "regression"}),
                               {{"binary", TaskType::kBinary}, {"regression", TaskType::kRegression}});
    task.column = t.string("column", "", true);
    task.positive = t.strings("positive", {});
    if (task.type == TaskType::kRegression && !task.positive.empty())
      t.fail(t.get("positive"), "positive", "only binary tasks take positive values");
    for (const std::string& p : task.positive) {
      std::string op;
      double threshold;
      if (!parse_comparison(p, op, threshold)) continue;
      if (task.positive.size() != 1)
        t.fail(t.get("positive"), "positive",
               "a comparison (\"" + p + "\") must be the only entry: positive = \"" + p + "\"");
      task.positive_op = op;
      task.positive_threshold = threshold;
    }
    task.weight = t.number("weight", 1.0, 0.0);
    task.weight_gamma = t.number("weight_gamma", 1.0, 0.0);
    task.missing = pick<LabelMissing>(t.choice("missing", "skip", {"skip", "error"}),
                                      {{"skip", LabelMissing::kSkip}, {"error", LabelMissing::kError}});
    if (const toml::table* where = t.subtable("where")) {
      TableReader w(*where, t.key_path("where"), root.source());
      task.where_column = w.string("column", "", true);
      task.where_equals = w.strings("equals", {});
      if (task.where_equals.empty()) w.fail(nullptr, "equals", "is required: the values that put a row in the sample space");
    }
    task.metrics = t.strings("metrics", {});  // names are checked against the metric registry before any work
    // A label that is also an input makes the task trivially predictable (AUC
    // 1.0 on test): refuse it before any work is done.
    std::size_t entry = 0;
    for (const toml::node& fnode : *root_features(root)) {
      const toml::table& f = *fnode.as_table();
      std::vector<std::string> reads;  // the input columns this entry reads
      for (const char* key : {f.contains("columns") ? "columns" : "name", "names"}) {
        const toml::node* n = f.get(key);
        if (n && n->is_string()) reads.push_back(n->as_string()->get());
        if (n && n->is_array())
          for (const toml::node& e : *n->as_array())
            if (e.is_string()) reads.push_back(e.as_string()->get());
      }
      if (std::find(reads.begin(), reads.end(), task.column) != reads.end()) {
        std::ostringstream msg;
        msg << root.source().where(&fnode, "features[" + std::to_string(entry) + "]") << ": task '" << task.name << "' predicts column '" << task.column << "', which features[" << entry
            << "] also reads as an input, so the label would leak into the model: remove '" << task.column
            << "' from that [[features]] entry";
        throw ConfigError(msg.str());
      }
      ++entry;
    }
    cfg.tasks.push_back(std::move(task));
  }
}

}  // namespace

namespace {

toml::table parse_toml(const std::string& text, const std::string& source_name) {
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source_name << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    throw ConfigError(msg.str());
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Overlays `top` on `base`: tables merge key by key, anything else (values,
// arrays, arrays of tables) replaces.
// A key some model family takes (so not a typo).
bool is_model_family_key(const std::string& key) {
  for (const ModelFamily& f : model_families())
    for (const ModelKey& k : f.keys)
      if (k.name == key) return true;
  return false;
}

// The model family a config layer names ([model] type), "" if it names none.
std::string layer_model_type(const toml::table& t) {
  if (const toml::table* m = t.get_as<toml::table>("model"))
    if (const auto* type = m->get_as<std::string>("type")) return type->get();
  return "";
}

// Merges config layer `top` over `base`, later wins. When `top` changes the
// model family, the [model] keys of `base` that the new family does not take
// are dropped first: a config that extends an MMoE's and says type =
// "single_task" gets single_task's keys, not the MMoE's num_experts. A key of
// another family written in `top` itself stays and is refused by parsing.
void merge_into(toml::table& base, const toml::table& top);
void merge_layer(toml::table& base, const toml::table& top) {
  const std::string new_type = layer_model_type(top);
  toml::table* model = base.get_as<toml::table>("model");
  std::string old_type = layer_model_type(base);
  if (old_type.empty()) old_type = ModelConfig{}.type;
  if (model && !new_type.empty() && new_type != old_type && find_model_family(new_type)) {
    const ModelConfig keep = model_defaults(new_type);
    std::vector<std::string> drop;
    for (const auto& [k, v] : *model)
      if (is_model_family_key(std::string(k.str())) && !keep.has(std::string(k.str()))) drop.emplace_back(k.str());
    for (const std::string& key : drop) model->erase(key);
  }
  merge_into(base, top);
}

void merge_into(toml::table& base, const toml::table& top) {
  for (const auto& [key, node] : top) {
    toml::node* existing = base.get(key);
    if (existing && existing->is_table() && node.is_table())
      merge_into(*existing->as_table(), *node.as_table());
    else
      base.insert_or_assign(key, node);
  }
}

// Makes the relative data paths of a config file's table relative to the working directory.
void resolve_data_paths(toml::table& t, const std::filesystem::path& dir) {
  if (toml::table* data = t["data"].as_table())
    for (const char* key : {"train", "val", "test", "cache_dir"})
      if (auto* v = data->get_as<std::string>(key); v && !v->get().empty() && std::filesystem::path(v->get()).is_relative())
        *v = std::filesystem::absolute(dir / v->get()).lexically_normal().string();
  if (toml::table* data = t["data"].as_table()) {
    for (const char* key : {"train", "val", "test"})
      if (toml::array* files = data->get_as<toml::array>(key))
        for (toml::node& f : *files)
          if (auto* v = f.as_string(); v && !v->get().empty() && std::filesystem::path(v->get()).is_relative())
            *v = std::filesystem::absolute(dir / v->get()).lexically_normal().string();
    if (auto* v = data->get_as<std::string>("items"); v && !v->get().empty() && std::filesystem::path(v->get()).is_relative())
      *v = std::filesystem::absolute(dir / v->get()).lexically_normal().string();
    if (toml::array* files = data->get_as<toml::array>("item_vectors"))
      for (toml::node& f : *files)
        if (auto* v = f.as_string(); v && !v->get().empty() && std::filesystem::path(v->get()).is_relative())
          *v = std::filesystem::absolute(dir / v->get()).lexically_normal().string();
  }
}

// Loads a config file, resolving `extends = "base.toml"` or `extends = ["a.toml", "b.toml"]`
// (relative to the file; merged in order, then this file on top), recursively.
// A config file with its bases merged in, and where each of its keys was written.
struct LoadedFile {
  toml::table table;
  Origins origins;
};
// Each file is loaded once per load_config: a diamond of 'extends' (five-way,
// 8 deep) was loaded again on every path to it, which took 32 s.
using LoadMemo = std::map<std::string, LoadedFile>;

const LoadedFile& load_with_bases(const std::string& path, int depth, LoadMemo& memo) {
  if (depth > 8) throw ConfigError(path + ": 'extends' chain is longer than 8 files (a cycle?)");
  const std::string key = std::filesystem::absolute(path).lexically_normal().string();
  if (auto it = memo.find(key); it != memo.end()) return it->second;
  LoadedFile out;
  toml::table t = parse_toml(read_file(path), path);
  resolve_data_paths(t, std::filesystem::path(path).parent_path());
  if (const toml::node* ext = t.get("extends")) {
    const std::string where = path + ":" + std::to_string(ext->source().begin.line);
    std::vector<std::string> bases;
    if (ext->is_string()) bases.push_back(ext->as_string()->get());
    else if (ext->is_array())
      for (const toml::node& e : *ext->as_array()) {
        if (!e.is_string()) throw ConfigError(where + ": key 'extends' must be a string or an array of strings");
        bases.push_back(e.as_string()->get());
      }
    else throw ConfigError(where + ": key 'extends' must be a string or an array of strings");
    for (const std::string& b : bases) {
      const std::filesystem::path base_path = std::filesystem::path(path).parent_path() / b;
      // The error_code form: a name the file system refuses (longer than NAME_MAX)
      // threw filesystem_error, not a config error (found by fuzzing).
      std::error_code ec;
      if (!std::filesystem::exists(base_path, ec))
        throw ConfigError(where + ": 'extends' file " + base_path.string() +
                          (ec ? ": " + ec.message() : std::string(" does not exist")));
      const LoadedFile& base = load_with_bases(base_path.string(), depth + 1, memo);
      merge_layer(out.table, base.table);
      for (const auto& [k, v] : base.origins) out.origins[k] = v;
    }
    t.erase("extends");
  }
  record_origins(t, "", out.origins);  // after the bases: this file's keys win
  merge_layer(out.table, t);
  return memo.emplace(key, std::move(out)).first->second;
}

Config parse_table(const toml::table& root_table, const std::string& source_name, const Origins* origins = nullptr,
                   const ParseOptions& options = {});

}  // namespace

Config parse_config(const std::string& text, const std::string& source_name, const ParseOptions& options) {
  toml::table t = parse_toml(text, source_name);
  if (t.contains("extends"))
    throw ConfigError(source_name + ": 'extends' only works in config files (load_config), not in stored configs");
  return parse_table(t, source_name, nullptr, options);
}

namespace {
void parse_bias_tower(const toml::table& table, const SourceInfo& source, Config& cfg) {
  TableReader t(table, "model.bias_tower", source);
  BiasTowerConfig& b = cfg.model.bias_tower;
  b.enabled = t.boolean("enabled", true);
  b.hidden = t.integers("hidden", b.hidden, 1, 1 << 12);
  b.position_dropout = t.number("position_dropout", b.position_dropout, 0.0);
  if (b.position_dropout > 1.0) t.fail(t.get("position_dropout"), "position_dropout", "must be at most 1");
  b.kind = t.choice("kind", b.kind, {"additive", "pal"});
  b.tasks = t.strings("tasks", {});
  if (!b.enabled) return;
  if (cfg.model.type == "esmm") t.fail(nullptr, "enabled", "esmm has no bias tower: it would break pCTCVR = pCTR x pCVR");
  std::vector<std::string> bias_features;
  for (const FeatureConfig& f : cfg.features)
    if (f.bias) bias_features.push_back(f.name);
  if (bias_features.empty())
    t.fail(nullptr, "enabled", "the bias tower reads the bias features, and no [[features]] entry has bias = true");
  if (b.position_dropout > 0)
    for (const FeatureConfig& f : cfg.features)
      if (f.bias && f.type != FeatureType::kCategorical)
        t.fail(t.get("position_dropout"), "position_dropout",
               "drops the bias features out by their empty value, and '" + f.name + "' is " + to_string(f.type) +
                   ", not categorical; make it categorical or set position_dropout = 0");
  b.task_indices.clear();
  if (b.tasks.empty()) {
    for (std::size_t k = 0; k < cfg.tasks.size(); ++k)
      if (cfg.tasks[k].where_column.empty()) b.task_indices.push_back(static_cast<int>(k));
    if (b.task_indices.empty())
      t.fail(nullptr, "tasks", "every task has a sample space: name the tasks the bias is added to");
  } else {
    for (std::size_t k = 0; k < cfg.tasks.size(); ++k)
      if (std::find(b.tasks.begin(), b.tasks.end(), cfg.tasks[k].name) != b.tasks.end())
        b.task_indices.push_back(static_cast<int>(k));
    for (const std::string& name : b.tasks)
      if (std::none_of(cfg.tasks.begin(), cfg.tasks.end(), [&](const TaskConfig& k) { return k.name == name; }))
        t.fail(t.get("tasks"), "tasks", "no task is named '" + name + "'");
  }
  b.tasks.clear();
  for (int k : b.task_indices) b.tasks.push_back(cfg.tasks[k].name);
  if (b.kind == "pal")
    for (int k : b.task_indices)
      if (cfg.tasks[k].type != TaskType::kBinary)
        t.fail(t.get("tasks"), "tasks",
               "kind = \"pal\" multiplies probabilities: task '" + cfg.tasks[k].name + "' is not binary");
}

// The metrics a sequential validation computes (train::next_item_metric_names,
// checked equal by a test): another K would read as NaN and never improve.
bool sequential_monitor_ok(const std::string& m) {
  for (const char* name : {"ndcg@5", "ndcg@10", "ndcg@20", "recall@5", "recall@10", "recall@20", "mrr"})
    if (m == name) return true;
  return false;
}

void parse_sequential(const toml::table& table, const SourceInfo& source, Config& cfg) {
  TableReader t(table, "sequential", source);
  SequentialConfig& s = cfg.sequential;
  s.enabled = true;
  s.block = t.choice("block", s.block, {"lrurec", "fmrlrec"});
  if (s.block == "fmrlrec") s.r_min = 0.0, s.r_max = 0.1;
  s.widths = t.integers("widths", s.widths, 1, 1 << 14);
  if (s.widths.empty()) t.fail(t.get("widths"), "widths", "needs at least one width");
  for (std::size_t i = 1; i < s.widths.size(); ++i)
    if (s.widths[i] <= s.widths[i - 1])
      t.fail(t.get("widths"), "widths", "must increase (" + std::to_string(s.widths[i - 1]) + " then " +
                                            std::to_string(s.widths[i]) + "); the last is the model width");
  s.blocks = t.integer("blocks", s.blocks, 1, 64);
  s.dropout = t.number("dropout", s.dropout, 0.0);
  if (!(s.dropout < 1)) t.fail(t.get("dropout"), "dropout", "must be below 1");
  s.r_min = t.number("r_min", s.r_min, 0.0);
  s.r_max = t.number("r_max", s.r_max, 0.0);
  if (!(s.r_min <= s.r_max && s.r_max < 1))
    t.fail(t.get("r_max"), "r_max", "the ring needs 0 <= r_min <= r_max < 1");
  s.max_len = t.integer("max_len", s.max_len, 1, 1 << 16);
  s.window_step = t.integer("window_step", s.window_step, 0, 1 << 16);
  s.exclude = t.choice("exclude", s.exclude, {"history", "none"});
  s.softmax = t.choice("softmax", s.softmax, {"full", "sampled"});
  s.negatives = t.integer("negatives", s.negatives, 1, std::int64_t{1} << 24);
  if (!cfg.data.val.empty() || !cfg.data.test.empty())
    throw ConfigError(source.where(nullptr, "data") + ": a [sequential] model splits data.train leave-one-out "
                      "(each user's last item tests, the second-last validates); remove data.val and data.test");
  s.user_column = t.string("user_column", s.user_column);
  s.item_column = t.string("item_column", s.item_column);
  s.time_column = t.string("time_column", s.time_column);
  s.item_ids = t.boolean("item_ids", s.item_ids);
  s.item_id_column = t.string("item_id_column", s.item_id_column);
  s.text_columns = t.strings("text_columns", {});
  s.multi_hot_columns = t.strings("multi_hot_columns", {});
  s.feature_buckets = t.integer("feature_buckets", s.feature_buckets, 1, std::int64_t{1} << 26);
  // Columns without data.items, or item_ids = false with nothing else, may
  // be completed by train --items / --item-vectors: the run checks those.
  const bool columns = !s.text_columns.empty() || !s.multi_hot_columns.empty();
  if (!cfg.data.items.empty() && !columns)
    throw ConfigError(source.where(nullptr, "data.items") + ": data.items is set but [sequential] reads none of its "
                      "columns; name them in text_columns or multi_hot_columns");
}

Config parse_table(const toml::table& root_table, const std::string& source_name, const Origins* origins,
                   const ParseOptions& options) {
  Config cfg;
  cfg.source = source_name;
  const SourceInfo source{source_name, origins};
  TableReader root(root_table, "", source);

  if (const toml::table* data = root.subtable("data")) {
    TableReader t(*data, "data", source);
    DataConfig& d = cfg.data;
    // A string (one path or glob, "" for none) or an array of them.
    for (auto [key, files] : {std::pair{"train", &d.train}, {"val", &d.val}, {"test", &d.test}}) {
      *files = t.strings(key, {});
      if (files->size() == 1 && files->front().empty()) files->clear();
      for (const std::string& f : *files)
        if (f.empty()) t.fail(t.get(key), key, "has an empty file name in its list");
    }
    std::string format = t.choice("format", "auto", {"auto", "csv", "tsv"});
    d.delimiter = format == "csv" ? ',' : format == "tsv" ? '\t' : 0;
    d.missing_values = t.strings("missing_values", d.missing_values);
    d.missing_labels = t.strings("missing_labels", d.missing_labels);
    d.on_bad_row = pick<BadRowPolicy>(t.choice("on_bad_row", "error", {"error", "skip"}),
                                      {{"error", BadRowPolicy::kError}, {"skip", BadRowPolicy::kSkip}});
    d.max_bad_rows = t.integer("max_bad_rows", d.max_bad_rows, 0);
    d.cache_dir = t.string("cache_dir", "");
    d.memory_budget_mb = t.integer("memory_budget_mb", d.memory_budget_mb, 0, std::int64_t{1} << 40);
    d.shuffle_buffer_rows = t.integer("shuffle_buffer_rows", d.shuffle_buffer_rows, 1, std::int64_t{1} << 40);
    d.block_rows = t.integer("block_rows", d.block_rows, 1, std::int64_t{1} << 30);
    d.group_column = t.string("group_column", "");
    d.weight_column = t.string("weight_column", "");
    d.hash_seed = static_cast<std::uint64_t>(t.integer("hash_seed", static_cast<std::int64_t>(d.hash_seed), 0));
    d.quantile_sample = t.integer("quantile_sample", d.quantile_sample, 16, 1 << 26);
    d.items = t.string("items", "");
    d.item_vectors = t.strings("item_vectors", {});
    for (const char* key : {"items", "item_vectors"})
      if (t.has(key) && !root.has("sequential"))
        t.fail(t.get(key), key, "item side information is read by [sequential] models only");
  }
  if (const toml::table* seq = root.subtable("sequential")) {
    parse_sequential(*seq, source, cfg);
    for (const char* other : {"features", "tasks", "model"})
      if (root.has(other))
        root.fail(root.get(other), other,
                  "a [sequential] config predicts the next item from histories and has no [[features]], [[tasks]] "
                  "or [model]; remove it, or remove [sequential] for a ranking model");
  } else {
    parse_features(root, cfg);
    parse_tasks(root, cfg);
  }
  // An inverse propensity is 1 exactly on unclicked rows: as an input it would leak the label.
  if (const std::string& w = cfg.data.weight_column; !w.empty())
    for (const FeatureConfig& f : cfg.features)
      if (f.name == w || std::find(f.columns.begin(), f.columns.end(), w) != f.columns.end())
        throw ConfigError(source.where(nullptr, "data.weight_column") + ": key 'data.weight_column' = \"" + w + "\" is also read by the feature '" + f.name +
                          "': a row's weight (an inverse propensity is 1 on every unclicked row) would leak its "
                          "label into the model; remove it from the [[features]]");
  if (const toml::table* model = root.subtable("model")) {
    TableReader t(*model, "model", source);
    const std::string type = t.choice("type", cfg.model.type, model_family_names());
    const ModelFamily& family = *find_model_family(type);
    cfg.model = model_defaults(type);
    // A key another family takes but this one does not is a mistake worth
    // naming (num_experts on a shared_bottom changes nothing), except in a
    // model directory written before families owned their keys.
    if (const toml::table* tower = t.subtable("bias_tower")) parse_bias_tower(*tower, source, cfg);
    for (const auto& [k, node] : *model) {
      const std::string key(k.str());
      if (key == "type" || key == "bias_tower" || cfg.model.has(key)) continue;
      if (!is_model_family_key(key)) continue;  // a typo: the unknown-key check names it
      if (options.ignore_other_family_keys) {
        t.get(key);
        continue;
      }
      std::string keys;
      for (const ModelKey& mk : family.keys) keys += (keys.empty() ? "" : ", ") + mk.name;
      t.fail(&node, key, "type = \"" + type + "\" does not take this key (its keys: " + keys +
                             "); remove it or change the type");
    }
    for (const ModelKey& k : family.keys) {
      ModelValue& v = cfg.model.values[k.name];
      if (auto* b = std::get_if<bool>(&v)) {
        *b = t.boolean(k.name, *b);
      } else if (auto* i = std::get_if<std::int64_t>(&v)) {
        *i = t.integer(k.name, *i, static_cast<std::int64_t>(k.min), static_cast<std::int64_t>(k.max));
      } else if (auto* x = std::get_if<double>(&v)) {
        *x = t.number(k.name, *x, k.min);
        if (!(*x < k.below)) t.fail(t.get(k.name), k.name, "must be below " + (std::ostringstream() << k.below).str());
      } else {
        auto& list = std::get<std::vector<std::int64_t>>(v);
        list = t.integers(k.name, list, static_cast<std::int64_t>(k.min), static_cast<std::int64_t>(k.max));
        if (k.nonempty && list.empty()) t.fail(t.get(k.name), k.name, "needs at least one layer");
      }
    }
    family.check(cfg.model, cfg.tasks,
                 [&](const char* key, const std::string& message) { t.fail(t.get(key), key, message); });
  }
  if (const toml::table* train = root.subtable("train")) {
    TableReader t(*train, "train", source);
    TrainConfig& tr = cfg.train;
    tr.optimizer = t.choice("optimizer", cfg.sequential.enabled ? "adamw" : tr.optimizer, {"adam", "adagrad", "adamw"});
    tr.learning_rate = t.number("learning_rate", tr.learning_rate, 0.0);
    tr.weight_decay = t.number("weight_decay", tr.weight_decay, 0.0);
    tr.wide_optimizer = t.choice("wide_optimizer", tr.wide_optimizer, {"ftrl", "adam", "adagrad"});
    tr.ftrl_alpha = t.number("ftrl_alpha", tr.ftrl_alpha, 1e-12);
    tr.ftrl_beta = t.number("ftrl_beta", tr.ftrl_beta, 0.0);
    tr.ftrl_l1 = t.number("ftrl_l1", tr.ftrl_l1, 0.0);
    tr.ftrl_l2 = t.number("ftrl_l2", tr.ftrl_l2, 0.0);
    tr.warmup_steps = t.integer("warmup_steps", tr.warmup_steps, 0);
    tr.lr_decay = t.choice("lr_decay", tr.lr_decay, {"none", "exponential", "cosine"});
    tr.lr_decay_rate = t.number("lr_decay_rate", tr.lr_decay_rate, 0.0);
    tr.clip_grad_norm = t.number("clip_grad_norm", tr.clip_grad_norm, 0.0);
    tr.loss_weighting = t.choice("loss_weighting", tr.loss_weighting, {"fixed", "uncertainty"});
    tr.batch_size = t.integer("batch_size", tr.batch_size, 1, 1 << 24);
    tr.epochs = t.integer("epochs", tr.epochs, 1, 1 << 20);
    tr.patience = t.integer("patience", tr.patience, 0);
    tr.monitor = t.string("monitor", tr.monitor);  // checked against the tasks and metrics by eval::resolve_monitor
    tr.seed = static_cast<std::uint64_t>(t.integer("seed", static_cast<std::int64_t>(tr.seed), 0));
    tr.threads = t.integer("threads", tr.threads, 0, 1024);
    tr.adapt_threads = t.boolean("adapt_threads", tr.adapt_threads);
    // A sequential evaluation batch holds max_len positions per user: 256 users, not 8192 rows.
    tr.eval_batch_size = t.integer("eval_batch_size", cfg.sequential.enabled ? 256 : tr.eval_batch_size, 1, 1 << 24);
    tr.adam_eps = t.number("adam_eps", tr.adam_eps, 0.0);
    tr.eval_every_steps = t.integer("eval_every_steps", tr.eval_every_steps, 0);
    tr.max_steps = t.integer("max_steps", tr.max_steps, 0);
    tr.table_sharding = t.choice("table_sharding", tr.table_sharding, {"replicated", "row"});
    const bool sequential = cfg.sequential.enabled;
    if (sequential && t.has("table_sharding"))
      t.fail(t.get("table_sharding"), "table_sharding",
             "is read by ranking models only (a sequential model's item table also scores every item: it is replicated)");
    for (const char* key : {"adam_eps", "eval_every_steps", "max_steps"})
      if (!sequential && t.has(key)) t.fail(t.get(key), key, "is read by [sequential] models only");
    if (sequential) {
      if (tr.optimizer != "adamw") t.fail(t.get("optimizer"), "optimizer", "[sequential] models train with \"adamw\"");
      if (tr.lr_decay == "exponential")
        t.fail(t.get("lr_decay"), "lr_decay", "[sequential] models take \"none\" or \"cosine\" (over all steps)");
      tr.monitor = t.string("monitor", "recall@10");
      if (!sequential_monitor_ok(tr.monitor))
        t.fail(t.get("monitor"), "monitor", "\"" + tr.monitor + "\" is not one of ndcg@5, ndcg@10, ndcg@20, recall@5, recall@10, recall@20, mrr (what a sequential validation computes)");
    } else if (tr.optimizer == "adamw") {
      t.fail(t.get("optimizer"), "optimizer", "\"adamw\" is for [sequential] models; ranking models take \"adam\" or \"adagrad\"");
    }
  } else if (cfg.sequential.enabled) {
    cfg.train.optimizer = "adamw";
    cfg.train.monitor = "recall@10";
    cfg.train.eval_batch_size = 256;
  }
  if (const toml::table* serve = root.subtable("serve")) {
    TableReader t(*serve, "serve", source);
    if (cfg.sequential.enabled) {
      if (serve->contains("score"))
        t.fail(t.get("score"), "score", "is a ranking model's key (how task predictions combine); a [sequential] model's [serve] has index, funnel_widths, funnel_keep");
      cfg.serve.index = t.string("index", cfg.serve.index);
      cfg.serve.funnel_widths = t.integers("funnel_widths", cfg.serve.funnel_widths, 1, 1 << 14);
      cfg.serve.funnel_keep = t.integers("funnel_keep", cfg.serve.funnel_keep, 1, std::int64_t{1} << 40);
      if (!cfg.serve.funnel_keep.empty() && !cfg.serve.funnel_widths.empty() &&
          cfg.serve.funnel_keep.size() + 1 != cfg.serve.funnel_widths.size())
        t.fail(t.get("funnel_keep"), "funnel_keep", "needs one shortlist size per funnel stage but the last (" +
                                                      std::to_string(cfg.serve.funnel_widths.size() - 1) + ")");
    } else {
      for (const char* key : {"index", "funnel_widths", "funnel_keep"})
        if (serve->contains(key))
          t.fail(t.get(key), key, "is a [sequential] model's retrieval key; a ranking model's [serve] has score");
      cfg.serve.score = t.string("score", cfg.serve.score);  // checked against the tasks by train and serve
    }
  }
  return cfg;
}
}  // namespace

Config load_config(const std::vector<std::string>& paths) {
  if (paths.empty()) throw ConfigError("no config file given");
  Config cfg;
  toml::table single;
  if (paths.size() == 1 && !(single = parse_toml(read_file(paths[0]), paths[0])).contains("extends")) {
    cfg = parse_table(single, paths[0]);
    const std::filesystem::path base = std::filesystem::path(paths[0]).parent_path();
    // Relative data paths in a config file are relative to the file's directory,
    // so a config works from any working directory.
    std::vector<std::string*> paths{&cfg.data.cache_dir, &cfg.data.items};
    for (std::vector<std::string>* files : std::initializer_list<std::vector<std::string>*>{
             &cfg.data.train, &cfg.data.val, &cfg.data.test, &cfg.data.item_vectors})
      for (std::string& f : *files) paths.push_back(&f);
    for (std::string* p : paths)
      if (!p->empty() && std::filesystem::path(*p).is_relative())
        *p = std::filesystem::absolute(base / *p).lexically_normal().string();
    return cfg;
  }
  // Several files (or 'extends'): merge in order, later files win, and store the
  // merged config as self-contained TOML so a model directory never depends on other files.
  toml::table merged;
  Origins origins;
  LoadMemo memo;
  for (const std::string& path : paths) {
    const LoadedFile& file = load_with_bases(path, 0, memo);
    merge_layer(merged, file.table);
    for (const auto& [k, v] : file.origins) origins[k] = v;
  }
  std::string name = paths[0];
  for (std::size_t i = 1; i < paths.size(); ++i) name += " + " + paths[i];
  return parse_table(merged, name, &origins);
}

Config load_config(const std::string& path) { return load_config(std::vector<std::string>{path}); }

std::string describe(const FileList& files) {
  if (files.size() > 3)
    return files.front() + " + ... + " + files.back() + " (" + std::to_string(files.size()) + " files)";
  std::string out;
  for (const std::string& f : files) out += (out.empty() ? "" : " + ") + f;
  return out;
}

std::string to_toml(const Config& c) {
  auto strings = [](const std::vector<std::string>& v) {
    toml::array a;
    for (const auto& x : v) a.push_back(x);
    return a;
  };
  auto ints = [](const std::vector<std::int64_t>& v) {
    toml::array a;
    for (auto x : v) a.push_back(x);
    return a;
  };
  const DataConfig& d = c.data;
  toml::table data{{"format", d.delimiter == ',' ? "csv" : d.delimiter == '\t' ? "tsv" : "auto"},
                   {"missing_values", strings(d.missing_values)},
                   {"missing_labels", strings(d.missing_labels)},
                   {"on_bad_row", d.on_bad_row == BadRowPolicy::kSkip ? "skip" : "error"},
                   {"max_bad_rows", d.max_bad_rows},
                   {"cache_dir", d.cache_dir},
                   {"memory_budget_mb", d.memory_budget_mb},
                   {"shuffle_buffer_rows", d.shuffle_buffer_rows},
                   {"block_rows", d.block_rows},
                   {"group_column", d.group_column},
                   {"weight_column", d.weight_column},
                   {"hash_seed", static_cast<std::int64_t>(d.hash_seed)},
                   {"quantile_sample", d.quantile_sample}};
  // No file or one as a string, as configs were written before lists were accepted.
  for (auto [key, files] : {std::pair{"train", &d.train}, {"val", &d.val}, {"test", &d.test}}) {
    if (files->size() <= 1)
      data.insert(key, files->empty() ? std::string() : files->front());
    else
      data.insert(key, strings(*files));
  }
  toml::array features;
  for (const FeatureConfig& f : c.features) {
    toml::table t{{"name", f.name}, {"type", to_string(f.type)}};
    if (f.type == FeatureType::kNumeric) {
      t.insert("transform", f.transform == NumericTransform::kQuantile      ? "quantile"
                            : f.transform == NumericTransform::kStandardize ? "standardize"
                                                                            : "none");
      t.insert("log1p", f.log1p);
      if (!f.value_map.empty()) {
        toml::table map;
        for (const auto& [value, number] : f.value_map) map.insert(value, number);
        t.insert("value_map", std::move(map));
      }
      t.insert("quantiles", f.quantiles);
      t.insert("missing", f.missing == MissingPolicy::kMean ? "mean" : f.missing == MissingPolicy::kZero ? "zero" : "error");
    } else {
      t.insert("min_count", f.min_count);
      t.insert("hash_buckets", f.hash_buckets);
      if (f.type == FeatureType::kMultiHot) {
        t.insert("separator", f.separator);
        t.insert("pooling", f.pooling == Pooling::kMean ? "mean" : "sum");
      }
      if (f.type == FeatureType::kCross) t.insert("columns", strings(f.columns));
    }
    t.insert("bias", f.bias);
    if (!f.group.empty()) t.insert("group", f.group);  // absent when unset: older configs keep their fingerprint
    features.push_back(std::move(t));
  }
  toml::array tasks;
  for (const TaskConfig& k : c.tasks) {
    toml::table t{{"name", k.name},
                  {"type", to_string(k.type)},
                  {"column", k.column},
                  {"weight", k.weight},
                  {"weight_gamma", k.weight_gamma},
                  {"missing", k.missing == LabelMissing::kSkip ? "skip" : "error"}};
    if (!k.positive.empty()) t.insert("positive", strings(k.positive));
    if (!k.where_column.empty())
      t.insert("where", toml::table{{"column", k.where_column}, {"equals", strings(k.where_equals)}});
    if (!k.metrics.empty()) t.insert("metrics", strings(k.metrics));
    tasks.push_back(std::move(t));
  }
  toml::table model{{"type", c.model.type}};
  if (const BiasTowerConfig& b = c.model.bias_tower; b.enabled)
    model.insert("bias_tower", toml::table{{"enabled", true},
                                           {"tasks", strings(b.tasks)},
                                           {"hidden", ints(b.hidden)},
                                           {"position_dropout", b.position_dropout},
                                           {"kind", b.kind}});
  for (const ModelKey& k : find_model_family(c.model.type)->keys) {
    const ModelValue& v = c.model.values.at(k.name);
    if (auto* b = std::get_if<bool>(&v)) model.insert(k.name, *b);
    else if (auto* i = std::get_if<std::int64_t>(&v)) model.insert(k.name, *i);
    else if (auto* x = std::get_if<double>(&v)) model.insert(k.name, *x);
    else model.insert(k.name, ints(std::get<std::vector<std::int64_t>>(v)));
  }
  const TrainConfig& t = c.train;
  toml::table train{{"optimizer", t.optimizer},       {"learning_rate", t.learning_rate},
                    {"weight_decay", t.weight_decay}, {"wide_optimizer", t.wide_optimizer},
                    {"ftrl_alpha", t.ftrl_alpha},     {"ftrl_beta", t.ftrl_beta},
                    {"ftrl_l1", t.ftrl_l1},           {"ftrl_l2", t.ftrl_l2},
                    {"warmup_steps", t.warmup_steps}, {"lr_decay", t.lr_decay},
                    {"lr_decay_rate", t.lr_decay_rate}, {"clip_grad_norm", t.clip_grad_norm},
                    {"loss_weighting", t.loss_weighting}, {"batch_size", t.batch_size},
                    {"epochs", t.epochs},             {"patience", t.patience},
                    {"monitor", t.monitor},           {"seed", static_cast<std::int64_t>(t.seed)}, {"threads", t.threads},
                    {"eval_batch_size", t.eval_batch_size}};
  toml::table root;
  if (const SequentialConfig& s = c.sequential; s.enabled) {
    data.insert("items", d.items);
    data.insert("item_vectors", strings(d.item_vectors));
    train.insert("adam_eps", t.adam_eps);
    train.insert("eval_every_steps", t.eval_every_steps);
    train.insert("max_steps", t.max_steps);
    root = toml::table{{"data", std::move(data)},
                       {"sequential", toml::table{{"block", s.block},
                                                  {"widths", ints(s.widths)},
                                                  {"blocks", s.blocks},
                                                  {"dropout", s.dropout},
                                                  {"r_min", s.r_min},
                                                  {"r_max", s.r_max},
                                                  {"max_len", s.max_len},
                                                  {"window_step", s.window_step},
                                                  {"exclude", s.exclude},
                                                  {"softmax", s.softmax},
                                                  {"negatives", s.negatives},
                                                  {"user_column", s.user_column},
                                                  {"item_column", s.item_column},
                                                  {"time_column", s.time_column},
                                                  {"item_ids", s.item_ids},
                                                  {"item_id_column", s.item_id_column},
                                                  {"text_columns", strings(s.text_columns)},
                                                  {"multi_hot_columns", strings(s.multi_hot_columns)},
                                                  {"feature_buckets", s.feature_buckets}}},
                       {"train", std::move(train)},
                       {"serve", toml::table{{"index", c.serve.index},
                                             {"funnel_widths", ints(c.serve.funnel_widths)},
                                             {"funnel_keep", ints(c.serve.funnel_keep)}}}};
  } else {
    // Written only when set: a key every config writes changes the text that
    // fingerprints checkpoints and caches, and earlier runs' would no longer resume.
    if (t.table_sharding != TrainConfig{}.table_sharding) train.insert("table_sharding", t.table_sharding);
    if (t.adapt_threads != TrainConfig{}.adapt_threads) train.insert("adapt_threads", t.adapt_threads);
    root = toml::table{{"data", std::move(data)},   {"features", std::move(features)}, {"tasks", std::move(tasks)},
                       {"model", std::move(model)}, {"train", std::move(train)},
                       {"serve", toml::table{{"score", c.serve.score}}}};
  }
  std::ostringstream out;
  out << "# Written by mtrank: the full configuration of this model, every key explicit.\n"
      << toml::toml_formatter(root) << "\n";
  return out.str();
}

namespace {
template <typename T>
const T& model_value(const ModelConfig& m, const std::string& key) {
  auto it = m.values.find(key);
  if (it == m.values.end()) throw std::logic_error("model key '" + key + "' is not a key of type \"" + m.type + "\"");
  if (const T* v = std::get_if<T>(&it->second)) return *v;
  throw std::logic_error("model key '" + key + "' read as the wrong kind");
}
}  // namespace

std::int64_t ModelConfig::integer(const std::string& key) const { return model_value<std::int64_t>(*this, key); }
double ModelConfig::number(const std::string& key) const { return model_value<double>(*this, key); }
bool ModelConfig::boolean(const std::string& key) const { return model_value<bool>(*this, key); }
const std::vector<std::int64_t>& ModelConfig::integers(const std::string& key) const {
  return model_value<std::vector<std::int64_t>>(*this, key);
}
void ModelConfig::set(const std::string& key, ModelValue value) {
  auto it = values.find(key);
  if (it == values.end()) throw std::logic_error("model key '" + key + "' is not a key of type \"" + type + "\"");
  if (it->second.index() != value.index()) throw std::logic_error("model key '" + key + "' set to the wrong kind");
  it->second = std::move(value);
}

bool parse_comparison(const std::string& text, std::string& op, double& threshold) {
  std::size_t i = text.find_first_not_of(' ');
  if (i == std::string::npos) return false;
  std::string o;
  for (const char* candidate : {">=", "<=", "==", "!=", ">", "<"})
    if (text.compare(i, std::strlen(candidate), candidate) == 0) {
      o = candidate;
      break;
    }
  if (o.empty()) return false;
  i = text.find_first_not_of(' ', i + o.size());
  if (i == std::string::npos) return false;
  std::size_t end = text.find_last_not_of(' ') + 1;
  const std::string number = text.substr(i, end - i);
  char* stop = nullptr;
  const double v = std::strtod(number.c_str(), &stop);
  if (number.empty() || stop != number.c_str() + number.size() || !std::isfinite(v)) return false;
  op = o;
  threshold = v;
  return true;
}

bool compare_value(double value, const std::string& op, double threshold) {
  if (op == ">") return value > threshold;
  if (op == ">=") return value >= threshold;
  if (op == "<") return value < threshold;
  if (op == "<=") return value <= threshold;
  if (op == "==") return value == threshold;
  return value != threshold;
}

const char* to_string(FeatureType t) {
  switch (t) {
    case FeatureType::kNumeric: return "numeric";
    case FeatureType::kCategorical: return "categorical";
    case FeatureType::kMultiHot: return "multi_hot";
    case FeatureType::kCross: return "cross";
  }
  return "?";
}

const char* to_string(TaskType t) { return t == TaskType::kBinary ? "binary" : "regression"; }

}  // namespace mtrank
