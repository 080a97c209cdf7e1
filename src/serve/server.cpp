#include "serve/server.h"

// Why Boost.Beast on Boost.Asio and not cpp-httplib (used until issue 14):
// cpp-httplib 0.11 gives each connection a pool thread for as long as the
// connection lives, and its only timeout is per recv(). Two idle sockets took
// both workers for the read timeout, and a client sending a byte every 4 s
// kept one forever; /healthz waited in the same queue. Here connections are
// asynchronous on a few I/O threads (an idle socket is a file descriptor and a
// small object, no thread), a request has one deadline for headers and body
// together (beast::tcp_stream::expires_after), the parser enforces the body
// limit on the bytes it decodes (chunked too) and a header limit, and at most
// --threads requests are scored at once, the others waiting in a bounded
// queue (ScoringGate, which says why scoring runs inline). Each connection
// is pinned to one of --io-threads + --threads threads; at most --threads of
// them score at once, and a new connection goes to one that is not scoring,
// so a probe on a new connection never waits for scoring. A keep-alive
// connection shares its thread with the other connections on it: a request
// on it can wait for the one job its thread is running.
#define BOOST_BEAST_USE_STD_STRING_VIEW 1

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/model_dir.h"
#include "model/sequential_dir.h"
#include "serve/recommender.h"

// Serving and argument parsing stay free of LibTorch's headers (docs/architecture.md).
#ifdef C10_MACROS_MACROS_H_
#error "torch headers reached server.cpp: include them only in the model, train and scoring sources"
#endif

