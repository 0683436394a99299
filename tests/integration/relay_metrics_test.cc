// The relay's metrics over real HTTP on loopback: /debug/varz (Prometheus) and /debug/vars
// (expvar JSON) after real traffic, and derp-serve's separate --metrics-addr listener.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "derp/server.h"
#include "support/relay_harness.h"
#include "support/scrape.h"

namespace derp::test {
namespace {

TEST(RelayMetrics, DebugVarzCountsTrafficAndEveryLineParses) {
  auto relay = start_relay(ServerOptions{});
  ASSERT_TRUE(relay);
  auto before_body = http_get_body(relay->port(), "/debug/varz");
  ASSERT_TRUE(before_body.has_value());
  const auto before = parse_prometheus(*before_body);
  ASSERT_TRUE(before.count("derp_packets_received"));

  const auto a_key = NodePrivate::generate();
  const auto b_key = NodePrivate::generate();
  auto a = DerpConn::connect(relay->port(), a_key, relay->public_key());
  auto b = DerpConn::connect(relay->port(), b_key, relay->public_key());
  ASSERT_TRUE(a && b);
  const std::vector<uint8_t> payload = {1, 2, 3, 4, 5};
  ASSERT_TRUE(a->send_packet(b->public_key(), payload));
  auto got = b->read_frame();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->frame_type(), FrameType::kRecvPacket);

  auto after_body = http_get_body(relay->port(), "/debug/varz");
  ASSERT_TRUE(after_body.has_value());
  const auto after = parse_prometheus(*after_body);
  EXPECT_EQ(after.at("derp_packets_received"), before.at("derp_packets_received") + 1);
  EXPECT_GT(after.at("derp_bytes_received"), before.at("derp_bytes_received"));
  EXPECT_GE(after.at("derp_accepts"), before.at("derp_accepts") + 3);  // a, b, this GET
  EXPECT_EQ(after.at("derp_current_connections"), 2);
  EXPECT_EQ(after.at("derp_packets_received_kind{kind=other}"),
            before.at("derp_packets_received_kind{kind=other}") + 1);
  EXPECT_TRUE(after.count("derp_packets_dropped_reason{reason=unknown_dest}"));
  EXPECT_TRUE(after.count("stun_requests{disposition=success}"));
}

// Numeric leaves of a JSON tree.
size_t metrics_json_leaves(const nlohmann::json& j) {
  if (j.is_number()) return 1;
  size_t n = 0;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) n += metrics_json_leaves(v);
  }
  return n;
}

