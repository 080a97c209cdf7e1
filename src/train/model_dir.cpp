#include "train/model_dir.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace mtrank::train {

namespace fs = std::filesystem;

model::InputShape input_shape(const data::Preprocessor& pre) {
  return {pre.embedding_rows(), pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks()};
}

namespace {
void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out.flush()) throw ModelError(path.string() + ": write failed");
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(path.string() + ": missing or unreadable (is this an mtrank model directory?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

void save_model_dir(const std::string& dir, const Config& config, const data::Preprocessor& pre,
                    model::RankingModel& net, const nlohmann::json& meta) {
  const fs::path target = fs::absolute(dir);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const fs::path tmp = target.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    write_text(tmp / "config.toml", to_toml(config));
    write_text(tmp / "preprocess.json", pre.to_json().dump());
    write_text(tmp / "meta.json", meta.dump(2) + "\n");
    torch::serialize::OutputArchive archive;
    net.save(archive);
    archive.save_to((tmp / "weights.pt").string());
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
    torch::serialize::InputArchive archive;
    archive.load_from(weights);
    m.net->load(archive);
  } catch (const c10::Error& e) {
    throw ModelError(weights + ": corrupt or does not match the model config: " + e.what_without_backtrace());
  }
  m.net->eval();
  return m;
}

}  // namespace mtrank::train
