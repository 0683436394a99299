// DERP map JSON (PROTOCOL.md §8) and the dial/STUN target rules (§7.5, §9.3).
#include "derp/derp_map.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace derp {
namespace {

constexpr std::string_view kSection8Map = R"({
  "Regions": {
    "900": {
      "RegionID": 900,
      "RegionCode": "myderp",
      "RegionName": "My DERP",
      "Nodes": [
        {"Name": "900a", "RegionID": 900, "HostName": "derp.example.com",
         "IPv4": "127.0.113.10", "IPv6": "::1", "CanPort80": true},
        {"Name": "900b", "RegionID": 900, "HostName": "127.0.113.11",
         "CertName": "sha256-raw:<64 hex>", "IPv6": "none", "DERPPort": 8443, "STUNPort": 3479},
        {"Name": "900s", "RegionID": 900, "HostName": "stun.example.com", "STUNOnly": true}
      ]
    }
  },
  "omitDefaultRegions": true
})";

DERPMap parse_ok(std::string_view json) {
  auto m = parse_derp_map(json);
  EXPECT_TRUE(m.ok()) << m.error().message;
  return m.ok() ? *m : DERPMap{};
}

void expect_error(std::string_view json, std::string_view message) {
  auto m = parse_derp_map(json);
  ASSERT_FALSE(m.ok()) << json;
  EXPECT_EQ(m.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(m.error().message, message);
}

DERPNode node(std::string host) {
  DERPNode n;
  n.name = "1a";
  n.region_id = 1;
  n.host_name = std::move(host);
  return n;
}

TEST(DerpMap, ParsesTheSection8Example) {
  const DERPMap m = parse_ok(kSection8Map);
  EXPECT_TRUE(m.omit_default_regions);
  EXPECT_FALSE(m.home_params.has_value());
  ASSERT_EQ(m.regions.size(), 1u);
  const DERPRegion& r = m.regions.at(900);
  EXPECT_EQ(r.region_id, 900);
  EXPECT_EQ(r.region_code, "myderp");
  EXPECT_EQ(r.region_name, "My DERP");
  EXPECT_FALSE(r.avoid);
  EXPECT_FALSE(r.no_measure_no_home);
  ASSERT_EQ(r.nodes.size(), 3u);

  const DERPNode& a = r.nodes[0];
  EXPECT_EQ(a.name, "900a");
  EXPECT_EQ(a.region_id, 900);
  EXPECT_EQ(a.host_name, "derp.example.com");
  EXPECT_EQ(a.ipv4, "127.0.113.10");
  EXPECT_EQ(a.ipv6, "::1");
  EXPECT_TRUE(a.can_port80);
  EXPECT_EQ(a.derp_port, 0);
  EXPECT_EQ(a.stun_port, 0);
  EXPECT_FALSE(a.stun_only);

  const DERPNode& b = r.nodes[1];
  EXPECT_EQ(b.host_name, "127.0.113.11");
  EXPECT_EQ(b.cert_name, "sha256-raw:<64 hex>");
  EXPECT_EQ(b.ipv4, "");
  EXPECT_EQ(b.ipv6, "none");
  EXPECT_EQ(b.derp_port, 8443);
  EXPECT_EQ(b.stun_port, 3479);

  const DERPNode& s = r.nodes[2];
  EXPECT_EQ(s.name, "900s");
  EXPECT_TRUE(s.stun_only);
  EXPECT_FALSE(s.can_port80);
}

TEST(DerpMap, RoundTripsTheSection8Example) {
  const DERPMap m = parse_ok(kSection8Map);
  const std::string out = derp_map_to_json(m);
  EXPECT_EQ(parse_ok(out), m);
  // Same document as the example, modulo white space.
  EXPECT_EQ(nlohmann::json::parse(out), nlohmann::json::parse(kSection8Map));
  // Indented output is the same JSON.
  EXPECT_EQ(nlohmann::json::parse(derp_map_to_json(m, 2)), nlohmann::json::parse(out));
}

TEST(DerpMap, RoundTripsEveryField) {
  DERPMap m;
  m.home_params.emplace();
  m.home_params->region_score = {{1, 0.5}, {10, 2}, {900, 1.25}};
  DERPRegion r;
  r.region_id = 10;
  r.region_code = "sea";
  r.region_name = "Seattle \"quoted\" \xc3\xa9";
  r.latitude = 47.6062;
  r.longitude = -122.3321;
  r.avoid = true;
  r.no_measure_no_home = true;
  DERPNode n = node("derp10.example.com");
  n.region_id = 10;
  n.cert_name = "derp10.example.com";
  n.ipv4 = "127.51.100.1";
  n.ipv6 = "::1";
  n.stun_port = -1;
  n.stun_only = true;
  n.derp_port = 8443;
  n.insecure_for_tests = true;
  n.stun_test_ip = "127.0.0.1";
  n.can_port80 = true;
  r.nodes = {n, node("second.example.com")};
  m.regions[10] = r;
  DERPRegion r2;
  r2.region_id = 2;
  m.regions[2] = r2;
  EXPECT_EQ(parse_ok(derp_map_to_json(m)), m);
  EXPECT_EQ(parse_ok(derp_map_to_json(m, 4)), m);
}

TEST(DerpMap, EmitsGoNamesOrderAndOmitempty) {
  DERPMap m;
  DERPRegion r;
  r.region_id = 1;
  r.region_code = "nyc";
  r.nodes = {node("derp1.example.com")};
  m.regions[1] = r;
  EXPECT_EQ(derp_map_to_json(m),
            R"({"Regions":{"1":{"RegionID":1,"RegionCode":"nyc","RegionName":"","Nodes":[)"
            R"({"Name":"1a","RegionID":1,"HostName":"derp1.example.com"}]}}})");

  m.omit_default_regions = true;
  m.home_params.emplace();
  m.regions[1].latitude = 40.5;
  m.regions[1].nodes[0].stun_port = -1;
  EXPECT_EQ(derp_map_to_json(m),
            R"({"HomeParams":{},"Regions":{"1":{"RegionID":1,"RegionCode":"nyc","RegionName":"",)"
            R"("Latitude":40.5,"Nodes":[{"Name":"1a","RegionID":1,"HostName":"derp1.example.com",)"
            R"("STUNPort":-1}]}},"omitDefaultRegions":true})");
}

TEST(DerpMap, EmitsRegionKeysAsDecimalStringsInGoOrder) {
  DERPMap m;
  for (int id : {900, 1000, 2}) {
    DERPRegion r;
    r.region_id = id;
    m.regions[id] = r;
  }
  m.home_params.emplace();
  m.home_params->region_score = {{2, 0.5}, {1000, 3}};
  EXPECT_EQ(derp_map_to_json(m),
            R"({"HomeParams":{"RegionScore":{"1000":3,"2":0.5}},"Regions":{)"
            R"("1000":{"RegionID":1000,"RegionCode":"","RegionName":"","Nodes":[]},)"
            R"("2":{"RegionID":2,"RegionCode":"","RegionName":"","Nodes":[]},)"
            R"("900":{"RegionID":900,"RegionCode":"","RegionName":"","Nodes":[]}}})");
}

TEST(DerpMap, AcceptsKeysOfAnyCase) {
  const DERPMap m = parse_ok(R"({
    "regions": {"7": {"regionid": 7, "REGIONCODE": "x", "regionName": "X", "latitude": 1.5,
      "NOMEASURENOHOME": true, "nodes": [
        {"name": "7a", "regionID": 7, "hostname": "h.example", "certname": "c", "ipv4": "none",
         "ipV6": "::1", "stunport": 1, "stunonly": true, "derpport": 2, "insecurefortests": true,
         "stuntestip": "127.0.0.1", "canport80": true}]}},
    "OmitDefaultRegions": true,
    "homeparams": {"regionscore": {"7": 2.5}}
  })");
  EXPECT_TRUE(m.omit_default_regions);
  ASSERT_TRUE(m.home_params.has_value());
  EXPECT_EQ(m.home_params->region_score.at(7), 2.5);
  const DERPRegion& r = m.regions.at(7);
  EXPECT_EQ(r.region_code, "x");
  EXPECT_EQ(r.region_name, "X");
  EXPECT_EQ(r.latitude, 1.5);
  EXPECT_TRUE(r.no_measure_no_home);
  ASSERT_EQ(r.nodes.size(), 1u);
  const DERPNode& n = r.nodes[0];
  EXPECT_EQ(n.host_name, "h.example");
  EXPECT_EQ(n.cert_name, "c");
  EXPECT_EQ(n.ipv4, "none");
  EXPECT_EQ(n.ipv6, "::1");
  EXPECT_EQ(n.stun_port, 1);
  EXPECT_TRUE(n.stun_only);
  EXPECT_EQ(n.derp_port, 2);
  EXPECT_TRUE(n.insecure_for_tests);
  EXPECT_EQ(n.stun_test_ip, "127.0.0.1");
  EXPECT_TRUE(n.can_port80);
}

