// The data-parallel communicator: torch.distributed's c10d with the Gloo
// backend, which Debian's LibTorch is built with. This is the one translation
// unit that includes ProcessGroupGloo.hpp (30-40 s to compile here).
#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
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
      // Under torchrun's agent store, each restart attempt meets under its own
      // prefix, as torch.distributed's workers do; stale keys of a failed
      // attempt are never read.
      if (env.agent_store)
        store_ = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), store_);
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

  // Gathers every rank's ids and rows in one message (packed as bytes,
  // padded to the largest share), then merges the sorted id lists, adding a
  // shared row's gradients in rank order, so every rank gets the same bits.
  // Gloo's own sparse allreduce (allreduce of a sparse COO tensor) gives the
  // same sums but took 10.4 ms for 2 x 13,000 rows of 16 floats here, with
  // three exchanges and a coalesce; this takes 2 exchanges and a linear merge
  // (docs/benchmarks.md, "Data-parallel training").
  void sum_rows(torch::Tensor& ids, torch::Tensor& rows, std::int64_t /*table_rows*/) override {
    const int N = env_.world_size;
    const std::int64_t width = rows.size(1), count = ids.size(0);
    std::vector<torch::Tensor> size_in{torch::tensor({count})};
    std::vector<std::vector<torch::Tensor>> size_out(1);
    for (int r = 0; r < N; ++r) size_out[0].push_back(torch::zeros({1}, torch::kInt64));
    run("a gather of row counts", [&] { return group_->allgather(size_out, size_in); });
    std::vector<std::int64_t> counts(static_cast<std::size_t>(N));
    std::int64_t largest = 0;
    for (int r = 0; r < N; ++r) {
      counts[static_cast<std::size_t>(r)] = size_out[0][static_cast<std::size_t>(r)].item<std::int64_t>();
      largest = std::max(largest, counts[static_cast<std::size_t>(r)]);
    }
    // [ids: largest int64 | rows: largest x width float]
    const std::int64_t row_bytes = width * static_cast<std::int64_t>(sizeof(float));
    const std::int64_t bytes = std::max<std::int64_t>(1, largest * (8 + row_bytes));
    torch::Tensor packed = torch::zeros({bytes}, torch::kUInt8);
    std::uint8_t* p = packed.data_ptr<std::uint8_t>();
    const torch::Tensor ids_c = ids.to(torch::kInt64).contiguous(), rows_c = rows.to(torch::kFloat32).contiguous();
    std::memcpy(p, ids_c.data_ptr<std::int64_t>(), static_cast<std::size_t>(count * 8));
    std::memcpy(p + largest * 8, rows_c.data_ptr<float>(), static_cast<std::size_t>(count * row_bytes));
    std::vector<torch::Tensor> in{packed};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < N; ++r) out[0].push_back(torch::empty_like(packed));
    run("a gather of embedding-row gradients", [&] { return group_->allgather(out, in); });
    std::vector<const std::int64_t*> rank_ids(static_cast<std::size_t>(N));
    std::vector<const float*> rank_rows(static_cast<std::size_t>(N));
    for (int r = 0; r < N; ++r) {
      const std::uint8_t* q = out[0][static_cast<std::size_t>(r)].data_ptr<std::uint8_t>();
      rank_ids[static_cast<std::size_t>(r)] = reinterpret_cast<const std::int64_t*>(q);
      rank_rows[static_cast<std::size_t>(r)] = reinterpret_cast<const float*>(q + largest * 8);
    }
    // Merge: each step emits the smallest head id, summing the ranks that have it.
    std::vector<std::int64_t> head(static_cast<std::size_t>(N), 0), merged_ids;
    std::vector<float> merged_rows;
    std::int64_t total = 0;
    for (std::int64_t c : counts) total += c;
    merged_ids.reserve(static_cast<std::size_t>(total));
    merged_rows.reserve(static_cast<std::size_t>(total * width));
    for (;;) {
      std::int64_t next = std::numeric_limits<std::int64_t>::max();
      for (int r = 0; r < N; ++r)
        if (head[static_cast<std::size_t>(r)] < counts[static_cast<std::size_t>(r)])
          next = std::min(next, rank_ids[static_cast<std::size_t>(r)][head[static_cast<std::size_t>(r)]]);
      if (next == std::numeric_limits<std::int64_t>::max()) break;
      merged_ids.push_back(next);
      const std::size_t at = merged_rows.size();
      merged_rows.resize(at + static_cast<std::size_t>(width), 0.0f);
      float* dst = merged_rows.data() + at;
      bool first = true;
      for (int r = 0; r < N; ++r) {
        std::int64_t& h = head[static_cast<std::size_t>(r)];
        if (h >= counts[static_cast<std::size_t>(r)] || rank_ids[static_cast<std::size_t>(r)][h] != next) continue;
        const float* src = rank_rows[static_cast<std::size_t>(r)] + h * width;
        if (first) std::memcpy(dst, src, static_cast<std::size_t>(row_bytes));
        else
          for (std::int64_t k = 0; k < width; ++k) dst[k] += src[k];
        first = false;
        ++h;
      }
    }
    const auto n = static_cast<std::int64_t>(merged_ids.size());
    ids = torch::from_blob(merged_ids.data(), {n}, torch::kInt64).clone();
    rows = torch::from_blob(merged_rows.data(), {n, width}, torch::kFloat32).clone();
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

  // Gloo's alltoallv on one flat tensor with split sizes; the sizes go
  // first by an alltoall of one count per pair unless the caller knows them.
  std::vector<torch::Tensor> all_to_all(const std::vector<torch::Tensor>& send,
                                        const std::vector<std::int64_t>* receive_counts) override {
    const int N = env_.world_size;
    if (static_cast<int>(send.size()) != N)
      throw std::logic_error("all_to_all: one tensor per process is needed");
    const c10::ScalarType type = send[0].scalar_type();
    std::vector<std::int64_t> send_counts, counts;
    std::vector<torch::Tensor> parts;
    for (const auto& t : send) {
      if (t.scalar_type() != type) throw std::logic_error("all_to_all: every tensor must have one dtype");
      send_counts.push_back(t.numel());
      parts.push_back(t.reshape({-1}));
    }
    if (receive_counts) {
      counts = *receive_counts;
    } else {
      torch::Tensor out_sizes = torch::empty({N}, torch::kInt64);
      torch::Tensor in_sizes = torch::tensor(send_counts, torch::kInt64);
      std::vector<std::int64_t> ones_out(static_cast<std::size_t>(N), 1), ones_in = ones_out;
      run("an exchange of sizes", [&] { return group_->alltoall_base(out_sizes, in_sizes, ones_out, ones_in); });
      const std::int64_t* c = out_sizes.data_ptr<std::int64_t>();
      counts.assign(c, c + N);
    }
    std::int64_t total = 0;
    for (std::int64_t c : counts) total += c;
    torch::Tensor in = torch::cat(parts).contiguous();
    torch::Tensor out = torch::empty({total}, in.options());
    // alltoall_base moves the count vectors it is given away: give it copies.
    std::vector<std::int64_t> out_counts = counts, in_counts = send_counts;
    run("an exchange of embedding rows", [&] { return group_->alltoall_base(out, in, out_counts, in_counts); });
    std::vector<torch::Tensor> received;
    std::int64_t offset = 0;
    for (std::int64_t c : counts) {
      received.push_back(out.narrow(0, offset, c));
      offset += c;
    }
    return received;
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

  // Each tensor in its own type, in place (no copy of the model): a few
  // dozen messages, once a run.
  void broadcast(std::vector<torch::Tensor>& tensors) override {
    torch::NoGradGuard no_grad;
    for (auto& t : tensors) {
      std::vector<torch::Tensor> one{t.is_contiguous() ? t.detach() : t.contiguous()};
      run("a broadcast of the model", [&] { return group_->broadcast(one); });
      if (!t.is_contiguous()) t.copy_(one[0]);
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
  c10::intrusive_ptr<c10d::Store> store_;  // the TCPStore, or a PrefixStore over the agent's
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::unique_ptr<Communicator> make_gloo_communicator(const DistributedEnv& env) {
  return std::make_unique<GlooCommunicator>(env);
}

}  // namespace mtrank::train
