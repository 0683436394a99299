// derp::Client against the in-process relay (derp::Server on 127.0.0.1, ephemeral port) over
// plain HTTP: delivery, ping, lazy connect, back-pressure. Reconnect after a relay restart and
// the other items over every transport: client_transports_test.cc.
#include <gtest/gtest.h>

#include "derp/client.h"
#include "derp/server.h"
#include "support/client_transport.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

// A plain relay and clients without a server-key pin (the pin is tested on its own).
std::unique_ptr<TransportRelay> relay_plain() {
  return TransportRelay::start(ClientTransport::kPlain);
}

std::unique_ptr<Client> client_unpinned(const TransportRelay& relay) {
  ClientOptions o = relay.client_options();
  o.server_key.reset();
  return TransportRelay::make_client(o);
}

TEST(ClientRelay, DeliversPacketFromAToB) {
  auto relay = relay_plain();
  ASSERT_TRUE(relay);
  auto a = client_unpinned(*relay);
  auto b = relay->client();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->connect().ok());  // B must be present before A sends
  const std::string text = "hello from A";
  auto sent = a->send(b->self_public_key(),
                      std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_TRUE(sent.ok()) << sent.error().message;  // lazy connect inside send
  auto pkt = next_message_of<ReceivedPacket>(*b);
  ASSERT_TRUE(pkt);
  EXPECT_EQ(pkt->src, a->self_public_key());
  EXPECT_EQ(std::string(pkt->data.begin(), pkt->data.end()), text);
  EXPECT_EQ(b->server_public_key(), relay->public_key());
}

TEST(ClientRelay, PingMeasuresRoundTripWithoutAnyoneReceiving) {
  auto relay = relay_plain();
  ASSERT_TRUE(relay);
  auto c = client_unpinned(*relay);
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
  auto relay = relay_plain();
  ASSERT_TRUE(relay);
  auto c = client_unpinned(*relay);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*c));
  auto m = c->recv(50ms);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().kind, ErrorKind::kTimeout);
  EXPECT_TRUE(c->connected_state().connected);
  EXPECT_EQ(c->generation(), 1u);
  EXPECT_TRUE(c->ping(5s).ok());
  EXPECT_EQ(c->generation(), 1u);
}

TEST(ClientRelay, ConnectsLazilyAndOnlyOnce) {
  auto relay = relay_plain();
  ASSERT_TRUE(relay);
  auto c = client_unpinned(*relay);
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

TEST(ClientRelay, WrongServerKeyPinIsAProtocolError) {
  auto relay = relay_plain();
  ASSERT_TRUE(relay);
  ClientOptions o = relay->client_options();
  o.server_key = NodePrivate::generate().public_key();
  auto c = TransportRelay::make_client(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
  EXPECT_NE(r.error().message.find("handshake with 127.0.0.1:"), std::string::npos)
      << r.error().message;
}

TEST(ClientRelay, CloseWakesABlockedRecv) {
  auto relay = relay_plain();
  ASSERT_TRUE(relay);
  auto c = client_unpinned(*relay);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*c));
  // Whether close() lands before or during the recv, the answer must be kClosed.
  std::thread closer([&] { c->close(); });
  auto m = c->recv(30s);
  closer.join();
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().kind, ErrorKind::kClosed);
}

TEST(ClientRelay, FullReceiveQueueHoldsBackInsteadOfDropping) {
  auto relay = relay_plain();
  ASSERT_TRUE(relay);
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = "http://127.0.0.1:" + std::to_string(relay->port()) + "/derp";
  o.recv_queue_depth = 2;
  auto b = Client::create(o);
  ASSERT_TRUE(b.ok());
  auto a = client_unpinned(*relay);
  ASSERT_TRUE(a);
  ASSERT_TRUE((*b)->connect().ok());
  constexpr int kPackets = 20;
  for (int i = 0; i < kPackets; ++i) {
    std::array<uint8_t, 1> data{static_cast<uint8_t>(i)};
    ASSERT_TRUE(a->send((*b)->self_public_key(), data).ok());
  }
  ASSERT_TRUE(a->ping(5s).ok());  // the relay has taken every packet in
  for (int i = 0; i < kPackets; ++i) {
    auto pkt = next_message_of<ReceivedPacket>(**b);
    ASSERT_TRUE(pkt) << "packet " << i;
    ASSERT_EQ(pkt->data.size(), 1u);
    EXPECT_EQ(pkt->data[0], i);
  }
}

}  // namespace
}  // namespace derp::test
