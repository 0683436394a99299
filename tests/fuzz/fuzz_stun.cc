// Both STUN parsers on arbitrary bytes. What parses must survive a re-encode: a request's
// transaction ID yields a request that parses to the same ID, and a response's address and ID
// yield a response that parses back to the same values.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "derp/stun.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> packet(data, size);
  const bool stun = derp::stun::is_stun(packet);

  if (auto tx = derp::stun::parse_binding_request(packet); tx.ok()) {
    if (!stun) std::abort();
    uint8_t buf[derp::stun::kRequestLen];
    derp::stun::encode_binding_request(buf, *tx);
    auto again = derp::stun::parse_binding_request(buf);
    if (!again.ok() || *again != *tx) std::abort();
  }

  if (auto r = derp::stun::parse_binding_response(packet); r.ok()) {
    if (!stun) std::abort();
    // A parsed IPv4-mapped address is always unmapped.
    if (!r->mapped.is_v4 && derp::stun::is_v4_mapped(r->mapped.ip16)) std::abort();
    uint8_t buf[derp::stun::kMaxResponseLen];
    const size_t n = derp::stun::encode_binding_response(buf, r->tx_id, r->mapped);
    if (n != (r->mapped.is_v4 ? derp::stun::kResponseV4Len : derp::stun::kResponseV6Len)) {
      std::abort();
    }
    auto again = derp::stun::parse_binding_response(std::span<const uint8_t>(buf, n));
    if (!again.ok() || again->tx_id != r->tx_id || again->mapped != r->mapped) std::abort();
    (void)r->mapped.to_string();
  }
  return 0;
}
