#pragma once
// RocksDB's WAL files: which files they are, and what a write that fails
// leaves in them.
//
// A write appends its record to the WAL, then (in `sync` durability) syncs
// the file, and the first synced write of each new WAL also syncs the
// directory. If a step after the append fails, RocksDB reports the write as
// failed (the journal answers every purchase in the group with 503) and takes
// no more writes into that file. But the record is in the file: the append
// reached the page cache (and a failed writeback leaves it readable there),
// or the file sync even succeeded and only the directory's failed. At the
// next start RocksDB replays it, and a purchase answered 503 comes back as an
// order its buyer never saw, holding a unit and the buyer's per-user limit
// until the payment timeout.
//
// `wal_guard_fs` wraps the file system RocksDB writes through and counts the
// bytes appended to each WAL file. The store tells it how each of its writes
// ended: `acknowledged` after one that succeeded, `refused` after one that
// failed. A refusal writes zeros over what the WAL files received since the
// last acknowledged write: the failed write's record, and nothing acknowledged.
// RocksDB's log reader takes zeros as padding (as at the end of a prepared
// WAL file, storage/prepared_wal.hpp), so a restart replays exactly the
// acknowledged writes. In `async` durability too: its acknowledged writes,
// never synced, are all before that point.
//
// This relies on RocksDB appending nothing more to a WAL file after a failed
// write (`paranoid_checks`, set by the store: the error stops writes until
// RocksDB resumes into a new WAL file or the database is opened again; only
// a Busy or Incomplete status, which no file system under this one returns,
// would let it go on), and on the store's writes reaching RocksDB one at a
// time. The zeros go to the page cache (the disk may just have failed a
// sync): a restart on the same machine reads them. A power cut right after
// the failure may still leave the refused record on the disk, if its pages
// were written before.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <rocksdb/file_system.h>

namespace shop {

/// True if `fname` is one of RocksDB's WAL files in `dir`: `<dir>/<digits>.log`
/// (LogFileName in RocksDB's file/filename.cc).
bool is_wal_file(const std::string& dir, const std::string& fname);

class wal_guard_fs final : public rocksdb::FileSystemWrapper {
public:
  /// Guards the WAL files in `dir` (the data dir) written through `base`.
  wal_guard_fs(const std::shared_ptr<rocksdb::FileSystem>& base, std::string dir);

  static const char* kClassName() { return "shop.WalGuardFileSystem"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& opts,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

  /// A write succeeded: everything the WAL files hold is acknowledged (the
  /// store's writes reach RocksDB one at a time, each followed by this call
  /// or `refused`).
  void acknowledged();
  /// A write failed: zeros over what each WAL file received since it was last
  /// acknowledged, which is that write's record (in the newest file, or in the
  /// one before if RocksDB began a new one on another thread meanwhile).
  void refused();

  struct marks; // one WAL file's counts

private:
  std::unique_ptr<rocksdb::FSWritableFile> guard(std::unique_ptr<rocksdb::FSWritableFile> file,
                                                 const std::string& fname);

  std::string dir_;
  std::mutex mtx_;
  std::vector<std::weak_ptr<marks>> live_; // the WAL files RocksDB still holds open
};

} // namespace shop
