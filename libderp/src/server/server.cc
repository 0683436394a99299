// Server: the listener, the event loops and the pieces that make up the relay.
#include "codec/token_bucket.h"
#include "derp/server.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "net/endpoint_text.h"
#include "net/ip_prefix.h"
#include "net/tcp_keepalive.h"
#include "server/admission.h"
#include "server/bootstrap_dns.h"
#include "server/chunk_pool.h"
#include "server/connection_start.h"
#include "server/faults.h"
#include "server/mesh.h"
#include "server/metrics.h"
#include "server/metrics_listener.h"
#include "server/relay.h"
#include "server/stats.h"
#include "server/status.h"
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

// derper's listener socket options: TCP keepalive and TCP_USER_TIMEOUT (PROTOCOL.md §4.7).
void apply_tcp_options(tcp::socket& socket, const ServerOptions& o) {
  const int fd = socket.native_handle();
  net::set_tcp_keepalive(fd, o.tcp_keepalive);
  if (o.tcp_user_timeout.count() > 0) {
    const unsigned ms = static_cast<unsigned>(o.tcp_user_timeout.count());
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
  }
  if (o.tcp_receive_buffer > 0) {
    const int bytes = static_cast<int>(std::min<size_t>(o.tcp_receive_buffer, 1u << 30));
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
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
  std::unique_ptr<server::TlsCerts> tls;       // when opts.cert_mode == "manual"
  std::optional<tcp::acceptor> http_acceptor;  // --http-port beside TLS, on loops[0]
  tcp::endpoint http_local;
  std::optional<server::StunServer> stun;          // on loops[0], when opts.stun
  std::optional<server::MetricsListener> metrics;  // on loops[0], when opts.metrics_addr
  tcp::endpoint local;
  size_t next_loop = 0;
  bool stopped = false;
  std::optional<server::BootstrapDns> bootstrap_dns;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // The status page's chart: delivery rates sampled every second on loops[0].
  mutable std::mutex history_mu;
  server::RateHistory history{300};
  std::optional<asio::steady_timer> sampler;
  // Accept token bucket (loops[0] only: accepts complete one at a time); starts full.
  TokenBucket accept_bucket{std::max(0.0, opts.accept_rate),
                            static_cast<double>(std::max<int64_t>(1, opts.accept_burst)),
                            std::chrono::steady_clock::now()};

  net::PrefixList debug_allow;  // opts.debug_allow_from, parsed by start()

  // An accept that fails (EMFILE/ENFILE when the fd table is full, ENOBUFS...) is retried as
  // Go's http.Server does: after 5 ms, doubling up to 1 s, not at once — the pending connection
  // stays in the backlog, so an immediate retry fails again, spinning a core and the log. One
  // line when a spell starts, one when accepting works again. On loops[0], like the acceptors.
  struct AcceptRetry {
    std::optional<asio::steady_timer> timer;
    std::chrono::milliseconds delay{0};
    int64_t failures = 0;
  };
  AcceptRetry accept_retry, http_accept_retry;

  void accept_failed(AcceptRetry& r, const tcp::endpoint& where,
                     const boost::system::error_code& ec, void (Impl::*again)()) {
    using std::chrono::milliseconds;
    r.delay = r.delay.count() == 0 ? milliseconds(5) : std::min(r.delay * 2, milliseconds(1000));
    if (r.failures++ == 0 && opts.log) {
      opts.log(fmt::format("accept on {}: {}; retrying with a back-off (5 ms to 1 s) until it "
                           "works; connected clients are still served",
                           net::endpoint_string(where), ec.message()));
    }
    if (!r.timer) r.timer.emplace(*loops[0]);
    r.timer->expires_after(r.delay);
    r.timer->async_wait([this, again](boost::system::error_code wec) {
      if (!wec) (this->*again)();  // after stop(): the closed acceptor ends it
    });
  }

  void accept_worked(AcceptRetry& r, const tcp::endpoint& where) {
    if (r.failures == 0) return;
    if (opts.log) {
      opts.log(fmt::format("accepting on {} again after {} failed accept(s)",
                           net::endpoint_string(where), r.failures));
    }
    r.failures = 0;
    r.delay = std::chrono::milliseconds(0);
  }

  Result<std::string> apply_fault(std::string_view spec);
  server::RouteHooks route_hooks();
  std::string status_json(bool debug_allowed) const;

  // Reads the two totals the chart shows (plain relaxed loads, nothing on the packet path),
  // then waits a second.
  void sample_rates() {
    {
      std::lock_guard lk(history_mu);
      history.sample(std::chrono::steady_clock::now(), stats.get(server::Counter::kPacketsSent),
                     stats.get(server::Counter::kBytesSent));
    }
    sampler->expires_after(std::chrono::seconds(1));
    sampler->async_wait([this](boost::system::error_code ec) {
      if (!ec) sample_rates();
    });
  }

  bool accept_allowed() {
    if (opts.accept_rate <= 0) return true;
    return accept_bucket.try_take(1, std::chrono::steady_clock::now());
  }

  server::ConnectionShared shared() { return {relay, stats, pool, opts, public_key}; }

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
      accept_failed(accept_retry, local, ec, &Impl::accept_next);
      return;
    }
    accept_worked(accept_retry, local);
    if (!accept_allowed()) {
      // derper accepts and closes at once rather than letting connections pile up.
      stats.add(server::Counter::kAcceptRejected);
      boost::system::error_code cec;
      socket.close(cec);
    } else if (tls) {
      stats.add(server::Counter::kAccepts);
      apply_tcp_options(socket, opts);
      if (opts.cert_check_interval.count() > 0) tls->reload_if_changed(opts.cert_check_interval);
      server::start_tls_connection(std::move(socket), tls->current(), shared());
    } else {
      stats.add(server::Counter::kAccepts);
      apply_tcp_options(socket, opts);
      server::start_tcp_connection(std::move(socket), shared());
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
          if (ec) {
            accept_failed(http_accept_retry, http_local, ec, &Impl::accept_http);
            return;
          }
          accept_worked(http_accept_retry, http_local);
          server::start_tcp_connection(std::move(socket), shared(), &opts.hostname,
                                       local.port());
          accept_http();
        });
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { stop(); }

