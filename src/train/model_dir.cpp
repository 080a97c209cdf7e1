#include "train/model_dir.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "train/trainer.h"

namespace mtrank::train {

namespace fs = std::filesystem;

model::InputShape input_shape(const data::Preprocessor& pre) {
  return {pre.embedding_rows(), pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks()};
}

namespace {
std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(path.string() + ": missing or unreadable (is this an mtrank model directory?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Removes what an earlier crashed save left beside `target`: DIR.tmp-PID and
// DIR.old-PID of processes that no longer run.
void remove_stale_litter(const fs::path& target) {
  std::error_code ec;
  const std::string base = target.filename().string();
  for (const auto& entry : fs::directory_iterator(target.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    for (const char* tag : {".tmp-", ".old-"}) {
      const std::string prefix = base + tag;
      if (name.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string pid_text = name.substr(prefix.size());
      if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
      const long pid = std::stol(pid_text);
      if (pid == ::getpid() || (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM)) continue;  // alive
      fs::remove_all(entry.path(), ec);
    }
  }
}
}  // namespace

bool is_model_dir(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "meta.json");
  if (!in) return false;
  try {
    const nlohmann::json meta = nlohmann::json::parse(in);
    return meta.is_object() && meta.value("format", "") == "mtrank-model";
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

void check_model_output_dir(const std::string& dir) {
  const fs::path target = fs::absolute(dir);
  std::error_code ec;
  if (fs::exists(fs::symlink_status(target, ec)) && !(fs::is_directory(target, ec) && is_model_dir(dir)))
    throw ConfigError("--out " + dir + ": exists and is not an mtrank model directory (no meta.json of format "
                      "mtrank-model); train replaces only a model directory. Choose another path or remove it");
  const fs::path parent = target.parent_path();
  if (!fs::is_directory(parent, ec))
    throw ConfigError("--out " + dir + ": the folder " + parent.string() + " does not exist; create it first");
  if (::access(parent.c_str(), W_OK) != 0)
    throw ConfigError("--out " + dir + ": the folder " + parent.string() + " is not writable: " + std::strerror(errno));
}

void save_model_dir(const std::string& dir, const Config& config, const data::Preprocessor& pre,
                    model::RankingModel& net, const nlohmann::json& meta) {
  check_model_output_dir(dir);  // again at the moment of replacing: never delete user files
  if (!parameters_finite(net)) throw TrainingError(dir + ": the model's weights hold NaN or infinity; not written");
  const fs::path target = fs::absolute(dir);
  remove_stale_litter(target);
  const fs::path tmp = target.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    // Serialized to memory first: LibTorch's own file writer aborts the process on a full disk.
    std::ostringstream weights;
    try {
      torch::serialize::OutputArchive archive;
      net.save(archive);
      archive.save_to(weights);
    } catch (const c10::Error& e) {
      throw ModelError(dir + ": cannot serialize the weights: " + e.what_without_backtrace());
    }
    write_file_durable((tmp / "weights.pt").string(), weights.str());
    write_file_durable((tmp / "config.toml").string(), to_toml(config));
    write_file_durable((tmp / "preprocess.json").string(), pre.to_json().dump());
    write_file_durable((tmp / "meta.json").string(), meta.dump(2) + "\n");
    sync_directory(tmp.string());
    // Swap in: move any old model aside first, so a crash leaves one complete model.
    const fs::path old = target.string() + ".old-" + std::to_string(::getpid());
    const bool had_old = fs::exists(target);
    if (had_old) fs::rename(target, old);
    try {
      fs::rename(tmp, target);
    } catch (...) {
      if (had_old) fs::rename(old, target);  // put the previous model back
      throw;
    }
    sync_directory(target.parent_path().string());
    std::error_code ec;
    if (had_old) fs::remove_all(old, ec);  // the new model is in place: a leftover is only clutter
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

LoadedModel load_model_dir(const std::string& dir) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw ModelError(dir + ": not a directory (expected a model directory from 'mtrank train')");
  LoadedModel m;
  try {
    m.meta = nlohmann::json::parse(read_text(root / "meta.json"));
  } catch (const nlohmann::json::exception& e) {
    throw ModelError((root / "meta.json").string() + ": corrupt: " + e.what());
  }
  if (m.meta.value("format", "") != "mtrank-model")
    throw ModelError((root / "meta.json").string() + ": not an mtrank model (format field missing)");
  try {
    m.config = parse_config(read_text(root / "config.toml"), (root / "config.toml").string());
  } catch (const ConfigError& e) {
    throw ModelError(std::string("corrupt model config: ") + e.what());
  }
  m.preprocessor = std::make_unique<data::Preprocessor>(m.config);
  try {
    m.preprocessor->load_json(nlohmann::json::parse(read_text(root / "preprocess.json")));
  } catch (const nlohmann::json::exception& e) {
    throw ModelError((root / "preprocess.json").string() + ": corrupt: " + e.what());
  } catch (const ModelError& e) {
    throw ModelError((root / "preprocess.json").string() + ": " + e.what());
  }
  m.net = model::create_model(m.config.model, input_shape(*m.preprocessor));
  const std::string weights = (root / "weights.pt").string();
  if (!fs::exists(weights)) throw ModelError(weights + ": missing");
  try {
    // LibTorch resizes tensors to what the archive holds instead of checking,
    // so weights of another config "loaded" and failed later with shape errors.
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected;
    for (const auto& p : m.net->named_parameters()) expected.emplace_back(p.key(), p.value().sizes().vec());
    for (const auto& b : m.net->named_buffers()) expected.emplace_back(b.key(), b.value().sizes().vec());
    torch::serialize::InputArchive archive;
    archive.load_from(weights);
    m.net->load(archive);
    std::size_t i = 0;
    auto check = [&](const std::string& name, const torch::Tensor& t) {
      if (i >= expected.size() || expected[i].first != name || expected[i].second != t.sizes().vec())
        throw ModelError(weights + ": tensor '" + name + "' has shape " + c10::str(t.sizes()) +
                         ", but the model config needs " +
                         (i < expected.size() ? c10::str(c10::IntArrayRef(expected[i].second)) : std::string("none")) +
                         ": the weights belong to another config");
      ++i;
    };
    for (const auto& p : m.net->named_parameters()) check(p.key(), p.value());
    for (const auto& b : m.net->named_buffers()) check(b.key(), b.value());
  } catch (const c10::Error& e) {
    throw ModelError(weights + ": corrupt or does not match the model config: " + e.what_without_backtrace());
  }
  if (!parameters_finite(*m.net)) throw ModelError(weights + ": holds NaN or infinite weights");
  m.net->eval();
  return m;
}

}  // namespace mtrank::train
