#include "support/tls_proxy.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fstream>
#include <thread>

#include "net/awaitable.h"

namespace derp::test {

using net::kTuple;

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n > 0 ? n : 0));
}

// derper's meta certificate (PROTOCOL.md §6.3): random Ed25519 key, Subject = Issuer =
// CN=derpkey<hex>, serial = protocol version 2, now ± 30 days, basic constraints only.
X509* make_meta_cert(const NodePublic& key) {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  X509* x = X509_new();
  if (!pkey || !x) {
    EVP_PKEY_free(pkey);
    X509_free(x);
    return nullptr;
  }
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 2);
  const long day = 24 * 3600;
  X509_gmtime_adj(X509_getm_notBefore(x), -30 * day);
  X509_gmtime_adj(X509_getm_notAfter(x), 30 * day);
  X509_set_pubkey(x, pkey);
  std::string cn = "derpkey" + key.hex();
  X509_NAME* name = X509_get_subject_name(x);
  // An explicit UTF8String: with MBSTRING_ASC OpenSSL enforces the 64-character CN limit,
  // which derper's 71-character CN exceeds.
  X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  if (X509_EXTENSION* ext =
          X509V3_EXT_conf_nid(nullptr, &v3, NID_basic_constraints, "critical,CA:FALSE")) {
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(x, pkey, nullptr);  // Ed25519 signs without a separate digest
  EVP_PKEY_free(pkey);
  return x;
}

}  // namespace

TestCert make_test_cert(const TestCertSpec& spec) {
  static std::atomic<long> serial{1000};
  TestCert out;
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  if (!key || !x) {
    ADD_FAILURE() << "OpenSSL could not allocate a key or certificate";
    EVP_PKEY_free(key);
    X509_free(x);
    return out;
  }
  X509_set_version(x, 2);  // v3: extensions
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  const long day = 24 * 3600;
  X509_gmtime_adj(X509_getm_notBefore(x), spec.expired ? -2 * day : -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.expired ? -day : 30 * day);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  std::string san;
  for (const auto& d : spec.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : spec.ip_addrs) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (!san.empty()) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, san.c_str());
    EXPECT_NE(ext, nullptr) << "bad SAN " << san;
    if (ext) {
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    }
  }
  EXPECT_GT(X509_sign(x, key, EVP_sha256()), 0);

  BIO* cb = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cb, x);
  out.cert_pem = bio_string(cb);
  BIO_free(cb);
  BIO* kb = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(kb, key, nullptr, nullptr, 0, nullptr, nullptr);
  out.key_pem = bio_string(kb);
  BIO_free(kb);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(x, EVP_sha256(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    out.sha256_hex.push_back(kHex[md[i] >> 4]);
    out.sha256_hex.push_back(kHex[md[i] & 15]);
  }
  X509_free(x);
  EVP_PKEY_free(key);
  return out;
}

std::string write_temp_file(const std::string& name, const std::string& contents) {
  static std::atomic<int> counter{0};
  std::string path = ::testing::TempDir() + "derp_tls_" + std::to_string(::getpid()) + "_" +
                     std::to_string(counter++) + "_" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << contents;
  EXPECT_TRUE(f.good()) << "cannot write " << path;
  return path;
}

struct TlsProxy::Impl {
  // Destroyed in reverse: the io_context (and the sessions it holds) before the SSL context.
  ssl::context ctx{ssl::context::tls_server};
  asio::io_context io;
  tcp::acceptor acceptor{io};
  uint16_t backend_port = 0;
  std::thread thread;

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(kTuple);
      if (ec) co_return;  // closed by the destructor
      asio::co_spawn(io, session(std::move(sock)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket sock) {
    auto front = std::make_shared<ssl::stream<tcp::socket>>(std::move(sock), ctx);
    auto [hec] = co_await front->async_handshake(ssl::stream_base::server, kTuple);
    if (hec) co_return;  // the client refused our certificate: nothing to pipe
    auto back = std::make_shared<tcp::socket>(io);
    auto [cec] = co_await back->async_connect(
        tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), backend_port), kTuple);
    if (cec) co_return;
    asio::co_spawn(io, pipe(front, back, true), asio::detached);
    asio::co_spawn(io, pipe(front, back, false), asio::detached);
  }

  // One direction; whichever side ends first closes both so the other direction ends too.
  static asio::awaitable<void> pipe(std::shared_ptr<ssl::stream<tcp::socket>> front,
                                    std::shared_ptr<tcp::socket> back, bool to_back) {
    std::array<char, 16384> buf;
    for (;;) {
      auto [rec, n] = to_back ? co_await front->async_read_some(asio::buffer(buf), kTuple)
                              : co_await back->async_read_some(asio::buffer(buf), kTuple);
      if (rec) break;
      auto [wec, wn] = to_back ? co_await asio::async_write(*back, asio::buffer(buf, n), kTuple)
                               : co_await asio::async_write(*front, asio::buffer(buf, n), kTuple);
      (void)wn;
      if (wec) break;
    }
    boost::system::error_code ignored;
    front->next_layer().close(ignored);
    back->close(ignored);
  }
};

TlsProxy::TlsProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<TlsProxy> TlsProxy::start(const TestCert& cert, uint16_t backend_port,
                                          std::optional<NodePublic> meta_key, bool max_tls12) {
  auto impl = std::make_unique<Impl>();
  impl->backend_port = backend_port;
  boost::system::error_code ec;
  impl->ctx.use_certificate_chain(asio::buffer(cert.cert_pem), ec);
  if (!ec) impl->ctx.use_private_key(asio::buffer(cert.key_pem), ssl::context::pem, ec);
  if (ec) {
    ADD_FAILURE() << "TLS proxy: cannot use the test certificate: " << ec.message();
    return nullptr;
  }
  SSL_CTX* raw_ctx = impl->ctx.native_handle();
  if (max_tls12) SSL_CTX_set_max_proto_version(raw_ctx, TLS1_2_VERSION);
  if (meta_key) {
    X509* meta = make_meta_cert(*meta_key);
    if (!meta || SSL_CTX_add1_chain_cert(raw_ctx, meta) != 1) {
      X509_free(meta);
      ADD_FAILURE() << "TLS proxy: cannot add the meta certificate";
      return nullptr;
    }
    X509_free(meta);  // the context holds its own reference
    STACK_OF(X509)* chain = nullptr;
    SSL_CTX_get0_chain_certs(raw_ctx, &chain);
    EXPECT_EQ(chain ? sk_X509_num(chain) : 0, 1) << "meta certificate not in the chain";
  }
  tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), 0);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    ADD_FAILURE() << "TLS proxy: cannot listen on 127.0.0.1: " << ec.message();
    return nullptr;
  }
  Impl* raw = impl.get();
  asio::co_spawn(raw->io, raw->accept_loop(), asio::detached);
  raw->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<TlsProxy>(new TlsProxy(std::move(impl)));
}

TlsProxy::~TlsProxy() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t TlsProxy::port() const { return impl_->acceptor.local_endpoint().port(); }

}  // namespace derp::test
