#include "storage/prepared_wal.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "storage/wal_files.hpp"

namespace shop {

namespace {

constexpr const char* spare_prefix = "wal-spare-";
constexpr const char* tmp_suffix = ".tmp";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The error of the call that just failed (errno), as RocksDB's own files
/// report it. Reads errno before anything else can change it.
rocksdb::IOStatus io_error(const char* doing, const std::string& path) {
  int err = errno;
  auto what = std::string{doing} + " " + path + ": " + std::strerror(err);
  if (err == ENOSPC) { // as RocksDB's own files say it: a full disk is retryable
    auto s = rocksdb::IOStatus::NoSpace(what);
    s.SetRetryable(true);
    return s;
  }
  return rocksdb::IOStatus::IOError(what);
}

/// False (errno set by the call that failed) if the directory's entries may not be durable.
bool fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool ok = ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

/// True if another process holds RocksDB's LOCK on `dir`: its files are not ours to touch.
bool locked_by_another(const std::string& dir) {
  int fd = ::open((dir + "/LOCK").c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return false; // no LOCK file: no database there yet
  struct flock lk{};
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  bool locked = ::fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type != F_UNLCK;
  ::close(fd);
  return locked;
}

/// True if the file's first 32 KiB (a WAL block) hold zeros only: no
/// record was ever written into it.
bool begins_with_zeros(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  std::vector<char> block(32 << 10);
  auto n = ::pread(fd, block.data(), block.size(), 0);
  ::close(fd);
  return n == static_cast<ssize_t>(block.size())
         && std::all_of(block.begin(), block.end(), [](char c) { return c == 0; });
}

/// A WAL file begun from a prepared file: RocksDB's appends overwrite its
/// zeros at `size_`; closing cuts the file to `size_`.
class prepared_file final : public rocksdb::FSWritableFile {
public:
  prepared_file(int fd, std::string path, uint64_t allocated, prepared_wal_fs* fs)
    : fd_(fd), path_(std::move(path)), allocated_(allocated), fs_(fs) {}

  ~prepared_file() override {
    if (fd_ >= 0)
      Close(rocksdb::IOOptions{}, nullptr).PermitUncheckedError();
  }

  using rocksdb::FSWritableFile::Append;
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions&,
                           rocksdb::IODebugContext*) override {
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      auto n = ::pwrite(fd_, p, left, static_cast<off_t>(size_));
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return io_error("while appending to WAL file", path_);
      }
      p += n;
      left -= static_cast<size_t>(n);
      size_ += static_cast<uint64_t>(n);
    }
    fs_->note_wal_size(size_);
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return io_error("while truncating WAL file", path_);
    size_ = size;
    allocated_ = size;
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus Close(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    if (fd_ < 0)
      return rocksdb::IOStatus::OK();
    rocksdb::IOStatus s;
    // Cut the zeros RocksDB did not write over: a closed WAL is an ordinary one.
    if (size_ < allocated_ && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0)
      s = io_error("while cutting to its size WAL file", path_);
    if (::close(fd_) != 0 && s.ok())
      s = io_error("while closing WAL file", path_);
    fd_ = -1;
    return s;
  }

  rocksdb::IOStatus Flush(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK(); // no buffer here: Append wrote to the kernel
  }

  rocksdb::IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    // Within the prepared size, only data: no size or extent changes to store.
    if (::fdatasync(fd_) != 0)
      return io_error("while fdatasync of WAL file", path_);
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    if (::fsync(fd_) != 0)
      return io_error("while fsync of WAL file", path_);
    return rocksdb::IOStatus::OK();
  }

  bool IsSyncThreadSafe() const override { return true; }

  uint64_t GetFileSize(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return size_;
  }

  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions&,
                              rocksdb::IODebugContext*) override {
    if (::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(nbytes),
                          SYNC_FILE_RANGE_WRITE)
        != 0)
      return io_error("while sync_file_range of WAL file", path_);
    return rocksdb::IOStatus::OK();
  }

private:
  int fd_;
  std::string path_;
  uint64_t allocated_; // the file's size on disk until Close
  uint64_t size_ = 0;  // what RocksDB wrote
  prepared_wal_fs* fs_;
};

/// A WAL file begun empty: RocksDB's own, which only reports its size.
class counted_file final : public rocksdb::FSWritableFileOwnerWrapper {
public:
  counted_file(std::unique_ptr<rocksdb::FSWritableFile> file, prepared_wal_fs* fs)
    : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    auto s = target()->Append(data, options, dbg);
    count(s, data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    auto s = target()->Append(data, options, info, dbg);
    count(s, data.size());
    return s;
  }

private:
  void count(const rocksdb::IOStatus& s, size_t n) {
    if (!s.ok())
      return;
    written_ += n;
    fs_->note_wal_size(written_);
  }

