#include "bench/conn.h"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cctype>
#include <cstring>
#include <sstream>
#include <string_view>

#include "derp/handshake.h"
#include "net/awaitable.h"
#include "net/http_proxy.h"
#include "net/http_upgrade_client.h"
#include "net/tls_client.h"
#include "net/url.h"

namespace derp::bench {

using net::kTuple;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

namespace {

// Go's dialNode: each node gets 1.5 s to accept TCP before the next one is tried.
constexpr std::chrono::milliseconds kNodeProbeBudget{1500};

std::string lower_first(std::string s) {
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s;
}

Error io_error(ErrorKind kind, const std::string& what, const boost::system::error_code& ec) {
  return Error(kind, what + ": " + lower_first(ec.message()), ec);
}

std::string bracket(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

constexpr std::string_view kPinPrefix = "sha256-raw:";

// TLS ≥ 1.2 with OpenSSL's release-buffers mode, verifying `verify_name` (unless insecure), or,
// for a "sha256-raw:<hex>" pin, nothing during the handshake: net::check_certificate_pin()
// decides after it.
Result<std::shared_ptr<asio::ssl::context>> make_tls_context(const std::string& ca_file,
                                                             bool insecure,
                                                             const std::string& verify_name,
                                                             std::string* pin_hex) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  // Buffers only while a record is in flight: what an idle TLS connection costs a client.
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  if (insecure) {
    ctx->set_verify_mode(asio::ssl::verify_none);
    return ctx;
  }
  if (verify_name.starts_with(kPinPrefix)) {
    std::string hex = verify_name.substr(kPinPrefix.size());
    bool ok = hex.size() == 64;
    for (char& c : hex) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!std::isxdigit(static_cast<unsigned char>(c))) ok = false;
    }
    if (!ok) {
      return Error(ErrorKind::kUsage, "certificate pin \"" + verify_name +
                                          "\": expected sha256-raw: and 64 hex digits");
    }
    *pin_hex = hex;
    ctx->set_verify_mode(asio::ssl::verify_none);
    return ctx;
  }
  boost::system::error_code ec;
  ctx->set_default_verify_paths(ec);
  if (!ca_file.empty()) {
    ctx->load_verify_file(ca_file, ec);
    if (ec) return io_error(ErrorKind::kUsage, "--ca-file " + ca_file, ec);
  }
  ctx->set_verify_mode(asio::ssl::verify_peer);
  ctx->set_verify_callback(asio::ssl::host_name_verification(verify_name));
  return ctx;
}

// The proxy for this target: --proxy, else the environment (HTTPS_PROXY for https://,
// HTTP_PROXY otherwise, NO_PROXY and loopback exempt), as libderp's client chooses it.
Result<std::optional<net::ProxyConfig>> choose_proxy(const TargetOptions& o,
                                                     const std::string& host, bool tls) {
  if (!o.proxy.empty()) {
    auto p = net::parse_proxy_url(o.proxy);
    if (!p) return p.error().wrap("--proxy");
    return std::optional<net::ProxyConfig>(std::move(*p));
  }
  return net::proxy_from_environment(host, tls);
}

// The proxy's first address, and the CONNECT request for host:port.
Result<void> route_through_proxy(Target& t, const net::ProxyConfig& p, const std::string& host,
                                 uint16_t port) {
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(p.host, std::to_string(p.port), ec);
  if (ec || results.empty()) return io_error(ErrorKind::kDns, "resolve proxy " + p.host, ec);
  t.endpoint = results.begin()->endpoint();
  t.proxy = p.display;
  const std::string authority = bracket(host) + ":" + std::to_string(port);
  http::request<http::empty_body> req{http::verb::connect, authority, 11};
  req.set(http::field::host, authority);
  req.set(http::field::user_agent, "derp-bench/" DERP_VERSION_STRING);
  if (!p.authorization.empty()) req.set(http::field::proxy_authorization, p.authorization);
  std::ostringstream out;
  out << req;
  t.connect_request = out.str();
  return Result<void>();
}