namespace mtrank::serve {

namespace detail {

// A Prometheus label value: backslash, double quote and newline escaped.
std::string prometheus_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// The JSON error body. Messages may quote request bytes cut in the middle of a
// UTF-8 character: invalid sequences become U+FFFD instead of an exception.
std::string error_body(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Compares an Authorization header with "Bearer TOKEN" in time that does not
// depend on where they differ.
bool token_matches(std::string_view given, const std::string& token) {
  const std::string want = "Bearer " + token;
  unsigned char diff = given.size() == want.size() ? 0 : 1;
  for (std::size_t i = 0; i < want.size(); ++i)
    diff |= static_cast<unsigned char>(want[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

std::optional<std::string> resolve_inside(const std::filesystem::path& root, const std::string& requested) {
  std::error_code ec;
  std::filesystem::path p(requested);
  if (p.is_relative()) p = root / p;
  // Symlinks of the part that exists are resolved, ".." folded: a link or a
  // ".." that leads out of the root ends outside it.
  const std::filesystem::path resolved = std::filesystem::weakly_canonical(p, ec);
  if (ec) return std::nullopt;
  auto r = root.begin();
  auto c = resolved.begin();
  for (; r != root.end(); ++r, ++c)
    if (c == resolved.end() || *r != *c) return std::nullopt;
  for (; c != resolved.end(); ++c)
    if (*c == "..") return std::nullopt;
  return resolved.string();
}

}  // namespace detail

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Connections beyond --max-connections that may still send a probe (1 s to do
// it, then closed); beyond these, a connection is closed at once.
constexpr int kProbeSlots = 64;
constexpr auto kProbeSlotDeadline = std::chrono::seconds(1);
// After an error response the rest of the request is read and dropped for at
// most this long, so that the client sees the response instead of a reset.
constexpr auto kLingerDeadline = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 4u << 20;

// What the server serves, loaded, checked and swapped as one unit: the
// ranker and, with --retrieval, the retrieval model with the catalog joined
// to it. Requests in flight keep the unit they started with.
struct ServingUnit {
  std::shared_ptr<const Ranker> ranker;
  std::shared_ptr<const Recommender> recommender;  // null without --retrieval
  std::string ranker_dir, retrieval_dir;
};

// The endpoints whose requests are counted and timed (Metrics::observe).
enum class Endpoint { kNone, kRank, kRecommend, kEvents };

Endpoint endpoint_of(std::string_view path) {
  return path == "/v1/rank" ? Endpoint::kRank : path == "/v1/recommend" ? Endpoint::kRecommend
                                              : path == "/v1/events"    ? Endpoint::kEvents
                                                                        : Endpoint::kNone;
}

// Prometheus counters and latency histograms, lock-free on the request path.
class Metrics {
 public:
  static constexpr std::array<double, 11> kBuckets = {0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01,
                                                      0.025,   0.05,   0.1,   0.25,  1.0};
  // One request's outcome, whatever its status (400, 413, 415, 500, 503 included).
  void observe(Endpoint endpoint, int status, double seconds, std::int64_t candidates) {
    if (endpoint == Endpoint::kNone) return;
    Stats& st = endpoint == Endpoint::kRank ? rank_ : endpoint == Endpoint::kRecommend ? recommend_ : events_;
    (status < 300 ? st.ok : status < 500 ? st.client_errors : st.server_errors).fetch_add(1);
    if (endpoint == Endpoint::kRank) candidates_.fetch_add(candidates);
    for (std::size_t i = 0; i < kBuckets.size(); ++i)
      if (seconds <= kBuckets[i]) st.buckets[i].fetch_add(1);
    st.count.fetch_add(1);
    st.sum_us.fetch_add(static_cast<std::int64_t>(seconds * 1e6));
  }
  // Every response the server writes, on any path, by exact status code.
  void response(int status) {
    if (status >= 100 && status < static_cast<int>(responses_.size())) responses_[static_cast<std::size_t>(status)].fetch_add(1);
  }
  void dropped(const char* why) {  // a connection closed without a response
    if (std::string_view(why) == "timeout") timeouts_.fetch_add(1);
    else refused_.fetch_add(1);
  }
  void reload(bool ok) { (ok ? reloads_ok_ : reloads_failed_).fetch_add(1); }
  void connections(int n) { connections_.store(n); }
  std::string text(const ServingUnit& live) const {
    std::ostringstream o;
    // Rank requests keep the names they had before the other endpoints came.
    rank_.write(o, "mtrank_requests_total", "mtrank_request_seconds", "Rank requests");
    if (live.recommender) {
      recommend_.write(o, "mtrank_recommend_requests_total", "mtrank_recommend_request_seconds", "Recommend requests");
      events_.write(o, "mtrank_events_total", "mtrank_event_seconds", "Events (POST /v1/events)");
    }
    o << "# HELP mtrank_candidates_scored_total Candidates scored (all of a request's, not only the top_k returned).\n"
      << "# TYPE mtrank_candidates_scored_total counter\n"
      << "mtrank_candidates_scored_total " << candidates_ << "\n"
      << "# HELP mtrank_http_responses_total HTTP responses on every path, by status code.\n"
      << "# TYPE mtrank_http_responses_total counter\n";
    for (std::size_t c = 0; c < responses_.size(); ++c)
      if (responses_[c] > 0) o << "mtrank_http_responses_total{code=\"" << c << "\"} " << responses_[c] << "\n";
    o << "# HELP mtrank_connections_dropped_total Connections closed without a response.\n"
      << "# TYPE mtrank_connections_dropped_total counter\n"
      << "mtrank_connections_dropped_total{reason=\"timeout\"} " << timeouts_ << "\n"
      << "mtrank_connections_dropped_total{reason=\"over_limit\"} " << refused_ << "\n"
      << "# HELP mtrank_open_connections Connections open now.\n# TYPE mtrank_open_connections gauge\n"
      << "mtrank_open_connections " << connections_ << "\n"
      << "# HELP mtrank_reloads_total Model reloads by result.\n# TYPE mtrank_reloads_total counter\n"
      << "mtrank_reloads_total{result=\"ok\"} " << reloads_ok_ << "\nmtrank_reloads_total{result=\"failed\"} "
      << reloads_failed_ << "\n"
      << "# HELP mtrank_model_info The model being served.\n# TYPE mtrank_model_info gauge\n"
      << "mtrank_model_info{name=\"" << detail::prometheus_label(live.ranker->name()) << "\",version=\""
      << detail::prometheus_label(live.ranker->version()) << "\"} 1\n";
    if (live.recommender)
      o << "# HELP mtrank_retrieval_model_info The retrieval model being served.\n# TYPE mtrank_retrieval_model_info gauge\n"
        << "mtrank_retrieval_model_info{name=\"" << detail::prometheus_label(live.recommender->retrieval_name())
        << "\",version=\"" << detail::prometheus_label(live.recommender->retriever().version()) << "\"} 1\n";
    return o.str();
  }

 private:
  struct Stats {
    std::atomic<std::int64_t> ok{0}, client_errors{0}, server_errors{0}, count{0}, sum_us{0};
    std::array<std::atomic<std::int64_t>, kBuckets.size()> buckets{};
    void write(std::ostringstream& o, const char* total, const char* seconds, const char* what) const {
      o << "# HELP " << total << " " << what << " by HTTP status class.\n# TYPE " << total << " counter\n"
        << total << "{status=\"2xx\"} " << ok << "\n" << total << "{status=\"4xx\"} " << client_errors << "\n"
        << total << "{status=\"5xx\"} " << server_errors << "\n"
        << "# HELP " << seconds << " " << what << ": latency, from the whole request read to the response ready.\n"
        << "# TYPE " << seconds << " histogram\n";
      for (std::size_t i = 0; i < kBuckets.size(); ++i)
        o << seconds << "_bucket{le=\"" << kBuckets[i] << "\"} " << buckets[i] << "\n";
      o << seconds << "_bucket{le=\"+Inf\"} " << count << "\n" << seconds << "_sum " << static_cast<double>(sum_us) / 1e6
        << "\n" << seconds << "_count " << count << "\n";
    }
  };
  Stats rank_, recommend_, events_;
  std::atomic<std::int64_t> candidates_{0};
  std::atomic<std::int64_t> reloads_ok_{0}, reloads_failed_{0}, timeouts_{0}, refused_{0};
  std::atomic<int> connections_{0};
  std::array<std::atomic<std::int64_t>, 600> responses_{};
};

// Loads a model directory into a Ranker and checks it can score before it is used.
std::shared_ptr<const Ranker> load_checked(const std::string& dir, const RankerOptions& options) {
  auto ranker = std::make_shared<const Ranker>(model::load_model_dir(dir), options,
                                               fs::path(dir).filename().string());
  // A candidate with every feature missing exercises the whole path: featurize, score, combine.
  // Only a model with a numeric feature that refuses missing values may refuse it.
  try {
    RankResult r = ranker->rank_json(R"({"candidates": [{}]})");
    for (float v : r.results.at(0).tasks)
      if (!std::isfinite(v)) throw ModelError(dir + ": the model scores a test candidate as NaN or infinity");
  } catch (const RequestError& e) {
    const auto& features = ranker->config().features;
    const bool refuses_missing = std::any_of(features.begin(), features.end(), [](const FeatureConfig& f) {
      return f.type == FeatureType::kNumeric && f.missing == MissingPolicy::kError;
    });
    if (!refuses_missing)
      throw ModelError(dir + ": the model cannot score a candidate with every feature missing: " + e.what());
  }
  return ranker;
}

// The ranker of `ranker_dir` and, when retrieval_dir is not empty, the
// retrieval model, the catalog (--catalog, read again) and the recommender
// over them, each checked (a recommendation through every stage) before use.
std::shared_ptr<const ServingUnit> load_unit(const std::string& ranker_dir, const std::string& retrieval_dir,
                                             const ServerOptions& o) {
  auto unit = std::make_shared<ServingUnit>();
  unit->ranker = load_checked(ranker_dir, o.ranker);
  unit->ranker_dir = ranker_dir;
  if (retrieval_dir.empty()) return unit;
  auto retriever = std::make_shared<const Retriever>(model::load_sequential_model_dir(retrieval_dir), o.retriever);
  auto catalog = std::make_shared<const Catalog>(o.catalog_file, o.catalog_item_column, unit->ranker->input_columns());
  auto recommender = std::make_shared<const Recommender>(unit->ranker, retriever, catalog, o.recommender,
                                                         fs::path(retrieval_dir).filename().string());
  // The first model item the catalog has, as a one-item history: through
  // every stage, or retrieval alone when the ranker needs a context value
  // that no test request has.
  const data::ItemVocabulary& items = retriever->model().items;
  for (std::int32_t id = 1; id <= items.size(); ++id) {
    if (catalog->find(items.external(id)) < 0) continue;
    const json request{{"history", json::array({items.external(id)})}, {"k", 1}};
    const std::int64_t retrieved =
        recommender->context_needed().empty()
            ? json::parse(recommender->recommend_json(request.dump(), nullptr)).at("retrieved").get<std::int64_t>()
            : static_cast<std::int64_t>(retriever->retrieve({items.external(id)}, 1).hits.size());
    if (retrieved < 1)
      throw ModelError(retrieval_dir + ": the retrieval model retrieves nothing for a one-item history");
    break;
  }
  unit->recommender = std::move(recommender);
  unit->retrieval_dir = retrieval_dir;
  return unit;
}

// A model's input schema: every field a request may carry, i.e. its raw input
// columns, a bias column marked as such (accepted, read as missing). Two
// models with the same schema accept the same requests.
std::vector<std::string> input_schema(const Ranker& r) {
  std::vector<std::string> schema;
  for (const std::string& c : r.input_columns()) {
    const auto& features = r.config().features;
    const bool bias = std::any_of(features.begin(), features.end(),
                                  [&](const FeatureConfig& f) { return f.name == c && f.bias; });
    schema.push_back(bias ? c + " (bias)" : c);
  }
  std::sort(schema.begin(), schema.end());
  return schema;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// At most --threads rank requests are scored at once (reloads run on their
// own thread, one at a time); up to
// --max-queue more wait, beyond that the answer is 503.
//
// Scoring runs inline on the thread that read the request, not on a separate
// worker pool: connections live on --io-threads + --threads threads (one
// io_context each, a connection pinned to one) and at most --threads of them
// score at a time, so --io-threads of them are always free for reading,
// writing and the probes, and a new connection goes to one of those
// (Server::pick_context); one more thread only accepts. A first version
// handed every request to a worker pool and back (the design the issue
// suggested). On this 2-vCPU VM the two cross-thread wake-ups cost about 180 us
// of CPU per 200-candidate request: 1,300 requests/s against cpp-httplib's
// 1,850 at 2 connections (docs/benchmarks.md). Inline scoring has the old
// server's single wake-up per request and keeps the bounded pool's guarantees.
class ScoringGate {
 public:
  struct Job {
    net::any_io_executor executor;  // the session's strand, where run must execute
    std::function<void()> run;
    net::any_io_executor work;  // the same, tracking work: its io_context::run waits for queued jobs
    // Its thread's count of jobs holding a slot: raised when the job gets one
    // (at once, or when a slot frees), lowered by run when it is done.
    std::atomic<int>* busy = nullptr;
  };
  enum class Admission { kRunNow, kQueued, kFull };
  ScoringGate(int slots, std::size_t capacity) : free_(slots), capacity_(capacity) {}
  // kRunNow: the caller runs the job now (it is left in place) and calls finish() after it.
  Admission admit(Job& job) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_ > 0) {
      --free_;
      if (job.busy) job.busy->fetch_add(1);
      return Admission::kRunNow;
    }
    if (waiting_.size() >= capacity_) return Admission::kFull;
    waiting_.push_back(std::move(job));
    return Admission::kQueued;
  }
  // After a job: its slot goes to the next waiting job (run on that job's strand), else back to the pool.
  void finish() {
    std::optional<Job> next;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (waiting_.empty()) {
        ++free_;
        return;
      }
      next.emplace(std::move(waiting_.front()));
      waiting_.pop_front();
      if (next->busy) next->busy->fetch_add(1);  // before the post: a new connection must not pick its thread
    }
    net::post(next->executor, [run = std::move(next->run), work = std::move(next->work)]() mutable { run(); });
  }

 private:
  std::mutex mutex_;
  int free_;
  std::size_t capacity_;
  std::deque<Job> waiting_;
};

class Server;

// One connection. Every member is used on the connection's strand only, except
// where noted.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server& server, bool probe_only, std::size_t context);
  ~Session();
  void start();
  void shutdown();  // any thread: close if idle, else after the current response

 private:
  enum class State { kIdle, kReading, kBusy, kClosing };
  void wait_for_request();
  void read_header();
  void on_header(beast::error_code ec);
  void read_body();
  void on_read_error(beast::error_code ec);
  void on_request();
  void submit(std::function<void()> task);
  // Writes a response; close_after drops the connection after it (the rest of
  // the request, if any, is read and discarded for a moment first).
  void reply(int status, std::string body, bool close_after = false, std::int64_t scored = 0,
             const char* content_type = "application/json");
  void linger();
  void close();
  double seconds_since_ready() const { return std::chrono::duration<double>(Clock::now() - ready_).count(); }

  beast::tcp_stream stream_;
  Server& server_;
  const bool probe_only_;
  const std::size_t context_;  // index of the io_context (and thread) this connection is pinned to
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  State state_ = State::kIdle;
  Endpoint endpoint_ = Endpoint::kNone;
  Clock::time_point started_, ready_;
  std::array<char, 8192> drain_{};
  std::size_t drained_ = 0;
};

class Server {
 public:
  // One io_context per thread (contexts), each run by exactly one thread;
  // contexts[0] accepts, the last one runs reloads, the others hold connections.
  // store: the users' state (--state-dir), or null.
  Server(const ServerOptions& o, std::vector<std::unique_ptr<net::io_context>>& contexts,
         std::shared_ptr<const ServingUnit> live, UserStateStore* store)
      : o_(o), contexts_(contexts), load_(new ContextLoad[contexts.size()]), acceptor_(net::make_strand(*contexts[0])),
        accept_timer_(acceptor_.get_executor()), live_(std::move(live)), store_(store) {
    for (auto& c : contexts_) idle_.push_back(net::make_work_guard(*c));
    std::error_code ec;
    const fs::path model = fs::weakly_canonical(fs::absolute(o.model_dir), ec);
    root_ = o.models_root.empty() ? model.parent_path() : fs::weakly_canonical(fs::absolute(o.models_root), ec);
    if (ec) throw ConfigError("--models-root " + o.models_root + ": " + ec.message());
    if (root_.filename().empty()) root_ = root_.parent_path();  // "dir/" as "dir"
  }

  // Binds HOST:PORT; returns the port bound. Throws ConfigError naming the address.
  int bind() {
    const std::string where = o_.host + ":" + std::to_string(o_.port);
    beast::error_code ec;
    tcp::resolver resolver(*contexts_[0]);
    auto results = resolver.resolve(o_.host, std::to_string(o_.port),
                                    tcp::resolver::numeric_service | tcp::resolver::passive, ec);
    if (ec || results.empty()) throw ConfigError("cannot listen on " + where + ": " + (ec ? ec.message() : "no address"));
    const tcp::endpoint endpoint = results.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    // SO_REUSEADDR only (rebinding over TIME_WAIT); never SO_REUSEPORT, which
    // let a second server bind a port in use and split its traffic.
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw ConfigError("cannot listen on " + where + ": " + ec.message());
    return acceptor_.local_endpoint().port();
  }

  void start_accepting() { accept(); }

  // From the signal thread: stop accepting, close idle connections, let the
  // others finish their current request. io_context::run returns once all are done.
  void stop() {
    stopping_.store(true);
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      accept_timer_.cancel();
      // On the acceptor's strand, after the close: no connection can be
      // created after this, so each context returns once its own are done.
      for (auto& guard : idle_) guard.reset();
    });
    std::vector<std::shared_ptr<Session>> open;
    {
      std::lock_guard<std::mutex> lock(sessions_mutex_);
      for (auto& [ptr, weak] : sessions_)
        if (auto s = weak.lock()) open.push_back(std::move(s));
    }
    for (auto& s : open) s->shutdown();
  }

