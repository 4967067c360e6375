#pragma once
// Small wrappers over OpenSSL: HMAC-SHA256, random ids, base64url, constant-time compare.

#include <string>
#include <string_view>

namespace shop {

/// Raw 32-byte HMAC-SHA256 of `data` under `key`.
[[nodiscard]] std::string hmac_sha256(std::string_view key, std::string_view data);

/// Lower-case hex of `bytes`.
[[nodiscard]] std::string to_hex(std::string_view bytes);

/// `n` cryptographically random bytes as hex (2n characters). Throws on RNG failure.
[[nodiscard]] std::string random_hex(size_t n);

/// Like random_hex, for ids made on hot paths (order ids): the bytes come from
/// a per-thread buffer that one RAND_bytes call refills per 4 KiB, instead of
/// one locked DRBG call per id. Not for secrets, and not fork-safe (shopd
/// never forks). `n` is at most 64.
[[nodiscard]] std::string random_id_hex(size_t n);

/// A new order's id when no Idempotency-Key names it: 36 hex digits, the
/// first 12 the time in milliseconds since 1970, then 96 random bits (from
/// random_id_hex; API.md asks for at least 96). Ids made later sort later, so
/// storage inserts a new order next to the previous ones instead of at a
/// random place (storage/store.cpp). Still unguessable and not sequential; the
/// time it shows is the order's `created_at` anyway.
[[nodiscard]] std::string new_order_id();

[[nodiscard]] std::string base64url_encode(std::string_view bytes);

/// Returns false on characters outside the base64url alphabet (padding is
/// refused too) and on a text no encoder writes (non-zero bits after the last
/// byte): each byte string has exactly one text.
[[nodiscard]] bool base64url_decode(std::string_view text, std::string& out);

/// Compares without an early exit, so the time taken does not reveal a prefix.
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

/// The id of the order that (user, sale, idempotency key) names: a keyed hash
/// under the server secret, 128 bits as hex. Unguessable, and a retry lands on
/// the same id. The sale is part of it, so only the one actor that decides the
/// sale's purchases can ever create that id.
[[nodiscard]] std::string derive_order_id(std::string_view secret, std::string_view user_id,
                                          std::string_view sale_id,
                                          std::string_view idempotency_key);

} // namespace shop
