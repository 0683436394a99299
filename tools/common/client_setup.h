// Building a derp::Client from the shared flags, and presenting received packets.
#pragma once

#include <memory>
#include <span>
#include <string>

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

// Payload for humans: the text when it is printable UTF-8, else "hex:<lower-case hex>".
std::string payload_for_humans(std::span<const uint8_t> data);

}  // namespace derp::tools
