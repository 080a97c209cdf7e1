#pragma once
// Served users' live state (issue 12): for each user, where the sequential
// model's recurrence stands after every event so far, the retrieval query it
// gives, and the recent items (to leave out of their recommendations), in an
// embedded key-value store on disk, so that a restart loses nothing and the
// users can outnumber memory.
//
// Why LMDB (Debian's liblmdb-dev) and not RocksDB: the load is read-mostly
// (every recommendation reads a state, an event writes one small record),
// and LMDB is a single memory-mapped copy-on-write B+tree: reads take no lock
// and never wait for the writer, a commit is durable when it returns (fsync
// of the data and then of the meta page; no write-ahead log to replay), and
// after a crash the last committed transaction is simply there. RocksDB's LSM
// tree writes faster but runs compaction threads that would compete with
// scoring on a 2-core server, for a write rate this store does not need.
// Torch-free: states are plain floats.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mtrank::serve {

struct UserState {
  std::string model;                // the retrieval model the state was computed with (its version)
  std::int64_t events = 0;          // every event accepted for the user
  std::vector<std::string> recent;  // the latest events' items (external ids), oldest first; bounded
  std::vector<float> lru;           // every block's LRU state, concatenated (complex values as re, im)
  std::vector<float> query;         // the hidden state after the latest known event: the retrieval query
  std::vector<std::string> event_ids;  // the latest events' ids (given by clients), oldest first; bounded
};

// The store has reached its size limit (HTTP 507).
class StoreFullError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A record's bytes (a format byte, the fields, a CRC-32 of them) and back.
// decode throws std::runtime_error on bytes that are not such a record.
std::string encode_user_state(const UserState& state);
UserState decode_user_state(std::string_view bytes);

struct UserStateOptions {
  // The largest the store may grow (LMDB's map size): address space reserved,
  // not memory or disk, so it can be far larger than either.
  std::size_t max_bytes = std::size_t{64} << 30;
  // Threads that may read at once (LMDB's reader slots; its default is 126).
  unsigned max_readers = 1024;
};

class UserStateStore {
 public:
  // Opens the store in `dir` (created when missing) and holds it: a second
  // process that opens it is refused (ConfigError), because two writers
  // could each apply an event to the same old state. Throws ConfigError for a
  // directory that cannot be used and DataError for a file there that is not
  // an mtrank user-state store (corrupt, or something else).
  explicit UserStateStore(const std::string& dir, UserStateOptions options = {});
  ~UserStateStore();
  UserStateStore(const UserStateStore&) = delete;
  UserStateStore& operator=(const UserStateStore&) = delete;

  // The user's state, if any. Throws DataError when the record is corrupt.
  std::optional<UserState> get(std::string_view user) const;
  // Reads the user's state (a default one if none), lets `change` modify it,
  // and writes it; durable when this returns (the commit is synced to disk).
  // Calls for one user run one at a time, so no event is lost to a race;
  // calls for different users compute in parallel and commit in turn.
  // A user's record that is corrupt is logged and started afresh (its
  // events are lost already; refusing would block the user for good).
  // Returns the state written. Throws what `change` throws (then nothing is
  // written), StoreFullError at the size limit and std::runtime_error when
  // the disk write fails.
  UserState update(std::string_view user, const std::function<void(UserState&)>& change);
  std::int64_t users() const;  // users with a state
  const std::string& dir() const { return dir_; }

 private:
  struct LockFile {
    int fd = -1;
    ~LockFile();
  };
  LockFile lock_;  // DIR/mtrank.lock, held (flock) while open; first, so released last
  struct Env;
  std::unique_ptr<Env> env_;
  std::string dir_;
  static constexpr std::size_t kStripes = 64;
  std::unique_ptr<std::mutex[]> stripes_;  // per user (by hash): one update at a time
};

}  // namespace mtrank::serve
