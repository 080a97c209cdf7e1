#pragma once
// How the processes of one training run talk: their rank and count, and the
// gradient synchronization between an optimizer step's backward and apply
// phases (train::Trainer). One process is the local communicator; the
// data-parallel one (torch.distributed's Gloo) plugs in here, registered by
// name like the local one.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/model.h"

namespace mtrank::train {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Makes every process's gradients the average over all processes: the
  // dense parameters' gradients and the touched embedding rows'.
  virtual void average_gradients(std::vector<torch::Tensor>& dense_grads, model::TouchedRows& touched) = 0;
  // Sums each scalar over all processes (losses and row counts), in place.
  virtual void sum(std::vector<double>& values) = 0;
  // The one process that writes checkpoints, metrics and progress.
  bool is_primary() const { return rank() == 0; }
};

// A single process: nothing to synchronize.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void average_gradients(std::vector<torch::Tensor>&, model::TouchedRows&) override {}
  void sum(std::vector<double>&) override {}
};

using CommunicatorFactory = std::function<std::unique_ptr<Communicator>()>;
// Communicators by name ("local").
const std::map<std::string, CommunicatorFactory>& communicator_registry();
// Throws std::invalid_argument naming the known communicators.
std::unique_ptr<Communicator> make_communicator(const std::string& name);

}  // namespace mtrank::train
