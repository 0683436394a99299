// derp-bench's transports as a user runs them, briefly, against in-process derp::Servers on
// 127.0.0.1: DERP over WebSocket (plain and TLS, the relay's own WebSocket server) in load,
// --idle and --connect-storm modes; an HTTP CONNECT proxy (--proxy and HTTP_PROXY); a DERP map
// region (--derp-map/--region, the node rules of libderp's client). Only sanity is checked:
// timing targets live in bench/run.sh and docs/BENCHMARKS.md.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "derp/server.h"
#include "support/connect_proxy.h"
#include "support/process.h"
#include "support/tls_proxy.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

// A relay on 127.0.0.1:0, plain or TLS (a self-signed certificate for 127.0.0.1).
std::unique_ptr<Server> bench_transport_relay(bool tls, const std::string& cert_dir) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.threads = 1;
  if (tls) {
    o.cert_mode = "manual";
    o.cert_dir = cert_dir;
    o.hostname = "127.0.0.1";
  }
  auto s = Server::start(std::move(o));
  EXPECT_TRUE(s) << s.error().message;
  return s ? std::move(*s) : nullptr;
}

nlohmann::json bench_transport_run(std::vector<std::string> args, int want_exit = 0) {
  return run_tool_json("derp-bench", std::move(args), want_exit);
}

// What a one-second load run must show whatever the transport.
void bench_transport_expect_sane(const nlohmann::json& j, int pairs) {
  ASSERT_EQ(j["schema"], 1);
  ASSERT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["mode"], "load");
  EXPECT_EQ(j["pairs"], pairs);
  const uint64_t total_sent = j["total_sent"], total_delivered = j["total_delivered"];
  EXPECT_GT(total_delivered, 0u);
  EXPECT_LE(total_delivered, total_sent);
  EXPECT_EQ(j["lost"].get<uint64_t>(), total_sent - total_delivered);
  const double drop = j["drop_pct"];
  EXPECT_GE(drop, 0);
  EXPECT_LE(drop, 100);
  EXPECT_GT(j["delivered_pps"].get<double>(), 0);
  EXPECT_GT(j["latency_ms"]["count"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["foreign"], 0);
}

const std::vector<std::string> kBenchTransportLoad = {
    "--pairs", "2", "--size", "1200", "--window", "8", "--duration", "1s", "--warmup", "100ms"};

std::vector<std::string> bench_transport_args(std::vector<std::string> head) {
  head.insert(head.end(), kBenchTransportLoad.begin(), kBenchTransportLoad.end());
  return head;
}

class BenchTransport : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-bench-transport-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    relay_.reset();
    std::filesystem::remove_all(dir_);
  }
  void start(bool tls) {
    relay_ = bench_transport_relay(tls, dir_);
    ASSERT_NE(relay_, nullptr);
    url_ = std::string(tls ? "https" : "http") + "://127.0.0.1:" +
           std::to_string(relay_->port()) + "/derp";
  }
  int64_t ws_accepts() const { return relay_->counters().at("derp_websocket_accepts"); }

  std::string dir_;
  std::unique_ptr<Server> relay_;
  std::string url_;
};

TEST_F(BenchTransport, WebSocketLoadCarriesPacketsThroughTheRelaysWebSocketServer) {
  start(false);
  auto j = bench_transport_run(bench_transport_args({url_, "--websocket"}));
  bench_transport_expect_sane(j, 2);
  EXPECT_EQ(j["transport"], "websocket");
  EXPECT_EQ(j["tls"], false);
  EXPECT_EQ(j["server_key"], relay_->public_key().to_string());
  // Every connection of the run (2 pairs × sender and receiver) came in over WebSocket.
  EXPECT_EQ(ws_accepts(), 4);
  EXPECT_GE(relay_->counters().at("packets_received"), j["total_delivered"].get<int64_t>());
}

