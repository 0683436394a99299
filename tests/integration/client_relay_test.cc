// derp::Client against the in-process relay (derp::Server on 127.0.0.1, ephemeral port).
#include <gtest/gtest.h>

#include "derp/client.h"
#include "derp/server.h"

namespace derp {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Server> start_relay(const NodePrivate& key,
                                    const std::string& addr = "127.0.0.1:0") {
  ServerOptions o;
  o.private_key = key;
  o.listen_addr = addr;
  o.threads = 1;
  auto s = Server::start(std::move(o));
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return s.ok() ? std::move(*s) : nullptr;
}

std::unique_ptr<Client> client_for(const Server& relay, NodePrivate key = NodePrivate::generate(),
                                   std::optional<NodePublic> pin = std::nullopt) {
  ClientOptions o;
  o.private_key = key;
  o.server_url = "http://127.0.0.1:" + std::to_string(relay.port()) + "/derp";
  o.server_key = pin;
  o.connect_timeout = 5s;
  auto c = Client::create(std::move(o));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(*c) : nullptr;
}

// The next message of type T, skipping others (ServerInfo, KeepAlive...).
template <typename T>
std::optional<T> next_of(Client& c, uint64_t* generation = nullptr) {
  for (int i = 0; i < 16; ++i) {
    auto m = c.recv_detail(5s);
    if (!m.ok()) {
      ADD_FAILURE() << "recv: " << m.error().message;
      return std::nullopt;
    }
    if (auto* v = std::get_if<T>(&m->message)) {
      if (generation) *generation = m->generation;
      return *v;
    }
  }
  ADD_FAILURE() << "no message of the wanted type";
  return std::nullopt;
}

TEST(ClientRelay, DeliversPacketFromAToB) {
  auto relay = start_relay(NodePrivate::generate());
  ASSERT_TRUE(relay);
  auto a = client_for(*relay);
  auto b = client_for(*relay, NodePrivate::generate(), relay->public_key());
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->connect().ok());  // B must be present before A sends
  const std::string text = "hello from A";
  auto sent = a->send(b->self_public_key(),
                      std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_TRUE(sent.ok()) << sent.error().message;  // lazy connect inside send
  auto pkt = next_of<ReceivedPacket>(*b);
  ASSERT_TRUE(pkt);
  EXPECT_EQ(pkt->src, a->self_public_key());
  EXPECT_EQ(std::string(pkt->data.begin(), pkt->data.end()), text);
  EXPECT_EQ(b->server_public_key(), relay->public_key());
}

TEST(ClientRelay, PingMeasuresRoundTripWithoutAnyoneReceiving) {
  auto relay = start_relay(NodePrivate::generate());
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c);
  for (int i = 0; i < 3; ++i) {
    auto rtt = c->ping(5s);
    ASSERT_TRUE(rtt.ok()) << rtt.error().message;
    EXPECT_GT(rtt->count(), 0);
  }
  // The pongs were consumed by ping(): only ServerInfo is waiting.
  auto m = c->recv(1s);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(std::holds_alternative<ServerInfoMessage>(*m));
}

TEST(ClientRelay, RecvTimeoutKeepsTheConnection) {
  auto relay = start_relay(NodePrivate::generate());
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  ASSERT_TRUE(next_of<ServerInfoMessage>(*c));
  auto m = c->recv(50ms);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().kind, ErrorKind::kTimeout);
  EXPECT_TRUE(c->connected_state().connected);
  EXPECT_EQ(c->generation(), 1u);
  EXPECT_TRUE(c->ping(5s).ok());
  EXPECT_EQ(c->generation(), 1u);
}

TEST(ClientRelay, ConnectsLazilyAndOnlyOnce) {
  auto relay = start_relay(NodePrivate::generate());
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->connected_state().connected);
  EXPECT_FALSE(c->local_addr().ok());
  ASSERT_TRUE(c->note_preferred(true).ok());  // remembered, sent after connect
  ASSERT_TRUE(c->send(NodePrivate::generate().public_key(), {}).ok());
  EXPECT_TRUE(c->connected_state().connected);
  EXPECT_EQ(c->generation(), 1u);
  auto local = c->local_addr();
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->rfind("127.0.0.1:", 0), 0u);
  ASSERT_TRUE(c->connect().ok());
  EXPECT_EQ(c->generation(), 1u);
}

TEST(ClientRelay, ReconnectsWithNextGenerationAfterRelayRestart) {
  const NodePrivate relay_key = NodePrivate::generate();
  auto relay = start_relay(relay_key);
  ASSERT_TRUE(relay);
  const std::string addr = relay->local_address();
  auto c = client_for(*relay);
  ASSERT_TRUE(c);
  uint64_t gen = 0;
  ASSERT_TRUE(c->connect().ok());
  ASSERT_TRUE(next_of<ServerInfoMessage>(*c, &gen));
  EXPECT_EQ(gen, 1u);

  relay->stop();
  auto broken = c->recv(5s);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().kind, ErrorKind::kIo) << broken.error().message;
  EXPECT_FALSE(c->connected_state().connected);

  relay = start_relay(relay_key, addr);  // same port
  ASSERT_TRUE(relay);
  ASSERT_TRUE(next_of<ServerInfoMessage>(*c, &gen));  // recv reconnects
  EXPECT_EQ(gen, 2u);
  EXPECT_EQ(c->generation(), 2u);
  EXPECT_TRUE(c->ping(5s).ok());
}

TEST(ClientRelay, WrongServerKeyPinIsAProtocolError) {
  auto relay = start_relay(NodePrivate::generate());
  ASSERT_TRUE(relay);
  auto c = client_for(*relay, NodePrivate::generate(), NodePrivate::generate().public_key());
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
  EXPECT_NE(r.error().message.find("handshake with 127.0.0.1:"), std::string::npos)
      << r.error().message;
}

TEST(ClientRelay, CloseWakesABlockedRecv) {
  auto relay = start_relay(NodePrivate::generate());
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  ASSERT_TRUE(next_of<ServerInfoMessage>(*c));
  // Whether close() lands before or during the recv, the answer must be kClosed.
  std::thread closer([&] { c->close(); });
  auto m = c->recv(30s);
  closer.join();
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().kind, ErrorKind::kClosed);
}

TEST(ClientRelay, FullReceiveQueueHoldsBackInsteadOfDropping) {
  auto relay = start_relay(NodePrivate::generate());
  ASSERT_TRUE(relay);
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = "http://127.0.0.1:" + std::to_string(relay->port()) + "/derp";
  o.recv_queue_depth = 2;
  auto b = Client::create(o);
  ASSERT_TRUE(b.ok());
  auto a = client_for(*relay);
  ASSERT_TRUE(a);
  ASSERT_TRUE((*b)->connect().ok());
  constexpr int kPackets = 20;
  for (int i = 0; i < kPackets; ++i) {
    std::array<uint8_t, 1> data{static_cast<uint8_t>(i)};
    ASSERT_TRUE(a->send((*b)->self_public_key(), data).ok());
  }
  ASSERT_TRUE(a->ping(5s).ok());  // the relay has taken every packet in
  for (int i = 0; i < kPackets; ++i) {
    auto pkt = next_of<ReceivedPacket>(**b);
    ASSERT_TRUE(pkt) << "packet " << i;
    ASSERT_EQ(pkt->data.size(), 1u);
    EXPECT_EQ(pkt->data[0], i);
  }
}

}  // namespace
}  // namespace derp