// Whether `ep` accepts a TCP connection within `budget` (the connection is closed again).
boost::system::error_code probe_tcp(const tcp::endpoint& ep, std::chrono::milliseconds budget) {
  asio::io_context io;
  tcp::socket s(io);
  asio::steady_timer timer(io, budget);
  bool done = false, timed_out = false;
  boost::system::error_code result;
  s.async_connect(ep, [&](const boost::system::error_code& ec) {
    done = true;
    result = ec;
    timer.cancel();
  });
  timer.async_wait([&](const boost::system::error_code& ec) {
    if (ec || done) return;
    timed_out = true;
    boost::system::error_code ignored;
    s.close(ignored);
  });
  io.run();
  if (timed_out) return asio::error::timed_out;
  return result;
}

// The addresses PROTOCOL.md §7.5 says to dial for a node: IPv6 first, then IPv4, each from the
// IPv6/IPv4 field when it holds an IP, from resolving HostName when it is empty.
Result<std::vector<tcp::endpoint>> node_endpoints(const DERPNode& node, uint16_t port) {
  std::vector<tcp::endpoint> out;
  std::optional<Error> dns_error;
  asio::io_context io;
  tcp::resolver resolver(io);
  for (auto family : {IpFamily::kV6, IpFamily::kV4}) {
    const DialTarget d = node_dial_target(node, family);
    if (d.kind == DialTarget::Kind::kSkip) continue;
    boost::system::error_code ec;
    if (d.kind == DialTarget::Kind::kDialIp) {
      auto ip = asio::ip::make_address(d.host, ec);
      if (!ec) out.emplace_back(ip, port);
      continue;
    }
    auto results = resolver.resolve(family == IpFamily::kV6 ? tcp::v6() : tcp::v4(), d.host,
                                    std::to_string(port), ec);
    if (ec) {
      if (!dns_error) dns_error = io_error(ErrorKind::kDns, "resolve " + d.host, ec);
      continue;
    }
    for (const auto& r : results) out.push_back(r.endpoint());
  }
  if (out.empty()) {
    if (dns_error) return *dns_error;
    return Error(ErrorKind::kConnect, "both IPv4 and IPv6 are disabled (\"none\")");
  }
  return out;
}

// The TLS side of a target once its URL and verify name are known.
Result<void> prepare_tls(Target& t, const net::DerpUrl& url, const std::string& ca_file,
                         bool insecure, const std::string& cert_name) {
  if (!t.tls) return Result<void>();
  auto ctx = make_tls_context(ca_file, insecure, cert_name.empty() ? url.host : cert_name,
                              &t.pin_hex);
  if (!ctx) return ctx.error();
  t.tls_context = std::move(*ctx);
  t.pin_host = url.host;
  boost::system::error_code aec;
  asio::ip::make_address(url.host, aec);
  if (aec) t.sni = url.host;  // no SNI for IP literals, as Go's client
  return Result<void>();
}

void describe_url(Target& t, const net::DerpUrl& url, const TargetOptions& o,
                  std::string_view ideal_node = {}) {
  t.tls = url.tls;
  t.websocket = o.websocket;
  t.host_port = url.host_port();
  t.url = url.to_string();
  t.server_key = o.pin;
  t.http_host = url.host_header();
  t.http_target = url.target;
  t.upgrade_request =
      net::build_upgrade_request(url, "derp-bench/" DERP_VERSION_STRING, false, ideal_node);
}

Result<Target> make_url_target(const TargetOptions& o) {
  auto url = net::parse_derp_url(o.url);
  if (!url) return url.error();
  Target t;
  describe_url(t, *url, o);
  auto proxy = choose_proxy(o, url->host, url->tls);
  if (!proxy) return proxy.error();
  if (*proxy) {
    // The proxy resolves and dials the relay: its name may be one only the proxy knows.
    if (auto r = route_through_proxy(t, **proxy, url->host, url->port); !r) return r.error();
  } else {
    asio::io_context io;
    tcp::resolver resolver(io);
    boost::system::error_code ec;
    auto results = resolver.resolve(url->host, std::to_string(url->port), ec);
    if (ec || results.empty()) return io_error(ErrorKind::kDns, "resolve " + url->host, ec);
    t.endpoint = results.begin()->endpoint();
  }
  if (auto r = prepare_tls(t, *url, o.ca_file, o.insecure, o.cert_name); !r) return r.error();
  return t;
}

