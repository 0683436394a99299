// How derp::Client reaches a relay (PROTOCOL.md §7.5, §7.7, §8): the connect report, region
// dialing over a DERP map (node order, STUNOnly, IPv4/IPv6 "none", explicit IPs, ::1, pins),
// the DNS cache across reconnects, a custom URL dialer, and loading maps from files and URLs.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "derp/client.h"
#include "derp/derp_map_load.h"
#include "derp/server.h"
#include "support/connect_proxy.h"
#include "support/tls_proxy.h"
#include "support/ws_front.h"

namespace derp {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

std::unique_ptr<Server> relay_on(const std::string& addr, NodePrivate key = NodePrivate::generate()) {
  ServerOptions o;
  o.private_key = key;
  o.listen_addr = addr;
  o.threads = 1;
  auto s = Server::start(std::move(o));
  return s.ok() ? std::move(*s) : nullptr;
}

// A loopback port with nothing listening (bound, then released).
uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  uint16_t p = a.local_endpoint().port();
  a.close();
  return p;
}

std::unique_ptr<Client> create(ClientOptions o) {
  if (o.private_key.is_zero()) o.private_key = NodePrivate::generate();
  if (o.connect_timeout == std::chrono::milliseconds(10000)) o.connect_timeout = 5s;
  auto c = Client::create(std::move(o));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(*c) : nullptr;
}

DERPNode node(std::string name, std::string host, uint16_t port) {
  DERPNode n;
  n.name = std::move(name);
  n.region_id = 900;
  n.host_name = std::move(host);
  n.derp_port = port;
  return n;
}

DERPRegion region(std::vector<DERPNode> nodes) {
  DERPRegion r;
  r.region_id = 900;
  r.region_code = "test";
  r.region_name = "Test";
  r.nodes = std::move(nodes);
  return r;
}

ClientOptions region_options(DERPRegion r) {
  ClientOptions o;
  o.region = std::move(r);
  o.region_plain_http = true;
  return o;
}

TEST(ClientConnectReport, PlainConnectReportsEveryPhaseAndTheRelay) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  ClientOptions o;
  o.server_url = "http://" + relay->local_address() + "/derp";
  auto c = create(o);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->last_connect_report().has_value());
  ASSERT_TRUE(c->connect().ok());
  auto r = c->last_connect_report();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->transport, "tcp");
  EXPECT_EQ(r->url, o.server_url);
  EXPECT_EQ(r->remote_addr, relay->local_address());
  EXPECT_EQ(r->local_addr, *c->local_addr());
  EXPECT_EQ(r->server_key, relay->public_key());
  EXPECT_EQ(r->server_info.version, 2);
  EXPECT_EQ(r->generation, 1u);
  EXPECT_FALSE(r->tls_info.has_value());
  EXPECT_FALSE(r->fast_start);
  EXPECT_EQ(r->dns.count(), 0);  // an IP literal
  EXPECT_EQ(r->tls.count(), 0);
  EXPECT_GT(r->tcp.count(), 0);
  EXPECT_GT(r->http.count(), 0);
  EXPECT_GT(r->handshake.count(), 0);
  EXPECT_GE(r->total, r->tcp + r->http + r->handshake);
}

TEST(ClientConnectReport, TlsConnectReportsTheTlsPhaseAndCertificate) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto cert = test::make_test_cert();
  auto proxy = test::TlsProxy::start(cert, relay->port());
  ASSERT_TRUE(proxy);
  ClientOptions o;
  o.server_url = "https://localhost:" + std::to_string(proxy->port()) + "/derp";
  o.ca_file = test::write_temp_file("ca.pem", cert.cert_pem);
  auto c = create(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  auto r = c->last_connect_report();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->transport, "tls");
  EXPECT_GT(r->tls.count(), 0);
  EXPECT_GT(r->dns.count(), 0);  // "localhost" was resolved
  ASSERT_TRUE(r->tls_info.has_value());
  EXPECT_EQ(r->tls_info->subject, "CN=localhost");
  EXPECT_EQ(r->server_key, relay->public_key());
}

