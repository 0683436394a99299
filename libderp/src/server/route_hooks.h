// What the HTTP routes need from the running server beyond counters: the status page's text,
// fault injection (POST /debug/fault) and /bootstrap-dns. Set once before the loops start.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "derp/result.h"

namespace derp::server {

struct RouteHooks {
  std::function<std::string()> status;                            // HTML for "/"
  std::function<Result<std::string>(std::string_view)> fault;     // one fault spec
  std::function<std::string(std::string_view q)> bootstrap_dns;  // JSON; null = no names
};

}  // namespace derp::server