// libderp's client rules for a region (client/dial.cc make_dial_targets): nodes in order,
// STUNOnly ones skipped, https://HostName:DERPPort/derp, CertName as the verified name,
// InsecureForTests as --insecure, Ideal-Node; the first node that accepts TCP is the one used
// (tried one address after the other here, where the client races IPv6 and IPv4).
Result<Target> make_region_target(const TargetOptions& o) {
  const DERPRegion& region = *o.region;
  const std::string label = "region " + std::to_string(region.region_id);
  std::optional<Error> first_error;
  bool any = false;
  for (const auto& node : region.nodes) {
    if (node.stun_only) continue;
    any = true;
    const std::string where = label + ": node " + node.name;
    auto url = net::parse_derp_url(node_url(node));
    if (!url) return url.error().wrap(where);
    url->port = static_cast<uint16_t>(node_derp_port(node));
    Target t;
    // Ideal-Node names the region's first node (even a STUN-only one) when another is used.
    describe_url(t, *url, o,
                 node.name != region.nodes.front().name ? region.nodes.front().name : "");
    t.region = region.region_id;
    t.node = node.name;
    if (auto r = prepare_tls(t, *url, o.ca_file, o.insecure || node.insecure_for_tests,
                             node.cert_name);
        !r) {
      return r.error().wrap(where);
    }
    auto proxy = choose_proxy(o, url->host, url->tls);
    if (!proxy) return proxy.error().wrap(where);
    if (*proxy) {
      if (auto r = route_through_proxy(t, **proxy, url->host, url->port); !r) {
        return r.error().wrap(where);
      }
      return t;
    }
    auto endpoints = node_endpoints(node, url->port);
    if (!endpoints) {
      if (!first_error) first_error = endpoints.error().wrap(where);
      continue;
    }
    for (const auto& ep : *endpoints) {
      auto ec = probe_tcp(ep, kNodeProbeBudget);
      if (!ec) {
        t.endpoint = ep;
        return t;
      }
      if (!first_error) {
        first_error = io_error(ec == asio::error::timed_out ? ErrorKind::kTimeout
                                                            : ErrorKind::kConnect,
                               where + ": connect to " + url->host_port(), ec);
      }
    }
  }
  if (!any) return Error(ErrorKind::kUsage, label + ": no non-STUNOnly nodes");
  return *first_error;
}

}  // namespace

std::string Target::transport() const {
  if (websocket) return tls ? "websocket+tls" : "websocket";
  return tls ? "tls" : "tcp";
}

Result<Target> make_target(const TargetOptions& o) {
  if (o.region) return make_region_target(o);
  return make_url_target(o);
}

Conn::Conn(asio::io_context& io, bool tls, bool websocket,
           const std::shared_ptr<asio::ssl::context>& ctx, size_t read_buffer,
           size_t ws_write_buffer)
    : ws_write_buffer_(ws_write_buffer), rbuf_(read_buffer) {
  if (websocket && tls) {
    wss_ = std::make_unique<WssStream>(io, *ctx);
  } else if (websocket) {
    ws_ = std::make_unique<WsStream>(io);
  } else if (tls) {
    tls_ = std::make_unique<TlsStream>(io, *ctx);
  } else {
    plain_.emplace(io);
  }
}

Conn::~Conn() = default;

tcp::socket& Conn::socket() {
  if (wss_) return wss_->next_layer().next_layer();
  if (ws_) return ws_->next_layer();
  if (tls_) return tls_->next_layer();
  return *plain_;
}

const tcp::socket& Conn::socket() const {
  if (wss_) return wss_->next_layer().next_layer();
  if (ws_) return ws_->next_layer();
  if (tls_) return tls_->next_layer();
  return *plain_;
}

