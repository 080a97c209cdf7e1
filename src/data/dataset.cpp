#include "data/dataset.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <cstdio>
#include <unordered_map>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/progress.h"
#include "data/hash.h"
#include "data/preprocessor.h"
#include "data/block_store.h"
#include "data/record_reader.h"

namespace mtrank::data {

FeaturizedData::FeaturizedData(int num_categorical, int num_bags, int num_dense, int num_tasks)
    : num_categorical_(num_categorical), num_bags_(num_bags), num_dense_(num_dense), num_tasks_(num_tasks) {}

void FeaturizedData::rollback(const Mark& m) {
  categorical.resize(m.categorical);
  dense.resize(m.dense);
  labels.resize(m.labels);
  mask.resize(m.labels);
  bag_offsets.resize(m.bag_offsets);
  bag_ids.resize(m.bag_ids);
  bag_weights.resize(m.bag_ids);
  groups.resize(m.groups);
}

void FeaturizedData::reserve(std::int64_t rows) {
  categorical.reserve(rows * num_categorical_);
  dense.reserve(rows * num_dense_);
  labels.reserve(rows * num_tasks_);
  mask.reserve(rows * num_tasks_);
  bag_offsets.reserve(rows * num_bags_ + 1);
}

FeaturizedData FeaturizedData::slice(std::int64_t begin, std::int64_t end) const {
  FeaturizedData out(num_categorical_, num_bags_, num_dense_, num_tasks_);
  auto copy = [&](const auto& src, auto& dst, int width) {
    dst.assign(src.begin() + begin * width, src.begin() + end * width);
  };
  copy(categorical, out.categorical, num_categorical_);
  copy(dense, out.dense, num_dense_);
  copy(labels, out.labels, num_tasks_);
  copy(mask, out.mask, num_tasks_);
  const std::int64_t first = bag_offsets[begin * num_bags_], last = bag_offsets[end * num_bags_];
  out.bag_offsets.clear();
  for (std::int64_t i = begin * num_bags_; i <= end * num_bags_; ++i) out.bag_offsets.push_back(bag_offsets[i] - first);
  out.bag_ids.assign(bag_ids.begin() + first, bag_ids.begin() + last);
  out.bag_weights.assign(bag_weights.begin() + first, bag_weights.begin() + last);
  if (!groups.empty()) out.groups.assign(groups.begin() + begin, groups.begin() + end);
  out.rows_ = end - begin;
  return out;
}

FeaturizedData FeaturizedData::select(const std::int64_t* rows, std::int64_t n) const {
  FeaturizedData out(num_categorical_, num_bags_, num_dense_, num_tasks_);
  out.reserve(n);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = rows[i];
    auto copy = [&](const auto& src, auto& dst, int width) {
      dst.insert(dst.end(), src.begin() + r * width, src.begin() + (r + 1) * width);
    };
    copy(categorical, out.categorical, num_categorical_);
    copy(dense, out.dense, num_dense_);
    copy(labels, out.labels, num_tasks_);
    copy(mask, out.mask, num_tasks_);
    for (int f = 0; f < num_bags_; ++f) {
      const std::int64_t b = bag_offsets[r * num_bags_ + f], e = bag_offsets[r * num_bags_ + f + 1];
      out.bag_ids.insert(out.bag_ids.end(), bag_ids.begin() + b, bag_ids.begin() + e);
      out.bag_weights.insert(out.bag_weights.end(), bag_weights.begin() + b, bag_weights.begin() + e);
      out.bag_offsets.push_back(static_cast<std::int64_t>(out.bag_ids.size()));
    }
    if (!groups.empty()) out.groups.push_back(groups[static_cast<std::size_t>(r)]);
  }
  out.rows_ = n;
  return out;
}

