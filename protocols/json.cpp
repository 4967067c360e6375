#include "protocols/json.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <functional>
#include <tuple>

#include <simdjson.h>

#include "protocols/errc.hpp"
#include "protocols/search_words.hpp"

namespace shop {

// -- writer -------------------------------------------------------------------

void json_writer::comma() {
  if (need_comma_)
    out_.push_back(',');
}

json_writer& json_writer::begin_object() {
  comma();
  out_.push_back('{');
  need_comma_ = false;
  return *this;
}

json_writer& json_writer::end_object() {
  out_.push_back('}');
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::begin_array() {
  comma();
  out_.push_back('[');
  need_comma_ = false;
  return *this;
}

json_writer& json_writer::end_array() {
  out_.push_back(']');
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::key(std::string_view name) {
  value(name);
  out_.push_back(':');
  need_comma_ = false;
  return *this;
}

namespace {

/// The length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629:
/// no overlong forms, no surrogates, nothing above U+10FFFF), or 0.
size_t utf8_sequence(std::string_view s) noexcept {
  auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF)
    return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2) || (c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F))
      return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3) || (c == 0xF0 && b(1) < 0x90)
        || (c == 0xF4 && b(1) > 0x8F))
      return 0;
    return 4;
  }
  return 0;
}

} // namespace

void append_json_escaped(std::string& out, std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else if (c < 0x80) {
          out.push_back(static_cast<char>(c));
        } else if (auto n = utf8_sequence(s.substr(i)); n > 0) {
          out.append(s.substr(i, n));
          i += n - 1;
        } else {
          // Text from the JSON decoder is valid UTF-8 already; raw bytes of a
          // request line (the path a 404 names) may not be, and a strict
          // client rejects the whole document: each such byte becomes U+FFFD.
          out += "\\ufffd";
        }
    }
  }
}

json_writer& json_writer::value(std::string_view s) {
  comma();
  out_.push_back('"');
  append_json_escaped(out_, s);
  out_.push_back('"');
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::value(int64_t n) {
  comma();
  out_ += std::to_string(n);
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::value(bool b) {
  comma();
  out_ += b ? "true" : "false";
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::null() {
  comma();
  out_ += "null";
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::time(millis t) {
  return value(format_time(t));
}

// -- time ---------------------------------------------------------------------

namespace {

// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
}

void put_digits(char* out, int64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

} // namespace

// Hand-formatted: this runs for every timestamp of every response.
std::string format_time(millis t) {
  int64_t days = t / 86'400'000;
  int64_t ms_of_day = t % 86'400'000;
  if (ms_of_day < 0) {
    ms_of_day += 86'400'000;
    --days;
  }
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  if (y < 0 || y > 9999) // outside RFC 3339's four-digit years: clamp, never garble
    y = y < 0 ? 0 : 9999;
  char buf[25] = "0000-00-00T00:00:00.000Z";
  put_digits(buf, y, 4);
  put_digits(buf + 5, m, 2);
  put_digits(buf + 8, d, 2);
  put_digits(buf + 11, ms_of_day / 3'600'000, 2);
  put_digits(buf + 14, ms_of_day / 60'000 % 60, 2);
  put_digits(buf + 17, ms_of_day / 1000 % 60, 2);
  put_digits(buf + 20, ms_of_day % 1000, 3);
  return std::string{buf, 24};
}

namespace {

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size())
    return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

int days_in_month(int year, int mon) noexcept {
  static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return mon == 2 && leap ? 29 : days[mon - 1];
}

} // namespace

bool parse_time(std::string_view s, millis& out) {
  int year, mon, day, hour, min, sec;
  if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, mon)
      || s[7] != '-' || !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't')
      || !digits(s, 11, 2, hour) || s[13] != ':' || !digits(s, 14, 2, min) || s[16] != ':'
      || !digits(s, 17, 2, sec))
    return false;
  if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59
      || sec > 60)
    return false; // 2026-02-30 is refused, not read as 2 March
  size_t pos = 19;
  int ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int scale = 100;
    size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      ms += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start || pos - start > 9)
      return false;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':'
        || !digits(s, pos + 4, 2, om) || oh > 23 || om > 59)
      return false;
    offset_min = (oh * 60 + om) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return false;
  }
  if (pos != s.size())
    return false;
  // RFC 3339 allows second 60 for a leap second only, which UTC inserts as
  // 23:59:60: read as the next day's midnight, as POSIX time does. At any
  // other minute `00:00:60` would be taken for `00:01:00`.
  if (sec == 60 && ((hour * 60 + min - offset_min) % 1440 + 1440) % 1440 != 1439)
    return false;
  int64_t days = days_from_civil(year, static_cast<unsigned>(mon), static_cast<unsigned>(day));
  int64_t secs = days * 86400 + hour * 3600 + min * 60 + sec - offset_min * 60;
  // An offset (or a leap second) can carry the instant past a four-digit
  // year, which no answer could show: 9999-12-31T23:00:00-01:00 is refused.
  constexpr int64_t first_ms = -62'167'219'200'000; // 0000-01-01T00:00:00.000Z
  constexpr int64_t last_ms = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z
  int64_t t = secs * 1000 + ms;
  if (t < first_ms || t > last_ms)
    return false;
  out = t;
  return true;
}