Conn::TlsStream* Conn::tls_layer() {
  if (wss_) return &wss_->next_layer();
  return tls_.get();
}

bool Conn::is_open() const { return socket().is_open(); }

void Conn::close() {
  boost::system::error_code ec;
  socket().close(ec);
}

asio::awaitable<Result<void>> Conn::dial_raw(const tcp::endpoint& ep,
                                             std::span<const uint8_t> hello) {
  auto [ec] = co_await socket().async_connect(ep, kTuple);
  if (ec) co_return io_error(ErrorKind::kConnect, "connect to forwarder", ec);
  socket().set_option(tcp::no_delay(true), ec);
  co_await write_all(hello, ec);
  if (ec) co_return io_error(ErrorKind::kIo, "write to forwarder", ec);
  co_return Result<void>();
}

// CONNECT host:port through the proxy; Beast parses the answer's head.
asio::awaitable<Result<void>> Conn::proxy_connect(const Target& target) {
  const std::string what = "proxy " + target.proxy + ": CONNECT " + target.host_port;
  auto [wec, wn] = co_await asio::async_write(socket(), asio::buffer(target.connect_request),
                                              kTuple);
  (void)wn;
  if (wec) co_return io_error(ErrorKind::kIo, what, wec);
  beast::flat_buffer buf;
  http::response_parser<http::empty_body> head;
  head.skip(true);  // a 2xx to CONNECT has no body: the tunnel follows the head
  auto [ec, n] = co_await http::async_read_header(socket(), buf, head, kTuple);
  (void)n;
  if (ec == asio::error::eof || ec == http::error::end_of_stream) {
    co_return Error(ErrorKind::kHttp, what + ": the proxy closed the connection", ec);
  }
  if (ec) {
    const bool io_level = ec.category() == boost::system::system_category();
    co_return io_error(io_level ? ErrorKind::kIo : ErrorKind::kHttp, what, ec);
  }
  const unsigned status = head.get().result_int();
  if (status < 200 || status > 299) {
    Error e(ErrorKind::kHttp, what + " answered " + std::to_string(status) + " " +
                                  std::string(head.get().reason()));
    e.http_status = static_cast<int>(status);
    co_return e;
  }
  if (buf.size() > 0) {
    // The relay never speaks first (TLS and the upgrade start with us): bytes here are junk.
    co_return Error(ErrorKind::kHttp, what + ": the proxy sent " + std::to_string(buf.size()) +
                                          " bytes after its response, before the tunnel was used");
  }
  co_return Result<void>();
}

// DERP's own upgrade: the request is libderp's; Beast parses the response head. Bytes after the
// head are the start of the DERP stream.
asio::awaitable<Result<void>> Conn::derp_upgrade(const Target& target) {
  const std::string& where = target.host_port;
  boost::system::error_code ec;
  const std::span<const uint8_t> request(
      reinterpret_cast<const uint8_t*>(target.upgrade_request.data()),
      target.upgrade_request.size());
  co_await write_all(request, ec);
  if (ec) co_return io_error(ErrorKind::kIo, "write upgrade request to " + where, ec);
  beast::flat_buffer hbuf;
  http::response_parser<http::empty_body> parser;
  parser.skip(true);  // a 101 has no body; anything after the head is DERP
  if (tls_) {
    std::tie(ec, std::ignore) = co_await http::async_read_header(*tls_, hbuf, parser, kTuple);
  } else {
    std::tie(ec, std::ignore) = co_await http::async_read_header(*plain_, hbuf, parser, kTuple);
  }
  if (ec) co_return io_error(ErrorKind::kHttp, "HTTP upgrade response from " + where, ec);
  const unsigned status = parser.get().result_int();
  if (status != 101) {
    Error e(ErrorKind::kHttp,
            "HTTP " + std::to_string(status) + " from " + where + " (expected 101)");
    e.http_status = static_cast<int>(status);
    co_return e;
  }
  const size_t extra = hbuf.size();
  if (extra > rbuf_.size()) rbuf_.resize(extra);
  std::memcpy(rbuf_.data(), hbuf.data().data(), extra);
  pending_off_ = 0;
  pending_len_ = extra;
  co_return Result<void>();
}

