#include "storage/keys.hpp"

#include "protocols/crypto.hpp"

namespace shop::keys {

uint64_t stable_hash(std::string_view id) noexcept {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string shard_prefix(std::string_view kind, uint32_t shard) {
  const char bytes[2] = {static_cast<char>(shard >> 8), static_cast<char>(shard)};
  std::string out;
  out.reserve(kind.size() + 6 + 48); // room for an id, so callers rarely reallocate
  out.append(kind).push_back('/');
  out.append(to_hex({bytes, 2})).push_back('/');
  return out;
}

std::string entity(std::string_view kind, std::string_view id, uint32_t shard_count) {
  auto out = shard_prefix(kind, shard_of(id, shard_count));
  out.append(id);
  return out;
}

std::string child(std::string_view kind, std::string_view id, std::string_view sub,
                  uint32_t shard_count) {
  auto out = children_prefix(kind, id, shard_count);
  out.append(sub);
  return out;
}

std::string children_prefix(std::string_view kind, std::string_view id, uint32_t shard_count) {
  auto out = entity(kind, id, shard_count);
  out.push_back('/');
  return out;
}

std::string meta(std::string_view name) {
  std::string out{"meta/"};
  out.append(name);
  return out;
}

} // namespace shop::keys