Result<std::string> describe_debug_allow_from(const std::vector<std::string>& entries) {
  auto list = net::PrefixList::parse(entries);
  if (!list) return std::move(list).error();
  return list->to_string();
}

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
  if (!options.home.empty() && options.home != "blank" && !options.home.starts_with("http://") &&
      !options.home.starts_with("https://")) {
    return Error(ErrorKind::kUsage,
                 fmt::format("unknown home value {:?} (want \"\", \"blank\" or an http(s):// URL)",
                             options.home));
  }
  if (options.http_port < -1 || options.http_port > 65535) {
    return Error(ErrorKind::kUsage, fmt::format("http port {} out of range", options.http_port));
  }
  if (!options.verify_client_url.empty() && !server::is_http_url(options.verify_client_url)) {
    return Error(ErrorKind::kUsage,
                 fmt::format("verify_client_url {:?}: want an http:// or https:// URL",
                             options.verify_client_url));
  }
  auto debug_allow = net::PrefixList::parse(options.debug_allow_from);
  if (!debug_allow) {
    return Error(ErrorKind::kUsage, "debug_allow_from " + std::move(debug_allow).error().message);
  }
  int threads = options.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  auto impl = std::make_unique<Impl>(std::move(options));
  impl->debug_allow = *std::move(debug_allow);
  if (auto loaded = impl->relay.admission().load_allow_keys(); !loaded) {
    return std::move(loaded).error();
  }
  for (const auto& spec : impl->opts.faults) {
    auto f = server::parse_fault(spec);
    if (!f) return std::move(f).error();
    if (auto why = server::fault_refused_at_start(*f)) {
      return Error(ErrorKind::kUsage, fmt::format("fault {:?} cannot be applied at start: {}; "
                                                  "send it to POST /debug/fault once clients are "
                                                  "connected",
                                                  spec, *why));
    }
  }
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
    auto hfail = [&] {
      Error e = net::listen_error("listen (http port)", hwhere, ec);
      // derper's default --http-port is 80: the usual first failure of a TLS relay started by
      // an ordinary user, or beside a web server.
      e.hint = ec == boost::system::errc::permission_denied
                   ? "ports below 1024 need root or CAP_NET_BIND_SERVICE; --http-port -1 "
                     "turns the plain-HTTP listener off, --http-port 8080 moves it"
                   : "--http-port -1 turns the plain-HTTP listener off, --http-port PORT moves it";
      return e;
    };
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

  if (!impl->opts.bootstrap_dns_names.empty()) {
    impl->bootstrap_dns.emplace(impl->opts.bootstrap_dns_names);
  }
  if (!impl->opts.mesh_with.empty()) {
    // Made before the loops run (the status page reads it from them), started after.
    impl->mesh = std::make_unique<server::Mesh>(impl->opts, impl->relay, impl->stats,
                                                net::endpoint_string(impl->local));
  }
  Impl* raw = impl.get();
  raw->relay.set_route_hooks(raw->route_hooks());
  impl->sampler.emplace(*impl->loops[0]);
  asio::post(*impl->loops[0], [raw] {
    raw->sample_rates();
    raw->accept_next();
    if (raw->http_acceptor) raw->accept_http();
    if (raw->stun) raw->stun->start();
    if (raw->metrics) raw->metrics->start();
  });
  for (auto& loop : impl->loops) {
    impl->threads.emplace_back([io = loop.get()] { io->run(); });
  }
  if (impl->mesh) {
    if (auto ok = impl->mesh->start(); !ok) {
      Server failed(std::move(impl));  // stops the loops
      return std::move(ok).error();
    }
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
  auto server = std::unique_ptr<Server>(new Server(std::move(impl)));
  for (const auto& spec : server->impl_->opts.faults) {
    if (auto done = server->apply_fault(spec); !done) return std::move(done).error();
  }
  return server;
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

void Server::notify_restarting(std::chrono::milliseconds reconnect_in,
                               std::chrono::milliseconds try_for) {
  if (!impl_ || impl_->stopped) return;
  impl_->relay.broadcast_restarting(static_cast<uint32_t>(reconnect_in.count()),
                                    static_cast<uint32_t>(try_for.count()));
}

void Server::graceful_stop(std::chrono::milliseconds flush_timeout) {
  if (!impl_ || impl_->stopped) return;
  notify_restarting(impl_->opts.restart_reconnect_in, impl_->opts.restart_try_for);
  // Poll with a short yield: the frames are written by the loops, and a stuck client must not
  // hold the shutdown past the deadline.
  const auto deadline = std::chrono::steady_clock::now() + flush_timeout;
  while (!impl_->relay.all_writes_idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Then close every client: WebSocket clients get a 1001 (going away) close frame and a moment
  // to answer it, within the same deadline.
  impl_->relay.close_all(server::CloseCode::kGoingAway, "relay shutting down");
  while (impl_->relay.connection_count() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop();
}

void Server::set_health(std::string problem) {
  if (impl_) impl_->relay.set_health(std::move(problem));
}

Result<size_t> Server::reload_allow_keys() { return impl_->relay.admission().load_allow_keys(); }

Result<std::string> Server::Impl::apply_fault(std::string_view spec) {
  auto f = server::parse_fault(spec);
  if (!f) return std::move(f).error();
  using K = server::FaultSpec::Kind;
  std::string done;
  auto not_connected = [&] {
    return Error(ErrorKind::kUsage,
                 fmt::format("fault {:?}: {} is not connected", spec, f->key.to_string()));
  };
  switch (f->kind) {
    case K::kClear: {
      relay.faults().set_drop_percent(0);
      relay.faults().set_latency(std::chrono::milliseconds(0));
      const size_t resumed = relay.unstall(nullptr);
      done =
          fmt::format("drop and latency faults cleared, {} stalled connection(s) resumed", resumed);
      break;
    }
    case K::kHealth:
      relay.set_health(f->text);
      done = f->text.empty() ? "health cleared" : fmt::format("health set to {:?}", f->text);
      break;
    case K::kRestart:
      relay.broadcast_restarting(static_cast<uint32_t>(f->reconnect_in.count()),
                                 static_cast<uint32_t>(f->try_for.count()));
      done = fmt::format("sent ServerRestarting (reconnect in {} ms, try for {} ms)",
                         f->reconnect_in.count(), f->try_for.count());
      break;
    case K::kDrop:
      relay.faults().set_drop_percent(f->percent);
      done = fmt::format("dropping {}% of packets", f->percent);
      break;
    case K::kLatency:
      relay.faults().set_latency(f->latency);
      done = fmt::format("adding {} ms to every write", f->latency.count());
      break;
    case K::kClose:
      if (!relay.close_peer(f->key)) return not_connected();
      done = fmt::format("closed {}", f->key.to_string());
      break;
    case K::kStall:
      if (!relay.stall(f->key)) return not_connected();
      done = fmt::format("stopped reading from {}", f->key.to_string());
      break;
    case K::kUnstall:
      if (relay.unstall(&f->key) == 0) {
        if (!relay.connected(f->key)) return not_connected();
        done = fmt::format("{} was not stalled", f->key.to_string());
      } else {
        done = fmt::format("reading from {} again", f->key.to_string());
      }
      break;
    case K::kChurn:
      if (!relay.churn(f->key)) return not_connected();
      done = fmt::format("{} marked as a fighting duplicate", f->key.to_string());
      break;
  }
  if (opts.log) opts.log("fault: " + done);
  return done;
}

Result<std::string> Server::apply_fault(std::string_view spec) { return impl_->apply_fault(spec); }

server::RouteHooks Server::Impl::route_hooks() {
  server::RouteHooks h;
  h.home = opts.home;
  h.status_json = [this](bool debug_allowed) { return status_json(debug_allowed); };
  if (opts.fault_endpoint) h.fault = [this](std::string_view spec) { return apply_fault(spec); };
  h.debug_allow = debug_allow;
  if (bootstrap_dns)
    h.bootstrap_dns = [this](std::string_view q) { return bootstrap_dns->json(q); };
  return h;
}

std::string Server::Impl::status_json(bool debug_allowed) const {
  server::StatusInfo info;
  info.version = DERP_VERSION_STRING;
  info.server_key = public_key.to_string();
  info.uptime_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started)
          .count();
  info.counters = server::snapshot_counters(stats, relay);
  info.stun = stun.has_value();
  if (mesh) info.mesh = mesh->status();
  if (tls) info.tls_not_after = tls->not_after();
  info.now_unix = static_cast<int64_t>(std::time(nullptr));
  {
    std::lock_guard lk(history_mu);
    info.history = history.points();
    info.history_capacity = history.capacity();
  }
  return server::render_status_json(info, debug_allowed);
}

void Server::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  if (impl_->mesh) impl_->mesh->stop();  // its links hold chunks and forwarders: before the loops
  // Close the listener on its loop (the acceptor is not thread-safe), then stop every loop.
  asio::post(*impl_->loops[0], [raw = impl_.get()] {
    boost::system::error_code ec;
    raw->acceptor->close(ec);
    if (raw->http_acceptor) raw->http_acceptor->close(ec);
    if (raw->stun) raw->stun->close();
    if (raw->metrics) raw->metrics->close();
    if (raw->sampler) raw->sampler->cancel();
    for (auto* r : {&raw->accept_retry, &raw->http_accept_retry}) {
      if (r->timer) r->timer->cancel();
    }
  });
  impl_->guards.clear();
  for (auto& loop : impl_->loops) loop->stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->acceptor.reset();
  impl_->http_acceptor.reset();
  impl_->stun.reset();  // its socket belongs to loops[0]: destroy it before the loop
  impl_->metrics.reset();
  impl_->sampler.reset();  // its timer belongs to loops[0]
  impl_->accept_retry.timer.reset();
  impl_->http_accept_retry.timer.reset();
  // Connections are owned by the tables and by their pending handlers: drop the tables, then
  // destroying each loop destroys its handlers and with them the connections and sockets.
  impl_->relay.clear();
  // Admission workers post their answers to the loops and their jobs hold connections: end
  // them while the (stopped) loops still exist.
  impl_->relay.admission().stop();
  impl_->loops.clear();
  impl_->bootstrap_dns.reset();
}

}  // namespace derp
