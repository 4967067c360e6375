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

struct wal_guard_fs::marks {
  explicit marks(std::string p) : path(std::move(p)) {}
  const std::string path;
  std::atomic<uint64_t> end{0}; // the end of what was appended
  uint64_t acked = 0;           // the end of what was acknowledged (under the fs's mutex)
};

namespace {

/// A WAL file that counts what is appended to it.
class counted_wal final : public rocksdb::FSWritableFileOwnerWrapper {
public:
  counted_wal(std::unique_ptr<rocksdb::FSWritableFile> file,
              std::shared_ptr<wal_guard_fs::marks> marks)
    : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), marks_(std::move(marks)) {}

  // A failed append may have written part of `data`: all of it is counted,
  // so that the refusal that follows zeroes whatever landed (zeros past the
  // end of the file only add padding).
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    marks_->end.fetch_add(data.size());
    return target()->Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    marks_->end.fetch_add(data.size());
    return target()->Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    written_at(offset + data.size());
    return target()->PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    written_at(offset + data.size());
    return target()->PositionedAppend(data, offset, options, info, dbg);
  }

private:
  void written_at(uint64_t to) {
    auto end = marks_->end.load();
    while (end < to && !marks_->end.compare_exchange_weak(end, to)) {
    }
  }

  std::shared_ptr<wal_guard_fs::marks> marks_;
};

/// Writes zeros over [from, to) of the file at `path`; false (errno set) if it cannot.
bool write_zeros(const std::string& path, uint64_t from, uint64_t to) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  std::vector<char> zeros(static_cast<size_t>(std::min<uint64_t>(to - from, 64 << 10)), 0);
  bool ok = true;
  for (auto off = from; off < to;) {
    auto n = ::pwrite(fd, zeros.data(), static_cast<size_t>(std::min<uint64_t>(zeros.size(), to - off)),
                      static_cast<off_t>(off));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      ok = false;
      break;
    }
    off += static_cast<uint64_t>(n);
  }
  int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

} // namespace

wal_guard_fs::wal_guard_fs(const std::shared_ptr<rocksdb::FileSystem>& base, std::string dir)
  : rocksdb::FileSystemWrapper(base), dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/')
    dir_.pop_back();
}

std::unique_ptr<rocksdb::FSWritableFile>
wal_guard_fs::guard(std::unique_ptr<rocksdb::FSWritableFile> file, const std::string& fname) {
  auto m = std::make_shared<marks>(fname);
  {
    std::lock_guard<std::mutex> lock{mtx_};
    live_.erase(std::remove_if(live_.begin(), live_.end(),
                               [](const std::weak_ptr<marks>& w) { return w.expired(); }),
                live_.end());
    live_.push_back(m);
  }
  return std::make_unique<counted_wal>(std::move(file), std::move(m));
}

rocksdb::IOStatus wal_guard_fs::NewWritableFile(const std::string& fname,
                                                const rocksdb::FileOptions& opts,
                                                std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                rocksdb::IODebugContext* dbg) {
  auto s = target()->NewWritableFile(fname, opts, result, dbg);
  if (s.ok() && is_wal_file(dir_, fname))
    *result = guard(std::move(*result), fname);
  return s;
}

rocksdb::IOStatus wal_guard_fs::ReuseWritableFile(const std::string& fname,
                                                  const std::string& old_fname,
                                                  const rocksdb::FileOptions& opts,
                                                  std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                  rocksdb::IODebugContext* dbg) {
  auto s = target()->ReuseWritableFile(fname, old_fname, opts, result, dbg);
  if (s.ok() && is_wal_file(dir_, fname))
    *result = guard(std::move(*result), fname);
  return s;
}

void wal_guard_fs::acknowledged() {
  // Every file: RocksDB may have begun a new WAL file on another thread (a
  // flush) after this write's record went into the one before.
  std::lock_guard<std::mutex> lock{mtx_};
  for (auto& w : live_)
    if (auto m = w.lock())
      m->acked = m->end.load();
}

void wal_guard_fs::refused() {
  // What each file received since it was last acknowledged: [acked, end).
  struct tail {
    std::shared_ptr<marks> m;
    uint64_t from;
    uint64_t to;
  };
  std::vector<tail> tails;
  {
    std::lock_guard<std::mutex> lock{mtx_};
    for (auto& w : live_) {
      auto m = w.lock();
      if (!m)
        continue;
      auto end = m->end.load();
      if (end > m->acked) {
        tails.push_back({m, m->acked, end});
        m->acked = end; // zeroed once
      }
    }
  }
  for (auto& [m, from, to] : tails) {
    if (write_zeros(m->path, from, to))
      spdlog::warn("wal: a write failed after it reached {}: its {} bytes there are zeros now "
                   "(not replayed at the next start)",
                   m->path, to - from);
    else
      spdlog::error("wal: a write failed after it reached {}, and writing zeros over its {} "
                    "bytes failed too ({}): it may be replayed at the next start",
                    m->path, to - from, std::strerror(errno));
  }
}

} // namespace shop
