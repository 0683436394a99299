// The prober's /metrics listener: plain HTTP/1.1 via Beast on its own thread, one request per
// connection, each bounded by a deadline.
#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <thread>

#include "derp/prober.h"
#include "net/endpoint_text.h"

namespace derp::probe {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, std::function<std::string()>& render)
      : socket_(std::move(s)), timer_(socket_.get_executor()), render_(render) {}

  void start() {
    timer_.expires_after(std::chrono::seconds(10));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->socket_.close(ec);
    });
    http::async_read(socket_, buf_, req_,
                     [self = shared_from_this()](boost::system::error_code ec, size_t) {
                       if (ec) {
                         self->timer_.cancel();
                         return;
                       }
                       self->respond();
                     });
  }

 private:
  void respond() {
    std::string_view path = req_.target();
    path = path.substr(0, path.find('?'));
    res_.version(11);
    res_.keep_alive(false);
    res_.set(http::field::content_type, "text/plain; charset=utf-8");
    if (path != "/metrics") {
      res_.result(http::status::not_found);
      res_.body() = "404 page not found\n";
    } else if (req_.method() != http::verb::get && req_.method() != http::verb::head) {
      res_.result(http::status::method_not_allowed);
      res_.body() = "method not allowed\n";
    } else {
      res_.result(http::status::ok);
      res_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res_.body() = render_();
    }
    res_.prepare_payload();
    if (req_.method() == http::verb::head) res_.body().clear();
    http::async_write(socket_, res_,
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        self->timer_.cancel();
                        self->socket_.shutdown(tcp::socket::shutdown_both, ec);
                        self->socket_.close(ec);
                      });
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  std::function<std::string()>& render_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};

}  // namespace

struct MetricsHttpServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::function<std::string()> render;
  std::thread thread;
  std::string local;

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(s), render)->start();
      accept();
    });
  }
};

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::start(
    const std::string& listen_addr, std::function<std::string()> render) {
  const auto colon = listen_addr.rfind(':');
  if (colon == std::string::npos) {
    return Error(ErrorKind::kUsage,
                 fmt::format("--listen \"{}\": expected host:port", listen_addr));
  }
  std::string host = listen_addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(listen_addr.substr(colon + 1), &used);
    if (used != listen_addr.size() - colon - 1) port = -1;
  } catch (...) {
    port = -1;
  }
  if (ec || port < 0 || port > 65535) {
    return Error(ErrorKind::kUsage,
                 fmt::format("--listen \"{}\": expected IP:port", listen_addr));
  }
  auto impl = std::make_unique<Impl>();
  impl->render = std::move(render);
  tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  auto fail = [&] { return net::listen_error("metrics listen", net::endpoint_string(ep), ec); };
  impl->acceptor.open(ep.protocol(), ec);
  if (ec) return fail();
  impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  impl->acceptor.bind(ep, ec);
  if (ec) return fail();
  impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail();
  impl->local = net::endpoint_string(impl->acceptor.local_endpoint());
  impl->accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() { stop(); }

std::string MetricsHttpServer::local_address() const { return impl_->local; }

void MetricsHttpServer::stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->io.stop();
  });
  impl_->thread.join();
}

}  // namespace derp::probe
