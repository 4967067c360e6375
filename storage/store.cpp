#include "storage/store.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "protocols/errc.hpp"

namespace shop {
namespace {

caf::error to_error(const rocksdb::Status& s, std::string_view what) {
  return make_error(errc::unavailable, std::string{what} + ": " + s.ToString());
}

void append(rocksdb::WriteBatch& wb, const write_batch& ops) {
  for (auto& op : ops) {
    if (op.op == write_op::kind::put)
      wb.Put(op.key, op.value);
    else
      wb.Delete(op.key);
  }
}

} // namespace

store::store(std::unique_ptr<rocksdb::DB> db, std::shared_ptr<rocksdb::Statistics> stats,
             std::string path)
  : db_(std::move(db)), stats_(std::move(stats)), path_(std::move(path)) {
}

store::~store() {
  if (db_) {
    auto s = db_->FlushWAL(true);
    (void)s; // best effort on shutdown: every acknowledged write was already durable
    s = db_->Close();
    (void)s;
  }
}

caf::expected<std::shared_ptr<store>> store::open(const store_options& opts) {
  rocksdb::Options o;
  o.create_if_missing = true;
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
  // After a crash, recover every write whose WAL record is complete; a torn
  // tail record is an unacknowledged write and is dropped.
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // A new data dir is the owner's alone: it holds the token and payment
  // secrets. (RocksDB would create it 0755; an existing one is left as the
  // operator set it.)
  if (::mkdir(opts.path.c_str(), 0700) != 0 && errno != EEXIST)
    return make_error(errc::unavailable,
                      "cannot create the data dir " + opts.path + ": " + std::strerror(errno));
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, opts.path, &raw);
  if (!s.ok()) {
    // RocksDB's LOCK file is held while a DB is open: the usual cause is a
    // second process started on the same directory.
    bool locked = s.IsIOError() && s.ToString().find("lock file") != std::string::npos;
    return to_error(s, "cannot open RocksDB at " + opts.path
                         + (locked ? " (is another shopd running on this data dir?)" : ""));
  }
  return std::shared_ptr<store>{
    new store(std::unique_ptr<rocksdb::DB>{raw}, std::move(stats), opts.path)};
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
  rocksdb::WriteBatch wb;
  for (auto* b : batches)
    append(wb, *b);
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  auto s = db_->Write(wo, &wb);
  if (!s.ok())
    return to_error(s, "write failed");
  return caf::none;
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
  }
  return 0;
}

} // namespace shop
