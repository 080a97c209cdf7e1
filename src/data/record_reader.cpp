#include "data/record_reader.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "common/error.h"

namespace mtrank::data {
namespace {

constexpr std::size_t kGzipBufferSize = 256 * 1024;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         std::string_view(s).substr(s.size() - suffix.size()) == suffix;
}

std::string describe_char(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (c == '\t') return "'\\t'";
  if (c == '\r') return "'\\r'";
  if (u < 0x20 || u >= 0x7f) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", u);
    return buf;
  }
  return std::string("'") + c + "'";
}

}  // namespace

std::vector<std::string> expand_files(const std::vector<std::string>& entries) {
  std::vector<std::string> files;
  for (const std::string& entry : entries) {
    if (entry.empty()) throw DataError("a data set names an empty file name (\"\"); give a path or a pattern");
    struct stat st {};
    // A path that exists is a file's name even with `[` or `*` in it; a plain
    // path that does not exist is kept, so opening it reports its errno.
    if (entry.find_first_of("*?[") == std::string::npos || ::stat(entry.c_str(), &st) == 0) {
      files.push_back(entry);
      continue;
    }
    glob_t g{};
    errno = 0;
    const int rc = ::glob(entry.c_str(), GLOB_ERR | GLOB_MARK, nullptr, &g);
    if (rc != 0 && rc != GLOB_NOMATCH && !(rc == GLOB_ABORTED && (errno == ENOENT || errno == ENOTDIR))) {
      ::globfree(&g);
      throw DataError(entry + ": cannot list the files of the pattern: " + std::strerror(errno));
    }
    std::size_t matched = 0;
    for (std::size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
      const std::string match = g.gl_pathv[i];  // glob sorts by name (bytes: day-10 before day-9)
      if (!match.empty() && match.back() == '/') continue;  // GLOB_MARK: a directory, not data
      files.push_back(match);
      ++matched;
    }
    ::globfree(&g);
    if (matched == 0)
      throw DataError(entry + ": the pattern matches no file (quote a pattern on the command line so mtrank, not "
                              "the shell, expands it)");
  }
  // A file named twice (a list entry that a pattern also matches) would count its rows twice.
  std::vector<std::pair<std::string, std::size_t>> seen;
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::error_code ec;
    const std::string canonical = std::filesystem::weakly_canonical(files[i], ec).string();
    seen.emplace_back(ec ? files[i] : canonical, i);
  }
  std::sort(seen.begin(), seen.end());
  for (std::size_t i = 1; i < seen.size(); ++i)
    if (seen[i].first == seen[i - 1].first)
      throw DataError(files[seen[i].second] + ": named twice in one data set (as " + files[seen[i - 1].second] +
                      " and " + files[seen[i].second] + "), so its rows would count twice; list each file once");
  return files;
}

// ---------------------------------------------------------------------------
// Source: a plain file read with read(2), or a gzip stream read with zlib.
struct RecordReader::Source {
  const std::string& path;
  int fd = -1;
  gzFile gz = nullptr;

  explicit Source(const std::string& p) : path(p) {}
  ~Source() {
    if (gz != nullptr) {
      gzclose(gz);  // also closes fd
    } else if (fd >= 0) {
      ::close(fd);
    }
  }

  // Reads up to n bytes; returns 0 only at end of file. Throws on errors.
  std::size_t read(char* dst, std::size_t n) {
    if (gz != nullptr) {
      unsigned want = static_cast<unsigned>(std::min<std::size_t>(n, INT_MAX));
      int got = gzread(gz, dst, want);
      int err = Z_OK;
      const char* msg = gzerror(gz, &err);
      // gzdopen() streams prefix messages with "<fd:N>: "; the path is ours to add.
      if (msg != nullptr && std::strncmp(msg, "<fd:", 4) == 0) {
        if (const char* colon = std::strstr(msg, ": ")) msg = colon + 2;
      }
      if (got < 0 || (err != Z_OK && err != Z_BUF_ERROR)) {
        if (err == Z_ERRNO) throw DataError(path + ": read error: " + std::strerror(errno));
        throw DataError(path + ": corrupt gzip stream: " + (msg ? msg : "unknown error"));
      }
      if (got == 0 && err == Z_BUF_ERROR) {
        // zlib reports a truncated stream as Z_BUF_ERROR at end of input.
        throw DataError(path + ": corrupt gzip stream: " +
                        (msg && *msg ? msg : "unexpected end of file") +
                        " (the file is truncated)");
      }
      return static_cast<std::size_t>(got);
    }
    for (;;) {
      ssize_t got = ::read(fd, dst, n);
      if (got >= 0) return static_cast<std::size_t>(got);
      if (errno == EINTR) continue;
      throw DataError(path + ": read error: " + std::strerror(errno));
    }
  }

