// libFuzzer target: arbitrary bytes as a training data file, through the
// CSV/TSV reader (RecordReader, plain and gzip), Preprocessor::fit and
// data::featurize_file with a config that has every feature type and task kind.
//
// The first byte picks the variant, the rest is the file:
//   bit 0     data.on_bad_row: 0 = "error", 1 = "skip" (with max_bad_rows = 3)
//   bits 1-2  file: 0 = .csv, 1 = .tsv, 2 = .csv.gz (the rest gzip-compressed
//             here, so the reader's zlib path sees valid streams), 3 = .tsv.gz
//             (the rest as raw bytes: mostly corrupt gzip)
//   bit 3     data.group_column = "user", sum pooling and min_count = 2
//   bit 4     data.weight_column = "weight" (the mask then carries the row's weight)
// The build (fuzz/run.sh) shrinks RecordReader's initial buffer from 1 MiB to
// 64 bytes through a build-time copy of src/data/record_reader.h, so inputs of
// a few hundred bytes cross buffer boundaries: refills, compaction, growth,
// quoted fields and CRLFs split across reads. It also keeps each execution
// from faulting in 2 MiB of fresh pages (that made the target 5x slower).
// Only DataError, ConfigError and ModelError may come out (the user-facing
// errors). A crash, a sanitizer report, any other exception, or a result that
// breaks the invariants checked below is a finding.
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"

namespace {

std::string config_text(bool skip, bool variant, bool weighted) {
  std::string t = R"(
[data]
missing_values = ["", "NA"]
)";
  if (weighted) t += "weight_column = \"weight\"\n";
  t += skip ? "on_bad_row = \"skip\"\nmax_bad_rows = 3\n" : "on_bad_row = \"error\"\n";
  if (variant) t += "group_column = \"user\"\nquantile_sample = 16\n";
  t += R"(
[[features]]
names = ["user", "item"]
type = "categorical"
)";
  if (variant) t += "min_count = 2\n";
  t += R"(
[[features]]
name = "app"
type = "categorical"
hash_buckets = 64

[[features]]
name = "tags"
type = "multi_hot"
)";
  t += variant ? "pooling = \"sum\"\nseparator = \";\"\n" : "pooling = \"mean\"\n";
  t += R"(
[[features]]
name = "genres"
type = "multi_hot"
hash_buckets = 16

[[features]]
name = "user_x_app"
type = "cross"
columns = ["user", "app"]
hash_buckets = 32

[[features]]
name = "price"
type = "numeric"
log1p = true
transform = "quantile"
quantiles = 8

[[features]]
name = "age"
type = "numeric"
transform = "standardize"
missing = "error"

[[features]]
name = "score"
type = "numeric"
transform = "none"
missing = "zero"

[[features]]
name = "position"
type = "numeric"
bias = true

[[tasks]]
name = "click"
column = "click"
positive = ["1", "yes"]

[[tasks]]
name = "buy"
column = "count"
positive = "> 0"

[[tasks]]
name = "like"
column = "like"
missing = "error"

[[tasks]]
name = "watch"
type = "regression"
column = "watch"
where = { column = "kind", equals = ["video", "clip"] }
)";
  return t;
}

std::string temp_dir() {
  if (access("/dev/shm", W_OK) == 0) return "/dev/shm";
  return "/tmp";
}

bool write_file(const std::string& path, const std::uint8_t* data, std::size_t size, bool compress) {
  if (!compress) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    const bool ok = std::fwrite(data, 1, size, f) == size;
    return std::fclose(f) == 0 && ok;
  }
  gzFile gz = gzopen(path.c_str(), "wb1");
  if (!gz) return false;
  const bool ok = size == 0 || gzwrite(gz, data, static_cast<unsigned>(size)) == static_cast<int>(size);
  return gzclose(gz) == Z_OK && ok;
}

// A copy of stderr taken before libFuzzer's -close_fd_mask=2 discards fd 2
// (which silences the reader's skipped-row warnings, not the findings).
int report_fd = 2;

[[noreturn]] void finding(const std::string& what) {
  const std::string line = "FINDING: " + what + "\n";
  if (::write(report_fd, line.data(), line.size()) < 0) std::abort();
  std::abort();
}

