// Hostile peers against one relay (issue 17, "Adversarial tests in the suite"): each case runs a
// hostile connection and asserts that a normal derp::Client pair, connected before the attack,
// keeps exchanging packets while it runs and after it ends. Cases already covered elsewhere
// with that assertion (garbage before/after the upgrade, frames before ClientInfo, ClientInfo
// sealed to the wrong key, oversize frames, never-reading receivers: relay_robustness_test.cc)
// are not repeated here.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "derp/client.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/server.h"
#include "derp/stun.h"
#include "support/process.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

// Two derp::Clients on one relay that must keep reaching each other.
class AdvPair {
 public:
  // url: http(s)://127.0.0.1:PORT/derp; cert_name: a sha256-raw pin for a TLS relay, or "".
  AdvPair(const std::string& url, const std::string& cert_name = "") {
    a_ = make(url, cert_name);
    b_ = make(url, cert_name);
  }
  bool ok() const { return a_ && b_; }
  Client& a() { return *a_; }
  Client& b() { return *b_; }

  // A → B and B → A, each one packet tagged `tag`, each within the deadline.
  ::testing::AssertionResult exchange(const std::string& tag) {
    if (!ok()) return ::testing::AssertionFailure() << "pair not connected";
    if (auto r = one_way(*a_, *b_, "a>b " + tag); !r) return r;
    return one_way(*b_, *a_, "b>a " + tag);
  }

 private:
  static std::unique_ptr<Client> make(const std::string& url, const std::string& cert_name) {
    ClientOptions o;
    o.private_key = NodePrivate::generate();
    o.server_url = url;
    o.cert_name = cert_name;
    o.connect_timeout = 5s;
    auto c = Client::create(std::move(o));
    if (!c.ok()) return nullptr;
    if (!(*c)->connect().ok()) return nullptr;
    return std::move(*c);
  }
  static ::testing::AssertionResult one_way(Client& from, Client& to, const std::string& text) {
    const std::vector<uint8_t> data(text.begin(), text.end());
    if (auto s = from.send(to.self_public_key(), data); !s.ok()) {
      return ::testing::AssertionFailure() << "send " << text << ": " << s.error().message;
    }
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < until) {
      auto m = to.recv(5s);
      if (!m.ok()) return ::testing::AssertionFailure() << text << ": " << m.error().message;
      if (auto* p = std::get_if<ReceivedPacket>(&*m); p && p->data == data) {
        return ::testing::AssertionSuccess();
      }
    }
    return ::testing::AssertionFailure() << text << " never arrived";
  }

  std::unique_ptr<Client> a_, b_;
};

// Non-blocking look at a hostile socket: true once the relay closed it (EOF or reset); bytes
// it sent meanwhile are appended to *got.
bool adv_peer_closed(int fd, std::string* got) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return true;
    got->append(buf, static_cast<size_t>(n));
  }
}

bool adv_send_all(int fd, std::string_view bytes) {
  return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

class RelayAdversarial : public ::testing::Test {
 protected:
  void start(ServerOptions o = {}) {
    o.log = logs_.sink();
    server_ = start_relay(std::move(o));
    ASSERT_TRUE(server_);
    pair_ = std::make_unique<AdvPair>(url());
    ASSERT_TRUE(pair_->ok());
    ASSERT_TRUE(pair_->exchange("before"));
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + "/derp";
  }
  int64_t counter(const std::string& name) const { return server_->counters()[name]; }

  // Dribbles `body` one byte at a time, one pair exchange between bytes (so the bytes are
  // spread over real time and the pair is checked all along), then keeps dribbling `filler`
  // until the relay closes the connection. Returns how long that took (or 30 s: never).
  std::chrono::milliseconds dribble_until_closed(RawConn& c, std::string_view body, char filler,
                                                 std::string* got) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto until = t0 + 30s;
    size_t i = 0, rounds = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (adv_peer_closed(c.fd(), got)) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t0);
      }
      const char byte = i < body.size() ? body[i] : filler;
      ++i;
      (void)adv_send_all(c.fd(), std::string_view(&byte, 1));  // fails once closed: fine
      if (++rounds % 4 == 0) {
        auto r = pair_->exchange("dribble " + std::to_string(rounds));
        EXPECT_TRUE(r);
        if (!r) break;
      }
    }
    return 30s;
  }

  LogWatch logs_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<AdvPair> pair_;
};

