#include "serve/request.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include <simdjson.h>

namespace mtrank::serve {

std::vector<std::string> input_columns(const Config& config) {
  std::vector<std::string> columns;
  auto add = [&](const std::string& c) {
    if (std::find(columns.begin(), columns.end(), c) == columns.end()) columns.push_back(c);
  };
  for (const FeatureConfig& f : config.features) {
    if (f.type == FeatureType::kCross)
      for (const auto& c : f.columns) add(c);
    else
      add(f.name);
  }
  return columns;
}

RequestParser::RequestParser(const Config& config, bool ignore_unknown_features, std::int64_t max_candidates)
    : columns_(input_columns(config)), ignore_unknown_(ignore_unknown_features), max_candidates_(max_candidates) {
  bias_.assign(columns_.size(), 0);
  missing_.assign(columns_.size(), "");
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    index_.emplace(columns_[i], i);
    for (const FeatureConfig& f : config.features) {
      if (f.name != columns_[i]) continue;
      if (f.bias) bias_[i] = 1;
      // A numeric feature reads data.missing_values as missing; categorical and
      // multi-hot features read text as a value, and "" is their empty value.
      if (f.type == FeatureType::kNumeric && !config.data.missing_values.empty())
        missing_[i] = config.data.missing_values.front();
    }
  }
}

namespace {
const char* json_type(simdjson::dom::element_type t) {
  switch (t) {
    case simdjson::dom::element_type::ARRAY: return "a list";
    case simdjson::dom::element_type::OBJECT: return "an object";
    default: return "a value";
  }
}
}  // namespace

void RequestParser::parse(const std::string& body, ParsedRequest& r) const { parse_body(body, r, nullptr, 0); }

void RequestParser::parse_recommend(const std::string& body, std::int64_t max_retrieve, RecommendRequest& fields,
                                    ParsedRequest& r) const {
  fields = RecommendRequest{};
  parse_body(body, r, &fields, max_retrieve);
}

namespace {
// An id given as a string or an integer (as its decimal text).
bool id_text(simdjson::dom::element e, std::string& out) {
  std::string_view s;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  if (!e.get_string().get(s)) {
    out.assign(s);
    return true;
  }
  char buf[32];
  if (!e.get_int64().get(i)) {
    out.assign(buf, std::to_chars(buf, buf + sizeof buf, i).ptr);
    return true;
  }
  if (!e.get_uint64().get(u)) {
    out.assign(buf, std::to_chars(buf, buf + sizeof buf, u).ptr);
    return true;
  }
  return false;
}

// An id field: a string or an integer, of 1 to kMaxIdBytes bytes.
std::string id_of(simdjson::dom::element e, const std::string& field) {
  std::string id;
  if (!id_text(e, id)) throw RequestError(field + ": must be a string or an integer id");
  if (id.empty() || id.size() > kMaxIdBytes)
    throw RequestError(field + ": an id of 1 to " + std::to_string(kMaxIdBytes) + " bytes, not " + std::to_string(id.size()));
  return id;
}

// A positive integer field, at most `limit`.
std::int64_t count_of(simdjson::dom::element e, const char* name, std::int64_t limit) {
  std::int64_t v = 0;
  if (e.get_int64().get(v) || v < 1) throw RequestError(std::string(name) + ": must be a positive integer");
  if (v > limit)
    throw RequestError(std::string(name) + ": " + std::to_string(v) + " is more than the limit of " + std::to_string(limit));
  return v;
}
}  // namespace

EventRequest parse_event(const std::string& body) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(body).get(root))
    throw RequestError(std::string("malformed JSON: ") + simdjson::error_message(err));
  simdjson::dom::object top;
  if (root.get_object().get(top)) throw RequestError("the request body must be a JSON object");
  EventRequest event;
  int given[4] = {0, 0, 0, 0};
  for (auto field : top) {
    const int which = field.key == "user"       ? 0
                      : field.key == "item"     ? 1
                      : field.key == "timestamp" ? 2
                      : field.key == "event_id" ? 3
                                                : -1;
    if (which < 0)
      throw RequestError(std::string(field.key) + ": unknown field (an event has user, item, event_id and timestamp)");
    if (++given[which] > 1) throw RequestError(std::string(field.key) + ": given twice (give each field once)");
    if (which == 0) event.user = id_of(field.value, "user");
    else if (which == 1) event.item = id_of(field.value, "item");
    else if (which == 3) event.event_id = id_of(field.value, "event_id");
    else if (!field.value.is_number()) throw RequestError("timestamp: must be a number");
  }
  if (!given[0]) throw RequestError("user: missing (the user the event belongs to)");
  if (!given[1]) throw RequestError("item: missing (the item the user interacted with)");
  return event;
}

