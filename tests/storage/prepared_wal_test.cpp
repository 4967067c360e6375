// WAL files begun from prepared (zero-filled) files: RocksDB must recover
// every synced write from them after a crash, zero tail and all, and a
// cleanly closed one must be an ordinary WAL file.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>

#include "storage/prepared_wal.hpp"
#include "storage/store.hpp"
#include "storage/wal_files.hpp"
#include "tests/fixtures/shopd_process.hpp"
#include "tests/fixtures/wal_file.hpp"
#include "tests/fixtures/wal_sync_failing_fs.hpp"

using namespace shop;
using shop::test::copy_as_crashed;
using shop::test::live_wal;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t prepared_bytes = 1 << 20; // small, so that a test fills one

std::vector<fs::path> files_named(const std::string& dir, const std::string& prefix,
                                  const std::string& suffix = {}) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.size() >= suffix.size()
        && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Long: the maker writes at the idle I/O priority and nice 19, so on a busy
/// machine its files can take many seconds.
bool eventually(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return true;
}

/// Opens `dir` with small prepared files, writes past a quarter of one so
/// that they are made, and reopens: the new WAL is begun from one.
/// Null (and a test failure) if something on the way fails.
store_ptr open_with_a_prepared_wal(const std::string& dir) {
  {
    auto db = store::open({dir, prepared_bytes});
    if (!db) {
      ADD_FAILURE() << "cannot open " << dir;
      return nullptr;
    }
    std::string value(100 << 10, 'p');
    for (int i = 0; i < 4; ++i)
      EXPECT_FALSE((*db)->write({put_op("k/pre/" + std::to_string(i), value)}, true));
    // Two complete ones (a `.tmp` one is still being written).
    EXPECT_TRUE(eventually([&] {
      auto made = files_named(dir, "wal-spare-");
      return std::count_if(made.begin(), made.end(), [](const fs::path& p) {
               return p.extension() != ".tmp";
             }) == 2;
    }));
  }
  auto db = store::open({dir, prepared_bytes});
  if (!db) {
    ADD_FAILURE() << "cannot reopen " << dir;
    return nullptr;
  }
  EXPECT_EQ((*db)->counter(store_counter::prepared_wal_files), 1u);
  return *db;
}

/// For tests that drive RocksDB directly: the file system for a new data
/// dir `data`, with two prepared files ready (null, and a test failure, if
/// they are not made in time).
std::shared_ptr<prepared_wal_fs> file_system_with_two_ready(const std::string& data) {
  fs::create_directories(data);
  auto wal_fs =
    std::make_shared<prepared_wal_fs>(rocksdb::FileSystem::Default(), data, prepared_bytes);
  wal_fs->note_wal_size(prepared_bytes); // as if a WAL had filled: prepare now
  if (!eventually([&] { return wal_fs->ready() == 2; })) {
    ADD_FAILURE() << "no prepared files in " << data;
    return nullptr;
  }
  return wal_fs;
}

} // namespace

TEST(PreparedWal, test_a_crash_recovers_every_synced_write_from_a_wal_with_a_zero_tail) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto db = open_with_a_prepared_wal(data);
  ASSERT_TRUE(db);
  for (int i = 0; i < 200; ++i)
    ASSERT_FALSE(db->write({put_op("k/synced/" + std::to_string(i), std::to_string(i))}, true));
  // The live WAL is the prepared file: full size, zeros after the records.
  auto wal = live_wal(data);
  ASSERT_FALSE(wal.empty());
  EXPECT_EQ(fs::file_size(wal), prepared_bytes);
  auto crashed = dir.path() + "/crashed";
  copy_as_crashed(data, crashed);

  auto recovered = store::open({crashed, 0});
  ASSERT_TRUE(recovered);
  std::string value;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(*(*recovered)->get("k/synced/" + std::to_string(i), value)) << i;
    EXPECT_EQ(value, std::to_string(i));
  }
  EXPECT_TRUE(*(*recovered)->get("k/pre/3", value));
  // And the recovered database takes writes.
  EXPECT_FALSE((*recovered)->write({put_op("k/after", "1")}, true));
}

