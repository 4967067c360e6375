#pragma once
// The journal: group commit for every entity of the node. One per node.
//
// Entities submit small batches from their actor threads and are told when
// the batch is durable; they never wait. A single writer thread takes every
// batch queued since its last commit and writes them as ONE RocksDB
// WriteBatch with ONE WAL sync (durability `sync`) or without fsync (`async`).
// While it syncs, new batches queue up, so the group grows with the load.
// Completions run on the writer thread in submission order.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "protocols/metrics.hpp"
#include "storage/store.hpp"

namespace shop {

enum class durability : uint8_t {
  /// fsync the WAL once per group before any reply. Default.
  sync,
  /// write the WAL without fsync: survives a process crash, not a power loss.
  async,
};

class journal {
public:
  /// Called once on the writer thread; `ok` is false if the write failed.
  using completion = std::function<void(bool ok)>;

  journal(store_ptr db, durability mode);
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

  /// False from a failed group commit until one succeeds: RocksDB may refuse
  /// every write after a failed one (see docs/operations.md).
  bool healthy() const noexcept { return healthy_.load(std::memory_order_relaxed); }

  /// Fault injection (drills and tests): the next `groups` group commits fail
  /// as a storage error would, without writing anything.
  void fail_next_groups(uint32_t groups) noexcept { fail_next_.store(groups); }

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
  std::atomic<bool> healthy_{true};
  std::atomic<uint32_t> fail_next_{0};
  latency_histogram commit_latency_;
};

} // namespace shop
