#include "common/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/error.h"

namespace mtrank {

AtomicFile::AtomicFile(const std::string& path)
    : path_(path), tmp_(path + ".tmp" + std::to_string(::getpid())), file_(std::fopen(tmp_.c_str(), "wb")) {
  if (!file_) throw DataError(path + ": cannot write: " + std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::commit() {
  const bool ok = std::fflush(file_) == 0 && std::ferror(file_) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!ok || !closed) {
    std::remove(tmp_.c_str());
    throw DataError(path_ + ": write failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) {
    std::remove(tmp_.c_str());
    throw DataError(path_ + ": cannot rename into place: " + ec.message());
  }
}

void write_file_atomic(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  std::fwrite(text.data(), 1, text.size(), f.get());
  f.commit();
}

}  // namespace mtrank