TEST_F(BenchTransport, WebSocketOverTlsLoad) {
  start(true);
  // The relay's generated certificate, pinned as derp-serve prints it.
  auto j = bench_transport_run(
      bench_transport_args({url_, "--websocket", "--cert-name", relay_->cert_pin()}));
  bench_transport_expect_sane(j, 2);
  EXPECT_EQ(j["transport"], "websocket+tls");
  EXPECT_EQ(j["tls"], true);
  EXPECT_EQ(ws_accepts(), 4);
}

// derp-bench's TLS client (OpenSSL on the socket, net/tls_socket_stream.h) verifies the chain
// and the name as every tool does: the relay's self-signed certificate is refused until trusted
// (--ca-file), and then only for the name it was made for.
TEST_F(BenchTransport, TlsVerificationOfTheChainAndTheName) {
  start(true);
  auto untrusted = bench_transport_run({url_, "--connect-storm", "1"}, 5);
  EXPECT_EQ(untrusted["error"]["layer"], "tls") << untrusted.dump();
  const std::string ca = dir_ + "/127.0.0.1.crt";  // self-signed: its own CA
  auto trusted = bench_transport_run({url_, "--ca-file", ca, "--connect-storm", "2"});
  EXPECT_EQ(trusted["ok"], true) << trusted.dump();
  auto load = bench_transport_run(bench_transport_args({url_, "--ca-file", ca}));
  bench_transport_expect_sane(load, 2);
  auto other_name = bench_transport_run(
      {url_, "--ca-file", ca, "--cert-name", "other.invalid", "--connect-storm", "1"}, 5);
  EXPECT_EQ(other_name["error"]["layer"], "tls") << other_name.dump();
}

TEST_F(BenchTransport, TlsPinMismatchIsATlsError) {
  start(true);
  auto j = bench_transport_run(
      {url_, "--cert-name", "sha256-raw:" + std::string(64, '0'), "--connect-storm", "1"}, 5);
  EXPECT_EQ(j["error"]["layer"], "tls") << j.dump();
  const std::string msg = j["error"]["message"];
  EXPECT_NE(msg.find("sha256 mismatch"), std::string::npos) << msg;
  auto bad = run_tool("derp-bench", {url_, "--cert-name", "sha256-raw:abc"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("64 hex digits"), std::string::npos) << bad.err;
}

TEST_F(BenchTransport, WebSocketOpenLoopOverload) {
  start(false);
  auto j = bench_transport_run({url_, "--websocket", "--pairs", "1", "--size", "1200", "--rate",
                                "max", "--duration", "1s", "--warmup", "0s"});
  bench_transport_expect_sane(j, 1);
  EXPECT_EQ(j["loop"], "open");
}

TEST_F(BenchTransport, WebSocketIdleAndConnectStorm) {
  start(false);
  auto idle = bench_transport_run({url_, "--websocket", "--idle", "30", "--duration", "100ms",
                                   "--server-pid", std::to_string(::getpid())});
  EXPECT_EQ(idle["ok"], true) << idle.dump();
  EXPECT_EQ(idle["mode"], "idle");
  EXPECT_EQ(idle["transport"], "websocket");
  EXPECT_EQ(idle["connections"], 30);
  EXPECT_EQ(ws_accepts(), 30);

  auto storm = bench_transport_run({url_, "--websocket", "--connect-storm", "40",
                                    "--concurrency", "8"});
  EXPECT_EQ(storm["ok"], true) << storm.dump();
  EXPECT_EQ(storm["transport"], "websocket");
  EXPECT_EQ(storm["connections"], 40);
  EXPECT_EQ(storm["failed"], 0);
  EXPECT_EQ(storm["handshake_ms"]["count"], 40);
  EXPECT_EQ(ws_accepts(), 70);
}

TEST_F(BenchTransport, ProxyTunnelsEveryConnection) {
  start(false);
  auto proxy = ConnectProxy::start(relay_->port());
  ASSERT_NE(proxy, nullptr);
  // Only the proxy can reach this name: derp-bench must not resolve it itself.
  const std::string port = std::to_string(relay_->port());
  const std::string url = "http://relay.invalid:" + port + "/derp";
  auto j = bench_transport_run(bench_transport_args({url, "--proxy", proxy->url()}));
  bench_transport_expect_sane(j, 2);
  EXPECT_EQ(j["proxy"], proxy->url());
  EXPECT_EQ(j["server"], url);
  EXPECT_EQ(j["transport"], "tcp");
  const auto heads = proxy->requests();
  ASSERT_EQ(heads.size(), 4u);
  for (const auto& h : heads) {
    EXPECT_EQ(h.rfind("CONNECT relay.invalid:" + port + " HTTP/1.1\r\n", 0), 0u) << h;
  }

  // WebSocket through the proxy too.
  auto ws = bench_transport_run(
      {url, "--proxy", proxy->url(), "--websocket", "--connect-storm", "10", "--concurrency", "2"});
  EXPECT_EQ(ws["ok"], true) << ws.dump();
  EXPECT_EQ(ws["transport"], "websocket");
  EXPECT_EQ(ws["proxy"], proxy->url());
  EXPECT_EQ(ws_accepts(), 10);
  EXPECT_EQ(proxy->requests().size(), 14u);
}

TEST_F(BenchTransport, ProxyFromTheEnvironment) {
  start(false);
  auto proxy = ConnectProxy::start(relay_->port());
  ASSERT_NE(proxy, nullptr);
  const std::string url = "http://relay.invalid:" + std::to_string(relay_->port()) + "/derp";
  // The child inherits the environment; restored before any other test runs.
  ASSERT_EQ(::setenv("HTTP_PROXY", proxy->url().c_str(), 1), 0);
  auto j = bench_transport_run({url, "--connect-storm", "5", "--concurrency", "1"});
  ::unsetenv("HTTP_PROXY");
  EXPECT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["proxy"], proxy->url());
  EXPECT_EQ(proxy->requests().size(), 5u);
}

