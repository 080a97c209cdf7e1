#include "serve/user_state.h"

#include <lmdb.h>
#include <zlib.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "common/error.h"

namespace mtrank::serve {

namespace {

constexpr unsigned char kRecordFormat = 1;
constexpr std::string_view kStoreFormat = "mtrank-user-state 1";

template <typename T>
void put_raw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_bytes(std::string& out, std::string_view s) {
  put_raw(out, static_cast<std::uint32_t>(s.size()));
  out.append(s.data(), s.size());
}
void put_floats(std::string& out, const std::vector<float>& v) {
  put_raw(out, static_cast<std::uint32_t>(v.size()));
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Reads a record's fields in order; every read is bounds-checked.
class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  template <typename T>
  T raw() {
    T v;
    need(sizeof v);
    std::memcpy(&v, b_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  std::string bytes() {
    const std::uint32_t n = raw<std::uint32_t>();
    need(n);
    std::string s(b_.substr(at_, n));
    at_ += n;
    return s;
  }
  std::vector<float> floats() {
    const std::uint32_t n = raw<std::uint32_t>();
    need(std::size_t{n} * sizeof(float));
    std::vector<float> v(n);
    std::memcpy(v.data(), b_.data() + at_, v.size() * sizeof(float));
    at_ += v.size() * sizeof(float);
    return v;
  }
  std::size_t at() const { return at_; }

 private:
  void need(std::size_t n) const {
    if (n > b_.size() - at_) throw std::runtime_error("the record ends early");
  }
  std::string_view b_;
  std::size_t at_ = 0;
};

std::string mdb_text(int rc) { return mdb_strerror(rc); }

MDB_val val_of(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

// Aborts a transaction unless it was committed.
struct Txn {
  MDB_txn* txn = nullptr;
  ~Txn() {
    if (txn) mdb_txn_abort(txn);
  }
  int commit() {
    const int rc = mdb_txn_commit(txn);
    txn = nullptr;  // freed by the commit, whatever its result
    return rc;
  }
};

// LMDB refuses empty keys and keys over its limit (511 bytes in 0.9.24).
void check_key(MDB_env* env, std::string_view user) {
  const int limit = mdb_env_get_maxkeysize(env);
  if (user.empty() || user.size() > static_cast<std::size_t>(limit))
    throw std::invalid_argument("a user id must have 1 to " + std::to_string(limit) + " bytes, not " +
                                std::to_string(user.size()));
}

}  // namespace

std::string encode_user_state(const UserState& s) {
  std::string out;
  out.reserve(64 + s.model.size() + (s.lru.size() + s.query.size()) * sizeof(float) + s.recent.size() * 12);
  out.push_back(static_cast<char>(kRecordFormat));
  put_bytes(out, s.model);
  put_raw(out, s.events);
  put_raw(out, static_cast<std::uint32_t>(s.recent.size()));
  for (const std::string& item : s.recent) put_bytes(out, item);
  put_floats(out, s.lru);
  put_floats(out, s.query);
  put_raw(out, static_cast<std::uint32_t>(s.event_ids.size()));
  for (const std::string& id : s.event_ids) put_bytes(out, id);
  const auto crc = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size())));
  put_raw(out, crc);
  return out;
}

UserState decode_user_state(std::string_view b) {
  if (b.size() < 1 + sizeof(std::uint32_t)) throw std::runtime_error("the record is too short");
  if (static_cast<unsigned char>(b[0]) != kRecordFormat)
    throw std::runtime_error("unknown record format " + std::to_string(static_cast<unsigned char>(b[0])));
  const std::string_view body = b.substr(0, b.size() - sizeof(std::uint32_t));
  std::uint32_t stored;
  std::memcpy(&stored, b.data() + body.size(), sizeof stored);
  if (static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))) !=
      stored)
    throw std::runtime_error("its checksum does not match (the bytes changed after they were written)");
  Reader r(body.substr(1));
  UserState s;
  s.model = r.bytes();
  s.events = r.raw<std::int64_t>();
  const std::uint32_t n = r.raw<std::uint32_t>();
  if (n > body.size()) throw std::runtime_error("the record's item count is larger than the record");
  s.recent.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) s.recent.push_back(r.bytes());
  s.lru = r.floats();
  s.query = r.floats();
  const std::uint32_t ids = r.raw<std::uint32_t>();
  if (ids > body.size()) throw std::runtime_error("the record's event id count is larger than the record");
  for (std::uint32_t i = 0; i < ids; ++i) s.event_ids.push_back(r.bytes());
  if (r.at() + 1 != body.size()) throw std::runtime_error("the record has bytes after its last field");
  if (s.events < 0) throw std::runtime_error("the record's event count is negative");
  return s;
}

struct UserStateStore::Env {
  MDB_env* env = nullptr;
  MDB_dbi users = 0;
  ~Env() {
    if (env) mdb_env_close(env);
  }
};

