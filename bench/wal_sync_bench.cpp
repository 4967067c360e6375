// One synced RocksDB write at a time, through the store, with WAL files begun
// empty and begun from prepared (zero-filled) files: what --prepared-wal-mb
// saves on this disk. Usage: build/bench/wal-sync-bench [DIR] [writes]
// (DIR: where the two test databases go, on the disk to measure; default
// ./wal-sync-bench, removed afterwards). Prints p50/p90 per round.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "storage/store.hpp"

using namespace shop;
namespace fs = std::filesystem;

namespace {

/// Opens a fresh store in `dir`, fills its first WAL file so that the next
/// one begins from a prepared file (when `prepared_bytes` > 0), then times
/// `n` synced writes of 300 bytes.
bool run(const std::string& dir, uint64_t prepared_bytes, int n, std::vector<double>& micros) {
  fs::remove_all(dir);
  fs::create_directories(fs::path{dir}.parent_path());
  auto db = store::open({dir, prepared_bytes});
  if (!db) {
    std::fprintf(stderr, "cannot open %s\n", dir.c_str());
    return false;
  }
  // Past one 32 MiB memtable: RocksDB switches to its next WAL file. Half of
  // it first, then a pause in which the prepared files are made.
  std::string big(1 << 20, 'x');
  for (int i = 0; i < 40; ++i) {
    if ((*db)->write({put_op("k/big/" + std::to_string(i), big)}, false))
      return false;
    if (i == 12)
      std::this_thread::sleep_for(std::chrono::seconds{2});
  }
  std::this_thread::sleep_for(std::chrono::seconds{1});
  if (prepared_bytes > 0 && (*db)->counter(store_counter::prepared_wal_files) == 0)
    std::fprintf(stderr, "warning: the WAL did not begin from a prepared file\n");
  std::string value(300, 'v');
  micros.clear();
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if ((*db)->write({put_op("k/s/" + std::to_string(i), value)}, true))
      return false;
    micros.push_back(
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(micros.begin(), micros.end());
  return true;
}

} // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "./wal-sync-bench";
  int n = argc > 2 ? std::atoi(argv[2]) : 3000;
  if (n < 10) {
    std::fprintf(stderr, "usage: wal-sync-bench [DIR] [writes >= 10]\n");
    return 2;
  }
  std::vector<double> micros;
  for (int round = 1; round <= 3; ++round) {
    for (uint64_t mib : {0, 40}) {
      if (!run(dir + "/db", mib << 20, n, micros))
        return 1;
      std::printf("round %d, %-28s synced write p50 %4.0f us, p90 %4.0f us\n", round,
                  mib == 0 ? "WAL begun empty:" : "WAL from a prepared file:",
                  micros[micros.size() / 2], micros[micros.size() * 9 / 10]);
    }
  }
  fs::remove_all(dir);
  return 0;
}
