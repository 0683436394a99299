// What a TLS connection to a relay negotiated, for display (derp-connect, logs). PROTOCOL.md §6.3.
#pragma once

#include <string>

namespace derp {

struct TlsInfo {
  std::string version;      // "TLSv1.3"
  std::string cipher;       // "TLS_AES_256_GCM_SHA384"
  std::string subject;      // leaf certificate subject, RFC 2253 ("CN=localhost")
  std::string issuer;       // leaf certificate issuer, RFC 2253
  std::string not_after;    // leaf expiry, "2027-11-25T19:19:08Z"
  std::string cert_sha256;  // "sha256-raw:<hex>" of the leaf's DER: usable as a cert_name pin
  bool verified = false;    // false when verification was disabled (insecure)
  bool meta_cert = false;   // the chain carried a derpkey meta certificate (fast start)
};

}  // namespace derp
