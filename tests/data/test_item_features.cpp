// Item side information for sequential models: the learned features' bags on
// a hand-checked table, and item vector files (text and npy) with the errors
// that name file, line and column.
#include <cmath>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include "common/error.h"
#include "data/hash.h"
#include "data/item_features.h"
#include "test_util.h"

using namespace mtrank;
using namespace mtrank::data;

namespace {

ItemVocabulary vocabulary(std::initializer_list<const char*> ids) {
  ItemVocabulary v;
  for (const char* id : ids) v.add(id);
  return v;
}

template <typename F>
std::string data_error(F&& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

// An npy v1 file: header dict padded to 64 bytes, then the raw values.
std::string npy(const std::string& descr, const std::string& shape, const void* data, std::size_t bytes,
                const std::string& order = "False") {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + std::string(static_cast<const char*>(data), bytes);
}

}  // namespace

TEST(ItemBags, HashedTermsPerColumnAsMeansThatAddUp) {
  mtrank::testing::TempDir dir;
  const std::string table = dir.write("items.tsv",
                                      "item\ttitle\tgenres\n"
                                      "20\tToy Story\tComedy| Drama \n"
                                      "010\t\t\n"         // integer ids: this is item 10, with no term
                                      "99\tOther\tX\n");  // not in the vocabulary
  const ItemVocabulary items = vocabulary({"10", "20", "30"});  // model ids 1, 2, 3
  ItemFeatureColumns columns;
  columns.text = {"title"};
  columns.multi_hot = {"genres"};
  columns.buckets = 1 << 20;
  columns.seed = 7;
  columns.integer_ids = true;
  const ItemBags bags = item_bags(table, items, columns);
  const auto bucket = [&](const char* column, const char* term) {
    return static_cast<std::int64_t>(hash_string(term, hash_string(column, 7)) % (1u << 20));
  };
  // Padding, item 10 and item 30 have empty bags; item 20 has 3 title terms
  // (two words and their bigram, 1/3 each) and 2 genres (1/2 each).
  EXPECT_EQ(bags.offsets, (std::vector<std::int64_t>{0, 0, 0, 5, 5}));
  EXPECT_EQ(bags.ids, (std::vector<std::int64_t>{bucket("title", "toy"), bucket("title", "toy story"),
                                                 bucket("title", "story"), bucket("genres", "Comedy"),
                                                 bucket("genres", "Drama")}));
  EXPECT_EQ(bags.weights, (std::vector<float>{1.f / 3, 1.f / 3, 1.f / 3, 0.5f, 0.5f}));
  EXPECT_NE(bucket("title", "comedy"), bucket("genres", "comedy"));  // the column is part of the term
  EXPECT_EQ(bags.items_without_row, 1);    // 30
  EXPECT_EQ(bags.items_without_terms, 1);  // 10
  EXPECT_EQ(bags.rows_unused, 1);          // 99
  // String ids: "010" is not "10".
  columns.integer_ids = false;
  EXPECT_EQ(item_bags(table, items, columns).items_without_row, 2);
  // Two rows of one item, and a table of other items, are refused.
  const std::string twice = dir.write("twice.tsv", "item\ttitle\tgenres\n10\ta\tb\n010\tc\td\n");
  columns.integer_ids = true;
  std::string e = data_error([&] { item_bags(twice, items, columns); });
  EXPECT_NE(e.find("twice.tsv:3: item '010' is line 2's item '10' again"), std::string::npos) << e;
  const std::string other = dir.write("other.tsv", "item\ttitle\tgenres\nx\ta\tb\n");
  e = data_error([&] { item_bags(other, items, columns); });
  EXPECT_NE(e.find("other.tsv: none of its 1 items (column 'item') is an item of the log"), std::string::npos) << e;
  // A missing column is named with the header there is.
  columns.text = {"name"};
  EXPECT_NE(data_error([&] { item_bags(table, items, columns); }).find("items.tsv:1: missing column 'name'"),
            std::string::npos);
}

TEST(ItemVectors, TextFilesAndTheirErrorsByLine) {
  mtrank::testing::TempDir dir;
  const ItemVectors v = read_item_vectors(dir.write("v.tsv", "a\t1 2.5 -3\nb\t4 5 6e-1\n"));
  EXPECT_EQ(v.ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(v.dim, 3);
  EXPECT_EQ(v.values, (std::vector<float>{1, 2.5f, -3, 4, 5, 0.6f}));
  const auto error = [&](const std::string& text) {
    const std::string path = dir.write("bad.tsv", text);
    return data_error([&] { read_item_vectors(path); });
  };
  std::string e = error("a\t1 2 3\nb\t4 5\n");
  EXPECT_NE(e.find("bad.tsv:2: item 'b' has 2 values, but line 1's item has 3"), std::string::npos) << e;
  e = error("a\t1 2 3\nb\t4 x 6\n");
  EXPECT_NE(e.find("bad.tsv:2:2: value 2 'x' is not a finite number"), std::string::npos) << e;
  e = error("a\t1 inf\n");
  EXPECT_NE(e.find("bad.tsv:1:2: value 2 'inf'"), std::string::npos) << e;
  e = error("a\t1 1e99\n");  // beyond float
  EXPECT_NE(e.find("bad.tsv:1:2: value 2"), std::string::npos) << e;
  EXPECT_EQ(read_item_vectors(dir.write("tiny.tsv", "a\t1e-50 2\n")).values, (std::vector<float>{0, 2}));  // underflow
  e = error("a 1 2 3\n");
  EXPECT_NE(e.find("bad.tsv:1: expected 'item<TAB>v1 v2 ...'"), std::string::npos) << e;
  e = error("a\t1\na\t2\n");
  EXPECT_NE(e.find("bad.tsv:2:1: item 'a' appears twice"), std::string::npos) << e;
  e = error("a\t\n");
  EXPECT_NE(e.find("bad.tsv:1:2: item 'a' has no values"), std::string::npos) << e;
  e = error("");
  EXPECT_NE(e.find("bad.tsv"), std::string::npos) << e;
}

TEST(ItemVectors, NpyFilesRoundTripAndBadOnesAreNamed) {
  mtrank::testing::TempDir dir;
  ItemVectors v;
  v.ids = {"3", "010"};
  v.dim = 2;
  v.values = {0.5f, -1, 2, 3};
  write_item_vectors(dir.file("v.npy"), v);
  const ItemVectors back = read_item_vectors(dir.file("v.npy"));
  EXPECT_EQ(back.ids, (std::vector<std::string>{"3", "10"}));
  EXPECT_EQ(back.dim, 2);
  EXPECT_EQ(back.values, v.values);
  // float64, as np.save writes by default.
  const double f8[] = {7, 0.25, 0.5, 8, -1, 1e-3};
  const ItemVectors d = read_item_vectors(dir.write("d.npy", npy("<f8", "(2, 3)", f8, sizeof f8)));
  EXPECT_EQ(d.ids, (std::vector<std::string>{"7", "8"}));
  EXPECT_EQ(d.values, (std::vector<float>{0.25f, 0.5f, -1, 1e-3f}));
  const auto error = [&](const std::string& bytes) {
    const std::string path = dir.write("bad.npy", bytes);
    return data_error([&] { read_item_vectors(path); });
  };
  std::string e = error(npy("<f8", "(2, 3)", f8, sizeof f8 - 8));
  EXPECT_NE(e.find("bad.npy: holds 40 data bytes, not what shape (2, 3) needs"), std::string::npos) << e;
  // A shape whose byte count overflows 64 bits is refused, not read past the file.
  e = error(npy("<f4", "(4611686018427387905, 5)", f8, 20));
  EXPECT_NE(e.find("not what shape (4611686018427387905, 5) needs"), std::string::npos) << e;
  e = error(npy("<f8", "(2, 3, 1)", f8, sizeof f8));
  EXPECT_NE(e.find("2-D array"), std::string::npos) << e;
  const float big_id[] = {16777217.0f, 1};  // 2^24 + 1 rounds to 2^24 in float32
  e = error(npy("<f4", "(1, 2)", big_id, sizeof big_id));
  EXPECT_NE(e.find("below 2^24"), std::string::npos) << e;
  const double fractional[] = {1.5, 0};
  e = error(npy("<f8", "(1, 2)", fractional, sizeof fractional));
  EXPECT_NE(e.find("bad.npy: row 0 (0-based): item id 1.5"), std::string::npos) << e;
  e = error(npy("<f8", "(2, 3)", f8, sizeof f8, "True"));
  EXPECT_NE(e.find("Fortran-order"), std::string::npos) << e;
  e = error(npy(">f4", "(1, 2)", f8, 8));
  EXPECT_NE(e.find("dtype '>f4'"), std::string::npos) << e;
  e = error(npy("<f8", "(6,)", f8, sizeof f8));
  EXPECT_NE(e.find("2-D array"), std::string::npos) << e;
  const double nan_value[] = {1, std::nan("")};
  e = error(npy("<f8", "(1, 2)", nan_value, sizeof nan_value));
  EXPECT_NE(e.find("row 0 (0-based), column 1"), std::string::npos) << e;
  e = error("item\tv\n");
  EXPECT_NE(e.find("not an npy file"), std::string::npos) << e;
  // An id a float32 id column cannot hold is refused when writing.
  v.ids = {"3", "abc"};
  e = data_error([&] { write_item_vectors(dir.file("w.npy"), v); });
  EXPECT_NE(e.find("item id 'abc'"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(dir.file("w.npy")));
}

TEST(ItemVectorTable, FilesSideBySideByModelId) {
  mtrank::testing::TempDir dir;
  const std::string a = dir.write("a.tsv", "010\t1 2\n20\t3 4\n");
  const std::string b = dir.write("b.tsv", "30\t5\n77\t6\n");
  const ItemVocabulary items = vocabulary({"10", "20", "30"});
  const ItemVectorTable t = item_vector_table({a, b}, items, /*integer_ids=*/true);
  EXPECT_EQ(t.dim, 3);
  EXPECT_EQ(t.file_dims, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(t.values, (std::vector<float>{0, 0, 0,  // padding
                                          1, 2, 0,  // 10
                                          3, 4, 0,  // 20
                                          0, 0, 5}));
  EXPECT_EQ(t.items_without_vector, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(t.rows_unused, (std::vector<std::int64_t>{0, 1}));
  // With integer ids "7" and "07" are one item: two vectors of it are refused.
  const std::string twice = dir.write("twice.tsv", "20\t1 2\n010\t3 4\n10\t5 6\n");
  std::string e = data_error([&] { item_vector_table({twice}, items, true); });
  EXPECT_NE(e.find("twice.tsv: line 3: item '10' is line 2's item '010' again"), std::string::npos) << e;
  // A file of other ids (strings against numbers) is refused, not all zeros.
  const std::string other = dir.write("other.tsv", "a\t1\nb\t2\n");
  e = data_error([&] { item_vector_table({a, other}, items, true); });
  EXPECT_NE(e.find("other.tsv: none of its 2 item ids is an item of the log"), std::string::npos) << e;
}