void RequestParser::parse_body(const std::string& body, ParsedRequest& r, RecommendRequest* recommend,
                               std::int64_t max_retrieve) const {
  // simdjson (SIMD, no per-value allocation) instead of a DOM of heap objects:
  // nlohmann::json took 2.7 ms to parse a 200-candidate census request.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(body).get(root))
    throw RequestError(std::string("malformed JSON: ") + simdjson::error_message(err));
  simdjson::dom::object top;
  if (root.get_object().get(top)) throw RequestError("the request body must be a JSON object");
  const std::size_t ncols = columns_.size();
  thread_local std::vector<std::size_t> key_order;  // column of the key at each position, last object seen
  // A key given twice in one object is refused (RFC 8259 leaves its meaning to
  // the parser, so a proxy and this server could read different values).
  // seen[k] == stamp marks column k as given in the current object: one store
  // per key, no clearing between objects.
  thread_local std::vector<std::uint32_t> seen;
  thread_local std::uint32_t stamp = 0;
  if (seen.size() != ncols) seen.assign(ncols, 0);
  auto fill = [&](simdjson::dom::element e, std::string_view* values, char* set, const auto& where) {
    simdjson::dom::object obj;
    if (e.get_object().get(obj)) throw RequestError(where() + ": must be an object of feature values");
    // A client writes its keys in the same order in every object, whatever that
    // order is: the column the key at position p named in the previous object is
    // tried first, one short compare instead of hashing the key (hash lookups
    // were ~15% of a 200-candidate request).
    if (++stamp == 0) {  // wrapped: forget every old mark
      std::fill(seen.begin(), seen.end(), 0);
      stamp = 1;
    }
    std::size_t position = 0;
    for (auto field : obj) {
      std::size_t k;
      const std::size_t guess = position < key_order.size() ? key_order[position] : ncols;
      // Bounded: an object of thousands of repeated or ignored keys must not grow it for good.
      if (position >= key_order.size() && key_order.size() < 2 * ncols + 8) key_order.push_back(ncols);
      const bool remembered = position < key_order.size();
      ++position;
      if (guess < ncols && columns_[guess] == field.key) {
        k = guess;
      } else {
        auto it = index_.find(field.key);
        if (it == index_.end()) {
          if (remembered) key_order[position - 1] = ncols;
          if (ignore_unknown_) continue;
          throw RequestError(where() + "." + std::string(field.key) + ": unknown feature (this model reads " +
                             std::to_string(ncols) + " input columns, e.g. '" + columns_.front() + "')");
        }
        k = it->second;
        if (remembered) key_order[position - 1] = k;
      }
      if (seen[k] == stamp)
        throw RequestError(where() + "." + std::string(field.key) + ": given twice in one object (give each feature once)");
      seen[k] = stamp;
      char buf[32];
      char* end = buf;
      switch (field.value.type()) {
        case simdjson::dom::element_type::STRING:
          values[k] = std::string_view(field.value.get_string().value_unsafe());
          set[k] = 1;
          continue;
        case simdjson::dom::element_type::INT64:
          end = std::to_chars(buf, buf + sizeof buf, field.value.get_int64().value_unsafe()).ptr;
          break;
        case simdjson::dom::element_type::UINT64:
          end = std::to_chars(buf, buf + sizeof buf, field.value.get_uint64().value_unsafe()).ptr;
          break;
        case simdjson::dom::element_type::DOUBLE:  // shortest text that parses back to the same double
          end = std::to_chars(buf, buf + sizeof buf, field.value.get_double().value_unsafe()).ptr;
          break;
        case simdjson::dom::element_type::BOOL:
          *end++ = field.value.get_bool().value_unsafe() ? '1' : '0';
          break;
        case simdjson::dom::element_type::NULL_VALUE:  // missing: the feature's missing-value policy
          set[k] = 0;
          continue;
        default:
          throw RequestError(where() + "." + std::string(field.key) + ": must be a string, a number, a boolean or null, not " +
                             json_type(field.value.type()));
      }
      r.numbers.emplace_back(buf, end);
      values[k] = r.numbers.back();
      set[k] = 1;
    }
  };
  r.numbers.clear();
  r.top_k = -1;  // r is reused per thread: a top_k must not outlive its request
  r.context.assign(ncols, {});
  r.context_set.assign(ncols, 0);
  simdjson::dom::element context;
  if (recommend) {
    int given[6] = {0, 0, 0, 0, 0, 0};  // user, history, context, k, retrieve, width
    static constexpr const char* kNames[6] = {"user", "history", "context", "k", "retrieve", "width"};
    for (auto field : top) {
      int which = -1;
      for (int f = 0; f < 6; ++f)
        if (field.key == kNames[f]) which = f;
      if (which < 0)
        throw RequestError(std::string(field.key) +
                           ": unknown field (a recommend request has user or history, context, k, retrieve and width)");
      if (++given[which] > 1) throw RequestError(std::string(field.key) + ": given twice (give each field once)");
    }
    if (given[0] == given[1])
      throw RequestError(given[0] ? "user and history: give one of them, not both"
                                  : "user or history: give the user (whose events the server has) or their history");
    simdjson::dom::element e;
    if (!top["user"].get(e)) recommend->user = id_of(e, "user");
    if (!top["history"].get(e)) {
      simdjson::dom::array items;
      if (e.get_array().get(items)) throw RequestError("history: must be a list of item ids, oldest first");
      recommend->history.emplace();
      std::size_t i = 0;
      for (simdjson::dom::element item : items) recommend->history->push_back(id_of(item, "history[" + std::to_string(i++) + "]"));
      if (recommend->history->empty()) throw RequestError("history: is empty, so there is nothing to retrieve from");
    }
    if (!top["k"].get(e)) recommend->k = count_of(e, "k", max_retrieve);
    if (!top["retrieve"].get(e)) {
      recommend->retrieve = count_of(e, "retrieve", max_retrieve);
      if (recommend->retrieve < recommend->k)
        throw RequestError("retrieve: " + std::to_string(recommend->retrieve) + " candidates cannot give k = " +
                           std::to_string(recommend->k) + " results; retrieve at least k");
    } else {
      recommend->retrieve = std::min(max_retrieve, std::max(recommend->retrieve, recommend->k));
    }
    if (!top["width"].get(e)) recommend->width = count_of(e, "width", std::numeric_limits<std::int32_t>::max());
    r.candidates = 0;
    r.values.clear();
    r.set.clear();
    if (!top["context"].get(context)) fill(context, r.context.data(), r.context_set.data(), [] { return std::string("context"); });
    return;
  }
  simdjson::dom::element candidates, top_k;
  int given[3] = {0, 0, 0};  // context, candidates, top_k
  for (auto field : top) {
    const int which = field.key == "context" ? 0 : field.key == "candidates" ? 1 : field.key == "top_k" ? 2 : -1;
    if (which < 0)
      throw RequestError(std::string(field.key) + ": unknown field (a request has context, candidates and top_k)");
    if (++given[which] > 1) throw RequestError(std::string(field.key) + ": given twice (give each field once)");
  }
  simdjson::dom::array cands;
  if (top["candidates"].get(candidates)) throw RequestError("candidates: missing (a list of candidate objects)");
  if (candidates.get_array().get(cands)) throw RequestError("candidates: must be a list of candidate objects");
  r.candidates = static_cast<std::int64_t>(cands.size());
  if (r.candidates > max_candidates_)
    throw RequestError("candidates: " + std::to_string(r.candidates) + " candidates, more than the limit of " +
                       std::to_string(max_candidates_));
  if (!top["context"].get(context)) fill(context, r.context.data(), r.context_set.data(), [] { return std::string("context"); });
  r.values.assign(static_cast<std::size_t>(r.candidates) * ncols, {});
  r.set.assign(static_cast<std::size_t>(r.candidates) * ncols, 0);
  std::size_t i = 0;
  for (simdjson::dom::element c : cands) {
    fill(c, r.values.data() + i * ncols, r.set.data() + i * ncols,
         [i] { return "candidates[" + std::to_string(i) + "]"; });
    ++i;
  }
  if (!top["top_k"].get(top_k)) {
    std::int64_t k = 0;
    if (top_k.get_int64().get(k) || k < 1) throw RequestError("top_k: must be a positive integer");
    r.top_k = k;
  }
}

