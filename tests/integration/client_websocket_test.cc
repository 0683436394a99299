// derp::Client's WebSocket transport (ClientOptions::websocket, PROTOCOL.md §6.4) against the
// relay's own WebSocket server (derp::Server, what derp-serve runs), plain and TLS: what is
// special to WebSocket (the relay's accept counter, WebSocket and TCP clients on one relay, a
// packet spanning messages). What every transport does (connect, send, ping, reconnect with the
// next generation...) is in client_transports_test.cc.
#include <gtest/gtest.h>

#include <variant>

#include "derp/client.h"
#include "derp/server.h"
#include "support/client_transport.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

class ClientWebSocketRelay : public ::testing::TestWithParam<ClientTransport> {
 protected:
  void SetUp() override {
    relay_ = TransportRelay::start(GetParam());
    ASSERT_TRUE(relay_);
  }
  bool tls() const { return transport_uses_tls(GetParam()); }

  std::unique_ptr<Client> client(bool websocket = true) {
    ClientOptions o = relay_->client_options();
    o.websocket = websocket;
    return TransportRelay::make_client(o);
  }

  std::unique_ptr<TransportRelay> relay_;
};

TEST_P(ClientWebSocketRelay, TwoWebSocketClientsExchangePacketsAndPing) {
  auto a = client();
  auto b = client();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->connect().ok());
  auto rb = b->connect();
  ASSERT_TRUE(rb.ok()) << rb.error().message;
  auto report = b->last_connect_report();
  ASSERT_TRUE(report);
  EXPECT_EQ(report->transport, tls() ? "websocket+tls" : "websocket");
  EXPECT_EQ(report->server_key, relay_->public_key());
  EXPECT_FALSE(report->fast_start);  // no fast start over WebSocket
  EXPECT_EQ(b->tls_info().has_value(), tls());
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*a));
  ASSERT_TRUE(next_message_of<ServerInfoMessage>(*b));

  const std::vector<uint8_t> hello{'h', 'e', 'l', 'l', 'o'};
  ASSERT_TRUE(a->send(b->self_public_key(), hello).ok());
  auto got = next_message_of<ReceivedPacket>(*b);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->src, a->self_public_key());
  EXPECT_EQ(got->data, hello);

  // The other way, with a packet larger than one typical WebSocket message buffer.
  std::vector<uint8_t> big(60000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(b->send(a->self_public_key(), big).ok());
  auto back = next_message_of<ReceivedPacket>(*a);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->src, b->self_public_key());
  EXPECT_EQ(back->data, big);

  auto rtt = a->ping(10s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
  EXPECT_GT(rtt->count(), 0);
  EXPECT_EQ(relay_->server().counters().at("derp_websocket_accepts"), 2);
}

TEST_P(ClientWebSocketRelay, WebSocketAndTcpClientsShareTheRelay) {
  auto ws = client(true);
  auto plain = client(false);
  ASSERT_TRUE(ws && plain);
  ASSERT_TRUE(ws->connect().ok());
  ASSERT_TRUE(plain->connect().ok());
  EXPECT_EQ(plain->last_connect_report()->transport, tls() ? "tls" : "tcp");
  const std::vector<uint8_t> data{1, 2, 3, 4};
  ASSERT_TRUE(plain->send(ws->self_public_key(), data).ok());
  auto got = next_message_of<ReceivedPacket>(*ws);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->src, plain->self_public_key());
  EXPECT_EQ(got->data, data);
  EXPECT_EQ(relay_->server().counters().at("derp_websocket_accepts"), 1);
}

INSTANTIATE_TEST_SUITE_P(Transport, ClientWebSocketRelay,
                         ::testing::Values(ClientTransport::kWebSocket,
                                           ClientTransport::kWebSocketTls),
                         [](const auto& info) { return transport_label(info.param); });

}  // namespace
}  // namespace derp::test