  std::uint64_t offset(std::uint64_t consumed) const {
    if (gz != nullptr) {
      z_off_t off = gzoffset(gz);
      return off < 0 ? 0 : static_cast<std::uint64_t>(off);
    }
    return consumed;  // plain file: bytes on disk == bytes consumed
  }
};

// ---------------------------------------------------------------------------
RecordReader::RecordReader(const std::string& path, ReaderOptions options)
    : RecordReader(std::vector<std::string>{path}, options) {}

RecordReader::RecordReader(std::vector<std::string> files, ReaderOptions options)
    : files_(std::move(files)), options_(options), quote_(options.quote) {
  if (files_.empty()) throw DataError("no input file given");
  // The total size up front, so a progress bar over several files has one end.
  for (const std::string& f : files_) {
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0 && S_ISREG(st.st_mode)) total_file_size_ += static_cast<std::uint64_t>(st.st_size);
  }
  open(0);
}

void RecordReader::open(std::size_t file) {
  if (source_) {
    done_bytes_consumed_ += bytes_consumed_;
    done_file_offset_ += file_size_;
  }
  source_.reset();
  file_ = file;
  path_ = files_[file];
  buffer_.clear();
  begin_ = end_ = 0;
  eof_ = false;
  line_ = 1;
  record_line_ = 0;
  bytes_consumed_ = 0;
  const bool gzip = ends_with(path_, ".gz");
  if (options_.delimiter != 0) {
    delimiter_ = options_.delimiter;
  } else if (ends_with(path_, ".tsv") || ends_with(path_, ".tsv.gz") || ends_with(path_, ".tab") ||
             ends_with(path_, ".tab.gz")) {
    delimiter_ = '\t';
  } else {
    delimiter_ = ',';
  }
  if (delimiter_ == '\n' || delimiter_ == '\r' || delimiter_ == quote_ || quote_ == '\n' ||
      quote_ == '\r') {
    throw DataError(path_ + ": invalid reader options: delimiter " + describe_char(delimiter_) +
                    " and quote " + describe_char(quote_) +
                    " must differ from each other and from line breaks");
  }

  source_ = std::make_unique<Source>(path_);
  int fd;
  do {
    fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw DataError(path_ + ": cannot open: " + std::strerror(errno));
  source_->fd = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw DataError(path_ + ": cannot open: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw DataError(path_ + ": cannot open: " + std::strerror(EISDIR));
  file_size_ = S_ISREG(st.st_mode) ? static_cast<std::uint64_t>(st.st_size) : 0;
  if (files_.size() == 1) total_file_size_ = file_size_;
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  if (gzip) {
    gzFile gz = gzdopen(fd, "rb");
    if (gz == nullptr) throw DataError(path_ + ": cannot open: " + std::strerror(ENOMEM));
    source_->gz = gz;  // owns fd now
    gzbuffer(gz, kGzipBufferSize);
  }

  buffer_.resize(kInitialBufferSize);
  fill();
  // Skip a UTF-8 byte order mark.
  if (end_ - begin_ >= 3 && std::memcmp(buffer_.data() + begin_, "\xEF\xBB\xBF", 3) == 0) {
    begin_ += 3;
    bytes_consumed_ += 3;
  }

  if (!options_.has_header) return;
  std::vector<std::string_view> fields;
  if (!next_in_file(fields)) throw DataError(path_ + ": file is empty (expected a header row)");
  if (file == 0) {
    header_.assign(fields.begin(), fields.end());
    return;
  }
  // A part of a data set with other columns would be featurized by the first part's column positions.
  for (std::size_t c = 0; c < std::max(fields.size(), header_.size()); ++c)
    if (c >= fields.size() || c >= header_.size() || fields[c] != header_[c])
      throw DataError(path_ + ":" + std::to_string(record_line_) + ":" + std::to_string(c + 1) + ": header differs from the first file's (" +
                      files_[0] + "): column " + std::to_string(c + 1) + " is " +
                      (c < fields.size() ? "'" + std::string(fields[c]) + "'" : "missing") + ", expected " +
                      (c < header_.size() ? "'" + header_[c] + "'" : "no column") +
                      "; the files of one data set need the same columns in the same order");
}

RecordReader::~RecordReader() = default;

std::uint64_t RecordReader::file_offset() const {
  return done_file_offset_ + (source_ ? source_->offset(bytes_consumed_) : 0);
}

void RecordReader::fail(std::uint64_t line, std::uint64_t column, const std::string& what) const {
  throw DataError(path_ + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + what);
}

// Moves the unread bytes to the front, grows the buffer if they fill it (a record larger
// than the buffer), and reads until the buffer is full or the input ends.
// Invariant afterwards: !eof_ implies end_ == buffer_.size().
bool RecordReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    if (end_ > begin_) std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buffer_.size()) {
    if (buffer_.size() >= kMaxBufferSize) {
      throw DataError(path_ + ":" + std::to_string(line_) + ": record is larger than " +
                      std::to_string(kMaxBufferSize >> 20) +
                      " MiB (is a quoted field missing its closing quote?)");
    }
    buffer_.resize(std::min(buffer_.size() * 2, kMaxBufferSize));
  }
  const std::size_t before = end_;
  while (end_ < buffer_.size()) {
    std::size_t got = source_->read(buffer_.data() + end_, buffer_.size() - end_);
    if (got == 0) {
      eof_ = true;
      break;
    }
    end_ += got;
  }
  return end_ > before;
}

