#include "support/http_stub.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <thread>

namespace derp::test {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

struct HttpStub::Impl {
  Handler handler;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;
  mutable std::mutex mu;
  std::vector<Seen> seen;

  struct Session : std::enable_shared_from_this<Session> {
    explicit Session(tcp::socket s, Impl* o) : socket(std::move(s)), owner(o) {}
    tcp::socket socket;
    Impl* owner;
    boost::beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::response<http::string_body> res;

    void start() {
      http::async_read(socket, buf, req, [self = shared_from_this()](auto ec, size_t) {
        if (ec) return;
        Seen s{std::string(req_method(self->req)), std::string(self->req.target()),
               std::string(self->req[http::field::content_type]), self->req.body()};
        {
          std::lock_guard lock(self->owner->mu);
          self->owner->seen.push_back(s);
        }
        const Answer a = self->owner->handler(s);
        self->res = http::response<http::string_body>(static_cast<http::status>(a.status), 11);
        self->res.set(http::field::content_type, "application/json");
        self->res.body() = a.body;
        self->res.prepare_payload();
        self->res.keep_alive(false);
        http::async_write(self->socket, self->res, [self](auto, size_t) {
          boost::system::error_code ec2;
          self->socket.shutdown(tcp::socket::shutdown_both, ec2);
        });
      });
    }
    static std::string_view req_method(const http::request<http::string_body>& r) {
      return r.method_string();
    }
  };

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      std::make_shared<Session>(std::move(s), this)->start();
      accept();
    });
  }
};

HttpStub::HttpStub(Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  impl_->accept();
  impl_->thread = std::thread([io = &impl_->io] { io->run(); });
}

HttpStub::~HttpStub() {
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t HttpStub::port() const { return impl_->acceptor.local_endpoint().port(); }

std::string HttpStub::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

std::vector<HttpStub::Seen> HttpStub::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->seen;
}

}  // namespace derp::test
