// The netcheck probe plan (PROTOCOL.md §9.3), the home-region rules (§9.6) and the DERP map
// linter (§8): pure functions, no sockets.
#include <gtest/gtest.h>

#include <algorithm>

#include "derp/derp_map_lint.h"
#include "derp/netcheck.h"

namespace derp::probe {
namespace {

using std::chrono::milliseconds;

DERPNode node(int region, std::string name, std::string v4 = "127.0.0.1",
              std::string v6 = "none") {
  DERPNode n;
  n.region_id = region;
  n.name = std::move(name);
  n.host_name = "derp" + std::to_string(region) + ".invalid";
  n.ipv4 = std::move(v4);
  n.ipv6 = std::move(v6);
  return n;
}

DERPMap three_regions() {
  DERPMap m;
  for (int id : {900, 901, 902}) {
    DERPRegion r;
    r.region_id = id;
    r.region_code = "r" + std::to_string(id - 899);
    r.nodes = {node(id, std::to_string(id) + "a"), node(id, std::to_string(id) + "b")};
    m.regions[id] = r;
  }
  return m;
}

std::vector<StunProbe> of_region(const std::vector<StunProbe>& plan, int region) {
  std::vector<StunProbe> out;
  std::copy_if(plan.begin(), plan.end(), std::back_inserter(out),
               [&](const StunProbe& p) { return p.region_id == region; });
  return out;
}

TEST(ProbePlan, FullReportTriesEachRegionThreeTimesAcrossNodes) {
  auto plan = make_probe_plan(three_regions(), {});
  ASSERT_EQ(plan.size(), 9u);
  auto r = of_region(plan, 901);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0], (StunProbe{901, 0, IpFamily::kV4, milliseconds(0)}));
  EXPECT_EQ(r[1], (StunProbe{901, 1, IpFamily::kV4, milliseconds(100)}));
  EXPECT_EQ(r[2], (StunProbe{901, 0, IpFamily::kV4, milliseconds(200)}));
  EXPECT_TRUE(std::is_sorted(plan.begin(), plan.end(), [](const auto& a, const auto& b) {
    return a.delay < b.delay;
  }));
}

TEST(ProbePlan, FullReportProbesBothFamiliesOnDualStackHosts) {
  DERPMap m = three_regions();
  m.regions[900].nodes[0].ipv6 = "::1";
  m.regions[900].nodes[1].ipv6 = "::1";
  PlanInput in;
  in.have_v6 = true;
  auto r = of_region(make_probe_plan(m, in), 900);
  EXPECT_EQ(std::count_if(r.begin(), r.end(), [](auto& p) { return p.family == IpFamily::kV6; }),
            3);
  // Other regions have IPv6 "none": no IPv6 probes there.
  auto r2 = of_region(make_probe_plan(m, in), 901);
  EXPECT_EQ(r2.size(), 3u);
}

TEST(ProbePlan, SkipsNoMeasureRegionsAndNodesWithoutStun) {
  DERPMap m = three_regions();
  m.regions[900].no_measure_no_home = true;
  m.regions[901].nodes[1].stun_port = -1;
  auto plan = make_probe_plan(m, {});
  EXPECT_TRUE(of_region(plan, 900).empty());
  auto r = of_region(plan, 901);
  ASSERT_EQ(r.size(), 2u);  // tries 0 and 2 go to node a; try 1 (node b) has no STUN
  EXPECT_EQ(r[0].node_index, 0u);
  EXPECT_EQ(r[1].delay, milliseconds(200));
}