bool is_valid_id(std::string_view s) noexcept {
  if (s.empty() || s.size() > 64)
    return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

// -- decoding -----------------------------------------------------------------

namespace {

using namespace simdjson;

caf::error invalid_json(std::string_view why) {
  return make_error(errc::invalid_json, "malformed JSON: " + std::string{why});
}

caf::error invalid_field(std::string_view field, std::string_view why) {
  // An unknown field's name is the client's: a 60 KB one is not echoed whole.
  constexpr size_t shown = 64;
  std::string name{field.substr(0, shown)};
  if (field.size() > shown) {
    while (!name.empty() && (static_cast<unsigned char>(field[name.size()]) & 0xC0) == 0x80)
      name.pop_back(); // cut before a character, not inside one
    name += "...";
  }
  return make_error(errc::validation_failed, "field '" + name + "' " + std::string{why});
}

/// Characters of UTF-8 text: the bytes that begin one ("ééé€" is 4, not 9).
size_t utf8_chars(std::string_view s) noexcept {
  size_t chars = 0;
  for (unsigned char ch : s)
    chars += (ch & 0xC0) != 0x80;
  return chars;
}

/// One object field's value, read with range and length checks.
class field_value {
public:
  field_value(std::string_view name, ondemand::value v) : name_(name), v_(v) {}

  caf::error integer(int64_t lo, int64_t hi, int64_t& out) {
    int64_t n = 0;
    if (v_.get_int64().get(n) != SUCCESS || n < lo || n > hi)
      return invalid_field(name_, "must be an integer from " + std::to_string(lo) + " to "
                                    + std::to_string(hi));
    out = n;
    return caf::none;
  }

  caf::error string(size_t min_len, size_t max_len, std::string& out) {
    std::string_view s;
    if (v_.get_string().get(s) != SUCCESS)
      return invalid_field(name_, "must be a string");
    if (auto err = length_rule(s, min_len, max_len))
      return err;
    out.assign(s);
    return caf::none;
  }

  /// `s` holds `min_len` to `max_len` characters: characters, as the message
  /// says, not bytes (the parser has checked that the text is UTF-8).
  caf::error length_rule(std::string_view s, size_t min_len, size_t max_len) {
    size_t chars = utf8_chars(s);
    if (chars < min_len || chars > max_len)
      return invalid_field(name_, "must be " + std::to_string(min_len) + " to "
                                    + std::to_string(max_len) + " characters long");
    return caf::none;
  }

  /// Text that people read (a product's name, its description): `string`'s
  /// length rule, and no control characters, C0, DEL or C1, but for tab and
  /// line breaks in `multi_line` text. A NUL or a terminal escape in a name
  /// would reach every page, log and export that shows it. Text that must not
  /// be empty must not be blank either: spaces alone name nothing, nor do
  /// no-break, ideographic or zero-width ones (see shows_nothing). A line of
  /// text (a name) loses the white space at its ends, which would only shift
  /// it where it is shown and sort it apart; the length rule counts what is
  /// kept. (Zero-width characters stay: a variation selector or a tag at the
  /// end may belong to an emoji.)
  caf::error text(size_t min_len, size_t max_len, bool multi_line, std::string& out) {
    std::string_view s;
    if (v_.get_string().get(s) != SUCCESS)
      return invalid_field(name_, "must be a string");
    if (multi_line) // kept as given: its length first, as for any string
      if (auto err = length_rule(s, min_len, max_len))
        return err;
    bool blank = true;
    size_t first = s.size(), end = 0; // the span from the first to the last non-white-space
    for (size_t i = 0, len = 0; i < s.size(); i += len) {
      char32_t cp = 0;
      std::tie(cp, len) = decode_utf8_at(s, i);
      if (len == 0) // the parser checked the UTF-8: not expected
        return invalid_field(name_, "must be UTF-8");
      bool line_space = cp == '\t' || cp == '\n' || cp == '\r';
      bool control = cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); // C0, DEL, C1
      if (control && !(multi_line && line_space))
        return invalid_field(name_, multi_line
                                      ? "must not hold control characters but tab and line breaks"
                                      : "must not hold control characters");
      blank = blank && shows_nothing(cp);
      if (!is_white_space(cp)) {
        first = std::min(first, i);
        end = i + len;
      }
    }
    if (min_len > 0 && !s.empty() && blank)
      return invalid_field(name_, "must not be blank");
    if (!multi_line) {
      s = first < end ? s.substr(first, end - first) : std::string_view{};
      if (auto err = length_rule(s, min_len, max_len))
        return err;
    }
    out.assign(s);
    return caf::none;
  }

  caf::error id(std::string& out) {
    if (auto err = string(1, 64, out))
      return err;
    if (!is_valid_id(out))
      return invalid_field(name_, "must match [A-Za-z0-9._-]{1,64}");
    return caf::none;
  }

  /// The id a new product or sale is created under. Not `.` or `..`: as a
  /// path segment, every URL resolver takes those out (RFC 3986 5.2.4), and
  /// no client could reach /products/.. again. (Ids that exist are looked up
  /// as they are.)
  caf::error new_id(std::string& out) {
    if (auto err = id(out))
      return err;
    if (out == "." || out == "..")
      return invalid_field(name_, "must not be . or .., which no URL keeps");
    return caf::none;
  }

  caf::error time(millis& out) {
    std::string s;
    if (auto err = string(1, 64, s))
      return err;
    if (!parse_time(s, out))
      return invalid_field(name_, "must be an RFC 3339 timestamp");
    return caf::none;
  }

  caf::error boolean(bool& out) {
    if (v_.get_bool().get(out) != SUCCESS)
      return invalid_field(name_, "must be true or false");
    return caf::none;
  }

  /// An array of `{"sku","quantity"}` objects: 1..max_order_lines lines,
  /// each SKU once, quantities 1..max_purchase_quantity.
  caf::error order_lines(std::vector<order_line>& out) {
    ondemand::array arr;
    if (v_.get_array().get(arr) != SUCCESS)
      return invalid_field(name_, "must be an array of {\"sku\",\"quantity\"} objects");
    for (auto element : arr) {
      ondemand::object obj;
      if (element.get_object().get(obj) != SUCCESS)
        return invalid_field(name_, "must be an array of {\"sku\",\"quantity\"} objects");
      if (out.size() == static_cast<size_t>(max_order_lines))
        return invalid_field(name_, "may list at most " + std::to_string(max_order_lines)
                                      + " items");
      order_line line;
      bool has_sku = false, has_quantity = false;
      for (auto field : obj) {
        std::string_view key;
        if (auto err = field.unescaped_key().get(key))
          return invalid_json(error_message(err));
        ondemand::value v;
        if (auto err = field.value().get(v))
          return invalid_json(error_message(err));
        if (key == "sku" && !has_sku) {
          has_sku = true;
          if (auto err = field_value{"items[].sku", v}.id(line.sku))
            return err;
        } else if (key == "quantity" && !has_quantity) {
          has_quantity = true;
          if (auto err = field_value{"items[].quantity", v}.integer(1, max_purchase_quantity,
                                                                    line.quantity))
            return err;
        } else {
          return invalid_field("items[]." + std::string{key},
                               key == "sku" || key == "quantity" ? "appears twice"
                                                                 : "is not accepted here");
        }
      }
      if (!has_sku)
        return invalid_field("items[].sku", "is required");
      if (!has_quantity)
        return invalid_field("items[].quantity", "is required");
      for (auto& prev : out)
        if (prev.sku == line.sku)
          return invalid_field(name_, "lists sku '" + line.sku + "' twice");
      out.push_back(std::move(line));
    }
    if (out.empty())
      return invalid_field(name_, "must list at least one item");
    return caf::none;
  }

private:
  std::string_view name_;
  ondemand::value v_;
};

using field_handler = std::function<caf::error(std::string_view key, field_value& v, bool& known)>;

/// The index just past the string that opens at `s[open]` (a '"'), its
/// escapes skipped; past the end of `s` when the string is not closed.
size_t past_string(std::string_view s, size_t open) {
  size_t i = open + 1;
  for (; i < s.size() && s[i] != '"'; ++i)
    if (s[i] == '\\')
      ++i;
  return i + 1;
}

/// Whether every number in `s` outside its strings is a JSON number (RFC 8259
/// section 6) and ends where a value may end; if so, `zeros` is `s` with each
/// number written as `0` and spaces, which any parser takes. Only an error's
/// double check runs it.
bool numbers_are_well_formed(std::string_view s, std::string& zeros) {
  zeros.assign(s);
  size_t i = 0;
  auto digit = [&] { return i < s.size() && s[i] >= '0' && s[i] <= '9'; };
  auto digits = [&] {
    if (!digit())
      return false;
    while (digit())
      ++i;
    return true;
  };
  while (i < s.size()) {
    if (s[i] == '"') {
      i = past_string(s, i);
      continue;
    }
    if (s[i] != '-' && !digit()) {
      ++i;
      continue;
    }
    const size_t begin = i;
    if (s[i] == '-')
      ++i;
    if (i < s.size() && s[i] == '0')
      ++i; // no leading zeros: `01` is not a number
    else if (!digits())
      return false;
    if (i < s.size() && s[i] == '.' && (++i, !digits()))
      return false;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-'))
        ++i;
      if (!digits())
        return false;
    }
    if (i < s.size() && std::string_view{",}] \t\n\r"}.find(s[i]) == std::string_view::npos)
      return false; // `0x1`, `1x`, `1true`
    zeros.replace(begin, i - begin, i - begin, ' ');
    zeros[begin] = '0';
  }
  return true;
}

