// Every derp::Client capability (Go's derphttp API, issue 5) against the relay that derp-serve
// runs, over each transport: plain HTTP, TLS, WebSocket and WebSocket over TLS. The relays and
// client options come from support/client_transport.h.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <future>
#include <mutex>
#include <set>
#include <stop_token>
#include <vector>

#include "derp/client.h"
#include "derp/server.h"
#include "derp/watch.h"
#include "support/client_transport.h"
#include "support/connect_proxy.h"

namespace derp::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using TransportClock = std::chrono::steady_clock;

MeshKey transport_mesh_key() {
  auto k = MeshKey::parse(std::string(64, 'c'));
  EXPECT_TRUE(k);
  return k ? *k : MeshKey{};
}

void expect_client_closed(const Error& e, const char* call) {
  EXPECT_EQ(e.kind, ErrorKind::kClosed) << call << ": " << e.message;
  EXPECT_EQ(e.message, "client closed") << call;
}

class ClientTransports : public ::testing::TestWithParam<ClientTransport> {
 protected:
  void SetUp() override {
    relay_ = TransportRelay::start(GetParam());
    ASSERT_TRUE(relay_);
  }
  bool tls() const { return transport_uses_tls(GetParam()); }
  bool websocket() const { return transport_uses_websocket(GetParam()); }

  std::unique_ptr<TransportRelay> relay_;
};

// NewClient, Connect, ConnectedState, LocalAddr, ServerPublicKey, SelfPublicKey, the TLS
// connection state, IsProber, MeshKey, Close and ErrClientClosed.
TEST_P(ClientTransports, ConnectReportsStateAddressesKeysAndCloseEndsEveryCall) {
  const NodePrivate me = NodePrivate::generate();
  ClientOptions o = relay_->client_options(me);
  o.is_prober = true;
  auto c = TransportRelay::make_client(o);
  ASSERT_TRUE(c);
  // Creating never connects.
  EXPECT_FALSE(c->connected_state().connected);
  EXPECT_FALSE(c->local_addr().ok());
  EXPECT_EQ(c->generation(), 0u);
  EXPECT_TRUE(c->server_public_key().is_zero());
  EXPECT_FALSE(c->last_connect_report());
  EXPECT_EQ(relay_->server().counters().at("accepts"), 0);
  EXPECT_TRUE(c->is_prober());
  EXPECT_TRUE(c->mesh_key().is_zero());
  EXPECT_EQ(c->self_public_key(), me.public_key());

  auto r = c->connect();
  ASSERT_TRUE(r.ok()) << r.error().message;
  const ConnectedState s = c->connected_state();
  EXPECT_TRUE(s.connected);
  EXPECT_FALSE(s.connecting);
  EXPECT_FALSE(s.closed);
  auto local = c->local_addr();
  ASSERT_TRUE(local.ok()) << local.error().message;
  EXPECT_EQ(local->rfind("127.0.0.1:", 0), 0u) << *local;
  EXPECT_EQ(s.local_addr, *local);
  EXPECT_EQ(c->server_public_key(), relay_->public_key());
  EXPECT_EQ(c->generation(), 1u);
  EXPECT_EQ(c->server_url(), relay_->url());
  auto report = c->last_connect_report();
  ASSERT_TRUE(report);
  EXPECT_EQ(report->transport, transport_report_name(GetParam()));
  EXPECT_EQ(report->remote_addr, "127.0.0.1:" + std::to_string(relay_->port()));
  EXPECT_EQ(report->local_addr, *local);
  EXPECT_EQ(report->server_key, relay_->public_key());
  EXPECT_EQ(report->generation, 1u);
  EXPECT_GT(report->server_info.version, 0);
  EXPECT_EQ(report->tls_info.has_value(), tls());
  EXPECT_EQ(c->tls_info().has_value(), tls());
  if (tls()) {
    EXPECT_EQ(c->tls_info()->version.rfind("TLSv1.", 0), 0u) << c->tls_info()->version;
    EXPECT_FALSE(c->tls_info()->cipher.empty());
  }
  EXPECT_EQ(relay_->server().counters().at("gauge_current_connections"), 1);

  c->close();
  EXPECT_TRUE(c->connected_state().closed);
  EXPECT_FALSE(c->connected_state().connected);
  const NodePublic peer = NodePrivate::generate().public_key();
  expect_client_closed(c->connect().error(), "connect");
  expect_client_closed(c->send(peer, std::vector<uint8_t>{1}).error(), "send");
  expect_client_closed(c->recv(1s).error(), "recv");
  expect_client_closed(c->recv_detail(1s).error(), "recv_detail");
  expect_client_closed(c->ping(1s).error(), "ping");
  expect_client_closed(c->send_ping(PingData{}).error(), "send_ping");
  expect_client_closed(c->send_pong(PingData{}).error(), "send_pong");
  expect_client_closed(c->note_preferred(true).error(), "note_preferred");
  expect_client_closed(c->local_addr().error(), "local_addr");
  EXPECT_FALSE(c->cancelled());
  // The relay sees the connection go.
  EXPECT_TRUE(
      wait_until([&] { return relay_->server().counters().at("gauge_current_connections") == 0; }));
}

