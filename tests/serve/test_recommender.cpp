// Retrieval and ranking in one request, and users' live state (issue 12):
// a recommendation is the ranker's order of exactly what the retriever
// returns, with the same task values as /v1/rank gives those items; a user's
// state after N events gives what their N-item history gives (the one-step
// update equals the scan); a reopened store keeps every event; bad requests,
// unknown users and bad catalogs are named.
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/error.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "model/model.h"
#include "model/model_dir.h"
#include "model/sequential.h"
#include "serve/recommender.h"
#include "sequential_fixture.h"
#include "test_util.h"
#include "train/sequential_run.h"
#include "train/trainer.h"

using namespace mtrank;
using mtrank::testing::TempDir;
using nlohmann::json;

namespace {

// Ranker: item, genre, tags, year (item columns), hour (context), a cross of
// genre and hour; clicks depend on both. Items 1001..1040 as the sequential
// model's.
const char* const kRankerConfig = R"(
[[features]]
names = ["item", "genre", "hour"]
type = "categorical"
[[features]]
name = "tags"
type = "multi_hot"
[[features]]
name = "year"
type = "numeric"
missing = "error"
[[features]]
name = "genre_x_hour"
type = "cross"
columns = ["genre", "hour"]
hash_buckets = 64
[[tasks]]
name = "click"
column = "click"
[[tasks]]
name = "watch"
type = "regression"
column = "watch"
where = { column = "click", equals = ["1"] }
[model]
type = "shared_bottom"
[train]
epochs = 1
threads = 1
)";

std::string genre_of(int item) { return "g" + std::to_string(item % 4); }
std::string tags_of(int item) { return "t" + std::to_string(item % 3) + (item % 5 ? "|u" + std::to_string(item % 5) : ""); }
std::string year_of(int item) { return std::to_string(1980 + item % 30); }

class Recommending : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    seq_dir_ = mtrank::testing::trained_sequential_model(*dir_, "seq");
    std::mt19937 rng(3);
    std::ostringstream log;
    log << "item,genre,tags,year,hour,click,watch\n";
    for (int r = 0; r < 3000; ++r) {
      const int item = 1001 + static_cast<int>(rng() % 40), hour = static_cast<int>(rng() % 24);
      const bool click = (item % 4 == 0) == (hour < 12) ? rng() % 10 < 7 : rng() % 10 < 2;
      log << item << ',' << genre_of(item) << ',' << tags_of(item) << ',' << year_of(item) << ',' << hour << ','
          << click << ',' << (click ? "0.5" : "") << '\n';
    }
    Config c = parse_config(kRankerConfig, "ranker.toml");
    torch::manual_seed(1);
    data::Preprocessor pre(c);
    const std::string train = dir_->write("train.csv", log.str());
    pre.fit(train);
    data::FeaturizedData d = data::featurize_file(pre, train, true);
    auto net = model::create_model(c.model, model::input_shape(pre));
    train::train_model(*net, c, d, nullptr, {});
    model::save_model_dir(dir_->file("ranker"), c, pre, *net,
                          {{"format", "mtrank-model"}, {"version", 1}, {"model_version", "ranker-1"}});
    // The catalog leaves out items 1039 and 1040 and has a column the ranker does not read.
    std::string catalog = "title,item,genre,tags,year\n";
    for (int item = 1001; item <= 1038; ++item)
      catalog += "\"Title, " + std::to_string(item) + "\"," + std::to_string(item) + "," + genre_of(item) + "," +
                 tags_of(item) + "," + year_of(item) + "\n";
    catalog_ = dir_->write("items.csv", catalog);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::shared_ptr<const serve::Ranker> ranker() {
    return std::make_shared<const serve::Ranker>(model::load_model_dir(dir_->file("ranker")), serve::RankerOptions{},
                                                 "ranker");
  }
  static std::shared_ptr<const serve::Retriever> retriever() {
    return std::make_shared<const serve::Retriever>(model::load_sequential_model_dir(seq_dir_), serve::RetrieverOptions{});
  }
  static serve::Recommender recommender(serve::RecommenderOptions options = {}) {
    auto r = ranker();
    return serve::Recommender(r, retriever(), std::make_shared<const serve::Catalog>(catalog_, "item", r->input_columns()),
                              options, "seq");
  }
  static TempDir* dir_;
  static std::string seq_dir_, catalog_;
};
TempDir* Recommending::dir_ = nullptr;
std::string Recommending::seq_dir_, Recommending::catalog_;