/// The full (DOM) parser that double-checks a refused body, one per thread.
dom::parser& checking_parser() {
  thread_local dom::parser parser;
  return parser;
}

/// Whether `body` is one well-formed JSON object followed by more than
/// whitespace: the on-demand parser refuses `{"quantity":1}x` as an object
/// that "ended early", which is not what is wrong with it. (Strings are
/// skipped, so that a brace in one does not count; only an error runs this.)
bool is_object_with_trailing_content(std::string_view body) {
  constexpr std::string_view ws = " \t\n\r";
  size_t i = body.find_first_not_of(ws);
  if (i == std::string_view::npos || body[i] != '{')
    return false;
  size_t depth = 0;
  while (i < body.size()) {
    char c = body[i];
    if (c == '"') {
      i = past_string(body, i);
      continue;
    }
    if (c == '{' || c == '[')
      ++depth;
    else if ((c == '}' || c == ']') && --depth == 0)
      break;
    ++i;
  }
  if (i >= body.size() || body.find_first_not_of(ws, i + 1) == std::string_view::npos)
    return false;
  dom::element ignored;
  return !checking_parser().parse(body.substr(0, i + 1)).get(ignored);
}

caf::error walk_fields(std::string_view body, const field_handler& on_field, bool empty_is_object);

/// Parses `body` as one JSON object and hands each field to `on_field`.
/// Refuses malformed JSON, non-objects, duplicate and unknown fields and trailing content.
/// The on-demand parser validates lazily, so a field error may hide malformed
/// JSON after it: every error is double-checked with a full parse, which
/// decides between invalid_json and the field's validation error (off the
/// hot path: only requests that fail pay for it).
caf::error for_each_field(std::string_view body, const field_handler& on_field,
                          bool empty_is_object = false) {
  auto err = walk_fields(body, on_field, empty_is_object);
  if (err && describe(err).code != errc::invalid_json) {
    dom::parser& full = checking_parser();
    dom::element ignored;
    auto parse_err = full.parse(body).get(ignored);
    // The parser says the same of a number too large for it, which is JSON
    // (the field's error stands), as of `0x1` or `01`, which is not. It stops
    // at that number: with every number made 0, a second parse finds any
    // other fault after it (a missing comma).
    if (parse_err == NUMBER_ERROR || parse_err == NUMBER_OUT_OF_RANGE) {
      std::string zeros;
      if (numbers_are_well_formed(body, zeros))
        parse_err = full.parse(zeros).get(ignored);
    }
    if (parse_err)
      return invalid_json(error_message(parse_err));
  }
  return err;
}

