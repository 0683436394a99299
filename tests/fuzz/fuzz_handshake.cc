// Handshake decoding on arbitrary bytes: the JSON decoders, the box openers, and the whole
// relay-side path with the input as the sealed plaintext (so the JSON parser behind the box is
// reached, which random box bytes never would).
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

#include "derp/handshake.h"

namespace {

const derp::NodePrivate& client_key() {
  static const derp::NodePrivate k = *derp::NodePrivate::parse(
      "privkey:40ab1b58e9076c7a4d9d07291f5edf9d1aa017eb949624ba683317f48a640369");
  return k;
}

const derp::NodePrivate& server_key() {
  static const derp::NodePrivate k = *derp::NodePrivate::parse(
      "privkey:0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60");
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const derp::NodePublic client_pub = client_key().public_key();
  static const derp::NodePublic server_pub = server_key().public_key();

  if (auto info = derp::client_info_from_json(text); info.ok()) {
    // What we decoded, emitted and decoded again, keeps its fields.
    auto again = derp::client_info_from_json(derp::client_info_to_json(*info));
    if (!again.ok() || again->version != info->version ||
        again->can_ack_pings != info->can_ack_pings || again->is_prober != info->is_prober ||
        !again->mesh_key.equals(info->mesh_key)) {
      std::abort();
    }
  }
  if (auto info = derp::server_info_from_json(text); info.ok()) {
    auto again = derp::server_info_from_json(derp::server_info_to_json(*info));
    if (!again.ok() || again->version != info->version ||
        again->token_bucket_bytes_per_second != info->token_bucket_bytes_per_second ||
        again->token_bucket_bytes_burst != info->token_bucket_bytes_burst) {
      std::abort();
    }
  }

  (void)derp::open_client_info(server_key(), bytes);
  (void)derp::open_server_info(client_key(), server_pub, bytes);

  // The input as the plaintext of real boxes: both must open and parse like the bare JSON did.
  if (size <= 4096) {
    derp::Nonce nonce{};
    const auto sealed = derp::seal_to(client_key(), server_pub, bytes, nonce);
    std::vector<uint8_t> payload(client_pub.bytes.begin(), client_pub.bytes.end());
    payload.insert(payload.end(), sealed.begin(), sealed.end());
    auto opened = derp::open_client_info(server_key(), payload);
    if (opened.ok() != derp::client_info_from_json(text).ok()) std::abort();

    const auto sealed_info = derp::seal_to(server_key(), client_pub, bytes, nonce);
    auto info = derp::open_server_info(client_key(), server_pub, sealed_info);
    if (info.ok() != derp::server_info_from_json(text).ok()) std::abort();
  }
  return 0;
}