void FeaturizedData::append(const FeaturizedData& o) {
  const std::int64_t base = bag_offsets.back();
  categorical.insert(categorical.end(), o.categorical.begin(), o.categorical.end());
  dense.insert(dense.end(), o.dense.begin(), o.dense.end());
  labels.insert(labels.end(), o.labels.begin(), o.labels.end());
  mask.insert(mask.end(), o.mask.begin(), o.mask.end());
  for (std::size_t i = 1; i < o.bag_offsets.size(); ++i) bag_offsets.push_back(base + o.bag_offsets[i]);
  bag_ids.insert(bag_ids.end(), o.bag_ids.begin(), o.bag_ids.end());
  bag_weights.insert(bag_weights.end(), o.bag_weights.begin(), o.bag_weights.end());
  groups.insert(groups.end(), o.groups.begin(), o.groups.end());
  rows_ += o.rows_;
}

void FeaturizedData::clear() {
  categorical.clear();
  dense.clear();
  labels.clear();
  mask.clear();
  bag_offsets.assign(1, 0);
  bag_ids.clear();
  bag_weights.clear();
  groups.clear();
  rows_ = 0;
}

void FeaturizedData::shrink_to_fit() {
  for (auto* v : {&categorical, &bag_offsets, &bag_ids}) v->shrink_to_fit();
  for (auto* v : {&dense, &labels, &mask, &bag_weights}) v->shrink_to_fit();
  groups.shrink_to_fit();
}

void FeaturizedData::reserve(std::int64_t rows, std::int64_t bag_entries) {
  reserve(rows);
  bag_ids.reserve(static_cast<std::size_t>(bag_entries));
  bag_weights.reserve(static_cast<std::size_t>(bag_entries));
}

std::uint64_t FeaturizedData::capacity_bytes() const {
  return 8 * (categorical.capacity() + bag_offsets.capacity() + bag_ids.capacity() + groups.capacity()) +
         4 * (dense.capacity() + labels.capacity() + mask.capacity() + bag_weights.capacity());
}

std::uint64_t FeaturizedData::bytes() const {
  return 8 * (categorical.size() + bag_offsets.size() + bag_ids.size() + groups.size()) +
         4 * (dense.size() + labels.size() + mask.size() + bag_weights.size());
}

// ---------------------------------------------------------------- binary cache
// Layout: magic, version, shape, then each array as (count, raw bytes), then a
// checksum of everything after the magic. Native endianness: a cache is a
// local accelerator, never an interchange format. Loading checks every count
// against the file size before allocating, every offset and id against the
// shape, and the checksum, so a damaged cache is rebuilt, never trusted (6 of
// 60 random corruptions used to crash eval and train).
namespace {
constexpr char kMagic[8] = {'M', 'T', 'R', 'K', 'D', 'A', 'T', 'A'};
// Version 4 stores ids in 4 bytes when every id fits (any vocabulary below
// 2^31 rows), which halves the ids' share of the file; version 3 files (8-byte
// ids) still load.
constexpr std::uint32_t kCacheVersion = 4;

class CacheWriter {
 public:
  explicit CacheWriter(std::FILE* f) : f_(f) {}
  void write(const void* data, std::size_t n) {
    if (n) std::fwrite(data, 1, n, f_);
    sum_.add(data, n);
  }
  template <typename T>
  void array(const std::vector<T>& v) {
    const std::uint64_t n = v.size();
    write(&n, sizeof n);
    write(v.data(), n * sizeof(T));
  }
  // Ids in `id_bytes` (4 or 8) bytes each.
  void ids(const std::vector<std::int64_t>& v, std::uint32_t id_bytes) {
    if (id_bytes == 8) return array(v);
    std::vector<std::int32_t> narrow(v.begin(), v.end());
    array(narrow);
  }
  void finish() {
    const std::uint64_t h = sum_.value();
    std::fwrite(&h, sizeof h, 1, f_);
  }

