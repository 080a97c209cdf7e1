#include "config/config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "common/error.h"

namespace mtrank {
namespace {

// Reads one TOML table strictly: every key must be consumed, or it is reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, const std::string& source)
      : table_(table), path_(std::move(path)), source_(source) {}

  ~TableReader() noexcept(false) {
    if (std::uncaught_exceptions() == 0) check_unknown();
  }

  std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  [[noreturn]] void fail(const toml::node* node, const std::string& key, const std::string& what) const {
    std::ostringstream msg;
    msg << source_;
    if (node) msg << ":" << node->source().begin.line;
    msg << ": key '" << key_path(key) << "': " << what;
    throw ConfigError(msg.str());
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
    std::string v = string(key, fallback);
    for (const char* a : allowed)
      if (v == a) return v;
    std::string list;
    for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + "\"" + a + "\"";
    fail(get(key), key, "\"" + v + "\" is not one of " + list);
  }

  std::int64_t integer(const std::string& key, std::int64_t fallback, std::int64_t min_value) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    if (!n->is_integer()) fail(n, key, std::string("must be an integer, got ") + type_name(*n));
    std::int64_t v = n->as_integer()->get();
    if (v < min_value) fail(n, key, "must be at least " + std::to_string(min_value) + ", got " + std::to_string(v));
    return v;
  }

  double number(const std::string& key, double fallback, double min_value) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    double v;
    if (n->is_floating_point()) v = n->as_floating_point()->get();
    else if (n->is_integer()) v = static_cast<double>(n->as_integer()->get());
    else fail(n, key, std::string("must be a number, got ") + type_name(*n));
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

  std::vector<std::int64_t> integers(const std::string& key, std::vector<std::int64_t> fallback, std::int64_t min_value) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    if (!n->is_array()) fail(n, key, std::string("must be an array of integers, got ") + type_name(*n));
    std::vector<std::int64_t> out;
    for (const toml::node& e : *n->as_array()) {
      if (!e.is_integer() || e.as_integer()->get() < min_value)
        fail(&e, key, "must be an array of integers >= " + std::to_string(min_value));
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

  const std::string& source() const { return source_; }
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
        std::ostringstream msg;
        msg << source_ << ":" << v.source().begin.line << ": unknown key '" << key_path(key)
            << "' (see docs/config.md for the keys this section takes)";
        throw ConfigError(msg.str());
      }
    }
  }

  const toml::table& table_;
  std::string path_;
  const std::string& source_;
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
    std::vector<std::string> feature_names = t.strings("names", {});
    std::string single = t.string("name", "");
    if (!single.empty()) feature_names.insert(feature_names.begin(), single);
    if (feature_names.empty()) t.fail(nullptr, "name", "each [[features]] entry needs 'name' or 'names'");
    if (f.type == FeatureType::kNumeric) {
      f.transform = pick<NumericTransform>(t.choice("transform", "quantile", {"quantile", "standardize", "none"}),
                                           {{"quantile", NumericTransform::kQuantile},
                                            {"standardize", NumericTransform::kStandardize},
                                            {"none", NumericTransform::kNone}});
      f.log1p = t.boolean("log1p", false);
      f.quantiles = t.integer("quantiles", 100, 2);
      f.missing = pick<MissingPolicy>(t.choice("missing", "mean", {"mean", "zero", "error"}),
                                      {{"mean", MissingPolicy::kMean},
                                       {"zero", MissingPolicy::kZero},
                                       {"error", MissingPolicy::kError}});
    } else {
      f.min_count = t.integer("min_count", 1, 1);
      f.hash_buckets = t.integer("hash_buckets", 0, 0);
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
    for (const std::string& n : feature_names) {
      if (!names.insert(n).second) t.fail(nullptr, "name", "feature '" + n + "' is declared twice");
      FeatureConfig copy = f;
      copy.name = n;
      cfg.features.push_back(std::move(copy));
    }
  }
}

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
    cfg.tasks.push_back(std::move(task));
  }
}

}  // namespace

