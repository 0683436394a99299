// Checking a DERP map for mistakes (loading it: derp_map_load.h). PROTOCOL.md §8.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "derp/derp_map.h"
#include "derp/derp_map_load.h"  // load_derp_map: the one loader every tool uses
#include "derp/result.h"

namespace derp::probe {

// The public map Tailscale serves; a tool's default. Never fetched by tests.
inline constexpr const char* kDefaultDerpMapUrl = "https://login.tailscale.com/derpmap/default";

struct LintFinding {
  std::string where;    // "region 900 node 900a", "region 901", "map"
  std::string code;     // stable id: "duplicate-node-name", "no-address", ...
  std::string message;  // what is wrong

  std::string line() const;  // "region 900 node 900a: duplicate-node-name: ..."
};

// Static checks: region key/RegionID mismatch and duplicate region ids, duplicate node names,
// node RegionID ≠ its region's, nodes without HostName or without any usable address, a
// malformed CertName, ports out of range, STUN-only regions (nothing to connect to), nodes
// with no STUN, IPv4/IPv6 fields holding the other family, regions mixing "none" families,
// RegionScore for unknown regions. Empty = clean.
std::vector<LintFinding> lint_derp_map(const DERPMap& map);

// Active checks: a TCP connect to every DERP node's DERP port (per family with an address)
// within `timeout`; one finding per unreachable port.
std::vector<LintFinding> lint_derp_map_ports(const DERPMap& map,
                                             std::chrono::milliseconds timeout);

}  // namespace derp::probe
