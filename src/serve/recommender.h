#pragma once
// One request, two stages (issue 12): the sequential model retrieves
// candidates for a user (their live state, or a history the request gives),
// each candidate's item features are joined from the item catalog, and the
// multi-task ranker orders them with its score formula (bias features read
// as missing, as in every served ranking). Torch-free header: scoring is
// behind Ranker and Retriever.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "serve/ranker.h"
#include "serve/request.h"
#include "serve/retriever.h"
#include "serve/user_state.h"

namespace mtrank::serve {

// The item side of the ranker's input: one row per item of a CSV/TSV file
// (gzip too), the raw values of the ranker's input columns the file has.
// The Recommender featurizes each row's item side once, at load; the raw
// values stay for the features a request's context takes part in (a cross
// of an item column with a context column).
class Catalog {
 public:
  // Throws DataError naming the file and line: no `item_column`, a row with
  // too few fields, an item given twice, no row.
  Catalog(const std::string& path, const std::string& item_column, const std::vector<std::string>& ranker_columns);
  Catalog(const Catalog&) = delete;  // views_ point into cells_
  Catalog& operator=(const Catalog&) = delete;
  // The row of an item, or -1.
  std::int64_t find(std::string_view item) const;
  std::int64_t size() const { return static_cast<std::int64_t>(items_.size()); }
  // Row `row`'s value of each ranker column, and whether the file has that column.
  const std::string_view* values(std::int64_t row) const { return views_.data() + row * columns_; }
  const char* set(std::int64_t row) const { return set_.data() + row * columns_; }
  // Whether the file has ranker column `column`: then every row sets it (an
  // empty cell is the empty value, not the context's).
  bool has_column(std::int64_t column) const { return set_[static_cast<std::size_t>(column)] != 0; }
  const std::string& item(std::int64_t row) const { return items_[static_cast<std::size_t>(row)]; }
  std::int64_t line(std::int64_t row) const { return lines_[static_cast<std::size_t>(row)]; }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& joined_columns() const { return joined_; }  // the ranker columns the file has

 private:
  std::string path_;
  std::int64_t columns_ = 0;  // the ranker's input columns
  std::vector<std::string> items_;
  std::vector<std::int64_t> lines_;
  std::unordered_map<std::string, std::int64_t> rows_;
  std::vector<std::string> cells_;  // [row * columns_ + column]
  std::vector<std::string_view> views_;
  std::vector<char> set_;
  std::vector<std::string> joined_;
};

struct RecommenderOptions {
  std::int64_t max_retrieve = 2000;  // largest "retrieve" (and "k") a request may ask for
  std::size_t history_window = 200;  // recent items kept per user: left out of their recommendations
};

class Recommender {
 public:
  // Featurizes the item side of every catalog item (kept for every request)
  // and scores each once (empty context): throws DataError naming the
  // catalog line of an item the ranker cannot read or scores NaN.
  // retrieval_name: the retrieval model's name in responses (its directory's).
  Recommender(std::shared_ptr<const Ranker> ranker, std::shared_ptr<const Retriever> retriever,
              std::shared_ptr<const Catalog> catalog, RecommenderOptions options, std::string retrieval_name);
  // POST /v1/recommend: the response body
  //   {"results": [{"item", "score", "retrieval_score", "tasks": {...}}, ...],
  //    "retrieved": n, "not_in_catalog": m, "unknown_history_items": u, "width": w, "model": ...,
  //    "retrieval_model": ...}
  // with results sorted by score. Throws RequestError on a bad request and
  // NotFoundError for a user with no state (or no store).
  std::string recommend_json(const std::string& body, const UserStateStore* store) const;
  // POST /v1/events: advances the user's state and stores it (durable when
  // this returns). Response: {"user", "events", "known_item", "duplicate"}; an
  // event whose event_id is among the user's latest kKeptEventIds is not
  // applied again ("duplicate": true).
  static constexpr std::size_t kKeptEventIds = 64;
  std::string event_json(const std::string& body, UserStateStore& store) const;

  const Ranker& ranker() const { return *ranker_; }
  const Retriever& retriever() const { return *retriever_; }
  const Catalog& catalog() const { return *catalog_; }
  const std::string& retrieval_name() const { return retrieval_name_; }
  // A context column without which the ranker cannot score (a numeric
  // feature with missing = "error" that the catalog does not give), or "":
  // a request must then carry it in "context".
  const std::string& context_needed() const { return context_needed_; }
  // Candidates' item side from the catalog featurized at load: row_of[i] is
  // candidate i's catalog row (for Ranker::rank).
  ItemSide item_side(const std::int64_t* row_of) const { return {&split_, &item_rows_, row_of}; }

 private:
  std::shared_ptr<const Ranker> ranker_;
  std::shared_ptr<const Retriever> retriever_;
  std::shared_ptr<const Catalog> catalog_;
  RecommenderOptions options_;
  std::vector<std::int64_t> catalog_row_;  // per retrieval model item id: its catalog row, or -1
  data::Preprocessor::FeatureSplit split_;  // the ranker's features that read only catalog (or bias) columns
  data::FeaturizedData item_rows_;          // per catalog row: those features, featurized at load
  std::string retrieval_name_;
  std::string context_needed_;
  std::string models_;                  // ,"model":{...},"retrieval_model":{...}}
};

}  // namespace mtrank::serve
