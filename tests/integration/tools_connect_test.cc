// derp-connect and the client flags every tool shares (--derp-map/--region, --proxy,
// --websocket), run as a user runs them against derp-serve on 127.0.0.1.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "support/connect_proxy.h"
#include "support/process.h"
#include "support/tls_proxy.h"
#include "support/ws_front.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

class ToolsConnect : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    url_.clear();
    serve_ = new Process(tool_path("derp-serve"), {"-a", "127.0.0.1:0", "--stun-port", "0"});
    auto line = serve_->wait_for_line("derp-serve: listening on", 20s, Process::Stream::kStdout);
    ASSERT_TRUE(line) << "derp-serve did not start: " << serve_->err();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        *line, m,
        std::regex("(http://127\\.0\\.0\\.1:([0-9]+)/derp) key (nodekey:[0-9a-f]{64})")))
        << *line;
    url_ = m[1];
    port_ = static_cast<uint16_t>(std::stoi(m[2]));
    key_ = m[3];
  }
  static void TearDownTestSuite() {
    delete serve_;
    serve_ = nullptr;
  }
  void SetUp() override {
    if (url_.empty()) GTEST_SKIP() << "no relay";
  }

  // A DERP map file with region 900: a dead node, then a TLS node (pinned by sha256-raw) in
  // front of derp-serve.
  std::string tls_region_map(const TestCert& cert, uint16_t tls_port, uint16_t dead_port) {
    nlohmann::json map = {
        {"Regions",
         {{"900",
           {{"RegionID", 900},
            {"RegionCode", "test"},
            {"Nodes",
             {{{"Name", "900dead"}, {"RegionID", 900}, {"HostName", "127.0.0.1"},
               {"IPv6", "none"}, {"DERPPort", dead_port}},
              {{"Name", "900tls"}, {"RegionID", 900}, {"HostName", "127.0.0.1"},
               {"IPv6", "none"}, {"DERPPort", tls_port},
               {"CertName", "sha256-raw:" + cert.sha256_hex}}}}}}}}};
    return write_temp_file("map.json", map.dump());
  }

  static Process* serve_;
  static std::string url_;
  static uint16_t port_;
  static std::string key_;
};
Process* ToolsConnect::serve_ = nullptr;
std::string ToolsConnect::url_;
uint16_t ToolsConnect::port_ = 0;
std::string ToolsConnect::key_;

