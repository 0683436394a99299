// A certificate authority made in the test, and leaf certificates it signs: what an operator
// puts in derp-serve's --certdir for --certmode manual.
#pragma once

#include <string>

#include "support/tls_proxy.h"

namespace derp::test {

struct TestCa {
  std::string cert_pem;  // self-signed CA (give it to clients as their CA file)
  std::string key_pem;
};

TestCa make_test_ca(const std::string& common_name = "libderp test CA");

// A P-256 leaf for `spec` (SANs, expiry) signed by `ca`. sha256_hex is the leaf DER's hash.
TestCert make_cert_signed_by(const TestCa& ca, const TestCertSpec& spec = {});

}  // namespace derp::test
