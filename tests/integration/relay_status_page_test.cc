// The live status page over real sockets: /status.json after real traffic against /metrics,
// its chart history, mesh link state, and derp-serve's --home run as a user runs it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "derp/server.h"
#include "derp/stun.h"
#include "support/relay_harness.h"
#include "support/scrape.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

json status_json(uint16_t port) {
  auto body = http_get_body(port, "/status.json");
  if (!body) return nullptr;
  auto j = json::parse(*body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << *body;
  return j;
}

uint16_t port_of(const std::string& addr) {
  return static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
}

// One STUN binding request to the relay, from a throwaway UDP socket (the answer is not read:
// the test waits for the relay's counter instead).
void send_stun_request(uint16_t port) {
  std::array<uint8_t, stun::kRequestLen> req{};
  stun::encode_binding_request(req, stun::TxId{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7});
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::sendto(fd, req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            static_cast<ssize_t>(req.size()));
  ::close(fd);
}

TEST(RelayStatusPage, StatusJsonAfterTrafficMatchesMetrics) {
  ServerOptions o;
  o.metrics_addr = "127.0.0.1:0";
  o.stun = true;
  o.stun_port = 0;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  const auto a_key = NodePrivate::generate();
  const auto b_key = NodePrivate::generate();
  auto a = DerpConn::connect(relay->port(), a_key, relay->public_key());
  auto b = DerpConn::connect(relay->port(), b_key, relay->public_key());
  ASSERT_TRUE(a && b);
  const std::vector<uint8_t> payload(300, 0x5a);
  constexpr int kPackets = 25;
  for (int i = 0; i < kPackets; ++i) ASSERT_TRUE(a->send_packet(b->public_key(), payload));
  for (int i = 0; i < kPackets; ++i) {
    auto f = b->read_frame();
    ASSERT_TRUE(f.has_value());
    ASSERT_EQ(f->frame_type(), FrameType::kRecvPacket);
  }
  ASSERT_TRUE(a->send_packet(NodePrivate::generate().public_key(), payload));  // unknown dest
  send_stun_request(relay->stun_port());
  // Sends are counted when their write completes, drops when routed: wait for both.
  ASSERT_TRUE(eventually([&] {
    auto c = relay->counters();
    return c["packets_sent"] >= kPackets && c["packets_dropped_reason_unknown_dest"] >= 1 &&
           c["stun_requests_success"] >= 1;
  }));

  const json j = status_json(relay->port());
  ASSERT_TRUE(j.is_object());
  auto metrics_body = http_get_body(port_of(relay->metrics_address()), "/metrics");
  ASSERT_TRUE(metrics_body.has_value());
  auto m = parse_prometheus(*metrics_body);
  EXPECT_EQ(j["sent"]["packets"], m.at("derp_packets_sent"));
  EXPECT_EQ(j["sent"]["packets"], kPackets);
  EXPECT_EQ(j["sent"]["bytes"], m.at("derp_bytes_sent"));
  EXPECT_EQ(j["received"]["packets"], m.at("derp_packets_received"));
  EXPECT_EQ(j["received"]["bytes"], m.at("derp_bytes_received"));
  EXPECT_EQ(j["dropped"]["packets"], m.at("derp_packets_dropped"));
  EXPECT_EQ(j["dropped"]["bytes"], m.at("derp_bytes_dropped"));
  EXPECT_EQ(j["dropped"]["reasons"]["unknown_dest"],
            m.at("derp_packets_dropped_reason{reason=unknown_dest}"));
  EXPECT_EQ(j["dropped"]["reasons"]["unknown_dest"], 1);
  EXPECT_EQ(j["clients"]["total"], m.at("derp_current_connections"));
  EXPECT_EQ(j["clients"]["total"], 2);
  EXPECT_EQ(j["clients"]["home"], m.at("derp_current_home_connections"));
  EXPECT_EQ(j["stun"]["enabled"], true);
  EXPECT_EQ(j["stun"]["success"], m.at("stun_requests{disposition=success}"));
  EXPECT_EQ(j["stun"]["requests"], 1);
  EXPECT_EQ(j["server_key"], relay->public_key().to_string());
  EXPECT_EQ(j["mesh"]["peers"], 0);
  EXPECT_TRUE(j["tls"].is_null());
  EXPECT_TRUE(j["uptime_seconds"].is_number_integer());
  // Aggregates only: no client key in any form.
  const std::string text = j.dump();
  for (const auto& k : {a_key.public_key(), b_key.public_key()}) {
    EXPECT_EQ(text.find(k.hex()), std::string::npos) << text;
  }
}

TEST(RelayStatusPage, HistoryHoldsOnePointASecondWithTheDeliveredRate) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto a = DerpConn::connect(relay->port(), NodePrivate::generate(), relay->public_key());
  auto b = DerpConn::connect(relay->port(), NodePrivate::generate(), relay->public_key());
  ASSERT_TRUE(a && b);
  // Traffic until a sample has seen it: a point with a rate above zero.
  json j;
  ASSERT_TRUE(eventually(
      [&] {
        EXPECT_TRUE(a->send_packet(b->public_key(), std::vector<uint8_t>(100, 1)));
        EXPECT_TRUE(b->read_frame().has_value());
        j = status_json(relay->port());
        if (!j.is_object()) return false;
        for (const auto& v : j["history"]["bytes_per_second"]) {
          if (v.get<double>() > 0) return true;
        }
        return false;
      },
      10s))
      << j.dump();
  EXPECT_EQ(j["history"]["capacity"], 300);
  EXPECT_EQ(j["history"]["interval_seconds"], 1);
  EXPECT_EQ(j["history"]["packets_per_second"].size(), j["history"]["bytes_per_second"].size());
  EXPECT_GE(j["history"]["packets_per_second"].size(), 1u);
  EXPECT_LE(j["history"]["packets_per_second"].size(), 300u);
}

