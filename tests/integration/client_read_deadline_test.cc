// The client's read deadline (Go's 120 s, PROTOCOL.md §2.4) and TCP keepalive: a link that goes
// silent without closing (a black hole, made by support/cutter.h) is declared dead and
// reconnected, while a quiet link the relay keeps alive stays up; WatchLoop, which treats a
// connected link as healthy, recovers the same way.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "derp/client.h"
#include "derp/server.h"
#include "derp/watch.h"
#include "support/cutter.h"
#include "support/process.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
using DeadlineClock = std::chrono::steady_clock;

// Keep-alives every 200-400 ms; a deadline well above that, and far below kWait.
constexpr auto kDeadlineKeepAlive = 200ms;
constexpr auto kDeadlineRead = 1500ms;

ServerOptions deadline_relay_options() {
  ServerOptions o;
  o.keep_alive = kDeadlineKeepAlive;
  o.mesh_key = *MeshKey::parse(std::string(64, 'e'));
  return o;
}

std::unique_ptr<Client> deadline_client(const std::string& url, bool mesh = false) {
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = url;
  o.read_timeout = kDeadlineRead;
  if (mesh) o.mesh_key = *MeshKey::parse(std::string(64, 'e'));
  auto c = Client::create(std::move(o));
  EXPECT_TRUE(c.ok());
  return c ? std::move(*c) : nullptr;
}

bool is_read_deadline(const Error& e) {
  return e.kind == ErrorKind::kTimeout && e.message.find("read deadline") != std::string::npos;
}

TEST(ClientReadDeadline, KeepAlivesHoldAQuietLinkUpPastTheDeadline) {
  auto relay = start_relay(deadline_relay_options());
  ASSERT_TRUE(relay);
  auto client = deadline_client("http://127.0.0.1:" + std::to_string(relay->port()) + "/derp");
  ASSERT_TRUE(client && client->connect().ok());
  // Ten keep-alives at least 200 ms apart span more than the 1.5 s deadline.
  int keep_alives = 0;
  while (keep_alives < 10) {
    auto m = client->recv_detail(kWait);
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(m->generation, 1u);
    if (std::holds_alternative<KeepAliveMessage>(m->message)) ++keep_alives;
  }
  EXPECT_EQ(client->generation(), 1u);
}

TEST(ClientReadDeadline, BlackHoledLinkIsDeclaredDeadAndTheClientReconnects) {
  auto relay = start_relay(deadline_relay_options());
  ASSERT_TRUE(relay);
  auto cutter = Cutter::start(relay->port());
  ASSERT_TRUE(cutter);
  auto client = deadline_client(cutter->url());
  ASSERT_TRUE(client && client->connect().ok());
  ASSERT_EQ(cutter->black_hole(), 1u);

  // recv() times out on its own (the link looks up) until the deadline ends the connection.
  std::optional<Error> dead;
  const auto until = DeadlineClock::now() + kWait;
  while (!dead && DeadlineClock::now() < until) {
    auto m = client->recv_detail(250ms);
    if (!m && is_read_deadline(m.error())) dead = m.error();
  }
  ASSERT_TRUE(dead) << "the black-holed link was never declared dead";
  EXPECT_NE(dead->message.find("1.5s"), std::string::npos) << dead->message;
  EXPECT_FALSE(client->connected_state().connected);

  // The next call reconnects, over a fresh path through the cutter.
  auto info = client->recv_detail(kWait);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_TRUE(std::holds_alternative<ServerInfoMessage>(info->message));
  EXPECT_EQ(info->generation, 2u);
  EXPECT_EQ(cutter->accepted(), 2u);
  EXPECT_TRUE(client->ping(kWait).ok());
}

