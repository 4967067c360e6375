#pragma once
// The entity actors of one node and the shard region that hosts them.
// Clients never hold entity handles: they send commands to the region, which
// activates the owning entity (loading it from storage) and delegates.

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/entity.hpp"
#include "actors/stock_book.hpp"

namespace shop {

/// One per SKU: the product, its stock ledger and its flash sales' counters.
/// Hot: every purchase of the SKU is decided here, in mailbox order.
struct sku_stock_state {
  entity_core core;
  stock_book book;
  receipt_cache receipt;
  /// Receipts of keyed restocks whose batches are not yet stored: a retry
  /// queued right behind its first attempt finds its receipt here.
  std::map<std::string, restock_receipt> restocks_in_flight;
  /// The orders of reservations restored at load not looked at yet (see
  /// recheck_restored), taken from the back.
  std::vector<std::string> recheck;
  /// What that look found and took (logged when it ends).
  size_t recheck_moved = 0;
  std::chrono::steady_clock::duration recheck_time{};
  /// When the expiry timer fires next (0: not armed).
  millis timer_at = 0;
  /// This SKU's sales not yet ended on /metrics (sale_gauges), refreshed after
  /// each commit. A passivated SKU's stay with their last figures (only the
  /// SKU changes them); the registry drops a sale once it has ended.
  std::vector<std::pair<std::string, std::shared_ptr<sale_gauge>>> published;
  static inline const char* name = "sku_stock";
};
caf::behavior sku_stock_actor(caf::stateful_actor<sku_stock_state>* self, context_ptr ctx,
                              std::string sku);

/// One per flash sale: its immutable terms; routes purchases to the SKU.
struct flash_sale_state {
  entity_core core;
  bool exists = false;
  sale_terms terms;
  receipt_cache receipt;
  static inline const char* name = "flash_sale";
};
/// Storage format 2 keeps a SKU's settled ledger entries outside its ledger's
/// range, with a tally (actors/README.md). Brings a data dir written before
/// that to it: moves every settled entry and writes each SKU's tally and its
/// buyers' sold units. Safe to run again after an interruption (it recounts
/// what it already moved). Returns the number of entries moved.
caf::expected<size_t> upgrade_stock_ledgers(store& db, uint32_t shard_count);

caf::behavior flash_sale_actor(caf::stateful_actor<flash_sale_state>* self, context_ptr ctx,
                               std::string sale_id);

/// One per order: its status machine (pending_payment -> paid | cancelled |
/// expired), payment, and the placement saga of checkout orders.
struct order_state {
  entity_core core;
  bool exists = false;
  order_record order;
  /// True while a checkout's reservations are being made.
  bool placing = false;
  /// The requests waiting on that placement: the first, then concurrent retries.
  std::vector<std::pair<checkout, caf::typed_response_promise<purchase_result>>> placement;
  /// The order as placed once its write is durable, while the answer waits
  /// for the cart: if the entity crashes or fails meanwhile, the requests are
  /// answered with it, not with an error (a stored order is never a 503).
  std::optional<order_record> placed;
  /// The lines whose reservations the placement asked for, until it ends: if
  /// it fails (the entity crashed, or the order's write failed), their SKUs
  /// are asked to check them now (recheck_reservation).
  std::vector<order_line> reserving;
  static inline const char* name = "order";
};
caf::behavior order_actor(caf::stateful_actor<order_state>* self, context_ptr ctx,
                          std::string order_id);

/// One per username: the account and its password hash.
struct user_account_state {
  entity_core core;
  bool exists = false;
  user_record user;
  receipt_cache receipt;
  static inline const char* name = "user_account";
};
caf::behavior user_account_actor(caf::stateful_actor<user_account_state>* self, context_ptr ctx,
                                 std::string username);

/// One per user: the cart (SKU -> quantity; prices are looked up when shown).
struct cart_state {
  entity_core core;
  /// The lines, and the checkout holding them (stored with them).
  cart_record cart;
  /// The number of the hold's time limit (a limit whose number is not the
  /// latest is stale).
  uint64_t checkout_number = 0;
  /// Questions to the holding order (checkout_under_way) in a row that got
  /// no answer: past a few, the hold ends (an order that can never answer
  /// must not keep the cart from every later checkout).
  int unanswered_asks = 0;
  /// The holding order's entity (monitored), and whether it has stopped.
  /// Unknown (null) for a hold loaded from storage: the cart asks the order.
  caf::actor_addr checkout_entity;
  bool checkout_entity_gone = false;
  /// take_cart requests of other orders, waiting for that checkout to end.
  struct waiting_take {
    take_cart cmd;
    caf::actor_addr order; // its entity
    caf::typed_response_promise<cart_view> rp;
    uint64_t ticket; // entity_core::hold: a crash answers it
  };
  std::deque<waiting_take> waiting_takes;
  static inline const char* name = "cart";
};
caf::behavior cart_actor(caf::stateful_actor<cart_state>* self, context_ptr ctx,
                         std::string user_id);

/// One per node, not an entity: answers GET /products from storage (a
/// bounded scan of the product records), with live stock from the SKUs.
caf::behavior catalog_actor(caf::event_based_actor* self, context_ptr ctx);

/// A detached actor (own thread) that hashes and verifies passwords with
/// argon2id, so slow hashing never stalls the scheduler. `cost` is log2 of
/// the memory in KiB (3..22); time cost 2, one lane. Reports each hash time
/// to `pool`, which refuses work it could not finish in time. Messages:
/// (hash_atom, password, deadline) -> encoded hash, and (verify_atom,
/// encoded, password, deadline) -> bool; `deadline` is when the sender gives
/// up (steady-clock nanoseconds since its epoch): a request that could not be
/// done by then is answered `unavailable` without hashing.
caf::behavior password_hasher(caf::event_based_actor* self, uint32_t cost,
                              std::weak_ptr<hasher_pool> pool);

/// Spawns the node's region: one per node. `base.region` is filled in by the region.
/// On start it activates every SKU with open reservations, so their expiry timers run.
caf::actor spawn_region(caf::actor_system& sys, entity_context base);

} // namespace shop
