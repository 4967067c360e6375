#pragma once
// The on-disk encoding of domain records: a format byte, then each field in
// declaration order (zig-zag varints for integers, length-prefixed strings).
// Decoding is total: any truncated or unknown input returns false and leaves
// no partially trusted record behind.

#include <string>
#include <string_view>

#include "protocols/types.hpp"

namespace shop {

[[nodiscard]] std::string encode(const product_record& x);
[[nodiscard]] std::string encode(const sale_terms& x);
[[nodiscard]] std::string encode(const ledger_entry& x);
[[nodiscard]] std::string encode(const order_record& x);
[[nodiscard]] std::string encode(const user_record& x);
[[nodiscard]] std::string encode(const cart_record& x);
[[nodiscard]] std::string encode(const sku_tally& x);
[[nodiscard]] std::string encode(const creation_receipt& x);
[[nodiscard]] std::string encode(const restock_receipt& x);
/// First answers, kept in a creation_receipt.
[[nodiscard]] std::string encode(const product_view& x);
[[nodiscard]] std::string encode(const sale_view& x);
[[nodiscard]] std::string encode(const user_view& x);
/// A single count (a buyer's units sold in a sale).
[[nodiscard]] std::string encode_count(int64_t n);

/// Each returns false on malformed input.
[[nodiscard]] bool decode(std::string_view in, product_record& x);
[[nodiscard]] bool decode(std::string_view in, sale_terms& x);
[[nodiscard]] bool decode(std::string_view in, ledger_entry& x);
[[nodiscard]] bool decode(std::string_view in, order_record& x);
[[nodiscard]] bool decode(std::string_view in, user_record& x);
[[nodiscard]] bool decode(std::string_view in, cart_record& x);
[[nodiscard]] bool decode(std::string_view in, sku_tally& x);
[[nodiscard]] bool decode(std::string_view in, creation_receipt& x);
[[nodiscard]] bool decode(std::string_view in, restock_receipt& x);
[[nodiscard]] bool decode(std::string_view in, product_view& x);
[[nodiscard]] bool decode(std::string_view in, sale_view& x);
[[nodiscard]] bool decode(std::string_view in, user_view& x);
[[nodiscard]] bool decode_count(std::string_view in, int64_t& n);

} // namespace shop
