#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include <rocksdb/file_system.h>

#include "storage/journal.hpp"
#include "storage/keys.hpp"
#include "tests/fixtures/shopd_process.hpp"

using namespace shop;

namespace {

/// Lowers this process's file size limit (RLIMIT_FSIZE, `ulimit -f`) while it
/// lives: every write that would grow a file past `bytes` fails with EFBIG, a
/// real I/O error from the kernel. SIGXFSZ is ignored, as shopd does.
class file_size_limit {
public:
  explicit file_size_limit(rlim_t bytes) {
    ::signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~file_size_limit() { setrlimit(RLIMIT_FSIZE, &saved_); }
  file_size_limit(const file_size_limit&) = delete;
  file_size_limit& operator=(const file_size_limit&) = delete;

private:
  rlimit saved_{};
};

/// Polls `pred` every 20 ms for up to `limit`.
bool within(std::chrono::milliseconds limit, const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return true;
}

/// The operating system's file system, except that creating an SST file
/// fails while `failing` is set: RocksDB's flushes and compactions fail, its
/// WAL writes go on.
class sst_refusing_fs final : public rocksdb::FileSystemWrapper {
public:
  sst_refusing_fs() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "SstRefusingFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (failing && name.size() > 4 && name.compare(name.size() - 4, 4, ".sst") == 0)
      return rocksdb::IOStatus::IOError("test: cannot create " + name);
    return target()->NewWritableFile(name, opts, result, dbg);
  }

  std::atomic<bool> failing{false};
};

} // namespace

TEST(Keys, test_an_entitys_keys_share_its_shard_prefix) {
  auto k = keys::entity(keys::product, "phone-1", 64);
  auto l = keys::child(keys::ledger, "phone-1", "order1", 64);
  auto shard = keys::shard_of("phone-1", 64);
  EXPECT_EQ(k.rfind(keys::shard_prefix(keys::product, shard), 0), 0u);
  EXPECT_EQ(l.rfind(keys::shard_prefix(keys::ledger, shard), 0), 0u);
  EXPECT_EQ(l.rfind(keys::children_prefix(keys::ledger, "phone-1", 64), 0), 0u);
  // The hash is part of the storage format: it must never change.
  EXPECT_EQ(keys::stable_hash("phone-1"), keys::stable_hash(std::string{"phone-1"}));
  EXPECT_EQ(keys::stable_hash(""), 14695981039346656037ull);
  // So is the key layout: kind, four hex digits of shard, id.
  EXPECT_EQ(keys::shard_prefix(keys::order, 0xbeef), "ord/beef/");
  EXPECT_EQ(keys::entity(keys::order, "o1", 1), "ord/0000/o1");
}

TEST(Store, test_scan_stops_at_the_prefix_boundary) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  ASSERT_FALSE((*db)->write({put_op("led/0001/a/1", "x"), put_op("led/0001/a/2", "y"),
                             put_op("led/0001/ab/1", "z"), put_op("led/0001/b/1", "w")},
                            true));
  std::vector<std::string> seen;
  ASSERT_FALSE((*db)->scan("led/0001/a/", [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
    return true;
  }));
  EXPECT_EQ(seen, (std::vector<std::string>{"led/0001/a/1", "led/0001/a/2"}));
}

TEST(Store, test_a_scan_resumes_after_the_given_key_for_paging) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  ASSERT_FALSE((*db)->write({put_op("sku/0000/a", "1"), put_op("sku/0000/b", "2"),
                             put_op("sku/0003/c", "3"), put_op("skz/0000/d", "4")},
                            true));
  auto scan_after = [&](std::string_view after) {
    std::vector<std::string> seen;
    EXPECT_FALSE((*db)->scan(
      "sku/",
      [&](std::string_view k, std::string_view) {
        seen.emplace_back(k);
        return true;
      },
      after));
    return seen;
  };
  EXPECT_EQ(scan_after({}), (std::vector<std::string>{"sku/0000/a", "sku/0000/b", "sku/0003/c"}));
  // After an existing key: the next ones; after a missing key: the ones past it.
  EXPECT_EQ(scan_after("sku/0000/a"), (std::vector<std::string>{"sku/0000/b", "sku/0003/c"}));
  EXPECT_EQ(scan_after("sku/0001/x"), (std::vector<std::string>{"sku/0003/c"}));
  EXPECT_EQ(scan_after("sku/0003/c"), (std::vector<std::string>{}));
  // A start before the prefix is the prefix; never past the range's end.
  EXPECT_EQ(scan_after("abc").size(), 3u);
}

