#pragma once
// The key schema. Every entity key is `<kind>/<shard>/<id>[/<sub-id>]` with the
// shard as four hex digits, so one shard of one kind is one contiguous key
// range (handoff = range scan + range delete). Ids never contain '/'.

#include <cstdint>
#include <string>
#include <string_view>

namespace shop::keys {

/// Stable across builds and platforms (FNV-1a 64); never change it for a deployment.
[[nodiscard]] uint64_t stable_hash(std::string_view id) noexcept;

[[nodiscard]] inline uint32_t shard_of(std::string_view id, uint32_t shard_count) noexcept {
  return static_cast<uint32_t>(stable_hash(id) % shard_count);
}

/// `<kind>/<shard>/` for the shard of `id`: the prefix every key of that entity starts with.
[[nodiscard]] std::string shard_prefix(std::string_view kind, uint32_t shard);

/// `<kind>/<shard of id>/<id>`.
[[nodiscard]] std::string entity(std::string_view kind, std::string_view id, uint32_t shard_count);

/// `<kind>/<shard of id>/<id>/<sub>`: a child record of an entity (its shard is the parent's).
[[nodiscard]] std::string child(std::string_view kind, std::string_view id, std::string_view sub,
                                uint32_t shard_count);

/// `<kind>/<shard of id>/<id>/`: the prefix of all children of an entity.
[[nodiscard]] std::string children_prefix(std::string_view kind, std::string_view id,
                                          uint32_t shard_count);

// Kinds (three letters keep keys short).
inline constexpr std::string_view product = "sku";       // sku/<s>/<sku> -> product_record
inline constexpr std::string_view ledger = "led";        // led/<s>/<sku>/<order_id> -> ledger_entry (reserved)
inline constexpr std::string_view settled = "lds";       // lds/<s>/<sku>/<order_id> -> ledger_entry (sold or released)
inline constexpr std::string_view tally = "tly";         // tly/<s>/<sku> -> sku_tally
inline constexpr std::string_view sale_buyer = "sbu";    // sbu/<s>/<sku>/<sale_id>/<user_id> -> units sold
inline constexpr std::string_view sku_sale = "sks";      // sks/<s>/<sku>/<sale_id> -> sale_terms
inline constexpr std::string_view open_skus = "opn";     // opn/<s>/<sku> -> "" while reservations are open
inline constexpr std::string_view sale = "sal";          // sal/<s>/<sale_id> -> sale_terms
inline constexpr std::string_view order = "ord";         // ord/<s>/<order_id> -> order_record
inline constexpr std::string_view user = "usr";          // usr/<s>/<username> -> user_record
inline constexpr std::string_view cart = "crt";          // crt/<s>/<user_id> -> cart_record
/// rcp/<s>/<id>/<entity kind> -> creation_receipt (the shard is the entity's);
/// rcp/<s>/<sku>/sku/restock/<hash of requester and key> -> restock_receipt
inline constexpr std::string_view receipt = "rcp";

/// Node-wide settings and secrets: `meta/<name>`.
[[nodiscard]] std::string meta(std::string_view name);

} // namespace shop::keys
