#pragma once
// RocksDB's WAL files: which files they are, and what a WAL sync that fails
// leaves in them.
//
// A group commit appends its records to the WAL, then syncs (fdatasync). If
// the sync fails, RocksDB refuses the write (the journal answers every
// purchase in the group with 503) and takes no more writes into that file.
// But the records are in the file: the append reached the page cache, and a
// failed writeback leaves them readable there. At the next start RocksDB
// replays them, and a purchase answered 503 comes back as an order its buyer
// never saw, holding a unit and the buyer's per-user limit until the payment
// timeout. (The same after a failed sync that RocksDB resumes from, when the
// node is killed before the old WAL is deleted.)
//
// `wal_sync_guard_fs` wraps the file system RocksDB writes through. For each
// WAL file it counts the bytes appended and the bytes a sync made durable;
// when a sync fails, it writes zeros over the bytes appended since the last
// sync that succeeded. RocksDB's log reader takes zeros as padding (as at the
// end of a prepared WAL file, storage/prepared_wal.hpp), so a restart replays
// exactly the writes that were synced, and a write refused with the failed
// sync is gone, as its 503 said.
//
// Only for `sync` durability, where every acknowledged write was synced. In
// `async`, writes are acknowledged before any sync: zeroing them would lose
// acknowledged writes. The zeros go to the page cache (the disk just failed a
// sync): a restart on the same machine reads them. A power cut after a failed
// sync may still leave the refused write on the disk, if its pages were
// written before the error.

#include <memory>
#include <string>

#include <rocksdb/file_system.h>

namespace shop {

/// True if `fname` is one of RocksDB's WAL files in `dir`: `<dir>/<digits>.log`
/// (LogFileName in RocksDB's file/filename.cc).
bool is_wal_file(const std::string& dir, const std::string& fname);

class wal_sync_guard_fs final : public rocksdb::FileSystemWrapper {
public:
  /// Guards the WAL files in `dir` (the data dir) written through `base`.
  wal_sync_guard_fs(const std::shared_ptr<rocksdb::FileSystem>& base, std::string dir);

  static const char* kClassName() { return "shop.WalSyncGuardFileSystem"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;

private:
  std::string dir_;
};

} // namespace shop
