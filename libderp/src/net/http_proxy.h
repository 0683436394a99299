// HTTP proxies for client dials (PROTOCOL.md §7.5, as derphttp): `CONNECT host:port` through an
// http:// proxy, optional basic auth from the proxy URL, and the HTTPS_PROXY / HTTP_PROXY /
// NO_PROXY environment as Go's httpproxy reads it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "derp/result.h"
#include "net/dial_deadline.h"

namespace derp::net {

struct ProxyConfig {
  std::string host;           // without brackets
  uint16_t port = 80;
  std::string authorization;  // "Basic <base64>" when the URL had user:password, else ""
  std::string display;        // "http://host:port" (never the password), for messages

  std::string host_port() const;
};

// "http://[user[:password]@]host[:port]" (port 80 by default; a bare "host:port" is taken as
// http://, as Go does). kUsage for other schemes (TLS to the proxy is not supported) or junk.
Result<ProxyConfig> parse_proxy_url(std::string_view text);

// The proxy the environment names for a target: HTTPS_PROXY (https_proxy) for TLS targets,
// HTTP_PROXY (http_proxy) otherwise; none for localhost and loopback IPs, nor when NO_PROXY
// (no_proxy) matches: "*", the host, or a domain suffix ("example.com" / ".example.com").
Result<std::optional<ProxyConfig>> proxy_from_environment(const std::string& host, bool tls);

// Over `socket` (connected to the proxy) sends CONNECT host:port and reads the response head.
// kHttp unless 2xx ("proxy http://…: CONNECT derp.example:443 answered 407 Proxy Authentication
// Required"); kTimeout at the deadline; kIo on a broken connection.
boost::asio::awaitable<Result<void>> proxy_connect(boost::asio::ip::tcp::socket& socket,
                                                   const ProxyConfig& proxy,
                                                   const std::string& host, uint16_t port,
                                                   DialDeadline& deadline);

}  // namespace derp::net
