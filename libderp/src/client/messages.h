// Turning frames a relay sent into owned ReceivedMessage values (PROTOCOL.md §2.4, client side).
#pragma once

#include <optional>
#include <string>

#include "derp/client.h"
#include "derp/frame.h"

namespace derp::client {

struct Decoded {
  std::optional<ReceivedMessage> message;  // nullopt: skip this frame
  std::string skipped_why;                 // set when a known frame was too short to use
};

// Unknown types and late ServerKey frames are skipped silently; short PeerGone/PeerPresent/
// RecvPacket/Ping/Pong/Restarting frames are skipped with a reason (as Go's client does).
// A ServerInfo that does not open is fatal (kProtocol).
Result<Decoded> decode_message(const FrameReader::Frame& frame, const NodePrivate& self,
                               const NodePublic& server);

}  // namespace derp::client
