// DERP over WebSocket on the relay (PROTOCOL.md §6.4): a Beast WebSocket client in the test
// speaks the DERP handshake in binary messages and exchanges packets with TCP clients through
// one relay, plain and over TLS; frames split across messages and several frames in one
// message; a wrong subprotocol and a text message are closed as derper closes them.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <variant>

#include "derp/client.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/server.h"
#include "support/relay_harness.h"

namespace derp {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

using PlainWs = websocket::stream<tcp::socket>;
using TlsWs = websocket::stream<asio::ssl::stream<tcp::socket>>;

// A blocking WebSocket client whose reads give up after 10 s (SO_RCVTIMEO on the socket).
class WsClient {
 public:
  // Connects to 127.0.0.1:port and upgrades GET /derp offering `subprotocol` ("" = none).
  // With `tls`, a TLS handshake first (no verification: the relay's pin is tested elsewhere).
  WsClient(uint16_t port, bool tls, const std::string& subprotocol)
      : ssl_(asio::ssl::context::tls_client) {
    tcp::socket sock(io_);
    boost::system::error_code ec;
    sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (ec) {
      ADD_FAILURE() << "connect: " << ec.message();
      return;
    }
    timeval tv{10, 0};
    ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto decorate = [subprotocol](websocket::request_type& req) {
      if (!subprotocol.empty()) req.set(beast::http::field::sec_websocket_protocol, subprotocol);
    };
    if (tls) {
      ssl_.set_verify_mode(asio::ssl::verify_none);
      auto ws = std::make_unique<TlsWs>(std::move(sock), ssl_);
      ws->next_layer().handshake(asio::ssl::stream_base::client, ec);
      if (ec) {
        ADD_FAILURE() << "TLS handshake: " << ec.message();
        return;
      }
      ws->set_option(websocket::stream_base::decorator(decorate));
      ws->handshake(res_, "127.0.0.1", "/derp", ec);
      ws_ = std::move(ws);
    } else {
      auto ws = std::make_unique<PlainWs>(std::move(sock));
      ws->set_option(websocket::stream_base::decorator(decorate));
      ws->handshake(res_, "127.0.0.1", "/derp", ec);
      ws_ = std::move(ws);
    }
    if (ec) {
      ADD_FAILURE() << "WebSocket handshake: " << ec.message();
      return;
    }
    visit([](auto& ws) { ws.binary(true); });
    ok_ = true;
  }

  bool ok() const { return ok_; }
  const websocket::response_type& response() const { return res_; }

  // One message with exactly these bytes.
  bool send_message(std::span<const uint8_t> bytes, bool text = false) {
    boost::system::error_code ec;
    visit([&](auto& ws) {
      ws.text(text);
      ws.write(asio::buffer(bytes.data(), bytes.size()), ec);
      ws.binary(true);
    });
    EXPECT_FALSE(ec) << ec.message();
    return !ec;
  }

  // The next DERP frame, however the relay's messages cut the stream; nullopt at close,
  // error or deadline (then close_code() tells why).
  std::optional<test::Frame> read_frame() {
    for (;;) {
      if (pending_.size() >= kFrameHeaderLen) {
        const FrameHeader h = read_frame_header(pending_.data());
        if (pending_.size() >= kFrameHeaderLen + h.length) {
          test::Frame f;
          f.type = static_cast<uint8_t>(h.type);
          f.payload.assign(pending_.begin() + kFrameHeaderLen,
                           pending_.begin() + kFrameHeaderLen + h.length);
          pending_.erase(pending_.begin(), pending_.begin() + kFrameHeaderLen + h.length);
          if (f.frame_type() == FrameType::kKeepAlive) continue;
          return f;
        }
      }
      beast::flat_buffer buf;
      boost::system::error_code ec;
      bool text = false;
      visit([&](auto& ws) {
        ws.read(buf, ec);
        text = ws.got_text();
        close_code_ = ws.reason().code;
      });
      if (ec) return std::nullopt;
      EXPECT_FALSE(text) << "the relay sent a text message";
      const auto* p = static_cast<const uint8_t*>(buf.data().data());
      pending_.insert(pending_.end(), p, p + buf.size());
    }
  }