TEST_F(ToolsConnect, TextReportNamesEveryPhaseAndTheRelay) {
  auto r = run_tool("derp-connect", {url_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* phase : {"dns", "tcp", "tls", "http", "handshake", "total"}) {
    EXPECT_TRUE(std::regex_search(r.out, std::regex(std::string("\\n  ") + phase +
                                                    " +[0-9]+\\.[0-9]{3} ms")))
        << phase << "\n" << r.out;
  }
  EXPECT_NE(r.out.find("connected to " + url_), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("server key   " + key_), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("protocol     2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("transport    tcp"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("remote       127.0.0.1:" + std::to_string(port_)), std::string::npos);
}

TEST_F(ToolsConnect, JsonReportHasTheDocumentedFields) {
  auto r = run_tool("derp-connect", {url_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["schema"], 1);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["url"], url_);
  EXPECT_EQ(j["server_key"], key_);
  EXPECT_EQ(j["protocol_version"], 2);
  EXPECT_EQ(j["server_info"]["version"], 2);
  EXPECT_EQ(j["transport"], "tcp");
  EXPECT_TRUE(j["proxy"].is_null());
  EXPECT_TRUE(j["tls"].is_null());
  EXPECT_EQ(j["remote_addr"], "127.0.0.1:" + std::to_string(port_));
  EXPECT_TRUE(j["local_addr"].get<std::string>().starts_with("127.0.0.1:"));
  for (const char* phase : {"dns", "tcp", "tls", "http", "handshake", "total"}) {
    EXPECT_TRUE(j["phases_ms"][phase].is_number()) << phase;
    EXPECT_TRUE(j["summary_ms"][phase]["avg"].is_number()) << phase;
  }
  EXPECT_GT(j["phases_ms"]["handshake"].get<double>(), 0);
  EXPECT_EQ(j["count"], 1);
}

TEST_F(ToolsConnect, CountRepeatsAndSummarises) {
  auto r = run_tool("derp-connect", {url_, "--count", "3", "--interval", "0s", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["attempts"].size(), 3u);
  const auto& t = j["summary_ms"]["total"];
  EXPECT_LE(t["min"].get<double>(), t["avg"].get<double>());
  EXPECT_LE(t["avg"].get<double>(), t["max"].get<double>());

  auto text = run_tool("derp-connect", {url_, "--count", "2", "--interval", "0s"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("connect 1: total"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("connect 2: total"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("--- 2 connects, min/avg/max ms ---"), std::string::npos) << text.out;
}

TEST_F(ToolsConnect, TlsRegionFromADerpMapSkipsTheDeadNode) {
  auto cert = make_test_cert();
  auto tls = TlsProxy::start(cert, port_);
  ASSERT_TRUE(tls);
  const std::string map = tls_region_map(cert, tls->port(), 1);
  auto r = run_tool("derp-connect", {"--derp-map", map, "--region", "900", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["node"], "900tls");
  EXPECT_EQ(j["transport"], "tls");
  EXPECT_EQ(j["server_key"], key_);
  EXPECT_EQ(j["tls"]["subject"], "CN=localhost");
  EXPECT_EQ(j["tls"]["cert_sha256"], "sha256-raw:" + cert.sha256_hex);
  EXPECT_GE(j["tls"]["days_to_expiry"].get<int>(), 0);

  auto text = run_tool("derp-connect", {"--derp-map", map, "--region", "900"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("(node 900tls)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("issuer       CN=localhost"), std::string::npos) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("expires +[0-9TZ:-]+ \\([0-9]+ days\\)")))
      << text.out;

  // Every tool takes the region instead of SERVER.
  auto ping = run_tool("derp-ping",
                       {"--derp-map", map, "--region", "900", "--count", "1", "--json"});
  EXPECT_EQ(ping.exit_code, 0) << ping.err;
}

TEST_F(ToolsConnect, DerpMapFlagsAreCheckedAsUsage) {
  const std::string map = write_temp_file("map.json", R"({"Regions":{}})");
  auto both = run_tool("derp-connect", {url_, "--derp-map", map, "--region", "1"});
  EXPECT_EQ(both.exit_code, 2) << both.err;
  EXPECT_NE(both.err.find("not both"), std::string::npos) << both.err;
  auto no_region = run_tool("derp-connect", {"--derp-map", map});
  EXPECT_EQ(no_region.exit_code, 2);
  EXPECT_NE(no_region.err.find("--derp-map needs --region"), std::string::npos) << no_region.err;
  auto none = run_tool("derp-connect", {});
  EXPECT_EQ(none.exit_code, 2);
  auto missing = run_tool("derp-connect", {"--derp-map", map, "--region", "7", "--json"});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  auto j = nlohmann::json::parse(missing.out);
  EXPECT_EQ(j["error"]["layer"], "usage");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("--region 7: not in the DERP map"),
            std::string::npos);
  auto unreadable = run_tool("derp-connect", {"--derp-map", "/nonexistent/map.json",
                                              "--region", "1"});
  EXPECT_EQ(unreadable.exit_code, 2) << unreadable.err;
  // The node's CertName verifies it: a --cert-name next to a map would be silently unused.
  for (const char* tool : {"derp-connect", "derp-ping", "derp-send", "derp-recv"}) {
    std::vector<std::string> args = {"--derp-map", map, "--region", "1", "--cert-name", "x"};
    if (std::string(tool) == "derp-send") {
      args.insert(args.end(), {"--to", "nodekey:" + std::string(64, '1'), "--data", "hi"});
    }
    auto pinned = run_tool(tool, args);
    EXPECT_EQ(pinned.exit_code, 2) << tool << ": " << pinned.err;
    EXPECT_NE(pinned.err.find("--cert-name does not apply to --derp-map"), std::string::npos)
        << tool << ": " << pinned.err;
  }
}

// Go's TS_DEBUG_USE_DERP_HTTP: a map's nodes dialled over http:// at their DERPPort (a plain
// relay); without it the same node is dialled with TLS and fails there.
TEST_F(ToolsConnect, DebugUseDerpHttpDialsMapNodesPlain) {
  nlohmann::json map = {
      {"Regions",
       {{"900",
         {{"RegionID", 900},
          {"Nodes",
           {{{"Name", "900p"}, {"RegionID", 900}, {"HostName", "derp.invalid"},
             {"IPv4", "127.0.0.1"}, {"IPv6", "none"}, {"DERPPort", port_}}}}}}}}};
  const std::string file = write_temp_file("plain-map.json", map.dump());
  auto tls = run_tool("derp-connect", {"--derp-map", file, "--region", "900", "--timeout", "3s"});
  EXPECT_EQ(tls.exit_code, 5) << tls.err;
  ::setenv("TS_DEBUG_USE_DERP_HTTP", "true", 1);
  auto r = run_tool("derp-connect", {"--derp-map", file, "--region", "900", "--json"});
  ::unsetenv("TS_DEBUG_USE_DERP_HTTP");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["node"], "900p");
  EXPECT_EQ(j["transport"], "tcp");
  EXPECT_EQ(j["server_key"], key_);
}

TEST_F(ToolsConnect, ProxyFlagTunnelsAndIsReported) {
  auto proxy = ConnectProxy::start(port_);
  ASSERT_TRUE(proxy);
  auto r = run_tool("derp-connect", {"http://derp.invalid:" + std::to_string(port_) + "/derp",
                                     "--proxy", proxy->url(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["proxy"], proxy->url());
  EXPECT_EQ(j["server_key"], key_);
}

TEST_F(ToolsConnect, WebSocketFlagAndFallbackAreReported) {
  auto front = WsFront::start(port_);
  ASSERT_TRUE(front);
  const std::string url = "http://127.0.0.1:" + std::to_string(front->port()) + "/derp";
  auto ws = run_tool("derp-connect", {url, "--websocket", "--json"});
  ASSERT_EQ(ws.exit_code, 0) << ws.err;
  EXPECT_EQ(nlohmann::json::parse(ws.out)["transport"], "websocket");
  auto fallback = run_tool("derp-connect", {url});
  ASSERT_EQ(fallback.exit_code, 0) << fallback.err;
  EXPECT_NE(fallback.out.find("note         a proxy stripped Upgrade: DERP; retried over WebSocket"),
            std::string::npos)
      << fallback.out;
}

TEST(ToolsConnectErrors, ClosedPortIsExit4AndUnresolvableIsExit3) {
  auto r = run_tool("derp-connect", {"http://127.0.0.1:1/derp", "--json"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["layer"], "connect");
  auto dns = run_tool("derp-connect", {"http://derp.invalid/derp", "--json"});
  EXPECT_EQ(dns.exit_code, 3) << dns.err;
  EXPECT_EQ(nlohmann::json::parse(dns.out)["error"]["layer"], "dns");
}

}  // namespace
}  // namespace derp::test