caf::error walk_fields(std::string_view body, const field_handler& on_field,
                       bool empty_is_object) {
  if (body.empty()) {
    if (empty_is_object)
      return caf::none;
    return invalid_json("the request body is empty");
  }
  thread_local ondemand::parser parser;
  padded_string input{body};
  ondemand::document doc;
  if (auto err = parser.iterate(input).get(doc))
    return invalid_json(error_message(err));
  ondemand::object obj;
  if (auto err = doc.get_object().get(obj))
    return err == INCORRECT_TYPE ? make_error(errc::validation_failed,
                                              "the request body must be a JSON object")
           : is_object_with_trailing_content(body)
               ? invalid_json("trailing content after the JSON object")
               : invalid_json(error_message(err));
  std::vector<std::string> seen;
  for (auto field : obj) {
    std::string_view key;
    if (auto err = field.unescaped_key().get(key))
      return invalid_json(error_message(err));
    for (auto& k : seen)
      if (k == key)
        return invalid_field(key, "appears twice");
    seen.emplace_back(key);
    ondemand::value v;
    if (auto err = field.value().get(v))
      return invalid_json(error_message(err));
    field_value fv{seen.back(), v};
    bool known = true;
    if (auto err = on_field(seen.back(), fv, known))
      return err;
    if (!known)
      return invalid_field(seen.back(), "is not accepted here");
  }
  // A single-pass walk validated the object; anything after it is an error.
  if (auto loc = doc.current_location(); !loc.error())
    return invalid_json("trailing content after the JSON object");
  return caf::none;
}

