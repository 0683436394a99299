// Go's DialRegionTLS and NewNetcheckClient: derp::dial_region_tls / Client::dial_region_tls
// against the relay's TLS listener (derp::Server with its generated self-signed 127.0.0.1
// certificate, pinned with sha256-raw:), and Client::create_netcheck.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <filesystem>
#include <string>

#include "derp/client.h"
#include "derp/server.h"

namespace derp {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

uint16_t region_tls_closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();  // closed again when `a` goes: nothing listens there
}

DERPNode region_tls_node(const std::string& name, uint16_t port, const std::string& cert_name) {
  DERPNode n;
  n.name = name;
  n.region_id = 900;
  n.host_name = "127.0.0.1";  // the generated certificate is for this IP (pins check it too)
  n.ipv4 = "127.0.0.1";
  n.ipv6 = "none";
  n.derp_port = port;
  n.cert_name = cert_name;
  return n;
}

// Reads from c until the end of an HTTP response head.
std::string region_tls_read_head(TlsConnection& c) {
  std::string got;
  std::vector<uint8_t> buf(4096);
  while (got.find("\r\n\r\n") == std::string::npos) {
    auto n = c.read_some(buf, 10s);
    if (!n.ok()) {
      ADD_FAILURE() << n.error().message;
      break;
    }
    got.append(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n));
  }
  return got;
}

class ClientRegionTls : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-region-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = "127.0.0.1:0";
    o.threads = 1;
    o.cert_mode = "manual";
    o.cert_dir = dir_;
    o.hostname = "127.0.0.1";
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.error().message;
    relay_ = std::move(*s);
    pin_ = relay_->cert_pin();
    ASSERT_EQ(pin_.rfind("sha256-raw:", 0), 0u) << pin_;
  }
  void TearDown() override {
    relay_.reset();
    fs::remove_all(dir_);
  }

  // STUN-only node (skipped), a node nobody listens on, then the relay.
  DERPRegion region() const {
    DERPRegion r;
    r.region_id = 900;
    r.region_code = "test";
    DERPNode stun = region_tls_node("900s", relay_->port(), pin_);
    stun.stun_only = true;
    r.nodes.push_back(stun);
    r.nodes.push_back(region_tls_node("900a", region_tls_closed_port(), pin_));
    r.nodes.push_back(region_tls_node("900b", relay_->port(), pin_));
    return r;
  }

  std::string dir_;
  std::unique_ptr<Server> relay_;
  std::string pin_;
};

TEST_F(ClientRegionTls, DialsTheFirstNodeThatAcceptsAndReturnsTheRawTlsConnection) {
  std::vector<std::string> logged;
  TlsDialOptions o;
  o.connect_timeout = 10s;
  o.log = [&](std::string_view line) { logged.emplace_back(line); };
  auto c = dial_region_tls(region(), o);
  ASSERT_TRUE(c.ok()) << c.error().message;
  TlsConnection& conn = **c;
  EXPECT_EQ(conn.node().name, "900b");
  EXPECT_EQ(conn.tls_info().cert_sha256, pin_);
  EXPECT_EQ(conn.tls_info().version.rfind("TLSv1.", 0), 0u) << conn.tls_info().version;
  EXPECT_EQ(conn.report().node_name, "900b");
  EXPECT_EQ(conn.report().remote_addr, "127.0.0.1:" + std::to_string(relay_->port()));
  EXPECT_EQ(conn.report().transport, "tls");
  ASSERT_EQ(logged.size(), 1u);  // the refused node 900a, before 900b was tried
  EXPECT_NE(logged[0].find("region 900 (test): node 900a: connect to"), std::string::npos)
      << logged[0];

  // Nothing was said on it yet: the caller speaks HTTP itself (netcheck's latency check).
  const std::string req =
      "GET /generate_204 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  ASSERT_TRUE(
      conn.write(std::span(reinterpret_cast<const uint8_t*>(req.data()), req.size()), 10s).ok());
  const std::string head = region_tls_read_head(conn);
  EXPECT_EQ(head.rfind("HTTP/1.1 204", 0), 0u) << head;

  conn.close();
  std::vector<uint8_t> buf(16);
  auto after = conn.read_some(buf, 1s);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().kind, ErrorKind::kClosed);
}

