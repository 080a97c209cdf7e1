#include "model/model_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "data/hash.h"
#include "model/model.h"

namespace mtrank::model {

namespace fs = std::filesystem;

namespace {
constexpr const char* kModelFiles[] = {"config.toml", "preprocess.json", "weights.pt"};  // and meta.json

// Reads `name` inside the directory open as `dir_fd`: every file of one load
// comes from the same directory, even if the path is renamed meanwhile.
std::string read_at(int dir_fd, const std::string& dir, const std::string& name) {
  const int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw ModelError(dir + "/" + name + ": missing or unreadable (is this an mtrank model directory?)");
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      throw ModelError(dir + "/" + name + ": cannot read: " + std::strerror(errno));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string hex64(std::uint64_t v) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(v));
  return hex;
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

std::string serialize_weights(torch::nn::Module& net, const std::string& dir) {
  // Serialized to memory (LibTorch's own file writer aborts the process on a
  // full disk), straight into one string sized for the weights: a string
  // stream grew by doubling and str() copied it, three times the weights at
  // the peak.
  std::string weights;
  std::size_t size = 1 << 20;
  for (const auto& p : net.parameters()) size += static_cast<std::size_t>(p.numel() * p.element_size());
  for (const auto& b : net.buffers()) size += static_cast<std::size_t>(b.numel() * b.element_size());
  weights.reserve(size);
  try {
    torch::serialize::OutputArchive archive;
    net.save(archive);
    archive.save_to([&weights](const void* data, std::size_t n) -> std::size_t {
      weights.append(static_cast<const char*>(data), n);
      return n;
    });
  } catch (const c10::Error& e) {
    throw ModelError(dir + ": cannot serialize the weights: " + e.what_without_backtrace());
  }
  return weights;
}

void load_weights(torch::nn::Module& net, const std::string& bytes, const std::string& path) {
  try {
    // LibTorch resizes tensors to what the archive holds instead of checking,
    // so weights of another config "loaded" and failed later with shape errors.
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected;
    for (const auto& p : net.named_parameters()) expected.emplace_back(p.key(), p.value().sizes().vec());
    for (const auto& b : net.named_buffers()) expected.emplace_back(b.key(), b.value().sizes().vec());
    torch::serialize::InputArchive archive;
    archive.load_from(bytes.data(), bytes.size());
    net.load(archive);
    std::size_t i = 0;
    auto check = [&](const std::string& name, const torch::Tensor& t) {
      if (i >= expected.size() || expected[i].first != name || expected[i].second != t.sizes().vec())
        throw ModelError(path + ": tensor '" + name + "' has shape " + c10::str(t.sizes()) +
                         ", but the model config needs " +
                         (i < expected.size() ? c10::str(c10::IntArrayRef(expected[i].second)) : std::string("none")) +
                         ": the weights belong to another config");
      ++i;
    };
    for (const auto& p : net.named_parameters()) check(p.key(), p.value());
    for (const auto& b : net.named_buffers()) check(b.key(), b.value());
  } catch (const c10::Error& e) {
    throw ModelError(path + ": corrupt or does not match the model config: " + e.what_without_backtrace());
  }
  for (const auto& p : net.parameters())
    if (!torch::isfinite(p).all().item<bool>()) throw ModelError(path + ": holds NaN or infinite weights");
}

void write_model_files(const std::string& dir, const std::map<std::string, std::string>& files) {
  check_model_output_dir(dir);  // again at the moment of replacing: never delete user files
  const fs::path target = fs::absolute(dir);
  remove_stale_litter(target);
  const fs::path tmp = target.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    // The manifest lets a loader prove that every file is from this one save.
    nlohmann::json manifest{{"format", "mtrank-manifest"}, {"version", 1}, {"files", nlohmann::json::object()}};
    for (const auto& [name, bytes] : files) {
      write_file_durable((tmp / name).string(), bytes);
      manifest["files"][name] = {{"bytes", bytes.size()}, {"checksum", hex64(data::hash_bytes(bytes))}};
    }
    write_file_durable((tmp / "manifest.json").string(), manifest.dump(2) + "\n");
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

void save_model_dir(const std::string& dir, const Config& config, const data::Preprocessor& pre,
                    RankingModel& net, const nlohmann::json& meta) {
  check_model_output_dir(dir);
  if (!parameters_finite(net)) throw TrainingError(dir + ": the model's weights hold NaN or infinity; not written");
  std::map<std::string, std::string> files;  // emplaced, not an initializer list: the weights are not copied again
  files.emplace("weights.pt", serialize_weights(net, dir));
  files.emplace("config.toml", to_toml(config));
  files.emplace("preprocess.json", pre.to_json().dump());
  files.emplace("meta.json", meta.dump(2) + "\n");
  write_model_files(dir, files);
}

ModelFiles read_model_files(const std::string& dir, const std::vector<std::string>& names) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw ModelError(dir + ": not a directory (expected a model directory from 'mtrank train')");
  // One directory handle and every file read into memory before anything is
  // parsed: a reload racing a new save can never mix two models' files.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) throw ModelError(dir + ": cannot open: " + std::strerror(errno));
  ModelFiles out;
  std::map<std::string, std::string>& files = out.files;
  std::string manifest_text;
  bool has_manifest = false;
  const std::string meta_path = (root / "meta.json").string();
  try {
    files["meta.json"] = read_at(dir_fd, dir, "meta.json");  // first: says whether this is a model at all
    try {
      out.meta = nlohmann::json::parse(files["meta.json"]);
    } catch (const nlohmann::json::exception& e) {
      throw ModelError(meta_path + ": corrupt: " + e.what());
    }
    if (!out.meta.is_object() || !out.meta.contains("format") || out.meta["format"] != "mtrank-model")
      throw ModelError(meta_path + ": not an mtrank model (format field missing)");
    if (out.meta.contains("model_version") && !out.meta["model_version"].is_string())
      throw ModelError(meta_path + ": 'model_version' must be a string");
    for (const std::string& name : names) files[name] = read_at(dir_fd, dir, name);
    if (::faccessat(dir_fd, "manifest.json", F_OK, 0) == 0) {
      manifest_text = read_at(dir_fd, dir, "manifest.json");
      has_manifest = true;
    }
  } catch (...) {
    ::close(dir_fd);
    throw;
  }
  ::close(dir_fd);
  if (has_manifest) {  // models written before the manifest existed load without it
    const std::string path = (root / "manifest.json").string();
    try {
      const nlohmann::json manifest = nlohmann::json::parse(manifest_text);
      if (!manifest.is_object() || manifest.value("format", nlohmann::json()) != "mtrank-manifest")
        throw ModelError(path + ": not an mtrank manifest");
      for (const auto& [name, bytes] : files) {
        const nlohmann::json& entry = manifest.at("files").at(name);
        if (entry.at("bytes").get<std::uint64_t>() != bytes.size() ||
            entry.at("checksum").get<std::string>() != hex64(data::hash_bytes(bytes)))
          throw ModelError((root / name).string() +
                           ": does not match manifest.json (changed or damaged since the model was written, or "
                           "the directory was being replaced); train again or reload later");
      }
    } catch (const nlohmann::json::exception& e) {
      throw ModelError(path + ": corrupt: " + e.what());
    }
  }
  return out;
}

bool is_sequential_model(const nlohmann::json& meta) { return meta.value("kind", "") == "sequential"; }

LoadedModel load_model_dir(const std::string& dir) {
  const fs::path root(dir);
  // meta.json alone first: a sequential model lacks preprocess.json, and the
  // user should hear what kind of model it is, not which file is missing.
  if (is_sequential_model(read_model_files(dir, {}).meta))
    throw ModelError(dir + ": a sequential (next-item) model; this command needs a ranking model "
                     "(sequential models: mtrank train, eval)");
  ModelFiles read = read_model_files(dir, {std::begin(kModelFiles), std::end(kModelFiles)});
  std::map<std::string, std::string>& files = read.files;
  LoadedModel m;
  m.meta = std::move(read.meta);
  try {
    // Directories written before families owned their keys store every family's keys.
    m.config = parse_config(files["config.toml"], (root / "config.toml").string(), ParseOptions{true});
  } catch (const ConfigError& e) {
    throw ModelError(std::string("corrupt model config: ") + e.what());
  }
  // The training run's cache folder is not this process's: a model from
  // another machine made eval create files at that absolute path.
  m.config.data.cache_dir.clear();
  m.preprocessor = std::make_unique<data::Preprocessor>(m.config);
  try {
    m.preprocessor->load_json(nlohmann::json::parse(files["preprocess.json"]));
  } catch (const nlohmann::json::exception& e) {
    throw ModelError((root / "preprocess.json").string() + ": corrupt: " + e.what());
  } catch (const ModelError& e) {
    throw ModelError((root / "preprocess.json").string() + ": " + e.what());
  }
  m.net = create_model(m.config.model, input_shape(*m.preprocessor));
  load_weights(*m.net, files["weights.pt"], (root / "weights.pt").string());
  m.net->eval();
  return m;
}

}  // namespace mtrank::model