TEST(DerpMap, IgnoresUnknownKeysAndNulls) {
  const DERPMap m = parse_ok(R"({"Future": [1, 2], "HomeParams": null, "Regions": {"1":
      {"RegionID": 1, "RegionCode": null, "Extra": {}, "Nodes": [
        {"Name": "1a", "RegionID": 1, "HostName": "h", "IPv4": null, "New": true}]}}})");
  EXPECT_FALSE(m.home_params.has_value());
  EXPECT_EQ(m.regions.at(1).nodes.at(0).ipv4, "");
  EXPECT_EQ(parse_ok("{}"), DERPMap{});
}

TEST(DerpMap, LastDuplicateKeyWins) {
  const DERPMap m = parse_ok(R"({"Regions": {"1": {"RegionID": 1, "RegionCode": "a",
      "regioncode": "b", "Nodes": []}}})");
  EXPECT_EQ(m.regions.at(1).region_code, "b");
}

TEST(DerpMap, ReportsMissingHostName) {
  expect_error(R"({"Regions": {"900": {"RegionID": 900, "Nodes": [{"Name": "900a"}]}}})",
               R"(DERP map: region "900": node 0: HostName missing)");
  expect_error(R"({"Regions": {"900": {"RegionID": 900, "Nodes": [
                  {"Name": "900a", "HostName": "ok"}, {"Name": "900b", "HostName": ""}]}}})",
               R"(DERP map: region "900": node 1: HostName missing)");
}

