// Building a derp::Client from the shared flags, and presenting received packets.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "common/cli.h"
#include "derp/client.h"

namespace derp::tools {

// A client for cli.server() with the pin from --server-key and the given key. Connect
// timeout = --timeout when the tool has one. Does not connect.
Result<std::unique_ptr<Client>> make_client(const ToolCli& cli, const NodePrivate& key);

// Payload for humans: the text when it is printable UTF-8, else "hex:<lower-case hex>".
std::string payload_for_humans(std::span<const uint8_t> data);

}  // namespace derp::tools