TEST(Store, test_flush_and_compaction_counters_grow_with_the_data_written) {
  // Operators read these on /metrics to see whether compaction keeps up.
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  EXPECT_EQ((*db)->counter(store_counter::flush_written_bytes), 0u);
  // Past one 32 MiB memtable, so RocksDB flushes one in the background.
  std::string value(64 << 10, 'v');
  for (int i = 0; i < 640; ++i)
    ASSERT_FALSE((*db)->write({put_op("ord/0000/" + std::to_string(i), value)}, false));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  while ((*db)->counter(store_counter::flush_written_bytes) < (16u << 20)
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  EXPECT_GE((*db)->counter(store_counter::flush_written_bytes), 16u << 20);
}

TEST(Journal, test_concurrent_submissions_are_grouped_and_all_durable) {
  test::temp_dir dir;
  constexpr int threads = 8, per_thread = 200;
  {
    auto db = store::open({dir.path()});
    ASSERT_TRUE(db);
    journal j{*db, durability::sync};
    std::atomic<int> ok{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i)
          j.submit({put_op("k/" + std::to_string(t) + "/" + std::to_string(i), "v")},
                   [&](bool success) { ok += success ? 1 : 0; });
      });
    for (auto& t : pool)
      t.join();
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    j.barrier([&](bool) {
      std::lock_guard<std::mutex> g{m};
      done = true;
      cv.notify_one();
    });
    std::unique_lock<std::mutex> g{m};
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds{30}, [&] { return done; }));
    EXPECT_EQ(ok.load(), threads * per_thread); // the barrier ran after every earlier batch
    EXPECT_EQ(j.batches(), static_cast<uint64_t>(threads * per_thread));
    EXPECT_LT(j.groups(), j.batches()); // group commit: fewer syncs than batches
  }
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  int found = 0;
  ASSERT_FALSE((*db)->scan("k/", [&](std::string_view, std::string_view) {
    ++found;
    return true;
  }));
  EXPECT_EQ(found, threads * per_thread);
}

TEST(Journal, test_submissions_after_stop_fail_instead_of_hanging) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  journal j{*db, durability::async};
  j.stop();
  bool called = false, result = true;
  j.submit({put_op("a", "b")}, [&](bool ok) {
    called = true;
    result = ok;
  });
  EXPECT_TRUE(called);
  EXPECT_FALSE(result);
}

// An entity's batch submitted while its earlier batch was being written is
// built on that batch's state: if the earlier one fails, the later one must
// not be written either (storage would hold a change without the one it
// follows). The entity's failure flag is set in the failed batch's
// completion, which runs before the next group is formed.
TEST(Journal, test_a_batch_is_dropped_when_its_entity_failed_before_its_group_formed) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  journal j{*db, durability::async};
  auto failed = std::make_shared<std::atomic<bool>>(false);
  std::promise<void> in_completion, second_submitted;
  auto resume = second_submitted.get_future();
  // The first batch's completion plays the entity's failure report (the
  // journal cannot be made to fail a real write here): it sets the flag only
  // after the second batch is queued.
  j.submit({put_op("e/1", "first")}, [&](bool) {
    in_completion.set_value();
    resume.wait();
    failed->store(true);
  }, failed);
  in_completion.get_future().wait();
  std::promise<bool> second_result;
  j.submit({put_op("e/2", "built on the first")}, [&](bool ok) { second_result.set_value(ok); },
           failed);
  // Another entity's batch in the same group is written as usual.
  std::promise<bool> other_result;
  j.submit({put_op("other/1", "v")}, [&](bool ok) { other_result.set_value(ok); });
  second_submitted.set_value();
  EXPECT_FALSE(second_result.get_future().get());
  EXPECT_TRUE(other_result.get_future().get());
  std::string value;
  EXPECT_FALSE(*(*db)->get("e/2", value));
  EXPECT_TRUE(*(*db)->get("other/1", value));
  // A batch submitted with the flag already set is not written either.
  std::promise<bool> third_result;
  j.submit({put_op("e/3", "v")}, [&](bool ok) { third_result.set_value(ok); }, failed);
  EXPECT_FALSE(third_result.get_future().get());
  EXPECT_FALSE(*(*db)->get("e/3", value));
}

