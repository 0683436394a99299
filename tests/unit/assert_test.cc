// The --assert expression engine (tools/common/assert.h): parsing, units, errors, evaluation.
#include "common/assert.h"

#include <gtest/gtest.h>

#include <map>

namespace derp::tools {
namespace {

const std::vector<MetricSpec> kMetrics = {
    {"sent", MetricKind::kCount, false},       {"delivered", MetricKind::kCount, false},
    {"loss", MetricKind::kPercent, false},     {"p99", MetricKind::kDuration, false},
    {"rtt_avg", MetricKind::kDuration, false}, {"latency", MetricKind::kDuration, true},
};

std::vector<Assertion> parse_ok(std::string_view text) {
  auto r = parse_asserts(text, kMetrics);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : std::vector<Assertion>{};
}

std::string parse_error(std::string_view text) {
  auto r = parse_asserts(text, kMetrics);
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.error().kind, ErrorKind::kUsage);
  return r.error().message;
}

TEST(Assert, ParsesListWithOperatorsUnitsAndFunctions) {
  auto v = parse_ok("loss==0, p99<5ms,rtt_avg <= 2ms,delivered>=1k,latency(nyc)<50ms,sent!=3");
  ASSERT_EQ(v.size(), 6u);
  EXPECT_EQ(v[0].metric, "loss");
  EXPECT_EQ(v[0].op, AssertOp::kEqual);
  EXPECT_EQ(v[0].want, 0);
  EXPECT_EQ(v[1].text, "p99<5ms");
  EXPECT_EQ(v[1].op, AssertOp::kLess);
  EXPECT_DOUBLE_EQ(v[1].want, 5);
  EXPECT_EQ(v[2].op, AssertOp::kLessEqual);
  EXPECT_EQ(v[2].text, "rtt_avg <= 2ms");
  EXPECT_EQ(v[3].op, AssertOp::kGreaterEqual);
  EXPECT_DOUBLE_EQ(v[3].want, 1000);
  EXPECT_EQ(v[4].metric, "latency");
  EXPECT_EQ(v[4].argument, "nyc");
  EXPECT_DOUBLE_EQ(v[4].want, 50);
  EXPECT_EQ(v[5].op, AssertOp::kNotEqual);
}

TEST(Assert, ConvertsUnitsToCanonicalOnes) {
  EXPECT_DOUBLE_EQ(parse_ok("p99<1s")[0].want, 1000);
  EXPECT_DOUBLE_EQ(parse_ok("p99<250us")[0].want, 0.25);
  EXPECT_DOUBLE_EQ(parse_ok("p99<250\xC2\xB5s")[0].want, 0.25);
  EXPECT_DOUBLE_EQ(parse_ok("p99<5000000ns")[0].want, 5);
  EXPECT_DOUBLE_EQ(parse_ok("p99<1.5")[0].want, 1.5);  // bare number: the canonical unit (ms)
  EXPECT_DOUBLE_EQ(parse_ok("loss<0.5%")[0].want, 0.5);
  EXPECT_DOUBLE_EQ(parse_ok("delivered>2M")[0].want, 2e6);
  EXPECT_DOUBLE_EQ(parse_ok("delivered>1G")[0].want, 1e9);
  EXPECT_GT(parse_ok("p99 > 2 ms")[0].want, 1.99);
  EXPECT_EQ(parse_ok("p99>2ms")[0].op, AssertOp::kGreater);
}

TEST(Assert, SeveralFlagsAreAnded) {
  std::vector<std::string> texts = {"loss==0", "p99<5ms,sent>=1"};
  auto r = parse_asserts(std::span<const std::string>(texts), kMetrics);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 3u);
}

TEST(Assert, UnknownMetricListsTheKnownNames) {
  std::string m = parse_error("p98<5ms");
  EXPECT_NE(m.find("unknown metric \"p98\""), std::string::npos) << m;
  EXPECT_NE(m.find("sent, delivered, loss (%), p99 (ms), rtt_avg (ms), latency(ARG) (ms)"),
            std::string::npos)
      << m;
  EXPECT_EQ(m.rfind("--assert", 0), 0u) << m;
}

TEST(Assert, RefusesBadSyntaxAndUnits) {
  EXPECT_NE(parse_error("p99 5ms").find("expected a comparison"), std::string::npos);
  EXPECT_NE(parse_error("p99<").find("expected a number"), std::string::npos);
  EXPECT_NE(parse_error("p99<abc").find("expected a number"), std::string::npos);
  EXPECT_NE(parse_error("p99<5%").find("does not fit p99"), std::string::npos);
  EXPECT_NE(parse_error("loss<5ms").find("does not fit loss"), std::string::npos);
  EXPECT_NE(parse_error("sent<5ms").find("does not fit sent"), std::string::npos);
  EXPECT_NE(parse_error("p99<5ms,").find("empty comparison"), std::string::npos);
  EXPECT_NE(parse_error("").find("empty comparison"), std::string::npos);
  EXPECT_NE(parse_error("=<5").find("expected a metric name"), std::string::npos);
  EXPECT_NE(parse_error("latency<5ms").find("takes an argument"), std::string::npos);
  EXPECT_NE(parse_error("p99(x)<5ms").find("takes no argument"), std::string::npos);
  EXPECT_NE(parse_error("latency(nyc<5ms").find("latency(ARGUMENT)"), std::string::npos);
  EXPECT_NE(parse_error("latency()<5ms").find("latency(ARGUMENT)"), std::string::npos);
  EXPECT_NE(parse_error("p99<5ms5").find("does not fit"), std::string::npos);
  EXPECT_NE(parse_error("p99<1.2.3").find("expected a number"), std::string::npos);
}