// Send, Recv, RecvDetail with the connection generation, the largest packet.
TEST_P(ClientTransports, SendDeliversPacketsUpToTheLimitWithTheirGeneration) {
  auto a = relay_->client();
  auto b = relay_->client();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->connect().ok());  // b must be present before a sends
  uint64_t gen = 0;
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*b, &gen));
  EXPECT_EQ(gen, 1u);

  const std::vector<uint8_t> small{'h', 'i'};
  auto sent = a->send(b->self_public_key(), small);  // connects on demand
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  auto got = next_message_of<ReceivedPacket>(*b, &gen);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->src, a->self_public_key());
  EXPECT_EQ(got->data, small);
  EXPECT_EQ(gen, 1u);

  std::vector<uint8_t> largest(kMaxPacketSize);
  for (size_t i = 0; i < largest.size(); ++i) largest[i] = static_cast<uint8_t>(i * 31 + 7);
  ASSERT_TRUE(b->send(a->self_public_key(), largest).ok());
  auto back = next_message_of<ReceivedPacket>(*a);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->src, b->self_public_key());
  EXPECT_EQ(back->data, largest);

  std::vector<uint8_t> over(kMaxPacketSize + 1);
  auto refused = a->send(b->self_public_key(), over);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kUsage);
  EXPECT_TRUE(a->connected_state().connected);  // refused before anything was written
}

// Ping (without anyone receiving), SendPing, SendPong, SetCanAckPings, NotePreferred.
TEST_P(ClientTransports, PingSendPingSendPongAndNotePreferredReachTheRelay) {
  auto c = relay_->client();
  ASSERT_TRUE(c);
  // Never connects: not connected yet.
  auto early = c->send_ping(PingData{});
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().kind, ErrorKind::kIo) << early.error().message;
  ASSERT_TRUE(c->note_preferred(true).ok());  // remembered, sent after the connect

  auto rtt = c->ping(10s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
  EXPECT_GT(rtt->count(), 0);
  EXPECT_TRUE(wait_until(
      [&] { return relay_->server().counters().at("gauge_current_home_connections") == 1; }));

  const PingData mine{1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE(c->send_ping(mine).ok());
  auto pong = next_message_of<PongMessage>(*c);  // not a ping() of ours: handed to recv()
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->data, mine);

  // A Pong nobody asked for is read and ignored by the relay; the connection stays.
  ASSERT_TRUE(c->send_pong(mine).ok());
  c->set_can_ack_pings(false);
  ASSERT_TRUE(c->note_preferred(false).ok());
  EXPECT_TRUE(c->ping(10s).ok());  // the relay processed everything sent before it
  EXPECT_EQ(relay_->server().counters().at("gauge_current_home_connections"), 0);
  EXPECT_EQ(c->generation(), 1u);
  EXPECT_GE(relay_->server().counters().at("got_ping"), 3);
}

