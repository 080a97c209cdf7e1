#include "data/record_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"

namespace mtrank::data {
namespace {

namespace fs = std::filesystem;
using Rows = std::vector<std::vector<std::string>>;

// A unique path in the test temp directory; the file is removed at scope exit.
class TempFile {
 public:
  explicit TempFile(const std::string& suffix) {
    static std::atomic<int> counter{0};
    path_ = (fs::temp_directory_path() /
             ("mtrank_rr_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + suffix))
                .string();
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

  void write(const std::string& content) const {
    std::ofstream out(path_, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    ASSERT_TRUE(out.good()) << path_;
  }
  void write_gz(const std::string& content) const {
    gzFile gz = gzopen(path_.c_str(), "wb");
    ASSERT_NE(gz, nullptr) << path_;
    std::size_t pos = 0;
    while (pos < content.size()) {
      unsigned n = static_cast<unsigned>(std::min<std::size_t>(content.size() - pos, 1 << 20));
      ASSERT_EQ(gzwrite(gz, content.data() + pos, n), static_cast<int>(n));
      pos += n;
    }
    ASSERT_EQ(gzclose(gz), Z_OK);
  }

 private:
  std::string path_;
};

struct ReadResult {
  std::vector<std::string> header;
  Rows rows;
  std::vector<std::uint64_t> lines;
};

ReadResult read_all(const std::string& path, ReaderOptions options = {}) {
  RecordReader reader(path, options);
  ReadResult result;
  result.header = reader.header();
  std::vector<std::string_view> fields;
  while (reader.next(fields)) {
    result.rows.emplace_back(fields.begin(), fields.end());
    result.lines.push_back(reader.line());
  }
  return result;
}

std::string error_of(const std::string& path) {
  try {
    read_all(path);
  } catch (const DataError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(RecordReader, SimpleCsv) {
  TempFile f(".csv");
  f.write("user,item,label\nu1,i1,1\nu2,i2,0\n");
  RecordReader reader(f.path());
  EXPECT_EQ(reader.path(), f.path());
  EXPECT_EQ(reader.delimiter(), ',');
  EXPECT_EQ(reader.header(), (std::vector<std::string>{"user", "item", "label"}));
  std::vector<std::string_view> fields;
  ASSERT_TRUE(reader.next(fields));
  EXPECT_EQ(fields, (std::vector<std::string_view>{"u1", "i1", "1"}));
  EXPECT_EQ(reader.line(), 2u);
  ASSERT_TRUE(reader.next(fields));
  EXPECT_EQ(fields, (std::vector<std::string_view>{"u2", "i2", "0"}));
  EXPECT_EQ(reader.line(), 3u);
  EXPECT_FALSE(reader.next(fields));
  EXPECT_TRUE(fields.empty());
  EXPECT_FALSE(reader.next(fields));  // stays at end
  EXPECT_EQ(reader.bytes_read(), 32u);
  EXPECT_EQ(reader.file_size(), 32u);
  EXPECT_EQ(reader.file_offset(), 32u);
}

TEST(RecordReader, HeaderOnly) {
  TempFile f(".csv");
  f.write("a,b\n");
  RecordReader reader(f.path());
  EXPECT_EQ(reader.header(), (std::vector<std::string>{"a", "b"}));
  std::vector<std::string_view> fields;
  EXPECT_FALSE(reader.next(fields));
}

TEST(RecordReader, TsvByExtension) {
  TempFile f(".tsv");
  f.write("a\tb,c\n1,5\t2\n");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.header, (std::vector<std::string>{"a", "b,c"}));
  EXPECT_EQ(r.rows, (Rows{{"1,5", "2"}}));

  TempFile tab(".tab");
  tab.write("a\tb\n1\t2\n");
  EXPECT_EQ(RecordReader(tab.path()).delimiter(), '\t');

  TempFile gz(".tsv.gz");
  gz.write_gz("a\tb\n1\t2\n");
  RecordReader gz_reader(gz.path());
  EXPECT_EQ(gz_reader.delimiter(), '\t');
  EXPECT_EQ(gz_reader.header(), (std::vector<std::string>{"a", "b"}));

  TempFile csvgz(".csv.gz");
  csvgz.write_gz("a,b\n1,2\n");
  EXPECT_EQ(RecordReader(csvgz.path()).delimiter(), ',');
}

TEST(RecordReader, ExplicitDelimiter) {
  TempFile f(".txt");
  f.write("a|b\n1|2,3\n");
  ReaderOptions options;
  options.delimiter = '|';
  ReadResult r = read_all(f.path(), options);
  EXPECT_EQ(r.header, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.rows, (Rows{{"1", "2,3"}}));
}

TEST(RecordReader, QuotedFields) {
  TempFile f(".csv");
  f.write(
      "\"id\",\"text, with comma\",n\n"
      "1,\"a,b\",\"say \"\"hi\"\"\"\n"
      "2,\"multi\nline\nfield\",\"\"\n"
      "3,\"\"\"\",x\n"
      "4,\"crlf\r\ninside\",y\n");
  RecordReader reader(f.path());
  EXPECT_EQ(reader.header(), (std::vector<std::string>{"id", "text, with comma", "n"}));
  std::vector<std::string_view> fields;
  ASSERT_TRUE(reader.next(fields));
  EXPECT_EQ(fields, (std::vector<std::string_view>{"1", "a,b", "say \"hi\""}));
  EXPECT_EQ(reader.line(), 2u);
  ASSERT_TRUE(reader.next(fields));
  EXPECT_EQ(fields, (std::vector<std::string_view>{"2", "multi\nline\nfield", ""}));
  EXPECT_EQ(reader.line(), 3u);
  ASSERT_TRUE(reader.next(fields));
  EXPECT_EQ(fields, (std::vector<std::string_view>{"3", "\"", "x"}));
  EXPECT_EQ(reader.line(), 6u);  // the previous record spans lines 3-5
  ASSERT_TRUE(reader.next(fields));
  EXPECT_EQ(fields, (std::vector<std::string_view>{"4", "crlf\r\ninside", "y"}));
  EXPECT_EQ(reader.line(), 7u);
  EXPECT_FALSE(reader.next(fields));
}

TEST(RecordReader, QuoteInsideUnquotedFieldIsLiteral) {
  TempFile f(".csv");
  f.write("a,b,c\nab\"c,5\",x\"\"y\n");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.rows, (Rows{{"ab\"c", "5\"", "x\"\"y"}}));
}

TEST(RecordReader, Crlf) {
  TempFile f(".csv");
  f.write("a,b,\"c\"\r\n1,2,3\r\n\"x\",,\"z\"\r\n4,5,\r\n");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.header, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(r.rows, (Rows{{"1", "2", "3"}, {"x", "", "z"}, {"4", "5", ""}}));
  EXPECT_EQ(r.lines, (std::vector<std::uint64_t>{2, 3, 4}));
}

TEST(RecordReader, CrInsideLineIsLiteral) {
  TempFile f(".csv");
  f.write("a,b\nx\ry,z\n");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.rows, (Rows{{"x\ry", "z"}}));
}

TEST(RecordReader, EmptyFields) {
  TempFile f(".csv");
  f.write("a,b,c\n,,\na,b,\n,x,\n\"\",\"\",\"\"\nsingle\n");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.rows, (Rows{{"", "", ""}, {"a", "b", ""}, {"", "x", ""}, {"", "", ""}, {"single"}}));
}

TEST(RecordReader, LastLineWithoutNewline) {
  TempFile f(".csv");
  f.write("a,b\n1,2\n3,4");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.rows, (Rows{{"1", "2"}, {"3", "4"}}));
  EXPECT_EQ(r.lines, (std::vector<std::uint64_t>{2, 3}));

  TempFile g(".csv");
  g.write("a,b\n1,\"q\"\"\"");
  EXPECT_EQ(read_all(g.path()).rows, (Rows{{"1", "q\""}}));

  TempFile h(".csv");
  h.write("a,b\n1,");
  EXPECT_EQ(read_all(h.path()).rows, (Rows{{"1", ""}}));

  TempFile i(".csv");
  i.write("a,b\r\n1,2\r");
  EXPECT_EQ(read_all(i.path()).rows, (Rows{{"1", "2"}}));

  TempFile j(".csv");
  j.write("a,b");
  ReadResult rj = read_all(j.path());
  EXPECT_EQ(rj.header, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(rj.rows.empty());
}

TEST(RecordReader, BlankLinesSkipped) {
  TempFile f(".csv");
  f.write("\n\r\na,b\n\n1,2\r\n\r\n\n3,4\n\n");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.header, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.rows, (Rows{{"1", "2"}, {"3", "4"}}));
  EXPECT_EQ(r.lines, (std::vector<std::uint64_t>{5, 8}));
}

TEST(RecordReader, Bom) {
  TempFile f(".csv");
  f.write("\xEF\xBB\xBFid,name\r\n1,x\r\n");
  ReadResult r = read_all(f.path());
  EXPECT_EQ(r.header, (std::vector<std::string>{"id", "name"}));
  EXPECT_EQ(r.rows, (Rows{{"1", "x"}}));

  TempFile q(".csv");
  q.write("\xEF\xBB\xBF\"id\",name\n1,x\n");
  EXPECT_EQ(read_all(q.path()).header, (std::vector<std::string>{"id", "name"}));
}

// Rows with a mix of plain, quoted, escaped, multi-line and empty fields, and CRLF endings.
std::string make_rows(std::size_t n, std::uint32_t seed, Rows& rows, std::vector<std::uint64_t>& lines) {
  std::mt19937 rng(seed);
  std::string out = "c0,c1,c2,c3,c4\n";
  std::uint64_t line = 2;
  rows.clear();
  lines.clear();
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<std::string> row;
    lines.push_back(line);
    for (int c = 0; c < 5; ++c) {
      if (c > 0) out += ',';
      std::string value;
      switch (rng() % 8) {
        case 0:
          value = "";
          out += value;
          break;
        case 1: {  // quoted with delimiter, doubled quote and possibly newlines
          value = "q" + std::to_string(i) + ",\"x\"";
          if (rng() % 2) value += "\nline";
          if (rng() % 4 == 0) value += "\r\nmore";
          out += '"';
          for (char ch : value) {
            if (ch == '"') out += '"';
            out += ch;
            if (ch == '\n') ++line;
          }
          out += '"';
          break;
        }
        case 2:  // quoted without anything special
          value = "plain" + std::to_string(rng() % 1000);
          out += '"' + value + '"';
          break;
        default:
          value = std::to_string(rng() % 100000) + std::string(rng() % 20, 'v');
          out += value;
          break;
      }
      row.push_back(value);
    }
    out += (rng() % 3 == 0) ? "\r\n" : "\n";
    ++line;
    rows.push_back(std::move(row));
  }
  return out;
}

void expect_rows(const ReadResult& r, const Rows& rows, const std::vector<std::uint64_t>& lines) {
  EXPECT_EQ(r.header, (std::vector<std::string>{"c0", "c1", "c2", "c3", "c4"}));
  ASSERT_EQ(r.rows.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(r.rows[i], rows[i]) << "record " << i;
    ASSERT_EQ(r.lines[i], lines[i]) << "record " << i;
  }
}

TEST(RecordReader, GzipMatchesPlain) {
  Rows rows;
  std::vector<std::uint64_t> lines;
  std::string content = make_rows(50000, 7, rows, lines);
  TempFile plain(".csv"), gz(".csv.gz");
  plain.write(content);
  gz.write_gz(content);
  ReadResult a = read_all(plain.path());
  ReadResult b = read_all(gz.path());
  expect_rows(a, rows, lines);
  EXPECT_EQ(a.header, b.header);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.lines, b.lines);

