// DERP map JSON and the address-selection helpers. PROTOCOL.md §7.5, §8, §9.3.
#include "derp/derp_map.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "codec/text.h"

namespace derp {
namespace {

using ordered_json = nlohmann::ordered_json;

Error map_error(std::string_view where, std::string_view what) {
  if (where.empty()) return Error(ErrorKind::kUsage, fmt::format("DERP map: {}", what));
  return Error(ErrorKind::kUsage, fmt::format("DERP map: {}: {}", where, what));
}

std::string join_where(std::string_view outer, std::string_view inner) {
  if (outer.empty()) return std::string(inner);
  return fmt::format("{}: {}", outer, inner);
}

const char* json_type_name(const ordered_json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

// Fields decode as Go's encoding/json does into an int: an integral JSON number in range
// (1e3 or 900.0 are rejected, as in Go).
Result<int> get_int(const ordered_json& v, std::string_view where, std::string_view key) {
  if (v.is_number_unsigned()) {
    const uint64_t x = v.get<uint64_t>();
    if (x <= static_cast<uint64_t>(std::numeric_limits<int>::max())) return static_cast<int>(x);
  } else if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x >= std::numeric_limits<int>::min() && x <= std::numeric_limits<int>::max()) {
      return static_cast<int>(x);
    }
  } else {
    return map_error(where, fmt::format("{} is {}, want an integer", key, json_type_name(v)));
  }
  return map_error(where, fmt::format("{} {} is out of range", key, v.dump()));
}

Result<double> get_double(const ordered_json& v, std::string_view where, std::string_view key) {
  if (!v.is_number()) {
    return map_error(where, fmt::format("{} is {}, want a number", key, json_type_name(v)));
  }
  return v.get<double>();
}

Result<bool> get_bool(const ordered_json& v, std::string_view where, std::string_view key) {
  if (!v.is_boolean()) {
    return map_error(where, fmt::format("{} is {}, want a boolean", key, json_type_name(v)));
  }
  return v.get<bool>();
}

Result<std::string> get_string(const ordered_json& v, std::string_view where,
                               std::string_view key) {
  if (!v.is_string()) {
    return map_error(where, fmt::format("{} is {}, want a string", key, json_type_name(v)));
  }
  return v.get<std::string>();
}

// A map key Go decodes into an int: strconv.ParseInt(key, 10, 64), so an optional sign and
// decimal digits (leading zeros allowed), then it must fit our int.
std::optional<int> parse_int_key(std::string_view key) {
  std::string_view digits = key;
  bool negative = false;
  if (!digits.empty() && (digits.front() == '+' || digits.front() == '-')) {
    negative = digits.front() == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return std::nullopt;
  int64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
    if (value > int64_t{std::numeric_limits<int>::max()} + 1) return std::nullopt;
  }
  if (negative) value = -value;
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()) {
    return std::nullopt;
  }
  return static_cast<int>(value);
}

// Assigns a decoded value to a field, or returns from the enclosing function with its error.
#define DERP_MAP_SET(field, expr)                            \
  do {                                                       \
    auto derp_map_r_ = (expr);                               \
    if (!derp_map_r_) return std::move(derp_map_r_).error(); \
    (field) = std::move(*derp_map_r_);                       \
  } while (0)