TEST(ClientDnsCache, ReconnectReusesTheResolvedAddress) {
  const NodePrivate key = NodePrivate::generate();
  auto relay = relay_on("127.0.0.1:0", key);
  ASSERT_TRUE(relay);
  const std::string addr = relay->local_address();
  ClientOptions o;
  o.server_url = "http://localhost:" + std::to_string(relay->port()) + "/derp";
  auto c = create(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  EXPECT_FALSE(c->last_connect_report()->dns_cached);

  relay->stop();
  for (int i = 0; i < 32; ++i) {  // drain until the dropped connection is reported
    auto m = c->recv(5s);
    if (!m.ok()) break;
  }
  relay = relay_on(addr, key);
  ASSERT_TRUE(relay);
  ASSERT_TRUE(c->connect().ok());
  auto r = c->last_connect_report();
  EXPECT_EQ(r->generation, 2u);
  EXPECT_TRUE(r->dns_cached);
  EXPECT_EQ(r->dns.count(), 0);
}

TEST(ClientDnsCache, ZeroTtlResolvesEveryTime) {
  const NodePrivate key = NodePrivate::generate();
  auto relay = relay_on("127.0.0.1:0", key);
  ASSERT_TRUE(relay);
  const std::string addr = relay->local_address();
  ClientOptions o;
  o.server_url = "http://localhost:" + std::to_string(relay->port()) + "/derp";
  o.dns_cache_ttl = 0ms;
  auto c = create(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  relay->stop();
  for (int i = 0; i < 32; ++i) {
    if (!c->recv(5s).ok()) break;
  }
  relay = relay_on(addr, key);
  ASSERT_TRUE(relay);
  ASSERT_TRUE(c->connect().ok());
  EXPECT_FALSE(c->last_connect_report()->dns_cached);
}

TEST(ClientUrlDialer, CustomDialerOpensTheConnectionInsteadOfDns) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  const uint16_t port = relay->port();
  std::atomic<int> calls{0};
  std::string seen_host;
  ClientOptions o;
  o.server_url = "http://derp.invalid:" + std::to_string(port) + "/derp";  // never resolvable
  o.url_dialer = [&](const std::string& host, uint16_t p) -> Result<int> {
    ++calls;
    seen_host = host;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(p);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ::close(fd);
      return Error(ErrorKind::kConnect, "test dialer: connect failed");
    }
    return fd;
  };
  auto c = create(o);
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(seen_host, "derp.invalid");
  EXPECT_TRUE(c->last_connect_report()->custom_dialer);
  EXPECT_EQ(c->last_connect_report()->remote_addr, relay->local_address());
  EXPECT_TRUE(c->ping(5s).ok());
}

TEST(ClientUrlDialer, DialerErrorIsReturnedWithItsKind) {
  ClientOptions o;
  o.server_url = "http://derp.invalid:1/derp";
  o.url_dialer = [](const std::string&, uint16_t) -> Result<int> {
    return Error(ErrorKind::kConnect, "no route in the test");
  };
  auto c = create(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConnect);
  EXPECT_NE(r.error().message.find("no route in the test"), std::string::npos)
      << r.error().message;
}

TEST(ClientRegion, DeadFirstNodeFallsThroughToTheSecond) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto r = region({node("dead", "127.0.0.1", closed_port()), node("live", "127.0.0.1", relay->port())});
  auto c = create(region_options(r));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->server_url(), "");
  ASSERT_TRUE(c->connect().ok());
  EXPECT_EQ(c->server_public_key(), relay->public_key());
  auto rep = c->last_connect_report();
  EXPECT_EQ(rep->node_name, "live");
  EXPECT_EQ(c->server_url(), "http://127.0.0.1:" + std::to_string(relay->port()) + "/derp");
}

TEST(ClientRegion, StunOnlyNodesAreSkipped) {
  auto stun_relay = relay_on("127.0.0.1:0");
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(stun_relay && relay);
  auto first = node("stun", "127.0.0.1", stun_relay->port());
  first.stun_only = true;
  auto c = create(region_options(region({first, node("derp", "127.0.0.1", relay->port())})));
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  EXPECT_EQ(c->server_public_key(), relay->public_key());
  EXPECT_EQ(c->last_connect_report()->node_name, "derp");
}

TEST(ClientRegion, OnlyStunOnlyNodesIsAUsageError) {
  auto n = node("stun", "127.0.0.1", 3478);
  n.stun_only = true;
  ClientOptions o = region_options(region({n}));
  o.private_key = NodePrivate::generate();
  auto c = Client::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kUsage);
  EXPECT_NE(c.error().message.find("no non-STUNOnly nodes"), std::string::npos);
}

