#include "eval/gbdt_baseline.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include <xgboost/c_api.h>

#include "data/dataset.h"
#include "data/preprocessor.h"

namespace mtrank::eval {
namespace {

void check(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string("xgboost ") + what + ": " + XGBGetLastError());
}

struct MatrixDeleter {
  void operator()(void* h) const { XGDMatrixFree(h); }
};
struct BoosterDeleter {
  void operator()(void* h) const { XGBoosterFree(h); }
};
using Matrix = std::unique_ptr<void, MatrixDeleter>;
using Booster = std::unique_ptr<void, BoosterDeleter>;

// The rows as xgboost's dense float matrix: per-field category codes, then the numeric columns.
struct Features {
  std::vector<const char*> types;  // "c" or "q" per column
  int columns = 0;
};

Features feature_types(const data::Preprocessor& pre) {
  Features f;
  for (int i = 0; i < pre.num_categorical(); ++i) f.types.push_back("c");
  for (int i = 0; i < pre.num_dense(); ++i) f.types.push_back("q");
  f.columns = static_cast<int>(f.types.size());
  return f;
}

// Rows `rows` of `d` (all rows if empty), task `task`'s labels if task >= 0.
Matrix make_matrix(const data::Preprocessor& pre, const Features& features, const data::FeaturizedData& d,
                   const std::vector<std::int64_t>& rows, int task, int threads) {
  const int C = d.num_categorical(), D = d.num_dense(), T = d.num_tasks();
  const auto& fields = pre.categorical_fields();
  const std::int64_t n = rows.empty() ? d.rows() : static_cast<std::int64_t>(rows.size());
  std::vector<float> x(static_cast<std::size_t>(n) * static_cast<std::size_t>(features.columns));
  std::vector<float> y;
  if (task >= 0) y.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = rows.empty() ? i : rows[static_cast<std::size_t>(i)];
    float* out = x.data() + i * features.columns;
    // A category code is the id within its field (the fused table's offset
    // removed), exact in a float below 2^24, which bounds the field sizes.
    for (int f = 0; f < C; ++f) out[f] = static_cast<float>(d.categorical[r * C + f] - fields[f].offset);
    for (int f = 0; f < D; ++f) out[C + f] = d.dense[r * D + f];
    if (task >= 0) y[static_cast<std::size_t>(i)] = d.labels[r * T + task];
  }
  DMatrixHandle h = nullptr;
  check(XGDMatrixCreateFromMat_omp(x.data(), static_cast<bst_ulong>(n), static_cast<bst_ulong>(features.columns),
                                   std::numeric_limits<float>::quiet_NaN(), &h, threads),
        "creating a matrix");
  Matrix m(h);
  check(XGDMatrixSetStrFeatureInfo(h, "feature_type", const_cast<const char**>(features.types.data()),
                                   static_cast<bst_ulong>(features.types.size())),
        "setting feature types");
  if (task >= 0) check(XGDMatrixSetFloatInfo(h, "label", y.data(), static_cast<bst_ulong>(n)), "setting labels");
  return m;
}

std::vector<std::int64_t> labelled_rows(const data::FeaturizedData& d, int task) {
  std::vector<std::int64_t> rows;
  const int T = d.num_tasks();
  for (std::int64_t r = 0; r < d.rows(); ++r)
    if (d.mask[r * T + task] > 0) rows.push_back(r);
  return rows;
}

struct Trained {
  Booster booster;
  int rounds = 0;
  double val_loss = std::numeric_limits<double>::infinity();
};