Result<DERPNode> parse_node(const ordered_json& j, const std::string& where, DerpMapChecks checks) {
  if (!j.is_object()) {
    return map_error(where, fmt::format("is {}, want an object", json_type_name(j)));
  }
  DERPNode n;
  // Go matches keys case-insensitively and the last duplicate wins: walk in document order.
  // A null leaves a field untouched, as in Go.
  for (const auto& item : j.items()) {
    // Plain references, not structured bindings: clang before 16 cannot capture those in lambdas.
    const std::string& key = item.key();
    const ordered_json& v = item.value();
    if (v.is_null()) continue;
    auto is = [&key](std::string_view name) { return codec::iequals_ascii(key, name); };
    if (is("Name")) {
      DERP_MAP_SET(n.name, get_string(v, where, "Name"));
    } else if (is("RegionID")) {
      DERP_MAP_SET(n.region_id, get_int(v, where, "RegionID"));
    } else if (is("HostName")) {
      DERP_MAP_SET(n.host_name, get_string(v, where, "HostName"));
    } else if (is("CertName")) {
      DERP_MAP_SET(n.cert_name, get_string(v, where, "CertName"));
    } else if (is("IPv4")) {
      DERP_MAP_SET(n.ipv4, get_string(v, where, "IPv4"));
    } else if (is("IPv6")) {
      DERP_MAP_SET(n.ipv6, get_string(v, where, "IPv6"));
    } else if (is("STUNPort")) {
      DERP_MAP_SET(n.stun_port, get_int(v, where, "STUNPort"));
    } else if (is("STUNOnly")) {
      DERP_MAP_SET(n.stun_only, get_bool(v, where, "STUNOnly"));
    } else if (is("DERPPort")) {
      DERP_MAP_SET(n.derp_port, get_int(v, where, "DERPPort"));
    } else if (is("InsecureForTests")) {
      DERP_MAP_SET(n.insecure_for_tests, get_bool(v, where, "InsecureForTests"));
    } else if (is("STUNTestIP")) {
      DERP_MAP_SET(n.stun_test_ip, get_string(v, where, "STUNTestIP"));
    } else if (is("CanPort80")) {
      DERP_MAP_SET(n.can_port80, get_bool(v, where, "CanPort80"));
    }
  }
  // Go does not check it, but a node without a HostName cannot be dialed nor verified.
  if (n.host_name.empty() && checks == DerpMapChecks::kDialable) {
    return map_error(where, "HostName missing");
  }
  return n;
}

Result<DERPRegion> parse_region(const ordered_json& j, const std::string& where,
                                DerpMapChecks checks) {
  if (!j.is_object()) {
    return map_error(where, fmt::format("is {}, want an object", json_type_name(j)));
  }
  DERPRegion r;
  for (const auto& item : j.items()) {
    // Plain references, not structured bindings: clang before 16 cannot capture those in lambdas.
    const std::string& key = item.key();
    const ordered_json& v = item.value();
    if (v.is_null()) continue;
    auto is = [&key](std::string_view name) { return codec::iequals_ascii(key, name); };
    if (is("RegionID")) {
      DERP_MAP_SET(r.region_id, get_int(v, where, "RegionID"));
    } else if (is("RegionCode")) {
      DERP_MAP_SET(r.region_code, get_string(v, where, "RegionCode"));
    } else if (is("RegionName")) {
      DERP_MAP_SET(r.region_name, get_string(v, where, "RegionName"));
    } else if (is("Latitude")) {
      DERP_MAP_SET(r.latitude, get_double(v, where, "Latitude"));
    } else if (is("Longitude")) {
      DERP_MAP_SET(r.longitude, get_double(v, where, "Longitude"));
    } else if (is("Avoid")) {
      DERP_MAP_SET(r.avoid, get_bool(v, where, "Avoid"));
    } else if (is("NoMeasureNoHome")) {
      DERP_MAP_SET(r.no_measure_no_home, get_bool(v, where, "NoMeasureNoHome"));
    } else if (is("Nodes")) {
      if (!v.is_array()) {
        return map_error(where, fmt::format("Nodes is {}, want an array", json_type_name(v)));
      }
      r.nodes.clear();
      r.nodes.reserve(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        const std::string node_where = join_where(where, fmt::format("node {}", i));
        if (v[i].is_null()) return map_error(node_where, "is null, want an object");
        auto node = parse_node(v[i], node_where, checks);
        if (!node) return std::move(node).error();
        r.nodes.push_back(std::move(*node));
      }
    }
  }
  return r;
}

// "RegionScore": region ID string → number. Like Go, a repeated object merges into the map.
Result<void> parse_region_score(const ordered_json& j, std::map<int, double>& out) {
  constexpr std::string_view kWhere = "HomeParams: RegionScore";
  if (!j.is_object()) {
    return map_error(kWhere, fmt::format("is {}, want an object", json_type_name(j)));
  }
  for (const auto& [key, v] : j.items()) {
    auto id = parse_int_key(key);
    if (!id) {
      return map_error(kWhere,
                       fmt::format("region key {} is not a number", codec::quote_for_error(key)));
    }
    const std::string where = fmt::format("{}: region {}", kWhere, codec::quote_for_error(key));
    if (v.is_null()) {
      out[*id] = 0;  // Go stores the zero value for a null map element
      continue;
    }
    auto score = get_double(v, where, "score");
    if (!score) return std::move(score).error();
    out[*id] = *score;
  }
  return {};
}

// Doubles Go prints without a fraction ("40", not "40.0") are stored as integers, so the
// output reads like Go's for the values maps actually hold.
ordered_json number_json(double x) {
  if (std::trunc(x) == x && std::fabs(x) < 1e15) return static_cast<int64_t>(x);
  return x;
}

