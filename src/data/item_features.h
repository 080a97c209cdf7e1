#pragma once
// Item side information for sequential models (issue 9; no torch), laid out
// by model item id (0 = padding, 1..n = the vocabulary):
//  - learned features: each item's text columns as hashed word uni- and
//    bigrams and its multi-hot columns ("Comedy|Drama") as hashed values, one
//    bag per item whose embedding the model learns (model/sequential.h);
//  - frozen vectors: precomputed per-item vectors read from files (a text
//    encoder's, an image encoder's, `mtrank item-vectors`'s LSA), concatenated
//    in file order; the model learns only their projection.
#include <cstdint>
#include <string>
#include <vector>

#include "data/sequences.h"

namespace mtrank::data {

struct ItemFeatureColumns {
  std::string id_column = "item";
  std::vector<std::string> text;       // word uni- and bigrams (text_words), within the column
  std::vector<std::string> multi_hot;  // values split at '|', surrounding spaces trimmed
  std::int64_t buckets = 1 << 16;      // hash space shared by every column (the column name is hashed in)
  std::uint64_t seed = 0;
  // The table's ids read as numbers ("010" = 10), as read_user_item_lines reads
  // a `user item` log's; otherwise ids match as strings.
  bool integer_ids = false;
};

// One bag of hashed terms per model item id 0..n. A term's weight is one over
// its column's term count in that item, so each column is a mean and the
// columns add up; an item with no term (or no row) has an empty bag, a zero
// embedding.
struct ItemBags {
  std::int64_t buckets = 0;
  std::vector<std::int64_t> offsets;  // n + 2 entries: item i's bag is [offsets[i], offsets[i + 1])
  std::vector<std::int64_t> ids;      // buckets, in [0, buckets)
  std::vector<float> weights;
  std::int64_t items_without_row = 0;    // vocabulary items the table does not have
  std::int64_t items_without_terms = 0;  // items with a row whose columns hold no term
  std::int64_t rows_unused = 0;          // table rows of items not in the vocabulary
};
// Throws DataError naming the file, line and column (read_item_table's
// errors), for two rows of one item ("7" and "07" with integer ids), and for
// a table none of whose rows is an item of the vocabulary (ids of another kind).
ItemBags item_bags(const std::string& path, const ItemVocabulary& items, const ItemFeatureColumns& columns);

// One file of item vectors, by suffix:
//   .npy   a NumPy float32 or float64 2-D array, C order (np.save of
//          np.hstack([ids[:, None], vectors])): column 0 the item id (an
//          integer), the rest the vector;
//   other  text, one item a line: `item<TAB>v1 v2 ... vd` (what `mtrank
//          item-vectors` writes), gzip by the .gz suffix.
// Throws DataError naming the file and line (the npy row): a row with another
// width than the first, a value that is not a finite number, a repeated id, a
// non-integer id in an npy file, a malformed npy header, an empty file.
struct ItemVectors {
  std::vector<std::string> ids;  // in file order
  std::vector<std::string> places;  // each id's place for messages: "line 3" (text), "row 2 (0-based)" (npy)
  std::int64_t dim = 0;
  std::vector<float> values;     // ids.size() x dim
};
ItemVectors read_item_vectors(const std::string& path);
// Whether `id` can be an id of a float32 npy id column: an integer below 2^24.
bool fits_float32_id(const std::string& id);
// Writes vectors as text or, for a .npy path, as a float32 npy array with the
// id column first (ids must then be integers below 2^24, exact in float32;
// throws DataError otherwise). Atomic (temporary file, then rename).
void write_item_vectors(const std::string& path, const ItemVectors& vectors);

// The files' vectors side by side, rows by model item id 0..n (row 0 and
// items a file lacks are zero). Throws DataError as read_item_vectors does,
// for two vectors of one item, and for a file none of whose ids is an item
// of the vocabulary.
struct ItemVectorTable {
  std::int64_t dim = 0;  // the sum of the files' dims
  std::vector<std::int64_t> file_dims;
  std::vector<float> values;  // (n + 1) x dim
  std::vector<std::int64_t> items_without_vector;  // per file
  std::vector<std::int64_t> rows_unused;           // per file: vectors of items not in the vocabulary
};
ItemVectorTable item_vector_table(const std::vector<std::string>& paths, const ItemVocabulary& items, bool integer_ids);

}  // namespace mtrank::data