// Mesh calls: WatchConnectionChanges (watch_conns), ForwardPacket and ClosePeer, with MeshKey.
TEST_P(ClientTransports, MeshClientWatchesForwardsAndClosesPeers) {
  relay_ = TransportRelay::start(GetParam(), transport_mesh_key());
  ASSERT_TRUE(relay_);
  auto peer = relay_->client();
  ASSERT_TRUE(peer);
  ASSERT_TRUE(peer->connect().ok());
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*peer));
  ClientOptions o = relay_->client_options();
  o.mesh_key = transport_mesh_key();
  auto mesh = TransportRelay::make_client(o);
  ASSERT_TRUE(mesh);
  EXPECT_TRUE(mesh->mesh_key().equals(transport_mesh_key()));

  auto w = mesh->watch_conns();
  ASSERT_TRUE(w.ok()) << w.error().message;
  std::set<NodePublic> present;
  while (!present.count(peer->self_public_key())) {
    auto p = next_message_of<PeerPresentMessage>(*mesh);
    ASSERT_TRUE(p);
    present.insert(p->peer);
  }

  const NodePublic elsewhere = NodePrivate::generate().public_key();  // a key on another relay
  const std::vector<uint8_t> data{9, 8, 7};
  ASSERT_TRUE(mesh->forward_packet(elsewhere, peer->self_public_key(), data).ok());
  auto got = next_message_of<ReceivedPacket>(*peer);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->src, elsewhere);
  EXPECT_EQ(got->data, data);
  EXPECT_EQ(relay_->server().counters().at("packets_forwarded_in"), 1);

  ASSERT_TRUE(mesh->close_peer(peer->self_public_key()).ok());
  auto dropped = peer->recv(10s);
  ASSERT_FALSE(dropped.ok());
  EXPECT_EQ(dropped.error().kind, ErrorKind::kIo) << dropped.error().message;
  // The watcher hears that the peer left.
  for (;;) {
    auto g = next_message_of<PeerGoneMessage>(*mesh);
    ASSERT_TRUE(g);
    if (g->peer == peer->self_public_key()) break;
  }
}

// Reconnect semantics (PROTOCOL.md §7): the relay restarts under a client; the next call
// reconnects with the next connection generation.
TEST_P(ClientTransports, ReconnectsWithTheNextGenerationAfterARelayRestart) {
  auto c = relay_->client();
  ASSERT_TRUE(c);
  uint64_t gen = 0;
  ASSERT_TRUE(c->connect().ok());
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*c, &gen));
  EXPECT_EQ(gen, 1u);

  relay_->stop();
  auto broken = c->recv(10s);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().kind, ErrorKind::kIo) << broken.error().message;
  EXPECT_FALSE(c->connected_state().connected);

  ASSERT_TRUE(relay_->restart());
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*c, &gen));  // recv reconnects
  EXPECT_EQ(gen, 2u);
  EXPECT_EQ(c->generation(), 2u);
  EXPECT_EQ(c->last_connect_report()->transport, transport_report_name(GetParam()));
  EXPECT_TRUE(c->ping(10s).ok());
}

