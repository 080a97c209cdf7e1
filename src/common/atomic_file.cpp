#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/error.h"

namespace mtrank {

namespace fs = std::filesystem;

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
  bool ok = std::fflush(file_) == 0 && std::ferror(file_) == 0;
  int error = ok ? 0 : errno;
  if (ok && ::fsync(::fileno(file_)) != 0) {
    ok = false;
    error = errno;
  }
  const bool closed = std::fclose(file_) == 0;
  if (ok && !closed) error = errno;
  file_ = nullptr;
  if (!ok || !closed) {
    std::remove(tmp_.c_str());
    throw DataError(path_ + ": write failed: " + std::strerror(error) + (error == ENOSPC ? " (disk full)" : ""));
  }
  std::error_code ec;
  fs::rename(tmp_, path_, ec);
  if (ec) {
    std::remove(tmp_.c_str());
    throw DataError(path_ + ": cannot rename into place: " + ec.message());
  }
  sync_directory(fs::absolute(path_).parent_path().string());
}

void write_file_atomic(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  std::fwrite(text.data(), 1, text.size(), f.get());
  f.commit();
}

void write_file_durable(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw DataError(path + ": cannot write: " + std::strerror(errno));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : ENOSPC;
      ::close(fd);
      throw DataError(path + ": write failed: " + std::strerror(error) + (error == ENOSPC ? " (disk full)" : ""));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int error = errno;
    throw DataError(path + ": write failed: " + std::strerror(error) + (error == ENOSPC ? " (disk full)" : ""));
  }
}

void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the rename itself succeeded
  ::fsync(fd);
  ::close(fd);
}

void check_output_file(const std::string& path, const std::string& what) {
  if (path.empty()) return;
  const fs::path p = fs::absolute(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) throw ConfigError(what + " " + path + ": is a directory; give a file name");
  const fs::path parent = p.parent_path();
  if (!fs::is_directory(parent, ec))
    throw ConfigError(what + " " + path + ": the folder " + parent.string() + " does not exist; create it first");
  if (::access(parent.c_str(), W_OK) != 0)
    throw ConfigError(what + " " + path + ": the folder " + parent.string() + " is not writable: " +
                      std::strerror(errno));
}

}  // namespace mtrank
