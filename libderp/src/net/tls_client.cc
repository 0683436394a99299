#include "net/tls_client.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <vector>

#include "net/error_text.h"
#include "net/awaitable.h"

namespace derp::net {

namespace ssl = boost::asio::ssl;
using boost::system::error_code;

class TlsClientContext {
 public:
  explicit TlsClientContext(TlsClientConfig c) : config(std::move(c)) {}
  TlsClientConfig config;
  std::string pin_hex;  // lower-case; empty = no pin
  ssl::context ctx{ssl::context::tls_client};
};

namespace {

constexpr std::string_view kPinPrefix = "sha256-raw:";
constexpr std::string_view kMetaCnPrefix = "derpkey";

std::string openssl_reason(unsigned long code) {
  const char* r = ERR_reason_error_string(code);
  return r ? r : "error " + std::to_string(code);
}

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}

std::string cert_sha256_hex(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return "";
  return to_hex(md, len);
}

std::string common_name(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                     static_cast<size_t>(ASN1_STRING_length(data)));
}

bool is_meta_cert(X509* cert) { return common_name(cert).starts_with(kMetaCnPrefix); }

std::string name_rfc2253(X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return "";
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(n > 0 ? n : 0));
  BIO_free(bio);
  return s;
}

std::string iso_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// §6.3: CN "derpkey<64 hex>" with a serial that fits in 8 bits carries the relay's key.
std::optional<NodePublic> meta_key(STACK_OF(X509) * chain) {
  for (int i = 0; chain && i < sk_X509_num(chain); ++i) {
    X509* cert = sk_X509_value(chain, i);
    std::string cn = common_name(cert);
    if (!cn.starts_with(kMetaCnPrefix)) continue;
    int64_t serial = -1;
    if (ASN1_INTEGER_get_int64(&serial, X509_get0_serialNumber(cert)) != 1) continue;
    if (serial < 0 || serial > 255) continue;
    auto key = NodePublic::parse_hex(std::string_view(cn).substr(kMetaCnPrefix.size()));
    if (key) return *key;
  }
  return std::nullopt;
}

class TlsClientStream final : public ClientStream {
 public:
  TlsClientStream(asio::ip::tcp::socket socket, std::shared_ptr<TlsClientContext> ctx)
      : ctx_(std::move(ctx)), stream_(std::move(socket), ctx_->ctx) {
    error_code ec;
    auto& sock = stream_.next_layer();
    sock.set_option(asio::ip::tcp::no_delay(true), ec);  // pings measure RTT: no Nagle delay
    auto local = sock.local_endpoint(ec);
    if (!ec) local_ = endpoint_string(local);
    auto remote = sock.remote_endpoint(ec);
    if (!ec) remote_ = endpoint_string(remote);
  }

  ssl::stream<asio::ip::tcp::socket>& ssl_stream() { return stream_; }

  asio::awaitable<IoResult> read_some(asio::mutable_buffer buf) override {
    auto [ec, n] = co_await stream_.async_read_some(buf, kTuple);
    // A relay that drops TCP without close_notify has still just closed the connection.
    if (ec == ssl::error::stream_truncated) ec = asio::error::eof;
    co_return IoResult{ec, n};
  }

  asio::awaitable<IoResult> write_all(asio::const_buffer buf) override {
    auto [ec, n] = co_await asio::async_write(stream_, buf, kTuple);
    co_return IoResult{ec, n};
  }

  void close() override {
    error_code ec;
    auto& sock = stream_.next_layer();
    sock.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    sock.close(ec);
  }

  std::string local_address() const override { return local_; }
  std::string remote_address() const override { return remote_; }

 private:
  std::shared_ptr<TlsClientContext> ctx_;  // declared first: outlives stream_
  ssl::stream<asio::ip::tcp::socket> stream_;
  std::string local_;
  std::string remote_;
};

// Why the handshake failed, as the tail of a one-line message. `reason` gets OpenSSL's
// verification reason when certificate verification is what failed.
std::string handshake_failure(const error_code& ec, SSL* ssl, std::string* reason) {
  if (ec.category() == asio::error::get_ssl_category()) {
    const auto code = static_cast<unsigned long>(ec.value());
    long vr = SSL_get_verify_result(ssl);
    if (ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK) {
      *reason = X509_verify_cert_error_string(vr);
      return "certificate verify failed: " + *reason;
    }
    return openssl_reason(code);
  }
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
    return "server closed the connection (is it speaking TLS?)";
  }
  return lower_first(ec.message());
}

// A kTls error with its verification reason (built outside the coroutine: GCC 12 warns about
// an Error local in the coroutine frame).
Error tls_error(const std::string& where, const std::string& why, std::string reason,
                std::error_code ec = {}) {
  Error e(ErrorKind::kTls, "TLS handshake with " + where + ": " + why, ec);
  e.tls_reason = std::move(reason);
  return e;
}