TEST(ProbePlan, IncrementalProbesFastestThreePlusHomeWithGoTries) {
  DERPMap m = three_regions();
  for (int id : {903, 904}) {
    DERPRegion r;
    r.region_id = id;
    r.nodes = {node(id, std::to_string(id) + "a")};
    m.regions[id] = r;
  }
  PlanInput in;
  in.full = false;
  in.current_home = 904;
  in.last_latency_ms = {{900, 30}, {901, 10}, {902, 20}, {903, 40}, {904, 500}};
  auto plan = make_probe_plan(m, in);
  EXPECT_EQ(of_region(plan, 901).size(), 2u);  // fastest two: 2 tries
  EXPECT_EQ(of_region(plan, 902).size(), 2u);
  EXPECT_EQ(of_region(plan, 900).size(), 1u);  // third: 1 try
  EXPECT_TRUE(of_region(plan, 903).empty());   // fourth: not probed
  auto home = of_region(plan, 904);
  ASSERT_EQ(home.size(), 4u);  // the home: 4 tries
  // delay(i) = i × max(1.2 × 500 ms, 200 ms) (+ i × 50 ms when i > 1)
  EXPECT_EQ(home[1].delay, milliseconds(600));
  EXPECT_EQ(home[2].delay, milliseconds(1300));
  EXPECT_EQ(home[3].delay, milliseconds(1950));
  auto fast = of_region(plan, 901);
  EXPECT_EQ(fast[1].delay, milliseconds(200));  // 1.2 × 10 ms is under the 200 ms floor
}

TEST(ProbePlan, IncrementalSkipsAvoidUnlessHome) {
  DERPMap m = three_regions();
  m.regions[900].avoid = true;
  m.regions[901].avoid = true;
  PlanInput in;
  in.full = false;
  in.current_home = 901;
  in.last_latency_ms = {{900, 1}, {901, 2}, {902, 3}};
  auto plan = make_probe_plan(m, in);
  EXPECT_TRUE(of_region(plan, 900).empty());
  EXPECT_EQ(of_region(plan, 901).size(), 4u);
}

TEST(HomeRegion, LowestLatencyWins) {
  auto c = choose_home(three_regions(), {{900, 30}, {901, 12}, {902, 20}}, {}, 0);
  EXPECT_EQ(c.preferred, 901);
  EXPECT_FALSE(c.kept_old_home);
  EXPECT_NE(c.reason.find("lowest latency"), std::string::npos);
}

TEST(HomeRegion, RegionScoreScalesLatency) {
  DERPMap m = three_regions();
  m.home_params = DERPHomeParams{{{901, 3.0}, {902, -1}}};
  auto c = choose_home(m, {{900, 30}, {901, 12}, {902, 20}}, {}, 0);
  EXPECT_EQ(c.preferred, 902);  // 901 scaled to 36; 902's negative score is ignored
  EXPECT_DOUBLE_EQ(c.scaled_ms.at(901), 36);
}

TEST(HomeRegion, NeverPicksNoMeasureNoHome) {
  DERPMap m = three_regions();
  m.regions[901].no_measure_no_home = true;
  EXPECT_EQ(choose_home(m, {{900, 30}, {901, 1}}, {}, 0).preferred, 900);
}

TEST(HomeRegion, HysteresisKeepsOldHomeForSmallGains) {
  // 8 ms faster: under the 10 ms absolute threshold.
  auto c = choose_home(three_regions(), {{900, 30}, {901, 22}}, {}, 900);
  EXPECT_EQ(c.preferred, 900);
  EXPECT_EQ(c.candidate, 901);
  EXPECT_TRUE(c.kept_old_home);
  // 20 ms faster but not a third faster (80 > 100 × 2/3).
  c = choose_home(three_regions(), {{900, 100}, {901, 80}}, {}, 900);
  EXPECT_EQ(c.preferred, 900);
  EXPECT_NE(c.reason.find("third"), std::string::npos);
}

TEST(HomeRegion, SwitchesWhenFasterByTenMsAndAThird) {
  auto c = choose_home(three_regions(), {{900, 100}, {901, 60}}, {}, 900);
  EXPECT_EQ(c.preferred, 901);
  EXPECT_FALSE(c.kept_old_home);
}

TEST(HomeRegion, OldHomeThatDidNotAnswerIsReplaced) {
  auto c = choose_home(three_regions(), {{901, 50}}, {}, 900);
  EXPECT_EQ(c.preferred, 901);
  EXPECT_LT(c.old_home_ms, 0);
}

TEST(HomeRegion, RecentReportsGiveBestLatency) {
  // 900 was 5 ms a minute ago: its best recent value beats 901's 20 ms now.
  auto c = choose_home(three_regions(), {{900, 40}, {901, 20}}, {{{900, 5}}}, 0);
  EXPECT_EQ(c.preferred, 900);
  // A region only in older reports is not a candidate.
  c = choose_home(three_regions(), {{901, 20}}, {{{900, 5}}}, 0);
  EXPECT_EQ(c.preferred, 901);
}

