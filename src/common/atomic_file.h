#pragma once
// Output files are written to a temporary name beside the target and renamed
// into place only when complete and on disk (fsync of the file, then of its
// directory), so a crash or a full disk never leaves a half-written file
// under the real name.
#include <cstdio>
#include <string>

namespace mtrank {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // throws DataError if the directory is not writable
  ~AtomicFile();                                 // not committed: removes the temporary file
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::FILE* get() { return file_; }
  const std::string& temporary_path() const { return tmp_; }
  void commit();  // flush, fsync, close, rename, fsync the directory; throws DataError on any failure

 private:
  std::string path_, tmp_;
  std::FILE* file_;
};

// Writes `text` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& text);

// Writes `text` to a new file at `path` and fsyncs it (for files inside a
// temporary directory that is itself renamed into place).
void write_file_durable(const std::string& path, const std::string& text);

// fsync of a directory, so a rename inside it survives a crash.
void sync_directory(const std::string& dir);

// Checks, before any work starts, that `path` can be written as an output
// file: its folder exists and is writable, and `path` is not a directory.
// Throws ConfigError naming `what` (e.g. "--metrics-out").
void check_output_file(const std::string& path, const std::string& what);

}  // namespace mtrank
