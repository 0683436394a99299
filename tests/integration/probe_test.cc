// derp-probe and derp-captive as a user runs them, against a DERP map of three local regions:
// in-process relays on 127.0.0.1 (STUN on ephemeral ports) behind TLS terminators, the map
// written by the test. PROTOCOL.md §8–§10.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "derp/server.h"
#include "support/process.h"
#include "support/relay_harness.h"
#include "support/tls_proxy.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A UDP port with a socket bound that never answers: STUN to it gets no reply ("UDP blocked").
class SilentUdp {
 public:
  SilentUdp() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentUdp() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A loopback HTTP server answering every request with one canned response (a captive portal,
// a middlebox), then closing.
class CannedHttp {
 public:
  explicit CannedHttp(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~CannedHttp() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string head;
      char buf[1024];
      while (head.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      ++requests_;
      (void)!::send(c, response_.data(), response_.size(), MSG_NOSIGNAL);
      ::shutdown(c, SHUT_WR);
      ::close(c);
    }
  }

  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

struct Region {
  int id = 0;
  std::unique_ptr<Server> relay;
  std::unique_ptr<TlsProxy> proxy;
};

json node_json(int region, const std::string& name, uint16_t derp_port, int stun_port) {
  return {{"Name", name},          {"RegionID", region},         {"HostName", "localhost"},
          {"IPv4", "127.0.0.1"},   {"IPv6", "none"},             {"STUNPort", stun_port},
          {"DERPPort", derp_port}, {"InsecureForTests", true},   {"CanPort80", true}};
}

class Probe : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = make_test_cert();
    for (int id : {900, 901, 902}) regions_.push_back(start_region(id, cert_));
  }

  static Region start_region(int id, const TestCert& cert) {
    Region r;
    r.id = id;
    ServerOptions o;
    o.stun = true;
    o.stun_port = 0;
    r.relay = start_relay(std::move(o));
    if (r.relay) r.proxy = TlsProxy::start(cert, r.relay->port());
    return r;
  }

  // The map: one node per region; `stun_port` overrides a region's STUN port.
  json map_json(std::map<int, int> stun_port = {}, json home_params = nullptr) const {
    json regions = json::object();
    for (const auto& r : regions_) {
      int sp = stun_port.count(r.id) ? stun_port[r.id] : r.relay->stun_port();
      regions[std::to_string(r.id)] = {
          {"RegionID", r.id},
          {"RegionCode", "r" + std::to_string(r.id - 899)},
          {"RegionName", "Region " + std::to_string(r.id)},
          {"Nodes", json::array({node_json(r.id, std::to_string(r.id) + "a", r.proxy->port(),
                                           sp)})}};
    }
    json m{{"Regions", regions}};
    if (!home_params.is_null()) m["HomeParams"] = home_params;
    return m;
  }

  std::string write_map(const json& m, const std::string& name = "map.json") const {
    return write_temp_file(name, m.dump(2));
  }

  // Region 901 ("r2") wins by score whatever loopback jitter says.
  static json favour_901() {
    return {{"RegionScore", {{"900", 1e6}, {"902", 1e6}}}};
  }

  TestCert cert_;
  std::vector<Region> regions_;
};

json last_json(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return json::parse(last);
}

const json* region_of(const json& report, int id) {
  for (const auto& r : report.at("regions")) {
    if (r.at("id") == id) return &r;
  }
  return nullptr;
}

TEST_F(Probe, JsonReportMeasuresEveryRegionOverStunAndPicksHome) {
  auto map = write_map(map_json({}, favour_901()));
  auto res = run_tool("derp-probe", {"--derp-map", map, "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  json j = last_json(res.out);
  ASSERT_TRUE(j.at("ok").get<bool>());
  const json& r = j.at("report");
  EXPECT_TRUE(r.at("udp").get<bool>());
  EXPECT_TRUE(r.at("ipv4").get<bool>());
  EXPECT_EQ(r.at("preferred_derp"), 901);
  EXPECT_EQ(r.at("global_v4").get<std::string>().rfind("127.0.0.1:", 0), 0u);
  // One relay saw one source address: the mapping is stable across destinations.
  EXPECT_EQ(r.at("mapping_varies_by_dest_ip"), false);
  for (int id : {900, 901, 902}) {
    const json* reg = region_of(r, id);
    ASSERT_NE(reg, nullptr) << id;
    EXPECT_TRUE(reg->at("v4_ms").is_number()) << id;
    EXPECT_TRUE(reg->at("latency_ms").is_number()) << id;
    EXPECT_TRUE(reg->at("https_ms").is_null()) << id;  // UDP answered: no fallback
  }
  EXPECT_EQ(r.at("home").at("candidate"), 901);
  EXPECT_GT(r.at("home").at("scaled_ms").at("900").get<double>(),
            r.at("home").at("scaled_ms").at("901").get<double>());
}

TEST_F(Probe, TableAndExplainSayWhyTheHomeWon) {
  auto map = write_map(map_json({}, favour_901()));
  auto res = run_tool("derp-probe", {"--derp-map", map, "--explain"});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  EXPECT_NE(res.out.find("Preferred DERP:         901 (r2)"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("REGION"), std::string::npos);
  EXPECT_NE(res.out.find("Why region 901 (r2) is preferred"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("lowest latency"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("<- preferred"), std::string::npos) << res.out;
  // Piped: no live progress lines on stderr.
  EXPECT_EQ(res.err.find("region 900"), std::string::npos) << res.err;
}

TEST_F(Probe, HysteresisKeepsPreviousHomeAndExplainsIt) {
  // Previous home 900; 901 wins on score, but the scores shrink both to far under 10 ms (so
  // scheduling noise cannot matter): 900 stays home.
  auto map = write_map(map_json({}, json{{"RegionScore", {{"900", 1e-3}, {"901", 1e-6}}}}));
  auto first = run_tool("derp-probe", {"--derp-map", map, "--json"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  json prev = last_json(first.out);
  ASSERT_EQ(prev.at("report").at("preferred_derp"), 901);
  prev["report"]["preferred_derp"] = 900;
  auto prev_path = write_temp_file("previous.json", prev.dump());
  auto res = run_tool("derp-probe", {"--derp-map", map, "--previous", prev_path, "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  json r = last_json(res.out).at("report");
  EXPECT_EQ(r.at("preferred_derp"), 900);
  EXPECT_EQ(r.at("home").at("candidate"), 901);
  EXPECT_TRUE(r.at("home").at("kept_old_home").get<bool>());
  auto text = run_tool("derp-probe", {"--derp-map", map, "--previous", prev_path, "--explain"});
  EXPECT_NE(text.out.find("kept previous home 900"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("Previous home: 900 (r1)"), std::string::npos) << text.out;
}

TEST_F(Probe, RegionWithoutStunAnswerGetsHttpsLatency) {
  SilentUdp silent;
  auto map = write_map(map_json({{902, silent.port()}}));
  auto res = run_tool("derp-probe", {"--derp-map", map, "--json", "--timeout", "4s"});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  json r = last_json(res.out).at("report");
  const json* blocked = region_of(r, 902);
  ASSERT_NE(blocked, nullptr);
  EXPECT_TRUE(blocked->at("v4_ms").is_null());
  EXPECT_TRUE(blocked->at("https_ms").is_number()) << blocked->dump();
  // Other regions answered over UDP, so (as in Go) HTTPS does not count as RegionLatency.
  EXPECT_TRUE(blocked->at("latency_ms").is_null());
  EXPECT_NE(r.at("preferred_derp"), 902);
}

TEST_F(Probe, NoUdpAtAllUsesHttpsLatencyForTheHome) {
  SilentUdp a, b, c;
  auto map = write_map(
      map_json({{900, a.port()}, {901, b.port()}, {902, c.port()}}, favour_901()));
  auto res = run_tool("derp-probe", {"--derp-map", map, "--json", "--timeout", "4s"});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  json r = last_json(res.out).at("report");
  EXPECT_FALSE(r.at("udp").get<bool>());
  EXPECT_TRUE(r.at("ipv4").get<bool>());  // from the HTTPS connection's family
  EXPECT_EQ(r.at("preferred_derp"), 901);
  for (int id : {900, 901, 902}) {
    EXPECT_TRUE(region_of(r, id)->at("latency_ms").is_number()) << id;
  }
}

TEST_F(Probe, NoUdpRunsTheCaptivePortalCheck) {
  SilentUdp a, b, c;
  auto map = write_map(map_json({{900, a.port()}, {901, b.port()}, {902, c.port()}}));
  CannedHttp portal("HTTP/1.1 302 Found\r\nLocation: http://portal.invalid/\r\n\r\n");
  auto res = run_tool("derp-probe", {"--derp-map", map, "--json", "--timeout", "4s",
                                     "--captive-port", std::to_string(portal.port())});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  EXPECT_EQ(last_json(res.out).at("report").at("captive_portal"), true);
  EXPECT_GT(portal.requests(), 0);
  // The relay itself answers the challenge: no portal.
  auto clean = run_tool("derp-probe", {"--derp-map", map, "--json", "--timeout", "4s",
                                       "--captive-port", std::to_string(regions_[0].relay->port())});
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(last_json(clean.out).at("report").at("captive_portal"), false);
  // UDP works: the check is not run (unknown), as in Go.
  auto udp = run_tool("derp-probe", {"--derp-map", write_map(map_json(), "ok.json"), "--json",
                                     "--captive-port", std::to_string(portal.port())});
  EXPECT_TRUE(last_json(udp.out).at("report").at("captive_portal").is_null());
}

TEST_F(Probe, NothingAnswersExitsOne) {
  SilentUdp a;
  regions_.resize(1);
  auto m = map_json({{900, a.port()}});
  m["Regions"]["900"]["Nodes"][0]["DERPPort"] = a.port();  // no TCP listener there
  auto res = run_tool("derp-probe", {"--derp-map", write_map(m), "--json", "--timeout", "2s"});
  EXPECT_EQ(res.exit_code, 1) << res.err;
  EXPECT_EQ(last_json(res.out).at("report").at("preferred_derp"), 0);
}

TEST_F(Probe, MissingMapFileIsAUsageError) {
  // The same loader and exit code as every tool's --derp-map (derp-connect: exit 2 too).
  auto res = run_tool("derp-probe", {"--derp-map", "/nonexistent/map.json"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("cannot read /nonexistent/map.json"), std::string::npos);
  auto bad = run_tool("derp-probe", {"--derp-map", write_temp_file("bad.json", "{\"Regions\":3}")});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
}

TEST_F(Probe, MapFromUrl) {
  // The relay has no map route: a 404 is an HTTP error (exit 6), named in one line.
  auto url = "http://127.0.0.1:" + std::to_string(regions_[0].relay->port()) + "/derpmap";
  auto res = run_tool("derp-probe", {"--derp-map", url});
  EXPECT_EQ(res.exit_code, 6) << res.err;
  EXPECT_NE(res.err.find("HTTP status"), std::string::npos) << res.err;
  // A loopback server that serves the map.
  auto body = map_json({}, favour_901()).dump();
  CannedHttp served("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  auto ok = run_tool("derp-probe",
                     {"--derp-map", "http://127.0.0.1:" + std::to_string(served.port()) + "/m",
                      "--json"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(last_json(ok.out).at("report").at("preferred_derp"), 901);
}

// ---- derp-captive

std::string relay_base_url(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

TEST_F(Probe, CaptiveNoPortalAgainstRealRelay) {
  auto res = run_tool("derp-captive", {relay_base_url(regions_[0].relay->port()), "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  json j = last_json(res.out);
  EXPECT_FALSE(j.at("captive_portal").get<bool>());
  EXPECT_EQ(j.at("endpoints")[0].at("verdict"), "no_portal");
  auto text = run_tool("derp-captive", {relay_base_url(regions_[1].relay->port())});
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("no captive portal"), std::string::npos) << text.out;
}

TEST_F(Probe, CaptiveDetectsRedirectBodyAndWrongOrMissingHeader) {
  struct Case {
    std::string response;
    std::string verdict;
    std::string words;
  };
  std::vector<Case> cases = {
      {"HTTP/1.1 302 Found\r\nLocation: http://portal.invalid/login\r\nContent-Length: 0\r\n\r\n",
       "redirect", "redirect to http://portal.invalid/login"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n<html>hi</html>",
       "body", "200 with a 15-byte body"},
      {"HTTP/1.1 204 No Content\r\nX-Tailscale-Response: response nope\r\n\r\n", "wrong_header",
       "expected \"response ts_"},
      {"HTTP/1.1 204 No Content\r\n\r\n", "missing_header", "without X-Tailscale-Response"},
  };
  for (const auto& c : cases) {
    CannedHttp portal(c.response);
    auto res = run_tool("derp-captive", {relay_base_url(portal.port()), "--json"});
    EXPECT_EQ(res.exit_code, 1) << c.verdict << res.err;
    json j = last_json(res.out);
    EXPECT_TRUE(j.at("captive_portal").get<bool>()) << c.verdict;
    EXPECT_EQ(j.at("endpoints")[0].at("verdict"), c.verdict);
    EXPECT_NE(j.at("endpoints")[0].at("detail").get<std::string>().find(c.words),
              std::string::npos)
        << j.dump();
    auto text = run_tool("derp-captive", {relay_base_url(portal.port())});
    EXPECT_EQ(text.exit_code, 1);
    EXPECT_NE(text.out.find("captive portal or middlebox detected"), std::string::npos);
  }
}

TEST_F(Probe, CaptiveOverMapChecksNodesInParallelAndAnyPortalCounts) {
  CannedHttp portal("HTTP/1.1 302 Found\r\nLocation: http://portal.invalid/\r\n\r\n");
  // --port applies to every node: point it at the relay of 900 (healthy) and check all.
  auto map = write_map(map_json());
  auto res = run_tool("derp-captive", {"--derp-map", map, "--port",
                                       std::to_string(regions_[0].relay->port()), "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  EXPECT_EQ(last_json(res.out).at("endpoints").size(), 3u);
  auto bad = run_tool("derp-captive", {"--derp-map", map, "--port", std::to_string(portal.port())});
  EXPECT_EQ(bad.exit_code, 1) << bad.out;
  EXPECT_EQ(portal.requests(), 3);
}

TEST_F(Probe, CaptiveNetworkFailureUsesSharedExitCodes) {
  SilentUdp nothing;  // its port has no TCP listener
  auto res = run_tool("derp-captive", {relay_base_url(nothing.port()), "--json"});
  EXPECT_EQ(res.exit_code, 4) << res.err;
  EXPECT_EQ(last_json(res.out).at("error").at("layer"), "connect");
  auto dns = run_tool("derp-captive", {"relay.invalid"});
  EXPECT_EQ(dns.exit_code, 3) << dns.err;
  auto usage = run_tool("derp-captive", {});
  EXPECT_EQ(usage.exit_code, 2);
}

// ---- Prober

TEST_F(Probe, ProberOncePassesOnHealthyRelays) {
  auto map = write_map(map_json());
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  for (const char* name : {"tls/900/900a", "stun4/901/901a", "derp/902/902a",
                           "sendrecv/900/900a->900a"}) {
    std::regex row(std::string(name) + R"(\s+ok\s)");
    EXPECT_TRUE(std::regex_search(res.out, row)) << name << "\n" << res.out;
  }
}

TEST_F(Probe, ProberOnceFailsNamingTheCheckWhenARelayIsDown) {
  auto map = write_map(map_json());
  regions_[2].relay->stop();  // 902: TLS still terminates, DERP and STUN are gone
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "2s"});
  EXPECT_EQ(res.exit_code, 1) << res.out;
  EXPECT_NE(res.err.find("FAIL derp/902/902a"), std::string::npos) << res.err;
  EXPECT_NE(res.err.find("FAIL stun4/902/902a"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find("FAIL derp/900/900a"), std::string::npos) << res.err;
  auto j = run_tool("derp-probe",
                    {"--prober", "--once", "--derp-map", map, "--timeout", "2s", "--json"});
  EXPECT_EQ(j.exit_code, 1);
  json out = last_json(j.out);
  EXPECT_FALSE(out.at("ok").get<bool>());
  bool found = false;
  for (const auto& c : out.at("checks")) {
    if (c.at("name") == "derp/902/902a") found = !c.at("ok").get<bool>();
  }
  EXPECT_TRUE(found) << out.dump();
}

TEST_F(Probe, ProberOnceFailsTlsOnExpiredCertificate) {
  TestCertSpec spec;
  spec.expired = true;
  regions_[1].proxy = TlsProxy::start(make_test_cert(spec), regions_[1].relay->port());
  auto map = write_map(map_json());
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map});
  EXPECT_EQ(res.exit_code, 1) << res.out;
  EXPECT_NE(res.err.find("FAIL tls/901/901a: certificate expired"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find("FAIL tls/900/900a"), std::string::npos) << res.err;
}

TEST_F(Probe, ProberOnceWarnsOnCertificateExpiringSoon) {
  auto map = write_map(map_json());
  // The test certificate is valid for 30 days.
  auto res = run_tool("derp-probe",
                      {"--prober", "--once", "--derp-map", map, "--cert-warn-days", "60"});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("FAIL tls/900/900a: certificate expires in"), std::string::npos)
      << res.err;
}

TEST_F(Probe, ProberServesPrometheusMetrics) {
  auto map = write_map(map_json());
  Process p(tool_path("derp-probe"),
            {"--prober", "--listen", "127.0.0.1:0", "--interval", "1h", "--derp-map", map});
  auto line = p.wait_for_line("prober listening on", 10s, Process::Stream::kStdout);
  ASSERT_TRUE(line) << p.err();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*line, m, std::regex(R"(127\.0\.0\.1:(\d+)/metrics)")));
  const uint16_t port = static_cast<uint16_t>(std::stoi(m[1]));
  ASSERT_TRUE(p.wait_for_line("round 1:", 30s, Process::Stream::kStderr)) << p.err();
  RawConn c(port);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.write("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto resp = c.read_http_response();
  ASSERT_TRUE(resp);
  ASSERT_EQ(resp->rfind("HTTP/1.1 200", 0), 0u) << *resp;
  std::string body = resp->substr(resp->find("\r\n\r\n") + 4);
  // Prometheus text format: comments, or `name{labels} value`.
  std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? -?[0-9.e+-]+$)");
  std::istringstream in(body);
  std::string l;
  int samples = 0;
  while (std::getline(in, l)) {
    if (l.empty() || l[0] == '#') continue;
    EXPECT_TRUE(std::regex_match(l, sample)) << l;
    ++samples;
  }
  EXPECT_GT(samples, 10);
  EXPECT_NE(body.find("derp_probe_check_success{check=\"derp\",region=\"900\",node=\"900a\"} 1"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("derp_probe_cert_expiry_seconds{region=\"901\",node=\"901a\"}"),
            std::string::npos);
  EXPECT_NE(body.find("derp_probe_runs_total 1"), std::string::npos);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(10s).exit_code, 0) << p.err();
}

// ---- --assert (the engine derp-ping uses) over the netcheck report and a prober round

TEST_F(Probe, AssertPassesWhenPreferredLatencyAndUdpHold) {
  auto map = write_map(map_json({}, favour_901()));
  auto res = run_tool("derp-probe", {"--derp-map", map, "--json", "--assert",
                                     "preferred==r2,latency(r2)<10s,udp==true", "--assert",
                                     "regions_reachable==3,preferred!=900"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  json j = last_json(res.out);
  EXPECT_TRUE(j.at("ok").get<bool>());
  ASSERT_EQ(j.at("asserts").size(), 5u) << j.dump();
  for (const auto& a : j.at("asserts")) EXPECT_TRUE(a.at("ok").get<bool>()) << a.dump();
  EXPECT_EQ(j["asserts"][0]["value"], 901);
  EXPECT_EQ(j["asserts"][0]["value_text"], "901 (r2)");
  EXPECT_EQ(j["asserts"][2]["value"], true);
}

TEST_F(Probe, ViolatedAssertionIsNamedAndExitsOne) {
  auto map = write_map(map_json({}, favour_901()));
  auto res = run_tool("derp-probe",
                      {"--derp-map", map, "--assert", "preferred==r1,udp==false,ipv4==true"});
  EXPECT_EQ(res.exit_code, 1) << res.err << res.out;
  EXPECT_NE(res.out.find("Preferred DERP:         901 (r2)"), std::string::npos) << res.out;
  EXPECT_NE(res.err.find("assert failed: preferred=901 (r2), want ==r1"), std::string::npos)
      << res.err;
  EXPECT_NE(res.err.find("assert failed: udp=true, want ==false"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find("ipv4"), std::string::npos) << res.err;  // that one held
}

TEST_F(Probe, BadAssertionExitsTwoNamingTheMetricOrRegion) {
  auto map = write_map(map_json());
  auto res = run_tool("derp-probe", {"--derp-map", map, "--assert", "latency(zz)<50ms"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("unknown region \"zz\""), std::string::npos) << res.err;
  EXPECT_NE(res.err.find("900 (r1)"), std::string::npos) << res.err;  // the known ones
  res = run_tool("derp-probe", {"--derp-map", map, "--assert", "preferred==nowhere"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("unknown region \"nowhere\""), std::string::npos) << res.err;
  res = run_tool("derp-probe", {"--derp-map", map, "--assert", "jitter<5ms", "--json"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("unknown metric \"jitter\""), std::string::npos) << res.err;
  EXPECT_EQ(last_json(res.out).at("error").at("layer"), "usage");
  res = run_tool("derp-probe", {"--derp-map", map, "--assert", "udp<1"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("udp compares only with == or !="), std::string::npos) << res.err;
  res = run_tool("derp-probe", {"lint", map, "--assert", "failed==0"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  res = run_tool("derp-probe", {"--prober", "--listen", "127.0.0.1:0", "--derp-map", map,
                                "--assert", "failed==0"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("--assert needs --once"), std::string::npos) << res.err;
}

TEST_F(Probe, ProberOnceAssertsOverTheRound) {
  auto map = write_map(map_json());
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--json", "--assert",
                                     "failed==0,checks>=12,passed==checks"});
  // "passed==checks" compares with a number, not another metric: a usage error.
  EXPECT_EQ(res.exit_code, 2) << res.err;
  res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--json", "--assert",
                                "failed==0,checks>=9"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  EXPECT_EQ(last_json(res.out).at("asserts").size(), 2u);

  regions_[2].relay->stop();
  // Tolerating the failures of one region passes; demanding none names the violation.
  res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "2s",
                                "--assert", "failed>=1,failed<=10"});
  EXPECT_EQ(res.exit_code, 0) << res.err << res.out;
  res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "2s",
                                "--assert", "failed==0"});
  EXPECT_EQ(res.exit_code, 1) << res.err << res.out;
  EXPECT_NE(res.err.find("assert failed: failed="), std::string::npos) << res.err;
  EXPECT_NE(res.err.find("want ==0"), std::string::npos) << res.err;
}

// ---- IPv6: a region whose only node is on ::1 (derp-serve's own TLS with a generated
// certificate, STUN on [::1])

bool probe_has_ipv6_loopback() {
  int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

class ProbeIpv6 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!probe_has_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
    char tmpl[] = "/tmp/derp-probe-v6-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = "[::1]:0";
    o.threads = 1;
    o.stun = true;
    o.stun_port = 0;
    o.cert_mode = "manual";
    o.cert_dir = dir_;
    o.hostname = "::1";
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s) << s.error().message;
    relay_ = std::move(*s);
    json node = {{"Name", "950a"},
                 {"RegionID", 950},
                 {"HostName", "localhost"},
                 {"IPv4", "none"},
                 {"IPv6", "::1"},
                 {"STUNPort", relay_->stun_port()},
                 {"DERPPort", relay_->port()},
                 {"InsecureForTests", true}};
    json m = {{"Regions",
               {{"950",
                 {{"RegionID", 950},
                  {"RegionCode", "v6"},
                  {"RegionName", "IPv6 only"},
                  {"Nodes", json::array({node})}}}}}};
    map_ = write_temp_file("map-v6.json", m.dump(2));
  }
  void TearDown() override {
    relay_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  std::string map_;
  std::unique_ptr<Server> relay_;
};

TEST_F(ProbeIpv6, NetcheckMeasuresStunOverIpv6AndPicksTheRegion) {
  auto res = run_tool("derp-probe", {"--derp-map", map_, "--json", "--assert",
                                     "ipv6==true,preferred==v6,latency(v6)<10s"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  const json r = last_json(res.out).at("report");
  EXPECT_TRUE(r.at("udp").get<bool>());
  EXPECT_TRUE(r.at("ipv6").get<bool>());
  EXPECT_FALSE(r.at("ipv4").get<bool>());
  EXPECT_EQ(r.at("global_v6").get<std::string>().rfind("[::1]:", 0), 0u) << r.dump();
  EXPECT_EQ(r.at("preferred_derp"), 950);
  const json* reg = region_of(r, 950);
  ASSERT_NE(reg, nullptr);
  EXPECT_TRUE(reg->at("v6_ms").is_number()) << reg->dump();
  EXPECT_TRUE(reg->at("v4_ms").is_null()) << reg->dump();
  EXPECT_GE(relay_->counters()["stun_addrfamily_ipv6"], 1);
}

TEST_F(ProbeIpv6, ProberOncePassesTlsStunAndDerpOverIpv6) {
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map_, "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  std::set<std::string> passed;
  const json out = last_json(res.out);
  for (const auto& c : out.at("checks")) {
    if (c.at("ok").get<bool>()) passed.insert(c.at("name").get<std::string>());
  }
  for (const char* name : {"tls/950/950a", "stun6/950/950a", "derp/950/950a"}) {
    EXPECT_TRUE(passed.count(name)) << name << "\n" << res.out;
  }
  EXPECT_FALSE(passed.count("stun4/950/950a")) << "IPv4 is none for this node";
}

TEST_F(Probe, ProberFlagsNeedEachOther) {
  EXPECT_EQ(run_tool("derp-probe", {"--once"}).exit_code, 2);
  EXPECT_EQ(run_tool("derp-probe", {"--prober"}).exit_code, 2);
}

// ---- lint

TEST_F(Probe, LintCleanMapExitsZero) {
  auto res = run_tool("derp-probe", {"lint", write_map(map_json())});
  EXPECT_EQ(res.exit_code, 0) << res.out;
  EXPECT_NE(res.out.find("no findings"), std::string::npos);
}

TEST_F(Probe, LintBrokenMapPrintsOneLinePerFinding) {
  json m = map_json();
  auto& n900 = m["Regions"]["900"]["Nodes"];
  n900.push_back(n900[0]);  // duplicate name
  m["Regions"]["901"]["Nodes"][0]["CertName"] = "sha256-raw:abc";
  m["Regions"]["902"]["Nodes"][0]["STUNOnly"] = true;
  m["Regions"]["902"]["Nodes"][0]["IPv6"] = "127.0.0.1";
  auto res = run_tool("derp-probe", {"lint", write_map(m)});
  EXPECT_EQ(res.exit_code, 1);
  for (const char* line :
       {"region 900 node 900a: duplicate-node-name: Name \"900a\" already used by region 900 node 900a",
        "region 901 node 901a: bad-certname: sha256-raw: needs 64 hex digits",
        "region 902: stun-only-region:", "region 902 node 902a: wrong-family: IPv6 \"127.0.0.1\""}) {
    EXPECT_NE(res.out.find(line), std::string::npos) << line << "\n" << res.out;
  }
  auto j = run_tool("derp-probe", {"lint", write_map(m), "--json"});
  EXPECT_EQ(j.exit_code, 1);
  EXPECT_EQ(last_json(j.out).at("findings").size(), 4u) << j.out;
}

TEST_F(Probe, LintActiveFindsUnreachablePorts) {
  SilentUdp nothing;  // no TCP listener on its port
  json m = map_json();
  m["Regions"]["901"]["Nodes"][0]["DERPPort"] = nothing.port();
  auto res = run_tool("derp-probe", {"lint", write_map(m), "--active", "--timeout", "2s"});
  EXPECT_EQ(res.exit_code, 1) << res.out;
  EXPECT_NE(res.out.find("region 901 node 901a: unreachable-port: DERP port 127.0.0.1:" +
                         std::to_string(nothing.port())),
            std::string::npos)
      << res.out;
  EXPECT_EQ(res.out.find("region 900"), std::string::npos) << res.out;
}

}  // namespace
}  // namespace derp::test