void RequestParser::featurize(const data::Preprocessor& pre, const data::ColumnBinding& binding,
                              const ParsedRequest& req, std::int64_t begin, std::int64_t end,
                              data::FeaturizedData& out, const ItemSide* items) const {
  const std::size_t ncols = columns_.size();
  std::vector<std::string_view> fields(ncols);
  data::Preprocessor::Memo memo;  // context values are featurized once per chunk
  out.reserve(out.rows() + (end - begin));
  for (std::int64_t i = begin; i < end; ++i) {
    const std::size_t row = static_cast<std::size_t>(i) * ncols;
    for (std::size_t k = 0; k < ncols; ++k)
      fields[k] = bias_[k]               ? std::string_view(missing_[k])
                  : req.set[row + k]     ? req.values[row + k]
                  : req.context_set[k]   ? req.context[k]
                                         : std::string_view(missing_[k]);
    try {
      if (items) {
        const data::Preprocessor::SplitRow split{items->split, items->from, items->from ? items->row_of[i] : 0};
        pre.transform(binding, fields, out, &memo, &split);
      } else {
        pre.transform(binding, fields, out, &memo);
      }
    } catch (const data::RowError& e) {
      throw CandidateValueError(i, e.column >= 0 ? columns_[static_cast<std::size_t>(e.column)] : "", e.message);
    }
  }
}

}  // namespace mtrank::serve
