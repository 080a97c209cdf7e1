// The data-parallel communicator: torch.distributed's c10d with the Gloo
// backend, which Debian's LibTorch is built with. This is the one translation
// unit that includes ProcessGroupGloo.hpp (30-40 s to compile here).
#include <cstring>
#include <sstream>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "common/error.h"
#include "train/communicator.h"

namespace mtrank::train {

namespace {

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(const DistributedEnv& env) : env_(env) {
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(env.timeout);
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<std::uint16_t>(env.master_port);
      // Under a launcher's store (torchrun's agent) every rank is a client;
      // otherwise rank 0 hosts the store and waits for the others.
      so.isServer = env.rank == 0 && !env.agent_store;
      so.numWorkers = env.agent_store ? c10::nullopt : c10::optional<std::size_t>(env.world_size);
      // Every rank counts itself in (a client that does not is never counted:
      // the server would wait out the timeout); under an agent's store the
      // count is not known, so none waits here.
      so.waitWorkers = !env.agent_store;
      so.timeout = timeout;
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      // Python's torch.distributed reads GLOO_SOCKET_IFNAME; a C++ program must do it itself.
      if (!env.socket_ifname.empty())
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(env.socket_ifname));
      else if (is_loopback(env.master_addr))
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      options->threads = 1;  // one collective at a time: the training step waits for each
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env.rank, env.world_size, options);
    } catch (const std::exception& e) {
      throw TrainingError(where() + ": could not join the run at " + env.master_addr + ":" +
                          std::to_string(env.master_port) + " within " + std::to_string(env.timeout.count()) +
                          " s (" + first_line(e.what()) +
                          "). Check MASTER_ADDR and MASTER_PORT on every worker, that all WORLD_SIZE workers "
                          "started, and GLOO_SOCKET_IFNAME on machines with several networks");
    }
  }

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }

  void sum(std::vector<double>& values) override {
    if (values.empty()) return;
    std::vector<torch::Tensor> t{torch::from_blob(values.data(), {static_cast<std::int64_t>(values.size())},
                                                  torch::kFloat64)};
    run("a sum of losses", [&] { return group_->allreduce(t); });
  }

  void sum_dense(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : tensors) flat_parts.push_back(t.reshape({-1}));
    std::vector<torch::Tensor> flat{torch::cat(flat_parts)};
    run("the sum of dense gradients", [&] { return group_->allreduce(flat); });
    std::int64_t offset = 0;
    for (auto& t : tensors) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }

  void sum_rows(torch::Tensor& ids, torch::Tensor& rows, std::int64_t table_rows) override {
    const std::int64_t width = rows.size(1);
    std::vector<torch::Tensor> sparse{
        torch::sparse_coo_tensor(ids.reshape({1, -1}), rows, {table_rows, width}).coalesce()};
    std::vector<torch::Tensor> out = run("the sum of embedding-row gradients", [&] { return group_->allreduce(sparse); });
    const torch::Tensor summed = (out.empty() ? sparse[0] : out[0]).coalesce();
    ids = summed.indices().reshape({-1}).contiguous();
    rows = summed.values().contiguous();
  }

  std::vector<float> gather_all(const std::vector<float>& local) override {
    // Gloo gathers equal sizes: exchange the sizes, pad to the largest, trim.
    std::vector<torch::Tensor> size_in{torch::tensor({static_cast<std::int64_t>(local.size())})};
    std::vector<std::vector<torch::Tensor>> size_out(1);
    for (int r = 0; r < env_.world_size; ++r) size_out[0].push_back(torch::zeros({1}, torch::kInt64));
    run("a gather of sizes", [&] { return group_->allgather(size_out, size_in); });
    std::int64_t largest = 0;
    for (const auto& s : size_out[0]) largest = std::max(largest, s.item<std::int64_t>());
    torch::Tensor padded = torch::zeros({std::max<std::int64_t>(largest, 1)}, torch::kFloat32);
    std::copy(local.begin(), local.end(), padded.data_ptr<float>());
    std::vector<torch::Tensor> in{padded};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < env_.world_size; ++r) out[0].push_back(torch::zeros_like(padded));
    run("a gather of predictions", [&] { return group_->allgather(out, in); });
    std::vector<float> all;
    for (int r = 0; r < env_.world_size; ++r) {
      const float* p = out[0][static_cast<std::size_t>(r)].data_ptr<float>();
      all.insert(all.end(), p, p + size_out[0][static_cast<std::size_t>(r)].item<std::int64_t>());
    }
    return all;
  }

  void broadcast(std::string& bytes) override {
    std::vector<torch::Tensor> size{torch::tensor({static_cast<std::int64_t>(bytes.size())})};
    run("a broadcast", [&] { return group_->broadcast(size); });
    const std::int64_t n = size[0].item<std::int64_t>();
    bytes.resize(static_cast<std::size_t>(n));
    if (n == 0) return;
    std::vector<torch::Tensor> data{torch::from_blob(bytes.data(), {n}, torch::kUInt8)};
    run("a broadcast", [&] { return group_->broadcast(data); });
  }

  void broadcast(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    std::vector<torch::Tensor> parts;
    for (const auto& t : tensors) parts.push_back(t.reshape({-1}).to(torch::kFloat64));
    std::vector<torch::Tensor> flat{torch::cat(parts)};
    run("a broadcast of the model", [&] { return group_->broadcast(flat); });
    std::int64_t offset = 0;
    torch::NoGradGuard no_grad;
    for (auto& t : tensors) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }

 private:
  std::string where() const {
    return "rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world_size);
  }
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  // Runs one collective and waits for it. Gloo reports a peer that died as
  // an exception within seconds and one that hangs at the timeout; either
  // becomes a TrainingError naming this rank, never an abort or a hang.
  template <typename Start>
  std::vector<torch::Tensor> run(const char* what, Start start) {
    try {
      c10::intrusive_ptr<c10d::Work> work = start();
      work->wait();
      return work->result();
    } catch (const std::exception& e) {
      throw TrainingError(where() + ": " + what + " with the other workers failed (" + first_line(e.what()) +
                          "): another worker stopped (its error is above) or did not answer within the timeout (" +
                          std::to_string(env_.timeout.count()) + " s, --dist-timeout)");
    }
  }

  DistributedEnv env_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::unique_ptr<Communicator> make_gloo_communicator(const DistributedEnv& env) {
  return std::make_unique<GlooCommunicator>(env);
}

}  // namespace mtrank::train
