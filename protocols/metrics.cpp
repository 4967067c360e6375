#include "protocols/metrics.hpp"

#include <charconv>
#include <cmath>

namespace shop {

namespace {

/// The shortest text that reads back as `v` (0.1, not 0.10000000000000001):
/// a bucket's `le` label must match what a query writes (`{le="0.1"}`).
std::string format_number(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  // Counts as whole numbers (12345678, not 1.2345678e+07); others %g-style,
  // fixed unless the exponent is below -4 or above 5.
  constexpr double exact_integers = 9007199254740992.0; // 2^53
  auto [end, ec] = std::trunc(v) == v && std::fabs(v) < exact_integers
                     ? std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(v))
                     : std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::general);
  return ec == std::errc{} ? std::string{buf, end} : std::string{"NaN"};
}

void open_labels(std::string& out, std::string_view name, std::string_view suffix,
                 std::string_view labels, bool more) {
  out.append(name).append(suffix);
  if (!labels.empty() || more) {
    out.push_back('{');
    out.append(labels);
    if (!labels.empty() && more)
      out.push_back(',');
  }
}

} // namespace

void latency_histogram::write(std::string& out, std::string_view name,
                              std::string_view labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    open_labels(out, name, "_bucket", labels, true);
    out.append("le=\"");
    out.append(i < bounds.size() ? format_number(bounds[i]) : std::string{"+Inf"});
    out.append("\"} ");
    out.append(std::to_string(cumulative)).push_back('\n');
  }
  write_sample(out, std::string{name} + "_sum", labels,
               static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6);
  write_sample(out, std::string{name} + "_count", labels, static_cast<double>(cumulative));
}

void write_metric_header(std::string& out, std::string_view name, std::string_view type,
                         std::string_view help) {
  out.append("# HELP ").append(name).push_back(' ');
  out.append(help).push_back('\n');
  out.append("# TYPE ").append(name).push_back(' ');
  out.append(type).push_back('\n');
}

void write_metric(std::string& out, std::string_view name, std::string_view type,
                  std::string_view help, double value) {
  write_metric_header(out, name, type, help);
  write_sample(out, name, {}, value);
}

void write_sample(std::string& out, std::string_view name, std::string_view labels,
                  double value) {
  open_labels(out, name, "", labels, false);
  if (!labels.empty())
    out.push_back('}');
  out.push_back(' ');
  out.append(format_number(value)).push_back('\n');
}

} // namespace shop