bool RecordReader::next(std::vector<std::string_view>& fields) {
  while (!next_in_file(fields)) {
    if (file_ + 1 >= files_.size()) return false;
    open(file_ + 1);
  }
  return true;
}

bool RecordReader::next_in_file(std::vector<std::string_view>& fields) {
  for (;;) {
    switch (parse(fields)) {
      case Parse::kRecord:
        return true;
      case Parse::kEnd:
        fields.clear();
        return false;
      case Parse::kNeedMore:
        fill();
        break;
    }
  }
}

// Parses one record from buffer_[begin_, end_). Returns kNeedMore (consuming nothing but
// skipped blank lines) when the record may continue past end_ and more input exists.
RecordReader::Parse RecordReader::parse(std::vector<std::string_view>& fields) {
  const char* const base = buffer_.data();
  const char* p = base + begin_;
  const char* const end = base + end_;

  // Skip blank lines ("\n" or "\r\n"; a lone "\r" at end of file).
  bool need_more = false;
  while (p < end) {
    if (*p == '\n') {
      ++p;
      ++line_;
    } else if (*p == '\r') {
      if (p + 1 < end) {
        if (p[1] != '\n') break;
        p += 2;
        ++line_;
      } else if (eof_) {
        ++p;
      } else {
        need_more = true;  // need the next byte to decide
        break;
      }
    } else {
      break;
    }
  }
  bytes_consumed_ += static_cast<std::uint64_t>((p - base) - begin_);
  begin_ = static_cast<std::size_t>(p - base);
  if (p == end) return eof_ ? Parse::kEnd : Parse::kNeedMore;
  if (need_more) return Parse::kNeedMore;  // "\r" at the end of the buffer

  // Fast path: the physical line is in the buffer and has no quoted field.
  const char* const rec = p;
  const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
  const char* line_end = nl != nullptr ? nl : end;
  if (nl == nullptr && !eof_) return Parse::kNeedMore;

  const char d = delimiter_;
  const char qc = quote_;
  fields.clear();
  const char* fs = p;
  if (*fs == qc) return parse_slow(fields, rec, fs);
  for (const char* q = p; q < line_end; ++q) {
    if (*q == d) {
      fields.emplace_back(fs, static_cast<std::size_t>(q - fs));
      fs = q + 1;
      if (fs < line_end && *fs == qc) return parse_slow(fields, rec, fs);
    }
  }
  const char* fe = line_end;
  if (fe > fs && fe[-1] == '\r') --fe;
  fields.emplace_back(fs, static_cast<std::size_t>(fe - fs));

  record_line_ = line_;
  const char* next = line_end;
  if (nl != nullptr) {
    ++next;
    ++line_;
  }
  bytes_consumed_ += static_cast<std::uint64_t>(next - rec);
  begin_ = static_cast<std::size_t>(next - base);
  return Parse::kRecord;
}

