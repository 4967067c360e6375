#include "actors/entity.hpp"

#include <algorithm>
#include <future>

#include <caf/send.hpp>

#include "protocols/metrics.hpp"
#include "protocols/record_codec.hpp"

namespace shop {

const char* to_string(entity_kind k) noexcept {
  switch (k) {
    case entity_kind::sku: return "sku";
    case entity_kind::sale: return "sale";
    case entity_kind::order: return "order";
    case entity_kind::user: return "user";
    case entity_kind::cart: return "cart";
  }
  return "unknown";
}

caf::expected<std::string> receipt_cache::first_answer(const store& db,
                                                       const std::string& storage_key,
                                                       const std::string& key,
                                                       const std::string& requester) {
  if (key.empty())
    return std::string{};
  if (!known_) {
    std::string raw;
    auto found = db.get(storage_key, raw);
    if (!found)
      return std::move(found.error());
    if (*found) {
      creation_receipt r;
      if (!decode(raw, r))
        return make_error(errc::internal, "corrupt creation receipt " + storage_key);
      value_ = std::move(r);
    }
    known_ = true;
  }
  if (!value_ || value_->idempotency_key != key || value_->requester != requester)
    return std::string{};
  return value_->answer;
}

void receipt_cache::keep(write_batch& ops, const std::string& storage_key, creation_receipt r) {
  known_ = true;
  if (r.idempotency_key.empty()) {
    value_.reset();
    return;
  }
  ops.push_back(put_op(storage_key, encode(r)));
  value_ = std::move(r);
}

caf::error reused_key() {
  return make_error(errc::conflict,
                    "this Idempotency-Key was first used with a different request body");
}

hasher_pool::hasher_pool(std::chrono::milliseconds queue_budget) : queue_budget_(queue_budget) {
}

void hasher_pool::add(caf::actor worker) {
  std::lock_guard<std::mutex> guard{mtx_};
  workers_.push_back(std::move(worker));
}

caf::expected<hasher_pool::loan> hasher_pool::lend() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (workers_.empty())
    return make_error(errc::unavailable, "the node is stopping");
  // Time until a new request would be done: the lent ones and it, spread over the hashers.
  auto backlog = service_time_ * static_cast<int64_t>(lent_ + 1)
                 / static_cast<int64_t>(workers_.size());
  // No hash time known yet (none finished since the start): one
  // request per hasher, so a storm right after a start is not all queued.
  bool unknown = service_time_.count() == 0;
  if (lent_ >= workers_.size() && (unknown || backlog > queue_budget_))
    return make_error(errc::unavailable, "too many password checks in progress; retry shortly");
  ++lent_;
  std::shared_ptr<void> lease{nullptr, [pool = shared_from_this()](void*) {
                                std::lock_guard<std::mutex> guard{pool->mtx_};
                                --pool->lent_;
                              }};
  return loan{workers_[next_++ % workers_.size()], std::move(lease)};
}

void hasher_pool::observe(std::chrono::microseconds took) {
  std::lock_guard<std::mutex> guard{mtx_};
  service_time_ = service_time_.count() == 0 ? took : (service_time_ * 7 + took) / 8;
}

size_t hasher_pool::lent() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return lent_;
}

std::vector<caf::actor> hasher_pool::close() {
  std::lock_guard<std::mutex> guard{mtx_};
  return std::move(workers_);
}

millis now_millis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void entity_core::persist(const caf::actor& self, write_batch ops) {
  auto seq = ++submitted_;
  if (poisoned()) { // built on state that storage never got: never write it
    caf::anon_send(self, committed_atom::value, seq, false);
    return;
  }
  // The flag also goes to the journal: a batch submitted while an earlier one
  // of this entity was being written is dropped if that one fails.
  ctx->journal->submit(std::move(ops), [self, seq, durable = durable_, pending = notice_pending_,
                                        poisoned = poisoned_, first_failed = first_failed_](bool ok) {
    if (!ok) {
      // Record the gap before anything else: a later success must not make
      // the entity read `durable` past it.
      auto cur = first_failed->load();
      while (seq < cur && !first_failed->compare_exchange_weak(cur, seq)) {
      }
      poisoned->store(true);
      caf::anon_send(self, committed_atom::value, seq, false);
      return;
    }
    auto cur = durable->load();
    while (cur < seq && !durable->compare_exchange_weak(cur, seq)) {
    }
    // Publish `durable` before testing the flag: the entity clears the flag
    // before reading `durable`, so no commit goes unnoticed.
    if (!pending->exchange(true))
      caf::anon_send(self, committed_atom::value, uint64_t{0}, true);
  }, poisoned_);
}