TEST(PreparedWal, test_a_wal_that_outgrows_its_prepared_file_goes_on_and_recovers) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto db = open_with_a_prepared_wal(data);
  ASSERT_TRUE(db);
  std::string value(64 << 10, 'v');
  for (int i = 0; i < 24; ++i) // 1.5 MiB: past the prepared MiB
    ASSERT_FALSE(db->write({put_op("k/big/" + std::to_string(i), value)}, true));
  EXPECT_GT(fs::file_size(live_wal(data)), prepared_bytes);
  auto crashed = dir.path() + "/crashed";
  copy_as_crashed(data, crashed);
  auto recovered = store::open({crashed, 0});
  ASSERT_TRUE(recovered);
  std::string got;
  for (int i = 0; i < 24; ++i)
    ASSERT_TRUE(*(*recovered)->get("k/big/" + std::to_string(i), got)) << i;
}

TEST(PreparedWal, test_a_cleanly_closed_wal_is_cut_to_what_was_written) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  fs::path wal;
  {
    auto db = open_with_a_prepared_wal(data);
    ASSERT_TRUE(db);
    ASSERT_FALSE(db->write({put_op("k/one", "1")}, true));
    wal = live_wal(data);
    EXPECT_EQ(fs::file_size(wal), prepared_bytes);
  }
  // Closed: only the records remain (RocksDB keeps the file until a flush).
  ASSERT_TRUE(fs::exists(wal));
  EXPECT_GT(fs::file_size(wal), 0u);
  EXPECT_LT(fs::file_size(wal), 4096u);
  auto db = store::open({data, prepared_bytes});
  ASSERT_TRUE(db);
  std::string value;
  EXPECT_TRUE(*(*db)->get("k/one", value));
}

TEST(PreparedWal, test_a_node_that_writes_little_prepares_nothing) {
  // Each prepared file is written in full: only a node whose WAL fills
  // pays for them (not every test's or idle shop's data dir).
  test::temp_dir dir;
  auto db = store::open({dir.path(), prepared_bytes});
  ASSERT_TRUE(db);
  for (int i = 0; i < 100; ++i)
    ASSERT_FALSE((*db)->write({put_op("k/" + std::to_string(i), std::string(100, 'x'))}, true));
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  EXPECT_TRUE(files_named(dir.path(), "wal-spare-").empty());
  EXPECT_EQ((*db)->counter(store_counter::prepared_wal_files), 0u);
  EXPECT_EQ((*db)->counter(store_counter::plain_wal_files), 1u);
}

TEST(PreparedWal, test_a_start_that_prepares_none_removes_the_files_left_by_one_that_did) {
  // E.g. a node restarted with --durability async: the files would only take space.
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  ASSERT_TRUE(open_with_a_prepared_wal(data)); // uses one, leaves one (closed at once)
  ASSERT_EQ(files_named(data, "wal-spare-").size(), 1u);
  auto db = store::open({data, 0});
  ASSERT_TRUE(db);
  EXPECT_TRUE(files_named(data, "wal-spare-").empty());
  std::string value;
  EXPECT_TRUE(*(*db)->get("k/pre/0", value));
}

