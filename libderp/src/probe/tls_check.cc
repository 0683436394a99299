#include "probe/tls_check.h"

#include <fmt/format.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <fcntl.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>

namespace derp::probe {
namespace {

using Clock = std::chrono::steady_clock;

int connect_with_deadline(const std::string& host, int port, std::chrono::milliseconds timeout,
                          std::string& why) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string p = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), p.c_str(), &hints, &res); rc != 0) {
    why = fmt::format("cannot resolve {}: {}", host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd pf{fd, POLLOUT, 0};
      rc = ::poll(&pf, 1, static_cast<int>(timeout.count()));
      int err = rc == 0 ? ETIMEDOUT : 0;
      socklen_t len = sizeof err;
      if (rc > 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) {
      why = fmt::format("connect to {}:{}: {}", host, port, std::strerror(errno));
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    int flags = 0;  // back to blocking, with timeouts for the handshake
    ::fcntl(fd, F_SETFL, flags);
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  return fd;
}

std::string ssl_error_text() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "handshake failed";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

}  // namespace

TlsCheck check_node_tls(const DERPNode& node, std::chrono::milliseconds timeout,
                        const std::string& ca_file) {
  TlsCheck out;
  DialTarget t = node_dial_target(node, IpFamily::kV4);
  if (t.kind == DialTarget::Kind::kSkip) t = node_dial_target(node, IpFamily::kV6);
  if (t.kind == DialTarget::Kind::kSkip) {
    out.error = "no address to dial";
    return out;
  }
  const auto t0 = Clock::now();
  std::string why;
  const int fd = connect_with_deadline(t.host, node_derp_port(node), timeout, why);
  if (fd < 0) {
    out.error = why;
    return out;
  }
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx(SSL_CTX_new(TLS_client_method()),
                                                   SSL_CTX_free);
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  const bool pin = node.cert_name.rfind("sha256-raw:", 0) == 0;
  const bool verify = !node.insecure_for_tests && !pin;
  if (verify) {
    SSL_CTX_set_default_verify_paths(ctx.get());
    if (!ca_file.empty()) SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  std::unique_ptr<SSL, void (*)(SSL*)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), fd);
  if (!is_ip_literal(node.host_name)) {
    SSL_set_tlsext_host_name(ssl.get(), node.host_name.c_str());
  }
  if (verify) {
    const std::string& name = node.cert_name.empty() ? node.host_name : node.cert_name;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    if (is_ip_literal(name)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      SSL_set1_host(ssl.get(), name.c_str());
    }
  }
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    long vr = SSL_get_verify_result(ssl.get());
    out.error = vr != X509_V_OK ? fmt::format("certificate: {}", X509_verify_cert_error_string(vr))
                                : fmt::format("TLS handshake: {}", ssl_error_text());
    ::close(fd);
    return out;
  }
  out.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  X509* leaf = SSL_get1_peer_certificate(ssl.get());
  if (leaf) {
    if (pin) {
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      X509_digest(leaf, EVP_sha256(), md, &len);
      std::string hex;
      for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
      std::string want = node.cert_name.substr(11);
      for (auto& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (hex != want) out.error = "certificate sha256 does not match CertName";
    }
    const ASN1_TIME* na = X509_get0_notAfter(leaf);
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, nullptr, na) == 1) {
      out.expiry_seconds = static_cast<double>(days) * 86400.0 + secs;
    }
    BIO* b = BIO_new(BIO_s_mem());
    ASN1_TIME_print(b, na);
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    out.not_after.assign(data, static_cast<size_t>(n));
    BIO_free(b);
    X509_free(leaf);
  } else {
    out.error = "no peer certificate";
  }
  out.handshake_ok = out.error.empty();
  SSL_shutdown(ssl.get());
  ::close(fd);
  return out;
}

}  // namespace derp::probe
