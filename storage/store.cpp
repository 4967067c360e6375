#include "storage/store.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <spdlog/spdlog.h>

#include "protocols/errc.hpp"
#include "storage/prepared_wal.hpp"
#include "storage/wal_files.hpp"

namespace shop {
namespace {

caf::error to_error(const rocksdb::Status& s, std::string_view what) {
  return make_error(errc::unavailable, std::string{what} + ": " + s.ToString());
}

/// RocksDB's info log, sent to shopd's log instead of a LOG file in the data
/// dir: warnings and errors only (the rest is per-flush and per-compaction
/// detail that /metrics sums up, and the options dumped at each open). Also
/// an info log that cannot grow (a full disk) makes Debian's RocksDB, which
/// is built with assertions on, abort at its next line.
class rocksdb_to_spdlog final : public rocksdb::Logger {
public:
  rocksdb_to_spdlog() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}

  using rocksdb::Logger::Logv;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    auto to = spdlog::level::off;
    switch (level) {
      case rocksdb::InfoLogLevel::WARN_LEVEL: to = spdlog::level::warn; break;
      case rocksdb::InfoLogLevel::ERROR_LEVEL:
      case rocksdb::InfoLogLevel::FATAL_LEVEL: to = spdlog::level::err; break;
      default: return; // debug, info, and the header (the options at open)
    }
    char buf[1024];
    auto n = std::vsnprintf(buf, sizeof(buf), format, ap);
    if (n < 0)
      return;
    std::string_view text{buf, std::min(static_cast<size_t>(n), sizeof(buf) - 1)};
    while (!text.empty() && text.back() == '\n')
      text.remove_suffix(1);
    spdlog::log(to, "rocksdb: {}", text);
  }
};

/// `<kind>/<shard>/` of a key (storage/keys.hpp): the range a memtable insert
/// of that key keeps its insert position for. Keys without a shard (`meta/...`)
/// are out of its domain.
class kind_and_shard final : public rocksdb::SliceTransform {
public:
  const char* Name() const override { return "shop.KindAndShard"; }

  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return {key.data(), prefix_length(key)};
  }

  bool InDomain(const rocksdb::Slice& key) const override { return prefix_length(key) > 0; }

private:
  /// Up to and including the second '/'; 0 if there is none.
  static size_t prefix_length(const rocksdb::Slice& key) {
    auto* first = static_cast<const char*>(std::memchr(key.data(), '/', key.size()));
    if (first == nullptr)
      return 0;
    auto rest = key.size() - static_cast<size_t>(first + 1 - key.data());
    auto* second = static_cast<const char*>(std::memchr(first + 1, '/', rest));
    return second == nullptr ? 0 : static_cast<size_t>(second + 1 - key.data());
  }
};

void append(rocksdb::WriteBatch& wb, const write_batch& ops) {
  for (auto& op : ops) {
    if (op.op == write_op::kind::put)
      wb.Put(op.key, op.value);
    else
      wb.Delete(op.key);
  }
}

} // namespace

/// A data dir this process has open, from before anything in it is opened
/// until the database is closed. RocksDB's `LOCK` is a POSIX record lock, and
/// a process loses those on a file when it closes *any* descriptor of it: a
/// second open of the same dir would drop the first one's lock (the prepared
/// files' look at `LOCK` opens and closes it), and another process could then
/// open the database too. So a second open is refused before that.
class dir_claim {
public:
  /// The claim on the directory `st` describes, or null if this process
  /// has it open (by any name: it is known by device and inode).
  static std::unique_ptr<dir_claim> take(const struct stat& st) {
    id key{st.st_dev, st.st_ino};
    std::lock_guard<std::mutex> guard{mtx()};
    if (!claimed().insert(key).second)
      return nullptr;
    return std::unique_ptr<dir_claim>{new dir_claim{key}};
  }

  ~dir_claim() {
    std::lock_guard<std::mutex> guard{mtx()};
    claimed().erase(key_);
  }

  dir_claim(const dir_claim&) = delete;
  dir_claim& operator=(const dir_claim&) = delete;

private:
  using id = std::pair<dev_t, ino_t>;
  explicit dir_claim(id key) : key_(key) {}
  static std::mutex& mtx() {
    static std::mutex m;
    return m;
  }
  static std::set<id>& claimed() {
    static std::set<id> dirs;
    return dirs;
  }

  id key_;
};

store::store(std::unique_ptr<dir_claim> claim, std::unique_ptr<rocksdb::DB> db,
             std::shared_ptr<rocksdb::Statistics> stats, std::string path)
  : claim_(std::move(claim)), db_(std::move(db)), stats_(std::move(stats)),
    path_(std::move(path)) {
}

store::~store() {
  if (db_) {
    // Best effort on shutdown: every acknowledged write was already durable.
    // Not after a failed write that RocksDB has not resumed from: its WAL
    // file refuses every call then (and Debian's build asserts on a sync).
    if (!write_failed_.load())
      db_->FlushWAL(true).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }
}