namespace {

/// A power cut, unlike a kill -9, can tear the write that was in flight: the
/// WAL's records then end in one whose header is there and whose payload is
/// only partly. That write was never acknowledged (its sync had not
/// returned), so recovery drops it and keeps every write before it; and the
/// store that recovery leaves must recover in full from the next crash too,
/// which tears a write larger than a block (in its first fragment).
/// `prepared`: the size of prepared WAL files, 0 for none.
void expect_a_torn_write_dropped_and_every_synced_one_kept(const std::string& base,
                                                           uint64_t prepared) {
  auto data = base + "/data";
  store_ptr db;
  if (prepared > 0)
    db = open_with_a_prepared_wal(data);
  else if (auto opened = store::open({data, 0}))
    db = *opened;
  ASSERT_TRUE(db);
  for (int i = 0; i < 200; ++i)
    ASSERT_FALSE(db->write({put_op("k/synced/" + std::to_string(i), std::to_string(i))}, true));
  auto name = fs::path{live_wal(data)}.filename();
  ASSERT_FALSE(name.empty());
  auto crashed = base + "/crashed";
  copy_as_crashed(data, crashed);
  db.reset();
  auto wal = (fs::path{crashed} / name).string();
  auto end = test::wal_records_end(wal);
  ASSERT_GT(end, 0u);
  auto torn = test::tear_next_wal_write(wal);
  EXPECT_GE(torn, end);
  EXPECT_LT(torn - end, 7u); // at most a block's padding between
  if (prepared > 0) {
    EXPECT_EQ(fs::file_size(wal), prepared); // zeros after the torn write
    // Only point-in-time recovery opens this: the torn record is followed by
    // zeros, not by the end of the file, so the mode that tolerates a torn
    // tail sees corruption in the middle (storage/store.cpp says why).
    auto strict = base + "/crashed-strict";
    copy_as_crashed(crashed, strict);
    rocksdb::Options o;
    o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
    rocksdb::DB* raw = nullptr;
    auto s = rocksdb::DB::Open(o, strict, &raw);
    std::unique_ptr<rocksdb::DB> refused{raw};
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  } else {
    EXPECT_GT(fs::file_size(wal), torn + 7); // the file ends inside the torn record
    EXPECT_LE(fs::file_size(wal), torn + 7 + 200);
  }

  auto recovered = store::open({crashed, prepared});
  ASSERT_TRUE(recovered);
  std::string value;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(*(*recovered)->get("k/synced/" + std::to_string(i), value)) << i;
    EXPECT_EQ(value, std::to_string(i));
  }
  for (int i = 0; i < 100; ++i)
    ASSERT_FALSE(
      (*recovered)->write({put_op("k/after/" + std::to_string(i), std::to_string(i))}, true));
  auto name_again = fs::path{live_wal(crashed)}.filename();
  auto crashed_again = base + "/crashed-again";
  copy_as_crashed(crashed, crashed_again);
  recovered->reset();
  // This time a write larger than a block (32 KiB) is torn: only part of its
  // first fragment made it.
  test::tear_next_wal_write((fs::path{crashed_again} / name_again).string(), 40000, 300, 2);

  auto again = store::open({crashed_again, prepared});
  ASSERT_TRUE(again);
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(*(*again)->get("k/synced/" + std::to_string(i), value)) << i;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(*(*again)->get("k/after/" + std::to_string(i), value)) << i;
    EXPECT_EQ(value, std::to_string(i));
  }
}

} // namespace

TEST(PreparedWal, test_a_write_torn_by_a_power_cut_in_a_prepared_wal_is_dropped_alone) {
  test::temp_dir dir;
  expect_a_torn_write_dropped_and_every_synced_one_kept(dir.path(), prepared_bytes);
}

TEST(PreparedWal, test_a_write_torn_by_a_power_cut_at_the_end_of_a_plain_wal_is_dropped_alone) {
  test::temp_dir dir;
  expect_a_torn_write_dropped_and_every_synced_one_kept(dir.path(), 0);
}

// The window after a WAL switch: the old WAL file stays open (so not yet cut
// to its size) until its memtable is flushed, while the new one takes
// writes. A crash then leaves a WAL that ends in zeros *followed by* one with
// records, and recovery must replay both. (RocksDB's log reader skips a zero
// header as padding; point-in-time recovery also goes on past a corrupt
// tail when the next file's first sequence number follows, so this checks
// the outcome, not which of the two let it through.) RocksDB is driven
// directly here: small memtables and background work paused, so that the
// first WAL is still needed.
TEST(PreparedWal, test_a_wal_ending_in_zeros_before_another_wal_is_replayed_with_it) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto wal_fs = file_system_with_two_ready(data);
  ASSERT_TRUE(wal_fs);
  auto env = rocksdb::NewCompositeEnv(wal_fs);
  rocksdb::Options o;
  o.create_if_missing = true;
  o.env = env.get();
  o.write_buffer_size = 64 << 10;
  o.max_write_buffer_number = 4;
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, data, &raw).ok());
  std::unique_ptr<rocksdb::DB> db{raw};
  ASSERT_TRUE(db->PauseBackgroundWork().ok()); // no flush: both WAL files stay needed
  rocksdb::WriteOptions synced;
  synced.sync = true;
  std::string value(1000, 'a');
  for (int i = 0; i < 40; ++i) // ~40 KiB: the first memtable
    ASSERT_TRUE(db->Put(synced, "a/" + std::to_string(i), value).ok());
  for (int i = 0; i < 60 && files_named(data, "0", ".log").size() < 2; ++i) // to the switch
    ASSERT_TRUE(db->Put(synced, "b/" + std::to_string(i), value).ok());
  ASSERT_EQ(files_named(data, "0", ".log").size(), 2u);
  for (int i = 0; i < 10; ++i) // into the second WAL
    ASSERT_TRUE(db->Put(synced, "c/" + std::to_string(i), "after the switch").ok());
  auto logs = files_named(data, "0", ".log");
  EXPECT_EQ(fs::file_size(logs[0]), prepared_bytes); // still open: its zeros are there
  EXPECT_EQ(wal_fs->prepared_wals(), 2u);
  auto crashed = dir.path() + "/crashed";
  copy_as_crashed(data, crashed);
  db->ContinueBackgroundWork().PermitUncheckedError();
  db.reset();

  rocksdb::Options plain;
  plain.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  ASSERT_TRUE(rocksdb::DB::Open(plain, crashed, &raw).ok());
  std::unique_ptr<rocksdb::DB> recovered{raw};
  std::string got;
  for (int i = 0; i < 40; ++i)
    ASSERT_TRUE(recovered->Get({}, "a/" + std::to_string(i), &got).ok()) << i;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(recovered->Get({}, "c/" + std::to_string(i), &got).ok()) << i;
    EXPECT_EQ(got, "after the switch");
  }
}

