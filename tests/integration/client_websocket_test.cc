// derp::Client's WebSocket transport (ClientOptions::websocket, PROTOCOL.md §6.4) against the
// relay's own WebSocket server (derp::Server, what derp-serve runs), plain and TLS: connect,
// packets between two WebSocket clients and to a TCP client, ping, and a new connection
// generation after the relay restarts on the same port.
#include <gtest/gtest.h>

#include <filesystem>
#include <variant>

#include "derp/client.h"
#include "derp/server.h"

namespace derp {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The next message of type T on c, skipping others; nullopt (with a failure) otherwise.
template <typename T>
std::optional<T> ws_client_next(Client& c, uint64_t* generation = nullptr) {
  for (int i = 0; i < 16; ++i) {
    auto m = c.recv_detail(10s);
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

class ClientWebSocketRelay : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-client-ws-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    relay_key_ = NodePrivate::generate();
    relay_ = start("127.0.0.1:0");
    ASSERT_TRUE(relay_);
  }
  void TearDown() override {
    relay_.reset();
    fs::remove_all(dir_);
  }
  bool tls() const { return GetParam(); }

  // The relay; over TLS with the self-signed certificate it generates for 127.0.0.1 (saved in
  // dir_, so a restart serves the same one).
  std::unique_ptr<Server> start(const std::string& addr) {
    ServerOptions o;
    o.private_key = relay_key_;
    o.listen_addr = addr;
    o.threads = 1;
    if (tls()) {
      o.cert_mode = "manual";
      o.cert_dir = dir_;
      o.hostname = "127.0.0.1";
    }
    auto s = Server::start(std::move(o));
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::unique_ptr<Client> client(bool websocket = true) {
    ClientOptions o;
    o.private_key = NodePrivate::generate();
    o.server_url = std::string(tls() ? "https" : "http") +
                   "://127.0.0.1:" + std::to_string(relay_->port()) + "/derp";
    if (tls()) o.cert_name = relay_->cert_pin();  // sha256-raw: pin of the generated cert
    o.server_key = relay_key_.public_key();
    o.websocket = websocket;
    o.connect_timeout = 10s;
    auto c = Client::create(std::move(o));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::string dir_;
  NodePrivate relay_key_;
  std::unique_ptr<Server> relay_;
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
  EXPECT_EQ(report->server_key, relay_key_.public_key());
  EXPECT_FALSE(report->fast_start);  // no fast start over WebSocket
  EXPECT_EQ(b->tls_info().has_value(), tls());
  ASSERT_TRUE(ws_client_next<ServerInfoMessage>(*a));
  ASSERT_TRUE(ws_client_next<ServerInfoMessage>(*b));

  const std::vector<uint8_t> hello{'h', 'e', 'l', 'l', 'o'};
  ASSERT_TRUE(a->send(b->self_public_key(), hello).ok());
  auto got = ws_client_next<ReceivedPacket>(*b);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->src, a->self_public_key());
  EXPECT_EQ(got->data, hello);

  // The other way, with a packet larger than one typical WebSocket message buffer.
  std::vector<uint8_t> big(60000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(b->send(a->self_public_key(), big).ok());
  auto back = ws_client_next<ReceivedPacket>(*a);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->src, b->self_public_key());
  EXPECT_EQ(back->data, big);

  auto rtt = a->ping(10s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
  EXPECT_GT(rtt->count(), 0);
  EXPECT_EQ(relay_->counters().at("derp_websocket_accepts"), 2);
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
  auto got = ws_client_next<ReceivedPacket>(*ws);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->src, plain->self_public_key());
  EXPECT_EQ(got->data, data);
  EXPECT_EQ(relay_->counters().at("derp_websocket_accepts"), 1);
}

TEST_P(ClientWebSocketRelay, ReconnectsWithNextGenerationAfterRelayRestart) {
  const std::string addr = relay_->local_address();
  auto c = client();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  uint64_t gen = 0;
  ASSERT_TRUE(ws_client_next<ServerInfoMessage>(*c, &gen));
  EXPECT_EQ(gen, 1u);

  relay_->stop();
  auto broken = c->recv(10s);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().kind, ErrorKind::kIo) << broken.error().message;
  EXPECT_FALSE(c->connected_state().connected);

  relay_ = start(addr);  // same port, same key, same certificate
  ASSERT_TRUE(relay_);
  ASSERT_TRUE(ws_client_next<ServerInfoMessage>(*c, &gen));  // recv reconnects
  EXPECT_EQ(gen, 2u);
  EXPECT_EQ(c->generation(), 2u);
  EXPECT_EQ(c->last_connect_report()->transport, tls() ? "websocket+tls" : "websocket");
  EXPECT_TRUE(c->ping(10s).ok());
  EXPECT_EQ(relay_->counters().at("derp_websocket_accepts"), 1);
}

INSTANTIATE_TEST_SUITE_P(Transport, ClientWebSocketRelay, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Tls" : "Plain"; });

}  // namespace
}  // namespace derp