std::vector<std::string> items_of(const json& response) {
  std::vector<std::string> out;
  for (const auto& r : response.at("results")) out.push_back(r.at("item").get<std::string>());
  return out;
}

}  // namespace

TEST_F(Recommending, RanksExactlyTheRetrievedItemsAsRankWould) {
  const serve::Recommender rec = recommender();
  const std::vector<std::string> history = {"1003", "1024", "1019", "1007"};
  const json got = json::parse(rec.recommend_json(
      R"({"history": ["1003", 1024, "1019", "1007"], "context": {"hour": 7}, "k": 6, "retrieve": 30})", nullptr));
  // What the retriever alone gives: 30 items, some outside the catalog.
  const serve::Retrieved retrieved = retriever()->retrieve(history, 30);
  ASSERT_EQ(retrieved.hits.size(), 30u);
  std::map<std::string, float> retrieval_score;
  json candidates = json::array();
  for (const auto& h : retrieved.hits) {
    const std::string item = rec.retriever().item_name(h.item);
    retrieval_score[item] = h.score;
    if (item != "1039" && item != "1040")
      candidates.push_back({{"item", item},
                            {"genre", genre_of(std::stoi(item))},
                            {"tags", tags_of(std::stoi(item))},
                            {"year", std::stoi(year_of(std::stoi(item)))}});
  }
  EXPECT_EQ(got.at("retrieved"), 30);
  EXPECT_EQ(got.at("not_in_catalog").get<std::size_t>(), 30 - candidates.size());
  EXPECT_EQ(got.at("unknown_history_items"), 0);
  EXPECT_EQ(got.at("model").at("version"), "ranker-1");
  EXPECT_EQ(got.at("retrieval_model").at("name"), "seq");
  // The same candidates through /v1/rank's path, with the context's hour.
  const serve::RankResult ranked =
      rec.ranker().rank_json(json{{"context", {{"hour", "7"}}}, {"candidates", candidates}, {"top_k", 6}}.dump());
  ASSERT_EQ(got.at("results").size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) {
    const json& r = got.at("results")[i];
    const std::string want = candidates[static_cast<std::size_t>(ranked.results[i].index)].at("item");
    EXPECT_EQ(r.at("item"), want) << i;
    EXPECT_DOUBLE_EQ(r.at("score").get<double>(), ranked.results[i].score);
    EXPECT_FLOAT_EQ(r.at("tasks").at("click").get<float>(), ranked.results[i].tasks[0]);
    EXPECT_FLOAT_EQ(r.at("tasks").at("watch").get<float>(), ranked.results[i].tasks[1]);
    EXPECT_FLOAT_EQ(r.at("retrieval_score").get<float>(), retrieval_score.at(want));
    for (const std::string& seen : history) EXPECT_NE(r.at("item"), seen);  // the history is left out
    if (i) {
      EXPECT_GE(got.at("results")[i - 1].at("score").get<double>(), r.at("score").get<double>());
    }
  }
  // The context matters (the cross reads it); an unknown history item is counted.
  const json other = json::parse(rec.recommend_json(
      R"({"history": ["1003", 1024, "1019", "1007", "9999"], "context": {"hour": 20}, "k": 6, "retrieve": 30})", nullptr));
  EXPECT_EQ(other.at("unknown_history_items"), 1);
  EXPECT_NE(other.at("results")[0].at("score"), got.at("results")[0].at("score"));
  // Defaults: k 10 from 200 candidates (all 40 items here, less the 4 seen).
  const json plain = json::parse(rec.recommend_json(R"({"history": ["1003"]})", nullptr));
  EXPECT_EQ(plain.at("results").size(), 10u);
  EXPECT_EQ(plain.at("retrieved"), 39);
  EXPECT_EQ(plain.at("not_in_catalog"), 2);
}