  RecordReader reader(gz.path());
  std::vector<std::string_view> fields;
  while (reader.next(fields)) {
  }
  EXPECT_EQ(reader.bytes_read(), content.size());
  EXPECT_EQ(reader.file_size(), fs::file_size(gz.path()));
  EXPECT_EQ(reader.file_offset(), reader.file_size());
}

TEST(RecordReader, ManyRecordsAcrossBufferBoundaries) {
  Rows rows;
  std::vector<std::uint64_t> lines;
  std::string content = make_rows(200000, 42, rows, lines);
  ASSERT_GT(content.size(), 4u << 20);  // several buffer refills
  TempFile f(".csv");
  f.write(content);
  expect_rows(read_all(f.path()), rows, lines);

  RecordReader reader(f.path());
  std::vector<std::string_view> fields;
  std::uint64_t last = 0;
  while (reader.next(fields)) {
    EXPECT_GE(reader.bytes_read(), last);
    last = reader.bytes_read();
  }
  EXPECT_EQ(reader.bytes_read(), content.size());
  EXPECT_EQ(reader.file_offset(), content.size());
}

// Puts each tricky sequence at every offset around the first refill (the buffer is 1 MiB and
// is filled completely, so the first boundary is at byte 1 MiB of a plain file).
TEST(RecordReader, SpecialSequencesAtBufferBoundary) {
  const std::size_t boundary = 1 << 20;
  const std::string tail = "\"x\"\"y\",\"p\r\nq\"\r\n\"\",z\r\n\r\nlast,\"\"\"\"\n";
  const Rows tail_rows = {{"x\"y", "p\r\nq"}, {"", "z"}, {"last", "\""}};
  for (std::size_t shift = 0; shift < tail.size() + 2; ++shift) {
    std::string content = "a,b\n";
    Rows expected;
    // Filler rows "f,<digits>\n", then one filler row padded to land exactly.
    std::size_t target = boundary - shift;
    while (content.size() + 40 < target) {
      content += "f,0123456789012345678901234567890\n";
      expected.push_back({"f", "0123456789012345678901234567890"});
    }
    std::string pad(target - content.size() - 3, 'p');
    content += "g," + pad + "\n";
    expected.push_back({"g", pad});
    ASSERT_EQ(content.size(), target);
    content += tail;
    expected.insert(expected.end(), tail_rows.begin(), tail_rows.end());
    TempFile f(".csv");
    f.write(content);
    ReadResult r = read_all(f.path());
    ASSERT_EQ(r.rows, expected) << "shift " << shift;
    ASSERT_EQ(r.lines.size(), expected.size());
    std::uint64_t n = r.lines.size();
    EXPECT_EQ(r.lines[n - 3], n - 1) << "shift " << shift;
    EXPECT_EQ(r.lines[n - 2], n + 1) << "shift " << shift;
    EXPECT_EQ(r.lines[n - 1], n + 3) << "shift " << shift;
  }
}

TEST(RecordReader, RecordLargerThanBuffer) {
  const std::string big(3u << 20, 'x');
  std::string quoted_big(3u << 20, 'y');
  for (std::size_t i = 1000; i < quoted_big.size(); i += 100000) quoted_big[i] = '"';
  std::string escaped;
  for (char c : quoted_big) {
    if (c == '"') escaped += '"';
    escaped += c;
  }
  std::string content = "a,b,c\n1," + big + ",2\n3,\"" + escaped + "\",4\n5,6,7\n";
  for (bool gzip : {false, true}) {
    TempFile f(gzip ? ".csv.gz" : ".csv");
    if (gzip) {
      f.write_gz(content);
    } else {
      f.write(content);
    }
    RecordReader reader(f.path());
    std::vector<std::string_view> fields;
    ASSERT_TRUE(reader.next(fields));
    ASSERT_EQ(fields.size(), 3u);
    EXPECT_EQ(fields[0], "1");
    EXPECT_TRUE(fields[1] == big);
    EXPECT_EQ(fields[2], "2");
    ASSERT_TRUE(reader.next(fields));
    ASSERT_EQ(fields.size(), 3u);
    EXPECT_EQ(fields[0], "3");
    EXPECT_TRUE(fields[1] == quoted_big);
    EXPECT_EQ(fields[2], "4");
    EXPECT_EQ(reader.line(), 3u);
    ASSERT_TRUE(reader.next(fields));
    EXPECT_EQ(fields, (std::vector<std::string_view>{"5", "6", "7"}));
    EXPECT_EQ(reader.line(), 4u);
    EXPECT_FALSE(reader.next(fields));
    EXPECT_EQ(reader.bytes_read(), content.size());
  }
}

TEST(RecordReader, UnterminatedQuote) {
  TempFile f(".csv");
  f.write("a,b\n1,2\n3,\"xyz\n4,5\n");
  EXPECT_EQ(error_of(f.path()), f.path() + ":3:3: unterminated quoted field (opened here)");

  TempFile g(".csv");
  g.write("a,b\n1,\"x\"\"");  // ends inside the field after an escaped quote
  EXPECT_EQ(error_of(g.path()), g.path() + ":2:3: unterminated quoted field (opened here)");

  TempFile h(".csv");
  h.write("\"a,b\n");
  EXPECT_EQ(error_of(h.path()), h.path() + ":1:1: unterminated quoted field (opened here)");
}

TEST(RecordReader, JunkAfterClosingQuote) {
  TempFile f(".csv");
  f.write("a,b\n\"ab\"c,d\n");
  std::string msg = error_of(f.path());
  EXPECT_EQ(msg.rfind(f.path() + ":2:5: unexpected character 'c' after the closing quote", 0), 0u)
      << msg;

  // Line and column count from the physical line inside a multi-line record.
  TempFile g(".csv");
  g.write("a,b\n1,\"x\ny\" z\n");
  msg = error_of(g.path());
  EXPECT_EQ(msg.rfind(g.path() + ":3:3: unexpected character ' '", 0), 0u) << msg;

  TempFile h(".csv");
  h.write("a,b\n\"x\"\ry\n");
  msg = error_of(h.path());
  EXPECT_EQ(msg.rfind(h.path() + ":2:4: unexpected character '\\r'", 0), 0u) << msg;
}

TEST(RecordReader, ErrorsBeforeHeaderAreReportedAtConstruction) {
  TempFile f(".csv");
  f.write("");
  EXPECT_EQ(error_of(f.path()), f.path() + ": file is empty (expected a header row)");

  TempFile blank(".csv");
  blank.write("\n\r\n\n");
  EXPECT_EQ(error_of(blank.path()), blank.path() + ": file is empty (expected a header row)");

  TempFile bom(".csv");
  bom.write("\xEF\xBB\xBF");
  EXPECT_EQ(error_of(bom.path()), bom.path() + ": file is empty (expected a header row)");

  TempFile gz(".csv.gz");
  gz.write_gz("");
  EXPECT_EQ(error_of(gz.path()), gz.path() + ": file is empty (expected a header row)");
}

TEST(RecordReader, MissingFile) {
  std::string path = (fs::temp_directory_path() / "mtrank_rr_does_not_exist.csv").string();
  EXPECT_EQ(error_of(path), path + ": cannot open: No such file or directory");
  std::string gz = path + ".gz";
  EXPECT_EQ(error_of(gz), gz + ": cannot open: No such file or directory");
  std::string dir = fs::temp_directory_path().string();
  EXPECT_EQ(error_of(dir), dir + ": cannot open: Is a directory");
}

TEST(RecordReader, CorruptGzip) {
  Rows rows;
  std::vector<std::uint64_t> lines;
  std::string content = make_rows(20000, 3, rows, lines);
  TempFile good(".csv.gz");
  good.write_gz(content);
  std::string compressed;
  {
    std::ifstream in(good.path(), std::ios::binary);
    compressed.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(compressed.size(), 1000u);

  // First deflate block header (after the 10-byte gzip header) with the invalid type 11.
  TempFile corrupt(".csv.gz");
  std::string bad = compressed;
  bad[10] = 0x07;
  corrupt.write(bad);
  std::string msg = error_of(corrupt.path());
  EXPECT_EQ(msg, corrupt.path() + ": corrupt gzip stream: invalid block type");

  // Damaged CRC in the trailer: detected when the end of the stream is read.
  TempFile bad_crc(".csv.gz");
  bad = compressed;
  bad[bad.size() - 8] = static_cast<char>(~bad[bad.size() - 8]);
  bad_crc.write(bad);
  msg = error_of(bad_crc.path());
  EXPECT_EQ(msg, bad_crc.path() + ": corrupt gzip stream: incorrect data check");

  TempFile truncated(".csv.gz");
  truncated.write(compressed.substr(0, compressed.size() / 2));
  EXPECT_EQ(error_of(truncated.path()),
            truncated.path() + ": corrupt gzip stream: unexpected end of file (the file is truncated)");
}

TEST(RecordReader, InvalidOptions) {
  TempFile f(".csv");
  f.write("a,b\n");
  ReaderOptions options;
  options.delimiter = '"';
  EXPECT_THROW(RecordReader(f.path(), options), DataError);
}

TEST(RecordReader, ViewsStayValidUntilNextCall) {
  TempFile f(".csv");
  // Several escaped fields in one record: views into the unquoted storage must all survive.
  std::string content = "a,b,c,d\n";
  for (int i = 0; i < 100; ++i) {
    content += "\"" + std::string(i, 'a') + "\"\"\",x,\"" + std::string(200 - i, 'b') +
               "\"\"\",\"\"\"" + std::to_string(i) + "\"\n";
  }
  f.write(content);
  RecordReader reader(f.path());
  std::vector<std::string_view> fields;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(reader.next(fields));
    ASSERT_EQ(fields.size(), 4u);
    EXPECT_EQ(fields[0], std::string(i, 'a') + "\"");
    EXPECT_EQ(fields[1], "x");
    EXPECT_EQ(fields[2], std::string(200 - i, 'b') + "\"");
    EXPECT_EQ(fields[3], "\"" + std::to_string(i));
  }
  EXPECT_FALSE(reader.next(fields));
}

}  // namespace