caf::error missing(std::string_view field) {
  return invalid_field(field, "is required");
}

constexpr size_t min_password_chars = 8; // at registration; a login takes 1 or more
constexpr size_t max_password_chars = 128;

} // namespace

caf::expected<login_user> decode_credentials(std::string_view body, bool strict) {
  login_user out;
  bool has_user = false, has_pass = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "username") {
      has_user = true;
      return v.string(strict ? 3 : 1, 32, out.username);
    }
    if (k == "password") {
      has_pass = true;
      return v.string(strict ? min_password_chars : 1, max_password_chars, out.password);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!has_user)
    return missing("username");
  if (!has_pass)
    return missing("password");
  if (strict && !is_valid_username(out.username))
    return invalid_field("username", "must match [a-z0-9_]{3,32}");
  return out;
}

bool is_valid_username(std::string_view s) noexcept {
  if (s.size() < 3 || s.size() > 32)
    return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

bool is_valid_new_password(std::string_view s) noexcept {
  if (!simdjson::validate_utf8(s.data(), s.size()))
    return false; // no JSON body could carry it to a login
  size_t chars = utf8_chars(s);
  return chars >= min_password_chars && chars <= max_password_chars;
}

constexpr int64_t max_price_cents = 1'000'000'000'000; // 10 billion units of currency
constexpr int64_t max_stock = 1'000'000'000;

caf::expected<product_record> decode_create_product(std::string_view body) {
  product_record out;
  bool has_sku = false, has_name = false, has_price = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "sku") {
      has_sku = true;
      return v.new_id(out.sku);
    }
    if (k == "name") {
      has_name = true;
      return v.text(1, 200, false, out.name);
    }
    if (k == "description")
      return v.text(0, 4000, true, out.description);
    if (k == "price_cents") {
      has_price = true;
      return v.integer(0, max_price_cents, out.price_cents);
    }
    if (k == "stock")
      return v.integer(0, max_stock, out.stocked);
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!has_sku)
    return missing("sku");
  if (!has_name)
    return missing("name");
  if (!has_price)
    return missing("price_cents");
  return out;
}

