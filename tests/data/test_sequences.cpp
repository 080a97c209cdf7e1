// Sequential data: reading interaction logs, the item vocabulary, LRURec's
// leave-one-out split and training windows, on hand-checked cases.
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/sequences.h"
#include "test_util.h"

using namespace mtrank;
using namespace mtrank::data;
using mtrank::testing::TempDir;
using Ids = std::vector<std::int32_t>;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(Sequences, UserItemLinesKeepFileOrderPerUser) {
  TempDir dir;
  const Interactions x = read_user_item_lines(dir.write("s.txt", "1 10\n1 11\n2 010\n1 12\n"));  // 010 is 10
  EXPECT_EQ(x.users, (std::vector<std::string>{"1", "2"}));
  ASSERT_EQ(x.histories.size(), 2u);
  EXPECT_EQ(x.histories[0], (Ids{1, 2, 3}));  // 10 -> 1, 11 -> 2, 12 -> 3 in first-appearance order
  EXPECT_EQ(x.histories[1], (Ids{1}));
  EXPECT_EQ(x.events, 4);
  EXPECT_EQ(x.items.size(), 3);
  EXPECT_EQ(x.items.external(3), "12");
  EXPECT_EQ(x.items.find("11"), 2);
  EXPECT_EQ(x.items.find("99"), 0);
}

TEST(Sequences, BadLinesAreNamedByFileAndLine) {
  TempDir dir;
  EXPECT_NE(error_of([&] { read_user_item_lines(dir.write("a.txt", "1 10\n2\n")); }).find("a.txt:2: expected 'user item'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_user_item_lines(dir.write("b.txt", "1 10\n1 x7\n")); })
                .find("b.txt:2: item id 'x7' is not a non-negative integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_user_item_lines(dir.write("c.txt", "1 10 3\n")); }).find("c.txt:1: expected"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_user_item_lines(dir.write("d.txt", "")); }).find("d.txt: no interactions"),
            std::string::npos);
}

TEST(Sequences, TableSortsByTimePerUserWithTiesInFileOrder) {
  TempDir dir;
  const std::string path = dir.write("log.csv", "user,item,timestamp\nu1,a,5\nu2,b,1\nu1,b,3\nu1,c,3\n");
  const Interactions x = read_interaction_table(path, {});
  EXPECT_EQ(x.users, (std::vector<std::string>{"u1", "u2"}));
  EXPECT_EQ(x.histories[0], (Ids{2, 3, 1}));  // b (3), c (3, after b in the file), a (5)
  EXPECT_EQ(x.histories[1], (Ids{2}));
  // Without a time column, file order is time order.
  InteractionColumns no_time;
  no_time.time = "";
  EXPECT_EQ(read_interaction_table(path, no_time).histories[0], (Ids{1, 2, 3}));
  EXPECT_NE(error_of([&] { read_interaction_table(dir.write("t.csv", "user,item,timestamp\nu1,a,1\nu1,b,soon\n"), {}); })
                .find("t.csv:3:3: column 'timestamp': 'soon' is not a number"),
            std::string::npos);
  InteractionColumns renamed;
  renamed.time = "ts";
  EXPECT_NE(error_of([&] { read_interaction_table(path, renamed); }).find("missing column 'ts'"), std::string::npos);
  EXPECT_NE(error_of([&] { read_interaction_table(dir.write("e.csv", "user,item,timestamp\n,a,1\n"), {}); })
                .find("e.csv:2:1: column 'user': empty user id"),
            std::string::npos);
}

TEST(Sequences, LeaveOneOutAsLRURec) {
  Interactions x;
  x.histories = {{1, 2, 3, 4, 5}, {1, 2}, {7, 8, 9}};
  const LeaveOneOut s = leave_one_out(x);
  EXPECT_EQ(s.train, (std::vector<Ids>{{1, 2, 3}, {1, 2}, {7}}));
  EXPECT_EQ(s.val, (Ids{4, 0, 8}));
  EXPECT_EQ(s.test, (Ids{5, 0, 9}));
  EXPECT_EQ(s.users_train_only, 1);
}

TEST(Sequences, TrainingWindowsAsLRURec) {
  // max_len 3, step 3. 8 items (>= max_len + step): windows of 3 ending at the
  // last item, stepping back by 3: [6 7 8], [3 4 5] ([1 2] is left over).
  // 5 items (< 6): one sample of the last 3 labels. 2 items: padded. 1 item:
  // its label on the empty state. Empty: none.
  const TrainingWindows w = training_windows({{1, 2, 3, 4, 5, 6, 7, 8}, {1, 2, 3, 4, 5}, {1, 2}, {9}, {}}, 3, 3);
  ASSERT_EQ(w.samples(), 5);
  EXPECT_EQ(w.inputs, (Ids{0, 6, 7, /**/ 0, 3, 4, /**/ 2, 3, 4, /**/ 0, 0, 1, /**/ 0, 0, 0}));
  EXPECT_EQ(w.labels, (Ids{6, 7, 8, /**/ 3, 4, 5, /**/ 3, 4, 5, /**/ 0, 1, 2, /**/ 0, 0, 9}));
  // A smaller step overlaps the windows.
  EXPECT_EQ(training_windows({{1, 2, 3, 4, 5, 6}}, 3, 1).samples(), 4);  // starts 3, 2, 1, 0
  EXPECT_THROW(training_windows({}, 0, 1), std::invalid_argument);
}

TEST(Sequences, InputWindowAndUnknownItems) {
  EXPECT_EQ(input_window({1, 2, 3, 4}, 3), (Ids{2, 3, 4}));
  EXPECT_EQ(input_window({1}, 3), (Ids{0, 0, 1}));
  ItemVocabulary v;
  v.add("a");
  v.add("b");
  std::int64_t unknown = 0;
  EXPECT_EQ(map_items(v, {"b", "zz", "a", "yy"}, &unknown), (Ids{2, 1}));
  EXPECT_EQ(unknown, 2);
  // The vocabulary round-trips through JSON and refuses a repeated id.
  const ItemVocabulary back = ItemVocabulary::from_json(v.to_json());
  EXPECT_EQ(back.find("b"), 2);
  EXPECT_THROW(ItemVocabulary::from_json(nlohmann::json::array({"a", "a"})), std::invalid_argument);
  EXPECT_THROW(ItemVocabulary::from_json(nlohmann::json::array({"a", 3})), std::invalid_argument);
}
