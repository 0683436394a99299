#include "bench/raw_forwarder.h"

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "net/awaitable.h"

namespace derp::bench {

using net::kTuple;

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr size_t kBuffer = 256 * 1024;
}  // namespace

struct RawForwarder::State {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::mutex mu;
  // Pair index → the end that arrived first (role, socket).
  std::map<uint32_t, std::pair<uint8_t, std::shared_ptr<tcp::socket>>> waiting;
  std::vector<std::shared_ptr<tcp::socket>> all;  // closed on stop
};

namespace {

asio::awaitable<void> forward(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to) {
  std::vector<uint8_t> buf(kBuffer);
  for (;;) {
    auto [ec, n] = co_await from->async_read_some(asio::buffer(buf), kTuple);
    if (ec) break;
    auto [wec, wn] = co_await asio::async_write(*to, asio::buffer(buf.data(), n), kTuple);
    if (wec) break;
  }
  boost::system::error_code ignored;
  to->shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> greet(std::shared_ptr<RawForwarder::State> st,
                            std::shared_ptr<tcp::socket> s) {
  std::array<uint8_t, 8> hello{};
  auto [ec, n] = co_await asio::async_read(*s, asio::buffer(hello), kTuple);
  if (ec) co_return;
  uint32_t pair;
  std::memcpy(&pair, hello.data(), 4);
  const uint8_t role = hello[4];
  std::shared_ptr<tcp::socket> sender, receiver;
  {
    std::lock_guard lock(st->mu);
    auto it = st->waiting.find(pair);
    if (it == st->waiting.end() || it->second.first == role) {
      st->waiting[pair] = {role, s};
      co_return;
    }
    (role == 1 ? receiver : sender) = s;
    (role == 1 ? sender : receiver) = it->second.second;
    st->waiting.erase(it);
  }
  co_await forward(sender, receiver);
}

asio::awaitable<void> accept_loop(std::shared_ptr<RawForwarder::State> st) {
  for (;;) {
    auto s = std::make_shared<tcp::socket>(st->io);
    auto [ec] = co_await st->acceptor.async_accept(*s, kTuple);
    if (ec) co_return;
    s->set_option(tcp::no_delay(true), ec);
    {
      std::lock_guard lock(st->mu);
      st->all.push_back(s);
    }
    asio::co_spawn(st->io, greet(st, s), asio::detached);
  }
}

}  // namespace

Result<std::unique_ptr<RawForwarder>> RawForwarder::start() {
  std::unique_ptr<RawForwarder> f(new RawForwarder());
  f->state_ = std::make_shared<State>();
  auto& acc = f->state_->acceptor;
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  acc.open(ep.protocol(), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error(ErrorKind::kConnect, "--raw forwarder listen: " + ec.message(), ec);
  f->endpoint_ = acc.local_endpoint();
  asio::co_spawn(f->state_->io, accept_loop(f->state_), asio::detached);
  f->thread_ = std::thread([st = f->state_] { st->io.run(); });
  return f;
}

RawForwarder::~RawForwarder() {
  asio::post(state_->io, [st = state_] {
    boost::system::error_code ec;
    st->acceptor.close(ec);
    std::lock_guard lock(st->mu);
    for (auto& s : st->all) s->close(ec);
    st->waiting.clear();
  });
  thread_.join();
}

}  // namespace derp::bench
