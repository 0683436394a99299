// The prober's TLS check: handshake with a DERP node, verify as a client would, and read the
// leaf certificate's expiry. OpenSSL over a blocking socket with deadlines.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "derp/derp_map.h"

namespace derp::probe {

struct TlsCheck {
  bool handshake_ok = false;
  std::string error;                      // handshake/verification failure
  std::optional<double> expiry_seconds;   // leaf notAfter - now (negative: expired)
  std::string not_after;                  // "2027-11-25 19:19:08 UTC"
  double latency_ms = 0;                  // TCP connect to handshake done
};

TlsCheck check_node_tls(const DERPNode& node, std::chrono::milliseconds timeout,
                        const std::string& ca_file);

}  // namespace derp::probe