  ScoringGate& gate() { return gate_; }
  const ServerOptions& options() const { return o_; }
  // A connection's context: its count of open connections and of requests being scored.
  struct ContextLoad {
    std::atomic<int> connections{0}, scoring{0};
  };
  ContextLoad& load(std::size_t context) { return load_[context]; }
  net::any_io_executor reload_executor() { return contexts_.back()->get_executor(); }
  Metrics& metrics() { return metrics_; }
  bool stopping() const { return stopping_.load(); }
  std::shared_ptr<const ServingUnit> current() const { return std::atomic_load(&live_); }

  void add(Session* s, std::weak_ptr<Session> weak) {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    sessions_.emplace(s, std::move(weak));
  }
  void remove(Session* s) {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    sessions_.erase(s);
  }
  std::atomic<int>& connections() { return connections_; }

  struct Reply {
    int status = 200;
    std::string body;
    std::int64_t scored = 0;
  };

  static constexpr const char* kRetrievalOff =
      "retrieval is off: start the server with --retrieval SEQ_MODEL_DIR --catalog ITEMS_FILE";

  // Runs a recommend or event request, its exceptions as replies.
  template <typename F>
  static Reply guarded(const char* doing, F&& run) {
    try {
      return run();
    } catch (const NotFoundError& e) {
      return {404, detail::error_body(e.what())};
    } catch (const RequestError& e) {
      return {400, detail::error_body(e.what())};
    } catch (const StoreFullError& e) {
      std::fprintf(stderr, "error %s: %s\n", doing, e.what());
      return {507, detail::error_body("the user-state store is full (--state-max-gib); the event was not applied")};
    } catch (const DataError& e) {  // a user's stored state that cannot be read
      std::fprintf(stderr, "error %s: %s\n", doing, e.what());
      return {500, detail::error_body("the stored state of this user cannot be read (details in the server log)")};
    } catch (const std::exception& e) {
      std::fprintf(stderr, "internal error %s: %s\n", doing, e.what());
      return {500, detail::error_body(std::string("internal error ") + doing + "; nothing was changed")};
    }
  }

