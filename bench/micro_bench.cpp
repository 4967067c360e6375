// Micro-benchmarks of the hot path's pure pieces, without actors or sockets.
// Usage: build/bench/micro-bench [iterations]   (prints ns per operation)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "actors/stock_book.hpp"
#include "edge/jwt.hpp"
#include "protocols/json.hpp"
#include "protocols/record_codec.hpp"

using namespace shop;

namespace {

template <class F>
void measure(const char* name, long n, F&& f) {
  // A short warm-up, then the median of 5 timed rounds.
  for (long i = 0; i < n / 10; ++i)
    f(i);
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i)
      f(i);
    auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    rounds.push_back(ns / static_cast<double>(n));
  }
  std::sort(rounds.begin(), rounds.end());
  std::printf("%-44s %10.0f ns/op\n", name, rounds[2]);
}

volatile size_t sink = 0;

} // namespace

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 200000;
  const std::string secret = "0123456789abcdef0123456789abcdef";
  edge::jwt_codec issuer{secret};
  std::vector<std::string> tokens;
  for (int i = 0; i < 4096; ++i)
    tokens.push_back(issuer.issue({"user" + std::to_string(i), "name" + std::to_string(i), user_role::user, 4'000'000'000}));
  measure("jwt issue (HMAC-SHA256, OpenSSL)", n, [&](long i) {
    sink += issuer.issue({"u" + std::to_string(i & 1023), "n", user_role::user, 4'000'000'000}).size();
  });
  measure("jwt verify, uncached (parse + HMAC + claims)", n, [&](long i) {
    edge::jwt_codec fresh{secret}; // empty cache: the full verification
    sink += fresh.verify(tokens[i & 4095], 1'000'000'000)->sub.size();
  });
  edge::jwt_codec cached{secret};
  measure("jwt verify, cached (4096 distinct tokens)", n, [&](long i) {
    sink += cached.verify(tokens[i & 4095], 1'000'000'000)->sub.size();
  });
  measure("decode purchase body {\"quantity\":1}", n, [&](long) {
    sink += static_cast<size_t>(*decode_purchase(R"({"quantity":1})"));
  });
  order_record o;
  o.order_id = "0123456789abcdef0123456789abcdef";
  o.user_id = "0123456789abcdef01234567";
  o.items.push_back({"hot-sku", 1, 9900});
  o.total_cents = 9900;
  o.created_at = 1'700'000'000'000;
  o.expires_at = 1'700'000'900'000;
  o.flash_sale_id = "sale-1";
  measure("encode order record (storage)", n, [&](long) { sink += encode(o).size(); });
  auto bytes = encode(o);
  measure("decode order record (storage)", n, [&](long) {
    order_record back;
    sink += decode(bytes, back) ? 1 : 0;
  });
  measure("order to JSON (response body)", n, [&](long) { sink += to_json(o).size(); });
  stock_book book;
  book.set_product({"hot-sku", "Hot", "", 100, 1'000'000'000});
  book.add_sale({"sale-1", "hot-sku", 50, 1'000'000'000, 1'000'000'000, 0, 4'000'000'000'000});
  measure("stock decision + reservation (stock_book)", n, [&](long i) {
    auto user = "user" + std::to_string(i & 4095);
    if (!book.check_purchase(*book.find_sale("sale-1"), user, 1, 1000))
      book.reserve({"order" + std::to_string(i) + "-" + std::to_string(sink & 7), user, "sale-1", 1, 50, 1000, 2000, reservation_state::reserved});
  });
  {
    // The longest single reservation while one SKU's ledger grows to a
    // million open entries: how long a growing ledger can stall its SKU (and
    // every actor queued behind it on the same CAF worker).
    stock_book big;
    big.set_product({"hot-sku", "Hot", "", 100, 1'000'000'000});
    big.add_sale({"sale-1", "hot-sku", 50, 1'000'000'000, 1'000'000'000, 0, 4'000'000'000'000});
    double worst_ms = 0;
    char id[40];
    for (long i = 0; i < 1'000'000; ++i) {
      std::snprintf(id, sizeof(id), "%016lx%016lx", static_cast<unsigned long>(i) * 0x9E3779B97F4A7C15ul,
                    static_cast<unsigned long>(i));
      auto t0 = std::chrono::steady_clock::now();
      big.reserve({id, "user" + std::to_string(i & 4095), "sale-1", 1, 50, 1000, 2000 + i / 32,
                   reservation_state::reserved});
      worst_ms = std::max(worst_ms, std::chrono::duration<double, std::milli>(
                                      std::chrono::steady_clock::now() - t0)
                                      .count());
    }
    std::printf("%-44s %10.1f ms\n", "reserve: longest call while growing to 1M", worst_ms);
  }
  return 0;
}