TEST(PreparedWal, test_a_prepared_file_gone_missing_means_an_empty_wal_not_an_error) {
  // E.g. an operator deleted it while the node ran.
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto wal_fs = file_system_with_two_ready(data);
  ASSERT_TRUE(wal_fs);
  for (auto& p : files_named(data, "wal-spare-"))
    fs::remove(p);
  auto env = rocksdb::NewCompositeEnv(wal_fs);
  rocksdb::Options o;
  o.create_if_missing = true;
  o.env = env.get();
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, data, &raw).ok());
  std::unique_ptr<rocksdb::DB> db{raw};
  EXPECT_EQ(wal_fs->prepared_wals(), 0u);
  EXPECT_EQ(wal_fs->plain_wals(), 1u);
  rocksdb::WriteOptions synced;
  synced.sync = true;
  ASSERT_TRUE(db->Put(synced, "k", "v").ok());
  std::string got;
  ASSERT_TRUE(db->Get({}, "k", &got).ok());
  EXPECT_EQ(got, "v");
}

// A failed sync of a WAL begun from a prepared file: the refused write's
// bytes become zeros again within the file (storage/wal_files.hpp), and a
// restart replays every acknowledged write and not it. The file systems as
// the store stacks them, with a sync that fails between the guard and the
// prepared file; RocksDB driven directly, and the guard told of each write's
// outcome as the store tells it.
TEST(PreparedWal, test_a_write_refused_with_a_failed_sync_of_a_prepared_wal_is_not_replayed) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto wal_fs = file_system_with_two_ready(data);
  ASSERT_TRUE(wal_fs);
  auto failing = std::make_shared<test::wal_sync_failing_fs>(wal_fs);
  auto guard = std::make_shared<wal_guard_fs>(failing, data);
  auto env = rocksdb::NewCompositeEnv(guard);
  rocksdb::Options o;
  o.create_if_missing = true;
  o.env = env.get();
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, data, &raw).ok());
  std::unique_ptr<rocksdb::DB> db{raw};
  ASSERT_EQ(wal_fs->prepared_wals(), 1u);
  rocksdb::WriteOptions synced;
  synced.sync = true;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(db->Put(synced, "k/acked/" + std::to_string(i), "yes").ok());
    guard->acknowledged();
  }
  failing->failing = true;
  EXPECT_FALSE(db->Put(synced, "k/refused", std::string(5000, 'r')).ok());
  guard->refused();
  auto crashed = dir.path() + "/crashed";
  copy_as_crashed(data, crashed);
  EXPECT_EQ(fs::file_size(live_wal(crashed)), prepared_bytes); // still the prepared file

  auto recovered = store::open({crashed, 0});
  ASSERT_TRUE(recovered);
  std::string value;
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(*(*recovered)->get("k/acked/" + std::to_string(i), value)) << i;
  EXPECT_FALSE(*(*recovered)->get("k/refused", value));
  EXPECT_FALSE((*recovered)->write({put_op("k/next", "1")}, true));
}