TEST(RelayMetrics, DebugVarsIsJsonHoldingEveryCounter) {
  auto relay = start_relay(ServerOptions{});
  ASSERT_TRUE(relay);
  auto body = http_get_body(relay->port(), "/debug/vars");
  ASSERT_TRUE(body.has_value());
  const auto j = nlohmann::json::parse(*body, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << *body;
  ASSERT_TRUE(j["derp"].is_object()) << *body;
  // Every counter once, somewhere in derper's layout.
  EXPECT_EQ(metrics_json_leaves(j), relay->counters().size()) << *body;
  EXPECT_GE(j["derp"]["accepts"].get<int64_t>(), 1);  // this very request
  EXPECT_TRUE(j["derp"]["counter_packets_dropped_reason"]["unknown_dest"].is_number());
  EXPECT_TRUE(j["derp"]["counter_packets_dropped_type"]["disco"].is_number());
  EXPECT_TRUE(j["derp"]["counter_packets_received_kind"]["other"].is_number());
  EXPECT_TRUE(j["derp"]["gauge_current_connections"].is_number());
  EXPECT_TRUE(j["derp_websocket_accepts"].is_number());
  EXPECT_TRUE(j["tls_listener"]["counter_rejected_connections"].is_number());
  EXPECT_TRUE(j["stun"]["counter_requests"]["success"].is_number());
  EXPECT_TRUE(j["stun"]["counter_addrfamily"]["ipv4"].is_number());
}

// The names derper's /debug/varz gives these metrics (tsweb varz over derper's expvars).
TEST(RelayMetrics, DebugVarzUsesDerpersNamesForItsOwnExpvars) {
  ServerOptions o;
  o.stun = true;
  o.stun_port = 0;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto body = http_get_body(relay->port(), "/debug/varz");
  ASSERT_TRUE(body.has_value());
  const auto m = parse_prometheus(*body);
  for (const char* name :
       {"derp_websocket_accepts", "tls_listener_accepted_connections",
        "tls_listener_rejected_connections", "derp_packets_dropped_type{type=disco}",
        "derp_packets_dropped_type{type=other}", "stun_requests{disposition=success}",
        "stun_addrfamily{family=ipv4}", "derp_current_connections", "derp_total_dup_client_conns",
        "derp_packets_dropped_reason{reason=queue_head}"}) {
    EXPECT_TRUE(m.count(name)) << name << " missing from:\n" << *body;
  }
  for (const char* old : {"derp_stun_", "derp_rejected_connections", "derp_packets_dropped_kind"}) {
    EXPECT_EQ(body->find(old), std::string::npos) << old;
  }
  EXPECT_NE(body->find("# TYPE derp_websocket_accepts counter\n"), std::string::npos);
  EXPECT_NE(body->find("# TYPE stun_requests counter\n"), std::string::npos);
}

TEST(RelayMetrics, DebugIndexListsTheEndpointsAndUnknownDebugPathIs404) {
  auto relay = start_relay(ServerOptions{});
  ASSERT_TRUE(relay);
  auto index = http_get_body(relay->port(), "/debug/");
  ASSERT_TRUE(index.has_value());
  EXPECT_NE(index->find("/debug/varz"), std::string::npos);
  EXPECT_TRUE(http_get_body(relay->port(), "/debug/nope", "404 Not Found").has_value());
}

TEST(RelayMetrics, MetricsAddrServesPrometheusOnItsOwnListener) {
  ServerOptions o;
  o.metrics_addr = "127.0.0.1:0";
  auto relay = start_relay(std::move(o));
  ASSERT_TRUE(relay);
  const std::string addr = relay->metrics_address();
  ASSERT_EQ(addr.rfind("127.0.0.1:", 0), 0u) << addr;
  const auto port = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
  ASSERT_NE(port, relay->port());
  auto body = http_get_body(port, "/metrics");
  ASSERT_TRUE(body.has_value());
  const auto m = parse_prometheus(*body);
  EXPECT_TRUE(m.count("derp_accepts"));
  EXPECT_TRUE(http_get_body(port, "/debug/varz", "404 Not Found").has_value());
}

TEST(RelayMetrics, BadMetricsAddrFailsStartWithUsageError) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.threads = 1;
  o.metrics_addr = "127.0.0.1:notaport";
  auto relay = Server::start(std::move(o));
  ASSERT_FALSE(relay.ok());
  EXPECT_EQ(relay.error().kind, ErrorKind::kUsage);
  EXPECT_NE(relay.error().message.find("metrics address"), std::string::npos)
      << relay.error().message;
}

TEST(DerpServeMetrics, MetricsAddrServesMetricsFromTheTool) {
  char tmpl[] = "/tmp/derp-serve-metrics-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto child = Child::spawn({std::string(DERP_BIN_DIR) + "/derp-serve", "-a", "127.0.0.1:0",
                             "--stun-port", "0", "--metrics-addr", "127.0.0.1:0"},
                            dir);
  ASSERT_TRUE(child);
  auto line = child->read_stdout_line();
  ASSERT_TRUE(line.has_value()) << child->stderr_text();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      *line, m, std::regex(".* stun 127\\.0\\.0\\.1:[0-9]+ metrics 127\\.0\\.0\\.1:([0-9]+)")))
      << *line;
  auto body = http_get_body(static_cast<uint16_t>(std::stoi(m[1].str())), "/metrics");
  ASSERT_TRUE(body.has_value());
  const auto metrics = parse_prometheus(*body);
  EXPECT_TRUE(metrics.count("derp_packets_received"));
  EXPECT_TRUE(metrics.count("stun_requests{disposition=not_stun}"));
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(), 0) << child->stderr_text();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace derp::test