TEST(RelayStatusPage, MeshLinksWithNamesAndStateForLoopback) {
  const MeshKey key = *MeshKey::parse(std::string(64, '5'));
  ServerOptions ob;
  ob.mesh_key = key;
  auto b = start_relay(ob);
  ASSERT_TRUE(b);
  const std::string b_addr = "127.0.0.1:" + std::to_string(b->port());
  ServerOptions oa;
  oa.mesh_key = key;
  const std::string b_url = "http://" + b_addr + "/derp";  // a bare entry would mean https
  oa.mesh_with = {b_url};
  auto a = start_relay(oa);
  ASSERT_TRUE(a);
  json j;
  ASSERT_TRUE(eventually([&] {
    j = status_json(a->port());
    return j.is_object() && j["mesh"]["up"] == 1;
  })) << j.dump();
  EXPECT_EQ(j["mesh"]["peers"], 1);
  ASSERT_EQ(j["mesh"]["links"].size(), 1u);
  // Loopback requests are debug-allowed: the configured name and URL are shown.
  EXPECT_EQ(j["mesh"]["links"][0]["name"], b_url);
  EXPECT_EQ(j["mesh"]["links"][0]["url"], b_url);
  EXPECT_EQ(j["mesh"]["links"][0]["up"], true);
  b->stop();
  ASSERT_TRUE(eventually([&] {
    j = status_json(a->port());
    return j.is_object() && j["mesh"]["up"] == 0;
  })) << j.dump();
  EXPECT_EQ(j["mesh"]["links"][0]["up"], false);
}

TEST(RelayStatusPage, StartRefusesAnUnknownHomeValue) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.home = "ftp://example";
  auto s = Server::start(o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().kind, ErrorKind::kUsage);
  EXPECT_NE(s.error().message.find("unknown home value \"ftp://example\""), std::string::npos)
      << s.error().message;
}

// ---- derp-serve --home, as a process

class ServeHome : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-serve-home-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Starts derp-serve with `home_args`; the port from its stdout line (0 on failure).
  uint16_t start(const std::vector<std::string>& home_args) {
    std::vector<std::string> argv = {std::string(DERP_BIN_DIR) + "/derp-serve",
                                     "-a",
                                     "127.0.0.1:0",
                                     "--stun=false",
                                     "--threads",
                                     "1"};
    argv.insert(argv.end(), home_args.begin(), home_args.end());
    child_ = Child::spawn(argv, dir_);
    if (!child_) return 0;
    auto line = child_->read_stdout_line();
    std::smatch m;
    if (!line || !std::regex_search(*line, m, std::regex("http://127\\.0\\.0\\.1:([0-9]+)/derp"))) {
      ADD_FAILURE() << "no listening line: " << child_->stderr_text();
      return 0;
    }
    return static_cast<uint16_t>(std::stoi(m[1].str()));
  }
  // SIGTERM, and the clean exit derp-serve promises.
  void stop_child() {
    child_->signal(SIGTERM);
    EXPECT_EQ(child_->wait(), 0) << child_->stderr_text();
  }

  std::string dir_;
  std::unique_ptr<Child> child_;
};

std::string get_root(uint16_t port) {
  RawConn raw(port);
  EXPECT_TRUE(raw.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  return raw.read_http_response().value_or("");
}

TEST_F(ServeHome, BlankServesAnEmptyHtmlPage) {
  const uint16_t port = start({"-home", "blank"});
  ASSERT_NE(port, 0);
  const std::string res = get_root(port);
  EXPECT_EQ(res.rfind("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n", 0), 0u)
      << res;
  EXPECT_NE(res.find("\r\nContent-Length: 0\r\n"), std::string::npos) << res;
  EXPECT_TRUE(res.ends_with("\r\n\r\n")) << res;
  // The JSON stays public (docs/CLI.md).
  EXPECT_TRUE(http_get_body(port, "/status.json").has_value());
  stop_child();
}

TEST_F(ServeHome, UrlRedirectsWith302Found) {
  const uint16_t port = start({"--home", "http://127.0.0.1:1/x"});
  ASSERT_NE(port, 0);
  const std::string res = get_root(port);
  EXPECT_EQ(res.rfind("HTTP/1.1 302 Found\r\n", 0), 0u) << res;
  EXPECT_NE(res.find("\r\nLocation: http://127.0.0.1:1/x\r\n"), std::string::npos) << res;
  EXPECT_TRUE(res.ends_with("\r\n\r\n<a href=\"http://127.0.0.1:1/x\">Found</a>.\n\n")) << res;
  stop_child();
}

TEST_F(ServeHome, DefaultIsTheStatusPageAndABadValueExitsTwo) {
  const uint16_t port = start({});
  ASSERT_NE(port, 0);
  const std::string res = get_root(port);
  EXPECT_NE(res.find("<h2>Status</h2>"), std::string::npos) << res;
  stop_child();
  auto bad = Child::spawn({std::string(DERP_BIN_DIR) + "/derp-serve", "-a", "127.0.0.1:0",
                           "--stun=false", "-home", "nowhere"},
                          dir_);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->wait(), 2);
  EXPECT_EQ(bad->stderr_text(),
            "derp-serve: unknown home value \"nowhere\" (want \"\", \"blank\" or an http(s):// "
            "URL)\n");
}

}  // namespace
}  // namespace derp::test
