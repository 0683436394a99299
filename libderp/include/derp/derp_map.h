// The DERP map (regions, nodes, home parameters) and its JSON form. I/O-free.
// PROTOCOL.md §8 (JSON), §7.5 (which address a client dials), §9.3 (STUN target).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "derp/result.h"

namespace derp {

inline constexpr int kDefaultDerpPort = 443;
inline constexpr uint16_t kDefaultStunPort = 3478;

struct DERPNode {
  std::string name;       // "Name", globally unique (e.g. "1c")
  int region_id = 0;      // "RegionID"
  std::string host_name;  // "HostName", required
  std::string cert_name;  // "CertName": TLS name to verify, or "sha256-raw:<hex>"
  std::string ipv4;       // "IPv4": "" = resolve HostName; an IPv4 = dial it; else skip IPv4
  std::string ipv6;       // "IPv6": same rules for IPv6
  int stun_port = 0;      // "STUNPort": 0 = 3478, < 0 = no STUN
  bool stun_only = false;
  int derp_port = 0;  // "DERPPort": 0 = 443
  bool insecure_for_tests = false;
  std::string stun_test_ip;  // "STUNTestIP": tests only, overrides the STUN target
  bool can_port80 = false;   // serves http://<IPv4>/generate_204

  friend bool operator==(const DERPNode&, const DERPNode&) = default;
};

struct DERPRegion {
  int region_id = 0;  // "RegionID"; equals the region's key in DERPMap::regions
  std::string region_code;
  std::string region_name;
  double latitude = 0;
  double longitude = 0;
  bool avoid = false;               // deprecated
  bool no_measure_no_home = false;  // never probed nor chosen as home; still reachable
  std::vector<DERPNode> nodes;      // priority order

  friend bool operator==(const DERPRegion&, const DERPRegion&) = default;
};

struct DERPHomeParams {
  std::map<int, double> region_score;  // multiplies measured latency; ≤ 0 ignored; missing = 1

  friend bool operator==(const DERPHomeParams&, const DERPHomeParams&) = default;
};

struct DERPMap {
  std::optional<DERPHomeParams> home_params;  // "HomeParams", omitted when absent
  std::map<int, DERPRegion> regions;          // "Regions", keyed by RegionID
  bool omit_default_regions = false;          // "omitDefaultRegions" (lower-case o)

  friend bool operator==(const DERPMap&, const DERPMap&) = default;
};

// Decodes a DERP map as Go does (keys of any case, unknown keys and null values ignored) and
// checks its structure: a JSON object, fields of the right JSON types, numeric region keys
// equal to each region's RegionID, a HostName on every node. Errors (kUsage) say where, e.g.
// `DERP map: region "900": node 0: HostName missing`. Semantic checks are left to a linter.
// kStructure skips the HostName and RegionID checks too (JSON types still count), so that a
// linter (derp-probe lint) can report those mistakes alongside every other one.
enum class DerpMapChecks { kDialable, kStructure };
Result<DERPMap> parse_derp_map(std::string_view json,
                               DerpMapChecks checks = DerpMapChecks::kDialable);

// JSON with Go's field names, order and omitempty rules; region keys as decimal strings in
// Go's order (sorted as strings). Compact, or indented by `indent` spaces when ≥ 0.
std::string derp_map_to_json(const DERPMap& map, int indent = -1);

// DERPPort, or 443 when it is 0.
int node_derp_port(const DERPNode& node);
// STUNPort, 3478 when it is 0; nullopt when negative (no STUN) or above 65535.
std::optional<uint16_t> node_stun_port(const DERPNode& node);
// "https://HostName[:port]/derp", the port omitted when 443, IPv6 literals in brackets.
std::string node_url(const DERPNode& node);

enum class IpFamily { kV4, kV6 };

// True when s is an IPv4 (dotted quad) or IPv6 literal (a %zone allowed), without brackets.
bool is_ip_literal(std::string_view s);
// The family of an IP literal (IPv4-mapped IPv6 counts as IPv6, as Go's Is6 does), or nullopt.
std::optional<IpFamily> ip_literal_family(std::string_view s);

// How to reach a node over one address family.
struct DialTarget {
  enum class Kind {
    kSkip,     // the family is disabled for this node ("none" or any non-IP of this family)
    kDialIp,   // connect to `host`, an IP literal of the family
    kResolve,  // resolve `host` (the HostName) restricted to the family, then connect
  };
  Kind kind = Kind::kSkip;
  std::string host;

  friend bool operator==(const DialTarget&, const DialTarget&) = default;
};

// PROTOCOL.md §7.5 for a DERP connection: the IPv4/IPv6 field when it holds an IP of the
// family; resolve HostName when the field is empty; skip otherwise. An empty field with an IP
// literal HostName dials it when the family matches and skips the other family (Go would
// attempt and fail that dial).
DialTarget node_dial_target(const DERPNode& node, IpFamily family);

// PROTOCOL.md §9.3 for a STUN probe: STUNTestIP when set (skip if it is not an IP of this
// family), else the same rules as node_dial_target. Skips every family when STUN is off.
DialTarget node_stun_target(const DERPNode& node, IpFamily family);

}  // namespace derp