caf::expected<std::shared_ptr<store>> store::open(const store_options& opts) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_open_files = opts.max_open_files;
  o.IncreaseParallelism(2);
  o.OptimizeLevelStyleCompaction();
  // Memtables of 32 MiB, each flushed on its own (the default of that call is
  // 128 MiB, flushed two at a time): the WAL that a start must replay holds at
  // most a few of them. With the default, a node killed after a long burst spent
  // seconds replaying hundreds of MiB before it could serve (bench/RESULTS.md).
  o.write_buffer_size = 32 << 20;
  o.min_write_buffer_number_to_merge = 1;
  o.max_write_buffer_number = 4;
  // Flushes and compactions hand their SST data to the disk every MiB, as they
  // write it. Without this an SST's pages stayed dirty until the file was
  // finished, then went out in one burst of tens of MiB, and every WAL sync
  // queued behind that burst: the stalls that made sync purchases' p99 several
  // times higher in runs longer than a few seconds (bench/RESULTS.md).
  o.bytes_per_sync = 1 << 20;
  // Level sizes that follow the small memtables. The defaults of the call above
  // (a 512 MiB first level, compacted into after every 2 flushes) made each
  // small flush rewrite most of that level, since purchases' keys are random:
  // compaction CPU grew with the data (bench/RESULTS.md).
  o.level0_file_num_compaction_trigger = 4;
  o.max_bytes_for_level_base = 128 << 20;
  o.target_file_size_base = 32 << 20;
  // RocksDB's tickers (flush and compaction bytes, write stalls) for /metrics;
  // no histograms or timers, which would cost on every read and write.
  auto stats = rocksdb::CreateDBStatistics();
  stats->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);
  o.statistics = stats;
  // A Bloom filter over each memtable's keys: a point read of a key that is not
  // there (a new Idempotency-Key's order id, looked up on every such purchase)
  // skips the skiplist searches.
  o.memtable_prefix_bloom_size_ratio = 0.02;
  o.memtable_whole_key_filtering = true;
  // Memtable inserts were ~40% of the journal thread's CPU, nearly all of it
  // searching the skiplist from the top for each key. With this, each
  // `<kind>/<shard>/` range keeps the position of its last insert, and the
  // next insert into that range searches from there: O(log distance) instead
  // of O(log memtable). New orders' ids begin with their time
  // (protocols/crypto.hpp), so a sale's reservations and a shard's orders are
  // inserted next to the previous ones. (Hints are kept only by a single
  // memtable writer, which the journal is.)
  o.memtable_insert_with_hint_prefix_extractor = std::make_shared<kind_and_shard>();
  o.allow_concurrent_memtable_write = false;
  // After a crash, recover every write whose WAL record is complete; a torn
  // tail record is an unacknowledged write and is dropped. Prepared WAL files
  // need this mode: there a write torn by a power cut is followed by zeros, not
  // by the end of the file, and kTolerateCorruptedTailRecords refuses to open
  // (tests/storage/prepared_wal_test.cpp, "torn").
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // A failed WAL write or sync stops writes until RocksDB resumes into a new
  // WAL file or the database is opened again: nothing is appended after the
  // zeros that replace the failed write (storage/wal_files.hpp). (The
  // default; without it RocksDB would go on writing into that file.)
  o.paranoid_checks = true;
  o.info_log = std::make_shared<rocksdb_to_spdlog>();
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // A new data dir is the owner's alone: it holds the token and payment
  // secrets. (RocksDB would create it 0755; an existing one is left as the
  // operator set it.)
  if (::mkdir(opts.path.c_str(), 0700) != 0 && errno != EEXIST)
    return make_error(errc::unavailable,
                      "cannot create the data dir " + opts.path + ": " + std::strerror(errno));
  struct stat dir_st{};
  if (::stat(opts.path.c_str(), &dir_st) != 0)
    return make_error(errc::unavailable,
                      "cannot open the data dir " + opts.path + ": " + std::strerror(errno));
  auto claim = dir_claim::take(dir_st);
  if (!claim)
    return make_error(errc::unavailable,
                      "cannot open RocksDB at " + opts.path + ": this process has it open");
  // WAL files written with zeros ahead of use: a WAL fsync then writes no
  // metadata (storage/prepared_wal.hpp).
  std::shared_ptr<prepared_wal_fs> wal_fs;
  auto fs = opts.file_system ? opts.file_system : rocksdb::FileSystem::Default();
  if (opts.prepared_wal_bytes > 0) {
    wal_fs = std::make_shared<prepared_wal_fs>(fs, opts.path, opts.prepared_wal_bytes);
    fs = wal_fs;
  } else {
    prepared_wal_fs::remove_files(opts.path);
  }
  // A write that failed must not come back at the next start, whatever
  // reached the WAL of it (storage/wal_files.hpp).
  auto wal_guard = std::make_shared<wal_guard_fs>(fs, opts.path);
  auto env = rocksdb::NewCompositeEnv(wal_guard);
  o.env = env.get();
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, opts.path, &raw);
  if (!s.ok()) {
    // RocksDB's LOCK file is held while a DB is open: the usual cause is a
    // second process started on the same directory.
    bool locked = s.IsIOError() && s.ToString().find("lock file") != std::string::npos;
    return to_error(s, "cannot open RocksDB at " + opts.path
                         + (locked ? " (is another shopd running on this data dir?)" : ""));
  }
  std::shared_ptr<store> db{
    new store(std::move(claim), std::unique_ptr<rocksdb::DB>{raw}, std::move(stats), opts.path)};
  db->wal_fs_ = std::move(wal_fs);
  db->wal_guard_ = std::move(wal_guard);
  db->env_ = std::move(env);
  return db;
}