TEST_F(Recommending, EventsGiveWhatTheHistoryGivesAndSurviveARestart) {
  const serve::Recommender rec = recommender();
  const std::vector<std::string> history = {"1003", "1024", "1019", "1007", "1012", "1031", "1002", "1026",
                                            "1040", "1015", "1009", "1036"};
  json want_history = history;
  const json want = json::parse(rec.recommend_json(json{{"history", want_history}, {"k", 8}}.dump(), nullptr));
  TempDir state;
  {
    serve::UserStateStore store(state.file("users"));
    for (std::size_t e = 0; e < history.size(); ++e) {
      const json ack = json::parse(rec.event_json(json{{"user", "u1"}, {"item", history[e]}}.dump(), store));
      EXPECT_EQ(ack.at("events"), static_cast<int>(e) + 1);
      EXPECT_TRUE(ack.at("known_item").get<bool>());
    }
    EXPECT_EQ(store.users(), 1);
  }
  // Reopened (a restart): every event is there, and the state gives the history's recommendations.
  serve::UserStateStore store(state.file("users"));
  const serve::UserState s = store.get("u1").value();
  EXPECT_EQ(s.events, 12);
  EXPECT_EQ(s.recent, history);
  const json got = json::parse(rec.recommend_json(R"({"user": "u1", "k": 8})", &store));
  ASSERT_EQ(items_of(got), items_of(want));
  for (std::size_t i = 0; i < 8; ++i) {
    EXPECT_NEAR(got["results"][i]["retrieval_score"].get<double>(), want["results"][i]["retrieval_score"].get<double>(),
                1e-4);
    EXPECT_NEAR(got["results"][i]["score"].get<double>(), want["results"][i]["score"].get<double>(), 1e-6);
  }
  // The state of another model version: the query is the recent items' window, the same here.
  serve::UserState old = s;
  old.model = "an-earlier-model";
  const serve::Retrieved from_old = rec.retriever().retrieve_for(old, 8), from_new = rec.retriever().retrieve_for(s, 8);
  ASSERT_EQ(from_old.hits.size(), 8u);
  for (std::size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(from_old.hits[i].item, from_new.hits[i].item);
    EXPECT_NEAR(from_old.hits[i].score, from_new.hits[i].score, 1e-4);
  }
  // A retried event (the same event_id) is applied once.
  const json first = json::parse(rec.event_json(R"({"user": "u2", "item": "1003", "event_id": "e-1"})", store));
  const json retry = json::parse(rec.event_json(R"({"user": "u2", "item": "1003", "event_id": "e-1"})", store));
  const json next = json::parse(rec.event_json(R"({"user": "u2", "item": "1004", "event_id": "e-2"})", store));
  EXPECT_FALSE(first.at("duplicate").get<bool>());
  EXPECT_TRUE(retry.at("duplicate").get<bool>());
  EXPECT_EQ(retry.at("events"), 1);
  EXPECT_EQ(next.at("events"), 2);
  // An item the model does not know is kept in the recent items but does not move the state.
  const json ack = json::parse(rec.event_json(R"({"user": "u1", "item": "5555", "timestamp": 17})", store));
  EXPECT_FALSE(ack.at("known_item").get<bool>());
  const serve::UserState after = store.get("u1").value();
  EXPECT_EQ(after.events, 13);
  EXPECT_EQ(after.recent.back(), "5555");
  EXPECT_EQ(after.query, s.query);
  EXPECT_EQ(after.lru, s.lru);
}

