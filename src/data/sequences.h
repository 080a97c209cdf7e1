#pragma once
// Interaction histories for sequential recommendation (issue 9; no torch):
// reading logs, the item vocabulary, LRURec's leave-one-out split and its
// training windows. Item ids are 1..n; 0 is padding.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"

namespace mtrank::data {

// External item ids (strings) <-> ids 1..n in first-appearance order; 0 is padding.
class ItemVocabulary {
 public:
  std::int32_t add(std::string_view external);         // its id, new or old
  std::int32_t find(std::string_view external) const;  // 0 if unknown
  const std::string& external(std::int32_t id) const { return names_.at(static_cast<std::size_t>(id - 1)); }
  std::int32_t size() const { return static_cast<std::int32_t>(names_.size()); }
  nlohmann::json to_json() const;  // the external ids in id order
  // Throws std::invalid_argument on a non-string entry or a repeated id.
  static ItemVocabulary from_json(const nlohmann::json& j);

 private:
  std::vector<std::string> names_;
  std::unordered_map<std::string, std::int32_t> ids_;
};

struct Interactions {
  std::vector<std::string> users;                    // external ids, in first-appearance order
  std::vector<std::vector<std::int32_t>> histories;  // per user, in time order
  ItemVocabulary items;
  std::int64_t events = 0;
};

// One `user item` pair a line, separated by one space, each user's lines in
// time order (ml-1m.txt.gz, beauty.txt.gz); gzip by the .gz suffix. Both ids
// must be non-negative integers, read as numbers ("010" is item 10). Throws DataError naming file and
// line: a line with other than two fields, an id that is not an integer, an
// empty file.
// Several files (FileList, data::expand_files) are read in turn as one log.
Interactions read_user_item_lines(const FileList& files);
// The decimal form of a non-negative integer ("010" -> "10"), or "" if `s` is
// not one: how read_user_item_lines reads ids.
std::string canonical_integer(std::string_view s);

// A CSV/TSV log with a header: rows grouped by user and sorted by time within
// each user, ties in file order. `time` may be empty (file order is time
// order). Throws DataError naming file, line and column: a missing column, a
// time that is not a number, an empty user or item.
struct InteractionColumns {
  std::string user = "user", item = "item", time = "timestamp";
};
Interactions read_interaction_table(const FileList& files, const InteractionColumns& columns);

// LRURec's leave-one-out split: the last item is the test target, the
// second-last the validation target, the rest trains. Validation reads the
// training history; test reads it plus the validation item. A user with fewer
// than 3 events trains only (val and test 0).
struct LeaveOneOut {
  std::vector<std::vector<std::int32_t>> train;
  std::vector<std::int32_t> val, test;  // per user; 0 = none
  std::int64_t users_train_only = 0;
};
LeaveOneOut leave_one_out(const Interactions& interactions);

// Training samples as LRURec builds them: a history shorter than max_len +
// step is one sample; a longer one gives windows of max_len items ending at
// the last item, stepping back by `step`. A sample's input is its items but
// the last, its labels the items after each input (position j predicts
// labels[j]), both left-padded with 0 to max_len; as in LRURec, the first
// label of a sample shorter than max_len + 1 items sits on a padded input
// (the model predicts it from the empty state; a one-item history is such a
// sample alone). An empty history gives none.
struct TrainingWindows {
  int max_len = 0;
  std::vector<std::int32_t> inputs, labels;  // [samples x max_len]
  std::int64_t samples() const { return max_len > 0 ? static_cast<std::int64_t>(inputs.size()) / max_len : 0; }
};
TrainingWindows training_windows(const std::vector<std::vector<std::int32_t>>& histories, int max_len, int step);

// The last max_len items of `history`, left-padded with 0: a model's input window.
std::vector<std::int32_t> input_window(const std::vector<std::int32_t>& history, int max_len);

// External ids to vocabulary ids; unknown ones are skipped and counted in *unknown.
std::vector<std::int32_t> map_items(const ItemVocabulary& items, const std::vector<std::string>& external,
                                    std::int64_t* unknown);

}  // namespace mtrank::data