  // On a worker.
  Reply rank(const std::string& body) const {
    const std::shared_ptr<const ServingUnit> unit = current();  // this request keeps this model, whatever reloads
    const Ranker* ranker = unit->ranker.get();
    Reply r;
    try {
      RankResult result = ranker->rank_json(body);
      r.scored = result.scored;
      r.body = ranker->to_json(result);
    } catch (const RequestError& e) {
      r.status = 400;
      r.body = detail::error_body(e.what());
    } catch (const std::exception& e) {
      // Never the exception's text in a response: it can name files and internals.
      std::fprintf(stderr, "internal error ranking a request: %s\n", e.what());
      r = Reply{500, detail::error_body("internal error"), 0};
    }
    return r;
  }

  // On a worker: POST /v1/recommend and POST /v1/events.
  Reply recommend(const std::string& body) const {
    const std::shared_ptr<const ServingUnit> unit = current();
    if (!unit->recommender) return {404, detail::error_body(kRetrievalOff)};
    return guarded("recommending", [&] { return Reply{200, unit->recommender->recommend_json(body, store_)}; });
  }
  Reply event(const std::string& body) const {
    const std::shared_ptr<const ServingUnit> unit = current();
    if (!unit->recommender) return {404, detail::error_body(kRetrievalOff)};
    if (!store_)
      return {404, detail::error_body("events are off: start the server with --state-dir DIR to keep users' state")};
    return guarded("storing an event", [&] { return Reply{200, unit->recommender->event_json(body, *store_)}; });
  }

