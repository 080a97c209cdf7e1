#include "serve/retriever.h"

#include <torch/torch.h>

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <stdexcept>

#include "common/error.h"
#include "data/sequences.h"
#include "model/sequential.h"
#include "serve/request.h"
#include "train/sequential_run.h"

namespace mtrank::serve {

retrieve::ItemTable item_table_of(model::SequentialRecommenderImpl& net) {
  torch::NoGradGuard no_grad;
  const torch::Tensor table = net.item_table().contiguous();
  retrieve::ItemTable out;
  out.rows = table.size(0);
  out.dim = table.size(1);
  out.vectors.assign(table.data_ptr<float>(), table.data_ptr<float>() + table.numel());
  if (net.item_bias().defined()) {
    const torch::Tensor bias = net.item_bias().contiguous();
    out.bias.assign(bias.data_ptr<float>(), bias.data_ptr<float>() + bias.numel());
  }
  return out;
}

std::vector<float> queries_of(model::SequentialRecommenderImpl& net, const std::vector<std::vector<std::int32_t>>& histories,
                              int max_len, std::int64_t batch_size, const retrieve::ItemTable* items) {
  if (net.is_training()) throw std::invalid_argument("queries_of: the model is in training mode");
  if (batch_size < 1) throw std::invalid_argument("queries_of: batch_size must be at least 1");
  torch::NoGradGuard no_grad;
  const torch::Tensor table =
      items ? torch::from_blob(const_cast<float*>(items->vectors.data()), {items->rows, items->dim}) : net.item_table();
  const std::int64_t d = table.size(1), n = static_cast<std::int64_t>(histories.size());
  std::vector<float> out(static_cast<std::size_t>(n * d));
  for (std::int64_t begin = 0; begin < n; begin += batch_size) {
    const std::int64_t end = std::min(n, begin + batch_size);
    std::vector<std::int64_t> windows;
    for (std::int64_t u = begin; u < end; ++u)
      for (std::int32_t id : data::input_window(histories[static_cast<std::size_t>(u)], max_len)) windows.push_back(id);
    const torch::Tensor tokens = torch::tensor(windows, torch::kInt64).view({end - begin, max_len});
    const torch::Tensor last = net.forward(tokens, table).select(1, max_len - 1).contiguous();
    std::copy(last.data_ptr<float>(), last.data_ptr<float>() + last.numel(), out.data() + begin * d);
  }
  return out;
}

std::vector<std::int32_t> known_items(const model::LoadedSequentialModel& model, const std::vector<std::string>& names,
                                      std::int64_t* unknown) {
  const bool numeric = train::is_user_item_log(model.config.data.train);
  std::vector<std::string> mapped = names;
  if (numeric)
    for (std::string& n : mapped)
      if (model.items.find(n) == 0)
        if (std::string canonical = data::canonical_integer(n); !canonical.empty()) n = canonical;
  return data::map_items(model.items, mapped, unknown);
}

Retriever::Retriever(model::LoadedSequentialModel model, RetrieverOptions options)
    : model_(std::move(model)), table_(std::make_unique<const retrieve::ItemTable>(item_table_of(*model_.net))) {
  const std::vector<std::int64_t>& widths = model_.net->options().widths;
  model_.net->eval();  // loaded so already; requests must never switch it
  if (const auto it = model_.meta.find("model_version"); it != model_.meta.end() && it->is_string()) {
    version_ = it->get<std::string>();
  } else {
    const std::string text = model_.meta.dump();
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08lx", crc32(0, reinterpret_cast<const Bytef*>(text.data()), static_cast<uInt>(text.size())));
    version_ = std::string("meta-") + hex;
  }
  const std::string kind = options.index.empty() ? model_.config.serve.index : options.index;
  retrieve::IndexOptions o = options.index_options;
  if (o.funnel_widths.empty()) o.funnel_widths = model_.config.serve.funnel_widths;
  if (o.funnel_keep.empty()) o.funnel_keep = model_.config.serve.funnel_keep;
  if (kind == "funnel") {
    if (o.funnel_widths.empty()) o.funnel_widths = {widths.front(), widths.back()};
    if (o.funnel_keep.empty() && o.funnel_widths.size() > 1) o.funnel_keep.assign(o.funnel_widths.size() - 1, 1000);
  }
  try {
    index_ = retrieve::make_index(kind, *table_, o);
  } catch (const std::invalid_argument& e) {
    throw ConfigError("retrieval index: " + std::string(e.what()));
  }
  widths_ = options.widths.empty() ? widths : options.widths;
  std::sort(widths_.begin(), widths_.end());
  widths_.erase(std::unique(widths_.begin(), widths_.end()), widths_.end());
  for (std::int64_t w : widths_) {
    if (std::find(widths.begin(), widths.end(), w) == widths.end()) {
      std::string have;
      for (std::int64_t m : widths) have += (have.empty() ? "" : ", ") + std::to_string(m);
      throw ConfigError("--request-widths: " + std::to_string(w) + " is not a width of the retrieval model (" + have + ")");
    }
    retrieve::IndexOptions at;
    at.width = w;
    narrow_.push_back(w == table_->dim ? nullptr : retrieve::make_index("exact", *table_, at));
  }
  if (std::find(widths_.begin(), widths_.end(), table_->dim) == widths_.end()) {  // the full width is always served
    widths_.push_back(table_->dim);
    narrow_.push_back(nullptr);
  }
  default_width_ = table_->dim;
  if (options.latency_budget_ms > 0) {
    // One-query searches as requests make them; item vectors stand in for
    // queries (exact search costs the same whatever the values).
    std::vector<float> query(static_cast<std::size_t>(table_->dim));
    default_width_ = widths_.front();
    for (std::size_t i = 0; i < widths_.size(); ++i) {
      const retrieve::ItemIndex& index = narrow_[i] ? *narrow_[i] : *index_;
      std::vector<double> ms;
      for (int r = 0; r < 64; ++r) {
        const float* row = table_->row(1 + r % (table_->rows - 1));
        std::copy(row, row + table_->dim, query.begin());
        const auto start = std::chrono::steady_clock::now();
        index.search(query.data(), 1, table_->dim, 200);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(ms.begin(), ms.end());
      width_p99_ms_.push_back(ms[ms.size() * 99 / 100]);
      if (width_p99_ms_.back() <= options.latency_budget_ms) default_width_ = widths_[i];
    }
  }
}

const retrieve::ItemIndex& Retriever::index_at(std::int64_t width) const {
  if (width == 0) width = default_width_;
  for (std::size_t i = 0; i < widths_.size(); ++i)
    if (widths_[i] == width) return narrow_[i] ? *narrow_[i] : *index_;
  std::string have;
  for (std::int64_t w : widths_) have += (have.empty() ? "" : ", ") + std::to_string(w);
  throw RequestError("width: " + std::to_string(width) + " is not a width this server retrieves at (" + have + ")");
}

Retrieved Retriever::search(const std::vector<float>& query, const std::vector<std::int32_t>& history, std::int64_t k,
                            std::int64_t width) const {
  if (k < 1) throw RequestError("k: must be at least 1, not " + std::to_string(k));
  const retrieve::ItemIndex& index = index_at(width);
  Retrieved out;
  const std::set<std::int32_t> seen(history.begin(), history.end());
  const std::vector<std::vector<std::int64_t>> exclude = {std::vector<std::int64_t>(seen.begin(), seen.end())};
  out.hits = std::move(index.search(query.data(), 1, table_->dim, k, &exclude)[0]);
  return out;
}

Retrieved Retriever::retrieve(const std::vector<std::string>& history, std::int64_t k, std::int64_t width) const {
  index_at(width);  // a bad width is refused before any work
  std::int64_t unknown = 0;
  const std::vector<std::int32_t> ids = known_items(model_, history, &unknown);
  if (ids.empty())
    throw RequestError("history: none of its " + std::to_string(history.size()) +
                       " items is known to the retrieval model, so there is nothing to retrieve from");
  Retrieved out = search(queries_of(*model_.net, {ids}, static_cast<int>(model_.config.sequential.max_len), 1, table_.get()),
                         ids, k, width);
  out.unknown_items = unknown;
  return out;
}

namespace {
torch::Tensor table_tensor(const retrieve::ItemTable& t) {
  return torch::from_blob(const_cast<float*>(t.vectors.data()), {t.rows, t.dim});
}
}  // namespace

Retrieved Retriever::retrieve_for(const UserState& state, std::int64_t k, std::int64_t width) const {
  index_at(width);
  std::int64_t unknown = 0;
  const std::vector<std::int32_t> ids = known_items(model_, state.recent, &unknown);
  Retrieved out;
  if (state.model == version_ && static_cast<std::int64_t>(state.query.size()) == table_->dim) {
    out = search(state.query, ids, k, width);
  } else {
    // A state of an earlier model: its recent items' window is the query, as for a history.
    if (ids.empty())
      throw NotFoundError("user: none of the user's " + std::to_string(state.recent.size()) +
                         " recent items is known to the retrieval model, so there is nothing to retrieve from");
    out = search(queries_of(*model_.net, {ids}, static_cast<int>(model_.config.sequential.max_len), 1, table_.get()), ids, k,
                 width);
  }
  out.unknown_items = unknown;
  return out;
}

bool Retriever::advance(UserState& s, const std::string& item, std::size_t window) const {
  torch::NoGradGuard no_grad;
  model::SequentialRecommenderImpl& net = *model_.net;
  const torch::Tensor table = table_tensor(*table_);
  model::SequentialState state = net.initial_state(1);
  std::int64_t floats = 0;
  for (const torch::Tensor& t : state.lru) floats += 2 * t.size(1);
  auto set_query = [&](const torch::Tensor& hidden) {
    const torch::Tensor h = hidden.contiguous();
    s.query.assign(h.data_ptr<float>(), h.data_ptr<float>() + h.numel());
  };
  if (s.model == version_ && static_cast<std::int64_t>(s.lru.size()) == floats &&
      static_cast<std::int64_t>(s.query.size()) == table_->dim) {
    std::int64_t at = 0;
    for (torch::Tensor& t : state.lru) {
      const torch::Tensor stored = torch::from_blob(s.lru.data() + at, {t.size(0), t.size(1), 2}).clone();
      t = torch::view_as_complex(stored);
      at += 2 * t.size(1);
    }
  } else {
    // No state of this model: step through the recent items (all the history there is).
    s.query.clear();
    std::int64_t ignored = 0;
    for (std::int32_t id : known_items(model_, s.recent, &ignored))
      set_query(net.step(state, torch::tensor({static_cast<std::int64_t>(id)}, torch::kInt64), table));
  }
  std::int64_t unknown = 0;
  const std::vector<std::int32_t> ids = known_items(model_, {item}, &unknown);
  if (!ids.empty()) set_query(net.step(state, torch::tensor({static_cast<std::int64_t>(ids[0])}, torch::kInt64), table));
  s.recent.push_back(item);
  if (window > 0 && s.recent.size() > window)
    s.recent.erase(s.recent.begin(), s.recent.begin() + static_cast<std::ptrdiff_t>(s.recent.size() - window));
  ++s.events;
  s.model = version_;
  s.lru.clear();
  for (const torch::Tensor& t : state.lru) {
    const torch::Tensor re_im = torch::view_as_real(t.contiguous()).contiguous();
    s.lru.insert(s.lru.end(), re_im.data_ptr<float>(), re_im.data_ptr<float>() + re_im.numel());
  }
  return !ids.empty();
}

}  // namespace mtrank::serve
