// WatchLoop (Go's RunWatchConnectionLoop) cancellation: stop() while connected, while waiting
// out a reconnect back-off and while a connect is stuck returns promptly, and no callback
// reports anything that did not happen (no disconnect for the stop itself, no gone, no add).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <mutex>
#include <vector>

#include "derp/client.h"
#include "derp/watch.h"
#include "support/client_transport.h"

namespace derp::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using WatchStopClock = std::chrono::steady_clock;

// Stop must be prompt: far below every timeout and back-off these tests configure.
constexpr auto kWatchStopBound = 5s;
constexpr auto kWatchLongWait = 60s;

MeshKey watch_stop_mesh_key() {
  auto k = MeshKey::parse(std::string(64, 'd'));
  EXPECT_TRUE(k);
  return k ? *k : MeshKey{};
}

// Every callback, counted (the watcher's own key is left out of adds/gones).
struct WatchStopEvents {
  NodePublic self;
  std::mutex mu;
  int adds = 0;
  int gones = 0;
  int syncs = 0;
  int disconnects = 0;
  std::chrono::milliseconds last_retry{0};

  WatchCallbacks callbacks() {
    WatchCallbacks cb;
    cb.add = [this](const WatchPeer& p) {
      std::lock_guard lk(mu);
      if (p.key != self) ++adds;
    };
    cb.gone = [this](const WatchGone& g) {
      std::lock_guard lk(mu);
      if (g.key != self) ++gones;
    };
    cb.synced = [this](uint64_t, size_t) {
      std::lock_guard lk(mu);
      ++syncs;
    };
    cb.disconnected = [this](const Error&, std::chrono::milliseconds retry_in) {
      std::lock_guard lk(mu);
      ++disconnects;
      last_retry = retry_in;
    };
    return cb;
  }
  std::vector<int> counts() {
    std::lock_guard lk(mu);
    return {adds, gones, syncs, disconnects};
  }
};

// Stops the loop and returns how long stop() took.
std::chrono::nanoseconds watch_stop_timed(WatchLoop& loop) {
  const auto t0 = WatchStopClock::now();
  loop.stop();
  return WatchStopClock::now() - t0;
}

class WatchLoopStop : public ::testing::Test {
 protected:
  void SetUp() override {
    relay_ = TransportRelay::start(ClientTransport::kPlain, watch_stop_mesh_key());
    ASSERT_TRUE(relay_);
    peer_ = relay_->client();
    ASSERT_TRUE(peer_);
    ASSERT_TRUE(peer_->connect().ok());
    ClientOptions o = relay_->client_options();
    o.mesh_key = watch_stop_mesh_key();
    watcher_ = TransportRelay::make_client(o);
    ASSERT_TRUE(watcher_);
    events_.self = watcher_->self_public_key();
  }

  std::unique_ptr<TransportRelay> relay_;
  std::unique_ptr<Client> peer_;
  std::unique_ptr<Client> watcher_;
  WatchStopEvents events_;
};

TEST_F(WatchLoopStop, StopWhileConnectedIsPromptAndReportsNothingMore) {
  WatchOptions wo;
  wo.stale_after = 0ms;
  auto loop = WatchLoop::start(*watcher_, events_.callbacks(), wo);
  ASSERT_TRUE(wait_until([&] { return loop->synced_generation() == 1; }));
  EXPECT_EQ(events_.counts(), (std::vector<int>{1, 0, 1, 0}));

  EXPECT_LT(watch_stop_timed(*loop), kWatchStopBound);
  // The stop closed the client; it is not a disconnect, and the peer did not go anywhere.
  EXPECT_EQ(events_.counts(), (std::vector<int>{1, 0, 1, 0}));
  EXPECT_TRUE(watcher_->connected_state().closed);
  EXPECT_FALSE(loop->self_connect());
  EXPECT_EQ(loop->synced_generation(), 1u);
  // Idempotent, and still nothing.
  loop->stop();
  loop.reset();
  EXPECT_EQ(events_.counts(), (std::vector<int>{1, 0, 1, 0}));
}

TEST_F(WatchLoopStop, StopDuringReconnectBackoffIsPrompt) {
  WatchOptions wo;
  wo.min_backoff = kWatchLongWait;  // only stop() can end this wait early
  wo.max_backoff = kWatchLongWait;
  wo.stale_after = 0ms;  // no synthetic gones while waiting
  auto loop = WatchLoop::start(*watcher_, events_.callbacks(), wo);
  ASSERT_TRUE(wait_until([&] { return loop->synced_generation() == 1; }));

  relay_->stop();  // the loop sees the drop and waits out its back-off
  ASSERT_TRUE(wait_until([&] { return events_.counts()[3] == 1; }));
  {
    std::lock_guard lk(events_.mu);
    EXPECT_EQ(events_.last_retry, kWatchLongWait);
  }
  EXPECT_LT(watch_stop_timed(*loop), kWatchStopBound);
  EXPECT_EQ(events_.counts(), (std::vector<int>{1, 0, 1, 1}));
  EXPECT_EQ(loop->synced_generation(), 1u);
}

TEST_F(WatchLoopStop, StopWhileTheConnectIsStuckIsPromptAndReportsNoDisconnect) {
  // The watcher's relay accepts TCP and never answers the upgrade.
  asio::io_context io;
  asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  use_transport(o, ClientTransport::kPlain, silent.local_endpoint().port());
  o.mesh_key = watch_stop_mesh_key();
  o.connect_timeout = kWatchLongWait;
  auto stuck = TransportRelay::make_client(o);
  ASSERT_TRUE(stuck);
  auto loop = WatchLoop::start(*stuck, events_.callbacks());
  ASSERT_TRUE(wait_until([&] { return stuck->connected_state().connecting; }));
  EXPECT_LT(watch_stop_timed(*loop), kWatchStopBound);
  EXPECT_EQ(events_.counts(), (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(loop->synced_generation(), 0u);
}

}  // namespace
}  // namespace derp::test
