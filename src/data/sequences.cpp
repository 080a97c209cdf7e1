#include "data/sequences.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/record_reader.h"

namespace mtrank::data {

std::int32_t ItemVocabulary::add(std::string_view external) {
  const std::string key(external);
  if (auto it = ids_.find(key); it != ids_.end()) return it->second;
  names_.push_back(key);
  const auto id = static_cast<std::int32_t>(names_.size());
  ids_.emplace(key, id);
  return id;
}

std::int32_t ItemVocabulary::find(std::string_view external) const {
  auto it = ids_.find(std::string(external));
  return it == ids_.end() ? 0 : it->second;
}

nlohmann::json ItemVocabulary::to_json() const { return names_; }

ItemVocabulary ItemVocabulary::from_json(const nlohmann::json& j) {
  if (!j.is_array()) throw std::invalid_argument("item vocabulary: expected an array of item ids");
  ItemVocabulary v;
  for (std::size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) throw std::invalid_argument("item vocabulary: entry " + std::to_string(i) + " is not a string");
    const std::string& name = j[i].get_ref<const std::string&>();
    if (v.find(name) != 0) throw std::invalid_argument("item vocabulary: item '" + name + "' appears twice");
    v.add(name);
  }
  return v;
}

std::string canonical_integer(std::string_view s) {
  std::uint64_t v;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size() ? std::to_string(v) : std::string();
}

namespace {

// Users in first-appearance order.
std::size_t user_index(Interactions& out, std::unordered_map<std::string, std::size_t>& users, std::string_view user) {
  auto [it, added] = users.emplace(std::string(user), out.users.size());
  if (added) {
    out.users.emplace_back(user);
    out.histories.emplace_back();
  }
  return it->second;
}

}  // namespace

Interactions read_user_item_lines(const FileList& files) {
  ReaderOptions options;
  options.delimiter = ' ';
  options.has_header = false;
  RecordReader reader(expand_files(files), options);
  Interactions out;
  std::unordered_map<std::string, std::size_t> users;
  std::vector<std::string_view> f;
  while (reader.next(f)) {
    const std::string where = reader.path() + ":" + std::to_string(reader.line()) + ": ";
    if (f.size() != 2)
      throw DataError(where + "expected 'user item' (two fields separated by one space), got " +
                      std::to_string(f.size()) + " field" + (f.size() == 1 ? "" : "s"));
    std::string ids[2];
    for (int k = 0; k < 2; ++k)
      if ((ids[k] = canonical_integer(f[k])).empty())
        throw DataError(where + (k == 0 ? "user" : "item") + " id '" + std::string(f[k].substr(0, 40)) +
                        "' is not a non-negative integer (this format has integer ids; a log with other ids is a "
                        "CSV/TSV with a header, read by column names)");
    out.histories[user_index(out, users, ids[0])].push_back(out.items.add(ids[1]));
    ++out.events;
  }
  if (out.events == 0) throw DataError(describe(files) + ": no interactions (expected 'user item' lines)");
  return out;
}