caf::expected<update_product> decode_update_product(std::string_view body) {
  update_product out;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "name") {
      out.has_name = true;
      return v.text(1, 200, false, out.name);
    }
    if (k == "description") {
      out.has_description = true;
      return v.text(0, 4000, true, out.description);
    }
    if (k == "price_cents") {
      out.has_price = true;
      return v.integer(0, max_price_cents, out.price_cents);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!out.has_name && !out.has_description && !out.has_price)
    return make_error(errc::validation_failed,
                      "give at least one of 'name', 'description', 'price_cents'");
  return out;
}

namespace {

/// A body that is exactly `{"quantity"}`, lo..hi.
caf::expected<int64_t> decode_quantity(std::string_view body, int64_t lo, int64_t hi) {
  int64_t quantity = 0;
  bool has_quantity = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "quantity") {
      has_quantity = true;
      return v.integer(lo, hi, quantity);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!has_quantity)
    return missing("quantity");
  return quantity;
}

} // namespace

caf::expected<int64_t> decode_restock(std::string_view body) {
  return decode_quantity(body, 1, max_stock);
}

caf::expected<sale_terms> decode_create_sale(std::string_view body) {
  sale_terms out;
  int seen = 0;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "id") {
      seen |= 1;
      return v.new_id(out.id);
    }
    if (k == "sku") {
      seen |= 2;
      return v.id(out.sku);
    }
    if (k == "price_cents") {
      seen |= 4;
      return v.integer(0, max_price_cents, out.price_cents);
    }
    if (k == "quantity") {
      seen |= 8;
      return v.integer(1, max_stock, out.quantity);
    }
    if (k == "per_user_limit") {
      seen |= 16;
      return v.integer(1, max_purchase_quantity, out.per_user_limit);
    }
    if (k == "starts_at") {
      seen |= 32;
      return v.time(out.starts_at);
    }
    if (k == "ends_at") {
      seen |= 64;
      return v.time(out.ends_at);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  const char* names[] = {"id", "sku", "price_cents", "quantity", "per_user_limit", "starts_at",
                         "ends_at"};
  for (int i = 0; i < 7; ++i)
    if ((seen & (1 << i)) == 0)
      return missing(names[i]);
  if (out.ends_at <= out.starts_at)
    return invalid_field("ends_at", "must be after starts_at");
  return out;
}

caf::expected<int64_t> decode_purchase(std::string_view body) {
  int64_t quantity = 1;
  auto err = for_each_field(
    body,
    [&](std::string_view k, field_value& v, bool& known) {
      if (k == "quantity")
        return v.integer(1, max_purchase_quantity, quantity);
      known = false;
      return caf::error{};
    },
    true);
  if (err)
    return err;
  return quantity;
}

