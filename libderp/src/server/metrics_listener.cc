#include "net/endpoint_text.h"
#include "server/metrics_listener.h"

#include <fmt/format.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <memory>

#include "server/http_routes.h"

namespace derp::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {

// One scrape connection: read a request, answer, repeat while keep-alive; a deadline per
// request so an idle or slow client cannot pin a socket.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const std::function<CounterMap()>& counters,
          std::chrono::milliseconds timeout)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        counters_(counters),
        timeout_(timeout) {}

  void read() {
    req_ = {};
    timer_.expires_after(timeout_);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->close();
    });
    http::async_read(
        socket_, buf_, req_,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_read(ec); });
  }

 private:
  void on_read(boost::system::error_code ec) {
    timer_.cancel();
    if (ec) {
      if (ec != http::error::end_of_stream && ec != asio::error::eof &&
          ec != asio::error::operation_aborted && socket_.is_open()) {
        res_ = bad_request_response(ec.message());
        write();
        return;
      }
      close();
      return;
    }
    res_ = respond();
    write();
  }

  Response respond() {
    std::string_view path = req_.target();
    path = path.substr(0, path.find('?'));
    Response res;
    res.version(req_.version());
    if (path != "/metrics") {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "404 page not found\n";
    } else if (req_.method() != http::verb::get && req_.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "method not allowed\n";
    } else {
      res.result(http::status::ok);
      res.set(http::field::content_type, kPrometheusContentType);
      res.body() = render_prometheus(counters_());
    }
    res.set(http::field::date, http_date_now());
    res.prepare_payload();
    if (req_.method() == http::verb::head) res.body().clear();
    res.keep_alive(req_.keep_alive());
    return res;
  }

  void write() {
    http::async_write(socket_, res_,
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (ec || !self->res_.keep_alive()) {
                          self->close();
                          return;
                        }
                        self->read();
                      });
  }

  void close() {
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  std::function<CounterMap()> counters_;
  std::chrono::milliseconds timeout_;
  beast::flat_buffer buf_;
  Request req_;
  Response res_;
};

}  // namespace

MetricsListener::MetricsListener(asio::io_context& io, std::function<CounterMap()> counters,
                                 std::chrono::milliseconds request_timeout)
    : io_(io), acceptor_(io), counters_(std::move(counters)), timeout_(request_timeout) {}

Result<void> MetricsListener::listen(const tcp::endpoint& ep) {
  boost::system::error_code ec;
  auto fail = [&] { return net::listen_error("metrics listen", net::endpoint_string(ep), ec); };
  acceptor_.open(ep.protocol(), ec);
  if (ec) return fail();
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  acceptor_.bind(ep, ec);
  if (ec) return fail();
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail();
  local_ = acceptor_.local_endpoint(ec);
  if (ec) return fail();
  return {};
}

void MetricsListener::start() { accept_next(); }

void MetricsListener::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

void MetricsListener::accept_next() {
  acceptor_.async_accept(io_, [this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<Session>(std::move(socket), counters_, timeout_)->read();
    accept_next();
  });
}

}  // namespace derp::server
