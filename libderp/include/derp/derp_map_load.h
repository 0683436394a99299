// Loading a DERP map (PROTOCOL.md §8) from where an operator keeps it: a file, or a URL fetched
// with libcurl (what `--derp-map FILE|URL` accepts in every tool).
#pragma once

#include <chrono>
#include <string_view>

#include "derp/derp_map.h"
#include "derp/result.h"

namespace derp {

// `source` is a path, a file:// URL, or an http:// / https:// URL (system CAs; redirects
// followed). Errors: kUsage (unreadable file, bad JSON — the parser's message), kDns, kConnect,
// kTls, kHttp (status ≥ 400), kTimeout (the whole fetch exceeded `timeout`).
Result<DERPMap> load_derp_map(std::string_view source, std::chrono::milliseconds timeout);

}  // namespace derp
