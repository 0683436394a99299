// Loading a DERP map (PROTOCOL.md §8) from where an operator keeps it: a file, or a URL fetched
// with libcurl (what `--derp-map FILE|URL` accepts in every tool).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "derp/derp_map.h"
#include "derp/result.h"

namespace derp {

// `source` is a path, a file:// URL, or an http:// / https:// URL (system CAs, or the PEM
// bundle `ca_file` instead when given; redirects followed; the final status must be 200). The
// one loader of every tool (--derp-map) and of derp-probe. Errors: kUsage (unreadable file:
// "DERP map: cannot read PATH: why"; bad JSON: the parser's message), kDns, kConnect, kTls,
// kHttp ("HTTP status N"), kTimeout (the whole fetch exceeded `timeout`). `checks` as
// parse_derp_map's.
Result<DERPMap> load_derp_map(std::string_view source, std::chrono::milliseconds timeout,
                              const std::string& ca_file = "",
                              DerpMapChecks checks = DerpMapChecks::kDialable);

}  // namespace derp
