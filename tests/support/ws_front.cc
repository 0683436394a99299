#include "support/ws_front.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <thread>

namespace derp::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using asio::use_awaitable;

struct WsFront::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  uint16_t relay_port = 0;
  bool split = false;
  std::atomic<int> sessions{0};
  std::atomic<int> refused{0};
  std::thread thread;

  using Ws = websocket::stream<tcp::socket>;

  asio::awaitable<void> relay_to_ws(std::shared_ptr<tcp::socket> up, std::shared_ptr<Ws> ws,
                                    std::vector<uint8_t> leftover) {
    try {
      std::vector<uint8_t> buf(65536);
      auto send = [&](const uint8_t* p, size_t n) -> asio::awaitable<void> {
        size_t step = split ? 7 : n;
        for (size_t off = 0; off < n; off += step) {
          co_await ws->async_write(asio::buffer(p + off, std::min(step, n - off)), use_awaitable);
        }
      };
      if (!leftover.empty()) co_await send(leftover.data(), leftover.size());
      for (;;) {
        size_t n = co_await up->async_read_some(asio::buffer(buf), use_awaitable);
        co_await send(buf.data(), n);
      }
    } catch (const std::exception&) {
    }
    boost::system::error_code ec;
    ws->next_layer().close(ec);
    up->close(ec);
  }

  asio::awaitable<void> session(tcp::socket s) {
    auto ex = s.get_executor();
    try {
      beast::flat_buffer buf;
      http::request<http::string_body> req;
      co_await http::async_read(s, buf, req, use_awaitable);
      if (!websocket::is_upgrade(req)) {
        ++refused;
        http::response<http::string_body> res{http::status::upgrade_required, 11};
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.body() = "DERP requires connection upgrade";
        res.prepare_payload();
        co_await http::async_write(s, res, use_awaitable);
        co_return;
      }
      auto ws = std::make_shared<Ws>(std::move(s));
      ws->set_option(websocket::stream_base::decorator([](websocket::response_type& r) {
        r.set(http::field::sec_websocket_protocol, "derp");
      }));
      co_await ws->async_accept(req, use_awaitable);
      ws->binary(true);
      ++sessions;

      auto up = std::make_shared<tcp::socket>(ex);
      co_await up->async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), relay_port),
                                 use_awaitable);
      std::string head =
          "GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n";
      co_await asio::async_write(*up, asio::buffer(head), use_awaitable);
      beast::flat_buffer ub;
      http::response_parser<http::empty_body> p;
      p.skip(true);
      co_await http::async_read_header(*up, ub, p, use_awaitable);
      auto d = ub.data();
      std::vector<uint8_t> leftover(static_cast<const uint8_t*>(d.data()),
                                    static_cast<const uint8_t*>(d.data()) + d.size());
      asio::co_spawn(ex, relay_to_ws(up, ws, std::move(leftover)), asio::detached);
      beast::flat_buffer mb;
      for (;;) {
        mb.clear();
        co_await ws->async_read(mb, use_awaitable);
        co_await asio::async_write(*up, mb.data(), use_awaitable);
      }
    } catch (const std::exception&) {
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor.async_accept(asio::as_tuple(use_awaitable));
      if (ec) co_return;
      asio::co_spawn(io, session(std::move(s)), asio::detached);
    }
  }
};

WsFront::WsFront(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<WsFront> WsFront::start(uint16_t relay_port, bool split) {
  auto impl = std::make_unique<Impl>();
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    ADD_FAILURE() << "websocket front: " << ec.message();
    return nullptr;
  }
  impl->relay_port = relay_port;
  impl->split = split;
  Impl* d = impl.get();
  asio::co_spawn(d->io, d->accept_loop(), asio::detached);
  d->thread = std::thread([d] { d->io.run(); });
  return std::unique_ptr<WsFront>(new WsFront(std::move(impl)));
}

WsFront::~WsFront() {
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t WsFront::port() const { return impl_->acceptor.local_endpoint().port(); }
int WsFront::websocket_sessions() const { return impl_->sessions.load(); }
int WsFront::refused() const { return impl_->refused.load(); }

}  // namespace derp::test
