// derp::Client against scripted loopback servers: the captured derper byte streams replayed
// (tests/vectors), and servers that misbehave in the ways a client must report clearly.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "derp/client.h"
#include "derp/handshake.h"
#include "support/vectors.h"

namespace derp {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

// A one-connection loopback server whose behaviour is a function of the accepted socket.
class ScriptedServer {
 public:
  using Script = std::function<void(tcp::socket&)>;

  explicit ScriptedServer(Script script)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this, script = std::move(script)] {
      boost::system::error_code ec;
      tcp::socket s(io_);
      acceptor_.accept(s, ec);
      if (ec) return;
      accepted_ = true;
      try {
        script(s);
      } catch (const std::exception& e) {
        std::lock_guard lk(mu_);
        script_error_ = e.what();
      }
    });
  }
  ~ScriptedServer() { stop(); }

  // Ends the script's blocking calls (closing the listener and socket) and joins.
  void stop() {
    if (!thread_.joinable()) return;
    // shutdown() wakes a thread blocked in accept(); close() alone does not on Linux.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
    boost::system::error_code ec;
    acceptor_.close(ec);
  }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()) + "/derp"; }
  bool accepted() const { return accepted_; }
  std::string script_error() {
    std::lock_guard lk(mu_);
    return script_error_;
  }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> accepted_{false};
  std::mutex mu_;
  std::string script_error_;
};

// Reads the request head (up to the blank line); leftover bytes stay in `buf`.
std::string read_request_head(tcp::socket& s, asio::streambuf& buf) {
  size_t n = asio::read_until(s, buf, "\r\n\r\n");
  std::string head(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n);
  buf.consume(n);
  return head;
}

// Reads one whole DERP frame (header + payload), using `buf`'s leftovers first.
std::vector<uint8_t> read_frame(tcp::socket& s, asio::streambuf& buf) {
  if (buf.size() < kFrameHeaderLen)
    asio::read(s, buf, asio::transfer_at_least(kFrameHeaderLen - buf.size()));
  std::vector<uint8_t> hdr(kFrameHeaderLen);
  asio::buffer_copy(asio::buffer(hdr), buf.data());
  const FrameHeader h = read_frame_header(hdr.data());
  const size_t total = kFrameHeaderLen + h.length;
  if (buf.size() < total) asio::read(s, buf, asio::transfer_at_least(total - buf.size()));
  std::vector<uint8_t> frame(total);
  asio::buffer_copy(asio::buffer(frame), buf.data());
  buf.consume(total);
  return frame;
}

// Waits for the client to close its side (so closing ours never resets unread data away).
void drain_until_eof(tcp::socket& s) {
  std::array<uint8_t, 4096> junk;
  boost::system::error_code ec;
  while (!ec) s.read_some(asio::buffer(junk), ec);
}

struct Replay {
  std::string request_head;
  std::vector<uint8_t> client_info_frame;
};

// Plays connection `conn` of a vector: checks nothing itself, records what the client sent.
// The server's bytes go out in small pieces so frames straddle reads.
ScriptedServer::Script replay_script(std::vector<uint8_t> s2c, size_t head_len, Replay* out,
                                     std::mutex* mu) {
  return [s2c = std::move(s2c), head_len, out, mu](tcp::socket& s) {
    asio::streambuf buf;
    std::string head = read_request_head(s, buf);
    // The 101 and the ServerKey together, as derper does; then 7-byte pieces.
    const size_t first = head_len + kFrameHeaderLen + 40;
    asio::write(s, asio::buffer(s2c.data(), first));
    auto ci = read_frame(s, buf);
    {
      std::lock_guard lk(*mu);
      out->request_head = head;
      out->client_info_frame = ci;
    }
    for (size_t off = first; off < s2c.size(); off += 7) {
      asio::write(s, asio::buffer(s2c.data() + off, std::min<size_t>(7, s2c.size() - off)));
    }
    s.shutdown(tcp::socket::shutdown_send);
    drain_until_eof(s);
  };
}

ClientOptions options_for(const std::string& url, const NodePrivate& key) {
  ClientOptions o;
  o.private_key = key;
  o.server_url = url;
  o.connect_timeout = 5s;
  return o;
}

std::unique_ptr<Client> make_client(ClientOptions o) {
  auto c = Client::create(std::move(o));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(*c) : nullptr;
}

template <typename T>
T expect_message(Client& c) {
  auto m = c.recv(5s);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
  if (!m.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*m)) << "got " << received_message_name(*m);
  if (!std::holds_alternative<T>(*m)) return T{};
  return std::get<T>(*m);
}