// The fault hook the region tests use to hold one entity's change: only a
// group writing the key waits, and only the first.
TEST(Journal, test_a_stall_armed_for_a_key_holds_only_the_next_group_writing_it) {
  using namespace std::chrono_literals;
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  journal j{*db, durability::async};
  auto commit = [&j](const std::string& key) {
    auto done = std::make_shared<std::promise<bool>>();
    auto result = done->get_future();
    j.submit({put_op(key, "v")}, [done](bool ok) { done->set_value(ok); });
    return result;
  };
  j.stall_group_writing("cart/u1", 900ms);
  auto other = commit("cart/u2");
  ASSERT_EQ(other.wait_for(600ms), std::future_status::ready); // not held
  EXPECT_TRUE(other.get());
  auto started = std::chrono::steady_clock::now();
  auto held = commit("cart/u1");
  EXPECT_TRUE(held.get());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 900ms);
  auto again = commit("cart/u1");
  ASSERT_EQ(again.wait_for(600ms), std::future_status::ready); // disarmed
  EXPECT_TRUE(again.get());
}

// A new data dir holds the node's secrets: only its owner may read it.
TEST(Store, test_a_new_data_dir_is_private_to_its_owner) {
  test::temp_dir dir;
  auto path = dir.path() + "/data";
  {
    auto db = store::open({path});
    ASSERT_TRUE(db);
  }
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // An existing one is opened as the operator set it up.
  ASSERT_EQ(::chmod(path.c_str(), 0750), 0);
  ASSERT_TRUE(store::open({path}));
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
}

namespace {

/// Whether another process finds the RocksDB `LOCK` in `dir` held. Asked from
/// a child: this process closing a descriptor of the file would drop its own
/// lock. The child only makes system calls (this process has threads).
bool locked_for_others(const std::string& dir) {
  auto lock = dir + "/LOCK";
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
    struct flock lk{};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    bool locked = fd >= 0 && ::fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type != F_UNLCK;
    ::_exit(locked ? 0 : 1);
  }
  int status = 0;
  return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status)
         && WEXITSTATUS(status) == 0;
}

} // namespace

// RocksDB's LOCK is a POSIX record lock, which a process loses when it closes
// any descriptor of the file. A second open of a data dir the process has
// open must be refused without touching it, by either name, with or without
// prepared WAL files (whose look at LOCK opens it): the first keeps its lock
// and its writes, and no other process can open the database meanwhile.
TEST(Store, test_a_second_open_in_the_same_process_is_refused_and_the_first_keeps_its_lock) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  ASSERT_TRUE(locked_for_others(dir.path()));
  EXPECT_FALSE(store::open({dir.path()}));
  EXPECT_FALSE(store::open({dir.path(), 0}));
  EXPECT_FALSE(store::open({dir.path() + "/."}));
  EXPECT_TRUE(locked_for_others(dir.path()));
  EXPECT_FALSE((*db)->write({put_op("k/still", "mine")}, true));
  db->reset();
  EXPECT_FALSE(locked_for_others(dir.path()));
  auto again = store::open({dir.path()});
  ASSERT_TRUE(again);
  std::string value;
  EXPECT_TRUE(*(*again)->get("k/still", value));
}

// RocksDB stops taking writes after an I/O error on its WAL other than a full
// disk, until the database is opened again: `resume` must say so (shopd then
// restarts), and reopening must find every write made before, none of the
// failed one.
TEST(Store, test_a_failed_wal_write_stops_writes_until_the_database_is_reopened) {
  test::temp_dir dir;
  {
    auto db = store::open({dir.path()});
    ASSERT_TRUE(db);
    ASSERT_FALSE((*db)->write({put_op("k/before", "1")}, true));
    EXPECT_EQ((*db)->resume(), write_state::accepting); // nothing to resume
    {
      file_size_limit limit{1};
      EXPECT_TRUE((*db)->write({put_op("k/failed", "2")}, true));
    }
    std::string why;
    EXPECT_EQ((*db)->resume(&why), write_state::stopped);
    EXPECT_FALSE(why.empty());
    // With the limit gone, writes are still refused: only reopening helps.
    EXPECT_TRUE((*db)->write({put_op("k/after", "3")}, true));
    std::string value;
    EXPECT_TRUE(*(*db)->get("k/before", value)); // reads go on
  }
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  std::string value;
  EXPECT_TRUE(*(*db)->get("k/before", value));
  EXPECT_FALSE(*(*db)->get("k/failed", value));
  EXPECT_FALSE(*(*db)->get("k/after", value));
  EXPECT_FALSE((*db)->write({put_op("k/reopened", "4")}, true));
  EXPECT_EQ((*db)->resume(), write_state::accepting);
}

