// The PROXY protocol header parser (v1 and v2) on arbitrary bytes: it never reads past its
// input, a parsed header fits in the input, a "need more" answer holds for every prefix that
// could still be a header, and a parsed TCP header re-encodes to one that parses the same.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "codec/proxy_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  auto r = derp::parse_proxy_header(in);
  if (!r.ok()) return 0;
  if (!r->has_value()) {
    if (!derp::could_be_proxy_header(in)) std::abort();
    return 0;
  }
  const derp::ProxyHeader& h = **r;
  if (h.length == 0 || h.length > size) std::abort();
  if (h.version != 1 && h.version != 2) std::abort();
  if (h.local) return 0;
  if (h.source.is_v4 != h.destination.is_v4) std::abort();
  for (const auto& again : {derp::encode_proxy_v1(h.source, h.destination),
                            derp::encode_proxy_v2(h.source, h.destination)}) {
    auto p =
        derp::parse_proxy_header({reinterpret_cast<const uint8_t*>(again.data()), again.size()});
    if (!p.ok() || !p->has_value() || (*p)->length != again.size() ||
        (*p)->source.to_string() != h.source.to_string() ||
        (*p)->destination.to_string() != h.destination.to_string()) {
      std::abort();
    }
  }
  return 0;
}