void check_request_and_client_info(const Replay& r, const nlohmann::json& v,
                                   const NodePublic& client_pub, bool can_ack_pings) {
  EXPECT_EQ(r.request_head.rfind("GET /derp HTTP/1.1\r\n", 0), 0u) << r.request_head;
  EXPECT_NE(r.request_head.find("\r\nConnection: Upgrade\r\n"), std::string::npos)
      << r.request_head;
  EXPECT_NE(r.request_head.find("\r\nUpgrade: DERP\r\n"), std::string::npos) << r.request_head;
  ASSERT_GE(r.client_info_frame.size(), kFrameHeaderLen + 32 + 24 + 16);
  EXPECT_EQ(r.client_info_frame[0], static_cast<uint8_t>(FrameType::kClientInfo));
  std::span<const uint8_t> payload(r.client_info_frame.data() + kFrameHeaderLen,
                                   r.client_info_frame.size() - kFrameHeaderLen);
  EXPECT_EQ(NodePublic::from_bytes(payload.data()), client_pub);
  auto json = open_from(test::private_key(v, "server"), client_pub, payload.subspan(32));
  ASSERT_TRUE(json.ok()) << json.error().message;
  EXPECT_EQ(
      std::string(json->begin(), json->end()),
      std::string("{\"version\":2,\"CanAckPings\":") + (can_ack_pings ? "true" : "false") + "}");
}

TEST(ClientReplay, PingVectorYieldsServerInfoThenUnsolicitedPongs) {
  auto v = test::load_vector("ping");
  const auto& conn = v["connections"][0];
  Replay r;
  std::mutex mu;
  ScriptedServer server(
      replay_script(test::s2c_raw(conn), conn["s2c_derp_offset"].get<size_t>(), &r, &mu));
  auto key = test::private_key(v, "client_A");
  auto opts = options_for(server.url(), key);
  opts.server_key = test::public_key(v, "server");  // the right pin is accepted
  opts.can_ack_pings = false;
  auto client = make_client(opts);
  ASSERT_TRUE(client);

  auto info = expect_message<ServerInfoMessage>(*client);
  EXPECT_EQ(info.info.version, 2);
  EXPECT_EQ(client->server_public_key(), test::public_key(v, "server"));
  for (int i = 2; i <= 4; ++i) {
    auto pong = expect_message<PongMessage>(*client);
    auto want = test::frame_payload(conn["s2c_frames"][i]);
    EXPECT_EQ(test::hexs(pong.data), test::hexs(want));
  }
  auto end = client->recv(5s);
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(end.error().kind, ErrorKind::kIo) << end.error().message;
  EXPECT_NE(end.error().message.find("closed by server"), std::string::npos) << end.error().message;
  client->close();
  server.stop();
  EXPECT_EQ(server.script_error(), "");
  std::lock_guard lk(mu);
  check_request_and_client_info(r, v, key.public_key(), false);
}

TEST(ClientReplay, SetCanAckPingsChangesTheNextClientInfo) {
  auto v = test::load_vector("ping");
  const auto& conn = v["connections"][0];
  Replay r;
  std::mutex mu;
  ScriptedServer server(
      replay_script(test::s2c_raw(conn), conn["s2c_derp_offset"].get<size_t>(), &r, &mu));
  auto key = test::private_key(v, "client_A");
  auto opts = options_for(server.url(), key);
  opts.can_ack_pings = true;
  auto client = make_client(opts);
  ASSERT_TRUE(client);
  client->set_can_ack_pings(false);  // Go's SetCanAckPings, before the connect
  expect_message<ServerInfoMessage>(*client);
  client->close();
  server.stop();
  std::lock_guard lk(mu);
  check_request_and_client_info(r, v, key.public_key(), false);
}

