#include "server/tls_certs.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace derp::server {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;

namespace {

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// derper keeps only [a-zA-Z0-9-.] of the hostname for the file names.
std::string file_stem(std::string_view hostname) {
  std::string out;
  for (char c : hostname) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.') {
      out += c;
    }
  }
  return out;
}

bool write_file(const std::string& path, const std::string& data, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return ::close(fd) == 0;
}

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

// What derper's createSelfSignedIPCert (cmd/derper/cert.go) makes: a P-256 key; a random
// serial below 2^128; Subject = Issuer = CN=<the IP>; valid from now for one calendar year
// (derper: "a bit over that is rejected by macOS"); key usage digitalSignature +
// keyEncipherment and extended key usage serverAuth; basic constraints CA:FALSE; the IP as the
// only SAN. Written as PEM, the key in SEC1 form ("EC PRIVATE KEY", mode 0600) and the
// certificate 0644, in a directory created 0700 when missing, so a restart serves the same
// certificate (and pin).
Result<void> generate_self_signed(const std::string& ip, const std::string& crt_path,
                                  const std::string& key_path) {
  auto fail = [](std::string what) {
    return Error(ErrorKind::kTls,
                 "generating self-signed certificate: " + what + ": " + openssl_error());
  };
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return fail("P-256 key");
  X509Ptr cert(X509_new());
  if (!cert) return fail("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return fail("serial");
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);  // unsigned: 0 <= serial < 2^128
  ASN1_INTEGER* sn = bn ? BN_to_ASN1_INTEGER(bn, nullptr) : nullptr;
  BN_free(bn);
  if (!sn) return fail("serial");
  X509_set_serialNumber(cert.get(), sn);
  ASN1_INTEGER_free(sn);
  const std::time_t now = std::time(nullptr);
  std::tm until{};
  ::gmtime_r(&now, &until);
  until.tm_year += 1;  // Go's AddDate(1, 0, 0): Feb 29 becomes Mar 1, as timegm normalises
  if (!ASN1_TIME_set(X509_getm_notBefore(cert.get()), now) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()), ::timegm(&until))) {
    return fail("validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(ip.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key.get());
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  const std::string san = "IP:" + ip;
  const std::pair<int, const char*> exts[] = {
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, "serverAuth"},
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_subject_alt_name, san.c_str()},
  };
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    if (!ext) return fail("extension");
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return fail("signing");

  BioPtr cbio(BIO_new(BIO_s_mem()));
  BioPtr kbio(BIO_new(BIO_s_mem()));
  // "type-specific" is SEC1 for an EC key: the "EC PRIVATE KEY" PEM block derper writes.
  OSSL_ENCODER_CTX* enc = OSSL_ENCODER_CTX_new_for_pkey(key.get(), EVP_PKEY_KEYPAIR,
                                                        "PEM", "type-specific", nullptr);
  const bool key_ok = enc != nullptr && kbio && OSSL_ENCODER_to_bio(enc, kbio.get()) == 1;
  OSSL_ENCODER_CTX_free(enc);
  if (!cbio || !key_ok || PEM_write_bio_X509(cbio.get(), cert.get()) != 1) {
    return fail("PEM encoding");
  }
  const std::string dir = crt_path.substr(0, crt_path.rfind('/'));
  if (!dir.empty() && dir != crt_path && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error(ErrorKind::kIo, fmt::format("creating {}: {}", dir, std::strerror(errno)));
  }
  if (!write_file(key_path, bio_text(kbio.get()), 0600)) {
    return Error(ErrorKind::kIo, fmt::format("writing {}: {}", key_path, std::strerror(errno)));
  }
  if (!write_file(crt_path, bio_text(cbio.get()), 0644)) {
    return Error(ErrorKind::kIo, fmt::format("writing {}: {}", crt_path, std::strerror(errno)));
  }
  return {};
}

// derper's meta certificate: a throwaway Ed25519 key, Subject = Issuer = CN=derpkey<hex key>,
// serial = protocol version 2, valid now ± 30 days, basic constraints (not a CA) only.
X509Ptr make_meta_cert(const std::string& server_key_hex) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  X509Ptr x(X509_new());
  if (!key || !x) return nullptr;
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 2);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -30L * 24 * 3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 30L * 24 * 3600);
  X509_set_pubkey(x.get(), key.get());
  const std::string cn = "derpkey" + server_key_hex;
  X509_NAME* name = X509_get_subject_name(x.get());
  // UTF8String: MBSTRING_ASC would enforce the 64-character CN limit this CN exceeds.
  X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x.get(), x.get(), nullptr, nullptr, 0);
  X509_EXTENSION* ext =
      X509V3_EXT_conf_nid(nullptr, &v3, NID_basic_constraints, "critical,CA:FALSE");
  if (!ext) return nullptr;
  X509_add_ext(x.get(), ext, -1);
  X509_EXTENSION_free(ext);
  if (X509_sign(x.get(), key.get(), nullptr) == 0) return nullptr;
  return x;
}

// Offer only what derper's manual mode offers: http/1.1, and nothing when the client offers
// no ALPN or only other protocols (never h2: the DERP upgrade is HTTP/1.1).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static constexpr unsigned char kHttp11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == sizeof kHttp11 && std::memcmp(in + i + 1, kHttp11, len) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

