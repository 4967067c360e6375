#include "storage/wal_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

namespace shop {

bool is_wal_file(const std::string& dir, const std::string& fname) {
  auto slash = fname.rfind('/');
  if (slash == std::string::npos)
    return false;
  auto parent = fname.substr(0, slash);
  while (parent.size() > 1 && parent.back() == '/')
    parent.pop_back();
  auto base = fname.substr(slash + 1);
  if (parent != dir || base.size() <= 4 || base.compare(base.size() - 4, 4, ".log") != 0)
    return false;
  for (size_t i = 0; i + 4 < base.size(); ++i)
    if (base[i] < '0' || base[i] > '9')
      return false;
  return true;
}

namespace {

/// A WAL file whose failed sync turns the bytes it did not make durable
/// into zeros (storage/wal_files.hpp).
class guarded_wal final : public rocksdb::FSWritableFileOwnerWrapper {
public:
  guarded_wal(std::unique_ptr<rocksdb::FSWritableFile> file, std::string path)
    : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), path_(std::move(path)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    return appended(data.size(), target()->Append(data, options, dbg));
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    return appended(data.size(), target()->Append(data, options, info, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    return written_at(offset, data.size(), target()->PositionedAppend(data, offset, options, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    return written_at(offset, data.size(),
                      target()->PositionedAppend(data, offset, options, info, dbg));
  }

  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    auto s = target()->Truncate(size, options, dbg);
    if (s.ok()) {
      end_.store(size);
      if (synced_.load() > size)
        synced_.store(size);
    }
    return s;
  }

  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    auto upto = end_.load();
    return synced(upto, target()->Sync(options, dbg));
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    auto upto = end_.load();
    return synced(upto, target()->Fsync(options, dbg));
  }

private:
  rocksdb::IOStatus appended(size_t n, rocksdb::IOStatus s) {
    // A failed append may have written part of `data`: count it all, so
    // that a later failed sync zeroes whatever landed. (RocksDB syncs no
    // file after a failed append; zeroing past what landed adds padding.)
    end_.fetch_add(n);
    return s;
  }

  rocksdb::IOStatus written_at(uint64_t offset, size_t n, rocksdb::IOStatus s) {
    auto to = offset + n;
    auto end = end_.load();
    while (end < to && !end_.compare_exchange_weak(end, to)) {
    }
    return s;
  }

  rocksdb::IOStatus synced(uint64_t upto, rocksdb::IOStatus s) {
    if (s.ok()) {
      auto done = synced_.load();
      while (done < upto && !synced_.compare_exchange_weak(done, upto)) {
      }
    } else {
      zero_unsynced();
    }
    return s;
  }

  /// Writes zeros over [last synced end, end of the appends). RocksDB takes
  /// no more writes into this file after a failed sync, so nothing lands
  /// there afterwards.
  void zero_unsynced() {
    auto from = synced_.load();
    auto to = end_.load();
    if (to <= from)
      return;
    int fd = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0;
    int err = ok ? 0 : errno;
    std::vector<char> zeros(static_cast<size_t>(std::min<uint64_t>(to - from, 64 << 10)), 0);
    for (auto off = from; ok && off < to;) {
      auto n = ::pwrite(fd, zeros.data(), static_cast<size_t>(std::min<uint64_t>(zeros.size(), to - off)),
                        static_cast<off_t>(off));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        err = n < 0 ? errno : EIO;
        ok = false;
        break;
      }
      off += static_cast<uint64_t>(n);
    }
    if (fd >= 0)
      ::close(fd);
    if (ok)
      spdlog::warn("wal: a sync of {} failed: its last {} bytes, which it did not make durable, "
                   "are zeros now (the writes refused with it are not replayed at the next start)",
                   path_, to - from);
    else
      spdlog::error("wal: a sync of {} failed, and writing zeros over its last {} bytes failed "
                    "too ({}): the writes refused with it may be replayed at the next start",
                    path_, to - from, std::strerror(err));
  }

  std::string path_;
  std::atomic<uint64_t> end_{0};    // the end of what was appended
  std::atomic<uint64_t> synced_{0}; // the end of what a sync made durable
};

} // namespace

wal_sync_guard_fs::wal_sync_guard_fs(const std::shared_ptr<rocksdb::FileSystem>& base,
                                     std::string dir)
  : rocksdb::FileSystemWrapper(base), dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/')
    dir_.pop_back();
}

rocksdb::IOStatus wal_sync_guard_fs::NewWritableFile(
  const std::string& fname, const rocksdb::FileOptions& opts,
  std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  auto s = target()->NewWritableFile(fname, opts, result, dbg);
  if (s.ok() && is_wal_file(dir_, fname))
    *result = std::make_unique<guarded_wal>(std::move(*result), fname);
  return s;
}

} // namespace shop