caf::expected<bool> store::get(std::string_view key, std::string& out) const {
  auto s = db_->Get(rocksdb::ReadOptions{}, rocksdb::Slice{key.data(), key.size()}, &out);
  if (s.ok())
    return true;
  if (s.IsNotFound())
    return false;
  return to_error(s, "read failed");
}

caf::error store::scan(std::string_view prefix,
                       const std::function<bool(std::string_view, std::string_view)>& fn,
                       std::string_view start_after) const {
  std::string upper{prefix};
  upper.back()++; // prefixes end with '/', so this is the first key past the range
  rocksdb::Slice upper_slice{upper};
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro)};
  bool resume = start_after > prefix;
  auto start = resume ? start_after : prefix;
  it->Seek(rocksdb::Slice{start.data(), start.size()});
  if (resume && it->Valid() && it->key() == rocksdb::Slice{start.data(), start.size()})
    it->Next();
  for (; it->Valid(); it->Next()) {
    auto k = it->key();
    auto v = it->value();
    if (!fn(std::string_view{k.data(), k.size()}, std::string_view{v.data(), v.size()}))
      break;
  }
  if (!it->status().ok())
    return to_error(it->status(), "scan failed");
  return caf::none;
}

caf::error store::write(const write_batch& ops, bool sync) {
  return write_all({&ops}, sync);
}

caf::error store::write_all(const std::vector<const write_batch*>& batches, bool sync) {
  if (wal_unusable_.load())
    return make_error(errc::unavailable, "write refused: storage needs a restart (" + wal_why_
                                           + ")");
  rocksdb::WriteBatch wb;
  for (auto* b : batches)
    append(wb, *b);
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  std::lock_guard<std::mutex> lock{write_mtx_};
  auto s = db_->Write(wo, &wb);
  if (s.ok()) {
    wal_guard_->acknowledged();
  } else {
    wal_guard_->refused(); // what reached the WAL of it becomes zeros
    write_failed_.store(true);
    // RocksDB 7.8 resumes by flushing the memtable to a new table file and
    // the WAL to a new file with it, but an empty memtable is not switched:
    // the failed WAL writer stays, and its next call aborts (Debian builds
    // RocksDB with assertions; fixed upstream in 9.6.1). With nothing in the
    // memtable, the failed write was the first of its WAL file: only a
    // restart, which opens a new one, is safe. (Under write_mtx_: nothing
    // was added between the failure and this look.)
    if (!wal_unusable_.load() && int_property("rocksdb.num-entries-active-mem-table") == 0
        && int_property("rocksdb.num-deletes-active-mem-table") == 0) {
      wal_why_ = s.ToString();
      wal_unusable_.store(true);
    }
    return to_error(s, "write failed");
  }
  return caf::none;
}

write_state store::resume(std::string* why) {
  if (wal_unusable_.load()) {
    if (why)
      *why = "the failed write was the first of its WAL file, which RocksDB 7.8 would keep "
             "using after a resume: " + wal_why_;
    return write_state::stopped;
  }
  auto s = db_->Resume(); // OK at once when nothing stopped the writes
  if (s.ok()) {
    write_failed_.store(false);
    return write_state::accepting;
  }
  if (why)
    *why = s.ToString();
  // Busy: RocksDB's own recovery is under way (a full disk, polled by its
  // SstFileManager). A hard error whose flush failed again stays hard. Fatal
  // and unrecoverable errors are only cleared by opening the database again.
  return s.severity() >= rocksdb::Status::Severity::kFatalError ? write_state::stopped
                                                                 : write_state::recovering;
}

uint64_t store::int_property(const std::string& name) const {
  uint64_t v = 0;
  if (!db_->GetIntProperty(name, &v))
    return 0;
  return v;
}

uint64_t store::counter(store_counter c) const {
  switch (c) {
    case store_counter::flush_written_bytes:
      return stats_->getTickerCount(rocksdb::FLUSH_WRITE_BYTES);
    case store_counter::compaction_written_bytes:
      return stats_->getTickerCount(rocksdb::COMPACT_WRITE_BYTES);
    case store_counter::compaction_read_bytes:
      return stats_->getTickerCount(rocksdb::COMPACT_READ_BYTES);
    case store_counter::write_stall_micros: return stats_->getTickerCount(rocksdb::STALL_MICROS);
    case store_counter::prepared_wal_files: return wal_fs_ ? wal_fs_->prepared_wals() : 0;
    case store_counter::plain_wal_files: return wal_fs_ ? wal_fs_->plain_wals() : 0;
  }
  return 0;
}

} // namespace shop
