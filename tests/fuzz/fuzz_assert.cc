// The --assert expression parser on arbitrary text, against a metric table with every kind;
// what parses is evaluated against made-up measurements and reported as JSON.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/assert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using derp::tools::MetricKind;
  static const std::array<derp::tools::MetricSpec, 6> known{{
      {"sent", MetricKind::kCount, false},
      {"p99", MetricKind::kDuration, false},
      {"loss", MetricKind::kPercent, false},
      {"ok", MetricKind::kBool, false},
      {"preferred", MetricKind::kName, false},
      {"latency", MetricKind::kDuration, true},
  }};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = derp::tools::parse_asserts(text, known);
  if (!parsed.ok()) return 0;
  const auto report = derp::tools::evaluate_asserts(
      *parsed, [](std::string_view metric, std::string_view arg) -> std::optional<double> {
        if (metric == "latency" && arg == "none") return std::nullopt;
        return static_cast<double>(metric.size() + arg.size());
      });
  (void)report.ok();
  (void)report.failures();
  (void)report.to_json().dump();
  return 0;
}