UserStateStore::UserStateStore(const std::string& dir, UserStateOptions options)
    : env_(std::make_unique<Env>()), dir_(dir), stripes_(new std::mutex[kStripes]) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw ConfigError("--state-dir " + dir + ": cannot create or use the directory" + (ec ? ": " + ec.message() : ""));
  const std::string file = (std::filesystem::path(dir) / "data.mdb").string();
  const std::string lock = (std::filesystem::path(dir) / "mtrank.lock").string();
  lock_.fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_.fd < 0) throw ConfigError("--state-dir " + dir + ": cannot create " + lock + ": " + std::strerror(errno));
  if (::flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
    throw ConfigError("--state-dir " + dir + ": another process (an mtrank serve?) has the store open; two writers could "
                      "lose events, so stop it first or give this server its own --state-dir");
  }
  int rc = mdb_env_create(&env_->env);
  if (rc) throw std::runtime_error("cannot create an LMDB environment: " + mdb_text(rc));
  mdb_env_set_maxdbs(env_->env, 2);
  mdb_env_set_maxreaders(env_->env, options.max_readers);
  rc = mdb_env_set_mapsize(env_->env, options.max_bytes);
  if (rc) throw ConfigError("--state-dir " + dir + ": cannot reserve " + std::to_string(options.max_bytes) + " bytes: " + mdb_text(rc));
  // MDB_NOTLS: read transactions are not tied to a thread (requests of one
  // connection can move between threads). No MDB_NOSYNC: a commit is synced.
  rc = mdb_env_open(env_->env, dir.c_str(), MDB_NOTLS, 0644);
  if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED || rc == MDB_PANIC)
    throw DataError(file + ": not a readable user-state store (" + mdb_text(rc) +
                    "); restore it from a backup, or move it away to start with no user states");
  if (rc) throw ConfigError("--state-dir " + dir + ": cannot open the store: " + mdb_text(rc));
  Txn t;
  rc = mdb_txn_begin(env_->env, nullptr, 0, &t.txn);
  if (rc) throw std::runtime_error(file + ": cannot begin a transaction: " + mdb_text(rc));
  MDB_dbi meta = 0;
  rc = mdb_dbi_open(t.txn, "meta", MDB_CREATE, &meta);
  if (!rc) rc = mdb_dbi_open(t.txn, "users", MDB_CREATE, &env_->users);
  if (rc)
    throw DataError(file + ": not an mtrank user-state store (" + mdb_text(rc) +
                    "); move it away to start with no user states");
  MDB_val key = val_of("format"), value{};
  rc = mdb_get(t.txn, meta, &key, &value);
  if (rc == MDB_NOTFOUND) {
    MDB_stat st{};
    mdb_stat(t.txn, env_->users, &st);
    if (st.ms_entries > 0) throw DataError(file + ": the store has user records but no format marker: not mtrank's");
    MDB_val v = val_of(kStoreFormat);
    rc = mdb_put(t.txn, meta, &key, &v, 0);
    if (!rc) rc = t.commit();
    if (rc) throw std::runtime_error(file + ": cannot write the store's format marker: " + mdb_text(rc));
    return;
  }
  if (rc) throw DataError(file + ": cannot read the store's format marker: " + mdb_text(rc));
  const std::string_view format(static_cast<const char*>(value.mv_data), value.mv_size);
  if (format != kStoreFormat)
    throw DataError(file + ": the store's format is '" + std::string(format) + "', this mtrank reads '" +
                    std::string(kStoreFormat) + "'");
  // Committed even though nothing changed: the database handles opened in a
  // transaction are closed when it aborts.
  rc = t.commit();
  if (rc) throw std::runtime_error(file + ": cannot open the store's databases: " + mdb_text(rc));
}

UserStateStore::~UserStateStore() = default;

UserStateStore::LockFile::~LockFile() {
  if (fd >= 0) ::close(fd);
}

std::optional<UserState> UserStateStore::get(std::string_view user) const {
  check_key(env_->env, user);
  Txn t;
  int rc = mdb_txn_begin(env_->env, nullptr, MDB_RDONLY, &t.txn);
  if (rc) throw std::runtime_error(dir_ + ": cannot begin a read transaction: " + mdb_text(rc));
  MDB_val key = val_of(user), value{};
  rc = mdb_get(t.txn, env_->users, &key, &value);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  if (rc) throw DataError(dir_ + ": cannot read the state of a user: " + mdb_text(rc));
  try {
    return decode_user_state(std::string_view(static_cast<const char*>(value.mv_data), value.mv_size));
  } catch (const std::runtime_error& e) {
    throw DataError(dir_ + "/data.mdb: the state of user '" + std::string(user.substr(0, 64)) + "' is corrupt: " + e.what());
  }
}

UserState UserStateStore::update(std::string_view user, const std::function<void(UserState&)>& change) {
  check_key(env_->env, user);
  std::lock_guard<std::mutex> lock(stripes_[std::hash<std::string_view>{}(user) % kStripes]);
  UserState state;
  try {
    state = get(user).value_or(UserState{});
  } catch (const DataError& e) {
    std::fprintf(stderr, "warning: %s; the user starts afresh\n", e.what());
  }
  change(state);  // outside the write transaction: other users' events compute meanwhile
  const std::string bytes = encode_user_state(state);
  Txn t;
  int rc = mdb_txn_begin(env_->env, nullptr, 0, &t.txn);
  if (rc) throw std::runtime_error(dir_ + ": cannot begin a write transaction: " + mdb_text(rc));
  MDB_val key = val_of(user), value = val_of(bytes);
  rc = mdb_put(t.txn, env_->users, &key, &value, 0);
  if (rc == MDB_MAP_FULL)
    throw StoreFullError(dir_ + ": the user-state store is full (its size limit, --state-max-gib, is reached)");
  if (!rc) rc = t.commit();  // synced: the event is on disk when this returns
  if (rc == MDB_MAP_FULL)
    throw StoreFullError(dir_ + ": the user-state store is full (its size limit, --state-max-gib, is reached)");
  if (rc) throw std::runtime_error(dir_ + ": cannot write the state of a user: " + mdb_text(rc));
  return state;
}

std::int64_t UserStateStore::users() const {
  Txn t;
  if (mdb_txn_begin(env_->env, nullptr, MDB_RDONLY, &t.txn)) return 0;
  MDB_stat st{};
  mdb_stat(t.txn, env_->users, &st);
  return static_cast<std::int64_t>(st.ms_entries);
}

}  // namespace mtrank::serve
