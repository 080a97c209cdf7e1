#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "config/config.h"
#include "config/model_families.h"
#include "test_util.h"

#include <chrono>
#include <filesystem>

using mtrank::Config;
using mtrank::ConfigError;
using mtrank::parse_config;
using mtrank::ModelFamily;
using mtrank::model_families;

namespace {
const char* kMinimal = R"(
[[features]]
names = ["a", "b"]
type = "categorical"
min_count = 3

[[features]]
name = "x"
type = "numeric"
transform = "standardize"

[[tasks]]
name = "click"
column = "clicked"
)";

std::string error_of(const std::string& text) {
  try {
    parse_config(text, "cfg.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Config, ExpandsNamesAndAppliesDefaults) {
  Config c = parse_config(kMinimal, "cfg.toml");
  ASSERT_EQ(c.features.size(), 3u);
  EXPECT_EQ(c.features[0].name, "a");
  EXPECT_EQ(c.features[1].name, "b");
  EXPECT_EQ(c.features[1].min_count, 3);
  EXPECT_EQ(c.features[2].transform, mtrank::NumericTransform::kStandardize);
  ASSERT_EQ(c.tasks.size(), 1u);
  EXPECT_EQ(c.tasks[0].type, mtrank::TaskType::kBinary);
  EXPECT_EQ(c.model.type, "mmoe");
  EXPECT_EQ(c.train.optimizer, "adam");
}

TEST(Config, UnknownKeyNamesKeyAndLine) {
  std::string e = error_of(std::string(kMinimal) + "\n[train]\nlearning_rat = 0.1\n");
  EXPECT_NE(e.find("cfg.toml:"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'train.learning_rat'"), std::string::npos) << e;
  EXPECT_NE(e.find("cfg.toml:17:"), std::string::npos) << e;  // the line of the typo
}

TEST(Config, WrongTypeNamesKey) {
  std::string e = error_of(std::string(kMinimal) + "\n[train]\nepochs = \"ten\"\n");
  EXPECT_NE(e.find("key 'train.epochs': must be an integer, got a string"), std::string::npos) << e;
}

TEST(Config, BadEnumListsChoices) {
  std::string e = error_of(std::string(kMinimal) + "\n[train]\noptimizer = \"sgd\"\n");
  EXPECT_NE(e.find("\"sgd\" is not one of \"adam\", \"adagrad\""), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "\n[train]\ntable_sharding = \"column\"\n");
  EXPECT_NE(e.find("\"column\" is not one of \"replicated\", \"row\""), std::string::npos) << e;
}

TEST(Config, MissingTasksAndSyntaxErrors) {
  EXPECT_NE(error_of("[[features]]\nname = \"a\"\ntype = \"categorical\"\n").find("[[tasks]]"), std::string::npos);
  std::string e = error_of("[model\n");
  EXPECT_NE(e.find("cfg.toml:1:"), std::string::npos) << e;
}

TEST(Config, CrossNeedsBucketsAndDuplicateNamesRejected) {
  EXPECT_NE(error_of(std::string(kMinimal) + "[[features]]\nname=\"ab\"\ntype=\"cross\"\ncolumns=[\"a\",\"b\"]\n")
                .find("hash_buckets"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kMinimal) + "[[features]]\nname=\"a\"\ntype=\"categorical\"\n").find("declared twice"),
            std::string::npos);
}

TEST(Config, BiasFeatures) {
  Config c = parse_config(std::string(kMinimal) + "[[features]]\nname=\"position\"\ntype=\"numeric\"\nbias=true\n",
                          "cfg.toml");
  EXPECT_TRUE(c.features.back().bias);
  EXPECT_FALSE(c.features.front().bias);
  EXPECT_TRUE(parse_config(mtrank::to_toml(c), "back.toml").features.back().bias);
  // A cross cannot be one, and a bias feature must accept being missing.
  const std::string cross = error_of(std::string(kMinimal) +
                                     "[[features]]\nname=\"ab\"\ntype=\"cross\"\ncolumns=[\"a\",\"b\"]\n"
                                     "hash_buckets=9\nbias=true\n");
  EXPECT_NE(cross.find("features[2].bias"), std::string::npos) << cross;
  EXPECT_NE(cross.find("cross feature cannot be a bias feature"), std::string::npos) << cross;
  const std::string strict = error_of(std::string(kMinimal) +
                                      "[[features]]\nname=\"pos\"\ntype=\"numeric\"\nmissing=\"error\"\nbias=true\n");
  EXPECT_NE(strict.find("treated as missing when serving"), std::string::npos) << strict;
  const std::string crossed = error_of(std::string(kMinimal) +
                                       "[[features]]\nname=\"ax\"\ntype=\"cross\"\ncolumns=[\"a\",\"pos\"]\nhash_buckets=9\n"
                                       "[[features]]\nname=\"pos\"\ntype=\"categorical\"\nbias=true\n");
  EXPECT_NE(crossed.find("cross 'ax' reads 'pos', a bias feature"), std::string::npos) << crossed;
  const std::string no_missing = error_of("[data]\nmissing_values = []\n" + std::string(kMinimal) +
                                          "[[features]]\nname=\"pos\"\ntype=\"numeric\"\nbias=true\n");
  EXPECT_NE(no_missing.find("needs data.missing_values"), std::string::npos) << no_missing;
}

TEST(Config, SampleSpace) {
  Config c = parse_config(std::string(kMinimal) +
                              "[[tasks]]\nname=\"like\"\ncolumn=\"liked\"\nwhere={column=\"clicked\", equals=[\"1\"]}\n",
                          "cfg.toml");
  ASSERT_EQ(c.tasks.size(), 2u);
  EXPECT_EQ(c.tasks[1].where_column, "clicked");
  EXPECT_EQ(c.tasks[1].where_equals, std::vector<std::string>{"1"});
}

TEST(Config, ToTomlRoundTripsEveryKey) {
  Config c = parse_config(std::string(kMinimal) + R"(
[[features]]
name = "ab"
type = "cross"
columns = ["a", "b"]
hash_buckets = 99
[[tasks]]
name = "watch"
type = "regression"
column = "secs"
weight = 0.5
weight_gamma = 0.9
where = { column = "clicked", equals = ["1", "yes"] }
metrics = ["ndcg@10", "mrr"]
[model]
type = "ple"
levels = 3
shared_experts = 2
gate_dropout = 0.1
[train]
lr_decay = "cosine"
ftrl_l1 = 0.25
loss_weighting = "uncertainty"
table_sharding = "row"
[serve]
score = "product:click=1,watch=0.5"
)",
                          "cfg.toml");
  c.train.seed = 1234;  // a programmatic override must survive too
  const std::string text = mtrank::to_toml(c);
  Config back = parse_config(text, "back.toml");
  EXPECT_EQ(mtrank::to_toml(back), text);
  EXPECT_EQ(back.train.seed, 1234u);
  EXPECT_EQ(back.model.integer("levels"), 3);
  EXPECT_EQ(back.model.integer("shared_experts"), 2);
  EXPECT_EQ(text.find("num_experts"), std::string::npos);  // only the keys ple takes are written
  EXPECT_EQ(back.tasks.back().metrics, (std::vector<std::string>{"ndcg@10", "mrr"}));
  EXPECT_EQ(back.tasks[1].where_equals, (std::vector<std::string>{"1", "yes"}));
  EXPECT_EQ(back.features[3].columns, (std::vector<std::string>{"a", "b"}));
  EXPECT_DOUBLE_EQ(back.tasks[1].weight_gamma, 0.9);
  EXPECT_EQ(back.serve.score, "product:click=1,watch=0.5");
  EXPECT_EQ(back.train.table_sharding, "row");
}

TEST(Config, ExtendsAndOverlaysMergeInOrder) {
  mtrank::testing::TempDir dir;
  std::filesystem::create_directories(dir.path() / "sub");
  dir.write("base.toml", std::string(kMinimal) + "[data]\ntrain = \"data/train.csv\"\n[train]\nepochs = 5\nseed = 1\n");
  dir.write("sub/model.toml", "extends = \"../base.toml\"\n[model]\ntype = \"cgc\"\n[train]\nepochs = 7\n");
  dir.write("overlay.toml", "[train]\nseed = 9\n");
  Config c = mtrank::load_config(std::vector<std::string>{dir.file("sub/model.toml"), dir.file("overlay.toml")});
  EXPECT_EQ(c.model.type, "cgc");
  EXPECT_EQ(c.train.epochs, 7);  // the extending file wins over its base
  EXPECT_EQ(c.train.seed, 9u);   // a later overlay wins over both
  EXPECT_EQ(c.features.size(), 3u);
  // A data path is relative to the file that names it.
  EXPECT_EQ(c.data.train, mtrank::FileList{(dir.path() / "data/train.csv").lexically_normal().string()});
  dir.write("bad.toml", "extends = \"missing.toml\"\n");
  EXPECT_THROW(mtrank::load_config(dir.file("bad.toml")), ConfigError);
}

// A data set is one path, a glob, or a list of them; relative entries are
// relative to the file that names them, in a single file and through extends;
// the list survives the model directory's config.toml.
TEST(Config, DataSetsAreFileLists) {
  mtrank::testing::TempDir dir;
  std::filesystem::create_directories(dir.path() / "sub");
  const std::string d = dir.path().lexically_normal().string() + "/";
  dir.write("one.toml", std::string(kMinimal) + "[data]\ntrain = [\"a.csv\", \"logs/day-*.csv\"]\nval = \"v.csv\"\n");
  dir.write("sub/top.toml", "extends = \"../one.toml\"\n[data]\ntest = [\"t1.csv\", \"/abs/t2.csv\"]\n");
  const Config one = mtrank::load_config(dir.file("one.toml"));
  EXPECT_EQ(one.data.train, (mtrank::FileList{d + "a.csv", d + "logs/day-*.csv"}));
  EXPECT_EQ(one.data.val, mtrank::FileList{d + "v.csv"});
  EXPECT_TRUE(one.data.test.empty());
  const Config top = mtrank::load_config(dir.file("sub/top.toml"));
  EXPECT_EQ(top.data.train, one.data.train);
  EXPECT_EQ(top.data.test, (mtrank::FileList{d + "sub/t1.csv", "/abs/t2.csv"}));
  const Config back = parse_config(mtrank::to_toml(top), "back.toml");
  EXPECT_EQ(back.data.train, top.data.train);
  EXPECT_EQ(back.data.val, top.data.val);
  EXPECT_EQ(back.data.test, top.data.test);
  EXPECT_EQ(mtrank::to_toml(back), mtrank::to_toml(top));
  EXPECT_NE(mtrank::to_toml(one).find("val = '" + d + "v.csv'"), std::string::npos);  // one file stays a string
  EXPECT_EQ(mtrank::describe(top.data.test), d + "sub/t1.csv + /abs/t2.csv");
  std::string e = error_of(std::string(kMinimal) + "[data]\ntrain = [\"a.csv\", \"\"]\n");
  EXPECT_NE(e.find("key 'data.train': has an empty file name in its list"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "[data]\ntrain = 3\n");
  EXPECT_NE(e.find("key 'data.train': must be an array of strings, got an integer"), std::string::npos) << e;
}

TEST(Config, LabelColumnAlsoAFeatureIsRefused) {
  // Issue 13.1: the task would reach AUC 1.0 on test through its own label.
  std::string e = error_of(std::string(kMinimal) + "\n[[tasks]]\nname = \"leak\"\ncolumn = \"b\"\n");
  EXPECT_NE(e.find("cfg.toml:2: task 'leak' predicts column 'b', which features[0] also reads"), std::string::npos)
      << e;
  // A crossed column counts too; a cross's own name is not a column.
  const std::string cross = "[[features]]\nname = \"clicked_x\"\ntype = \"cross\"\ncolumns = [\"u\", \"clicked\"]\n"
                            "hash_buckets = 8\n[[tasks]]\nname = \"click\"\ncolumn = \"clicked\"\n";
  e = error_of(cross);
  EXPECT_NE(e.find("task 'click' predicts column 'clicked', which features[0]"), std::string::npos) << e;
  EXPECT_EQ(error_of("[[features]]\nname = \"clicked_x\"\ntype = \"cross\"\ncolumns = [\"u\", \"v\"]\n"
                     "hash_buckets = 8\n[[tasks]]\nname = \"c\"\ncolumn = \"clicked_x\"\n"),
            "");
}

TEST(Config, NameAndNamesTogetherAreRefused) {
  std::string e = error_of("[[features]]\nname = \"a\"\nnames = [\"b\", \"c\"]\ntype = \"categorical\"\n"
                           "[[tasks]]\nname = \"t\"\ncolumn = \"y\"\n");
  EXPECT_NE(e.find("cfg.toml:3: key 'features[0].names': an entry takes 'name' (one feature) or 'names'"),
            std::string::npos)
      << e;
}

TEST(Config, NonFiniteNumbersAreRefused) {
  // Issue 14.1: inf as a learning rate or a weight hung training.
  for (const char* bad : {"[train]\nlearning_rate = inf\n", "[train]\nlearning_rate = nan\n",
                          "[model]\ndropout = -inf\n"}) {
    std::string e = error_of(std::string(kMinimal) + bad);
    EXPECT_NE(e.find("must be a finite number"), std::string::npos) << bad << ": " << e;
  }
  std::string e = error_of(std::string(kMinimal) + "weight = inf\n");  // appended to the [[tasks]] entry
  EXPECT_NE(e.find("key 'tasks[0].weight': must be a finite number"), std::string::npos) << e;
}

TEST(Config, PositiveAsANumericComparison) {
  Config c = parse_config(std::string(kMinimal) + "positive = \">= 3\"\n", "cfg.toml");
  EXPECT_EQ(c.tasks[0].positive_op, ">=");
  EXPECT_DOUBLE_EQ(c.tasks[0].positive_threshold, 3.0);
  Config back = parse_config(mtrank::to_toml(c), "stored.toml");  // a model directory keeps it
  EXPECT_EQ(back.tasks[0].positive_op, ">=");
  // Values that merely start with an operator stay values (census: ">50K").
  c = parse_config(std::string(kMinimal) + "positive = [\">50K\", \"> 50K.\"]\n", "cfg.toml");
  EXPECT_EQ(c.tasks[0].positive_op, "");
  EXPECT_NE(error_of(std::string(kMinimal) + "positive = [\"> 0\", \"yes\"]\n").find("must be the only entry"),
            std::string::npos);
  std::string op;
  double v = 0;
  EXPECT_TRUE(mtrank::parse_comparison("<-1.5", op, v));
  EXPECT_EQ(op, "<");
  EXPECT_DOUBLE_EQ(v, -1.5);
  EXPECT_FALSE(mtrank::parse_comparison(">", op, v));
  EXPECT_FALSE(mtrank::parse_comparison("0", op, v));
  EXPECT_TRUE(mtrank::compare_value(0.5, ">", 0));
  EXPECT_FALSE(mtrank::compare_value(0, ">", 0));
  EXPECT_TRUE(mtrank::compare_value(3, ">=", 3));
  EXPECT_TRUE(mtrank::compare_value(2, "!=", 3));
}

TEST(Config, ErrorsInABaseFileNameThatFileAndLine) {
  // Issue 13.8: errors used to name the merged pair with line 0.
  mtrank::testing::TempDir dir;
  dir.write("base.toml", std::string(kMinimal) + "[train]\nepochs = 5\nlearning_rat = 0.1\n");
  dir.write("model.toml", "extends = \"base.toml\"\n[model]\ntype = \"cgc\"\n");
  dir.write("overlay.toml", "[model]\nshared_experts = \"four\"\n");
  auto error = [&](std::vector<std::string> files) {
    try {
      mtrank::load_config(files);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string e = error({dir.file("model.toml")});
  EXPECT_NE(e.find(dir.file("base.toml") + ":17: unknown key 'train.learning_rat'"), std::string::npos) << e;
  dir.write("base.toml", kMinimal);
  e = error({dir.file("model.toml"), dir.file("overlay.toml")});
  EXPECT_NE(e.find(dir.file("overlay.toml") + ":2: key 'model.shared_experts': must be an integer"), std::string::npos)
      << e;
}

TEST(Config, ExtendsDiamondsLoadEachFileOnce) {
  // Issue 14 (low): five-way diamonds 8 deep took 32 s (every path reloaded its bases).
  mtrank::testing::TempDir dir;
  dir.write("l0_0.toml", std::string(kMinimal));
  for (int level = 1; level <= 8; ++level)
    for (int k = 0; k < 5; ++k) {
      std::string ext = "extends = [";
      for (int j = 0; j < 5; ++j)
        ext += std::string(j ? ", " : "") + "\"l" + std::to_string(level - 1) + "_" + std::to_string(level == 1 ? 0 : j) + ".toml\"";
      dir.write("l" + std::to_string(level) + "_" + std::to_string(k) + ".toml",
                ext + "]\n[train]\nepochs = " + std::to_string(level) + "\n");
    }
  const auto t0 = std::chrono::steady_clock::now();
  Config c = mtrank::load_config(dir.file("l8_0.toml"));
  EXPECT_EQ(c.train.epochs, 8);
  EXPECT_EQ(c.features.size(), 3u);
  // Not a timing threshold on speed, a bound on blow-up: 5^8 loads took 32 s.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
}

TEST(ModelFamilies, DocsListEveryFamilyWithItsDocLine) {
  std::ifstream in(std::string(MTRANK_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md not found under " << MTRANK_SOURCE_DIR;
  std::stringstream text;
  text << in.rdbuf();
  for (const ModelFamily& f : model_families())
    EXPECT_NE(text.str().find("- `" + f.name + "`: " + f.doc + "\n"), std::string::npos)
        << "docs/config.md lacks the line: - `" << f.name << "`: " << f.doc;
}

TEST(ModelFamilies, ChangingTheTypeDropsTheBaseKeysTheNewFamilyDoesNotTake) {
  mtrank::testing::TempDir dir;
  dir.write("mmoe.toml", std::string(kMinimal) + "[model]\ntype = \"mmoe\"\nnum_experts = 8\nexpert_hidden = [16]\n"
                                                 "tower_hidden = [4]\nembedding_dim = 6\n");
  dir.write("single.toml", "extends = \"mmoe.toml\"\n[model]\ntype = \"single_task\"\n");
  Config c = mtrank::load_config(dir.file("single.toml"));
  EXPECT_EQ(c.model.type, "single_task");
  EXPECT_FALSE(c.model.has("num_experts"));
  EXPECT_EQ(c.model.integer("embedding_dim"), 6);  // keys both families take carry over
  EXPECT_EQ(c.model.integers("tower_hidden"), std::vector<std::int64_t>{4});
  EXPECT_EQ(c.model.integers("bottom_hidden"), std::vector<std::int64_t>{64});  // single_task's default
  // The same through an overlay file given after the base.
  dir.write("type.toml", "[model]\ntype = \"shared_bottom\"\n");
  EXPECT_EQ(mtrank::load_config(std::vector<std::string>{dir.file("mmoe.toml"), dir.file("type.toml")}).model.type,
            "shared_bottom");
  auto error = [&](const std::vector<std::string>& files) {
    try {
      mtrank::load_config(files);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // A key of another family written beside the new type, or in an overlay without one, is refused.
  dir.write("both.toml", "extends = \"mmoe.toml\"\n[model]\ntype = \"single_task\"\nnum_experts = 2\n");
  EXPECT_NE(error({dir.file("both.toml")}).find("both.toml:4: key 'model.num_experts': type = \"single_task\" does not take"),
            std::string::npos)
      << error({dir.file("both.toml")});
  dir.write("experts.toml", "[model]\nnum_experts = 2\n");
  EXPECT_NE(error({dir.file("single.toml"), dir.file("experts.toml")}).find("experts.toml:2: key 'model.num_experts'"),
            std::string::npos);
}

TEST(ModelFamilies, StoredConfigsWithEveryFamilysKeysStillLoad) {
  // Model directories written before families owned their keys stored all of them.
  const std::string stored = std::string(kMinimal) +
                             "[model]\ntype = \"single_task\"\nnum_experts = 4\nspecific_experts = 1\nlevels = 1\n"
                             "expert_hidden = [32]\ngate_dropout = 0.0\nbottom_hidden = [9]\n";
  EXPECT_THROW(parse_config(stored, "config.toml"), ConfigError);
  Config c = parse_config(stored, "config.toml", mtrank::ParseOptions{true});
  EXPECT_EQ(c.model.integers("bottom_hidden"), std::vector<std::int64_t>{9});
  EXPECT_FALSE(c.model.has("num_experts"));
  EXPECT_THROW(parse_config(stored + "bottom_hiden = [3]\n", "config.toml", mtrank::ParseOptions{true}), ConfigError);
}

TEST(ModelFamilies, DocsTableListsEveryKeyWithTheFamiliesThatTakeIt) {
  std::ifstream in(std::string(MTRANK_SOURCE_DIR) + "/docs/config.md");
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> keys;
  for (const ModelFamily& f : model_families())
    for (const mtrank::ModelKey& k : f.keys)
      if (std::find(keys.begin(), keys.end(), k.name) == keys.end()) keys.push_back(k.name);
  for (const std::string& key : keys) {
    std::string families;
    for (const ModelFamily& f : model_families())
      for (const mtrank::ModelKey& k : f.keys)
        if (k.name == key) families += (families.empty() ? "" : ", ") + f.name;
    if (families.size() > 0 && std::count(families.begin(), families.end(), ',') + 1 ==
                                   static_cast<std::ptrdiff_t>(model_families().size()))
      families = "all";
    const std::string row = "| `" + key + "` | " + families + " |";
    EXPECT_NE(text.str().find(row), std::string::npos) << "docs/config.md lacks the row starting " << row;
  }
}

TEST(ModelFamilies, FamilyDefaultsAndChecksApply) {
  auto model = [](const std::string& body) {
    return parse_config(std::string(kMinimal) + "[model]\n" + body, "fam.toml").model;
  };
  EXPECT_EQ(model("type = \"ple\"\n").integer("levels"), 2);
  EXPECT_EQ(model("type = \"cgc\"\n").integer("levels"), 1);
  EXPECT_EQ(model("type = \"shared_bottom\"\n").integers("bottom_hidden"), std::vector<std::int64_t>{64});
  EXPECT_TRUE(model("type = \"mmoe\"\n").integers("bottom_hidden").empty());
  EXPECT_TRUE(model("type = \"wide_deep\"\n").boolean("wide"));
  // Each family takes only its own keys: another family's key is named, a typo is unknown.
  EXPECT_FALSE(model("type = \"shared_bottom\"\n").has("num_experts"));
  EXPECT_FALSE(mtrank::model_defaults("esmm").has("wide"));
  auto error = [&](const std::string& body) {
    try {
      model(body);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error("type = \"cgc\"\nlevels = 2\n").find("key 'model.levels': cgc has one level"), std::string::npos);
  EXPECT_NE(error("type = \"wide_deep\"\nwide = false\n").find("wide_deep always has its wide part"), std::string::npos);
  EXPECT_NE(error("type = \"ple\"\nspecific_experts = 0\nshared_experts = 0\n").find("need at least one expert"),
            std::string::npos);
  // kMinimal has one binary task: ESMM needs 2 or 3.
  EXPECT_NE(error("type = \"esmm\"\n").find("key 'model.type': esmm needs 2 or 3 binary tasks"), std::string::npos);
  EXPECT_NE(error("type = \"shared_bottom\"\nnum_experts = 8\n")
                .find("key 'model.num_experts': type = \"shared_bottom\" does not take this key (its keys: "
                      "embedding_dim, bottom_hidden, tower_hidden, dropout, wide)"),
            std::string::npos);
  EXPECT_NE(error("type = \"mmoe\"\nnum_expert = 8\n").find("unknown key 'model.num_expert'"), std::string::npos);
  EXPECT_NE(error("type = \"mmoe\"\ndropout = 1.0\n").find("key 'model.dropout': must be below 1"), std::string::npos);
  EXPECT_NE(error("type = \"mmoe\"\nexpert_hidden = []\n").find("needs at least one layer"), std::string::npos);
  EXPECT_NE(error("type = \"esmmm\"\n").find("is not one of \"single_task\", \"shared_bottom\""), std::string::npos);
}

TEST(Config, ExtendsNameTheFileSystemRefusesIsAConfigError) {
  // Found by fuzzing: a path component longer than NAME_MAX threw std::filesystem::filesystem_error.
  mtrank::testing::TempDir dir;
  const std::string path = dir.write("long.toml", "extends = \"" + std::string(300, 'N') + ".toml\"\n");
  try {
    mtrank::load_config(path);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'extends' file"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("File name too long"), std::string::npos) << e.what();
  }
}

TEST(Config, AFeatureGroupRoundTripsAndBiasIsReserved) {
  const std::string base =
      "[data]\ntrain = \"t.csv\"\n[[features]]\nname = \"item\"\ntype = \"categorical\"\ngroup = \"item\"\n"
      "[[tasks]]\nname = \"click\"\ntype = \"binary\"\ncolumn = \"click\"\n";
  const Config c = parse_config(base, "g.toml");
  EXPECT_EQ(c.features[0].group, "item");
  EXPECT_EQ(parse_config(to_toml(c), "again.toml").features[0].group, "item");
  try {
    parse_config("[data]\ntrain = \"t.csv\"\n[[features]]\nname = \"p\"\ntype = \"categorical\"\ngroup = \"bias\"\n"
                 "[[tasks]]\nname = \"click\"\ntype = \"binary\"\ncolumn = \"click\"\n",
                 "b.toml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("set bias = true instead"), std::string::npos) << e.what();
  }
}

TEST(Config, EveryExampleConfigLoads) {
  // The examples are documentation: each must load as written (families own their keys).
  int loaded = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(std::string(MTRANK_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".toml") continue;
    EXPECT_NO_THROW(mtrank::load_config(entry.path().string())) << entry.path();
    ++loaded;
  }
  EXPECT_GE(loaded, 10);
}