TEST(DerpMap, StructureChecksLeaveHostNameAndRegionIdToTheLinter) {
  auto m = parse_derp_map(R"({"Regions": {"900": {"RegionID": 901, "Nodes": [{"Name": "900a"}]}}})",
                          DerpMapChecks::kStructure);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->regions.at(900).region_id, 901);
  EXPECT_EQ(m->regions.at(900).nodes.at(0).host_name, "");
  // JSON types still count.
  auto bad =
      parse_derp_map(R"({"Regions": {"900": {"RegionID": "900"}}})", DerpMapChecks::kStructure);
  EXPECT_FALSE(bad);
}

TEST(DerpMap, ReportsNonNumericRegionKey) {
  expect_error(R"({"Regions": {"x": {"RegionID": 1}}})",
               R"(DERP map: region key "x" is not a number)");
  expect_error(R"({"Regions": {"99999999999": {"RegionID": 1}}})",
               R"(DERP map: region key "99999999999" is not a number)");
  expect_error(R"({"Regions": {"": {"RegionID": 1}}})",
               R"(DERP map: region key "" is not a number)");
  expect_error(R"({"HomeParams": {"RegionScore": {"1.5": 1}}})",
               R"(DERP map: HomeParams: RegionScore: region key "1.5" is not a number)");
}

TEST(DerpMap, AcceptsRegionKeysAsGoParsesThem) {
  // strconv.ParseInt: a sign and leading zeros are fine.
  const DERPMap m = parse_ok(R"({"Regions": {"+0900": {"RegionID": 900}}})");
  EXPECT_EQ(m.regions.count(900), 1u);
}

TEST(DerpMap, ReportsMismatchedRegionId) {
  expect_error(R"({"Regions": {"900": {"RegionID": 901}}})",
               "DERP map: region 900 has RegionID 901");
  expect_error(R"({"Regions": {"900": {"RegionCode": "x"}}})",
               "DERP map: region 900 has RegionID 0");
}

