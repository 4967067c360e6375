#include "protocols/search_words.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace shop {

namespace {

struct fold_run {
  char32_t first;
  char32_t last;
  int32_t offset;
  uint8_t stride;
};

struct code_range {
  char32_t first;
  char32_t last;
};

#include "protocols/unicode_tables.inc"

void encode_to(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

/// The entry of `table` whose range may hold `cp` (the last one that begins
/// at or before it), or null.
template <class T, size_t N>
const T* range_of(const T (&table)[N], char32_t cp) {
  auto it = std::upper_bound(std::begin(table), std::end(table), cp,
                             [](char32_t c, const T& r) { return c < r.first; });
  if (it == std::begin(table))
    return nullptr;
  --it;
  return cp <= it->last ? &*it : nullptr;
}

} // namespace

std::pair<char32_t, size_t> decode_utf8_at(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80)
    return {b, 1};
  size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
  if (len == 0 || b > 0xF4 || i + len > s.size())
    return {0, 0};
  char32_t cp = b & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80)
      return {0, 0};
    cp = (cp << 6) | (c & 0x3F);
  }
  static constexpr char32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return {0, 0};
  return {cp, len};
}

bool shows_nothing(char32_t cp) {
  switch (cp) {
    case 0x20: case 0x85: case 0xA0: case 0x034F: case 0x115F: case 0x1160: case 0x1680:
    case 0x17B4: case 0x17B5: case 0x180F: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x2800: case 0x3000: case 0x3164: case 0xFFA0:
      return true;
    // Format characters that are drawn (Prepended_Concatenation_Mark): the
    // Arabic number signs, the end of ayah, the Syriac abbreviation mark...
    case 0x0600: case 0x0601: case 0x0602: case 0x0603: case 0x0604: case 0x0605: case 0x06DD:
    case 0x070F: case 0x0890: case 0x0891: case 0x08E2: case 0x110BD: case 0x110CD:
      return false;
    default:
      return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x2000 && cp <= 0x200B) // spaces, zero-width
             || (cp >= 0x180B && cp <= 0x180D) || (cp >= 0xFE00 && cp <= 0xFE0F)
             || (cp >= 0xE0100 && cp <= 0xE01EF)                // variation selectors
             || range_of(ignored_ranges, cp) != nullptr;        // format characters
  }
}

bool is_white_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680
         || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F
         || cp == 0x205F || cp == 0x3000;
}

char32_t fold_case(char32_t cp) {
  if (cp < 0x80)
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  auto r = range_of(fold_runs, cp);
  if (r == nullptr || (cp - r->first) % r->stride != 0)
    return cp;
  return static_cast<char32_t>(static_cast<int32_t>(cp) + r->offset);
}

bool is_word_char(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z');
  return range_of(word_ranges, cp) != nullptr;
}

std::vector<std::string> search_words(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  auto end_word = [&] {
    if (!word.empty()) {
      out.push_back(std::move(word));
      word.clear();
    }
  };
  for (size_t i = 0; i < text.size();) {
    auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      if (is_word_char(b))
        word.push_back(static_cast<char>(fold_case(b)));
      else
        end_word();
      ++i;
      continue;
    }
    auto [cp, len] = decode_utf8_at(text, i);
    if (len == 0) { // not UTF-8: kept as it is
      word.push_back(text[i]);
      ++i;
      continue;
    }
    if (is_word_char(cp))
      encode_to(word, fold_case(cp));
    else if (range_of(ignored_ranges, cp) == nullptr) // a soft hyphen, a joiner: nothing
      end_word();
    i += len;
  }
  end_word();
  return out;
}

} // namespace shop
