#pragma once
// The ranking server: HTTP on top of Ranker, with health and readiness
// probes, Prometheus metrics, and model reloads that never drop a request
// (the live Ranker is a shared_ptr swapped atomically; requests in flight
// keep the one they started with).
#include <cstdint>
#include <string>

#include "serve/ranker.h"

namespace mtrank::serve {

struct ServerOptions {
  std::string model_dir;
  std::string host = "127.0.0.1";
  int port = 8080;             // 0 = any free port (printed at start)
  int threads = 2;             // HTTP worker threads: requests in parallel
  int score_threads = 1;       // chunks of one request in parallel (docs/benchmarks.md)
  std::size_t max_body_bytes = 8u << 20;
  std::string admin_token;     // "" = admin endpoints (reload) are off
  RankerOptions ranker;
};

// Runs until SIGTERM or SIGINT (in-flight requests finish), reloading the
// model on SIGHUP. Prints "listening on http://HOST:PORT" once ready.
int run_server(const ServerOptions& options);

}  // namespace mtrank::serve