Config parse_config(const std::string& text, const std::string& source_name) {
  toml::table root_table;
  try {
    root_table = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source_name << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    throw ConfigError(msg.str());
  }
  Config cfg;
  cfg.source = source_name;
  cfg.text = text;
  TableReader root(root_table, "", source_name);

  if (const toml::table* data = root.subtable("data")) {
    TableReader t(*data, "data", source_name);
    DataConfig& d = cfg.data;
    d.train = t.string("train", "");
    d.val = t.string("val", "");
    d.test = t.string("test", "");
    std::string format = t.choice("format", "auto", {"auto", "csv", "tsv"});
    d.delimiter = format == "csv" ? ',' : format == "tsv" ? '\t' : 0;
    d.missing_values = t.strings("missing_values", d.missing_values);
    d.on_bad_row = pick<BadRowPolicy>(t.choice("on_bad_row", "error", {"error", "skip"}),
                                      {{"error", BadRowPolicy::kError}, {"skip", BadRowPolicy::kSkip}});
    d.max_bad_rows = t.integer("max_bad_rows", d.max_bad_rows, 0);
    d.cache_dir = t.string("cache_dir", "");
    d.group_column = t.string("group_column", "");
    d.hash_seed = static_cast<std::uint64_t>(t.integer("hash_seed", static_cast<std::int64_t>(d.hash_seed), 0));
    d.quantile_sample = t.integer("quantile_sample", d.quantile_sample, 16);
  }
  parse_features(root, cfg);
  parse_tasks(root, cfg);
  if (const toml::table* model = root.subtable("model")) {
    TableReader t(*model, "model", source_name);
    ModelConfig& m = cfg.model;
    m.type = t.choice("type", "mmoe", {"single_task", "shared_bottom", "omoe", "mmoe", "cgc", "ple", "wide_deep"});
    const bool bottom_model = m.type == "single_task" || m.type == "shared_bottom" || m.type == "wide_deep";
    if (bottom_model) m.bottom_hidden = {64};
    m.embedding_dim = t.integer("embedding_dim", m.embedding_dim, 1);
    m.bottom_hidden = t.integers("bottom_hidden", m.bottom_hidden, 1);
    if (bottom_model && m.bottom_hidden.empty())
      t.fail(t.get("bottom_hidden"), "bottom_hidden", "needs at least one layer for " + m.type);
    m.num_experts = t.integer("num_experts", m.num_experts, 1);
    m.specific_experts = t.integer("specific_experts", m.specific_experts, 0);
    m.shared_experts = t.integer("shared_experts", m.shared_experts, 0);
    if ((m.type == "cgc" || m.type == "ple") && m.specific_experts + m.shared_experts == 0)
      t.fail(t.get("specific_experts"), "specific_experts", "cgc/ple need at least one expert");
    m.levels = t.integer("levels", m.type == "ple" ? 2 : 1, 1);
    if (m.type == "cgc" && m.levels != 1) t.fail(t.get("levels"), "levels", "cgc has one level; use type = \"ple\"");
    m.expert_hidden = t.integers("expert_hidden", m.expert_hidden, 1);
    if (m.expert_hidden.empty()) t.fail(t.get("expert_hidden"), "expert_hidden", "needs at least one layer");
    m.tower_hidden = t.integers("tower_hidden", m.tower_hidden, 1);
    m.dropout = t.number("dropout", m.dropout, 0.0);
    if (m.dropout >= 1.0) t.fail(t.get("dropout"), "dropout", "must be below 1");
    m.gate_dropout = t.number("gate_dropout", m.gate_dropout, 0.0);
    if (m.gate_dropout >= 1.0) t.fail(t.get("gate_dropout"), "gate_dropout", "must be below 1");
    m.wide = t.boolean("wide", m.type == "wide_deep");
    if (m.type == "wide_deep" && !m.wide) t.fail(t.get("wide"), "wide", "wide_deep always has its wide part");
  }
  if (const toml::table* train = root.subtable("train")) {
    TableReader t(*train, "train", source_name);
    TrainConfig& tr = cfg.train;
    tr.optimizer = t.choice("optimizer", tr.optimizer, {"adam", "adagrad"});
    tr.learning_rate = t.number("learning_rate", tr.learning_rate, 0.0);
    tr.weight_decay = t.number("weight_decay", tr.weight_decay, 0.0);
    tr.wide_optimizer = t.choice("wide_optimizer", tr.wide_optimizer, {"ftrl", "adam", "adagrad"});
    tr.ftrl_alpha = t.number("ftrl_alpha", tr.ftrl_alpha, 0.0);
    tr.ftrl_beta = t.number("ftrl_beta", tr.ftrl_beta, 0.0);
    tr.ftrl_l1 = t.number("ftrl_l1", tr.ftrl_l1, 0.0);
    tr.ftrl_l2 = t.number("ftrl_l2", tr.ftrl_l2, 0.0);
    tr.warmup_steps = t.integer("warmup_steps", tr.warmup_steps, 0);
    tr.lr_decay = t.choice("lr_decay", tr.lr_decay, {"none", "exponential", "cosine"});
    tr.lr_decay_rate = t.number("lr_decay_rate", tr.lr_decay_rate, 0.0);
    tr.clip_grad_norm = t.number("clip_grad_norm", tr.clip_grad_norm, 0.0);
    tr.loss_weighting = t.choice("loss_weighting", tr.loss_weighting, {"fixed", "uncertainty"});
    tr.batch_size = t.integer("batch_size", tr.batch_size, 1);
    tr.epochs = t.integer("epochs", tr.epochs, 1);
    tr.patience = t.integer("patience", tr.patience, 0);
    tr.seed = static_cast<std::uint64_t>(t.integer("seed", static_cast<std::int64_t>(tr.seed), 0));
    tr.threads = t.integer("threads", tr.threads, 0);
    tr.eval_batch_size = t.integer("eval_batch_size", tr.eval_batch_size, 1);
  }
  return cfg;
}

Config load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  Config cfg = parse_config(ss.str(), path);
  // Relative data paths in a config file are relative to the file's directory,
  // so a config works from any working directory.
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  for (std::string* p : {&cfg.data.train, &cfg.data.val, &cfg.data.test, &cfg.data.cache_dir})
    if (!p->empty() && std::filesystem::path(*p).is_relative()) *p = (base / *p).lexically_normal().string();
  return cfg;
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
