#pragma once
// Retrieval with a sequential model (issue 12): its item table as the
// torch-free retrieve::ItemTable the item indexes read, and users' queries.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/sequential_dir.h"
#include "retrieve/item_index.h"
#include "serve/user_state.h"

namespace mtrank::model {
class SequentialRecommenderImpl;
}

namespace mtrank::serve {

// The model's item representation (item_table(): ids, features and projected
// vectors summed) and its per-item bias, as floats: row r = model item id r.
// Index scores then equal the model's scores_by_width at every width.
retrieve::ItemTable item_table_of(model::SequentialRecommenderImpl& net);

// The query of each history (model ids, oldest first; its last max_len items
// are the input window, left-padded): the hidden state at the last position,
// row-major [histories, D]. `table`: item_table_of(net), when the caller
// holds it (else the model computes it, which with item features costs a pass
// over the catalog). The model must be in eval mode (a loaded one is):
// switching modes here would race with other threads' requests. Throws
// std::invalid_argument otherwise and for a batch_size below 1.
std::vector<float> queries_of(model::SequentialRecommenderImpl& net, const std::vector<std::vector<std::int32_t>>& histories,
                              int max_len, std::int64_t batch_size = 256, const retrieve::ItemTable* table = nullptr);

// The model ids of external item ids, oldest first; ids the model does not
// know are skipped and counted in *unknown. For a model trained on a `user
// item` log, whose ids were read as numbers, "010" is tried as "10" too.
std::vector<std::int32_t> known_items(const model::LoadedSequentialModel& model, const std::vector<std::string>& names,
                                      std::int64_t* unknown);

struct RetrieverOptions {
  // An index of retrieve::index_registry(). Exact by default: on the
  // catalogs measured so far (57,289 items at d 64, docs/benchmarks.md) it
  // takes 4 ms and the funnel paid only 1.5x at 0.97 recall; the funnel wins
  // on wide tables of millions of items.
  // "" (and empty funnel_widths / funnel_keep): the model config's [serve]
  // index and funnel settings; their defaults: exact, {smallest, full}, 1000.
  std::string index;
  retrieve::IndexOptions index_options;
  // The Matryoshka widths a request may ask for ("width"), each searched
  // exactly at its prefix (a copy of the table's prefix: rows x width floats
  // each); the full width is `index`. Empty: every width of the model.
  std::vector<std::int64_t> widths;
  // > 0: at start, time a search at each width (p99 of 64 one-query
  // searches) and make the widest within this many milliseconds the default;
  // if none fits, the narrowest. 0: the full width is the default.
  double latency_budget_ms = 0;
};

struct Retrieved {
  std::vector<retrieve::Hit> hits;  // model item ids, best first
  std::int64_t unknown_items = 0;   // history items the model does not know (skipped)
};

// A sequential model and an item index over its item table: the items to
// follow a user's history, the history's own items left out.
class Retriever {
 public:
  // Throws ConfigError for bad index settings.
  Retriever(model::LoadedSequentialModel model, RetrieverOptions options);
  // history: external item ids, oldest first (its last max_len known items
  // are the model's input). Throws RequestError when no item of it is known.
  // width: a served width (widths()), or 0 for default_width(); throws
  // RequestError for another.
  Retrieved retrieve(const std::vector<std::string>& history, std::int64_t k, std::int64_t width = 0) const;
  // For a user's live state: its query when it was computed by this model,
  // else (after a model change) the query of its recent items' window; the
  // recent items are left out. Throws RequestError when no recent item is known.
  Retrieved retrieve_for(const UserState& state, std::int64_t k, std::int64_t width = 0) const;
  // One event: the model's one-step update advances the state (O(d^2) a
  // block, no replay of the history) and its query, and `item` joins the
  // recent items (at most `window` kept). A state of another model (or none)
  // is first rebuilt by stepping through its recent items. An item the model
  // does not know joins the recent items without advancing the state;
  // returns whether it was known.
  bool advance(UserState& state, const std::string& item, std::size_t window) const;
  // The model's identity in user states: its meta's model_version, or a
  // checksum of its meta for a model written before versions.
  const std::string& version() const { return version_; }
  const std::string& item_name(std::int64_t id) const { return model_.items.external(static_cast<std::int32_t>(id)); }
  const retrieve::ItemIndex& index() const { return *index_; }
  const std::vector<std::int64_t>& widths() const { return widths_; }  // served, increasing
  std::int64_t default_width() const { return default_width_; }
  // With a latency budget: the p99 milliseconds measured at each served width.
  const std::vector<double>& width_p99_ms() const { return width_p99_ms_; }
  const model::LoadedSequentialModel& model() const { return model_; }

 private:
  model::LoadedSequentialModel model_;
  // On the heap: the index holds its address (and the rows in it), which a
  // move of the Retriever must not change.
  std::unique_ptr<const retrieve::ItemTable> table_;
  std::unique_ptr<retrieve::ItemIndex> index_;
  std::vector<std::int64_t> widths_;
  std::vector<std::unique_ptr<retrieve::ItemIndex>> narrow_;  // per served width but the full one: exact at its prefix
  std::int64_t default_width_ = 0;
  std::vector<double> width_p99_ms_;
  std::string version_;
  const retrieve::ItemIndex& index_at(std::int64_t width) const;
  Retrieved search(const std::vector<float>& query, const std::vector<std::int32_t>& history, std::int64_t k,
                   std::int64_t width) const;
};

}  // namespace mtrank::serve