// Boosts one depth until the validation loss stops improving; keeps the best round count.
Trained boost(DMatrixHandle train, DMatrixHandle val, const TaskConfig& task, int depth, const GbdtOptions& o) {
  DMatrixHandle cache[] = {train, val};
  BoosterHandle h = nullptr;
  check(XGBoosterCreate(cache, 2, &h), "creating a booster");
  Trained t;
  t.booster.reset(h);
  const bool binary = task.type == TaskType::kBinary;
  const std::pair<const char*, std::string> params[] = {
      {"tree_method", "hist"},
      {"objective", binary ? "binary:logistic" : "reg:squarederror"},
      {"eval_metric", binary ? "logloss" : "rmse"},
      {"eta", std::to_string(o.eta)},
      {"max_depth", std::to_string(depth)},
      {"min_child_weight", std::to_string(o.min_child_weight)},
      {"subsample", std::to_string(o.subsample)},
      {"colsample_bytree", std::to_string(o.colsample_bytree)},
      {"max_cat_to_onehot", std::to_string(o.max_cat_to_onehot)},
      {"nthread", std::to_string(o.threads)},
      {"seed", std::to_string(o.seed)},
      {"verbosity", "0"},
  };
  for (const auto& [name, value] : params) check(XGBoosterSetParam(h, name, value.c_str()), name);
  DMatrixHandle evals[] = {val};
  const char* names[] = {"val"};
  int since_best = 0;
  for (int round = 0; round < o.max_rounds && since_best < o.early_stopping_rounds; ++round) {
    check(XGBoosterUpdateOneIter(h, round, train), "boosting");
    const char* result = nullptr;
    check(XGBoosterEvalOneIter(h, round, evals, names, 1, &result), "evaluating");
    // "[12]\tval-logloss:0.321": the number after the last colon.
    const char* colon = std::strrchr(result, ':');
    const double loss = colon ? std::strtod(colon + 1, nullptr) : std::numeric_limits<double>::quiet_NaN();
    if (!std::isfinite(loss)) throw std::runtime_error(std::string("xgboost: unreadable evaluation '") + result + "'");
    if (loss < t.val_loss) {
      t.val_loss = loss;
      t.rounds = round + 1;
      since_best = 0;
    } else {
      ++since_best;
    }
  }
  return t;
}

}  // namespace

GbdtResult fit_gbdt(const data::Preprocessor& pre, const std::vector<TaskConfig>& tasks,
                    const data::FeaturizedData& train, const data::FeaturizedData& val,
                    const data::FeaturizedData& predict_on, const GbdtOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.max_depths.empty()) throw std::invalid_argument("fit_gbdt: no max_depths to tune over");
  for (const auto& f : pre.categorical_fields())
    if (f.size > (std::int64_t{1} << 24))
      throw std::runtime_error("feature '" + f.feature.name + "' has " + std::to_string(f.size) +
                               " categories: more than xgboost's float category codes hold exactly (2^24)");
  const Features features = feature_types(pre);
  const int T = static_cast<int>(tasks.size());
  GbdtResult result;
  result.features = features.columns;
  result.categorical_features = pre.num_categorical();
  result.predictions.assign(static_cast<std::size_t>(predict_on.rows()) * static_cast<std::size_t>(T), 0.0f);
  const Matrix all = make_matrix(pre, features, predict_on, {}, -1, options.threads);
  for (int t = 0; t < T; ++t) {
    const std::vector<std::int64_t> train_rows = labelled_rows(train, t), val_rows = labelled_rows(val, t);
    if (train_rows.empty() || val_rows.empty())
      throw std::runtime_error("task '" + tasks[t].name + "': no labelled " +
                               (train_rows.empty() ? "training" : "validation") + " rows for the trees baseline");
    const Matrix dtrain = make_matrix(pre, features, train, train_rows, t, options.threads);
    const Matrix dval = make_matrix(pre, features, val, val_rows, t, options.threads);
    Trained best;
    int best_depth = 0;
    for (int depth : options.max_depths) {
      Trained candidate = boost(dtrain.get(), dval.get(), tasks[t], depth, options);
      if (candidate.val_loss < best.val_loss) {
        best = std::move(candidate);
        best_depth = depth;
      }
    }
    const std::string config = R"({"type": 0, "training": false, "iteration_begin": 0, "iteration_end": )" +
                               std::to_string(best.rounds) + R"(, "strict_shape": false})";
    const bst_ulong* shape = nullptr;
    bst_ulong dims = 0;
    const float* out = nullptr;
    check(XGBoosterPredictFromDMatrix(best.booster.get(), all.get(), config.c_str(), &shape, &dims, &out), "predicting");
    for (std::int64_t r = 0; r < predict_on.rows(); ++r) result.predictions[r * T + t] = out[r];
    result.fits.push_back({tasks[t].name, best_depth, best.rounds, best.val_loss,
                           static_cast<std::int64_t>(train_rows.size())});
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

std::string xgboost_version() {
  int major = 0, minor = 0, patch = 0;
  XGBoostVersion(&major, &minor, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace mtrank::eval
