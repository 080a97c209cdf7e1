#include "serve/recommender.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/record_reader.h"

namespace mtrank::serve {

using nlohmann::json;

namespace {
std::string json_text(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

Catalog::Catalog(const std::string& path, const std::string& item_column, const std::vector<std::string>& ranker_columns)
    : path_(path), columns_(static_cast<std::int64_t>(ranker_columns.size())) {
  data::RecordReader reader(path);
  const std::vector<std::string>& header = reader.header();
  const auto item_at = std::find(header.begin(), header.end(), item_column);
  if (item_at == header.end())
    throw DataError(path + ":1: no column '" + item_column + "' (the catalog's item ids; --catalog-item-column names it)");
  const std::size_t item_field = static_cast<std::size_t>(item_at - header.begin());
  std::vector<std::int64_t> field_of(ranker_columns.size(), -1);  // per ranker column: its field in the file
  for (std::size_t c = 0; c < ranker_columns.size(); ++c) {
    const auto it = std::find(header.begin(), header.end(), ranker_columns[c]);
    if (it == header.end()) continue;
    field_of[c] = it - header.begin();
    joined_.push_back(ranker_columns[c]);
  }
  std::vector<std::string_view> fields;
  while (reader.next(fields)) {
    const std::string where = path + ":" + std::to_string(reader.line());
    if (fields.size() != header.size())
      throw DataError(where + ": the row has " + std::to_string(fields.size()) + " fields, the header " +
                      std::to_string(header.size()));
    std::string item(fields[item_field]);
    if (item.empty()) throw DataError(where + ": the item id (column '" + item_column + "') is empty");
    const auto [at, added] = rows_.emplace(item, size());
    if (!added)
      throw DataError(where + ": item '" + item + "' is given twice (first on line " + std::to_string(lines_[static_cast<std::size_t>(at->second)]) +
                      "); a catalog has one row per item");
    for (std::size_t c = 0; c < ranker_columns.size(); ++c) {
      cells_.emplace_back(field_of[c] >= 0 ? fields[static_cast<std::size_t>(field_of[c])] : std::string_view());
      set_.push_back(field_of[c] >= 0 ? 1 : 0);
    }
    items_.push_back(std::move(item));
    lines_.push_back(static_cast<std::int64_t>(reader.line()));
  }
  if (items_.empty()) throw DataError(path + ": the catalog has no item rows");
  // Views only now: cells_ no longer moves.
  views_.assign(cells_.begin(), cells_.end());
}

std::int64_t Catalog::find(std::string_view item) const {
  const auto it = rows_.find(std::string(item));
  return it == rows_.end() ? -1 : it->second;
}

Recommender::Recommender(std::shared_ptr<const Ranker> ranker, std::shared_ptr<const Retriever> retriever,
                         std::shared_ptr<const Catalog> catalog, RecommenderOptions options, std::string retrieval_name)
    : ranker_(std::move(ranker)), retriever_(std::move(retriever)), catalog_(std::move(catalog)), options_(options),
      retrieval_name_(std::move(retrieval_name)) {
  if (options_.max_retrieve < 1) throw ConfigError("--max-retrieve: must be at least 1");
  if (options_.history_window < 1) throw ConfigError("--history-window: must be at least 1");
  const data::ItemVocabulary& items = retriever_->model().items;
  catalog_row_.assign(static_cast<std::size_t>(items.size()) + 1, -1);
  std::int64_t joined = 0;
  for (std::int32_t id = 1; id <= items.size(); ++id) {
    catalog_row_[static_cast<std::size_t>(id)] = catalog_->find(items.external(id));
    joined += catalog_row_[static_cast<std::size_t>(id)] >= 0;
  }
  if (joined == 0)
    throw DataError(catalog_->path() + ": none of the retrieval model's " + std::to_string(items.size()) +
                    " items is in the catalog (are both from the same data? e.g. catalog item '" + catalog_->item(0) +
                    "', model item '" + items.external(1) + "')");
  // The item side of every catalog row is featurized once, here: the
  // features that read only the catalog's columns (or a bias column, always
  // missing). A request featurizes only the rest (the context's, and crosses
  // of an item column with a context column). A value the ranker's
  // preprocessing cannot read is refused now, with its line.
  const std::size_t ncols = ranker_->parser().columns().size();
  std::vector<char> item_column(ncols, 0);
  for (std::size_t k = 0; k < ncols; ++k)
    item_column[k] = catalog_->has_column(static_cast<std::int64_t>(k)) || ranker_->parser().bias_columns()[k];
  const data::Preprocessor& pre = ranker_->preprocessor();
  split_ = pre.split_features(ranker_->binding(), item_column);
  item_rows_ = data::FeaturizedData(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
  // In chunks, so the memory beside the featurized rows is bounded whatever
  // the catalog's size. Each chunk is then scored once with an empty
  // context, to refuse an item the model scores NaN. A context column the
  // ranker needs (a numeric feature that refuses missing values) cannot be
  // checked without a request: then scoring stops, and the column is
  // remembered (context_needed()).
  ParsedRequest chunk;
  chunk.context.assign(ncols, {});
  chunk.context_set.assign(ncols, 0);
  std::vector<std::int64_t> row_of;
  constexpr std::int64_t kChunk = 1024;
  for (std::int64_t begin = 0; begin < catalog_->size(); begin += kChunk) {
    const std::int64_t end = std::min(catalog_->size(), begin + kChunk);
    chunk.candidates = end - begin;
    chunk.values.assign(catalog_->values(begin), catalog_->values(end - 1) + ncols);
    chunk.set.assign(catalog_->set(begin), catalog_->set(end - 1) + ncols);
    const ItemSide write_items{&split_, nullptr, nullptr};
    try {
      ranker_->parser().featurize(pre, ranker_->binding(), chunk, 0, end - begin, item_rows_, &write_items);
    } catch (const CandidateValueError& e) {
      const std::int64_t row = begin + e.candidate;
      throw DataError(catalog_->path() + ":" + std::to_string(catalog_->line(row)) + ": item '" + catalog_->item(row) +
                      "'" + (e.column.empty() ? "" : ", column '" + e.column + "'") + ": the ranker cannot read it: " +
                      e.reason);
    }
    if (!context_needed_.empty()) continue;
    row_of.resize(static_cast<std::size_t>(end - begin));
    for (std::int64_t r = begin; r < end; ++r) row_of[static_cast<std::size_t>(r - begin)] = r;
    const ItemSide read_items = item_side(row_of.data());
    RankResult scored;
    try {
      scored = ranker_->rank(chunk, &read_items);
    } catch (const CandidateValueError& e) {
      context_needed_ = e.column.empty() ? "?" : e.column;
      continue;
    }
    for (const RankedCandidate& c : scored.results)
      for (float v : c.tasks)
        if (!std::isfinite(v))
          throw DataError(catalog_->path() + ":" + std::to_string(catalog_->line(begin + c.index)) + ": item '" +
                          catalog_->item(begin + c.index) + "': the ranker scores it NaN or infinity");
  }
  models_ = R"(,"model":)" + json{{"name", ranker_->name()}, {"version", ranker_->version()}}.dump(-1, ' ', false, json::error_handler_t::replace) +
            R"(,"retrieval_model":)" +
            json{{"name", retrieval_name_}, {"version", retriever_->version()}}.dump(-1, ' ', false, json::error_handler_t::replace) + "}";
}

std::string Recommender::recommend_json(const std::string& body, const UserStateStore* store) const {
  thread_local ParsedRequest this_thread_request;  // reused: no per-request allocation of its vectors
  ParsedRequest& req = this_thread_request;
  RecommendRequest fields;
  ranker_->parser().parse_recommend(body, options_.max_retrieve, fields, req);
  Retrieved got;
  if (fields.user) {
    if (!store)
      throw RequestError("user: this server keeps no user state (start it with --state-dir); send the history instead");
    const std::optional<UserState> state = store->get(*fields.user);
    if (!state)
      throw NotFoundError("user " + json_text(*fields.user) +
                          ": no events of this user; POST them to /v1/events first, or send the history");
    got = retriever_->retrieve_for(*state, fields.retrieve, fields.width);
  } else {
    got = retriever_->retrieve(*fields.history, fields.retrieve, fields.width);
  }
  // Each retrieved item with its catalog row; items the catalog lacks are left out (counted).
  const std::size_t ncols = ranker_->parser().columns().size();
  std::vector<std::size_t> hit_of;  // per candidate: its hit
  std::vector<std::int64_t> row_of;  // per candidate: its catalog row
  hit_of.reserve(got.hits.size());
  row_of.reserve(got.hits.size());
  req.values.resize(got.hits.size() * ncols);
  req.set.resize(got.hits.size() * ncols);
  for (std::size_t h = 0; h < got.hits.size(); ++h) {
    const std::int64_t row = catalog_row_[static_cast<std::size_t>(got.hits[h].item)];
    if (row < 0) continue;
    const std::size_t at = hit_of.size() * ncols;
    std::copy(catalog_->values(row), catalog_->values(row) + ncols, req.values.begin() + static_cast<std::ptrdiff_t>(at));
    std::copy(catalog_->set(row), catalog_->set(row) + ncols, req.set.begin() + static_cast<std::ptrdiff_t>(at));
    hit_of.push_back(h);
    row_of.push_back(row);
  }
  req.candidates = static_cast<std::int64_t>(hit_of.size());
  req.top_k = fields.k;
  RankResult ranked;
  if (req.candidates > 0) {
    try {
      const ItemSide items = item_side(row_of.data());
      ranked = ranker_->rank(req, &items);
    } catch (const CandidateValueError& e) {  // the item side was read at load: a context value
      throw RequestError("context" + (e.column.empty() ? "" : "." + e.column) + ": " + e.reason);
    }
  }
  std::string out = R"({"results":[)";
  out.reserve(64 + ranked.results.size() * (80 + 28 * ranker_->tasks().size()) + models_.size());
  for (std::size_t i = 0; i < ranked.results.size(); ++i) {
    const RankedCandidate& r = ranked.results[i];
    const retrieve::Hit& hit = got.hits[hit_of[static_cast<std::size_t>(r.index)]];
    out += i ? R"(,{"item":)" : R"({"item":)";
    out += json_text(retriever_->item_name(hit.item));
    out += R"(,"score":)";
    append_json_number(out, r.score);
    out += R"(,"retrieval_score":)";
    append_json_number(out, hit.score);
    out += ',';
    ranker_->append_tasks_json(out, r);
    out += '}';
  }
  out += R"(],"retrieved":)";
  append_json_number(out, static_cast<std::int64_t>(got.hits.size()));
  out += R"(,"not_in_catalog":)";
  append_json_number(out, static_cast<std::int64_t>(got.hits.size() - hit_of.size()));
  out += R"(,"unknown_history_items":)";
  append_json_number(out, got.unknown_items);
  out += R"(,"width":)";
  append_json_number(out, fields.width ? fields.width : retriever_->default_width());
  out += models_;
  return out;
}

std::string Recommender::event_json(const std::string& body, UserStateStore& store) const {
  const EventRequest event = parse_event(body);
  bool known = false, duplicate = false;
  const UserState state = store.update(event.user, [&](UserState& s) {
    if (!event.event_id.empty()) {
      // A retry of an event whose acknowledgement was lost is applied once.
      duplicate = std::find(s.event_ids.begin(), s.event_ids.end(), event.event_id) != s.event_ids.end();
      if (duplicate) return;
      s.event_ids.push_back(event.event_id);
      if (s.event_ids.size() > kKeptEventIds) s.event_ids.erase(s.event_ids.begin());
    }
    known = retriever_->advance(s, event.item, options_.history_window);
  });
  std::string out = R"({"user":)" + json_text(event.user) + R"(,"events":)";
  append_json_number(out, state.events);
  out += known ? R"(,"known_item":true)" : R"(,"known_item":false)";
  out += duplicate ? R"(,"duplicate":true})" : R"(,"duplicate":false})";
  return out;
}

}  // namespace mtrank::serve