 private:
  std::FILE* f_;
  ByteHasher sum_;
};

class CacheReader {
 public:
  CacheReader(std::FILE* f, std::uint64_t remaining) : f_(f), remaining_(remaining) {}
  bool read(void* data, std::size_t n) {
    if (n > remaining_ || (n && std::fread(data, 1, n, f_) != n)) return false;
    remaining_ -= n;
    sum_.add(data, n);
    return true;
  }
  // An array whose count must be `expected` (or anything that fits the file if expected < 0).
  template <typename T>
  bool array(std::vector<T>& v, std::int64_t expected) {
    std::uint64_t n;
    if (!read(&n, sizeof n)) return false;
    if (expected >= 0 && n != static_cast<std::uint64_t>(expected)) return false;
    if (n > remaining_ / sizeof(T)) return false;  // checked before allocating
    v.resize(n);
    return read(v.data(), n * sizeof(T));
  }
  bool ids(std::vector<std::int64_t>& v, std::int64_t expected, std::uint32_t id_bytes) {
    if (id_bytes == 8) return array(v, expected);
    std::vector<std::int32_t> narrow;
    if (!array(narrow, expected)) return false;
    v.assign(narrow.begin(), narrow.end());
    return true;
  }
  bool checksum_matches() {
    std::uint64_t stored;
    const std::uint64_t computed = sum_.value();
    if (remaining_ != sizeof stored || std::fread(&stored, sizeof stored, 1, f_) != 1) return false;
    return stored == computed;
  }

 private:
  std::FILE* f_;
  std::uint64_t remaining_;
  ByteHasher sum_;
};
}  // namespace

void FeaturizedData::save(const std::string& path) const {
  AtomicFile file(path);
  std::FILE* f = file.get();
  std::fwrite(kMagic, 1, sizeof kMagic, f);
  CacheWriter w(f);
  w.write(&kCacheVersion, sizeof kCacheVersion);
  std::int64_t shape[5] = {rows_, num_categorical_, num_bags_, num_dense_, num_tasks_};
  w.write(shape, sizeof shape);
  const auto fits = [](std::int64_t id) { return id >= 0 && id <= std::numeric_limits<std::int32_t>::max(); };
  const std::uint32_t id_bytes =
      std::all_of(categorical.begin(), categorical.end(), fits) && std::all_of(bag_ids.begin(), bag_ids.end(), fits) ? 4 : 8;
  w.write(&id_bytes, sizeof id_bytes);
  w.ids(categorical, id_bytes);
  w.array(dense);
  w.array(labels);
  w.array(mask);
  w.array(bag_offsets);
  w.ids(bag_ids, id_bytes);
  w.array(bag_weights);
  w.array(groups);
  w.finish();
  file.commit();
}

FeaturizedData FeaturizedData::load(const std::string& path, std::int64_t embedding_rows) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw DataError(path + ": cannot open: " + std::strerror(errno));
  auto fail = [&](const char* why) {
    std::fclose(f);
    throw DataError(path + ": corrupt featurized data cache (" + why + "); delete it to rebuild");
  };
  struct stat st {};
  if (::fstat(::fileno(f), &st) != 0 || st.st_size < static_cast<off_t>(sizeof kMagic)) fail("truncated header");
  char magic[8];
  if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, kMagic, 8) != 0) fail("bad magic");
  CacheReader r(f, static_cast<std::uint64_t>(st.st_size) - sizeof kMagic);
  std::uint32_t version;
  std::int64_t shape[5];
  if (!r.read(&version, sizeof version) || (version != kCacheVersion && version != 3)) fail("unknown version");
  if (!r.read(shape, sizeof shape)) fail("truncated header");
  std::uint32_t id_bytes = 8;
  if (version >= 4 && (!r.read(&id_bytes, sizeof id_bytes) || (id_bytes != 4 && id_bytes != 8))) fail("bad id width");
  if (shape[0] < 0 || shape[0] > (std::int64_t{1} << 40)) fail("bad shape");
  for (int i = 1; i < 5; ++i)
    if (shape[i] < 0 || shape[i] > (1 << 20)) fail("bad shape");
  FeaturizedData d(static_cast<int>(shape[1]), static_cast<int>(shape[2]), static_cast<int>(shape[3]),
                   static_cast<int>(shape[4]));
  d.rows_ = shape[0];
  const std::int64_t rows = d.rows_;
  if (!r.ids(d.categorical, rows * d.num_categorical_, id_bytes) || !r.array(d.dense, rows * d.num_dense_) ||
      !r.array(d.labels, rows * d.num_tasks_) || !r.array(d.mask, rows * d.num_tasks_) ||
      !r.array(d.bag_offsets, rows * d.num_bags_ + 1) || !r.ids(d.bag_ids, -1, id_bytes) ||
      !r.array(d.bag_weights, static_cast<std::int64_t>(d.bag_ids.size())) || !r.array(d.groups, -1))
    fail("truncated or inconsistent sizes");
  if (!d.groups.empty() && d.groups.size() != static_cast<std::size_t>(rows)) fail("inconsistent sizes");
  if (!r.checksum_matches()) fail("checksum mismatch");
  std::fclose(f);
  // Interior offsets and ids: the model indexes memory with them.
  if (d.bag_offsets.front() != 0 || static_cast<std::size_t>(d.bag_offsets.back()) != d.bag_ids.size())
    throw DataError(path + ": corrupt featurized data cache (bag offsets); delete it to rebuild");
  for (std::size_t i = 1; i < d.bag_offsets.size(); ++i)
    if (d.bag_offsets[i] < d.bag_offsets[i - 1])
      throw DataError(path + ": corrupt featurized data cache (bag offsets); delete it to rebuild");
  if (embedding_rows >= 0) {
    auto in_table = [&](std::int64_t id) { return id >= 0 && id < embedding_rows; };
    if (!std::all_of(d.categorical.begin(), d.categorical.end(), in_table) ||
        !std::all_of(d.bag_ids.begin(), d.bag_ids.end(), in_table))
      throw DataError(path + ": corrupt featurized data cache (ids outside the embedding table); delete it to rebuild");
  }
  return d;
}

