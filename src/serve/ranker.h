#pragma once
// In-process ranking: a request (shared context + a list of candidates, raw
// feature values by input column name) is featurized with the model's saved
// preprocessing, scored in parallel chunks, and its candidates are ordered by
// one score combined from the task predictions. The HTTP server wraps this.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "serve/request.h"
#include "model/model_dir.h"

namespace mtrank::serve {

// How task predictions become one ranking score (YouTube's hand-tuned combination).
//   "sum:click=1,like=0.5"      score = sum_k w_k p_k
//   "product:click=1,watch=0.3" score = prod_k p_k ^ w_k   (tasks without a weight are left out)
struct ScoreFormula {
  bool product = false;
  std::vector<double> weights;  // per task, in model order
  // Parses the text against the model's task names; throws ConfigError naming the bad part.
  static ScoreFormula parse(const std::string& text, const std::vector<TaskConfig>& tasks);
  double combine(const float* task_values) const;
};

struct RankerOptions {
  std::string score = "";          // formula text; "" = the model config's serve.score (else the sum of all tasks)
  std::int64_t chunk_size = 128;   // candidates per parallel chunk (Wide & Deep's serving; docs/benchmarks.md);
                                   // on a single thread the whole list is one chunk
  std::int64_t max_candidates = 10000;
  bool ignore_unknown_features = false;  // else a feature the model does not read is an error
};

struct RankedCandidate {
  std::int64_t index = 0;  // into the request's candidate list
  double score = 0;
  std::vector<float> tasks;  // per task: probability (binary) or value (regression)
};

struct RankResult {
  std::vector<RankedCandidate> results;  // by score, descending (top_k of them)
  std::int64_t scored = 0;               // candidates scored: all of the request's, whatever top_k keeps
};

class Ranker {
 public:
  Ranker(model::LoadedModel model, RankerOptions options, std::string name);
  Ranker(const Ranker&) = delete;
  Ranker& operator=(const Ranker&) = delete;
  Ranker(Ranker&&) = default;
  // Parses and ranks a JSON request body; throws RequestError on bad input.
  RankResult rank_json(const std::string& body) const;
  // Ranks a request parsed (or built) already: parser() reads its columns.
  // With `items`, the candidates' item side comes featurized (ItemSide, from != nullptr).
  RankResult rank(const ParsedRequest& request, const ItemSide* items = nullptr) const;
  const RequestParser& parser() const { return parser_; }
  // The response body for a result.
  std::string to_json(const RankResult& result) const;
  // Appends "tasks":{"<task>": value, ...} of one ranked candidate (both responses write it).
  void append_tasks_json(std::string& out, const RankedCandidate& r) const;

  const std::vector<TaskConfig>& tasks() const { return model_.config.tasks; }
  const Config& config() const { return model_.config; }
  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  const std::vector<std::string>& input_columns() const { return parser_.columns(); }
  const data::Preprocessor& preprocessor() const { return *model_.preprocessor; }
  const data::ColumnBinding& binding() const { return binding_; }  // of parser().columns()

 private:
  model::LoadedModel model_;
  RankerOptions options_;
  ScoreFormula formula_;
  std::string name_, version_;
  // Response pieces escaped once: {"model":{...},"results":[ and "<task>":
  std::string response_prefix_;
  std::vector<std::string> task_keys_;
  RequestParser parser_;
  data::ColumnBinding binding_;
};

}  // namespace mtrank::serve
