#include "server/tls_port80.h"

#include <string>

namespace derp::server {

namespace {

// "host:80" -> "host", "[::1]:80" -> "[::1]", "host" -> "host".
std::string_view strip_port(std::string_view host) {
  const auto colon = host.rfind(':');
  if (colon == std::string_view::npos) return host;
  if (host.front() == '[' && host.find(']') > colon) return host;  // "[::1]" without a port
  if (host.front() != '[' && host.find(':') != colon) return host;  // a bare IPv6 literal
  return host.substr(0, colon);
}

}  // namespace

Response route_port80(const Request& req, const RouteContext& ctx, std::string_view https_host,
                      uint16_t https_port) {
  std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/generate_204" || target.starts_with("/debug")) return route_http(req, ctx);
  Response res;
  res.version(11);
  res.keep_alive(req.keep_alive());
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    res.result(http::status::bad_request);
    res.body() = "Use HTTPS\n";
    res.prepare_payload();
    return res;
  }
  std::string host(https_host.empty() ? strip_port(req[http::field::host]) : https_host);
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  if (https_port != 443) host += ":" + std::to_string(https_port);
  std::string_view where = target;
  if (where == "/" && ctx.debug_allowed) where = "/debug/";
  const std::string location = "https://" + host + std::string(where);
  res.result(http::status::found);
  res.set(http::field::location, location);
  res.prepare_payload();
  return res;
}

}  // namespace derp::server