// Slowloris: a request head sent a byte at a time, and one whose header line never ends, are
// cut at the handshake timeout (the whole head's deadline, not per byte).
TEST_F(RelayAdversarial, SlowlorisHeadsAreClosedAtTheHandshakeTimeout) {
  ServerOptions o;
  o.handshake_timeout = 300ms;
  // Far more than a byte-at-a-time sender can send in 300 ms on any machine: the head limit
  // (8 KiB by default, reached in ~250 ms on a fast machine) must not end it first.
  o.max_header_bytes = size_t{1} << 20;
  start(o);
  for (const std::string_view head :
       {std::string_view("GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nX-Slow: "),
        std::string_view("GET /derp HTTP/1.1\r\nHost: x\r\nX-Never-Ends: ")}) {
    RawConn slow(server_->port());
    ASSERT_TRUE(slow.ok());
    std::string got;
    const auto took = dribble_until_closed(slow, head, 'a', &got);
    EXPECT_GE(took, 250ms) << head;  // the timeout, not something earlier
    EXPECT_LT(took, 5s) << head;
    EXPECT_EQ(got.find("101"), std::string::npos) << got;
  }
  EXPECT_TRUE(logs_.wait_for("handshake timeout after 300 ms")) << logs_.all();
  EXPECT_TRUE(pair_->exchange("after"));
}

