#include "data/item_features.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <unordered_map>
#include <unordered_set>

#include "common/atomic_file.h"
#include "common/error.h"
#include "data/hash.h"
#include "data/item_text.h"
#include "data/record_reader.h"

namespace mtrank::data {

namespace {

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

// The vocabulary id of a table's or vector file's item id; 0 when unknown.
std::int32_t vocabulary_id(const ItemVocabulary& items, const std::string& id, bool integer_ids) {
  if (!integer_ids) return items.find(id);
  const std::string canonical = canonical_integer(id);
  return canonical.empty() ? 0 : items.find(canonical);
}

}  // namespace

ItemBags item_bags(const std::string& path, const ItemVocabulary& items, const ItemFeatureColumns& columns) {
  if (columns.buckets < 1) throw DataError(path + ": item feature buckets must be at least 1");
  std::vector<std::string> names = columns.text;
  names.insert(names.end(), columns.multi_hot.begin(), columns.multi_hot.end());
  const ItemTable table = read_item_table(path, columns.id_column, names);
  // Each column's name seeds its hashes: "comedy" in a title and in genres are different terms.
  std::vector<std::uint64_t> column_seed;
  for (const std::string& name : names) column_seed.push_back(hash_string(name, columns.seed));
  const auto bucket = [&](std::size_t column, std::string_view term) {
    return static_cast<std::int64_t>(hash_string(term, column_seed[column]) % static_cast<std::uint64_t>(columns.buckets));
  };
  const std::size_t n = static_cast<std::size_t>(items.size());
  std::vector<std::vector<std::pair<std::int64_t, float>>> bags(n + 1);
  std::vector<bool> has_row(n + 1, false);
  ItemBags out;
  out.buckets = columns.buckets;
  std::vector<std::int64_t> terms;
  std::vector<std::size_t> row_of(n + 1, 0);
  for (std::size_t r = 0; r < table.ids.size(); ++r) {
    const std::int32_t id = vocabulary_id(items, table.ids[r], columns.integer_ids);
    if (id == 0) {
      ++out.rows_unused;
      continue;
    }
    if (has_row[static_cast<std::size_t>(id)])
      throw DataError(path + ":" + std::to_string(table.lines[r]) + ": item '" + table.ids[r] + "' is line " +
                      std::to_string(table.lines[row_of[static_cast<std::size_t>(id)]]) + "'s item '" +
                      table.ids[row_of[static_cast<std::size_t>(id)]] +
                      "' again (the log's ids are integers, so leading zeros do not count)");
    has_row[static_cast<std::size_t>(id)] = true;
    row_of[static_cast<std::size_t>(id)] = r;
    auto& bag = bags[static_cast<std::size_t>(id)];
    for (std::size_t c = 0; c < names.size(); ++c) {
      const std::string& value = table.columns[c][r];
      terms.clear();
      if (c < columns.text.size()) {
        const std::vector<std::string> words = text_words(value);
        for (std::size_t w = 0; w < words.size(); ++w) {
          terms.push_back(bucket(c, words[w]));
          if (w + 1 < words.size()) terms.push_back(bucket(c, words[w] + " " + words[w + 1]));
        }
      } else {
        std::string_view rest = value;
        for (;;) {
          const std::size_t cut = rest.find('|');
          const std::string v = trim(rest.substr(0, cut));
          if (!v.empty()) terms.push_back(bucket(c, v));
          if (cut == std::string_view::npos) break;
          rest = rest.substr(cut + 1);
        }
      }
      for (std::int64_t t : terms) bag.emplace_back(t, 1.0f / static_cast<float>(terms.size()));
    }
  }
  if (out.rows_unused == static_cast<std::int64_t>(table.ids.size()))
    throw DataError(path + ": none of its " + std::to_string(table.ids.size()) + " items (column '" +
                    columns.id_column + "') is an item of the log" +
                    (columns.integer_ids ? " (a `user item` log's ids are integers)" : " (ids match as strings)") +
                    "; is it the item table of that log, and the right item_id_column?");
  out.offsets.reserve(n + 2);
  out.offsets.push_back(0);
  for (std::size_t i = 0; i <= n; ++i) {
    if (i > 0 && !has_row[i]) ++out.items_without_row;
    else if (i > 0 && bags[i].empty()) ++out.items_without_terms;
    for (const auto& [t, w] : bags[i]) {
      out.ids.push_back(t);
      out.weights.push_back(w);
    }
    out.offsets.push_back(static_cast<std::int64_t>(out.ids.size()));
  }
  return out;
}

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open: " + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError(path + ": cannot read");
  return bytes;
}

