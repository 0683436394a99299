// DERP server URLs: http(s)://host[:port][/path]. PROTOCOL.md §7.7. I/O-free.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "derp/result.h"

namespace derp::net {

struct DerpUrl {
  bool tls = false;   // https://
  std::string host;   // without brackets for IPv6 literals
  uint16_t port = 0;  // explicit, or 80 / 443 by scheme
  bool explicit_port = false;
  std::string target = "/derp";  // path (+ "?query"), what goes on the request line

  // "host:port" ("[::1]:3340" for IPv6): what error messages and logs name.
  std::string host_port() const;
  // The Host header: host, plus ":port" only when it is not the scheme's default.
  std::string host_header() const;
  // Canonical form, e.g. "http://127.0.0.1:3340/derp".
  std::string to_string() const;
};

// Parses a server URL. Scheme http or https (any case); host required (IPv6 in brackets);
// port 1..65535; path defaults to /derp. Fails with kUsage saying what is wrong.
Result<DerpUrl> parse_derp_url(std::string_view text);

}  // namespace derp::net
