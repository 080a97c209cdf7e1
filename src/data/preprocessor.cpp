#include "data/preprocessor.h"

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <unordered_map>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/dataset.h"
#include "data/hash.h"
#include "data/record_reader.h"

namespace mtrank::data {

// ---------------------------------------------------------------- Vocabulary

void ValueIndex::clear() {
  slots_.clear();
  used_ = 0;
}

void ValueIndex::reserve(std::size_t n) {
  std::size_t slots = 16;
  while (slots < 2 * n) slots *= 2;  // load factor at most 1/2
  if (slots > slots_.size()) grow(slots);
}

void ValueIndex::grow(std::size_t slots) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(slots, Slot{});
  const std::size_t mask = slots - 1;
  for (const Slot& s : old) {
    if (s.id == 0) continue;
    std::size_t i = s.hash & mask;
    while (slots_[i].id != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

std::int64_t ValueIndex::find(std::string_view value, const std::deque<std::string>& values) const {
  if (slots_.empty()) return 0;
  const std::uint64_t h = std::hash<std::string_view>{}(value);
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.id == 0) return 0;
    if (s.hash != h) continue;
    const bool equal = s.length == kLong ? values[s.id - 1] == value
                                         : s.length == value.size() && std::memcmp(s.bytes, value.data(), value.size()) == 0;
    if (equal) return s.id;
  }
}

void ValueIndex::insert(std::string_view value, std::int64_t id) {
  if (id <= 0 || id > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("a vocabulary holds at most 2^32 - 1 values");
  if (2 * (used_ + 1) > slots_.size()) grow(std::max<std::size_t>(16, 2 * slots_.size()));
  Slot s;
  s.hash = std::hash<std::string_view>{}(value);
  s.id = static_cast<std::uint32_t>(id);
  if (value.size() <= kInline) {
    s.length = static_cast<std::uint8_t>(value.size());
    std::memcpy(s.bytes, value.data(), value.size());
  } else {
    s.length = kLong;
  }
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = s.hash & mask;
  while (slots_[i].id != 0) i = (i + 1) & mask;
  slots_[i] = s;
  ++used_;
}

Vocabulary& Vocabulary::operator=(const Vocabulary& other) {
  if (this == &other) return *this;
  values_ = other.values_;
  counts_ = other.counts_;
  ids_.clear();
  ids_.reserve(values_.size());
  for (std::size_t i = 0; i < values_.size(); ++i) ids_.insert(values_[i], static_cast<std::int64_t>(i) + 1);
  return *this;
}

void Vocabulary::count(std::string_view value) {
  if (const std::int64_t id = ids_.find(value, values_); id != 0) {
    ++counts_[static_cast<std::size_t>(id - 1)];
    return;
  }
  values_.emplace_back(value);
  counts_.push_back(1);
  ids_.insert(values_.back(), static_cast<std::int64_t>(values_.size()));
}

void Vocabulary::finalize(std::int64_t min_count, const Vocabulary* base) {
  std::vector<std::string> kept;
  if (base) kept.assign(base->values().begin(), base->values().end());
  std::vector<std::size_t> order(values_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (counts_[a] != counts_[b]) return counts_[a] > counts_[b];
    return values_[a] < values_[b];
  });
  for (std::size_t i : order)
    if (counts_[i] >= min_count && !(base && base->lookup(values_[i]) != 0)) kept.push_back(values_[i]);
  assign(std::move(kept));
}

void Vocabulary::assign(std::vector<std::string> values) {
  ids_.clear();
  values_.clear();
  counts_.clear();
  for (auto& v : values) values_.push_back(std::move(v));
  ids_.reserve(values_.size());
  for (std::size_t i = 0; i < values_.size(); ++i) ids_.insert(values_[i], static_cast<std::int64_t>(i) + 1);
}

// ---------------------------------------------------------------- Quantiles

void QuantileNormalizer::fit(std::vector<double> sample, std::int64_t num_quantiles) {
  boundaries_.clear();
  if (sample.empty()) return;
  std::sort(sample.begin(), sample.end());
  const std::size_t n = sample.size();
  // Boundary k is the largest value of the k-th equal-frequency bucket; bucket i
  // holds (b[i-1], b[i]]. Ties collapse to one boundary, so a mass of zeros
  // (capital gains) is one bucket that maps to 0 and every larger value is above it.
  for (std::int64_t k = 1; k < num_quantiles; ++k) {
    const std::size_t end = static_cast<std::size_t>((static_cast<unsigned __int128>(k) * n + num_quantiles - 1) /
                                                     static_cast<unsigned __int128>(num_quantiles));
    const double b = sample[std::min(std::max<std::size_t>(end, 1), n) - 1];
    if (b < sample.back() && (boundaries_.empty() || b > boundaries_.back())) boundaries_.push_back(b);
  }
}

double QuantileNormalizer::transform(double x) const {
  if (boundaries_.empty()) return 0.0;
  // Number of boundaries strictly below x: the 0-based bucket index.
  const auto bucket = std::lower_bound(boundaries_.begin(), boundaries_.end(), x) - boundaries_.begin();
  return static_cast<double>(bucket) / static_cast<double>(boundaries_.size());
}

// ---------------------------------------------------------------- parsing

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

std::string to_hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string from_hex(std::string_view hex) {
  auto value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (hex.size() % 2) throw ModelError("a vocabulary hex value has an odd length");
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = value(hex[i]), lo = value(hex[i + 1]);
    if (hi < 0 || lo < 0) throw ModelError("a vocabulary hex value holds a non-hex digit");
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string printable(std::string_view raw) {
  std::string out;
  for (std::size_t i = 0; i < raw.size() && i < 40; ++i) {
    const unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  if (raw.size() > 40) out += "...";
  return out;
}

bool parse_finite(std::string_view s, double& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(out);
}

// ---------------------------------------------------------------- Preprocessor

Preprocessor::Preprocessor(const Config& config) : config_(config) {
  for (const FeatureConfig& f : config_.features) {
    switch (f.type) {
      case FeatureType::kCategorical:
      case FeatureType::kCross: categorical_.push_back({f, {}, 0, 0}); break;
      case FeatureType::kMultiHot: bags_.push_back({f, {}, 0, 0}); break;
      case FeatureType::kNumeric: dense_.push_back({f, {}, 0.0, 1.0}); break;
    }
  }
}

bool Preprocessor::is_missing(std::string_view v) const {
  for (const std::string& m : config_.data.missing_values)
    if (v == m) return true;
  return false;
}

bool Preprocessor::is_missing_label(std::string_view v) const {
  if (is_missing(v)) return true;
  for (const std::string& m : config_.data.missing_labels)
    if (v == m) return true;
  return false;
}

void Preprocessor::assign_offsets() {
  std::int64_t offset = 0;
  auto place = [&](CategoricalField& f) {
    f.offset = offset;
    f.size = f.feature.hash_buckets > 0 ? f.feature.hash_buckets : f.vocab.size();
    offset += f.size;
  };
  for (auto& f : categorical_) place(f);
  for (auto& f : bags_) place(f);
  embedding_rows_ = offset;
}

namespace {
// Levenshtein distance, case-insensitive: ranks header names by closeness.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}
}  // namespace

std::string describe_header(const std::vector<std::string>& header, const std::string& wanted) {
  std::vector<std::pair<std::size_t, std::size_t>> ranked;  // (distance, column)
  for (std::size_t i = 0; i < header.size(); ++i)
    ranked.emplace_back(edit_distance(header[i].substr(0, 256), wanted.substr(0, 256)), i);
  std::stable_sort(ranked.begin(), ranked.end());
  std::string out;
  const std::size_t close = std::max<std::size_t>(2, wanted.size() / 3);
  for (std::size_t k = 0; k < ranked.size() && k < 3 && ranked[k].first <= close; ++k)
    out += (k ? ", '" : "; did you mean '") + printable(header[ranked[k].second]) + "'";
  if (!out.empty()) out += "?";
  // Every column, in file order (bounded, so a binary "header" cannot flood the terminal).
  constexpr std::size_t kListed = 200;
  out += " The header has " + std::to_string(header.size()) + " columns: ";
  for (std::size_t i = 0; i < header.size() && i < kListed; ++i) out += (i ? ", " : "") + printable(header[i]);
  if (header.size() > kListed) out += ", ... (" + std::to_string(header.size() - kListed) + " more)";
  return out;
}

ColumnBinding Preprocessor::bind(const std::vector<std::string>& header, const std::string& path,
                                 bool require_labels) const {
  std::unordered_map<std::string, int> index, repeated;  // repeated: name -> its second column
  for (std::size_t i = 0; i < header.size(); ++i)
    if (!index.emplace(header[i], static_cast<int>(i)).second) repeated.emplace(header[i], static_cast<int>(i));
  auto find = [&](const std::string& name, const std::string& role, bool required) {
    auto it = index.find(name);
    if (auto r = repeated.find(name); r != repeated.end())
      throw DataError(path + ":1: column '" + printable(name) + "' (" + role + ") appears twice in the header, as columns " +
                      std::to_string(it->second + 1) + " and " + std::to_string(r->second + 1) +
                      ": rename one so it is clear which to read");
    if (it != index.end()) return it->second;
    if (!required) return -1;
    throw DataError(path + ":1: missing column '" + printable(name) + "' (" + role + ")" +
                    describe_header(header, name));
  };
  ColumnBinding b;
  b.num_columns = header.size();
  for (const auto& f : categorical_) {
    if (f.feature.type == FeatureType::kCross) {
      b.categorical.push_back(-1);
      std::vector<int> cols;
      for (const auto& c : f.feature.columns) cols.push_back(find(c, "crossed by feature '" + f.feature.name + "'", true));
      b.cross.push_back(std::move(cols));
    } else {
      b.categorical.push_back(find(f.feature.name, "categorical feature", true));
      b.cross.emplace_back();
    }
  }
  for (const auto& f : bags_) b.bag.push_back(find(f.feature.name, "multi_hot feature", true));
  for (const auto& f : dense_) b.dense.push_back(find(f.feature.name, "numeric feature", true));
  for (const auto& t : config_.tasks) {
    b.label.push_back(find(t.column, "label of task '" + t.name + "'", require_labels));
    b.where.push_back(t.where_column.empty() ? -1
                                             : find(t.where_column, "sample space of task '" + t.name + "'", require_labels));
  }
  if (!config_.data.group_column.empty())
    b.group = find(config_.data.group_column, "data.group_column, the group of each row for GAUC", require_labels);
  // Only labelled files (train, val, test, eval) read the weight: predict and
  // serve never need it, even when the column is there.
  if (!config_.data.weight_column.empty() && require_labels)
    b.weight = find(config_.data.weight_column, "data.weight_column, the weight of each row in the loss", true);
  return b;
}

std::int64_t Preprocessor::category_id(const CategoricalField& f, std::string_view value) const {
  if (f.feature.hash_buckets > 0)
    return f.offset + static_cast<std::int64_t>(hash_string(value, config_.data.hash_seed) %
                                                static_cast<std::uint64_t>(f.feature.hash_buckets));
  return f.offset + f.vocab.lookup(value);
}

// A numeric input as the feature reads it (log1p applied). Values beyond the
// float range are refused: the model sees 32-bit floats, and their squares
// would overflow the fitted moments (two values of 1e308 gave mean: null).
bool Preprocessor::numeric_input(const FeatureConfig& f, std::string_view raw, double& x, std::string& why) {
  if (!f.value_map.empty()) {  // ordered categories: a short list, scanned
    const auto it = std::find_if(f.value_map.begin(), f.value_map.end(), [&](const auto& e) { return e.first == raw; });
    if (it == f.value_map.end()) {
      why = "'" + printable(raw) + "' is not one of the feature's value_map / value_order values";
      return false;
    }
    x = it->second;
  } else if (!parse_finite(raw, x)) {
    why = "'" + printable(raw) + "' is not a finite number";
    return false;
  }
  if (f.log1p) {
    if (x <= -1.0) {
      why = "log1p needs values above -1, got " + printable(raw);
      return false;
    }
    x = std::log1p(x);
  }
  if (std::fabs(x) > static_cast<double>(std::numeric_limits<float>::max())) {
    why = "'" + printable(raw) + "' is outside the 32-bit float range (|x| <= 3.4e38) that numeric features take";
    return false;
  }
  return true;
}

double Preprocessor::dense_value(const DenseField& f, std::string_view raw, int column) const {
  double x = 0;
  if (is_missing(raw)) {
    switch (f.feature.missing) {
      case MissingPolicy::kZero: return 0.0;
      case MissingPolicy::kError: throw RowError{column, "missing value for numeric feature (missing = \"error\")"};
      case MissingPolicy::kMean: x = f.mean; break;
    }
  } else {
    std::string why;
    if (!numeric_input(f.feature, raw, x, why)) throw RowError{column, why};
  }
  switch (f.feature.transform) {
    case NumericTransform::kQuantile: return f.quantiles.transform(x);
    case NumericTransform::kStandardize: return (x - f.mean) / f.stddev;
    case NumericTransform::kNone: return x;
  }
  return x;
}

void Preprocessor::read_bias_as_missing(FeaturizedData& data) const {
  const std::int64_t rows = data.rows();
  for (std::size_t i = 0; i < categorical_.size(); ++i) {
    if (!categorical_[i].feature.bias) continue;
    const std::int64_t id = empty_value_id(categorical_[i]);
    for (std::int64_t r = 0; r < rows; ++r) data.categorical[static_cast<std::size_t>(r) * categorical_.size() + i] = id;
  }
  for (const CategoricalField& f : bags_)
    if (f.feature.bias)
      throw DataError("multi_hot bias feature '" + f.feature.name + "' cannot be read as missing here yet; make it categorical");
  const std::string missing = config_.data.missing_values.empty() ? std::string() : config_.data.missing_values.front();
  for (std::size_t i = 0; i < dense_.size(); ++i) {
    if (!dense_[i].feature.bias) continue;
    const auto value = static_cast<float>(dense_value(dense_[i], missing, static_cast<int>(i)));
    for (std::int64_t r = 0; r < rows; ++r) data.dense[static_cast<std::size_t>(r) * dense_.size() + i] = value;
  }
}

namespace {
// The same view (a context value) or the same text as last time. A null data()
// never matches: a fresh memo holds empty views.
bool same_raw(std::string_view remembered, std::string_view raw) {
  if (remembered.data() == nullptr) return false;
  return (remembered.data() == raw.data() && remembered.size() == raw.size()) || remembered == raw;
}
}  // namespace

Preprocessor::FeatureSplit Preprocessor::split_features(const ColumnBinding& b, const std::vector<char>& columns) const {
  const auto marked = [&](int c) { return c >= 0 && static_cast<std::size_t>(c) < columns.size() && columns[static_cast<std::size_t>(c)]; };
  FeatureSplit s;
  for (std::size_t i = 0; i < categorical_.size(); ++i)
    s.categorical.push_back(b.categorical[i] >= 0 ? marked(b.categorical[i])
                                                  : std::all_of(b.cross[i].begin(), b.cross[i].end(), marked));
  for (std::size_t i = 0; i < bags_.size(); ++i) s.bag.push_back(marked(b.bag[i]));
  for (std::size_t i = 0; i < dense_.size(); ++i) s.dense.push_back(marked(b.dense[i]));
  return s;
}

void Preprocessor::transform(const ColumnBinding& b, const std::vector<std::string_view>& fields,
                             FeaturizedData& out, Memo* memo, const SplitRow* split) const {
  if (fields.size() != b.num_columns)
    throw RowError{-1, "expected " + std::to_string(b.num_columns) + " fields, found " + std::to_string(fields.size())};
  if (memo && (memo->categorical_raw.size() != categorical_.size() || memo->dense_raw.size() != dense_.size())) {
    memo->categorical_raw.assign(categorical_.size(), {});
    memo->categorical_id.assign(categorical_.size(), 0);
    memo->dense_raw.assign(dense_.size(), {});
    memo->dense_value.assign(dense_.size(), 0.0f);
  }
  const FeaturizedData::Mark mark = out.mark();
  try {
    // Per field of a split row (split set): 1 = copy it from split->from, 2 = leave it 0 (not read), 0 = featurize it.
    const auto part = [split](const std::vector<char>& in_split, std::size_t i) -> int {
      const bool item = in_split[i] != 0;
      if (split->from) return item ? 1 : 0;
      return item ? 0 : 2;
    };
    const std::size_t from_row = split && split->from ? static_cast<std::size_t>(split->row) : 0;
    for (std::size_t i = 0; i < categorical_.size(); ++i) {
      const CategoricalField& f = categorical_[i];
      if (const int p = split ? part(split->split->categorical, i) : 0) {
        out.categorical.push_back(p == 1 ? split->from->categorical[from_row * categorical_.size() + i] : 0);
        continue;
      }
      if (b.categorical[i] >= 0) {
        const std::string_view raw = fields[b.categorical[i]];
        if (!memo) {
          out.categorical.push_back(category_id(f, raw));
        } else {
          if (!same_raw(memo->categorical_raw[i], raw)) {
            memo->categorical_id[i] = category_id(f, raw);
            memo->categorical_raw[i] = raw;
          }
          out.categorical.push_back(memo->categorical_id[i]);
        }
      } else {
        std::uint64_t h = config_.data.hash_seed;
        for (int c : b.cross[i]) h = hash_combine(h, hash_string(fields[c], config_.data.hash_seed));
        out.categorical.push_back(f.offset + static_cast<std::int64_t>(h % static_cast<std::uint64_t>(f.size)));
      }
    }
    for (std::size_t i = 0; i < bags_.size(); ++i) {
      const CategoricalField& f = bags_[i];
      if (const int p = split ? part(split->split->bag, i) : 0) {
        if (p == 1) {
          const std::size_t at = from_row * bags_.size() + i;
          const auto first = split->from->bag_offsets[at], last = split->from->bag_offsets[at + 1];
          out.bag_ids.insert(out.bag_ids.end(), split->from->bag_ids.begin() + first, split->from->bag_ids.begin() + last);
          out.bag_weights.insert(out.bag_weights.end(), split->from->bag_weights.begin() + first,
                                 split->from->bag_weights.begin() + last);
        }
        out.bag_offsets.push_back(static_cast<std::int64_t>(out.bag_ids.size()));
        continue;
      }
      std::string_view value = fields[b.bag[i]];
      const std::size_t start = out.bag_ids.size();
      const char sep = f.feature.separator[0];
      while (!value.empty()) {
        std::size_t cut = value.find(sep);
        std::string_view token = value.substr(0, cut);
        if (!token.empty()) out.bag_ids.push_back(category_id(f, token));
        if (cut == std::string_view::npos) break;
        value.remove_prefix(cut + 1);
      }
      const std::size_t n = out.bag_ids.size() - start;
      const float w = f.feature.pooling == Pooling::kMean && n > 0 ? 1.0f / static_cast<float>(n) : 1.0f;
      out.bag_weights.resize(out.bag_ids.size(), w);
      out.bag_offsets.push_back(static_cast<std::int64_t>(out.bag_ids.size()));
    }
    for (std::size_t i = 0; i < dense_.size(); ++i) {
      if (const int p = split ? part(split->split->dense, i) : 0) {
        out.dense.push_back(p == 1 ? split->from->dense[from_row * dense_.size() + i] : 0.0f);
        continue;
      }
      const std::string_view raw = fields[b.dense[i]];
      if (!memo) {
        out.dense.push_back(static_cast<float>(dense_value(dense_[i], raw, b.dense[i])));
      } else {
        if (!same_raw(memo->dense_raw[i], raw)) {
          memo->dense_value[i] = static_cast<float>(dense_value(dense_[i], raw, b.dense[i]));  // may throw: not remembered
          memo->dense_raw[i] = raw;
        }
        out.dense.push_back(memo->dense_value[i]);
      }
    }
    // The row's weight in every task's loss: the mask carries it (0 = outside the
    // task's sample space), so each task's loss is the weighted mean and the
    // metrics, which count rows with mask > 0, stay unweighted.
    float row_weight = 1.0f;
    if (b.weight >= 0) {
      const std::string_view raw = fields[b.weight];
      double v;
      if (!parse_finite(raw, v) || v < 0 || v > 1e30)
        throw RowError{b.weight, "weight '" + printable(raw) + "' (data.weight_column) is not a finite number >= 0"};
      row_weight = static_cast<float>(v);
    }
    for (std::size_t t = 0; t < config_.tasks.size(); ++t) {
      const TaskConfig& task = config_.tasks[t];
      float label = 0.0f, mask = 0.0f;
      const int col = b.label[t];
      bool in_space = true;
      if (b.where[t] >= 0) {
        std::string_view w = fields[b.where[t]];
        in_space = std::find(task.where_equals.begin(), task.where_equals.end(), w) != task.where_equals.end();
      } else if (!task.where_column.empty()) {
        in_space = false;  // prediction file without the sample-space column
      }
      if (col >= 0 && in_space) {
        std::string_view raw = fields[col];
        const bool listed_positive =
            std::find(task.positive.begin(), task.positive.end(), raw) != task.positive.end();
        if (!listed_positive && is_missing_label(raw)) {
          if (task.missing == LabelMissing::kError)
            throw RowError{col, "missing label for task '" + task.name + "' (missing = \"error\")"};
        } else if (task.type == TaskType::kBinary && !task.positive.empty() && task.positive_op.empty()) {
          label = listed_positive ? 1.0f : 0.0f;
          mask = 1.0f;
        } else {
          double v;
          if (!parse_finite(raw, v) || std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
            // Labels are 32-bit floats: 1e39 became +inf (found by fuzz/fuzz_csv.cpp).
            std::string why = "label '" + printable(raw) + "' of task '" + task.name +
                              "' is not a finite number in the 32-bit float range";
            if (task.type == TaskType::kBinary)
              why += task.positive_op.empty()
                         ? ": a binary task reads 0/1, or set the task's 'positive' to the values that mean "
                           "positive (e.g. positive = [\"" + printable(raw) + "\"])"
                         : " (positive = \"" + task.positive.front() + "\" compares numbers)";
            why += "; to leave such rows out of this task only, add the value to data.missing_labels";
            throw RowError{col, why};
          }
          if (task.type == TaskType::kBinary && !task.positive_op.empty()) {
            label = compare_value(v, task.positive_op, task.positive_threshold) ? 1.0f : 0.0f;
          } else {
            if (task.type == TaskType::kBinary && v != 0.0 && v != 1.0)
              throw RowError{col, "label of binary task '" + task.name + "' must be 0 or 1, got " + printable(raw) +
                                      ": set the task's 'positive', e.g. positive = \"> 0\" for a count"};
            label = static_cast<float>(v);
          }
          mask = 1.0f;
        }
      }
      out.labels.push_back(label);
      out.mask.push_back(mask * row_weight);
    }
    if (b.group >= 0) out.groups.push_back(hash_string(fields[b.group], 0));
  } catch (...) {
    out.rollback(mark);
    throw;
  }
  out.commit_row();
}

const Preprocessor::CategoricalField* Preprocessor::find_field(const std::string& name) const {
  for (const auto* fields : {&categorical_, &bags_})
    for (const auto& f : *fields)
      if (f.feature.name == name) return &f;
  return nullptr;
}

void Preprocessor::fit(const FileList& train_files, const Preprocessor* base) {
  {
    Config config = config_;  // start from a clean state whatever this object held
    *this = Preprocessor(config);
  }
  RecordReader reader(expand_files(train_files), ReaderOptions{config_.data.delimiter});
  ColumnBinding b = bind(reader.header(), reader.path(), true);
  std::vector<std::vector<double>> samples(dense_.size());
  std::vector<std::uint64_t> seen(dense_.size(), 0);
  std::vector<double> mean(dense_.size(), 0.0), m2(dense_.size(), 0.0);
  std::vector<std::int64_t> count(dense_.size(), 0);
  std::mt19937_64 rng(config_.data.hash_seed);
  const std::size_t cap = static_cast<std::size_t>(config_.data.quantile_sample);
  std::vector<std::string_view> fields;
  std::vector<double> values(dense_.size());
  std::vector<char> present(dense_.size());
  std::int64_t rows = 0, bad = 0;
  auto bad_row = [&](int column, const std::string& why) {
    std::string where = reader.path() + ":" + std::to_string(reader.line());
    if (column >= 0)
      where += ": column " + std::to_string(column + 1) + " ('" + reader.header()[column] + "')";
    if (config_.data.on_bad_row == BadRowPolicy::kError)
      throw DataError(where + ": " + why + " (or set data.on_bad_row = \"skip\" to drop bad rows, for every task)");
    if (++bad > config_.data.max_bad_rows)
      throw DataError(where + ": " + why + "; more than data.max_bad_rows = " +
                      std::to_string(config_.data.max_bad_rows) + " bad rows, stopping");
  };
  while (reader.next(fields)) {
    if (fields.size() != b.num_columns) {
      bad_row(-1, "expected " + std::to_string(b.num_columns) + " fields, found " + std::to_string(fields.size()));
      continue;
    }
    // Parse numerics first so a bad row contributes nothing.
    bool ok = true;
    std::fill(present.begin(), present.end(), 0);
    for (std::size_t i = 0; i < dense_.size() && ok; ++i) {
      std::string_view raw = fields[b.dense[i]];
      if (is_missing(raw)) {
        if (dense_[i].feature.missing == MissingPolicy::kError) {
          bad_row(b.dense[i], "missing value for numeric feature (missing = \"error\")");
          ok = false;
        }
        continue;
      }
      double x;
      std::string why;
      if (!numeric_input(dense_[i].feature, raw, x, why)) {
        bad_row(b.dense[i], why);
        ok = false;
        continue;
      }
      values[i] = x;
      present[i] = 1;
    }
    if (!ok) continue;
    ++rows;
    for (std::size_t i = 0; i < categorical_.size(); ++i)
      if (b.categorical[i] >= 0 && categorical_[i].feature.hash_buckets == 0)
        categorical_[i].vocab.count(fields[b.categorical[i]]);
    for (std::size_t i = 0; i < bags_.size(); ++i) {
      if (bags_[i].feature.hash_buckets > 0) continue;
      std::string_view value = fields[b.bag[i]];
      const char sep = bags_[i].feature.separator[0];
      while (!value.empty()) {
        std::size_t cut = value.find(sep);
        std::string_view token = value.substr(0, cut);
        if (!token.empty()) bags_[i].vocab.count(token);
        if (cut == std::string_view::npos) break;
        value.remove_prefix(cut + 1);
      }
    }
    for (std::size_t i = 0; i < dense_.size(); ++i) {
      if (!present[i]) continue;
      // Welford's update in double: no cancellation of sum_sq - n*mean^2.
      const double x = values[i];
      ++count[i];
      const double delta = x - mean[i];
      mean[i] += delta / static_cast<double>(count[i]);
      m2[i] += delta * (x - mean[i]);
      if (samples[i].size() < cap) {
        samples[i].push_back(x);
      } else {
        std::uint64_t j = rng() % (seen[i] + 1);
        if (j < cap) samples[i][j] = x;
      }
      ++seen[i];
    }
  }
  if (rows == 0) throw DataError(describe(train_files) + ": no usable data rows to fit the preprocessing on");
  for (auto* fields : {&categorical_, &bags_})
    for (auto& f : *fields) {
      const CategoricalField* old = base ? base->find_field(f.feature.name) : nullptr;
      f.vocab.finalize(f.feature.min_count, old && old->feature.hash_buckets == 0 ? &old->vocab : nullptr);
    }
  for (std::size_t i = 0; i < dense_.size(); ++i) {
    DenseField& f = dense_[i];
    if (count[i] > 0) {
      f.mean = mean[i];
      const double var = std::max(0.0, m2[i] / static_cast<double>(count[i]));
      f.stddev = var > 1e-24 ? std::sqrt(var) : 1.0;
    }
    if (f.feature.transform == NumericTransform::kQuantile) f.quantiles.fit(std::move(samples[i]), f.feature.quantiles);
  }
  assign_offsets();
  check_fitted(describe(train_files));
}

void Preprocessor::check_fitted(const std::string& source) const {
  for (const DenseField& f : dense_) {
    const std::string where = source + ": numeric feature '" + f.feature.name + "': ";
    if (!std::isfinite(f.mean)) throw ModelError(where + "mean is not a finite number");
    if (!std::isfinite(f.stddev) || !(f.stddev > 0))
      throw ModelError(where + "stddev must be a finite number above 0, got " + std::to_string(f.stddev));
    const std::vector<double>& b = f.quantiles.boundaries();
    for (std::size_t k = 0; k < b.size(); ++k)
      if (!std::isfinite(b[k]) || (k > 0 && !(b[k] > b[k - 1])))
        throw ModelError(where + "quantile boundaries must be finite and increasing (boundary " + std::to_string(k) + ")");
  }
}

nlohmann::json Preprocessor::to_json() const {
  using nlohmann::json;
  json j;
  j["format"] = "mtrank-preprocess";
  j["version"] = 1;
  auto categorical = [](const CategoricalField& f) {
    json e{{"name", f.feature.name}, {"type", to_string(f.feature.type)}, {"offset", f.offset}, {"size", f.size}};
    if (f.feature.hash_buckets == 0) {
      // Values are bytes as they came (a Latin-1 category stopped training with
      // a bare JSON error); one that is not UTF-8 is stored as {"hex": ...}.
      json vocabulary = json::array();
      for (const std::string& v : f.vocab.values())
        vocabulary.push_back(valid_utf8(v) ? json(v) : json{{"hex", to_hex(v)}});
      e["vocabulary"] = std::move(vocabulary);
    }
    return e;
  };
  j["categorical"] = json::array();
  for (const auto& f : categorical_) j["categorical"].push_back(categorical(f));
  j["multi_hot"] = json::array();
  for (const auto& f : bags_) j["multi_hot"].push_back(categorical(f));
  j["numeric"] = json::array();
  for (const auto& f : dense_)
    j["numeric"].push_back({{"name", f.feature.name}, {"mean", f.mean}, {"stddev", f.stddev},
                            {"boundaries", f.quantiles.boundaries()}});
  j["embedding_rows"] = embedding_rows_;
  return j;
}

void Preprocessor::load_json(const nlohmann::json& j) {
  try {
    if (j.at("format") != "mtrank-preprocess" || j.at("version") != 1)
      throw ModelError("not an mtrank preprocessing file of version 1");
    auto categorical = [](std::vector<CategoricalField>& fields, const nlohmann::json& arr) {
      if (arr.size() != fields.size()) throw ModelError("the saved features do not match the model's config");
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (arr[i].at("name") != fields[i].feature.name)
          throw ModelError("saved feature '" + arr[i].at("name").get<std::string>() + "' does not match config feature '" +
                           fields[i].feature.name + "'");
        if (fields[i].feature.hash_buckets == 0) {
          std::vector<std::string> values;
          for (const nlohmann::json& v : arr[i].at("vocabulary"))
            values.push_back(v.is_object() ? from_hex(v.at("hex").get<std::string>()) : v.get<std::string>());
          fields[i].vocab.assign(std::move(values));
        }
      }
    };
    categorical(categorical_, j.at("categorical"));
    categorical(bags_, j.at("multi_hot"));
    const auto& numeric = j.at("numeric");
    if (numeric.size() != dense_.size()) throw ModelError("the saved numeric features do not match the model's config");
    for (std::size_t i = 0; i < dense_.size(); ++i) {
      dense_[i].mean = numeric[i].at("mean").get<double>();
      dense_[i].stddev = numeric[i].at("stddev").get<double>();
      dense_[i].quantiles.set_boundaries(numeric[i].at("boundaries").get<std::vector<double>>());
    }
    assign_offsets();
    if (j.at("embedding_rows").get<std::int64_t>() != embedding_rows_)
      throw ModelError("saved embedding layout does not match the rebuilt one");
    check_fitted("fitted statistics");
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(std::string("malformed preprocessing JSON: ") + e.what());
  }
}

}  // namespace mtrank::data