TEST_F(BenchTransport, ProxyRefusalIsAnHttpError) {
  start(false);
  auto proxy = ConnectProxy::start(relay_->port(), 407);
  ASSERT_NE(proxy, nullptr);
  auto j = bench_transport_run(
      {"http://relay.invalid:1/derp", "--proxy", proxy->url(), "--duration", "1s"}, 6);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["layer"], "http");
  const std::string msg = j["error"]["message"];
  EXPECT_NE(msg.find("CONNECT relay.invalid:1 answered 407"), std::string::npos) << msg;
}

// A region whose first node is STUN-only and whose second refuses TCP: the third is used, at
// its IPv4 field (its HostName does not resolve), DERPPort, and `tls` (InsecureForTests or a
// CertName).
std::string bench_transport_map(uint16_t port,
                                const std::string& tls = R"("InsecureForTests":true)",
                                const std::string& host = "derp.invalid") {
  const std::string p = std::to_string(port);
  return R"({"Regions":{"900":{"RegionID":900,"RegionCode":"bench","Nodes":[)"
         R"({"Name":"900s","RegionID":900,"HostName":"stun.invalid","STUNOnly":true},)"
         R"({"Name":"900a","RegionID":900,"HostName":"down.invalid","IPv4":"127.0.0.1",)"
         R"("IPv6":"none","DERPPort":1,"InsecureForTests":true},)"
         R"({"Name":"900b","RegionID":900,"HostName":")" + host + R"(","IPv4":"127.0.0.1",)"
         R"("IPv6":"none","DERPPort":)" +
         p + "," + tls + "}]}}}";
}