// A request line and a header block over max_header_bytes get a 400 and the close, at once.
TEST_F(RelayAdversarial, OversizeRequestLineAndHeadersGet400) {
  ServerOptions o;
  o.max_header_bytes = 4096;
  start(o);
  std::string long_line = "GET /" + std::string(5000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string many_headers = "GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\n";
  for (int i = 0; i < 100; ++i) {
    many_headers += "X-Pad-" + std::to_string(i) + ": " + std::string(60, 'p') + "\r\n";
  }
  many_headers += "\r\n";
  for (const std::string* req : {&long_line, &many_headers}) {
    RawConn raw(server_->port());
    ASSERT_TRUE(raw.write(*req));
    auto res = raw.read_http_response();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << *res;
    EXPECT_NE(res->find("header"), std::string::npos) << *res;  // names the limit it broke
    EXPECT_TRUE(raw.wait_closed());
    EXPECT_TRUE(pair_->exchange("after " + std::to_string(req->size())));
  }
  // Just under the limit is still a request (a 404 for an unknown path, not a 400).
  RawConn fits(server_->port());
  ASSERT_TRUE(fits.write("GET /" + std::string(3900, 'b') + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto res = fits.read_http_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->find("400"), std::string::npos) << res->substr(0, 80);
}

// A frame header announcing more than ever comes: the relay neither delivers a partial packet
// nor stops serving others, whether the liar then closes, stalls, or does it in the handshake.
TEST_F(RelayAdversarial, TruncatedFramesNeverDeliverAndDoNotBlockOthers) {
  ServerOptions o;
  o.handshake_timeout = 300ms;
  start(o);
  const NodePublic victim = pair_->b().self_public_key();
  std::vector<uint8_t> partial = frame_bytes(FrameType::kSendPacket, [&] {
    std::vector<uint8_t> p(victim.bytes.begin(), victim.bytes.end());
    p.resize(32 + 1000, 0x77);
    return p;
  }());
  partial.resize(kFrameHeaderLen + 40);  // header says 1032, 40 arrive

  // Closes mid-frame.
  {
    auto liar = DerpConn::connect(server_->port(), NodePrivate::generate(), server_->public_key());
    ASSERT_TRUE(liar);
    ASSERT_TRUE(liar->raw().write(partial));
    liar->raw().close();
  }
  EXPECT_TRUE(pair_->exchange("after close mid-frame"));
  // Stalls mid-frame, for as long as the pair keeps exchanging.
  auto staller = DerpConn::connect(server_->port(), NodePrivate::generate(), server_->public_key());
  ASSERT_TRUE(staller);
  ASSERT_TRUE(staller->raw().write(partial));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(pair_->exchange("stall " + std::to_string(i)));
  // A ClientInfo header announcing 200 bytes with 10 sent: cut at the handshake timeout.
  RawConn hs(server_->port());
  ASSERT_TRUE(hs.write("GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\n\r\n"));
  ASSERT_TRUE(hs.read_http_head().has_value());
  ASSERT_TRUE(hs.read_exact(45).has_value());  // ServerKey
  std::vector<uint8_t> ci{static_cast<uint8_t>(FrameType::kClientInfo), 0, 0, 0, 200};
  ci.resize(ci.size() + 10, 0xab);
  ASSERT_TRUE(hs.write(ci));
  EXPECT_TRUE(hs.wait_closed(5s));
  EXPECT_TRUE(pair_->exchange("after truncated ClientInfo"));
  // None of the liars' bytes reached the victim as a packet (exchange() skips only packets
  // with other contents; recv anything left: there must be nothing).
  auto left = pair_->b().recv(50ms);
  EXPECT_FALSE(left.ok() && std::holds_alternative<ReceivedPacket>(*left));
  EXPECT_TRUE(eventually([&] { return counter("packets_received") == counter("packets_sent"); }))
      << counter("packets_received") << " received, " << counter("packets_sent") << " sent";
}

// ForwardPacket, WatchConns and ClosePeer are for mesh peers: from a client without the mesh
// key each closes that client's connection (derper: "insufficient permissions"), is counted,
// and does nothing: the ClosePeer victim stays connected and the forged packet never arrives.
TEST_F(RelayAdversarial, MeshOnlyFramesWithoutTheMeshKeyAreRefused) {
  ServerOptions o;
  o.mesh_key.bytes.fill(0x5e);  // the relay has one; the hostile client does not know it
  start(o);
  const NodePublic a = pair_->a().self_public_key(), b = pair_->b().self_public_key();
  std::vector<uint8_t> forward(a.bytes.begin(), a.bytes.end());
  forward.insert(forward.end(), b.bytes.begin(), b.bytes.end());
  forward.insert(forward.end(), {'f', 'o', 'r', 'g', 'e', 'd'});
  const std::vector<uint8_t> close_peer(b.bytes.begin(), b.bytes.end());
  const struct {
    FrameType type;
    std::vector<uint8_t> payload;
  } cases[] = {{FrameType::kForwardPacket, forward},
               {FrameType::kWatchConns, {}},
               {FrameType::kClosePeer, close_peer}};
  int64_t refused = counter("mesh_frames_refused");
  for (const auto& c : cases) {
    auto hostile =
        DerpConn::connect(server_->port(), NodePrivate::generate(), server_->public_key());
    ASSERT_TRUE(hostile);
    ASSERT_TRUE(hostile->send_frame(c.type, c.payload));
    EXPECT_TRUE(hostile->raw().wait_closed()) << frame_type_name(static_cast<uint8_t>(c.type));
    EXPECT_EQ(counter("mesh_frames_refused"), ++refused);
    EXPECT_TRUE(
        pair_->exchange(std::string("after ") + frame_type_name(static_cast<uint8_t>(c.type))));
  }
  EXPECT_TRUE(logs_.wait_for("ClosePeer from a client without the mesh key")) << logs_.all();
  auto left = pair_->b().recv(50ms);
  EXPECT_FALSE(left.ok() && std::holds_alternative<ReceivedPacket>(*left));
}

// A real WebSocket upgrade, then raw frame headers announcing 2^63 and 2^63-1 bytes: the
// connection is closed, nothing is allocated for it, others are served.
TEST_F(RelayAdversarial, WebSocketFrameOf2To63BytesIsClosed) {
  ServerOptions o;
  o.handshake_timeout = 500ms;  // bounds the wait for our close frame, which never comes
  start(o);
  for (const uint8_t top : {uint8_t{0x80}, uint8_t{0x7f}}) {
    RawConn ws(server_->port());
    ASSERT_TRUE(ws.write(
        "GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: derp\r\n\r\n"));
    auto head = ws.read_http_head();
    ASSERT_TRUE(head.has_value());
    ASSERT_EQ(head->rfind("HTTP/1.1 101", 0), 0u) << *head;
    // FIN + binary, MASK + 127 (64-bit length), the length, the mask, a few payload bytes.
    std::vector<uint8_t> frame{0x82, 0xff, top, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (top == 0x80) std::fill(frame.begin() + 3, frame.end(), uint8_t{0});
    frame.insert(frame.end(), {1, 2, 3, 4});
    frame.insert(frame.end(), 64, 0x55);
    ASSERT_TRUE(ws.write(frame));
    EXPECT_TRUE(ws.wait_closed());
    EXPECT_TRUE(pair_->exchange("after ws length " + std::to_string(top)));
  }
}

// STUN garbage (random lengths and bytes, truncated requests, responses) on the STUN port: the
// relay keeps answering real requests and relaying.
TEST_F(RelayAdversarial, StunGarbageLeavesStunAndRelayServing) {
  ServerOptions o;
  o.stun = true;
  o.stun_port = 0;
  start(o);
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(server_->stun_port());
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::array<uint8_t, stun::kRequestLen> good{};
  const stun::TxId tx = stun::new_tx_id();
  stun::encode_binding_request(good, tx);
  uint32_t seed = 12345;
  auto next = [&seed] { return seed = seed * 1103515245u + 12345u; };
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> junk;
    switch (i % 3) {
      case 0:  // random bytes, random length up to 1500
        junk.resize(next() % 1500);
        for (auto& b : junk) b = static_cast<uint8_t>(next() >> 16);
        break;
      case 1:  // a real request cut short
        junk.assign(good.begin(), good.begin() + (next() % good.size()));
        break;
      default:  // a real request with one byte flipped (bad fingerprint or header)
        junk.assign(good.begin(), good.end());
        junk[next() % junk.size()] ^= 0x40;
    }
    ::sendto(fd, junk.data(), junk.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    if (i % 500 == 0) {
      ASSERT_TRUE(pair_->exchange("stun " + std::to_string(i)));
    }
  }
  // A real request is answered; drain whatever answers flipped requests earned first.
  ASSERT_EQ(::sendto(fd, good.data(), good.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            static_cast<ssize_t>(good.size()));
  bool answered = false;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!answered && std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) != 1) {
      // The flood may still fill the relay's receive buffer, which drops datagrams: ask again.
      ::sendto(fd, good.data(), good.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
      continue;
    }
    std::array<uint8_t, 1500> buf{};
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) continue;
    auto r = stun::parse_binding_response({buf.data(), static_cast<size_t>(n)});
    answered = r.ok() && r->tx_id == tx;
  }
  ::close(fd);
  EXPECT_TRUE(answered);
  EXPECT_TRUE(pair_->exchange("after stun"));
}

// Entries of /proc/self/fd (the relay runs in this process).
int adv_open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// VmRSS of this process in KiB.
long adv_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// 2000 connect/abort cycles of four kinds (bare TCP, half a request head, an upgrade left in
// the handshake, a full handshake) each ended by a reset: afterwards the relay's descriptors
// are back to the baseline exactly and its RSS within a bound, and the pair was served all
// along. RSS tolerance: the allocator keeps freed arenas and the relay's chunk pool keeps
// buffers it grew into, so 16 MiB over the warmed-up baseline is allowed (a leak of even 8 KiB
// per cycle would be 16 MiB); fds must return to the baseline exactly.
TEST_F(RelayAdversarial, ConnectAbortChurnLeavesFdsAndRssAtBaseline) {
  ServerOptions o;
  o.handshake_timeout = 2s;
  start(o);
  const NodePublic server_key = server_->public_key();
  auto cycle = [&](int i) {
    RawConn c(server_->port());
    if (!c.ok()) return false;
    switch (i % 4) {
      case 1:
        (void)c.write("GET /derp HTTP/1.1\r\nHost: x\r\n");
        break;
      case 2:
        (void)c.write("GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\n\r\n");
        (void)c.read_http_head(2s);
        break;
      case 3: {
        auto d = DerpConn::connect(server_->port(), NodePrivate::generate(), server_key);
        if (!d) return false;
        linger l{1, 0};
        ::setsockopt(d->raw().fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        return true;
      }
      default:
        break;
    }
    linger l{1, 0};  // close with a reset: the abort
    ::setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    return true;
  };
  auto settle = [&](int want_fds) {
    return eventually([&] { return adv_open_fds() <= want_fds; }, 10s);
  };
  const int base_fds = adv_open_fds();                  // the relay and the pair, settled
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(cycle(i));  // warm up pools and the allocator
  ASSERT_TRUE(eventually([&] { return counter("gauge_current_connections") == 2; }, 10s));
  ASSERT_TRUE(settle(base_fds)) << adv_open_fds() << " fds, baseline " << base_fds;
  const long base_rss = adv_rss_kib();
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(cycle(i)) << "cycle " << i;
    if (i % 250 == 0) {
      ASSERT_TRUE(pair_->exchange("churn " + std::to_string(i)));
    }
  }
  EXPECT_TRUE(eventually([&] { return counter("gauge_current_connections") == 2; }, 10s))
      << counter("gauge_current_connections");
  EXPECT_TRUE(settle(base_fds)) << adv_open_fds() << " fds, baseline " << base_fds;
  const long rss = adv_rss_kib();
  EXPECT_LT(rss - base_rss, 16 * 1024) << "RSS " << base_rss << " KiB -> " << rss << " KiB";
  EXPECT_TRUE(pair_->exchange("after churn"));
}

// TLS listener: plain-text HTTP, random garbage, and a ClientHello record cut short (then a
// stall until the handshake timeout) each end only their own connection.
TEST(RelayAdversarialTls, GarbageAndATruncatedClientHelloEndOnlyTheirConnection) {
  char tmpl[] = "/tmp/derp-adv-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  LogWatch logs;
  {
    ServerOptions o;  // TLS with a generated self-signed certificate for 127.0.0.1
    o.cert_mode = "manual";
    o.cert_dir = dir;
    o.hostname = "127.0.0.1";
    o.handshake_timeout = 300ms;
    o.log = logs.sink();
    auto relay = start_relay(std::move(o));
    ASSERT_TRUE(relay);
    auto& server = *relay;
    AdvPair pair("https://127.0.0.1:" + std::to_string(server.port()) + "/derp", server.cert_pin());
    ASSERT_TRUE(pair.ok());
    ASSERT_TRUE(pair.exchange("before"));

    std::string junk(3000, '\0');
    uint32_t seed = 99;
    for (auto& c : junk) c = static_cast<char>((seed = seed * 1103515245u + 12345u) >> 16);
    for (const std::string& bytes :
         {std::string("GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\n\r\n"), junk}) {
      RawConn raw(server.port());
      (void)raw.write(bytes);  // the relay may reset before all of it is read
      EXPECT_TRUE(raw.wait_closed());
      EXPECT_TRUE(pair.exchange("after garbage " + std::to_string(bytes.size())));
    }
    // A handshake record announcing a 512-byte ClientHello, of which 6 bytes come.
    RawConn cut(server.port());
    const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00,  // record: handshake, 512 bytes
                             0x01, 0x00, 0x01, 0xfc,        // ClientHello, 508 bytes
                             0x03, 0x03};                   // legacy_version, then nothing
    ASSERT_TRUE(cut.write(std::span<const uint8_t>(hello)));
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(pair.exchange("cut " + std::to_string(i)));
    EXPECT_TRUE(cut.wait_closed(5s));
    EXPECT_TRUE(pair.exchange("after cut ClientHello"));
  }
  std::filesystem::remove_all(dir);
}

