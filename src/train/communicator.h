#pragma once
// How the processes of one training run talk: their rank and count, and the
// collectives the data-parallel scheme needs (train::Trainer). One process is
// the local communicator; several are torch.distributed's Gloo process group
// (gloo_communicator.cpp), both registered by name.
//
// The scheme is exact, not an approximation of one process: every rank holds
// the whole model and optimizer state; each global batch is split among the
// ranks; each task's loss is divided by its global row count; dense gradients
// and embedding-row gradients are summed over the ranks; every rank applies the
// same update. Two ranks with half a batch each therefore train the model one
// process trains with the whole batch, up to float rounding (tests/train).
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace mtrank::train {

// Where this process sits in a run, in torchrun's environment variables:
// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_USE_AGENT_STORE (a launcher hosts the store: every rank is its
// client) and GLOO_SOCKET_IFNAME (the network interface Gloo binds to).
struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;
  int restart_count = 0;  // TORCHELASTIC_RESTART_COUNT: an agent store's keys are per attempt
  std::string socket_ifname;
  // Bounds every collective and the rendezvous: a worker that hangs makes the
  // others fail after this long instead of waiting forever.
  std::chrono::seconds timeout{300};

  // From the environment; without WORLD_SIZE a single process. Throws
  // ConfigError naming the variable when one is malformed or inconsistent.
  static DistributedEnv from_environment();
  bool distributed() const { return world_size > 1; }
  // Threads this worker trains with: `configured` if set (> 0), else this
  // machine's cores shared among its LOCAL_WORLD_SIZE workers.
  int threads_per_worker(int configured) const;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Sums each value over all processes, in place.
  virtual void sum(std::vector<double>& values) = 0;
  // Sums float tensors over all processes, in place, as one message.
  virtual void sum_dense(std::vector<torch::Tensor>& tensors) = 0;
  // Embedding-row gradients: `ids` [U] distinct, ascending int64 rows of a
  // table of `table_rows` rows, `rows` [U, W] their gradients. Replaced by the
  // ascending union of every process's ids and, for each, the sum of the
  // processes' gradients (a process that did not touch a row adds nothing).
  virtual void sum_rows(torch::Tensor& ids, torch::Tensor& rows, std::int64_t table_rows) = 0;
  // Every process's `local`, concatenated in rank order (sizes may differ).
  virtual std::vector<float> gather_all(const std::vector<float>& local) = 0;
  // Personalized exchange: `send[d]` (1-D, one dtype on every process:
  // float32 or int64; any size, empty too) goes to process d. Returns what
  // each process sent this one, in rank order. `receive_counts`, when the
  // caller knows them (a reply to an earlier exchange), spares the exchange
  // of sizes. Row-wise sharded tables use it (train.table_sharding = "row").
  virtual std::vector<torch::Tensor> all_to_all(const std::vector<torch::Tensor>& send,
                                                const std::vector<std::int64_t>* receive_counts = nullptr) = 0;
  // Rank 0's value on every process.
  virtual void broadcast(std::string& bytes) = 0;
  virtual void broadcast(std::vector<torch::Tensor>& tensors) = 0;
  // The one process that writes checkpoints, metrics and progress.
  bool is_primary() const { return rank() == 0; }
};

// A single process: nothing to exchange.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void sum(std::vector<double>&) override {}
  void sum_dense(std::vector<torch::Tensor>&) override {}
  void sum_rows(torch::Tensor&, torch::Tensor&, std::int64_t) override {}
  std::vector<float> gather_all(const std::vector<float>& local) override { return local; }
  std::vector<torch::Tensor> all_to_all(const std::vector<torch::Tensor>& send,
                                        const std::vector<std::int64_t>*) override {
    return send;
  }
  void broadcast(std::string&) override {}
  void broadcast(std::vector<torch::Tensor>&) override {}
};

using CommunicatorFactory = std::function<std::unique_ptr<Communicator>(const DistributedEnv&)>;
// Communicators by name: "local", "gloo" (torch.distributed's ProcessGroupGloo over TCP).
const std::map<std::string, CommunicatorFactory>& communicator_registry();
// Throws std::invalid_argument naming the known communicators.
std::unique_ptr<Communicator> make_communicator(const std::string& name, const DistributedEnv& env);
// "gloo" for a distributed environment, else "local".
std::unique_ptr<Communicator> make_communicator(const DistributedEnv& env);

// Throws ConfigError on every rank, naming the ranks whose `identity` differs
// from rank 0's (`what`: "the config and training data"): workers that read
// different data or configs would otherwise exchange mismatched messages.
void check_same_on_every_rank(Communicator& communicator, const std::string& identity, const std::string& what);

// Defined in gloo_communicator.cpp (the one translation unit with Gloo's headers).
std::unique_ptr<Communicator> make_gloo_communicator(const DistributedEnv& env);

}  // namespace mtrank::train