// General RFC 4180 state machine, entered at the first quoted field of a record.
// Fields before `field` are already in `fields`. Fields are views into buffer_, except
// quoted fields containing "" which are unquoted into unquoted_.
RecordReader::Parse RecordReader::parse_slow(std::vector<std::string_view>& fields,
                                             const char* rec, const char* field) {
  const char* const base = buffer_.data();
  const char* const end = base + end_;
  const char d = delimiter_;
  const char qc = quote_;
  std::uint64_t ln = line_;          // physical line of q
  const char* line_start = rec;      // start of that line
  // Unquoted text never exceeds the input it comes from, so views into unquoted_ stay valid.
  unquoted_.clear();
  unquoted_.reserve(static_cast<std::size_t>(end - field));

  const char* q = field;
  for (;;) {
    // q is at the start of a field.
    if (q < end && *q == qc) {
      const std::uint64_t open_line = ln;
      const std::uint64_t open_col = static_cast<std::uint64_t>(q - line_start) + 1;
      ++q;
      const char* content = q;     // start of the quoted content in the buffer
      const char* segment = q;     // start of the not yet copied content
      bool copied = false;
      std::size_t copy_offset = 0;
      const char* close;
      for (;;) {
        if (q == end) {
          if (!eof_) return Parse::kNeedMore;
          fail(open_line, open_col, "unterminated quoted field (opened here)");
        }
        const char c = *q;
        if (c == qc) {
          if (q + 1 == end && !eof_) return Parse::kNeedMore;  // could be ""
          if (q + 1 < end && q[1] == qc) {
            if (!copied) {
              copied = true;
              copy_offset = unquoted_.size();
            }
            unquoted_.append(segment, static_cast<std::size_t>(q + 1 - segment));
            q += 2;
            segment = q;
            continue;
          }
          close = q;
          ++q;
          break;
        }
        if (c == '\n') {
          ++ln;
          line_start = q + 1;
        }
        ++q;
      }
      if (copied) {
        unquoted_.append(segment, static_cast<std::size_t>(close - segment));
        fields.emplace_back(unquoted_.data() + copy_offset, unquoted_.size() - copy_offset);
      } else {
        fields.emplace_back(content, static_cast<std::size_t>(close - content));
      }
      // After the closing quote: delimiter, line end or end of file.
      if (q == end) break;  // eof_ (otherwise kNeedMore was returned above)
      if (*q == d) {
        ++q;
        continue;
      }
      if (*q == '\n') {
        ++q;
        ++ln;
        break;
      }
      if (*q == '\r') {
        if (q + 1 == end) {
          if (!eof_) return Parse::kNeedMore;
          ++q;
          break;
        }
        if (q[1] == '\n') {
          q += 2;
          ++ln;
          break;
        }
      }
      fail(ln, static_cast<std::uint64_t>(q - line_start) + 1,
           "unexpected character " + describe_char(*q) +
               " after the closing quote of a quoted field (a quote inside a quoted field must be "
               "doubled, and the field must end at the closing quote)");
    }
    // Unquoted field: up to the delimiter or the line end; quotes inside are literal.
    const char* s = q;
    while (q < end && *q != d && *q != '\n') ++q;
    if (q == end) {
      if (!eof_) return Parse::kNeedMore;
      const char* e = q;
      if (e > s && e[-1] == '\r') --e;
      fields.emplace_back(s, static_cast<std::size_t>(e - s));
      break;
    }
    if (*q == d) {
      fields.emplace_back(s, static_cast<std::size_t>(q - s));
      ++q;
      continue;
    }
    const char* e = q;  // '\n'
    if (e > s && e[-1] == '\r') --e;
    fields.emplace_back(s, static_cast<std::size_t>(e - s));
    ++q;
    ++ln;
    break;
  }

  record_line_ = line_;
  line_ = ln;
  bytes_consumed_ += static_cast<std::uint64_t>(q - rec);
  begin_ = static_cast<std::size_t>(q - base);
  return Parse::kRecord;
}

}  // namespace mtrank::data
