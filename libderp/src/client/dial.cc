#include "client/dial.h"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/this_coro.hpp>

#include "net/dial_race.h"
#include "net/error_text.h"
#include "net/endpoint_text.h"
#include "net/http_upgrade_client.h"
#include "net/tcp_keepalive.h"
#include "net/ws_client.h"

namespace derp::client {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Go's dialNode: each node gets 1.5 s to accept TCP before the next one is tried.
constexpr std::chrono::milliseconds kNodeDialBudget{1500};
// Go's "prefer IPv6" head start.
constexpr std::chrono::milliseconds kIpv4Delay{200};

std::vector<net::DialAttempt> node_attempts(const DERPNode& node, bool prefer_ipv6) {
  std::vector<net::DialAttempt> out;
  auto v6 = node_dial_target(node, IpFamily::kV6);
  auto v4 = node_dial_target(node, IpFamily::kV4);
  if (v6.kind != derp::DialTarget::Kind::kSkip) {
    out.push_back({v6.host, net::FamilyFilter::kV6, std::chrono::milliseconds(0)});
  }
  if (v4.kind != derp::DialTarget::Kind::kSkip) {
    out.push_back(
        {v4.host, net::FamilyFilter::kV4, prefer_ipv6 ? kIpv4Delay : std::chrono::milliseconds(0)});
  }
  return out;
}

// Adopts the file descriptor a custom dialer returned.
Result<net::DialResult> adopt_fd(asio::any_io_executor ex, int fd, const std::string& where) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Error(ErrorKind::kConnect, "connect to " + where + ": the custom dialer returned an "
                                      "invalid socket");
  }
  tcp::socket s(ex);
  boost::system::error_code ec;
  s.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return Error(ErrorKind::kConnect,
                 "connect to " + where + ": custom dialer socket: " + net::lower_first(ec.message()),
                 ec);
  }
  net::DialResult r(std::move(s));
  auto remote = r.socket.remote_endpoint(ec);
  if (!ec) r.remote = net::endpoint_string(remote);
  return r;
}

asio::awaitable<Result<net::DialResult>> connect_target_tcp(const DialSettings& s,
                                                            const ServerTarget& t,
                                                            net::DialDeadline& deadline) {
  const std::string where = t.url.host_port();
  if (s.url_dialer) {
    auto ex = co_await asio::this_coro::executor;
    auto fd = s.url_dialer(t.url.host, t.url.port);
    if (!fd) co_return fd.error().wrap("custom dialer for " + where);
    co_return adopt_fd(ex, *fd, where);
  }
  if (t.proxy) {
    // The proxy resolves and dials the relay: one TCP connect to the proxy, then CONNECT.
    std::vector<net::DialAttempt> one{{t.proxy->host, net::FamilyFilter::kAny, {}}};
    auto r = co_await net::dial_race(std::move(one), t.proxy->port,
                                     "proxy " + t.proxy->host_port(), deadline,
                                     std::chrono::milliseconds(0), s.dns_cache);
    if (!r) co_return r.error().wrap("proxy " + t.proxy->display);
    auto ok = co_await net::proxy_connect(r->socket, *t.proxy, t.url.host, t.url.port, deadline);
    if (!ok) co_return std::move(ok).error();
    co_return std::move(r);
  }
  if (!t.node) {
    std::vector<net::DialAttempt> one{{t.url.host, net::FamilyFilter::kAny, {}}};
    co_return co_await net::dial_race(std::move(one), t.url.port, where, deadline,
                                      std::chrono::milliseconds(0), s.dns_cache);
  }
  auto attempts = node_attempts(*t.node, s.prefer_ipv6);
  if (attempts.empty()) {
    co_return Error(ErrorKind::kConnect, "node " + t.node->name +
                                             ": both IPv4 and IPv6 are disabled (\"none\")");
  }
  co_return co_await net::dial_race(std::move(attempts), t.url.port, where, deadline,
                                    kNodeDialBudget, s.dns_cache);
}

// Every TCP connection the client makes (direct, proxy, custom dialer) gets keepalive, so a
// peer that vanished without a FIN is noticed by the kernel even when nothing is being sent.
asio::awaitable<Result<net::DialResult>> dial_target_tcp(const DialSettings& s,
                                                         const ServerTarget& t,
                                                         net::DialDeadline& deadline) {
  auto r = co_await connect_target_tcp(s, t, deadline);
  if (r) net::set_tcp_keepalive(r->socket.native_handle(), s.tcp_keepalive);
  co_return std::move(r);
}

}  // namespace

namespace {

Result<std::optional<net::ProxyConfig>> proxy_for(const ClientOptions& o, const net::DerpUrl& u) {
  if (!o.proxy.empty()) {
    auto p = net::parse_proxy_url(o.proxy);
    if (!p) return std::move(p).error();
    return std::optional<net::ProxyConfig>(std::move(*p));
  }
  if (!o.proxy_from_environment) return std::optional<net::ProxyConfig>();
  return net::proxy_from_environment(u.host, u.tls);
}

}  // namespace

