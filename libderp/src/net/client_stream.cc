#include "net/client_stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "net/awaitable.h"

namespace derp::net {
namespace {

class TcpClientStream final : public ClientStream {
 public:
  explicit TcpClientStream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
    boost::system::error_code ec;
    // DERP frames are small and latency-sensitive (pings measure RTT): no Nagle delay.
    socket_.set_option(asio::ip::tcp::no_delay(true), ec);
    auto local = socket_.local_endpoint(ec);
    if (!ec) local_ = endpoint_string(local);
    auto remote = socket_.remote_endpoint(ec);
    if (!ec) remote_ = endpoint_string(remote);
  }

  asio::awaitable<IoResult> read_some(asio::mutable_buffer buf) override {
    auto [ec, n] = co_await socket_.async_read_some(buf, kTuple);
    co_return IoResult{ec, n};
  }

  asio::awaitable<IoResult> write_all(asio::const_buffer buf) override {
    auto [ec, n] = co_await asio::async_write(socket_, buf, kTuple);
    co_return IoResult{ec, n};
  }

  void close() override {
    boost::system::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  std::string local_address() const override { return local_; }
  std::string remote_address() const override { return remote_; }

 private:
  asio::ip::tcp::socket socket_;
  std::string local_;
  std::string remote_;
};

}  // namespace

std::unique_ptr<ClientStream> make_tcp_client_stream(asio::ip::tcp::socket socket) {
  return std::make_unique<TcpClientStream>(std::move(socket));
}

}  // namespace derp::net