void check(const mtrank::data::Preprocessor& pre, const mtrank::data::FeaturizedData& d, bool weighted) {
  const std::int64_t rows = d.rows();
  const auto n = [&](int width) { return static_cast<std::size_t>(rows) * static_cast<std::size_t>(width); };
  if (rows <= 0) finding("featurize_file returned no rows without an error");
  if (d.num_categorical() != pre.num_categorical() || d.num_bags() != pre.num_bags() ||
      d.num_dense() != pre.num_dense() || d.num_tasks() != pre.num_tasks())
    finding("shape differs from the preprocessor");
  if (d.categorical.size() != n(d.num_categorical())) finding("categorical size != rows x fields");
  if (d.dense.size() != n(d.num_dense())) finding("dense size != rows x fields");
  if (d.labels.size() != n(d.num_tasks()) || d.mask.size() != n(d.num_tasks())) finding("labels/mask size");
  if (d.bag_offsets.size() != n(d.num_bags()) + 1) finding("bag_offsets size != rows x bags + 1");
  if (d.bag_offsets.front() != 0 || static_cast<std::size_t>(d.bag_offsets.back()) != d.bag_ids.size())
    finding("bag_offsets do not span bag_ids");
  if (d.bag_weights.size() != d.bag_ids.size()) finding("bag_weights size != bag_ids size");
  for (std::size_t i = 1; i < d.bag_offsets.size(); ++i)
    if (d.bag_offsets[i] < d.bag_offsets[i - 1]) finding("bag_offsets decrease");
  const std::int64_t table = pre.embedding_rows();
  for (std::int64_t id : d.categorical)
    if (id < 0 || id >= table) finding("categorical id outside the embedding table");
  for (std::int64_t id : d.bag_ids)
    if (id < 0 || id >= table) finding("bag id outside the embedding table");
  for (float w : d.bag_weights)
    if (!std::isfinite(w) || !(w > 0.0f) || w > 1.0f) finding("bag weight not in (0, 1]");
  for (float v : d.dense)
    if (!std::isfinite(v)) finding("dense value not finite");
  const auto& tasks = pre.config().tasks;
  for (std::size_t i = 0; i < d.labels.size(); ++i) {
    const float label = d.labels[i], mask = d.mask[i];
    // Known finding (reported, not fixed here: src/data/preprocessor.cpp is not
    // fuzz/'s): a label beyond the float range ("1e39") passes parse_finite as
    // a double and becomes +-inf in Preprocessor::transform's static_cast<float>.
    // Tolerated so the run goes on; make it finding() once transform refuses it.
    if (!std::isfinite(label)) finding("label not finite");
    if (std::isnan(label)) finding("label is NaN");
    if (!weighted && mask != 0.0f && mask != 1.0f) finding("mask not 0 or 1");
    if (weighted && !(std::isfinite(mask) && mask >= 0.0f)) finding("weighted mask not a finite number >= 0");
    if (!weighted && mask == 0.0f && label != 0.0f) finding("masked-out row has a label");  // weight 0 keeps its label
    const auto& task = tasks[i % tasks.size()];
    if (task.type == mtrank::TaskType::kBinary && label != 0.0f && label != 1.0f) finding("binary label not 0/1");
  }
  if (pre.config().data.group_column.empty() ? !d.groups.empty() : d.groups.size() != static_cast<std::size_t>(rows))
    finding("groups size");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  report_fd = ::dup(2);
  if (report_fd < 0) report_fd = 2;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir = temp_dir() + "/mtrank-fuzz-csv-" + std::to_string(getpid());
  static std::unique_ptr<mtrank::Config> configs[8];
  static const bool verbose = std::getenv("FUZZ_VERBOSE") != nullptr;  // outcome of each input, to stderr
  if (size == 0) return 0;
  const unsigned mode = data[0];
  const bool skip = mode & 1, variant = mode & 8, weighted = mode & 16;
  const unsigned format = (mode >> 1) & 3;
  static const char* const kSuffix[4] = {".csv", ".tsv", ".csv.gz", ".tsv.gz"};
  const std::string path = dir + kSuffix[format];
  auto& config = configs[(skip ? 1 : 0) | (variant ? 2 : 0) | (weighted ? 4 : 0)];
  if (!config)
    config = std::make_unique<mtrank::Config>(mtrank::parse_config(config_text(skip, variant, weighted), "fuzz.toml"));
  if (!write_file(path, data + 1, size - 1, format == 2)) finding("cannot write the temporary data file");
  try {
    mtrank::data::Preprocessor pre(*config);
    pre.fit(path);
    if (pre.embedding_rows() <= 0) finding("empty embedding table after fit");
    const mtrank::data::FeaturizedData out = mtrank::data::featurize_file(pre, path, true);
    check(pre, out, weighted);
    if (verbose) std::fprintf(stderr, "ok: %lld rows\n", static_cast<long long>(out.rows()));
  } catch (const mtrank::DataError& e) {
    if (verbose) std::fprintf(stderr, "DataError: %s\n", e.what());
  } catch (const mtrank::ConfigError& e) {
    if (verbose) std::fprintf(stderr, "ConfigError: %s\n", e.what());
  } catch (const mtrank::ModelError& e) {
    if (verbose) std::fprintf(stderr, "ModelError: %s\n", e.what());
  } catch (const std::exception& e) {
    finding(std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    finding("unexpected exception of a type not derived from std::exception (a RowError escaped?)");
  }
  std::remove(path.c_str());
  return 0;
}