namespace {

// PROTOCOL.md §6.4: GET <target> with Upgrade: websocket and subprotocol derp, compression off;
// afterwards the DERP stream rides in binary messages whose boundaries mean nothing.
template <typename Ws>
asio::awaitable<Result<void>> ws_handshake(Ws& ws, const Target& target, size_t write_buffer) {
  const std::string& where = target.host_port;
  ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
    req.set(http::field::user_agent, "derp-bench/" DERP_VERSION_STRING);
    req.set(http::field::sec_websocket_protocol, "derp");
  }));
  ws.binary(true);
  ws.auto_fragment(false);       // one batch, one message, one frame
  ws.write_buffer_bytes(write_buffer);
  websocket::response_type res;
  auto [ec] = co_await ws.async_handshake(res, target.http_host, target.http_target, kTuple);
  if (ec == websocket::error::upgrade_declined) {
    std::string body = res.body();
    if (auto nl = body.find_first_of("\r\n"); nl != std::string::npos) body.resize(nl);
    if (body.empty()) body = "websocket upgrade refused";
    Error e(ErrorKind::kHttp,
            "HTTP " + std::to_string(res.result_int()) + " from " + where + ": " + body, ec);
    e.http_status = static_cast<int>(res.result_int());
    co_return e;
  }
  if (ec) {
    // Socket-level failures are I/O; anything Beast says about the response is HTTP.
    const bool io_level = ec.category() == boost::system::system_category() ||
                          ec == asio::error::eof || ec == asio::error::operation_aborted;
    co_return io_error(io_level ? ErrorKind::kIo : ErrorKind::kHttp,
                       "WebSocket upgrade with " + where, ec);
  }
  if (res[http::field::sec_websocket_protocol] != "derp") {
    co_return Error(ErrorKind::kHttp,
                    "WebSocket upgrade with " + where + ": the server did not select subprotocol derp");
  }
  co_return Result<void>();
}

}  // namespace

asio::awaitable<Result<void>> Conn::websocket_upgrade(const Target& target) {
  pending_off_ = 0;
  pending_len_ = 0;
  if (wss_) co_return co_await ws_handshake(*wss_, target, ws_write_buffer_);
  co_return co_await ws_handshake(*ws_, target, ws_write_buffer_);
}

asio::awaitable<Result<void>> Conn::dial(const Target& target, const NodePrivate& key) {
  const std::string where = target.host_port;
  {
    auto [ec] = co_await socket().async_connect(target.endpoint, kTuple);
    if (ec) {
      co_return io_error(ErrorKind::kConnect,
                         target.proxy.empty() ? "connect to " + where
                                              : "connect to proxy " + target.proxy,
                         ec);
    }
    socket().set_option(tcp::no_delay(true), ec);
  }
  if (!target.proxy.empty()) {
    auto r = co_await proxy_connect(target);
    if (!r) co_return r;
  }
  if (TlsStream* tls = tls_layer()) {
    if (!target.sni.empty()) SSL_set_tlsext_host_name(tls->native_handle(), target.sni.c_str());
    auto [ec] = co_await tls->async_handshake(asio::ssl::stream_base::client, kTuple);
    if (ec) co_return io_error(ErrorKind::kTls, "TLS handshake with " + where, ec);
    if (!target.pin_hex.empty()) {
      // As libderp's client: the pinned certificate must also be valid for the dialled host.
      if (auto why = net::check_certificate_pin(tls->native_handle(), target.pin_hex,
                                                target.pin_host)) {
        Error e(ErrorKind::kTls, "TLS handshake with " + where + ": " + *why);
        e.tls_reason = *why;
        co_return e;
      }
    }
  }
  if (ws_ || wss_) {
    auto r = co_await websocket_upgrade(target);
    if (!r) co_return r;
  } else {
    auto r = co_await derp_upgrade(target);
    if (!r) co_return r;
  }

  // DERP handshake: ServerKey → ClientInfo → ServerInfo.
  boost::system::error_code ec;
  std::optional<NodePublic> server;
  bool have_info = false;
  while (!have_info) {
    auto in = co_await read_some(ec);
    if (ec) co_return io_error(ErrorKind::kIo, "DERP handshake with " + where, ec);
    while (!in.empty() && !have_info) {
      auto f = reader_.next(in);
      if (!f) co_return f.error().wrap("DERP handshake with " + where);
      if (!*f) break;
      if (!server) {
        auto k = check_server_key_frame(**f, target.server_key);
        if (!k) co_return k.error().wrap("DERP handshake with " + where);
        server = *k;
        server_key_ = *k;
        ClientInfo info;
        info.app_name = "derp-bench";
        auto frame = encode_client_info_frame(key, *server, info);
        // Keep the unread rest (rare: nothing follows ServerKey before our ClientInfo).
        pending_off_ = static_cast<size_t>(in.data() - rbuf_.data());
        pending_len_ = in.size();
        co_await write_all(frame, ec);
        if (ec) co_return io_error(ErrorKind::kIo, "write ClientInfo to " + where, ec);
        in = std::span<const uint8_t>(rbuf_.data() + pending_off_, pending_len_);
        pending_len_ = 0;
      } else if ((*f)->frame_type() == FrameType::kServerInfo) {
        auto si = open_server_info(key, *server, (*f)->payload);
        if (!si) co_return si.error().wrap("DERP handshake with " + where);
        have_info = true;
      }
    }
    // Frames right behind ServerInfo belong to the traffic: hand them out on the next read.
    pending_off_ = in.empty() ? 0 : static_cast<size_t>(in.data() - rbuf_.data());
    pending_len_ = in.size();
  }
  co_return Result<void>();
}

