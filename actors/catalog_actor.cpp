// catalog: GET /products. One per node, not an entity: it pages through the
// product records in storage (each written by its SKU entity, so only
// committed products are seen), filters them by the query, and asks the
// page's SKUs for their live stock. A SKU that does not answer (quarantined,
// or not within `stock_timeout`) leaves its product on the page, stock unknown.
//
// Order: storage order (by shard, then SKU), stable across pages. The cursor
// is the last product of a page, so products created meanwhile are neither
// repeated nor skipped behind it. A full page looks ahead for one more match,
// so the last page of a search has no cursor. A page scans at most
// `max_scanned` records, the look-ahead included: a rare query may return a
// short (even empty) page with a cursor to go on.

#include <cctype>
#include <chrono>
#include <memory>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/entities.hpp"
#include "protocols/log_throttle.hpp"
#include "protocols/record_codec.hpp"
#include "protocols/search_words.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

constexpr size_t max_scanned = 5000;
/// How long a page waits for a SKU's live stock: well within the edge's
/// request timeout (5 s by default), so that one slow SKU (loading a long
/// history after a restart, say) costs its stock figures, not the page.
constexpr auto stock_timeout = std::chrono::seconds{1};
constexpr size_t shard_digits = 4;

/// Every query word is the beginning of a word of the name (so "blu sh"
/// finds "Blue Shirt", "CAFÉ" finds "Café"); an empty query matches
/// everything. Words as protocols/search_words.hpp makes them.
bool matches(const std::vector<std::string>& query, std::string_view name) {
  if (query.empty())
    return true;
  auto words = search_words(name);
  for (auto& q : query) {
    bool found = false;
    for (auto& w : words)
      if (w.compare(0, q.size(), q) == 0) {
        found = true;
        break;
      }
    if (!found)
      return false;
  }
  return true;
}

/// The cursor of a product key `sku/<shard>/<sku>`: `<shard><sku>`. URL-safe.
std::string catalog_cursor(std::string_view key) {
  auto rest = key.substr(keys::product.size() + 1); // "<shard>/<sku>"
  std::string out{rest.substr(0, shard_digits)};
  out.append(rest.substr(shard_digits + 1));
  return out;
}

/// The product key a cursor names, or empty if it is not a cursor.
std::string catalog_key(std::string_view cursor) {
  if (cursor.size() <= shard_digits)
    return {};
  for (size_t i = 0; i < shard_digits; ++i)
    if (!std::isxdigit(static_cast<unsigned char>(cursor[i])))
      return {};
  std::string key{keys::product};
  key.push_back('/');
  key.append(cursor.substr(0, shard_digits)).push_back('/');
  key.append(cursor.substr(shard_digits));
  return key;
}

} // namespace

caf::behavior catalog_actor(caf::event_based_actor* self, context_ptr ctx) {
  // One warning every 10 s at most about products listed without stock.
  auto warned = std::make_shared<log_throttle>(std::chrono::seconds{10});
  return {
    [=](const list_products& c) -> caf::result<product_page> {
      auto rp = self->make_response_promise<product_page>();
      auto query = search_words(c.query);
      auto limit = static_cast<size_t>(std::max<int64_t>(1, c.limit));
      auto start = c.cursor.empty() ? std::string{} : catalog_key(c.cursor);
      if (!c.cursor.empty() && start.empty()) {
        rp.deliver(make_error(errc::validation_failed, "cursor is not one this API returned"));
        return rp;
      }
      struct join {
        product_page page;
        size_t pending = 0;
      };
      auto j = std::make_shared<join>();
      std::string last_key;
      size_t scanned = 0;
      bool more = false;
      std::string prefix{keys::product};
      prefix.push_back('/');
      auto err = ctx->db->scan(
        prefix,
        [&](std::string_view k, std::string_view v) {
          if (scanned == max_scanned) {
            more = true; // something may be left: the page ends here
            return false;
          }
          ++scanned;
          product_record p;
          // A record that does not decode is not served; the SKU entity
          // reports it when activated.
          bool match = decode(v, p) && matches(query, p.name);
          if (j->page.items.size() == limit) {
            // Full: a next page only if a product is left for it, so that a
            // search's last page says so (its cursor is the page's last product).
            if (match) {
              more = true;
              return false;
            }
            return true;
          }
          last_key.assign(k);
          if (match)
            j->page.items.push_back(catalog_item{product_view{std::move(p), {}}});
          return true;
        },
        start);
      if (err) {
        rp.deliver(err);
        return rp;
      }
      if (more)
        j->page.next_cursor = catalog_cursor(last_key);
      if (j->page.items.empty()) {
        rp.deliver(std::move(j->page));
        return rp;
      }
      // One SKU in trouble (quarantined after crashes, or slow) must not take
      // the whole page down: its product is listed as stored, stock unknown.
      j->pending = j->page.items.size();
      for (size_t i = 0; i < j->page.items.size(); ++i) {
        auto& sku = j->page.items[i].view.product.sku;
        self->request(ctx->region, stock_timeout, get_product{sku})
          .then(
            [rp, j, i](product_view& live) mutable {
              j->page.items[i].view = std::move(live);
              if (--j->pending == 0)
                rp.deliver(std::move(j->page));
            },
            [rp, j, i, warned](caf::error& err) mutable {
              j->page.items[i].stock_known = false;
              uint64_t held_back = 0;
              if (warned->allow(held_back))
                spdlog::warn("catalog: product {} listed without its stock: {}{}",
                             j->page.items[i].view.product.sku, describe(err).message,
                             log_throttle::held_back_note(held_back));
              if (--j->pending == 0)
                rp.deliver(std::move(j->page));
            });
      }
      return rp;
    },
  };
}

} // namespace shop
