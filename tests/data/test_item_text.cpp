// Item text: words, TF-IDF on a hand-checked case, and named errors.
#include <cmath>

#include <gtest/gtest.h>

#include "common/error.h"
#include "data/item_text.h"
#include "test_util.h"

using namespace mtrank;

TEST(ItemText, WordsAreLowerCaseRunsOfLettersAndDigits) {
  EXPECT_EQ(data::text_words("Toy Story (1995) | Children's|Comedy"),
            (std::vector<std::string>{"toy", "story", "1995", "children", "s", "comedy"}));
  EXPECT_TRUE(data::text_words(" -- ").empty());
}

TEST(ItemText, TfIdfOnAHandCheckedCase) {
  // Three texts, words only, min_df 1. n = 3; "a" is in all three texts
  // (idf = log(4/4) + 1 = 1), "b" in one (idf = log(4/2) + 1).
  // Text 0 "a a b": tf(a) = 2 -> weight (1 + log 2) * 1, b -> 1 * (1 + log 2).
  const data::TfIdf t = data::tf_idf({"a a b", "a", "a | c"}, 1, false);
  ASSERT_EQ(t.terms, (std::vector<std::string>{"a", "b", "c"}));
  const data::SparseMatrix& m = t.matrix;
  ASSERT_EQ(m.indptr, (std::vector<std::int64_t>{0, 2, 3, 5}));
  const double wa = 1 + std::log(2.0), wb = 1 + std::log(2.0);
  EXPECT_NEAR(m.values[0], wa / std::hypot(wa, wb), 1e-6);
  EXPECT_NEAR(m.values[1], wb / std::hypot(wa, wb), 1e-6);
  EXPECT_NEAR(m.values[2], 1.0, 1e-6);  // "a" alone, unit norm
  // min_df 2 keeps only "a"; bigrams never span the " | " between columns.
  EXPECT_EQ(data::tf_idf({"a a b", "a", "a | c"}, 2, false).terms, (std::vector<std::string>{"a"}));
  EXPECT_EQ(data::tf_idf({"x y | z"}, 1, true).terms, (std::vector<std::string>{"x", "x y", "y", "z"}));
}

TEST(ItemText, ReadsTheTextColumnsAndNamesMistakes) {
  mtrank::testing::TempDir dir;
  const data::ItemText t = data::read_item_text(dir.write("items.tsv", "item\ttitle\tgenres\n1\tToy Story\tAnimation\n2\tHeat\tAction\n"),
                                                "item", {"title", "genres"});
  EXPECT_EQ(t.ids, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(t.texts[0], "Toy Story | Animation");
  const auto message = [&](const std::string& text, const std::string& column) {
    try {
      data::read_item_text(dir.write("bad.tsv", text), "item", {column});
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("item\ttitle\n1\ta\n", "name").find("missing column 'name'"), std::string::npos);
  EXPECT_NE(message("item\ttitle\n1\ta\n1\tb\n", "title").find("bad.tsv:3:1: column 'item': item '1' appears twice"),
            std::string::npos);
  EXPECT_NE(message("item\ttitle\n", "title").find("no items"), std::string::npos);
}