// Go's encoding/json sorts map keys by their string form ("1000" before "900").
template <typename V>
std::vector<std::pair<std::string, const V*>> sorted_by_key_string(const std::map<int, V>& m) {
  std::vector<std::pair<std::string, const V*>> out;
  out.reserve(m.size());
  for (const auto& [id, v] : m) out.emplace_back(std::to_string(id), &v);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

ordered_json node_json(const DERPNode& n) {
  ordered_json j = ordered_json::object();
  j["Name"] = n.name;
  j["RegionID"] = n.region_id;
  j["HostName"] = n.host_name;
  if (!n.cert_name.empty()) j["CertName"] = n.cert_name;
  if (!n.ipv4.empty()) j["IPv4"] = n.ipv4;
  if (!n.ipv6.empty()) j["IPv6"] = n.ipv6;
  if (n.stun_port != 0) j["STUNPort"] = n.stun_port;
  if (n.stun_only) j["STUNOnly"] = true;
  if (n.derp_port != 0) j["DERPPort"] = n.derp_port;
  if (n.insecure_for_tests) j["InsecureForTests"] = true;
  if (!n.stun_test_ip.empty()) j["STUNTestIP"] = n.stun_test_ip;
  if (n.can_port80) j["CanPort80"] = true;
  return j;
}

ordered_json region_json(const DERPRegion& r) {
  ordered_json j = ordered_json::object();
  j["RegionID"] = r.region_id;
  j["RegionCode"] = r.region_code;
  j["RegionName"] = r.region_name;
  // Non-finite values cannot be written as JSON (Go refuses to marshal them): left out.
  if (r.latitude != 0 && std::isfinite(r.latitude)) j["Latitude"] = number_json(r.latitude);
  if (r.longitude != 0 && std::isfinite(r.longitude)) j["Longitude"] = number_json(r.longitude);
  if (r.avoid) j["Avoid"] = true;
  if (r.no_measure_no_home) j["NoMeasureNoHome"] = true;
  ordered_json nodes = ordered_json::array();
  for (const auto& n : r.nodes) nodes.push_back(node_json(n));
  j["Nodes"] = std::move(nodes);
  return j;
}

std::optional<IpFamily> family_of_ipv4_or_ipv6(std::string_view s) {
  // inet_pton wants a NUL-terminated string; no IP literal is longer than this.
  char buf[INET6_ADDRSTRLEN + 1];
  // An embedded NUL would end the C string early and make "1.2.3.4\0junk" pass.
  if (s.empty() || s.size() >= sizeof(buf) || s.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  unsigned char addr[16];
  if (inet_pton(AF_INET, buf, addr) == 1) return IpFamily::kV4;
  if (inet_pton(AF_INET6, buf, addr) == 1) return IpFamily::kV6;
  return std::nullopt;
}

bool family_matches(std::string_view ip, IpFamily family) {
  return ip_literal_family(ip) == family;
}

}  // namespace

#undef DERP_MAP_SET

Result<DERPMap> parse_derp_map(std::string_view json, DerpMapChecks checks) {
  ordered_json j;
  try {
    j = ordered_json::parse(json);
  } catch (const nlohmann::json::parse_error& e) {
    return map_error("", fmt::format("not valid JSON (error at byte {})", e.byte));
  } catch (const nlohmann::json::exception&) {
    // The parser reports a number too large for a double (e.g. 1e400) as out_of_range.
    return map_error("", "not valid JSON (a number is out of range)");
  }
  if (!j.is_object()) {
    return map_error("", fmt::format("top level is {}, want an object", json_type_name(j)));
  }
  DERPMap map;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;
    if (codec::iequals_ascii(key, "Regions")) {
      if (!v.is_object()) {
        return map_error("", fmt::format("Regions is {}, want an object", json_type_name(v)));
      }
      // A repeated "Regions" merges into the map, as Go's decoder does.
      for (const auto& [rkey, rv] : v.items()) {
        auto id = parse_int_key(rkey);
        if (!id) {
          return map_error(
              "", fmt::format("region key {} is not a number", codec::quote_for_error(rkey)));
        }
        const std::string where = fmt::format("region {}", codec::quote_for_error(rkey));
        if (rv.is_null()) return map_error(where, "is null, want an object");
        auto region = parse_region(rv, where, checks);
        if (!region) return std::move(region).error();
        if (region->region_id != *id && checks == DerpMapChecks::kDialable) {
          return map_error("", fmt::format("region {} has RegionID {}", *id, region->region_id));
        }
        map.regions[*id] = std::move(*region);
      }
    } else if (codec::iequals_ascii(key, "HomeParams")) {
      if (!v.is_object()) {
        return map_error("", fmt::format("HomeParams is {}, want an object", json_type_name(v)));
      }
      if (!map.home_params) map.home_params.emplace();
      for (const auto& [hkey, hv] : v.items()) {
        if (hv.is_null() || !codec::iequals_ascii(hkey, "RegionScore")) continue;
        auto ok = parse_region_score(hv, map.home_params->region_score);
        if (!ok) return std::move(ok).error();
      }
    } else if (codec::iequals_ascii(key, "omitDefaultRegions")) {
      auto b = get_bool(v, "", "omitDefaultRegions");
      if (!b) return std::move(b).error();
      map.omit_default_regions = *b;
    }
  }
  return map;
}