// RunWatchConnectionLoop: initial list, then after a relay restart a resync on the next
// generation with a synthetic gone for the peer that did not come back; stop() is prompt and
// reports nothing more.
TEST_P(ClientTransports, WatchLoopSyncsAndResyncsAfterARelayRestart) {
  relay_ = TransportRelay::start(GetParam(), transport_mesh_key());
  ASSERT_TRUE(relay_);
  auto peer = relay_->client();
  ASSERT_TRUE(peer);
  ASSERT_TRUE(peer->connect().ok());
  ClientOptions o = relay_->client_options();
  o.mesh_key = transport_mesh_key();
  auto watcher = TransportRelay::make_client(o);
  ASSERT_TRUE(watcher);
  const NodePublic self = watcher->self_public_key();

  std::mutex mu;
  std::vector<WatchPeer> adds;
  std::vector<WatchGone> gones;
  std::vector<uint64_t> syncs;
  WatchCallbacks cb;
  cb.add = [&](const WatchPeer& p) {
    std::lock_guard lk(mu);
    if (p.key != self) adds.push_back(p);
  };
  cb.gone = [&](const WatchGone& g) {
    std::lock_guard lk(mu);
    if (g.key != self) gones.push_back(g);
  };
  cb.synced = [&](uint64_t gen, size_t) {
    std::lock_guard lk(mu);
    syncs.push_back(gen);
  };
  WatchOptions wo;
  wo.min_backoff = 10ms;
  wo.stale_after = 0ms;  // only the resync drops peers
  auto loop = WatchLoop::start(*watcher, cb, wo);
  ASSERT_TRUE(wait_until([&] { return loop->synced_generation() == 1; }));
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(adds.size(), 1u);
    EXPECT_EQ(adds[0].key, peer->self_public_key());
    EXPECT_EQ(adds[0].endpoint().rfind("127.0.0.1:", 0), 0u) << adds[0].endpoint();
  }

  // `peer` never calls again, so it does not come back after the restart.
  relay_->stop();
  ASSERT_TRUE(relay_->restart());
  ASSERT_TRUE(wait_until([&] { return loop->synced_generation() == 2; }));
  EXPECT_EQ(watcher->generation(), 2u);
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(gones.size(), 1u);
    EXPECT_EQ(gones[0].key, peer->self_public_key());
    EXPECT_EQ(gones[0].reason, PeerGoneReason::kMeshConnBroke);
    EXPECT_TRUE(gones[0].synthetic);
    EXPECT_EQ(syncs, (std::vector<uint64_t>{1, 2}));
  }

  const auto before_stop = TransportClock::now();
  loop->stop();
  EXPECT_LT(TransportClock::now() - before_stop, 5s);
  std::lock_guard lk(mu);
  EXPECT_EQ(adds.size(), 1u);
  EXPECT_EQ(gones.size(), 1u);
  EXPECT_EQ(syncs.size(), 2u);
}

// Cancellation (BaseContext) at whatever step the transport is stuck in: the HTTP upgrade, the
// TLS handshake or the WebSocket upgrade of a listener that accepts TCP and never answers.
TEST_P(ClientTransports, StopTokenAbortsAConnectStuckAtTheListener) {
  asio::io_context io;
  asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  constexpr auto kTimeout = 30s;
  std::stop_source stop;
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  use_transport(o, GetParam(), silent.local_endpoint().port());
  o.insecure = true;
  o.connect_timeout = kTimeout;
  o.stop_token = stop.get_token();
  auto c = TransportRelay::make_client(o);
  ASSERT_TRUE(c);
  auto connecting = std::async(std::launch::async, [&] { return c->connect(); });
  ASSERT_TRUE(wait_until([&] { return c->connected_state().connecting; }));
  const auto stopped_at = TransportClock::now();
  stop.request_stop();
  ASSERT_EQ(connecting.wait_for(kTimeout / 2), std::future_status::ready)
      << "connect() did not return after stop was requested";
  EXPECT_LT(TransportClock::now() - stopped_at, kTimeout / 2);
  auto r = connecting.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kClosed) << r.error().message;
  EXPECT_EQ(r.error().message, "client cancelled (stop requested)");
}

// NewRegionClient with SetAddressFamilySelector: the region's node over this transport.
TEST_P(ClientTransports, RegionClientDialsTheNodeAndAsksTheFamilySelector) {
  std::atomic<int> asked{0};
  ClientOptions o = relay_->client_options();
  o.server_url.clear();
  o.cert_name.clear();  // the node's CertName pins the certificate
  o.region = relay_->region();
  o.region_plain_http = !tls();
  o.prefer_ipv6 = [&] {
    ++asked;
    return true;  // IPv6 is "none" on the node: IPv4 starts after its head start anyway
  };
  auto c = TransportRelay::make_client(o);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->server_url(), "");
  auto r = c->connect();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(asked.load(), 1);
  auto report = c->last_connect_report();
  ASSERT_TRUE(report);
  EXPECT_EQ(report->node_name, "900a");
  EXPECT_EQ(report->transport, transport_report_name(GetParam()));
  EXPECT_EQ(c->server_url(), relay_->url());
  EXPECT_TRUE(c->ping(10s).ok());
}

