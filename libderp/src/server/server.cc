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

#include "net/endpoint_text.h"
#include "server/chunk_pool.h"
#include "server/connection.h"
#include "server/mesh.h"
#include "server/metrics.h"
#include "server/metrics_listener.h"
#include "server/relay.h"
#include "server/stats.h"
#include "server/stun_server.h"

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

}  // namespace

struct Server::Impl {
  explicit Impl(ServerOptions o)
      : opts(std::move(o)), public_key(opts.private_key.public_key()), relay(opts, stats) {}

  ServerOptions opts;
  NodePublic public_key;
  server::Stats stats;
  server::ChunkPool pool;  // outlives every connection (declared before the loops)
  server::Relay relay;
  std::unique_ptr<server::Mesh> mesh;  // outgoing mesh links, when opts.mesh_with is set
  std::vector<std::unique_ptr<asio::io_context>> loops;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::optional<tcp::acceptor> acceptor;
  std::optional<server::StunServer> stun;          // on loops[0], when opts.stun
  std::optional<server::MetricsListener> metrics;  // on loops[0], when opts.metrics_addr
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
      if (opts.log) opts.log(fmt::format("accept on {}: {}", net::endpoint_string(local), ec.message()));
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
  auto fail = [&] { return net::listen_error("listen", where, ec); };
  impl->acceptor->open(ep->protocol(), ec);
  if (ec) return fail();
  impl->acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  impl->acceptor->bind(*ep, ec);
  if (ec) return fail();
  impl->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail();
  impl->local = impl->acceptor->local_endpoint(ec);
  if (ec) return fail();
  if (impl->opts.stun) {
    impl->stun.emplace(*impl->loops[0], impl->stats);
    auto bound = impl->stun->listen(asio::ip::udp::endpoint(ep->address(), impl->opts.stun_port));
    if (!bound) return std::move(bound).error();
  }
  if (!impl->opts.metrics_addr.empty()) {
    auto mep = parse_listen_addr(impl->opts.metrics_addr);
    if (!mep) {
      return Error(ErrorKind::kUsage, "metrics address: " + std::move(mep).error().message);
    }
    Impl* raw = impl.get();
    impl->metrics.emplace(
        *impl->loops[0], [raw] { return server::snapshot_counters(raw->stats, raw->relay); },
        impl->opts.handshake_timeout);
    auto bound = impl->metrics->listen(*mep);
    if (!bound) return std::move(bound).error();
  }

  Impl* raw = impl.get();
  asio::post(*impl->loops[0], [raw] {
    raw->accept_next();
    if (raw->stun) raw->stun->start();
    if (raw->metrics) raw->metrics->start();
  });
  for (auto& loop : impl->loops) {
    impl->threads.emplace_back([io = loop.get()] { io->run(); });
  }
  if (!impl->opts.mesh_with.empty()) {
    impl->mesh = std::make_unique<server::Mesh>(impl->opts, impl->relay, impl->stats,
                                                net::endpoint_string(impl->local));
    if (auto ok = impl->mesh->start(); !ok) {
      Server failed(std::move(impl));  // stops the loops
      return std::move(ok).error();
    }
  }
  if (impl->opts.log) {
    impl->opts.log(fmt::format("relay {} listening on {} with {} thread(s)",
                               impl->public_key.to_string(), net::endpoint_string(impl->local),
                               threads));
    if (impl->stun) {
      const auto s = impl->stun->local_endpoint();
      impl->opts.log(fmt::format("STUN listening on udp {}",
                                 net::endpoint_string(tcp::endpoint(s.address(), s.port()))));
    }
    if (impl->metrics) {
      impl->opts.log(fmt::format("metrics on http://{}/metrics",
                                 net::endpoint_string(impl->metrics->local_endpoint())));
    }
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::string Server::local_address() const { return net::endpoint_string(impl_->local); }
uint16_t Server::port() const { return impl_->local.port(); }
NodePublic Server::public_key() const { return impl_->public_key; }
std::string Server::metrics_address() const {
  return impl_->metrics ? net::endpoint_string(impl_->metrics->local_endpoint()) : std::string();
}
uint16_t Server::stun_port() const {
  return impl_->stun ? impl_->stun->local_endpoint().port() : 0;
}

std::map<std::string, int64_t> Server::counters() const {
  return server::snapshot_counters(impl_->stats, impl_->relay);
}

void Server::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  if (impl_->mesh) impl_->mesh->stop();  // its links hold chunks and forwarders: before the loops
  // Close the listener on its loop (the acceptor is not thread-safe), then stop every loop.
  asio::post(*impl_->loops[0], [raw = impl_.get()] {
    boost::system::error_code ec;
    raw->acceptor->close(ec);
    if (raw->stun) raw->stun->close();
    if (raw->metrics) raw->metrics->close();
  });
  impl_->guards.clear();
  for (auto& loop : impl_->loops) loop->stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->acceptor.reset();
  impl_->stun.reset();  // its socket belongs to loops[0]: destroy it before the loop
  impl_->metrics.reset();
  // Connections are owned by the tables and by their pending handlers: drop the tables, then
  // destroying each loop destroys its handlers and with them the connections and sockets.
  impl_->relay.clear();
  impl_->loops.clear();
}

}  // namespace derp
