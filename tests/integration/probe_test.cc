// derp-probe and derp-captive as a user runs them, against a DERP map of three local regions:
// in-process relays on 127.0.0.1 (STUN on ephemeral ports) behind TLS terminators, the map
// written by the test. PROTOCOL.md §8–§10.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "derp/prober.h"
#include "derp/server.h"
#include "derp/stun.h"
#include "support/process.h"
#include "support/pty.h"
#include "support/relay_harness.h"
#include "support/tls_proxy.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A UDP socket bound to 127.0.0.1 on an ephemeral port; sets *port.
int probe_bind_loopback_udp(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A UDP port with a socket bound that never answers: STUN to it gets no reply ("UDP blocked").
class SilentUdp {
 public:
  SilentUdp() { fd_ = probe_bind_loopback_udp(&port_); }
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
    fd_ = listen_loopback(16, &port_);
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
  EXPECT_NE(res.err.find(" derp/902/902a"), std::string::npos) << res.err;
  EXPECT_NE(res.err.find(" stun4/902/902a"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" derp/900/900a"), std::string::npos) << res.err;
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
  EXPECT_NE(res.err.find(" tls/901/901a: certificate expired"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" tls/900/900a"), std::string::npos) << res.err;
}

TEST_F(Probe, ProberOnceWarnsOnCertificateExpiringSoon) {
  auto map = write_map(map_json());
  // The test certificate is valid for 30 days.
  auto res = run_tool("derp-probe",
                      {"--prober", "--once", "--derp-map", map, "--cert-warn-days", "60"});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find(" tls/900/900a: certificate expires in"), std::string::npos)
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

// ---- Bandwidth probe (derpprobe's --bw-interval / --bw-probe-size-bytes)

// GET /metrics from the prober on 127.0.0.1:port; the body, or "" on failure.
std::string probe_scrape_metrics(uint16_t port) {
  RawConn c(port);
  if (!c.ok() || !c.write("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")) return "";
  auto resp = c.read_http_response();
  if (!resp || resp->rfind("HTTP/1.1 200", 0) != 0) return "";
  return resp->substr(resp->find("\r\n\r\n") + 4);
}

const json* probe_check_named(const json& out, const std::string& name) {
  for (const auto& c : out.at("checks")) {
    if (c.at("name") == name) return &c;
  }
  return nullptr;
}

TEST_F(Probe, ProberOnceBandwidthTransfersBetweenClientsOfEachNode) {
  auto map = write_map(map_json());
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--bw-size", "262144",
                                     "--json", "--assert", "bw_mbps>0,bw_time<30s"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  const json out = last_json(res.out);
  for (int id : {900, 901, 902}) {
    const std::string node = std::to_string(id) + "a";
    const json* c = probe_check_named(out, "bw/" + std::to_string(id) + "/" + node + "->" + node);
    ASSERT_NE(c, nullptr) << id << out.dump();
    EXPECT_TRUE(c->at("ok").get<bool>()) << c->dump();
    EXPECT_EQ(c->at("check"), "bw");
    EXPECT_EQ(c->at("bytes"), 262144);
    EXPECT_GT(c->at("seconds").get<double>(), 0) << c->dump();
    EXPECT_GT(c->at("mbps").get<double>(), 0) << c->dump();
    EXPECT_NEAR(c->at("mbps").get<double>(), 262144 * 8 / c->at("seconds").get<double>() / 1e6,
                1e-3);
  }
  ASSERT_EQ(out.at("asserts").size(), 2u);
  for (const auto& a : out.at("asserts")) EXPECT_TRUE(a.at("ok").get<bool>()) << a.dump();
  // The table: one row per transfer with its size and speed.
  auto text =
      run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--bw-size", "100000"});
  ASSERT_EQ(text.exit_code, 0) << text.err << text.out;
  EXPECT_TRUE(std::regex_search(
      text.out,
      std::regex(
          R"(bw/901/901a->901a\s+ok\s+[0-9.]+ms\s+100000 bytes in [0-9.]+ ms, [0-9.]+ Mbit/s)")))
      << text.out;
  // Without --bw-size there is no bandwidth check, and bw_* assertions have nothing to hold.
  auto off = run_tool("derp-probe",
                      {"--prober", "--once", "--derp-map", map, "--json", "--assert", "bw_mbps>0"});
  EXPECT_EQ(off.exit_code, 1) << off.err;
  EXPECT_EQ(last_json(off.out).at("checks").dump().find("\"bw\""), std::string::npos);
}

TEST_F(Probe, ProberOnceBandwidthFailsNamingTheCheckWhenARelayIsDown) {
  auto map = write_map(map_json());
  regions_[2].relay->stop();
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "2s",
                                     "--bw-size", "262144", "--no-sendrecv"});
  EXPECT_EQ(res.exit_code, 1) << res.out;
  EXPECT_NE(res.err.find(" bw/902/902a->902a"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" bw/900/900a->900a"), std::string::npos) << res.err;
  EXPECT_TRUE(std::regex_search(res.out, std::regex(R"(bw/900/900a->900a\s+ok)"))) << res.out;
}