  // The close code the relay sent (after read_frame returned nullopt).
  websocket::close_code close_code() const {
    return static_cast<websocket::close_code>(close_code_);
  }

  // The DERP handshake over the WebSocket (no 101-DERP head: the stream starts with ServerKey).
  bool derp_handshake(const NodePrivate& key, const NodePublic& server) {
    auto sk = read_frame();
    if (!sk || sk->frame_type() != FrameType::kServerKey) {
      ADD_FAILURE() << "no ServerKey frame";
      return false;
    }
    auto got = decode_server_key(sk->payload);
    EXPECT_TRUE(got.ok() && *got == server);
    if (!send_message(encode_client_info_frame(key, server, ClientInfo{}))) return false;
    auto si = read_frame();
    if (!si || si->frame_type() != FrameType::kServerInfo) {
      ADD_FAILURE() << "no ServerInfo frame";
      return false;
    }
    auto info = open_server_info(key, server, si->payload);
    EXPECT_TRUE(info.ok()) << (info.ok() ? "" : info.error().message);
    return info.ok();
  }

  static std::vector<uint8_t> send_packet_frame(const NodePublic& dst, const std::string& text) {
    std::vector<uint8_t> out(kFrameHeaderLen + 32 + text.size());
    out.resize(encode_send_packet(
        out, dst, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
    return out;
  }

  // The payload of the next RecvPacket, checking its source.
  std::string recv_packet(const NodePublic& from) {
    for (int i = 0; i < 16; ++i) {
      auto f = read_frame();
      if (!f) return "";
      if (f->frame_type() != FrameType::kRecvPacket) continue;
      auto rp = decode_recv_packet(f->payload);
      EXPECT_TRUE(rp.ok());
      if (!rp.ok()) return "";
      EXPECT_EQ(rp->src, from);
      return std::string(rp->data.begin(), rp->data.end());
    }
    return "";
  }

 private:
  template <class F>
  void visit(F&& f) {
    std::visit([&](auto& p) { f(*p); }, ws_);
  }

  asio::io_context io_;
  asio::ssl::context ssl_;
  std::variant<std::unique_ptr<PlainWs>, std::unique_ptr<TlsWs>> ws_;
  websocket::response_type res_;
  std::vector<uint8_t> pending_;
  uint16_t close_code_ = 0;
  bool ok_ = false;
};

std::string recv_client_packet(Client& c, NodePublic* src) {
  for (int i = 0; i < 16; ++i) {
    auto m = c.recv(10s);
    if (!m.ok()) {
      ADD_FAILURE() << m.error().message;
      return "";
    }
    if (auto* p = std::get_if<ReceivedPacket>(&*m)) {
      *src = p->src;
      return std::string(p->data.begin(), p->data.end());
    }
  }
  return "";
}

class RelayWebSocket : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-ws-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    start();
  }
  // (Re)starts the relay; `tweak` adjusts the options first.
  void start(const std::function<void(ServerOptions&)>& tweak = {}) {
    relay_.reset();
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = "127.0.0.1:0";
    o.threads = 2;
    o.log = log_.sink();
    if (tls()) {
      o.cert_mode = "manual";
      o.cert_dir = dir_;
      o.hostname = "127.0.0.1";
    }
    if (tweak) tweak(o);
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.error().message;
    relay_ = std::move(*s);
  }
  void TearDown() override {
    relay_.reset();
    fs::remove_all(dir_);
  }
  bool tls() const { return GetParam(); }

  // A derp::Client on the relay's own transport (TCP, or TLS pinned to the relay's cert).
  std::unique_ptr<Client> tcp_client() {
    ClientOptions o;
    o.private_key = NodePrivate::generate();
    o.server_url = std::string(tls() ? "https" : "http") +
                   "://127.0.0.1:" + std::to_string(relay_->port()) + "/derp";
    if (tls()) o.cert_name = relay_->cert_pin();
    o.connect_timeout = 5s;
    auto c = Client::create(std::move(o));
    EXPECT_TRUE(c.ok());
    if (!c.ok()) return nullptr;
    auto r = (*c)->connect();
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? std::move(*c) : nullptr;
  }