Result<std::unique_ptr<TlsCerts>> TlsCerts::load(std::string dir, std::string hostname,
                                                 std::string server_key_hex, Log log) {
  if (dir.empty()) return Error(ErrorKind::kUsage, "TLS: missing required --certdir");
  if (hostname.empty()) return Error(ErrorKind::kUsage, "TLS: missing required --hostname");
  auto certs = std::unique_ptr<TlsCerts>(new TlsCerts());
  const std::string stem = file_stem(hostname);
  certs->hostname_ = std::move(hostname);
  certs->crt_path_ = dir + "/" + stem + ".crt";
  certs->key_path_ = dir + "/" + stem + ".key";
  certs->log_ = std::move(log);
  certs->server_key_hex_ = std::move(server_key_hex);
  const bool ip = is_ip_literal(certs->hostname_);
  if (ip && (::access(certs->crt_path_.c_str(), F_OK) != 0 ||
             ::access(certs->key_path_.c_str(), F_OK) != 0)) {
    if (auto g = generate_self_signed(certs->hostname_, certs->crt_path_, certs->key_path_); !g) {
      return std::move(g).error();
    }
    certs->generated_ = true;
  }
  if (auto ok = certs->load_files(); !ok) return std::move(ok).error();
  if (certs->log_) {
    certs->log_(fmt::format("TLS certificate {} for {} loaded{}; pin {}", certs->crt_path_,
                            certs->hostname_, certs->generated_ ? " (self-signed, generated)" : "",
                            certs->pin_));
  }
  return certs;
}

TlsCerts::FileStamp TlsCerts::stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  FileStamp s;
  s.ok = true;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return s;
}

Result<void> TlsCerts::load_files() {
  // Stamp before reading: a write racing the read shows up as a change next time.
  const FileStamp cs = stamp(crt_path_);
  const FileStamp ks = stamp(key_path_);
  auto fail = [&](std::string_view what, std::string_view path) {
    return Error(ErrorKind::kTls,
                 fmt::format("can not load x509 key pair for hostname {:?}: {} {}: {}", hostname_,
                             what, path, openssl_error()));
  };
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* raw = ctx->native_handle();
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  // Idle connections give their record buffers back (memory per idle connection matters).
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(raw, select_alpn, nullptr);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(raw, crt_path_.c_str()) != 1) {
    return fail("reading", crt_path_);
  }
  if (SSL_CTX_use_PrivateKey_file(raw, key_path_.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("reading", key_path_);
  }
  if (SSL_CTX_check_private_key(raw) != 1) return fail("key does not match", crt_path_);
  X509* leaf = SSL_CTX_get0_certificate(raw);
  if (leaf == nullptr) return fail("no certificate in", crt_path_);
  if (!server_key_hex_.empty()) {
    X509Ptr meta = make_meta_cert(server_key_hex_);
    if (!meta || SSL_CTX_add1_chain_cert(raw, meta.get()) != 1) {
      return Error(ErrorKind::kInternal, "TLS meta certificate: " + openssl_error());
    }
  }
  const bool valid = is_ip_literal(hostname_) ? X509_check_ip_asc(leaf, hostname_.c_str(), 0) == 1
                                              : X509_check_host(leaf, hostname_.data(),
                                                                hostname_.size(), 0, nullptr) == 1;
  if (!valid) {
    return Error(ErrorKind::kTls,
                 fmt::format("cert invalid for hostname {:?} ({})", hostname_, crt_path_));
  }
  unsigned char* der = nullptr;
  const int len = i2d_X509(leaf, &der);
  if (len <= 0) return fail("encoding", crt_path_);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(len), digest);
  OPENSSL_free(der);
  std::string pin = "sha256-raw:";
  for (unsigned char b : digest) pin += fmt::format("{:02x}", b);
  std::tm until{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &until) != 1)
    return fail("reading notAfter of", crt_path_);
  const int64_t not_after = static_cast<int64_t>(::timegm(&until));

  std::lock_guard lock(mu_);
  ctx_ = std::move(ctx);
  pin_ = std::move(pin);
  not_after_ = not_after;
  crt_stamp_ = cs;
  key_stamp_ = ks;
  return {};
}

std::shared_ptr<ssl::context> TlsCerts::current() const {
  std::lock_guard lock(mu_);
  return ctx_;
}

std::string TlsCerts::pin() const {
  std::lock_guard lock(mu_);
  return pin_;
}

int64_t TlsCerts::not_after() const {
  std::lock_guard lock(mu_);
  return not_after_;
}

Result<void> TlsCerts::reload() {
  auto ok = load_files();
  if (log_) {
    log_(ok ? fmt::format("TLS certificate {} reloaded; pin {}", crt_path_, pin())
            : fmt::format("TLS certificate reload failed, keeping the old one: {}",
                          ok.error().message));
  }
  return ok;
}

void TlsCerts::reload_if_changed(std::chrono::steady_clock::duration min_interval) {
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check_ < min_interval) return;
    last_check_ = now;
    if (stamp(crt_path_) == crt_stamp_ && stamp(key_path_) == key_stamp_) return;
    // Remember what we saw so a broken pair is not retried on every accept.
    crt_stamp_ = stamp(crt_path_);
    key_stamp_ = stamp(key_path_);
  }
  (void)reload();
}

}  // namespace derp::server