TEST(ClientRegion, ExplicitIpv4IsDialedWithoutDns) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto n = node("a", "derp.invalid", relay->port());  // HostName never resolves
  n.ipv4 = "127.0.0.1";
  n.ipv6 = "none";
  auto c = create(region_options(region({n})));
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(c->last_connect_report()->remote_addr, relay->local_address());
  EXPECT_EQ(c->last_connect_report()->dns.count(), 0);
}

TEST(ClientRegion, BothFamiliesNoneFailsThatNode) {
  auto n = node("a", "127.0.0.1", 1);
  n.ipv4 = "none";
  n.ipv6 = "none";
  auto c = create(region_options(region({n})));
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConnect);
  EXPECT_NE(r.error().message.find("region 900 (test): node a"), std::string::npos)
      << r.error().message;
}

TEST(ClientRegion, AllNodesDeadReturnsTheFirstNodesError) {
  auto c = create(region_options(
      region({node("one", "127.0.0.1", closed_port()), node("two", "127.0.0.1", closed_port())})));
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConnect);
  EXPECT_NE(r.error().message.find("node one"), std::string::npos) << r.error().message;
}

// A relay on [::1] (nullptr when the host has no IPv6 loopback).
std::unique_ptr<Server> ipv6_relay(NodePrivate key = NodePrivate::generate()) {
  return relay_on("[::1]:0", key);
}

TEST(ClientRegion, Ipv4NoneDialsIpv6Loopback) {
  auto relay = ipv6_relay();
  if (!relay) GTEST_SKIP() << "no ::1 on this host";
  auto n = node("v6", "::1", relay->port());
  n.ipv4 = "none";
  auto c = create(region_options(region({n})));
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(c->last_connect_report()->remote_addr, "[::1]:" + std::to_string(relay->port()));
}

TEST(ClientRegion, RacesFamiliesAndUsesIpv6WhenIpv4IsDead) {
  auto relay = ipv6_relay();
  if (!relay) GTEST_SKIP() << "no ::1 on this host";
  // The same port on 127.0.0.1 has no listener: the IPv4 attempt fails, IPv6 wins.
  auto n = node("dual", "derp.invalid", relay->port());
  n.ipv4 = "127.0.0.1";
  n.ipv6 = "::1";
  auto c = create(region_options(region({n})));
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(c->server_public_key(), relay->public_key());
}

TEST(ClientRegion, PreferIpv6GivesIpv6AHeadStart) {
  auto v6 = ipv6_relay();
  if (!v6) GTEST_SKIP() << "no ::1 on this host";
  auto v4 = relay_on("127.0.0.1:" + std::to_string(v6->port()));
  if (!v4) GTEST_SKIP() << "port taken on 127.0.0.1";
  auto n = node("dual", "derp.invalid", v6->port());
  n.ipv4 = "127.0.0.1";
  n.ipv6 = "::1";
  auto o = region_options(region({n}));
  std::atomic<int> asked{0};
  o.prefer_ipv6 = [&] {
    ++asked;
    return true;
  };
  auto c = create(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  EXPECT_EQ(asked.load(), 1);
  EXPECT_EQ(c->server_public_key(), v6->public_key());
}

TEST(ClientRegion, CertNamePinAndTlsPerNode) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto cert = test::make_test_cert();
  auto proxy = test::TlsProxy::start(cert, relay->port());
  ASSERT_TRUE(proxy);
  auto n = node("tls", "127.0.0.1", proxy->port());
  n.cert_name = "sha256-raw:" + cert.sha256_hex;
  ClientOptions o;
  o.region = region({n});
  auto c = create(o);
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(c->last_connect_report()->transport, "tls");

  // The wrong pin fails with a TLS error; InsecureForTests then accepts anything.
  n.cert_name = "sha256-raw:" + std::string(64, '0');
  o.region = region({n});
  auto bad = create(o);
  auto e = bad->connect();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().kind, ErrorKind::kTls) << e.error().message;
  n.cert_name.clear();
  n.insecure_for_tests = true;
  o.region = region({n});
  auto insecure = create(o);
  EXPECT_TRUE(insecure->connect().ok());
}

TEST(ClientRegion, ReconnectsToTheRegionAfterRelayRestart) {
  const NodePrivate key = NodePrivate::generate();
  auto relay = relay_on("127.0.0.1:0", key);
  ASSERT_TRUE(relay);
  const std::string addr = relay->local_address();
  auto c = create(region_options(region({node("a", "127.0.0.1", relay->port())})));
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  relay->stop();
  for (int i = 0; i < 32; ++i) {
    if (!c->recv(5s).ok()) break;
  }
  relay = relay_on(addr, key);
  ASSERT_TRUE(relay);
  ASSERT_TRUE(c->ping(5s).ok());
  EXPECT_EQ(c->generation(), 2u);
}