  enum class ReloadOutcome { kOk, kFailed, kSchemaChanged };
  // Reloads `dir`, or the directory being served if empty. Details go to stderr
  // (and, for a schema change, to *detail).
  // With a retrieval model, it reloads too (`retrieval`, or the one being
  // served), with the catalog: the three are swapped together or not at all.
  ReloadOutcome reload(const std::string& requested, bool allow_schema_change, std::string* detail = nullptr,
                       const std::string& retrieval = "") {
    std::lock_guard<std::mutex> lock(reload_mutex_);  // one reload at a time
    const auto now = current();
    const std::string dir = requested.empty() ? now->ranker_dir : requested;
    const std::string retrieval_dir = retrieval.empty() ? now->retrieval_dir : retrieval;
    try {
      auto next = load_unit(dir, retrieval_dir, o_);
      const auto before = input_schema(*now->ranker), after = input_schema(*next->ranker);
      if (before != after && !allow_schema_change) {
        std::vector<std::string> added, removed;
        std::set_difference(after.begin(), after.end(), before.begin(), before.end(), std::back_inserter(added));
        std::set_difference(before.begin(), before.end(), after.begin(), after.end(), std::back_inserter(removed));
        auto list = [](const std::vector<std::string>& v) {
          std::string s;
          for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
          return s.empty() ? std::string("none") : s;
        };
        const std::string text = "added: " + list(added) + "; removed: " + list(removed);
        std::fprintf(stderr, "reload of %s refused, still serving the previous model: its input schema differs (%s)\n",
                     dir.c_str(), text.c_str());
        if (detail) *detail = text;
        metrics_.reload(false);
        return ReloadOutcome::kSchemaChanged;
      }
      std::atomic_store(&live_, next);
      metrics_.reload(true);
      std::fprintf(stderr, "reloaded model %s (version %s)\n", dir.c_str(), next->ranker->version().c_str());
      if (next->recommender)
        std::fprintf(stderr, "reloaded retrieval model %s (version %s) and catalog %s\n", retrieval_dir.c_str(),
                     next->recommender->retriever().version().c_str(), o_.catalog_file.c_str());
      return ReloadOutcome::kOk;
    } catch (const std::exception& e) {
      metrics_.reload(false);
      std::fprintf(stderr, "reload of %s refused, still serving the previous model: %s\n", dir.c_str(), e.what());
      return ReloadOutcome::kFailed;
    }
  }

  // On a worker: the whole POST /v1/reload after authentication.
  Reply reload_request(const std::string& body) {
    std::string requested, requested_retrieval;
    bool allow_schema_change = false;
    if (!body.empty()) {
      try {
        json j = json::parse(body);
        if (!j.is_object()) throw std::invalid_argument("not an object");
        if (j.contains("model_dir")) requested = j.at("model_dir").get<std::string>();
        if (j.contains("retrieval_dir")) requested_retrieval = j.at("retrieval_dir").get<std::string>();
        if (j.contains("allow_schema_change")) allow_schema_change = j.at("allow_schema_change").get<bool>();
      } catch (const std::exception&) {
        return {400, detail::error_body("body: expected {\"model_dir\": \"...\", \"retrieval_dir\": \"...\", "
                                        "\"allow_schema_change\": false}")};
      }
    }
    if (!requested_retrieval.empty() && current()->retrieval_dir.empty())
      return {409, detail::error_body("retrieval_dir: this server serves no retrieval model (start it with --retrieval)")};
    std::string dir, retrieval_dir;
    for (auto [given, out, field] : {std::tuple{&requested, &dir, "model_dir"}, std::tuple{&requested_retrieval, &retrieval_dir, "retrieval_dir"}}) {
      if (given->empty()) continue;
      auto inside = detail::resolve_inside(root_, *given);
      if (!inside) {
        metrics_.reload(false);
        std::fprintf(stderr, "reload of %s refused: not inside the models root %s\n", given->c_str(), root_.c_str());
        return {403, detail::error_body(std::string(field) +
                                        " must be a directory inside the server's models root (--models-root)")};
      }
      *out = *inside;
    }
    std::string detail;
    switch (reload(dir, allow_schema_change, &detail, retrieval_dir)) {
      case ReloadOutcome::kOk: {
        auto now = current();
        json j{{"model", {{"name", now->ranker->name()}, {"version", now->ranker->version()}}}};
        if (now->recommender)
          j["retrieval_model"] = {{"name", now->recommender->retrieval_name()},
                                  {"version", now->recommender->retriever().version()}};
        return {200, j.dump(-1, ' ', false, json::error_handler_t::replace)};
      }
      case ReloadOutcome::kSchemaChanged:
        return {409, detail::error_body("the new model reads other request fields than the live one (" + detail +
                                "), so clients' requests would fail; send \"allow_schema_change\": true to swap anyway")};
      case ReloadOutcome::kFailed: break;
    }
    return {422, detail::error_body("the model could not be loaded or failed its check; the previous model keeps serving "
                            "(details in the server log)")};
  }

 private:
  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket accepted) {
      if (!acceptor_.is_open()) return;
      if (ec) {
        // Out of file descriptors and the like: back off instead of spinning.
        if (ec != net::error::operation_aborted) {
          const auto now = Clock::now();
          if (now - last_accept_error_ > std::chrono::seconds(10)) {
            std::fprintf(stderr, "accept failed: %s (retrying)\n", ec.message().c_str());
            last_accept_error_ = now;
          }
        }
        accept_timer_.expires_after(std::chrono::milliseconds(50));
        accept_timer_.async_wait([this](beast::error_code e) {
          if (!e && acceptor_.is_open()) accept();
        });
        return;
      }
      // The thread is chosen now that the connection is here (not when the
      // accept was started), and the socket moves to it.
      const std::size_t context = pick_context();
      beast::error_code ignored;
      const auto protocol = acceptor_.local_endpoint(ignored).protocol();
      tcp::socket socket(net::make_strand(*contexts_[context]));
      const auto native = accepted.release(ignored);
      if (!ignored) socket.assign(protocol, native, ignored);
      if (ignored) {
        accept();
        return;
      }
      socket.set_option(tcp::no_delay(true), ignored);
      const int open = connections_.load();
      if (stopping() || open >= o_.max_connections + kProbeSlots) {
        metrics_.dropped("over_limit");
        socket.close(ignored);
      } else {
        std::make_shared<Session>(std::move(socket), *this, open >= o_.max_connections, context)->start();
      }
      accept();
    });
  }

  // The context for the next connection, among contexts 1..N (context 0
  // only accepts, so accepting never waits behind scoring; N + 1 only
  // reloads): one that is not
  // scoring (at most --threads of the --threads + --io-threads contexts are,
  // so a probe on a new connection is never queued behind scoring), with the
  // fewest connections; ties go round-robin.
  std::size_t pick_context() {
    const std::size_t n = contexts_.size() - 2;
    auto cost = [&](std::size_t i) {
      return static_cast<long>(load_[i].scoring.load()) * 1000000L + load_[i].connections.load();
    };
    std::size_t best = 1 + next_context_ % n;
    for (std::size_t k = 1; k < n; ++k) {
      const std::size_t i = 1 + (next_context_ + k) % n;
      if (cost(i) < cost(best)) best = i;
    }
    next_context_ = best;  // the next search starts after it
    return best;
  }

  const ServerOptions& o_;
  std::vector<std::unique_ptr<net::io_context>>& contexts_;
  std::unique_ptr<ContextLoad[]> load_;
  // Keep every context running while it has no connection; released by stop.
  std::vector<net::executor_work_guard<net::io_context::executor_type>> idle_;
  std::size_t next_context_ = 0;  // used on the acceptor's strand only
  tcp::acceptor acceptor_;
  net::steady_timer accept_timer_;
  Clock::time_point last_accept_error_{};
  ScoringGate gate_{o_.threads, static_cast<std::size_t>(o_.max_queue)};
  Metrics metrics_;
  std::shared_ptr<const ServingUnit> live_;
  UserStateStore* store_;
  fs::path root_;
  std::mutex reload_mutex_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::mutex sessions_mutex_;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;
};

