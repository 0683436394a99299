// What the HTTP routes need from the running server beyond counters: what "/" serves, the
// live status (/status.json), fault injection (POST /debug/fault) and /bootstrap-dns. Set once
// before the loops start.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "derp/result.h"
#include "net/ip_prefix.h"

namespace derp::server {

struct RouteHooks {
  // derper's --home (ServerOptions::home): "" = the home text and the live status page,
  // "blank" = an empty page, an http(s):// URL = a 302 there.
  std::string home;
  std::function<std::string(bool debug_allowed)> status_json;     // /status.json
  // One fault spec (POST /debug/fault); null when ServerOptions::fault_endpoint is off.
  std::function<Result<std::string>(std::string_view)> fault;
  net::PrefixList debug_allow;  // ServerOptions::debug_allow_from, parsed
  std::function<std::string(std::string_view q)> bootstrap_dns;  // JSON; null = no names
};

}  // namespace derp::server