// ---------------------------------------------------------------- ingestion

void expand_data_sets(DataConfig& data) {
  for (FileList* files : {&data.train, &data.val, &data.test}) *files = expand_files(*files);
}

namespace {
// A data set's short name for progress bars and cache file names: its first
// file's name, and how many more files follow.
std::string progress_name(const FileList& files) {
  if (files.empty()) return "";
  std::string name = std::filesystem::path(files.front()).filename().string();
  if (files.size() > 1) name += "+" + std::to_string(files.size() - 1);
  return name;
}

// The one featurizing loop (featurize_file, featurize_file_spilling).
FeaturizedData featurize_pass(const Preprocessor& pre, const FileList& files, bool require_labels,
                              IngestStats* stats, bool show_progress, bool allow_skip, std::uint64_t spill_bytes,
                              std::int64_t block_rows, const std::function<void(FeaturizedData&)>* spill) {
  const DataConfig& dc = pre.config().data;
  const std::vector<std::string> paths = expand_files(files);
  RecordReader reader(paths, ReaderOptions{dc.delimiter});
  const ColumnBinding binding = pre.bind(reader.header(), reader.path(), require_labels);
  FeaturizedData out(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
  // Rough row-count guess from file size keeps reallocation low on big files.
  if (!spill) out.reserve(static_cast<std::int64_t>(std::min<std::uint64_t>(reader.file_size() / 64, 1u << 24)));
  std::int64_t rows = 0;
  bool spilling = spill && spill_bytes == 0;  // once over spill_bytes, every block_rows rows go to `spill`
  Progress progress("featurize " + progress_name(paths), reader.file_size(), "B",
                    show_progress);
  std::vector<std::string_view> fields;
  std::int64_t skipped = 0;
  std::uint64_t n = 0;
  while (reader.next(fields)) {
    try {
      pre.transform(binding, fields, out);
    } catch (const RowError& e) {
      std::string where = reader.path() + ":" + std::to_string(reader.line());
      if (e.column >= 0) where += ": column " + std::to_string(e.column + 1) + " ('" + reader.header()[e.column] + "')";
      if (!allow_skip)
        throw DataError(where + ": " + e.message +
                        " (predict never skips a row, so that output row i is input row i: fix or remove the row)");
      if (dc.on_bad_row == BadRowPolicy::kError)
        throw DataError(where + ": " + e.message + " (or set data.on_bad_row = \"skip\" to drop bad rows, for every task)");
      if (++skipped > dc.max_bad_rows)
        throw DataError(where + ": " + e.message + "; more than data.max_bad_rows = " +
                        std::to_string(dc.max_bad_rows) + " bad rows, stopping");
      if (skipped <= 5) std::fprintf(stderr, "warning: skipping %s: %s\n", where.c_str(), e.message.c_str());
    }
    if ((++n & 8191) == 0) progress.update(reader.file_offset());
    // What the arrays have allocated, not what they hold: growth by doubling
    // may take twice the rows' bytes. A few capacity() calls a row.
    if (spill && !spilling && out.capacity_bytes() >= spill_bytes) spilling = true;
    if (spilling && out.rows() >= block_rows) {
      if (out.rows() == block_rows) {  // the steady state: one block, no copy
        rows += block_rows;
        (*spill)(out);
        out = FeaturizedData(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
      } else {  // spilling just began: what is in memory goes out in blocks too
        std::int64_t b = 0;
        for (; b + block_rows <= out.rows(); b += block_rows) {
          FeaturizedData part = out.slice(b, b + block_rows);
          rows += block_rows;
          (*spill)(part);
        }
        out = out.slice(b, out.rows());
      }
    }
  }
  if (spilling && out.rows() > 0) {  // the last, shorter block
    rows += out.rows();
    (*spill)(out);
    out = FeaturizedData(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
  }
  rows += out.rows();
  progress.finish(human_count(static_cast<double>(rows)) + " rows");
  if (rows == 0) throw DataError(describe(files) + ": no data rows" + (skipped ? " (all were skipped as bad)" : ""));
  if (skipped > 0)
    std::fprintf(stderr, "warning: %s: skipped %lld bad rows\n", describe(files).c_str(), static_cast<long long>(skipped));
  if (stats) {
    stats->rows = rows;
    stats->skipped = skipped;
    stats->seconds = progress.elapsed_seconds();
    stats->bytes = reader.bytes_read();
    stats->from_cache = false;
  }
  return out;
}
}  // namespace

FeaturizedData featurize_file(const Preprocessor& pre, const FileList& files, bool require_labels,
                              IngestStats* stats, bool show_progress, bool allow_skip) {
  return featurize_pass(pre, files, require_labels, stats, show_progress, allow_skip, 0, 0, nullptr);
}

FeaturizedData featurize_file_spilling(const Preprocessor& pre, const FileList& files, bool require_labels,
                                       std::uint64_t spill_bytes, std::int64_t block_rows,
                                       const std::function<void(FeaturizedData&)>& spill, IngestStats* stats,
                                       bool show_progress) {
  return featurize_pass(pre, files, require_labels, stats, show_progress, true, spill_bytes, std::max<std::int64_t>(block_rows, 1),
                        &spill);
}

namespace {
// The parts of a config that change featurized bytes: features, tasks and data
// options; not the model or training settings, so trying another model reuses the cache.
std::string data_identity(const Config& config) {
  Config c = config;
  c.model = model_defaults("mmoe");
  c.train = TrainConfig{};
  c.data.train.clear();
  c.data.val.clear();
  c.data.test.clear();
  c.data.memory_budget_mb = c.data.shuffle_buffer_rows = 0;  // where rows live, not what they hold
  return to_toml(c);
}

// Cache file for a data set under the config's cache_dir, keyed by everything
// that changes the cached bytes: each file's identity (path, size, mtime) in
// order, so a pattern that matches one more file is another data set, `extra`
// and the data-relevant config.
std::string cache_file(const Config& config, const FileList& entries, const std::string& extra,
                       const std::string& suffix) {
  const std::vector<std::string> files = expand_files(entries);
  std::string identity;
  for (const std::string& path : files) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw DataError(path + ": cannot open: " + std::strerror(errno));
    identity += std::filesystem::absolute(path).string() + "|" + std::to_string(st.st_size) + "|" +
                std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "|";
  }
  identity += extra + "|" + data_identity(config);
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(hash_string(identity, 1)));
  std::filesystem::create_directories(config.data.cache_dir);
  return (std::filesystem::path(config.data.cache_dir) / (progress_name(files) + "." + key + suffix)).string();
}
}  // namespace

bool fit_preprocessing(Preprocessor& pre, const FileList& train_files) {
  const Config& config = pre.config();
  if (config.data.cache_dir.empty()) {
    pre.fit(train_files);
    return false;
  }
  const std::string path = cache_file(config, train_files, "fit", ".preprocess.json");
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    try {
      pre.load_json(nlohmann::json::parse(in));
      return true;
    } catch (const std::exception&) {
      // A damaged cache entry is not the user's problem: refit and overwrite it.
    }
  }
  pre.fit(train_files);
  write_file_atomic(path, pre.to_json().dump());
  return false;
}