TEST_F(BenchTransport, DerpMapRegionUsesTheFirstUsableNode) {
  start(true);
  const std::string map = write_temp_file("bench-map.json", bench_transport_map(relay_->port()));
  auto j = bench_transport_run(bench_transport_args({"--derp-map", map, "--region", "900"}));
  bench_transport_expect_sane(j, 2);
  EXPECT_EQ(j["region"], 900);
  EXPECT_EQ(j["node"], "900b");
  EXPECT_EQ(j["transport"], "tls");
  EXPECT_EQ(j["server"], "https://derp.invalid:" + std::to_string(relay_->port()) + "/derp");

  // Over WebSocket, the node's certificate pinned by its CertName this time (a pinned
  // certificate must still be valid for the HostName, §6.3: the relay's is for 127.0.0.1).
  const std::string pin = R"("CertName":")" + relay_->cert_pin() + "\"";
  const std::string pinned = write_temp_file("bench-map-pinned.json",
                                             bench_transport_map(relay_->port(), pin, "127.0.0.1"));
  auto ws = bench_transport_run(
      {"--derp-map", pinned, "--region", "900", "--websocket", "--connect-storm", "5"});
  EXPECT_EQ(ws["ok"], true) << ws.dump();
  EXPECT_EQ(ws["node"], "900b");
  EXPECT_EQ(ws["transport"], "websocket+tls");
  EXPECT_EQ(ws_accepts(), 5);

  // The right pin for a certificate that is not valid for the HostName: refused, as the client.
  const std::string wrong_host =
      write_temp_file("bench-map-pin-host.json", bench_transport_map(relay_->port(), pin));
  auto bad = bench_transport_run({"--derp-map", wrong_host, "--region", "900", "--connect-storm", "1"},
                                 5);
  EXPECT_EQ(bad["error"]["layer"], "tls");
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("not valid for derp.invalid"),
            std::string::npos)
      << bad.dump();

  // The text report names the node.
  auto text = run_tool("derp-bench", {"--derp-map", map, "--region", "900", "--connect-storm",
                                      "2"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("node 900b of region 900 at 127.0.0.1"), std::string::npos)
      << text.out;
}

TEST_F(BenchTransport, DerpMapWithoutAUsableNode) {
  start(false);
  // Only STUN: a usage error. Every DERP node refusing TCP: the connect error, exit 4.
  const std::string stun_only = write_temp_file(
      "bench-stun-only.json",
      R"({"Regions":{"7":{"RegionID":7,"Nodes":[{"Name":"7s","RegionID":7,)"
      R"("HostName":"stun.invalid","STUNOnly":true}]}}})");
  auto r = run_tool("derp-bench", {"--derp-map", stun_only, "--region", "7"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("no non-STUNOnly nodes"), std::string::npos) << r.err;

  const std::string down = write_temp_file(
      "bench-down.json",
      R"({"Regions":{"7":{"RegionID":7,"Nodes":[{"Name":"7a","RegionID":7,)"
      R"("HostName":"down.invalid","IPv4":"127.0.0.1","IPv6":"none","DERPPort":1}]}}})");
  auto d = run_tool("derp-bench", {"--derp-map", down, "--region", "7"});
  EXPECT_EQ(d.exit_code, 4) << d.err;
  EXPECT_NE(d.err.find("node 7a"), std::string::npos) << d.err;
}

TEST(BenchTransportUsage, BadCombinationsAreRefused) {
  const std::string map = write_temp_file("bench-usage-map.json", bench_transport_map(1));
  for (const auto& [args, needle] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--raw", "--websocket"}, "--websocket"},
           {{"--raw", "--proxy", "http://127.0.0.1:1"}, "--proxy"},
           {{"--raw", "--derp-map", map, "--region", "900"}, "--derp-map"},
           {{"--derp-map", map, "--region", "900", "--cert-name", "derp.invalid"}, "--cert-name"},
           {{"--derp-map", map, "--region", "5"}, "--region 5"},
           {{"--derp-map", map}, "--region"},
           {{"http://127.0.0.1:1/derp", "--proxy", "https://127.0.0.1:1"}, "proxy"},
       }) {
    auto r = run_tool("derp-bench", args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("derp-bench: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace derp::test
