// The relay's HTTP front on arbitrary bytes: the request head parsed with the limits the relay
// sets (connection.h: header_limit = the default max_header_bytes, 16 KiB body), then what the
// relay decides from it: upgrade or not, fast start, the WebSocket subprotocol, and for plain
// requests the whole route table, /debug/ on (first byte odd) or off, with a fault hook that
// runs the real fault grammar.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/beast/core/buffers_prefix.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "server/faults.h"
#include "server/http_routes.h"
#include "server/route_hooks.h"
#include "server/ws_transport.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool debug = (data[0] & 1) != 0;
  http::request_parser<http::string_body> parser;
  parser.header_limit(8192);
  parser.body_limit(16 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  // Fed in two pieces, so the parser's resumption is exercised as a slow client would.
  const size_t split = (size - 1) / 2;
  const char* p = reinterpret_cast<const char*>(data + 1);
  size_t left = size - 1;
  size_t used = parser.put(boost::asio::buffer(p, split), ec);
  if (ec == http::error::need_more) ec = {};
  if (!ec) {
    p += used;
    left -= used;
    while (!ec && left > 0 && !parser.is_done()) {
      used = parser.put(boost::asio::buffer(p, left), ec);
      if (used == 0) break;
      p += used;
      left -= used;
    }
  }
  if (ec && ec != http::error::need_more) {
    (void)derp::server::bad_request_response(ec.message());
    return 0;
  }
  if (!parser.is_header_done()) return 0;
  const auto& req = parser.get();
  const auto up = derp::server::classify_upgrade(req.base());
  (void)derp::server::wants_fast_start(req.base());
  (void)derp::server::offers_derp_subprotocol(req.base());
  if (up != derp::server::Upgrade::kNone) return 0;
  derp::server::RouteHooks hooks;
  hooks.status_json = [](bool) { return std::string("{}"); };
  hooks.fault = [](std::string_view spec) -> derp::Result<std::string> {
    auto f = derp::server::parse_fault(spec);
    if (!f.ok()) return f.error();
    return std::string("ok");
  };
  hooks.bootstrap_dns = [](std::string_view q) { return std::string(q.empty() ? "{}" : "{}"); };
  derp::server::RouteContext ctx;
  ctx.debug_allowed = debug;
  ctx.counters = [] { return std::map<std::string, int64_t>{{"accepts", 1}}; };
  ctx.hooks = &hooks;
  const auto res = derp::server::route_http(req, ctx);
  if (res.result_int() < 100 || res.result_int() > 599) std::abort();
  return 0;
}
