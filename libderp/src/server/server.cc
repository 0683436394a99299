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
#include "server/metrics.h"
#include "server/metrics_listener.h"
#include "server/relay.h"
#include "server/stats.h"
#include "server/stun_server.h"
#include "server/tls_certs.h"

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
  std::vector<std::unique_ptr<asio::io_context>> loops;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::optional<tcp::acceptor> acceptor;
  std::unique_ptr<server::TlsCerts> tls;       // when opts.cert_mode == "manual"
  std::optional<tcp::acceptor> http_acceptor;  // --http-port beside TLS, on loops[0]
  tcp::endpoint http_local;
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
      if (opts.log)
        opts.log(fmt::format("accept on {}: {}", net::endpoint_string(local), ec.message()));
    } else if (tls) {
      stats.add(server::Counter::kAccepts);
      if (opts.cert_check_interval.count() > 0) tls->reload_if_changed(opts.cert_check_interval);
      auto ctx = tls->current();
      auto conn = std::make_shared<server::Connection<server::TlsStream>>(
          server::TlsStream(std::move(socket), *ctx), relay, stats, pool, opts, public_key);
      conn->hold(std::move(ctx));
      asio::post(conn->executor_for_start(), [conn] { conn->start(); });
    } else {
      stats.add(server::Counter::kAccepts);
      auto conn = std::make_shared<server::Connection<tcp::socket>>(std::move(socket), relay, stats,
                                                                    pool, opts, public_key);
      asio::post(conn->executor_for_start(), [conn] { conn->start(); });
    }
    accept_next();
  }

  // derper's plain-HTTP port beside TLS: never DERP, so not counted in accepts.
  void accept_http() {
    auto& target = *loops[next_loop];
    next_loop = (next_loop + 1) % loops.size();
    http_acceptor->async_accept(
        target.get_executor(), [this](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted || !http_acceptor || !http_acceptor->is_open()) {
            return;
          }
          if (!ec) {
            auto conn = std::make_shared<server::Connection<tcp::socket>>(
                std::move(socket), relay, stats, pool, opts, public_key);
            conn->set_port80(opts.hostname);
            asio::post(conn->executor_for_start(), [conn] { conn->start(); });
          }
          accept_http();
        });
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
  if (options.cert_mode == "letsencrypt") {
    return Error(ErrorKind::kUsage,
                 "certmode \"letsencrypt\" is not supported (no ACME client); use --certmode "
                 "manual with --certdir and --hostname");
  }
  if (!options.cert_mode.empty() && options.cert_mode != "manual") {
    return Error(ErrorKind::kUsage,
                 fmt::format("unsupported certmode {:?} (want \"manual\")", options.cert_mode));
  }
  if (options.http_port < -1 || options.http_port > 65535) {
    return Error(ErrorKind::kUsage, fmt::format("http port {} out of range", options.http_port));
  }
  int threads = options.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  auto impl = std::make_unique<Impl>(std::move(options));
  for (int i = 0; i < threads; ++i) {
    impl->loops.push_back(std::make_unique<asio::io_context>(1));
    impl->guards.push_back(asio::make_work_guard(*impl->loops.back()));
  }
  if (impl->opts.cert_mode == "manual") {
    auto certs = server::TlsCerts::load(impl->opts.cert_dir, impl->opts.hostname,
                                        impl->public_key.hex(), impl->opts.log);
    if (!certs) return std::move(certs).error();
    impl->tls = std::move(*certs);
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
  if (impl->tls && impl->opts.http_port >= 0) {
    const tcp::endpoint hep(ep->address(), static_cast<uint16_t>(impl->opts.http_port));
    const std::string hwhere = net::endpoint_string(hep);
    auto hfail = [&] { return net::listen_error("listen (http port)", hwhere, ec); };
    impl->http_acceptor.emplace(*impl->loops[0]);
    impl->http_acceptor->open(hep.protocol(), ec);
    if (ec) return hfail();
    impl->http_acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    impl->http_acceptor->bind(hep, ec);
    if (ec) return hfail();
    impl->http_acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return hfail();
    impl->http_local = impl->http_acceptor->local_endpoint(ec);
    if (ec) return hfail();
  }
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
    if (raw->http_acceptor) raw->accept_http();
    if (raw->stun) raw->stun->start();
    if (raw->metrics) raw->metrics->start();
  });
  for (auto& loop : impl->loops) {
    impl->threads.emplace_back([io = loop.get()] { io->run(); });
  }
  if (impl->opts.log) {
    impl->opts.log(fmt::format("relay {} listening on {}{} with {} thread(s)",
                               impl->public_key.to_string(), net::endpoint_string(impl->local),
                               impl->tls ? " (TLS)" : "", threads));
    if (impl->http_acceptor) {
      impl->opts.log(fmt::format("plain HTTP on {} (redirects to https)",
                                 net::endpoint_string(impl->http_local)));
    }
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
bool Server::tls() const { return impl_->tls != nullptr; }
std::string Server::cert_pin() const { return impl_->tls ? impl_->tls->pin() : std::string(); }
std::string Server::http_address() const {
  return impl_->http_acceptor ? net::endpoint_string(impl_->http_local) : std::string();
}
Result<void> Server::reload_certificates() {
  if (!impl_->tls) return Error(ErrorKind::kUsage, "reload certificates: the relay serves no TLS");
  return impl_->tls->reload();
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
  // Close the listener on its loop (the acceptor is not thread-safe), then stop every loop.
  asio::post(*impl_->loops[0], [raw = impl_.get()] {
    boost::system::error_code ec;
    raw->acceptor->close(ec);
    if (raw->http_acceptor) raw->http_acceptor->close(ec);
    if (raw->stun) raw->stun->close();
    if (raw->metrics) raw->metrics->close();
  });
  impl_->guards.clear();
  for (auto& loop : impl_->loops) loop->stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->acceptor.reset();
  impl_->http_acceptor.reset();
  impl_->stun.reset();  // its socket belongs to loops[0]: destroy it before the loop
  impl_->metrics.reset();
  // Connections are owned by the tables and by their pending handlers: drop the tables, then
  // destroying each loop destroys its handlers and with them the connections and sockets.
  impl_->relay.clear();
  impl_->loops.clear();
}

}  // namespace derp