FeaturizedData load_featurized(const Preprocessor& pre, const FileList& files, bool require_labels,
                               IngestStats* stats, bool show_progress) {
  const DataConfig& dc = pre.config().data;
  if (dc.cache_dir.empty()) return featurize_file(pre, files, require_labels, stats, show_progress);
  const std::string cache_path =
      cache_file(pre.config(), files, (require_labels ? "L|" : "-|") + pre.to_json().dump(), ".bin");
  if (std::filesystem::exists(cache_path)) {
    Progress progress("load cache", 0, "rows", false);
    try {
      FeaturizedData d = FeaturizedData::load(cache_path, pre.embedding_rows());
      if (stats) {
        stats->rows = d.rows();
        stats->skipped = 0;
        stats->seconds = progress.elapsed_seconds();
        stats->bytes = 0;
        stats->from_cache = true;
      }
      return d;
    } catch (const DataError& e) {
      // A damaged cache entry is not the user's problem: say so, rebuild it.
      std::fprintf(stderr, "warning: %s; rebuilding it from %s\n", e.what(), describe(files).c_str());
    }
  }
  FeaturizedData d = featurize_file(pre, files, require_labels, stats, show_progress);
  d.save(cache_path);
  return d;
}

TrainingSet load_training_set(const Preprocessor& pre, const FileList& files, std::uint64_t budget_bytes,
                              const std::string& temporary_dir, const std::string& store_suffix, IngestStats* stats,
                              bool show_progress) {
  const DataConfig& dc = pre.config().data;
  TrainingSet set;
  const std::string key = "L|" + pre.to_json().dump();
  const std::string blocks_dir =
      dc.cache_dir.empty() ? temporary_dir : cache_file(pre.config(), files, key, ".blocks" + store_suffix);
  set.temporary = dc.cache_dir.empty();
  if (!dc.cache_dir.empty()) {
    // A finished store from an earlier run, reused when this run streams: with
    // --stream, or when its rows would pass this run's budget. Otherwise the
    // rows are read into memory (the mode decides the training order).
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(blocks_dir) / "manifest.json", ec)) {
      try {
        BlockStore store = BlockStore::open(blocks_dir);
        if (budget_bytes == 0 || store.bytes() > budget_bytes) {
          set.blocks = std::move(store);
          if (stats) *stats = IngestStats{set.blocks->rows(), 0, 0, 0, true};
          return set;
        }
      } catch (const DataError& e) {
        std::fprintf(stderr, "warning: %s; featurizing %s again\n", e.what(), describe(files).c_str());
      }
    }
    // The in-memory cache, if it fits.
    const std::string bin = cache_file(pre.config(), files, key, ".bin");
    // (In memory its ids take 8 bytes, on disk 4 where they fit: at most twice the file.)
    if (budget_bytes > 0 && std::filesystem::exists(bin, ec) && 2 * std::filesystem::file_size(bin, ec) <= budget_bytes) {
      Progress timer("load cache", 0, "rows", false);
      try {
        set.in_memory = FeaturizedData::load(bin, pre.embedding_rows());
        if (stats) *stats = IngestStats{set.in_memory.rows(), 0, timer.elapsed_seconds(), 0, true};
        return set;
      } catch (const DataError& e) {  // damaged: featurized again below, within the budget
        std::fprintf(stderr, "warning: %s; rebuilding it from %s\n", e.what(), describe(files).c_str());
      }
    }
  }
  const std::function<void(FeaturizedData&)> spill = [&](FeaturizedData& block) {
    if (!set.blocks)
      set.blocks = BlockStore::create(blocks_dir, pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
    set.blocks->add(block);
  };
  set.in_memory = featurize_file_spilling(pre, files, true, budget_bytes, dc.block_rows, spill, stats, show_progress);
  set.in_memory.shrink_to_fit();
  if (set.blocks) {
    set.blocks->finish();
  } else if (!dc.cache_dir.empty()) {
    set.in_memory.save(cache_file(pre.config(), files, key, ".bin"));
  }
  return set;
}