TEST(ClientReplay, RegionDialSendsIdealNodeWhenTheFirstNodeIsDown) {
  auto v = test::load_vector("ping");
  const auto& conn = v["connections"][0];
  Replay r;
  std::mutex mu;
  ScriptedServer server(
      replay_script(test::s2c_raw(conn), conn["s2c_derp_offset"].get<size_t>(), &r, &mu));
  asio::io_context io;
  tcp::acceptor gone(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t dead_port = gone.local_endpoint().port();
  gone.close();
  DERPRegion region;
  region.region_id = 7;
  for (auto [name, port] : {std::pair<std::string, uint16_t>{"7a", dead_port},
                            std::pair<std::string, uint16_t>{"7b", server.port()}}) {
    DERPNode n;
    n.name = name;
    n.region_id = 7;
    n.host_name = "127.0.0.1";
    n.derp_port = port;
    region.nodes.push_back(n);
  }
  const uint16_t live_port = server.port();
  auto opts = options_for("", test::private_key(v, "client_A"));
  opts.region = region;
  opts.region_plain_http = true;
  auto client = make_client(opts);
  ASSERT_TRUE(client);
  expect_message<ServerInfoMessage>(*client);
  client->close();
  server.stop();
  std::lock_guard lk(mu);
  EXPECT_NE(r.request_head.find("\r\nIdeal-Node: 7a\r\n"), std::string::npos) << r.request_head;
  EXPECT_NE(r.request_head.find("\r\nHost: 127.0.0.1:" + std::to_string(live_port) + "\r\n"),
            std::string::npos)
      << r.request_head;
}

TEST(ClientReplay, SendRecvVectorYieldsPacketAndOldStylePeerGone) {
  auto v = test::load_vector("send_recv");
  const auto& conn = v["connections"][0];  // client_B, the receiver
  Replay r;
  std::mutex mu;
  ScriptedServer server(
      replay_script(test::s2c_raw(conn), conn["s2c_derp_offset"].get<size_t>(), &r, &mu));
  auto key = test::private_key(v, "client_B");
  auto client = make_client(options_for(server.url(), key));
  ASSERT_TRUE(client);

  ASSERT_TRUE(client->connect().ok());
  EXPECT_EQ(client->generation(), 1u);
  auto detail = client->recv_detail(5s);
  ASSERT_TRUE(detail.ok()) << detail.error().message;
  EXPECT_TRUE(std::holds_alternative<ServerInfoMessage>(detail->message));
  EXPECT_EQ(detail->generation, 1u);
  auto pkt = expect_message<ReceivedPacket>(*client);
  EXPECT_EQ(pkt.src, test::public_key(v, "client_A"));
  EXPECT_EQ(std::string(pkt.data.begin(), pkt.data.end()), "hello from A");
  auto gone = expect_message<PeerGoneMessage>(*client);
  EXPECT_EQ(gone.peer, test::public_key(v, "client_A"));
  EXPECT_EQ(gone.reason, PeerGoneReason::kDisconnected);
  auto end = client->recv(5s);
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(end.error().kind, ErrorKind::kIo);
  client->close();
  server.stop();
  EXPECT_EQ(server.script_error(), "");
  std::lock_guard lk(mu);
  check_request_and_client_info(r, v, key.public_key(), true);
}

TEST(ClientReplay, WrongServerKeyPinIsAProtocolError) {
  auto v = test::load_vector("ping");
  const auto& conn = v["connections"][0];
  Replay r;
  std::mutex mu;
  ScriptedServer server(
      replay_script(test::s2c_raw(conn), conn["s2c_derp_offset"].get<size_t>(), &r, &mu));
  auto opts = options_for(server.url(), test::private_key(v, "client_A"));
  opts.server_key = test::public_key(v, "nobody");
  auto client = make_client(opts);
  ASSERT_TRUE(client);
  auto res = client->connect();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kProtocol) << res.error().message;
  EXPECT_NE(res.error().message.find("handshake with 127.0.0.1:"), std::string::npos)
      << res.error().message;
  client->close();
}

TEST(ClientReplay, NotFoundIsAnHttpErrorWithStatusAndBody) {
  ScriptedServer server([](tcp::socket& s) {
    asio::streambuf buf;
    read_request_head(s, buf);
    const std::string resp =
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\n"
        "404 page not found\n";
    asio::write(s, asio::buffer(resp));
    drain_until_eof(s);
  });
  auto client = make_client(options_for(server.url(), NodePrivate::generate()));
  ASSERT_TRUE(client);
  auto res = client->connect();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kHttp);
  EXPECT_EQ(res.error().message,
            "HTTP 404 from 127.0.0.1:" + std::to_string(server.port()) + ": 404 page not found");
  client->close();
}

TEST(ClientReplay, UpgradeRequiredWithoutLengthReadsBodyToEof) {
  ScriptedServer server([](tcp::socket& s) {
    asio::streambuf buf;
    read_request_head(s, buf);
    asio::write(
        s, asio::buffer(std::string("HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\n\r\n"
                                    "DERP requires connection upgrade\n")));
    s.shutdown(tcp::socket::shutdown_send);
    drain_until_eof(s);
  });
  auto client = make_client(options_for(server.url(), NodePrivate::generate()));
  ASSERT_TRUE(client);
  auto res = client->connect();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kHttp);
  EXPECT_NE(res.error().message.find("HTTP 426 from 127.0.0.1:"), std::string::npos);
  EXPECT_NE(res.error().message.find(": DERP requires connection upgrade"), std::string::npos)
      << res.error().message;
  client->close();
}

