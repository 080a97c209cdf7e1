#pragma once
// Streaming reader for delimited text logs (CSV, TSV), optionally gzip-compressed.
// Reads in one pass with a bounded buffer, so files larger than memory work.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mtrank::data {

struct ReaderOptions {
  // 0 = choose by extension: ".tsv"/".tsv.gz"/".tab" -> '\t', otherwise ','.
  char delimiter = 0;
  // Quote character for RFC 4180 quoting ("" inside a quoted field is one ").
  char quote = '"';
  // false: the file has no header row (the `user item` lines of sequential
  // data sets); header() is then empty and the first line is a record.
  bool has_header = true;
};

// The files a data set names (data.train, --train FILE): each entry is a path
// or a glob pattern (`*`, `?`, `[...]`), a pattern's matches in name order,
// entries in the order given. An entry that names no file is an error.
std::vector<std::string> expand_files(const std::vector<std::string>& entries);

// Reads records of a delimited file with a header row, or of several files in
// turn as one log (one data set split into parts: days, shards).
// - RFC 4180: quoted fields may contain the delimiter, "" and newlines; CRLF and LF line ends.
// - A ".gz" suffix means gzip (zlib), decompressed while streaming.
// - Several files: each has the first file's header (checked; it is not a record).
// - Errors throw mtrank::DataError with "path:line:column: what" messages,
//   naming the file being read and the line in it.
class RecordReader {
 public:
  explicit RecordReader(const std::string& path, ReaderOptions options = {});
  // `files` as expand_files returns them; at least one.
  explicit RecordReader(std::vector<std::string> files, ReaderOptions options = {});
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // Column names from the header row (unquoted). An empty file is an error at construction.
  const std::vector<std::string>& header() const { return header_; }
  // The file being read (of several: the current one).
  const std::string& path() const { return path_; }
  char delimiter() const { return delimiter_; }

  // Reads the next record into `fields`; returns false at end of file.
  // The views stay valid until the next call. Blank lines are skipped.
  // The number of fields is NOT checked against the header: callers decide.
  bool next(std::vector<std::string_view>& fields);

  // 1-based line number in path() where the last record returned by next() starts.
  std::uint64_t line() const { return record_line_; }
  // Bytes of (decompressed) input consumed so far, over all files; for progress reporting.
  std::uint64_t bytes_read() const { return done_bytes_consumed_ + bytes_consumed_; }
  // Size of the files on disk (compressed size for .gz); for progress reporting.
  std::uint64_t file_size() const { return total_file_size_; }
  // Bytes of the files on disk consumed so far (compressed offset for .gz).
  std::uint64_t file_offset() const;

 private:
  struct Source;  // plain file or gzip stream
  void open(std::size_t file);  // makes files_[file] the current file and reads its header
  bool next_in_file(std::vector<std::string_view>& fields);  // next() within the current file
  static constexpr std::size_t kInitialBufferSize = std::size_t{1} << 20;  // 1 MiB
  static constexpr std::size_t kMaxBufferSize = std::size_t{1} << 30;      // 1 GiB per record
  // Result of parse(): a record was produced, more input is needed, or end of file.
  enum class Parse { kRecord, kNeedMore, kEnd };
  bool fill();  // compact, grow if one record fills the buffer, read; false at EOF
  Parse parse(std::vector<std::string_view>& fields);
  // Continues parsing a record at `field` (start of a quoted field) of the record at `rec`.
  Parse parse_slow(std::vector<std::string_view>& fields, const char* rec, const char* field);
  [[noreturn]] void fail(std::uint64_t line, std::uint64_t column, const std::string& what) const;
  std::vector<std::string> files_;
  std::size_t file_ = 0;  // index of the current file in files_
  ReaderOptions options_;
  std::string path_;
  char delimiter_ = ',';
  char quote_ = '"';
  std::unique_ptr<Source> source_;
  std::vector<char> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes are buffer_[begin_, end_)
  bool eof_ = false;
  std::string unquoted_;  // storage for fields that needed unquoting ("" -> ")
  std::vector<std::string> header_;
  std::uint64_t line_ = 1, record_line_ = 0;  // line_: line of buffer_[begin_]
  std::uint64_t bytes_consumed_ = 0;  // of the current file
  std::uint64_t done_bytes_consumed_ = 0, done_file_offset_ = 0;  // of the files before it
  std::uint64_t total_file_size_ = 0, file_size_ = 0;              // all files; the current one
};

}  // namespace mtrank::data