Session::Session(tcp::socket socket, Server& server, bool probe_only, std::size_t context)
    : stream_(std::move(socket)), server_(server), probe_only_(probe_only), context_(context),
      buffer_(server.options().max_header_bytes + (64u << 10)) {
  server_.metrics().connections(server_.connections().fetch_add(1) + 1);
  server_.load(context_).connections.fetch_add(1);
}

Session::~Session() {
  server_.remove(this);
  server_.load(context_).connections.fetch_sub(1);
  server_.metrics().connections(server_.connections().fetch_sub(1) - 1);
}

void Session::start() {
  server_.add(this, weak_from_this());
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->wait_for_request(); });
}

void Session::shutdown() {
  net::post(stream_.get_executor(), [self = shared_from_this()] {
    if (self->state_ == State::kIdle) self->stream_.cancel();  // the pending read ends, and with it the connection
  });
}

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

void Session::wait_for_request() {
  if (server_.stopping()) return close();
  state_ = State::kIdle;
  parser_.reset();
  if (buffer_.size() > 0) return read_header();  // a pipelined request is already here
  // Idle: wait for the first byte of a request, for the keep-alive timeout at most.
  stream_.expires_after(probe_only_ ? kProbeSlotDeadline : seconds(server_.options().keep_alive_timeout_s));
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
    self->buffer_.commit(n);
    if (ec) {
      if (ec == beast::error::timeout) self->server_.metrics().dropped("timeout");
      return self->close();
    }
    self->read_header();
  });
}

void Session::read_header() {
  state_ = State::kReading;
  endpoint_ = Endpoint::kNone;
  const ServerOptions& o = server_.options();
  parser_.emplace();
  parser_->body_limit(o.max_body_bytes);  // on the body bytes decoded, chunked or not
  parser_->header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
  started_ = Clock::now();
  // One deadline for the whole request, headers and body: a client that
  // trickles bytes does not extend it.
  stream_.expires_after(probe_only_ ? kProbeSlotDeadline : seconds(o.request_timeout_s));
  http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->on_header(ec);
  });
}

void Session::on_header(beast::error_code ec) {
  if (ec) return on_read_error(ec);
  const ServerOptions& o = server_.options();
  auto& req = parser_->get();
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  endpoint_ = endpoint_of(path);
  if (std::distance(req.begin(), req.end()) > o.max_header_fields)
    return reply(431, detail::error_body("more than " + std::to_string(o.max_header_fields) + " header fields"), true);
  if (probe_only_ && !(req.method() == http::verb::get && (path == "/healthz" || path == "/readyz")))
    return reply(503, detail::error_body("too many connections; retry later"), true);
  // Compressed bodies are refused: their decoded size is unknown until inflated.
  auto encoding = req.find(http::field::content_encoding);
  if (encoding != req.end() && !iequals(trim(encoding->value()), "identity"))
    return reply(415, detail::error_body("Content-Encoding " + std::string(encoding->value()) +
                                 " is not accepted: send the body uncompressed"), true);
  auto transfer = req.find(http::field::transfer_encoding);
  if (transfer != req.end() && !iequals(trim(transfer->value()), "chunked"))
    return reply(415, detail::error_body("Transfer-Encoding " + std::string(transfer->value()) +
                                 " is not accepted: send the body uncompressed, chunked or with a Content-Length"),
                 true);
  auto expect = req.find(http::field::expect);
  if (expect != req.end()) {
    if (!iequals(trim(expect->value()), "100-continue")) return reply(417, detail::error_body("unsupported Expect"), true);
    if (!parser_->is_done()) {
      // curl sends Expect: 100-continue for bodies over 1 KiB and waits for this.
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue), [self = shared_from_this()](beast::error_code e, std::size_t) {
        if (e) return self->close();
        self->read_body();
      });
      return;
    }
  }
  read_body();
}

void Session::read_body() {
  if (parser_->is_done()) return on_request();  // no body: a POST without Content-Length has an empty one
  http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec) return self->on_read_error(ec);
    self->on_request();
  });
}

void Session::on_read_error(beast::error_code ec) {
  {
    const std::string_view target = parser_->get().target();  // set once the request line is read
    endpoint_ = endpoint_of(target.substr(0, target.find('?')));
  }
  if (ec == http::error::body_limit)
    return reply(413, detail::error_body("the request body is larger than the limit of " +
                                 std::to_string(server_.options().max_body_bytes) + " bytes (--max-body-bytes)"),
                 true);
  if (ec == http::error::header_limit || (ec == http::error::buffer_overflow && !parser_->is_header_done()))
    return reply(431, detail::error_body("the request headers are larger than the limit of " +
                                 std::to_string(server_.options().max_header_bytes) + " bytes"),
                 true);
  if (ec == beast::error::timeout) {
    server_.metrics().dropped("timeout");  // the stream closed the socket at the deadline
    return close();
  }
  if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == net::error::eof ||
      ec == net::error::operation_aborted ||
      ec.category() != http::make_error_code(http::error::bad_target).category())
    return close();  // the client went away, or the socket failed
  return reply(400, detail::error_body(std::string("bad HTTP request: ") + ec.message()), true);
}