// SetURLDialer: the custom dialer opens the connection (no DNS: the host does not resolve);
// TLS and WebSocket run on top of the socket it returns.
TEST_P(ClientTransports, UrlDialerOpensTheConnectionUnderEveryTransport) {
  std::atomic<int> calls{0};
  ClientOptions o = relay_->client_options();
  o.server_url = std::string(tls() ? "https" : "http") +
                 "://relay.invalid:" + std::to_string(relay_->port()) + "/derp";
  if (tls()) {
    o.cert_name.clear();
    o.insecure = true;  // the certificate is for 127.0.0.1, not relay.invalid
  }
  o.url_dialer = [&](const std::string& host, uint16_t port) -> Result<int> {
    ++calls;
    if (host != "relay.invalid") return Error(ErrorKind::kUsage, "unexpected host " + host);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ::close(fd);
      return Error(ErrorKind::kConnect, "test dialer: connect failed");
    }
    return fd;
  };
  auto c = TransportRelay::make_client(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(calls.load(), 1);
  auto report = c->last_connect_report();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->custom_dialer);
  EXPECT_EQ(report->transport, transport_report_name(GetParam()));
  EXPECT_EQ(report->dns.count(), 0);
  EXPECT_TRUE(c->ping(10s).ok());
}

// The DNS cache: a reconnect reuses the address resolved for the first connect.
TEST_P(ClientTransports, ReconnectUsesTheDnsCache) {
  ClientOptions o = relay_->client_options();
  o.server_url = std::string(tls() ? "https" : "http") +
                 "://localhost:" + std::to_string(relay_->port()) + "/derp";
  if (tls()) {
    o.cert_name.clear();
    o.insecure = true;  // the certificate is for 127.0.0.1, not localhost
  }
  auto c = TransportRelay::make_client(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(c->last_connect_report()->dns_cached);
  ASSERT_TRUE(relay_->server().apply_fault("close=" + c->self_public_key().to_string()).ok());
  ASSERT_TRUE(wait_until([&] { return !c->connected_state().connected; }));
  for (int i = 0; i < 32; ++i) {  // drain until the dropped connection is reported
    if (!c->recv(10s).ok()) break;
  }
  ASSERT_TRUE(c->connect().ok());
  auto report = c->last_connect_report();
  EXPECT_EQ(report->generation, 2u);
  EXPECT_TRUE(report->dns_cached);
  EXPECT_EQ(report->dns.count(), 0);
  EXPECT_EQ(report->transport, transport_report_name(GetParam()));
}

// HTTP proxies: CONNECT through a proxy, then TLS / WebSocket inside the tunnel. The relay's
// name does not resolve: only the proxy could reach it.
TEST_P(ClientTransports, ProxyTunnelCarriesEveryTransport) {
  auto proxy = ConnectProxy::start(relay_->port());
  ASSERT_TRUE(proxy);
  ClientOptions o = relay_->client_options();
  const std::string target = "relay.invalid:" + std::to_string(relay_->port());
  o.server_url = std::string(tls() ? "https" : "http") + "://" + target + "/derp";
  if (tls()) {
    o.cert_name.clear();
    o.insecure = true;  // the certificate is for 127.0.0.1, not relay.invalid
  }
  o.proxy = proxy->url();
  auto c = TransportRelay::make_client(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto report = c->last_connect_report();
  ASSERT_TRUE(report);
  EXPECT_EQ(report->proxy, proxy->url());
  EXPECT_EQ(report->transport, transport_report_name(GetParam()));
  auto heads = proxy->requests();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].rfind("CONNECT " + target + " HTTP/1.1\r\n", 0), 0u) << heads[0];
  EXPECT_TRUE(c->ping(10s).ok());
}

INSTANTIATE_TEST_SUITE_P(Transport, ClientTransports, ::testing::ValuesIn(kAllClientTransports),
                         [](const auto& info) { return transport_label(info.param); });

}  // namespace
}  // namespace derp::test