std::vector<LabelCounts> count_labels(const FeaturizedData& data) {
  const int T = data.num_tasks();
  std::vector<LabelCounts> out(static_cast<std::size_t>(T));
  for (std::int64_t r = 0; r < data.rows(); ++r)
    for (int t = 0; t < T; ++t) {
      const std::size_t i = static_cast<std::size_t>(r * T + t);
      LabelCounts& c = out[static_cast<std::size_t>(t)];
      if (data.mask[i] > 0) {
        ++c.labelled;
        ++(data.labels[i] > 0.5f ? c.positive : c.negative);
      } else {
        ++c.unlabelled;
      }
    }
  return out;
}

std::vector<std::pair<std::string, std::int64_t>> most_frequent_values(const FileList& files, char delimiter,
                                                                       const std::string& column, std::size_t k) {
  RecordReader reader(expand_files(files), ReaderOptions{delimiter});
  const auto& header = reader.header();
  const auto it = std::find(header.begin(), header.end(), column);
  if (it == header.end()) return {};
  const std::size_t c = static_cast<std::size_t>(it - header.begin());
  std::unordered_map<std::string, std::int64_t> counts;
  constexpr std::size_t kDistinct = 100000;  // bounded memory on an id-like column
  std::vector<std::string_view> fields;
  while (reader.next(fields)) {
    if (c >= fields.size()) continue;
    auto found = counts.find(std::string(fields[c]));
    if (found != counts.end()) ++found->second;
    else if (counts.size() < kDistinct) counts.emplace(std::string(fields[c]), 1);
  }
  std::vector<std::pair<std::string, std::int64_t>> out(counts.begin(), counts.end());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (out.size() > k) out.resize(k);
  return out;
}

