// DERP frames: constants, encoders, decoders and an incremental reader. I/O-free.
// PROTOCOL.md §2 (framing), §4.4–4.5 (PeerGone/PeerPresent), §11 (test vectors).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "derp/key.h"
#include "derp/result.h"

namespace derp {

inline constexpr std::array<uint8_t, 8> kMagic = {0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91};
inline constexpr size_t kFrameHeaderLen = 5;
inline constexpr size_t kNonceLen = 24;
inline constexpr size_t kMaxPacketSize = 64 * 1024;    // data bytes in Send/Recv/Forward
inline constexpr size_t kMaxInfoLen = 1024 * 1024;     // ServerInfo box; client's frame limit
inline constexpr size_t kMaxClientInfoLen = 256 * 1024;  // server's ClientInfo frame limit
inline constexpr size_t kMaxPingLen = 1000;
inline constexpr int kProtocolVersion = 2;
inline constexpr size_t kPeerPresentLen = 32 + 16 + 2 + 1;  // 51
// The largest SendPacket/RecvPacket frame: header + key + max packet.
inline constexpr size_t kMaxPacketFrameLen = kFrameHeaderLen + kKeyLen + kMaxPacketSize;

enum class FrameType : uint8_t {
  kServerKey = 0x01,
  kClientInfo = 0x02,
  kServerInfo = 0x03,
  kSendPacket = 0x04,
  kRecvPacket = 0x05,
  kKeepAlive = 0x06,
  kNotePreferred = 0x07,
  kPeerGone = 0x08,
  kPeerPresent = 0x09,
  kForwardPacket = 0x0a,
  kWatchConns = 0x10,
  kClosePeer = 0x11,
  kPing = 0x12,
  kPong = 0x13,
  kHealth = 0x14,
  kRestarting = 0x15,
};

// "SendPacket", "PeerGone", ... or "Unknown(0x0b)".
std::string frame_type_name(uint8_t type);

enum class PeerGoneReason : uint8_t {
  kDisconnected = 0x00,
  kNotHere = 0x01,
  kMeshConnBroke = 0xf0,  // synthesized locally by watch loops, never on the wire
};

namespace peer_present_flags {
inline constexpr uint8_t kIsRegular = 0x01;
inline constexpr uint8_t kIsMeshPeer = 0x02;
inline constexpr uint8_t kIsProber = 0x04;
inline constexpr uint8_t kNotIdeal = 0x08;
}  // namespace peer_present_flags

using PingData = std::array<uint8_t, 8>;

struct FrameHeader {
  uint8_t type = 0;  // raw: unknown types must survive parsing
  uint32_t length = 0;
};

// Writes the 5-byte header at out[0..5).
void write_frame_header(uint8_t* out, FrameType type, uint32_t length);
FrameHeader read_frame_header(const uint8_t* in);

// ---- Encoders. Each writes one whole frame into `out` and returns its length, or 0 if `out`
// is too small. encoded_len_* tell the exact size in advance. No allocation.
size_t encode_server_key(std::span<uint8_t> out, const NodePublic& server);
size_t encode_send_packet(std::span<uint8_t> out, const NodePublic& dst,
                          std::span<const uint8_t> packet);
size_t encode_recv_packet(std::span<uint8_t> out, const NodePublic& src,
                          std::span<const uint8_t> packet);
size_t encode_forward_packet(std::span<uint8_t> out, const NodePublic& src, const NodePublic& dst,
                             std::span<const uint8_t> packet);
size_t encode_keep_alive(std::span<uint8_t> out);
size_t encode_note_preferred(std::span<uint8_t> out, bool preferred);
size_t encode_peer_gone(std::span<uint8_t> out, const NodePublic& peer, PeerGoneReason reason);
// ip16: the 16-byte address (IPv4 as ::ffff:a.b.c.d; all-zero when unknown), port in host order.
size_t encode_peer_present(std::span<uint8_t> out, const NodePublic& peer,
                           const std::array<uint8_t, 16>& ip16, uint16_t port, uint8_t flags);
// The same without the flags byte (50-byte payload), as derper sent it before PeerPresent had
// flags.
size_t encode_peer_present_without_flags(std::span<uint8_t> out, const NodePublic& peer,
                                         const std::array<uint8_t, 16>& ip16, uint16_t port);
size_t encode_watch_conns(std::span<uint8_t> out);
size_t encode_close_peer(std::span<uint8_t> out, const NodePublic& peer);
size_t encode_ping(std::span<uint8_t> out, const PingData& data);
size_t encode_pong(std::span<uint8_t> out, const PingData& data);
size_t encode_health(std::span<uint8_t> out, std::string_view problem);
size_t encode_restarting(std::span<uint8_t> out, uint32_t reconnect_in_ms, uint32_t try_for_ms);

// Convenience for cold paths and tests: the same encoders returning a vector.
std::vector<uint8_t> frame_bytes(FrameType type, std::span<const uint8_t> payload);

// ---- Decoded message views. Spans point into the frame payload they were decoded from.
struct SendPacketView { NodePublic dst; std::span<const uint8_t> data; };
struct RecvPacketView { NodePublic src; std::span<const uint8_t> data; };
struct ForwardPacketView { NodePublic src; NodePublic dst; std::span<const uint8_t> data; };
struct PeerGoneView { NodePublic peer; PeerGoneReason reason = PeerGoneReason::kDisconnected; };
struct PeerPresentView {
  NodePublic peer;
  bool has_endpoint = false;        // payload had ≥ 50 bytes
  std::array<uint8_t, 16> ip16{};   // as on the wire (IPv4-mapped for IPv4)
  uint16_t port = 0;
  bool has_flags = false;           // payload had ≥ 51 bytes
  uint8_t flags = 0;
};
struct RestartingView { uint32_t reconnect_in_ms = 0; uint32_t try_for_ms = 0; };

// Decoders: validate the payload of one frame of the named type. Tolerant exactly as Go's
// client is (longer payloads accepted, extra bytes ignored); kProtocol error when too short.
Result<NodePublic> decode_server_key(std::span<const uint8_t> payload);  // checks magic
Result<SendPacketView> decode_send_packet(std::span<const uint8_t> payload);
Result<RecvPacketView> decode_recv_packet(std::span<const uint8_t> payload);
Result<ForwardPacketView> decode_forward_packet(std::span<const uint8_t> payload);
Result<PeerGoneView> decode_peer_gone(std::span<const uint8_t> payload);  // 32 bytes = Disconnected
Result<PeerPresentView> decode_peer_present(std::span<const uint8_t> payload);
Result<bool> decode_note_preferred(std::span<const uint8_t> payload);
Result<NodePublic> decode_close_peer(std::span<const uint8_t> payload);
Result<PingData> decode_ping(std::span<const uint8_t> payload);  // also Pong: first 8 bytes
Result<RestartingView> decode_restarting(std::span<const uint8_t> payload);

// "looks like a disco wrapper": ≥ 62 bytes starting "TS💬" (PROTOCOL.md §4.4).
bool looks_like_disco(std::span<const uint8_t> packet);

// ---- Incremental reader.
//
// Feed it whatever arrived, in any split (one byte at a time included); take out whole frames.
// A frame that lies entirely inside `input` is returned as a view into it (zero copy); a frame
// split across feeds is assembled in an internal buffer that grows once up to the largest
// frame allowed and is then reused, so steady-state reading never allocates. Frames the role
// does not keep are skipped without buffering, whatever their length.
class FrameReader {
 public:
  enum class Role {
    // Reading what a client sent (the relay's side). Per-type limits of PROTOCOL.md §2.4:
    // SendPacket 32..32+64Ki, ForwardPacket 64..64+64Ki, NotePreferred ==1, WatchConns ==0,
    // ClosePeer ==32, Ping 8..1000, ClientInfo 56..256Ki. Violations are errors. Every other
    // type (Pong, KeepAlive, ServerKey, unknown, ...) is skipped.
    kServer,
    // Reading what a relay sent (the client's side): any type up to 1 MiB is delivered
    // (unknown types too: the caller ignores them); a longer frame is an error.
    kClient,
  };

