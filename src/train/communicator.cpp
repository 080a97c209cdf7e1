#include "train/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <stdexcept>

#include "common/error.h"

namespace mtrank::train {

namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// A whole-number variable in [low, high], or `fallback` when unset.
int env_int(const char* name, int fallback, int low, int high) {
  const char* v = env_or_null(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < low || n > high)
    throw ConfigError(std::string("environment variable ") + name + "='" + v + "': expected a whole number from " +
                      std::to_string(low) + " to " + std::to_string(high));
  return static_cast<int>(n);
}

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv env;
  env.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  env.rank = env_int("RANK", 0, 0, env.world_size - 1);
  if (env.world_size > 1 && !env_or_null("RANK"))
    throw ConfigError("environment variable WORLD_SIZE=" + std::to_string(env.world_size) +
                      " is set but RANK is not: set both (torchrun does), or neither for one process");
  // Without LOCAL_WORLD_SIZE, one worker on this machine (torchrun sets it).
  env.local_world_size = env_int("LOCAL_WORLD_SIZE", 1, 1, env.world_size);
  env.local_rank = env_int("LOCAL_RANK", 0, 0, env.local_world_size - 1);
  env.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 30);
  if (const char* addr = env_or_null("MASTER_ADDR")) env.master_addr = addr;
  env.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  if (const char* agent = env_or_null("TORCHELASTIC_USE_AGENT_STORE"))
    env.agent_store = std::string(agent) == "True" || std::string(agent) == "true" || std::string(agent) == "1";
  if (const char* ifname = env_or_null("GLOO_SOCKET_IFNAME")) env.socket_ifname = ifname;
  return env;
}

int DistributedEnv::threads_per_worker(int configured) const {
  if (configured > 0 || local_world_size <= 1) return configured;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_world_size);
}

const std::map<std::string, CommunicatorFactory>& communicator_registry() {
  static const std::map<std::string, CommunicatorFactory> registry = {
      {"local", [](const DistributedEnv&) { return std::make_unique<LocalCommunicator>(); }},
      {"gloo", [](const DistributedEnv& env) { return make_gloo_communicator(env); }},
  };
  return registry;
}

std::unique_ptr<Communicator> make_communicator(const std::string& name, const DistributedEnv& env) {
  const auto it = communicator_registry().find(name);
  if (it != communicator_registry().end()) return it->second(env);
  std::string known;
  for (const auto& [n, f] : communicator_registry()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown communicator '" + name + "'; known: " + known);
}

std::unique_ptr<Communicator> make_communicator(const DistributedEnv& env) {
  return make_communicator(env.distributed() ? "gloo" : "local", env);
}

void check_same_on_every_rank(Communicator& c, const std::string& identity, const std::string& what) {
  if (c.world_size() == 1) return;
  std::string reference = identity;
  c.broadcast(reference);  // rank 0's
  std::vector<double> differs(static_cast<std::size_t>(c.world_size()), 0.0);
  differs[static_cast<std::size_t>(c.rank())] = reference == identity ? 0.0 : 1.0;
  c.sum(differs);
  std::string ranks;
  for (std::size_t r = 0; r < differs.size(); ++r)
    if (differs[r] > 0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  if (!ranks.empty())
    throw ConfigError("the workers of this run disagree on " + what + ": rank(s) " + ranks +
                      " differ from rank 0. Give every worker the same config, data files and flags");
}

}  // namespace mtrank::train
