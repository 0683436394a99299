#include "bench/conn.h"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <cstring>

#include "derp/handshake.h"
#include "net/http_upgrade_client.h"
#include "net/url.h"
#include "net/awaitable.h"

namespace derp::bench {

using net::kTuple;

namespace {

std::string lower_first(std::string s) {
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s;
}

Error io_error(ErrorKind kind, const std::string& what, const boost::system::error_code& ec) {
  return Error(kind, what + ": " + lower_first(ec.message()), ec);
}

}  // namespace

Result<Target> make_target(const std::string& url_text, const std::string& ca_file, bool insecure,
                           const std::string& cert_name, const std::optional<NodePublic>& pin) {
  auto url = net::parse_derp_url(url_text);
  if (!url) return url.error();
  Target t;
  t.tls = url->tls;
  t.host_port = url->host_port();
  t.url = url->to_string();
  t.server_key = pin;
  t.upgrade_request = net::build_upgrade_request(*url, "derp-bench/" DERP_VERSION_STRING);

  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(url->host, std::to_string(url->port), ec);
  if (ec || results.empty()) {
    return io_error(ErrorKind::kDns, "resolve " + url->host, ec);
  }
  t.endpoint = results.begin()->endpoint();

  if (cert_name.rfind("sha256-raw:", 0) == 0) {
    return Error(ErrorKind::kUsage,
                 "--cert-name sha256-raw: pins are not supported by derp-bench (use --ca-file or "
                 "--insecure)");
  }
  if (t.tls) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    // Buffers only while a record is in flight: what an idle TLS connection costs a client.
    SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
    if (insecure) {
      ctx->set_verify_mode(asio::ssl::verify_none);
    } else {
      ctx->set_default_verify_paths(ec);
      if (!ca_file.empty()) {
        ctx->load_verify_file(ca_file, ec);
        if (ec) return io_error(ErrorKind::kUsage, "--ca-file " + ca_file, ec);
      }
      ctx->set_verify_mode(asio::ssl::verify_peer);
      ctx->set_verify_callback(
          asio::ssl::host_name_verification(cert_name.empty() ? url->host : cert_name));
    }
    t.tls_context = std::move(ctx);
    boost::system::error_code aec;
    asio::ip::make_address(url->host, aec);
    if (aec) t.sni = url->host;  // no SNI for IP literals, as Go's client
  }
  return t;
}

Conn::Conn(asio::io_context& io, bool tls, const std::shared_ptr<asio::ssl::context>& ctx,
           size_t read_buffer)
    : rbuf_(read_buffer) {
  if (tls) {
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(io, *ctx);
  } else {
    plain_.emplace(io);
  }
}

Conn::~Conn() = default;

tcp::socket& Conn::socket() { return tls_ ? tls_->next_layer() : *plain_; }

bool Conn::is_open() const { return tls_ ? tls_->next_layer().is_open() : plain_->is_open(); }

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

asio::awaitable<Result<void>> Conn::dial(const Target& target, const NodePrivate& key) {
  const std::string where = target.host_port;
  {
    auto [ec] = co_await socket().async_connect(target.endpoint, kTuple);
    if (ec) co_return io_error(ErrorKind::kConnect, "connect to " + where, ec);
    socket().set_option(tcp::no_delay(true), ec);
  }
  if (tls_) {
    if (!target.sni.empty()) SSL_set_tlsext_host_name(tls_->native_handle(), target.sni.c_str());
    auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, kTuple);
    if (ec) co_return io_error(ErrorKind::kTls, "TLS handshake with " + where, ec);
  }

  // HTTP upgrade: the request is libderp's; Beast parses the response head.
  boost::system::error_code ec;
  const std::span<const uint8_t> request(
      reinterpret_cast<const uint8_t*>(target.upgrade_request.data()),
      target.upgrade_request.size());
  co_await write_all(request, ec);
  if (ec) co_return io_error(ErrorKind::kIo, "write upgrade request to " + where, ec);
  boost::beast::flat_buffer hbuf;
  namespace http = boost::beast::http;
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
    co_return Error(ErrorKind::kHttp,
                    "HTTP " + std::to_string(status) + " from " + where + " (expected 101)");
  }
  const size_t extra = hbuf.size();
  if (extra > rbuf_.size()) rbuf_.resize(extra);
  std::memcpy(rbuf_.data(), hbuf.data().data(), extra);
  pending_off_ = 0;
  pending_len_ = extra;

  // DERP handshake: ServerKey → ClientInfo → ServerInfo.
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

asio::awaitable<std::span<const uint8_t>> Conn::read_some(boost::system::error_code& ec) {
  ec = {};
  if (pending_len_ > 0) {
    std::span<const uint8_t> out(rbuf_.data() + pending_off_, pending_len_);
    pending_len_ = 0;
    co_return out;
  }
  size_t n = 0;
  if (tls_) {
    std::tie(ec, n) = co_await tls_->async_read_some(asio::buffer(rbuf_), kTuple);
  } else {
    std::tie(ec, n) = co_await plain_->async_read_some(asio::buffer(rbuf_), kTuple);
  }
  if (ec) co_return std::span<const uint8_t>();
  co_return std::span<const uint8_t>(rbuf_.data(), n);
}

asio::awaitable<void> Conn::write_all(std::span<const uint8_t> bytes,
                                      boost::system::error_code& ec) {
  size_t n = 0;
  if (tls_) {
    std::tie(ec, n) =
        co_await asio::async_write(*tls_, asio::buffer(bytes.data(), bytes.size()), kTuple);
  } else {
    std::tie(ec, n) =
        co_await asio::async_write(*plain_, asio::buffer(bytes.data(), bytes.size()), kTuple);
  }
  (void)n;
}

}  // namespace derp::bench
