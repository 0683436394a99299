// parse_derp_map on arbitrary text. A map that parses must be emitted as JSON that parses to
// an equal map (the encoder and decoder agree), and the helpers must accept any parsed node.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "derp/derp_map.h"

namespace {

// NaN cannot come out of JSON, but keep the comparison honest if it ever did.
bool has_non_finite(const derp::DERPMap& m) {
  for (const auto& [id, r] : m.regions) {
    if (!std::isfinite(r.latitude) || !std::isfinite(r.longitude)) return true;
  }
  if (m.home_params) {
    for (const auto& [id, s] : m.home_params->region_score) {
      if (!std::isfinite(s)) return true;
    }
  }
  return false;
}

// Strings from the input are valid UTF-8 (the JSON parser checks), so the output is exact.
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto m = derp::parse_derp_map(text);
  if (!m.ok()) {
    if (m.error().message.empty() || m.error().message.find('\n') != std::string::npos) {
      std::abort();
    }
    return 0;
  }
  if (!has_non_finite(*m)) {
    auto again = derp::parse_derp_map(derp::derp_map_to_json(*m));
    if (!again.ok() || !(*again == *m)) std::abort();
  }
  for (const auto& [id, region] : m->regions) {
    if (region.region_id != id) std::abort();
    for (const auto& node : region.nodes) {
      if (node.host_name.empty()) std::abort();
      (void)derp::node_url(node);
      (void)derp::node_stun_port(node);
      for (auto family : {derp::IpFamily::kV4, derp::IpFamily::kV6}) {
        const auto t = derp::node_dial_target(node, family);
        if (t.kind == derp::DialTarget::Kind::kDialIp &&
            derp::ip_literal_family(t.host) != family) {
          std::abort();
        }
        (void)derp::node_stun_target(node, family);
      }
    }
  }
  return 0;
}