TEST_F(Recommending, TheWindowBoundsTheRecentItemsAndTheStateRebuildsAfterAModelChange) {
  serve::RecommenderOptions options;
  options.history_window = 3;
  const serve::Recommender rec = recommender(options);
  TempDir state;
  serve::UserStateStore store(state.file("users"));
  for (const char* item : {"1001", "1002", "1003", "1004", "1005"})
    rec.event_json(json{{"user", 7}, {"item", item}}.dump(), store);  // an integer user id is its text
  serve::UserState s = store.get("7").value();
  EXPECT_EQ(s.events, 5);
  EXPECT_EQ(s.recent, (std::vector<std::string>{"1003", "1004", "1005"}));
  // A state of an earlier model is rebuilt from the recent items, then advanced:
  // the same as a fresh user with those four events.
  s.model = "an-earlier-model";
  rec.retriever().advance(s, "1006", 3);
  serve::UserState fresh;
  for (const char* item : {"1003", "1004", "1005", "1006"}) rec.retriever().advance(fresh, item, 3);
  ASSERT_EQ(s.query.size(), fresh.query.size());
  for (std::size_t i = 0; i < s.query.size(); ++i) EXPECT_NEAR(s.query[i], fresh.query[i], 1e-5);
  EXPECT_EQ(s.model, rec.retriever().version());
}

TEST_F(Recommending, ARequestOrTheLatencyBudgetChoosesTheWidth) {
  const serve::Recommender rec = recommender();
  const std::vector<std::string> history = {"1003", "1024", "1019"};
  EXPECT_EQ(rec.retriever().widths(), (std::vector<std::int64_t>{4, 8, 16}));
  EXPECT_EQ(rec.retriever().default_width(), 16);
  // Width 4: the model's width-4 scores (the query's and the items' first 4 values, plus the bias).
  model::LoadedSequentialModel offline = model::load_sequential_model_dir(seq_dir_);
  std::int64_t unknown = 0;
  const auto ids = serve::known_items(offline, history, &unknown);
  const auto want = train::recommend(*offline.net, ids, 16, /*width=*/4, 10);
  const serve::Retrieved got = rec.retriever().retrieve(history, 10, 4);
  ASSERT_EQ(got.hits.size(), want.size());
  for (std::size_t r = 0; r < want.size(); ++r) {
    EXPECT_EQ(got.hits[r].item, want[r].first) << r;
    EXPECT_NEAR(got.hits[r].score, want[r].second, 1e-4);
  }
  const json response = json::parse(rec.recommend_json(R"({"history": ["1003", "1024", "1019"], "width": 4})", nullptr));
  EXPECT_EQ(response.at("width"), 4);
  EXPECT_THROW(rec.retriever().retrieve(history, 10, 5), serve::RequestError);
  // A budget nothing meets gives the narrowest width; a generous one the full width.
  for (const auto& [budget, width] : {std::pair{1e-9, 4}, std::pair{1e9, 16}}) {
    serve::RetrieverOptions options;
    options.latency_budget_ms = budget;
    const serve::Retriever r(model::load_sequential_model_dir(seq_dir_), options);
    EXPECT_EQ(r.default_width(), width) << budget;
    EXPECT_EQ(r.width_p99_ms().size(), 3u);
  }
  // The model config's [serve] index is the default; a flag overrides it.
  model::LoadedSequentialModel configured = model::load_sequential_model_dir(seq_dir_);
  configured.config.serve.index = "funnel";
  configured.config.serve.funnel_widths = {8, 16};
  configured.config.serve.funnel_keep = {20};
  EXPECT_EQ(serve::Retriever(std::move(configured), {}).index().describe(), "funnel: exact width 8 keeps 20, width 16 ranks");
  serve::RetrieverOptions hnsw;
  hnsw.index = "hnsw";
  configured = model::load_sequential_model_dir(seq_dir_);
  configured.config.serve.index = "funnel";
  EXPECT_EQ(serve::Retriever(std::move(configured), hnsw).index().describe().substr(0, 4), "hnsw");
  serve::RetrieverOptions only;
  only.widths = {8};
  const serve::Retriever r8(model::load_sequential_model_dir(seq_dir_), only);
  EXPECT_EQ(r8.widths(), (std::vector<std::int64_t>{8, 16}));  // the full width always
  only.widths = {5};
  EXPECT_THROW(serve::Retriever(model::load_sequential_model_dir(seq_dir_), only), ConfigError);
}

