// Building a derp::Client from the shared flags, and presenting received packets.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/cli.h"
#include "derp/client.h"

namespace derp::tools {

struct ToolClient {
  std::unique_ptr<Client> client;
  NodePrivate key;         // from --key-file, or fresh
  bool ephemeral = false;  // true when no --key-file was given
};

// The region --derp-map/--region name: the map loaded (file or URL, bounded by --timeout or
// 10 s) and the region looked up. kUsage when the region is not in the map.
Result<DERPRegion> load_region(const ToolCli& cli);

// A client for cli.server() (or the --derp-map region) with the key from --key-file (or a fresh one) and the pin from
// --server-key. Connect timeout = --timeout when the tool has one. Connects when `connect`.
Result<ToolClient> make_client(const ToolCli& cli, bool connect);

// "Is this peer connected?" Relays (derper and derp-serve alike) answer a packet for a key they
// do not know with PeerGone(NotHere) only when it looks like a disco message: at least 62 bytes
// starting with "TS💬" (PROTOCOL.md §4.4). The presence check is a packet of that shape marked as
// ours ("TS💬derpping" + zeros): a real Tailscale node drops it (it does not decrypt), derp-recv
// shows it like any packet (and --echo echoes it).
// (derp::looks_like_disco() says yes to it.)
std::vector<uint8_t> presence_check_payload();

// Payload for humans: the text when it is printable UTF-8, else "hex:<lower-case hex>".
std::string payload_for_humans(std::span<const uint8_t> data);

}  // namespace derp::tools
