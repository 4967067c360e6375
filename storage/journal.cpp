#include "storage/journal.hpp"

#include <algorithm>
#include <chrono>

#include <pthread.h>

#include <spdlog/spdlog.h>

#include "protocols/errc.hpp"
#include "storage/keys.hpp"

namespace shop {

journal::journal(store_ptr db, durability mode, stopped_handler on_stopped)
  : db_(std::move(db)), mode_(mode), on_stopped_(std::move(on_stopped)) {
  writer_ = std::thread{[this] {
    pthread_setname_np(pthread_self(), "shop-journal"); // visible in top -H and perf
    run();
  }};
}

journal::~journal() {
  stop();
}

void journal::submit(write_batch ops, completion done, cancel_flag cancelled) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!stopping_) {
      queue_.push_back(pending{std::move(ops), std::move(done), std::move(cancelled)});
      cv_.notify_one();
      return;
    }
  }
  done(false);
}

void journal::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
    cv_.notify_one();
  }
  if (writer_.joinable())
    writer_.join();
}

void journal::run() {
  std::deque<pending> group;
  std::vector<const write_batch*> parts;
  for (;;) {
    bool probe_due = false;
    bool background_check_due = false;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      auto work = [this] { return stopping_ || !queue_.empty(); };
      if (health() == journal_health::failing)
        probe_due = !cv_.wait_until(guard, next_probe_, work); // false: the probe is due
      else if (health() == journal_health::ok)
        // Idle: look for errors of RocksDB's own flushes and compactions now
        // and then, so that readiness is true without traffic too.
        background_check_due = !cv_.wait_for(guard, background_check_interval, work);
      else
        cv_.wait(guard, work);
      if (queue_.empty() && stopping_)
        return; // stopping and drained
      group.swap(queue_);
    }
    if (probe_due
        || (health() == journal_health::failing && std::chrono::steady_clock::now() >= next_probe_))
      probe();
    else if (background_check_due)
      check_background_errors();
    parts.clear();
    for (auto& p : group) {
      p.skipped = p.cancelled && p.cancelled->load();
      if (!p.ops.empty() && !p.skipped)
        parts.push_back(&p.ops);
    }
    bool ok = parts.empty() || commit(parts, mode_ == durability::sync);
    for (auto& p : group)
      p.done(ok && !p.skipped);
    group.clear();
  }
}

bool journal::commit(const std::vector<const write_batch*>& parts, bool sync) {
  if (health() == journal_health::stopped) { // RocksDB would refuse it: no write, no log line
    failures_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (stall_armed_.load(std::memory_order_relaxed))
    stall_if_armed(parts);
  auto start = std::chrono::steady_clock::now();
  auto injected = fail_next_.load();
  while (injected > 0 && !fail_next_.compare_exchange_weak(injected, injected - 1)) {
  }
  auto err = injected > 0 ? make_error(errc::unavailable, "injected storage failure")
                          : db_->write_all(parts, sync);
  auto now = std::chrono::steady_clock::now();
  commit_latency_.observe_us(
    static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - start).count()));
  groups_.fetch_add(1, std::memory_order_relaxed);
  batches_.fetch_add(parts.size(), std::memory_order_relaxed);
  if (err) {
    failures_.fetch_add(1, std::memory_order_relaxed);
    // While storage refuses writes, every group fails at once: one line a
    // second, not one per group.
    uint64_t held_back = 0;
    if (failure_log_.allow(held_back, now))
      spdlog::error("journal: group commit of {} batches failed: {}{}", parts.size(),
                    describe(err).message, log_throttle::held_back_note(held_back));
    if (health() == journal_health::ok)
      next_probe_ = now + probe_interval;
    health_.store(journal_health::failing, std::memory_order_relaxed);
    return false;
  }
  if (health() == journal_health::failing) {
    spdlog::info("journal: storage takes writes again");
    health_.store(journal_health::ok, std::memory_order_relaxed);
    storage_recovering_ = false;
  }
  return true;
}

void journal::stall_group_writing(std::string key, std::chrono::milliseconds delay,
                                  uint32_t skip) {
  std::lock_guard<std::mutex> guard{stall_mtx_};
  stall_key_ = std::move(key);
  stall_delay_ = delay;
  stall_skip_ = skip;
  stall_armed_.store(true);
}

void journal::stall_if_armed(const std::vector<const write_batch*>& parts) {
  std::chrono::milliseconds delay{0};
  {
    std::lock_guard<std::mutex> guard{stall_mtx_};
    auto writes_key = [this](const write_batch* batch) {
      return std::any_of(batch->begin(), batch->end(),
                         [this](const write_op& op) { return op.key == stall_key_; });
    };
    if (!stall_armed_.load()
        || (!stall_key_.empty() && std::none_of(parts.begin(), parts.end(), writes_key)))
      return;
    if (stall_skip_ > 0) {
      --stall_skip_;
      return;
    }
    delay = stall_delay_;
    stall_armed_.store(false);
  }
  std::this_thread::sleep_for(delay);
}

void journal::probe() {
  next_probe_ = std::chrono::steady_clock::now() + probe_interval;
  std::string why;
  switch (db_->resume(&why)) {
    case write_state::accepting:
      break;
    case write_state::recovering:
      if (!storage_recovering_) // once per failure, not every second
        spdlog::warn("journal: storage refuses writes for now; RocksDB may resume: {}", why);
      storage_recovering_ = true;
      health_.store(journal_health::failing, std::memory_order_relaxed);
      return;
    case write_state::stopped:
      spdlog::error("journal: storage refuses writes until the node restarts: {}", why);
      health_.store(journal_health::stopped, std::memory_order_relaxed);
      if (on_stopped_)
        on_stopped_(why);
      return;
  }
  // RocksDB takes writes: prove it with a durable one before the node says
  // it is ready again.
  auto stamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  write_batch probe{put_op(keys::meta("journal_probe"), std::to_string(stamp))};
  commit({&probe}, true); // synced in either durability mode: it tests the fsync too
}

void journal::check_background_errors() {
  auto errors = db_->int_property("rocksdb.background-errors");
  if (errors <= background_errors_)
    return;
  background_errors_ = errors;
  spdlog::warn("journal: RocksDB reported an error of a flush or compaction; probing storage");
  probe();
}

} // namespace shop
