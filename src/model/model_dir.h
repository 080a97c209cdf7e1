#pragma once
// A model directory holds everything needed to featurize and score exactly as
// training did:
//   config.toml      the training config (features, tasks, model)
//   preprocess.json  fitted vocabularies, quantile boundaries, moments
//   weights.pt       model parameters (LibTorch archive)
//   meta.json        format version, tasks, training summary and metrics
//   manifest.json    size and checksum of each file above, written with them
// It is written to a temporary directory (every file fsynced) and renamed
// into place, so a crash never leaves a half-written model; it is loaded
// through one directory handle and checked against the manifest, so a load
// never mixes the files of two saves.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "data/preprocessor.h"

// No torch here: serving and the command line read model directories
// without LibTorch's headers (the network is an opaque pointer).
namespace mtrank::model {

class RankingModel;

struct LoadedModel {
  Config config;
  std::unique_ptr<data::Preprocessor> preprocessor;
  std::shared_ptr<RankingModel> net;
  nlohmann::json meta;
};

// True if `dir` holds an mtrank model (meta.json of format mtrank-model).
bool is_model_dir(const std::string& dir);
// Before any work: `dir` is absent or a model directory (train never replaces
// anything else), and its folder exists and is writable. Throws ConfigError.
void check_model_output_dir(const std::string& dir);

// Refuses (TrainingError) weights that are not finite; writes every file
// durably, then swaps the directory in with renames.
void save_model_dir(const std::string& dir, const Config& config, const data::Preprocessor& pre,
                    RankingModel& net, const nlohmann::json& meta);
LoadedModel load_model_dir(const std::string& dir);  // throws ModelError naming the file

// The directory mechanics every model kind shares (the sequential model's
// directory holds config.toml, items.json, weights.pt and meta.json).
// Writes `files` (meta.json among them) durably with manifest.json and swaps
// the directory in with renames; `dir` must pass check_model_output_dir.
void write_model_files(const std::string& dir, const std::map<std::string, std::string>& files);
struct ModelFiles {
  nlohmann::json meta;                       // parsed meta.json, of format mtrank-model
  std::map<std::string, std::string> files;  // meta.json and `names`
};
// meta.json first, then `names`, all through one directory handle and checked
// against manifest.json. Throws ModelError naming the file.
ModelFiles read_model_files(const std::string& dir, const std::vector<std::string>& names);
// meta.json "kind": "sequential" for next-item models (absent: a ranking model).
bool is_sequential_model(const nlohmann::json& meta);

}  // namespace mtrank::model
