// The TCP options derp-serve sets on accepted sockets (derper's -tcp-keepalive-time and
// -tcp-user-timeout), read back with getsockopt from the relay's own accepted socket: the test
// runs the relay in-process, so that socket is one of this process's file descriptors.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "derp/server.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

// Opens a connection and completes one HTTP exchange on it, so the relay has accepted it (and
// applied its socket options) before the test looks; returns the connection.
std::unique_ptr<RawConn> sockopt_connect(const Server& relay) {
  auto raw = std::make_unique<RawConn>(relay.port());
  EXPECT_TRUE(raw->ok());
  EXPECT_TRUE(raw->write("GET /generate_204 HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto res = raw->read_http_response();
  EXPECT_TRUE(res.has_value());
  return raw;
}

TEST(RelaySocketOptions, KeepaliveAndUserTimeoutAreSetOnAcceptedSockets) {
  ServerOptions o;
  o.tcp_keepalive = 37s;
  o.tcp_user_timeout = 4321ms;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto raw = sockopt_connect(*relay);
  const auto fd = find_socket_fd(relay->port(), raw->local_port());
  ASSERT_TRUE(fd.has_value()) << "the relay's socket for the test's connection";
  EXPECT_EQ(socket_option_int(*fd, SOL_SOCKET, SO_KEEPALIVE), 1);
  // As Go's net package does for derper: the probe interval equals the idle time.
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_KEEPIDLE), 37);
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_KEEPINTVL), 37);
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 4321);
}

TEST(RelaySocketOptions, DerperDefaultsAreTenMinutesAndFifteenSeconds) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto raw = sockopt_connect(*relay);
  const auto fd = find_socket_fd(relay->port(), raw->local_port());
  ASSERT_TRUE(fd.has_value());
  EXPECT_EQ(socket_option_int(*fd, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_KEEPIDLE), 600);
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 15000);
}

TEST(RelaySocketOptions, ZeroLeavesKeepaliveAndUserTimeoutOff) {
  ServerOptions o;
  o.tcp_keepalive = 0ms;
  o.tcp_user_timeout = 0ms;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto raw = sockopt_connect(*relay);
  const auto fd = find_socket_fd(relay->port(), raw->local_port());
  ASSERT_TRUE(fd.has_value());
  EXPECT_EQ(socket_option_int(*fd, SOL_SOCKET, SO_KEEPALIVE), 0);
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
}

TEST(RelaySocketOptions, ReceiveBufferIsSetWhenAsked) {
  ServerOptions o;
  o.tcp_receive_buffer = 96 * 1024;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto raw = sockopt_connect(*relay);
  const auto fd = find_socket_fd(relay->port(), raw->local_port());
  ASSERT_TRUE(fd.has_value());
  // Linux reports twice the value set (its bookkeeping share, socket(7)).
  EXPECT_EQ(socket_option_int(*fd, SOL_SOCKET, SO_RCVBUF), 2 * 96 * 1024);
}

}  // namespace
}  // namespace derp::test