// After failed group commits the journal probes storage by itself: with no
// batch submitted at all it becomes healthy again once a write succeeds (a
// node taken out of a load balancer by /readyz must be able to come back).
TEST(Journal, test_a_failing_journal_is_healthy_again_without_traffic) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  journal j{*db, durability::sync};
  j.fail_next_groups(3); // this batch's group and the first two probes
  std::promise<bool> result;
  j.submit({put_op("k/1", "v")}, [&](bool ok) { result.set_value(ok); });
  EXPECT_FALSE(result.get_future().get());
  EXPECT_EQ(j.health(), journal_health::failing);
  EXPECT_FALSE(j.healthy());
  std::this_thread::sleep_for(journal::probe_interval / 2);
  EXPECT_FALSE(j.healthy()); // no probe before its interval
  EXPECT_TRUE(within(5 * journal::probe_interval, [&] { return j.healthy(); }));
  EXPECT_EQ(j.failures(), 3u);
  // The probe that succeeded was a durable write.
  std::string stamp;
  EXPECT_TRUE(*(*db)->get(keys::meta("journal_probe"), stamp));
  // And batches are written again.
  std::promise<bool> next;
  j.submit({put_op("k/2", "v")}, [&](bool ok) { next.set_value(ok); });
  EXPECT_TRUE(next.get_future().get());
}

// A journal whose storage stops for good tells its owner once (shopd exits
// then) and never reports itself healthy again.
TEST(Journal, test_a_journal_whose_storage_stops_for_good_tells_its_owner_once) {
  test::temp_dir dir;
  auto db = store::open({dir.path()});
  ASSERT_TRUE(db);
  std::atomic<int> told{0};
  std::string reason;
  std::mutex m;
  journal j{*db, durability::sync, [&](const std::string& why) {
              std::lock_guard<std::mutex> g{m};
              reason = why;
              ++told;
            }};
  {
    file_size_limit limit{1};
    std::promise<bool> result;
    j.submit({put_op("k/1", "v")}, [&](bool ok) { result.set_value(ok); });
    EXPECT_FALSE(result.get_future().get());
  }
  EXPECT_TRUE(within(5 * journal::probe_interval, [&] { return told.load() > 0; }));
  EXPECT_EQ(j.health(), journal_health::stopped);
  {
    std::lock_guard<std::mutex> g{m};
    EXPECT_FALSE(reason.empty());
  }
  for (int i = 0; i < 3; ++i) {
    std::promise<bool> later;
    j.submit({put_op("k/2", "v")}, [&](bool ok) { later.set_value(ok); });
    EXPECT_FALSE(later.get_future().get());
  }
  std::this_thread::sleep_for(2 * journal::probe_interval);
  EXPECT_EQ(told.load(), 1);
  EXPECT_FALSE(j.healthy());
}

