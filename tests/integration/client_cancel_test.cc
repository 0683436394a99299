// Cancellation (Go's derphttp BaseContext): ClientOptions::stop_token and Client::cancel()
// abort a connect in flight, a blocked recv() and an unanswered ping() from another thread,
// and every later call fails the same way.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <future>
#include <stop_token>
#include <thread>

#include "derp/client.h"
#include "derp/server.h"

namespace derp {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using CancelClock = std::chrono::steady_clock;

// Long enough that only cancellation can end a call before it; the tests bound each call well
// below it, so a cancellation that did not work fails instead of hanging.
constexpr auto kCancelLongWait = 60s;
constexpr auto kCancelBound = 20s;

std::unique_ptr<Server> cancel_start_relay() {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.threads = 1;
  auto s = Server::start(std::move(o));
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return s.ok() ? std::move(*s) : nullptr;
}

std::unique_ptr<Client> cancel_client(uint16_t port, std::stop_token token = {}) {
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = "http://127.0.0.1:" + std::to_string(port) + "/derp";
  o.connect_timeout = kCancelLongWait;
  o.stop_token = std::move(token);
  auto c = Client::create(std::move(o));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(*c) : nullptr;
}

void expect_cancelled(const Error& e) {
  EXPECT_EQ(e.kind, ErrorKind::kClosed) << e.message;
  EXPECT_NE(e.message.find("cancelled"), std::string::npos) << e.message;
}

// Polls `cond` with a short yield until it holds or the deadline passes.
bool cancel_wait_for(const std::function<bool()>& cond, std::chrono::seconds limit = 10s) {
  const auto until = CancelClock::now() + limit;
  while (CancelClock::now() < until) {
    if (cond()) return true;
    std::this_thread::yield();
  }
  return cond();
}

TEST(ClientCancel, StopTokenAbortsAConnectToAListenerThatNeverAnswers) {
  // A listening socket nobody accepts on: the kernel completes TCP, the HTTP upgrade then
  // waits for an answer that never comes.
  asio::io_context io;
  asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::stop_source stop;
  auto c = cancel_client(silent.local_endpoint().port(), stop.get_token());
  ASSERT_TRUE(c);

  const auto start = CancelClock::now();
  auto connecting = std::async(std::launch::async, [&] { return c->connect(); });
  ASSERT_TRUE(cancel_wait_for([&] { return c->connected_state().connecting; }));
  stop.request_stop();
  ASSERT_EQ(connecting.wait_for(kCancelBound), std::future_status::ready)
      << "connect() did not return after stop was requested";
  auto r = connecting.get();
  EXPECT_LT(CancelClock::now() - start, kCancelBound);
  ASSERT_FALSE(r.ok());
  expect_cancelled(r.error());
  EXPECT_TRUE(c->cancelled());

  // Later calls fail the same way, without dialing again.
  auto again = c->connect();
  ASSERT_FALSE(again.ok());
  expect_cancelled(again.error());
  EXPECT_TRUE(c->connected_state().closed);
}

TEST(ClientCancel, StopTokenWakesABlockedRecv) {
  auto relay = cancel_start_relay();
  ASSERT_TRUE(relay);
  std::stop_source stop;
  auto c = cancel_client(relay->port(), stop.get_token());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  auto info = c->recv(10s);  // the ServerInfo; the queue is empty afterwards
  ASSERT_TRUE(info.ok()) << info.error().message;

  const auto start = CancelClock::now();
  auto receiving = std::async(std::launch::async, [&] { return c->recv(kCancelLongWait); });
  stop.request_stop();  // lands before or during the recv: both must answer "cancelled"
  ASSERT_EQ(receiving.wait_for(kCancelBound), std::future_status::ready);
  auto m = receiving.get();
  EXPECT_LT(CancelClock::now() - start, kCancelBound);
  ASSERT_FALSE(m.ok());
  expect_cancelled(m.error());

  auto later = c->send(NodePrivate::generate().public_key(), std::vector<uint8_t>{1, 2, 3});
  ASSERT_FALSE(later.ok());
  expect_cancelled(later.error());
  auto addr = c->local_addr();
  ASSERT_FALSE(addr.ok());
  expect_cancelled(addr.error());
}

TEST(ClientCancel, CancelAbortsAPingTheRelayNeverAnswers) {
  auto relay = cancel_start_relay();
  ASSERT_TRUE(relay);
  auto c = cancel_client(relay->port());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  // The relay stops reading this client: its Ping is never answered.
  ASSERT_TRUE(relay->apply_fault("stall=" + c->self_public_key().to_string()).ok());

  const auto start = CancelClock::now();
  auto pinging = std::async(std::launch::async, [&] { return c->ping(kCancelLongWait); });
  c->cancel();
  ASSERT_EQ(pinging.wait_for(kCancelBound), std::future_status::ready);
  auto p = pinging.get();
  EXPECT_LT(CancelClock::now() - start, kCancelBound);
  ASSERT_FALSE(p.ok());
  expect_cancelled(p.error());

  auto later = c->ping(1s);
  ASSERT_FALSE(later.ok());
  expect_cancelled(later.error());
}

TEST(ClientCancel, AStopRequestedBeforeCreateFailsTheFirstCall) {
  auto relay = cancel_start_relay();
  ASSERT_TRUE(relay);
  std::stop_source stop;
  stop.request_stop();
  auto c = cancel_client(relay->port(), stop.get_token());
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  expect_cancelled(r.error());
  EXPECT_EQ(c->generation(), 0u);
}

TEST(ClientCancel, CloseIsNotReportedAsCancelled) {
  auto relay = cancel_start_relay();
  ASSERT_TRUE(relay);
  std::stop_source stop;
  auto c = cancel_client(relay->port(), stop.get_token());
  ASSERT_TRUE(c);
  c->close();
  stop.request_stop();  // after close(): changes nothing
  auto r = c->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kClosed);
  EXPECT_EQ(r.error().message, "client closed");
  EXPECT_FALSE(c->cancelled());
}

}  // namespace
}  // namespace derp