TEST(DerpMap, ReportsWrongTypes) {
  expect_error(R"({"Regions": []})", "DERP map: Regions is an array, want an object");
  expect_error(R"({"Regions": {"1": {"RegionID": "1"}}})",
               R"(DERP map: region "1": RegionID is a string, want an integer)");
  expect_error(R"({"Regions": {"1": {"RegionID": 1.5}}})",
               R"(DERP map: region "1": RegionID is a number, want an integer)");
  expect_error(R"({"Regions": {"1": {"RegionID": 1, "Nodes": {}}}})",
               R"(DERP map: region "1": Nodes is an object, want an array)");
  expect_error(R"({"Regions": {"1": {"RegionID": 1, "Nodes": [null]}}})",
               R"(DERP map: region "1": node 0: is null, want an object)");
  expect_error(R"({"Regions": {"1": {"RegionID": 1, "Nodes": [7]}}})",
               R"(DERP map: region "1": node 0: is a number, want an object)");
  expect_error(R"({"Regions": {"1": {"RegionID": 1, "Nodes": [{"HostName": 5}]}}})",
               R"(DERP map: region "1": node 0: HostName is a number, want a string)");
  expect_error(
      R"({"Regions": {"1": {"RegionID": 1, "Nodes": [{"HostName": "h", "STUNOnly": 1}]}}})",
      R"(DERP map: region "1": node 0: STUNOnly is a number, want a boolean)");
  expect_error(
      R"({"Regions": {"1": {"RegionID": 1, "Nodes": [{"HostName": "h", "DERPPort": 1e3}]}}})",
      R"(DERP map: region "1": node 0: DERPPort is a number, want an integer)");
  expect_error(
      R"({"Regions": {"1": {"RegionID": 1, "Nodes": [{"HostName": "h", "STUNPort": 4294967296}]}}})",
      R"(DERP map: region "1": node 0: STUNPort 4294967296 is out of range)");
  expect_error(R"({"Regions": {"1": {"RegionID": 1, "Latitude": "n"}}})",
               R"(DERP map: region "1": Latitude is a string, want a number)");
  expect_error(R"({"Regions": {"1": null}})", R"(DERP map: region "1": is null, want an object)");
  expect_error(R"({"omitDefaultRegions": "yes"})",
               "DERP map: omitDefaultRegions is a string, want a boolean");
  expect_error(
      R"({"HomeParams": {"RegionScore": {"1": "x"}}})",
      R"(DERP map: HomeParams: RegionScore: region "1": score is a string, want a number)");
  expect_error("[]", "DERP map: top level is an array, want an object");
  expect_error("null", "DERP map: top level is null, want an object");
}

TEST(DerpMap, ReportsInvalidJson) {
  expect_error(R"({"Regions": )", "DERP map: not valid JSON (error at byte 13)");
  expect_error("", "DERP map: not valid JSON (error at byte 1)");
  expect_error(R"({"Regions": {"1": {"RegionID": 1, "Latitude": 1e400}}})",
               "DERP map: not valid JSON (a number is out of range)");
}

TEST(DerpMap, QuotesHostileKeysOnOneLine) {
  auto m = parse_derp_map("{\"Regions\": {\"a\\nb\": {}}}");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().message, R"(DERP map: region key "a\x0ab" is not a number)");
}

// ---- Helpers

TEST(DerpMapNode, DerpPortDefaultsTo443) {
  DERPNode n = node("h");
  EXPECT_EQ(node_derp_port(n), 443);
  n.derp_port = 8443;
  EXPECT_EQ(node_derp_port(n), 8443);
}

TEST(DerpMapNode, StunPortDefaultsTo3478AndNegativeMeansNone) {
  DERPNode n = node("h");
  EXPECT_EQ(node_stun_port(n), std::optional<uint16_t>(3478));
  n.stun_port = 3479;
  EXPECT_EQ(node_stun_port(n), std::optional<uint16_t>(3479));
  n.stun_port = -1;
  EXPECT_EQ(node_stun_port(n), std::nullopt);
  n.stun_port = 65536;
  EXPECT_EQ(node_stun_port(n), std::nullopt);
}

TEST(DerpMapNode, UrlOmitsPort443) {
  DERPNode n = node("derp.example.com");
  EXPECT_EQ(node_url(n), "https://derp.example.com/derp");
  n.derp_port = 443;
  EXPECT_EQ(node_url(n), "https://derp.example.com/derp");
  n.derp_port = 8443;
  EXPECT_EQ(node_url(n), "https://derp.example.com:8443/derp");
  n.host_name = "::1";
  EXPECT_EQ(node_url(n), "https://[::1]:8443/derp");
  n.derp_port = 0;
  EXPECT_EQ(node_url(n), "https://[::1]/derp");
}