uint64_t entity_core::durable_prefix() const {
  // Read `durable` before the failure marks: the journal publishes a failure
  // before any later success, so a gap below `durable` is always seen here.
  auto durable = durable_->load();
  auto failed = first_failed_->load();
  return failed == UINT64_MAX ? durable : std::min(durable, failed - 1);
}

void entity_core::on_commit_notice() {
  notice_pending_->store(false);
  auto durable = durable_prefix();
  // Figures first: a client that got its answer then sees them on /metrics.
  if (on_durable)
    on_durable();
  if (durable > committed_)
    on_committed(durable);
  // After a failure the failure report follows and stops the entity.
}

void entity_core::fail_holds(const caf::error& err) {
  auto holds = std::move(holds_);
  holds_.clear();
  for (auto& [ticket, fail] : holds)
    fail(err);
}

void entity_core::settle_after_failure() {
  auto durable = durable_prefix();
  if (durable > committed_)
    on_committed(durable); // these batches are stored: say so
  fail_all(make_error(errc::unavailable, "storage write failed; retry"));
  fail_holds(make_error(errc::unavailable, "the entity restarts after a storage failure; retry"));
}

uint64_t entity_core::hold(std::function<void(const caf::error&)> fail) {
  auto ticket = ++next_hold_;
  holds_.emplace(ticket, std::move(fail));
  return ticket;
}

void entity_core::unhold(uint64_t ticket) {
  holds_.erase(ticket);
}

void entity_core::settle_before_crash() {
  // A commit notice that threw while answering its requests left the rest of
  // them, stored, in `waiting_`: answer them first.
  if (!waiting_.empty() && waiting_.front().first <= committed_)
    on_committed(committed_);
  if (!quiescent()) {
    auto written = std::make_shared<std::promise<void>>();
    auto done = written->get_future();
    ctx->journal->barrier([written](bool) { written->set_value(); });
    bool settled = done.wait_for(ctx->crash_settle_timeout) == std::future_status::ready;
    auto durable = durable_prefix();
    if (durable > committed_)
      on_committed(durable); // answers every request whose batch is durable
    in_doubt_ = !settled && !quiescent();
    fail_all(settled ? make_error(errc::unavailable,
                                  "the entity crashed before the change was stored; retry")
                     : make_error(errc::unavailable,
                                  "the entity crashed while storage was slow; the change may "
                                  "still be stored: retry with the same Idempotency-Key, or "
                                  "look before you retry"));
  }
  // Requests whose answers wait on other actors die with this one: answer them.
  fail_holds(make_error(errc::unavailable, "the entity crashed; retry"));
}

void entity_core::after_commit(waiter fn) {
  if (quiescent()) {
    fn(nullptr);
    return;
  }
  waiting_.emplace_back(submitted_, std::move(fn));
}

void entity_core::on_committed(uint64_t seq) {
  committed_ = seq;
  while (!waiting_.empty() && waiting_.front().first <= committed_) {
    auto fn = std::move(waiting_.front().second);
    waiting_.pop_front();
    fn(nullptr);
  }
}

void entity_core::fail_all(const caf::error& err) {
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& w : waiting)
    w.second(&err);
}

std::shared_ptr<sale_gauge> sale_gauges::track(const std::string& sale_id,
                                               const std::string& sku, millis ends_at) {
  auto g = std::make_shared<sale_gauge>();
  g->ends_at = ends_at;
  std::lock_guard<std::mutex> guard{mtx_};
  gauges_[{sale_id, sku}] = g;
  return g;
}

void sale_gauges::forget_sku(const std::string& sku) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto i = gauges_.begin(); i != gauges_.end();)
    i = i->first.second == sku ? gauges_.erase(i) : std::next(i);
}

void sale_gauges::write(std::string& out, millis now) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto i = gauges_.begin(); i != gauges_.end();) // an ended sale sells no more
    i = i->second->ends_at <= now ? gauges_.erase(i) : std::next(i);
  auto labels = [](const std::pair<std::string, std::string>& key) {
    // Sale ids and SKUs are [A-Za-z0-9._-]: nothing to escape.
    return "sale=\"" + key.first + "\",sku=\"" + key.second + "\"";
  };
  write_metric_header(out, "shop_flash_sale_remaining", "gauge",
                      "Units a flash sale (not yet ended) can still sell.");
  for (auto& [key, g] : gauges_)
    write_sample(out, "shop_flash_sale_remaining", labels(key),
                 static_cast<double>(g->remaining.load(std::memory_order_relaxed)));
  write_metric_header(out, "shop_flash_sale_purchased_units", "gauge",
                      "Units of a flash sale (not yet ended) held by its buyers, reserved or paid.");
  for (auto& [key, g] : gauges_)
    write_sample(out, "shop_flash_sale_purchased_units", labels(key),
                 static_cast<double>(g->purchased.load(std::memory_order_relaxed)));
}

} // namespace shop
