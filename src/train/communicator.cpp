#include "train/communicator.h"

#include <stdexcept>

namespace mtrank::train {

const std::map<std::string, CommunicatorFactory>& communicator_registry() {
  static const std::map<std::string, CommunicatorFactory> registry = {
      {"local", [] { return std::make_unique<LocalCommunicator>(); }},
  };
  return registry;
}

std::unique_ptr<Communicator> make_communicator(const std::string& name) {
  const auto it = communicator_registry().find(name);
  if (it != communicator_registry().end()) return it->second();
  std::string known;
  for (const auto& [n, f] : communicator_registry()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown communicator '" + name + "'; known: " + known);
}

}  // namespace mtrank::train
