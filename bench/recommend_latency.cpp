// bench_recommend_latency: one request, two stages, in process (no HTTP):
// p50 / p99 of POST /v1/recommend's work (parse, retrieve, join the catalog,
// rank, write the response) beside its parts measured on the same requests:
// retrieval alone, and the ranking stage of the same candidates two ways:
// with each item's features copied from the catalog featurized once at load
// (what the recommender does), and with every item featurized per request
// from its raw catalog values (what it did before).
//   build/bench/bench_recommend_latency RANKER_DIR SEQ_DIR CATALOG [CONTEXT_JSON={}] [threads=1] [requests=400]
// Requests: histories of 20 items drawn at random from the retrieval model's
// items, "k": 10, "retrieve": 200.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "common/system.h"
#include "model/model_dir.h"
#include "model/sequential.h"
#include "serve/recommender.h"

using namespace mtrank;

int main(int argc, char** argv) {
  ensure_fast_blas(argc, argv);
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s RANKER_DIR SEQ_DIR CATALOG [CONTEXT_JSON={}] [threads=1] [requests=400]\n", argv[0]);
    return 2;
  }
  const nlohmann::json context = nlohmann::json::parse(argc > 4 ? argv[4] : "{}");
  const int threads = argc > 5 ? std::stoi(argv[5]) : 1;
  const int requests = argc > 6 ? std::stoi(argv[6]) : 400;
  configure_threads(threads);
  auto ranker = std::make_shared<const serve::Ranker>(model::load_model_dir(argv[1]), serve::RankerOptions{}, "ranker");
  auto retriever = std::make_shared<const serve::Retriever>(model::load_sequential_model_dir(argv[2]), serve::RetrieverOptions{});
  auto catalog = std::make_shared<const serve::Catalog>(argv[3], "item", ranker->input_columns());
  const double load0 = bench::now();
  const serve::Recommender rec(ranker, retriever, catalog, {}, "seq");
  const double load_s = bench::now() - load0;

  const data::ItemVocabulary& items = retriever->model().items;
  std::mt19937 rng(7);
  std::vector<std::string> bodies, rank_bodies;
  std::vector<std::vector<std::string>> histories;
  for (int r = 0; r < 32; ++r) {
    std::vector<std::string> history;
    for (int i = 0; i < 20; ++i) history.push_back(items.external(1 + static_cast<std::int32_t>(rng() % items.size())));
    bodies.push_back(nlohmann::json{{"history", history}, {"context", context}, {"k", 10}, {"retrieve", 200}}.dump());
    // The same candidates as a /v1/rank request carrying each item's catalog values.
    nlohmann::json candidates = nlohmann::json::array();
    for (const retrieve::Hit& h : retriever->retrieve(history, 200).hits) {
      const std::int64_t row = catalog->find(retriever->item_name(h.item));
      if (row < 0) continue;
      nlohmann::json c = nlohmann::json::object();
      for (std::size_t k = 0; k < ranker->input_columns().size(); ++k)
        if (catalog->set(row)[k]) c[ranker->input_columns()[k]] = std::string(catalog->values(row)[k]);
      candidates.push_back(std::move(c));
    }
    rank_bodies.push_back(nlohmann::json{{"context", context}, {"candidates", candidates}, {"top_k", 10}}.dump());
    histories.push_back(std::move(history));
  }
  // The ranking stage alone, both ways, on the same candidates.
  const std::vector<std::string>& columns = ranker->input_columns();
  const std::size_t ncols = columns.size();
  std::vector<std::string> context_text(ncols);
  std::vector<serve::ParsedRequest> stage(histories.size());
  std::vector<std::vector<std::int64_t>> stage_rows(histories.size());
  for (std::size_t i = 0; i < histories.size(); ++i) {
    serve::ParsedRequest& req = stage[i];
    req.context.assign(ncols, {});
    req.context_set.assign(ncols, 0);
    for (std::size_t k = 0; k < ncols; ++k)
      if (context.contains(columns[k])) {
        context_text[k] = context[columns[k]].is_string() ? context[columns[k]].get<std::string>() : context[columns[k]].dump();
        req.context[k] = context_text[k];
        req.context_set[k] = 1;
      }
    for (const retrieve::Hit& h : retriever->retrieve(histories[i], 200).hits) {
      const std::int64_t row = catalog->find(retriever->item_name(h.item));
      if (row < 0) continue;
      req.values.insert(req.values.end(), catalog->values(row), catalog->values(row) + ncols);
      req.set.insert(req.set.end(), catalog->set(row), catalog->set(row) + ncols);
      stage_rows[i].push_back(row);
      ++req.candidates;
    }
    req.top_k = 10;
  }
  std::vector<double> copied_ms, per_request_ms;
  for (int r = 0; r < requests + 20; ++r) {
    const std::size_t i = static_cast<std::size_t>(r) % stage.size();
    const serve::ItemSide read = rec.item_side(stage_rows[i].data());
    const double t0 = bench::now();
    const serve::RankResult a = ranker->rank(stage[i], &read);
    const double t1 = bench::now();
    const serve::RankResult b = ranker->rank(stage[i]);
    const double t2 = bench::now();
    if (a.results.empty() || b.results.empty() || a.results[0].index != b.results[0].index) return 1;
    if (r < 20) continue;
    copied_ms.push_back((t1 - t0) * 1e3);
    per_request_ms.push_back((t2 - t1) * 1e3);
  }

  std::vector<double> recommend_ms, retrieve_ms, rank_ms;
  for (int r = 0; r < requests + 20; ++r) {
    const std::size_t i = static_cast<std::size_t>(r) % bodies.size();
    const double t0 = bench::now();
    const std::string response = rec.recommend_json(bodies[i], nullptr);
    const double t1 = bench::now();
    const serve::Retrieved got = retriever->retrieve(histories[i], 200);
    const double t2 = bench::now();
    const serve::RankResult ranked = ranker->rank_json(rank_bodies[i]);
    const std::string rank_response = ranker->to_json(ranked);
    const double t3 = bench::now();
    if (response.empty() || got.hits.empty() || rank_response.empty()) return 1;
    if (r < 20) continue;  // warm-up
    recommend_ms.push_back((t1 - t0) * 1e3);
    retrieve_ms.push_back((t2 - t1) * 1e3);
    rank_ms.push_back((t3 - t2) * 1e3);
  }
  std::printf("ranker %s, retrieval %s (%d items), catalog %s (%lld rows, featurized in %.3f s at load), %d thread%s, %d requests\n",
              argv[1], argv[2], static_cast<int>(items.size()), argv[3], static_cast<long long>(catalog->size()), load_s,
              threads, threads == 1 ? "" : "s", requests);
  std::printf("%-58s %8s %8s\n", "", "p50 ms", "p99 ms");
  const auto row = [](const char* what, const std::vector<double>& ms) {
    std::printf("%-58s %8.3f %8.3f\n", what, bench::percentile(ms, 0.5), bench::percentile(ms, 0.99));
  };
  row("recommend (retrieve 200, join, rank, respond)", recommend_ms);
  row("  retrieval alone", retrieve_ms);
  row("  ranking stage: item side copied (featurized at load)", copied_ms);
  row("  ranking stage: every item featurized per request", per_request_ms);
  row("/v1/rank of those items (parse, featurize, rank, respond)", rank_ms);
  return 0;
}