TEST_F(Probe, ProberOnceBandwidthFailsWhenTheRelayLosesPackets) {
  // 901's relay drops half of what it relays: Ping/Pong (derp) still passes, a 1 MiB transfer
  // (16 packets, all must arrive) cannot.
  ServerOptions o;
  o.stun = true;
  o.stun_port = 0;
  o.faults = {"drop=50"};
  regions_[1].relay = start_relay(std::move(o));
  ASSERT_TRUE(regions_[1].relay);
  regions_[1].proxy = TlsProxy::start(cert_, regions_[1].relay->port());
  auto map = write_map(map_json());
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "3s",
                                     "--bw-size", "1048576", "--no-sendrecv"});
  EXPECT_EQ(res.exit_code, 1) << res.out;
  EXPECT_NE(res.err.find(" bw/901/901a->901a"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" derp/901/901a"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" bw/900/900a->900a"), std::string::npos) << res.err;
  EXPECT_GE(regions_[1].relay->counters()["packets_dropped_reason_fault_injected"], 1)
      << "the fault did not apply";
}

TEST_F(Probe, ProberServesBandwidthMetricsAndSpacesTransfersByBwInterval) {
  auto map = write_map(map_json());
  Process p(tool_path("derp-probe"),
            {"--prober", "--listen", "127.0.0.1:0", "--interval", "1ms", "--bw-size", "65536",
             "--bw-interval", "1h", "--derp-map", map});
  auto line = p.wait_for_line("prober listening on", 10s, Process::Stream::kStdout);
  ASSERT_TRUE(line) << p.err();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*line, m, std::regex(R"(127\.0\.0\.1:(\d+)/metrics)")));
  const uint16_t port = static_cast<uint16_t>(std::stoi(m[1]));
  auto r1 = p.wait_for_line("round 1:", 30s, Process::Stream::kStderr);
  ASSERT_TRUE(r1) << p.err();
  EXPECT_NE(r1->find("bandwidth: 3 of 3 transfers passed"), std::string::npos) << *r1;
  // Round 2 comes 1 ms later; the next transfers are an hour away, their results stay.
  auto r2 = p.wait_for_line("round 2:", 30s, Process::Stream::kStderr);
  ASSERT_TRUE(r2) << p.err();
  EXPECT_EQ(r2->find("bandwidth"), std::string::npos) << *r2;
  const std::string body = probe_scrape_metrics(port);
  ASSERT_FALSE(body.empty());
  const std::string labels = R"({region="900",node="900a->900a"})";
  EXPECT_NE(
      body.find("derp_probe_check_success{check=\"bw\",region=\"900\",node=\"900a->900a\"} 1"),
      std::string::npos)
      << body;
  EXPECT_NE(body.find("derp_probe_bw_size_bytes" + labels + " 65536"), std::string::npos) << body;
  std::smatch v;
  ASSERT_TRUE(std::regex_search(
      body, v,
      std::regex(
          R"(derp_probe_bw_transfer_seconds\{region="901",node="901a->901a"\} ([0-9.e+-]+))")))
      << body;
  EXPECT_GT(std::stod(v[1]), 0);
  ASSERT_TRUE(std::regex_search(
      body, v, std::regex(R"(derp_probe_bw_mbps\{region="902",node="902a->902a"\} ([0-9.e+-]+))")))
      << body;
  EXPECT_GT(std::stod(v[1]), 0);
  std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? -?[0-9.e+-]+$)");
  std::istringstream in(body);
  std::string l;
  while (std::getline(in, l)) {
    if (l.empty() || l[0] == '#') continue;
    EXPECT_TRUE(std::regex_match(l, sample)) << l;
  }
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(10s).exit_code, 0) << p.err();
}