Result<std::vector<ServerTarget>> make_dial_targets(const ClientOptions& o) {
  std::vector<ServerTarget> out;
  if (!o.region) {
    auto url = net::parse_derp_url(o.server_url);
    if (!url) return std::move(url).error();
    ServerTarget t;
    t.url = std::move(*url);
    if (t.url.tls) {
      auto ctx = net::make_tls_client_context(
          {.ca_file = o.ca_file, .insecure = o.insecure, .cert_name = o.cert_name});
      if (!ctx) return std::move(ctx).error();
      t.tls = std::move(*ctx);
    }
    auto proxy = proxy_for(o, t.url);
    if (!proxy) return std::move(proxy).error();
    t.proxy = std::move(*proxy);
    out.push_back(std::move(t));
    return out;
  }
  const DERPRegion& r = *o.region;
  const std::string label = "region " + std::to_string(r.region_id);
  for (const auto& node : r.nodes) {
    if (node.stun_only) continue;
    ServerTarget t;
    std::string url_text = node_url(node);
    if (o.region_plain_http) url_text = "http://" + url_text.substr(std::string("https://").size());
    auto url = net::parse_derp_url(url_text);
    if (!url) return url.error().wrap(label + ": node " + node.name);
    t.url = std::move(*url);
    t.url.port = static_cast<uint16_t>(node_derp_port(node));  // DERPPort even for http://
    t.url.explicit_port = node_derp_port(node) != (t.url.tls ? 443 : 80);
    if (t.url.tls) {
      auto ctx = net::make_tls_client_context({.ca_file = o.ca_file,
                                               .insecure = o.insecure || node.insecure_for_tests,
                                               .cert_name = node.cert_name});
      if (!ctx) return ctx.error().wrap(label + ": node " + node.name);
      t.tls = std::move(*ctx);
    }
    t.node = node;
    auto proxy = proxy_for(o, t.url);
    if (!proxy) return proxy.error().wrap(label + ": node " + node.name);
    t.proxy = std::move(*proxy);
    // Ideal-Node names the region's first node (even a STUN-only one) when another answers.
    if (node.name != r.nodes.front().name) t.ideal_node = r.nodes.front().name;
    out.push_back(std::move(t));
  }
  if (out.empty()) return Error(ErrorKind::kUsage, label + ": no non-STUNOnly nodes");
  return out;
}

namespace {

struct Transport {
  std::unique_ptr<net::ClientStream> stream;
  std::optional<NodePublic> meta_key;
};

// TLS (when the target is https://) over a connected socket; fills the TLS facts of `rep`.
asio::awaitable<Result<Transport>> secure(const ServerTarget& t, tcp::socket socket,
                                          net::DialDeadline& deadline, ConnectReport& rep) {
  Transport out;
  if (!t.tls) {
    out.stream = net::make_tcp_client_stream(std::move(socket));
    co_return out;
  }
  const auto t0 = Clock::now();
  auto session = co_await net::tls_client_handshake(t.tls, std::move(socket), t.url.host,
                                                    t.url.host_port(), deadline);
  rep.tls = Clock::now() - t0;
  if (!session) co_return std::move(session).error();
  out.stream = std::move(session->stream);
  rep.tls_info = session->info;
  out.meta_key = session->meta_server_key;
  co_return out;
}

// The WebSocket upgrade over a transport; fills the HTTP phase of `rep`.
asio::awaitable<Result<std::unique_ptr<net::ClientStream>>> upgrade_websocket(
    const DialSettings& s, const ServerTarget& t, Transport tr, net::DialDeadline& deadline,
    ConnectReport& rep) {
  const auto t0 = Clock::now();
  auto ws = co_await net::websocket_upgrade(std::move(tr.stream), t.url, s.user_agent, deadline);
  rep.http = Clock::now() - t0;
  rep.transport = t.tls ? "websocket+tls" : "websocket";
  co_return std::move(ws);
}

}  // namespace