TEST(DerpMapNode, RecognisesIpLiterals) {
  EXPECT_TRUE(is_ip_literal("127.0.113.10"));
  EXPECT_TRUE(is_ip_literal("::1"));
  EXPECT_TRUE(is_ip_literal("::ffff:127.2.3.4"));
  EXPECT_TRUE(is_ip_literal("::1%lo"));
  EXPECT_FALSE(is_ip_literal("::1%"));
  EXPECT_FALSE(is_ip_literal("127.2.3.4%lo"));
  EXPECT_FALSE(is_ip_literal("none"));
  EXPECT_FALSE(is_ip_literal(""));
  EXPECT_FALSE(is_ip_literal("1.2.3"));
  EXPECT_FALSE(is_ip_literal("127.2.3.256"));
  EXPECT_FALSE(is_ip_literal("[::1]"));
  EXPECT_FALSE(is_ip_literal("derp.example.com"));
  EXPECT_FALSE(is_ip_literal(std::string_view("127.2.3.4\0", 10)));
  EXPECT_EQ(ip_literal_family("127.2.3.4"), IpFamily::kV4);
  EXPECT_EQ(ip_literal_family("::ffff:127.2.3.4"), IpFamily::kV6);  // as Go's Is6
}

TEST(DerpMapNode, DialsFixedIpOfTheFamily) {
  DERPNode n = node("derp.example.com");
  n.ipv4 = "127.0.113.10";
  n.ipv6 = "::1";
  EXPECT_EQ(node_dial_target(n, IpFamily::kV4),
            (DialTarget{DialTarget::Kind::kDialIp, "127.0.113.10"}));
  EXPECT_EQ(node_dial_target(n, IpFamily::kV6),
            (DialTarget{DialTarget::Kind::kDialIp, "::1"}));
}

TEST(DerpMapNode, ResolvesHostNameWhenFieldIsEmpty) {
  const DERPNode n = node("derp.example.com");
  EXPECT_EQ(node_dial_target(n, IpFamily::kV4),
            (DialTarget{DialTarget::Kind::kResolve, "derp.example.com"}));
  EXPECT_EQ(node_dial_target(n, IpFamily::kV6),
            (DialTarget{DialTarget::Kind::kResolve, "derp.example.com"}));
}

TEST(DerpMapNode, SkipsFamilyWhenFieldIsNotAnIpOfIt) {
  DERPNode n = node("derp.example.com");
  n.ipv4 = "none";
  n.ipv6 = "127.0.113.10";  // an IPv4 literal in the IPv6 field disables IPv6
  EXPECT_EQ(node_dial_target(n, IpFamily::kV4).kind, DialTarget::Kind::kSkip);
  EXPECT_EQ(node_dial_target(n, IpFamily::kV6).kind, DialTarget::Kind::kSkip);
  n.ipv4 = "::1";
  EXPECT_EQ(node_dial_target(n, IpFamily::kV4).kind, DialTarget::Kind::kSkip);
}

TEST(DerpMapNode, IpLiteralHostNameIsDialedOnlyInItsFamily) {
  // §8's node 900b: HostName 127.0.113.11, IPv6 "none".
  const DERPMap m = parse_ok(kSection8Map);
  const DERPNode& b = m.regions.at(900).nodes[1];
  EXPECT_EQ(node_dial_target(b, IpFamily::kV4),
            (DialTarget{DialTarget::Kind::kDialIp, "127.0.113.11"}));
  EXPECT_EQ(node_dial_target(b, IpFamily::kV6).kind, DialTarget::Kind::kSkip);
  DERPNode v6 = node("::1");
  EXPECT_EQ(node_dial_target(v6, IpFamily::kV4).kind, DialTarget::Kind::kSkip);
  EXPECT_EQ(node_dial_target(v6, IpFamily::kV6),
            (DialTarget{DialTarget::Kind::kDialIp, "::1"}));
}

TEST(DerpMapNode, StunTargetPrefersStunTestIp) {
  DERPNode n = node("derp.example.com");
  n.ipv4 = "127.0.113.10";
  n.stun_test_ip = "127.0.0.1";
  EXPECT_EQ(node_stun_target(n, IpFamily::kV4),
            (DialTarget{DialTarget::Kind::kDialIp, "127.0.0.1"}));
  EXPECT_EQ(node_stun_target(n, IpFamily::kV6).kind, DialTarget::Kind::kSkip);
  n.stun_test_ip = "";
  EXPECT_EQ(node_stun_target(n, IpFamily::kV4),
            (DialTarget{DialTarget::Kind::kDialIp, "127.0.113.10"}));
  EXPECT_EQ(node_stun_target(n, IpFamily::kV6),
            (DialTarget{DialTarget::Kind::kResolve, "derp.example.com"}));
  n.stun_port = -1;
  EXPECT_EQ(node_stun_target(n, IpFamily::kV4).kind, DialTarget::Kind::kSkip);
}

}  // namespace
}  // namespace derp