// The value of `key` in an npy header dict ("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }").
std::string npy_field(const std::string& header, const std::string& key, const std::string& path) {
  const std::size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw DataError(path + ": npy header has no '" + key + "': " + header);
  std::size_t b = header.find(':', at);
  if (b == std::string::npos) throw DataError(path + ": malformed npy header: " + header);
  ++b;
  while (b < header.size() && header[b] == ' ') ++b;
  std::size_t e = b;
  if (b < header.size() && header[b] == '(') e = header.find(')', b);
  else if (b < header.size() && header[b] == '\'') e = header.find('\'', b + 1);
  else e = header.find_first_of(",}", b) - 1;
  if (e == std::string::npos || e < b) throw DataError(path + ": malformed npy header: " + header);
  return header.substr(b, e - b + 1);
}

ItemVectors read_npy(const std::string& path) {
  const std::string bytes = read_binary(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw DataError(path + ": not an npy file (no \\x93NUMPY magic); text vectors need another suffix than .npy");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8;
    start = 10;
  } else if ((major == 2 || major == 3) && bytes.size() >= 12) {
    for (int k = 0; k < 4; ++k) header_len |= static_cast<std::size_t>(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
    start = 12;
  } else {
    throw DataError(path + ": npy format version " + std::to_string(major) + " (1, 2 and 3 are read)");
  }
  if (bytes.size() < start + header_len) throw DataError(path + ": truncated npy header");
  const std::string header = bytes.substr(start, header_len);
  const std::string descr = npy_field(header, "descr", path);
  const bool f4 = descr == "'<f4'", f8 = descr == "'<f8'";
  if (!f4 && !f8) throw DataError(path + ": npy dtype " + descr + "; item vectors are little-endian float32 or float64");
  if (npy_field(header, "fortran_order", path) != "False")
    throw DataError(path + ": a Fortran-order npy array; save it in C order (np.ascontiguousarray)");
  const std::string shape = npy_field(header, "shape", path);
  long long rows = -1, cols = -1;
  char close = 0;
  if (std::sscanf(shape.c_str(), "(%lld, %lld%c", &rows, &cols, &close) != 3 || close != ')' || rows < 0 || cols < 0)
    throw DataError(path + ": npy shape " + shape + "; item vectors are a 2-D array [items, 1 + dim] (id column first)");
  if (rows == 0) throw DataError(path + ": no item vectors (shape " + shape + ")");
  if (cols < 2) throw DataError(path + ": npy shape " + shape + ": needs the id column and at least one value");
  const std::size_t width = f4 ? 4 : 8;
  const std::size_t data_start = start + header_len;
  // Compared by division: rows x cols x width of a crafted header overflows.
  const std::size_t available = bytes.size() - data_start;
  const auto ucols = static_cast<unsigned long long>(cols), urows = static_cast<unsigned long long>(rows);
  if (ucols > available / width || urows != available / (width * ucols) || available % (width * ucols) != 0)
    throw DataError(path + ": holds " + std::to_string(available) + " data bytes, not what shape " + shape +
                    " needs (truncated or corrupt)");
  const char* data = bytes.data() + data_start;
  const auto value = [&](std::size_t i) {
    if (f4) {
      float v;
      std::memcpy(&v, data + i * 4, 4);
      return static_cast<double>(v);
    }
    double v;
    std::memcpy(&v, data + i * 8, 8);
    return v;
  };
  ItemVectors out;
  out.dim = cols - 1;
  out.values.reserve(static_cast<std::size_t>(rows) * static_cast<std::size_t>(out.dim));
  std::unordered_set<std::string> seen;
  for (long long r = 0; r < rows; ++r) {
    const std::string where = path + ": row " + std::to_string(r) + " (0-based)";
    const double id = value(static_cast<std::size_t>(r * cols));
    // float32 holds integers exactly only below 2^24: a larger one may be another id rounded.
    if (!(id >= 0 && id < (f4 ? 16777216.0 : 9007199254740992.0) && id == std::floor(id)))
      throw DataError(where + ": item id " + std::to_string(id) + " in column 0 is not a non-negative integer" +
                      (f4 ? " below 2^24 (what float32 holds exactly; save the array as float64)" : ""));
    std::string name = std::to_string(static_cast<long long>(id));
    if (!seen.insert(name).second) throw DataError(where + ": item " + name + " appears twice");
    out.ids.push_back(std::move(name));
    out.places.push_back("row " + std::to_string(r) + " (0-based)");
    for (long long c = 1; c < cols; ++c) {
      const double v = value(static_cast<std::size_t>(r * cols + c));
      if (!std::isfinite(v) || std::fabs(v) > 3.4e38)
        throw DataError(where + ", column " + std::to_string(c) + ": value " + std::to_string(v) + " is not a finite float");
      out.values.push_back(static_cast<float>(v));
    }
  }
  return out;
}

ItemVectors read_text_vectors(const std::string& path) {
  ReaderOptions options;
  options.delimiter = '\t';
  options.has_header = false;
  RecordReader reader(path, options);
  ItemVectors out;
  std::unordered_set<std::string> seen;
  std::vector<std::string_view> f;
  std::uint64_t first_line = 0;
  while (reader.next(f)) {
    const std::string where = path + ":" + std::to_string(reader.line());
    if (f.size() != 2)
      throw DataError(where + ": expected 'item<TAB>v1 v2 ...' (two tab-separated fields), got " +
                      std::to_string(f.size()) + " field" + (f.size() == 1 ? "" : "s"));
    const std::string id = trim(f[0]);
    if (id.empty()) throw DataError(where + ":1: empty item id");
    if (!seen.insert(id).second) throw DataError(where + ":1: item '" + id + "' appears twice");
    std::int64_t count = 0;
    const char* p = f[1].data();
    const char* end = p + f[1].size();
    for (;;) {
      while (p < end && (*p == ' ' || *p == '\r')) ++p;
      if (p == end) break;
      const char* stop = p;
      while (stop < end && *stop != ' ' && *stop != '\r') ++stop;
      // strtod on a copy: an underflow ("1e-50") reads as its nearest float (or 0), as in an npy file.
      const std::string token(p, stop);
      char* parsed = nullptr;
      const double value = std::strtod(token.c_str(), &parsed);
      if (token.empty() || parsed != token.c_str() + token.size() || !std::isfinite(value) || std::fabs(value) > 3.4028234e38)
        throw DataError(where + ":2: value " + std::to_string(count + 1) + " '" + token.substr(0, 40) +
                        "' is not a finite number");
      out.values.push_back(static_cast<float>(value));
      ++count;
      p = stop;
    }
    if (out.ids.empty()) {
      if (count == 0) throw DataError(where + ":2: item '" + id + "' has no values");
      out.dim = count;
      first_line = reader.line();
    } else if (count != out.dim) {
      throw DataError(where + ": item '" + id + "' has " + std::to_string(count) + " values, but line " +
                      std::to_string(first_line) + "'s item has " + std::to_string(out.dim) +
                      " (every vector of a file has one width)");
    }
    out.ids.push_back(id);
    out.places.push_back("line " + std::to_string(reader.line()));
  }
  if (out.ids.empty()) throw DataError(path + ": no item vectors (expected 'item<TAB>v1 v2 ...' lines)");
  return out;
}

}  // namespace