  uint64_t written_ = 0;
  prepared_wal_fs* fs_;
};

/// The names of the prepared files (complete or not) in `dir`.
std::vector<std::string> prepared_files(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d))
      if (std::strncmp(e->d_name, spare_prefix, std::strlen(spare_prefix)) == 0)
        names.emplace_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

} // namespace

void prepared_wal_fs::remove_files(const std::string& dir) {
  if (locked_by_another(dir)) // a node runs there (this start will be refused)
    return;
  for (auto& name : prepared_files(dir))
    ::unlink((dir + "/" + name).c_str());
}

prepared_wal_fs::prepared_wal_fs(const std::shared_ptr<rocksdb::FileSystem>& base,
                                 std::string dir, uint64_t file_bytes)
  : rocksdb::FileSystemWrapper(base), dir_(std::move(dir)), file_bytes_(file_bytes) {
  while (dir_.size() > 1 && dir_.back() == '/')
    dir_.pop_back();
  // Adopt the complete files of an earlier run; drop half-made ones, any of
  // another size (the option changed) and any that does not begin with
  // zeros. Not while another process has the database open: this start will
  // be refused, and those files are that node's.
  if (!locked_by_another(dir_)) {
    for (auto& name : prepared_files(dir_)) {
      auto path = dir_ + "/" + name;
      struct stat st{};
      auto id = std::strtoull(name.c_str() + std::strlen(spare_prefix), nullptr, 10);
      next_id_ = std::max<uint64_t>(next_id_, id + 1);
      if (!ends_with(name, tmp_suffix) && ::stat(path.c_str(), &st) == 0
          && static_cast<uint64_t>(st.st_size) == file_bytes_ && begins_with_zeros(path))
        ready_.push_back(path);
      else
        ::unlink(path.c_str());
    }
  }
  maker_ = std::thread{[this] {
    pthread_setname_np(pthread_self(), "shop-walprep");
    // Idle I/O class: the disk serves the zeros when nothing else waits
    // (honoured by the bfq and mq-deadline schedulers; harmless elsewhere).
    constexpr int ioprio_class_idle = 3, ioprio_class_shift = 13, ioprio_who_process = 1;
    ::syscall(SYS_ioprio_set, ioprio_who_process, 0, ioprio_class_idle << ioprio_class_shift);
    // And the CPU only when the node's own threads leave it (nice 19, this thread only).
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
    run();
  }};
}

prepared_wal_fs::~prepared_wal_fs() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (maker_.joinable())
    maker_.join();
}

size_t prepared_wal_fs::ready() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return ready_.size();
}

void prepared_wal_fs::note_wal_size(uint64_t bytes) {
  if (bytes < file_bytes_ / 4 || wanted_.load(std::memory_order_relaxed))
    return;
  {
    // Set under the lock, so that the maker cannot miss it between its look and its wait.
    std::lock_guard<std::mutex> guard{mtx_};
    wanted_.store(true, std::memory_order_relaxed);
  }
  cv_.notify_all();
}

rocksdb::IOStatus prepared_wal_fs::NewWritableFile(const std::string& fname,
                                                   const rocksdb::FileOptions& opts,
                                                   std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                   rocksdb::IODebugContext* dbg) {
  if (!is_wal_file(dir_, fname))
    return target()->NewWritableFile(fname, opts, result, dbg);
  std::string spare;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!ready_.empty()) {
      spare = std::move(ready_.front());
      ready_.pop_front();
    }
  }
  if (!spare.empty()) {
    if (::rename(spare.c_str(), fname.c_str()) == 0) {
      // The new name must be durable before any record is: else a crash
      // could leave acknowledged records under the prepared file's name (to
      // be taken for zeros at the next start). RocksDB fsyncs the directory
      // at a new WAL's first sync, but not on every file system (btrfs) and
      // not for every write.
      if (!fsync_dir(dir_))
        return io_error("while fsync of the directory of new WAL file", fname);
      int fd = ::open(fname.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        {
          // Its zeros may have left the page cache: the maker reads them
          // back ahead of RocksDB's writes, so that a partial-page write does
          // not wait for a read (and this thread does not walk the file).
          std::lock_guard<std::mutex> guard{mtx_};
          to_read_ahead_.push_back(fname);
        }
        cv_.notify_all();
        prepared_wals_.fetch_add(1, std::memory_order_relaxed);
        *result = std::make_unique<prepared_file>(fd, fname, file_bytes_, this);
        return rocksdb::IOStatus::OK();
      }
      spdlog::warn("wal: cannot open the prepared file {}: {}", fname, std::strerror(errno));
    } else {
      spdlog::warn("wal: cannot rename {} to {}: {}", spare, fname, std::strerror(errno));
      ::unlink(spare.c_str());
    }
  }
  cv_.notify_all(); // one fewer ready, or none was
  // None ready: RocksDB's own file (opened with O_TRUNC, so a half-taken
  // prepared file under this name is emptied).
  std::unique_ptr<rocksdb::FSWritableFile> plain;
  auto s = target()->NewWritableFile(fname, opts, &plain, dbg);
  if (!s.ok())
    return s;
  plain_wals_.fetch_add(1, std::memory_order_relaxed);
  *result = std::make_unique<counted_file>(std::move(plain), this);
  return s;
}

