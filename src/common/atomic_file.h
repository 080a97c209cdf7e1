#pragma once
// Output files are written to a temporary name beside the target and renamed
// into place only when complete, so a crash or a full disk never leaves a
// half-written file under the real name.
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
  void commit();  // flush, close, rename; throws DataError on any write failure

 private:
  std::string path_, tmp_;
  std::FILE* file_;
};

// Writes `text` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace mtrank