TEST_F(Recommending, BadRequestsAndUnknownUsersAreNamed) {
  serve::RecommenderOptions options;
  options.max_retrieve = 50;
  const serve::Recommender rec = recommender(options);
  TempDir state;
  serve::UserStateStore store(state.file("users"));
  auto error_of = [&](const std::string& body, const serve::UserStateStore* s = nullptr) -> std::string {
    try {
      rec.recommend_json(body, s);
    } catch (const serve::NotFoundError& e) {
      return std::string("404 ") + e.what();
    } catch (const serve::RequestError& e) {
      return std::string("400 ") + e.what();
    }
    return "ok";
  };
  auto has = [](const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; };
  EXPECT_TRUE(has(error_of(R"({"user": "nobody"})", &store), "404 user \"nobody\": no events"));
  EXPECT_TRUE(has(error_of(R"({"user": "u"})"), "400 user: this server keeps no user state"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001", ")" + std::string(257, 'i') + R"("]})"), "400 history[1]: an id of 1 to 256 bytes"));
  EXPECT_TRUE(has(error_of(R"({"user": "u", "history": ["1001"]})"), "400 user and history"));
  EXPECT_TRUE(has(error_of(R"({"k": 3})"), "400 user or history"));
  EXPECT_TRUE(has(error_of(R"({"history": []})"), "400 history: is empty"));
  EXPECT_TRUE(has(error_of(R"({"history": [{}]})"), "400 history[0]"));
  EXPECT_TRUE(has(error_of(R"({"history": ["0"]})"), "400 history: none of its 1 items"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "k": 51})"), "400 k: 51 is more than the limit of 50"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "k": 0})"), "400 k: must be a positive integer"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "k": 9, "retrieve": 5})"), "400 retrieve: 5 candidates"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "width": 5})"), "400 width: 5 is not a width this server retrieves at (4, 8, 16)"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "width": -4})"), "400 width: must be a positive integer"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "what": 8})"), "400 what: unknown field"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "k": 1, "k": 2})"), "400 k: given twice"));
  EXPECT_TRUE(has(error_of(R"({"history": ["1001"], "context": {"colour": 1}})"), "400 context.colour: unknown feature"));
  EXPECT_TRUE(has(error_of(R"({"user": ")" + std::string(300, 'x') + R"("})", &store), "400 user: an id of 1 to 256"));
  EXPECT_TRUE(has(error_of(R"([1])"), "400 the request body must be a JSON object"));
  EXPECT_EQ(error_of(R"({"history": ["1001"], "k": 50})"), "ok");  // k alone raises retrieve to it
  auto event_error = [&](const std::string& body) -> std::string {
    try {
      rec.event_json(body, store);
    } catch (const serve::RequestError& e) {
      return e.what();
    }
    return "ok";
  };
  EXPECT_TRUE(has(event_error(R"({"item": "1001"})"), "user: missing"));
  EXPECT_TRUE(has(event_error(R"({"user": "u"})"), "item: missing"));
  EXPECT_TRUE(has(event_error(R"({"user": "u", "item": ""})"), "item: an id of 1 to 256 bytes, not 0"));
  EXPECT_TRUE(has(event_error(R"({"user": "u", "item": ")" + std::string(257, 'i') + R"("})"), "item: an id of 1 to 256"));
  EXPECT_TRUE(has(event_error(R"({"user": "u", "item": "1001", "at": 3})"), "at: unknown field"));
  EXPECT_TRUE(has(event_error(R"({"user": "u", "item": "1001", "timestamp": "noon"})"), "timestamp: must be a number"));
  EXPECT_TRUE(has(event_error(R"({"user": null, "item": "1001"})"), "user: must be a string or an integer"));
  EXPECT_EQ(store.users(), 0);  // nothing written by a refused event
}