Error handshake_error(const std::string& where, const error_code& ec, SSL* ssl) {
  std::string reason;
  std::string why = handshake_failure(ec, ssl, &reason);
  return tls_error(where, why, std::move(reason), ec);
}

}  // namespace

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::optional<std::string> check_certificate_pin(SSL* ssl, const std::string& pin_hex,
                                     const std::string& host) {
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  std::vector<X509*> certs;
  for (int i = 0; chain && i < sk_X509_num(chain); ++i) {
    X509* c = sk_X509_value(chain, i);
    if (!is_meta_cert(c)) certs.push_back(c);
  }
  if (certs.size() != 1) {
    return "certificate sha256 pin needs exactly one certificate, server sent " +
           std::to_string(certs.size());
  }
  X509* cert = certs[0];
  std::string got = cert_sha256_hex(cert);
  if (got != pin_hex) {
    return "certificate sha256 mismatch (expected " + pin_hex + ", got " + got + ")";
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) return "certificate expired";
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) return "certificate not yet valid";
  if (!host.empty()) {
    bool ok = is_ip_literal(host)
                  ? X509_check_ip_asc(cert, host.c_str(), 0) == 1
                  : X509_check_host(cert, host.data(), host.size(), 0, nullptr) == 1;
    if (!ok) return "certificate is not valid for " + host;
  }
  return std::nullopt;
}

Result<std::shared_ptr<TlsClientContext>> make_tls_client_context(const TlsClientConfig& config) {
  auto tc = std::make_shared<TlsClientContext>(config);
  if (config.cert_name.starts_with(kPinPrefix)) {
    std::string hex = config.cert_name.substr(kPinPrefix.size());
    bool ok = hex.size() == 64;
    for (char& ch : hex) {
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (!std::isxdigit(static_cast<unsigned char>(ch))) ok = false;
    }
    if (!ok) {
      return Error(ErrorKind::kUsage, "certificate pin \"" + config.cert_name +
                                          "\": expected sha256-raw: and 64 hex digits");
    }
    tc->pin_hex = hex;
  }
  SSL_CTX* raw = tc->ctx.native_handle();
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  // No system store on the machine is not an error: the CA file may be all the caller needs.
  SSL_CTX_set_default_verify_paths(raw);
  if (!config.ca_file.empty()) {
    std::ifstream probe(config.ca_file);
    if (!probe) {
      return Error(ErrorKind::kUsage,
                   "CA file " + config.ca_file + ": " + lower_first(std::strerror(errno)));
    }
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(raw, config.ca_file.c_str(), nullptr) != 1) {
      return Error(ErrorKind::kUsage, "CA file " + config.ca_file +
                                          ": no PEM certificate could be loaded (" +
                                          openssl_reason(ERR_peek_last_error()) + ")");
    }
  }
  return tc;
}

asio::awaitable<Result<TlsClientSession>> tls_client_handshake(
    std::shared_ptr<TlsClientContext> ctx, asio::ip::tcp::socket socket, const std::string& host,
    const std::string& where, DialDeadline& deadline) {
  const TlsClientConfig& config = ctx->config;
  const bool pinned = !ctx->pin_hex.empty();
  auto stream = std::make_unique<TlsClientStream>(std::move(socket), ctx);
  SSL* ssl = stream->ssl_stream().native_handle();
  // Go sends no SNI for IP literals; a relay's certificate is then matched by IP SAN.
  if (!is_ip_literal(host)) SSL_set_tlsext_host_name(ssl, host.c_str());
  if (config.insecure || pinned) {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    const std::string& name = config.cert_name.empty() ? host : config.cert_name;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip_literal(name)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    }
  }

  deadline.on_expiry([s = stream.get()] { s->close(); });
  ERR_clear_error();
  auto [ec] = co_await stream->ssl_stream().async_handshake(ssl::stream_base::client, kTuple);
  // On failure `stream` dies here: the deadline must not keep a pointer to it.
  deadline.on_expiry(nullptr);
  if (deadline.expired()) {
    co_return Error(ErrorKind::kTimeout, "connect to " + where + ": timed out after " +
                                             format_duration(deadline.budget()) +
                                             " (TLS handshake)");
  }
  if (ec) {
    co_return handshake_error(where, ec, ssl);
  }
  if (pinned) {
    if (auto why = check_certificate_pin(ssl, ctx->pin_hex, host)) {
      stream->close();
      co_return tls_error(where, *why, *why);
    }
  }

  TlsClientSession out;
  out.info.version = SSL_get_version(ssl);
  out.info.cipher = SSL_get_cipher_name(ssl);
  out.info.verified = !config.insecure;
  if (X509* leaf = SSL_get0_peer_certificate(ssl)) {
    out.info.subject = name_rfc2253(X509_get_subject_name(leaf));
    out.info.issuer = name_rfc2253(X509_get_issuer_name(leaf));
    out.info.not_after = iso_time(X509_get0_notAfter(leaf));
    out.info.cert_sha256 = std::string(kPinPrefix) + cert_sha256_hex(leaf);
  }
  // Certificates travel in clear before TLS 1.3, where a middlebox could forge the meta cert.
  if (SSL_version(ssl) == TLS1_3_VERSION) {
    out.meta_server_key = meta_key(SSL_get_peer_cert_chain(ssl));
    out.info.meta_cert = out.meta_server_key.has_value();
  }
  out.stream = std::move(stream);
  co_return out;
}

}  // namespace derp::net
