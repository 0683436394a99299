// derper's --http-port listener beside TLS (PROTOCOL.md §6.3, cmd/derper's port80 mux and
// tsweb.Port80Handler): /generate_204 served, /debug/... served (same loopback rule), other
// GET/HEAD redirected to https://, anything else 400 "Use HTTPS". No I/O here.
#pragma once

#include <cstdint>
#include <string_view>

#include "server/http_routes.h"

namespace derp::server {

// `https_host`: derper's --hostname, or "" to use the request's Host (its port dropped).
// `https_port`: the TLS listener's port, kept in the redirect unless it is 443 (derper drops it,
// which sends a relay on :8443 to :443).
Response route_port80(const Request& req, const RouteContext& ctx, std::string_view https_host,
                      uint16_t https_port);

}  // namespace derp::server
