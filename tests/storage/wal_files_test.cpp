// A write that fails after its record reached the WAL (its file sync failed,
// or the directory sync after it) must not come back at the next start
// (storage/wal_files.hpp); every write acknowledged before it must, also the
// unsynced ones of `async` durability.

#include <gtest/gtest.h>

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

TEST(WalFiles, test_a_write_refused_with_a_failed_wal_sync_is_not_there_after_a_restart) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto crashed = dir.path() + "/crashed";
  auto fs = std::make_shared<test::wal_sync_failing_fs>();
  store_options opts{data, 0};
  opts.file_system = fs;
  {
    auto db = store::open(opts);
    ASSERT_TRUE(db);
    for (int i = 0; i < 10; ++i)
      ASSERT_FALSE((*db)->write({put_op("k/acked/" + std::to_string(i), "yes")}, true));
    fs->failing = true;
    // Appended to the WAL, refused by its sync: the caller is told it failed.
    EXPECT_TRUE((*db)->write({put_op("k/refused", std::string(5000, 'r'))}, true));
    copy_as_crashed(data, crashed); // a kill -9 now
  }
  fs->failing = false;
  // Both after the crash and after the store was closed: every acknowledged
  // write is there, the refused one is not, and writes go on.
  for (auto& d : {crashed, data}) {
    auto db = store::open({d, 0});
    ASSERT_TRUE(db) << d;
    std::string value;
    for (int i = 0; i < 10; ++i)
      EXPECT_TRUE(*(*db)->get("k/acked/" + std::to_string(i), value)) << d << " " << i;
    EXPECT_FALSE(*(*db)->get("k/refused", value)) << d;
    EXPECT_FALSE((*db)->write({put_op("k/next", "1")}, true)) << d;
  }
}

// The first synced write of each WAL file also syncs the directory (the new
// file's name). When that fails the write is refused, though the file sync
// before it made its record durable.
TEST(WalFiles, test_a_write_refused_because_the_directory_sync_failed_is_not_there_after_a_restart) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto crashed = dir.path() + "/crashed";
  auto fs = std::make_shared<test::wal_sync_failing_fs>();
  store_options opts{data, 0};
  opts.file_system = fs;
  {
    auto db = store::open(opts); // a new WAL file: the first synced write syncs the directory
    ASSERT_TRUE(db);
    fs->failing_dir_syncs = true;
    EXPECT_TRUE((*db)->write({put_op("k/refused", std::string(5000, 'r'))}, true));
    copy_as_crashed(data, crashed);
  }
  fs->failing_dir_syncs = false;
  for (auto& d : {crashed, data}) {
    auto db = store::open({d, 0});
    ASSERT_TRUE(db) << d;
    std::string value;
    EXPECT_FALSE(*(*db)->get("k/refused", value)) << d;
    EXPECT_FALSE((*db)->write({put_op("k/next", "1")}, true)) << d;
  }
}

TEST(WalFiles, test_in_async_durability_a_failed_sync_keeps_the_acknowledged_writes) {
  test::temp_dir dir;
  auto data = dir.path() + "/data";
  auto crashed = dir.path() + "/crashed";
  auto fs = std::make_shared<test::wal_sync_failing_fs>();
  store_options opts{data, 0};
  opts.file_system = fs;
  {
    auto db = store::open(opts);
    ASSERT_TRUE(db);
    // Acknowledged without a sync, as `async` does.
    for (int i = 0; i < 10; ++i)
      ASSERT_FALSE((*db)->write({put_op("k/acked/" + std::to_string(i), "yes")}, false));
    fs->failing = true;
    // A synced write (the journal's probe is one in both modes) fails.
    EXPECT_TRUE((*db)->write({put_op("k/probe", "1")}, true));
    copy_as_crashed(data, crashed);
  }
  auto db = store::open({crashed, 0});
  ASSERT_TRUE(db);
  std::string value;
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(*(*db)->get("k/acked/" + std::to_string(i), value)) << i;
}
