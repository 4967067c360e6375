#include "bench/shop_bench/report.hpp"

#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <fstream>

namespace shop::bench {

const char* outcome_name(int o) noexcept {
  static const char* names[] = {"201",          "2xx (other)", "409 sold_out", "409 limit",
                                "409 (other)",  "429",         "503",          "4xx (other)",
                                "5xx (other)",  "errors"};
  return o >= 0 && o < outcome_count ? names[o] : "?";
}

int classify(int status, const std::string& body) noexcept {
  if (status == 0)
    return transport_error;
  if (status == 201)
    return ok_201;
  if (status >= 200 && status < 300)
    return ok_2xx;
  if (status == 409) {
    if (body.find("\"code\":\"sold_out\"") != std::string::npos)
      return sold_out;
    if (body.find("\"code\":\"limit_exceeded\"") != std::string::npos)
      return limit_exceeded;
    return other_409;
  }
  if (status == 429)
    return rate_limited;
  if (status == 503)
    return unavailable;
  if (status >= 500)
    return server_error;
  return client_error;
}

namespace {

std::string ms(int64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", static_cast<double>(us) / 1000.0);
  return buf;
}

} // namespace

void run_report::print_table() const {
  std::printf("\n%-14s %10s %12s", "request kind", "count", "req/s");
  for (int o = 0; o < outcome_count; ++o)
    std::printf(" %12s", outcome_name(o));
  std::printf("\n");
  for (auto& k : kinds) {
    if (k.count == 0)
      continue;
    std::printf("%-14s %10llu %12.0f", k.name.c_str(), static_cast<unsigned long long>(k.count),
                static_cast<double>(k.count) / seconds);
    for (int o = 0; o < outcome_count; ++o)
      std::printf(" %12llu", static_cast<unsigned long long>(k.outcomes[o]));
    std::printf("\n");
  }
  std::printf("\n%-14s %10s %10s %10s %10s %10s %10s   (milliseconds)\n", "latency", "p50", "p90",
              "p99", "p99.9", "max", "mean");
  for (auto& k : kinds) {
    if (k.count == 0)
      continue;
    auto& h = k.latency;
    std::printf("%-14s %10s %10s %10s %10s %10s %10s\n", k.name.c_str(), ms(h.value_at(50)).c_str(),
                ms(h.value_at(90)).c_str(), ms(h.value_at(99)).c_str(),
                ms(h.value_at(99.9)).c_str(), ms(h.max()).c_str(),
                ms(static_cast<int64_t>(h.mean())).c_str());
  }
  for (auto& [k, v] : facts)
    std::printf("%s: %s\n", k.c_str(), v.c_str());
}

bool run_report::write_json(const std::string& path) const {
  std::ofstream out{path};
  if (!out)
    return false;
  out << "{\"mode\":\"" << mode << "\",\"seconds\":" << seconds << ",\"kinds\":[";
  bool first = true;
  for (auto& k : kinds) {
    if (k.count == 0)
      continue;
    out << (first ? "" : ",") << "{\"name\":\"" << k.name << "\",\"count\":" << k.count
        << ",\"rate\":" << static_cast<double>(k.count) / seconds << ",\"outcomes\":{";
    for (int o = 0; o < outcome_count; ++o)
      out << (o ? "," : "") << "\"" << outcome_name(o) << "\":" << k.outcomes[o];
    auto& h = k.latency;
    out << "},\"latency_ms\":{\"p50\":" << h.value_at(50) / 1000.0
        << ",\"p90\":" << h.value_at(90) / 1000.0 << ",\"p99\":" << h.value_at(99) / 1000.0
        << ",\"p99.9\":" << h.value_at(99.9) / 1000.0 << ",\"max\":" << h.max() / 1000.0
        << ",\"mean\":" << h.mean() / 1000.0 << "}}";
    first = false;
  }
  out << "],\"facts\":{";
  first = true;
  for (auto& [k, v] : facts) {
    out << (first ? "" : ",") << "\"" << k << "\":\"" << v << "\"";
    first = false;
  }
  out << "}}\n";
  return static_cast<bool>(out);
}

std::string run_report::write_plot(const std::string& png) const {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "gnuplot is not installed (apt-get install gnuplot-nox)";
  auto base = png + ".tmp";
  {
    std::ofstream over_time{base + ".time"};
    for (auto& [t, us] : samples)
      over_time << t << ' ' << us / 1000.0 << '\n';
    std::ofstream curve{base + ".pct"};
    histogram all;
    for (auto& k : kinds)
      all.merge(k.latency);
    for (double nines = 0; nines <= 5.0; nines += 0.05) {
      double p = 100.0 * (1.0 - std::pow(10.0, -nines));
      curve << 1.0 / (1.0 - p / 100.0) << ' ' << all.value_at(p) / 1000.0 << '\n';
    }
  }
  std::ofstream gp{base + ".gp"};
  gp << "set terminal png size 1200,500\nset output '" << png << "'\nset multiplot layout 1,2\n"
     << "set title 'latency over time (" << mode << ")'\nset xlabel 'seconds'\n"
     << "set ylabel 'ms'\nplot '" << base << ".time' using 1:2 with dots notitle\n"
     << "set title 'latency by percentile'\nset logscale x\nset xlabel 'percentile'\n"
     << "set xtics ('50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)\n"
     << "plot '" << base << ".pct' using 1:2 with lines lw 2 notitle\nunset multiplot\n";
  gp.close();
  auto rc = std::system(("gnuplot '" + base + ".gp' 2>/dev/null").c_str());
  std::remove((base + ".time").c_str());
  std::remove((base + ".pct").c_str());
  std::remove((base + ".gp").c_str());
  return rc == 0 ? "" : "gnuplot failed";
}

} // namespace shop::bench
