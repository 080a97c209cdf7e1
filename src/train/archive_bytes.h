#pragma once
// Text and bytes in LibTorch archives (checkpoints): as uint8 tensors.
#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace mtrank::train {

inline torch::Tensor bytes_tensor(const std::string& s) {
  return torch::from_blob(const_cast<char*>(s.data()), {static_cast<std::int64_t>(s.size())}, torch::kUInt8).clone();
}

inline std::string tensor_bytes(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<std::uint8_t>()), static_cast<std::size_t>(c.numel()));
}

}  // namespace mtrank::train
