// The relay's STUN server (PROTOCOL.md §9.1–9.2) over real UDP on loopback: the exact answer,
// derper's filter (garbage ignored, counted, server still alive), and derp-serve's flags.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <optional>
#include <regex>
#include <vector>

#include "derp/server.h"
#include "derp/stun.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

// How long "no reply" is waited for: long enough for a loopback round trip, short enough for
// a test. A reply that would have come later is still caught by the following good request
// (its answer must carry that request's transaction ID).
constexpr auto kSilence = 300ms;

// A UDP socket on a loopback address, for one test.
class UdpPeer {
 public:
  explicit UdpPeer(bool v6) : v6_(v6) {
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
    if (fd_ < 0) return;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) close_fd();
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) close_fd();
    }
  }
  ~UdpPeer() { close_fd(); }

  bool ok() const { return fd_ >= 0; }
  uint16_t local_port() const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return v6_ ? ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port)
               : ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  }
  bool send(uint16_t port, std::span<const uint8_t> bytes) {
    ssize_t n;
    if (v6_) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      a.sin6_port = htons(port);
      n = ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(port);
      n = ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    return n == static_cast<ssize_t>(bytes.size());
  }
  // One datagram, or nullopt when none arrives before the deadline.
  std::optional<std::vector<uint8_t>> receive(std::chrono::milliseconds t = kWait) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(t.count())) != 1) return std::nullopt;
    std::vector<uint8_t> buf(2048);
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

 private:
  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool v6_;
  int fd_ = -1;
};

std::array<uint8_t, stun::kRequestLen> request(const stun::TxId& tx) {
  std::array<uint8_t, stun::kRequestLen> req{};
  stun::encode_binding_request(req, tx);
  return req;
}

std::unique_ptr<Server> start_stun_relay() {
  ServerOptions o;
  o.stun = true;
  o.stun_port = 0;
  return start_relay(std::move(o));
}

TEST(RelayStun, AnswersIpv4RequestWithTheExact32ByteResponse) {
  auto relay = start_stun_relay();
  ASSERT_TRUE(relay);
  ASSERT_NE(relay->stun_port(), 0);
  UdpPeer peer(false);
  ASSERT_TRUE(peer.ok());
  const stun::TxId tx = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  ASSERT_TRUE(peer.send(relay->stun_port(), request(tx)));
  auto res = peer.receive();
  ASSERT_TRUE(res.has_value());

  // Built by hand from PROTOCOL.md §9.2, not with the encoder under test.
  const uint16_t xport = peer.local_port() ^ 0x2112;
  std::vector<uint8_t> want = {0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42};
  want.insert(want.end(), tx.begin(), tx.end());
  const std::vector<uint8_t> attr = {0x00,
                                     0x20,
                                     0x00,
                                     0x08,
                                     0x00,
                                     0x01,
                                     static_cast<uint8_t>(xport >> 8),
                                     static_cast<uint8_t>(xport & 0xff),
                                     127 ^ 0x21,
                                     0 ^ 0x12,
                                     0 ^ 0xa4,
                                     1 ^ 0x42};
  want.insert(want.end(), attr.begin(), attr.end());
  EXPECT_EQ(*res, want);

  auto c = relay->counters();
  EXPECT_EQ(c["stun_addrfamily_ipv4"], 1);
  EXPECT_EQ(c["stun_addrfamily_ipv6"], 0);
  EXPECT_EQ(c["stun_requests_not_stun"], 0);
}

TEST(RelayStun, AnswersIpv6RequestWithFamily02) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "[::1]:0";
  o.threads = 1;
  o.stun = true;
  o.stun_port = 0;
  auto relay = Server::start(std::move(o));
  if (!relay && relay.error().kind == ErrorKind::kConnect) {
    GTEST_SKIP() << "::1 unavailable: " << relay.error().message;
  }
  ASSERT_TRUE(relay.ok()) << relay.error().message;
  UdpPeer peer(true);
  if (!peer.ok()) GTEST_SKIP() << "cannot bind a UDP socket on ::1";
  const stun::TxId tx = stun::new_tx_id();
  ASSERT_TRUE(peer.send((*relay)->stun_port(), request(tx)));
  auto res = peer.receive();
  ASSERT_TRUE(res.has_value());
  ASSERT_EQ(res->size(), stun::kResponseV6Len);
  EXPECT_EQ((*res)[0], 0x01);
  EXPECT_EQ((*res)[1], 0x01);
  EXPECT_EQ((*res)[20], 0x00);  // XOR-MAPPED-ADDRESS
  EXPECT_EQ((*res)[21], 0x20);
  EXPECT_EQ((*res)[25], 0x02);  // family IPv6
  auto parsed = stun::parse_binding_response(*res);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->tx_id, tx);
  EXPECT_EQ(parsed->mapped.to_string(), "[::1]:" + std::to_string(peer.local_port()));
  EXPECT_EQ((*relay)->counters()["stun_addrfamily_ipv6"], 1);
}