  std::string dir_;
  test::LogWatch log_;
  std::unique_ptr<Server> relay_;
};

TEST_P(RelayWebSocket, ExchangesPacketsWithATcpClientThroughOneRelay) {
  WsClient ws(relay_->port(), tls(), "derp");
  ASSERT_TRUE(ws.ok());
  EXPECT_EQ(ws.response()[beast::http::field::sec_websocket_protocol], "derp");
  const auto key = NodePrivate::generate();
  ASSERT_TRUE(ws.derp_handshake(key, relay_->public_key()));
  auto b = tcp_client();
  ASSERT_TRUE(b);

  ASSERT_TRUE(ws.send_message(WsClient::send_packet_frame(b->self_public_key(), "ws->tcp")));
  NodePublic src;
  EXPECT_EQ(recv_client_packet(*b, &src), "ws->tcp");
  EXPECT_EQ(src, key.public_key());

  const std::string text = "tcp->ws";
  ASSERT_TRUE(b->send(key.public_key(),
                      std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()))
                  .ok());
  EXPECT_EQ(ws.recv_packet(b->self_public_key()), text);
  const auto counters = relay_->counters();
  EXPECT_EQ(counters.at("derp_websocket_accepts"), 1);
  EXPECT_EQ(counters.at("gauge_current_connections"), 2);
}

TEST_P(RelayWebSocket, FramesSplitAcrossMessagesAndCombinedInOneMessage) {
  WsClient ws(relay_->port(), tls(), "derp");
  ASSERT_TRUE(ws.ok());
  const auto key = NodePrivate::generate();
  ASSERT_TRUE(ws.derp_handshake(key, relay_->public_key()));
  auto b = tcp_client();
  ASSERT_TRUE(b);

  // One frame in three messages, the first cutting the 5-byte header.
  const auto one = WsClient::send_packet_frame(b->self_public_key(), "split frame");
  const std::span<const uint8_t> all(one);
  ASSERT_TRUE(ws.send_message(all.subspan(0, 3)));
  ASSERT_TRUE(ws.send_message(all.subspan(3, 20)));
  ASSERT_TRUE(ws.send_message(all.subspan(23)));
  // Three frames in one message, the last one cut and finished by the next message.
  std::vector<uint8_t> combined;
  for (const char* t : {"first", "second", "third"}) {
    const auto f = WsClient::send_packet_frame(b->self_public_key(), t);
    combined.insert(combined.end(), f.begin(), f.end());
  }
  const size_t cut = combined.size() - 4;
  ASSERT_TRUE(ws.send_message(std::span<const uint8_t>(combined).subspan(0, cut)));
  ASSERT_TRUE(ws.send_message(std::span<const uint8_t>(combined).subspan(cut)));

  NodePublic src;
  for (const char* want : {"split frame", "first", "second", "third"}) {
    EXPECT_EQ(recv_client_packet(*b, &src), want);
    EXPECT_EQ(src, key.public_key());
  }
  // Many packets to the WebSocket client: each relay write is one message that may carry
  // several frames; the client reassembles them all in order. Rounds of 25 stay below the
  // relay's queue depth (32): more unread packets would be dropped by design (queue_head).
  for (int round = 0; round < 4; ++round) {
    for (int i = round * 25; i < (round + 1) * 25; ++i) {
      const std::string t = "n" + std::to_string(i);
      ASSERT_TRUE(b->send(key.public_key(),
                          std::span(reinterpret_cast<const uint8_t*>(t.data()), t.size()))
                      .ok());
    }
    for (int i = round * 25; i < (round + 1) * 25; ++i) {
      ASSERT_EQ(ws.recv_packet(b->self_public_key()), "n" + std::to_string(i));
    }
  }
}

TEST_P(RelayWebSocket, SubprotocolOtherThanDerpIsClosedWithPolicyViolation) {
  // "notderp" contains "derp", so it is a WebSocket DERP request, but derp is not offered.
  WsClient ws(relay_->port(), tls(), "notderp");
  ASSERT_TRUE(ws.ok());
  EXPECT_EQ(ws.response()[beast::http::field::sec_websocket_protocol], "");
  EXPECT_FALSE(ws.read_frame().has_value());
  EXPECT_EQ(ws.close_code(), websocket::close_code::policy_error);
  EXPECT_TRUE(log_.wait_for("must speak the derp subprotocol"));
  EXPECT_EQ(relay_->counters().at("derp_websocket_accepts"), 0);
}