caf::expected<crash_request> decode_crash_request(std::string_view body) {
  crash_request out;
  bool has_kind = false, has_id = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "kind") {
      has_kind = true;
      return v.string(1, 16, out.kind);
    }
    if (k == "id") {
      has_id = true;
      return v.id(out.id);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!has_kind)
    return missing("kind");
  if (!has_id)
    return missing("id");
  return out;
}

caf::expected<int64_t> decode_storage_fault(std::string_view body) {
  int64_t groups = 0;
  bool has_groups = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "groups") {
      has_groups = true;
      return v.integer(1, 1000, groups);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!has_groups)
    return missing("groups");
  return groups;
}

caf::expected<checkout> decode_checkout(std::string_view body) {
  checkout out;
  bool has_items = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "items") {
      has_items = true;
      return v.order_lines(out.items);
    }
    if (k == "from_cart")
      return v.boolean(out.from_cart);
    if (k == "coupon") {
      std::string code;
      if (auto err = v.string(1, 64, code))
        return err;
      // No coupon can exist yet (coupons are not built): refuse rather than ignore it.
      return invalid_field("coupon", "names no valid coupon ('" + code + "')");
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (has_items == out.from_cart)
    return make_error(errc::validation_failed,
                      "give either 'items' or \"from_cart\": true");
  return out;
}

caf::expected<int64_t> decode_cart_quantity(std::string_view body) {
  return decode_quantity(body, 0, max_cart_quantity);
}

caf::expected<std::string> decode_pay(std::string_view body) {
  std::string method;
  bool has_method = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "method") {
      has_method = true;
      return v.string(1, 16, method);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!has_method)
    return missing("method");
  if (method != "card" && method != "alipay" && method != "wechat")
    return invalid_field("method", "must be card, alipay or wechat");
  return method;
}

namespace {

caf::error payment_status(field_value& v, bool& succeeded) {
  std::string status;
  if (auto err = v.string(1, 16, status))
    return err;
  if (status != "succeeded" && status != "failed")
    return invalid_field("status", "must be succeeded or failed");
  succeeded = status == "succeeded";
  return caf::none;
}

} // namespace

caf::expected<payment_callback> decode_payment_callback(std::string_view body) {
  payment_callback out;
  int seen = 0;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "payment_id") {
      seen |= 1;
      return v.id(out.payment_id);
    }
    if (k == "order_id") {
      seen |= 2;
      return v.id(out.order_id);
    }
    if (k == "status") {
      seen |= 4;
      return payment_status(v, out.succeeded);
    }
    if (k == "amount_cents") {
      seen |= 8;
      return v.integer(0, std::numeric_limits<int64_t>::max(), out.amount_cents);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  const char* names[] = {"payment_id", "order_id", "status", "amount_cents"};
  for (int i = 0; i < 4; ++i)
    if ((seen & (1 << i)) == 0)
      return missing(names[i]);
  return out;
}

caf::expected<bool> decode_sandbox_complete(std::string_view body) {
  bool succeeded = false, has_status = false;
  auto err = for_each_field(body, [&](std::string_view k, field_value& v, bool& known) {
    if (k == "status") {
      has_status = true;
      return payment_status(v, succeeded);
    }
    known = false;
    return caf::error{};
  });
  if (err)
    return err;
  if (!has_status)
    return missing("status");
  return succeeded;
}

std::string encode_payment_callback(const payment_callback& x) {
  json_writer w;
  w.begin_object()
    .field("payment_id", x.payment_id)
    .field("order_id", x.order_id)
    .field("status", x.succeeded ? "succeeded" : "failed")
    .field("amount_cents", x.amount_cents)
    .end_object();
  return w.take();
}

// -- encoding -----------------------------------------------------------------

std::string to_json(const inventory_view& x) {
  json_writer w;
  w.begin_object()
    .field("sku", x.sku)
    .field("available", x.available)
    .field("reserved", x.reserved)
    .field("sold", x.sold)
    .end_object();
  return w.take();
}