namespace {

// Over WebSocket: whatever bytes of the current binary message are there (Beast reads large
// payloads straight into rbuf_); control frames are answered by Beast; a text message is an
// error (§6.4), an empty message is skipped.
template <typename Ws>
asio::awaitable<size_t> ws_read_some(Ws& ws, std::vector<uint8_t>& buf,
                                     boost::system::error_code& ec) {
  for (;;) {
    size_t n = 0;
    std::tie(ec, n) = co_await ws.async_read_some(asio::buffer(buf), kTuple);
    if (ec) co_return 0;
    if (ws.got_text()) {
      ec = asio::error::make_error_code(asio::error::invalid_argument);
      co_return 0;
    }
    if (n > 0) co_return n;
  }
}

}  // namespace

asio::awaitable<std::span<const uint8_t>> Conn::read_some(boost::system::error_code& ec) {
  ec = {};
  if (pending_len_ > 0) {
    std::span<const uint8_t> out(rbuf_.data() + pending_off_, pending_len_);
    pending_len_ = 0;
    co_return out;
  }
  size_t n = 0;
  if (wss_) {
    n = co_await ws_read_some(*wss_, rbuf_, ec);
  } else if (ws_) {
    n = co_await ws_read_some(*ws_, rbuf_, ec);
  } else if (tls_) {
    std::tie(ec, n) = co_await tls_->async_read_some(asio::buffer(rbuf_), kTuple);
  } else {
    std::tie(ec, n) = co_await plain_->async_read_some(asio::buffer(rbuf_), kTuple);
  }
  if (ec) co_return std::span<const uint8_t>();
  co_return std::span<const uint8_t>(rbuf_.data(), n);
}

asio::awaitable<void> Conn::write_all(std::span<const uint8_t> bytes,
                                      boost::system::error_code& ec) {
  const auto buf = asio::buffer(bytes.data(), bytes.size());
  size_t n = 0;
  if (wss_) {
    std::tie(ec, n) = co_await wss_->async_write(buf, kTuple);
  } else if (ws_) {
    std::tie(ec, n) = co_await ws_->async_write(buf, kTuple);
  } else if (tls_) {
    std::tie(ec, n) = co_await asio::async_write(*tls_, buf, kTuple);
  } else {
    std::tie(ec, n) = co_await asio::async_write(*plain_, buf, kTuple);
  }
  (void)n;
}

}  // namespace derp::bench
