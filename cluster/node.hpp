#pragma once
// Node bootstrap: one per process. Opens storage, loads or creates the
// node's secrets, starts the actor system, the journal and the shard region,
// bootstraps the admin account, and hands the edge what it needs. It knows
// nothing of HTTP: the edge is started on top of a running node.
//
// Today a node is a single-node deployment; membership, the shard
// coordinator and remote routing arrive with the cluster work.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/error.hpp>

#include "actors/entity.hpp"
#include "storage/journal.hpp"

namespace caf {
class actor_system;
class actor_system_config;
} // namespace caf

namespace shop {

struct node_config {
  /// RocksDB directory. Default: ./data
  std::string data_dir = "./data";
  /// Password of the bootstrapped `admin` user; empty: generated and printed on first start.
  std::string admin_password;
  /// Default: sync (fsync per group commit).
  durability mode = durability::sync;
  /// MiB of each zero-filled file prepared for RocksDB's WAL, so that a WAL
  /// fsync writes no metadata (storage/prepared_wal.hpp); 0: none. Only with
  /// durability `sync` (`async` syncs no WAL per commit). Default: 40.
  uint32_t prepared_wal_mb = 40;
  /// Seconds an order waits for payment. Default: 900.
  double payment_timeout_s = 900;
  /// argon2id memory cost as log2(KiB); lower only for tests and benches. Default: 15 (32 MiB).
  uint32_t password_hash_cost = 15;
  /// Seconds an idle entity stays active. Default: 120.
  double passivate_after_s = 120;
  /// HMAC key of tokens; empty: generated once and stored in the data dir.
  std::string jwt_secret;
  /// HMAC key that signs payment gateway callbacks; empty: generated once and
  /// stored in the data dir.
  std::string payment_secret;
  /// This node's name in logs. Default: n1
  std::string node_id = "n1";
  /// Number of shards; fixed for the life of a data dir. Default: 64.
  uint32_t shards = 64;
  /// `text` or `json`. Default: text.
  std::string log_format = "text";
  /// CAF scheduler threads; 0 picks the CPUs shopd may run on (its affinity)
  /// - 1 (the edge's loop thread and the journal's writer thread need a core
  /// too), at least 1. Default: 0.
  size_t workers = 0;
  /// CAF scheduler policy: `sharing` (one queue, idle workers block) or
  /// `stealing` (idle workers poll, then sleep; the polling costs CPU that
  /// the loop and journal threads need on small machines). Default: sharing.
  std::string scheduler_policy = "sharing";
  /// Password hashing threads. Default: 2.
  size_t hashers = 2;
  /// SST files RocksDB keeps open (its table cache); -1: all of them.
  /// shopd sets it from the open-file limit (fd_plan). Default: -1.
  int storage_open_files = -1;
  /// Called once, on the journal's thread, if storage refuses writes until
  /// it is opened again (a fatal RocksDB error): only a restart recovers.
  /// shopd stops and exits with status 3. Default: none (the node stays up,
  /// not ready, and every write fails).
  std::function<void(const std::string& why)> on_storage_stopped;
};

class node {
public:
  explicit node(node_config cfg);
  ~node();

  /// Starts everything; on error nothing is left running.
  [[nodiscard]] caf::error start();

  /// Stops the actors, then the journal (committing what is queued). Idempotent.
  /// Stop the edge first.
  void stop();

  // -- for the edge (valid between start and stop) ----------------------------
  caf::actor_system& system();
  /// The shard region: every command goes here.
  const caf::actor& region() const;
  /// The HMAC key of tokens.
  const std::string& jwt_secret() const;
  /// The HMAC key of payment gateway callbacks.
  const std::string& payment_secret() const;
  /// True while the node serves (storage open, actors running).
  bool ready() const noexcept;
  /// Fault injection: the journal's next `groups` group commits fail.
  void fail_storage_writes(uint32_t groups);
  /// Appends the node's metrics (entities, journal, storage) in Prometheus text.
  void write_metrics(std::string& out) const;
  const node_config& config() const noexcept;

  /// The admin password generated at this start ("" if none was generated).
  const std::string& generated_admin_password() const noexcept { return generated_password_; }

  struct impl;

private:
  std::unique_ptr<impl> impl_;
  std::string generated_password_;
};

/// The CPUs the calling thread may run on: its affinity mask (taskset, a
/// cgroup cpuset), which std::thread::hardware_concurrency() ignores (that
/// counts every online CPU of the machine). At least 1. `--workers 0` starts
/// this - 1 workers, counted when the node starts.
size_t usable_cores();

/// How a node spends its file descriptors (RLIMIT_NOFILE). Storage comes
/// first: RocksDB must always be able to open its next WAL or SST file, or it
/// stops taking writes, and a burst of clients must never cause that. So
/// client connections get only what storage leaves.
struct fd_plan {
  /// The soft open-file limit the node runs with.
  uint64_t limit = 0;
  /// The soft limit found at start, before raising it to the hard limit.
  uint64_t found = 0;
  /// SST files RocksDB may keep open (node_config::storage_open_files); its
  /// WAL, MANIFEST and the files being written come on top, from `limit`.
  int storage_open_files = 0;
  /// Client connections served (http_limits::max_connections); a few more
  /// are held only to answer 503 (http_server.hpp).
  size_t connections = 0;
};

/// Divides `limit` descriptors: a quarter (256 to 16,384) for storage, of
/// which 128 for its WAL, MANIFEST, files being written and the node's
/// other descriptors, the table cache the rest; 32 spare; the rest for
/// client connections, 1/17 of it held only to refuse. Throws nothing; a
/// limit too small for a node gives 0 connections.
fd_plan divide_file_descriptors(uint64_t limit);

/// Raises this process's soft open-file limit to its hard limit, up to
/// 1,048,576 (a login shell's 1,024 would let a thousand clients starve
/// RocksDB of files), and divides it (at most 1,048,576 of it).
fd_plan plan_file_descriptors();

} // namespace shop