// SIGTERM to derp-serve while a pair is streaming packets: both get ServerRestarting, the
// stream ends, the process exits 0.
TEST(RelayAdversarialServe, SigtermMidTrafficSendsRestartingAndExitsZero) {
  char tmpl[] = "/tmp/derp-adv-serve-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  Process proc(tool_path("derp-serve"), {"-c", dir + "/derper.key", "-a=127.0.0.1:0", "-stun=false",
                                         "-restart-reconnect-in", "250ms"});
  auto line = proc.wait_for_line("listening on", 20s, Process::Stream::kStdout);
  ASSERT_TRUE(line) << proc.err();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*line, m, std::regex("(http://127\\.0\\.0\\.1:[0-9]+/derp)")));
  AdvPair pair(m[1].str());
  ASSERT_TRUE(pair.ok());
  ASSERT_TRUE(pair.exchange("before"));

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread sender([&] {
    const std::vector<uint8_t> data(200, 0x33);
    while (!stop.load() && pair.a().send(pair.b().self_public_key(), data).ok()) ++sent;
  });
  // B reads the stream until ServerRestarting; the signal goes once B has seen 100 packets.
  int received = 0;
  bool restarting_b = false, signalled = false;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!restarting_b && std::chrono::steady_clock::now() < until) {
    auto msg = pair.b().recv(5s);
    if (!msg.ok()) break;
    if (std::holds_alternative<ReceivedPacket>(*msg) && ++received == 100 && !signalled) {
      proc.signal(SIGTERM);
      signalled = true;
    }
    if (auto* r = std::get_if<ServerRestartingMessage>(&*msg)) {
      restarting_b = true;
      EXPECT_EQ(r->reconnect_in, 250ms);
    }
  }
  // A (the sender) gets it too, among whatever else it was sent.
  bool restarting_a = false;
  for (int i = 0; i < 1000 && !restarting_a; ++i) {
    auto msg = pair.a().recv(5s);
    if (!msg.ok()) break;
    restarting_a = std::holds_alternative<ServerRestartingMessage>(*msg);
  }
  stop = true;
  sender.join();
  EXPECT_TRUE(signalled) << received << " packets before the deadline";
  EXPECT_TRUE(restarting_b);
  EXPECT_TRUE(restarting_a);
  const auto res = proc.wait(10s);
  EXPECT_FALSE(res.timed_out);
  EXPECT_EQ(res.exit_code, 0) << proc.err();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace derp::test