TEST(ClientAccessors, ProberMeshKeyAndCanAckPings) {
  ClientOptions o;
  o.server_url = "http://127.0.0.1:1/derp";
  o.is_prober = true;
  auto mk = MeshKey::parse(std::string(64, 'a'));
  ASSERT_TRUE(mk.ok());
  o.mesh_key = *mk;
  auto c = create(o);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->is_prober());
  EXPECT_TRUE(c->mesh_key().equals(*mk));
}

TEST(ClientProxy, ConnectTunnelWithBasicAuthReachesTheRelay) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto proxy = test::ConnectProxy::start(relay->port());
  ASSERT_TRUE(proxy);
  ClientOptions o;
  const std::string target = "derp.invalid:" + std::to_string(relay->port());
  o.server_url = "http://" + target + "/derp";  // only the proxy could reach that
  o.proxy = "http://user:pass@127.0.0.1:" + std::to_string(proxy->port());
  auto c = create(o);
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(c->server_public_key(), relay->public_key());
  EXPECT_EQ(c->last_connect_report()->proxy, proxy->url());
  EXPECT_EQ(c->last_connect_report()->remote_addr, "127.0.0.1:" + std::to_string(proxy->port()));
  auto heads = proxy->requests();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].rfind("CONNECT " + target + " HTTP/1.1\r\n", 0), 0u) << heads[0];
  EXPECT_NE(heads[0].find("Host: " + target + "\r\n"), std::string::npos) << heads[0];
  EXPECT_NE(heads[0].find("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"), std::string::npos)
      << heads[0];
}

TEST(ClientProxy, TlsGoesThroughTheTunnel) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto cert = test::make_test_cert();
  auto tls = test::TlsProxy::start(cert, relay->port());
  ASSERT_TRUE(tls);
  auto proxy = test::ConnectProxy::start(tls->port());
  ASSERT_TRUE(proxy);
  ClientOptions o;
  o.server_url = "https://localhost:" + std::to_string(tls->port()) + "/derp";
  o.ca_file = test::write_temp_file("ca.pem", cert.cert_pem);
  o.proxy = proxy->url();
  auto c = create(o);
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(c->last_connect_report()->transport, "tls");
  EXPECT_EQ(c->last_connect_report()->proxy, proxy->url());
  EXPECT_EQ(proxy->requests().size(), 1u);
}

TEST(ClientProxy, RefusedConnectIsAnHttpError) {
  auto proxy = test::ConnectProxy::start(1, 407);
  ASSERT_TRUE(proxy);
  ClientOptions o;
  o.server_url = "http://derp.invalid:3340/derp";
  o.proxy = proxy->url();
  auto c = create(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kHttp);
  EXPECT_NE(r.error().message.find("407"), std::string::npos) << r.error().message;
}

TEST(ClientProxy, BadProxyUrlIsAUsageError) {
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = "http://127.0.0.1:3340/derp";
  o.proxy = "socks5://127.0.0.1:1080";
  auto c = Client::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kUsage);
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

TEST(ClientProxy, EnvironmentProxyAndNoProxy) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto proxy = test::ConnectProxy::start(relay->port());
  ASSERT_TRUE(proxy);
  ScopedEnv http_proxy("HTTP_PROXY", proxy->url());
  ClientOptions o;
  o.server_url = "http://derp.invalid:" + std::to_string(relay->port()) + "/derp";
  {
    auto c = create(o);
    ASSERT_TRUE(c);
    auto ok = c->connect();
    ASSERT_TRUE(ok.ok()) << ok.error().message;
    EXPECT_EQ(c->last_connect_report()->proxy, proxy->url());
  }
  {  // Loopback targets never use the environment's proxy (as Go).
    ClientOptions direct;
    direct.server_url = "http://127.0.0.1:" + std::to_string(relay->port()) + "/derp";
    auto c = create(direct);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->connect().ok());
    EXPECT_EQ(c->last_connect_report()->proxy, "");
  }
  {  // proxy_from_environment = false ignores it.
    ClientOptions off = o;
    off.proxy_from_environment = false;
    auto c = create(off);
    ASSERT_TRUE(c);
    auto r = c->connect();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::kDns) << r.error().message;
  }
  ScopedEnv no_proxy("NO_PROXY", "example.test, .invalid");
  auto c = create(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kDns) << r.error().message;
  EXPECT_EQ(proxy->requests().size(), 1u);
}

