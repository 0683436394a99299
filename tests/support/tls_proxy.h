// TLS for client tests before the relay speaks it: certificates made on the spot with OpenSSL,
// and an in-process TLS terminator on 127.0.0.1 that pipes each connection to a plain relay.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "derp/key.h"

namespace derp::test {

struct TestCertSpec {
  std::string common_name = "localhost";
  std::vector<std::string> dns_names = {"localhost"};
  std::vector<std::string> ip_addrs = {"127.0.0.1"};
  bool expired = false;  // valid from two days ago until yesterday
};

// A self-signed P-256 certificate and its key.
struct TestCert {
  std::string cert_pem;
  std::string key_pem;
  std::string sha256_hex;  // of the certificate's DER, lower-case (what sha256-raw: pins)
};

TestCert make_test_cert(const TestCertSpec& spec = {});

// Writes `contents` to a fresh file under the test temp dir and returns its path.
std::string write_temp_file(const std::string& name, const std::string& contents);

class TlsProxy {
 public:
  // Listens on 127.0.0.1:0, completes TLS with `cert`, then pipes bytes both ways to
  // 127.0.0.1:backend_port. nullptr (and a gtest failure) if it cannot listen.
  // With `meta_key`, the chain also carries a derper-style meta certificate (Ed25519, CN
  // "derpkey<hex>", serial 2) after the leaf: clients on TLS 1.3 then use fast start.
  // `max_tls12` caps the protocol at TLS 1.2 (where clients must ignore the meta cert).
  static std::unique_ptr<TlsProxy> start(const TestCert& cert, uint16_t backend_port,
                                         std::optional<NodePublic> meta_key = std::nullopt,
                                         bool max_tls12 = false);
  ~TlsProxy();
  TlsProxy(const TlsProxy&) = delete;
  TlsProxy& operator=(const TlsProxy&) = delete;

  uint16_t port() const;

 private:
  struct Impl;
  explicit TlsProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp::test
