// Server: the listener, the event loops and the pieces that make up the relay.
#include "derp/server.h"

#include <fmt/format.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "server/chunk_pool.h"
#include "server/connection.h"
#include "server/relay.h"
#include "server/stats.h"

namespace derp {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// "127.0.0.1:3340", "[::1]:0", ":3340" (all interfaces, only when asked), "localhost:80".
Result<tcp::endpoint> parse_listen_addr(const std::string& addr) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorKind::kUsage, fmt::format("listen address {:?}: {}", addr, why));
  };
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos) return bad("want host:port");
  std::string host = addr.substr(0, colon);
  const std::string port_text = addr.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos) {
    return bad("bad port");
  }
  const unsigned long port = std::stoul(port_text);
  if (port > 65535) return bad("port out of range");
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec) return bad("host must be an IP address");
  return tcp::endpoint(ip, static_cast<uint16_t>(port));
}

std::string endpoint_string(const tcp::endpoint& ep) {
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

}  // namespace

struct Server::Impl {
  explicit Impl(ServerOptions o)
      : opts(std::move(o)), public_key(opts.private_key.public_key()), relay(opts, stats) {}

  ServerOptions opts;
  NodePublic public_key;
  server::Stats stats;
  server::ChunkPool pool;  // outlives every connection (declared before the loops)
  server::Relay relay;
  std::vector<std::unique_ptr<asio::io_context>> loops;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::optional<tcp::acceptor> acceptor;
  tcp::endpoint local;
  size_t next_loop = 0;
  bool stopped = false;

  void accept_next() {
    auto& target = *loops[next_loop];
    next_loop = (next_loop + 1) % loops.size();
    acceptor->async_accept(target.get_executor(),
                           [this](boost::system::error_code ec, tcp::socket socket) {
                             on_accept(ec, std::move(socket));
                           });
  }

  void on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor || !acceptor->is_open()) return;
    if (ec) {
      if (opts.log) opts.log(fmt::format("accept on {}: {}", endpoint_string(local), ec.message()));
    } else {
      stats.add(server::Counter::kAccepts);
      auto conn = std::make_shared<server::Connection<tcp::socket>>(std::move(socket), relay, stats,
                                                                    pool, opts, public_key);
      asio::post(conn->executor_for_start(), [conn] { conn->start(); });
    }
    accept_next();
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { stop(); }

Result<std::unique_ptr<Server>> Server::start(ServerOptions options) {
  if (options.private_key.is_zero()) {
    return Error(ErrorKind::kUsage, "server: a private key is required");
  }
  auto ep = parse_listen_addr(options.listen_addr);
  if (!ep) return std::move(ep).error();
  const std::string where = options.listen_addr;
  int threads = options.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  auto impl = std::make_unique<Impl>(std::move(options));
  for (int i = 0; i < threads; ++i) {
    impl->loops.push_back(std::make_unique<asio::io_context>(1));
    impl->guards.push_back(asio::make_work_guard(*impl->loops.back()));
  }
  boost::system::error_code ec;
  impl->acceptor.emplace(*impl->loops[0]);
  auto fail = [&] {
    std::string msg = ec == asio::error::address_in_use ? "address in use" : ec.message();
    return Error(ErrorKind::kConnect, fmt::format("listen on {}: {}", where, msg), ec);
  };
  impl->acceptor->open(ep->protocol(), ec);
  if (ec) return fail();
  impl->acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  impl->acceptor->bind(*ep, ec);
  if (ec) return fail();
  impl->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail();
  impl->local = impl->acceptor->local_endpoint(ec);
  if (ec) return fail();

  Impl* raw = impl.get();
  asio::post(*impl->loops[0], [raw] { raw->accept_next(); });
  for (auto& loop : impl->loops) {
    impl->threads.emplace_back([io = loop.get()] { io->run(); });
  }
  if (impl->opts.log) {
    impl->opts.log(fmt::format("relay {} listening on {} with {} thread(s)",
                               impl->public_key.to_string(), endpoint_string(impl->local),
                               threads));
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::string Server::local_address() const { return endpoint_string(impl_->local); }
uint16_t Server::port() const { return impl_->local.port(); }
NodePublic Server::public_key() const { return impl_->public_key; }

std::map<std::string, int64_t> Server::counters() const {
  std::map<std::string, int64_t> out;
  impl_->stats.fill(out);
  impl_->relay.fill_gauges(out);
  return out;
}

void Server::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  // Close the listener on its loop (the acceptor is not thread-safe), then stop every loop.
  asio::post(*impl_->loops[0], [raw = impl_.get()] {
    boost::system::error_code ec;
    raw->acceptor->close(ec);
  });
  impl_->guards.clear();
  for (auto& loop : impl_->loops) loop->stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->acceptor.reset();
  // Connections are owned by the tables and by their pending handlers: drop the tables, then
  // destroying each loop destroys its handlers and with them the connections and sockets.
  impl_->relay.clear();
  impl_->loops.clear();
}

}  // namespace derp