// A flush runs in the background after the write that filled its memtable;
// when it fails after the last write, no write comes to fail and show it.
// The journal's idle check must: within its interval it probes storage, and
// RocksDB, which takes no writes after a failed flush until the database is
// opened again, makes that probe stop the journal, which tells its owner
// (shopd exits 3 then, and its restart replays the WAL). Nothing written is
// lost.
TEST(Journal, test_a_flush_that_fails_after_the_last_write_is_found_without_traffic) {
  test::temp_dir dir;
  auto fs = std::make_shared<sst_refusing_fs>();
  store_options opts{dir.path(), 0};
  opts.file_system = fs;
  std::string value(64 << 10, 'v');
  int written = 0;
  {
    auto db = store::open(opts);
    ASSERT_TRUE(db);
    std::atomic<int> told{0};
    journal j{*db, durability::sync, [&](const std::string&) { ++told; }};
    fs->failing = true;
    // Write until the memtable is full and switched: its flush begins (and
    // fails) in the background; nothing is written after that.
    for (; written < 1000 && (*db)->int_property("rocksdb.num-immutable-mem-table") == 0
           && (*db)->int_property("rocksdb.background-errors") == 0;
         ++written) {
      std::promise<bool> done;
      j.submit({put_op("k/" + std::to_string(written), value)},
               [&](bool ok) { done.set_value(ok); });
      ASSERT_TRUE(done.get_future().get()) << written;
    }
    ASSERT_LT(written, 1000);
    ASSERT_TRUE(within(std::chrono::seconds{5},
                       [&] { return (*db)->int_property("rocksdb.background-errors") > 0; }));
    EXPECT_TRUE(j.healthy()); // no write has failed
    EXPECT_TRUE(within(journal::background_check_interval + 2 * journal::probe_interval,
                       [&] { return told.load() > 0; }));
    EXPECT_EQ(j.health(), journal_health::stopped);
    EXPECT_FALSE(j.healthy());
    std::this_thread::sleep_for(2 * journal::probe_interval);
    EXPECT_EQ(told.load(), 1);
  }
  // Opened again, as the restart does: every write is there, and writes go on.
  fs->failing = false;
  auto db = store::open(opts);
  ASSERT_TRUE(db);
  std::string got;
  for (int i = 0; i < written; ++i)
    ASSERT_TRUE(*(*db)->get("k/" + std::to_string(i), got)) << i;
  EXPECT_FALSE((*db)->write({put_op("k/next", "v")}, true));
}

// RocksDB 7.8 resumes after a full disk without switching to a new WAL file
// when its active memtable is empty, i.e. when the failed write was the first
// since the database was opened or since the last memtable switch: the next
// write then goes to the WAL writer that failed, which Debian's RocksDB
// (built with assertions) answers with abort(). The store must refuse to
// resume then (a restart opens a new WAL) and never touch that writer again.
TEST(Store, test_a_full_disk_at_the_first_write_of_a_wal_needs_a_reopen_not_a_crash) {
  test::temp_dir dir;
  test::small_disk disk{dir.path(), 100};
  if (!disk.mounted())
    GTEST_SKIP() << "cannot mount a tmpfs here (" << disk.error() << "); needs root";
  // Less free space than RocksDB preallocates for a WAL (~35 MiB): the WAL
  // grows write by write, so a full disk fails the next one.
  ASSERT_EQ(test::small_disk::fill(dir.path() + "/ballast", 70u << 20), 70u << 20);
  auto path = dir.path() + "/data";
  {
    auto db = store::open({path});
    ASSERT_TRUE(db);
    ASSERT_FALSE((*db)->write({put_op("k/before", "1")}, true));
  }
  auto db = store::open({path}); // recovers "k/before" into a table file: an empty memtable
  ASSERT_TRUE(db);
  test::small_disk::fill(dir.path() + "/the-rest");
  EXPECT_TRUE((*db)->write({put_op("k/failed", "2")}, true));
  ASSERT_EQ(::unlink((dir.path() + "/ballast").c_str()), 0);
  // RocksDB's own recovery (its SstFileManager looks every 5 s) may clear the
  // error meanwhile; the store still says a reopen is needed, and writes are
  // refused without reaching RocksDB.
  std::this_thread::sleep_for(std::chrono::seconds{6});
  std::string why;
  EXPECT_EQ((*db)->resume(&why), write_state::stopped);
  EXPECT_FALSE(why.empty());
  EXPECT_TRUE((*db)->write({put_op("k/after", "3")}, true));
  db = caf::expected<store_ptr>{store_ptr{}}; // closes
  auto reopened = store::open({path});
  ASSERT_TRUE(reopened);
  std::string value;
  EXPECT_TRUE(*(*reopened)->get("k/before", value));
  EXPECT_FALSE(*(*reopened)->get("k/failed", value));
  EXPECT_FALSE(*(*reopened)->get("k/after", value));
  EXPECT_FALSE((*reopened)->write({put_op("k/reopened", "4")}, true));
}