TEST_P(RelayWebSocket, TextMessageClosesWithUnsupportedData) {
  WsClient ws(relay_->port(), tls(), "derp");
  ASSERT_TRUE(ws.ok());
  const auto key = NodePrivate::generate();
  ASSERT_TRUE(ws.derp_handshake(key, relay_->public_key()));
  const std::string hello = "hello";
  ASSERT_TRUE(ws.send_message(
      std::span(reinterpret_cast<const uint8_t*>(hello.data()), hello.size()), /*text=*/true));
  EXPECT_FALSE(ws.read_frame().has_value());
  EXPECT_EQ(ws.close_code(), websocket::close_code::unknown_data);
}

TEST_P(RelayWebSocket, BadClientInfoInAMessageIsRefusedLikeTcp) {
  WsClient ws(relay_->port(), tls(), "derp");
  ASSERT_TRUE(ws.ok());
  auto sk = ws.read_frame();
  ASSERT_TRUE(sk.has_value());
  const auto frame = frame_bytes(FrameType::kSendPacket, std::vector<uint8_t>(40, 0));
  ASSERT_TRUE(ws.send_message(frame));
  EXPECT_FALSE(ws.read_frame().has_value());
  EXPECT_EQ(ws.close_code(), websocket::close_code::protocol_error);
  EXPECT_TRUE(log_.wait_for("not ClientInfo"));
}

// When the relay ends a WebSocket client's connection it sends a close frame first, as Go's
// websocket library does when derper closes: 1001 on shutdown, 1008 for a refused client, 1000
// for a close on request.
TEST_P(RelayWebSocket, ShutdownSendsRestartingThenGoingAwayCloseFrame) {
  WsClient ws(relay_->port(), tls(), "derp");
  ASSERT_TRUE(ws.ok());
  ASSERT_TRUE(ws.derp_handshake(NodePrivate::generate(), relay_->public_key()));
  std::thread stopper([this] { relay_->graceful_stop(); });
  auto restarting = ws.read_frame();
  ASSERT_TRUE(restarting.has_value());
  EXPECT_EQ(restarting->frame_type(), FrameType::kRestarting);
  EXPECT_FALSE(ws.read_frame().has_value());
  EXPECT_EQ(ws.close_code(), websocket::close_code::going_away);
  stopper.join();
}

TEST_P(RelayWebSocket, RefusedClientGetsPolicyViolationCloseFrame) {
  const std::string allow = dir_ + "/allow.txt";
  std::ofstream(allow) << NodePrivate::generate().public_key().to_string() << "\n";
  start([&](ServerOptions& o) { o.allow_keys_file = allow; });
  WsClient ws(relay_->port(), tls(), "derp");
  ASSERT_TRUE(ws.ok());
  auto sk = ws.read_frame();
  ASSERT_TRUE(sk && sk->frame_type() == FrameType::kServerKey);
  ASSERT_TRUE(ws.send_message(
      encode_client_info_frame(NodePrivate::generate(), relay_->public_key(), ClientInfo{})));
  EXPECT_FALSE(ws.read_frame().has_value());
  EXPECT_EQ(ws.close_code(), websocket::close_code::policy_error);
  EXPECT_TRUE(log_.wait_for("not in the allow-keys file"));
}

TEST_P(RelayWebSocket, CloseFaultSendsNormalCloseFrame) {
  WsClient ws(relay_->port(), tls(), "derp");
  ASSERT_TRUE(ws.ok());
  const auto key = NodePrivate::generate();
  ASSERT_TRUE(ws.derp_handshake(key, relay_->public_key()));
  auto done = relay_->apply_fault("close=" + key.public_key().to_string());
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_FALSE(ws.read_frame().has_value());
  EXPECT_EQ(ws.close_code(), websocket::close_code::normal);
}

INSTANTIATE_TEST_SUITE_P(Transport, RelayWebSocket, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Tls" : "Plain"; });

}  // namespace
}  // namespace derp
