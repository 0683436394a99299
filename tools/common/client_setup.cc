#include "common/client_setup.h"

#include <cstring>

#include "common/json_output.h"
#include "derp/derp_map_load.h"

namespace derp::tools {

Result<DERPRegion> load_region(const ToolCli& cli) {
  const auto timeout =
      cli.timeout().count() > 0 ? cli.timeout() : std::chrono::milliseconds(10000);
  auto map = load_derp_map(cli.derp_map(), timeout);
  if (!map) {
    // The map's URL failed, not a node: the hint is about the URL (an empty one would get the
    // node hints, "the node's HostName and CertName", which do not fit).
    Error e = map.error().wrap("--derp-map");
    if (e.kind == ErrorKind::kTls && e.hint.empty()) {
      e.hint = "the DERP map URL's certificate did not verify: check the URL, or save the map "
               "to a file and pass that";
    } else if (e.kind == ErrorKind::kHttp && e.hint.empty()) {
      e.hint = "check the DERP map URL: it must answer 200 with the map's JSON";
    }
    return e;
  }
  auto it = map->regions.find(cli.region());
  if (it == map->regions.end()) {
    std::string known;
    for (const auto& [id, r] : map->regions) known += (known.empty() ? "" : ", ") + std::to_string(id);
    return Error(ErrorKind::kUsage, "--region " + std::to_string(cli.region()) +
                                        ": not in the DERP map (regions: " +
                                        (known.empty() ? "none" : known) + ")");
  }
  return it->second;
}

Result<ToolClient> make_client(const ToolCli& cli, bool connect) {
  ToolClient out;
  auto key = cli.load_key(&out.ephemeral);
  if (!key) return std::move(key).error();
  out.key = *key;
  ClientOptions o;
  o.private_key = out.key;
  o.server_url = cli.server();
  if (!cli.derp_map().empty()) {
    auto region = load_region(cli);
    if (!region) return std::move(region).error();
    o.region = std::move(*region);
    o.region_plain_http = ToolCli::debug_use_derp_http();
  }
  o.server_key = cli.server_key();
  o.ca_file = cli.ca_file();
  o.insecure = cli.insecure();
  o.cert_name = cli.cert_name();
  o.proxy = cli.proxy();
  o.websocket = cli.websocket();
  if (cli.timeout().count() > 0) o.connect_timeout = cli.timeout();
  o.read_timeout = cli.read_timeout();
  auto client = Client::create(std::move(o));
  if (!client) return std::move(client).error();
  out.client = std::move(*client);
  if (connect) {
    if (auto ok = out.client->connect(); !ok) return std::move(ok).error();
  }
  return out;
}

namespace {
constexpr uint8_t kDiscoMagic[6] = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};  // "TS💬"
constexpr size_t kDiscoMinSize = 62;
}  // namespace

std::vector<uint8_t> presence_check_payload() {
  std::vector<uint8_t> p(kDiscoMinSize, 0);
  std::memcpy(p.data(), kDiscoMagic, sizeof kDiscoMagic);
  std::memcpy(p.data() + sizeof kDiscoMagic, "derpping", 8);
  return p;
}

std::string payload_for_humans(std::span<const uint8_t> data) {
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (is_printable_utf8(text)) return std::string(text);
  return "hex:" + to_hex(data.data(), data.size());
}

}  // namespace derp::tools
