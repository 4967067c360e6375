// The Prometheus text of metrics: what a scraper and a query read.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "protocols/metrics.hpp"

using namespace shop;

namespace {

std::string sample(double v) {
  std::string out;
  write_sample(out, "m", {}, v);
  return out;
}

} // namespace

TEST(MetricText, test_bucket_bounds_are_written_as_a_query_writes_them) {
  // A PromQL selector compares label text: {le="0.1"} finds no bucket
  // written as le="0.10000000000000001".
  latency_histogram h;
  h.observe_us(300);
  std::string out;
  h.write(out, "shop_x_seconds", "route=\"r\"");
  for (const char* le : {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
                         "0.025", "0.05", "0.1", "0.25", "0.5", "1", "5", "+Inf"})
    EXPECT_NE(out.find(std::string{"shop_x_seconds_bucket{route=\"r\",le=\""} + le + "\"} "),
              std::string::npos)
      << le << " in\n"
      << out;
  EXPECT_NE(out.find("shop_x_seconds_bucket{route=\"r\",le=\"0.00025\"} 0\n"), std::string::npos);
  EXPECT_NE(out.find("shop_x_seconds_bucket{route=\"r\",le=\"0.0005\"} 1\n"), std::string::npos);
  EXPECT_NE(out.find("shop_x_seconds_sum{route=\"r\"} 0.0003\n"), std::string::npos) << out;
  EXPECT_NE(out.find("shop_x_seconds_count{route=\"r\"} 1\n"), std::string::npos) << out;
}

TEST(MetricText, test_values_are_the_shortest_text_that_reads_back_exactly) {
  EXPECT_EQ(sample(0.001497), "m 0.001497\n");
  EXPECT_EQ(sample(0), "m 0\n");
  EXPECT_EQ(sample(42), "m 42\n");
  EXPECT_EQ(sample(1234567890123), "m 1234567890123\n");
  EXPECT_EQ(sample(-2.5), "m -2.5\n");
  EXPECT_EQ(sample(std::numeric_limits<double>::infinity()), "m +Inf\n");
  EXPECT_EQ(sample(-std::numeric_limits<double>::infinity()), "m -Inf\n");
  EXPECT_EQ(sample(std::nan("")), "m NaN\n");
  for (double v : {0.1, 1.0 / 3, 2.0e-7, 9007199254740993.0, 1e300}) {
    auto text = sample(v);
    EXPECT_EQ(std::stod(text.substr(2)), v) << text;
  }
}
