#include "cluster/node.hpp"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <caf/all.hpp>

#include <spdlog/spdlog.h>

#include "actors/entities.hpp"
#include "protocols/crypto.hpp"
#include "storage/keys.hpp"

namespace shop {

size_t usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return static_cast<size_t>(CPU_COUNT(&set));
  return std::max<size_t>(1, std::thread::hardware_concurrency()); // 0: unknown
}

fd_plan divide_file_descriptors(uint64_t limit) {
  fd_plan plan;
  plan.limit = plan.found = limit;
  constexpr uint64_t storage_others = 128, spare = 32;
  auto storage = std::clamp<uint64_t>(limit / 4, 256, 16'384);
  plan.storage_open_files = static_cast<int>(storage - storage_others);
  auto clients = limit > storage + spare ? limit - storage - spare : 0;
  // Of `clients`, 1/17 (at least 16) is the room to refuse in (http_limits).
  plan.connections = clients > 16 ? static_cast<size_t>((clients - 16) * 16 / 17) : 0;
  return plan;
}

fd_plan plan_file_descriptors() {
  // The default of fs.nr_open: more than one edge thread could use.
  constexpr rlim_t most = 1u << 20;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return divide_file_descriptors(1024);
  auto found = static_cast<uint64_t>(rl.rlim_cur);
  auto want = std::min(rl.rlim_max, most); // Linux's hard limit is never above fs.nr_open
  if (rl.rlim_cur < want) {
    rlimit raised{want, rl.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
      rl.rlim_cur = want;
  }
  auto plan = divide_file_descriptors(std::min(rl.rlim_cur, most));
  plan.limit = static_cast<uint64_t>(rl.rlim_cur);
  plan.found = found;
  return plan;
}

namespace {

struct node_system_config : caf::actor_system_config {
  node_system_config(size_t configured, const std::string& policy) {
    register_shop_types(*this);
    workers = std::max<size_t>(1, configured == 0 ? usable_cores() - 1 : configured);
    // CAF defaults to 4 workers; on small machines their polling steals CPU.
    set("scheduler.max-threads", workers);
    set("scheduler.policy", caf::atom_from_string(policy));
    set("logger.verbosity", caf::atom("quiet"));
  }
  size_t workers; ///< scheduler threads, `--workers 0` resolved
};

/// Reads a node secret from storage, or stores `configured` (if given) or a new random one.
caf::expected<std::string> node_secret(store& db, const std::string& name,
                                       const std::string& configured) {
  auto key = keys::meta(name);
  if (!configured.empty())
    return configured;
  std::string value;
  auto found = db.get(key, value);
  if (!found)
    return found.error();
  if (*found)
    return value;
  value = random_hex(32);
  if (auto err = db.write({put_op(key, value)}, true))
    return err;
  return value;
}

} // namespace

struct node::impl {
  node_config cfg;
  store_ptr db;
  std::shared_ptr<journal> jrnl;
  std::unique_ptr<node_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor region;
  std::shared_ptr<entity_metrics> metrics = std::make_shared<entity_metrics>();
  std::shared_ptr<hasher_pool> hashers = std::make_shared<hasher_pool>();
  std::string jwt_secret;
  std::string payment_secret;
  bool running = false;
};

void node::write_metrics(std::string& out) const {
  auto& i = *impl_;
  auto& metrics = i.metrics;
  auto& jrnl = i.jrnl;
  auto& db = i.db;
  auto gauge = [&](const char* name, const char* help, double v) {
    write_metric(out, name, "gauge", help, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    write_metric(out, name, "counter", help, v);
  };
  gauge("shop_entities_active", "Entity actors currently active on this node.",
        static_cast<double>(metrics->active.load()));
  counter("shop_entity_activations_total", "Entity activations (first message or restart).",
          static_cast<double>(metrics->activations.load()));
  counter("shop_entity_passivations_total", "Entities passivated after being idle.",
          static_cast<double>(metrics->passivations.load()));
  counter("shop_entity_crashes_total", "Entity actors that crashed.",
          static_cast<double>(metrics->crashes.load()));
  counter("shop_entity_restarts_total", "Crashed entities restarted from durable state.",
          static_cast<double>(metrics->restarts.load()));
  counter("shop_order_unconfirmed_cart_clears_total",
          "Orders answered without the cart's confirmation that the ordered lines left it.",
          static_cast<double>(metrics->unconfirmed_cart_clears.load()));
  counter("shop_order_unconfirmed_releases_total",
          "Releases of reserved units an order did not see confirmed in time.",
          static_cast<double>(metrics->unconfirmed_releases.load()));
  metrics->sales.write(out, now_millis());
  counter("shop_journal_groups_total", "Group commits (one WriteBatch, one WAL sync each).",
          static_cast<double>(jrnl->groups()));
  counter("shop_journal_batches_total", "Entity batches carried by group commits.",
          static_cast<double>(jrnl->batches()));
  counter("shop_journal_failures_total", "Group commits that failed.",
          static_cast<double>(jrnl->failures()));
  gauge("shop_journal_healthy",
        "1 while group commits succeed; 0 from a failed one until one succeeds again.",
        jrnl->healthy() ? 1 : 0);
  write_metric_header(out, "shop_journal_commit_duration_seconds", "histogram",
                      "Time of one group commit's RocksDB write.");
  jrnl->commit_latency().write(out, "shop_journal_commit_duration_seconds", {});
  write_metric_header(out, "shop_wal_files_total", "counter",
                      "WAL files begun: from a prepared (zero-filled) file, or empty when none "
                      "was ready.");
  write_sample(out, "shop_wal_files_total", "start=\"prepared\"",
               static_cast<double>(db->counter(store_counter::prepared_wal_files)));
  write_sample(out, "shop_wal_files_total", "start=\"empty\"",
               static_cast<double>(db->counter(store_counter::plain_wal_files)));
  gauge("shop_rocksdb_estimated_keys", "RocksDB's estimate of the number of keys.",
        static_cast<double>(db->int_property("rocksdb.estimate-num-keys")));
  gauge("shop_rocksdb_live_sst_bytes", "Size of the SST files of the current version.",
        static_cast<double>(db->int_property("rocksdb.live-sst-files-size")));
  gauge("shop_rocksdb_l0_files", "SST files in level 0 (writes slow down at 20, stop at 36).",
        static_cast<double>(db->int_property("rocksdb.num-files-at-level0")));
  gauge("shop_rocksdb_pending_compaction_bytes",
        "RocksDB's estimate of the bytes compaction must rewrite to settle the levels.",
        static_cast<double>(db->int_property("rocksdb.estimate-pending-compaction-bytes")));
  counter("shop_rocksdb_flush_written_bytes_total", "SST bytes written by memtable flushes.",
          static_cast<double>(db->counter(store_counter::flush_written_bytes)));
  counter("shop_rocksdb_compaction_written_bytes_total", "SST bytes written by compactions.",
          static_cast<double>(db->counter(store_counter::compaction_written_bytes)));
  counter("shop_rocksdb_compaction_read_bytes_total", "SST bytes read by compactions.",
          static_cast<double>(db->counter(store_counter::compaction_read_bytes)));
  counter("shop_rocksdb_write_stall_seconds_total",
          "Time writes were delayed or stopped by RocksDB (compaction falling behind).",
          static_cast<double>(db->counter(store_counter::write_stall_micros)) / 1e6);
}

node::node(node_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::move(cfg);
}

node::~node() {
  stop();
}

caf::actor_system& node::system() {
  return *impl_->sys;
}

const caf::actor& node::region() const {
  return impl_->region;
}

const std::string& node::jwt_secret() const {
  return impl_->jwt_secret;
}

const std::string& node::payment_secret() const {
  return impl_->payment_secret;
}

bool node::ready() const noexcept {
  // Not while storage refuses writes: a failed group commit is followed by
  // 503s until one succeeds (docs/operations.md).
  return impl_->running && impl_->jrnl && impl_->jrnl->healthy();
}

void node::fail_storage_writes(uint32_t groups) {
  if (impl_->jrnl)
    impl_->jrnl->fail_next_groups(groups);
}

const node_config& node::config() const noexcept {
  return impl_->cfg;
}

namespace {

/// The layout of the records in a data dir (`meta/storage_format`). 2: settled
/// stock ledger entries live outside the ledger's range (actors/README.md).
/// 3: order records may be of record format 3 (with their source), which a
/// shopd of format 2 cannot read: it must refuse the data dir, not load
/// orders as corrupt. 4: cart records may be of record format 2 (each line
/// with the time it was last set). 5: cart records may be of record format 3
/// (with the checkout holding their lines). Formats 2 to 4 need nothing
/// moved to become 5.
constexpr std::string_view storage_format = "5";

/// Marks a new data dir with the current format, or brings an older one to it.
caf::error upgrade_storage(store& db, const node_config& cfg, bool existing) {
  std::string stored;
  auto found = db.get(keys::meta("storage_format"), stored);
  if (!found)
    return found.error();
  if (*found && stored == storage_format)
    return caf::none;
  if (*found && (stored == "2" || stored == "3" || stored == "4")) { // read as they are
    spdlog::info("node {}: storage upgraded to format {} (nothing moved)", cfg.node_id,
                 storage_format);
    return db.write({put_op(keys::meta("storage_format"), std::string{storage_format})}, true);
  }
  if (*found)
    return make_error(errc::validation_failed, "the data dir " + cfg.data_dir
                                                 + " has storage format " + stored
                                                 + ", written by a newer shopd; this one reads "
                                                 + std::string{storage_format});
  if (existing) {
    auto started = std::chrono::steady_clock::now();
    auto moved = upgrade_stock_ledgers(db, cfg.shards);
    if (!moved)
      return moved.error();
    spdlog::info("node {}: storage upgraded to format {} ({} settled ledger entries moved) "
                 "in {} ms",
                 cfg.node_id, storage_format, *moved,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - started)
                   .count());
  }
  return db.write({put_op(keys::meta("storage_format"), std::string{storage_format})}, true);
}

} // namespace

caf::error node::start() {
  auto& i = *impl_;
  auto& cfg = i.cfg;
  auto opening = std::chrono::steady_clock::now();
  // Prepared WAL files shorten the WAL's fsyncs; `async` makes none per commit.
  auto prepared_wal_bytes =
    cfg.mode == durability::sync ? static_cast<uint64_t>(cfg.prepared_wal_mb) << 20 : 0;
  auto db = store::open(store_options{cfg.data_dir, prepared_wal_bytes, cfg.storage_open_files});
  if (!db)
    return db.error();
  i.db = *db;
  spdlog::info("node {}: storage opened in {} ms", cfg.node_id,
               std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - opening)
                 .count());
  // The shard count is part of every key: a data dir keeps the one it was made with.
  {
    std::string stored;
    auto found = i.db->get(keys::meta("shard_count"), stored);
    if (!found)
      return found.error();
    if (*found && stored != std::to_string(cfg.shards))
      return make_error(errc::validation_failed, "the data dir " + cfg.data_dir + " was created with "
                                                    + stored + " shards, not "
                                                    + std::to_string(cfg.shards));
    if (!*found)
      if (auto err = i.db->write({put_op(keys::meta("shard_count"), std::to_string(cfg.shards))},
                                 true))
        return err;
    if (auto err = upgrade_storage(*i.db, cfg, *found))
      return err;
  }
  auto jwt_secret = node_secret(*i.db, "jwt_secret", cfg.jwt_secret);
  auto order_secret = node_secret(*i.db, "order_secret", {});
  auto payment_secret = node_secret(*i.db, "payment_secret", cfg.payment_secret);
  if (!jwt_secret)
    return jwt_secret.error();
  if (!payment_secret)
    return payment_secret.error();
  if (!order_secret)
    return order_secret.error();
  i.jrnl = std::make_shared<journal>(i.db, cfg.mode, cfg.on_storage_stopped);
  i.sys_cfg = std::make_unique<node_system_config>(cfg.workers, cfg.scheduler_policy);
  i.sys = std::make_unique<caf::actor_system>(*i.sys_cfg);
  for (size_t n = 0; n < std::max<size_t>(1, cfg.hashers); ++n)
    i.hashers->add(
      i.sys->spawn<caf::detached>(password_hasher, cfg.password_hash_cost,
                                  std::weak_ptr<hasher_pool>{i.hashers}));
  entity_context ctx;
  ctx.db = i.db;
  ctx.journal = i.jrnl;
  ctx.shard_count = cfg.shards;
  ctx.order_secret = *order_secret;
  ctx.payment_timeout = std::chrono::milliseconds{static_cast<int64_t>(cfg.payment_timeout_s * 1000)};
  ctx.passivate_after = std::chrono::milliseconds{static_cast<int64_t>(cfg.passivate_after_s * 1000)};
  ctx.hashers = i.hashers;
  ctx.metrics = i.metrics;
  i.region = spawn_region(*i.sys, std::move(ctx));
  i.running = true;
  // Bootstrap the admin account.
  {
    caf::scoped_actor self{*i.sys};
    auto password = cfg.admin_password;
    bool exists = false;
    caf::error failure;
    self->request(i.region, std::chrono::seconds{10}, get_user{"admin", {}})
      .receive([&](const user_view&) { exists = true; },
               [&](caf::error& err) {
                 // Only "no such user" means absent; anything else must not
                 // lead to a new generated password.
                 if (describe(err).code != errc::not_found)
                   failure = err;
               });
    if (failure) {
      stop();
      return failure;
    }
    if (password.empty() && !exists) {
      password = random_hex(12);
      generated_password_ = password;
    }
    if (!password.empty()) {
      self->request(i.region, std::chrono::seconds{30},
                    register_user{"admin", password, user_role::admin, true, {}})
        .receive([&](const user_view&) {}, [&](caf::error& err) { failure = err; });
      if (failure) {
        stop();
        return failure;
      }
    }
  }
  i.jwt_secret = *jwt_secret;
  i.payment_secret = *payment_secret;
  auto workers = i.sys_cfg->workers;
  spdlog::info("node {}: started with data in {} (durability {}, {} shards, {} worker{}, {} "
               "scheduler)",
               cfg.node_id, cfg.data_dir, cfg.mode == durability::sync ? "sync" : "async",
               cfg.shards, workers, workers == 1 ? "" : "s", cfg.scheduler_policy);
  return caf::none;
}

void node::stop() {
  auto& i = *impl_;
  i.running = false;
  if (i.sys) {
    caf::anon_send_exit(i.region, caf::exit_reason::user_shutdown);
    i.region = nullptr;
    // Entities still stopping get "unavailable" from a closed pool; the
    // hashers' threads end once no handle to them is left.
    for (auto& h : i.hashers->close())
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    i.sys.reset(); // waits for every actor
  }
  if (i.jrnl)
    i.jrnl->stop(); // commits whatever is queued
  i.jrnl.reset();
  i.db.reset();
}

} // namespace shop