ItemVectors read_item_vectors(const std::string& path) {
  return ends_with(path, ".npy") ? read_npy(path) : read_text_vectors(path);
}

bool fits_float32_id(const std::string& id) {
  const std::string canonical = canonical_integer(id);
  return !canonical.empty() && canonical.size() <= 8 && std::stoull(canonical) < (1ULL << 24);
}

void write_item_vectors(const std::string& path, const ItemVectors& v) {
  const std::size_t n = v.ids.size();
  const auto dim = static_cast<std::size_t>(v.dim);
  std::string out;
  if (ends_with(path, ".npy")) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(n) + ", " +
                         std::to_string(dim + 1) + "), }";
    // The npy format pads the header with spaces and a newline to a multiple of 64 bytes.
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    out = std::string("\x93NUMPY\x01\x00", 8);
    out += static_cast<char>(header.size() & 0xff);
    out += static_cast<char>(header.size() >> 8);
    out += header;
    out.reserve(out.size() + n * (dim + 1) * 4);
    for (std::size_t i = 0; i < n; ++i) {
      if (!fits_float32_id(v.ids[i]))
        throw DataError(path + ": item id '" + v.ids[i] +
                        "' is not an integer below 2^24, which a float32 npy id column cannot hold exactly; "
                        "write text vectors (another suffix than .npy)");
      const auto fid = static_cast<float>(std::stoull(canonical_integer(v.ids[i])));
      out.append(reinterpret_cast<const char*>(&fid), 4);
      out.append(reinterpret_cast<const char*>(v.values.data() + i * dim), dim * 4);
    }
  } else {
    char buf[32];
    for (std::size_t i = 0; i < n; ++i) {
      out += v.ids[i];
      for (std::size_t d = 0; d < dim; ++d) {
        std::snprintf(buf, sizeof buf, "%c%.6g", d == 0 ? '\t' : ' ', v.values[i * dim + d]);
        out += buf;
      }
      out += '\n';
    }
  }
  write_file_atomic(path, out);
}

