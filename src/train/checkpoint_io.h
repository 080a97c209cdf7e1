#pragma once
// What the ranking and the sequential trainers' checkpoints share: text as
// uint8 tensors in LibTorch archives, an archive written atomically, and
// LibTorch's CPU generator restored.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>

#include <torch/torch.h>

#include "common/atomic_file.h"
#include "common/error.h"

namespace mtrank::train {

inline torch::Tensor bytes_tensor(const std::string& s) {
  return torch::from_blob(const_cast<char*>(s.data()), {static_cast<std::int64_t>(s.size())}, torch::kUInt8).clone();
}

inline std::string tensor_bytes(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<std::uint8_t>()), static_cast<std::size_t>(c.numel()));
}

// Through the atomic writer (a temporary file renamed into place), never
// LibTorch's file writer, which aborts the process on a full disk and leaves
// a partial file. Throws ModelError (serializing) or DataError (writing).
inline void write_archive_atomic(torch::serialize::OutputArchive& archive, const std::string& path) {
  // Streamed into the temporary file: a large model's checkpoint (weights,
  // optimizer moments) held in a string stream and copied out of it took
  // twice to three times its size in memory at every epoch's end. The writer
  // never reports a failed write to LibTorch, whose file writer aborts the
  // process on one: the file's error state does, at commit ("(disk full)").
  AtomicFile file(path);
  int error = 0;  // the first failed write's errno (commit() would read a later one)
  try {
    archive.save_to([&file, &error](const void* data, std::size_t n) -> std::size_t {
      if (error == 0 && std::fwrite(data, 1, n, file.get()) != n) error = errno != 0 ? errno : EIO;
      return n;
    });
  } catch (const c10::Error& e) {
    throw ModelError(path + ": cannot serialize the checkpoint: " + e.what_without_backtrace());
  }
  if (error != 0)  // the temporary file is removed with `file`
    throw DataError(path + ": write failed: " + std::strerror(error) + (error == ENOSPC ? " (disk full)" : ""));
  file.commit();
}

inline void set_torch_generator_state(const torch::Tensor& state) {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace mtrank::train