TEST_F(Recommending, BadCatalogsAreRefusedWithTheirLine) {
  auto r = ranker();
  auto error_of = [&](const std::string& text) -> std::string {
    try {
      const std::string path = dir_->write("bad.csv", text);
      serve::Recommender(r, retriever(), std::make_shared<const serve::Catalog>(path, "item", r->input_columns()), {}, "seq");
    } catch (const DataError& e) {
      return e.what();
    }
    return "ok";
  };
  auto has = [](const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; };
  EXPECT_TRUE(has(error_of("id,genre\n1001,g1\n"), "bad.csv:1: no column 'item'"));
  EXPECT_TRUE(has(error_of("item,genre\n1001,g1\n1002,g2\n1001,g3\n"), "bad.csv:4: item '1001' is given twice (first on line 2)"));
  EXPECT_TRUE(has(error_of("item,genre\n1001,g1\n1002\n"), "bad.csv:3: the row has 1 fields"));
  EXPECT_TRUE(has(error_of("item,genre\n"), "no item rows"));
  EXPECT_TRUE(has(error_of("item,genre\n77,g1\n"), "items is in the catalog"));
  // A value the ranker refuses (year: missing = "error") names the line and column, checked at load.
  EXPECT_TRUE(has(error_of("item,genre,year\n1001,g1,1990\n1002,g2,\n"),
                  "bad.csv:3: item '1002', column 'year': the ranker cannot read it: "));
  EXPECT_TRUE(has(error_of("item,genre,year\n1001,g1,soon\n"), "bad.csv:2: item '1001', column 'year'"));
  // Without the year, it is the context's to give: the catalog loads.
  EXPECT_EQ(error_of("item,genre\n1001,g1\n"), "ok");
}

TEST_F(Recommending, ParallelChunksAndANeededContextColumnGiveTheSameRanking) {
  // The same request scored in chunks of 3 on 2 threads: each chunk's
  // candidates copy their own catalog rows (indexed by request, not chunk).
  const std::string body = R"({"history": ["1003", "1024"], "context": {"hour": 7}, "k": 12, "retrieve": 40})";
  const json one = json::parse(recommender().recommend_json(body, nullptr));
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  serve::RankerOptions chunked;
  chunked.chunk_size = 3;
  auto r = std::make_shared<const serve::Ranker>(model::load_model_dir(dir_->file("ranker")), chunked, "ranker");
  const json two = json::parse(serve::Recommender(r, retriever(),
                                                  std::make_shared<const serve::Catalog>(catalog_, "item", r->input_columns()),
                                                  {}, "seq")
                                   .recommend_json(body, nullptr));
  at::set_num_threads(threads);
  // Equal up to BLAS's rounding on other batch sizes (a chunk-local row index would give other items' values).
  ASSERT_EQ(two.at("results").size(), one.at("results").size());
  std::map<std::string, double> score_of;
  for (const auto& x : one.at("results")) score_of[x.at("item").get<std::string>()] = x.at("score").get<double>();
  for (const auto& x : two.at("results")) {
    ASSERT_TRUE(score_of.count(x.at("item").get<std::string>())) << x.at("item");
    EXPECT_NEAR(x.at("score").get<double>(), score_of.at(x.at("item").get<std::string>()), 1e-5);
  }

  // A catalog without the year (missing = "error"): the context must give it.
  std::string no_year = "item,genre,tags\n";
  for (int item = 1001; item <= 1038; ++item)
    no_year += std::to_string(item) + "," + genre_of(item) + "," + tags_of(item) + "\n";
  const serve::Recommender needs(ranker(), retriever(),
                                 std::make_shared<const serve::Catalog>(dir_->write("no_year.csv", no_year), "item",
                                                                        ranker()->input_columns()),
                                 {}, "seq");
  EXPECT_EQ(needs.context_needed(), "year");
  try {
    needs.recommend_json(body, nullptr);
    ADD_FAILURE() << "a request without the year was served";
  } catch (const serve::RequestError& e) {
    EXPECT_NE(std::string(e.what()).find("context.year: "), std::string::npos) << e.what();
  }
  const json given = json::parse(needs.recommend_json(
      R"({"history": ["1003", "1024"], "context": {"hour": 7, "year": 1990}, "k": 12, "retrieve": 40})", nullptr));
  EXPECT_EQ(given.at("results").size(), 12u);
  EXPECT_TRUE(recommender().context_needed().empty());
}