TEST_F(Probe, BandwidthFlagsAreRefusedWhereTheyCannotApply) {
  auto map = write_map(map_json());
  auto res = run_tool("derp-probe", {"--derp-map", map, "--bw-size", "1000"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("--bw-size needs --prober"), std::string::npos) << res.err;
  res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--bw-size", "1000",
                                "--bw-interval", "1m"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("--bw-interval needs --prober --listen and --bw-size"), std::string::npos)
      << res.err;
  res = run_tool("derp-probe",
                 {"--prober", "--listen", "127.0.0.1:0", "--derp-map", map, "--bw-interval", "1m"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--bw-size", "-5"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  res =
      run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--bw-size", "2000000000"});
  EXPECT_EQ(res.exit_code, 2) << res.err;
  // derpprobe's spelling works too.
  res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--no-sendrecv",
                                "--bw-probe-size-bytes", "70000", "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  const json out = last_json(res.out);
  const json* c = probe_check_named(out, "bw/900/900a->900a");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->at("bytes"), 70000);
}

// ---- Mesh pairs: a region of two relays meshed with each other (derper --mesh-with), each
// behind its own TLS terminator; sendrecv and bw between clients on different nodes go through
// mesh forwarding.


class ProbeMesh : public ::testing::Test {
 protected:
  // Two relays of region 900; meshed (both list both) or not.
  void start(bool meshed) {
    cert_ = make_test_cert();
    MeshKey psk;
    psk.bytes.fill(0x5a);
    const auto ports = free_loopback_ports(2);
    for (int i = 0; i < 2; ++i) {
      ServerOptions o;
      o.private_key = NodePrivate::generate();
      o.listen_addr = "127.0.0.1:" + std::to_string(ports[i]);
      o.threads = 1;
      if (meshed) {
        o.mesh_key = psk;
        for (uint16_t p : ports) {
          o.mesh_with.push_back("http://127.0.0.1:" + std::to_string(p) + "/derp");
        }
      }
      auto s = Server::start(std::move(o));
      ASSERT_TRUE(s) << s.error().message;
      relays_[i] = std::move(*s);
      proxies_[i] = TlsProxy::start(cert_, relays_[i]->port());
      ASSERT_TRUE(proxies_[i]);
    }
    if (!meshed) return;
    const auto until = std::chrono::steady_clock::now() + 10s;
    auto up = [&] {
      for (auto& r : relays_) {
        if (r->counters()["gauge_mesh_peers_connected"] != 1) return false;
      }
      return true;
    };
    while (!up() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(5ms);  // a short yield between polls of the gauge
    }
    ASSERT_TRUE(up()) << "mesh links did not come up";
  }

  std::string map() const {
    json nodes = json::array();
    for (int i = 0; i < 2; ++i) {
      nodes.push_back({{"Name", i == 0 ? "900a" : "900b"},
                       {"RegionID", 900},
                       {"HostName", "localhost"},
                       {"IPv4", "127.0.0.1"},
                       {"IPv6", "none"},
                       {"STUNPort", -1},
                       {"DERPPort", proxies_[i]->port()},
                       {"CertName", "sha256-raw:" + cert_.sha256_hex}});
    }
    json m = {
        {"Regions", {{"900", {{"RegionID", 900}, {"RegionCode", "mesh"}, {"Nodes", nodes}}}}}};
    return write_temp_file("map-mesh.json", m.dump(2));
  }

  TestCert cert_;
  std::unique_ptr<Server> relays_[2];
  std::unique_ptr<TlsProxy> proxies_[2];
};

TEST_F(ProbeMesh, SendRecvAndBandwidthCrossTheMeshBetweenNodesOfARegion) {
  start(true);
  auto res = run_tool("derp-probe",
                      {"--prober", "--once", "--derp-map", map(), "--bw-size", "200000", "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err << res.out;
  const json out = last_json(res.out);
  for (const char* name :
       {"sendrecv/900/900a->900b", "sendrecv/900/900b->900a", "sendrecv/900/900a->900a",
        "sendrecv/900/900b->900b", "bw/900/900a->900b", "bw/900/900b->900a", "derp/900/900b"}) {
    const json* c = probe_check_named(out, name);
    ASSERT_NE(c, nullptr) << name << "\n" << out.dump();
    EXPECT_TRUE(c->at("ok").get<bool>()) << c->dump();
  }
  // Packets between the nodes really went over the mesh links.
  EXPECT_GE(relays_[0]->counters()["packets_forwarded_out"] +
                relays_[1]->counters()["packets_forwarded_out"],
            2)
      << "no packet was forwarded between the relays";
}

TEST_F(ProbeMesh, PairChecksFailNamingTheCrossNodePairWhenTheRelaysAreNotMeshed) {
  start(false);
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map(), "--timeout", "2s",
                                     "--bw-size", "65536"});
  EXPECT_EQ(res.exit_code, 1) << res.out;
  for (const char* name :
       {" sendrecv/900/900a->900b", " sendrecv/900/900b->900a", " bw/900/900a->900b"}) {
    EXPECT_NE(res.err.find(name), std::string::npos) << name << "\n" << res.err;
  }
  EXPECT_NE(res.err.find("no packet from 900a arrived at 900b"), std::string::npos) << res.err;
  // Each relay alone works.
  EXPECT_EQ(res.err.find(" sendrecv/900/900a->900a"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" bw/900/900b->900b"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" derp/"), std::string::npos) << res.err;
}

// ---- The STUN client against a scripted responder: transaction ids matched, a lost request
// retried, the dual-stack answer (family 02, ::ffff:a.b.c.d) unmapped, and a mapping that
// differs between servers reported.

// UDP on 127.0.0.1: ignores the first binding request; answers the second with a response for
// another transaction (claiming 127.0.0.1:1111, which must be ignored), then with the right
// one in derper's dual-stack form claiming 127.0.0.1:4242.
class ScriptedStun {
 public:
  ScriptedStun() {
    fd_ = probe_bind_loopback_udp(&port_);
    timeval tv{0, 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedStun() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stop_) {
      uint8_t buf[1500];
      sockaddr_in from{};
      socklen_t len = sizeof from;
      ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0) continue;
      auto tx = stun::parse_binding_request(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
      if (!tx) continue;
      if (++requests_ == 1) continue;  // lost: the client must retry
      const std::array<uint8_t, 4> lo = {127, 0, 0, 1};
      stun::TxId other = *tx;
      other[0] ^= 0xff;
      reply(from, other, stun::Endpoint::v4(lo, 1111));
      reply(from, *tx, stun::Endpoint::v6(stun::map_v4(lo), 4242));
    }
  }
  void reply(const sockaddr_in& to, const stun::TxId& tx, const stun::Endpoint& mapped) {
    uint8_t out[stun::kMaxResponseLen];
    const size_t n = stun::encode_binding_response(out, tx, mapped);
    ::sendto(fd_, out, n, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

TEST_F(Probe, StunClientMatchesTransactionsRetriesAndUnmapsDualStackAnswers) {
  ScriptedStun scripted;
  auto map = write_map(map_json({{901, scripted.port()}}));
  auto res = run_tool("derp-probe", {"--derp-map", map, "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  const json r = last_json(res.out).at("report");
  EXPECT_GE(scripted.requests(), 2) << "the first request was lost: a retry must follow";
  const json* reg = region_of(r, 901);
  ASSERT_NE(reg, nullptr);
  EXPECT_TRUE(reg->at("v4_ms").is_number()) << reg->dump();
  const json& counters = r.at("global_v4_counters");
  EXPECT_EQ(counters.value("127.0.0.1:4242", 0), 1) << counters.dump();  // unmapped to IPv4
  EXPECT_FALSE(counters.contains("127.0.0.1:1111")) << "a reply to another transaction counted";
  EXPECT_FALSE(counters.contains("[::ffff:127.0.0.1]:4242")) << counters.dump();
  // The real relays saw our socket's own port; the scripted one claims 4242.
  EXPECT_EQ(r.at("mapping_varies_by_dest_ip"), true) << r.dump();
  EXPECT_TRUE(r.at("ipv4").get<bool>());
}

// ---- On a terminal: a live progress line (redrawn in place, erased before the report) and
// coloured verdicts; piped or with --json, neither.

// An SGR colour sequence (ESC[...m); the progress line's erase (ESC[K) is none.
const std::regex kColour("\x1b\\[[0-9;]*m");
bool has_colour(const std::string& s) { return std::regex_search(s, kColour); }

TEST_F(Probe, NetcheckDrawsLiveProgressOnATerminalQuietWhenPiped) {
  SilentUdp blocked;  // region 902 answers only over HTTPS, after the STUN timeout
  auto map = write_map(map_json({{902, blocked.port()}}));
  auto tty = run_tool_on_pty("derp-probe", {"--derp-map", map, "--timeout", "4s"});
  ASSERT_EQ(tty.exit_code, 0) << tty.bytes;
  // Redrawn in place: how many regions, the latest answer, the elapsed time of the budget.
  EXPECT_NE(tty.bytes.find("\r\x1b[Kderp-probe: netcheck 0/3 regions  0.0s/4.0s"),
            std::string::npos)
      << tty.bytes;
  EXPECT_TRUE(std::regex_search(
      tty.bytes, std::regex("\r\x1b\\[Kderp-probe: netcheck [12]/3 regions \\| region 90[01] "
                            "\\(r[12]\\): stun v4 [^\r\n]*s/4\\.0s")))
      << tty.bytes;
  // Erased before the report, which starts on a clean line.
  EXPECT_NE(tty.bytes.find("\r\x1b[KReport:"), std::string::npos) << tty.bytes;
  // The same run piped: the report only, no progress.
  auto piped = run_tool("derp-probe", {"--derp-map", map, "--timeout", "4s"});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.err, "");
  EXPECT_EQ(piped.out.find('\r'), std::string::npos) << piped.out;
  // --json on a terminal stays machine-readable: no progress either.
  auto json_tty = run_tool_on_pty("derp-probe", {"--derp-map", map, "--timeout", "4s", "--json"});
  EXPECT_EQ(json_tty.exit_code, 0);
  EXPECT_EQ(json_tty.bytes.find("\x1b"), std::string::npos) << json_tty.bytes;
  EXPECT_EQ(json_tty.bytes.find("netcheck"), std::string::npos) << json_tty.bytes;
  EXPECT_EQ(json_tty.bytes.rfind("{", 0), 0u) << json_tty.bytes;
  // TERM=dumb has no cursor control: no progress line.
  auto dumb =
      run_tool_on_pty("derp-probe", {"--derp-map", map, "--timeout", "4s"}, {{"TERM", "dumb"}});
  EXPECT_EQ(dumb.exit_code, 0);
  EXPECT_EQ(dumb.bytes.find("\x1b"), std::string::npos) << dumb.bytes;
  EXPECT_EQ(dumb.bytes.rfind("Report:", 0), 0u) << dumb.bytes;
}

// The library's progress hook, behind the tool's "prober n/N checks": one call per check as
// it ends, counting up to the round's size, which is known from the start.
TEST_F(Probe, ProberReportsEachCheckAsItEnds) {
  auto map = parse_derp_map(map_json().dump());
  ASSERT_TRUE(map) << map.error().message;
  probe::ProberOptions po;
  po.timeout = 2s;
  po.bw_size = 1000;
  std::vector<size_t> done;
  std::set<size_t> totals;
  std::multiset<std::string> names;
  po.progress = [&](size_t d, size_t total, const probe::CheckResult& last) {
    done.push_back(d);  // one call at a time: no lock needed here
    totals.insert(total);
    names.insert(last.name());
  };
  auto results = probe::run_prober_checks(*map, po);
  ASSERT_FALSE(results.empty());
  EXPECT_EQ(totals, std::set<size_t>{results.size()});
  ASSERT_EQ(done.size(), results.size());
  for (size_t i = 0; i < done.size(); ++i) EXPECT_EQ(done[i], i + 1);
  std::multiset<std::string> want;
  for (const auto& c : results) want.insert(c.name());
  EXPECT_EQ(names, want);
}

TEST_F(Probe, ProberOnceCountsChecksOnATerminalAndColoursPassAndFail) {
  auto map = write_map(map_json());
  regions_[2].relay->stop();  // 902's checks fail (STUN after the whole 2 s)
  const std::vector<std::string> args = {"--prober", "--once",    "--derp-map",
                                         map,        "--timeout", "2s"};
  auto tty = run_tool_on_pty("derp-probe", args);
  ASSERT_EQ(tty.exit_code, 1) << tty.bytes;
  EXPECT_TRUE(std::regex_search(
      tty.bytes,
      std::regex("\r\x1b\\[Kderp-probe: prober [0-9]+/[0-9]+ checks, [a-z0-9]+/90[0-2]/")))
      << tty.bytes;
  EXPECT_NE(tty.bytes.find("\r\x1b[KCHECK"), std::string::npos) << "erased before the table";
  // STATUS column: padded, then painted.
  EXPECT_TRUE(std::regex_search(tty.bytes, std::regex("tls/900/900a +\x1b\\[32mok    \x1b\\[0m")))
      << tty.bytes;
  EXPECT_NE(tty.bytes.find("\x1b[1;31mFAIL  \x1b[0m"), std::string::npos) << tty.bytes;
  // stderr: the one failure line, painted.
  EXPECT_TRUE(std::regex_search(
      tty.bytes, std::regex("derp-probe: \x1b\\[1;31m[0-9]+ of [0-9]+ checks failed: [^\n]*"
                            " derp/902/902a: [^\n]*\x1b\\[0m")))
      << tty.bytes;
  // NO_COLOR (any non-empty value) and --no-color: the same text, no colour; progress stays.
  for (const auto& [env, extra] : std::vector<std::pair<EnvChanges, std::vector<std::string>>>{
           {{{"NO_COLOR", "1"}}, {}}, {{}, {"--no-color"}}}) {
    std::vector<std::string> a = args;
    a.insert(a.end(), extra.begin(), extra.end());
    auto plain = run_tool_on_pty("derp-probe", a, env);
    EXPECT_EQ(plain.exit_code, 1);
    EXPECT_FALSE(has_colour(plain.bytes)) << plain.bytes;
    EXPECT_NE(plain.bytes.find(" derp/902/902a: "), std::string::npos) << plain.bytes;
    EXPECT_NE(plain.bytes.find("\r\x1b[Kderp-probe: prober "), std::string::npos) << plain.bytes;
  }
  // Piped: no progress, no colour (ProberOnceFailsNamingTheCheckWhenARelayIsDown reads the
  // same lines).
  auto piped = run_tool("derp-probe", args);
  EXPECT_EQ(piped.exit_code, 1);
  EXPECT_EQ(piped.err.find("\x1b"), std::string::npos) << piped.err;
  EXPECT_EQ(piped.out.find("\x1b"), std::string::npos) << piped.out;
  EXPECT_EQ(piped.err.find("prober "), std::string::npos) << piped.err;
  auto json_tty = run_tool_on_pty(
      "derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "2s", "--json"});
  EXPECT_EQ(json_tty.exit_code, 1);
  EXPECT_EQ(json_tty.bytes.rfind("{", 0), 0u) << "the JSON line first: " << json_tty.bytes;
  const std::string json_line = json_tty.bytes.substr(0, json_tty.bytes.find('\n'));
  EXPECT_EQ(json_line.find("\x1b"), std::string::npos) << json_line;
  EXPECT_EQ(json_tty.bytes.find("\x1b"), std::string::npos) << json_tty.bytes;
}

TEST_F(Probe, LintColoursItsVerdictOnATerminalOnly) {
  auto map = write_map(map_json());
  auto tty = run_tool_on_pty("derp-probe", {"lint", map});
  ASSERT_EQ(tty.exit_code, 0) << tty.bytes;
  EXPECT_NE(tty.bytes.find(": \x1b[32mno findings\x1b[0m"), std::string::npos) << tty.bytes;
  json bad = map_json();
  bad["Regions"]["900"]["Nodes"][0]["Name"] = "901a";  // duplicate-node-name
  auto bad_map = write_map(bad, "bad.json");
  tty = run_tool_on_pty("derp-probe", {"lint", bad_map});
  EXPECT_EQ(tty.exit_code, 1) << tty.bytes;
  EXPECT_NE(tty.bytes.find("\x1b[1;31m"), std::string::npos) << tty.bytes;
  auto plain = run_tool_on_pty("derp-probe", {"lint", bad_map}, {{"NO_COLOR", "yes"}});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_FALSE(has_colour(plain.bytes)) << plain.bytes;
  auto piped = run_tool("derp-probe", {"lint", bad_map});
  EXPECT_EQ(piped.exit_code, 1);
  EXPECT_EQ(piped.out.find("\x1b"), std::string::npos) << piped.out;
}

// ---- "a list of URLs": several --derp-map sources make one map.

TEST_F(Probe, SeveralMapUrlsMergeIntoOneReport) {
  json all = map_json({}, favour_901());
  json first = all, second = all;
  first["Regions"].erase("902");
  second["Regions"].erase("900");
  second["Regions"].erase("901");
  second.erase("HomeParams");
  auto serve = [](const json& m) {
    const std::string body = m.dump();
    return std::make_unique<CannedHttp>(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  };
  auto a = serve(first);
  auto b = serve(second);
  auto res =
      run_tool("derp-probe",
               {"--derp-map", "http://127.0.0.1:" + std::to_string(a->port()) + "/a", "--derp-map",
                "http://127.0.0.1:" + std::to_string(b->port()) + "/b", "--json"});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  const json r = last_json(res.out).at("report");
  for (int id : {900, 901, 902}) EXPECT_NE(region_of(r, id), nullptr) << id << r.dump();
  EXPECT_EQ(r.at("preferred_derp"), 901);  // the first map's HomeParams still apply
  EXPECT_EQ(a->requests(), 1);
  EXPECT_EQ(b->requests(), 1);
}

// ---- derp-captive checks several endpoints at the same time.

// Holds every request until `n` have arrived, then answers them all with a redirect: a client
// that checks endpoints one after another never gets an answer.
class BarrierPortal {
 public:
  explicit BarrierPortal(int n) : n_(n) {
    fd_ = listen_loopback(16, &port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~BarrierPortal() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void serve() {
    std::vector<int> held;
    while (static_cast<int>(held.size()) < n_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) break;
      held.push_back(c);
    }
    const std::string resp =
        "HTTP/1.1 302 Found\r\nLocation: http://portal.invalid/\r\nContent-Length: 0\r\n\r\n";
    for (int c : held) {
      (void)!::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
      ::shutdown(c, SHUT_WR);
    }
    for (int c : held) ::close(c);
  }

  int n_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(Probe, CaptiveChecksEndpointsConcurrently) {
  BarrierPortal portal(3);
  const std::string url = "127.0.0.1:" + std::to_string(portal.port());
  auto res =
      run_tool("derp-captive", {url + "/a", url + "/b", url + "/c", "--json", "--timeout", "5s"});
  EXPECT_EQ(res.exit_code, 1) << res.err << res.out;
  const json j = last_json(res.out);
  ASSERT_EQ(j.at("endpoints").size(), 3u) << j.dump();
  for (const auto& e : j.at("endpoints")) EXPECT_EQ(e.at("verdict"), "redirect") << e.dump();
}

TEST(ProbeDerpServe, ProberBandwidthPassesOnDerpServeAndFailsNamingTheCheckWhenItIsDown) {
  // derp-serve as an operator runs it: TLS with its generated certificate for 127.0.0.1 (the
  // map pins it), STUN on, all on ephemeral loopback ports.
  char tmpl[] = "/tmp/derp-probe-serve-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto serve = std::make_unique<Process>(
      tool_path("derp-serve"),
      std::vector<std::string>{"-a", "127.0.0.1:0", "--stun-port", "0", "--certmode", "manual",
                               "--hostname", "127.0.0.1", "--certdir", dir, "--http-port", "0"});
  auto line = serve->wait_for_line("derp-serve: listening on", 20s, Process::Stream::kStdout);
  ASSERT_TRUE(line) << serve->err();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      *line, m,
      std::regex(
          R"(https://127\.0\.0\.1:(\d+)/derp .* pin (sha256-raw:[0-9a-f]{64}) stun 127\.0\.0\.1:(\d+))")))
      << *line;
  json node = {{"Name", "960a"},
               {"RegionID", 960},
               {"HostName", "127.0.0.1"},
               {"CertName", m[2].str()},
               {"IPv4", "127.0.0.1"},
               {"IPv6", "none"},
               {"DERPPort", std::stoi(m[1])},
               {"STUNPort", std::stoi(m[3])}};
  json map_j = {
      {"Regions",
       {{"960", {{"RegionID", 960}, {"RegionCode", "serve"}, {"Nodes", json::array({node})}}}}}};
  const std::string map = write_temp_file("map-serve.json", map_j.dump(2));
  auto res =
      run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--bw-size", "262144"});
  EXPECT_EQ(res.exit_code, 0) << res.err << res.out;
  for (const char* name : {"tls/960/960a", "stun4/960/960a", "derp/960/960a",
                           "sendrecv/960/960a->960a", "bw/960/960a->960a"}) {
    EXPECT_TRUE(std::regex_search(res.out, std::regex(std::string(name) + R"(\s+ok\s)")))
        << name << "\n"
        << res.out;
  }
  serve->signal(SIGTERM);
  EXPECT_EQ(serve->wait(20s).exit_code, 0) << serve->err();
  serve.reset();
  auto down = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "2s",
                                      "--bw-size", "262144"});
  EXPECT_EQ(down.exit_code, 1) << down.out;
  EXPECT_NE(down.err.find(" bw/960/960a->960a: "), std::string::npos) << down.err;
  EXPECT_NE(down.err.find(" derp/960/960a: "), std::string::npos) << down.err;
  std::filesystem::remove_all(dir);
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
    // The generated certificate is verified through its pin (as derper's --certmode=manual IP
    // certificates are), not skipped with InsecureForTests.
    ASSERT_EQ(relay_->cert_pin().rfind("sha256-raw:", 0), 0u) << relay_->cert_pin();
    map_ = write_v6_map("map-v6.json", relay_->cert_pin());
  }

  std::string write_v6_map(const std::string& name, const std::string& cert_name) const {
    json node = {{"Name", "950a"},
                 {"RegionID", 950},
                 {"HostName", "localhost"},
                 {"CertName", cert_name},
                 {"IPv4", "none"},
                 {"IPv6", "::1"},
                 {"STUNPort", relay_->stun_port()},
                 {"DERPPort", relay_->port()}};
    json m = {{"Regions",
               {{"950",
                 {{"RegionID", 950},
                  {"RegionCode", "v6"},
                  {"RegionName", "IPv6 only"},
                  {"Nodes", json::array({node})}}}}}};
    return write_temp_file(name, m.dump(2));
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

TEST_F(ProbeIpv6, ProberOnceFailsTlsAndDerpOverIpv6WhenThePinIsWrong) {
  // The same relay under another certificate's pin: the IPv6 TLS path really verifies.
  std::string pin = relay_->cert_pin();
  pin.back() = pin.back() == '0' ? '1' : '0';
  auto map = write_v6_map("map-v6-wrong-pin.json", pin);
  auto res = run_tool("derp-probe", {"--prober", "--once", "--derp-map", map, "--timeout", "3s"});
  EXPECT_EQ(res.exit_code, 1) << res.err << res.out;
  EXPECT_NE(res.err.find(" tls/950/950a: certificate sha256 does not match CertName"),
            std::string::npos)
      << res.err;
  EXPECT_NE(res.err.find(" derp/950/950a"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find(" stun6/950/950a"), std::string::npos) << res.err;  // UDP is fine
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

TEST_F(Probe, LintReportsWhatTheLoaderWouldRefuseAsFindings) {
  // A node without HostName and a region whose RegionID is not its key: other tools refuse
  // such a map (exit 2); lint lists them with everything else (exit 1).
  json m = map_json();
  m["Regions"]["900"]["Nodes"][0].erase("HostName");
  m["Regions"]["901"]["RegionID"] = 911;
  m["Regions"]["902"]["RegionID"] = 900;
  const std::string path = write_map(m, "lint-loader.json");
  auto res = run_tool("derp-probe", {"lint", path});
  EXPECT_EQ(res.exit_code, 1) << res.err << res.out;
  for (const char* line : {"region 900 node 900a: no-hostname: node has no HostName",
                           "region 901: region-id-mismatch: key 901 holds RegionID 911",
                           "region 902: duplicate-region-id: RegionID 900 is also the id of "
                           "region 900"}) {
    EXPECT_NE(res.out.find(line), std::string::npos) << line << "\n" << res.out;
  }
  auto probe = run_tool("derp-probe", {"--derp-map", path});
  EXPECT_EQ(probe.exit_code, 2) << probe.err;
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