TEST(ClientReadDeadline, WatchLoopReconnectsAfterABlackHole) {
  auto relay = start_relay(deadline_relay_options());
  ASSERT_TRUE(relay);
  const std::string direct = "http://127.0.0.1:" + std::to_string(relay->port()) + "/derp";
  auto peer = deadline_client(direct);
  ASSERT_TRUE(peer && peer->connect().ok());
  auto cutter = Cutter::start(relay->port());
  ASSERT_TRUE(cutter);
  auto watcher = deadline_client(cutter->url(), /*mesh=*/true);
  ASSERT_TRUE(watcher);

  std::mutex mu;
  std::condition_variable cv;
  int peer_adds = 0, peer_gones = 0;
  std::vector<uint64_t> synced;
  std::vector<Error> drops;
  WatchCallbacks cb;
  cb.add = [&](const WatchPeer& p) {
    std::lock_guard lk(mu);
    if (p.key == peer->self_public_key()) ++peer_adds;
  };
  cb.gone = [&](const WatchGone& g) {
    std::lock_guard lk(mu);
    if (g.key == peer->self_public_key()) ++peer_gones;
  };
  cb.synced = [&](uint64_t gen, size_t) {
    std::lock_guard lk(mu);
    synced.push_back(gen);
    cv.notify_all();
  };
  cb.disconnected = [&](const Error& e, std::chrono::milliseconds) {
    std::lock_guard lk(mu);
    drops.push_back(e);
    cv.notify_all();
  };
  WatchOptions wo;
  wo.stale_after = 0ms;  // keys go only when a new list lacks them: nothing here depends on time
  auto loop = WatchLoop::start(*watcher, cb, wo);
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, kWait, [&] { return !synced.empty(); }));
    EXPECT_EQ(peer_adds, 1);
  }
  ASSERT_EQ(cutter->black_hole(), 1u);
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, kWait, [&] { return !drops.empty(); }))
        << "the watch loop never noticed the black hole";
    EXPECT_TRUE(is_read_deadline(drops.front())) << drops.front().message;
    ASSERT_TRUE(cv.wait_for(lk, kWait, [&] { return synced.size() >= 2; }));
    EXPECT_EQ(synced.back(), 2u);
    EXPECT_EQ(peer_adds, 1);  // the peer was in the new list too: no gone, no second add
    EXPECT_EQ(peer_gones, 0);
  }
  EXPECT_EQ(cutter->accepted(), 2u);
  loop->stop();
}

// The tool flag end to end: derp-watch --read-timeout notices the black hole, says why, and
// resyncs over a fresh path.
TEST(ClientReadDeadline, DerpWatchReadTimeoutFlagReconnectsAfterABlackHole) {
  auto relay = start_relay(deadline_relay_options());
  ASSERT_TRUE(relay);
  auto cutter = Cutter::start(relay->port());
  ASSERT_TRUE(cutter);
  Process watch(tool_path("derp-watch"),
                {cutter->url(), "--mesh-key", std::string(64, 'e'), "--read-timeout", "1s"});
  ASSERT_TRUE(watch.wait_for_line("peer(s)", kWait, Process::Stream::kStdout)) << watch.err();
  ASSERT_TRUE(cutter->wait_accepted(1, kWait));
  ASSERT_EQ(cutter->black_hole(), 1u);
  EXPECT_TRUE(watch.wait_for_line("read deadline", kWait, Process::Stream::kStderr))
      << watch.err();
  EXPECT_TRUE(watch.wait_for_line("resynced", kWait, Process::Stream::kStdout)) << watch.err();
  EXPECT_EQ(cutter->accepted(), 2u);
  watch.signal(SIGTERM);
  EXPECT_EQ(watch.wait(kWait).exit_code, 0) << watch.err();
}

TEST(ClientReadDeadline, DialedSocketsHaveTcpKeepalive) {
  auto relay = start_relay(ServerOptions{});
  ASSERT_TRUE(relay);
  const std::string url = "http://127.0.0.1:" + std::to_string(relay->port()) + "/derp";
  auto local_port = [](const Client& c) {
    auto addr = c.local_addr();
    EXPECT_TRUE(addr.ok());
    return addr ? static_cast<uint16_t>(std::stoi(addr->substr(addr->rfind(':') + 1))) : 0;
  };
  auto on = deadline_client(url);
  ASSERT_TRUE(on && on->connect().ok());
  auto fd = find_socket_fd(local_port(*on), relay->port());
  ASSERT_TRUE(fd.has_value());
  EXPECT_EQ(socket_option_int(*fd, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_KEEPIDLE), 15);  // Go's net.Dialer default
  EXPECT_EQ(socket_option_int(*fd, IPPROTO_TCP, TCP_KEEPINTVL), 15);

  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = url;
  o.tcp_keepalive = 0ms;
  auto off = Client::create(std::move(o));
  ASSERT_TRUE(off.ok());
  ASSERT_TRUE((*off)->connect().ok());
  fd = find_socket_fd(local_port(**off), relay->port());
  ASSERT_TRUE(fd.has_value());
  EXPECT_EQ(socket_option_int(*fd, SOL_SOCKET, SO_KEEPALIVE), 0);
}

}  // namespace
}  // namespace derp::test