TEST_F(ClientRegionTls, AReadThatGetsNothingTimesOutAndClosesTheConnection) {
  auto c = dial_region_tls(region(), {});
  ASSERT_TRUE(c.ok()) << c.error().message;
  std::vector<uint8_t> buf(16);
  auto r = (*c)->read_some(buf, 100ms);  // the relay waits for a request: nothing comes
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTimeout) << r.error().message;
  EXPECT_NE(r.error().message.find("read from node 900b (127.0.0.1:"), std::string::npos)
      << r.error().message;
  auto again = (*c)->read_some(buf, 1s);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::kClosed);
}

TEST_F(ClientRegionTls, AWrongPinIsATlsErrorAndNoOtherNodeIsTried) {
  DERPRegion r = region();
  // The first node that accepts TCP is the one used (Go): its TLS failure is the answer even
  // though a later node would have worked.
  r.nodes[2].cert_name = "sha256-raw:" + std::string(64, '0');
  r.nodes.push_back(region_tls_node("900c", relay_->port(), pin_));
  auto c = dial_region_tls(r, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kTls) << c.error().message;
}

TEST_F(ClientRegionTls, NoDialableNodeIsAUsageError) {
  DERPRegion r = region();
  r.nodes.resize(1);  // only the STUN-only node
  auto c = dial_region_tls(r, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kUsage) << c.error().message;
}

TEST_F(ClientRegionTls, NetcheckClientCanOnlyDialRegionTls) {
  ClientOptions o;  // no private key, no URL, no region
  o.connect_timeout = 10s;
  auto made = Client::create_netcheck(std::move(o));
  ASSERT_TRUE(made.ok()) << made.error().message;
  Client& nc = **made;

  auto conn = nc.dial_region_tls(region());
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  EXPECT_EQ((*conn)->node().name, "900b");
  EXPECT_EQ((*conn)->tls_info().cert_sha256, pin_);

  auto expect_usage = [](const Error& e) {
    EXPECT_EQ(e.kind, ErrorKind::kUsage) << e.message;
    EXPECT_NE(e.message.find("netcheck client"), std::string::npos) << e.message;
  };
  auto r1 = nc.connect();
  ASSERT_FALSE(r1.ok());
  expect_usage(r1.error());
  auto r2 = nc.send(NodePrivate::generate().public_key(), std::vector<uint8_t>{1});
  ASSERT_FALSE(r2.ok());
  expect_usage(r2.error());
  auto r3 = nc.recv(1s);
  ASSERT_FALSE(r3.ok());
  expect_usage(r3.error());
  auto r4 = nc.ping(1s);
  ASSERT_FALSE(r4.ok());
  expect_usage(r4.error());
  auto r5 = nc.send_ping(PingData{});
  ASSERT_FALSE(r5.ok());
  expect_usage(r5.error());
  EXPECT_EQ(nc.generation(), 0u);
  EXPECT_EQ(relay_->counters().at("accepts"), 1) << "only the TLS dial reached the relay";

  nc.close();
  auto closed = nc.dial_region_tls(region());
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.error().kind, ErrorKind::kClosed);
}

TEST_F(ClientRegionTls, ARegularClientDialsWithItsOwnTlsSettings) {
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = "https://127.0.0.1:" + std::to_string(relay_->port()) + "/derp";
  o.cert_name = pin_;
  auto made = Client::create(std::move(o));
  ASSERT_TRUE(made.ok()) << made.error().message;
  DERPRegion r = region();
  r.nodes[2].cert_name.clear();  // no pin in the map: verified against the system store
  auto bad = (*made)->dial_region_tls(r);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kTls) << bad.error().message;
  r.nodes[2].insecure_for_tests = true;  // the map's InsecureForTests is honoured
  auto ok = (*made)->dial_region_tls(r);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_FALSE((*ok)->tls_info().verified);
}

}  // namespace
}  // namespace derp
