#pragma once
// WAL files written with zeros before RocksDB needs them.
//
// An fdatasync after an append must also store the file's new size (and
// mark as written the blocks RocksDB preallocated with fallocate): a
// metadata write on top of the data. Rewriting blocks that already hold
// zeros changes no metadata, so the same fdatasync writes only the data.
// PostgreSQL zero-fills its WAL segments for the same reason. Measured in
// bench/RESULTS.md ("Prepared WAL files").
//
// `prepared_wal_fs` wraps RocksDB's file system. When RocksDB creates a WAL
// file and a prepared one is ready, the prepared file (zeros, fsync'd) is
// renamed to the name RocksDB asked for, and RocksDB writes over the zeros
// from offset 0. When RocksDB closes the file it is cut to what was written,
// so a closed WAL is an ordinary one. After a crash the live WAL ends in
// zeros: RocksDB's log reader takes a zero header as padding and reads on to
// the end of the file, so recovery finds exactly the records written. A
// write torn by a power cut (its header written, its payload not all) fails
// its checksum in the middle of the file; point-in-time recovery, the store's
// mode, ends the records there, where the stricter modes refuse to open.
//
// Writes made without a sync (none in `sync` mode's journal) lose one
// property on a power loss: their pages may reach the disk out of order, and
// a page still holding zeros between two that made it reads as padding, so
// the later one is replayed without the earlier. Each RocksDB write batch
// stays whole (one record, checksummed); writes synced before are not
// affected.
//
// A background thread (`shop-walprep`) prepares up to two files ahead, but
// only once a WAL has received a quarter of `file_bytes`: a node that writes
// little (tests, an idle shop) never pays for them. It also leaves them
// unmade while the disk has less than five files' worth of free space: they
// must never be what fills it. A WAL that outgrows its prepared file goes on
// growing as an ordinary one. Prepared files are named `wal-spare-<n>` in the
// data dir (names RocksDB ignores); complete ones are used after a restart.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <rocksdb/file_system.h>

namespace shop {

class prepared_wal_fs final : public rocksdb::FileSystemWrapper {
public:
  /// Prepares files of `file_bytes` for WALs in `dir` (the data dir, which
  /// must exist). Adopts the complete prepared files a previous run left.
  prepared_wal_fs(const std::shared_ptr<rocksdb::FileSystem>& base, std::string dir,
                  uint64_t file_bytes);
  ~prepared_wal_fs() override; // stops preparing; leaves the ready files for the next start

  prepared_wal_fs(const prepared_wal_fs&) = delete;
  prepared_wal_fs& operator=(const prepared_wal_fs&) = delete;

  /// Deletes the prepared files an earlier run left in `dir` (for a start
  /// that prepares none: they would only take space).
  static void remove_files(const std::string& dir);

  static const char* kClassName() { return "shop.PreparedWalFileSystem"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;

  /// WAL files begun from a prepared file, and begun empty (none was ready).
  uint64_t prepared_wals() const noexcept { return prepared_wals_.load(); }
  uint64_t plain_wals() const noexcept { return plain_wals_.load(); }
  /// Prepared files ready for use now.
  size_t ready() const;

  /// A WAL file received `bytes` in all: past a quarter of `file_bytes`,
  /// preparing starts (called by the WAL files of this file system).
  void note_wal_size(uint64_t bytes);

  uint64_t file_bytes() const noexcept { return file_bytes_; }

private:
  /// The background thread: prepares files while fewer than `ahead` are ready.
  void run();
  /// Writes one prepared file; false (and no file left behind) on failure.
  bool prepare_one();
  /// Asks the kernel to bring the zeros of the WAL files just begun back
  /// into the page cache (if they left it).
  void read_ahead_taken();

  static constexpr size_t ahead = 2;
  /// Bytes per second of zeros at most: ~2.5 times the WAL's rate at a
  /// node's peak (~26 MB/s at 87,000 purchases/s), spread out, not a burst.
  static constexpr uint64_t fill_rate = 64ull << 20;

  std::string dir_;
  uint64_t file_bytes_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::string> ready_; // paths of complete prepared files
  std::deque<std::string> to_read_ahead_; // WAL files just begun from one
  uint64_t next_id_ = 0;          // for the next file's name
  bool stopping_ = false;
  /// A WAL passed the threshold: keep `ahead` ready. Set under `mtx_`; read
  /// without it on every append.
  std::atomic<bool> wanted_{false};
  std::atomic<uint64_t> prepared_wals_{0};
  std::atomic<uint64_t> plain_wals_{0};
  std::thread maker_;
};

} // namespace shop
