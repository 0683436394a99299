#include "common/duration.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace derp::tools {

namespace {

Error bad(std::string_view text, std::string_view why) {
  return Error(ErrorKind::kUsage,
               "bad duration \"" + std::string(text) + "\": " + std::string(why));
}

}  // namespace

Result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  if (text.empty()) return bad(text, "empty (use e.g. 250ms, 1.5s, 2m)");
  size_t i = 0;
  long double total_ns = 0;
  bool any = false;
  while (i < text.size()) {
    // The number: digits with at most one '.'.
    size_t start = i;
    bool dot = false;
    bool digits = false;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
      if (text[i] == '.') {
        if (dot) return bad(text, "two decimal points in one number");
        dot = true;
      } else {
        digits = true;
      }
      ++i;
    }
    if (!digits) {
      if (i < text.size() && text[i] == '-') return bad(text, "negative durations are not allowed");
      return bad(text, "expected a number at \"" + std::string(text.substr(start)) + "\"");
    }
    long double value = std::strtold(std::string(text.substr(start, i - start)).c_str(), nullptr);
    size_t unit_start = i;
    while (i < text.size() && !std::isdigit(static_cast<unsigned char>(text[i])) && text[i] != '.')
      ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    long double scale;
    if (unit.empty()) {
      if (any || i < text.size()) return bad(text, "missing unit");
      scale = 1e9;  // a bare number is seconds
    } else if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s") {
      scale = 1e9;
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else {
      return bad(text, "unknown unit \"" + std::string(unit) + "\" (use ms, s, m, h)");
    }
    total_ns += value * scale;
    any = true;
    if (total_ns > 1e18L) return bad(text, "too large");
  }
  return std::chrono::nanoseconds(
      static_cast<int64_t>(std::llround(static_cast<double>(total_ns))));
}

Result<std::chrono::nanoseconds> parse_positive_duration(std::string_view flag,
                                                         std::string_view text) {
  auto d = parse_duration(text);
  if (!d) return d.error().wrap(std::string(flag));
  if (d->count() == 0) {
    return Error(ErrorKind::kUsage,
                 std::string(flag) + " must be more than 0 (got " + std::string(text) + ")");
  }
  return d;
}

std::chrono::milliseconds to_millis(std::chrono::nanoseconds d) {
  return std::chrono::ceil<std::chrono::milliseconds>(d);
}

std::string format_duration(std::chrono::nanoseconds d) {
  const double ms = static_cast<double>(d.count()) / 1e6;
  char buf[48];
  if (ms >= 1000) {
    std::snprintf(buf, sizeof buf, "%gs", ms / 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%gms", ms);
  }
  return buf;
}

}  // namespace derp::tools