void prepared_wal_fs::run() {
  auto retry_at = std::chrono::steady_clock::time_point{};
  for (;;) {
    bool read_ahead = false;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      for (;;) {
        if (stopping_)
          return;
        if (!to_read_ahead_.empty()) {
          read_ahead = true;
          break;
        }
        if (!wanted_.load(std::memory_order_relaxed) || ready_.size() >= ahead)
          cv_.wait(guard);
        else if (std::chrono::steady_clock::now() < retry_at) // after a failure
          cv_.wait_until(guard, retry_at);
        else
          break; // make one
      }
    }
    if (read_ahead) {
      read_ahead_taken();
      continue;
    }
    if (!prepare_one())
      retry_at = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  }
}

void prepared_wal_fs::read_ahead_taken() {
  std::deque<std::string> paths;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    paths.swap(to_read_ahead_);
  }
  for (auto& path : paths) {
    // Nothing to read where the zeros are still cached, as they usually are.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
      ::close(fd);
    }
  }
}

bool prepared_wal_fs::prepare_one() {
  // Never the file that fills the disk: leave room for five of them.
  struct statvfs fs{};
  if (::statvfs(dir_.c_str(), &fs) == 0
      && static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize < 5 * file_bytes_)
    return false;
  uint64_t id;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    id = next_id_++;
  }
  auto path = dir_ + "/" + spare_prefix + std::to_string(id);
  auto tmp = path + tmp_suffix;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    spdlog::warn("wal: cannot create {}: {}", tmp, std::strerror(errno));
    return false;
  }
  // Written a quarter MiB at a time, at no more than `fill_rate`, each piece
  // handed to the disk before the next: the zeros must never queue in front
  // of a WAL fsync as a burst of writes. (Buffered, not O_DIRECT: the zeros
  // stay in the page cache, so RocksDB's partial-page writes need no read.)
  constexpr size_t chunk = 256 << 10;
  std::vector<char> zeros(chunk, 0);
  auto begun = std::chrono::steady_clock::now();
  bool ok = true;
  for (uint64_t off = 0; ok && off < file_bytes_;) {
    read_ahead_taken(); // a WAL file begun meanwhile comes first
    {
      auto due = begun + std::chrono::microseconds{off * 1'000'000 / fill_rate};
      std::unique_lock<std::mutex> guard{mtx_};
      if (cv_.wait_until(guard, due, [this] { return stopping_; })) {
        ok = false;
        break;
      }
    }
    auto n = ::pwrite(fd, zeros.data(), std::min<uint64_t>(chunk, file_bytes_ - off),
                      static_cast<off_t>(off));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      spdlog::warn("wal: cannot write {}: {}", tmp, n < 0 ? std::strerror(errno) : "no progress");
      ok = false;
      break;
    }
    ::sync_file_range(fd, static_cast<off_t>(off), n,
                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                        | SYNC_FILE_RANGE_WAIT_AFTER);
    off += static_cast<uint64_t>(n);
  }
  if (ok && ::fdatasync(fd) != 0) {
    spdlog::warn("wal: cannot sync {}: {}", tmp, std::strerror(errno));
    ok = false;
  }
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    spdlog::warn("wal: cannot rename {}: {}", tmp, std::strerror(errno));
    ok = false;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return false;
  }
  fsync_dir(dir_); // best effort: a file lost here is only made again
  std::lock_guard<std::mutex> guard{mtx_};
  ready_.push_back(path);
  return true;
}

} // namespace shop
