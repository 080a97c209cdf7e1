#pragma once
// The ranking server: HTTP on top of Ranker, with health and readiness
// probes, Prometheus metrics, and model reloads that never drop a request
// (the live Ranker is a shared_ptr swapped atomically; requests in flight
// keep the one they started with).
//
// Hostile clients (docs/reliability.md, "Hostile HTTP clients"): connections
// are served asynchronously on a few I/O threads, so an idle or trickling
// socket holds no thread; each request has one deadline for its headers and
// body; bodies are limited on the bytes actually read (chunked included) and
// compressed bodies are refused; header size and count are bounded; the
// number of connections is bounded; probes never wait for scoring.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "serve/ranker.h"
#include "serve/recommender.h"

namespace mtrank::serve {

constexpr int kMaxServerThreads = 256;  // upper bound of --threads

struct ServerOptions {
  std::string model_dir;
  std::string models_root;     // POST /v1/reload loads only directories inside it; "" = model_dir's parent
  std::string host = "127.0.0.1";
  int port = 8080;             // 0 = any free port (printed at start)
  int threads = 2;             // rank requests scored in parallel (1..kMaxServerThreads)
  int io_threads = 1;          // threads always left for accept, read, write and probes (an idle connection
                               // costs none); the server runs threads + io_threads threads, one that accepts
                               // and one that reloads
  int score_threads = 1;       // chunks of one request in parallel (docs/benchmarks.md)
  std::size_t max_body_bytes = 8u << 20;     // on the bytes read, after chunked decoding
  std::size_t max_header_bytes = 16u << 10;  // request line + header fields
  int max_header_fields = 100;
  int max_connections = 512;   // beyond: probes still answered on a few extra slots, other requests get 503
  int max_queue = 256;         // rank requests waiting for a scoring slot; beyond: 503
  double request_timeout_s = 10;    // one deadline for reading a request (headers + body), and one for its response
  double keep_alive_timeout_s = 5;  // an idle connection (no byte of a next request) is closed after this
  std::string admin_token;     // "" = admin endpoints (reload) are off
  RankerOptions ranker;
  // Retrieval and ranking in one request (POST /v1/recommend), and users'
  // live state (POST /v1/events): off unless retrieval_dir is set.
  std::string retrieval_dir;   // a sequential model directory (mtrank train with [sequential])
  std::string catalog_file;    // items' rows of the ranker's item columns (CSV/TSV, gzip too)
  std::string catalog_item_column = "item";
  std::string state_dir;       // "" = no user state (recommend by history only; no /v1/events)
  std::size_t state_max_bytes = std::size_t{64} << 30;
  RetrieverOptions retriever;
  RecommenderOptions recommender;
};

// Runs until SIGTERM or SIGINT (in-flight requests finish), reloading the
// model on SIGHUP. Prints "listening on http://HOST:PORT" once every thread
// has started and the port is bound. Throws ConfigError when the address
// cannot be bound (port in use, bad host) or an option is out of range, and
// std::runtime_error when a thread cannot start.
int run_server(const ServerOptions& options);

// Pieces of the server with their own tests (tests/serve/test_http_limits.cpp).
namespace detail {
// {"error": message} as JSON; bytes that are not UTF-8 (a value cut inside a
// character) become U+FFFD instead of an exception.
std::string error_body(const std::string& message);
// A Prometheus label value with backslash, double quote and newline escaped.
std::string prometheus_label(std::string_view value);
// Whether an Authorization header is "Bearer TOKEN", in time independent of where they differ.
bool token_matches(std::string_view authorization, const std::string& token);
// `requested` (absolute, or relative to root) with symlinks resolved and ".."
// folded, if that is root or inside it; root must be canonical.
std::optional<std::string> resolve_inside(const std::filesystem::path& root, const std::string& requested);
}  // namespace detail

}  // namespace mtrank::serve
