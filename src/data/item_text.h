#pragma once
// Item text for item representations (issue 9; no torch): reading an item
// table's text columns, and TF-IDF of word uni- and bigrams as a sparse
// matrix, the input of LSA item vectors (`mtrank item-vectors`, model/lsa.h).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mtrank::data {

// An item table's id column and the named columns, row by row: ids[i] and
// columns[c][i] (c in the order named). Throws DataError naming the file,
// line and column: a missing column, a short row, an empty or repeated id, a
// file with no items.
struct ItemTable {
  std::vector<std::string> ids;
  std::vector<std::uint64_t> lines;  // each row's line in the file
  std::vector<std::vector<std::string>> columns;
};
ItemTable read_item_table(const std::string& path, const std::string& id_column, const std::vector<std::string>& columns);

struct ItemText {
  std::vector<std::string> ids;    // the id column, in file order
  std::vector<std::string> texts;  // the text columns joined with " | " (a bigram never spans two columns)
};
// A CSV/TSV item table with a header (read_item_table's errors).
ItemText read_item_text(const std::string& path, const std::string& id_column,
                        const std::vector<std::string>& text_columns);

// Lower-case runs of letters and digits ("Children's Comedy" -> children, s,
// comedy); "|" and other punctuation separate words. Bytes >= 0x80 count as
// letters, so UTF-8 words stay whole.
std::vector<std::string> text_words(std::string_view text);

// Rows = texts, columns = terms (words, and adjacent word pairs within a
// segment between " | " separators when `bigrams`) seen in at least min_df
// texts. Weights: (1 + log tf) * idf, idf = log((1 + n) / (1 + df)) + 1
// (scikit-learn's smooth idf), each row scaled to unit L2 norm (a text with
// no kept term is a zero row). CSR storage, columns sorted within a row.
struct SparseMatrix {
  std::int64_t rows = 0, cols = 0;
  std::vector<std::int64_t> indptr;  // rows + 1
  std::vector<std::int32_t> indices;
  std::vector<float> values;
};
struct TfIdf {
  SparseMatrix matrix;
  std::vector<std::string> terms;  // column j's term ("a b" for a bigram), in first-appearance order
};
TfIdf tf_idf(const std::vector<std::string>& texts, int min_df, bool bigrams);

}  // namespace mtrank::data