  struct Frame {
    uint8_t type = 0;  // raw type byte; compare with FrameType values
    std::span<const uint8_t> payload;
    FrameType frame_type() const { return static_cast<FrameType>(type); }
  };

  explicit FrameReader(Role role);

  // Consumes bytes from the front of `input` (advancing it) and returns the next whole frame,
  // std::nullopt when more bytes are needed (all of `input` consumed), or a kProtocol error
  // (after which the reader must not be used again). A returned payload stays valid until the
  // next call to next() or until the caller's input buffer changes, whichever comes first.
  Result<std::optional<Frame>> next(std::span<const uint8_t>& input);

  // Bytes of a partially received frame held inside the reader (0 between frames).
  size_t buffered() const;
  // Frames skipped so far (unknown or unwanted types).
  uint64_t skipped_frames() const { return skipped_; }

  // The limit rule for one header in the given role: empty Result = keep, error = violation;
  // *skip set to true when the frame is to be skipped. Exposed for zero-copy readers that
  // parse headers in their own buffers (the relay does).
  static Result<void> check_header(Role role, const FrameHeader& h, bool* skip);

 private:
  Role role_;
  std::array<uint8_t, kFrameHeaderLen> hdr_{};
  size_t hdr_have_ = 0;
  FrameHeader cur_{};
  bool in_frame_ = false;  // header complete, payload pending
  bool skipping_ = false;
  size_t remaining_ = 0;    // payload bytes still to come for the current frame
  std::vector<uint8_t> buf_;  // assembly buffer for split frames
  size_t buf_len_ = 0;
  bool failed_ = false;
  uint64_t skipped_ = 0;
};

}  // namespace derp