void Session::submit(std::function<void()> task) {
  state_ = State::kBusy;
  // Runs on this session's strand; frees the slot after the reply is started.
  auto run = [self = shared_from_this(), task = std::move(task)] {
    Server::ContextLoad& load = self->server_.load(self->context_);
    try {
      task();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "internal error: %s\n", e.what());
      self->reply(500, detail::error_body("internal error"));
    }
    load.scoring.fetch_sub(1);
    self->server_.gate().finish();
  };
  ScoringGate::Job job{stream_.get_executor(), std::move(run),
                       net::prefer(stream_.get_executor(), net::execution::outstanding_work.tracked),
                       &server_.load(context_).scoring};
  switch (server_.gate().admit(job)) {  // moves the job only when it queues it
    case ScoringGate::Admission::kRunNow: return job.run();
    case ScoringGate::Admission::kQueued: return;
    case ScoringGate::Admission::kFull:
      return reply(503, detail::error_body("the server is busy: every worker is taken and the queue is full; retry later"));
  }
}

void Session::on_request() {
  state_ = State::kBusy;
  ready_ = Clock::now();
  auto& req = parser_->get();
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const http::verb method = req.method();
  auto wrong_method = [&](const char* allowed) { reply(405, detail::error_body(std::string("use ") + allowed)); };
  const auto text = "text/plain";
  if (path == "/healthz") {  // answered here, never queued behind scoring
    if (method != http::verb::get) return wrong_method("GET");
    return reply(200, "ok\n", false, 0, text);
  }
  if (path == "/readyz") {
    if (method != http::verb::get) return wrong_method("GET");
    return server_.current() ? reply(200, "ready\n", false, 0, text) : reply(503, "not ready\n", false, 0, text);
  }
  if (path == "/metrics") {
    if (method != http::verb::get) return wrong_method("GET");
    return reply(200, server_.metrics().text(*server_.current()), false, 0, "text/plain; version=0.0.4");
  }
  if (path == "/v1/rank") {
    if (method != http::verb::post) return wrong_method("POST");
    return submit([this, body = std::move(req.body())] {
      Server::Reply r = server_.rank(body);
      reply(r.status, std::move(r.body), false, r.scored);
    });
  }
  if (path == "/v1/reload") {
    if (method != http::verb::post) return wrong_method("POST");
    const ServerOptions& o = server_.options();
    if (o.admin_token.empty())
      return reply(404, detail::error_body("admin endpoints are off: start the server with an admin token"));
    if (!detail::token_matches(req[http::field::authorization], o.admin_token))
      return reply(401, detail::error_body("Authorization: Bearer <admin token> required"));
    // A load can take seconds: it runs on the reload thread (reloads are one
    // at a time anyway), so the other connections pinned to this thread go
    // on being served; the reply comes back to this connection's strand.
    state_ = State::kBusy;
    net::post(server_.reload_executor(),
              [self = shared_from_this(), body = std::move(req.body()),
               keep = net::prefer(stream_.get_executor(), net::execution::outstanding_work.tracked)]() mutable {
                Server::Reply r = self->server_.reload_request(body);
                net::post(self->stream_.get_executor(), [self, r = std::move(r), keep = std::move(keep)]() mutable {
                  self->reply(r.status, std::move(r.body));
                });
              });
    return;
  }
  if (path == "/v1/recommend" || path == "/v1/events") {
    if (method != http::verb::post) return wrong_method("POST");
    const bool recommend = path == "/v1/recommend";
    return submit([this, recommend, body = std::move(req.body())] {
      Server::Reply r = recommend ? server_.recommend(body) : server_.event(body);
      reply(r.status, std::move(r.body));
    });
  }
  reply(404, detail::error_body("no such endpoint: POST /v1/rank, /v1/recommend, /v1/events, /v1/reload; GET /healthz, "
                                "/readyz, /metrics"));
}

void Session::reply(int status, std::string body, bool close_after, std::int64_t scored, const char* content_type) {
  state_ = State::kBusy;
  Metrics& metrics = server_.metrics();
  metrics.response(status);
  metrics.observe(endpoint_,
                  status, ready_ >= started_ ? seconds_since_ready()
                                             : std::chrono::duration<double>(Clock::now() - started_).count(),
                  scored);
  const bool header_done = parser_ && parser_->is_header_done();
  auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status),
                                                                 header_done ? parser_->get().version() : 11);
  res->set(http::field::server, "mtrank");
  res->set(http::field::content_type, content_type);
  if (status == 503) res->set(http::field::retry_after, "1");
  res->body() = std::move(body);
  const bool keep = !close_after && header_done && parser_->get().keep_alive() && !server_.stopping() && !probe_only_;
  res->keep_alive(keep);
  res->prepare_payload();
  stream_.expires_after(seconds(server_.options().request_timeout_s));  // a client that does not read is dropped too
  http::async_write(stream_, *res, [self = shared_from_this(), res, keep, close_after](beast::error_code ec, std::size_t) {
    if (ec) return self->close();
    if (!keep) return close_after ? self->linger() : self->close();
    self->wait_for_request();
  });
}

// After an error response the request may not have been read to its end:
// closing now would make the kernel answer the unread bytes with a reset that
// can destroy the response before the client reads it. Half-close, then read
// and drop what still comes, for a moment and a few MiB at most.
void Session::linger() {
  state_ = State::kClosing;
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(kLingerDeadline);
  stream_.async_read_some(net::buffer(drain_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
    self->drained_ += n;
    if (ec || self->drained_ > kLingerBytes) return self->close();
    self->linger();
  });
}

void Session::close() {
  state_ = State::kClosing;
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

// Lets the process hold max_connections sockets: raises the soft limit of open
// files toward the hard one when it is too low.
void raise_file_limit(const ServerOptions& o) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t want = static_cast<rlim_t>(o.max_connections + kProbeSlots + 128);
  if (lim.rlim_cur >= want) return;
  lim.rlim_cur = std::min(want, lim.rlim_max);
  setrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < want)
    std::fprintf(stderr, "warning: the open-file limit (%llu) is below --max-connections %d plus margin\n",
                 static_cast<unsigned long long>(lim.rlim_cur), o.max_connections);
}

