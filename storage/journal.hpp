#pragma once
// The journal: group commit for every entity of the node. One per node.
//
// Entities submit small batches from their actor threads and are told when
// the batch is durable; they never wait. A single writer thread takes every
// batch queued since its last commit and writes them as ONE RocksDB
// WriteBatch with ONE WAL sync (durability `sync`) or without fsync (`async`).
// While it syncs, new batches queue up, so the group grows with the load.
// Completions run on the writer thread in submission order.
//
// After a failed group commit the journal is `failing`: it keeps committing
// what entities submit (each group may fail again) and, every second while
// nothing has succeeded, asks RocksDB to resume and writes a small probe. The
// first commit that succeeds makes it `ok` again, also with no traffic at all.
// If RocksDB says it refuses writes until it is opened again, the journal is
// `stopped` for good and tells its owner once. While idle and `ok`, it looks
// every 5 s whether RocksDB counted an error of a background flush or
// compaction, and probes if so.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "protocols/log_throttle.hpp"
#include "protocols/metrics.hpp"
#include "storage/store.hpp"

namespace shop {

enum class durability : uint8_t {
  /// fsync the WAL once per group before any reply. Default.
  sync,
  /// write the WAL without fsync: survives a process crash, not a power loss.
  async,
};

/// Whether group commits succeed.
enum class journal_health : uint8_t {
  /// The last group commit succeeded (or none has been tried).
  ok,
  /// The last one failed; the journal probes storage every second.
  failing,
  /// Storage refuses writes until it is opened again: only a restart helps.
  stopped,
};

class journal {
public:
  /// Called once on the writer thread; `ok` is false if the write failed.
  using completion = std::function<void(bool ok)>;
  /// Called once, on the writer thread, when the journal becomes `stopped`;
  /// gets RocksDB's error.
  using stopped_handler = std::function<void(const std::string& why)>;

  /// How long a failing journal waits between probes of storage.
  static constexpr std::chrono::milliseconds probe_interval{1000};
  /// How often an idle, healthy journal looks for errors of RocksDB's own
  /// flushes and compactions (which may stop writes with no write failing).
  static constexpr std::chrono::milliseconds background_check_interval{5000};

  journal(store_ptr db, durability mode, stopped_handler on_stopped = {});
  ~journal(); // stops after committing everything already submitted

  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  /// Set by an entity whose earlier batch failed: its later batches were built
  /// on state that storage never got.
  using cancel_flag = std::shared_ptr<const std::atomic<bool>>;

  /// Queues `ops` for the next group commit. Thread-safe, never blocks on I/O.
  /// After stop(), `done(false)` is called at once. If `cancelled` is set by
  /// the time the batch's group is formed, the batch is not written and
  /// `done(false)` is called: completions of a group run before the next group
  /// is formed, so a failure reported there stops every later batch of the
  /// same entity, also those submitted while the failed group was written.
  void submit(write_batch ops, completion done, cancel_flag cancelled = {});

  /// `done(true)` runs once every batch submitted before it is committed.
  void barrier(completion done) { submit({}, std::move(done)); }

  /// Commits what is queued, then stops the writer thread. Idempotent.
  void stop();

  durability mode() const noexcept { return mode_; }

  journal_health health() const noexcept { return health_.load(std::memory_order_relaxed); }
  /// False from a failed group commit until one succeeds: RocksDB may refuse
  /// every write after a failed one (see docs/operations.md).
  bool healthy() const noexcept { return health() == journal_health::ok; }

  /// Fault injection (drills and tests): the next `groups` group commits
  /// (probes included) fail as a storage error would, without writing anything.
  void fail_next_groups(uint32_t groups) noexcept { fail_next_.store(groups); }
  /// Fault injection (tests): the next group commit waits `delay` before it
  /// writes, as a stalled disk would hold it (and every batch behind it).
  void stall_next_group(std::chrono::milliseconds delay) { stall_group_writing({}, delay); }
  /// Fault injection (tests): the next group commit that writes `key` (any
  /// group if `key` is empty), past the first `skip` such groups, waits
  /// `delay` before it writes, so that a test can hold one entity's change
  /// while the changes before it are durable.
  void stall_group_writing(std::string key, std::chrono::milliseconds delay, uint32_t skip = 0);

  // -- figures for /metrics ---------------------------------------------------
  uint64_t groups() const noexcept { return groups_.load(std::memory_order_relaxed); }
  uint64_t batches() const noexcept { return batches_.load(std::memory_order_relaxed); }
  uint64_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }
  const latency_histogram& commit_latency() const noexcept { return commit_latency_; }

private:
  struct pending {
    write_batch ops;
    completion done;
    cancel_flag cancelled;
    bool skipped = false; // cancelled when its group was formed: not written
  };

  void run();
  /// Writes one group; updates the figures and the health. True on success.
  bool commit(const std::vector<const write_batch*>& parts, bool sync);
  /// Asks storage to resume, then commits a probe batch (always synced).
  void probe();
  /// Probes if RocksDB counted a background error since the last look.
  void check_background_errors();
  /// Waits, and disarms the stall, if one is armed for a group of `parts`.
  void stall_if_armed(const std::vector<const write_batch*>& parts);

  store_ptr db_;
  durability mode_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<pending> queue_;
  bool stopping_ = false;
  std::thread writer_;
  std::atomic<uint64_t> groups_{0};
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<journal_health> health_{journal_health::ok};
  std::atomic<uint32_t> fail_next_{0};
  std::atomic<bool> stall_armed_{false}; // one relaxed load per group when unused
  std::mutex stall_mtx_;
  std::string stall_key_;                  // under stall_mtx_; empty: any group
  std::chrono::milliseconds stall_delay_{0}; // under stall_mtx_
  uint32_t stall_skip_ = 0;                  // under stall_mtx_
  stopped_handler on_stopped_;
  // Writer thread only:
  std::chrono::steady_clock::time_point next_probe_;
  bool storage_recovering_ = false; // RocksDB said `recovering` at the last probe
  uint64_t background_errors_ = 0; // RocksDB's count at the last look
  log_throttle failure_log_{std::chrono::seconds{1}};
  latency_histogram commit_latency_;
};

} // namespace shop
