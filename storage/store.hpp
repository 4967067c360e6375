#pragma once
// The node's RocksDB database. One per node, shared (thread-safe) by the
// journal's writer thread and by entities reading their state on activation.
// rocksdb::Status never leaves this folder: failures become shop errors.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace rocksdb {
class DB;
class Env;
class FileSystem;
class Statistics;
} // namespace rocksdb

namespace shop {

/// One change in a batch.
struct write_op {
  enum class kind : uint8_t { put, erase };
  kind op = kind::put;
  std::string key;
  std::string value;
};

using write_batch = std::vector<write_op>;

inline write_op put_op(std::string key, std::string value) {
  return {write_op::kind::put, std::move(key), std::move(value)};
}
inline write_op erase_op(std::string key) {
  return {write_op::kind::erase, std::move(key), {}};
}

/// RocksDB's own cumulative counters (since the process started), for /metrics.
enum class store_counter {
  flush_written_bytes,      ///< SST bytes written by memtable flushes
  compaction_written_bytes, ///< SST bytes written by compactions
  compaction_read_bytes,    ///< SST bytes read by compactions
  write_stall_micros,       ///< time writes were delayed or stopped by RocksDB
  prepared_wal_files,       ///< WAL files begun from a prepared (zero-filled) file
  plain_wal_files,          ///< WAL files begun empty (none was prepared)
};

/// Whether RocksDB takes writes after one failed (its "background error").
enum class write_state : uint8_t {
  /// Writes are taken (again, or they were never stopped).
  accepting,
  /// Refused for now; RocksDB may take them again. A full disk is such an
  /// error: RocksDB resumes by itself once space is free.
  recovering,
  /// Refused until the database is opened again: RocksDB deems the error
  /// fatal (an I/O error other than a full disk on the WAL, for example).
  stopped,
};

class dir_claim;
class prepared_wal_fs;
class wal_guard_fs;

struct store_options {
  /// The RocksDB directory; created when missing. Default: ./data
  std::string path = "./data";
  /// Size of the zero-filled files prepared for the WAL (storage/prepared_wal.hpp);
  /// 0: none, RocksDB's WAL files begin empty. The default holds a whole WAL
  /// file (one 32 MiB memtable's writes).
  uint64_t prepared_wal_bytes = 40ull << 20;
  /// SST files kept open (RocksDB's max_open_files); -1: every one. Its WAL,
  /// MANIFEST and the files being written are not counted.
  int max_open_files = -1;
  /// The file system RocksDB works on; null: the operating system's. (Tests
  /// put one here that fails on purpose.) Prepared WAL files are written and
  /// renamed with POSIX calls of their own, not through it.
  std::shared_ptr<rocksdb::FileSystem> file_system = nullptr;
};

class store {
public:
  /// Opens (or creates) the database. On error returns errc::unavailable with RocksDB's text.
  /// A data dir this process already has open is refused before anything in it is touched.
  [[nodiscard]] static caf::expected<std::shared_ptr<store>> open(const store_options& opts);

  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// Reads `key`: true and `out` filled if present, false if absent, an error on I/O failure.
  [[nodiscard]] caf::expected<bool> get(std::string_view key, std::string& out) const;

  /// Calls `fn(key, value)` for every key that starts with `prefix`, in key
  /// order, until `fn` returns false. `prefix` must end with a separator.
  /// With `start_after`, the scan begins at the first key past it (paging).
  [[nodiscard]] caf::error
  scan(std::string_view prefix,
       const std::function<bool(std::string_view, std::string_view)>& fn,
       std::string_view start_after = {}) const;

  /// Applies `ops` atomically; `sync` fsyncs the WAL before returning.
  [[nodiscard]] caf::error write(const write_batch& ops, bool sync);

  /// Applies several batches atomically as one RocksDB WriteBatch (group commit).
  [[nodiscard]] caf::error write_all(const std::vector<const write_batch*>& batches, bool sync);

  /// After a failed write: asks RocksDB to take writes again (DB::Resume,
  /// which flushes the memtables to new files when an error stopped writes)
  /// and says what came of it. Unless `accepting`, `why` gets RocksDB's error;
  /// after a failed write that was the first of its WAL file, `stopped` at
  /// once without asking RocksDB (see write_all), with that reason.
  [[nodiscard]] write_state resume(std::string* why = nullptr);

  /// A RocksDB integer property such as "rocksdb.estimate-num-keys"; 0 if unknown.
  [[nodiscard]] uint64_t int_property(const std::string& name) const;

  /// One of RocksDB's cumulative counters.
  [[nodiscard]] uint64_t counter(store_counter c) const;

  const std::string& path() const noexcept { return path_; }

private:
  store(std::unique_ptr<dir_claim> claim, std::unique_ptr<rocksdb::DB> db,
        std::shared_ptr<rocksdb::Statistics> stats, std::string path);
  // Declared first: released after the database is closed (store.cpp).
  std::unique_ptr<dir_claim> claim_;
  // Declared before db_: the database is closed before its file system goes.
  std::shared_ptr<prepared_wal_fs> wal_fs_;
  std::shared_ptr<wal_guard_fs> wal_guard_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<rocksdb::DB> db_;
  std::shared_ptr<rocksdb::Statistics> stats_;
  std::string path_;
  // One write at a time reaches RocksDB, and its outcome reaches wal_guard_
  // before the next one starts (storage/wal_files.hpp).
  std::mutex write_mtx_;
  std::atomic<bool> write_failed_{false}; // since the last write that failed, until resumed
  // A failed write that RocksDB cannot safely resume from: writes are refused
  // without reaching RocksDB until the database is opened again.
  std::atomic<bool> wal_unusable_{false};
  std::string wal_why_; // written once, before wal_unusable_ is set
};

using store_ptr = std::shared_ptr<store>;

} // namespace shop
