#include "client/messages.h"

#include "derp/handshake.h"

namespace derp::client {

namespace {

Decoded skip(const FrameReader::Frame& frame, const Error& e) {
  Decoded d;
  d.skipped_why = "skipped " + frame_type_name(frame.type) + " frame of " +
                  std::to_string(frame.payload.size()) + " bytes: " + e.message;
  return d;
}

Decoded message(ReceivedMessage m) {
  Decoded d;
  d.message = std::move(m);
  return d;
}

}  // namespace

const char* received_message_name_impl(const ReceivedMessage& m) {
  struct Namer {
    const char* operator()(const ServerInfoMessage&) const { return "ServerInfo"; }
    const char* operator()(const ReceivedPacket&) const { return "ReceivedPacket"; }
    const char* operator()(const PeerGoneMessage&) const { return "PeerGone"; }
    const char* operator()(const PeerPresentMessage&) const { return "PeerPresent"; }
    const char* operator()(const KeepAliveMessage&) const { return "KeepAlive"; }
    const char* operator()(const PingMessage&) const { return "Ping"; }
    const char* operator()(const PongMessage&) const { return "Pong"; }
    const char* operator()(const HealthMessage&) const { return "Health"; }
    const char* operator()(const ServerRestartingMessage&) const { return "ServerRestarting"; }
  };
  return std::visit(Namer{}, m);
}

Result<Decoded> decode_message(const FrameReader::Frame& frame, const NodePrivate& self,
                               const NodePublic& server) {
  const auto payload = frame.payload;
  switch (frame.frame_type()) {
    case FrameType::kServerInfo: {
      auto info = open_server_info(self, server, payload);
      if (!info) return info.error();
      return message(ServerInfoMessage{*info});
    }
    case FrameType::kRecvPacket: {
      auto p = decode_recv_packet(payload);
      if (!p) return skip(frame, p.error());
      return message(ReceivedPacket{p->src, std::vector<uint8_t>(p->data.begin(), p->data.end())});
    }
    case FrameType::kKeepAlive:
      return message(KeepAliveMessage{});
    case FrameType::kPeerGone: {
      auto g = decode_peer_gone(payload);
      if (!g) return skip(frame, g.error());
      return message(PeerGoneMessage{g->peer, g->reason});
    }
    case FrameType::kPeerPresent: {
      auto p = decode_peer_present(payload);
      if (!p) return skip(frame, p.error());
      PeerPresentMessage m;
      m.peer = p->peer;
      m.has_endpoint = p->has_endpoint;
      m.ip16 = p->ip16;
      m.port = p->port;
      m.has_flags = p->has_flags;
      m.flags = p->flags;
      return message(m);
    }
    case FrameType::kPing: {
      auto d = decode_ping(payload);
      if (!d) return skip(frame, d.error());
      return message(PingMessage{*d});
    }
    case FrameType::kPong: {
      auto d = decode_ping(payload);
      if (!d) return skip(frame, d.error());
      return message(PongMessage{*d});
    }
    case FrameType::kHealth:
      return message(HealthMessage{std::string(payload.begin(), payload.end())});
    case FrameType::kRestarting: {
      auto r = decode_restarting(payload);
      if (!r) return skip(frame, r.error());
      return message(ServerRestartingMessage{std::chrono::milliseconds(r->reconnect_in_ms),
                                             std::chrono::milliseconds(r->try_for_ms)});
    }
    default:
      // ServerKey after the handshake (fast start), client-only types, unknown types.
      return Decoded{};
  }
}

}  // namespace derp::client

namespace derp {
const char* received_message_name(const ReceivedMessage& message) {
  return client::received_message_name_impl(message);
}
}  // namespace derp
