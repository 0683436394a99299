// The relay's side of the handshake with a client it has never seen: the ClientInfo payload
// from an unknown key. The first 32 input bytes are that client's private key, the rest the
// JSON it seals to the relay; the payload is opened with the relay's key and must give back the
// key and parse like the bare JSON. The whole input also goes to open_client_info raw.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

#include "derp/handshake.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const derp::NodePrivate server = *derp::NodePrivate::parse(
      "privkey:0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60");
  static const derp::NodePublic server_pub = server.public_key();
  (void)derp::open_client_info(server, std::span<const uint8_t>(data, size));
  if (size < derp::kKeyLen || size > derp::kKeyLen + 8192) return 0;

  derp::NodePrivate client;
  std::copy(data, data + derp::kKeyLen, client.bytes.begin());
  client.bytes[0] &= 248;  // clamped, as every stored key is
  client.bytes[31] = static_cast<uint8_t>((client.bytes[31] & 127) | 64);
  const derp::NodePublic client_pub = client.public_key();
  const std::span<const uint8_t> json(data + derp::kKeyLen, size - derp::kKeyLen);
  const std::string_view text(reinterpret_cast<const char*>(json.data()), json.size());

  const auto sealed = derp::seal_to(client, server_pub, json, derp::Nonce{});
  std::vector<uint8_t> payload(client_pub.bytes.begin(), client_pub.bytes.end());
  payload.insert(payload.end(), sealed.begin(), sealed.end());
  const auto opened = derp::open_client_info(server, payload);
  const auto bare = derp::client_info_from_json(text);
  if (opened.ok() != bare.ok() && payload.size() >= 56) std::abort();
  if (opened.ok() && !(opened->client == client_pub)) std::abort();
  return 0;
}
