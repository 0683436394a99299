// --assert EXPR: CI gates over a tool's measured metrics, e.g.
//   'loss==0,p99<5ms,rtt_avg<=2ms,delivered>=1k,latency(nyc)<50ms'
// Comma means "and"; comparators < <= > >= == !=; values take units: durations ns, us (µs),
// ms, s; percentages %; counts k, M, G. Each tool declares the metrics it measures (a name,
// a kind, and whether it takes one argument, like latency(REGION)), parses the flag's text
// before doing any work (an unknown metric or bad syntax is a usage error, exit 2, listing the
// known names), measures, then evaluates: violations print `assert failed: p99=7.2ms, want <5ms`
// and make the tool exit 1; with --json they are reported under "asserts".
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "derp/result.h"

namespace derp::tools {

// What a metric's number means, which fixes the units its assertions may use.
enum class MetricKind {
  kCount,     // a plain number; suffixes k (1e3), M (1e6), G (1e9)
  kDuration,  // milliseconds; units ns, us, µs, ms, s (a bare number is ms)
  kPercent,   // 0..100; unit % (a bare number is percent)
  kBool,      // true/false (also yes/no, 1/0); compared with == or != only
  // A name the tool turns into a number after parsing (derp-probe: a region code or id, e.g.
  // preferred==nyc); compared with == or != only. The text is kept in Assertion::want_text.
  kName,
};

struct MetricSpec {
  std::string name;  // lower-case identifier: "p99", "loss", "latency"
  MetricKind kind = MetricKind::kCount;
  bool takes_argument = false;  // written name(ARG), e.g. latency(nyc)
};

enum class AssertOp { kLess, kLessEqual, kGreater, kGreaterEqual, kEqual, kNotEqual };

// One comparison of the expression, in canonical units (ms for durations, % for percentages).
struct Assertion {
  std::string text;      // the comparison as written, trimmed: "p99<5ms"
  std::string metric;    // "p99"
  std::string argument;  // "nyc" for latency(nyc); empty for plain metrics
  MetricKind kind = MetricKind::kCount;
  AssertOp op = AssertOp::kLess;
  double want = 0;        // kName: 0 until the tool resolves want_text
  std::string want_text;  // the value as written ("nyc", "2"; "1ns" for a number with a unit)
};

// Parses one or more --assert texts (each a comma-separated list; all are and-ed). Errors are
// kUsage with a one-line message starting "--assert".
Result<std::vector<Assertion>> parse_asserts(std::span<const std::string> texts,
                                             std::span<const MetricSpec> known);
Result<std::vector<Assertion>> parse_asserts(std::string_view text,
                                             std::span<const MetricSpec> known);

// The measured value of a metric (with its argument), or std::nullopt when the run produced none
// (e.g. no samples for p99, a region never measured): such an assertion fails.
using MetricLookup =
    std::function<std::optional<double>(std::string_view metric, std::string_view argument)>;

struct AssertOutcome {
  Assertion assertion;
  std::optional<double> value;
  bool ok = false;
};

struct AssertReport {
  std::vector<AssertOutcome> outcomes;
  // kName metrics: how a measured value reads ("2 (nyc)"); without it, the number.
  std::function<std::string(std::string_view metric, double value)> name_of;

  bool ok() const;
  // One line per violated assertion: "assert failed: p99=7.2ms, want <5ms".
  std::vector<std::string> failures() const;
  // failures() as one line, joined with "; " ("" when every assertion held): the message of
  // the run's check failure.
  std::string summary() const;
  // [{"expr":"p99<5ms","metric":"p99","value":7.2,"unit":"ms","op":"<","want":5,"ok":false}]
  // ("argument" when there is one; "value": null when not measured; kBool values are JSON
  // booleans; kName adds "want_text" and, when measured, "value_text").
  nlohmann::json to_json() const;
};

AssertReport evaluate_asserts(std::span<const Assertion> asserts, const MetricLookup& lookup);

const char* assert_op_text(AssertOp op);
// "7.2ms", "0.5%", "1000": the value in its kind's canonical unit, at most 3 decimals.
std::string format_metric(double value, MetricKind kind);
// "sent, received, loss (%), p99 (ms), latency(ARG) (ms)": the known names, for messages/help.
std::string describe_metrics(std::span<const MetricSpec> known);

}  // namespace derp::tools