// ------------------------------------------------------------ several files

// Several files read as one log: the records in order, the later headers
// checked and skipped, line numbers and errors in the file being read.
TEST(RecordReader, SeveralFilesReadInTurnAsOneLog) {
  TempFile a(".csv"), b(".csv.gz"), c(".csv");
  a.write("x,y\n1,2\n3,4\n");
  b.write_gz("x,y\r\n5,6\r\n");
  c.write("\xEF\xBB\xBFx,y\n7,8\n\n9,10\n");
  RecordReader reader(std::vector<std::string>{a.path(), b.path(), c.path()});
  EXPECT_EQ(reader.header(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(reader.file_size(), fs::file_size(a.path()) + fs::file_size(b.path()) + fs::file_size(c.path()));
  std::vector<std::string_view> f;
  std::vector<std::string> got;
  while (reader.next(f)) got.push_back(reader.path() + ":" + std::to_string(reader.line()) + "=" +
                                       std::string(f[0]) + "," + std::string(f[1]));
  EXPECT_EQ(got, (std::vector<std::string>{a.path() + ":2=1,2", a.path() + ":3=3,4", b.path() + ":2=5,6",
                                           c.path() + ":2=7,8", c.path() + ":4=9,10"}));
  EXPECT_EQ(reader.file_offset(), reader.file_size());  // every byte on disk consumed
  EXPECT_EQ(reader.bytes_read(), 12u + 10u + 3u + 14u);  // decompressed bytes, BOM included
}

TEST(RecordReader, SeveralFilesNeedTheSameHeader) {
  TempFile a(".csv"), b(".csv"), c(".csv"), empty(".csv");
  a.write("x,y\n1,2\n");
  b.write("x,z\n5,6\n");
  c.write("x\n5\n");
  empty.write("");
  auto error = [&](const std::vector<std::string>& files) {
    try {
      RecordReader reader(files);
      std::vector<std::string_view> f;
      while (reader.next(f)) {
      }
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error({a.path(), b.path()}),
            b.path() + ":1:2: header differs from the first file's (" + a.path() +
                "): column 2 is 'z', expected 'y'; the files of one data set need the same columns in the same order");
  EXPECT_EQ(error({a.path(), c.path()}),
            c.path() + ":1:2: header differs from the first file's (" + a.path() +
                "): column 2 is missing, expected 'y'; the files of one data set need the same columns in the same order");
  EXPECT_EQ(error({a.path(), empty.path()}), empty.path() + ": file is empty (expected a header row)");
  EXPECT_EQ(error({a.path(), a.path() + ".missing"}), a.path() + ".missing: cannot open: No such file or directory");
  EXPECT_EQ(error({}), "no input file given");
}

TEST(RecordReader, SeveralHeaderlessFiles) {
  TempFile a(".txt"), b(".txt");
  a.write("1 2\n");
  b.write("3 4\n5 6\n");
  ReaderOptions options;
  options.delimiter = ' ';
  options.has_header = false;
  RecordReader reader(std::vector<std::string>{a.path(), b.path()}, options);
  std::vector<std::string_view> f;
  std::vector<std::string> got;
  while (reader.next(f)) got.push_back(std::string(f[0]) + std::string(f[1]) + "@" + std::to_string(reader.line()));
  EXPECT_EQ(got, (std::vector<std::string>{"12@1", "34@1", "56@2"}));
}

TEST(ExpandFiles, PatternsInNameOrderPathsAsGiven) {
  const fs::path dir = fs::temp_directory_path() / ("mtrank_rr_glob_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* name : {"day-10.csv", "day-02.csv", "day-01.csv.gz", "other.csv"}) std::ofstream(dir / name) << "x\n";
  const std::string d = dir.string() + "/";
  EXPECT_EQ(expand_files({d + "day-*.csv*", d + "other.csv"}),
            (std::vector<std::string>{d + "day-01.csv.gz", d + "day-02.csv", d + "day-10.csv", d + "other.csv"}));
  EXPECT_EQ(expand_files({d + "day-0?.csv"}), (std::vector<std::string>{d + "day-02.csv"}));
  EXPECT_EQ(expand_files({d + "missing.csv"}), (std::vector<std::string>{d + "missing.csv"}));  // opening reports it
  // A name with pattern characters that exists is that file; a directory a pattern matches is skipped.
  std::ofstream(dir / "x[1].csv") << "x\n";
  fs::create_directories(dir / "day-99.csv.d");
  EXPECT_EQ(expand_files({d + "x[1].csv"}), (std::vector<std::string>{d + "x[1].csv"}));
  auto error = [](const std::vector<std::string>& entries) {
    try {
      expand_files(entries);
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error({d + "day-0*.csv", d + "day-02.csv"}),
            d + "day-02.csv: named twice in one data set (as " + d + "day-02.csv and " + d +
                "day-02.csv), so its rows would count twice; list each file once");
  const std::string other = d + "../" + dir.filename().string() + "/other.csv";  // the same file by another name
  EXPECT_EQ(error({d + "other.csv", other}), other + ": named twice in one data set (as " + d + "other.csv and " +
                                                 other + "), so its rows would count twice; list each file once");
  EXPECT_NE(error({d + "day-9*"}).find("the pattern matches no file"), std::string::npos);  // only a directory
  EXPECT_EQ(error({""}), "a data set names an empty file name (\"\"); give a path or a pattern");
  try {
    expand_files({d + "week-*.csv"});
    ADD_FAILURE() << "a pattern that matches nothing must be an error";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), d + "week-*.csv: the pattern matches no file (quote a pattern on the command "
                                         "line so mtrank, not the shell, expands it)");
  }
  try {
    expand_files({d + "no-such-dir/*.csv"});
    ADD_FAILURE() << "a pattern under a missing directory must be an error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("the pattern matches no file"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace mtrank::data