std::string derp_map_to_json(const DERPMap& map, int indent) {
  ordered_json j = ordered_json::object();
  if (map.home_params) {
    ordered_json hp = ordered_json::object();
    if (!map.home_params->region_score.empty()) {
      ordered_json scores = ordered_json::object();
      for (const auto& [key, score] : sorted_by_key_string(map.home_params->region_score)) {
        scores[key] = std::isfinite(*score) ? number_json(*score) : ordered_json(0);
      }
      hp["RegionScore"] = std::move(scores);
    }
    j["HomeParams"] = std::move(hp);
  }
  ordered_json regions = ordered_json::object();
  for (const auto& [key, region] : sorted_by_key_string(map.regions)) {
    regions[key] = region_json(*region);
  }
  j["Regions"] = std::move(regions);
  if (map.omit_default_regions) j["omitDefaultRegions"] = true;
  // Invalid UTF-8 in a string field becomes U+FFFD, as Go writes it, rather than throwing.
  return j.dump(indent, ' ', false, ordered_json::error_handler_t::replace);
}

int node_derp_port(const DERPNode& node) {
  return node.derp_port != 0 ? node.derp_port : kDefaultDerpPort;
}

std::optional<uint16_t> node_stun_port(const DERPNode& node) {
  if (node.stun_port == 0) return kDefaultStunPort;
  if (node.stun_port < 0 || node.stun_port > 65535) return std::nullopt;
  return static_cast<uint16_t>(node.stun_port);
}

std::string node_url(const DERPNode& node) {
  const bool v6 = ip_literal_family(node.host_name) == IpFamily::kV6;
  const std::string host = v6 ? fmt::format("[{}]", node.host_name) : node.host_name;
  const int port = node_derp_port(node);
  if (port == kDefaultDerpPort) return fmt::format("https://{}/derp", host);
  return fmt::format("https://{}:{}/derp", host, port);
}

std::optional<IpFamily> ip_literal_family(std::string_view s) {
  // Go's netip.ParseAddr accepts an IPv6 zone ("fe80::1%eth0"); inet_pton does not.
  const size_t pct = s.find('%');
  if (pct != std::string_view::npos) {
    if (pct + 1 == s.size()) return std::nullopt;  // empty zone
    if (family_of_ipv4_or_ipv6(s.substr(0, pct)) != IpFamily::kV6) return std::nullopt;
    return IpFamily::kV6;
  }
  return family_of_ipv4_or_ipv6(s);
}

bool is_ip_literal(std::string_view s) { return ip_literal_family(s).has_value(); }

DialTarget node_dial_target(const DERPNode& node, IpFamily family) {
  const std::string& field = family == IpFamily::kV4 ? node.ipv4 : node.ipv6;
  if (!field.empty()) {
    if (family_matches(field, family)) return {DialTarget::Kind::kDialIp, field};
    return {};
  }
  if (const auto host_family = ip_literal_family(node.host_name)) {
    if (*host_family == family) return {DialTarget::Kind::kDialIp, node.host_name};
    return {};
  }
  if (node.host_name.empty()) return {};
  return {DialTarget::Kind::kResolve, node.host_name};
}

DialTarget node_stun_target(const DERPNode& node, IpFamily family) {
  if (!node_stun_port(node)) return {};
  if (!node.stun_test_ip.empty()) {
    if (family_matches(node.stun_test_ip, family)) {
      return {DialTarget::Kind::kDialIp, node.stun_test_ip};
    }
    return {};
  }
  return node_dial_target(node, family);
}

}  // namespace derp