TEST(RelayStun, IgnoresGarbageBadFingerprintAndResponsesThenStillAnswers) {
  auto relay = start_stun_relay();
  ASSERT_TRUE(relay);
  UdpPeer peer(false);
  ASSERT_TRUE(peer.ok());
  const uint16_t port = relay->stun_port();

  const std::vector<uint8_t> garbage = {'h', 'e', 'l', 'l', 'o'};
  auto bad_fp = request(stun::new_tx_id());
  bad_fp[39] ^= 0x01;
  std::array<uint8_t, stun::kMaxResponseLen> response{};
  const size_t response_len = stun::encode_binding_response(
      response, stun::new_tx_id(), stun::Endpoint::v4({127, 0, 0, 1}, 1234));

  ASSERT_TRUE(peer.send(port, garbage));
  EXPECT_FALSE(peer.receive(kSilence).has_value()) << "answered garbage";
  ASSERT_TRUE(peer.send(port, bad_fp));
  EXPECT_FALSE(peer.receive(kSilence).has_value()) << "answered a bad fingerprint";
  ASSERT_TRUE(peer.send(port, std::span<const uint8_t>(response.data(), response_len)));
  EXPECT_FALSE(peer.receive(kSilence).has_value()) << "answered a response";

  // Still alive: two good requests, each answered with its own transaction ID. The second
  // reply proves the first request's handler finished (one socket, handled in order).
  for (int i = 0; i < 2; ++i) {
    const stun::TxId tx = stun::new_tx_id();
    ASSERT_TRUE(peer.send(port, request(tx)));
    auto res = peer.receive();
    ASSERT_TRUE(res.has_value()) << "request " << i << " not answered";
    auto parsed = stun::parse_binding_response(*res);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(parsed->tx_id, tx);
    EXPECT_EQ(parsed->mapped.to_string(), "127.0.0.1:" + std::to_string(peer.local_port()));
  }
  auto c = relay->counters();
  EXPECT_EQ(c["stun_requests_not_stun"], 3);
  EXPECT_EQ(c["stun_addrfamily_ipv4"], 2);
  EXPECT_GE(c["stun_requests_success"], 1);
  EXPECT_EQ(c["stun_requests_read_error"], 0);
  EXPECT_EQ(c["stun_requests_write_error"], 0);
}

TEST(RelayStun, IsOffByDefaultInTheLibrary) {
  auto relay = start_relay(ServerOptions{});
  ASSERT_TRUE(relay);
  EXPECT_EQ(relay->stun_port(), 0);
}

TEST(RelayStun, StunPortInUseFailsStartWithConnectError) {
  UdpPeer taken(false);
  ASSERT_TRUE(taken.ok());
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.threads = 1;
  o.stun = true;
  o.stun_port = taken.local_port();
  auto relay = Server::start(std::move(o));
  ASSERT_FALSE(relay.ok());
  EXPECT_EQ(relay.error().kind, ErrorKind::kConnect);
  EXPECT_EQ(relay.error().message, "stun listen on udp 127.0.0.1:" +
                                       std::to_string(taken.local_port()) + ": address in use");
}

TEST(DerpServeStun, StunPortZeroPrintsThePortAndAnswers) {
  char tmpl[] = "/tmp/derp-serve-stun-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto child = Child::spawn(
      {std::string(DERP_BIN_DIR) + "/derp-serve", "-a", "127.0.0.1:0", "--stun-port", "0"}, dir);
  ASSERT_TRUE(child);
  auto line = child->read_stdout_line();
  ASSERT_TRUE(line.has_value()) << child->stderr_text();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(*line, m, std::regex(".* stun 127\\.0\\.0\\.1:([0-9]+)"))) << *line;
  const int port = std::stoi(m[1].str());
  ASSERT_GT(port, 0);
  UdpPeer peer(false);
  ASSERT_TRUE(peer.ok());
  const stun::TxId tx = stun::new_tx_id();
  ASSERT_TRUE(peer.send(static_cast<uint16_t>(port), request(tx)));
  auto res = peer.receive();
  ASSERT_TRUE(res.has_value());
  auto parsed = stun::parse_binding_response(*res);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->tx_id, tx);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(), 0) << child->stderr_text();
  std::filesystem::remove_all(dir);
}

TEST(DerpServeStun, StunFalsePrintsNoStunAddress) {
  char tmpl[] = "/tmp/derp-serve-stun-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto child = Child::spawn(
      {std::string(DERP_BIN_DIR) + "/derp-serve", "-a", "127.0.0.1:0", "--stun=false"}, dir);
  ASSERT_TRUE(child);
  auto line = child->read_stdout_line();
  ASSERT_TRUE(line.has_value()) << child->stderr_text();
  EXPECT_EQ(line->find(" stun "), std::string::npos) << *line;
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(), 0) << child->stderr_text();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace derp::test
