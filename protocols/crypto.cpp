#include "protocols/crypto.hpp"

#include <chrono>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace shop {

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

std::string random_hex(size_t n) {
  std::string buf(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(buf.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return to_hex(buf);
}

std::string random_id_hex(size_t n) {
  struct pool {
    unsigned char bytes[4096];
    size_t used = sizeof(bytes);
  };
  thread_local pool p;
  if (n > 64)
    throw std::invalid_argument("random_id_hex: at most 64 bytes");
  if (p.used + n > sizeof(p.bytes)) {
    if (RAND_bytes(p.bytes, sizeof(p.bytes)) != 1)
      throw std::runtime_error("RAND_bytes failed");
    p.used = 0;
  }
  std::string_view out{reinterpret_cast<const char*>(p.bytes + p.used), n};
  p.used += n; // each byte is handed out once
  return to_hex(out);
}

std::string new_order_id() {
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  char time[6]; // big-endian, so that the hex sorts like the number
  for (int i = 5; i >= 0; --i, millis >>= 8)
    time[i] = static_cast<char>(millis & 0xff);
  return to_hex({time, sizeof(time)}) + random_id_hex(12);
}

std::string base64url_encode(std::string_view in) {
  static constexpr char table[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out.push_back(table[(v >> 18) & 63]);
    out.push_back(table[(v >> 12) & 63]);
    out.push_back(table[(v >> 6) & 63]);
    out.push_back(table[v & 63]);
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out.push_back(table[(v >> 18) & 63]);
    out.push_back(table[(v >> 12) & 63]);
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out.push_back(table[(v >> 18) & 63]);
    out.push_back(table[(v >> 12) & 63]);
    out.push_back(table[(v >> 6) & 63]);
  }
  return out;
}

bool base64url_decode(std::string_view in, std::string& out) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
  };
  if (in.size() % 4 == 1)
    return false;
  out.clear();
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = val(c);
    if (v < 0)
      return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // The bits left over after the last byte must be zero, as the encoder
  // writes them: else several texts would decode to the same bytes (a token
  // with its signature's last character changed would still verify).
  return (acc & ((1u << bits) - 1)) == 0;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size())
    return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string derive_order_id(std::string_view secret, std::string_view user_id,
                            std::string_view sale_id, std::string_view idempotency_key) {
  std::string msg;
  msg.reserve(user_id.size() + sale_id.size() + idempotency_key.size() + 8);
  msg.append("order\n").append(user_id).push_back('\n');
  msg.append(sale_id).push_back('\n');
  msg.append(idempotency_key);
  return to_hex(hmac_sha256(secret, msg).substr(0, 16));
}

} // namespace shop
