#include "storage/journal.hpp"

#include <chrono>

#include <pthread.h>

#include <spdlog/spdlog.h>

#include "protocols/errc.hpp"

namespace shop {

journal::journal(store_ptr db, durability mode) : db_(std::move(db)), mode_(mode) {
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
    {
      std::unique_lock<std::mutex> guard{mtx_};
      cv_.wait(guard, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return; // stopping and drained
      group.swap(queue_);
    }
    parts.clear();
    for (auto& p : group) {
      p.skipped = p.cancelled && p.cancelled->load();
      if (!p.ops.empty() && !p.skipped)
        parts.push_back(&p.ops);
    }
    bool ok = true;
    if (!parts.empty()) {
      auto start = std::chrono::steady_clock::now();
      auto injected = fail_next_.load();
      while (injected > 0 && !fail_next_.compare_exchange_weak(injected, injected - 1)) {
      }
      auto err = injected > 0 ? make_error(errc::unavailable, "injected storage failure")
                              : db_->write_all(parts, mode_ == durability::sync);
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
      commit_latency_.observe_us(static_cast<uint64_t>(us));
      groups_.fetch_add(1, std::memory_order_relaxed);
      batches_.fetch_add(parts.size(), std::memory_order_relaxed);
      healthy_.store(!err, std::memory_order_relaxed);
      if (err) {
        ok = false;
        failures_.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("journal: group commit of {} batches failed: {}", parts.size(),
                      describe(err).message);
      }
    }
    for (auto& p : group)
      p.done(ok && !p.skipped);
    group.clear();
  }
}

} // namespace shop
