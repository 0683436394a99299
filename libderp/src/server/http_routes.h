// derper's HTTP surface other than the DERP byte stream: which requests upgrade, and the
// exact responses of the plain endpoints (PROTOCOL.md §6.1, §6.2, §6.5). No I/O here.
#pragma once

#include <array>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "derp/key.h"
#include "server/route_hooks.h"

namespace derp::server {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

enum class Upgrade {
  kNone,           // not a DERP upgrade: route_http answers it
  kDerp,           // raw DERP (Upgrade: DERP, or legacy websocket without the derp subprotocol)
  kWebSocketDerp,  // RFC 6455 carrying DERP (PROTOCOL.md §6.4): Sec-WebSocket-Protocol has "derp"
};

// How a request head asks to become a DERP connection.
Upgrade classify_upgrade(const http::request_header<>& req);

// True when the request asked for fast start (Derp-Fast-Start: 1: no 101, ServerKey first).
bool wants_fast_start(const http::request_header<>& req);

// What route_http needs to know beyond the request, for the /debug/ endpoints.
struct RouteContext {
  // derper serves /debug/ only to trusted peers: here the peer's address is in
  // ServerOptions::debug_allow_from (loopback by default).
  bool debug_allowed = false;
  // The counters for /debug/vars and /debug/varz; called only for those paths. Null: 404.
  std::function<std::map<std::string, int64_t>()> counters;
  // What "/" serves, /status.json, fault injection and /bootstrap-dns; null or empty hooks:
  // those answer 404 (and "/" is derper's home text without the live status section).
  const RouteHooks* hooks = nullptr;
};

// The response to any request that is not a DERP upgrade (probe, generate_204, 426, 404,
// /debug/vars, /debug/varz, 403 for /debug/ from others...). `keep_alive` is taken from the
// request.
Response route_http(const Request& req, const RouteContext& ctx = {});

// Prometheus text exposition's content type (/debug/varz and /metrics).
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// 400 for a request head that failed to parse, with Connection: close.
Response bad_request_response(std::string_view why);

// The exact 101 head derper writes before the ServerKey frame.
std::string switching_protocols_head(const NodePublic& server);

// "Wed, 25 Nov 2026 17:38:53 GMT" for now.
std::string http_date_now();

}  // namespace derp::server