namespace {

// The targets in order until one accepts TCP (Go's dialRegion: the first node where a socket
// is established is used; its TLS or upgrade failing does not move on to the next node).
// Fills the TCP phase of `rep`.
asio::awaitable<Result<std::pair<const ServerTarget*, net::DialResult>>> dial_first_target(
    const DialSettings& s, net::DialDeadline& deadline, ConnectReport& rep) {
  std::optional<Error> first_error;
  for (const auto& t : *s.targets) {
    auto r = co_await dial_target_tcp(s, t, deadline);
    if (r) {
      rep.dns = r->dns;
      rep.tcp = r->tcp;
      rep.dns_cached = r->dns_cached;
      rep.custom_dialer = static_cast<bool>(s.url_dialer);
      rep.remote_addr = r->remote;
      rep.url = t.url.to_string();
      rep.node_name = t.node ? t.node->name : "";
      if (t.proxy) rep.proxy = t.proxy->display;
      co_return std::make_pair(&t, std::move(*r));
    }
    Error e = t.node ? r.error().wrap(s.region_label + ": node " + t.node->name) : r.error();
    if (deadline.expired()) co_return e;
    if (!first_error) first_error = e;
    if (s.log) s.log("derp client: " + e.message);
  }
  if (!first_error) co_return Error(ErrorKind::kUsage, "nothing to dial");
  co_return *first_error;
}

// TCP to the first target that answers, then TLS when it is https:// (refused with kUsage when
// `tls_only` and it is not). Sets out.target and the report's transport and addresses.
asio::awaitable<Result<Transport>> dial_secured(const DialSettings& s, net::DialDeadline& deadline,
                                                DialedStream& out, bool tls_only) {
  ConnectReport& rep = out.report;
  auto dialed_tcp = co_await dial_first_target(s, deadline, rep);
  if (!dialed_tcp) co_return std::move(dialed_tcp).error();
  const ServerTarget* used = dialed_tcp->first;
  out.target = used;
  if (tls_only && !used->tls) {
    co_return Error(ErrorKind::kUsage, "node " + rep.node_name + ": not an https:// node");
  }
  auto tr = co_await secure(*used, std::move(dialed_tcp->second.socket), deadline, rep);
  if (!tr) co_return std::move(tr).error();
  rep.transport = used->tls ? "tls" : "tcp";
  rep.local_addr = tr->stream->local_address();
  if (rep.remote_addr.empty()) rep.remote_addr = tr->stream->remote_address();
  co_return std::move(*tr);
}

}  // namespace

asio::awaitable<Result<DialedStream>> dial_tls_only(const DialSettings& s,
                                                   net::DialDeadline& deadline) {
  DialedStream out;
  auto tr = co_await dial_secured(s, deadline, out, /*tls_only=*/true);
  if (!tr) co_return std::move(tr).error();
  out.stream = std::move(tr->stream);
  co_return out;
}

asio::awaitable<Result<DialedStream>> dial_stream(const DialSettings& s,
                                                 net::DialDeadline& deadline) {
  DialedStream out;
  ConnectReport& rep = out.report;
  auto tr = co_await dial_secured(s, deadline, out, /*tls_only=*/false);
  if (!tr) co_return std::move(tr).error();
  const ServerTarget* used = out.target;

  if (s.websocket) {
    auto ws = co_await upgrade_websocket(s, *used, std::move(*tr), deadline, rep);
    if (!ws) co_return std::move(ws).error();
    out.stream = std::move(*ws);
    co_return out;
  }

  out.meta_key = tr->meta_key;
  out.stream = std::move(tr->stream);
  rep.fast_start = out.meta_key.has_value();
  if (out.meta_key) co_return out;  // the upgrade request goes out with ClientInfo

  const auto t0 = Clock::now();
  unsigned status = 0;
  auto up = co_await net::http_upgrade(*out.stream, used->url, s.user_agent, deadline,
                                       used->ideal_node, &status);
  rep.http = Clock::now() - t0;
  if (up) {
    out.leftover = std::move(up->leftover);
    co_return out;
  }
  // 426 is derper's answer to a /derp request without an Upgrade it knows: something between
  // us stripped "Upgrade: DERP". Proxies that do that usually pass WebSocket: retry once.
  if (status != 426 || deadline.expired()) co_return std::move(up).error();
  const Error first = up.error();
  out.stream->close();
  if (s.log) s.log("derp client: " + first.message + ": a proxy stripped Upgrade: DERP; retrying over WebSocket");
  // When the retry fails too, the 426 stays the error (its layer is what the operator must fix);
  // the retry's failure is appended.
  auto retry_failed = [&](const Error& e) {
    return Error(first.kind,
                 first.message + " (a proxy stripped Upgrade: DERP?; retrying over WebSocket "
                                 "failed: " + e.message + ")",
                 first.cause);
  };
  auto again = co_await dial_target_tcp(s, *used, deadline);
  if (!again) co_return retry_failed(again.error());
  ConnectReport retry = rep;
  retry.dns = again->dns;
  retry.tcp = again->tcp;
  retry.remote_addr = again->remote;
  auto tr2 = co_await secure(*used, std::move(again->socket), deadline, retry);
  if (!tr2) co_return retry_failed(tr2.error());
  retry.local_addr = tr2->stream->local_address();
  if (retry.remote_addr.empty()) retry.remote_addr = tr2->stream->remote_address();
  auto ws = co_await upgrade_websocket(s, *used, std::move(*tr2), deadline, retry);
  if (!ws) co_return retry_failed(ws.error());
  retry.note = "a proxy stripped Upgrade: DERP; retried over WebSocket";
  out.report = std::move(retry);
  out.stream = std::move(*ws);
  out.meta_key.reset();
  co_return out;
}

}  // namespace derp::client