std::string check_label_counts(const Config& config, const FileList& train_files, const FeaturizedData& train) {
  return check_label_counts(config, train_files, count_labels(train));
}

std::string check_label_counts(const Config& config, const FileList& train_files,
                               const std::vector<LabelCounts>& counts) {
  std::string report;
  for (std::size_t t = 0; t < config.tasks.size(); ++t) {
    const TaskConfig& task = config.tasks[t];
    const LabelCounts& c = counts[t];
    char text[192];
    if (task.type == TaskType::kBinary)
      std::snprintf(text, sizeof text, "%lld positive, %lld negative, %lld without a label or outside its sample space",
                    static_cast<long long>(c.positive), static_cast<long long>(c.negative),
                    static_cast<long long>(c.unlabelled));
    else
      std::snprintf(text, sizeof text, "%lld labelled, %lld without a label or outside its sample space",
                    static_cast<long long>(c.labelled), static_cast<long long>(c.unlabelled));
    report += "task '" + task.name + "': " + text + "\n";
    std::string problem;
    if (c.labelled == 0) problem = "no labelled rows";
    else if (task.type == TaskType::kBinary && c.positive == 0) problem = "no positive rows";
    else if (task.type == TaskType::kBinary && c.negative == 0) problem = "no negative rows";
    if (problem.empty()) continue;
    std::string msg = config.source + ": task '" + task.name + "': the training data " + describe(train_files) + " has " +
                      problem + " (" + text + ")";
    if (task.type == TaskType::kBinary) {
      if (task.positive.empty()) {
        msg += "; without 'positive' the column must hold 0 and 1";
      } else {
        msg += "; positive = [";
        for (std::size_t i = 0; i < task.positive.size(); ++i) msg += (i ? ", \"" : "\"") + printable(task.positive[i]) + "\"";
        msg += "]";
      }
    }
    if (!task.where_column.empty()) msg += "; sample space: " + task.where_column + " in its 'equals' values";
    const auto top = most_frequent_values(train_files, config.data.delimiter, task.column, 8);
    if (!top.empty()) {
      msg += ". The most frequent values of column '" + task.column + "' are: ";
      for (std::size_t i = 0; i < top.size(); ++i)
        msg += (i ? ", '" : "'") + printable(top[i].first) + "' (" + std::to_string(top[i].second) + ")";
    }
    throw ConfigError(msg);
  }
  return report;
}

}  // namespace mtrank::data
