#pragma once
// Ranking requests: JSON parsing and featurization, without torch (so they can
// be fuzzed and tested on their own). Ranker adds scoring on top.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "data/dataset.h"
#include "data/preprocessor.h"

namespace mtrank::serve {

// A request that cannot be served: names the JSON field (e.g. "candidates[3].price").
class RequestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A request for a user the server has no state of, or an endpoint that is off (HTTP 404).
class NotFoundError : public RequestError {
 public:
  using RequestError::RequestError;
};

// A candidate value the model's preprocessing cannot read: which candidate,
// which column and why, besides the message ("candidates[3].price: ...").
class CandidateValueError : public RequestError {
 public:
  CandidateValueError(std::int64_t candidate, std::string column, const std::string& reason)
      : RequestError("candidates[" + std::to_string(candidate) + "]" + (column.empty() ? "" : "." + column) + ": " + reason),
        candidate(candidate), column(std::move(column)), reason(reason) {}
  std::int64_t candidate;
  std::string column;  // empty if not about one column
  std::string reason;
};

// Candidates whose item side is featurized once, not per request
// (serve::Catalog's rows, at load), by a split of the features
// (data::Preprocessor::split_features):
//   from == nullptr: featurize only the split's features (the rest left 0);
//   from != nullptr: candidate i's split features are copied from row
//     row_of[i] of `from`, the rest featurized from the request.
struct ItemSide {
  const data::Preprocessor::FeatureSplit* split = nullptr;
  const data::FeaturizedData* from = nullptr;
  const std::int64_t* row_of = nullptr;  // per candidate, when `from` is set
};

// A parsed request: views into the calling thread's simdjson parser (strings)
// and into `numbers` (numbers formatted back to text); valid until the next
// parse on the same thread.
struct ParsedRequest {
  std::vector<std::string_view> context;  // per input column
  std::vector<char> context_set;
  std::vector<std::string_view> values;   // [candidate * columns + column]
  std::vector<char> set;
  // Numbers as text. A deque, because views into it must survive later
  // insertions: a candidate can repeat a key, so no reservation bounds the count
  // (found by fuzzing: a vector reallocated under the views).
  std::deque<std::string> numbers;
  std::int64_t candidates = 0;
  std::int64_t top_k = -1;
};

// POST /v1/recommend's fields besides the context (serve/recommender.h):
// {"user": "u"} or {"history": ["i1", "i2", ...]} (oldest first), "k"
// results from "retrieve" candidates, retrieved at "width".
struct RecommendRequest {
  std::optional<std::string> user;
  std::optional<std::vector<std::string>> history;
  std::int64_t k = 10;
  std::int64_t retrieve = 200;
  std::int64_t width = 0;  // the retrieval width; 0 = the server's default
};

// POST /v1/events: {"user": "u", "item": "i"} with an optional "event_id"
// (a retry with the same id is applied once) and an optional numeric
// "timestamp" (accepted, not used: events are applied in arrival order).
struct EventRequest {
  std::string user, item, event_id;
};
// Throws RequestError naming the field. Ids are strings or integers
// (integers as their decimal text) of 1 to kMaxIdBytes bytes (an item id in
// a history too): a user's record holds their recent items, so an id's size
// bounds the record's.
EventRequest parse_event(const std::string& body);
constexpr std::size_t kMaxIdBytes = 256;

class RequestParser {
 public:
  // Reads the model's raw input columns (input_columns) and its bias features from the config.
  RequestParser(const Config& config, bool ignore_unknown_features, std::int64_t max_candidates);
  RequestParser(const RequestParser&) = delete;  // index_ views columns_
  RequestParser& operator=(const RequestParser&) = delete;
  RequestParser(RequestParser&&) = default;

  // {"context": {...}, "candidates": [{...}, ...], "top_k": K}; throws RequestError.
  void parse(const std::string& body, ParsedRequest& out) const;
  // {"user" | "history", "context", "k", "retrieve"}: the context goes to
  // `out` (with no candidates yet: the recommender adds them), the rest to
  // `fields`, each checked (k and retrieve from 1 to max_retrieve, retrieve
  // at least k; retrieve defaults to max(200, k) within max_retrieve).
  // Throws RequestError.
  void parse_recommend(const std::string& body, std::int64_t max_retrieve, RecommendRequest& fields,
                       ParsedRequest& out) const;

  // Appends candidates [begin, end) to `out` with the model's preprocessing. A
  // candidate's value wins over the context's; neither means missing. A bias
  // feature's column is always missing: the request may carry it, it is not
  // used. With `items`, part of each row comes featurized already (ItemSide).
  // Throws CandidateValueError.
  void featurize(const data::Preprocessor& pre, const data::ColumnBinding& binding, const ParsedRequest& request,
                 std::int64_t begin, std::int64_t end, data::FeaturizedData& out,
                 const ItemSide* items = nullptr) const;

  const std::vector<std::string>& columns() const { return columns_; }
  // Per column: 1 if a bias feature reads it (always missing when serving).
  const std::vector<char>& bias_columns() const { return bias_; }

 private:
  // Both parses: with `recommend` null a rank request, else a recommend request.
  void parse_body(const std::string& body, ParsedRequest& out, RecommendRequest* recommend, std::int64_t max_retrieve) const;

  std::vector<std::string> columns_;
  std::vector<char> bias_;  // per column: read by a bias feature, so missing when serving
  std::vector<std::string> missing_;  // per column: the text its feature reads as missing
  std::unordered_map<std::string_view, std::size_t> index_;
  bool ignore_unknown_;
  std::int64_t max_candidates_;
};

// Appends a number to a JSON text: the shortest text that reads back as the
// same value; NaN and infinity (JSON has neither) as null. Responses are
// written directly, not through a JSON tree (serve/ranker.cpp says why).
template <typename T>
void append_json_number(std::string& out, T value) {
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(value)) {
      out += "null";
      return;
    }
  }
  char buf[32];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr);
}

// The raw input columns a model's features read, each once, in config order.
std::vector<std::string> input_columns(const Config& config);

}  // namespace mtrank::serve
