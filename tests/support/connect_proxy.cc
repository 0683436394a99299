#include "support/connect_proxy.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <mutex>
#include <thread>

namespace derp::test {

namespace asio = boost::asio;
using asio::ip::tcp;

struct ConnectProxy::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  uint16_t backend = 0;
  int status = 200;
  std::thread accept_thread;
  mutable std::mutex mu;
  std::vector<std::string> heads;
  std::vector<std::shared_ptr<tcp::socket>> sockets;
  std::vector<std::thread> threads;
  bool stopping = false;

  static void pipe(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to,
                   std::string initial) {
    boost::system::error_code ec;
    if (!initial.empty()) asio::write(*to, asio::buffer(initial), ec);
    std::array<char, 16384> buf;
    while (!ec) {
      size_t n = from->read_some(asio::buffer(buf), ec);
      if (ec) break;
      asio::write(*to, asio::buffer(buf.data(), n), ec);
    }
    ::shutdown(to->native_handle(), SHUT_WR);
  }

  void serve(std::shared_ptr<tcp::socket> client) {
    boost::system::error_code ec;
    asio::streambuf buf;
    size_t n = asio::read_until(*client, buf, "\r\n\r\n", ec);
    if (ec) return;
    std::string head(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n);
    buf.consume(n);
    std::string rest(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
    {
      std::lock_guard lk(mu);
      heads.push_back(head);
    }
    if (status < 200 || status > 299) {
      std::string resp = "HTTP/1.1 " + std::to_string(status) +
                         " Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n";
      asio::write(*client, asio::buffer(resp), ec);
      ::shutdown(client->native_handle(), SHUT_WR);
      return;
    }
    auto upstream = std::make_shared<tcp::socket>(io);
    upstream->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), backend), ec);
    if (ec) {
      std::string resp = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
      asio::write(*client, asio::buffer(resp), ec);
      return;
    }
    {
      std::lock_guard lk(mu);
      if (stopping) return;
      sockets.push_back(upstream);
    }
    std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    asio::write(*client, asio::buffer(ok), ec);
    std::thread back([client, upstream] { pipe(upstream, client, ""); });
    pipe(client, upstream, rest);
    back.join();
  }
};

ConnectProxy::ConnectProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<ConnectProxy> ConnectProxy::start(uint16_t backend_port, int status) {
  auto impl = std::make_unique<Impl>();
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    ADD_FAILURE() << "connect proxy: " << ec.message();
    return nullptr;
  }
  impl->backend = backend_port;
  impl->status = status;
  Impl* d = impl.get();
  impl->accept_thread = std::thread([d] {
    for (;;) {
      auto s = std::make_shared<tcp::socket>(d->io);
      boost::system::error_code aec;
      d->acceptor.accept(*s, aec);
      if (aec) return;
      std::lock_guard lk(d->mu);
      if (d->stopping) return;
      d->sockets.push_back(s);
      d->threads.emplace_back([d, s] { d->serve(s); });
    }
  });
  return std::unique_ptr<ConnectProxy>(new ConnectProxy(std::move(impl)));
}

ConnectProxy::~ConnectProxy() {
  ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
  impl_->accept_thread.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
    for (auto& s : impl_->sockets) ::shutdown(s->native_handle(), SHUT_RDWR);
    threads = std::move(impl_->threads);
  }
  for (auto& t : threads) t.join();
}

uint16_t ConnectProxy::port() const { return impl_->acceptor.local_endpoint().port(); }

std::string ConnectProxy::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

std::vector<std::string> ConnectProxy::requests() const {
  std::lock_guard lk(impl_->mu);
  return impl_->heads;
}

}  // namespace derp::test
