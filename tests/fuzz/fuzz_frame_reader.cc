// FrameReader in both roles on arbitrary bytes. The first input byte picks where the rest is
// split into two feeds; the frames out must be the same as from one whole feed and from
// byte-at-a-time feeding, and every kept frame goes through its decoder.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "derp/frame.h"

namespace {

using derp::FrameReader;
using derp::FrameType;

struct Out {
  std::vector<std::pair<uint8_t, std::vector<uint8_t>>> frames;
  bool failed = false;
};

void decode_any(uint8_t type, std::span<const uint8_t> p) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kServerKey:
      (void)derp::decode_server_key(p);
      break;
    case FrameType::kSendPacket:
      (void)derp::decode_send_packet(p);
      break;
    case FrameType::kRecvPacket:
      (void)derp::decode_recv_packet(p);
      break;
    case FrameType::kForwardPacket:
      (void)derp::decode_forward_packet(p);
      break;
    case FrameType::kPeerGone:
      (void)derp::decode_peer_gone(p);
      break;
    case FrameType::kPeerPresent:
      (void)derp::decode_peer_present(p);
      break;
    case FrameType::kNotePreferred:
      (void)derp::decode_note_preferred(p);
      break;
    case FrameType::kClosePeer:
      (void)derp::decode_close_peer(p);
      break;
    case FrameType::kPing:
    case FrameType::kPong:
      (void)derp::decode_ping(p);
      break;
    case FrameType::kRestarting:
      (void)derp::decode_restarting(p);
      break;
    default:
      (void)derp::looks_like_disco(p);
      break;
  }
}

// Feeds `pieces` in order; stops at the first error (the reader is dead after it).
Out run(FrameReader::Role role, const std::vector<std::span<const uint8_t>>& pieces) {
  FrameReader r(role);
  Out out;
  for (auto in : pieces) {
    for (;;) {
      auto f = r.next(in);
      if (!f.ok()) {
        out.failed = true;
        // A dead reader must stay dead.
        std::span<const uint8_t> none;
        if (r.next(none).ok()) std::abort();
        return out;
      }
      if (!*f) break;
      decode_any((*f)->type, (*f)->payload);
      out.frames.emplace_back((*f)->type,
                              std::vector<uint8_t>((*f)->payload.begin(), (*f)->payload.end()));
    }
    if (!in.empty()) std::abort();  // "need more" must mean everything was consumed
  }
  if (r.buffered() > derp::kFrameHeaderLen + derp::kMaxInfoLen) std::abort();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> body(data + 1, size - 1);
  const size_t split = body.empty() ? 0 : data[0] % (body.size() + 1);
  for (auto role : {FrameReader::Role::kServer, FrameReader::Role::kClient}) {
    const Out whole = run(role, {body});
    const Out two = run(role, {body.first(split), body.subspan(split)});
    if (whole.frames != two.frames || whole.failed != two.failed) std::abort();
    if (body.size() <= 4096) {
      std::vector<std::span<const uint8_t>> bytes;
      for (size_t i = 0; i < body.size(); ++i) bytes.push_back(body.subspan(i, 1));
      const Out each = run(role, bytes);
      if (whole.frames != each.frames || whole.failed != each.failed) std::abort();
    }
  }
  return 0;
}
