// URLs on arbitrary text: DERP server URLs (whose canonical form parses back to the same URL)
// and HTTP proxy URLs.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "net/http_proxy.h"
#include "net/url.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto u = derp::net::parse_derp_url(text); u.ok()) {
    if (u->port == 0 || u->host.empty()) std::abort();
    (void)u->host_port();
    (void)u->host_header();
    auto again = derp::net::parse_derp_url(u->to_string());
    if (!again.ok() || again->host != u->host || again->port != u->port ||
        again->tls != u->tls || again->target != u->target) {
      std::abort();
    }
  }
  if (auto p = derp::net::parse_proxy_url(text); p.ok()) {
    if (p->host.empty()) std::abort();
    (void)p->host_port();
  }
  return 0;
}