TEST(Assert, EvaluatesAndReportsViolations) {
  auto v = parse_ok("loss==0,p99<5ms,latency(nyc)<50ms,latency(fra)<50ms,delivered>=1k");
  std::map<std::string, double> values = {
      {"loss", 0}, {"p99", 7.2}, {"latency:nyc", 12.5}, {"delivered", 1000}};
  auto report = evaluate_asserts(v, [&](std::string_view m, std::string_view arg) {
    std::string k(m);
    if (!arg.empty()) k += ":" + std::string(arg);
    auto it = values.find(k);
    return it == values.end() ? std::nullopt : std::optional<double>(it->second);
  });
  EXPECT_FALSE(report.ok());
  auto f = report.failures();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0], "assert failed: p99=7.2ms, want <5ms");
  EXPECT_EQ(f[1], "assert failed: latency(fra)=n/a (not measured), want <50ms");
  auto j = report.to_json();
  ASSERT_EQ(j.size(), 5u);
  EXPECT_EQ(j[0]["ok"], true);
  EXPECT_EQ(j[1]["expr"], "p99<5ms");
  EXPECT_EQ(j[1]["value"], 7.2);
  EXPECT_EQ(j[1]["unit"], "ms");
  EXPECT_EQ(j[1]["op"], "<");
  EXPECT_EQ(j[1]["want"], 5.0);
  EXPECT_EQ(j[1]["ok"], false);
  EXPECT_EQ(j[2]["argument"], "nyc");
  EXPECT_TRUE(j[3]["value"].is_null());
  EXPECT_EQ(j[4]["ok"], true);  // >= at the boundary

  // The threshold is shown in the unit it was given, not rounded into the metric's unit.
  auto tiny = parse_ok("p99<1ns,delivered>=2k");
  auto tiny_report = evaluate_asserts(tiny, [&](std::string_view m, std::string_view) {
    return std::optional<double>(values.at(std::string(m)));
  });
  ASSERT_EQ(tiny_report.failures().size(), 2u);
  EXPECT_EQ(tiny_report.failures()[0], "assert failed: p99=7.2ms, want <1ns");
  EXPECT_EQ(tiny_report.failures()[1], "assert failed: delivered=1000, want >=2k");
  EXPECT_DOUBLE_EQ(tiny[0].want, 1e-6);

  values["p99"] = 4.9;
  values["latency:fra"] = 49.99;
  auto again = evaluate_asserts(v, [&](std::string_view m, std::string_view arg) {
    std::string k(m);
    if (!arg.empty()) k += ":" + std::string(arg);
    return std::optional<double>(values.at(k));
  });
  EXPECT_TRUE(again.ok());
  EXPECT_TRUE(again.failures().empty());
}

// Words as values: booleans (udp==true) and names the tool resolves (preferred==nyc).
TEST(Assert, BooleanAndNameMetricsCompareWithEqualityOnly) {
  const std::vector<MetricSpec> known = {{"udp", MetricKind::kBool, false},
                                         {"preferred", MetricKind::kName, false}};
  auto r = parse_asserts("udp==true, preferred==nyc, udp!=yes", known);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].want, 1);
  EXPECT_EQ((*r)[1].want_text, "nyc");
  EXPECT_EQ((*r)[2].want, 1);
  EXPECT_EQ((*r)[2].op, AssertOp::kNotEqual);

  for (const char* bad : {"udp<true", "udp==maybe", "preferred>nyc", "preferred==", "udp==1ms"}) {
    auto e = parse_asserts(bad, known);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.error().kind, ErrorKind::kUsage);
    EXPECT_NE(e.error().message.find(bad), std::string::npos) << e.error().message;
  }

  std::vector<Assertion> v = *r;
  v[1].want = 2;  // the tool's resolution of "nyc"
  auto report = evaluate_asserts(v, [](std::string_view m, std::string_view) {
    return std::optional<double>(m == "udp" ? 0.0 : 3.0);
  });
  report.name_of = [](std::string_view, double value) {
    return value == 3 ? std::string("3 (fra)") : std::string("?");
  };
  auto f = report.failures();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0], "assert failed: udp=false, want ==true");
  EXPECT_EQ(f[1], "assert failed: preferred=3 (fra), want ==nyc");
  auto j = report.to_json();
  EXPECT_EQ(j[0]["value"], false);
  EXPECT_EQ(j[0]["want"], true);
  EXPECT_EQ(j[1]["value_text"], "3 (fra)");
  EXPECT_EQ(j[1]["want_text"], "nyc");
  EXPECT_EQ(j[2]["ok"], true);
}

TEST(Assert, ComparatorsAtTheBoundary) {
  auto eval = [](std::string_view text, double value) {
    auto v = parse_asserts(text, kMetrics);
    EXPECT_TRUE(v.ok());
    return evaluate_asserts(
               *v, [&](std::string_view, std::string_view) { return std::optional<double>(value); })
        .ok();
  };
  EXPECT_FALSE(eval("p99<5", 5));
  EXPECT_TRUE(eval("p99<=5", 5));
  EXPECT_FALSE(eval("p99>5", 5));
  EXPECT_TRUE(eval("p99>=5", 5));
  EXPECT_TRUE(eval("p99==5", 5));
  EXPECT_FALSE(eval("p99!=5", 5));
  EXPECT_TRUE(eval("p99!=5", 6));
}

TEST(Assert, FormatsValuesInCanonicalUnits) {
  EXPECT_EQ(format_metric(7.2, MetricKind::kDuration), "7.2ms");
  EXPECT_EQ(format_metric(0.2134, MetricKind::kDuration), "0.213ms");
  EXPECT_EQ(format_metric(25, MetricKind::kPercent), "25%");
  EXPECT_EQ(format_metric(1000, MetricKind::kCount), "1000");
}

}  // namespace
}  // namespace derp::tools
