#include "protocols/record_codec.hpp"

#include <cstdint>

namespace shop {
namespace {

constexpr uint8_t format_v1 = 1;
/// Orders with payment fields (v1 orders have none); cart lines with the
/// time they were last set.
constexpr uint8_t format_v2 = 2;
/// Orders with their source (checkout items or cart); carts with the
/// checkout that holds their lines.
constexpr uint8_t format_v3 = 3;

class writer {
public:
  explicit writer(uint8_t format = format_v1) { out_.push_back(static_cast<char>(format)); }
  writer& u(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  writer& i(int64_t v) { return u((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  writer& s(std::string_view v) {
    u(v.size());
    out_.append(v.data(), v.size());
    return *this;
  }
  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

class reader {
public:
  explicit reader(std::string_view in, uint8_t newest = format_v1) : in_(in) {
    if (in_.empty() || static_cast<uint8_t>(in_[0]) < format_v1
        || static_cast<uint8_t>(in_[0]) > newest) {
      ok_ = false;
    } else {
      format_ = static_cast<uint8_t>(in_[0]);
      pos_ = 1;
    }
  }
  uint8_t format() const noexcept { return format_; }
  reader& u(uint64_t& v) {
    v = 0;
    for (int shift = 0; ok_; shift += 7) {
      if (pos_ >= in_.size() || shift > 63) {
        ok_ = false;
        break;
      }
      auto byte = static_cast<uint8_t>(in_[pos_++]);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0)
        break;
    }
    return *this;
  }
  reader& i(int64_t& v) {
    uint64_t raw = 0;
    u(raw);
    v = static_cast<int64_t>((raw >> 1) ^ (~(raw & 1) + 1));
    return *this;
  }
  reader& s(std::string& v) {
    uint64_t n = 0;
    u(n);
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return *this;
    }
    v.assign(in_.data() + pos_, n);
    pos_ += n;
    return *this;
  }
  template <class Enum>
  reader& e(Enum& v, uint8_t max) {
    uint64_t raw = 0;
    u(raw);
    if (raw > max)
      ok_ = false;
    v = static_cast<Enum>(raw);
    return *this;
  }
  /// True if every field decoded and nothing is left over.
  bool done() const { return ok_ && pos_ == in_.size(); }

private:
  std::string_view in_;
  size_t pos_ = 0;
  uint8_t format_ = 0;
  bool ok_ = true;
};

} // namespace

std::string encode(const product_record& x) {
  return writer{}.s(x.sku).s(x.name).s(x.description).i(x.price_cents).i(x.stocked).take();
}

bool decode(std::string_view in, product_record& x) {
  return reader{in}.s(x.sku).s(x.name).s(x.description).i(x.price_cents).i(x.stocked).done();
}

std::string encode(const sale_terms& x) {
  return writer{}
    .s(x.id)
    .s(x.sku)
    .i(x.price_cents)
    .i(x.quantity)
    .i(x.per_user_limit)
    .i(x.starts_at)
    .i(x.ends_at)
    .take();
}

bool decode(std::string_view in, sale_terms& x) {
  return reader{in}
    .s(x.id)
    .s(x.sku)
    .i(x.price_cents)
    .i(x.quantity)
    .i(x.per_user_limit)
    .i(x.starts_at)
    .i(x.ends_at)
    .done();
}

std::string encode(const ledger_entry& x) {
  return writer{}
    .s(x.order_id)
    .s(x.user_id)
    .s(x.sale_id)
    .i(x.quantity)
    .i(x.unit_price_cents)
    .i(x.created_at)
    .i(x.expires_at)
    .u(static_cast<uint8_t>(x.state))
    .take();
}

bool decode(std::string_view in, ledger_entry& x) {
  return reader{in}
    .s(x.order_id)
    .s(x.user_id)
    .s(x.sale_id)
    .i(x.quantity)
    .i(x.unit_price_cents)
    .i(x.created_at)
    .i(x.expires_at)
    .e(x.state, static_cast<uint8_t>(reservation_state::sold))
    .done();
}

std::string encode(const order_record& x) {
  writer w{format_v3};
  w.s(x.order_id).s(x.user_id).u(static_cast<uint8_t>(x.status)).u(x.items.size());
  for (auto& line : x.items)
    w.s(line.sku).i(line.quantity).i(line.price_cents);
  return w.i(x.total_cents)
    .i(x.discount_cents)
    .i(x.created_at)
    .i(x.expires_at)
    .i(x.updated_at)
    .s(x.flash_sale_id)
    .s(x.payment_id)
    .s(x.payment_method)
    .i(x.paid_at)
    .u(static_cast<uint8_t>(x.source))
    .take();
}

bool decode(std::string_view in, order_record& x) {
  reader r{in, format_v3};
  uint64_t n = 0;
  r.s(x.order_id).s(x.user_id).e(x.status, static_cast<uint8_t>(order_status::refunded)).u(n);
  if (n > 1000)
    return false;
  x.items.resize(n);
  for (auto& line : x.items)
    r.s(line.sku).i(line.quantity).i(line.price_cents);
  r.i(x.total_cents)
    .i(x.discount_cents)
    .i(x.created_at)
    .i(x.expires_at)
    .i(x.updated_at)
    .s(x.flash_sale_id);
  if (r.format() >= format_v2) {
    r.s(x.payment_id).s(x.payment_method).i(x.paid_at);
  } else { // written before payments existed
    x.payment_id.clear();
    x.payment_method.clear();
    x.paid_at = 0;
  }
  if (r.format() >= format_v3)
    r.e(x.source, static_cast<uint8_t>(order_source::cart));
  else // written before the source was kept
    x.source = order_source::unknown;
  return r.done();
}

std::string encode(const cart_record& x) {
  writer w{format_v3};
  w.u(x.items.size());
  for (auto& line : x.items)
    w.s(line.sku).i(line.quantity).i(line.changed_at);
  w.s(x.checkout_order).u(x.checkout_attempt);
  return w.take();
}

bool decode(std::string_view in, cart_record& x) {
  reader r{in, format_v3};
  uint64_t n = 0;
  r.u(n);
  if (n > 1000)
    return false;
  x.items.resize(n);
  for (auto& line : x.items) {
    r.s(line.sku).i(line.quantity);
    if (r.format() >= format_v2)
      r.i(line.changed_at);
    else // stored before the time was kept
      line.changed_at = 0;
  }
  x.checkout_order.clear();
  x.checkout_attempt = 0;
  if (r.format() >= format_v3) // (stored before the hold was: not held)
    r.s(x.checkout_order).u(x.checkout_attempt);
  return r.done();
}

std::string encode(const sku_tally& x) {
  writer w;
  w.i(x.sold).u(x.sales.size());
  for (auto& [sale_id, units] : x.sales)
    w.s(sale_id).i(units);
  return w.take();
}

bool decode(std::string_view in, sku_tally& x) {
  reader r{in};
  uint64_t n = 0;
  r.i(x.sold).u(n);
  if (n > in.size()) // each sale takes at least two bytes: a corrupt count
    return false;
  x.sales.assign(n, {});
  for (auto& [sale_id, units] : x.sales)
    r.s(sale_id).i(units);
  return r.done();
}

std::string encode_count(int64_t n) {
  return writer{}.i(n).take();
}

bool decode_count(std::string_view in, int64_t& n) {
  return reader{in}.i(n).done();
}

std::string encode(const user_record& x) {
  return writer{}
    .s(x.user_id)
    .s(x.username)
    .s(x.password_hash)
    .u(static_cast<uint8_t>(x.role))
    .i(x.created_at)
    .take();
}

bool decode(std::string_view in, user_record& x) {
  return reader{in}
    .s(x.user_id)
    .s(x.username)
    .s(x.password_hash)
    .e(x.role, static_cast<uint8_t>(user_role::admin))
    .i(x.created_at)
    .done();
}

std::string encode(const creation_receipt& x) {
  return writer{}.s(x.idempotency_key).s(x.requester).s(x.answer).take();
}

bool decode(std::string_view in, creation_receipt& x) {
  return reader{in}.s(x.idempotency_key).s(x.requester).s(x.answer).done();
}

std::string encode(const restock_receipt& x) {
  const auto& a = x.answer;
  return writer{}
    .s(x.idempotency_key)
    .s(x.requester)
    .i(x.quantity)
    .s(a.sku)
    .i(a.available)
    .i(a.reserved)
    .i(a.sold)
    .take();
}

bool decode(std::string_view in, restock_receipt& x) {
  auto& a = x.answer;
  return reader{in}
    .s(x.idempotency_key)
    .s(x.requester)
    .i(x.quantity)
    .s(a.sku)
    .i(a.available)
    .i(a.reserved)
    .i(a.sold)
    .done();
}

// A view nests its record's encoding (format byte included) as one string.

std::string encode(const product_view& x) {
  const auto& inv = x.inventory;
  return writer{}
    .s(encode(x.product))
    .s(inv.sku)
    .i(inv.available)
    .i(inv.reserved)
    .i(inv.sold)
    .take();
}

bool decode(std::string_view in, product_view& x) {
  std::string product;
  auto& inv = x.inventory;
  return reader{in}.s(product).s(inv.sku).i(inv.available).i(inv.reserved).i(inv.sold).done()
         && decode(product, x.product);
}

std::string encode(const sale_view& x) {
  return writer{}.s(encode(x.terms)).i(x.remaining).s(x.status).take();
}

bool decode(std::string_view in, sale_view& x) {
  std::string terms;
  return reader{in}.s(terms).i(x.remaining).s(x.status).done() && decode(terms, x.terms);
}

std::string encode(const user_view& x) {
  return writer{}
    .s(x.user_id)
    .s(x.username)
    .u(static_cast<uint8_t>(x.role))
    .i(x.created_at)
    .take();
}

bool decode(std::string_view in, user_view& x) {
  return reader{in}
    .s(x.user_id)
    .s(x.username)
    .e(x.role, static_cast<uint8_t>(user_role::admin))
    .i(x.created_at)
    .done();
}

const char* to_string(order_status s) noexcept {
  switch (s) {
    case order_status::pending_payment: return "pending_payment";
    case order_status::paid: return "paid";
    case order_status::shipped: return "shipped";
    case order_status::cancelled: return "cancelled";
    case order_status::expired: return "expired";
    case order_status::refunded: return "refunded";
  }
  return "unknown";
}

const char* to_string(user_role r) noexcept {
  return r == user_role::admin ? "admin" : "user";
}

} // namespace shop