TEST(ClientReplay, GarbageInsteadOfHttpIsAnHttpError) {
  ScriptedServer server([](tcp::socket& s) {
    asio::streambuf buf;
    read_request_head(s, buf);
    asio::write(s, asio::buffer(std::string("SSH-2.0-OpenSSH_9.2\r\n\r\n")));
    drain_until_eof(s);
  });
  auto client = make_client(options_for(server.url(), NodePrivate::generate()));
  ASSERT_TRUE(client);
  auto res = client->connect();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kHttp) << res.error().message;
  EXPECT_NE(res.error().message.find("bad HTTP response from 127.0.0.1:"), std::string::npos)
      << res.error().message;
  client->close();
}

TEST(ClientReplay, SilentListenerIsATimeout) {
  ScriptedServer server([](tcp::socket& s) { drain_until_eof(s); });
  auto opts = options_for(server.url(), NodePrivate::generate());
  opts.connect_timeout = 300ms;
  auto client = make_client(opts);
  ASSERT_TRUE(client);
  auto res = client->connect();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kTimeout) << res.error().message;
  EXPECT_NE(res.error().message.find("timed out after 300ms"), std::string::npos)
      << res.error().message;
  client->close();
}

TEST(ClientReplay, ClosedPortIsAConnectError) {
  uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }  // closed again: nothing listens there now
  auto client = make_client(
      options_for("http://127.0.0.1:" + std::to_string(port) + "/derp", NodePrivate::generate()));
  ASSERT_TRUE(client);
  auto res = client->connect();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kConnect);
  EXPECT_EQ(res.error().message,
            "connect to 127.0.0.1:" + std::to_string(port) + ": connection refused");
}

TEST(ClientReplay, InvalidNameIsADnsError) {
  auto client =
      make_client(options_for("http://nosuch.invalid:3340/derp", NodePrivate::generate()));
  ASSERT_TRUE(client);
  auto res = client->connect();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ErrorKind::kDns) << res.error().message;
  EXPECT_EQ(res.error().message.rfind("resolve nosuch.invalid: ", 0), 0u) << res.error().message;
}

TEST(ClientReplay, CreatingAClientNeverConnects) {
  ScriptedServer server([](tcp::socket& s) { drain_until_eof(s); });
  auto client = make_client(options_for(server.url(), NodePrivate::generate()));
  ASSERT_TRUE(client);
  EXPECT_FALSE(client->connected_state().connected);
  EXPECT_EQ(client->generation(), 0u);
  auto ping = client->send_ping(PingData{1, 2, 3, 4, 5, 6, 7, 8});  // never connects
  ASSERT_FALSE(ping.ok());
  EXPECT_EQ(ping.error().kind, ErrorKind::kIo);
  client.reset();
  server.stop();
  EXPECT_FALSE(server.accepted());
}

TEST(ClientReplay, EveryCallAfterCloseIsClosed) {
  auto client = make_client(options_for("http://127.0.0.1:1/derp", NodePrivate::generate()));
  ASSERT_TRUE(client);
  client->close();
  client->close();  // idempotent
  for (auto r : {client->connect(), client->send(NodePrivate::generate().public_key(), {}),
                 client->send_ping({}), client->note_preferred(true)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::kClosed);
    EXPECT_EQ(r.error().message, "client closed");
  }
  auto m = client->recv(1s);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().kind, ErrorKind::kClosed);
  auto p = client->ping(1s);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().kind, ErrorKind::kClosed);
  EXPECT_TRUE(client->connected_state().closed);
}

TEST(ClientCreate, RefusesBadTlsOptionsAndBadUrlsAndZeroKeys) {
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = "https://derp.example.com/derp";
  o.cert_name = "sha256-raw:not-hex";
  auto r = Client::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUsage);
  EXPECT_NE(r.error().message.find("sha256-raw"), std::string::npos);
  o.cert_name.clear();

  o.server_url = "ftp://x";
  r = Client::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUsage);

  o.server_url = "http://127.0.0.1:3340/derp";
  o.private_key = NodePrivate{};
  r = Client::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUsage);
}

}  // namespace
}  // namespace derp