// The next ReceivedPacket on c (other messages skipped), as text.
std::optional<std::string> next_packet(Client& c) {
  for (int i = 0; i < 16; ++i) {
    auto m = c.recv(5s);
    if (!m.ok()) {
      ADD_FAILURE() << "recv: " << m.error().message;
      return std::nullopt;
    }
    if (auto* p = std::get_if<ReceivedPacket>(&*m)) return std::string(p->data.begin(), p->data.end());
  }
  ADD_FAILURE() << "no packet";
  return std::nullopt;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(ClientWebSocket, CarriesTheDerpStreamInBinaryMessagesBothWays) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto front = test::WsFront::start(relay->port(), /*split=*/true);
  ASSERT_TRUE(front);
  ClientOptions wo;
  wo.server_url = "http://127.0.0.1:" + std::to_string(front->port()) + "/derp";
  wo.websocket = true;
  auto ws = create(wo);
  ClientOptions po;
  po.server_url = "http://" + relay->local_address() + "/derp";
  auto plain = create(po);
  ASSERT_TRUE(ws && plain);
  auto ok = ws->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  ASSERT_TRUE(plain->connect().ok());
  EXPECT_EQ(ws->server_public_key(), relay->public_key());
  EXPECT_EQ(ws->last_connect_report()->transport, "websocket");
  EXPECT_GT(ws->last_connect_report()->http.count(), 0);
  EXPECT_EQ(front->websocket_sessions(), 1);
  EXPECT_EQ(front->refused(), 0);

  auto rtt = ws->ping(5s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
  ASSERT_TRUE(ws->send(plain->self_public_key(), bytes_of("from websocket")).ok());
  EXPECT_EQ(next_packet(*plain), "from websocket");
  std::string big(3000, 'x');  // many 7-byte messages on the way back
  ASSERT_TRUE(plain->send(ws->self_public_key(), bytes_of(big)).ok());
  EXPECT_EQ(next_packet(*ws), big);
}

TEST(ClientWebSocket, WorksOverTls) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto front = test::WsFront::start(relay->port());
  ASSERT_TRUE(front);
  auto cert = test::make_test_cert();
  auto tls = test::TlsProxy::start(cert, front->port());
  ASSERT_TRUE(tls);
  ClientOptions o;
  o.server_url = "https://localhost:" + std::to_string(tls->port()) + "/derp";
  o.ca_file = test::write_temp_file("ca.pem", cert.cert_pem);
  o.websocket = true;
  auto c = create(o);
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(c->last_connect_report()->transport, "websocket+tls");
  EXPECT_TRUE(c->last_connect_report()->tls_info.has_value());
  EXPECT_TRUE(c->ping(5s).ok());
}

TEST(ClientWebSocket, StrippedUpgradeFallsBackToWebSocketAndSaysSo) {
  auto relay = relay_on("127.0.0.1:0");
  ASSERT_TRUE(relay);
  auto front = test::WsFront::start(relay->port());
  ASSERT_TRUE(front);
  std::vector<std::string> lines;
  std::mutex mu;
  ClientOptions o;
  o.server_url = "http://127.0.0.1:" + std::to_string(front->port()) + "/derp";
  o.log = [&](std::string_view l) {
    std::lock_guard lk(mu);
    lines.emplace_back(l);
  };
  auto c = create(o);
  ASSERT_TRUE(c);
  auto ok = c->connect();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  auto r = c->last_connect_report();
  EXPECT_EQ(r->transport, "websocket");
  EXPECT_EQ(r->note, "a proxy stripped Upgrade: DERP; retried over WebSocket");
  EXPECT_EQ(front->refused(), 1);
  EXPECT_EQ(front->websocket_sessions(), 1);
  EXPECT_TRUE(c->ping(5s).ok());
  std::lock_guard lk(mu);
  bool logged = false;
  for (const auto& l : lines) logged |= l.find("stripped Upgrade: DERP") != std::string::npos;
  EXPECT_TRUE(logged);
}