TEST(UserState, RecordsRoundTripAndCorruptOnesAreRefused) {
  serve::UserState s;
  s.model = "m-1";
  s.events = 41;
  s.recent = {"a", "", "item, with comma"};
  s.lru = {1.5f, -2.0f, 0.0f, 3.25f};
  s.query = {0.1f, 0.2f};
  s.event_ids = {"e1", "e2"};
  const std::string bytes = serve::encode_user_state(s);
  const serve::UserState back = serve::decode_user_state(bytes);
  EXPECT_EQ(back.model, s.model);
  EXPECT_EQ(back.events, s.events);
  EXPECT_EQ(back.recent, s.recent);
  EXPECT_EQ(back.lru, s.lru);
  EXPECT_EQ(back.query, s.query);
  EXPECT_EQ(back.event_ids, s.event_ids);
  for (std::size_t i = 0; i < bytes.size(); ++i) {  // every flipped byte is caught
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    EXPECT_THROW(serve::decode_user_state(bad), std::runtime_error) << "byte " << i;
  }
  for (std::size_t n = 0; n < bytes.size(); ++n)  // and every truncation
    EXPECT_THROW(serve::decode_user_state(bytes.substr(0, n)), std::runtime_error) << n;
}

TEST(UserState, ConcurrentEventsOfOneUserAreAllKept) {
  TempDir dir;
  serve::UserStateStore store(dir.file("s"));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int e = 0; e < 25; ++e)
        store.update(t % 2 ? "odd" : "shared", [&](serve::UserState& s) {
          ++s.events;
          s.recent.push_back(std::to_string(t));
        });
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(store.get("shared")->events, 50);
  EXPECT_EQ(store.get("odd")->events, 50);
  EXPECT_EQ(store.users(), 2);
  // A second opening of the store (another process, here another handle) is refused.
  try {
    serve::UserStateStore second(dir.file("s"));
    FAIL() << "the store opened twice";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("another process"), std::string::npos) << e.what();
  }
  // A change that throws writes nothing.
  EXPECT_THROW(store.update("shared", [](serve::UserState& s) {
    s.events = 0;
    throw std::runtime_error("no");
  }),
               std::runtime_error);
  EXPECT_EQ(store.get("shared")->events, 50);
}

TEST(UserState, ACorruptOrForeignStoreIsRefusedAtOpen) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("garbage"));
  dir.write("garbage/data.mdb", std::string(20000, 'x'));
  try {
    serve::UserStateStore store(dir.file("garbage"));
    FAIL() << "a garbage store opened";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("garbage/data.mdb: not a readable user-state store"), std::string::npos) << e.what();
  }
  {
    serve::UserStateStore store(dir.file("good"));
    store.update("u", [](serve::UserState& s) { s.events = 1; });
  }
  // A record whose bytes changed on disk is refused when read, naming the user.
  {
    const std::string path = dir.file("good/data.mdb");
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const std::string record = serve::encode_user_state([] {
      serve::UserState s;
      s.events = 1;
      return s;
    }());
    const std::size_t at = bytes.find(record.substr(0, record.size() - 4));
    ASSERT_NE(at, std::string::npos);
    f.seekp(static_cast<std::streamoff>(at + 6));
    f.put('\x7f');
  }
  serve::UserStateStore store(dir.file("good"));
  try {
    store.get("u");
    FAIL() << "a corrupt record was read";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("the state of user 'u' is corrupt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(store.get(""), std::invalid_argument);
  // An event for that user starts them afresh instead of failing for good.
  EXPECT_EQ(store.update("u", [](serve::UserState& s) { ++s.events; }).events, 1);
  EXPECT_EQ(store.get("u")->events, 1);
}
