// Model directories: durable writes, loads that never mix two saves, refusals.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "data/synth.h"
#include "model/model.h"
#include "model/model_dir.h"
#include "test_util.h"
#include "torch_test_util.h"

using namespace mtrank;
using mtrank::testing::TempDir;
using namespace mtrank::testing;

TEST(ModelDir, CorruptOrMissingFilesGiveClearErrors) {
  TempDir dir;
  auto error = [](const std::string& path) {
    try {
      model::load_model_dir(path);
    } catch (const ModelError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error(dir.file("nope")).find("not a directory"), std::string::npos);
  std::filesystem::create_directories(dir.file("m"));
  EXPECT_NE(error(dir.file("m")).find("meta.json: missing"), std::string::npos);
  dir.write("m/meta.json", "{not json");
  EXPECT_NE(error(dir.file("m")).find("meta.json: corrupt"), std::string::npos);
}

TEST(ModelDir, TruncatedWeightsAreRefused) {
  TempDir dir;
  Config c = parse_config("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\ncolumn=\"y\"\n", "c.toml");
  const std::string csv = dir.write("d.csv", "a,y\nx,1\nz,0\n");
  data::Preprocessor pre(c);
  pre.fit(csv);
  auto net = model::create_model(c.model, model::input_shape(pre));
  model::save_model_dir(dir.file("m"), c, pre, *net, {{"format", "mtrank-model"}, {"version", 1}});
  const std::string weights = dir.file("m/weights.pt");
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) / 2);
  try {
    model::load_model_dir(dir.file("m"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {  // issue 14.5: the manifest catches it before LibTorch reads a byte
    EXPECT_NE(std::string(e.what()).find("weights.pt: does not match manifest.json"), std::string::npos) << e.what();
  }
  std::filesystem::remove(dir.file("m/manifest.json"));  // a model from before the manifest
  try {
    model::load_model_dir(dir.file("m"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("weights.pt: corrupt"), std::string::npos) << e.what();
  }
}

namespace {
// A fitted, untrained one-feature model and what saving it needs: enough for
// model-directory tests. Tests bind its parts: auto& [dir, c, pre, net, meta] = tiny;
struct TinyModel {
  TempDir dir;
  Config c = parse_config("[[features]]\nname=\"a\"\ntype=\"categorical\"\n[[tasks]]\nname=\"y\"\ncolumn=\"y\"\n", "c.toml");
  data::Preprocessor pre{c};
  std::shared_ptr<model::RankingModel> net;
  nlohmann::json meta{{"format", "mtrank-model"}, {"version", 1}};
  TinyModel() {
    pre.fit(dir.write("d.csv", "a,y\nx,1\nz,0\n"));
    net = model::create_model(c.model, model::input_shape(pre));
  }
};
}  // namespace

TEST(ModelDir, ReplacesOnlyAModelDirectory) {
  // Issue 14.4: --out PATH deleted a folder of user files, or a file, and exited 0.
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  std::filesystem::create_directories(dir.file("user"));
  dir.write("user/notes.txt", "precious");
  dir.write("file", "precious");
  for (const char* target : {"user", "file"}) {
    EXPECT_THROW(model::save_model_dir(dir.file(target), c, pre, *net, meta), ConfigError) << target;
  }
  EXPECT_TRUE(std::filesystem::exists(dir.file("user/notes.txt")));
  EXPECT_TRUE(std::filesystem::is_regular_file(dir.file("file")));
  // A model directory is replaced; stale litter of a crashed earlier save (a dead pid) is cleaned.
  model::save_model_dir(dir.file("m"), c, pre, *net, meta);
  std::filesystem::create_directories(dir.file("m.tmp-999999999"));
  std::filesystem::create_directories(dir.file("m.old-999999999"));
  model::save_model_dir(dir.file("m"), c, pre, *net, meta);
  EXPECT_TRUE(model::is_model_dir(dir.file("m")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.tmp-999999999")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.old-999999999")));
  EXPECT_THROW(model::check_model_output_dir(dir.file("no/such/m")), ConfigError);
}

TEST(ModelDir, NonFiniteWeightsAreNeverWrittenOrLoaded) {
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  model::save_model_dir(dir.file("good"), c, pre, *net, meta);
  {
    torch::NoGradGuard no_grad;
    net->parameters()[0].view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  }
  EXPECT_THROW(model::save_model_dir(dir.file("bad"), c, pre, *net, meta), TrainingError);
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad")));
  // Weights made NaN behind mtrank's back are refused at load.
  torch::serialize::OutputArchive archive;
  net->save(archive);
  archive.save_to(dir.file("good/weights.pt"));
  std::filesystem::remove(dir.file("good/manifest.json"));  // past the manifest check
  EXPECT_THROW(model::load_model_dir(dir.file("good")), ModelError);
}

TEST(ModelDir, WeightsOfAnotherConfigAreRefusedAtLoad) {
  // Issue 14.14: LibTorch resized the tensors, the load "succeeded", and scoring
  // failed later with a shape error (exit 1; a backtrace in a 422 body).
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  model::save_model_dir(dir.file("m"), c, pre, *net, meta);
  Config other = c;
  other.model.set("expert_hidden", std::vector<std::int64_t>{48});
  dir.write("m/config.toml", to_toml(other));
  EXPECT_THROW(model::load_model_dir(dir.file("m")), ModelError);  // the manifest: config.toml changed
  std::filesystem::remove(dir.file("m/manifest.json"));            // past it, the shapes are checked
  try {
    model::load_model_dir(dir.file("m"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("weights.pt: tensor '"), std::string::npos) << m;
    EXPECT_NE(m.find("the weights belong to another config"), std::string::npos) << m;
    EXPECT_EQ(m.find("Exception raised from"), std::string::npos) << m;
  }
}

TEST(ModelDir, FilesFromTwoSavesNeverLoadTogether) {
  // Issue 14.5: a reload racing a new save served old preprocessing with new
  // weights. Every file is checked against the manifest written with it.
  TinyModel tiny;
  auto& [dir, c, pre, net, meta] = tiny;
  data::Preprocessor other(c);
  other.fit(dir.write("e.csv", "a,y\nx,1\nz,0\nw,1\nv,0\n"));
  model::save_model_dir(dir.file("a"), c, pre, *net, meta);
  auto net2 = model::create_model(c.model, model::input_shape(other));
  model::save_model_dir(dir.file("b"), c, other, *net2, meta);
  EXPECT_NO_THROW(model::load_model_dir(dir.file("a")));
  std::filesystem::copy_file(dir.file("b/preprocess.json"), dir.file("a/preprocess.json"),
                             std::filesystem::copy_options::overwrite_existing);
  try {
    model::load_model_dir(dir.file("a"));
    FAIL() << "a mixed directory loaded";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("preprocess.json: does not match manifest.json"), std::string::npos) << e.what();
  }
  // The training run's cache_dir is not used by eval/predict of a loaded model.
  Config cached = c;
  cached.data.cache_dir = dir.file("somewhere-else");
  model::save_model_dir(dir.file("c"), cached, pre, *net, meta);
  EXPECT_EQ(model::load_model_dir(dir.file("c")).config.data.cache_dir, "");
  EXPECT_EQ(model::load_model_dir(dir.file("c")).preprocessor->config().data.cache_dir, "");
  // meta.json with wrong types: exit 4 with the file named, not a bare JSON error.
  dir.write("b/meta.json", "{\"format\": 7}");
  EXPECT_THROW(model::load_model_dir(dir.file("b")), ModelError);
  dir.write("b/meta.json", "[1, 2]");
  EXPECT_THROW(model::load_model_dir(dir.file("b")), ModelError);
}