Interactions read_interaction_table(const FileList& files, const InteractionColumns& columns) {
  RecordReader reader(expand_files(files));
  const auto& header = reader.header();
  auto column = [&](const std::string& name, const std::string& role) {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<int>(i);
    std::string known;
    for (const auto& h : header) known += (known.empty() ? "" : ", ") + h;
    throw DataError(reader.path() + ":1: missing column '" + name + "' (" + role + "); the header has: " + known);
  };
  const int user_col = column(columns.user, "the user"), item_col = column(columns.item, "the item");
  const int time_col = columns.time.empty() ? -1 : column(columns.time, "the time of the event");
  const int needed = std::max({user_col, item_col, time_col}) + 1;
  struct Event {
    double time;
    std::int64_t order;
    std::int32_t item;
  };
  std::vector<std::vector<Event>> events;
  Interactions out;
  std::unordered_map<std::string, std::size_t> users;
  std::vector<std::string_view> f;
  std::int64_t order = 0;
  while (reader.next(f)) {
    const auto fail = [&](int col, const std::string& what) {
      throw DataError(reader.path() + ":" + std::to_string(reader.line()) + ":" + std::to_string(col + 1) + ": column '" +
                      header[static_cast<std::size_t>(col)] + "': " + what);
    };
    if (static_cast<int>(f.size()) < needed)
      throw DataError(reader.path() + ":" + std::to_string(reader.line()) + ": " + std::to_string(f.size()) +
                      " fields, fewer than the header's columns read here");
    if (f[user_col].empty()) fail(user_col, "empty user id");
    if (f[item_col].empty()) fail(item_col, "empty item id");
    double t = static_cast<double>(order);
    if (time_col >= 0) {
      const std::string_view raw = f[time_col];
      const auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), t);
      if (raw.empty() || ec != std::errc() || end != raw.data() + raw.size() || !std::isfinite(t))
        fail(time_col, "'" + std::string(raw.substr(0, 40)) + "' is not a number (a timestamp)");
    }
    const std::size_t u = user_index(out, users, f[user_col]);
    if (events.size() < out.users.size()) events.resize(out.users.size());
    events[u].push_back({t, order++, out.items.add(f[item_col])});
  }
  if (order == 0) throw DataError(describe(files) + ": no interactions (the file has a header only)");
  for (std::size_t u = 0; u < events.size(); ++u) {
    auto& e = events[u];
    std::stable_sort(e.begin(), e.end(), [](const Event& a, const Event& b) { return a.time < b.time; });
    for (const Event& x : e) out.histories[u].push_back(x.item);
  }
  out.events = order;
  return out;
}

LeaveOneOut leave_one_out(const Interactions& interactions) {
  LeaveOneOut s;
  const std::size_t n = interactions.histories.size();
  s.train.resize(n);
  s.val.assign(n, 0);
  s.test.assign(n, 0);
  for (std::size_t u = 0; u < n; ++u) {
    const auto& h = interactions.histories[u];
    if (h.size() < 3) {
      s.train[u] = h;
      ++s.users_train_only;
      continue;
    }
    s.train[u].assign(h.begin(), h.end() - 2);
    s.val[u] = h[h.size() - 2];
    s.test[u] = h.back();
  }
  return s;
}

TrainingWindows training_windows(const std::vector<std::vector<std::int32_t>>& histories, int max_len, int step) {
  if (max_len < 1 || step < 1) throw std::invalid_argument("training_windows: max_len and step must be >= 1");
  TrainingWindows w;
  w.max_len = max_len;
  const auto L = static_cast<std::size_t>(max_len);
  auto add = [&](const std::int32_t* seq, std::size_t n) {
    // LRURec: labels = seq[-L:], inputs = seq[:-1][-L:], each left-padded to L.
    const std::size_t labels = std::min(n, L), inputs = std::min(n - 1, L);
    w.inputs.insert(w.inputs.end(), L - inputs, 0);
    w.inputs.insert(w.inputs.end(), seq + (n - 1 - inputs), seq + (n - 1));
    w.labels.insert(w.labels.end(), L - labels, 0);
    w.labels.insert(w.labels.end(), seq + (n - labels), seq + n);
  };
  for (const auto& h : histories) {
    if (h.empty()) continue;  // a single item is one sample: predicted from the empty state, as in LRURec
    if (h.size() < L + static_cast<std::size_t>(step)) {
      add(h.data(), h.size());
      continue;
    }
    // Windows of L items: start at n - L, then n - L - step, ..., down to >= 0.
    for (std::int64_t start = static_cast<std::int64_t>(h.size() - L); start >= 0; start -= step)
      add(h.data() + start, L);
  }
  return w;
}

std::vector<std::int32_t> input_window(const std::vector<std::int32_t>& history, int max_len) {
  const auto L = static_cast<std::size_t>(std::max(max_len, 0));
  const std::size_t n = std::min(history.size(), L);
  std::vector<std::int32_t> out(L - n, 0);
  out.insert(out.end(), history.end() - static_cast<std::ptrdiff_t>(n), history.end());
  return out;
}

std::vector<std::int32_t> map_items(const ItemVocabulary& items, const std::vector<std::string>& external,
                                    std::int64_t* unknown) {
  std::vector<std::int32_t> out;
  out.reserve(external.size());
  for (const auto& e : external) {
    const std::int32_t id = items.find(e);
    if (id == 0) {
      if (unknown) ++*unknown;
      continue;
    }
    out.push_back(id);
  }
  return out;
}

}  // namespace mtrank::data
