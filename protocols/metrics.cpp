#include "protocols/metrics.hpp"

#include <cstdio>

namespace shop {

namespace {

std::string format_number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
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
