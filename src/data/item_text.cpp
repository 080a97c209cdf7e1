#include "data/item_text.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "common/error.h"
#include "data/record_reader.h"

namespace mtrank::data {

ItemTable read_item_table(const std::string& path, const std::string& id_column, const std::vector<std::string>& columns) {
  RecordReader reader(path);
  const std::vector<std::string>& header = reader.header();
  const auto column = [&](const std::string& name) {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<int>(i);
    std::string known;
    for (const auto& h : header) known += (known.empty() ? "" : ", ") + h;
    throw DataError(path + ":1: missing column '" + name + "'; the header has: " + known);
  };
  const int id_col = column(id_column);
  std::vector<int> cols;
  for (const std::string& c : columns) cols.push_back(column(c));
  int needed = id_col + 1;
  for (int c : cols) needed = std::max(needed, c + 1);
  ItemTable out;
  out.columns.resize(cols.size());
  std::unordered_set<std::string> seen;
  std::vector<std::string_view> f;
  while (reader.next(f)) {
    const std::string where = path + ":" + std::to_string(reader.line());
    if (static_cast<int>(f.size()) < needed)
      throw DataError(where + ": " + std::to_string(f.size()) + " fields, fewer than the columns read here");
    const std::string id(f[id_col]);
    if (id.empty()) throw DataError(where + ":" + std::to_string(id_col + 1) + ": column '" + id_column + "': empty item id");
    if (!seen.insert(id).second)
      throw DataError(where + ":" + std::to_string(id_col + 1) + ": column '" + id_column + "': item '" + id +
                      "' appears twice");
    out.ids.push_back(id);
    out.lines.push_back(reader.line());
    for (std::size_t c = 0; c < cols.size(); ++c) out.columns[c].emplace_back(f[cols[c]]);
  }
  if (out.ids.empty()) throw DataError(path + ": no items (the file has only a header)");
  return out;
}

ItemText read_item_text(const std::string& path, const std::string& id_column,
                        const std::vector<std::string>& text_columns) {
  ItemTable table = read_item_table(path, id_column, text_columns);
  ItemText out;
  out.ids = std::move(table.ids);
  out.texts.resize(out.ids.size());
  for (std::size_t i = 0; i < out.ids.size(); ++i)
    for (const auto& column : table.columns) out.texts[i] += (out.texts[i].empty() ? "" : " | ") + column[i];
  return out;
}

std::vector<std::string> text_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c >= 0x80) {
      word += static_cast<char>(c < 0x80 ? std::tolower(c) : c);
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

TfIdf tf_idf(const std::vector<std::string>& texts, int min_df, bool bigrams) {
  // Each text's terms with their counts; then document frequencies.
  std::unordered_map<std::string, std::int32_t> id_of;
  std::vector<std::string> terms;
  std::vector<std::map<std::int32_t, int>> counts(texts.size());
  for (std::size_t t = 0; t < texts.size(); ++t) {
    std::string_view rest = texts[t];
    for (;;) {  // segments between " | "
      const std::size_t cut = rest.find(" | ");
      const std::vector<std::string> words = text_words(rest.substr(0, cut));
      const auto add = [&](const std::string& term) {
        auto [it, fresh] = id_of.emplace(term, static_cast<std::int32_t>(terms.size()));
        if (fresh) terms.push_back(term);
        ++counts[t][it->second];
      };
      for (std::size_t w = 0; w < words.size(); ++w) {
        add(words[w]);
        if (bigrams && w + 1 < words.size()) add(words[w] + " " + words[w + 1]);
      }
      if (cut == std::string_view::npos) break;
      rest = rest.substr(cut + 3);
    }
  }
  std::vector<std::int64_t> df(terms.size(), 0);
  for (const auto& row : counts)
    for (const auto& [term, n] : row) ++df[static_cast<std::size_t>(term)];
  // Kept terms renumbered in first-appearance order.
  std::vector<std::int32_t> column(terms.size(), -1);
  TfIdf out;
  for (std::size_t j = 0; j < terms.size(); ++j)
    if (df[j] >= min_df) {
      column[j] = static_cast<std::int32_t>(out.terms.size());
      out.terms.push_back(terms[j]);
    }
  const double n = static_cast<double>(texts.size());
  SparseMatrix& m = out.matrix;
  m.rows = static_cast<std::int64_t>(texts.size());
  m.cols = static_cast<std::int64_t>(out.terms.size());
  m.indptr.push_back(0);
  std::vector<std::pair<std::int32_t, float>> row;
  for (const auto& c : counts) {
    row.clear();
    double norm = 0;
    for (const auto& [term, tf] : c) {
      const std::int32_t j = column[static_cast<std::size_t>(term)];
      if (j < 0) continue;
      const double idf = std::log((1 + n) / (1 + static_cast<double>(df[static_cast<std::size_t>(term)]))) + 1;
      const double w = (1 + std::log(static_cast<double>(tf))) * idf;
      row.emplace_back(j, static_cast<float>(w));
      norm += w * w;
    }
    std::sort(row.begin(), row.end());
    const double scale = norm > 0 ? 1 / std::sqrt(norm) : 0;
    for (const auto& [j, w] : row) {
      m.indices.push_back(j);
      m.values.push_back(static_cast<float>(w * scale));
    }
    m.indptr.push_back(static_cast<std::int64_t>(m.indices.size()));
  }
  return out;
}

}  // namespace mtrank::data