namespace {

/// A product with its stock counts, or with them null when `stock` is null
/// (unknown: a catalog page whose SKU did not answer).
std::string product_json(const product_record& p, const inventory_view* stock) {
  json_writer w;
  w.begin_object()
    .field("sku", p.sku)
    .field("name", p.name)
    .field("price_cents", p.price_cents)
    .field("description", p.description);
  if (stock) {
    w.field("available", stock->available)
      .field("reserved", stock->reserved)
      .field("sold", stock->sold);
  } else {
    w.key("available").null();
    w.key("reserved").null();
    w.key("sold").null();
  }
  w.end_object();
  return w.take();
}

} // namespace

std::string to_json(const product_view& x) {
  return product_json(x.product, &x.inventory);
}

std::string to_json(const sale_view& x) {
  json_writer w;
  w.begin_object()
    .field("id", x.terms.id)
    .field("sku", x.terms.sku)
    .field("price_cents", x.terms.price_cents)
    .field("quantity", x.terms.quantity)
    .field("remaining", x.remaining)
    .field("per_user_limit", x.terms.per_user_limit);
  w.key("starts_at").time(x.terms.starts_at);
  w.key("ends_at").time(x.terms.ends_at);
  w.field("status", x.status).end_object();
  return w.take();
}

std::string to_json(const order_record& x) {
  json_writer w;
  w.begin_object()
    .field("order_id", x.order_id)
    .field("user_id", x.user_id)
    .field("status", to_string(x.status));
  w.key("items").begin_array();
  for (auto& line : x.items)
    w.begin_object()
      .field("sku", line.sku)
      .field("quantity", line.quantity)
      .field("price_cents", line.price_cents)
      .end_object();
  w.end_array();
  w.field("total_cents", x.total_cents).field("discount_cents", x.discount_cents);
  w.key("created_at").time(x.created_at);
  w.key("expires_at").time(x.expires_at);
  if (!x.flash_sale_id.empty())
    w.field("flash_sale_id", x.flash_sale_id);
  if (!x.payment_id.empty())
    w.field("payment_id", x.payment_id).field("payment_method", x.payment_method);
  if (x.paid_at != 0)
    w.key("paid_at").time(x.paid_at);
  w.end_object();
  return w.take();
}

std::string to_json(const cart_view& x) {
  json_writer w;
  w.begin_object().key("items").begin_array();
  for (auto& line : x.items)
    w.begin_object()
      .field("sku", line.sku)
      .field("quantity", line.quantity)
      .field("price_cents", line.price_cents)
      .field("line_total_cents", line.quantity * line.price_cents)
      .end_object();
  w.end_array().field("total_cents", x.total_cents).end_object();
  return w.take();
}

std::string to_json(const product_page& x) {
  std::string out = R"({"items":[)";
  for (size_t i = 0; i < x.items.size(); ++i) {
    if (i > 0)
      out.push_back(',');
    auto& item = x.items[i];
    out += product_json(item.view.product, item.stock_known ? &item.view.inventory : nullptr);
  }
  out += "],";
  json_writer w;
  w.key("next_cursor");
  if (x.next_cursor.empty())
    w.null();
  else
    w.value(x.next_cursor);
  out += w.take();
  out.push_back('}');
  return out;
}

std::string to_json(const payment_view& x, std::string_view pay_url) {
  json_writer w;
  w.begin_object()
    .field("payment_id", x.payment_id)
    .field("order_id", x.order_id)
    .field("amount_cents", x.amount_cents)
    .field("method", x.method);
  w.key("pay_url");
  if (pay_url.empty())
    w.null();
  else
    w.value(pay_url);
  w.end_object();
  return w.take();
}

std::string to_json(const user_view& x) {
  json_writer w;
  w.begin_object()
    .field("user_id", x.user_id)
    .field("username", x.username)
    .field("role", to_string(x.role));
  w.key("created_at").time(x.created_at);
  w.end_object();
  return w.take();
}

std::string error_json(std::string_view code, std::string_view message,
                       std::string_view request_id) {
  json_writer w;
  w.begin_object().key("error").begin_object();
  w.field("code", code).field("message", message).field("request_id", request_id);
  w.end_object().end_object();
  return w.take();
}

} // namespace shop
