// Every frame decoder on arbitrary payload bytes. Decoded values, encoded again, must decode
// to the same values (the encoders and decoders agree on the layout).
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "derp/frame.h"
#include "derp/handshake.h"

namespace {

std::span<const uint8_t> payload_of(const std::vector<uint8_t>& frame, size_t n) {
  if (n < derp::kFrameHeaderLen) std::abort();  // the buffer was sized to fit
  return std::span<const uint8_t>(frame).subspan(derp::kFrameHeaderLen, n - derp::kFrameHeaderLen);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> p(data, size);
  std::vector<uint8_t> buf(size + 128);

  if (auto k = derp::decode_server_key(p); k.ok()) {
    auto again = derp::decode_server_key(payload_of(buf, derp::encode_server_key(buf, *k)));
    if (!again.ok() || *again != *k) std::abort();
  }
  if (auto v = derp::decode_send_packet(p); v.ok()) {
    auto again =
        derp::decode_send_packet(payload_of(buf, derp::encode_send_packet(buf, v->dst, v->data)));
    if (!again.ok() || again->dst != v->dst || again->data.size() != v->data.size()) std::abort();
  }
  if (auto v = derp::decode_recv_packet(p); v.ok()) {
    (void)derp::looks_like_disco(v->data);
  }
  if (auto v = derp::decode_forward_packet(p); v.ok()) {
    auto again = derp::decode_forward_packet(
        payload_of(buf, derp::encode_forward_packet(buf, v->src, v->dst, v->data)));
    if (!again.ok() || again->src != v->src || again->dst != v->dst) std::abort();
  }
  if (auto v = derp::decode_peer_gone(p); v.ok()) {
    auto again =
        derp::decode_peer_gone(payload_of(buf, derp::encode_peer_gone(buf, v->peer, v->reason)));
    if (!again.ok() || again->peer != v->peer || again->reason != v->reason) std::abort();
  }
  if (auto v = derp::decode_peer_present(p); v.ok()) {
    auto again = derp::decode_peer_present(
        payload_of(buf, derp::encode_peer_present(buf, v->peer, v->ip16, v->port, v->flags)));
    if (!again.ok() || again->peer != v->peer || again->port != v->port || again->ip16 != v->ip16 ||
        again->flags != v->flags || !again->has_flags) {
      std::abort();
    }
  }
  if (auto v = derp::decode_note_preferred(p); v.ok()) {
    auto again = derp::decode_note_preferred(payload_of(buf, derp::encode_note_preferred(buf, *v)));
    if (!again.ok() || *again != *v) std::abort();
  }
  if (auto v = derp::decode_close_peer(p); v.ok()) {
    auto again = derp::decode_close_peer(payload_of(buf, derp::encode_close_peer(buf, *v)));
    if (!again.ok() || *again != *v) std::abort();
  }
  if (auto v = derp::decode_ping(p); v.ok()) {
    auto again = derp::decode_ping(payload_of(buf, derp::encode_pong(buf, *v)));
    if (!again.ok() || *again != *v) std::abort();
  }
  if (auto v = derp::decode_restarting(p); v.ok()) {
    auto again = derp::decode_restarting(
        payload_of(buf, derp::encode_restarting(buf, v->reconnect_in_ms, v->try_for_ms)));
    if (!again.ok() || again->reconnect_in_ms != v->reconnect_in_ms ||
        again->try_for_ms != v->try_for_ms) {
      std::abort();
    }
  }
  (void)derp::looks_like_disco(p);

  // The first byte as a frame type, the rest as its payload: the client's first-frame check.
  if (size > 0) {
    derp::FrameReader::Frame f{data[0], p.subspan(1)};
    (void)derp::check_server_key_frame(f, std::nullopt);
  }
  return 0;
}
