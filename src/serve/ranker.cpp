#include "serve/ranker.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>
#include <torch/torch.h>

#include "common/error.h"
#include "model/batch.h"

namespace mtrank::serve {

using nlohmann::json;

ScoreFormula ScoreFormula::parse(const std::string& text, const std::vector<TaskConfig>& tasks) {
  ScoreFormula f;
  f.weights.assign(tasks.size(), 0.0);
  if (text.empty()) {
    f.weights.assign(tasks.size(), 1.0);
    return f;
  }
  const auto colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  if (kind != "sum" && kind != "product")
    throw ConfigError("score formula '" + text + "': starts with 'sum:' or 'product:', e.g. 'sum:click=1,like=0.5'");
  f.product = kind == "product";
  if (colon == std::string::npos) {
    f.weights.assign(tasks.size(), 1.0);
    return f;
  }
  std::stringstream terms(text.substr(colon + 1));
  std::string term;
  while (std::getline(terms, term, ',')) {
    const auto eq = term.find('=');
    const std::string name = term.substr(0, eq);
    auto it = std::find_if(tasks.begin(), tasks.end(), [&](const TaskConfig& t) { return t.name == name; });
    if (it == tasks.end()) throw ConfigError("score formula '" + text + "': the model has no task '" + name + "'");
    double w = 1.0;
    if (eq != std::string::npos) {
      try {
        std::size_t used = 0;
        w = std::stod(term.substr(eq + 1), &used);
        if (used != term.size() - eq - 1 || !std::isfinite(w)) throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw ConfigError("score formula '" + text + "': weight of '" + name + "' is not a number");
      }
    }
    f.weights[static_cast<std::size_t>(it - tasks.begin())] = w;
  }
  return f;
}

double ScoreFormula::combine(const float* v) const {
  double s = product ? 1.0 : 0.0;
  for (std::size_t k = 0; k < weights.size(); ++k) {
    if (weights[k] == 0) continue;
    if (product) s *= std::pow(std::max(static_cast<double>(v[k]), 1e-12), weights[k]);
    else s += weights[k] * v[k];
  }
  return s;
}

// The parsed request: views into the thread's simdjson parser (strings) and
// into `numbers` (numbers formatted back to text), valid during rank_json.
struct Ranker::Request {
  std::vector<std::string_view> context;  // per input column
  std::vector<char> context_set;
  std::vector<std::string_view> values;   // [candidate * columns + column]
  std::vector<char> set;
  std::vector<std::string> numbers;       // reserved up front: views into it stay valid
  std::int64_t candidates = 0;
  std::int64_t top_k = -1;
};

Ranker::Ranker(train::LoadedModel model, RankerOptions options, std::string name)
    : model_(std::move(model)), options_(options), name_(std::move(name)) {
  formula_ = ScoreFormula::parse(options_.score, model_.config.tasks);
  version_ = model_.meta.value("model_version", std::string("unversioned"));
  // The raw input columns the model reads, each once.
  auto add = [&](const std::string& c) {
    if (std::find(columns_.begin(), columns_.end(), c) == columns_.end()) columns_.push_back(c);
  };
  for (const FeatureConfig& f : model_.config.features) {
    if (f.type == FeatureType::kCross)
      for (const auto& c : f.columns) add(c);
    else
      add(f.name);
  }
  for (std::size_t i = 0; i < columns_.size(); ++i) column_index_.emplace(columns_[i], i);
  binding_ = model_.preprocessor->bind(columns_, "request", /*require_labels=*/false);
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

void Ranker::parse(const std::string& body, Request& r) const {
  // simdjson (SIMD, no per-value allocation) instead of a DOM of heap objects:
  // nlohmann::json took 2.7 ms to parse a 200-candidate census request.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(body).get(root))
    throw RequestError(std::string("malformed JSON: ") + simdjson::error_message(err));
  simdjson::dom::object top;
  if (root.get_object().get(top)) throw RequestError("the request body must be a JSON object");
  const std::size_t ncols = columns_.size();
  auto fill = [&](simdjson::dom::element e, std::string_view* values, char* set, const auto& where) {
    simdjson::dom::object obj;
    if (e.get_object().get(obj)) throw RequestError(where() + ": must be an object of feature values");
    for (auto field : obj) {
      auto it = column_index_.find(field.key);
      if (it == column_index_.end()) {
        if (options_.ignore_unknown_features) continue;
        throw RequestError(where() + "." + std::string(field.key) + ": unknown feature (this model reads " +
                           std::to_string(ncols) + " input columns, e.g. '" + columns_.front() + "')");
      }
      const std::size_t k = it->second;
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
  simdjson::dom::element context, candidates, top_k;
  for (auto field : top)
    if (field.key != "context" && field.key != "candidates" && field.key != "top_k")
      throw RequestError(std::string(field.key) + ": unknown field (a request has context, candidates and top_k)");
  simdjson::dom::array cands;
  if (top["candidates"].get(candidates)) throw RequestError("candidates: missing (a list of candidate objects)");
  if (candidates.get_array().get(cands)) throw RequestError("candidates: must be a list of candidate objects");
  r.candidates = static_cast<std::int64_t>(cands.size());
  if (r.candidates > options_.max_candidates)
    throw RequestError("candidates: " + std::to_string(r.candidates) + " candidates, more than the limit of " +
                       std::to_string(options_.max_candidates));
  r.numbers.clear();
  r.numbers.reserve(static_cast<std::size_t>(r.candidates + 1) * ncols);  // never reallocates: views stay valid
  r.context.assign(ncols, {});
  r.context_set.assign(ncols, 0);
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

RankResult Ranker::rank_json(const std::string& body) const {
  // Reused per calling thread (no per-request allocation). A lambda does not
  // capture a thread_local: the worker threads below must see this thread's
  // request, so they get it through a local reference.
  thread_local Request this_thread_request;
  Request& req = this_thread_request;
  parse(body, req);
  const std::int64_t n = req.candidates;
  const std::size_t ncols = columns_.size();
  const int T = static_cast<int>(model_.config.tasks.size());
  const data::Preprocessor& pre = *model_.preprocessor;
  std::vector<float> values(static_cast<std::size_t>(n * T));
  std::mutex error_mutex;
  std::optional<std::string> error;
  const std::int64_t chunk = std::max<std::int64_t>(1, options_.chunk_size);
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  // One chunk per task of the pool; LibTorch runs each chunk's ops single-threaded inside it.
  at::parallel_for(0, chunks, 1, [&](std::int64_t first, std::int64_t last) {
    c10::InferenceMode guard;
    std::vector<std::string_view> fields(ncols);
    for (std::int64_t c = first; c < last; ++c) {
      const std::int64_t begin = c * chunk, end = std::min(n, begin + chunk);
      data::FeaturizedData d(pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks());
      for (std::int64_t i = begin; i < end; ++i) {
        // The candidate's value wins over the context's; neither means missing ("").
        const std::size_t row = static_cast<std::size_t>(i) * ncols;
        for (std::size_t k = 0; k < ncols; ++k)
          fields[k] = req.set[row + k] ? req.values[row + k] : req.context_set[k] ? req.context[k] : std::string_view();
        try {
          pre.transform(binding_, fields, d);
        } catch (const data::RowError& e) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) {
            const std::string column = e.column >= 0 ? "." + columns_[static_cast<std::size_t>(e.column)] : "";
            error = "candidates[" + std::to_string(i) + "]" + column + ": " + e.message;
          }
          return;
        }
      }
      model::BatchBuilder builder;
      model::Batch batch = builder.build_range(d, 0, d.rows());
      torch::Tensor logits = model_.net->forward(batch, nullptr).logits;
      for (int t = 0; t < T; ++t) {
        torch::Tensor z = logits.select(1, t);
        if (model_.config.tasks[static_cast<std::size_t>(t)].type == TaskType::kBinary) z = torch::sigmoid(z);
        z = z.contiguous();
        const float* p = z.data_ptr<float>();
        for (std::int64_t i = begin; i < end; ++i) values[static_cast<std::size_t>(i * T + t)] = p[i - begin];
      }
    }
  });
  if (error) throw RequestError(*error);
  RankResult out;
  out.results.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    RankedCandidate& r = out.results[static_cast<std::size_t>(i)];
    r.index = i;
    r.tasks.assign(values.begin() + i * T, values.begin() + (i + 1) * T);
    r.score = formula_.combine(r.tasks.data());
  }
  const std::size_t keep = req.top_k > 0 ? std::min<std::size_t>(static_cast<std::size_t>(req.top_k), out.results.size())
                                         : out.results.size();
  auto by_score = [](const RankedCandidate& a, const RankedCandidate& b) {
    return a.score != b.score ? a.score > b.score : a.index < b.index;  // ties: request order
  };
  std::partial_sort(out.results.begin(), out.results.begin() + static_cast<std::ptrdiff_t>(keep), out.results.end(),
                    by_score);
  out.results.resize(keep);
  return out;
}

std::string Ranker::to_json(const RankResult& result) const {
  json results = json::array();
  for (const RankedCandidate& r : result.results) {
    json tasks = json::object();
    for (std::size_t t = 0; t < r.tasks.size(); ++t) tasks[model_.config.tasks[t].name] = r.tasks[t];
    results.push_back({{"index", r.index}, {"score", r.score}, {"tasks", tasks}});
  }
  return json{{"model", {{"name", name_}, {"version", version_}}}, {"results", results}}.dump();
}

}  // namespace mtrank::serve