// One HTTP response per connection, on a loopback port, for DERP map URLs.
class TinyHttp {
 public:
  TinyHttp(int status, std::string body)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this, status, body = std::move(body)] {
      for (;;) {
        boost::system::error_code ec;
        tcp::socket s(io_);
        acceptor_.accept(s, ec);
        if (ec) return;
        asio::streambuf buf;
        asio::read_until(s, buf, "\r\n\r\n", ec);
        std::string resp = "HTTP/1.1 " + std::to_string(status) +
                           " X\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        asio::write(s, asio::buffer(resp), ec);
        s.shutdown(tcp::socket::shutdown_send, ec);
      }
    });
  }
  ~TinyHttp() {
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + path;
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

TEST(ClientWebSocket, RelayWithoutWebSocketIsAnHttpError) {
  // A scripted plain HTTP server answering every request 404: the WebSocket upgrade is refused.
  TinyHttp http(404, "no websocket here");
  ClientOptions o;
  o.server_url = http.url("/derp");
  o.websocket = true;
  auto c = create(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kHttp) << r.error().message;
  EXPECT_NE(r.error().message.find("HTTP 404"), std::string::npos) << r.error().message;
}

constexpr const char* kMapJson =
    R"({"Regions":{"900":{"RegionID":900,"RegionCode":"test","Nodes":[)"
    R"({"Name":"900a","RegionID":900,"HostName":"127.0.0.1","DERPPort":3340}]}}})";

TEST(DerpMapLoad, FromFileAndFileUrlAndHttpUrl) {
  auto path = test::write_temp_file("map.json", kMapJson);
  auto a = load_derp_map(path, 5s);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->regions.at(900).nodes.at(0).derp_port, 3340);
  auto b = load_derp_map("file://" + path, 5s);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(*a, *b);
  TinyHttp http(200, kMapJson);
  auto c = load_derp_map(http.url("/derpmap/default"), 5s);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(*a, *c);
}

TEST(DerpMapLoad, HttpsUrlIsVerifiedAgainstTheCaFile) {
  // derp-probe's --ca-file reaches the one loader: a map behind a self-signed certificate.
  TinyHttp http(200, kMapJson);
  auto cert = test::make_test_cert();
  auto tls = test::TlsProxy::start(cert, http.port());
  ASSERT_TRUE(tls);
  const std::string url = "https://127.0.0.1:" + std::to_string(tls->port()) + "/m";
  auto untrusted = load_derp_map(url, 5s);
  ASSERT_FALSE(untrusted.ok());
  EXPECT_EQ(untrusted.error().kind, ErrorKind::kTls) << untrusted.error().message;
  auto trusted = load_derp_map(url, 5s, test::write_temp_file("map-ca.pem", cert.cert_pem));
  ASSERT_TRUE(trusted.ok()) << trusted.error().message;
  EXPECT_EQ(trusted->regions.at(900).nodes.at(0).derp_port, 3340);
}

TEST(DerpMapLoad, FailuresAreClassified) {
  TinyHttp missing(404, "not found");
  auto e404 = load_derp_map(missing.url("/nope"), 5s);
  ASSERT_FALSE(e404.ok());
  EXPECT_EQ(e404.error().kind, ErrorKind::kHttp);
  EXPECT_NE(e404.error().message.find("HTTP status 404"), std::string::npos)
      << e404.error().message;
  TinyHttp empty(204, "");
  auto e204 = load_derp_map(empty.url("/m"), 5s);  // a map needs 200 (derpprobe's rule too)
  ASSERT_FALSE(e204.ok());
  EXPECT_EQ(e204.error().kind, ErrorKind::kHttp) << e204.error().message;
  EXPECT_NE(e204.error().message.find("HTTP status 204"), std::string::npos)
      << e204.error().message;

  TinyHttp garbage(200, "{not json");
  auto bad = load_derp_map(garbage.url("/map"), 5s);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kUsage);

  auto closed = load_derp_map("http://127.0.0.1:" + std::to_string(closed_port()) + "/m", 5s);
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.error().kind, ErrorKind::kConnect) << closed.error().message;

  auto dns = load_derp_map("http://derp-map.invalid/m", 5s);
  ASSERT_FALSE(dns.ok());
  EXPECT_EQ(dns.error().kind, ErrorKind::kDns) << dns.error().message;

  auto nofile = load_derp_map("/nonexistent/derp-map.json", 5s);
  ASSERT_FALSE(nofile.ok());
  EXPECT_EQ(nofile.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(nofile.error().message,
            "DERP map: cannot read /nonexistent/derp-map.json: No such file or directory");
}

}  // namespace
}  // namespace derp