TEST(HomeRegion, NothingMeasuredNoHome) {
  EXPECT_EQ(choose_home(three_regions(), {}, {}, 900).preferred, 0);
}

std::vector<std::string> codes(const std::vector<LintFinding>& f) {
  std::vector<std::string> out;
  for (const auto& x : f) out.push_back(x.code);
  return out;
}

bool has(const std::vector<LintFinding>& f, const std::string& code) {
  auto c = codes(f);
  return std::find(c.begin(), c.end(), code) != c.end();
}

TEST(MapLint, CleanMapHasNoFindings) {
  EXPECT_TRUE(lint_derp_map(three_regions()).empty());
}

TEST(MapLint, FindsEachMistakeOnItsOwnLine) {
  DERPMap m = three_regions();
  m.regions[900].nodes[1].name = "900a";              // duplicate
  m.regions[901].nodes[0].host_name = "";             // no hostname
  m.regions[901].nodes[1].cert_name = "sha256-raw:12";  // bad pin
  m.regions[902].nodes[0].ipv4 = "::1";               // IPv6 in IPv4
  m.regions[902].nodes[1].ipv4 = "none";
  m.regions[902].nodes[1].ipv6 = "none";              // no address at all
  DERPRegion stun;
  stun.region_id = 903;
  stun.nodes = {node(903, "903s")};
  stun.nodes[0].stun_only = true;
  m.regions[903] = stun;
  m.regions[904] = stun;  // key 904, RegionID 903
  m.regions[904].nodes[0].name = "904s";
  m.regions[905] = stun;  // key 905, RegionID 777: no such region either
  m.regions[905].region_id = 777;
  m.regions[905].nodes[0].name = "905s";
  m.regions[905].nodes[0].region_id = 777;
  m.regions[900].nodes[0].region_id = 999;
  auto f = lint_derp_map(m);
  for (const char* c : {"duplicate-node-name", "no-hostname", "bad-certname", "wrong-family",
                        "no-address", "stun-only-region", "region-id-mismatch",
                        "duplicate-region-id", "node-region-mismatch", "inconsistent-ipv4"}) {
    EXPECT_TRUE(has(f, c)) << c;
  }
  for (const auto& x : f) {
    EXPECT_EQ(x.line().find('\n'), std::string::npos);
    EXPECT_EQ(x.line().rfind("region", 0), 0u) << x.line();
  }
}

TEST(MapLint, CertNameMayBeDnsNameOrPin) {
  DERPMap m = three_regions();
  m.regions[900].nodes[0].cert_name = "derp.invalid";
  m.regions[900].nodes[1].cert_name = "sha256-raw:" + std::string(64, 'a');
  EXPECT_TRUE(lint_derp_map(m).empty());
  m.regions[900].nodes[0].cert_name = "not a name";
  EXPECT_TRUE(has(lint_derp_map(m), "bad-certname"));
}

TEST(MapLint, RegionScoreForUnknownRegion) {
  DERPMap m = three_regions();
  m.home_params = DERPHomeParams{{{999, 2.0}}};
  EXPECT_TRUE(has(lint_derp_map(m), "unknown-region-score"));
}

TEST(CaptiveEndpoints, HomeRegionFirstOnlyCanPort80WithIPv4) {
  DERPMap m = three_regions();
  m.regions[901].nodes[0].can_port80 = true;
  m.regions[902].nodes[0].can_port80 = true;
  m.regions[902].nodes[1].can_port80 = true;
  m.regions[902].nodes[1].ipv4 = "";  // resolve-only: not an endpoint
  auto urls = captive_endpoints(m, 902, 80);
  ASSERT_EQ(urls.size(), 2u);
  EXPECT_EQ(urls[0], "http://127.0.0.1/generate_204");
  EXPECT_EQ(captive_endpoints(m, 0, 8080)[0], "http://127.0.0.1:8080/generate_204");
  EXPECT_EQ(captive_endpoints(m, 0, 80, 1).size(), 1u);
}

}  // namespace
}  // namespace derp::probe
