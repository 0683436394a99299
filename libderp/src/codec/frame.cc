// Frame header, encoders and decoders. PROTOCOL.md §2, §4.4–4.5, §11.
#include "derp/frame.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>

namespace derp {
namespace {

void put_u32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

uint32_t get_u32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// Builds one frame from up to three payload pieces, or returns 0 when `out` is too small or
// the payload does not fit the 32-bit length field.
size_t put_frame(std::span<uint8_t> out, FrameType type, std::span<const uint8_t> a,
                 std::span<const uint8_t> b = {}, std::span<const uint8_t> c = {}) {
  const size_t payload = a.size() + b.size() + c.size();
  if (payload > std::numeric_limits<uint32_t>::max()) return 0;
  const size_t total = kFrameHeaderLen + payload;
  if (out.size() < total) return 0;
  write_frame_header(out.data(), type, static_cast<uint32_t>(payload));
  uint8_t* p = out.data() + kFrameHeaderLen;
  // memcpy with a null source is undefined even for length 0, hence the guards.
  if (!a.empty()) std::memcpy(p, a.data(), a.size());
  p += a.size();
  if (!b.empty()) std::memcpy(p, b.data(), b.size());
  p += b.size();
  if (!c.empty()) std::memcpy(p, c.data(), c.size());
  return total;
}

std::span<const uint8_t> key_span(const NodePublic& k) { return {k.bytes.data(), k.bytes.size()}; }

Error too_short(std::string_view name, size_t got, size_t want) {
  return Error(
      ErrorKind::kProtocol,
      fmt::format("{} frame of {} bytes is shorter than the minimum of {}", name, got, want));
}

Error too_short(FrameType type, size_t got, size_t want) {
  return too_short(frame_type_name(static_cast<uint8_t>(type)), got, want);
}

constexpr std::array<uint8_t, 6> kDiscoMagic = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};  // "TS💬"
// Disco magic + 32-byte disco key + 24-byte nonce: a wrapper cannot be shorter.
constexpr size_t kDiscoMinLen = kDiscoMagic.size() + kKeyLen + kNonceLen;

}  // namespace

std::string frame_type_name(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kServerKey:
      return "ServerKey";
    case FrameType::kClientInfo:
      return "ClientInfo";
    case FrameType::kServerInfo:
      return "ServerInfo";
    case FrameType::kSendPacket:
      return "SendPacket";
    case FrameType::kRecvPacket:
      return "RecvPacket";
    case FrameType::kKeepAlive:
      return "KeepAlive";
    case FrameType::kNotePreferred:
      return "NotePreferred";
    case FrameType::kPeerGone:
      return "PeerGone";
    case FrameType::kPeerPresent:
      return "PeerPresent";
    case FrameType::kForwardPacket:
      return "ForwardPacket";
    case FrameType::kWatchConns:
      return "WatchConns";
    case FrameType::kClosePeer:
      return "ClosePeer";
    case FrameType::kPing:
      return "Ping";
    case FrameType::kPong:
      return "Pong";
    case FrameType::kHealth:
      return "Health";
    case FrameType::kRestarting:
      return "Restarting";
  }
  return fmt::format("Unknown(0x{:02x})", type);
}

void write_frame_header(uint8_t* out, FrameType type, uint32_t length) {
  out[0] = static_cast<uint8_t>(type);
  put_u32(out + 1, length);
}

FrameHeader read_frame_header(const uint8_t* in) { return FrameHeader{in[0], get_u32(in + 1)}; }

// ---- Encoders

size_t encode_server_key(std::span<uint8_t> out, const NodePublic& server) {
  return put_frame(out, FrameType::kServerKey, kMagic, key_span(server));
}

size_t encode_send_packet(std::span<uint8_t> out, const NodePublic& dst,
                          std::span<const uint8_t> packet) {
  return put_frame(out, FrameType::kSendPacket, key_span(dst), packet);
}

size_t encode_recv_packet(std::span<uint8_t> out, const NodePublic& src,
                          std::span<const uint8_t> packet) {
  return put_frame(out, FrameType::kRecvPacket, key_span(src), packet);
}

size_t encode_forward_packet(std::span<uint8_t> out, const NodePublic& src, const NodePublic& dst,
                             std::span<const uint8_t> packet) {
  return put_frame(out, FrameType::kForwardPacket, key_span(src), key_span(dst), packet);
}

size_t encode_keep_alive(std::span<uint8_t> out) {
  return put_frame(out, FrameType::kKeepAlive, {});
}

size_t encode_note_preferred(std::span<uint8_t> out, bool preferred) {
  const uint8_t b = preferred ? 0x01 : 0x00;
  return put_frame(out, FrameType::kNotePreferred, {&b, 1});
}

size_t encode_peer_gone(std::span<uint8_t> out, const NodePublic& peer, PeerGoneReason reason) {
  const uint8_t r = static_cast<uint8_t>(reason);
  return put_frame(out, FrameType::kPeerGone, key_span(peer), {&r, 1});
}

size_t encode_peer_present(std::span<uint8_t> out, const NodePublic& peer,
                           const std::array<uint8_t, 16>& ip16, uint16_t port, uint8_t flags) {
  const uint8_t tail[3] = {static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port), flags};
  return put_frame(out, FrameType::kPeerPresent, key_span(peer), ip16, tail);
}

size_t encode_peer_present_without_flags(std::span<uint8_t> out, const NodePublic& peer,
                                         const std::array<uint8_t, 16>& ip16, uint16_t port) {
  const uint8_t tail[2] = {static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port)};
  return put_frame(out, FrameType::kPeerPresent, key_span(peer), ip16, tail);
}