void check_options(const ServerOptions& o) {
  auto bad = [](const std::string& flag, const std::string& what) { throw ConfigError(flag + ": " + what); };
  if (o.port < 0 || o.port > 65535) bad("--port " + std::to_string(o.port), "must be 0 to 65535 (0 = any free port)");
  if (o.threads < 1 || o.threads > kMaxServerThreads)
    bad("--threads " + std::to_string(o.threads), "must be 1 to " + std::to_string(kMaxServerThreads));
  if (o.io_threads < 1 || o.io_threads > 64) bad("--io-threads " + std::to_string(o.io_threads), "must be 1 to 64");
  if (o.max_connections < 1) bad("--max-connections", "must be at least 1");
  if (o.max_queue < 1) bad("--max-queue", "must be at least 1");
  if (!(o.request_timeout_s > 0 && o.request_timeout_s <= 3600)) bad("--request-timeout", "must be in (0, 3600] seconds");
  if (!(o.keep_alive_timeout_s > 0 && o.keep_alive_timeout_s <= 3600))
    bad("--keep-alive-timeout", "must be in (0, 3600] seconds");
  if (o.max_header_bytes < 1024 || o.max_header_bytes > (1u << 20)) bad("--max-header-bytes", "must be 1 KiB to 1 MiB");
  if (o.max_header_fields < 1) bad("max_header_fields", "must be at least 1");
}

}  // namespace

int run_server(const ServerOptions& o) {
  check_options(o);
  // Signals are taken by one thread with sigwait; every other thread blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // One io_context per thread, each connection pinned to one (Server::pick_context):
  // a connection's reads, scoring and writes stay on one thread, with no
  // hand-offs between threads (a shared io_context spent 11% of its time
  // switching tasks between threads; docs/benchmarks.md).
  // --io-threads + --threads connection threads (see ScoringGate), one that
  // only accepts and one that only reloads.
  const int total_threads = o.io_threads + o.threads + 2;
  std::vector<std::unique_ptr<net::io_context>> contexts;
  for (int i = 0; i < total_threads; ++i) contexts.push_back(std::make_unique<net::io_context>(1));
  // The state store opens before the models load: a corrupt one is refused at once.
  std::unique_ptr<UserStateStore> store;
  if (!o.state_dir.empty()) {
    if (o.retrieval_dir.empty()) throw ConfigError("--state-dir: users' state needs a retrieval model (--retrieval)");
    UserStateOptions so;
    so.max_bytes = o.state_max_bytes;
    store = std::make_unique<UserStateStore>(o.state_dir, so);
  }
  if (!o.retrieval_dir.empty() && o.catalog_file.empty())
    throw ConfigError("--retrieval: name the item catalog too (--catalog ITEMS_FILE), whose rows the ranker reads");
  if (o.retrieval_dir.empty() && !o.catalog_file.empty()) throw ConfigError("--catalog: only with --retrieval");
  Server server(o, contexts, load_unit(o.model_dir, o.retrieval_dir, o), store.get());
  const int port = server.bind();  // before any thread: a port in use fails here, with exit code 2
  raise_file_limit(o);

  // Every thread starts before "listening" is printed; if one cannot start,
  // those started are stopped and joined, and the error says which.
  server.start_accepting();
  std::vector<std::thread> io;
  auto run_io = [](net::io_context& ioc) {
    for (;;) {
      try {
        ioc.run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "internal error on an I/O thread: %s\n", e.what());
      }
    }
  };
  auto stop_io = [&] {
    for (auto& c : contexts) c->stop();
    for (auto& t : io) t.join();
  };
  for (int i = 0; i < total_threads; ++i) {
    try {
      io.emplace_back(run_io, std::ref(*contexts[static_cast<std::size_t>(i)]));
    } catch (const std::system_error& e) {
      stop_io();
      throw std::runtime_error("cannot start server thread " + std::to_string(i + 1) + " of " +
                               std::to_string(total_threads) + " (--threads " + std::to_string(o.threads) +
                               " + --io-threads " + std::to_string(o.io_threads) + " + 2 to accept and reload; " + e.what() +
                               "): lower --threads or raise the process limit (ulimit -u)");
    }
  }
  std::thread signal_thread;
  try {
    signal_thread = std::thread([&] {
      for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0) continue;
        if (sig == SIGHUP) {
          server.reload("", /*allow_schema_change=*/false);
          continue;
        }
        std::fprintf(stderr, "signal %d: finishing requests in flight, then stopping\n", sig);
        server.stop();
        return;
      }
    });
  } catch (const std::system_error& e) {
    stop_io();
    throw std::runtime_error(std::string("cannot start the signal thread (") + e.what() + "): raise the process limit");
  }

  const bool v6 = o.host.find(':') != std::string::npos;
  const auto live = server.current();
  std::printf("listening on http://%s%s%s:%d (model %s, version %s", v6 ? "[" : "", o.host.c_str(), v6 ? "]" : "",
              port, live->ranker->name().c_str(), live->ranker->version().c_str());
  if (live->recommender)
    std::printf("; retrieval model %s, version %s, width %lld; catalog of %lld items%s",
                live->recommender->retrieval_name().c_str(), live->recommender->retriever().version().c_str(),
                static_cast<long long>(live->recommender->retriever().default_width()),
                static_cast<long long>(live->recommender->catalog().size()),
                store ? ("; " + std::to_string(store->users()) + " users' state in " + o.state_dir).c_str() : "");
  std::printf(")\n");
  if (live->recommender && o.retriever.latency_budget_ms > 0) {
    const Retriever& r = live->recommender->retriever();
    std::string line;
    for (std::size_t i = 0; i < r.widths().size(); ++i)
      line += (i ? ", " : "") + std::to_string(r.widths()[i]) + ": " + std::to_string(r.width_p99_ms()[i]) + " ms";
    std::printf("retrieval p99 by width (%s); the widest within %g ms is %lld\n", line.c_str(), o.retriever.latency_budget_ms,
                static_cast<long long>(r.default_width()));
  }
  std::fflush(stdout);
  for (auto& t : io) t.join();  // returns after stop(), once every connection has finished its request
  signal_thread.join();
  return 0;
}

}  // namespace mtrank::serve