ItemVectorTable item_vector_table(const std::vector<std::string>& paths, const ItemVocabulary& items, bool integer_ids) {
  std::vector<ItemVectors> files;
  ItemVectorTable out;
  for (const std::string& p : paths) {
    files.push_back(read_item_vectors(p));
    out.file_dims.push_back(files.back().dim);
    out.dim += files.back().dim;
  }
  const auto n = static_cast<std::size_t>(items.size());
  out.values.assign((n + 1) * static_cast<std::size_t>(out.dim), 0.0f);
  std::int64_t column = 0;
  for (std::size_t k = 0; k < files.size(); ++k) {
    const ItemVectors& f = files[k];
    std::vector<bool> has(n + 1, false);
    std::vector<std::size_t> row_of(n + 1, 0);
    std::int64_t unused = 0;
    for (std::size_t r = 0; r < f.ids.size(); ++r) {
      const std::int32_t id = vocabulary_id(items, f.ids[r], integer_ids);
      if (id == 0) {
        ++unused;
        continue;
      }
      const auto i = static_cast<std::size_t>(id);
      if (has[i])
        throw DataError(paths[k] + ": " + f.places[r] + ": item '" + f.ids[r] + "' is " + f.places[row_of[i]] +
                        "'s item '" + f.ids[row_of[i]] + "' again (the log's ids are integers, so leading zeros do not count)");
      has[i] = true;
      row_of[i] = r;
      std::memcpy(out.values.data() + static_cast<std::size_t>(id) * static_cast<std::size_t>(out.dim) + column,
                  f.values.data() + r * static_cast<std::size_t>(f.dim), static_cast<std::size_t>(f.dim) * sizeof(float));
    }
    if (unused == static_cast<std::int64_t>(f.ids.size()))
      throw DataError(paths[k] + ": none of its " + std::to_string(f.ids.size()) + " item ids is an item of the log" +
                      (integer_ids ? " (a `user item` log's ids are integers)" : " (ids match as strings)") +
                      "; are these the vectors of that log's items?");
    std::int64_t missing = 0;
    for (std::size_t i = 1; i <= n; ++i) missing += !has[i];
    out.items_without_vector.push_back(missing);
    out.rows_unused.push_back(unused);
    column += f.dim;
  }
  return out;
}

}  // namespace mtrank::data