size_t encode_watch_conns(std::span<uint8_t> out) {
  return put_frame(out, FrameType::kWatchConns, {});
}

size_t encode_close_peer(std::span<uint8_t> out, const NodePublic& peer) {
  return put_frame(out, FrameType::kClosePeer, key_span(peer));
}

size_t encode_ping(std::span<uint8_t> out, const PingData& data) {
  return put_frame(out, FrameType::kPing, data);
}

size_t encode_pong(std::span<uint8_t> out, const PingData& data) {
  return put_frame(out, FrameType::kPong, data);
}

size_t encode_health(std::span<uint8_t> out, std::string_view problem) {
  return put_frame(out, FrameType::kHealth,
                   {reinterpret_cast<const uint8_t*>(problem.data()), problem.size()});
}

size_t encode_restarting(std::span<uint8_t> out, uint32_t reconnect_in_ms, uint32_t try_for_ms) {
  uint8_t payload[8];
  put_u32(payload, reconnect_in_ms);
  put_u32(payload + 4, try_for_ms);
  return put_frame(out, FrameType::kRestarting, payload);
}

std::vector<uint8_t> frame_bytes(FrameType type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out(kFrameHeaderLen + payload.size());
  put_frame(out, type, payload);
  return out;
}

// ---- Decoders

Result<NodePublic> decode_server_key(std::span<const uint8_t> payload) {
  if (payload.size() < kMagic.size() + kKeyLen) {
    return too_short(FrameType::kServerKey, payload.size(), kMagic.size() + kKeyLen);
  }
  if (std::memcmp(payload.data(), kMagic.data(), kMagic.size()) != 0) {
    return Error(ErrorKind::kProtocol,
                 "ServerKey frame has bad magic (want \"DERP\\xf0\\x9f\\x94\\x91\"; not a DERP "
                 "server?)");
  }
  return NodePublic::from_bytes(payload.data() + kMagic.size());
}

Result<SendPacketView> decode_send_packet(std::span<const uint8_t> payload) {
  if (payload.size() < kKeyLen) return too_short(FrameType::kSendPacket, payload.size(), kKeyLen);
  return SendPacketView{NodePublic::from_bytes(payload.data()), payload.subspan(kKeyLen)};
}

Result<RecvPacketView> decode_recv_packet(std::span<const uint8_t> payload) {
  if (payload.size() < kKeyLen) return too_short(FrameType::kRecvPacket, payload.size(), kKeyLen);
  return RecvPacketView{NodePublic::from_bytes(payload.data()), payload.subspan(kKeyLen)};
}

Result<ForwardPacketView> decode_forward_packet(std::span<const uint8_t> payload) {
  if (payload.size() < 2 * kKeyLen) {
    return too_short(FrameType::kForwardPacket, payload.size(), 2 * kKeyLen);
  }
  return ForwardPacketView{NodePublic::from_bytes(payload.data()),
                           NodePublic::from_bytes(payload.data() + kKeyLen),
                           payload.subspan(2 * kKeyLen)};
}

Result<PeerGoneView> decode_peer_gone(std::span<const uint8_t> payload) {
  if (payload.size() < kKeyLen) return too_short(FrameType::kPeerGone, payload.size(), kKeyLen);
  PeerGoneView v{NodePublic::from_bytes(payload.data()), PeerGoneReason::kDisconnected};
  // Old relays send the key alone, which means Disconnected; unknown reasons pass through.
  if (payload.size() > kKeyLen) v.reason = static_cast<PeerGoneReason>(payload[kKeyLen]);
  return v;
}

Result<PeerPresentView> decode_peer_present(std::span<const uint8_t> payload) {
  if (payload.size() < kKeyLen) return too_short(FrameType::kPeerPresent, payload.size(), kKeyLen);
  PeerPresentView v;
  v.peer = NodePublic::from_bytes(payload.data());
  // Old relays send the key alone; later ones add the endpoint, then the flags byte.
  if (payload.size() >= kKeyLen + 16 + 2) {
    v.has_endpoint = true;
    std::memcpy(v.ip16.data(), payload.data() + kKeyLen, 16);
    v.port = static_cast<uint16_t>(payload[kKeyLen + 16] << 8 | payload[kKeyLen + 17]);
  }
  if (payload.size() >= kPeerPresentLen) {
    v.has_flags = true;
    v.flags = payload[kKeyLen + 18];
  }
  return v;
}

Result<bool> decode_note_preferred(std::span<const uint8_t> payload) {
  if (payload.empty()) return too_short(FrameType::kNotePreferred, 0, 1);
  return payload[0] != 0;
}

Result<NodePublic> decode_close_peer(std::span<const uint8_t> payload) {
  if (payload.size() < kKeyLen) return too_short(FrameType::kClosePeer, payload.size(), kKeyLen);
  return NodePublic::from_bytes(payload.data());
}

Result<PingData> decode_ping(std::span<const uint8_t> payload) {
  PingData d;
  if (payload.size() < d.size()) return too_short("Ping/Pong", payload.size(), d.size());
  std::memcpy(d.data(), payload.data(), d.size());
  return d;
}

Result<RestartingView> decode_restarting(std::span<const uint8_t> payload) {
  if (payload.size() < 8) return too_short(FrameType::kRestarting, payload.size(), 8);
  return RestartingView{get_u32(payload.data()), get_u32(payload.data() + 4)};
}

bool looks_like_disco(std::span<const uint8_t> packet) {
  return packet.size() >= kDiscoMinLen &&
         std::memcmp(packet.data(), kDiscoMagic.data(), kDiscoMagic.size()) == 0;
}

}  // namespace derp
