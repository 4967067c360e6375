// A write that fails after its record reached the WAL (its file sync failed,
// or the directory sync after it) must not come back at the next start
// (storage/wal_files.hpp); every write acknowledged before it must, also the
// unsynced ones of `async` durability.

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "storage/store.hpp"
#include "storage/wal_files.hpp"
#include "tests/fixtures/shopd_process.hpp"
#include "tests/fixtures/wal_file.hpp"
#include "tests/fixtures/wal_sync_failing_fs.hpp"

using namespace shop;
using shop::test::copy_as_crashed;

TEST(WalFiles, test_only_rocksdbs_wal_files_in_the_data_dir_are_guarded) {
  EXPECT_TRUE(is_wal_file("/d", "/d/000012.log"));
  EXPECT_TRUE(is_wal_file("/d", "/d//000012.log"));
  EXPECT_FALSE(is_wal_file("/d", "/d/MANIFEST-000005"));
  EXPECT_FALSE(is_wal_file("/d", "/d/000013.sst"));
  EXPECT_FALSE(is_wal_file("/d", "/d/wal-spare-1"));
  EXPECT_FALSE(is_wal_file("/d", "/d/.log"));
  EXPECT_FALSE(is_wal_file("/d", "/d/00a1.log"));
  EXPECT_FALSE(is_wal_file("/d", "/d/archive/000012.log"));
  EXPECT_FALSE(is_wal_file("/d", "/e/000012.log"));
  EXPECT_FALSE(is_wal_file("/d", "000012.log"));
}

namespace {

/// Opens a store on a file system whose syncs fail on demand, makes
/// `acked` writes (synced or not, as `sync` and `async` durability make
/// them), then one synced write while `fail` makes a sync fail, and copies
/// the data dir as a kill -9 would leave it. Then, both after that crash and
/// after the store was closed: every acknowledged write is there, the
/// refused one is not, and writes go on.
void expect_only_the_refused_write_gone(int acked, bool acked_synced,
                                        const std::function<void(test::wal_sync_failing_fs&, bool)>& fail) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto crashed = dir.path() + "/crashed";
  auto fs = std::make_shared<test::wal_sync_failing_fs>();
  store_options opts{data, 0};
  opts.file_system = fs;
  {
    auto db = store::open(opts);
    ASSERT_TRUE(db);
    for (int i = 0; i < acked; ++i)
      ASSERT_FALSE((*db)->write({put_op("k/acked/" + std::to_string(i), "yes")}, acked_synced));
    fail(*fs, true);
    // Its record reaches the WAL; the caller is told it failed.
    EXPECT_TRUE((*db)->write({put_op("k/refused", std::string(5000, 'r'))}, true));
    copy_as_crashed(data, crashed);
  }
  fail(*fs, false);
  for (auto& d : {crashed, data}) {
    auto db = store::open({d, 0});
    ASSERT_TRUE(db) << d;
    std::string value;
    for (int i = 0; i < acked; ++i)
      EXPECT_TRUE(*(*db)->get("k/acked/" + std::to_string(i), value)) << d << " " << i;
    EXPECT_FALSE(*(*db)->get("k/refused", value)) << d;
    EXPECT_FALSE((*db)->write({put_op("k/next", "1")}, true)) << d;
  }
}

} // namespace

TEST(WalFiles, test_a_write_refused_with_a_failed_wal_sync_is_not_there_after_a_restart) {
  expect_only_the_refused_write_gone(10, true, [](auto& fs, bool on) { fs.failing = on; });
}

// The first synced write of each WAL file also syncs the directory (the new
// file's name). When that fails the write is refused, though the file sync
// before it made its record durable. (A new store: its first write is one.)
TEST(WalFiles, test_a_write_refused_because_the_directory_sync_failed_is_not_there_after_a_restart) {
  expect_only_the_refused_write_gone(0, true, [](auto& fs, bool on) { fs.failing_dir_syncs = on; });
}

// `async` acknowledges writes before any sync; a synced write that fails
// after them (the journal's probe is one in both modes) must not take them
// along.
TEST(WalFiles, test_in_async_durability_a_failed_sync_keeps_the_acknowledged_writes) {
  expect_only_the_refused_write_gone(10, false, [](auto& fs, bool on) { fs.failing = on; });
}
